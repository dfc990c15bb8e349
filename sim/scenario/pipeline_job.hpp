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

/// Where the layers sit, for the report (only when the scenario gives `layers`).
struct LayerPlacement {
  int32_t layers = 0;
  std::vector<std::vector<int32_t>> layers_of_device;  // 0-based layer ids per device
  int32_t stages = 0;            // runs of consecutive layers on one device
  int32_t hops_per_forward = 0;  // device changes along one forward pass
  bool contiguous = true;        // every device holds one run of consecutive layers
  bool by_schedule = false;      // the runs are the schedule's own chunks (interleaved, V, DualPipe)
  std::string how;               // "partition", "layer_to_device" or "even split"
};

struct PipelineJob {
  ScheduleKind kind;
  PipelineShape shape;
  StageGraph graph;
  std::vector<StageCost> costs;
  LowerOptions options;
  std::optional<LayerPlacement> placement;
  // The scenario's times in abstract units (per stage or chunk; per layer with layers).
  double f = 0, b = 0, i = 0, w = 0, fb = 0, latency = 0;
  bool split_backward = false;  // I and W given
  bool fb_given = false;
  uint64_t estimated_ops = 0;
};

/// Checks every rule of a pipeline_only scenario and plans the job. Throws InputError naming
/// the key (with file:line) and the rule: schedule constraints on p, m and v, backward split,
/// partition and placement consistency, and whether the program fits in memory.
PipelineJob plan_pipeline(const Scenario& sc);

/// Generates the schedule and lowers it to a finalized Program.
Program build_program(const PipelineJob& job);

/// Bytes the simulator needs per op (IR, edges, trace, executor state), for the memory check.
inline constexpr uint64_t kBytesPerOp = 256;

}  // namespace bubblesim::sim
