// A full scenario (cluster, model, training, parallel) resolved against the presets and checked
// against every rule that needs no cost model: world size, head and layer divisibility, sequence
// splits, batch arithmetic, schedule constraints and absurd sizes.
// Not the workload: building the transformer Program from a ClusterJob is the next step.
#pragma once

#include <string>

#include "sim/preset/presets.hpp"
#include "sim/scenario/scenario.hpp"
#include "sim/sched/schedule.hpp"

namespace bubblesim::sim {

struct ResolvedModel {
  std::string preset;  // empty when every field was given
  int32_t layers = 0, hidden = 0, heads = 0, kv_heads = 0, ffn_hidden = 0, vocab = 0;
  std::string activation = "swiglu";
  bool tied_embeddings = false;
};

/// The cluster with the preset's figures where the scenario gives none.
struct ResolvedCluster {
  const GpuPreset* gpu = nullptr;
  int32_t nodes = 1, gpus_per_node = 1;
  Bandwidth intra_bandwidth;  // per GPU per direction (NVLink, or PCIe for PCIe-only GPUs)
  Time intra_latency;
  int32_t nics_per_node = 0;
  Bandwidth inter_bandwidth;  // per NIC per direction
  Time inter_latency;
  double oversubscription = 1;  // a node's uplink = its NICs' bandwidth / this
  double elementwise_efficiency = 0;  // share of HBM bandwidth memory-bound kernels reach
  bool nccl_nvls = true;               // NCCL may pick NVLink SHARP (cluster.nccl.algorithm auto)
  std::string nccl_protocol = "auto";  // cluster.nccl.protocol: auto, LL, LL128 or Simple
  int32_t world() const { return nodes * gpus_per_node; }
};

struct ClusterJob {
  ResolvedCluster cluster;
  ResolvedModel model;
  TrainingSpec training;
  ParallelSpec parallel;
  ScheduleKind schedule = ScheduleKind::OneFOneB;
  PipelineShape shape;    // p = pp, m = microbatches per iteration, v = chunks per rank
};

/// Resolves presets and checks every rule; throws InputError naming the key (file:line), the
/// values and the rule, with valid alternatives where there are some.
ClusterJob plan_cluster(const Scenario& sc);

/// The cluster alone (for commands that need no model), with the preset's figures filled in.
ResolvedCluster resolve_cluster(const Scenario& sc);

}  // namespace bubblesim::sim
