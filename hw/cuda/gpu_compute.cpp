#include "hw/cuda/gpu_compute.hpp"

#include <algorithm>
#include <climits>
#include <cstdio>
#include <cmath>
#include <string>
#include <vector>

#include "hw/cuda/cuda_check.hpp"
#include "sim/core/error.hpp"

namespace bubblesim::hw::cuda {
namespace {

constexpr int64_t kAlign = 256;

int64_t aligned(int64_t bytes) { return (bytes + kAlign - 1) / kAlign * kAlign; }

}  // namespace

void gemm(cublasHandle_t blas, const __nv_bfloat16* a, const __nv_bfloat16* b, __nv_bfloat16* c, int64_t m, int64_t n,
          int64_t k, int64_t batch) {
  if (m > INT_MAX || n > INT_MAX || k > INT_MAX || batch > INT_MAX) {
    throw InputError("gemm: " + std::to_string(m) + " x " + std::to_string(n) + " x " + std::to_string(k) +
                     " is beyond what cuBLAS indexes");
  }
  // Row-major C[m,n] = A[m,k] B[k,n] is column-major C^T = B^T A^T.
  const float one = 1.0F, zero = 0.0F;
  BUBBLESIM_CUBLAS(cublasGemmStridedBatchedEx(blas, CUBLAS_OP_N, CUBLAS_OP_N, static_cast<int>(n), static_cast<int>(m),
                                              static_cast<int>(k), &one, b, CUDA_R_16BF, static_cast<int>(n), k * n, a,
                                              CUDA_R_16BF, static_cast<int>(k), m * k, &zero, c, CUDA_R_16BF,
                                              static_cast<int>(n), m * n, static_cast<int>(batch), CUBLAS_COMPUTE_32F,
                                              CUBLAS_GEMM_DEFAULT));
}

int device_count(std::string* why) {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    if (why != nullptr) *why = std::string(cudaGetErrorName(e)) + ": " + cudaGetErrorString(e);
    (void)cudaGetLastError();  // clear the sticky "no device / no driver" error
    return 0;
  }
  if (n == 0 && why != nullptr) *why = "the CUDA runtime sees no device";
  return n;
}

