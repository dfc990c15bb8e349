// Microbenchmarks in the nccl-tests discipline: warm-up, timed iterations (each between
// barriers; compute shapes in rounds, one of each per round, caches evicted before each), per-rank
// median, then min / median / max across ranks; algbw = size / time and
// busbw = algbw x nccl-tests' factor. Compute: GEMM shapes, attention blocks (forward and
// backward, any causal fraction), memory-bound copies. Communication over message sizes: p2p,
// all-to-all, all-reduce, all-gather, reduce-scatter; on the host backend as MPI messages (p2p a
// ping-pong between rank pairs, one-way time; the collectives as ring or pairwise steps), on the
// GPU backend as NCCL calls timed as nccl-tests does (a batch of back-to-back calls, the mean;
// p2p is nccl-tests' sendrecv there: every rank sends to the next and receives from the previous
// at once, over all the ranks).
// Not calibration: sim/calibrate fits the stored samples.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "hw/host/mpi_backend.hpp"
#include "sim/store/store.hpp"

namespace bubblesim::hw {

struct BenchOptions {
  int warmup = 3;
  int iterations = 10;
  std::vector<int64_t> sizes;               // communication message sizes, bytes
  std::vector<sim::OpWork> compute_shapes;  // compute ops to time (class and shape)
  bool cold = true;  // evict the private caches before each timed GEMM and attention (memory ops run warm)
  /// Times one compute op on another device (the GPU backend: CUDA events around it); empty:
  /// the MPI backend's own compute, timed on its clock.
  std::function<double(const sim::OpWork&)> time_compute;
  /// Runs `count` back-to-back communication ops `what` of nccl-tests size `size` on another
  /// device and returns when they are done, with the size actually moved (the GPU backend: NCCL);
  /// empty: MPI messages of the backend's own.
  std::function<int64_t(const std::string& what, int64_t size, int count)> run_comm;
  /// Runs one such op on known data and returns how many elements this rank got wrong (0:
  /// correct), as nccl-tests' -c check; each size up to kCheckedBytes is checked before it is
  /// timed, and a wrong result on any rank stops the benchmark.
  std::function<int64_t(const std::string& what, int64_t size)> check_comm;
  static constexpr int64_t kCheckedBytes = int64_t{256} << 20;
};

/// Runs benchmark `what` (gemm | attention | memory | p2p | alltoall | allreduce | allgather |
/// reducescatter) on every rank;
/// `emit` gets each sample on rank 0 as soon as it is measured.
void run_bench(const std::string& what, const BenchOptions& opt, MpiBackend& backend,
               const std::function<void(const sim::BenchSample&)>& emit);

/// The compute classes and communication ops `run_bench` knows.
bool is_compute_bench(const std::string& what);
bool is_comm_bench(const std::string& what);

/// A default grid of shapes for a compute class, sized for the host backend (ops of 1-50 ms), or
/// with `gpu` for a GPU (bf16 operands, transformer-sized GEMMs and attention blocks).
std::vector<sim::OpWork> default_shapes(const std::string& op_class, bool gpu = false);

}  // namespace bubblesim::hw
