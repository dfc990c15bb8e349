// One process driving every GPU of a node (bubblesim-hw run --backend cuda started without
// mpirun): a GpuRunner per GPU, each set up, run and torn down in a thread of its own, since
// NCCL's communicator setup and every iteration wait for all GPUs at once. GPU g of the job runs
// on CUDA device g. A failure on one GPU stops the others (their waits see it and abort their
// communicators), and the first error is rethrown on the caller's thread.
// Not multi-node: several nodes run one process per GPU under MPI (hw/cli).
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <vector>

#include "hw/cuda/gpu_runner.hpp"
#include "hw/cuda/nccl_comm.hpp"

namespace bubblesim::hw::cuda {

class NodeRunner {
 public:
  /// Every GPU of `plan` (plan.ranks[g] is GPU g's plan) on CUDA devices 0..n-1.
  NodeRunner(const sim::Program& p, const CommPlan& plan, double stall_timeout_s);
  ~NodeRunner();
  NodeRunner(const NodeRunner&) = delete;
  NodeRunner& operator=(const NodeRunner&) = delete;

  /// One iteration on every GPU at once: per GPU, its ops' times (in its runner's ops() order).
  std::vector<ReplayTimes> run_iteration();

 private:
  /// Runs work(g) for every GPU in a thread each and joins them. A GPU whose work throws sets
  /// failed_ (the others' waits then stop); once all are back every communicator is aborted and
  /// the error of the GPU that failed first is rethrown.
  template <typename Work>
  void on_each_gpu(Work work);
  /// Aborts every GPU's communicators at once (after a failure).
  void abort_all() noexcept;
  /// What GPU `gpu`'s waits call: throws once another GPU has failed.
  std::function<void()> alive(size_t gpu) const;

  size_t gpus_;
  double stall_timeout_s_;
  std::vector<std::unique_ptr<NcclComm>> worlds_;
  std::vector<std::unique_ptr<GpuRunner>> runners_;
  std::atomic<bool> failed_{false};
};

}  // namespace bubblesim::hw::cuda
