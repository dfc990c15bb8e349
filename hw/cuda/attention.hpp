// Attention forward and backward on a CUDA GPU with the same semantics as the host kernels
// (hw/host/kernels.hpp): tiled over query and key blocks with online softmax, causal masking by
// global token positions per tile (skipped, full or diagonal), and a log-sum-exp output so ring
// attention's partial outputs merge exactly. Q, K, V are bf16; O, LSE, dO and the gradients fp32.
// Two implementations of the same contract:
//  - tensor-core (the default): FlashAttention-2's algorithm with bf16 WMMA and fp32
//    accumulation (hw/cuda/flash_attention.cuh), rounding P, dO and dS to bf16 as it does: on the
//    math units that training's attention kernels use, though simpler than FlashAttention-2/3
//    (no asynchronous copies, no Hopper warpgroup MMA), so slower than they are;
//  - cuda-core: the same tiles in fp32 on CUDA cores (hw/cuda/simt_attention.cuh), several
//    times slower, kept as the GPU's own reference (tighter tolerance) and as a fallback
//    (BUBBLESIM_ATTENTION_KERNEL=cuda-core).
// Both are written against device_dialect.cuh, so tests/attention_emulated_test runs them
// on CPU threads too.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "hw/backend/attention_mask.hpp"
#include "hw/cuda/attention_args.hpp"

namespace bubblesim::hw::cuda {

/// Head dims the kernels are built for.
bool supported_head_dim(int64_t head_dim);

enum class AttentionKernel { TensorCore, CudaCore };

/// "tensor-core" or "cuda-core".
std::string to_string(AttentionKernel kernel);
/// The kernel named by BUBBLESIM_ATTENTION_KERNEL (tensor-core when unset); InputError naming
/// the variable and the valid values otherwise.
AttentionKernel attention_kernel_from_environment();

/// O = softmax(Q K^T / sqrt(d) masked) V, lse[h][i] (natural log; -inf for a row with no
/// allowed key, whose output is 0). Tensors [heads][len][head_dim]. Enqueued on `stream`.
void attention_forward(const AttentionDims& d, const DeviceMask& m, const __nv_bfloat16* q, const __nv_bfloat16* k,
                       const __nv_bfloat16* v, float* out, float* lse, cudaStream_t stream,
                       AttentionKernel kernel = AttentionKernel::TensorCore);

/// Gradients given dO, recomputing the probabilities from `lse` (FlashAttention-2's backward);
/// adds into dq, dk, dv. `delta` is scratch of heads * q_len floats.
void attention_backward(const AttentionDims& d, const DeviceMask& m, const __nv_bfloat16* q, const __nv_bfloat16* k,
                        const __nv_bfloat16* v, const float* out, const float* lse, const float* dout, float* dq,
                        float* dk, float* dv, float* delta, cudaStream_t stream,
                        AttentionKernel kernel = AttentionKernel::TensorCore);

/// Fills `n` floats with `value`, and bf16 / float buffers with a deterministic pattern of small
/// values (as the host arena does).
void fill(float* x, int64_t n, float value, cudaStream_t stream);
void fill_pattern(__nv_bfloat16* x, int64_t n, cudaStream_t stream);
void fill_pattern(float* x, int64_t n, cudaStream_t stream);

}  // namespace bubblesim::hw::cuda
