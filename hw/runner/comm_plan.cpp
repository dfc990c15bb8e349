#include "hw/runner/comm_plan.hpp"

#include <algorithm>
#include <map>
#include <numeric>
#include <queue>
#include <tuple>

#include "hw/runner/rank_map.hpp"
#include "sim/core/error.hpp"

namespace bubblesim::hw {
namespace {

using sim::GroupId;
using sim::GroupKind;
using sim::kNone;
using sim::OpId;
using sim::OpKind;

CommCall native_call(GroupKind k) {
  switch (k) {
    case GroupKind::AllReduce: return CommCall::AllReduce;
    case GroupKind::AllGather: return CommCall::AllGather;
    case GroupKind::ReduceScatter: return CommCall::ReduceScatter;
    case GroupKind::AllToAll: return CommCall::AllToAll;
    default: return CommCall::SendRecv;
  }
}

/// Whether the group runs as NCCL's own collective (a whole collective of known size).
bool native(const sim::Group& g) { return g.collective_size.value > 0 && native_call(g.kind) != CommCall::SendRecv; }

uint64_t mix(uint64_t h, uint64_t v) { return h ^ (v + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2)); }

/// What every GPU's plan shares: the order of the groups and the communicators.
class Planner {
 public:
  Planner(const sim::ClusterJob& job, const sim::TrainingPlan& plan, const sim::Trace& order)
      : p_(plan.program), twins_(job, plan), trace_(order), world_(job.cluster.world()) {
    BUBBLESIM_ASSERT(p_.finalized(), "a communication plan needs a finalized Program");
    BUBBLESIM_ASSERT(order.records.size() == p_.num_ops(), "the order trace must have a record per op");
    order_groups();
    make_comms();
  }

  CommPlan plan(std::span<const int32_t> gpus) {
    CommPlan out;
    out.comms = comms_;
    out.rounds = rounds_;
    out.order_hash = order_hash_;
    for (int32_t gpu : gpus) {
      if (gpu < 0 || gpu >= world_) throw InputError("communication plan: GPU " + std::to_string(gpu) + " is not in the job");
      out.ranks.push_back(plan_rank(gpu));
    }
    return out;
  }

 private:
  std::string channel(GroupId g) const { return p_.stream(p_.op(p_.members(g)[0]).stream).name; }

  /// Groups sorted by (end, start, id) of their members in the trace.
  void order_groups() {
    const size_t n = p_.groups().size();
    std::vector<std::tuple<Time, Time, GroupId>> keys;
    keys.reserve(n);
    for (GroupId g = 0; g < n; ++g) {
      Time end, start;
      for (OpId m : p_.members(g)) {
        end = max(end, trace_.records[m].end);
        start = max(start, trace_.records[m].start);
      }
      keys.emplace_back(end, start, g);
    }
    std::sort(keys.begin(), keys.end());
    position_.assign(n, 0);
    for (size_t i = 0; i < n; ++i) {
      const GroupId g = std::get<2>(keys[i]);
      position_[g] = static_cast<uint32_t>(i);
      order_hash_ = mix(order_hash_, g);
    }
  }

  int32_t intern(const std::string& channel, std::vector<int32_t> gpus) {
    auto [it, added] = comm_index_.try_emplace({channel, gpus}, static_cast<int32_t>(comms_.size()));
    if (added) comms_.push_back({channel, std::move(gpus), 0});
    return it->second;
  }

