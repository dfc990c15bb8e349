// DualPipe (two opposite pipelines of p stages, m/2 microbatches each) and DualPipeV (one
// pipeline of 2p stages in a V mapping): one eight-step generator, algorithms.md 1.9 / 1.10.
#include <deque>

#include "sim/core/error.hpp"
#include "sim/sched/generators.hpp"

namespace bubblesim::sim::detail {
namespace {

/// One rank of the eight-step DualPipe list. Phase 0 is the path in which this rank is stage
/// `hr`, phase 1 the other. Weight-grad passes wait in one FIFO shared by both phases.
struct DualRank {
  int32_t stage[2];
  int32_t f[2] = {0, 0};
  int32_t b[2] = {0, 0};
  std::deque<Action> w;
  RankActions out;

  void forward(int ph) { out.push_back({Phase::F, stage[ph], f[ph]++}); }
  /// Backward of phase `ph`: full B, or I with its W pushed to the FIFO when `zb`.
  void backward(int ph, bool zb) {
    const int32_t k = b[ph]++;
    if (!zb) {
      out.push_back({Phase::B, stage[ph], k});
      return;
    }
    out.push_back({Phase::I, stage[ph], k});
    w.push_back({Phase::W, stage[ph], k});
  }
  void weight_grad() {
    BUBBLESIM_ASSERT(!w.empty(), "dualpipe: W with an empty queue");
    out.push_back(w.front());
    w.pop_front();
  }
  /// Overlapped pair: forward of phase `fa`, full backward of phase `bb`.
  void overlapped(int fa, int bb) {
    out.push_back({Phase::FB, stage[fa], f[fa]++, stage[bb], b[bb]++});
  }
};

RankActions dual_rank(int32_t half, int32_t hr, int32_t mb, int32_t stage0, int32_t stage1) {
  DualRank d;
  d.stage[0] = stage0;
  d.stage[1] = stage1;
  const int32_t outer = half - hr - 1;
  for (int32_t k = 0; k < 2 * outer; ++k) d.forward(0);                       // 1
  for (int32_t k = 0; k < hr + 1; ++k) { d.forward(0); d.forward(1); }              // 2
  for (int32_t k = 0; k < outer; ++k) { d.backward(1, true); d.weight_grad(); d.forward(1); }  // 3
  const int32_t steady = mb - 2 * half + hr + 1;                        // 4
  for (int32_t k = 0; k < steady; ++k) {
    if (k == 0 && hr == half - 1) {
      d.forward(0);
      d.backward(1, false);
    } else {
      d.overlapped(0, 1);
    }
    d.overlapped(1, 0);
  }
  for (int32_t k = 0; k < outer; ++k) { d.backward(1, false); d.overlapped(1, 0); }    // 5
  bool zb = false;                                                       // 6
  for (int32_t i = 0; i < hr + 1; ++i) {
    const bool switch_now = i == (hr + 1) / 2;
    if (switch_now && hr % 2 == 1) zb = true;
    d.backward(1, zb);
    if (switch_now && hr % 2 == 0) zb = true;
    d.backward(0, zb);
  }
  for (int32_t k = 0; k < outer; ++k) { d.weight_grad(); d.backward(0, true); }          // 7
  for (int32_t k = 0; k < hr + 1; ++k) d.weight_grad();                           // 8
  BUBBLESIM_ASSERT(d.w.empty(), "dualpipe: weight-grad queue not drained");
  return std::move(d.out);
}

}  // namespace

std::vector<RankActions> dualpipe(const PipelineShape& s, bool cut_in_half) {
  const int32_t p = s.p;
  std::vector<RankActions> out(static_cast<size_t>(p));
  for (int32_t r = 0; r < p; ++r) {
    if (cut_in_half) {
      // DualPipeV: phase 0 = stage r, phase 1 = stage 2p-1-r of one V-mapped pipeline.
      out[static_cast<size_t>(r)] = dual_rank(p, r, s.m, r, 2 * p - 1 - r);
      continue;
    }
    // DualPipe: stage ids 0..p-1 are direction "f" (stage j on rank j), p..2p-1 direction "r"
    // (stage j on rank p-1-j). This rank is stage hr of its phase-0 direction.
    const int32_t half = p / 2;
    const bool first_half = r < half;
    const int32_t hr = first_half ? r : p - 1 - r;
    const int32_t fwd_dir_stage = r;               // rank r is stage r of direction f
    const int32_t rev_dir_stage = p + (p - 1 - r);  // and stage p-1-r of direction r
    out[static_cast<size_t>(r)] = first_half ? dual_rank(half, hr, s.m / 2, fwd_dir_stage, rev_dir_stage)
                                             : dual_rank(half, hr, s.m / 2, rev_dir_stage, fwd_dir_stage);
  }
  return out;
}

}  // namespace bubblesim::sim::detail
