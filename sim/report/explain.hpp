// `bubblesim explain`: for a scenario's model and sequence, the per-rank, per-layer
// communication volume and memory of each way to split the work (SP-Ulysses, SP-Ring, the
// scenario's USP split, all-gather CP, DP, ZeRO-1/2/3, TP with and without sequence parallelism,
// PP) side by side at one degree, as the USP paper compares them; whether the ring's
// communication can hide behind its compute here; and which of the job's groups cross nodes.
// Not a simulation of the schedule: `bubblesim run` does that.
#pragma once

#include <nlohmann/json_fwd.hpp>
#include <ostream>
#include <string>
#include <vector>

#include "sim/scenario/cluster_job.hpp"
#include "sim/scenario/scenario.hpp"

namespace bubblesim::sim {

struct ExplainRow {
  std::string method;
  std::string split;            // what is divided: heads, sequence, batch, states, layers
  double activation_comm = 0;   // bytes each rank sends per layer and microbatch (forward + backward)
  double param_comm = 0;        // bytes each rank sends per layer and iteration for weights/gradients
  double model_states = 0;      // parameters, gradients, optimizer states per layer, per rank
  double activations = 0;       // activation bytes per layer per microbatch, per rank
};

struct RingOverlap {
  int64_t block_tokens = 0;     // K/V block of one ring step
  double compute_s = 0;         // one full (non-causal) block's attention
  double transfer_s = 0;        // the step's K/V transfer on the job's links, twins included
  double threshold_tokens = 0;  // block size from which compute covers the transfer (2.1)
  bool holds = false;
};

struct Explanation {
  int32_t degree = 0;           // N, the degree every row is compared at
  std::vector<ExplainRow> rows;
  RingOverlap ring;
  std::vector<std::string> crossing;  // groups of the job that cross nodes
};

Explanation explain(const ClusterJob& job);
void write_explain_text(std::ostream& out, const Scenario& sc, const ClusterJob& job, const Explanation& e);
nlohmann::json explain_json(const Scenario& sc, const Explanation& e);

}  // namespace bubblesim::sim