  void make_comms() {
    const size_t n = p_.groups().size();
    native_comm_.resize(n);
    p2p_comm_.assign(n, -1);
    sends_of_.resize(static_cast<size_t>(world_));
    std::vector<int32_t> everyone(static_cast<size_t>(world_));
    std::iota(everyone.begin(), everyone.end(), 0);
    for (GroupId g = 0; g < n; ++g) {
      const sim::Group& grp = p_.groups()[g];
      if (grp.member_count == 0) continue;
      const auto transfers = p_.transfers(g);
      for (const sim::Transfer& t : transfers) {
        if (t.from_gpu < 0 || t.to_gpu < 0 || t.from_gpu >= world_ || t.to_gpu >= world_) {
          throw InputError(sim::describe(p_, p_.members(g)[0]) + ": a transfer between GPUs " + std::to_string(t.from_gpu) +
                           " and " + std::to_string(t.to_gpu) + " of a job of " + std::to_string(world_));
        }
      }
      if (native(grp)) {
        auto& comm_of = native_comm_[g];
        for (std::vector<int32_t>& set : connected_sets(transfers)) {
          const int32_t c = intern(channel(g), set);
          for (int32_t gpu : set) comm_of.push_back({gpu, c});
        }
        std::sort(comm_of.begin(), comm_of.end());
        add_twins(g, comm_of);
        continue;
      }
      bool moves = false;
      for (const sim::Transfer& t : transfers) {
        if (t.from_gpu == t.to_gpu) continue;
        moves = true;
        auto& sends = sends_of_[static_cast<size_t>(t.from_gpu)];
        if (grp.kind == GroupKind::Transfer && (sends.empty() || sends.back() != g)) sends.push_back(g);
      }
      if (moves) p2p_comm_[g] = intern(channel(g), everyone);
    }
    // Disjoint communicators share a round (one ncclCommSplit of the world makes them all).
    std::vector<std::vector<char>> used;
    for (Communicator& c : comms_) {
      size_t r = 0;
      while (r < used.size() &&
             std::any_of(c.gpus.begin(), c.gpus.end(), [&](int32_t g) { return used[r][static_cast<size_t>(g)] != 0; })) {
        ++r;
      }
      if (r == used.size()) used.emplace_back(static_cast<size_t>(world_), 0);
      for (int32_t g : c.gpus) used[r][static_cast<size_t>(g)] = 1;
      c.round = static_cast<int32_t>(r);
      order_hash_ = mix(order_hash_, std::hash<std::string>{}(c.channel));
      for (int32_t g : c.gpus) order_hash_ = mix(order_hash_, static_cast<uint64_t>(g));
    }
    rounds_ = static_cast<int32_t>(used.size());
  }

  /// Every GPU that plays a member's device but is in none of the group's sets runs the set of
  /// its representative's GPU moved to it (Twins: the same tensor-parallel group in its
  /// data-parallel replica).
  void add_twins(GroupId g, std::vector<std::pair<int32_t, int32_t>>& comm_of) {
    std::vector<std::pair<int32_t, int32_t>> added;
    for (OpId m : p_.members(g)) {
      const sim::DeviceId d = p_.op(m).device;
      const int32_t rep = twins_.representative(d);
      const auto found = std::lower_bound(comm_of.begin(), comm_of.end(), std::pair{rep, -1});
      if (found == comm_of.end() || found->first != rep) continue;
      const int32_t set = found->second;  // an index: interning twins grows comms_
      for (int32_t x = 0; x < world_; ++x) {
        if (twins_.device(x) != d) continue;
        const auto mine = std::lower_bound(comm_of.begin(), comm_of.end(), std::pair{x, -1});
        if (mine != comm_of.end() && mine->first == x) continue;
        const auto [it, fresh] = twin_.try_emplace({set, x}, -1);
        if (fresh) {
          const Communicator& c = comms_[static_cast<size_t>(set)];
          std::string name = c.channel;
          std::vector<int32_t> moved = twins_.moved(c.gpus, x);
          std::sort(moved.begin(), moved.end());
          it->second = intern(name, std::move(moved));
        }
        added.emplace_back(x, it->second);
      }
    }
    comm_of.insert(comm_of.end(), added.begin(), added.end());
    std::sort(comm_of.begin(), comm_of.end());
    comm_of.erase(std::unique(comm_of.begin(), comm_of.end()), comm_of.end());
  }

