// The compute cost model: time of a GEMM, an attention block or a memory-bound op on one GPU,
// as a roofline over the preset with efficiency curves from measured data (hardware.md 2.1,
// 2.2): tile and wave quantisation and a short-K penalty for GEMMs, sequence-length curves for
// FlashAttention. Table-driven behind an interface so a calibration profile can replace it.
// Not the workload: sim/workload says which ops a transformer layer runs.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "sim/core/units.hpp"
#include "sim/preset/presets.hpp"

namespace bubblesim::sim {

struct GemmShape {
  int64_t m, n, k;  // C[m,n] = A[m,k] B[k,n]
  int64_t batch = 1;
};

struct AttentionShape {
  int64_t batch;
  int64_t q_len, kv_len;
  int64_t heads;     // query heads on this GPU
  int64_t head_dim;
  double causal_fraction;  // share of the q x kv pairs computed (1: full block, ~0.5: diagonal)
  bool backward;
};

/// What a memory-bound op is. Layer: a transformer layer's own elementwise kernels (norms,
/// activations, softmax, dropout, residual adds), which reduce, draw random masks and write in
/// one or two passes; Stream: plain streaming arithmetic (copies, merges of partial attention
/// results, gradient accumulation, the optimizer), which runs near a copy's rate.
enum class MemoryOp : uint8_t { Layer, Stream };

class ComputeModel {
 public:
  virtual ~ComputeModel() = default;
  virtual Time gemm(const GemmShape& s) const = 0;
  virtual Time attention(const AttentionShape& s) const = 0;
  /// A memory-bound op moving `bytes` through HBM.
  virtual Time memory_bound(Bytes bytes, MemoryOp kind = MemoryOp::Stream) const = 0;
};

/// Efficiency at a sequence length, interpolated in log2(length) between measured points.
struct EfficiencyCurve {
  std::vector<std::pair<double, double>> points;  // (length, fraction of peak), increasing length
  double at(double length) const;
};

class RooflineCompute final : public ComputeModel {
 public:
  /// `attention_kernel` "flash2" uses FlashAttention-2's curves on Hopper too (elsewhere they
  /// are the only ones); "flash" (or anything else) the best kernel for the GPU.
  /// `elementwise_efficiency`: share of HBM bandwidth a layer's memory-bound kernels reach
  /// (MemoryOp::Layer); 0: the preset's. Streaming ops run at a copy's 0.85.
  explicit RooflineCompute(const GpuPreset& gpu, std::string_view attention_kernel = "flash",
                           double elementwise_efficiency = 0);
  Time gemm(const GemmShape& s) const override;
  Time attention(const AttentionShape& s) const override;
  Time memory_bound(Bytes bytes, MemoryOp kind = MemoryOp::Stream) const override;

  /// Fraction of peak a GEMM of this shape reaches (for reports and tests).
  double gemm_efficiency(const GemmShape& s) const;
  /// How much better or worse an attention block fills the GPU's last wave of CTAs than the
  /// benchmark the curves come from did, at the curve's `length`.
  double attention_wave_ratio(const AttentionShape& s, double length) const;

 private:
  const GpuPreset& gpu_;
  EfficiencyCurve attention_fwd_;
  EfficiencyCurve attention_bwd_;
  EfficiencyCurve attention_causal_;
  double head_dim_ratio_ = 1;  // attention efficiency of hd64 relative to hd128
  double elementwise_efficiency_;
};

}  // namespace bubblesim::sim
