// CUDA, cuBLAS and NCCL errors as exceptions naming the call's file:line and the library's own
// message, so a failing rank can report it and stop the others.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

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
