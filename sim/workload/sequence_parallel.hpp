// Sequence (context) parallelism arithmetic (algorithms.md 2.1-2.4): which query-key pairs each
// ring rank computes at each step under the contiguous, zigzag and striped layouts, and the
// bytes each scheme moves per rank and layer. Pure functions: sim/sched/training.cpp turns them
// into ops and transfers, `bubblesim explain` prints them.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

namespace bubblesim::sim {

enum class RingLayout : uint8_t { Contiguous, Zigzag, Striped };
RingLayout parse_ring_layout(std::string_view name);  // InputError listing the valid names
const char* to_string(RingLayout layout);

/// Attention work of ring rank `rank` at step `step` (against the K/V block of rank
/// (rank - step) mod ranks), for a sequence of `ranks * local` tokens.
struct RingStepWork {
  int64_t q_len = 0;   // queries taking part
  int64_t kv_len = 0;  // keys taking part
  int64_t pairs = 0;   // unmasked query-key pairs (0: the step is skipped)
  double causal_fraction() const {
    return q_len * kv_len > 0 ? static_cast<double>(pairs) / static_cast<double>(q_len * kv_len) : 0;
  }
};

/// Causal work of one step; `local` tokens per rank (even for zigzag).
RingStepWork ring_step_work(RingLayout layout, int64_t ranks, int64_t local, int64_t rank, int64_t step);

/// The global token positions a ring rank holds, in its local order: contiguous [r*local,
/// (r+1)*local); zigzag chunks r and 2*ranks-1-r of local/2 tokens; striped every ranks-th token
/// from r. `local` tokens per rank (even for zigzag).
std::vector<int64_t> ring_positions(RingLayout layout, int64_t ranks, int64_t local, int64_t rank);

/// All pairs a rank computes over the whole ring (= its queries against every key before them).
int64_t ring_rank_pairs(RingLayout layout, int64_t ranks, int64_t local, int64_t rank);

/// HBM bytes of a forward ring step's log-sum-exp merge of its block output (q_len queries of
/// `q_width` elements) into the fp32 accumulator, as ring-flash-attention does it.
int64_t ring_merge_bytes(int64_t batch, int64_t q_len, int64_t q_width);
/// HBM bytes of a backward ring step adding its block's dQ (q_len x q_width) and dK, dV (kv_len x
/// kv_width each) into the fp32 accumulators.
int64_t ring_accumulate_bytes(int64_t batch, int64_t q_len, int64_t q_width, int64_t kv_len, int64_t kv_width);

/// Per-rank, per-layer bytes of one sequence-parallel configuration (algorithms.md 2.1-2.4).
struct SpShape {
  int64_t batch = 1, seq = 0;          // sequences per microbatch, tokens per sequence
  int64_t heads = 0, kv_heads = 0, head_dim = 0;
  int64_t tp = 1, ulysses = 1, ring = 1;
  int64_t bytes = 2;                   // activation element size
  int64_t accumulator_bytes = 4;       // dK/dV travelling round the ring (fp32)
};

struct SpTraffic {
  int64_t ulysses_forward = 0;    // all-to-all bytes sent per rank (self share excluded)
  int64_t ulysses_backward = 0;
  int64_t ring_forward = 0;       // K,V blocks sent per rank over the ring
  int64_t ring_backward = 0;      // K,V again plus the dK,dV accumulators (one more hop)
  int64_t allgather_forward = 0;  // all-gather CP: bytes received per rank
  int64_t allgather_backward = 0; // reduce-scatter of dK,dV
  int64_t kv_block = 0;           // one K plus one V block of the ring, bytes
};

/// Traffic of ring attention (cp_mode ring) or all-gather CP (`allgather`), with Ulysses inside.
SpTraffic sp_traffic(const SpShape& s, bool allgather);

}  // namespace bubblesim::sim
