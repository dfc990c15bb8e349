// 1F1B (PipeDream-Flush) and Megatron's interleaved 1F1B (algorithms.md 1.3, 1.4).
#include <algorithm>

#include "sim/sched/generators.hpp"

namespace bubblesim::sim::detail {

std::vector<RankActions> one_f_one_b(const PipelineShape& s) {
  std::vector<RankActions> out(static_cast<size_t>(s.p));
  for (int32_t r = 0; r < s.p; ++r) {
    RankActions& a = out[static_cast<size_t>(r)];
    const int32_t warmup = std::min(s.p - r - 1, s.m);
    for (int32_t k = 0; k < warmup; ++k) a.push_back({Phase::F, r, k});
    for (int32_t i = 0; i < s.m - warmup; ++i) {
      a.push_back({Phase::F, r, warmup + i});
      a.push_back({Phase::B, r, i});
    }
    for (int32_t k = s.m - warmup; k < s.m; ++k) a.push_back({Phase::B, r, k});
  }
  return out;
}

std::vector<RankActions> interleaved(const PipelineShape& s) {
  const int32_t n = s.group_size == 0 ? s.p : s.group_size;
  const int32_t total = s.v * s.m;
  // Megatron's schedule table: groups of n microbatches; within a group, chunk-major.
  struct Row {
    int32_t mb;
    int32_t chunk;
  };
  std::vector<Row> table;
  table.reserve(static_cast<size_t>(total));
  for (int32_t first = 0; first < s.m; first += n) {
    const int32_t last = std::min(first + n, s.m);
    for (int32_t c = 0; c < s.v; ++c) {
      for (int32_t k = first; k < last; ++k) table.push_back({k, c});
    }
  }
  std::vector<RankActions> out(static_cast<size_t>(s.p));
  for (int32_t r = 0; r < s.p; ++r) {
    RankActions& a = out[static_cast<size_t>(r)];
    auto fwd = [&](int32_t k) {
      const Row& row = table[static_cast<size_t>(k)];
      a.push_back({Phase::F, row.chunk * s.p + r, row.mb});
    };
    auto bwd = [&](int32_t k) {
      const Row& row = table[static_cast<size_t>(k)];
      a.push_back({Phase::B, (s.v - 1 - row.chunk) * s.p + r, row.mb});
    };
    const int32_t warmup = std::min(2 * (s.p - r - 1) + (s.v - 1) * n, total);
    for (int32_t k = 0; k < warmup; ++k) fwd(k);
    for (int32_t k = 0; k < total - warmup; ++k) {
      fwd(warmup + k);
      bwd(k);
    }
    for (int32_t k = total - warmup; k < total; ++k) bwd(k);
  }
  return out;
}

}  // namespace bubblesim::sim::detail
