// The GPU kernels against a plain double-precision oracle on the same bf16-rounded inputs (the
// mask semantics of hw/backend/attention_mask.hpp, which the host kernels share): attention
// forward (output and log-sum-exp) and backward (dQ, dK, dV, added into what was there) for
// several head dims, lengths that are not multiples of the tiles, and masks (none, causal, causal
// with a shift, ring-layout positions, rows with no allowed key); bf16 GEMMs; every op class
// through GpuCompute; then the throughput of a few transformer-sized ops, for the record.
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

using namespace bubblesim::hw;

namespace {

int failures = 0;

void expect(bool ok, const std::string& what) {
  if (!ok) {
    ++failures;
    std::fprintf(stderr, "FAILED: %s\n", what.c_str());
  }
}

/// Largest |a - b|, relative to the largest |b| (`relative`, 0 when both are all 0) or absolute;
/// -inf must match -inf and a NaN anywhere is an infinite error.
double max_error(const std::vector<float>& a, const std::vector<float>& b, bool relative = true) {
  double worst = 0, scale = 1e-30;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::isnan(a[i]) || std::isnan(b[i])) return INFINITY;
    if (std::isinf(b[i]) || std::isinf(a[i])) {
      if (a[i] != b[i]) return INFINITY;
      continue;
    }
    worst = std::max(worst, std::abs(static_cast<double>(a[i]) - b[i]));
    scale = std::max(scale, std::abs(static_cast<double>(b[i])));
  }
  return relative ? worst / scale : worst;
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

/// The oracle: attention by definition, in double, per head. Rows with no allowed key give
/// output 0 and lse -inf; the backward adds into dq, dk, dv.
void reference_forward(const AttentionDims& d, const AttentionMask& m, const std::vector<float>& q,
                       const std::vector<float>& k, const std::vector<float>& v, std::vector<float>& out,
                       std::vector<float>& lse) {
  const double scale = 1.0 / std::sqrt(static_cast<double>(d.head_dim));
  const int64_t hd = d.head_dim;
  std::vector<double> s(d.kv_len);
  for (int64_t h = 0; h < d.heads; ++h) {
    for (int64_t i = 0; i < d.q_len; ++i) {
      double mx = -INFINITY;
      for (int64_t j = 0; j < d.kv_len; ++j) {
        if (m.causal && m.kv(j) > m.q(i)) {
          s[j] = -INFINITY;
          continue;
        }
        double dot = 0;
        for (int64_t c = 0; c < hd; ++c) dot += double(q[(h * d.q_len + i) * hd + c]) * k[(h * d.kv_len + j) * hd + c];
        s[j] = dot * scale;
        mx = std::max(mx, s[j]);
      }
      float* o = &out[(h * d.q_len + i) * hd];
      if (mx == -INFINITY) {
        std::fill(o, o + hd, 0.0F);
        lse[h * d.q_len + i] = -INFINITY;
        continue;
      }
      double sum = 0;
      for (int64_t j = 0; j < d.kv_len; ++j) sum += s[j] == -INFINITY ? 0 : std::exp(s[j] - mx);
      for (int64_t c = 0; c < hd; ++c) {
        double acc = 0;
        for (int64_t j = 0; j < d.kv_len; ++j) {
          if (s[j] != -INFINITY) acc += std::exp(s[j] - mx) / sum * v[(h * d.kv_len + j) * hd + c];
        }
        o[c] = static_cast<float>(acc);
      }
      lse[h * d.q_len + i] = static_cast<float>(mx + std::log(sum));
    }
  }
}

