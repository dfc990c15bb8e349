#include "sim/ir/validate.hpp"

#include <algorithm>
#include <set>

#include "sim/core/error.hpp"
#include "sim/core/memory.hpp"

namespace bubblesim::sim {
namespace {

void check_groups(const Program& p, std::vector<std::string>& problems) {
  for (GroupId g = 0; g < p.groups().size(); ++g) {
    const Group& gr = p.groups()[g];
    auto members = p.members(g);
    const std::string where = std::string(to_string(gr.kind)) + " group #" + std::to_string(g);
    if (gr.duration < Time::zero()) problems.push_back(where + " has a negative duration");
    for (OpId m : members) {
      if (p.op(m).group != g) problems.push_back(describe(p, m) + " is listed in " + where + " but belongs to another group");
      for (const Edge& e : p.deps(m)) {
        if (p.op(e.op).group == g) {
          problems.push_back(describe(p, m) + " depends on " + describe(p, e.op) + " of its own " + where +
                             ", which can only start together with it");
        }
      }
    }
    if (gr.kind == GroupKind::Transfer) {
      if (members.size() != 1 || p.op(members[0]).kind != OpKind::Recv) {
        problems.push_back(where + " must hold exactly one recv op");
      }
      continue;
    }
    if (gr.kind == GroupKind::SendRecv) {
      if (members.size() != 2) {
        problems.push_back(where + " has " + std::to_string(members.size()) + " ops; a send/recv pair needs 2");
        continue;
      }
      const Op& a = p.op(members[0]);
      const Op& b = p.op(members[1]);
      const bool paired = (a.kind == OpKind::Send && b.kind == OpKind::Recv) ||
                          (a.kind == OpKind::Recv && b.kind == OpKind::Send);
      if (!paired) problems.push_back(where + " must pair one send with one recv, has " + to_string(a.kind) +
                                      " and " + to_string(b.kind));
      if (a.device == b.device) problems.push_back(where + " sends from device " + std::to_string(a.device) +
                                                   " to itself");
      continue;
    }
    std::set<DeviceId> devices;
    for (OpId m : members) {
      if (p.op(m).kind != OpKind::Collective) {
        problems.push_back(where + " contains " + describe(p, m) + ", which is not a collective op");
      }
      if (!devices.insert(p.op(m).device).second) {
        problems.push_back(where + " has two ops on device " + std::to_string(p.op(m).device));
      }
    }
  }
}

void check_ops(const Program& p, std::vector<std::string>& problems) {
  for (OpId id = 0; id < p.num_ops(); ++id) {
    const Op& op = p.op(id);
    if (op.duration < Time::zero()) problems.push_back(describe(p, id) + " has a negative duration");
    const bool is_comm = op.kind != OpKind::Compute;
    if (is_comm && op.group == kNone) {
      problems.push_back(describe(p, id) + " is a " + to_string(op.kind) + " without a matching " +
                         (op.kind == OpKind::Send ? "recv" : op.kind == OpKind::Recv ? "send" : "group"));
    }
    if (!is_comm && op.group != kNone) problems.push_back(describe(p, id) + " is a compute op inside a group");
    for (const Edge& e : p.deps(id)) {
      if (e.op == id) problems.push_back(describe(p, id) + " depends on itself");
    }
  }
  for (const auto& [to, from] : p.invalid_edges()) {
    problems.push_back("dependency of op #" + std::to_string(to) + " on op #" + std::to_string(from) +
                       " names an op that does not exist (the program has " + std::to_string(p.num_ops()) + ")");
  }
}

/// Kahn's algorithm over "nodes": an op, or a whole rendezvous group (whose members start
/// together). Edges: stream order and dependencies. Leftover nodes lie on or behind a cycle.
void check_cycles(const Program& p, std::vector<std::string>& problems) {
  const size_t n = p.num_ops();
  const size_t nodes = n + p.groups().size();
  // Flat per-op arrays first (one pass each), so the main loop touches 4-byte entries only.
  std::vector<uint32_t> node_of;
  reserve_huge(node_of, n);
  for (OpId op = 0; op < n; ++op) node_of.push_back(op);
  for (GroupId g = 0; g < p.groups().size(); ++g) {
    for (OpId m : p.members(g)) node_of[m] = static_cast<uint32_t>(n + g);
  }
  std::vector<OpId> stream_next;
  assign_huge(stream_next, n, kNone);
  for (const Stream& s : p.streams()) {
    for (size_t i = 0; i + 1 < s.ops.size(); ++i) stream_next[s.ops[i]] = s.ops[i + 1];
  }
  auto for_each_succ = [&](OpId op, auto&& fn) {
    if (stream_next[op] != kNone) fn(stream_next[op]);
    for (const Edge& e : p.dependents(op)) fn(e.op);
  };
  std::vector<uint32_t> indegree;
  assign_huge(indegree, nodes, uint32_t{0});
  for (OpId op = 0; op < n; ++op) {
    for_each_succ(op, [&](OpId s) {
      if (node_of[s] != node_of[op]) ++indegree[node_of[s]];
    });
  }
  // Ops inside a group are represented by their group's node, not by one of their own.
  std::vector<uint32_t> ready;
  size_t real_nodes = 0;
  for (uint32_t v = 0; v < nodes; ++v) {
    if (v < n && node_of[v] != v) continue;
    ++real_nodes;
    if (indegree[v] == 0) ready.push_back(v);
  }
  size_t done = 0;
  auto release = [&](OpId op) {
    for_each_succ(op, [&](OpId s) {
      const uint32_t w = node_of[s];
      if (w != node_of[op] && --indegree[w] == 0) ready.push_back(w);
    });
  };
  while (!ready.empty()) {
    const uint32_t v = ready.back();
    ready.pop_back();
    ++done;
    if (v < n) {
      release(v);
    } else {
      for (OpId m : p.members(static_cast<GroupId>(v - n))) release(m);
    }
  }
  if (done == real_nodes) return;
  size_t stuck_ops = 0;
  OpId example = kNone;
  for (OpId op = 0; op < n; ++op) {
    if (indegree[node_of[op]] > 0) {
      ++stuck_ops;
      if (example == kNone) example = op;
    }
  }
  problems.push_back("dependency cycle: " + std::to_string(stuck_ops) +
                     " ops can never start (stream order, dependencies and groups form a loop), e.g. " +
                     describe(p, example));
}

}  // namespace

std::vector<std::string> validate(const Program& p) {
  BUBBLESIM_ASSERT(p.finalized(), "validate() needs a finalized program");
  std::vector<std::string> problems;
  check_ops(p, problems);
  check_groups(p, problems);
  if (p.invalid_edges().empty()) check_cycles(p, problems);
  return problems;
}

void require_valid(const Program& p, size_t max_listed) {
  const auto problems = validate(p);
  if (problems.empty()) return;
  std::string msg = "invalid program: " + std::to_string(problems.size()) + " problem(s): ";
  for (size_t i = 0; i < problems.size() && i < max_listed; ++i) msg += (i ? "; " : "") + problems[i];
  if (problems.size() > max_listed) msg += "; and " + std::to_string(problems.size() - max_listed) + " more";
  throw InputError(msg);
}

}  // namespace bubblesim::sim
