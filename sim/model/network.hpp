// Network models the executor asks when a group's transfers start: the flow-level model, where
// every transfer is a flow on its route and concurrent flows share each link max-min fairly
// (rates recomputed only when a flow starts or finishes), with each route's latency added after
// its bytes have drained.
// Not a packet simulator: no congestion control, queues or protocol effects beyond a latency.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "sim/ir/program.hpp"
#include "sim/topo/topology.hpp"

namespace bubblesim::sim {

/// What the executor needs from a network: start a group's transfers, and be told when time
/// reaches the network's next event. `version()` changes whenever next_event() may have moved, so
/// the executor can drop stale wake-ups instead of cancelling them.
class NetworkModel {
 public:
  virtual ~NetworkModel() = default;
  virtual void start(const Program& p, GroupId g, Time now) = 0;
  /// Earliest time something finishes; Time::max() when idle.
  virtual Time next_event() const = 0;
  /// Moves to `now` and appends the groups whose last transfer has arrived by then.
  virtual void advance(Time now, std::vector<GroupId>& finished) = 0;
  virtual uint32_t version() const = 0;
};

/// Flow-level max-min fair sharing over a Topology. Costs: start and each completion recompute
/// all rates by progressive filling, O(flows x route length x bottleneck rounds).
class FlowNetwork final : public NetworkModel {
 public:
  explicit FlowNetwork(const Topology& topo);

  void start(const Program& p, GroupId g, Time now) override;
  Time next_event() const override;
  void advance(Time now, std::vector<GroupId>& finished) override;
  uint32_t version() const override { return version_; }

  /// Bytes carried per link so far (for link utilisation).
  const std::vector<double>& link_bytes() const { return link_bytes_; }

 private:
  struct Flow {
    GroupId group;
    const std::vector<LinkId>* route;
    double remaining;  // bytes
    double rate = 0;   // bytes per second
    Time latency;
  };
  struct Tail {
    Time arrive;
    GroupId group;
  };
  void drain_to(Time now);
  void recompute_rates();
  void finish_transfer(GroupId g, std::vector<GroupId>& finished);

  const Topology& topo_;
  std::vector<Flow> flows_;         // draining
  std::vector<Tail> tails_;         // drained, in flight for their route latency
  std::vector<uint32_t> pending_;   // per group: transfers not yet arrived
  std::vector<double> link_bytes_;
  std::vector<double> link_left_;   // scratch for recompute_rates
  std::vector<uint32_t> link_users_;
  Time now_;
  uint32_t version_ = 0;
};

}  // namespace bubblesim::sim
