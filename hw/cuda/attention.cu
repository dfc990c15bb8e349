#include "hw/cuda/attention.hpp"

#include <algorithm>
#include <cfloat>
#include <climits>
#include <cmath>
#include <cstdlib>
#include <set>
#include <string>
#include <utility>

#include "hw/cuda/cuda_check.hpp"
// The device primitives come before the kernels written against them.
// clang-format off
#include "hw/cuda/device_dialect.cuh"
#include "hw/cuda/flash_attention.cuh"
#include "hw/cuda/simt_attention.cuh"
// clang-format on
#include "sim/core/error.hpp"

namespace bubblesim::hw::cuda {
namespace {

constexpr float kFill = 0.01F; // the host arena's scale: no overflow in softmax

/// delta_i = sum_c dO_ic O_ic, one thread per row.
template <int D>
__global__ void delta_kernel(int64_t rows, const float* out, const float* dout, float* delta) {
  for (int64_t r = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; r < rows;
       r += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    float sum = 0.0F;
    for (int c = 0; c < D; ++c) sum += out[r * D + c] * dout[r * D + c];
    delta[r] = sum;
  }
}

__global__ void fill_kernel(float* x, int64_t n, float value) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    x[i] = value;
  }
}

template <class T>
__global__ void pattern_kernel(T* x, int64_t n) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    // 1..97 / 97: never 0, so fp32 views of bf16 pairs are not denormal either.
    x[i] = static_cast<T>(kFill * static_cast<float>((static_cast<uint64_t>(i) * 2654435761U) % 97 + 1) / 97.0F);
  }
}

unsigned grid_for(int64_t n, int block) {
  return static_cast<unsigned>(std::min<int64_t>((n + block - 1) / block, 65535));
}

Shape shape_of(const AttentionDims& d) {
  if (d.heads < 0 || d.q_len < 0 || d.kv_len < 0) throw InputError("attention: negative dimensions");
  if (d.heads > 65535 || d.q_len > INT_MAX || d.kv_len > INT_MAX) {
    throw InputError("attention: " + std::to_string(d.heads) + " heads of " + std::to_string(d.q_len) + " x " +
                     std::to_string(d.kv_len) + " is beyond what the GPU kernels index");
  }
  return {static_cast<int>(d.heads), static_cast<int>(d.q_len), static_cast<int>(d.kv_len),
          1.0F / std::sqrt(static_cast<float>(d.head_dim))};
}

dim3 blocks(int64_t len, int per_block, int64_t heads) {
  return dim3(static_cast<unsigned>((len + per_block - 1) / per_block), static_cast<unsigned>(heads));
}

/// Lets `kernel` use `bytes` of dynamic shared memory (above 48 KB needs asking, per device), once
/// per device and thread, so no host call lands between the timed launches.
template <class Kernel>
void allow_shared(Kernel* kernel, size_t bytes) {
  thread_local std::set<std::pair<const void*, int>> allowed;  // (kernel, device)
  int device = 0;
  BUBBLESIM_CUDA(cudaGetDevice(&device));
  const std::pair<const void*, int> key{reinterpret_cast<const void*>(kernel), device};
  if (allowed.count(key) != 0) return;
  BUBBLESIM_CUDA(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)));
  allowed.insert(key);
}

template <int D>
void forward(const AttentionDims& d, const DeviceMask& m, const __nv_bfloat16* q, const __nv_bfloat16* k,
             const __nv_bfloat16* v, float* out, float* lse, cudaStream_t s, AttentionKernel kind) {
  const Shape z = shape_of(d);
  if (d.heads == 0 || d.q_len == 0) return;
  if (kind == AttentionKernel::CudaCore) {
    simt::forward_kernel<D>
        <<<blocks(d.q_len, simt::kFwdRows, d.heads), simt::kFwdRows, 0, s>>>(z, m, q, k, v, out, lse);
  } else {
    constexpr int kKeys = flash::forward_keys(D);
    constexpr size_t kShared = flash::ForwardLayout<D, kKeys>::bytes;
    allow_shared(flash::forward<D, kKeys>, kShared);
    flash::forward<D, kKeys><<<blocks(d.q_len, flash::kRows, d.heads), flash::kThreads, kShared, s>>>(z, m, q, k, v,
                                                                                                        out, lse);
  }
  BUBBLESIM_CUDA(cudaGetLastError());
}

