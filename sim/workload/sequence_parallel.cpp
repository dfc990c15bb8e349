#include "sim/workload/sequence_parallel.hpp"

#include <string>

#include "sim/core/error.hpp"

namespace bubblesim::sim {

RingLayout parse_ring_layout(std::string_view name) {
  if (name == "contiguous") return RingLayout::Contiguous;
  if (name == "zigzag") return RingLayout::Zigzag;
  if (name == "striped") return RingLayout::Striped;
  throw InputError("unknown ring layout \"" + std::string(name) + "\" (valid: contiguous, zigzag, striped)");
}

const char* to_string(RingLayout layout) {
  switch (layout) {
    case RingLayout::Contiguous: return "contiguous";
    case RingLayout::Zigzag: return "zigzag";
    case RingLayout::Striped: return "striped";
  }
  return "?";
}

RingStepWork ring_step_work(RingLayout layout, int64_t ranks, int64_t local, int64_t rank, int64_t step) {
  BUBBLESIM_ASSERT(ranks >= 1 && rank >= 0 && rank < ranks && step >= 0 && step < ranks, "ring step out of range");
  const int64_t n = local;
  const int64_t diagonal = n * (n + 1) / 2;
  const int64_t source = ((rank - step) % ranks + ranks) % ranks;
  switch (layout) {
    case RingLayout::Contiguous:
      // Rank r owns tokens [r n, (r + 1) n): earlier blocks are full, later ones fully masked.
      if (step == 0) return {n, n, diagonal};
      if (source < rank) return {n, n, n * n};
      return {n, n, 0};
    case RingLayout::Zigzag: {
      // 2P chunks of c tokens; rank r owns chunks r and 2P - 1 - r.
      BUBBLESIM_ASSERT(n % 2 == 0, "zigzag needs an even number of tokens per rank");
      const int64_t c = n / 2;
      if (step == 0) return {n, n, 2 * c * c + c};
      if (source < rank) return {2 * c, c, 2 * c * c};  // both local chunks x the source's first
      return {c, 2 * c, 2 * c * c};                     // the local second chunk x both of the source's
    }
    case RingLayout::Striped:
      // Rank r owns tokens r, r + P, r + 2P, ...: a source at or before r includes the diagonal.
      return {n, n, source <= rank ? diagonal : n * (n - 1) / 2};
  }
  return {};
}

std::vector<int64_t> ring_positions(RingLayout layout, int64_t ranks, int64_t local, int64_t rank) {
  std::vector<int64_t> pos(static_cast<size_t>(local));
  const int64_t half = local / 2;
  for (int64_t i = 0; i < local; ++i) {
    switch (layout) {
      case RingLayout::Contiguous: pos[static_cast<size_t>(i)] = rank * local + i; break;
      case RingLayout::Zigzag:
        pos[static_cast<size_t>(i)] = i < half ? rank * half + i : (2 * ranks - 1 - rank) * half + (i - half);
        break;
      case RingLayout::Striped: pos[static_cast<size_t>(i)] = i * ranks + rank; break;
    }
  }
  return pos;
}

int64_t ring_rank_pairs(RingLayout layout, int64_t ranks, int64_t local, int64_t rank) {
  int64_t pairs = 0;
  for (int64_t t = 0; t < ranks; ++t) pairs += ring_step_work(layout, ranks, local, rank, t).pairs;
  return pairs;
}

int64_t ring_merge_bytes(int64_t batch, int64_t q_len, int64_t q_width) {
  // Per element: cast the bf16 block to fp32 (2 + 4), out - block (4 + 4 + 4), times
  // sigmoid(lse difference) (4 + 4), out minus that (4 + 4 + 4) (algorithms.md 2.1).
  constexpr int64_t kMergeBytes = 38;
  return batch * q_len * q_width * kMergeBytes;
}

int64_t ring_accumulate_bytes(int64_t batch, int64_t q_len, int64_t q_width, int64_t kv_len, int64_t kv_width) {
  constexpr int64_t kAccumulateBytes = 10;  // read the fp32 sum (4) and the bf16 block (2), write 4
  return batch * (q_len * q_width + 2 * kv_len * kv_width) * kAccumulateBytes;
}

SpTraffic sp_traffic(const SpShape& s, bool allgather) {
  SpTraffic t;
  const int64_t u = s.ulysses;
  const int64_t r = s.ring;
  const int64_t local = s.batch * s.seq / (u * r);         // tokens per rank before the all-to-all
  const int64_t q = s.heads * s.head_dim / s.tp;            // query width per tensor-parallel rank
  const int64_t kv = s.kv_heads * s.head_dim / s.tp;
  // Q, K, V to head-sharded and O back, forward; dO, dQ, dK, dV backward (same sizes).
  t.ulysses_forward = (u - 1) * local * (2 * q + 2 * kv) * s.bytes / u;
  t.ulysses_backward = t.ulysses_forward;
  const int64_t block_tokens = s.batch * s.seq / r;          // after the all-to-all
  const int64_t kv_local = kv / u;
  t.kv_block = 2 * block_tokens * kv_local * s.bytes;
  if (r > 1 && allgather) {
    t.allgather_forward = (r - 1) * t.kv_block;
    t.allgather_backward = t.allgather_forward;
  } else if (r > 1) {
    t.ring_forward = (r - 1) * t.kv_block;
    t.ring_backward = t.ring_forward + r * 2 * block_tokens * kv_local * s.accumulator_bytes;
  }
  return t;
}

}  // namespace bubblesim::sim
