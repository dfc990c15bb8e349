// The host backend's compute: runs an op's work (sim::OpWork: class, shape, causal fraction)
// with the CPU kernels on buffers of that shape, kept in an arena that grows to the largest op
// and is reused. Used by the runner and by the compute microbenchmarks, so both time the same code.
// Not timing: callers read the clock around run().
#pragma once

#include <cstdint>
#include <map>
#include <tuple>
#include <vector>

#include "hw/host/kernels.hpp"
#include "sim/ir/program.hpp"

namespace bubblesim::hw {

class HostCompute {
 public:
  /// Refuses (InputError) ops needing more than `max_bytes` of buffers.
  explicit HostCompute(int64_t max_bytes = int64_t{4} << 30);
  /// Does the op's work: "gemm" (m, n, k, batch), "attention" / "attention_grad" (batch, q, kv,
  /// heads, head dim, causal fraction), "memory" (bytes). InputError for another class.
  void run(const sim::OpWork& work);
  /// Adds `bytes` of a received buffer into an accumulator (fp32).
  void reduce(int64_t bytes);

 private:
  float* buffer(int64_t floats);
  const AttentionMask& mask(int64_t q_len, int64_t kv_len, double fraction);

  int64_t max_bytes_;
  std::vector<float> arena_;
  std::map<std::tuple<int64_t, int64_t, int64_t>, AttentionMask> masks_;  // (q, kv, fraction in 1e-6)
};

}  // namespace bubblesim::hw