  /// The communication part of op `op` on GPU `gpu` (call None when it moves nothing there).
  void fill(Step& st, int32_t gpu) const {
    const sim::Op& o = p_.op(st.op);
    if (o.kind == OpKind::Compute || o.group == kNone) return;
    st.group = o.group;
    const sim::Group& grp = p_.groups()[o.group];
    if (native(grp)) {
      const auto& comm_of = native_comm_[o.group];
      const auto it = std::lower_bound(comm_of.begin(), comm_of.end(), std::pair{gpu, -1});
      if (it == comm_of.end() || it->first != gpu) return;
      st.call = native_call(grp.kind);
      st.comm = it->second;
      st.bytes = grp.collective_size.value;
      return;
    }
    GroupTraffic x = traffic_of(twins_.transfers(p_, o.group, gpu), gpu,
                                o.kind == OpKind::Send || o.kind == OpKind::Collective,
                                o.kind == OpKind::Recv || o.kind == OpKind::Collective, grp.wire_scale);
    if (x.out.empty() && x.in.empty()) return;
    st.call = CommCall::SendRecv;
    st.comm = p2p_comm_[o.group];
    st.sends = std::move(x.out);
    st.recvs = std::move(x.in);
  }

  RankPlan plan_rank(int32_t gpu) {
    const sim::DeviceId d = twins_.device(gpu);
    BUBBLESIM_ASSERT(d < p_.devices().size(), "GPU plays a device the Program does not have");
    RankPlan rp;
    rp.gpu = gpu;
    rp.device = d;
    std::map<int32_t, uint32_t> comm_lane;
    const auto lane_of = [&](int32_t c) {
      auto [it, added] = comm_lane.try_emplace(c, static_cast<uint32_t>(rp.lanes.size()));
      if (added) {
        rp.lanes.push_back("nccl " + comms_[static_cast<size_t>(c)].channel + " (" +
                           std::to_string(comms_[static_cast<size_t>(c)].gpus.size()) + " GPUs)");
        rp.lane_comm.push_back(c);
      }
      return it->second;
    };
    // Steps in creation order (each Program stream's ops, then one-sided sends) with what each
    // must follow, then issued in a topological order.
    std::vector<Step> steps;
    std::vector<std::vector<uint32_t>> after;  // per step: steps that must end first
    std::vector<Time> when;                    // per step: when the trace has it start
    std::map<OpId, uint32_t> step_of;
    const auto& streams = p_.devices()[d].streams;
    for (uint32_t si = 0; si < streams.size(); ++si) {
      rp.lanes.push_back(p_.stream(streams[si]).name);
      rp.lane_comm.push_back(-1);
    }
    for (uint32_t si = 0; si < streams.size(); ++si) {
      uint32_t previous = kNone;
      for (OpId op : p_.stream(streams[si]).ops) {
        Step st;
        st.op = op;
        st.lane = si;
        fill(st, gpu);
        if (st.call != CommCall::None) st.lane = lane_of(st.comm);
        const auto i = static_cast<uint32_t>(steps.size());
        step_of[op] = i;
        steps.push_back(std::move(st));
        after.emplace_back();
        if (previous != kNone) after.back().push_back(previous);
        when.push_back(trace_.records[op].start);
        previous = i;
      }
    }
    for (uint32_t i = 0; i < steps.size(); ++i) {
      for (const sim::Edge& e : p_.deps(steps[i].op)) {
        if (p_.op(e.op).device == d) after[i].push_back(step_of.at(e.op));
      }
    }
    for (GroupId g : sends_of_[static_cast<size_t>(gpu)]) {
      Step st;
      st.group = g;
      st.call = CommCall::SendRecv;
      st.comm = p2p_comm_[g];
      st.sends = traffic_of(p_, g, gpu, true, false).out;
      st.lane = lane_of(st.comm);
      std::vector<uint32_t> triggers;
      Time t;
      for (OpId m : p_.members(g)) {
        for (const sim::Edge& e : p_.deps(m)) {
          if (p_.op(e.op).device != d) continue;
          triggers.push_back(step_of.at(e.op));
          t = max(t, trace_.records[e.op].end);
        }
      }
      steps.push_back(std::move(st));
      after.push_back(std::move(triggers));
      when.push_back(t);
    }
    // On each communicator, calls in the order of their groups.
    const size_t n = steps.size();
    std::vector<std::vector<uint32_t>> on_lane(rp.lanes.size());
    for (uint32_t i = 0; i < n; ++i) {
      if (steps[i].call != CommCall::None) on_lane[steps[i].lane].push_back(i);
    }
    std::vector<std::vector<uint32_t>> order_edges(n);
    for (auto& lane : on_lane) {
      std::sort(lane.begin(), lane.end(),
                [&](uint32_t a, uint32_t b) { return position_[steps[a].group] < position_[steps[b].group]; });
      for (size_t k = 1; k < lane.size(); ++k) order_edges[lane[k]].push_back(lane[k - 1]);
    }
    // Kahn's algorithm, earliest trace time first.
    std::vector<int32_t> pending(n, 0);
    std::vector<std::vector<uint32_t>> next(n);
    for (uint32_t i = 0; i < n; ++i) {
      for (const auto* list : {&after[i], &order_edges[i]}) {
        for (uint32_t j : *list) {
          ++pending[i];
          next[j].push_back(i);
        }
      }
    }
    using Item = std::pair<Time, uint32_t>;
    std::priority_queue<Item, std::vector<Item>, std::greater<>> ready;
    for (uint32_t i = 0; i < n; ++i) {
      if (pending[i] == 0) ready.push({when[i], i});
    }
    std::vector<uint32_t> issued, index(n, kNone);
    while (!ready.empty()) {
      const uint32_t i = ready.top().second;
      ready.pop();
      index[i] = static_cast<uint32_t>(issued.size());
      issued.push_back(i);
      for (uint32_t j : next[i]) {
        if (--pending[j] == 0) ready.push({when[j], j});
      }
    }
    if (issued.size() != n) {
      for (uint32_t i = 0; i < n; ++i) {
        if (index[i] != kNone) continue;
        throw InternalError("communication plan of GPU " + std::to_string(gpu) + ": the order of the communicators' calls " +
                            "contradicts the Program at " +
                            (steps[i].op != kNone ? sim::describe(p_, steps[i].op)
                                                  : "the send of group " + std::to_string(steps[i].group)));
      }
    }
    rp.steps.reserve(n);
    for (uint32_t i : issued) rp.steps.push_back(std::move(steps[i]));
    for (size_t k = 0; k < n; ++k) {
      const uint32_t i = issued[k];
      Step& st = rp.steps[k];
      for (uint32_t j : after[i]) {
        if (rp.steps[index[j]].lane != st.lane) st.waits.push_back(index[j]);
      }
      std::sort(st.waits.begin(), st.waits.end());
      st.waits.erase(std::unique(st.waits.begin(), st.waits.end()), st.waits.end());
    }
    return rp;
  }

