// Attention forward and backward on tensor cores, FlashAttention-2's algorithm in bf16 with fp32
// accumulation: the same semantics as the CUDA-core kernels and the host's (causal masking by
// global token positions, tiles skipped / full / diagonal, a log-sum-exp output so ring steps
// merge exactly), on the math units training's attention kernels use. Simpler than
// FlashAttention-2/3 (the output accumulator lives in shared memory, tiles load synchronously, no
// Hopper warpgroup MMA), so slower than they are.
//
// Forward: a block of 4 warps owns 64 queries (16 per warp, held as fragments in registers) and
// walks the key tiles; per tile each warp computes S = Q K^T with WMMA, lanes 2r and 2r+1 run
// the online softmax of row r (half of its columns each), the output accumulator in shared
// memory is rescaled and O += P V (P rounded to bf16, as FlashAttention does).
// Backward: a block owns 64 keys (16 per warp) and walks the query tiles; per tile it forms
// S^T = K Q^T and dP^T = V dO^T, then P and dS = P (dP - delta) scale (both rounded to bf16),
// accumulates dV += P^T dO and dK += dS^T Q in registers, and adds dQ += dS K with atomics, as
// FlashAttention-2 does. dO is rounded to bf16 on load.
//
// Written against a handful of device primitives (dev::), provided by device_dialect.cuh for CUDA
// and by tests/support/cuda_emulator.hpp for the CPU test that runs these kernels unchanged.
// Include one of them first. Only WMMA's opaque fragment operations are used (load, store, fill,
// mma), so the emulation is faithful to their semantics; element-wise work goes through shared
// memory.
#pragma once

#include <climits>
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "hw/cuda/attention_args.hpp"

