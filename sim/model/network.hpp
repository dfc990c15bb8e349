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

/// Flow-level max-min fair sharing over a Topology. A flow's start or completion recomputes the
/// rates of the flows it shares links with (transitively), by progressive filling; other flows
/// keep their rates and are not touched. Flows drain lazily: each keeps its bytes as of its last
/// rate change and its finish time sits in a heap. Costs per start or completion:
/// O(component flows x route length x bottleneck rounds + log flows).
/// A group that starts on idle links with transfers that all get the same rate (an all-to-all's
/// pairs, a ring step's twins) is kept as one bundle until another flow touches its links, when
/// it becomes ordinary flows again with the bytes it has left: the same rates and finish times,
/// at the cost of one object instead of one per transfer (`bundles` false turns this off).
class FlowNetwork final : public NetworkModel {
 public:
  explicit FlowNetwork(const Topology& topo, bool bundles = true);

  void start(const Program& p, GroupId g, Time now) override;
  Time next_event() const override;
  void advance(Time now, std::vector<GroupId>& finished) override;
  uint32_t version() const override { return version_; }

  /// Bytes per link of the flows drained so far (for link utilisation, once every flow has drained).
  const std::vector<double>& link_bytes() const { return link_bytes_; }

 private:
  using FlowId = uint32_t;
  struct Flow {
    GroupId group;
    const std::vector<LinkId>* route;
    double bytes;      // in all
    double remaining;  // bytes, as of `since`
    double rate = 0;   // bytes per second
    Time since;        // when `remaining` was last brought up to date
    Time finish;       // when the bytes drain at the current rate
    Time latency;
    uint32_t stamp = 0;  // bumped on every rate change; older heap entries are stale
    bool alive = false;
  };
  /// Flows that drain at the same moment share one heap entry (an all-to-all's pairs do).
  struct Due {
    Time at;
    uint32_t batch;  // index into batches_
    bool operator>(const Due& o) const { return at > o.at; }
  };
  struct Batched {
    FlowId flow;
    uint32_t stamp;  // the flow's stamp when batched; a later rate change makes it stale
  };
  struct Tail {
    Time arrive;
    GroupId group;
    bool operator>(const Tail& o) const { return arrive > o.arrive; }
  };
  /// Transfers of a group that share one rate while nothing else touches their links.
  struct Bundle {
    GroupId group;
    std::vector<const std::vector<LinkId>*> routes;
    std::vector<Time> latencies;
    double bytes = 0;  // each
    double rate = 0;   // each
    Time since, finish;
    uint32_t stamp = 0;
    bool alive = false;
  };
  struct BundleDue {
    Time at;
    uint32_t bundle;
    uint32_t stamp;
    bool operator>(const BundleDue& o) const { return at > o.at; }
  };
  struct Pending {  // a transfer of a starting group that needs a flow
    const std::vector<LinkId>* route;
    double bytes;
    Time latency;
  };
  /// Starts `pending` as one bundle if they qualify; returns whether it did.
  bool try_bundle(GroupId g, const std::vector<Pending>& pending);
  /// Turns the bundle on link `l` (if any) back into flows, as of now.
  void explode(LinkId l);
  void prune_bundles() const;
  uint32_t new_batch();
  FlowId add_flow(const Flow& f);
  void remove_flow(FlowId id);
  /// Brings the flows sharing links (transitively) with `seeds` up to now and refills their rates.
  void refill(const std::vector<LinkId>& seeds);
  /// A transfer of group g has drained; it arrives at `arrive`.
  void drained(GroupId g, Time arrive);
  void prune() const;  // drops heap tops with no live flow left so next_event() sees a live one
  bool live(const Batched& b) const { return flows_[b.flow].alive && flows_[b.flow].stamp == b.stamp; }

  const Topology& topo_;
  bool bundles_enabled_;
  std::vector<Bundle> bundles_;
  std::vector<uint32_t> free_bundles_;
  std::vector<uint32_t> link_bundle_;  // per link: the live bundle crossing it, or kNone
  mutable std::vector<BundleDue> bundle_due_;  // min-heap (lazy deletion)
  std::vector<uint32_t> link_count_;   // scratch for try_bundle
  std::vector<double> own_share_;      // scratch for try_bundle
  std::vector<Pending> pending_transfers_;  // scratch for start
  std::vector<LinkId> seeds_;          // scratch for start and advance: links whose flows changed
  std::vector<Flow> flows_;
  std::vector<FlowId> free_;
  std::vector<std::vector<FlowId>> link_flows_;  // per link: the live flows crossing it
  mutable std::vector<Due> due_;                 // min-heap of finish times (lazy deletion)
  mutable std::vector<std::vector<Batched>> batches_;
  mutable std::vector<uint32_t> free_batches_;
  std::vector<Tail> tails_;                      // min-heap: groups drained, in flight for their latency
  std::vector<uint32_t> pending_;                // per group: transfers not yet drained
  std::vector<Time> arrival_;                    // per group: latest arrival of its drained transfers
  std::vector<double> link_bytes_;
  std::vector<double> link_left_;                // scratch for refill
  std::vector<uint32_t> link_users_;
  std::vector<uint32_t> link_seen_, flow_seen_;  // scratch: visit marks per refill
  uint32_t visit_ = 0;
  std::vector<FlowId> component_;
  std::vector<double> old_rates_;                // per component flow, before the refill
  std::vector<FlowId> rescheduled_;
  std::vector<LinkId> component_links_;
  Time now_;
  uint32_t version_ = 0;
};

}  // namespace bubblesim::sim
