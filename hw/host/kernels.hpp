// CPU compute kernels of the host backend, in fp32: GEMM (BLAS), attention forward and backward
// tiled with online softmax and a log-sum-exp output (so ring attention's partial outputs merge
// exactly), the log-sum-exp merge itself, and a memory-bound stand-in moving a given number of
// bytes. They do the real arithmetic of an op's shape; the runner times them.
// Not a performance reference for GPUs: calibration fits the simulator to whatever they measure.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "hw/backend/attention_mask.hpp"

namespace bubblesim::hw {

/// Uses one BLAS thread per process (ranks share the machine's cores).
void init_blas_single_thread();

/// C[m,n] = A[m,k] B[k,n], row-major fp32, for `batch` independent matrices laid end to end.
void gemm(const float* a, const float* b, float* c, int64_t m, int64_t n, int64_t k, int64_t batch = 1);

/// O = softmax(Q K^T / sqrt(d) masked) V and lse[h][i] = log sum_j exp(s_ij) (natural log,
/// -inf for a row with no allowed key, whose output is then 0). Tiled over query and key blocks
/// of `kBlock`; fully masked blocks are skipped, diagonal blocks masked element by element.
void attention_forward(const AttentionDims& d, const AttentionMask& mask, const float* q, const float* k,
                       const float* v, float* out, float* lse);

/// Gradients of attention_forward given dO, recomputing the probabilities from `lse`
/// (FlashAttention-2's backward). Adds into dq, dk, dv (zero them first for plain gradients).
void attention_backward(const AttentionDims& d, const AttentionMask& mask, const float* q, const float* k,
                        const float* v, const float* out, const float* lse, const float* dout, float* dq, float* dk,
                        float* dv);

/// Merges a partial attention output (o2, lse2) into (o1, lse1) in place: the result is the
/// attention over the union of both key sets. `rows` rows of `head_dim`.
void merge_attention(float* o1, float* lse1, const float* o2, const float* lse2, int64_t rows, int64_t head_dim);

/// Moves `bytes` through memory (half read, half written), as a norm or activation would.
void memory_op(float* dst, const float* src, int64_t bytes);

}  // namespace bubblesim::hw
