// NCCL errors as exceptions (GpuError) naming the call's file:line, NCCL's error string and the
// communicator's last-error text. Included only by hw/cuda sources: no NCCL header leaves hw/cuda.
#pragma once

#include <nccl.h>

#include <string>

#include "hw/cuda/cuda_check.hpp"

namespace bubblesim::hw::cuda {

inline void check_nccl(ncclResult_t r, ncclComm_t comm, const char* file, int line, const char* call) {
  if (r == ncclSuccess) return;
  std::string what = ncclGetErrorString(r);
  if (const char* last = ncclGetLastError(comm); last != nullptr && *last != '\0') what += " (" + std::string(last) + ")";
  gpu_fail(file, line, call, what);
}

}  // namespace bubblesim::hw::cuda

#define BUBBLESIM_NCCL(call, comm) ::bubblesim::hw::cuda::check_nccl((call), (comm), __FILE__, __LINE__, #call)
