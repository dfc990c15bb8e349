// A training iteration of a transformer on a cluster as a Program: the pipeline schedule's
// actions expanded into each layer's GEMMs, attention and memory-bound ops on the compute
// stream, tensor-parallel collectives, activations between stages as transfers, gradient
// reduction over data parallelism per layer bucket (all-reduce, or reduce-scatter with ZeRO and
// the parameter all-gather after the optimizer), and ZeRO-3 parameter gathers.
//
// One representative GPU per pipeline stage is simulated (tp = 0, dp = 0): tensor- and
// data-parallel ranks are symmetric, so their ops would repeat the representative's. Their
// traffic is not dropped: every collective step carries the transfers of the whole ring and of
// its twin rings, so the network shares links as the full job does.
// Not a cost model: durations come from the ComputeModel, transfers from the NetworkModel.
#pragma once

#include <string>
#include <vector>

#include "sim/ir/program.hpp"
#include "sim/model/compute.hpp"
#include "sim/scenario/cluster_job.hpp"
#include "sim/topo/topology.hpp"

namespace bubblesim::sim {

/// Where every rank of the job sits: parallel.placement, innermost (fastest-varying) first.
class RankPlacement {
 public:
  explicit RankPlacement(const ClusterJob& job);
  /// GPU index of the rank with these coordinates.
  int32_t gpu(int32_t tp, int32_t dp, int32_t pp) const;
  /// Whether the group varying `dim` ("tp", "dp", "pp") around the representative crosses nodes.
  bool crosses_nodes(const std::string& dim, const Topology& topo) const;

 private:
  int32_t stride_tp_ = 1, stride_dp_ = 1, stride_pp_ = 1;
  int32_t tp_ = 1, dp_ = 1, pp_ = 1;
};

/// Model states per device, in bytes; activations come from the simulated schedule.
struct MemoryEstimate {
  double params = 0, grads = 0, optimizer = 0;
};

struct TrainingPlan {
  Program program;
  std::vector<int32_t> gpu_of_device;       // one representative per pipeline rank
  std::vector<MemoryEstimate> memory;       // per device; activations scale with in-flight units
  double activation_unit_bytes = 1024;      // Program::mem_alloc units are KiB
  int64_t tokens = 0;                       // per iteration
  std::vector<std::string> notes;           // e.g. which groups cross nodes
};

/// Builds the iteration of `job` on `topo`. Throws InputError for what this version cannot
/// model (ulysses or ring > 1: the sequence-parallel issue).
TrainingPlan build_training(const ClusterJob& job, const Topology& topo, const ComputeModel& compute);

}  // namespace bubblesim::sim
