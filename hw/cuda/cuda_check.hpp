// CUDA, cuBLAS and NCCL errors as exceptions naming the call's file:line and the library's own
// message, so a failing rank can report it and stop the others.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <exception>
#include <functional>
#include <stdexcept>
#include <string>

namespace bubblesim::hw {

class GpuError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

[[noreturn]] inline void gpu_fail(const char* file, int line, const char* call, const std::string& what) {
  throw GpuError(std::string(file) + ":" + std::to_string(line) + ": " + call + ": " + what);
}

/// Runs `setup`, then every party (rank or thread) says whether its own setup worked through
/// `agree`, which returns whether all did (a null `agree`: this party alone). On a failure
/// anywhere `undo` runs, then this party's error is rethrown, or GpuError(`others_failed`) when
/// only another party failed: nobody goes on to wait for a peer that has stopped.
inline void setup_agreed(const std::function<void()>& setup, const std::function<bool(bool)>& agree,
                         const std::function<void()>& undo, const std::string& others_failed) {
  std::exception_ptr failed;
  try {
    setup();
  } catch (...) {
    failed = std::current_exception();
  }
  const bool everyone = agree ? agree(!failed) : !failed;
  if (!failed && everyone) return;
  undo();
  if (failed) std::rethrow_exception(failed);
  throw GpuError(others_failed);
}

inline void check_cuda(cudaError_t e, const char* file, int line, const char* call) {
  if (e != cudaSuccess) gpu_fail(file, line, call, std::string(cudaGetErrorName(e)) + ": " + cudaGetErrorString(e));
}

inline void check_cublas(cublasStatus_t s, const char* file, int line, const char* call) {
  if (s != CUBLAS_STATUS_SUCCESS) {
    gpu_fail(file, line, call, std::string(cublasGetStatusName(s)) + ": " + cublasGetStatusString(s));
  }
}

}  // namespace bubblesim::hw

#define BUBBLESIM_CUDA(call) ::bubblesim::hw::check_cuda((call), __FILE__, __LINE__, #call)
#define BUBBLESIM_CUBLAS(call) ::bubblesim::hw::check_cublas((call), __FILE__, __LINE__, #call)
