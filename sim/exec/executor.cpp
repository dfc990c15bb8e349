#include "sim/exec/executor.hpp"

#include <string>

#include "sim/core/error.hpp"
#include "sim/engine/event_queue.hpp"

namespace bubblesim::sim {
namespace {

enum EventKind : uint32_t {
  kOpEnd = 0,      // target: op id
  kDepArrive = 1,  // target: op id whose dependency (with latency) has arrived
};

class Executor {
 public:
  Executor(const Program& p, const CostModel& cost) : p_(p), cost_(cost) {
    const size_t n = p.num_ops();
    waiting_.resize(n);
    for (OpId id = 0; id < n; ++id) waiting_[id] = static_cast<uint32_t>(p.deps(id).size());
    next_.assign(p.streams().size(), 0);
    busy_.assign(p.streams().size(), 0);
    posted_.assign(p.groups().size(), 0);
    trace_.records.assign(n, OpRecord{});
    queue_.reserve(p.streams().size() * 2 + 64);
  }

  Trace run() {
    for (StreamId s = 0; s < p_.streams().size(); ++s) try_start(s);
    uint64_t events = 0;
    while (!queue_.empty()) {
      const Event ev = queue_.pop();
      ++events;
      now_ = ev.time;
      if (ev.kind == kOpEnd) {
        finish(ev.target);
      } else {
        satisfy(ev.target);
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
    if (waiting_[id] != 0) return;
    busy_[s] = 1;
    trace_.records[id].start = now_;
    const Op& op = p_.op(id);
    if (op.kind == OpKind::Compute) {
      queue_.push(now_ + cost_.op_time(p_, id), kOpEnd, id);
      return;
    }
    const auto members = p_.members(op.group);
    if (++posted_[op.group] < members.size()) return;
    const Time end = now_ + cost_.group_time(p_, op.group);
    for (OpId m : members) queue_.push(end, kOpEnd, m);
  }

  void finish(OpId id) {
    OpRecord& rec = trace_.records[id];
    rec.op = id;
    rec.end = now_;
    if (now_ > trace_.makespan) trace_.makespan = now_;
    ++completed_;
    const StreamId s = p_.op(id).stream;
    busy_[s] = 0;
    ++next_[s];
    for (const Edge& e : p_.dependents(id)) {
      const Time lat = p_.latency(e);
      if (lat == Time::zero()) {
        satisfy(e.op);
      } else {
        queue_.push(now_ + lat, kDepArrive, e.op);
      }
    }
    try_start(s);
  }

  void satisfy(OpId id) {
    BUBBLESIM_ASSERT(waiting_[id] > 0, "dependency satisfied twice");
    if (--waiting_[id] == 0) try_start(p_.op(id).stream);
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
  EventQueue queue_;
  std::vector<uint32_t> waiting_;  // per op: dependencies not yet arrived
  std::vector<uint32_t> next_;     // per stream: index of its head op
  std::vector<uint8_t> busy_;      // per stream: an op is running or issued
  std::vector<uint32_t> posted_;   // per group: members issued so far
  Trace trace_;
  Time now_;
  size_t completed_ = 0;
};

}  // namespace

Trace simulate(const Program& p, const CostModel& cost) {
  BUBBLESIM_ASSERT(p.finalized(), "simulate() needs a finalized program");
  return Executor(p, cost).run();
}

}  // namespace bubblesim::sim
