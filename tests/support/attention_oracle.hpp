// The attention oracle the kernel tests compare against: attention by definition in double
// precision, per head, with the mask semantics of hw/backend/attention_mask.hpp, and the error
// measure they use. Plain C++ (tests/gpu/gpu_kernels_test on a GPU, and
// tests/attention_emulated_test on the CPU).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "hw/backend/attention_mask.hpp"

namespace bubblesim::hw::test {

/// Largest |a - b|, relative to the largest |b| (`relative`, 0 when both are all 0) or absolute;
/// -inf must match -inf and a NaN anywhere is an infinite error.
inline double max_error(const std::vector<float>& a, const std::vector<float>& b, bool relative = true) {
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

/// The oracle: attention by definition, in double, per head. Rows with no allowed key give
/// output 0 and lse -inf; the backward adds into dq, dk, dv.
inline void reference_forward(const AttentionDims& d, const AttentionMask& m, const std::vector<float>& q,
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

inline void reference_backward(const AttentionDims& d, const AttentionMask& m, const std::vector<float>& q,
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

/// The masks every attention kernel is checked under, for 100 queries and 150 keys: none, plain
/// causal, causal shifted (every row sees keys; tiles of every class), rows that see no key at
/// all (lse -inf, output 0), and a ring rank's zigzag shard (two chunks of a 4-chunk sequence).
struct NamedMask {
  const char* name;
  AttentionMask mask;
};
inline std::vector<NamedMask> kernel_masks() {
  std::vector<NamedMask> all;
  AttentionMask none;
  none.causal = false;
  all.push_back({"non-causal", none});
  all.push_back({"causal", AttentionMask{}});  // positions 0, 1, 2, ... (null on a device)
  AttentionMask shifted;
  for (int64_t i = 0; i < 100; ++i) shifted.q_pos.push_back(i + 40);
  all.push_back({"causal, shifted", shifted});
  AttentionMask empty_rows;
  for (int64_t i = 0; i < 100; ++i) empty_rows.q_pos.push_back(i - 20);
  all.push_back({"rows with no key", empty_rows});
  AttentionMask zigzag;
  for (int64_t i = 0; i < 100; ++i) zigzag.q_pos.push_back(i < 50 ? 50 + i : 150 + (i - 50));
  for (int64_t j = 0; j < 150; ++j) zigzag.kv_pos.push_back(j < 75 ? j : 125 + (j - 75));
  all.push_back({"zigzag positions", zigzag});
  return all;
}

}  // namespace bubblesim::hw::test