  const sim::Program& p_;
  Twins twins_;
  const sim::Trace& trace_;
  int32_t world_;
  std::vector<uint32_t> position_;  // group -> place in the common order
  std::vector<Communicator> comms_;
  std::map<std::pair<std::string, std::vector<int32_t>>, int32_t> comm_index_;
  std::vector<std::vector<std::pair<int32_t, int32_t>>> native_comm_;  // group -> (gpu, communicator)
  std::vector<int32_t> p2p_comm_;                                      // group -> communicator, or -1
  std::vector<std::vector<GroupId>> sends_of_;                         // gpu -> one-sided groups it sends in
  std::map<std::pair<int32_t, int32_t>, int32_t> twin_;                // (communicator, gpu) -> its twin
  int32_t rounds_ = 0;
  uint64_t order_hash_ = 0;
};

}  // namespace

const char* to_string(CommCall c) {
  switch (c) {
    case CommCall::None: return "none";
    case CommCall::SendRecv: return "send/recv";
    case CommCall::AllReduce: return "all-reduce";
    case CommCall::AllGather: return "all-gather";
    case CommCall::ReduceScatter: return "reduce-scatter";
    case CommCall::AllToAll: return "all-to-all";
  }
  return "?";
}

namespace {

/// A step of one GPU's plan.
struct Ref {
  uint32_t rank;
  uint32_t step;
};

std::string what(const sim::Program& p, const RankPlan& r, uint32_t i) {
  const Step& st = r.steps[i];
  std::string s = "GPU " + std::to_string(r.gpu) + " " +
                  (st.op != kNone ? sim::describe(p, st.op) : "one-sided send of group " + std::to_string(st.group));
  if (st.call != CommCall::None) s += std::string(" (") + to_string(st.call) + " on " + r.lanes[st.lane] + ")";
  return s;
}

}  // namespace

