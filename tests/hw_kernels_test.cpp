// The host backend's CPU kernels against naive references: GEMM, attention forward (output and
// log-sum-exp) and backward under causal, shifted and arbitrary-position masks, the log-sum-exp
// merge of split key sets, the causal shift that realises a fraction of pairs, and HostCompute.
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <vector>

#include "hw/host/host_compute.hpp"
#include "hw/host/kernels.hpp"
#include "sim/core/error.hpp"

using namespace bubblesim::hw;

namespace {

std::vector<float> values(size_t n, uint32_t seed) {
  std::vector<float> v(n);
  uint32_t x = seed;
  for (float& f : v) {
    x = x * 1664525U + 1013904223U;
    f = static_cast<float>(x >> 8) / static_cast<float>(1U << 24) * 2.0F - 1.0F;
  }
  return v;
}

/// Plain softmax attention in double precision: out and lse.
void naive_forward(const AttentionDims& d, const AttentionMask& m, const std::vector<float>& q,
                   const std::vector<float>& k, const std::vector<float>& v, std::vector<double>& out,
                   std::vector<double>& lse) {
  const double scale = 1 / std::sqrt(static_cast<double>(d.head_dim));
  out.assign(static_cast<size_t>(d.heads * d.q_len * d.head_dim), 0);
  lse.assign(static_cast<size_t>(d.heads * d.q_len), -std::numeric_limits<double>::infinity());
  for (int64_t h = 0; h < d.heads; ++h) {
    for (int64_t i = 0; i < d.q_len; ++i) {
      std::vector<double> s(static_cast<size_t>(d.kv_len), -std::numeric_limits<double>::infinity());
      double mx = -std::numeric_limits<double>::infinity();
      for (int64_t j = 0; j < d.kv_len; ++j) {
        if (m.causal && m.kv(j) > m.q(i)) continue;
        double dot = 0;
        for (int64_t c = 0; c < d.head_dim; ++c) {
          dot += q[static_cast<size_t>((h * d.q_len + i) * d.head_dim + c)] *
                 k[static_cast<size_t>((h * d.kv_len + j) * d.head_dim + c)];
        }
        s[static_cast<size_t>(j)] = dot * scale;
        mx = std::max(mx, dot * scale);
      }
      if (mx == -std::numeric_limits<double>::infinity()) continue;
      double sum = 0;
      for (double x : s) sum += std::exp(x - mx);
      lse[static_cast<size_t>(h * d.q_len + i)] = mx + std::log(sum);
      for (int64_t j = 0; j < d.kv_len; ++j) {
        const double p = std::exp(s[static_cast<size_t>(j)] - mx) / sum;
        for (int64_t c = 0; c < d.head_dim; ++c) {
          out[static_cast<size_t>((h * d.q_len + i) * d.head_dim + c)] +=
              p * v[static_cast<size_t>((h * d.kv_len + j) * d.head_dim + c)];
        }
      }
    }
  }
}

double max_error(const std::vector<float>& a, const std::vector<double>& b) {
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(static_cast<double>(a[i]) - b[i]));
  return m;
}

/// Scalar loss L = sum(out * dout), so dL/dx by central differences checks the backward.
double loss(const AttentionDims& d, const AttentionMask& m, const std::vector<float>& q, const std::vector<float>& k,
            const std::vector<float>& v, const std::vector<float>& dout) {
  std::vector<double> out, lse;
  naive_forward(d, m, q, k, v, out, lse);
  double l = 0;
  for (size_t i = 0; i < out.size(); ++i) l += out[i] * dout[i];
  return l;
}

}  // namespace

TEST_CASE("the CPU GEMM computes C = A B", "[hw][kernels]") {
  const int64_t m = 7, n = 5, k = 3;
  const auto a = values(m * k, 1), b = values(k * n, 2);
  std::vector<float> c(m * n);
  gemm(a.data(), b.data(), c.data(), m, n, k);
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      double want = 0;
      for (int64_t x = 0; x < k; ++x) want += a[static_cast<size_t>(i * k + x)] * b[static_cast<size_t>(x * n + j)];
      CHECK(c[static_cast<size_t>(i * n + j)] == Approx(want).margin(1e-5));
    }
  }
}

TEST_CASE("tiled attention equals plain softmax attention, causal or not, with its log-sum-exp", "[hw][kernels]") {
  // 150 x 200 spans several 64-row tiles and partial ones; positions shifted so some rows see
  // no key at all (their output is 0 and lse -inf).
  const AttentionDims d{2, 150, 200, 16};
  const auto q = values(2 * 150 * 16, 3), k = values(2 * 200 * 16, 4), v = values(2 * 200 * 16, 5);
  for (const AttentionMask& m : {AttentionMask{false, {}, {}}, AttentionMask{true, {}, {}}}) {
    AttentionMask mask = m;
    if (m.causal) {
      for (int64_t i = 0; i < d.q_len; ++i) mask.q_pos.push_back(i - 10);
    }
    std::vector<float> out(2 * 150 * 16), lse(2 * 150);
    attention_forward(d, mask, q.data(), k.data(), v.data(), out.data(), lse.data());
    std::vector<double> want, want_lse;
    naive_forward(d, mask, q, k, v, want, want_lse);
    CHECK(max_error(out, want) < 1e-5);
    for (size_t i = 0; i < lse.size(); ++i) {
      if (std::isinf(want_lse[i])) {
        CHECK(std::isinf(lse[i]));
      } else {
        CHECK(lse[i] == Approx(want_lse[i]).margin(1e-4));
      }
    }
  }
}

