// naive, gpipe and looped-bfs: schedules that run on any stage graph (any layer placement).
#include "sim/sched/generators.hpp"

namespace bubblesim::sim::detail {

std::vector<std::vector<int32_t>> local_stages(const StageGraph& g) {
  std::vector<std::vector<int32_t>> local(static_cast<size_t>(g.ranks));
  for (size_t s = 0; s < g.size(); ++s) local[static_cast<size_t>(g.device[s])].push_back(static_cast<int32_t>(s));
  return local;
}

std::vector<RankActions> naive(const StageGraph& g) {
  // Each microbatch goes all the way forward and back before the next one starts.
  auto local = local_stages(g);
  std::vector<RankActions> out(local.size());
  for (size_t r = 0; r < local.size(); ++r) {
    for (int32_t k = 0; k < g.microbatches; ++k) {
      for (int32_t st : local[r]) out[r].push_back({Phase::F, st, k});
      for (auto it = local[r].rbegin(); it != local[r].rend(); ++it) out[r].push_back({Phase::B, *it, k});
    }
  }
  return out;
}

std::vector<RankActions> fill_drain(const StageGraph& g, bool backward_descending) {
  // Local stages ascending, every microbatch forward; then local stages descending, backward.
  auto local = local_stages(g);
  std::vector<RankActions> out(local.size());
  const int32_t m = g.microbatches;
  for (size_t r = 0; r < local.size(); ++r) {
    for (int32_t st : local[r]) {
      for (int32_t k = 0; k < m; ++k) out[r].push_back({Phase::F, st, k});
    }
    for (auto it = local[r].rbegin(); it != local[r].rend(); ++it) {
      for (int32_t k = 0; k < m; ++k) out[r].push_back({Phase::B, *it, backward_descending ? m - 1 - k : k});
    }
  }
  return out;
}

}  // namespace bubblesim::sim::detail