std::string verify(const CommPlan& plan, const sim::Program& p) {
  const auto& ranks = plan.ranks;
  std::map<int32_t, uint32_t> rank_of;
  for (uint32_t r = 0; r < ranks.size(); ++r) rank_of[ranks[r].gpu] = r;
  for (const Communicator& c : plan.comms) {
    for (int32_t g : c.gpus) {
      if (!rank_of.contains(g)) return "verify needs the plan of every GPU; GPU " + std::to_string(g) + "'s is missing";
    }
  }
  // Who meets whom: the k-th collective on a communicator; the n-th send from A to B there and
  // B's n-th receive from A.
  std::vector<std::vector<std::vector<Ref>>> partners(ranks.size());
  std::map<std::pair<int32_t, int64_t>, std::vector<Ref>> collectives;
  std::map<std::tuple<int32_t, int32_t, int32_t, int64_t>, std::pair<Ref, int64_t>> sends, recvs;
  for (uint32_t r = 0; r < ranks.size(); ++r) {
    const RankPlan& rp = ranks[r];
    partners[r].resize(rp.steps.size());
    std::map<int32_t, int64_t> calls;
    std::map<std::tuple<int32_t, int32_t, int32_t>, int64_t> messages;
    for (uint32_t i = 0; i < rp.steps.size(); ++i) {
      const Step& st = rp.steps[i];
      if (st.call == CommCall::None) continue;
      if (st.call != CommCall::SendRecv) {
        collectives[{st.comm, calls[st.comm]++}].push_back({r, i});
        continue;
      }
      for (const PeerBytes& s : st.sends) {
        sends[{st.comm, rp.gpu, s.gpu, messages[{st.comm, rp.gpu, s.gpu}]++}] = {{r, i}, s.bytes};
      }
      for (const PeerBytes& s : st.recvs) {
        recvs[{st.comm, s.gpu, rp.gpu, messages[{st.comm, s.gpu, rp.gpu}]++}] = {{r, i}, s.bytes};
      }
    }
  }
  std::vector<std::string> errors;
  const auto step = [&](Ref x) -> const Step& { return ranks[x.rank].steps[x.step]; };
  for (const auto& [key, members] : collectives) {
    const Communicator& c = plan.comms[static_cast<size_t>(key.first)];
    const Step& first = step(members[0]);
    if (members.size() != c.gpus.size()) {
      errors.push_back(what(p, ranks[members[0].rank], members[0].step) + ": call " + std::to_string(key.second) +
                       " of its communicator is reached by " + std::to_string(members.size()) + " of its " +
                       std::to_string(c.gpus.size()) + " GPUs");
    }
    for (Ref m : members) {
      if (step(m).call != first.call || step(m).bytes != first.bytes) {
        errors.push_back(what(p, ranks[m.rank], m.step) + " of " + std::to_string(step(m).bytes) + " bytes meets " +
                         what(p, ranks[members[0].rank], members[0].step) + " of " + std::to_string(first.bytes));
      }
      // Joined as a star around the first member (all pairs would cost n^2 on large groups).
      if (m.rank != members[0].rank) {
        partners[m.rank][m.step].push_back(members[0]);
        partners[members[0].rank][members[0].step].push_back(m);
      }
    }
  }
  for (const auto& [key, send] : sends) {
    const auto it = recvs.find(key);
    if (it == recvs.end()) {
      errors.push_back(what(p, ranks[send.first.rank], send.first.step) + ": its send to GPU " +
                       std::to_string(std::get<2>(key)) + " meets no receive");
      continue;
    }
    const auto& [recv, bytes] = it->second;
    if (bytes != send.second) {
      errors.push_back(what(p, ranks[send.first.rank], send.first.step) + " sends " + std::to_string(send.second) +
                       " bytes to " + what(p, ranks[recv.rank], recv.step) + ", which receives " + std::to_string(bytes));
    }
    partners[send.first.rank][send.first.step].push_back(recv);
    partners[recv.rank][recv.step].push_back(send.first);
  }
  for (const auto& [key, recv] : recvs) {
    if (!sends.contains(key)) {
      errors.push_back(what(p, ranks[recv.first.rank], recv.first.step) + ": its receive from GPU " +
                       std::to_string(std::get<1>(key)) + " meets no send");
    }
  }
  if (!errors.empty()) {
    std::string out = std::to_string(errors.size()) + " mismatched calls: ";
    for (size_t k = 0; k < errors.size() && k < 5; ++k) out += (k ? "; " : "") + errors[k];
    return out;
  }
  // Run every lane of every GPU until nothing moves: a step starts at the head of its lane once
  // its waits are done, and ends once every partner has started (NCCL's rendezvous).
  std::vector<std::vector<std::vector<uint32_t>>> lanes(ranks.size());
  std::vector<std::vector<size_t>> head(ranks.size());
  std::vector<std::vector<char>> started(ranks.size()), done(ranks.size());
  size_t remaining = 0;
  for (uint32_t r = 0; r < ranks.size(); ++r) {
    lanes[r].resize(ranks[r].lanes.size());
    head[r].assign(ranks[r].lanes.size(), 0);
    for (uint32_t i = 0; i < ranks[r].steps.size(); ++i) lanes[r][ranks[r].steps[i].lane].push_back(i);
    started[r].assign(ranks[r].steps.size(), 0);
    done[r].assign(ranks[r].steps.size(), 0);
    remaining += ranks[r].steps.size();
  }
  // Conservatively, a call ends only once every call it is transitively joined to has started:
  // the sends and receives of one NCCL group may wait for each other (a peer's send can wait
  // until that peer's other exchanges are under way).
  std::vector<size_t> base(ranks.size() + 1, 0);
  for (uint32_t r = 0; r < ranks.size(); ++r) base[r + 1] = base[r] + ranks[r].steps.size();
  std::vector<size_t> parent(base.back());
  for (size_t k = 0; k < parent.size(); ++k) parent[k] = k;
  const auto root = [&](size_t x) {
    while (parent[x] != x) x = parent[x] = parent[parent[x]];
    return x;
  };
  for (uint32_t r = 0; r < ranks.size(); ++r) {
    for (uint32_t i = 0; i < ranks[r].steps.size(); ++i) {
      for (Ref o : partners[r][i]) parent[root(base[r] + i)] = root(base[o.rank] + o.step);
    }
  }
  std::vector<size_t> members(parent.size(), 0), arrived(parent.size(), 0);
  for (size_t k = 0; k < parent.size(); ++k) ++members[root(k)];
  for (bool moved = true; moved && remaining > 0;) {
    moved = false;
    for (uint32_t r = 0; r < ranks.size(); ++r) {
      for (size_t l = 0; l < lanes[r].size(); ++l) {
        while (head[r][l] < lanes[r][l].size()) {
          const uint32_t i = lanes[r][l][head[r][l]];
          const Step& st = ranks[r].steps[i];
          const size_t joined = root(base[r] + i);
          if (!started[r][i]) {
            if (!std::all_of(st.waits.begin(), st.waits.end(), [&](uint32_t w) { return done[r][w] != 0; })) break;
            started[r][i] = 1;
            ++arrived[joined];
            moved = true;
          }
          if (arrived[joined] < members[joined]) break;
          done[r][i] = 1;
          ++head[r][l];
          --remaining;
          moved = true;
        }
      }
    }
  }
  if (remaining == 0) return "";
  std::string out = "the calls would wait forever (" + std::to_string(remaining) + " steps never end): ";
  int shown = 0;
  for (uint32_t r = 0; r < ranks.size() && shown < 4; ++r) {
    for (size_t l = 0; l < lanes[r].size() && shown < 4; ++l) {
      if (head[r][l] == lanes[r][l].size()) continue;
      const uint32_t i = lanes[r][l][head[r][l]];
      out += (shown++ ? "; " : "") + what(p, ranks[r], i);
      if (!started[r][i]) {
        out += " waits for its dependencies";
        continue;
      }
      for (Ref o : partners[r][i]) {
        if (!started[o.rank][o.step]) {
          out += " waits for " + what(p, ranks[o.rank], o.step);
          break;
        }
      }
      if (arrived[root(base[r] + i)] < members[root(base[r] + i)]) out += " (its calls and their peers' are not all under way)";
    }
  }
  return out;
}

