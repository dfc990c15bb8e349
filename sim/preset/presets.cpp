#include "sim/preset/presets.hpp"

#include <algorithm>

#include "sim/core/error.hpp"

namespace bubblesim::sim {
namespace {

constexpr double GB = 1e9;
constexpr double TFLOPS = 1e12;
constexpr double GiB = 1024.0 * 1024.0 * 1024.0;

// Source tags, as in ../shared/reference/hardware.md (section 1 tables and its source list).
constexpr std::string_view kSpecA100 = "NVIDIA A100 datasheet via hardware.md [A100ds]";
constexpr std::string_view kSpecA800 = "A100 silicon, NVLink cut to 400 GB/s bidir [A800a][A800b]";
constexpr std::string_view kSpecH100 = "NVIDIA H100 SXM5 datasheet via hardware.md [H100k][H100jp]";
constexpr std::string_view kSpecH800 = "H100 silicon, NVLink 400 GB/s bidir [H800a][SimAIbw][DSv3]";
constexpr std::string_view kSpecH200 = "NVIDIA H200 spec via hardware.md [H200]";
constexpr std::string_view kSpecL20 = "L20 figures quoted by [LLMProf][CUDANotes][topcpu]";
constexpr std::string_view kNcclTopo = "NCCL per-link NVLink constants x links, as SimAI [ncclTopo][SimAIbw]";
constexpr std::string_view kMamf = "best-shape BF16 GEMM / peak, stas00 MAMF [mleAcc]";
constexpr std::string_view kPcie4 = "PCIe 4.0 x16: 32 GB/s per direction raw, ~25 GB/s achieved [mleNet]";
constexpr std::string_view kPcie5 = "PCIe 5.0 x16: 64 GB/s per direction raw, ~55 GB/s pinned H2D [mleNet]";
constexpr std::string_view kNvlinkHop = "NCCL Simple-protocol NVLink hop latency 3.4 us [ncclTune]";
constexpr std::string_view kPcieHop = "NCCL Simple-protocol PCIe hop latency 5.7 us [ncclTune]";
constexpr std::string_view kGiB80 = "80 GB HBM = 80 GiB (nvidia-smi 81920 MiB)";
constexpr std::string_view kGiB40 = "40 GB HBM2 = 40 GiB (nvidia-smi 40960 MiB) [A100ds]";

// A transformer layer's memory-bound kernels (norms, activations, softmax, dropout, residual
// adds) on A100, fitted once to the Zero Bubble paper's profiled forward and input-gradient pass
// times of four GPT models (Table 6; the fit: `validation/zero_bubble/throughput.py
// --fit-elementwise-efficiency`). A STREAM copy reaches ~0.85 (hardware.md 5); these kernels
// reduce, draw dropout masks and write in one or two passes.
constexpr double kLayerKernels = 0.36;
constexpr std::string_view kLayerKernelsFit =
    "a layer's memory-bound kernels on A100, fitted to Zero Bubble Table 6 pass times [ZB]";
constexpr std::string_view kLayerKernelsAsA100 =
    "as A100's fitted memory-bound kernels [ZB] (the same kernels; not measured on this GPU: calibrate to replace)";

constexpr std::string_view kHostCpu =
    "assumed: 2 AVX2 FMA/cycle x 8 fp32 x 2 FLOP x 4 GHz; calibrate with bubblesim-hw bench";
const NicPreset kHostNet{1, Bandwidth{10 * GB / 8}, Bandwidth{1 * GB}, Time::from_seconds(30e-6),
                         "host backend across machines: MPI over 10 GbE TCP (assumed)"};
const NicPreset kHdr8{8, Bandwidth{200 * GB / 8}, Bandwidth{23.5 * GB}, Time::from_seconds(5e-6),
                      "DGX A100: 8x ConnectX-6 HDR 200 Gb/s, NCCL ~23.5 GB/s each [naddod][SimAIbw]"};
const NicPreset kHdr4{4, Bandwidth{200 * GB / 8}, Bandwidth{23.5 * GB}, Time::from_seconds(5e-6),
                      "A800 clusters: 4x HDR 200 Gb/s IB per node (4 or 8 seen), NCCL ~23.5 GB/s each [SimAIbw]"};
const NicPreset kNdr8{8, Bandwidth{400 * GB / 8}, Bandwidth{47.5 * GB}, Time::from_seconds(5e-6),
                      "DGX/HGX H100-class: 8x ConnectX-7 NDR 400 Gb/s, 46-49 GB/s each [DGXH100ug][nt290][nt267]"};
const NicPreset kRoce2{2, Bandwidth{100 * GB / 8}, Bandwidth{11 * GB}, Time::from_seconds(5e-6),
                       "no source for L20 nodes: assumed 2x 100 Gb/s RoCE; set cluster.inter_node to your fabric"};

}  // namespace

const std::vector<GpuPreset>& gpu_presets() {
  static const std::vector<GpuPreset> gpus{
      {"a100-sxm4-80gb", "NVIDIA A100-SXM4-80GB", "ampere", {312 * TFLOPS, kSpecA100}, {156 * TFLOPS, kSpecA100},
       {80 * GiB, kGiB80}, {2039 * GB, kSpecA100}, {108, kSpecA100}, {300 * GB, kSpecA100},
       {240 * GB, kNcclTopo}, Time::from_seconds(3.4e-6), 4, {25 * GB, kPcie4}, {0.869, kMamf}, {kLayerKernels, kLayerKernelsFit}, kHdr8},
      // The launch A100: the same GPU with 40 GB of HBM2 at 1.555 TB/s (MT-NLG's cluster).
      {"a100-sxm4-40gb", "NVIDIA A100-SXM4-40GB", "ampere", {312 * TFLOPS, kSpecA100}, {156 * TFLOPS, kSpecA100},
       {40 * GiB, kGiB40}, {1555 * GB, kSpecA100}, {108, kSpecA100}, {300 * GB, kSpecA100},
       {240 * GB, kNcclTopo}, Time::from_seconds(3.4e-6), 4, {25 * GB, kPcie4}, {0.869, kMamf}, {kLayerKernels, kLayerKernelsFit}, kHdr8},
      {"a800-sxm4-80gb", "NVIDIA A800-SXM4-80GB", "ampere", {312 * TFLOPS, kSpecA800}, {156 * TFLOPS, kSpecA800},
       {80 * GiB, kGiB80}, {2039 * GB, kSpecA800}, {108, kSpecA800}, {200 * GB, kSpecA800},
       {160 * GB, kNcclTopo}, Time::from_seconds(3.4e-6), 4, {25 * GB, kPcie4}, {0.869, "as A100 (same silicon) [mleAcc]"},
       {kLayerKernels, kLayerKernelsAsA100}, kHdr4},
      {"h100-sxm5-80gb", "NVIDIA H100-SXM5-80GB", "hopper", {989 * TFLOPS, kSpecH100}, {495 * TFLOPS, kSpecH100},
       {80 * GiB, kGiB80}, {3350 * GB, kSpecH100}, {132, kSpecH100}, {450 * GB, kSpecH100},
       {371 * GB, kNcclTopo}, Time::from_seconds(3.4e-6), 5, {55 * GB, kPcie5}, {0.803, kMamf}, {kLayerKernels, kLayerKernelsAsA100}, kNdr8},
      {"h800-sxm5-80gb", "NVIDIA H800-SXM5-80GB", "hopper", {989 * TFLOPS, kSpecH800}, {495 * TFLOPS, kSpecH800},
       {80 * GiB, kGiB80}, {3350 * GB, kSpecH800}, {132, kSpecH800}, {200 * GB, kSpecH800},
       {165 * GB, kNcclTopo}, Time::from_seconds(3.4e-6), 5, {55 * GB, kPcie5}, {0.803, "as H100 (same silicon) [mleAcc]"},
       {kLayerKernels, kLayerKernelsAsA100}, kNdr8},
      {"h200-sxm-141gb", "NVIDIA H200-SXM-141GB", "hopper", {989 * TFLOPS, kSpecH200}, {495 * TFLOPS, kSpecH200},
       {141 * GB, kSpecH200}, {4800 * GB, kSpecH200}, {132, kSpecH200}, {450 * GB, kSpecH200},
       {371 * GB, kNcclTopo}, Time::from_seconds(3.4e-6), 5, {55 * GB, kPcie5}, {0.803, "H200 ~ H100 BF16 [mleAcc]"},
       {kLayerKernels, kLayerKernelsAsA100}, kNdr8},
      {"l20-pcie-48gb", "NVIDIA L20 (PCIe, Ada AD102)", "ada", {119.5 * TFLOPS, kSpecL20}, {59.8 * TFLOPS, kSpecL20},
       {48 * GB, kSpecL20}, {864 * GB, kSpecL20}, {92, kSpecL20}, {0, "no NVLink: GPUs talk over PCIe [topcpu]"},
       {0, "no NVLink"}, Time::from_seconds(5.7e-6), 4, {25 * GB, kPcie4},
       {0.811, "assumed as A100 PCIe, no L20 measurement in hardware.md [mleAcc]"},
       {kLayerKernels, kLayerKernelsAsA100}, kRoce2},
      // The host backend's device: one CPU core per rank running fp32 OpenBLAS, ranks talking over
      // MPI shared memory. Figures are conservative guesses for a current x86 server core; the
      // calibration loop (bubblesim-hw bench, bubblesim calibrate) replaces them with measurements.
      {"host-cpu", "one CPU core per rank (host backend: fp32 OpenBLAS, MPI)", "cpu",
       {64e9, kHostCpu}, {64e9, kHostCpu}, {8 * GB, "host memory given to one rank (assumed)"},
       {10 * GB, "one core's streaming bandwidth (assumed)"}, {1, "one core"},
       {0, "no NVLink: ranks talk through MPI shared memory"}, {0, "no NVLink"}, Time::from_seconds(2e-6), 0,
       {4 * GB, "MPI shared-memory copy between two ranks (assumed; measured by bench p2p)"},
       {0.8, "fp32 BLAS on a large GEMM (assumed)"},
       {0.85, "streaming loops over one core's bandwidth (assumed)"}, kHostNet},
  };
  return gpus;
}

const std::vector<ModelPreset>& model_presets() {
  static const std::vector<ModelPreset> models{
      {"llama2-7b", 32, 4096, 32, 32, 11008, 32000, "swiglu", false, "meta-llama/Llama-2-7b config.json"},
      {"llama2-13b", 40, 5120, 40, 40, 13824, 32000, "swiglu", false, "meta-llama/Llama-2-13b config.json"},
      {"llama3-8b", 32, 4096, 32, 8, 14336, 128256, "swiglu", false, "meta-llama/Meta-Llama-3-8B config.json"},
      {"llama3-70b", 80, 8192, 64, 8, 28672, 128256, "swiglu", false, "meta-llama/Meta-Llama-3-70B config.json"},
      {"gpt3-175b", 96, 12288, 96, 96, 49152, 51200, "gelu", true,
       "GPT-3 paper Table 2.1; vocab padded to 51200 as Megatron-LM SC21"},
  };
  return models;
}

std::string closest(std::string_view given, const std::vector<std::string_view>& ids) {
  auto distance = [](std::string_view a, std::string_view b) {
    std::vector<size_t> row(b.size() + 1);
    for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
    for (size_t i = 1; i <= a.size(); ++i) {
      size_t diag = row[0];
      row[0] = i;
      for (size_t j = 1; j <= b.size(); ++j) {
        const size_t up = row[j];
        row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
        diag = up;
      }
    }
    return row[b.size()];
  };
  std::vector<std::pair<size_t, std::string_view>> ranked;
  // An id that starts with what was typed ("h100" -> "h100-sxm5-80gb") ranks first.
  for (auto id : ids) ranked.emplace_back(id.substr(0, given.size()) == given ? 0 : 1 + distance(given, id), id);
  std::stable_sort(ranked.begin(), ranked.end(), [](const auto& x, const auto& y) { return x.first < y.first; });
  std::string s;
  for (size_t i = 0; i < ranked.size() && i < 3; ++i) s += (s.empty() ? "" : ", ") + std::string(ranked[i].second);
  return s;
}

const GpuPreset& find_gpu(std::string_view id, std::string_view what) {
  std::vector<std::string_view> ids;
  for (const GpuPreset& g : gpu_presets()) {
    if (g.id == id) return g;
    ids.push_back(g.id);
  }
  throw InputError(std::string(what) + ": unknown GPU preset \"" + std::string(id) + "\" (closest: " +
                   closest(id, ids) + "; see bubblesim presets)");
}

const ModelPreset& find_model(std::string_view id, std::string_view what) {
  std::vector<std::string_view> ids;
  for (const ModelPreset& m : model_presets()) {
    if (m.id == id) return m;
    ids.push_back(m.id);
  }
  throw InputError(std::string(what) + ": unknown model preset \"" + std::string(id) + "\" (closest: " +
                   closest(id, ids) + "; see bubblesim presets)");
}

}  // namespace bubblesim::sim
