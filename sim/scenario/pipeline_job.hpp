// A pipeline_only scenario made concrete: schedule, shape, stage graph with per-stage costs
// and layer placement, checked against every rule before anything is generated.
// Not a generator: build_program() calls sim/sched for the op lists.
#pragma once

#include <string>
#include <vector>

#include "sim/ir/program.hpp"
#include "sim/scenario/scenario.hpp"
#include "sim/sched/lower.hpp"
#include "sim/sched/schedule.hpp"

namespace bubblesim::sim {

enum class PlacementSource : uint8_t { EvenSplit, Partition, LayerToDevice };
const char* to_string(PlacementSource s);

/// Where the layers sit, for the report (only when the scenario gives `layers`).
struct LayerPlacement {
  int32_t layers = 0;
  std::vector<std::vector<int32_t>> layers_of_device;  // 0-based layer ids per device
  int32_t stages = 0;            // stages of one pass through the model
  int32_t hops_per_forward = 0;  // device changes along one forward pass through the model
  bool contiguous = true;        // every device holds one run of consecutive layers
  bool by_schedule = false;      // several runs per device are the schedule's own chunks
  PlacementSource source = PlacementSource::EvenSplit;
};

struct PipelineJob {
  ScheduleKind kind;
  PipelineShape shape;
  StageGraph graph;
  std::vector<StageCost> costs;
  LowerOptions options;
  std::optional<LayerPlacement> placement;
  // The scenario's times as given, in abstract units (per stage or chunk; per layer with
  // layers), for the report; b = I + W when the backward is split.
  double f = 0, b = 0, i = 0, w = 0, fb = 0, latency = 0;
  bool split_backward = false;  // I and W given
  bool fb_given = false;
};

/// Checks every rule of a pipeline_only scenario and plans the job. Throws InputError naming
/// the key (with file:line) and the rule: schedule constraints on p, m and v, backward split,
/// partition and placement consistency, whether the program fits in memory and whether its
/// times fit in the int64-picosecond clock (see kSecondsPerUnit).
PipelineJob plan_pipeline(const Scenario& sc);

/// Generates the schedule and lowers it to a finalized Program.
Program build_program(const PipelineJob& job);

/// One abstract time unit of a pipeline_only scenario, stored as this many seconds: 1 ms, so
/// the int64-picosecond clock resolves 1e-9 units and spans about 9.2e9 units.
inline constexpr double kSecondsPerUnit = 1e-3;

/// Bytes the simulator needs per op (IR, edges, trace, executor state), for the memory check.
inline constexpr uint64_t kBytesPerOp = 256;

}  // namespace bubblesim::sim
