// The few device primitives the attention kernels (flash_attention.cuh on tensor cores,
// simt_attention.cuh on CUDA cores) use, mapped onto CUDA. tests/support/cuda_emulator.hpp maps
// the same names onto CPU threads, so the kernels' tiling, masking and synchronisation are tested
// where no GPU is.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <mma.h>

#define BUBBLESIM_DEVICE __device__ __forceinline__
#define BUBBLESIM_KERNEL(threads) __global__ void __launch_bounds__(threads)
#define BUBBLESIM_UNROLL _Pragma("unroll")
#define BUBBLESIM_SHARED __shared__

namespace bubblesim::hw::cuda::dev {

namespace wmma = nvcuda::wmma;
using bf16 = __nv_bfloat16;

BUBBLESIM_DEVICE float to_float(bf16 x) { return __bfloat162float(x); }
BUBBLESIM_DEVICE bf16 to_bf16(float x) { return __float2bfloat16(x); }
BUBBLESIM_DEVICE int thread() { return static_cast<int>(threadIdx.x); }
BUBBLESIM_DEVICE int block_x() { return static_cast<int>(blockIdx.x); }
BUBBLESIM_DEVICE int block_y() { return static_cast<int>(blockIdx.y); }
BUBBLESIM_DEVICE int block_threads() { return static_cast<int>(blockDim.x); }
BUBBLESIM_DEVICE void block_sync() { __syncthreads(); }
BUBBLESIM_DEVICE void warp_sync() { __syncwarp(); }
/// The value of lane (this lane ^ mask) of the warp.
BUBBLESIM_DEVICE float warp_xor(float v, int mask) { return __shfl_xor_sync(0xffffffffU, v, mask); }
BUBBLESIM_DEVICE int64_t warp_xor(int64_t v, int mask) {
  return static_cast<int64_t>(__shfl_xor_sync(0xffffffffU, static_cast<long long>(v), mask));
}
BUBBLESIM_DEVICE float fast_exp(float x) { return __expf(x); }
BUBBLESIM_DEVICE void atomic_add(float* at, float v) { atomicAdd(at, v); }
/// Eight bf16 in one 16-byte access (both pointers 16-byte aligned): copied, converted from eight
/// floats (two 16-byte loads), or zeros.
BUBBLESIM_DEVICE void copy_bf16x8(bf16* to, const bf16* from) {
  *reinterpret_cast<uint4*>(to) = *reinterpret_cast<const uint4*>(from);
}
BUBBLESIM_DEVICE void convert_bf16x8(bf16* to, const float* from) {
  const float4 a = reinterpret_cast<const float4*>(from)[0], b = reinterpret_cast<const float4*>(from)[1];
  alignas(16) const __nv_bfloat162 h[4] = {__floats2bfloat162_rn(a.x, a.y), __floats2bfloat162_rn(a.z, a.w),
                                           __floats2bfloat162_rn(b.x, b.y), __floats2bfloat162_rn(b.z, b.w)};
  *reinterpret_cast<uint4*>(to) = *reinterpret_cast<const uint4*>(h);
}
BUBBLESIM_DEVICE void zero_bf16x8(bf16* to) { *reinterpret_cast<uint4*>(to) = make_uint4(0, 0, 0, 0); }
/// The block's dynamic shared memory (the launch's third parameter).
BUBBLESIM_DEVICE unsigned char* shared_memory() {
  extern __shared__ __align__(128) unsigned char shared[];
  return shared;
}

}  // namespace bubblesim::hw::cuda::dev
