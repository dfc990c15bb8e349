// A training iteration of a transformer on a cluster as a Program: the pipeline schedule's
// actions expanded into each layer's GEMMs, attention and memory-bound ops on the compute
// stream, tensor-parallel collectives, activations between stages as transfers, gradient
// reduction over data parallelism per layer bucket (all-reduce, or reduce-scatter with ZeRO and
// the parameter all-gather after the optimizer), and ZeRO-3 parameter gathers.
//
// One representative GPU per pipeline stage and ring rank is simulated (tp = ulysses = dp = 0):
// tensor-, Ulysses- and data-parallel ranks are symmetric, so their ops would repeat the
// representative's, while ring ranks are not (causal masking gives them different work). The
// others' traffic is not dropped: every collective step and transfer carries those of the twin
// groups, so the network shares links as the full job does.
// Sequence parallelism (algorithms.md 2.1-2.4): Ulysses all-to-alls around attention; ring
// attention step by step (K/V blocks on a p2p stream, double-buffered, dK/dV accumulators one
// hop further in the backward); or all-gather CP. Gradients are reduced over dp x ulysses x ring.
// Not a cost model: durations come from the ComputeModel, transfers from the NetworkModel.
#pragma once

#include <string>
#include <vector>

#include "sim/ir/program.hpp"
#include "sim/model/compute.hpp"
#include "sim/scenario/cluster_job.hpp"
#include "sim/topo/topology.hpp"

namespace bubblesim::sim {

/// The parallel dimensions, in the default placement order (innermost first).
enum class Dim : uint8_t { Tp, Ulysses, Ring, Dp, Pp };
inline constexpr Dim kDims[] = {Dim::Tp, Dim::Ulysses, Dim::Ring, Dim::Dp, Dim::Pp};
const char* to_string(Dim dim);

/// A rank's coordinates, indexed by Dim.
struct Coord {
  int32_t at[5] = {0, 0, 0, 0, 0};
  int32_t& operator[](Dim d) { return at[static_cast<int>(d)]; }
  int32_t operator[](Dim d) const { return at[static_cast<int>(d)]; }
};

/// Where every rank of the job sits: parallel.placement, innermost (fastest-varying) first.
class RankPlacement {
 public:
  explicit RankPlacement(const ClusterJob& job);
  /// GPU index of the rank with these coordinates.
  int32_t gpu(const Coord& c) const;
  int32_t degree(Dim d) const { return degree_[static_cast<int>(d)]; }
  /// The GPUs of the group varying `dim` around `c`, in order of that coordinate.
  std::vector<int32_t> group(Dim dim, Coord c) const;
  /// Whether the group varying `dim` around rank 0 crosses nodes.
  bool crosses_nodes(Dim dim, const Topology& topo) const;

 private:
  int32_t stride_[5] = {1, 1, 1, 1, 1};
  int32_t degree_[5] = {1, 1, 1, 1, 1};
};

/// Bytes per parameter of the model states: bf16 weights, fp32 main gradients (reduced in fp32,
/// Megatron with bf16), fp32 master weights with Adam's m and v.
inline constexpr int64_t kParamBytes = 2;
inline constexpr int64_t kGradBytes = 4;
inline constexpr int64_t kOptimizerBytes = 12;

/// Model states and communication buffers per device, in bytes; activations come from the
/// simulated schedule.
struct MemoryEstimate {
  double params = 0, grads = 0, optimizer = 0;
  double buffers = 0;  // sequence-parallel workspaces: all-to-all outputs, ring blocks, gathered K/V
};

struct TrainingPlan {
  Program program;
  std::vector<int32_t> gpu_of_device;       // one representative per pipeline rank and ring rank
  std::vector<MemoryEstimate> memory;       // per device; activations scale with in-flight units
  double activation_unit_bytes = 1024;      // Program::mem_alloc units are KiB
  int64_t tokens = 0;                       // per iteration
  std::vector<std::string> notes;           // e.g. which groups cross nodes
};

/// Builds the iteration of `job` on `topo`. Throws InputError for what cannot be represented.
/// `record_work` also keeps each compute op's class, shape, FLOPs and bytes (Program::work), for
/// the store and calibration.
TrainingPlan build_training(const ClusterJob& job, const Topology& topo, const ComputeModel& compute,
                            bool record_work = false);

}  // namespace bubblesim::sim
