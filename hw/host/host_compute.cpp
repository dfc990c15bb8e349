#include "hw/host/host_compute.hpp"

#include <cmath>
#include <string>

#include "sim/core/error.hpp"

namespace bubblesim::hw {
namespace {

constexpr float kFill = 0.01F;  // small values: no overflow in softmax, no denormals

}  // namespace

HostCompute::HostCompute(int64_t max_bytes) : max_bytes_(max_bytes) {}

float* HostCompute::buffer(int64_t floats) {
  if (floats * 4 > max_bytes_) {
    throw InputError("an op needs " + std::to_string(floats * 4 >> 20) + " MiB of host buffers, more than the " +
                     std::to_string(max_bytes_ >> 20) + " MiB the host backend allows: use a smaller scenario");
  }
  if (static_cast<int64_t>(arena_.size()) < floats) {
    arena_.resize(static_cast<size_t>(floats));
    for (size_t i = 0; i < arena_.size(); ++i) arena_[i] = kFill * static_cast<float>((i * 2654435761U) % 97) / 97.0F;
  }
  return arena_.data();
}

const AttentionMask& HostCompute::mask(int64_t q_len, int64_t kv_len, double fraction) {
  const auto key = std::make_tuple(q_len, kv_len, static_cast<int64_t>(std::llround(fraction * 1e6)));
  auto it = masks_.find(key);
  if (it != masks_.end()) return it->second;
  return masks_.emplace(key, mask_for(q_len, kv_len, fraction)).first->second;
}

void HostCompute::run(const sim::OpWork& w) {
  const std::string cls = w.op_class;
  const auto& s = w.shape;
  if (cls == "gemm") {
    const int64_t m = s[0], n = s[1], k = s[2], batch = std::max<int64_t>(s[3], 1);
    float* a = buffer(batch * (m * k + k * n + m * n));
    gemm(a, a + batch * m * k, a + batch * (m * k + k * n), m, n, k, batch);
    return;
  }
  if (cls == "attention" || cls == "attention_grad") {
    const AttentionDims d{s[3], s[1], s[2], s[4]};
    const int64_t qn = d.heads * d.q_len * d.head_dim, kn = d.heads * d.kv_len * d.head_dim;
    const int64_t rows = d.heads * d.q_len;
    const AttentionMask& m = mask(d.q_len, d.kv_len, w.causal_fraction);
    const bool grad = cls == "attention_grad";
    // q, k, v, out, lse (+ dout, dq, dk, dv for the backward)
    float* base = buffer(2 * qn + 2 * kn + rows + (grad ? 2 * qn + 2 * kn : 0));
    float *q = base, *k = q + qn, *v = k + kn, *out = v + kn, *lse = out + qn;
    for (int64_t b = 0; b < std::max<int64_t>(s[0], 1); ++b) {
      if (!grad) {
        attention_forward(d, m, q, k, v, out, lse);
        continue;
      }
      float *dout = lse + rows, *dq = dout + qn, *dk = dq + qn, *dv = dk + kn;
      // A plausible log-sum-exp (every score ~0 over kv keys), so probabilities stay ~1/kv.
      for (int64_t i = 0; i < rows; ++i) lse[i] = std::log(static_cast<float>(d.kv_len));
      attention_backward(d, m, q, k, v, out, lse, dout, dq, dk, dv);
    }
    return;
  }
  if (cls == "memory") {
    const auto bytes = static_cast<int64_t>(w.bytes);
    float* a = buffer(bytes / 4 + 1);
    memory_op(a + bytes / 8, a, bytes);
    return;
  }
  throw InputError("the host backend has no kernel for op class \"" + cls + "\"");
}

void HostCompute::reduce(int64_t bytes) {
  const int64_t n = bytes / 4;
  float* a = buffer(2 * n);
  for (int64_t i = 0; i < n; ++i) a[i] += a[n + i];
}

}  // namespace bubblesim::hw
