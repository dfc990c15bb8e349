// Correctness across ranks: ring attention (contiguous, zigzag or striped shards, K/V blocks and
// their dK/dV accumulators passed around the ring with MPI, partial outputs merged by
// log-sum-exp) and Ulysses (all-to-all from sequence to head shards and back) give the output and
// gradients of single-rank attention over the whole sequence, within a stated tolerance.
// Not timing: the runner and the microbenchmarks measure; this checks the arithmetic.
#pragma once

#include <cstdint>
#include <string>

#include "hw/host/mpi_backend.hpp"

namespace bubblesim::hw {

struct AttentionCheck {
  std::string mode;             // contiguous | zigzag | striped | ulysses
  int64_t seq = 512, heads = 4, head_dim = 32;
  double forward_error = 0;     // max |distributed - single-rank| over the output
  double backward_error = 0;    // over dQ, dK, dV (ring modes; 0 for Ulysses, whose backward is
                                // the same all-to-alls around the same kernel)
  static constexpr double kTolerance = 1e-4;  // fp32, values of order 1
  bool ok() const { return forward_error <= kTolerance && backward_error <= kTolerance; }
};

/// Runs the check on every rank of the session (causal attention); rank 0's result holds the
/// errors. InputError if the sizes do not split over the ranks.
AttentionCheck check_attention(const std::string& mode, int64_t seq, int64_t heads, int64_t head_dim,
                               const MpiSession& session);

}  // namespace bubblesim::hw
