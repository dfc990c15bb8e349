// Zero-bubble schedules: ZB-H1 / ZB-H2 (sail-sg hand schedule, warm-up factor 1 or 2) and
// ZB-V (two chunks per rank in a V mapping). algorithms.md 1.6 - 1.8.
#include <algorithm>
#include <deque>

#include "sim/core/error.hpp"
#include "sim/sched/generators.hpp"

namespace bubblesim::sim::detail {

std::vector<RankActions> zero_bubble_h(const PipelineShape& s, int warmup_factor) {
  std::vector<RankActions> out(static_cast<size_t>(s.p));
  for (int32_t r = 0; r < s.p; ++r) {
    RankActions& a = out[static_cast<size_t>(r)];
    const int32_t warmup = std::min(warmup_factor * (s.p - 1 - r), s.m);
    const int32_t deferred = warmup_factor * r;  // W passes this rank holds back
    int32_t next_w = 0;
    for (int32_t k = 0; k < warmup; ++k) a.push_back({Phase::F, r, k});
    for (int32_t i = 0; i < s.m; ++i) {
      if (warmup + i < s.m) a.push_back({Phase::F, r, warmup + i});
      a.push_back({Phase::I, r, i});
      if (i >= deferred) a.push_back({Phase::W, r, next_w++});
    }
    while (next_w < s.m) a.push_back({Phase::W, r, next_w++});
  }
  return out;
}

namespace {

/// Per-rank state of the ZB-V generator: next forward / input-grad microbatch per chunk and
/// the FIFO of weight-grad passes still owed per chunk.
struct VRank {
  int32_t stage[2];
  int32_t f[2] = {0, 0};
  int32_t i[2] = {0, 0};
  std::deque<int32_t> w[2];
  RankActions out;

  void forward(int c) { out.push_back({Phase::F, stage[c], f[c]++}); }
  void input_grad(int c) {
    w[c].push_back(i[c]);
    out.push_back({Phase::I, stage[c], i[c]++});
  }
  void weight_grad(int c) {
    BUBBLESIM_ASSERT(!w[c].empty(), "zb-v: W with no pending I");
    out.push_back({Phase::W, stage[c], w[c].front()});
    w[c].pop_front();
  }
};

}  // namespace

std::vector<RankActions> zero_bubble_v(const PipelineShape& s) {
  const int32_t p = s.p;
  const int32_t n = std::max(2 * p - 1, s.m);  // ops for microbatches >= m are dropped below
  std::vector<RankActions> out(static_cast<size_t>(p));
  for (int32_t r = 0; r < p; ++r) {
    VRank v;
    v.stage[0] = r;
    v.stage[1] = 2 * p - 1 - r;
    for (int32_t k = 0; k < 2 * (p - r) - 1; ++k) v.forward(0);
    for (int32_t k = 0; k < r; ++k) {
      v.forward(1);
      v.forward(0);
    }
    for (int32_t k = 0; k < p - r; ++k) {
      v.forward(1);
      v.input_grad(1);
      v.weight_grad(1);
    }
    while (v.f[1] < v.f[0] || v.f[0] < n) {
      if (v.f[0] < n) v.forward(0);
      v.input_grad(0);
      v.weight_grad(0);
      v.forward(1);
      v.input_grad(1);
      v.weight_grad(1);
    }
    for (int32_t k = 0; k < r; ++k) {
      v.input_grad(0);
      v.input_grad(1);
    }
    for (int32_t k = 0; k < p - r; ++k) {
      v.input_grad(0);
      v.weight_grad(0);
    }
    while (!v.w[1].empty()) v.weight_grad(1);
    while (!v.w[0].empty()) v.weight_grad(0);
    RankActions& a = out[static_cast<size_t>(r)];
    for (const Action& act : v.out) {
      if (act.microbatch < s.m) a.push_back(act);
    }
  }
  return out;
}

}  // namespace bubblesim::sim::detail
