// The GPU kernels against a plain double-precision oracle on the same bf16-rounded inputs (the
// mask semantics of hw/backend/attention_mask.hpp, which the host kernels share): attention
// forward (output and log-sum-exp) and backward (dQ, dK, dV, added into what was there), on
// tensor cores and on CUDA cores, for several head dims, lengths that are not multiples of the
// tiles and one long causal case, and masks (none, causal, causal with a shift, ring-layout
// positions, rows with no allowed key); bf16 GEMMs; every op class through GpuCompute; then the
// throughput of a few transformer-sized ops (attention with both kernel families), for the
// record.
// Needs only the CUDA runtime and cuBLAS, so the binary can be carried to a GPU machine as it is.
// Exits 77 (CTest: skipped) when there is no usable GPU.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "hw/cuda/attention.hpp"
#include "hw/cuda/cuda_check.hpp"
#include "hw/cuda/gpu_compute.hpp"
#include "hw/backend/attention_mask.hpp"
#include "tests/support/attention_oracle.hpp"

using namespace bubblesim::hw;

namespace {

int failures = 0;

void expect(bool ok, const std::string& what) {
  if (!ok) {
    ++failures;
    std::fprintf(stderr, "FAILED: %s\n", what.c_str());
  }
}

template <class T>
T* to_device(const std::vector<T>& host) {
  T* d = nullptr;
  BUBBLESIM_CUDA(cudaMalloc(&d, std::max<size_t>(host.size(), 1) * sizeof(T)));
  BUBBLESIM_CUDA(cudaMemcpy(d, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice));
  return d;
}

template <class T>
std::vector<T> to_host(const T* d, size_t n) {
  std::vector<T> h(n);
  BUBBLESIM_CUDA(cudaMemcpy(h.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost));
  return h;
}

/// Random values in [-1, 1] rounded to bf16: the floats the host computes on, the bf16 the GPU does.
std::vector<float> random_bf16_values(size_t n, std::mt19937& rng, std::vector<__nv_bfloat16>& as_bf16) {
  std::uniform_real_distribution<float> u(-1.0F, 1.0F);
  std::vector<float> f(n);
  as_bf16.resize(n);
  for (size_t i = 0; i < n; ++i) {
    as_bf16[i] = __float2bfloat16(u(rng));
    f[i] = __bfloat162float(as_bf16[i]);
  }
  return f;
}

void check_attention(const std::string& name, const AttentionDims& d, const AttentionMask& mask,
                     cuda::AttentionKernel kernel) {
  std::mt19937 rng(42);
  const size_t qn = d.heads * d.q_len * d.head_dim, kn = d.heads * d.kv_len * d.head_dim;
  const size_t rows = d.heads * d.q_len;
  std::vector<__nv_bfloat16> qb, kb, vb;
  const auto q = random_bf16_values(qn, rng, qb), k = random_bf16_values(kn, rng, kb), v = random_bf16_values(kn, rng, vb);
  std::vector<float> dout(qn);
  std::uniform_real_distribution<float> u(-1.0F, 1.0F);
  for (float& x : dout) x = u(rng);

  // The gradients start from the same non-zero values on both sides: the kernels add into them.
  std::vector<float> out(qn), lse(rows), dq(qn), dk(kn), dv(kn);
  for (float& x : dq) x = u(rng);
  for (float& x : dk) x = u(rng);
  for (float& x : dv) x = u(rng);
  const std::vector<float> dq0 = dq, dk0 = dk, dv0 = dv;
  test::reference_forward(d, mask, q, k, v, out, lse);
  test::reference_backward(d, mask, q, k, v, out, lse, dout, dq, dk, dv);

  __nv_bfloat16 *gq = to_device(qb), *gk = to_device(kb), *gv = to_device(vb);
  int64_t* gqp = mask.q_pos.empty() ? nullptr : to_device(mask.q_pos);
  int64_t* gkp = mask.kv_pos.empty() ? nullptr : to_device(mask.kv_pos);
  float *gout = to_device(std::vector<float>(qn)), *glse = to_device(std::vector<float>(rows));
  float *gdout = to_device(dout), *gdq = to_device(dq0);
  float *gdk = to_device(dk0), *gdv = to_device(dv0);
  float* gdelta = to_device(std::vector<float>(rows));
  const cuda::DeviceMask dm{mask.causal, gqp, gkp};
  cuda::attention_forward(d, dm, gq, gk, gv, gout, glse, nullptr, kernel);
  cuda::attention_backward(d, dm, gq, gk, gv, gout, glse, gdout, gdq, gdk, gdv, gdelta, nullptr, kernel);
  BUBBLESIM_CUDA(cudaDeviceSynchronize());

  const double e_out = test::max_error(to_host(gout, qn), out),
               e_lse = test::max_error(to_host(glse, rows), lse, false);
  // Compared as increments over the starting values: an overwrite instead of an add fails, and
  // the gradients' own precision is not hidden under the starting values' size.
  auto increment = [](std::vector<float> after, const std::vector<float>& before) {
    for (size_t i = 0; i < after.size(); ++i) after[i] -= before[i];
    return after;
  };
  const double e_dq = test::max_error(increment(to_host(gdq, qn), dq0), increment(dq, dq0));
  const double e_dk = test::max_error(increment(to_host(gdk, kn), dk0), increment(dk, dk0));
  const double e_dv = test::max_error(increment(to_host(gdv, kn), dv0), increment(dv, dv0));
  std::printf("%-28s out %.1e  lse %.1e  dq %.1e  dk %.1e  dv %.1e\n", name.c_str(), e_out, e_lse, e_dq, e_dk, e_dv);
  // CUDA cores: fp32 math (fast exp) vs double on identical bf16 inputs. Tensor cores: P, dO and
  // dS rounded to bf16 as FlashAttention-2 does (the CPU emulation of these kernels measures
  // 1-2e-3 forward and 2-4e-3 backward; tests/attention_emulated_test).
  const bool tc = kernel == cuda::AttentionKernel::TensorCore;
  const double forward_tolerance = tc ? 5e-3 : 2e-3, backward_tolerance = tc ? 1e-2 : 2e-3;
  // lse absolutely: dropping one of n keys moves it by about 1/n, far above this.
  expect(e_out <= forward_tolerance && e_lse <= 1e-4, name + ": forward differs from the host reference");
  expect(e_dq <= backward_tolerance && e_dk <= backward_tolerance && e_dv <= backward_tolerance,
         name + ": backward differs");
  for (void* p : {static_cast<void*>(gq), static_cast<void*>(gk), static_cast<void*>(gv), static_cast<void*>(gqp),
                  static_cast<void*>(gkp), static_cast<void*>(gout), static_cast<void*>(glse),
                  static_cast<void*>(gdout), static_cast<void*>(gdq), static_cast<void*>(gdk), static_cast<void*>(gdv),
                  static_cast<void*>(gdelta)}) {
    cudaFree(p);
  }
}

void check_gemm() {
  std::mt19937 rng(7);
  const int64_t m = 70, n = 130, k = 90, batch = 2;
  std::vector<__nv_bfloat16> ab, bb;
  const auto a = random_bf16_values(batch * m * k, rng, ab), b = random_bf16_values(batch * k * n, rng, bb);
  std::vector<float> c(batch * m * n);
  for (int64_t bi = 0; bi < batch; ++bi) {
    for (int64_t i = 0; i < m; ++i) {
      for (int64_t j = 0; j < n; ++j) {
        double acc = 0;
        for (int64_t x = 0; x < k; ++x) acc += double(a[(bi * m + i) * k + x]) * b[(bi * k + x) * n + j];
        c[(bi * m + i) * n + j] = static_cast<float>(acc);
      }
    }
  }
  __nv_bfloat16 *ga = to_device(ab), *gb = to_device(bb), *gc = to_device(std::vector<__nv_bfloat16>(batch * m * n));
  cublasHandle_t blas;
  BUBBLESIM_CUBLAS(cublasCreate(&blas));
  cuda::gemm(blas, ga, gb, gc, m, n, k, batch);
  BUBBLESIM_CUDA(cudaDeviceSynchronize());
  std::vector<float> got;
  for (const __nv_bfloat16 x : to_host(gc, c.size())) got.push_back(__bfloat162float(x));
  const double e = test::max_error(got, c);
  std::printf("%-28s c %.1e\n", "gemm 70x130x90 batch 2", e);
  expect(e <= 1e-2, "gemm differs from the oracle beyond bf16 output rounding");
  cublasDestroy(blas);
  cudaFree(ga);
  cudaFree(gb);
  cudaFree(gc);
}

void check_compute() {
  cuda::GpuCompute gpu(0);
  const bubblesim::sim::OpWork ops[] = {
      {"gemm", {256, 512, 128, 2, 0}, 0, 0, 0},
      {"attention", {1, 200, 300, 4, 64}, 0.5, 0, 0},
      {"attention_grad", {2, 128, 128, 2, 128}, 1.0, 0, 0},
      {"memory", {}, 0, 0, 1 << 20},
  };
  for (const auto& w : ops) gpu.run(w);
  gpu.synchronize();
  bool refused = false;
  try {
    gpu.run({"attention", {1, 64, 64, 1, 96}, 1.0, 0, 0});
  } catch (const std::exception& e) {
    refused = std::string(e.what()).find("head dim 96") != std::string::npos;
  }
  expect(refused, "an unsupported head dim is refused by name");
  std::printf("GpuCompute: every op class ran\n");
}

/// Throughput of a few transformer-sized ops (CUDA events, second of two runs), for the record.
void report_throughput() {
  cuda::GpuCompute gpu(0, cuda::GpuCompute::kMaxBytes, cuda::AttentionKernel::TensorCore);
  struct Case {
    const char* name;
    bubblesim::sim::OpWork work;
    double per_second_unit;  // FLOPs (or bytes) of one op
    const char* unit;
  };
  const double attn = 4.0 * 32 * 128 * 4096.0 * 4096.0;  // 4 b s^2 h d, heads 32, hd 128
  const Case cases[] = {
      {"gemm 8192^3 bf16", {"gemm", {8192, 8192, 8192, 1, 0}, 0, 0, 0}, 2.0 * 8192 * 8192 * 8192, "TFLOP/s"},
      {"gemm 4096x4096x14336", {"gemm", {4096, 14336, 4096, 1, 0}, 0, 0, 0}, 2.0 * 4096 * 14336 * 4096, "TFLOP/s"},
      {"attention fwd 4K, causal", {"attention", {1, 4096, 4096, 32, 128}, 0.5, 0, 0}, attn * 0.5, "TFLOP/s"},
      {"attention fwd 4K, full", {"attention", {1, 4096, 4096, 32, 128}, 1.0, 0, 0}, attn, "TFLOP/s"},
      {"attention bwd 4K, causal", {"attention_grad", {1, 4096, 4096, 32, 128}, 0.5, 0, 0}, attn * 0.5 * 2.5, "TFLOP/s"},
      {"memory 1 GiB", {"memory", {}, 0, 0, double(int64_t{1} << 30)}, double(int64_t{1} << 30), "GB/s"},
  };
  const auto report = [](cuda::GpuCompute& on, const Case& c) {
    const double t = on.time(c.work);
    const double rate = c.per_second_unit / t / (std::string(c.unit) == "GB/s" ? 1e9 : 1e12);
    const std::string name = std::string(c.work.op_class).rfind("attention", 0) == 0
                                 ? std::string(c.name) + " (" + cuda::to_string(on.attention_kernel()) + ")"
                                 : c.name;
    std::printf("%-40s %10.3f ms  %8.1f %s\n", name.c_str(), t * 1e3, rate, c.unit);
  };
  for (const Case& c : cases) report(gpu, c);
  // The CUDA-core kernels on the same attention ops, for comparison.
  cuda::GpuCompute cuda_cores(0, cuda::GpuCompute::kMaxBytes, cuda::AttentionKernel::CudaCore);
  for (const Case& c : cases) {
    if (std::string(c.work.op_class).rfind("attention", 0) == 0) report(cuda_cores, c);
  }
}

}  // namespace

