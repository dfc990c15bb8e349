#include "hw/backend/attention_shards.hpp"

#include <algorithm>

namespace bubblesim::hw {

std::vector<float> check_values(int64_t n, uint32_t seed) {
  std::vector<float> t(static_cast<size_t>(n));
  uint32_t x = seed * 2654435761U + 12345U;
  for (float& v : t) {
    x = x * 1664525U + 1013904223U;
    v = static_cast<float>(x >> 8) / static_cast<float>(1U << 24) * 2.0F - 1.0F;
  }
  return t;
}

std::vector<float> shard_rows(const std::vector<float>& full, int64_t heads, int64_t seq, int64_t d,
                              const std::vector<int64_t>& pos) {
  const auto n = static_cast<int64_t>(pos.size());
  std::vector<float> out(static_cast<size_t>(heads * n * d));
  for (int64_t h = 0; h < heads; ++h) {
    for (int64_t i = 0; i < n; ++i) {
      std::copy_n(full.begin() + (h * seq + pos[static_cast<size_t>(i)]) * d, d, out.begin() + (h * n + i) * d);
    }
  }
  return out;
}

std::vector<float> place_rows(const std::vector<float>& shards, const std::vector<int64_t>& pos, int ranks,
                              int64_t heads, int64_t seq, int64_t d) {
  const auto local = static_cast<int64_t>(pos.size()) / ranks;
  std::vector<float> full(static_cast<size_t>(heads * seq * d));
  for (int64_t r = 0; r < ranks; ++r) {
    for (int64_t h = 0; h < heads; ++h) {
      for (int64_t i = 0; i < local; ++i) {
        const int64_t p = pos[static_cast<size_t>(r * local + i)];
        std::copy_n(shards.begin() + ((r * heads + h) * local + i) * d, d, full.begin() + (h * seq + p) * d);
      }
    }
  }
  return full;
}

}  // namespace bubblesim::hw
