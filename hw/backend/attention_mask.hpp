// Which query may attend to which key in an attention op the hw backends run, by global token
// positions, and the query offset that gives a causal block a chosen share of its pairs. Shared by
// the host (CPU) and GPU kernels so both mask exactly alike.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace bubblesim::hw {

/// Which query attends to which key: allowed when kv_pos[j] <= q_pos[i] (causal) or always.
/// Positions are global token indices, so a ring rank's shard of a zigzag or striped layout
/// masks exactly as the full sequence does.
struct AttentionMask {
  bool causal = true;
  std::vector<int64_t> q_pos, kv_pos;  // empty: 0, 1, 2, ...
  int64_t q(int64_t i) const { return q_pos.empty() ? i : q_pos[static_cast<size_t>(i)]; }
  int64_t kv(int64_t j) const { return kv_pos.empty() ? j : kv_pos[static_cast<size_t>(j)]; }
};

/// One head group's tensors, laid out [heads][len][head_dim], row-major.
struct AttentionDims {
  int64_t heads, q_len, kv_len, head_dim;
};

/// Query offset that makes a causal mask over a q_len x kv_len block allow about
/// `fraction` of its pairs (q_pos[i] = i + offset, kv_pos[j] = j): the runner's stand-in for a
/// ring step's or a diagonal block's work. Returns the offset and the pairs it allows.
struct CausalShift {
  int64_t offset;
  int64_t pairs;
};
CausalShift causal_shift_for(int64_t q_len, int64_t kv_len, double fraction);

/// The mask an op of `fraction` causal work gets: none at 1, else queries shifted by
/// causal_shift_for.
AttentionMask mask_for(int64_t q_len, int64_t kv_len, double fraction);

}  // namespace bubblesim::hw
