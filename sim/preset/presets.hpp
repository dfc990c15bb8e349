// GPU and model presets: the figures a scenario can refer to by id, each with its source.
// Not a hardware model: sim/model turns these figures into compute and network costs.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "sim/core/units.hpp"

namespace bubblesim::sim {

/// A figure and where it comes from (shown by `bubblesim presets`).
struct Sourced {
  double value = 0;
  std::string_view source;
};

struct NicPreset {
  int nics_per_node;        // compute NICs of a typical 8-GPU node
  Bandwidth per_nic;        // line rate, per direction
  Bandwidth per_nic_nccl;   // effective per NIC as NCCL achieves it
  Time latency;             // per transfer through the fabric
  std::string_view source;
};

struct GpuPreset {
  std::string_view id;
  std::string_view name;
  std::string_view arch;    // "ampere", "hopper" or "ada": picks the attention-kernel curves
  Sourced bf16_flops;       // dense tensor-core peak, FLOP/s (FP16 the same)
  Sourced tf32_flops;
  Sourced hbm_bytes;
  Sourced hbm_bandwidth;    // B/s
  Sourced sms;
  Sourced nvlink_per_dir;   // B/s per GPU per direction; 0: no NVLink (PCIe only)
  Sourced nvlink_nccl;      // B/s: NCCL's effective per-GPU NVLink ceiling (links x per-link)
  Time nvlink_latency;
  int pcie_gen;
  Sourced pcie_per_dir;     // B/s per direction, x16
  Sourced gemm_efficiency;  // best-shape BF16 GEMM / peak (MAMF)
  /// Share of the HBM bandwidth a transformer layer's memory-bound kernels reach (norms,
  /// activations, softmax, dropout, residual adds: MemoryOp::Layer); copies, merges and the
  /// optimizer stream at a copy's rate instead.
  Sourced elementwise_efficiency;
  NicPreset nic;
};

struct ModelPreset {
  std::string_view id;
  int32_t layers;
  int32_t hidden;
  int32_t heads;
  int32_t kv_heads;
  int32_t ffn_hidden;
  int32_t vocab;
  std::string_view activation;  // "swiglu" or "gelu"
  bool tied_embeddings;
  std::string_view source;
};

const std::vector<GpuPreset>& gpu_presets();
const std::vector<ModelPreset>& model_presets();

/// The preset with this id; throws InputError naming `what` and the closest valid ids.
const GpuPreset& find_gpu(std::string_view id, std::string_view what);
const ModelPreset& find_model(std::string_view id, std::string_view what);

/// Up to three ids from `ids` closest to `given` by edit distance, for error messages.
std::string closest(std::string_view given, const std::vector<std::string_view>& ids);

}  // namespace bubblesim::sim