CallExtent call_extent(const Step& st, int64_t ranks) {
  constexpr int64_t e = kCollectiveElement;
  const int64_t all = std::max<int64_t>(1, st.bytes / e);  // S in elements
  const int64_t share = std::max<int64_t>(1, all / ranks);  // S / ranks
  switch (st.call) {
    case CommCall::None: return {};
    case CommCall::AllReduce: return {static_cast<size_t>(all), all * e};
    case CommCall::AllGather:
    case CommCall::ReduceScatter: return {static_cast<size_t>(share), share * ranks * e};
    case CommCall::AllToAll: return {static_cast<size_t>(share), 2 * share * ranks * e};
    case CommCall::SendRecv: {
      CallExtent x;
      for (const PeerBytes& m : st.sends) x.bytes += m.bytes;
      for (const PeerBytes& m : st.recvs) x.bytes += m.bytes;
      return x;
    }
  }
  return {};
}

int64_t buffer_bytes(const CommPlan& plan, size_t rank) {
  size_t largest = 1;
  for (const Communicator& c : plan.comms) largest = std::max(largest, c.gpus.size());
  int64_t bytes = 4 * kCollectiveElement * static_cast<int64_t>(largest);  // the connections' tiny calls
  for (const Step& st : plan.ranks.at(rank).steps) {
    if (st.call == CommCall::None) continue;
    const auto ranks = static_cast<int64_t>(plan.comms[static_cast<size_t>(st.comm)].gpus.size());
    bytes = std::max(bytes, call_extent(st, ranks).bytes);
  }
  return bytes;
}

