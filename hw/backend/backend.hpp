// The backend interface the hw runner drives: compute of an op's shape, point-to-point messages
// (collectives arrive already expanded into their algorithm's transfers by the Program), a
// monotonic clock and a barrier. The host backend implements it with CPU kernels and MPI; a GPU
// backend plugs in behind the same calls.
// Not a scheduler: the runner decides when each op starts; a backend only does the work.
#pragma once

#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "sim/ir/program.hpp"

namespace bubblesim::hw {

/// A message in flight; backends hand them out and take them back in test().
using RequestId = uint32_t;

/// A rank that stopped the run: an error on this rank, or another rank that died. The message
/// names the rank.
class RankFailure : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual int rank() const = 0;
  virtual int ranks() const = 0;
  /// Seconds on a monotonic clock; only differences mean anything.
  virtual double now() const = 0;
  /// Returns once every rank has called it (polling, so a dead peer ends it with RankFailure).
  virtual void barrier() = 0;

  /// Does the work of a compute op (its class and shape) and returns when it is done.
  virtual void compute(const sim::OpWork& work) = 0;
  /// Adds `bytes` of received data into a local accumulator (a collective's reduction).
  virtual void reduce(int64_t bytes) = 0;

  /// Starts sending `bytes` to `peer` under `tag`; `synchronous` completes only once the peer
  /// has started receiving (NCCL's send/recv rendezvous).
  virtual RequestId isend(int peer, int64_t bytes, int64_t tag, bool synchronous) = 0;
  virtual RequestId irecv(int peer, int64_t bytes, int64_t tag) = 0;
  /// True once the message is done; its id is then free for reuse. Never blocks.
  virtual bool test(RequestId r) = 0;
  /// Throws RankFailure if the run must stop (another rank died, a signal arrived).
  virtual void check_alive() = 0;

  /// Concatenation of every rank's `values` at rank 0 (others get an empty vector), and the
  /// count each rank sent.
  virtual std::vector<double> gather(std::span<const double> values, std::vector<int>& counts) = 0;
  /// Rank 0's value on every rank.
  virtual int64_t broadcast(int64_t value) = 0;
};

}  // namespace bubblesim::hw
