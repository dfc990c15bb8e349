// The roofline compute model: GEMM quantisation effects, the memory-bound regime and the
// attention efficiency curves of hardware.md 2.
#include <catch2/catch.hpp>

#include "sim/model/compute.hpp"

using namespace bubblesim;
using namespace bubblesim::sim;

TEST_CASE("a large square GEMM runs near the measured best-shape efficiency", "[compute]") {
  const RooflineCompute a100(find_gpu("a100-sxm4-80gb", "test"));
  const GemmShape big{8192, 8192, 8192};
  // 0.869 (MAMF) x K 8192/(8192+128) x waves 4096/(38*108) = 0.853
  CHECK(a100.gemm_efficiency(big) == Approx(0.869 * 8192.0 / 8320.0 * 4096.0 / (38 * 108)).epsilon(1e-12));
  CHECK(a100.gemm(big).seconds() == Approx(4e-6 + 2.0 * 8192 * 8192 * 8192 / (312e12 * a100.gemm_efficiency(big))));
}

TEST_CASE("tile and wave quantisation lower a GEMM's efficiency", "[compute]") {
  const RooflineCompute h100(find_gpu("h100-sxm5-80gb", "test"));
  const double full_wave = h100.gemm_efficiency({128 * 132, 128, 4096});
  const double one_more_tile = h100.gemm_efficiency({128 * 133, 128, 4096});
  CHECK(one_more_tile < 0.6 * full_wave);  // the 133rd tile runs alone in a second wave
  // 129 rows need two 128-row tiles: half the second one is wasted (waves stay full here).
  CHECK(h100.gemm_efficiency({129, 128 * 132, 4096}) ==
        Approx(129.0 / 256.0 * h100.gemm_efficiency({128, 128 * 132, 4096})));
  CHECK(h100.gemm_efficiency({4096, 4096, 64}) < h100.gemm_efficiency({4096, 4096, 4096}));
}