uint64_t fingerprint(const RankPlan& r) {
  uint64_t h = mix(0, static_cast<uint64_t>(r.gpu));
  for (const Step& st : r.steps) {
    for (uint64_t v : {uint64_t{st.op}, uint64_t{st.group}, uint64_t(st.call), uint64_t(st.comm), uint64_t{st.lane},
                       static_cast<uint64_t>(st.bytes)}) {
      h = mix(h, v);
    }
    for (const auto* list : {&st.sends, &st.recvs}) {
      for (const PeerBytes& m : *list) h = mix(mix(h, static_cast<uint64_t>(m.gpu)), static_cast<uint64_t>(m.bytes));
    }
    for (uint32_t w : st.waits) h = mix(h, w);
  }
  return h;
}

CommPlan plan_communication(const sim::ClusterJob& job, const sim::TrainingPlan& plan, const sim::Trace& order,
                            std::span<const int32_t> gpus) {
  return Planner(job, plan, order).plan(gpus);
}

CommPlan plan_communication(const sim::ClusterJob& job, const sim::TrainingPlan& plan, const sim::Trace& order) {
  std::vector<int32_t> all(static_cast<size_t>(job.cluster.world()));
  std::iota(all.begin(), all.end(), 0);
  return plan_communication(job, plan, order, all);
}

}  // namespace bubblesim::hw
