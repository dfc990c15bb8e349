#include "hw/backend/attention_mask.hpp"

#include <algorithm>
#include <cmath>

namespace bubblesim::hw {

CausalShift causal_shift_for(int64_t q_len, int64_t kv_len, double fraction) {
  auto pairs = [&](int64_t offset) {
    int64_t n = 0;
    for (int64_t i = 0; i < q_len; ++i) n += std::clamp<int64_t>(i + offset + 1, 0, kv_len);
    return n;
  };
  const auto target = static_cast<int64_t>(std::llround(fraction * static_cast<double>(q_len * kv_len)));
  int64_t lo = -q_len, hi = kv_len;  // pairs(lo) = 0, pairs(hi) = all
  while (hi - lo > 1) {
    const int64_t mid = lo + (hi - lo) / 2;
    (pairs(mid) < target ? lo : hi) = mid;
  }
  const int64_t best = target - pairs(lo) < pairs(hi) - target ? lo : hi;
  return {best, pairs(best)};
}

AttentionMask mask_for(int64_t q_len, int64_t kv_len, double fraction) {
  AttentionMask m;
  if (fraction >= 1) {
    m.causal = false;
    return m;
  }
  const CausalShift s = causal_shift_for(q_len, kv_len, fraction);
  m.q_pos.resize(static_cast<size_t>(q_len));
  for (int64_t i = 0; i < q_len; ++i) m.q_pos[static_cast<size_t>(i)] = i + s.offset;
  return m;
}

}  // namespace bubblesim::hw
