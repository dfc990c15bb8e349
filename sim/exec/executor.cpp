#include "sim/exec/executor.hpp"

#include <string>

#include "sim/core/error.hpp"
#include "sim/core/memory.hpp"
#include "sim/engine/event_queue.hpp"

namespace bubblesim::sim {
namespace {

enum class EventKind : uint32_t {
  kOpEnd,    // target: op id
  kIssue,    // target: a send/recv/collective op whose last dependency arrives now
  kNetwork,  // target: the network's version when this wake-up was set (stale if it moved on)
};

constexpr uint32_t code(EventKind k) { return static_cast<uint32_t>(k); }

class Executor {
 public:
  Executor(const Program& p, const CostModel& cost, NetworkModel* net) : p_(p), cost_(cost), net_(net) {
    const size_t n = p.num_ops();
    // Everything the event loop touches per op, packed; compute durations are static per op,
    // so they are asked of the cost model once, here, in one sequential pass.
    assign_huge(state_, n, OpState{});
    for (OpId id = 0; id < n; ++id) {
      const Op& op = p.op(id);
      OpState& st = state_[id];
      st.stream = op.stream;
      st.group = op.group;
      st.waiting = static_cast<uint32_t>(p.deps(id).size());
      st.duration = op.kind == OpKind::Compute ? cost.op_time(p, id) : Time::zero();
    }
    next_.assign(p.streams().size(), 0);
    busy_.assign(p.streams().size(), 0);
    posted_.assign(p.groups().size(), 0);
    assign_huge(trace_.records, n, OpRecord{});
    queue_.reserve(p.streams().size() * 2 + 64);
  }

  Trace run() {
    for (StreamId s = 0; s < p_.streams().size(); ++s) try_start(s);
    uint64_t events = 0;
    while (!queue_.empty()) {
      const Event ev = queue_.pop();
      ++events;
      now_ = ev.time;
      if (ev.kind == code(EventKind::kOpEnd)) {
        finish(ev.target);
      } else if (ev.kind == code(EventKind::kIssue)) {
        issue(ev.target);
      } else if (ev.target == net_->version()) {
        network_wake();
      }
    }
    if (completed_ != p_.num_ops()) throw DeadlockError(deadlock_report());
    trace_.events = events;
    return std::move(trace_);
  }

 private:
  void try_start(StreamId s) {
    if (busy_[s]) return;
    const std::vector<OpId>& ops = p_.stream(s).ops;
    if (next_[s] >= ops.size()) return;
    const OpId id = ops[next_[s]];
    const OpState& st = state_[id];
    if (st.waiting != 0) return;
    // Streams are in order, so once the head's last dependency is known the op's start is
    // known too: max(now, latest arrival). Compute ops need no event until they end.
    busy_[s] = 1;
    const Time start = max(now_, st.ready);
    if (st.group == kNone) {
      trace_.records[id].start = start;
      queue_.push(start + st.duration, code(EventKind::kOpEnd), id);
    } else if (start > now_) {
      queue_.push(start, code(EventKind::kIssue), id);  // the network must see the transfer begin in time order
    } else {
      issue(id);
    }
  }

  /// A send/recv/collective op reaches the head of its stream with its dependencies met.
  void issue(OpId id) {
    trace_.records[id].start = now_;
    const GroupId g = state_[id].group;
    const auto members = p_.members(g);
    if (++posted_[g] < members.size()) return;
    if (net_ != nullptr && !p_.transfers(g).empty()) {
      net_->start(p_, g, now_);
      schedule_network();
      return;
    }
    const Time end = now_ + cost_.group_time(p_, g);
    for (OpId m : members) queue_.push(end, code(EventKind::kOpEnd), m);
  }

  /// One wake-up at the network's next event, tagged with its version (older ones are stale).
  void schedule_network() {
    const Time next = net_->next_event();
    if (next != Time::max()) queue_.push(max(next, now_), code(EventKind::kNetwork), net_->version());
  }

  void network_wake() {
    finished_groups_.clear();
    net_->advance(now_, finished_groups_);
    for (GroupId g : finished_groups_) {
      for (OpId m : p_.members(g)) queue_.push(now_, code(EventKind::kOpEnd), m);
    }
    schedule_network();
  }

  void finish(OpId id) {
    OpRecord& rec = trace_.records[id];
    rec.op = id;
    rec.end = now_;
    if (now_ > trace_.makespan) trace_.makespan = now_;
    ++completed_;
    const StreamId s = state_[id].stream;
    busy_[s] = 0;
    ++next_[s];
    for (const Edge& e : p_.dependents(id)) {
      OpState& dep = state_[e.op];
      dep.ready = max(dep.ready, now_ + p_.latency(e));
      satisfy(e.op);
    }
    try_start(s);
  }

  void satisfy(OpId id) {
    OpState& st = state_[id];
    BUBBLESIM_ASSERT(st.waiting > 0, "dependency satisfied twice");
    if (--st.waiting == 0) try_start(st.stream);
  }

  std::string deadlock_report() const {
    std::string msg = "deadlock: the event queue drained at t=" + format_time(now_) + " with " +
                      std::to_string(p_.num_ops() - completed_) + " of " + std::to_string(p_.num_ops()) +
                      " ops not run. Blocked:";
    for (StreamId s = 0; s < p_.streams().size(); ++s) {
      const std::vector<OpId>& ops = p_.stream(s).ops;
      if (next_[s] >= ops.size()) continue;
      const OpId id = ops[next_[s]];
      msg += "\n  " + describe(p_, id) + " waits for ";
      std::string waits;
      if (busy_[s]) {
        for (OpId m : p_.members(p_.op(id).group)) {
          if (m != id && !issued(m)) waits += (waits.empty() ? "" : ", ") + describe(p_, m) + " to be issued";
        }
      } else {
        for (const Edge& e : p_.deps(id)) {
          if (trace_.records[e.op].op == kNone) waits += (waits.empty() ? "" : ", ") + describe(p_, e.op);
        }
      }
      msg += waits.empty() ? "(nothing recorded)" : waits;
    }
    return msg;
  }

  bool issued(OpId m) const {
    const StreamId s = p_.op(m).stream;
    const std::vector<OpId>& ops = p_.stream(s).ops;
    return busy_[s] && next_[s] < ops.size() && ops[next_[s]] == m;
  }

  const Program& p_;
  const CostModel& cost_;
  NetworkModel* net_;                     // null: groups take cost_.group_time()
  std::vector<GroupId> finished_groups_;  // scratch for network_wake()
  EventQueue queue_;
  struct OpState {
    Time duration;      // compute ops: from the cost model
    Time ready;         // latest arrival (end + latency) of the dependencies met so far
    StreamId stream;
    GroupId group;      // kNone for compute ops
    uint32_t waiting;   // dependencies not yet arrived
  };
  std::vector<OpState> state_;  // per op
  std::vector<uint32_t> next_;     // per stream: index of its head op
  std::vector<uint8_t> busy_;      // per stream: an op is running or issued
  std::vector<uint32_t> posted_;   // per group: members issued so far
  Trace trace_;
  Time now_;
  size_t completed_ = 0;
};

}  // namespace

Trace simulate(const Program& p, const CostModel& cost, NetworkModel* network) {
  BUBBLESIM_ASSERT(p.finalized(), "simulate() needs a finalized program");
  return Executor(p, cost, network).run();
}

}  // namespace bubblesim::sim