TEST_CASE("a skinny GEMM is bound by memory bandwidth", "[compute]") {
  const RooflineCompute a100(find_gpu("a100-sxm4-80gb", "test"));
  const GemmShape gemv{1, 8192, 8192};
  const double bytes = 2.0 * (8192 + 8192.0 * 8192 + 8192);
  CHECK(a100.gemm(gemv).seconds() == Approx(4e-6 + bytes / (2039e9 * 0.85)));
  CHECK(a100.memory_bound(Bytes{2'039'000'000}).seconds() == Approx(4e-6 + 1e-3 / 0.85));
}

TEST_CASE("a layer's elementwise kernels run at the preset's fitted share of HBM, copies near STREAM", "[compute]") {
  const GpuPreset& gpu = find_gpu("a100-sxm4-80gb", "test");
  const RooflineCompute a100(gpu);
  const double e = gpu.elementwise_efficiency.value;
  CHECK(e > 0.25);
  CHECK(e < 0.85);
  CHECK(a100.memory_bound(Bytes{2'039'000'000}, MemoryOp::Layer).seconds() == Approx(4e-6 + 1e-3 / e));
  CHECK(a100.memory_bound(Bytes{2'039'000'000}, MemoryOp::Stream).seconds() == Approx(4e-6 + 1e-3 / 0.85));
  // A scenario's cluster.elementwise_efficiency replaces the preset's.
  const RooflineCompute fused(gpu, "flash", 0.8);
  CHECK(fused.memory_bound(Bytes{2'039'000'000}, MemoryOp::Layer).seconds() == Approx(4e-6 + 1e-3 / 0.8));
}

TEST_CASE("attention follows the FlashAttention curves by sequence length", "[compute]") {
  const RooflineCompute a100(find_gpu("a100-sxm4-80gb", "test"));
  const AttentionShape fwd{1, 4096, 4096, 32, 128, 1.0, false};
  const double flops = 4.0 * 32 * 128 * 4096.0 * 4096.0;
  CHECK(a100.attention(fwd).seconds() == Approx(4e-6 + flops / (196e12)));  // FA2 hd128 at 4k: 196 TFLOPS
  // A causal block computes half the pairs, at the causal kernels' lower efficiency (173 vs 196).
  const AttentionShape causal{1, 4096, 4096, 32, 128, 0.5, false};
  CHECK(a100.attention(causal).seconds() == Approx(4e-6 + flops / 2 / (173e12)));
  // Small ring-attention blocks are slower per FLOP than long sequences.
  const AttentionShape block{1, 512, 512, 32, 128, 1.0, false};
  const double per_flop_small = a100.attention(block).seconds() / (4.0 * 32 * 128 * 512.0 * 512.0);
  const double per_flop_large = a100.attention(fwd).seconds() / flops;
  CHECK(per_flop_small > 1.25 * per_flop_large);
  const RooflineCompute h100(find_gpu("h100-sxm5-80gb", "test"));
  CHECK(h100.attention({1, 16384, 16384, 32, 128, 1.0, false}).seconds() ==
        Approx(4e-6 + 4.0 * 32 * 128 * 16384.0 * 16384.0 / 648e12));  // FA3 fwd hd128 at 16k
  CHECK(h100.attention({1, 4096, 4096, 32, 128, 1.0, true}).seconds() ==
        Approx(4e-6 + 2.5 * flops / 542e12));  // FA3 bwd hd128 at 4k
}

TEST_CASE("efficiency curves interpolate in log length and clamp at the ends", "[compute]") {
  const EfficiencyCurve c{{{1024, 0.4}, {4096, 0.6}}};
  CHECK(c.at(2048) == Approx(0.5));
  CHECK(c.at(1 << 20) == Approx(0.6));
  CHECK(c.at(512) == Approx(0.2));  // below the first point it falls with the length
}

TEST_CASE("attention fills its last wave of CTAs as the curves' benchmark did, or worse", "[compute]") {
  const RooflineCompute h100(find_gpu("h100-sxm5-80gb", "test"));
  // 32 heads of 8K queries: 2048 CTAs, as many as the benchmark's 2 x 16 heads: no change.
  CHECK(h100.attention_wave_ratio({1, 8192, 8192, 32, 128, 1.0, false}, 8192) == Approx(1.0));
  // 5 heads: 320 CTAs on 132 SMs x 2 = 1.21 waves -> 2 waves, against 7.76 -> 8 for the benchmark.
  const double ratio = (320.0 / 528) / (2048.0 / 2112);
  CHECK(h100.attention_wave_ratio({1, 8192, 8192, 5, 128, 1.0, false}, 8192) == Approx(ratio));
  // The backward launches per key block: a long key block fills waves even with few queries.
  CHECK(h100.attention_wave_ratio({1, 128, 8192, 32, 128, 1.0, true}, 1024) >
        h100.attention_wave_ratio({1, 128, 8192, 32, 128, 1.0, false}, 1024));
}

TEST_CASE("FlashAttention-2 on Hopper and smaller heads run slower per FLOP", "[compute]") {
  const GpuPreset& h100_preset = find_gpu("h100-sxm5-80gb", "test");
  const RooflineCompute fa3(h100_preset);
  const RooflineCompute fa2(h100_preset, "flash2");
  const AttentionShape fwd{1, 16384, 16384, 32, 128, 1.0, false};
  const double flops = 4.0 * 32 * 128 * 16384.0 * 16384.0;
  CHECK(fa2.attention(fwd).seconds() == Approx(4e-6 + flops / 370e12));  // hardware.md 2.2: FA2 fwd hd128
  CHECK(fa3.attention(fwd).seconds() == Approx(4e-6 + flops / 648e12));
  // hd64 reaches 0.87 of hd128 with FA2 (A100), 0.75 with FA3 (H100), per FLOP.
  const RooflineCompute a100(find_gpu("a100-sxm4-80gb", "test"));
  const AttentionShape hd128{1, 4096, 4096, 32, 128, 1.0, false};
  const AttentionShape hd64{1, 4096, 4096, 64, 64, 1.0, false};  // the same FLOPs
  CHECK((a100.attention(hd64).seconds() - 4e-6) == Approx((a100.attention(hd128).seconds() - 4e-6) / 0.87));
  CHECK((fa3.attention(hd64).seconds() - 4e-6) == Approx((fa3.attention(hd128).seconds() - 4e-6) / 0.75));
}
