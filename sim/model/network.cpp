#include "sim/model/network.hpp"

#include <algorithm>
#include <functional>
#include <limits>

#include "sim/core/error.hpp"

namespace bubblesim::sim {

FlowNetwork::FlowNetwork(const Topology& topo, bool bundles) : topo_(topo), bundles_enabled_(bundles) {
  const size_t links = static_cast<size_t>(topo.links());
  link_bundle_.assign(links, kNone);
  link_count_.assign(links, 0);
  link_flows_.resize(links);
  link_bytes_.assign(links, 0.0);
  link_left_.assign(links, 0.0);
  link_users_.assign(links, 0);
  link_seen_.assign(links, 0);
}

FlowNetwork::FlowId FlowNetwork::add_flow(const Flow& f) {
  FlowId id;
  if (!free_.empty()) {
    id = free_.back();
    free_.pop_back();
    // Stamps only grow across a slot's lives, so no heap entry of an earlier life matches.
    const uint32_t stamp = flows_[id].stamp;
    flows_[id] = f;
    flows_[id].stamp = stamp + 1;
  } else {
    id = static_cast<FlowId>(flows_.size());
    flows_.push_back(f);
    flow_seen_.push_back(0);
  }
  flows_[id].alive = true;
  for (LinkId l : *f.route) link_flows_[l].push_back(id);
  return id;
}

void FlowNetwork::remove_flow(FlowId id) {
  Flow& f = flows_[id];
  for (LinkId l : *f.route) {
    auto& on = link_flows_[l];
    *std::find(on.begin(), on.end(), id) = on.back();
    on.pop_back();
  }
  f.alive = false;
  ++f.stamp;
  free_.push_back(id);
}

void FlowNetwork::start(const Program& p, GroupId g, Time now) {
  now_ = now;
  if (pending_.size() <= g) pending_.resize(p.groups().size(), 0);
  const auto transfers = p.transfers(g);
  BUBBLESIM_ASSERT(!transfers.empty(), "network asked to carry a group without transfers");
  if (arrival_.size() <= g) arrival_.resize(p.groups().size(), Time::zero());
  pending_[g] = static_cast<uint32_t>(transfers.size());
  arrival_[g] = now;
  std::vector<Pending>& pending = pending_transfers_;  // scratch: no allocation per start
  pending.clear();
  for (const Transfer& t : transfers) {
    const int32_t a = t.from_gpu;
    const int32_t b = t.to_gpu;
    if (a < 0 || b < 0 || a >= topo_.gpus() || b >= topo_.gpus()) {
      throw InputError("transfer between GPUs " + std::to_string(a) + " and " + std::to_string(b) +
                       " of a cluster with " + std::to_string(topo_.gpus()));
    }
    if (a == b) {  // same GPU: a local copy, free at this level of detail
      drained(g, now);
      continue;
    }
    const auto& route = topo_.route(a, b);
    Time latency = t.latency;
    if (latency == Transfer::kRouteLatency) {
      latency = Time::zero();
      for (LinkId l : route) latency += topo_.link(l).latency;
      latency = latency * t.hops;
    }
    if (t.bytes.value <= 0) {
      drained(g, now + latency);
      continue;
    }
    pending.push_back({&route, static_cast<double>(t.bytes.value), latency});
  }
  if (!try_bundle(g, pending)) {
    std::vector<LinkId>& seeds = seeds_;
    seeds.clear();
    for (const Pending& f : pending) {
      for (LinkId l : *f.route) explode(l);
    }
    for (const Pending& f : pending) {
      add_flow(Flow{g, f.route, f.bytes, f.bytes, 0.0, now, Time::max(), f.latency});
      seeds.insert(seeds.end(), f.route->begin(), f.route->end());
    }
    refill(seeds);
  }
  ++version_;
}

bool FlowNetwork::try_bundle(GroupId g, const std::vector<Pending>& pending) {
  if (!bundles_enabled_ || pending.empty()) return false;
  // Every link idle (no flow, no bundle), every transfer the same size.
  for (const Pending& f : pending) {
    if (f.bytes != pending.front().bytes) return false;
    for (LinkId l : *f.route) {
      if (!link_flows_[l].empty() || link_bundle_[l] != kNone) return false;
    }
  }
  // Alone on these links, progressive filling freezes every transfer in its first round at the
  // group's smallest fair share if each transfer's own tightest link offers exactly that share.
  for (const Pending& f : pending) {
    for (LinkId l : *f.route) ++link_count_[l];
  }
  double share = std::numeric_limits<double>::infinity();
  std::vector<double>& own = own_share_;
  own.assign(pending.size(), std::numeric_limits<double>::infinity());
  for (size_t i = 0; i < pending.size(); ++i) {
    for (LinkId l : *pending[i].route) own[i] = std::min(own[i], topo_.link(l).bandwidth.bytes_per_s / link_count_[l]);
    share = std::min(share, own[i]);
  }
  for (const Pending& f : pending) {
    for (LinkId l : *f.route) link_count_[l] = 0;
  }
  for (double o : own) {
    if (o != share) return false;
  }
  uint32_t id;
  if (free_bundles_.empty()) {
    id = static_cast<uint32_t>(bundles_.size());
    bundles_.emplace_back();
  } else {
    id = free_bundles_.back();
    free_bundles_.pop_back();
  }
  Bundle& b = bundles_[id];
  b.group = g;
  b.routes.clear();
  b.latencies.clear();
  for (const Pending& f : pending) {
    b.routes.push_back(f.route);
    b.latencies.push_back(f.latency);
    for (LinkId l : *f.route) link_bundle_[l] = id;
  }
  b.bytes = pending.front().bytes;
  b.rate = share;
  b.since = now_;
  b.finish = now_ + Time::from_seconds(b.bytes / b.rate);
  b.alive = true;
  bundle_due_.push_back({b.finish, id, ++b.stamp});
  std::push_heap(bundle_due_.begin(), bundle_due_.end(), std::greater<>{});
  return true;
}

void FlowNetwork::explode(LinkId l) {
  const uint32_t id = link_bundle_[l];
  if (id == kNone) return;
  Bundle& b = bundles_[id];
  const double left = std::max(0.0, b.bytes - std::min(b.bytes, b.rate * (now_ - b.since).seconds()));
  for (size_t i = 0; i < b.routes.size(); ++i) {
    for (LinkId k : *b.routes[i]) link_bundle_[k] = kNone;
  }
  // The transfers carry on as flows at the bundle's rate, finishing when it would have (the
  // refill that follows keeps that unless the newcomer changes their share).
  const uint32_t batch = new_batch();
  for (size_t i = 0; i < b.routes.size(); ++i) {
    const FlowId f = add_flow(Flow{b.group, b.routes[i], b.bytes, left, b.rate, now_, b.finish, b.latencies[i]});
    batches_[batch].push_back({f, flows_[f].stamp});
  }
  due_.push_back({b.finish, batch});
  std::push_heap(due_.begin(), due_.end(), std::greater<>{});
  b.alive = false;
  ++b.stamp;
  free_bundles_.push_back(id);
}

void FlowNetwork::refill(const std::vector<LinkId>& seeds) {
  // The component: every flow reachable from the seed links through shared links.
  ++visit_;
  component_.clear();
  component_links_.clear();
  for (LinkId l : seeds) {
    if (link_seen_[l] == visit_) continue;
    link_seen_[l] = visit_;
    component_links_.push_back(l);
  }
  for (size_t i = 0; i < component_links_.size(); ++i) {
    for (FlowId id : link_flows_[component_links_[i]]) {
      if (flow_seen_[id] == visit_) continue;
      flow_seen_[id] = visit_;
      component_.push_back(id);
      for (LinkId l : *flows_[id].route) {
        if (link_seen_[l] == visit_) continue;
        link_seen_[l] = visit_;
        component_links_.push_back(l);
      }
    }
  }
  // Bring their bytes up to now at the old rates.
  old_rates_.clear();
  for (FlowId id : component_) {
    Flow& f = flows_[id];
    old_rates_.push_back(f.rate);
    const double moved = std::min(f.remaining, f.rate * (now_ - f.since).seconds());
    f.remaining -= moved;
    f.since = now_;
    f.rate = -1;  // unfrozen
  }
  for (LinkId l : component_links_) {
    link_left_[l] = topo_.link(l).bandwidth.bytes_per_s;
    link_users_[l] = static_cast<uint32_t>(link_flows_[l].size());
  }
  // Progressive filling: raise every unfrozen flow's rate together; when a link fills, freeze
  // the flows on it at the fair share they reached.
  size_t unfrozen = component_.size();
  while (unfrozen > 0) {
    double share = std::numeric_limits<double>::infinity();
    for (FlowId id : component_) {
      const Flow& f = flows_[id];
      if (f.rate >= 0) continue;
      for (LinkId l : *f.route) share = std::min(share, link_left_[l] / link_users_[l]);
    }
    for (FlowId id : component_) {
      Flow& f = flows_[id];
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
  // New finish times, one heap entry per distinct time.
  rescheduled_.clear();
  for (size_t i = 0; i < component_.size(); ++i) {
    Flow& f = flows_[component_[i]];
    if (f.rate == old_rates_[i]) continue;  // same rate: the same finish, its heap entry stays valid
    f.finish = now_ + Time::from_seconds(f.remaining / f.rate);
    ++f.stamp;
    rescheduled_.push_back(component_[i]);
  }
  std::sort(rescheduled_.begin(), rescheduled_.end(),
            [&](FlowId a, FlowId b) { return flows_[a].finish < flows_[b].finish; });
  for (size_t i = 0; i < rescheduled_.size();) {
    const uint32_t batch = new_batch();
    const Time at = flows_[rescheduled_[i]].finish;
    for (; i < rescheduled_.size() && flows_[rescheduled_[i]].finish == at; ++i) {
      batches_[batch].push_back({rescheduled_[i], flows_[rescheduled_[i]].stamp});
    }
    due_.push_back({at, batch});
    std::push_heap(due_.begin(), due_.end(), std::greater<>{});
  }
}

uint32_t FlowNetwork::new_batch() {
  if (free_batches_.empty()) {
    batches_.emplace_back();
    return static_cast<uint32_t>(batches_.size() - 1);
  }
  const uint32_t batch = free_batches_.back();
  free_batches_.pop_back();
  return batch;
}

void FlowNetwork::prune_bundles() const {
  while (!bundle_due_.empty()) {
    const BundleDue& top = bundle_due_.front();
    if (bundles_[top.bundle].alive && bundles_[top.bundle].stamp == top.stamp) return;
    std::pop_heap(bundle_due_.begin(), bundle_due_.end(), std::greater<>{});
    bundle_due_.pop_back();
  }
}

void FlowNetwork::prune() const {
  while (!due_.empty()) {
    auto& batch = batches_[due_.front().batch];
    for (size_t i = 0; i < batch.size();) {  // drop flows rescheduled or gone since
      if (live(batch[i])) {
        ++i;
      } else {
        batch[i] = batch.back();
        batch.pop_back();
      }
    }
    if (!batch.empty()) return;
    free_batches_.push_back(due_.front().batch);
    std::pop_heap(due_.begin(), due_.end(), std::greater<>{});
    due_.pop_back();
  }
}

Time FlowNetwork::next_event() const {
  prune();
  prune_bundles();
  Time next = due_.empty() ? Time::max() : due_.front().at;
  if (!bundle_due_.empty()) next = min(next, bundle_due_.front().at);
  if (!tails_.empty()) next = min(next, tails_.front().arrive);
  return next;
}

void FlowNetwork::drained(GroupId g, Time arrive) {
  BUBBLESIM_ASSERT(pending_[g] > 0, "transfer finished twice");
  arrival_[g] = max(arrival_[g], arrive);
  if (--pending_[g] > 0) return;
  tails_.push_back({arrival_[g], g});
  std::push_heap(tails_.begin(), tails_.end(), std::greater<>{});
}

void FlowNetwork::advance(Time now, std::vector<GroupId>& finished) {
  now_ = now;
  bool changed_bundles = false;
  // Flows drained by now: each arrives one route latency after its drain.
  std::vector<LinkId>& seeds = seeds_;
  seeds.clear();
  for (prune(); !due_.empty() && due_.front().at <= now; prune()) {
    const uint32_t b = due_.front().batch;
    std::pop_heap(due_.begin(), due_.end(), std::greater<>{});
    due_.pop_back();
    for (const Batched& entry : batches_[b]) {
      if (!live(entry)) continue;
      Flow& f = flows_[entry.flow];
      for (LinkId l : *f.route) link_bytes_[l] += f.bytes;
      drained(f.group, f.finish + f.latency);
      seeds.insert(seeds.end(), f.route->begin(), f.route->end());
      remove_flow(entry.flow);
    }
    batches_[b].clear();
    free_batches_.push_back(b);
  }
  // Bundles drained by now: their links fall idle, nothing else was on them.
  for (prune_bundles(); !bundle_due_.empty() && bundle_due_.front().at <= now; prune_bundles()) {
    Bundle& b = bundles_[bundle_due_.front().bundle];
    std::pop_heap(bundle_due_.begin(), bundle_due_.end(), std::greater<>{});
    bundle_due_.pop_back();
    for (size_t i = 0; i < b.routes.size(); ++i) {
      for (LinkId l : *b.routes[i]) {
        link_bytes_[l] += b.bytes;
        link_bundle_[l] = kNone;
      }
      drained(b.group, b.finish + b.latencies[i]);
    }
    b.alive = false;
    ++b.stamp;
    free_bundles_.push_back(static_cast<uint32_t>(&b - bundles_.data()));
    changed_bundles = true;
  }
  bool changed = !seeds.empty() || changed_bundles;
  while (!tails_.empty() && tails_.front().arrive <= now) {
    finished.push_back(tails_.front().group);
    std::pop_heap(tails_.begin(), tails_.end(), std::greater<>{});
    tails_.pop_back();
    changed = true;
  }
  if (!seeds.empty()) refill(seeds);
  if (changed) ++version_;
}

}  // namespace bubblesim::sim