GpuCompute::GpuCompute(int device, int64_t max_bytes, AttentionKernel kernel)
    : attention_kernel_(kernel), device_(device), max_bytes_(max_bytes) {
  try {
    BUBBLESIM_CUDA(cudaSetDevice(device_));
    BUBBLESIM_CUDA(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    BUBBLESIM_CUBLAS(cublasCreate(&blas_));
    BUBBLESIM_CUBLAS(cublasSetStream(blas_, stream_));
    BUBBLESIM_CUDA(cudaEventCreate(&start_));
    BUBBLESIM_CUDA(cudaEventCreate(&end_));
  } catch (...) {
    release();
    throw;
  }
}

GpuCompute::~GpuCompute() { release(); }

void GpuCompute::release() noexcept {
  // Errors here cannot be reported; the process is ending or unwinding anyway.
  cudaSetDevice(device_);
  if (stream_ != nullptr) cudaStreamSynchronize(stream_);
  for (auto& [key, pos] : masks_) cudaFree(pos);
  masks_.clear();
  cudaFree(arena_);
  arena_ = nullptr;
  if (blas_ != nullptr) cublasDestroy(blas_);
  if (start_ != nullptr) cudaEventDestroy(start_);
  if (end_ != nullptr) cudaEventDestroy(end_);
  if (stream_ != nullptr) cudaStreamDestroy(stream_);
  blas_ = nullptr;
  start_ = end_ = nullptr;
  stream_ = nullptr;
}

void GpuCompute::synchronize() { BUBBLESIM_CUDA(cudaStreamSynchronize(stream_)); }

double GpuCompute::time(const sim::OpWork& work) {
  run(work);  // buffers and masks are ready before the timed launch
  synchronize();
  BUBBLESIM_CUDA(cudaEventRecord(start_, stream_));
  run(work);
  BUBBLESIM_CUDA(cudaEventRecord(end_, stream_));
  BUBBLESIM_CUDA(cudaEventSynchronize(end_));
  float ms = 0;
  BUBBLESIM_CUDA(cudaEventElapsedTime(&ms, start_, end_));
  return ms * 1e-3;
}

nlohmann::json gpu_environment(int device) {
  cudaDeviceProp p{};
  BUBBLESIM_CUDA(cudaGetDeviceProperties(&p, device));
  int driver = 0, runtime = 0, clock_khz = 0, memory_khz = 0;
  BUBBLESIM_CUDA(cudaDriverGetVersion(&driver));
  BUBBLESIM_CUDA(cudaRuntimeGetVersion(&runtime));
  BUBBLESIM_CUDA(cudaDeviceGetAttribute(&clock_khz, cudaDevAttrClockRate, device));
  BUBBLESIM_CUDA(cudaDeviceGetAttribute(&memory_khz, cudaDevAttrMemoryClockRate, device));
  int cublas = 0;
  BUBBLESIM_CUBLAS(cublasGetProperty(MAJOR_VERSION, &cublas));
  int minor = 0, patch = 0;
  BUBBLESIM_CUBLAS(cublasGetProperty(MINOR_VERSION, &minor));
  BUBBLESIM_CUBLAS(cublasGetProperty(PATCH_LEVEL, &patch));
  auto version = [](int v) { return std::to_string(v / 1000) + "." + std::to_string(v % 1000 / 10); };
  nlohmann::json env{{"gpu", p.name},
                     {"device", device},
                     {"compute_capability", std::to_string(p.major) + "." + std::to_string(p.minor)},
                     {"memory_bytes", p.totalGlobalMem},
                     {"sms", p.multiProcessorCount},
                     {"sm_clock_mhz", clock_khz / 1000},
                     {"memory_clock_mhz", memory_khz / 1000},
                     {"driver", version(driver)},
                     {"cuda_runtime", version(runtime)},
                     {"cublas", std::to_string(cublas) + "." + std::to_string(minor) + "." + std::to_string(patch)},
                     {"attention_kernel", to_string(attention_kernel_from_environment())}};
  if (FILE* smi = popen("nvidia-smi topo -m 2>/dev/null", "r")) {
    std::string topo;
    char buf[512];
    while (fgets(buf, sizeof buf, smi) != nullptr) topo += buf;
    if (pclose(smi) == 0 && !topo.empty()) env["nvidia_smi_topo"] = topo;
  }
  return env;
}

int64_t GpuCompute::arena_bytes(const sim::OpWork& w) {
  const std::string cls = w.op_class;
  const auto& s = w.shape;
  if (cls == "gemm") {
    const int64_t m = s[0], n = s[1], k = s[2], batch = std::max<int64_t>(s[3], 1);
    if (m <= 0 || n <= 0 || k <= 0) return 0;
    return aligned(batch * m * k * 2) + aligned(batch * k * n * 2) + aligned(batch * m * n * 2);
  }
  if (cls == "attention" || cls == "attention_grad") {
    const int64_t heads = s[3], q_len = s[1], kv_len = s[2], head_dim = s[4];
    const int64_t qn = heads * q_len * head_dim, kn = heads * kv_len * head_dim, rows = heads * q_len;
    const int64_t q_b = aligned(qn * 2), kv_b = aligned(kn * 2), out_b = aligned(qn * 4), lse_b = aligned(rows * 4);
    const int64_t grad_b = cls == "attention_grad" ? 2 * out_b + aligned(kn * 4) * 2 + lse_b : 0;
    return q_b + 2 * kv_b + out_b + lse_b + grad_b;
  }
  if (cls == "memory") {
    const auto bytes = static_cast<int64_t>(w.bytes);
    return bytes < 2 ? 0 : aligned(bytes / 2) * 2;
  }
  return 0;
}

void GpuCompute::prepare(const sim::OpWork& w) {
  BUBBLESIM_ASSERT(!frozen_, "GpuCompute::prepare after freeze()");
  buffer(arena_bytes(w));
  const std::string cls = w.op_class;
  if (cls == "attention" || cls == "attention_grad") mask(w.shape[1], w.shape[2], w.causal_fraction);
}

char* GpuCompute::buffer(int64_t bytes) {
  if (frozen_ && bytes > arena_bytes_) {
    throw InternalError("GPU compute: an op needs more buffer than prepared (" + std::to_string(bytes) + " > " +
                        std::to_string(arena_bytes_) + " bytes); growing it now would synchronise the device");
  }
  if (bytes > max_bytes_) {
    throw InputError("an op needs " + std::to_string(bytes >> 20) + " MiB of GPU buffers, more than the " +
                     std::to_string(max_bytes_ >> 20) + " MiB the GPU backend allows here");
  }
  if (bytes > arena_bytes_) {
    BUBBLESIM_CUDA(cudaDeviceSynchronize());  // ops on any stream may still use the old arena
    BUBBLESIM_CUDA(cudaFree(arena_));
    arena_ = nullptr;
    arena_bytes_ = 0;
    const cudaError_t e = cudaMalloc(&arena_, static_cast<size_t>(bytes));
    if (e == cudaErrorMemoryAllocation) {
      (void)cudaGetLastError();
      throw InputError("an op needs " + std::to_string(bytes >> 20) + " MiB of GPU memory, more than is free");
    }
    BUBBLESIM_CUDA(e);
    arena_bytes_ = bytes;
    // Small non-zero values (bf16, so fp32 views are normal too). Once ops have run, the values
    // are whatever they wrote: meaningless, as the work is what is measured.
    fill_pattern(reinterpret_cast<__nv_bfloat16*>(arena_), bytes / 2, stream_);
    BUBBLESIM_CUDA(cudaStreamSynchronize(stream_));  // before ops on other streams read it
  }
  return arena_;
}

DeviceMask GpuCompute::mask(int64_t q_len, int64_t kv_len, double fraction) {
  if (fraction >= 1) return DeviceMask{false, nullptr, nullptr};
  const auto key = std::make_tuple(q_len, kv_len, static_cast<int64_t>(std::llround(fraction * 1e6)));
  auto it = masks_.find(key);
  if (it == masks_.end()) {
    if (frozen_) throw InternalError("GPU compute: an attention mask was not prepared; making it now would synchronise");
    const AttentionMask m = mask_for(q_len, kv_len, fraction);
    const size_t bytes = m.q_pos.size() * sizeof(int64_t);
    int64_t* pos = nullptr;
    BUBBLESIM_CUDA(cudaMalloc(&pos, bytes));
    // On this object's stream, complete before any stream (replay streams too) reads it.
    cudaError_t e = cudaMemcpyAsync(pos, m.q_pos.data(), bytes, cudaMemcpyHostToDevice, stream_);
    if (e == cudaSuccess) e = cudaStreamSynchronize(stream_);
    if (e != cudaSuccess) {
      cudaFree(pos);
      BUBBLESIM_CUDA(e);
    }
    it = masks_.emplace(key, pos).first;
  }
  return DeviceMask{true, it->second, nullptr};
}

void GpuCompute::run(const sim::OpWork& w, cudaStream_t on) {
  cudaStream_t stream = on != nullptr ? on : stream_;
  const std::string cls = w.op_class;
  const auto& s = w.shape;
  if (cls == "gemm") {
    const int64_t m = s[0], n = s[1], k = s[2], batch = std::max<int64_t>(s[3], 1);
    if (m <= 0 || n <= 0 || k <= 0) return;
    const int64_t a_bytes = aligned(batch * m * k * 2), b_bytes = aligned(batch * k * n * 2);
    char* base = buffer(arena_bytes(w));
    BUBBLESIM_CUBLAS(cublasSetStream(blas_, stream));
    gemm(blas_, reinterpret_cast<__nv_bfloat16*>(base), reinterpret_cast<__nv_bfloat16*>(base + a_bytes),
         reinterpret_cast<__nv_bfloat16*>(base + a_bytes + b_bytes), m, n, k, batch);
    BUBBLESIM_CUBLAS(cublasSetStream(blas_, stream_));
    return;
  }
  if (cls == "attention" || cls == "attention_grad") {
    const AttentionDims d{s[3], s[1], s[2], s[4]};
    if (!supported_head_dim(d.head_dim)) {
      throw InputError("attention: head dim " + std::to_string(d.head_dim) +
                       " has no GPU kernel (built for 32, 64 and 128)");
    }
    const bool grad = cls == "attention_grad";
    const int64_t qn = d.heads * d.q_len * d.head_dim, kn = d.heads * d.kv_len * d.head_dim;
    const int64_t rows = d.heads * d.q_len;
    // bf16 q, k, v; fp32 out, lse (+ dout, dq, dk, dv, delta for the backward)
    const int64_t q_b = aligned(qn * 2), kv_b = aligned(kn * 2), out_b = aligned(qn * 4), lse_b = aligned(rows * 4);
    char* p = buffer(arena_bytes(w));
    auto* q = reinterpret_cast<__nv_bfloat16*>(p);
    auto* k = reinterpret_cast<__nv_bfloat16*>(p + q_b);
    auto* v = reinterpret_cast<__nv_bfloat16*>(p + q_b + kv_b);
    auto* out = reinterpret_cast<float*>(p + q_b + 2 * kv_b);
    auto* lse = reinterpret_cast<float*>(p + q_b + 2 * kv_b + out_b);
    const DeviceMask m = mask(d.q_len, d.kv_len, w.causal_fraction);
    for (int64_t b = 0; b < std::max<int64_t>(s[0], 1); ++b) {
      if (!grad) {
        attention_forward(d, m, q, k, v, out, lse, stream, attention_kernel_);
        continue;
      }
      char* g = p + q_b + 2 * kv_b + out_b + lse_b;
      auto* dout = reinterpret_cast<float*>(g);
      auto* dq = reinterpret_cast<float*>(g + out_b);
      auto* dk = reinterpret_cast<float*>(g + 2 * out_b);
      auto* dv = reinterpret_cast<float*>(g + 2 * out_b + aligned(kn * 4));
      auto* delta = reinterpret_cast<float*>(g + 2 * out_b + 2 * aligned(kn * 4));
      // A plausible log-sum-exp (every score ~0 over kv keys), so probabilities stay ~1/kv.
      fill(lse, rows, std::log(static_cast<float>(std::max<int64_t>(d.kv_len, 1))), stream);
      attention_backward(d, m, q, k, v, out, lse, dout, dq, dk, dv, delta, stream, attention_kernel_);
    }
    return;
  }
  if (cls == "memory") {
    const auto bytes = static_cast<int64_t>(w.bytes);
    if (bytes < 2) return;
    char* a = buffer(arena_bytes(w));
    BUBBLESIM_CUDA(cudaMemcpyAsync(a + aligned(bytes / 2), a, static_cast<size_t>(bytes / 2), cudaMemcpyDeviceToDevice,
                                   stream));
    return;
  }
  throw InputError("the GPU backend has no kernel for op class \"" + cls + "\"");
}

}  // namespace bubblesim::hw::cuda
