// An attention mask as the GPU kernels read it: causal or not, and the global token positions of
// the queries and keys in device memory (null: 0, 1, 2, ...). Plain C++, so the kernels' code can
// also be built for the CPU emulation that tests it (tests/support/cuda_emulator.hpp).
#pragma once

#include <cstdint>

namespace bubblesim::hw::cuda {

struct DeviceMask {
  bool causal = true;
  const int64_t* q_pos = nullptr;
  const int64_t* kv_pos = nullptr;
};

}  // namespace bubblesim::hw::cuda
