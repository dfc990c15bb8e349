#include "hw/runner/runner.hpp"

#include <algorithm>
#include <chrono>
#include <thread>
#include <string>

#include "sim/core/error.hpp"

namespace bubblesim::hw {
namespace {

using sim::GroupKind;
using sim::kNone;
using sim::OpKind;

constexpr int64_t kMaxHops = 64;  // message tags are group * kMaxHops + hop
constexpr int kSpinPolls = 64;    // polls without progress before the runner starts sleeping
constexpr std::chrono::microseconds kIdleSleep{20};

int64_t chunk(int64_t bytes, int32_t hops, int32_t hop) {
  const int64_t base = bytes / hops;
  return hop + 1 == hops ? bytes - base * (hops - 1) : base;
}

}  // namespace

Runner::Runner(const sim::Program& p, sim::DeviceId device, int32_t gpu, Backend& backend, const Twins& twins,
               double stall_timeout_s)
    : p_(p), device_(device), gpu_(gpu), b_(backend), stall_timeout_s_(stall_timeout_s), twins_(twins) {
  BUBBLESIM_ASSERT(p.finalized(), "the runner needs a finalized Program");
  BUBBLESIM_ASSERT(device < p.devices().size(), "rank plays a device the Program does not have");
  local_.assign(p.num_ops(), kNone);
  for (sim::StreamId s : p.devices()[device].streams) {
    std::vector<uint32_t> indices;
    for (sim::OpId op : p.stream(s).ops) {
      local_[op] = static_cast<uint32_t>(ops_.size());
      indices.push_back(static_cast<uint32_t>(ops_.size()));
      ops_.push_back(op);
    }
    streams_.push_back(std::move(indices));
  }
  local_deps_.assign(ops_.size(), 0);
  exchanges_.resize(ops_.size());
  triggers_.resize(ops_.size());
  for (size_t i = 0; i < ops_.size(); ++i) {
    for (const sim::Edge& e : p.deps(ops_[i])) {
      if (p.op(e.op).device == device_) ++local_deps_[i];
    }
    if (p.op(ops_[i]).kind != OpKind::Compute) exchanges_[i] = exchange_of(ops_[i]);
  }
  // One-sided transfers this rank sends: when the receiving op's dependencies here are done.
  for (sim::GroupId g = 0; g < p.groups().size(); ++g) {
    if (p.groups()[g].kind != GroupKind::Transfer) continue;
    GroupTraffic own = traffic_of(twins_.transfers(p, g, gpu_), gpu_, true, false, p.groups()[g].wire_scale);
    if (own.out.empty()) continue;
    Exchange x;
    x.out = std::move(own.out);
    x.hops = own.hops;
    x.kind = GroupKind::Transfer;
    x.group = g;
    const auto send = static_cast<uint32_t>(sends_.size());
    int32_t deps = 0;
    for (sim::OpId member : p.members(g)) {
      for (const sim::Edge& e : p.deps(member)) {
        if (local_[e.op] == kNone) continue;
        triggers_[local_[e.op]].push_back(send);
        ++deps;
      }
    }
    sends_.push_back(std::move(x));
    send_deps_.push_back(deps);
  }
}

Runner::Exchange Runner::exchange_of(sim::OpId op) const {
  const sim::Op& o = p_.op(op);
  Exchange x;
  if (o.group == kNone) return x;
  const sim::Group& g = p_.groups()[o.group];
  x.kind = g.kind;
  x.group = o.group;
  x.synchronous = g.kind == GroupKind::SendRecv || g.kind == GroupKind::RingSendRecv;
  GroupTraffic own =
      traffic_of(twins_.transfers(p_, o.group, gpu_), gpu_, o.kind == OpKind::Send || o.kind == OpKind::Collective,
                 o.kind == OpKind::Recv || o.kind == OpKind::Collective, g.wire_scale);
  x.hops = own.hops;
  if (x.hops >= kMaxHops) {
    throw InputError(sim::describe(p_, op) + ": " + std::to_string(x.hops) + " hops in one group; the host backend runs at most " +
                     std::to_string(kMaxHops - 1));
  }
  x.out = std::move(own.out);
  x.in = std::move(own.in);
  return x;
}

void Runner::post(Active& a) {
  const Exchange& x = *a.x;
  const int64_t tag = static_cast<int64_t>(x.group) * kMaxHops + a.hop;
  for (const Peer& peer : x.in) a.pending.push_back(b_.irecv(peer.gpu, chunk(peer.bytes, x.hops, a.hop), tag));
  for (const Peer& peer : x.out) {
    a.pending.push_back(b_.isend(peer.gpu, chunk(peer.bytes, x.hops, a.hop), tag, x.synchronous));
    times_.bytes_sent += chunk(peer.bytes, x.hops, a.hop);
  }
}

bool Runner::poll(Active& a) {
  std::erase_if(a.pending, [&](RequestId r) { return b_.test(r); });
  if (!a.pending.empty()) return false;
  const Exchange& x = *a.x;
  // The reduction of a ring reduce-scatter step (an all-reduce's first half) on what arrived.
  if (x.kind == GroupKind::ReduceScatter || (x.kind == GroupKind::AllReduce && a.hop < x.hops / 2)) {
    int64_t bytes = 0;
    for (const Peer& peer : x.in) bytes += chunk(peer.bytes, x.hops, a.hop);
    b_.reduce(bytes);
  }
  if (++a.hop < x.hops) {
    post(a);
    return false;
  }
  return true;
}

void Runner::complete(uint32_t local, double t, std::vector<int32_t>& remaining) {
  times_.end[local] = t;
  for (const sim::Edge& e : p_.dependents(ops_[local])) {
    if (local_[e.op] != kNone) --remaining[local_[e.op]];
  }
  for (uint32_t send : triggers_[local]) {
    if (--send_remaining_[send] == 0) {
      active_.push_back({&sends_[send], kNone, 0, {}});
      post(active_.back());
    }
  }
}

std::string Runner::waiting_on(const std::vector<int32_t>& remaining) const {
  std::string what;
  int shown = 0;
  for (const Active& a : active_) {
    if (shown++ == 3) break;
    what += what.empty() ? "" : "; ";
    what += a.local == kNone ? "a one-sided send of group " + std::to_string(a.x->group) : sim::describe(p_, ops_[a.local]);
    std::string peers;
    for (const Peer& peer : a.x->in) peers += " " + std::to_string(peer.gpu);
    if (!peers.empty()) what += " (from rank" + peers + ")";
  }
  if (what.empty()) {
    for (size_t i = 0; i < ops_.size(); ++i) {
      if (remaining[i] > 0 && times_.start[i] < 0) return "dependencies of " + sim::describe(p_, ops_[i]);
    }
  }
  return what;
}

RankTimes Runner::run_iteration() {
  const size_t n = ops_.size();
  times_ = {std::vector<double>(n, -1), std::vector<double>(n, -1), 0, 0};
  std::vector<int32_t> remaining = local_deps_;
  send_remaining_ = send_deps_;
  std::vector<size_t> head(streams_.size(), 0);
  std::vector<bool> busy(streams_.size(), false);
  std::vector<uint32_t> stream_of(n);
  for (size_t s = 0; s < streams_.size(); ++s) {
    for (uint32_t i : streams_[s]) stream_of[i] = static_cast<uint32_t>(s);
  }
  active_.clear();
  b_.barrier();
  t0_ = b_.now();
  for (uint32_t s = 0; s < sends_.size(); ++s) {
    if (send_remaining_[s] == 0) {
      active_.push_back({&sends_[s], kNone, 0, {}});
      post(active_.back());
    }
  }
  size_t done = 0;
  double last_progress = t0_;
  int idle_polls = 0;
  while (done < n || !active_.empty()) {
    bool progress = false;
    for (size_t s = 0; s < streams_.size(); ++s) {
      while (!busy[s] && head[s] < streams_[s].size()) {
        const uint32_t i = streams_[s][head[s]];
        if (remaining[i] > 0) break;
        const sim::Op& o = p_.op(ops_[i]);
        times_.start[i] = b_.now() - t0_;
        progress = true;
        if (o.kind == OpKind::Compute) {
          if (const sim::OpWork* w = p_.work(ops_[i])) {
            b_.compute(*w);
          } else if (o.duration > bubblesim::Time::zero()) {
            throw InputError(sim::describe(p_, ops_[i]) + " takes time but records no work to run");
          }
          complete(i, b_.now() - t0_, remaining);
          ++head[s];
          ++done;
          continue;
        }
        busy[s] = true;
        active_.push_back({&exchanges_[i], i, 0, {}});
        post(active_.back());
      }
    }
    for (size_t k = 0; k < active_.size();) {
      if (!poll(active_[k])) {
        ++k;
        continue;
      }
      const uint32_t i = active_[k].local;
      active_.erase(active_.begin() + static_cast<std::ptrdiff_t>(k));
      progress = true;
      if (i == kNone) continue;
      complete(i, b_.now() - t0_, remaining);
      busy[stream_of[i]] = false;
      ++head[stream_of[i]];
      ++done;
    }
    const double t = b_.now();
    if (progress) {
      last_progress = t;
      idle_polls = 0;
      continue;
    }
    // A rank with nothing to do must not spin at full speed: on machines where ranks share a
    // core's execution units (SMT siblings), spinning slows the rank that computes.
    if (++idle_polls > kSpinPolls) std::this_thread::sleep_for(kIdleSleep);
    b_.check_alive();
    if (t - last_progress > stall_timeout_s_) {
      throw RankFailure("rank " + std::to_string(b_.rank()) + ": no progress for " +
                        std::to_string(static_cast<int>(stall_timeout_s_)) + " s, waiting on " + waiting_on(remaining));
    }
  }
  for (double e : times_.end) times_.makespan = std::max(times_.makespan, e);
  return times_;
}

}  // namespace bubblesim::hw