TEST_CASE("the attention backward gives the gradients of sum(out * dout)", "[hw][kernels]") {
  const AttentionDims d{1, 70, 70, 8};
  AttentionMask m;  // causal, plain positions
  auto q = values(70 * 8, 6), k = values(70 * 8, 7), v = values(70 * 8, 8);
  const auto dout = values(70 * 8, 9);
  std::vector<float> out(70 * 8), lse(70), dq(70 * 8, 0), dk(70 * 8, 0), dv(70 * 8, 0);
  attention_forward(d, m, q.data(), k.data(), v.data(), out.data(), lse.data());
  attention_backward(d, m, q.data(), k.data(), v.data(), out.data(), lse.data(), dout.data(), dq.data(), dk.data(),
                     dv.data());
  const float h = 1e-2F;
  auto check_grad = [&](std::vector<float>& x, const std::vector<float>& grad) {
    for (size_t i : {size_t{0}, size_t{17}, size_t{200}, size_t{559}}) {
      const float keep = x[i];
      x[i] = keep + h;
      const double up = loss(d, m, q, k, v, dout);
      x[i] = keep - h;
      const double down = loss(d, m, q, k, v, dout);
      x[i] = keep;
      CHECK(grad[i] == Approx((up - down) / (2 * h)).margin(2e-3));
    }
  };
  check_grad(q, dq);
  check_grad(k, dk);
  check_grad(v, dv);
}

TEST_CASE("merging by log-sum-exp two halves of the keys gives attention over all of them", "[hw][kernels]") {
  const int64_t H = 2, Q = 96, KV = 128, D = 16;
  const auto q = values(H * Q * D, 10), k = values(H * KV * D, 11), v = values(H * KV * D, 12);
  // Queries at positions 64..159 over keys 0..127 split into 0..63 and 64..127 (a ring step each).
  AttentionMask full_mask;
  for (int64_t i = 0; i < Q; ++i) full_mask.q_pos.push_back(64 + i);
  std::vector<float> out(H * Q * D), lse(H * Q);
  attention_forward({H, Q, KV, D}, full_mask, q.data(), k.data(), v.data(), out.data(), lse.data());
  std::vector<float> k1, k2, v1, v2;
  for (int64_t h = 0; h < H; ++h) {
    k1.insert(k1.end(), k.begin() + h * KV * D, k.begin() + (h * KV + 64) * D);
    k2.insert(k2.end(), k.begin() + (h * KV + 64) * D, k.begin() + (h + 1) * KV * D);
    v1.insert(v1.end(), v.begin() + h * KV * D, v.begin() + (h * KV + 64) * D);
    v2.insert(v2.end(), v.begin() + (h * KV + 64) * D, v.begin() + (h + 1) * KV * D);
  }
  AttentionMask m1 = full_mask, m2 = full_mask;
  for (int64_t j = 0; j < 64; ++j) m2.kv_pos.push_back(64 + j);
  std::vector<float> o1(H * Q * D), l1(H * Q), o2(H * Q * D), l2(H * Q);
  attention_forward({H, Q, 64, D}, m1, q.data(), k1.data(), v1.data(), o1.data(), l1.data());
  attention_forward({H, Q, 64, D}, m2, q.data(), k2.data(), v2.data(), o2.data(), l2.data());
  // Averaging without the log-sum-exp weights is wrong, so the test can fail.
  double plain = 0;
  for (size_t i = 0; i < out.size(); ++i) plain = std::max(plain, static_cast<double>(std::abs(0.5F * (o1[i] + o2[i]) - out[i])));
  CHECK(plain > 1e-2);
  merge_attention(o1.data(), l1.data(), o2.data(), l2.data(), H * Q, D);
  for (size_t i = 0; i < out.size(); ++i) CHECK(o1[i] == Approx(out[i]).margin(1e-5));
  for (size_t i = 0; i < lse.size(); ++i) CHECK(l1[i] == Approx(lse[i]).margin(1e-5));
}

TEST_CASE("the causal shift allows the asked fraction of pairs", "[hw][kernels]") {
  CHECK(causal_shift_for(100, 100, 0.505).pairs == 5050);  // the diagonal block
  CHECK(causal_shift_for(100, 100, 0.505).offset == 0);
  CHECK(causal_shift_for(100, 200, 1.0).pairs == 20000);
  CHECK(causal_shift_for(64, 64, 0.0).pairs == 0);
  const CausalShift s = causal_shift_for(300, 500, 0.3);
  CHECK(std::abs(static_cast<double>(s.pairs) / (300.0 * 500.0) - 0.3) < 1.0 / 300);
}

TEST_CASE("HostCompute runs every op class and refuses what it cannot", "[hw][kernels]") {
  HostCompute c;
  using bubblesim::sim::OpWork;
  c.run(OpWork{"gemm", {64, 32, 16, 2, 0}, 0, 0, 0});
  c.run(OpWork{"attention", {1, 128, 128, 2, 16}, 0.5, 0, 0});
  c.run(OpWork{"attention_grad", {1, 128, 256, 2, 16}, 0.75, 0, 0});
  c.run(OpWork{"memory", {}, 0, 0, 1 << 20});
  c.reduce(1 << 16);
  CHECK_THROWS_AS(c.run(OpWork{"fft", {}, 0, 0, 0}), bubblesim::InputError);
  HostCompute small(1 << 20);
  CHECK_THROWS_WITH(small.run(OpWork{"gemm", {1024, 1024, 1024, 1, 0}, 0, 0, 0}),
                    Catch::Contains("host buffers") && Catch::Contains("smaller scenario"));
}
