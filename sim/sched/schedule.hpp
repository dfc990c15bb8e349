// Pipeline schedules as pure functions: (schedule, p, m, v, stage graph) -> per-rank ordered
// action lists (F, B, I, W, F&B on a stage and microbatch), exactly as in
// shared/reference/algorithms.md section 1. No times, no costs, no engine: lower.hpp turns the
// actions into a Program.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "sim/ir/program.hpp"

namespace bubblesim::sim {

enum class ScheduleKind : uint8_t { Naive, GPipe, OneFOneB, Interleaved, LoopedBfs, ZbH1, ZbH2, ZbV, DualPipe, DualPipeV };

struct ScheduleInfo {
  ScheduleKind kind;
  std::string_view name;        // as written in scenarios
  int fixed_chunks;             // chunks per rank the schedule requires (0: any v, from the scenario)
  bool splits_backward;         // needs separate I and W times
  bool overlaps_fb;             // uses overlapped F&B pairs
  bool any_placement;           // runs on any layer placement (stage graph), not only the canonical one
  std::string_view description;
};

/// Every schedule, in the order `bubblesim` lists them.
const std::vector<ScheduleInfo>& schedule_table();
const ScheduleInfo& info(ScheduleKind k);
/// Throws InputError naming the valid schedules when `name` is not one of them.
ScheduleKind parse_schedule(std::string_view name);
/// "naive, gpipe, 1f1b, ..." for error messages.
std::string schedule_names();

/// One entry of a rank's list. For Phase::FB, (stage, microbatch) is the forward half and
/// (b_stage, b_microbatch) the full-backward half.
struct Action {
  Phase phase;
  int32_t stage;
  int32_t microbatch;
  int32_t b_stage = -1;
  int32_t b_microbatch = -1;
};
using RankActions = std::vector<Action>;

/// Stages in model order along one or more paths (DualPipe has two: its two directions).
struct StageGraph {
  int32_t ranks = 0;
  std::vector<int32_t> device;  // per stage
  std::vector<int32_t> prev;    // per stage, -1 at a path start
  std::vector<int32_t> next;    // per stage, -1 at a path end
  std::vector<int16_t> chunk;   // per stage: chunk index on its rank (DualPipe: direction)
  int32_t microbatches = 0;     // microbatches that flow through each stage
  size_t size() const { return device.size(); }
};

struct PipelineShape {
  int32_t p = 1;           // pipeline ranks
  int32_t m = 1;           // microbatches per iteration
  int32_t v = 1;           // chunks per rank
  int32_t group_size = 0;  // interleaved: microbatches per group N (0: p)
};

/// The canonical stage graph of `kind`: one path of p stages (v = 1), a loop mapping of p*v
/// stages (interleaved, looped-bfs), a V mapping of 2p (zb-v, dualpipe-v), or two opposite
/// paths of p stages each fed m/2 microbatches (dualpipe).
StageGraph canonical_stages(ScheduleKind kind, const PipelineShape& s);

/// Stage graph of one path whose stage i runs on device_of_stage[i] (layer placements).
StageGraph path_stages(const std::vector<int32_t>& device_of_stage, int32_t ranks, int32_t m);

/// Rules that (kind, shape) must satisfy, each broken rule as one message; empty if fine.
std::vector<std::string> check_shape(ScheduleKind kind, const PipelineShape& s);

/// Per-rank action lists. `g` must be canonical_stages(kind, s) unless info(kind).any_placement.
/// Assumes check_shape() passed (interleaved with a bad remainder still generates, as Megatron's
/// table would, which the tests use).
std::vector<RankActions> generate(ScheduleKind kind, const PipelineShape& s, const StageGraph& g);

}  // namespace bubblesim::sim