void reference_backward(const AttentionDims& d, const AttentionMask& m, const std::vector<float>& q,
                        const std::vector<float>& k, const std::vector<float>& v, const std::vector<float>& out,
                        const std::vector<float>& lse, const std::vector<float>& dout, std::vector<float>& dq,
                        std::vector<float>& dk, std::vector<float>& dv) {
  const double scale = 1.0 / std::sqrt(static_cast<double>(d.head_dim));
  const int64_t hd = d.head_dim;
  for (int64_t h = 0; h < d.heads; ++h) {
    for (int64_t i = 0; i < d.q_len; ++i) {
      const double l = lse[h * d.q_len + i];
      if (l == -INFINITY) continue;
      const float* qi = &q[(h * d.q_len + i) * hd];
      const float* doi = &dout[(h * d.q_len + i) * hd];
      double delta = 0;
      for (int64_t c = 0; c < hd; ++c) delta += double(doi[c]) * out[(h * d.q_len + i) * hd + c];
      for (int64_t j = 0; j < d.kv_len; ++j) {
        if (m.causal && m.kv(j) > m.q(i)) continue;
        const float* kj = &k[(h * d.kv_len + j) * hd];
        const float* vj = &v[(h * d.kv_len + j) * hd];
        double dot = 0, dp = 0;
        for (int64_t c = 0; c < hd; ++c) {
          dot += double(qi[c]) * kj[c];
          dp += double(doi[c]) * vj[c];
        }
        const double p = std::exp(dot * scale - l);
        const double ds = p * (dp - delta) * scale;
        for (int64_t c = 0; c < hd; ++c) {
          dv[(h * d.kv_len + j) * hd + c] += static_cast<float>(p * doi[c]);
          dk[(h * d.kv_len + j) * hd + c] += static_cast<float>(ds * qi[c]);
          dq[(h * d.q_len + i) * hd + c] += static_cast<float>(ds * kj[c]);
        }
      }
    }
  }
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

void check_attention(const std::string& name, const AttentionDims& d, const AttentionMask& mask) {
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
  reference_forward(d, mask, q, k, v, out, lse);
  reference_backward(d, mask, q, k, v, out, lse, dout, dq, dk, dv);

  __nv_bfloat16 *gq = to_device(qb), *gk = to_device(kb), *gv = to_device(vb);
  int64_t* gqp = mask.q_pos.empty() ? nullptr : to_device(mask.q_pos);
  int64_t* gkp = mask.kv_pos.empty() ? nullptr : to_device(mask.kv_pos);
  float *gout = to_device(std::vector<float>(qn)), *glse = to_device(std::vector<float>(rows));
  float *gdout = to_device(dout), *gdq = to_device(dq0);
  float *gdk = to_device(dk0), *gdv = to_device(dv0);
  float* gdelta = to_device(std::vector<float>(rows));
  const cuda::DeviceMask dm{mask.causal, gqp, gkp};
  cuda::attention_forward(d, dm, gq, gk, gv, gout, glse, nullptr);
  cuda::attention_backward(d, dm, gq, gk, gv, gout, glse, gdout, gdq, gdk, gdv, gdelta, nullptr);
  BUBBLESIM_CUDA(cudaDeviceSynchronize());

  const double e_out = max_error(to_host(gout, qn), out), e_lse = max_error(to_host(glse, rows), lse, false);
  // Compared as increments over the starting values: an overwrite instead of an add fails, and
  // the gradients' own precision is not hidden under the starting values' size.
  auto increment = [](std::vector<float> after, const std::vector<float>& before) {
    for (size_t i = 0; i < after.size(); ++i) after[i] -= before[i];
    return after;
  };
  const double e_dq = max_error(increment(to_host(gdq, qn), dq0), increment(dq, dq0));
  const double e_dk = max_error(increment(to_host(gdk, kn), dk0), increment(dk, dk0));
  const double e_dv = max_error(increment(to_host(gdv, kn), dv0), increment(dv, dv0));
  std::printf("%-28s out %.1e  lse %.1e  dq %.1e  dk %.1e  dv %.1e\n", name.c_str(), e_out, e_lse, e_dq, e_dk, e_dv);
  constexpr double kTolerance = 2e-3;  // fp32 math (fast exp) vs double on identical bf16 inputs
  // lse absolutely: dropping one of n keys moves it by about 1/n, far above this.
  expect(e_out <= kTolerance && e_lse <= 1e-4, name + ": forward differs from the host reference");
  expect(e_dq <= kTolerance && e_dk <= kTolerance && e_dv <= kTolerance, name + ": backward differs");
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
  const double e = max_error(got, c);
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
  cuda::GpuCompute gpu(0);
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
  for (const Case& c : cases) {
    const double t = gpu.time(c.work);
    const double rate = c.per_second_unit / t / (std::string(c.unit) == "GB/s" ? 1e9 : 1e12);
    std::printf("%-28s %10.3f ms  %8.1f %s\n", c.name, t * 1e3, rate, c.unit);
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
    AttentionMask none;
    none.causal = false;
    AttentionMask plain_causal;  // positions 0, 1, 2, ... on both sides (null on the device)
    AttentionMask causal;  // q_pos = i + 40: every row sees some keys, tiles of every class
    for (int64_t i = 0; i < 100; ++i) causal.q_pos.push_back(i + 40);
    AttentionMask empty_rows;  // the first rows see no key at all (lse -inf, output 0)
    for (int64_t i = 0; i < 100; ++i) empty_rows.q_pos.push_back(i - 20);
    AttentionMask zigzag;  // a ring rank's zigzag shard: two chunks of a 4-chunk sequence
    for (int64_t i = 0; i < 100; ++i) zigzag.q_pos.push_back(i < 50 ? 50 + i : 150 + (i - 50));
    for (int64_t j = 0; j < 150; ++j) zigzag.kv_pos.push_back(j < 75 ? j : 125 + (j - 75));
    for (const int64_t hd : {32, 64, 128}) {
      const AttentionDims d{2, 100, 150, hd};
      const std::string s = " hd" + std::to_string(hd);
      check_attention("non-causal" + s, d, none);
      check_attention("causal" + s, d, plain_causal);
      check_attention("causal, shifted" + s, d, causal);
      check_attention("rows with no key" + s, d, empty_rows);
      check_attention("zigzag positions" + s, d, zigzag);
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
