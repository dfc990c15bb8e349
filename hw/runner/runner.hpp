// Runs one rank's part of a Program on a Backend: the ops of the Program device this rank plays,
// each stream in order, an op starting once it heads its stream and its dependencies on this
// device are done (a dependency on another device is met by the data arriving). Communication
// ops move this rank's own transfers of their group (most groups carry their twins' transfers;
// where one carries only its representative's, Twins gives the twin its own copy), in the
// group's hops; a one-sided transfer is sent when the receiving op's dependencies on the
// sender's device are done.
// Not a simulator: times are read from the backend's clock against a barrier-aligned start.
#pragma once

#include <cstdint>
#include <vector>

#include "hw/backend/backend.hpp"
#include "hw/runner/rank_map.hpp"
#include "sim/ir/program.hpp"

namespace bubblesim::hw {

/// One iteration on this rank: start and end of each of the device's ops, in seconds since the
/// barrier-aligned start, in the order of Runner::ops().
struct RankTimes {
  std::vector<double> start, end;
  double makespan = 0;
  int64_t bytes_sent = 0;  // this rank's messages in the iteration (host runner)
};

class Runner {
 public:
  /// This rank is GPU `gpu` of the job and plays Program device `device`. `stall_timeout_s`:
  /// an iteration with no progress for that long throws RankFailure naming what it waits for.
  /// `twins` (kept by the caller) gives a twin rank the transfers of groups that carry only its
  /// representative's.
  Runner(const sim::Program& p, sim::DeviceId device, int32_t gpu, Backend& backend, const Twins& twins,
         double stall_timeout_s = 120);
  RankTimes run_iteration();
  /// The device's ops, in the order RankTimes lists them.
  const std::vector<sim::OpId>& ops() const { return ops_; }

 private:
  using Peer = PeerBytes;
  /// One op's (or one-sided send's) messages: `hops` rounds of bytes / hops to and from each peer.
  struct Exchange {
    std::vector<Peer> out, in;
    int32_t hops = 1;
    sim::GroupKind kind = sim::GroupKind::SendRecv;
    bool synchronous = false;
    sim::GroupId group = sim::kNone;
  };
  struct Active {
    const Exchange* x;
    uint32_t local;  // index into ops_, or kNone for a one-sided send
    int32_t hop = 0;
    std::vector<RequestId> pending;
  };

  Exchange exchange_of(sim::OpId op) const;
  void post(Active& a);
  bool poll(Active& a);
  void complete(uint32_t local, double t, std::vector<int32_t>& remaining);
  std::string waiting_on(const std::vector<int32_t>& remaining) const;

  const sim::Program& p_;
  sim::DeviceId device_;
  int32_t gpu_;
  Backend& b_;
  double stall_timeout_s_;
  const Twins& twins_;
  std::vector<sim::OpId> ops_;                  // the device's ops, stream by stream
  std::vector<uint32_t> local_;                 // op id -> index into ops_ (kNone elsewhere)
  std::vector<std::vector<uint32_t>> streams_;  // per stream of the device: indices into ops_
  std::vector<int32_t> local_deps_;             // per op: dependencies on this device
  std::vector<Exchange> exchanges_;             // per op (empty for compute)
  std::vector<Exchange> sends_;                 // one-sided sends this rank makes
  std::vector<int32_t> send_deps_;              // per send: ops of this device it waits for
  std::vector<std::vector<uint32_t>> triggers_; // per op: sends it counts down
  // per iteration
  double t0_ = 0;
  RankTimes times_;
  std::vector<Active> active_;
  std::vector<int32_t> send_remaining_;
};

}  // namespace bubblesim::hw
