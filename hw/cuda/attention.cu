#include "hw/cuda/attention.hpp"

#include <algorithm>
#include <cfloat>
#include <climits>
#include <cmath>
#include <cstdlib>
#include <string>

#include "hw/cuda/cuda_check.hpp"
// clang-format off: the device primitives come before the kernels written against them.
#include "hw/cuda/device_dialect.cuh"
#include "hw/cuda/flash_attention.cuh"
// clang-format on
#include "sim/core/error.hpp"

namespace bubblesim::hw::cuda {
namespace {

constexpr int kFwdRows = 64;   // queries per forward block, one per thread
constexpr int kKeys = 16;      // keys per tile (forward, dQ)
constexpr int kKvRows = 64;    // keys per dK/dV block, one per thread
constexpr int kQTile = 8;      // queries per tile in the dK/dV kernel
constexpr int kDqRows = 32;    // queries per dQ block, one per thread
constexpr float kFill = 0.01F; // the host arena's scale: no overflow in softmax
static_assert(kKeys <= kFwdRows && kKeys <= kDqRows && kQTile <= kKvRows, "position loads use one thread each");

using Sizes = flash::Shape;

__device__ inline int64_t q_position(const DeviceMask& m, int64_t i) { return m.q_pos ? m.q_pos[i] : i; }
__device__ inline int64_t kv_position(const DeviceMask& m, int64_t j) { return m.kv_pos ? m.kv_pos[j] : j; }

/// Min and max of `n` positions in shared memory (thread 0 writes them): a tile's extent.
__device__ inline void extent(const int64_t* pos, int n, int64_t* lo, int64_t* hi) {
  if (threadIdx.x == 0) {
    int64_t a = LLONG_MAX, b = LLONG_MIN;
    for (int i = 0; i < n; ++i) {
      if (pos[i] == LLONG_MAX) continue;  // past the end
      a = min(a, pos[i]);
      b = max(b, pos[i]);
    }
    *lo = a;
    *hi = b;
  }
}

/// Tile classes, as on the host: causal tiles whose keys all come after every query are
/// skipped; those whose keys all come before every query need no mask.
enum Tile { kSkip, kFull, kDiagonal };

__device__ inline Tile classify(bool causal, int64_t qmin, int64_t qmax, int64_t kmin, int64_t kmax) {
  if (!causal) return kFull;
  if (kmin > qmax || qmin == LLONG_MAX || kmin == LLONG_MAX) return kSkip;
  return kmax <= qmin ? kFull : kDiagonal;
}

/// The next tile of keys [k0, k0 + kKeys): their positions into kp (LLONG_MAX past the end) and
/// the tile's class against the block's queries (*qmin, *qmax in shared memory, read after the
/// barriers). Every thread of the block gets the same class.
__device__ inline Tile key_tile(const DeviceMask& m, int64_t k0, int kv_len, const int64_t* qmin,
                                const int64_t* qmax, int64_t* kp, int64_t* kmin, int64_t* kmax) {
  const int t = static_cast<int>(threadIdx.x);
  __syncthreads();  // the previous tile is consumed
  if (t < kKeys) kp[t] = k0 + t < kv_len ? kv_position(m, k0 + t) : LLONG_MAX;
  __syncthreads();
  extent(kp, kKeys, kmin, kmax);
  __syncthreads();
  return classify(m.causal, *qmin, *qmax, *kmin, *kmax);
}

/// K and V of the keys [k0, k0 + kKeys) of one head into shared memory as fp32 (zeros past the
/// end), by every thread of the block, then a barrier.
template <int D>
__device__ inline void load_kv_tile(const __nv_bfloat16* k, const __nv_bfloat16* v, int64_t koff, int64_t k0,
                                    int kv_len, float (*ks)[D], float (*vs)[D]) {
  for (int idx = static_cast<int>(threadIdx.x); idx < kKeys * D; idx += static_cast<int>(blockDim.x)) {
    const int j = idx / D, c = idx % D;
    const bool in = k0 + j < kv_len;
    ks[j][c] = in ? __bfloat162float(k[koff + (k0 + j) * D + c]) : 0.0F;
    vs[j][c] = in ? __bfloat162float(v[koff + (k0 + j) * D + c]) : 0.0F;
  }
  __syncthreads();
}

template <int D>
__global__ void __launch_bounds__(kFwdRows)
    forward_kernel(Sizes z, DeviceMask m, const __nv_bfloat16* q, const __nv_bfloat16* k, const __nv_bfloat16* v,
                   float* out, float* lse) {
  __shared__ __nv_bfloat16 qs[D][kFwdRows];  // transposed: thread t reads column t
  __shared__ float ks[kKeys][D], vs[kKeys][D];
  __shared__ int64_t qp[kFwdRows], kp[kKeys];
  __shared__ int64_t qmin, qmax, kmin, kmax;
  const int h = blockIdx.y, t = threadIdx.x;
  const int64_t i = static_cast<int64_t>(blockIdx.x) * kFwdRows + t;
  const bool row = i < z.q_len;
  const int64_t qoff = static_cast<int64_t>(h) * z.q_len * D, koff = static_cast<int64_t>(h) * z.kv_len * D;
  for (int c = 0; c < D; ++c) qs[c][t] = row ? q[qoff + i * D + c] : __float2bfloat16(0.0F);
  const int64_t my_pos = row ? q_position(m, i) : LLONG_MAX;
  qp[t] = my_pos;
  __syncthreads();
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
      for (int c = 0; c < D; ++c) dot += __bfloat162float(qs[c][t]) * ks[j][c];
      s[j] = dot * z.scale;
      mx = fmaxf(mx, s[j]);
    }
    if (mx == -INFINITY) continue;  // nothing allowed in this row yet
    const float rescale = __expf(row_max - mx);
    float sum = 0.0F;
    for (int j = 0; j < kKeys; ++j) {
      s[j] = s[j] == -INFINITY ? 0.0F : __expf(s[j] - mx);
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

/// dK and dV: one thread per key row, looping over query tiles.
template <int D>
__global__ void __launch_bounds__(kKvRows)
    dkdv_kernel(Sizes z, DeviceMask m, const __nv_bfloat16* q, const __nv_bfloat16* k, const __nv_bfloat16* v,
                const float* lse, const float* dout, const float* delta, float* dk, float* dv) {
  __shared__ __nv_bfloat16 kt[D][kKvRows], vt[D][kKvRows];
  __shared__ float qs[kQTile][D], dos[kQTile][D], ls[kQTile], ds[kQTile];
  __shared__ int64_t kp[kKvRows], qp[kQTile];
  __shared__ int64_t qmin, qmax, kmin, kmax;
  const int h = blockIdx.y, t = threadIdx.x;
  const int64_t j = static_cast<int64_t>(blockIdx.x) * kKvRows + t;
  const bool key = j < z.kv_len;
  const int64_t qoff = static_cast<int64_t>(h) * z.q_len * D, koff = static_cast<int64_t>(h) * z.kv_len * D;
  for (int c = 0; c < D; ++c) {
    kt[c][t] = key ? k[koff + j * D + c] : __float2bfloat16(0.0F);
    vt[c][t] = key ? v[koff + j * D + c] : __float2bfloat16(0.0F);
  }
  const int64_t my_pos = key ? kv_position(m, j) : LLONG_MAX;
  kp[t] = my_pos;
  __syncthreads();
  extent(kp, kKvRows, &kmin, &kmax);
  float gk[D], gv[D];
  for (int c = 0; c < D; ++c) gk[c] = gv[c] = 0.0F;
  for (int64_t q0 = 0; q0 < z.q_len; q0 += kQTile) {
    __syncthreads();
    if (t < kQTile) qp[t] = q0 + t < z.q_len ? q_position(m, q0 + t) : LLONG_MAX;
    __syncthreads();
    extent(qp, kQTile, &qmin, &qmax);
    __syncthreads();
    const Tile tile = classify(m.causal, qmin, qmax, kmin, kmax);
    if (tile == kSkip) continue;  // the same for the whole block: its data is never loaded
    for (int idx = t; idx < kQTile * D; idx += kKvRows) {
      const int i = idx / D, c = idx % D;
      const bool in = q0 + i < z.q_len;
      qs[i][c] = in ? __bfloat162float(q[qoff + (q0 + i) * D + c]) : 0.0F;
      dos[i][c] = in ? dout[qoff + (q0 + i) * D + c] : 0.0F;
    }
    if (t < kQTile) {
      const bool in = q0 + t < z.q_len;
      ls[t] = in ? lse[static_cast<int64_t>(h) * z.q_len + q0 + t] : -INFINITY;
      ds[t] = in ? delta[static_cast<int64_t>(h) * z.q_len + q0 + t] : 0.0F;
    }
    __syncthreads();
    if (!key) continue;
    for (int i = 0; i < kQTile; ++i) {
      if (qp[i] == LLONG_MAX || ls[i] == -INFINITY || (tile == kDiagonal && my_pos > qp[i])) continue;
      float dot = 0.0F, dp = 0.0F;
      for (int c = 0; c < D; ++c) {
        dot += qs[i][c] * __bfloat162float(kt[c][t]);
        dp += dos[i][c] * __bfloat162float(vt[c][t]);
      }
      const float p = __expf(dot * z.scale - ls[i]);
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
__global__ void __launch_bounds__(kDqRows)
    dq_kernel(Sizes z, DeviceMask m, const __nv_bfloat16* q, const __nv_bfloat16* k, const __nv_bfloat16* v,
              const float* lse, const float* dout, const float* delta, float* dq) {
  __shared__ __nv_bfloat16 qt[D][kDqRows];
  __shared__ float dout_t[D][kDqRows];
  __shared__ float ks[kKeys][D], vs[kKeys][D];
  __shared__ int64_t qp[kDqRows], kp[kKeys];
  __shared__ int64_t qmin, qmax, kmin, kmax;
  const int h = blockIdx.y, t = threadIdx.x;
  const int64_t i = static_cast<int64_t>(blockIdx.x) * kDqRows + t;
  const bool row = i < z.q_len;
  const int64_t qoff = static_cast<int64_t>(h) * z.q_len * D, koff = static_cast<int64_t>(h) * z.kv_len * D;
  for (int c = 0; c < D; ++c) {
    qt[c][t] = row ? q[qoff + i * D + c] : __float2bfloat16(0.0F);
    dout_t[c][t] = row ? dout[qoff + i * D + c] : 0.0F;
  }
  const int64_t my_pos = row ? q_position(m, i) : LLONG_MAX;
  const float l = row ? lse[static_cast<int64_t>(h) * z.q_len + i] : -INFINITY;
  const float di = row ? delta[static_cast<int64_t>(h) * z.q_len + i] : 0.0F;
  qp[t] = my_pos;
  __syncthreads();
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
        dot += __bfloat162float(qt[c][t]) * ks[jj][c];
        dp += dout_t[c][t] * vs[jj][c];
      }
      const float p = __expf(dot * z.scale - l);
      const float dsv = p * (dp - di) * z.scale;
      for (int c = 0; c < D; ++c) g[c] += dsv * ks[jj][c];
    }
  }
  if (!row) return;
  for (int c = 0; c < D; ++c) dq[qoff + i * D + c] += g[c];
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

Sizes sizes(const AttentionDims& d) {
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

/// Lets `kernel` use `bytes` of dynamic shared memory (above 48 KB needs asking, per device).
template <class Kernel>
void allow_shared(Kernel* kernel, size_t bytes) {
  BUBBLESIM_CUDA(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)));
}

template <int D>
void forward(const AttentionDims& d, const DeviceMask& m, const __nv_bfloat16* q, const __nv_bfloat16* k,
             const __nv_bfloat16* v, float* out, float* lse, cudaStream_t s, AttentionKernel kind) {
  const Sizes z = sizes(d);
  if (d.heads == 0 || d.q_len == 0) return;
  if (kind == AttentionKernel::CudaCore) {
    forward_kernel<D><<<blocks(d.q_len, kFwdRows, d.heads), kFwdRows, 0, s>>>(z, m, q, k, v, out, lse);
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
  const Sizes z = sizes(d);
  if (d.heads == 0 || d.q_len == 0 || d.kv_len == 0) return;
  const int64_t rows = d.heads * d.q_len;
  delta_kernel<D><<<grid_for(rows, 256), 256, 0, s>>>(rows, out, dout, delta);
  BUBBLESIM_CUDA(cudaGetLastError());
  if (kind == AttentionKernel::CudaCore) {
    dkdv_kernel<D><<<blocks(d.kv_len, kKvRows, d.heads), kKvRows, 0, s>>>(z, m, q, k, v, lse, dout, delta, dk, dv);
    BUBBLESIM_CUDA(cudaGetLastError());
    dq_kernel<D><<<blocks(d.q_len, kDqRows, d.heads), kDqRows, 0, s>>>(z, m, q, k, v, lse, dout, delta, dq);
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