namespace bubblesim::hw::cuda::flash {

constexpr int kWarps = 4;
constexpr int kThreads = 32 * kWarps;
constexpr int kEdge = 16;              // a WMMA tile is 16 x 16 (x 16)
constexpr int kRows = kWarps * kEdge;  // queries per forward block, keys per backward block

constexpr size_t aligned128(size_t bytes) { return (bytes + 127) / 128 * 128; }

/// Keys per forward tile and queries per backward tile, small enough at head dim 128 that two
/// blocks fit on a multiprocessor of the smallest target (A100/A800: 164 KB of shared memory, 1 KB
/// of it reserved per block); an H100 has 228 KB.
constexpr int forward_keys(int head_dim) { return head_dim > 64 ? 32 : 64; }
constexpr int backward_queries(int head_dim) { return head_dim > 64 ? 32 : 64; }
constexpr size_t kSharedForTwoBlocks = 164 * 1024 / 2 - 1024;

/// Shared memory of the forward kernel, in bytes from its start. Row strides are padded by 16
/// bytes (fewer bank conflicts) and stay multiples of 16 bytes, as WMMA requires; every tile a
/// fragment loads starts 32-byte aligned.
template <int D, int BC>
struct ForwardLayout {
  static constexpr int kLdH = D + 8;     // bf16 rows of head_dim: Q, K, V
  static constexpr int kLdS = BC + 4;    // fp32 scores
  static constexpr int kLdP = 2 * kLdS;  // bf16 probabilities, over the scores: row r in row r
  static constexpr int kLdO = D + 4;     // fp32 output accumulator
  static constexpr size_t q = 0;
  static constexpr size_t k = q + aligned128(size_t{kRows} * kLdH * 2);
  static constexpr size_t v = k + aligned128(size_t{BC} * kLdH * 2);
  static constexpr size_t s = v + aligned128(size_t{BC} * kLdH * 2);
  static constexpr size_t o = s + aligned128(size_t{kRows} * kLdS * 4);
  static constexpr size_t q_pos = o + aligned128(size_t{kRows} * kLdO * 4);
  static constexpr size_t kv_pos = q_pos + aligned128(size_t{kRows} * 8);
  static constexpr size_t extent = kv_pos + aligned128(size_t{BC} * 8);
  static constexpr size_t bytes = extent + aligned128(4 * 8);
  static_assert(D % kEdge == 0 && BC % kEdge == 0 && BC <= kThreads, "tiles of whole fragments");
  static_assert(bytes <= kSharedForTwoBlocks, "two blocks per A100 multiprocessor");
};

/// Shared memory of the backward kernel (BR queries per tile), as ForwardLayout.
template <int D, int BR>
struct BackwardLayout {
  static constexpr int kLdH = D + 8;          // bf16 rows of head_dim: K, V, Q, dO
  static constexpr int kLdT = BR + 4;         // fp32 S^T and dP^T (keys x queries)
  static constexpr int kLdPT = 2 * kLdT;      // bf16 P^T and dS^T, over S^T and dP^T: row r in row r
  static constexpr int kLdStage = kEdge + 4;  // a warp's fp32 16 x 16 staging tile
  static constexpr size_t k = 0;
  static constexpr size_t v = k + aligned128(size_t{kRows} * kLdH * 2);
  static constexpr size_t q = v + aligned128(size_t{kRows} * kLdH * 2);
  static constexpr size_t dout = q + aligned128(size_t{BR} * kLdH * 2);
  static constexpr size_t st = dout + aligned128(size_t{BR} * kLdH * 2);
  static constexpr size_t dpt = st + aligned128(size_t{kRows} * kLdT * 4);
  static constexpr size_t stage = dpt + aligned128(size_t{kRows} * kLdT * 4);
  static constexpr size_t lse = stage + aligned128(size_t{kWarps} * kEdge * kLdStage * 4);
  static constexpr size_t delta = lse + aligned128(size_t{BR} * 4);
  static constexpr size_t kv_pos = delta + aligned128(size_t{BR} * 4);
  static constexpr size_t q_pos = kv_pos + aligned128(size_t{kRows} * 8);
  static constexpr size_t extent = q_pos + aligned128(size_t{BR} * 8);
  static constexpr size_t bytes = extent + aligned128(4 * 8);
  static_assert(D % kEdge == 0 && BR % kEdge == 0 && BR <= kThreads, "tiles of whole fragments");
  static_assert(bytes <= kSharedForTwoBlocks, "two blocks per A100 multiprocessor");
};

BUBBLESIM_DEVICE int64_t position(const int64_t* pos, int64_t i) { return pos != nullptr ? pos[i] : i; }

/// Tile classes, as on the host: causal tiles whose keys all come after every query are
/// skipped; those whose keys all come before every query need no mask.
enum Tile { kSkip, kFull, kDiagonal };

BUBBLESIM_DEVICE Tile classify(bool causal, const int64_t* extent) {
  const int64_t qmin = extent[0], qmax = extent[1], kmin = extent[2], kmax = extent[3];
  if (!causal) return kFull;
  if (kmin > qmax || qmin == LLONG_MAX || kmin == LLONG_MAX) return kSkip;
  return kmax <= qmin ? kFull : kDiagonal;
}

/// The least and greatest of `n` positions (LLONG_MAX: past the end, ignored), found by the first
/// warp (a few per lane, then a butterfly over the lanes) and written by thread 0.
BUBBLESIM_DEVICE void extent_of(const int64_t* pos, int n, int64_t* out) {
  const int t = dev::thread();
  if (t >= 32) return;
  int64_t lo = LLONG_MAX, hi = LLONG_MIN;
  for (int i = t; i < n; i += 32) {
    if (pos[i] == LLONG_MAX) continue;
    lo = pos[i] < lo ? pos[i] : lo;
    hi = pos[i] > hi ? pos[i] : hi;
  }
  for (int mask = 16; mask > 0; mask /= 2) {
    const int64_t other_lo = dev::warp_xor(lo, mask), other_hi = dev::warp_xor(hi, mask);
    lo = other_lo < lo ? other_lo : lo;
    hi = other_hi > hi ? other_hi : hi;
  }
  if (t != 0) return;
  out[0] = lo;
  out[1] = hi;
}

/// Rows [first, first + rows) of a [len][D] tensor into shared memory with row stride `ld`
/// (bf16; fp32 rounded), zeros past `len`, by every thread of the block (no barrier): eight
/// elements per 16-byte access when `from` is 16-byte aligned (the backends' buffers are), one by
/// one otherwise.
template <int D, class T>
BUBBLESIM_DEVICE void load_rows(dev::bf16* to, int ld, const T* from, int64_t first, int rows, int64_t len) {
  static_assert(D % 8 == 0, "rows of whole 16-byte chunks");
  if (reinterpret_cast<uintptr_t>(from) % 16 == 0) {
    constexpr int kChunks = D / 8;
    for (int idx = dev::thread(); idx < rows * kChunks; idx += kThreads) {
      const int r = idx / kChunks, c = idx % kChunks * 8;
      dev::bf16* at = to + r * ld + c;
      if (first + r >= len) {
        dev::zero_bf16x8(at);
      } else if constexpr (sizeof(T) == 4) {
        dev::convert_bf16x8(at, from + (first + r) * D + c);
      } else {
        dev::copy_bf16x8(at, from + (first + r) * D + c);
      }
    }
    return;
  }
  for (int idx = dev::thread(); idx < rows * D; idx += kThreads) {
    const int r = idx / D, c = idx % D;
    if constexpr (sizeof(T) == 4) {
      to[r * ld + c] = dev::to_bf16(first + r < len ? from[(first + r) * D + c] : 0.0F);
    } else {
      to[r * ld + c] = first + r < len ? from[(first + r) * D + c] : dev::to_bf16(0.0F);
    }
  }
}

namespace wmma = dev::wmma;
using FragA = wmma::fragment<wmma::matrix_a, kEdge, kEdge, kEdge, dev::bf16, wmma::row_major>;
using FragAT = wmma::fragment<wmma::matrix_a, kEdge, kEdge, kEdge, dev::bf16, wmma::col_major>;
using FragB = wmma::fragment<wmma::matrix_b, kEdge, kEdge, kEdge, dev::bf16, wmma::row_major>;
using FragBT = wmma::fragment<wmma::matrix_b, kEdge, kEdge, kEdge, dev::bf16, wmma::col_major>;
using FragC = wmma::fragment<wmma::accumulator, kEdge, kEdge, kEdge, float>;

/// acc += A B with the inner dimension in kSteps slices of 16: slice i of A is the AFrag-typed
/// tile at a + i * a_step (row stride lda), of B the BFrag-typed tile at b + i * b_step (ldb).
template <class AFrag, class BFrag, int kSteps>
BUBBLESIM_DEVICE void multiply(FragC& acc, const dev::bf16* a, int lda, int a_step, const dev::bf16* b, int ldb,
                               int b_step) {
  BUBBLESIM_UNROLL
  for (int i = 0; i < kSteps; ++i) {
    AFrag fa;
    BFrag fb;
    wmma::load_matrix_sync(fa, a + i * a_step, lda);
    wmma::load_matrix_sync(fb, b + i * b_step, ldb);
    wmma::mma_sync(acc, fa, fb, acc);
  }
}

/// O = softmax(Q K^T scale, masked) V and lse, for 64 queries of one head per block; grid
/// (ceil(q_len / 64), heads), kThreads threads, ForwardLayout<D, BC>::bytes of shared memory.
template <int D, int BC>
BUBBLESIM_KERNEL(kThreads)
forward(Shape z, DeviceMask m, const dev::bf16* q, const dev::bf16* k, const dev::bf16* v, float* out, float* lse) {
  using L = ForwardLayout<D, BC>;
  unsigned char* sm = dev::shared_memory();
  auto* qs = reinterpret_cast<dev::bf16*>(sm + L::q);
  auto* ks = reinterpret_cast<dev::bf16*>(sm + L::k);
  auto* vs = reinterpret_cast<dev::bf16*>(sm + L::v);
  auto* ss = reinterpret_cast<float*>(sm + L::s);
  auto* ps = reinterpret_cast<dev::bf16*>(sm + L::s);  // P replaces S once read
  auto* os = reinterpret_cast<float*>(sm + L::o);
  auto* qp = reinterpret_cast<int64_t*>(sm + L::q_pos);
  auto* kp = reinterpret_cast<int64_t*>(sm + L::kv_pos);
  auto* ext = reinterpret_cast<int64_t*>(sm + L::extent);  // q min, q max, k min, k max
  const int t = dev::thread(), warp = t / 32, lane = t % 32, h = dev::block_y();
  const int64_t i0 = static_cast<int64_t>(dev::block_x()) * kRows;
  const int64_t qoff = static_cast<int64_t>(h) * z.q_len * D, koff = static_cast<int64_t>(h) * z.kv_len * D;

  load_rows<D>(qs, L::kLdH, q + qoff, i0, kRows, z.q_len);
  for (int idx = t; idx < kRows * L::kLdO; idx += kThreads) os[idx] = 0.0F;
  if (t < kRows) qp[t] = i0 + t < z.q_len ? position(m.q_pos, i0 + t) : LLONG_MAX;
  dev::block_sync();
  extent_of(qp, kRows, ext);

  // Warp w owns rows [16w, 16w + 16); lanes 2r and 2r+1 share its row r, half its columns each.
  const int row0 = warp * kEdge, r = row0 + lane / 2, side = lane % 2;
  const int64_t my_pos = qp[r];
  FragA qa[D / kEdge];  // this warp's queries, in registers for every key tile (FlashAttention-2's)
  BUBBLESIM_UNROLL
  for (int c = 0; c < D / kEdge; ++c) wmma::load_matrix_sync(qa[c], qs + row0 * L::kLdH + c * kEdge, L::kLdH);
  float row_max = -INFINITY, row_sum = 0.0F;
  for (int64_t k0 = 0; k0 < z.kv_len; k0 += BC) {
    dev::block_sync();  // every warp is done with the previous tile
    if (t < BC) kp[t] = k0 + t < z.kv_len ? position(m.kv_pos, k0 + t) : LLONG_MAX;
    dev::block_sync();
    extent_of(kp, BC, ext + 2);
    dev::block_sync();
    const Tile tile = classify(m.causal, ext);
    if (tile == kSkip) continue;  // the same for the whole block: its keys are never loaded
    load_rows<D>(ks, L::kLdH, k + koff, k0, BC, z.kv_len);
    load_rows<D>(vs, L::kLdH, v + koff, k0, BC, z.kv_len);
    dev::block_sync();

    for (int n = 0; n < BC / kEdge; ++n) {  // S = Q K^T for this warp's rows
      FragC acc;
      wmma::fill_fragment(acc, 0.0F);
      BUBBLESIM_UNROLL
      for (int c = 0; c < D / kEdge; ++c) {
        FragBT b;
        wmma::load_matrix_sync(b, ks + n * kEdge * L::kLdH + c * kEdge, L::kLdH);
        wmma::mma_sync(acc, qa[c], b, acc);
      }
      wmma::store_matrix_sync(ss + row0 * L::kLdS + n * kEdge, acc, L::kLdS, wmma::mem_row_major);
    }
    dev::warp_sync();

    constexpr int kHalf = BC / 2;
    float s[kHalf];
    float mx = -INFINITY;
    BUBBLESIM_UNROLL
    for (int j = 0; j < kHalf; ++j) {
      const int64_t kpos = kp[side * kHalf + j];
      const bool allowed = kpos != LLONG_MAX && (tile == kFull || kpos <= my_pos);
      s[j] = allowed ? ss[r * L::kLdS + side * kHalf + j] * z.scale : -INFINITY;
      mx = fmaxf(mx, s[j]);
    }
    mx = fmaxf(mx, dev::warp_xor(mx, 1));
    const float new_max = fmaxf(row_max, mx);
    const float rescale = new_max == -INFINITY ? 1.0F : dev::fast_exp(row_max - new_max);
    dev::warp_sync();  // both lanes of the row have read its scores: P overwrites them
    float sum = 0.0F;
    BUBBLESIM_UNROLL
    for (int j = 0; j < kHalf; ++j) {
      const float p = s[j] == -INFINITY ? 0.0F : dev::fast_exp(s[j] - new_max);
      ps[r * L::kLdP + side * kHalf + j] = dev::to_bf16(p);
      sum += p;
    }
    sum += dev::warp_xor(sum, 1);
    row_sum = row_sum * rescale + sum;
    row_max = new_max;
    for (int c = side * (D / 2); c < (side + 1) * (D / 2); ++c) os[r * L::kLdO + c] *= rescale;
    dev::warp_sync();

    for (int n = 0; n < D / kEdge; ++n) {  // O += P V
      FragC acc;
      wmma::load_matrix_sync(acc, os + row0 * L::kLdO + n * kEdge, L::kLdO, wmma::mem_row_major);
      multiply<FragA, FragB, BC / kEdge>(acc, ps + row0 * L::kLdP, L::kLdP, kEdge, vs + n * kEdge, L::kLdH,
                                         kEdge * L::kLdH);
      wmma::store_matrix_sync(os + row0 * L::kLdO + n * kEdge, acc, L::kLdO, wmma::mem_row_major);
    }
  }
  dev::warp_sync();  // the last O += P V is stored

  const int64_t i = i0 + r;
  if (i >= z.q_len) return;
  const float inv = row_sum > 0.0F ? 1.0F / row_sum : 0.0F;
  for (int c = side * (D / 2); c < (side + 1) * (D / 2); ++c) out[qoff + i * D + c] = os[r * L::kLdO + c] * inv;
  if (side == 0) lse[static_cast<int64_t>(h) * z.q_len + i] = row_sum > 0.0F ? row_max + logf(row_sum) : -INFINITY;
}

/// dQ, dK, dV added into what is there, for 64 keys of one head per block, given the forward's
/// lse and delta_i = sum_c dO_ic O_ic; grid (ceil(kv_len / 64), heads), kThreads threads,
/// BackwardLayout<D, BR>::bytes of shared memory.
template <int D, int BR>
BUBBLESIM_KERNEL(kThreads)
backward(Shape z, DeviceMask m, const dev::bf16* q, const dev::bf16* k, const dev::bf16* v, const float* lse,
         const float* dout, const float* delta, float* dq, float* dk, float* dv) {
  using L = BackwardLayout<D, BR>;
  unsigned char* sm = dev::shared_memory();
  auto* ks = reinterpret_cast<dev::bf16*>(sm + L::k);
  auto* vs = reinterpret_cast<dev::bf16*>(sm + L::v);
  auto* qs = reinterpret_cast<dev::bf16*>(sm + L::q);
  auto* dos = reinterpret_cast<dev::bf16*>(sm + L::dout);
  auto* st = reinterpret_cast<float*>(sm + L::st);
  auto* dpt = reinterpret_cast<float*>(sm + L::dpt);
  auto* pt = reinterpret_cast<dev::bf16*>(sm + L::st);    // P^T replaces S^T once read
  auto* dst = reinterpret_cast<dev::bf16*>(sm + L::dpt);  // dS^T replaces dP^T once read
  auto* ls = reinterpret_cast<float*>(sm + L::lse);
  auto* dl = reinterpret_cast<float*>(sm + L::delta);
  auto* kp = reinterpret_cast<int64_t*>(sm + L::kv_pos);
  auto* qp = reinterpret_cast<int64_t*>(sm + L::q_pos);
  auto* ext = reinterpret_cast<int64_t*>(sm + L::extent);
  const int t = dev::thread(), warp = t / 32, lane = t % 32, h = dev::block_y();
  auto* stage = reinterpret_cast<float*>(sm + L::stage) + warp * kEdge * L::kLdStage;
  const int64_t j0 = static_cast<int64_t>(dev::block_x()) * kRows;
  const int64_t qoff = static_cast<int64_t>(h) * z.q_len * D, koff = static_cast<int64_t>(h) * z.kv_len * D;

  load_rows<D>(ks, L::kLdH, k + koff, j0, kRows, z.kv_len);
  load_rows<D>(vs, L::kLdH, v + koff, j0, kRows, z.kv_len);
  if (t < kRows) kp[t] = j0 + t < z.kv_len ? position(m.kv_pos, j0 + t) : LLONG_MAX;
  dev::block_sync();
  extent_of(kp, kRows, ext + 2);

  // Warp w owns keys [16w, 16w + 16); lanes 2r and 2r+1 share its key r, half the queries each.
  const int key0 = warp * kEdge, jr = key0 + lane / 2, side = lane % 2;
  const int64_t my_pos = kp[jr];
  FragC dk_acc[D / kEdge], dv_acc[D / kEdge];
  BUBBLESIM_UNROLL
  for (int n = 0; n < D / kEdge; ++n) {
    wmma::fill_fragment(dk_acc[n], 0.0F);
    wmma::fill_fragment(dv_acc[n], 0.0F);
  }
  for (int64_t q0 = 0; q0 < z.q_len; q0 += BR) {
    dev::block_sync();  // every warp is done with the previous tile
    if (t < BR) {
      const bool in = q0 + t < z.q_len;
      const int64_t row = static_cast<int64_t>(h) * z.q_len + q0 + t;
      qp[t] = in ? position(m.q_pos, q0 + t) : LLONG_MAX;
      ls[t] = in ? lse[row] : -INFINITY;
      dl[t] = in ? delta[row] : 0.0F;
    }
    dev::block_sync();
    extent_of(qp, BR, ext);
    dev::block_sync();
    const Tile tile = classify(m.causal, ext);
    if (tile == kSkip) continue;  // the same for the whole block: its queries are never loaded
    load_rows<D>(qs, L::kLdH, q + qoff, q0, BR, z.q_len);
    load_rows<D>(dos, L::kLdH, dout + qoff, q0, BR, z.q_len);
    dev::block_sync();

    for (int n = 0; n < BR / kEdge; ++n) {  // S^T = K Q^T and dP^T = V dO^T for this warp's keys
      FragC s_acc, dp_acc;
      wmma::fill_fragment(s_acc, 0.0F);
      wmma::fill_fragment(dp_acc, 0.0F);
      multiply<FragA, FragBT, D / kEdge>(s_acc, ks + key0 * L::kLdH, L::kLdH, kEdge, qs + n * kEdge * L::kLdH, L::kLdH,
                                         kEdge);
      multiply<FragA, FragBT, D / kEdge>(dp_acc, vs + key0 * L::kLdH, L::kLdH, kEdge, dos + n * kEdge * L::kLdH,
                                         L::kLdH, kEdge);
      wmma::store_matrix_sync(st + key0 * L::kLdT + n * kEdge, s_acc, L::kLdT, wmma::mem_row_major);
      wmma::store_matrix_sync(dpt + key0 * L::kLdT + n * kEdge, dp_acc, L::kLdT, wmma::mem_row_major);
    }
    dev::warp_sync();

    constexpr int kHalf = BR / 2;
    float p[kHalf], ds[kHalf];
    BUBBLESIM_UNROLL
    for (int x = 0; x < kHalf; ++x) {
      const int i = side * kHalf + x;
      const int64_t qpos = qp[i];
      const bool allowed =
          my_pos != LLONG_MAX && qpos != LLONG_MAX && ls[i] != -INFINITY && (tile == kFull || my_pos <= qpos);
      p[x] = allowed ? dev::fast_exp(st[jr * L::kLdT + i] * z.scale - ls[i]) : 0.0F;
      ds[x] = p[x] * (dpt[jr * L::kLdT + i] - dl[i]) * z.scale;
    }
    dev::warp_sync();  // both lanes of the key have read S^T and dP^T: P^T and dS^T overwrite them
    BUBBLESIM_UNROLL
    for (int x = 0; x < kHalf; ++x) {
      pt[jr * L::kLdPT + side * kHalf + x] = dev::to_bf16(p[x]);
      dst[jr * L::kLdPT + side * kHalf + x] = dev::to_bf16(ds[x]);
    }
    dev::warp_sync();

    BUBBLESIM_UNROLL
    for (int n = 0; n < D / kEdge; ++n) {  // dV += P^T dO, dK += dS^T Q
      multiply<FragA, FragB, BR / kEdge>(dv_acc[n], pt + key0 * L::kLdPT, L::kLdPT, kEdge, dos + n * kEdge, L::kLdH,
                                         kEdge * L::kLdH);
      multiply<FragA, FragB, BR / kEdge>(dk_acc[n], dst + key0 * L::kLdPT, L::kLdPT, kEdge, qs + n * kEdge, L::kLdH,
                                         kEdge * L::kLdH);
    }
    dev::block_sync();  // every warp's dS^T is in place

    // dQ += dS K over the block's 64 keys: (BR / 16) x (D / 16) output tiles shared by the warps,
    // each staged in shared memory and added into global memory atomically (other key blocks
    // add into the same rows).
    for (int id = warp; id < (BR / kEdge) * (D / kEdge); id += kWarps) {
      const int mt = id / (D / kEdge), nt = id % (D / kEdge);
      FragC acc;
      wmma::fill_fragment(acc, 0.0F);
      multiply<FragAT, FragB, kRows / kEdge>(acc, dst + mt * kEdge, L::kLdPT, kEdge * L::kLdPT, ks + nt * kEdge,
                                             L::kLdH, kEdge * L::kLdH);
      wmma::store_matrix_sync(stage, acc, L::kLdStage, wmma::mem_row_major);
      dev::warp_sync();
      for (int e = lane; e < kEdge * kEdge; e += 32) {
        const int64_t i = q0 + mt * kEdge + e / kEdge;
        if (i < z.q_len)
          dev::atomic_add(&dq[qoff + i * D + nt * kEdge + e % kEdge], stage[(e / kEdge) * L::kLdStage + e % kEdge]);
      }
      dev::warp_sync();
    }
  }

  // dK and dV: this block's keys are its own, so plain adds.
  const auto add_into = [&](float* to, const FragC& acc, int n) {
    wmma::store_matrix_sync(stage, acc, L::kLdStage, wmma::mem_row_major);
    dev::warp_sync();
    for (int e = lane; e < kEdge * kEdge; e += 32) {
      const int64_t j = j0 + key0 + e / kEdge;
      if (j < z.kv_len) to[koff + j * D + n * kEdge + e % kEdge] += stage[(e / kEdge) * L::kLdStage + e % kEdge];
    }
    dev::warp_sync();
  };
  BUBBLESIM_UNROLL
  for (int n = 0; n < D / kEdge; ++n) {
    add_into(dk, dk_acc[n], n);
    add_into(dv, dv_acc[n], n);
  }
}

}  // namespace bubblesim::hw::cuda::flash
