// The plain arguments of the GPU attention kernels: the mask (causal or not, and the global token
// positions of the queries and keys in device memory; null: 0, 1, 2, ...) and the sizes they index
// with. Plain C++, so the kernels' code can also be built for the CPU emulation that tests it
// (tests/support/cuda_emulator.hpp).
#pragma once

#include <cstdint>

namespace bubblesim::hw::cuda {

struct DeviceMask {
  bool causal = true;
  const int64_t* q_pos = nullptr;
  const int64_t* kv_pos = nullptr;
};

/// One head group's sizes as the kernels index them (checked on the host to fit in int).
struct Shape {
  int heads, q_len, kv_len;
  float scale;  // 1 / sqrt(head_dim)
};

}  // namespace bubblesim::hw::cuda
