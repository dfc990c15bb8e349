// The device primitives of hw/cuda/device_dialect.cuh emulated on CPU threads, so kernels
// written against them (hw/cuda/flash_attention.cuh, hw/cuda/simt_attention.cuh) run unchanged in
// a test on a machine with no GPU: every CUDA thread of a block is a std::thread, __syncthreads
// and __syncwarp are barriers, a warp shuffle goes through a per-warp exchange, and WMMA
// fragments hold their whole 16 x 16 tile in every lane (WMMA's fragment layout is opaque, so a
// kernel that only loads, stores, fills and multiplies them cannot tell). Blocks run one after
// another.
//
// What it checks beyond the arithmetic: a missing barrier shows as a wrong result or a hang (only
// lane 0 of a warp performs a fragment store, so other lanes see it only after a warp barrier);
// dynamic shared memory starts as NaN bytes, so a read of what no thread wrote spreads NaN, and
// is allocated to the byte, so AddressSanitizer sees a tile past its end; WMMA's pointer (32-byte)
// and leading-dimension (16-byte) rules, and 16-byte accesses' alignment, abort with a message.
// bf16 rounds to nearest even, as the GPU's conversion does. Not emulated: timing, bank
// conflicts, register limits, and what the hardware allows beyond CUDA's rules.
#pragma once

#include <atomic>
#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <thread>
#include <type_traits>
#include <vector>

#define BUBBLESIM_DEVICE inline
#define BUBBLESIM_KERNEL(threads) void
#define BUBBLESIM_UNROLL
// Blocks run one after another, so a function-local static is what one block shares (statically
// sized shared arrays; unlike dynamic shared memory they start as zeros, not NaN).
#define BUBBLESIM_SHARED static

