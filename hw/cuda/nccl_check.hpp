// NCCL errors as exceptions (GpuError) naming the call's file:line, NCCL's error string and the
// communicator's last-error text, and the polling wait every NCCL user of hw/cuda shares.
// Included only by hw/cuda sources: no NCCL header leaves hw/cuda.
#pragma once

#include <nccl.h>

#include <chrono>
#include <functional>
#include <span>
#include <string>
#include <thread>

#include "hw/cuda/cuda_check.hpp"

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
