// One GPU's part of a training Program on real hardware (bubblesim-hw run --backend cuda): the
// steps of its communication plan (hw/runner/comm_plan) enqueued in the plan's order. Compute ops
// run their real kernels (GpuCompute) on a CUDA stream per Program stream. Communication runs on a
// stream per communicator: NCCL's own all-reduce / all-gather / reduce-scatter / all-to-all (bf16)
// for whole collectives (in place on one buffer, as frameworks run them on their gradient and
// parameter buffers), grouped ncclSend/ncclRecv for ring steps and pipeline activations.
// Waits between streams are CUDA events. Start and end events around every step, against one
// origin event per iteration, give the device's op times. The communicators come from splitting
// the world communicator, one split per round of the plan.
// Waiting polls: NCCL's asynchronous errors, the caller's liveness check and a stall timeout end
// a run that cannot finish, and every communicator is then aborted so no kernel waits forever.
// Not the planner: the order of the calls is the plan's, which verify() has checked.
#pragma once

#include <functional>
#include <vector>

#include "hw/cuda/gpu_compute.hpp"
#include "hw/cuda/replay.hpp"
#include "hw/runner/comm_plan.hpp"

struct ncclComm;

namespace bubblesim::hw::cuda {

class NcclComm;

/// What a GPU run needs set before CUDA starts (a user's own settings win): 32 hardware queues
/// (CUDA_DEVICE_MAX_CONNECTIONS), so the runner's streams do not share one where a wait at the
/// head of one would hold up another's NCCL call; and NCCL connecting every algorithm when a
/// communicator is made (NCCL_RUNTIME_CONNECT=0), not at a first use inside an iteration, where
/// a first contact blocks the host until the peer arrives.
void set_run_environment();

class GpuRunner {
 public:
  /// Runs `plan.ranks[rank]` (this GPU's plan) on CUDA device `cuda_device`, splitting `world`
  /// (every GPU of the job, ranked by job GPU index) into the plan's communicators. Every rank of
  /// the world must construct its runner at the same time (the splits are collective).
  /// First everything local: compute buffers, masks and kernels (each distinct op run once),
  /// the communication buffer (InputError when it does not fit in the GPU's free memory),
  /// streams and events. Then `agree(ok)` (every GPU's, like NcclComm's) says whether all GPUs
  /// got that far, so none waits in NCCL for one that failed. Then the splits, and every NCCL
  /// connection the plan uses (a tiny call of each kind per communicator, in the same order on
  /// every GPU), waited for as an iteration is.
  GpuRunner(const sim::Program& p, const CommPlan& plan, size_t rank, NcclComm& world, int cuda_device,
            const std::function<bool(bool)>& agree, const std::function<void()>& alive, double stall_timeout_s);
  ~GpuRunner();
  GpuRunner(const GpuRunner&) = delete;
  GpuRunner& operator=(const GpuRunner&) = delete;

  /// One iteration: `at_start` (the GPUs' barrier) once the device is idle, then every step
  /// enqueued (at most 1024 ahead of those done) and waited for, calling `alive` between polls
  /// (it throws to stop). Times of the device's ops, stream by stream (the order of the Program
  /// device's streams, as the host runner lists them), in seconds since the iteration's origin.
  /// On an error the caller aborts (abort()): in one process the other GPUs must learn of the
  /// failure first.
  ReplayTimes run_iteration(const std::function<void()>& alive, double stall_timeout_s,
                            const std::function<void()>& at_start = {});
  /// Aborts every communicator of the runner (peers' pending calls then fail); idempotent.
  void abort() noexcept;

 private:
  void setup_local(const CommPlan& plan, size_t rank);
  void split(const CommPlan& plan, NcclComm& world);
  void connect(const std::function<void()>& alive, double stall_timeout_s);
  /// Enqueues step i on its lane: waits, start event, its work, end event.
  void enqueue(size_t i);
  /// The NCCL call of a communication step, as one NCCL group, on stream `s`.
  void call(const Step& st, CUstream_st* s);
  /// Calls `reap` (which notes finished work and says whether any finished) until `finished`;
  /// between polls NCCL's asynchronous errors and `alive` are checked, and nothing finishing for
  /// `stall_timeout_s` is an error naming `waiting()`.
  void poll(const std::function<bool()>& reap, const std::function<bool()>& finished,
            const std::function<std::string()>& waiting, const std::function<void()>& alive, double stall_timeout_s);
  std::string describe(size_t i) const;
  void release() noexcept;

  const sim::Program& p_;
  RankPlan plan_;
  std::vector<Communicator> comm_table_;
  int device_;
  GpuCompute compute_;
  std::vector<ncclComm*> comms_;              // per plan communicator: this GPU's, or null
  std::vector<CUstream_st*> lanes_;           // per plan lane
  std::vector<std::vector<size_t>> on_lane_;  // per lane: its steps, in order
  std::vector<CUevent_st*> start_, end_;      // per step
  std::vector<CUevent_st*> warm_;             // the connection warm-up's markers
  CUevent_st* origin_ = nullptr;
  char* buffer_ = nullptr;                    // every call's data (collectives in place)
  int64_t buffer_bytes_ = 0;
  std::vector<size_t> step_of_;               // per op of the device, stream by stream: its step
};

}  // namespace bubblesim::hw::cuda