namespace bubblesim::hw::cuda::dev {

/// bfloat16: the upper half of a float, rounded to nearest even.
struct bf16 {
  uint16_t bits;
};

inline float to_float(bf16 x) {
  const uint32_t u = static_cast<uint32_t>(x.bits) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

inline bf16 to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  if ((u & 0x7fffffffU) > 0x7f800000U) return {static_cast<uint16_t>((u >> 16) | 0x40U)};  // NaN stays NaN
  u += 0x7fffU + ((u >> 16) & 1U);
  return {static_cast<uint16_t>(u >> 16)};
}

/// One block being run: its shared memory and barriers.
struct Block {
  // Exactly the bytes asked for (the kernels' layouts are multiples of 128), so AddressSanitizer
  // sees a tile that runs past them.
  Block(int threads, size_t shared_bytes)
      : threads(threads),
        shared(static_cast<unsigned char*>(std::aligned_alloc(128, allocated(shared_bytes)))),
        everyone(threads),
        exchange(static_cast<size_t>(threads)) {
    std::memset(shared.get(), 0xFF, allocated(shared_bytes));  // NaN as float and bf16
    for (int w = 0; w < (threads + 31) / 32; ++w) warps.push_back(std::make_unique<std::barrier<>>(32));
  }
  static size_t allocated(size_t bytes) { return bytes == 0 ? 128 : (bytes + 127) / 128 * 128; }
  struct Free {
    void operator()(unsigned char* p) const { std::free(p); }
  };
  int threads;
  std::unique_ptr<unsigned char, Free> shared;
  std::barrier<> everyone;
  std::vector<std::unique_ptr<std::barrier<>>> warps;
  std::vector<int64_t> exchange;  // one slot per thread, for shuffles
};

struct Self {
  int thread = 0, block_x = 0, block_y = 0;
  Block* block = nullptr;
};
inline thread_local Self self;

inline int thread() { return self.thread; }
inline int block_x() { return self.block_x; }
inline int block_y() { return self.block_y; }
inline int block_threads() { return self.block->threads; }
inline void block_sync() { self.block->everyone.arrive_and_wait(); }
inline void warp_sync() { self.block->warps[static_cast<size_t>(self.thread / 32)]->arrive_and_wait(); }
template <class T>
T warp_xor(T v, int mask) {
  static_assert(sizeof(T) <= sizeof(int64_t), "a shuffle moves at most 64 bits");
  auto& slot = self.block->exchange;
  std::memcpy(&slot[static_cast<size_t>(self.thread)], &v, sizeof v);
  warp_sync();
  T other;
  std::memcpy(&other, &slot[static_cast<size_t>((self.thread / 32) * 32 + ((self.thread % 32) ^ mask))], sizeof other);
  warp_sync();
  return other;
}
inline float fast_exp(float x) { return std::exp(x); }
inline void atomic_add(float* at, float v) { std::atomic_ref<float>(*at).fetch_add(v); }
inline unsigned char* shared_memory() { return self.block->shared.get(); }

[[noreturn]] inline void misuse(const char* what) {
  std::fprintf(stderr, "cuda_emulator: %s\n", what);
  std::abort();
}
inline void check_aligned16(const void* p) {
  if (reinterpret_cast<uintptr_t>(p) % 16 != 0) misuse("a 16-byte access needs a 16-byte aligned address");
}
inline void copy_bf16x8(bf16* to, const bf16* from) {
  check_aligned16(to);
  check_aligned16(from);
  std::memcpy(to, from, 16);
}
inline void convert_bf16x8(bf16* to, const float* from) {
  check_aligned16(to);
  check_aligned16(from);
  for (int i = 0; i < 8; ++i) to[i] = to_bf16(from[i]);
}
inline void zero_bf16x8(bf16* to) {
  check_aligned16(to);
  std::memset(to, 0, 16);
}

namespace wmma {

struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

/// The whole tile, element (row, column) at x[row * 16 + column], in every lane.
template <class Use, int M, int N, int K, class T, class Layout = void>
struct fragment {
  static_assert(M == 16 && N == 16 && K == 16, "the emulation has 16 x 16 x 16 tiles only");
  T x[256];
};

template <class T>
void check_tile(const T* p, unsigned ld) {
  if (reinterpret_cast<uintptr_t>(p) % 32 != 0) misuse("WMMA: a fragment's pointer must be 32-byte aligned");
  if (ld * sizeof(T) % 16 != 0) misuse("WMMA: a leading dimension must be a multiple of 16 bytes");
}

inline float value(float x) { return x; }
inline float value(bf16 x) { return to_float(x); }

template <class T>
void load(T* x, const T* p, unsigned ld, bool column_major) {
  check_tile(p, ld);
  for (int r = 0; r < 16; ++r) {
    for (int c = 0; c < 16; ++c) x[r * 16 + c] = column_major ? p[c * ld + r] : p[r * ld + c];
  }
}

template <class Use, class T, class Layout>
void load_matrix_sync(fragment<Use, 16, 16, 16, T, Layout>& f, const T* p, unsigned ld) {
  static_assert(!std::is_same_v<Use, accumulator>, "an accumulator load names its layout");
  load(f.x, p, ld, std::is_same_v<Layout, col_major>);
}

inline void load_matrix_sync(fragment<accumulator, 16, 16, 16, float>& f, const float* p, unsigned ld, layout_t l) {
  load(f.x, p, ld, l == mem_col_major);
}

inline void store_matrix_sync(float* p, const fragment<accumulator, 16, 16, 16, float>& f, unsigned ld, layout_t l) {
  check_tile(p, ld);
  if (self.thread % 32 != 0) return;  // one lane writes; the others see it after a warp barrier
  for (int r = 0; r < 16; ++r) {
    for (int c = 0; c < 16; ++c) (l == mem_col_major ? p[c * ld + r] : p[r * ld + c]) = f.x[r * 16 + c];
  }
}

template <class Use, class T, class Layout>
void fill_fragment(fragment<Use, 16, 16, 16, T, Layout>& f, float v) {
  for (T& x : f.x) {
    if constexpr (std::is_same_v<T, bf16>) {
      x = to_bf16(v);
    } else {
      x = v;
    }
  }
}

template <class LayoutA, class LayoutB>
void mma_sync(fragment<accumulator, 16, 16, 16, float>& d, const fragment<matrix_a, 16, 16, 16, bf16, LayoutA>& a,
              const fragment<matrix_b, 16, 16, 16, bf16, LayoutB>& b,
              const fragment<accumulator, 16, 16, 16, float>& c) {
  float result[256];
  for (int r = 0; r < 16; ++r) {
    for (int col = 0; col < 16; ++col) {
      float sum = c.x[r * 16 + col];
      for (int k = 0; k < 16; ++k) sum += value(a.x[r * 16 + k]) * value(b.x[k * 16 + col]);
      result[r * 16 + col] = sum;
    }
  }
  std::memcpy(d.x, result, sizeof result);
}

}  // namespace wmma
}  // namespace bubblesim::hw::cuda::dev

namespace bubblesim::hw::cuda::emulator {

/// Runs `kernel()` as a grid of grid_x x grid_y blocks of `threads` threads with `shared_bytes`
/// of shared memory each, block after block.
template <class Kernel>
void launch(int grid_x, int grid_y, int threads, size_t shared_bytes, const Kernel& kernel) {
  for (int by = 0; by < grid_y; ++by) {
    for (int bx = 0; bx < grid_x; ++bx) {
      dev::Block block(threads, shared_bytes);
      std::vector<std::thread> lanes;
      lanes.reserve(static_cast<size_t>(threads));
      for (int t = 0; t < threads; ++t) {
        lanes.emplace_back([&, t] {
          dev::self = {t, bx, by, &block};
          kernel();
        });
      }
      for (std::thread& lane : lanes) lane.join();
    }
  }
}

}  // namespace bubblesim::hw::cuda::emulator
