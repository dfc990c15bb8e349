#include "sim/model/network.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include "sim/core/error.hpp"

namespace bubblesim::sim {
namespace {

constexpr double kDrainedBytes = 1e-6;  // float residue below which a flow has drained

}  // namespace

FlowNetwork::FlowNetwork(const Topology& topo) : topo_(topo) {
  link_bytes_.assign(topo.links(), 0.0);
  link_left_.assign(topo.links(), 0.0);
  link_users_.assign(topo.links(), 0);
}

void FlowNetwork::start(const Program& p, GroupId g, Time now) {
  drain_to(now);
  if (pending_.size() <= g) pending_.resize(p.groups().size(), 0);
  const auto transfers = p.transfers(g);
  BUBBLESIM_ASSERT(!transfers.empty(), "network asked to carry a group without transfers");
  pending_[g] = static_cast<uint32_t>(transfers.size());
  for (const Transfer& t : transfers) {
    const int32_t a = t.from_gpu;
    const int32_t b = t.to_gpu;
    if (a < 0 || b < 0 || a >= topo_.gpus() || b >= topo_.gpus()) {
      throw InputError("transfer between GPUs " + std::to_string(a) + " and " + std::to_string(b) +
                       " of a cluster with " + std::to_string(topo_.gpus()));
    }
    if (a == b) {  // same GPU: a local copy, free at this level of detail
      tails_.push_back({now, g});
      continue;
    }
    const auto& route = topo_.route(a, b);
    Time latency;
    for (LinkId l : route) latency += topo_.link(l).latency;
    latency = latency * t.hops;
    if (t.bytes.value <= 0) {
      tails_.push_back({now + latency, g});
      continue;
    }
    flows_.push_back(Flow{g, &route, static_cast<double>(t.bytes.value), 0.0, latency});
  }
  recompute_rates();
  ++version_;
}

void FlowNetwork::drain_to(Time now) {
  const double dt = (now - now_).seconds();
  if (dt > 0) {
    for (Flow& f : flows_) {
      const double moved = std::min(f.remaining, f.rate * dt);
      f.remaining -= moved;
      for (LinkId l : *f.route) link_bytes_[l] += moved;
    }
  }
  now_ = now;
}

void FlowNetwork::recompute_rates() {
  // Progressive filling: raise every unfrozen flow's rate together; when a link fills, freeze
  // the flows on it at the fair share they reached.
  for (Flow& f : flows_) {
    f.rate = -1;  // unfrozen
    for (LinkId l : *f.route) {
      link_left_[l] = topo_.link(l).bandwidth.bytes_per_s;
      link_users_[l] = 0;
    }
  }
  for (const Flow& f : flows_) {
    for (LinkId l : *f.route) ++link_users_[l];
  }
  size_t unfrozen = flows_.size();
  while (unfrozen > 0) {
    double share = std::numeric_limits<double>::infinity();
    for (const Flow& f : flows_) {
      if (f.rate >= 0) continue;
      for (LinkId l : *f.route) share = std::min(share, link_left_[l] / link_users_[l]);
    }
    for (Flow& f : flows_) {
      if (f.rate >= 0) continue;
      bool bottlenecked = false;
      for (LinkId l : *f.route) bottlenecked = bottlenecked || link_left_[l] / link_users_[l] <= share * (1 + 1e-12);
      if (!bottlenecked) continue;
      f.rate = share;
      --unfrozen;
      for (LinkId l : *f.route) {
        link_left_[l] -= share;
        --link_users_[l];
        if (link_users_[l] == 0) link_left_[l] = std::numeric_limits<double>::infinity();
      }
    }
  }
}

Time FlowNetwork::next_event() const {
  Time next = Time::max();
  for (const Flow& f : flows_) next = min(next, now_ + Time::from_seconds(f.remaining / f.rate));  // drains
  for (const Tail& t : tails_) next = min(next, t.arrive);
  return next;
}

void FlowNetwork::finish_transfer(GroupId g, std::vector<GroupId>& finished) {
  BUBBLESIM_ASSERT(pending_[g] > 0, "transfer finished twice");
  if (--pending_[g] == 0) finished.push_back(g);
}

void FlowNetwork::advance(Time now, std::vector<GroupId>& finished) {
  // Flows whose bytes drain by `now` - latency have arrived; the others drain up to now.
  drain_to(now);
  bool changed = false;
  for (size_t i = 0; i < flows_.size();) {
    Flow& f = flows_[i];
    // Drained: no bytes left, or less than next_event() can see (it rounds to whole ps).
    if (f.remaining > kDrainedBytes && Time::from_seconds(f.remaining / f.rate) > Time::zero()) {
      ++i;
      continue;
    }
    // Drained: its tail ends one route latency after the drain, which happened by now.
    tails_.push_back({now + f.latency, f.group});
    f = flows_.back();
    flows_.pop_back();
    changed = true;
  }
  for (size_t i = 0; i < tails_.size();) {
    if (tails_[i].arrive > now) {
      ++i;
      continue;
    }
    finish_transfer(tails_[i].group, finished);
    tails_[i] = tails_.back();
    tails_.pop_back();
    changed = true;
  }
  if (changed) {
    recompute_rates();
    ++version_;
  }
}

}  // namespace bubblesim::sim
