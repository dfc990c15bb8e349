#include "sim/model/network.hpp"

#include <algorithm>
#include <functional>
#include <limits>

#include "sim/core/error.hpp"

namespace bubblesim::sim {

FlowNetwork::FlowNetwork(const Topology& topo) : topo_(topo) {
  const size_t links = static_cast<size_t>(topo.links());
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
    flows_[id] = f;
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
  std::vector<LinkId> seeds;
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
    Time latency;
    for (LinkId l : route) latency += topo_.link(l).latency;
    latency = latency * t.hops;
    if (t.bytes.value <= 0) {
      drained(g, now + latency);
      continue;
    }
    Flow f{g, &route, static_cast<double>(t.bytes.value), static_cast<double>(t.bytes.value), 0.0, now, Time::max(),
           latency};
    add_flow(f);
    seeds.insert(seeds.end(), route.begin(), route.end());
  }
  refill(seeds);
  ++version_;
}

void FlowNetwork::refill(std::vector<LinkId>& seeds) {
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
    uint32_t batch;
    if (free_batches_.empty()) {
      batch = static_cast<uint32_t>(batches_.size());
      batches_.emplace_back();
    } else {
      batch = free_batches_.back();
      free_batches_.pop_back();
    }
    const Time at = flows_[rescheduled_[i]].finish;
    for (; i < rescheduled_.size() && flows_[rescheduled_[i]].finish == at; ++i) {
      batches_[batch].push_back({rescheduled_[i], flows_[rescheduled_[i]].stamp});
    }
    due_.push_back({at, batch});
    std::push_heap(due_.begin(), due_.end(), std::greater<>{});
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
  Time next = due_.empty() ? Time::max() : due_.front().at;
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
  // Flows drained by now: each arrives one route latency after its drain.
  std::vector<LinkId> seeds;
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
  bool changed = !seeds.empty();
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