template <int D>
void backward(const AttentionDims& d, const DeviceMask& m, const __nv_bfloat16* q, const __nv_bfloat16* k,
              const __nv_bfloat16* v, const float* out, const float* lse, const float* dout, float* dq, float* dk,
              float* dv, float* delta, cudaStream_t s, AttentionKernel kind) {
  const Shape z = shape_of(d);
  if (d.heads == 0 || d.q_len == 0 || d.kv_len == 0) return;
  const int64_t rows = d.heads * d.q_len;
  delta_kernel<D><<<grid_for(rows, 256), 256, 0, s>>>(rows, out, dout, delta);
  BUBBLESIM_CUDA(cudaGetLastError());
  if (kind == AttentionKernel::CudaCore) {
    simt::dkdv_kernel<D>
        <<<blocks(d.kv_len, simt::kKvRows, d.heads), simt::kKvRows, 0, s>>>(z, m, q, k, v, lse, dout, delta, dk, dv);
    BUBBLESIM_CUDA(cudaGetLastError());
    simt::dq_kernel<D>
        <<<blocks(d.q_len, simt::kDqRows, d.heads), simt::kDqRows, 0, s>>>(z, m, q, k, v, lse, dout, delta, dq);
  } else {
    constexpr int kQueries = flash::backward_queries(D);
    constexpr size_t kShared = flash::BackwardLayout<D, kQueries>::bytes;
    allow_shared(flash::backward<D, kQueries>, kShared);
    flash::backward<D, kQueries><<<blocks(d.kv_len, flash::kRows, d.heads), flash::kThreads, kShared, s>>>(
        z, m, q, k, v, lse, dout, delta, dq, dk, dv);
  }
  BUBBLESIM_CUDA(cudaGetLastError());
}

[[noreturn]] void unsupported(int64_t head_dim) {
  throw InputError("attention: head dim " + std::to_string(head_dim) +
                   " has no GPU kernel (built for 32, 64 and 128)");
}

}  // namespace

bool supported_head_dim(int64_t head_dim) { return head_dim == 32 || head_dim == 64 || head_dim == 128; }

std::string to_string(AttentionKernel kernel) {
  return kernel == AttentionKernel::TensorCore ? "tensor-core" : "cuda-core";
}

AttentionKernel attention_kernel_from_environment() {
  const char* name = std::getenv("BUBBLESIM_ATTENTION_KERNEL");
  if (name == nullptr || *name == '\0') return AttentionKernel::TensorCore;
  for (const AttentionKernel k : {AttentionKernel::TensorCore, AttentionKernel::CudaCore}) {
    if (to_string(k) == name) return k;
  }
  throw InputError(std::string("BUBBLESIM_ATTENTION_KERNEL=") + name + ": unknown attention kernel (valid: tensor-core, cuda-core)");
}

void attention_forward(const AttentionDims& d, const DeviceMask& m, const __nv_bfloat16* q, const __nv_bfloat16* k,
                       const __nv_bfloat16* v, float* out, float* lse, cudaStream_t stream, AttentionKernel kernel) {
  switch (d.head_dim) {
    case 32: return forward<32>(d, m, q, k, v, out, lse, stream, kernel);
    case 64: return forward<64>(d, m, q, k, v, out, lse, stream, kernel);
    case 128: return forward<128>(d, m, q, k, v, out, lse, stream, kernel);
    default: unsupported(d.head_dim);
  }
}

void attention_backward(const AttentionDims& d, const DeviceMask& m, const __nv_bfloat16* q, const __nv_bfloat16* k,
                        const __nv_bfloat16* v, const float* out, const float* lse, const float* dout, float* dq,
                        float* dk, float* dv, float* delta, cudaStream_t stream, AttentionKernel kernel) {
  switch (d.head_dim) {
    case 32: return backward<32>(d, m, q, k, v, out, lse, dout, dq, dk, dv, delta, stream, kernel);
    case 64: return backward<64>(d, m, q, k, v, out, lse, dout, dq, dk, dv, delta, stream, kernel);
    case 128: return backward<128>(d, m, q, k, v, out, lse, dout, dq, dk, dv, delta, stream, kernel);
    default: unsupported(d.head_dim);
  }
}

void fill(float* x, int64_t n, float value, cudaStream_t stream) {
  if (n <= 0) return;
  fill_kernel<<<grid_for(n, 256), 256, 0, stream>>>(x, n, value);
  BUBBLESIM_CUDA(cudaGetLastError());
}

void fill_pattern(__nv_bfloat16* x, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  pattern_kernel<<<grid_for(n, 256), 256, 0, stream>>>(x, n);
  BUBBLESIM_CUDA(cudaGetLastError());
}

void fill_pattern(float* x, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  pattern_kernel<<<grid_for(n, 256), 256, 0, stream>>>(x, n);
  BUBBLESIM_CUDA(cudaGetLastError());
}

}  // namespace bubblesim::hw::cuda