int main() {
  std::string why;
  if (cuda::device_count(&why) == 0) {
    std::printf("no usable CUDA GPU here (%s): skipped\n", why.c_str());
    return 77;
  }
  try {
    for (const int64_t hd : {32, 64, 128}) {
      for (const auto& [name, mask] : test::kernel_masks()) {
        for (const auto kernel : {cuda::AttentionKernel::TensorCore, cuda::AttentionKernel::CudaCore}) {
          check_attention(cuda::to_string(kernel) + ", " + name + " hd" + std::to_string(hd), {2, 100, 150, hd}, mask,
                          kernel);
        }
      }
    }
    // Long enough for many key tiles per block and many key blocks adding into each dQ row (the
    // CPU emulation measured 1.1e-3 / 4.3e-3 at 700 x 700 on tensor cores).
    for (const auto kernel : {cuda::AttentionKernel::TensorCore, cuda::AttentionKernel::CudaCore}) {
      check_attention(cuda::to_string(kernel) + ", causal 1000 x 1000 hd128", {4, 1000, 1000, 128}, AttentionMask{},
                      kernel);
    }
    check_gemm();
    check_compute();
    report_throughput();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  std::printf(failures == 0 ? "all GPU kernel checks passed\n" : "%d GPU kernel check(s) failed\n", failures);
  return failures == 0 ? 0 : 1;
}
