#include "sim/model/compute.hpp"

#include <algorithm>
#include <cmath>

#include "sim/core/error.hpp"

namespace bubblesim::sim {
namespace {

constexpr int64_t kTile = 128;     // CTA tile of cuBLAS bf16 kernels on Ampere/Hopper
constexpr int64_t kMinTile = 16;   // skinny shapes get kernels with tiles down to this
constexpr double kHalfEfficiencyK = 128;  // K at which the main loop reaches half its speed
constexpr double kCopyEfficiency = 0.85;  // of HBM bandwidth, STREAM-like copies (hardware.md 5)
constexpr double kLaunchSeconds = 4e-6;     // per kernel
constexpr int kBf16Bytes = 2;

bool is_hopper(const GpuPreset& g) { return g.arch == "hopper"; }

/// FlashAttention-2 on Hopper (no Hopper features), from hardware.md 2.2 [FA2fig]: forward hd128
/// 309 -> 370 TFLOPS (the FA3 figure's FA2 line); fwd+bwd 248 -> 338 non-causal and 163 -> 328
/// causal, 512 -> 16k tokens. The backward is what the fwd+bwd figure leaves after the forward
/// (backward FLOPs counted 2.5x): 3.5 / E_fb = 1 / E_f + 2.5 / E_b.
EfficiencyCurve fa2_hopper_fwd() {
  return {{{512, 309 / 989.0}, {1024, 350 / 989.0}, {2048, 362 / 989.0}, {4096, 368 / 989.0},
           {8192, 370 / 989.0}, {16384, 370 / 989.0}}};
}
EfficiencyCurve fa2_hopper_bwd() {
  const auto backward = [](double fwd_bwd, double fwd) { return 2.5 / (3.5 / fwd_bwd - 1 / fwd) / 989.0; };
  return {{{512, backward(248, 309)}, {16384, backward(338, 370)}}};
}
EfficiencyCurve fa2_hopper_causal() {
  // Causal over non-causal fwd+bwd (163/248 at 512, 328/338 at 16k) applied to the forward.
  return {{{512, 309 / 989.0 * 163 / 248}, {16384, 370 / 989.0 * 328 / 338}}};
}

/// FlashAttention efficiency (fraction of dense peak) by sequence length, hd128:
/// Hopper from FA3 (fwd; bwd from the third-party transcription), others from FA2 on A100
/// (fwd+bwd figure, applied to both directions). hardware.md 2.2.
EfficiencyCurve fwd_curve(const GpuPreset& g) {
  if (is_hopper(g)) {
    return {{{512, 467 / 989.0}, {1024, 565 / 989.0}, {2048, 625 / 989.0}, {4096, 638 / 989.0},
             {8192, 646 / 989.0}, {16384, 648 / 989.0}}};
  }
  return {{{512, 150 / 312.0}, {1024, 173 / 312.0}, {2048, 187 / 312.0}, {4096, 196 / 312.0},
           {8192, 201 / 312.0}, {16384, 203 / 312.0}}};
}

/// Causal attention (diagonal blocks): FA3 fwd hd128 causal on Hopper; FA2 fwd+bwd hd128 causal on
/// A100 for the others (hardware.md 2.2).
EfficiencyCurve causal_curve(const GpuPreset& g) {
  if (is_hopper(g)) {
    return {{{512, 292 / 989.0}, {1024, 423 / 989.0}, {2048, 521 / 989.0}, {4096, 579 / 989.0},
             {8192, 602 / 989.0}, {16384, 616 / 989.0}}};
  }
  return {{{512, 99 / 312.0}, {1024, 133 / 312.0}, {2048, 155 / 312.0}, {4096, 173 / 312.0},
           {8192, 182 / 312.0}, {16384, 189 / 312.0}}};
}

EfficiencyCurve bwd_curve(const GpuPreset& g) {
  if (is_hopper(g)) {
    return {{{512, 316 / 989.0}, {1024, 424 / 989.0}, {2048, 501 / 989.0}, {4096, 542 / 989.0},
             {8192, 559 / 989.0}, {16384, 561 / 989.0}}};
  }
  return fwd_curve(g);
}

}  // namespace

double EfficiencyCurve::at(double length) const {
  BUBBLESIM_ASSERT(!points.empty(), "empty efficiency curve");
  if (length <= points.front().first) return points.front().second * std::max(0.05, length / points.front().first);
  if (length >= points.back().first) return points.back().second;
  for (size_t i = 1; i < points.size(); ++i) {
    if (length <= points[i].first) {
      const double x0 = std::log2(points[i - 1].first);
      const double x1 = std::log2(points[i].first);
      const double w = (std::log2(length) - x0) / (x1 - x0);
      return points[i - 1].second + w * (points[i].second - points[i - 1].second);
    }
  }
  return points.back().second;
}

RooflineCompute::RooflineCompute(const GpuPreset& gpu, std::string_view attention_kernel, double elementwise_efficiency)
    : gpu_(gpu),
      attention_fwd_(fwd_curve(gpu)),
      attention_bwd_(bwd_curve(gpu)),
      attention_causal_(causal_curve(gpu)),
      elementwise_efficiency_(elementwise_efficiency > 0 ? elementwise_efficiency : gpu.elementwise_efficiency.value) {
  BUBBLESIM_ASSERT(elementwise_efficiency_ > 0, "GPU preset without an elementwise efficiency");
  if (attention_kernel == "flash2" && is_hopper(gpu)) {
    attention_fwd_ = fa2_hopper_fwd();
    attention_bwd_ = fa2_hopper_bwd();
    attention_causal_ = fa2_hopper_causal();
  }
  constexpr double kFa2Hd64 = 0.87;  // 132/150 .. 176/203 on A100; 215/248 .. 296/338 on H100
  constexpr double kFa3Hd64 = 0.75;  // FA3 fwd on H100: 333/467 .. 497/648
  head_dim_ratio_ = is_hopper(gpu) && attention_kernel != "flash2" ? kFa3Hd64 : kFa2Hd64;
}

double RooflineCompute::gemm_efficiency(const GemmShape& s) const {
  const auto ceil_div = [](int64_t a, int64_t b) { return (a + b - 1) / b; };
  // cuBLAS picks smaller tiles for a dimension shorter than a full tile.
  const auto tile_for = [](int64_t dim) {
    int64_t t = kMinTile;
    while (t < kTile && t < dim) t *= 2;
    return t;
  };
  const int64_t tm = tile_for(s.m);
  const int64_t tn = tile_for(s.n);
  const int64_t tiles_m = ceil_div(s.m, tm);
  const int64_t tiles_n = ceil_div(s.n, tn);
  const double tile_q = static_cast<double>(s.m * s.n) / static_cast<double>(tiles_m * tm * tiles_n * tn);
  const int64_t tiles = tiles_m * tiles_n * s.batch;
  const auto sms = static_cast<int64_t>(gpu_.sms.value);
  const double wave_q = static_cast<double>(tiles) / static_cast<double>(ceil_div(tiles, sms) * sms);
  const double k_eff = static_cast<double>(s.k) / (static_cast<double>(s.k) + kHalfEfficiencyK);
  return gpu_.gemm_efficiency.value * tile_q * wave_q * k_eff;
}

Time RooflineCompute::gemm(const GemmShape& s) const {
  const double flops = 2.0 * static_cast<double>(s.m) * static_cast<double>(s.n) * static_cast<double>(s.k) *
                       static_cast<double>(s.batch);
  const double bytes = kBf16Bytes * static_cast<double>(s.batch) * static_cast<double>(s.m * s.k + s.k * s.n + s.m * s.n);
  const double compute = flops / (gpu_.bf16_flops.value * gemm_efficiency(s));
  const double memory = bytes / (gpu_.hbm_bandwidth.value * kCopyEfficiency);  // operands stream
  return Time::from_seconds(kLaunchSeconds + std::max(compute, memory));
}

double RooflineCompute::attention_wave_ratio(const AttentionShape& s, double length) const {
  // FlashAttention launches one CTA per (sequence, head, 128-row block): of queries forward, of
  // keys backward, kFlashCtasPerSm resident per SM. The curves were measured with 16 heads and
  // 16k tokens per batch (hardware.md 2.2); a block with fewer CTAs fills its last wave less
  // (5 heads of 8k tokens: 320 CTAs, 1.2 waves on 132 SMs), one with as many fills it alike.
  constexpr double kRows = 128;
  constexpr double kFlashCtasPerSm = 2;
  const double slots = gpu_.sms.value * kFlashCtasPerSm;
  const auto wave = [&](double ctas) { return ctas / (std::ceil(ctas / slots) * slots); };
  const double rows = static_cast<double>(s.backward ? s.kv_len : s.q_len);
  const double ctas = static_cast<double>(s.batch * s.heads) * std::ceil(rows / kRows);
  const double bench_ctas = std::max(1.0, std::floor(16384 / length)) * 16 * std::ceil(length / kRows);
  return wave(ctas) / wave(bench_ctas);
}

Time RooflineCompute::attention(const AttentionShape& s) const {
  // FLOPs as FlashAttention counts them: 4 b q kv h d forward, 2.5x that backward.
  constexpr double kBackwardFactor = 2.5;
  const double pairs = static_cast<double>(s.q_len) * static_cast<double>(s.kv_len) * s.causal_fraction;
  const double flops = 4.0 * static_cast<double>(s.batch * s.heads * s.head_dim) * pairs *
                       (s.backward ? kBackwardFactor : 1.0);
  // The kernels' efficiency follows the sequence length they see; a block of q x kv behaves
  // like a square of their geometric mean.
  const double length = std::sqrt(static_cast<double>(s.q_len) * static_cast<double>(s.kv_len));
  // A causal (diagonal) block runs at the causal kernels' efficiency; the backward of one is
  // scaled by the same causal/non-causal ratio.
  constexpr double kCausalBelow = 0.75;  // causal_fraction under which a block counts as diagonal
  double eff = (s.backward ? attention_bwd_ : attention_fwd_).at(length);
  if (s.causal_fraction < kCausalBelow) eff *= attention_causal_.at(length) / attention_fwd_.at(length);
  eff *= attention_wave_ratio(s, length);
  // Smaller heads run slower per FLOP (hardware.md 2.2: hd64 reaches 0.87 of hd128 with FA2 on
  // A100 and H100, about 0.75 with FA3 on H100); below hd64 the same ratio per halving is
  // assumed (no measurement in hardware.md). hd above 128 is taken at hd128's efficiency.
  if (s.head_dim < 128) {
    const double per_halving = head_dim_ratio_;
    eff *= std::pow(per_halving, std::log2(128.0 / static_cast<double>(std::max<int64_t>(1, s.head_dim))));
  }
  return Time::from_seconds(kLaunchSeconds + flops / (gpu_.bf16_flops.value * eff));
}

Time RooflineCompute::memory_bound(Bytes bytes, MemoryOp kind) const {
  const double efficiency = kind == MemoryOp::Layer ? elementwise_efficiency_ : kCopyEfficiency;
  return Time::from_seconds(kLaunchSeconds + static_cast<double>(bytes.value) / (gpu_.hbm_bandwidth.value * efficiency));
}

}  // namespace bubblesim::sim
