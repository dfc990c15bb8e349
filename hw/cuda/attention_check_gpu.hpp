// Correctness across GPUs: ring attention (contiguous, zigzag or striped shards; K/V blocks and
// their dK/dV accumulators passed around the ring with NCCL send/recv, partial outputs merged by
// log-sum-exp) and Ulysses (NCCL all-to-all from sequence to head shards and back) against the
// same GPU kernels run over the whole sequence on one GPU, from the same bf16 inputs. The GPU
// counterpart of hw/check (which does it with MPI and CPU kernels).
// Not timing: this checks the arithmetic and the data movement.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "hw/cuda/attention.hpp"
#include "hw/cuda/nccl_comm.hpp"

namespace bubblesim::hw::cuda {

struct GpuAttentionCheck {
  std::string mode;          // contiguous | zigzag | striped | ulysses
  int64_t seq = 1024, heads = 8, head_dim = 64;
  double forward_error = 0;  // max |distributed - one GPU| / max |one GPU| over the output
  double backward_error = 0; // the same over dQ, dK, dV (ring modes; Ulysses runs the same kernel)
  /// The kernel both sides run (attention_kernel_from_environment()).
  AttentionKernel kernel = AttentionKernel::TensorCore;
  /// From the same bf16 inputs, the CUDA-core kernels differ only in the order of fp32 sums; the
  /// tensor-core ones also round probabilities to bf16 per tile, and tiles differ between a ring
  /// step and the whole sequence.
  double tolerance() const { return kernel == AttentionKernel::TensorCore ? 1e-2 : 1e-3; }
  bool ok() const { return forward_error <= tolerance() && backward_error <= tolerance(); }
};

/// Runs the check on every rank of `comm` (one GPU each, causal attention); rank 0's result
/// holds the errors. InputError if the sizes do not split over the ranks or the head dim has no
/// kernel. `alive` is called while waiting (throw from it to stop).
GpuAttentionCheck check_attention_gpu(const std::string& mode, int64_t seq, int64_t heads, int64_t head_dim,
                                      NcclComm& comm, const std::function<void()>& alive = {});

}  // namespace bubblesim::hw::cuda
