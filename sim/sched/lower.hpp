// Lowering of per-rank action lists to a Program: one compute stream per rank, the pipeline
// dependencies of algorithms.md section 0 (F after the previous stage's F; B/I after its own F
// and the next stage's B/I; W after I; F&B after both), latency on cross-rank edges, and
// activation memory (allocated at F's start, freed at the end of B or W).
// Not a generator: the order of ops on each rank is exactly the order of the actions.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "sim/ir/program.hpp"
#include "sim/sched/schedule.hpp"

namespace bubblesim::sim {

/// Durations of one stage's passes, and the activation units one microbatch keeps alive there.
struct StageCost {
  Time f;
  Time b;  // full backward (I + W when the backward is split)
  Time i;
  Time w;
  int32_t activation_units = 1;
  int32_t first_layer = -1;
};

struct LowerOptions {
  Time p2p_latency;                   // added on every dependency between two ranks
  std::optional<double> fb_ratio;     // duration of F&B = ratio x (F + B); none: F + B
  std::vector<std::string> chunk_names;
  std::string memory_unit = "stage-microbatch";
};

/// Builds and finalizes the Program of `actions` on the stage graph `g` with one StageCost per
/// stage. Throws InternalError if an action is repeated or a dependency is never scheduled (a
/// generator bug). O(actions).
Program lower(const std::vector<RankActions>& actions, const StageGraph& g, const std::vector<StageCost>& costs,
              const LowerOptions& opt);

}  // namespace bubblesim::sim
