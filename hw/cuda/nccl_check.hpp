// NCCL errors as exceptions (GpuError) naming the call's file:line, NCCL's error string and the
// communicator's last-error text, and what every NCCL user of hw/cuda shares: the polling wait
// and the enqueueing of NCCL's own collectives.
// Included only by hw/cuda sources: no NCCL header leaves hw/cuda.
#pragma once

#include <nccl.h>

#include <chrono>
#include <functional>
#include <span>
#include <string>
#include <thread>

#include "hw/cuda/cuda_check.hpp"
#include "hw/runner/comm_plan.hpp"
#include "sim/core/error.hpp"

namespace bubblesim::hw::cuda {

inline void check_nccl(ncclResult_t r, ncclComm_t comm, const char* file, int line, const char* call) {
  if (r == ncclSuccess) return;
  std::string what = ncclGetErrorString(r);
  if (const char* last = ncclGetLastError(comm); last != nullptr && *last != '\0') what += " (" + std::string(last) + ")";
  gpu_fail(file, line, call, what);
}

/// Waits by polling: calls `reap` (which notes finished work and says whether any finished)
/// until `finished()`; between polls checks each communicator's asynchronous error and `alive`
/// (which throws to stop), and throws GpuError(stalled()) when nothing was reaped for
/// `stall_timeout_s`. Spins for the first 10 ms (small operations finish in microseconds, and
/// timing them must not include a sleep), then yields the core between polls.
inline void poll_until(const std::function<bool()>& reap, const std::function<bool()>& finished,
                       std::span<ncclComm_t const> comms, const std::function<void()>& alive, double stall_timeout_s,
                       const std::function<std::string()>& stalled);

/// Enqueues NCCL's collective `call` on `comm` (of `ranks` ranks) and stream `s`, inside the
/// caller's NCCL group if any: `count` elements of `type` in all for an all-reduce, per rank for
/// an all-gather (each rank's input) or a reduce-scatter (each rank's output), per peer for an
/// all-to-all (before NCCL 2.28, which has no ncclAlltoAll: sends and receives that the caller's
/// NCCL group must hold). fp32 or bf16.
inline void enqueue_collective(CommCall call, const void* send, void* recv, size_t count, ncclDataType_t type, int ranks,
                               ncclComm_t comm, cudaStream_t s);

}  // namespace bubblesim::hw::cuda

#define BUBBLESIM_NCCL(call, comm) ::bubblesim::hw::cuda::check_nccl((call), (comm), __FILE__, __LINE__, #call)

inline void bubblesim::hw::cuda::poll_until(const std::function<bool()>& reap, const std::function<bool()>& finished,
                                            std::span<ncclComm_t const> comms, const std::function<void()>& alive,
                                            double stall_timeout_s, const std::function<std::string()>& stalled) {
  auto progress = std::chrono::steady_clock::now();
  const auto spin_until = progress + std::chrono::milliseconds(10);
  for (;;) {
    if (reap()) progress = std::chrono::steady_clock::now();
    if (finished()) return;
    for (ncclComm_t c : comms) {
      if (c == nullptr) continue;
      ncclResult_t async = ncclSuccess;
      BUBBLESIM_NCCL(ncclCommGetAsyncError(c, &async), c);
      BUBBLESIM_NCCL(async, c);
    }
    if (alive) alive();
    const auto now = std::chrono::steady_clock::now();
    if (std::chrono::duration<double>(now - progress).count() > stall_timeout_s) throw GpuError(stalled());
    if (now > spin_until) std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
}

inline void bubblesim::hw::cuda::enqueue_collective(CommCall call, const void* send, void* recv, size_t count,
                                                    ncclDataType_t type, int ranks, ncclComm_t comm, cudaStream_t s) {
  switch (call) {
    case CommCall::AllReduce:
      BUBBLESIM_NCCL(ncclAllReduce(send, recv, count, type, ncclSum, comm, s), comm);
      return;
    case CommCall::AllGather:
      BUBBLESIM_NCCL(ncclAllGather(send, recv, count, type, comm, s), comm);
      return;
    case CommCall::ReduceScatter:
      BUBBLESIM_NCCL(ncclReduceScatter(send, recv, count, type, ncclSum, comm, s), comm);
      return;
    case CommCall::AllToAll: {
#if NCCL_VERSION_CODE >= 22800
      (void)ranks;
      BUBBLESIM_NCCL(ncclAlltoAll(send, recv, count, type, comm, s), comm);
#else
      BUBBLESIM_ASSERT(type == ncclFloat32 || type == ncclBfloat16, "all-to-all of fp32 or bf16 only");
      const size_t block = count * (type == ncclFloat32 ? 4 : 2);  // bytes per peer
      for (int peer = 0; peer < ranks; ++peer) {
        const size_t at = block * static_cast<size_t>(peer);
        BUBBLESIM_NCCL(ncclSend(static_cast<const char*>(send) + at, count, type, peer, comm, s), comm);
        BUBBLESIM_NCCL(ncclRecv(static_cast<char*>(recv) + at, count, type, peer, comm, s), comm);
      }
#endif
      return;
    }
    case CommCall::None:
    case CommCall::SendRecv: break;
  }
  throw InternalError(std::string("enqueue_collective: ") + to_string(call) + " is not one of NCCL's collectives");
}
