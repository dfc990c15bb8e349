// The tensors of the distributed-attention correctness checks, shared by the host (MPI, CPU) and
// GPU (NCCL) checks: deterministic values every rank can make alike, a rank's rows of the whole
// sequence, and the whole sequence put back together from every rank's rows.
// Not the kernels or the communication: each backend brings its own.
#pragma once

#include <cstdint>
#include <vector>

namespace bubblesim::hw {

/// `n` deterministic values in [-1, 1), the same on every rank for the same seed.
std::vector<float> check_values(int64_t n, uint32_t seed);

/// Rows `pos` of every head of `full` ([heads][seq][d]) -> [heads][pos.size()][d].
std::vector<float> shard_rows(const std::vector<float>& full, int64_t heads, int64_t seq, int64_t d,
                              const std::vector<int64_t>& pos);

/// The inverse over all ranks: `shards` holds rank after rank its [heads][local][d] rows, at the
/// positions `pos` holds rank after rank (`local` each) -> [heads][seq][d].
std::vector<float> place_rows(const std::vector<float>& shards, const std::vector<int64_t>& pos, int ranks,
                              int64_t heads, int64_t seq, int64_t d);

}  // namespace bubblesim::hw
