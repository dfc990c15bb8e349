// Attention forward and backward on CUDA cores in fp32: the GPU's own reference for the
// tensor-core kernels (flash_attention.cuh) and the fallback BUBBLESIM_ATTENTION_KERNEL=cuda-core
// selects. Tiled over query and key blocks with online softmax, causal masking by global token
// positions per tile (skipped, full or diagonal), a log-sum-exp output; the backward recomputes
// the probabilities from it (FlashAttention-2's), in a dK/dV kernel (a thread per key) and a dQ
// kernel (a thread per query), without atomics. Several times slower than tensor cores.
// Written against the device primitives (dev::) of device_dialect.cuh, as flash_attention.cuh
// is, so tests/attention_emulated_test runs these too; include a dialect first.
#pragma once

#include <climits>
#include <cmath>
#include <cstdint>

#include "hw/cuda/attention_args.hpp"

namespace bubblesim::hw::cuda::simt {

constexpr int kFwdRows = 64;  // queries per forward block, one per thread
constexpr int kKeys = 16;     // keys per tile (forward, dQ)
constexpr int kKvRows = 64;   // keys per dK/dV block, one per thread
constexpr int kQTile = 8;     // queries per tile in the dK/dV kernel
constexpr int kDqRows = 32;   // queries per dQ block, one per thread
static_assert(kKeys <= kFwdRows && kKeys <= kDqRows && kQTile <= kKvRows, "position loads use one thread each");

BUBBLESIM_DEVICE int64_t q_position(const DeviceMask& m, int64_t i) { return m.q_pos ? m.q_pos[i] : i; }
BUBBLESIM_DEVICE int64_t kv_position(const DeviceMask& m, int64_t j) { return m.kv_pos ? m.kv_pos[j] : j; }

/// Min and max of `n` positions in shared memory (thread 0 writes them): a tile's extent.
BUBBLESIM_DEVICE void extent(const int64_t* pos, int n, int64_t* lo, int64_t* hi) {
  if (dev::thread() == 0) {
    int64_t a = LLONG_MAX, b = LLONG_MIN;
    for (int i = 0; i < n; ++i) {
      if (pos[i] == LLONG_MAX) continue;  // past the end
      a = pos[i] < a ? pos[i] : a;
      b = pos[i] > b ? pos[i] : b;
    }
    *lo = a;
    *hi = b;
  }
}

/// Tile classes, as on the host: causal tiles whose keys all come after every query are
/// skipped; those whose keys all come before every query need no mask.
enum Tile { kSkip, kFull, kDiagonal };

BUBBLESIM_DEVICE Tile classify(bool causal, int64_t qmin, int64_t qmax, int64_t kmin, int64_t kmax) {
  if (!causal) return kFull;
  if (kmin > qmax || qmin == LLONG_MAX || kmin == LLONG_MAX) return kSkip;
  return kmax <= qmin ? kFull : kDiagonal;
}

/// The next tile of keys [k0, k0 + kKeys): their positions into kp (LLONG_MAX past the end) and
/// the tile's class against the block's queries (*qmin, *qmax in shared memory, read after the
/// barriers). Every thread of the block gets the same class.
BUBBLESIM_DEVICE Tile key_tile(const DeviceMask& m, int64_t k0, int kv_len, const int64_t* qmin, const int64_t* qmax,
                               int64_t* kp, int64_t* kmin, int64_t* kmax) {
  const int t = dev::thread();
  dev::block_sync();  // the previous tile is consumed
  if (t < kKeys) kp[t] = k0 + t < kv_len ? kv_position(m, k0 + t) : LLONG_MAX;
  dev::block_sync();
  extent(kp, kKeys, kmin, kmax);
  dev::block_sync();
  return classify(m.causal, *qmin, *qmax, *kmin, *kmax);
}

/// K and V of the keys [k0, k0 + kKeys) of one head into shared memory as fp32 (zeros past the
/// end), by every thread of the block, then a barrier.
template <int D>
BUBBLESIM_DEVICE void load_kv_tile(const dev::bf16* k, const dev::bf16* v, int64_t koff, int64_t k0, int kv_len,
                                   float (*ks)[D], float (*vs)[D]) {
  for (int idx = dev::thread(); idx < kKeys * D; idx += dev::block_threads()) {
    const int j = idx / D, c = idx % D;
    const bool in = k0 + j < kv_len;
    ks[j][c] = in ? dev::to_float(k[koff + (k0 + j) * D + c]) : 0.0F;
    vs[j][c] = in ? dev::to_float(v[koff + (k0 + j) * D + c]) : 0.0F;
  }
  dev::block_sync();
}

template <int D>
BUBBLESIM_KERNEL(kFwdRows)
forward_kernel(Shape z, DeviceMask m, const dev::bf16* q, const dev::bf16* k, const dev::bf16* v, float* out,
               float* lse) {
  BUBBLESIM_SHARED dev::bf16 qs[D][kFwdRows];  // transposed: thread t reads column t
  BUBBLESIM_SHARED float ks[kKeys][D], vs[kKeys][D];
  BUBBLESIM_SHARED int64_t qp[kFwdRows], kp[kKeys];
  BUBBLESIM_SHARED int64_t qmin, qmax, kmin, kmax;
  const int h = dev::block_y(), t = dev::thread();
  const int64_t i = static_cast<int64_t>(dev::block_x()) * kFwdRows + t;
  const bool row = i < z.q_len;
  const int64_t qoff = static_cast<int64_t>(h) * z.q_len * D, koff = static_cast<int64_t>(h) * z.kv_len * D;
  for (int c = 0; c < D; ++c) qs[c][t] = row ? q[qoff + i * D + c] : dev::to_bf16(0.0F);
  const int64_t my_pos = row ? q_position(m, i) : LLONG_MAX;
  qp[t] = my_pos;
  dev::block_sync();
  extent(qp, kFwdRows, &qmin, &qmax);
  float acc[D];
  for (int c = 0; c < D; ++c) acc[c] = 0.0F;
  float row_max = -INFINITY, row_sum = 0.0F;
  for (int64_t k0 = 0; k0 < z.kv_len; k0 += kKeys) {
    const Tile tile = key_tile(m, k0, z.kv_len, &qmin, &qmax, kp, &kmin, &kmax);
    if (tile == kSkip) continue;  // the same for the whole block: its data is never loaded
    load_kv_tile<D>(k, v, koff, k0, z.kv_len, ks, vs);
    if (!row) continue;
    float s[kKeys];
    float mx = row_max;
    for (int j = 0; j < kKeys; ++j) {
      if (kp[j] == LLONG_MAX || (tile == kDiagonal && kp[j] > my_pos)) {
        s[j] = -INFINITY;
        continue;
      }
      float dot = 0.0F;
      for (int c = 0; c < D; ++c) dot += dev::to_float(qs[c][t]) * ks[j][c];
      s[j] = dot * z.scale;
      mx = fmaxf(mx, s[j]);
    }
    if (mx == -INFINITY) continue;  // nothing allowed in this row yet
    const float rescale = dev::fast_exp(row_max - mx);
    float sum = 0.0F;
    for (int j = 0; j < kKeys; ++j) {
      s[j] = s[j] == -INFINITY ? 0.0F : dev::fast_exp(s[j] - mx);
      sum += s[j];
    }
    row_sum = row_sum * rescale + sum;
    row_max = mx;
    for (int c = 0; c < D; ++c) {
      float a = acc[c] * rescale;
      for (int j = 0; j < kKeys; ++j) a += s[j] * vs[j][c];
      acc[c] = a;
    }
  }
  if (!row) return;
  const float inv = row_sum > 0 ? 1.0F / row_sum : 0.0F;
  for (int c = 0; c < D; ++c) out[qoff + i * D + c] = acc[c] * inv;
  lse[static_cast<int64_t>(h) * z.q_len + i] = row_sum > 0 ? row_max + logf(row_sum) : -INFINITY;
}

/// dK and dV: one thread per key row, looping over query tiles.
template <int D>
BUBBLESIM_KERNEL(kKvRows)
dkdv_kernel(Shape z, DeviceMask m, const dev::bf16* q, const dev::bf16* k, const dev::bf16* v, const float* lse,
            const float* dout, const float* delta, float* dk, float* dv) {
  BUBBLESIM_SHARED dev::bf16 kt[D][kKvRows], vt[D][kKvRows];
  BUBBLESIM_SHARED float qs[kQTile][D], dos[kQTile][D], ls[kQTile], ds[kQTile];
  BUBBLESIM_SHARED int64_t kp[kKvRows], qp[kQTile];
  BUBBLESIM_SHARED int64_t qmin, qmax, kmin, kmax;
  const int h = dev::block_y(), t = dev::thread();
  const int64_t j = static_cast<int64_t>(dev::block_x()) * kKvRows + t;
  const bool key = j < z.kv_len;
  const int64_t qoff = static_cast<int64_t>(h) * z.q_len * D, koff = static_cast<int64_t>(h) * z.kv_len * D;
  for (int c = 0; c < D; ++c) {
    kt[c][t] = key ? k[koff + j * D + c] : dev::to_bf16(0.0F);
    vt[c][t] = key ? v[koff + j * D + c] : dev::to_bf16(0.0F);
  }
  const int64_t my_pos = key ? kv_position(m, j) : LLONG_MAX;
  kp[t] = my_pos;
  dev::block_sync();
  extent(kp, kKvRows, &kmin, &kmax);
  float gk[D], gv[D];
  for (int c = 0; c < D; ++c) gk[c] = gv[c] = 0.0F;
  for (int64_t q0 = 0; q0 < z.q_len; q0 += kQTile) {
    dev::block_sync();
    if (t < kQTile) qp[t] = q0 + t < z.q_len ? q_position(m, q0 + t) : LLONG_MAX;
    dev::block_sync();
    extent(qp, kQTile, &qmin, &qmax);
    dev::block_sync();
    const Tile tile = classify(m.causal, qmin, qmax, kmin, kmax);
    if (tile == kSkip) continue;  // the same for the whole block: its data is never loaded
    for (int idx = t; idx < kQTile * D; idx += kKvRows) {
      const int i = idx / D, c = idx % D;
      const bool in = q0 + i < z.q_len;
      qs[i][c] = in ? dev::to_float(q[qoff + (q0 + i) * D + c]) : 0.0F;
      dos[i][c] = in ? dout[qoff + (q0 + i) * D + c] : 0.0F;
    }
    if (t < kQTile) {
      const bool in = q0 + t < z.q_len;
      ls[t] = in ? lse[static_cast<int64_t>(h) * z.q_len + q0 + t] : -INFINITY;
      ds[t] = in ? delta[static_cast<int64_t>(h) * z.q_len + q0 + t] : 0.0F;
    }
    dev::block_sync();
    if (!key) continue;
    for (int i = 0; i < kQTile; ++i) {
      if (qp[i] == LLONG_MAX || ls[i] == -INFINITY || (tile == kDiagonal && my_pos > qp[i])) continue;
      float dot = 0.0F, dp = 0.0F;
      for (int c = 0; c < D; ++c) {
        dot += qs[i][c] * dev::to_float(kt[c][t]);
        dp += dos[i][c] * dev::to_float(vt[c][t]);
      }
      const float p = dev::fast_exp(dot * z.scale - ls[i]);
      const float dsv = p * (dp - ds[i]) * z.scale;
      for (int c = 0; c < D; ++c) {
        gv[c] += p * dos[i][c];
        gk[c] += dsv * qs[i][c];
      }
    }
  }
  if (!key) return;
  for (int c = 0; c < D; ++c) {
    dk[koff + j * D + c] += gk[c];
    dv[koff + j * D + c] += gv[c];
  }
}

/// dQ: one thread per query row, looping over key tiles.
template <int D>
BUBBLESIM_KERNEL(kDqRows)
dq_kernel(Shape z, DeviceMask m, const dev::bf16* q, const dev::bf16* k, const dev::bf16* v, const float* lse,
          const float* dout, const float* delta, float* dq) {
  BUBBLESIM_SHARED dev::bf16 qt[D][kDqRows];
  BUBBLESIM_SHARED float dout_t[D][kDqRows];
  BUBBLESIM_SHARED float ks[kKeys][D], vs[kKeys][D];
  BUBBLESIM_SHARED int64_t qp[kDqRows], kp[kKeys];
  BUBBLESIM_SHARED int64_t qmin, qmax, kmin, kmax;
  const int h = dev::block_y(), t = dev::thread();
  const int64_t i = static_cast<int64_t>(dev::block_x()) * kDqRows + t;
  const bool row = i < z.q_len;
  const int64_t qoff = static_cast<int64_t>(h) * z.q_len * D, koff = static_cast<int64_t>(h) * z.kv_len * D;
  for (int c = 0; c < D; ++c) {
    qt[c][t] = row ? q[qoff + i * D + c] : dev::to_bf16(0.0F);
    dout_t[c][t] = row ? dout[qoff + i * D + c] : 0.0F;
  }
  const int64_t my_pos = row ? q_position(m, i) : LLONG_MAX;
  const float l = row ? lse[static_cast<int64_t>(h) * z.q_len + i] : -INFINITY;
  const float di = row ? delta[static_cast<int64_t>(h) * z.q_len + i] : 0.0F;
  qp[t] = my_pos;
  dev::block_sync();
  extent(qp, kDqRows, &qmin, &qmax);
  float g[D];
  for (int c = 0; c < D; ++c) g[c] = 0.0F;
  for (int64_t k0 = 0; k0 < z.kv_len; k0 += kKeys) {
    const Tile tile = key_tile(m, k0, z.kv_len, &qmin, &qmax, kp, &kmin, &kmax);
    if (tile == kSkip) continue;  // the same for the whole block: its data is never loaded
    load_kv_tile<D>(k, v, koff, k0, z.kv_len, ks, vs);
    if (!row || l == -INFINITY) continue;
    for (int jj = 0; jj < kKeys; ++jj) {
      if (kp[jj] == LLONG_MAX || (tile == kDiagonal && kp[jj] > my_pos)) continue;
      float dot = 0.0F, dp = 0.0F;
      for (int c = 0; c < D; ++c) {
        dot += dev::to_float(qt[c][t]) * ks[jj][c];
        dp += dout_t[c][t] * vs[jj][c];
      }
      const float p = dev::fast_exp(dot * z.scale - l);
      const float dsv = p * (dp - di) * z.scale;
      for (int c = 0; c < D; ++c) g[c] += dsv * ks[jj][c];
    }
  }
  if (!row) return;
  for (int c = 0; c < D; ++c) dq[qoff + i * D + c] += g[c];
}

}  // namespace bubblesim::hw::cuda::simt
