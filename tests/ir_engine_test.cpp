// Program IR validation, the event queue and the executor on hand-built programs: send/recv
// pairs, collectives, deadlock reports, and random programs with paired sends.
#include <catch2/catch.hpp>

#include <algorithm>
#include <random>

#include "sim/core/error.hpp"
#include "sim/engine/event_queue.hpp"
#include "sim/exec/executor.hpp"
#include "sim/ir/validate.hpp"
#include "sim/metrics/metrics.hpp"

using namespace bubblesim;
using namespace bubblesim::sim;

namespace {

Time u(double x) { return Time::from_seconds(x); }

OpId compute(Program& p, StreamId s, double dur) {
  Op op;
  op.stream = s;
  op.duration = u(dur);
  return p.add_op(op);
}

std::pair<OpId, OpId> send_recv(Program& p, StreamId from, StreamId to, double dur) {
  Op s;
  s.kind = OpKind::Send;
  s.stream = from;
  Op r;
  r.kind = OpKind::Recv;
  r.stream = to;
  const OpId a = p.add_op(s);
  const OpId b = p.add_op(r);
  const OpId members[] = {a, b};
  p.add_group(GroupKind::SendRecv, members, Bytes{1024}, u(dur));
  return {a, b};
}

}  // namespace

TEST_CASE("the event queue pops by time and equal times first-in first-out", "[engine]") {
  EventQueue q;
  q.push(Time::ps(5), 0, 1);
  q.push(Time::ps(3), 0, 2);
  q.push(Time::ps(5), 0, 3);
  q.push(Time::ps(3), 0, 4);
  q.push(Time::ps(1), 0, 5);
  std::vector<uint32_t> order;
  while (!q.empty()) order.push_back(q.pop().target);
  CHECK(order == std::vector<uint32_t>{5, 2, 4, 1, 3});
}

TEST_CASE("the event queue agrees with a sort on (time, insertion) under random holds", "[engine]") {
  std::mt19937 rng(1);
  EventQueue q;
  std::vector<std::pair<int64_t, uint64_t>> ref;
  uint64_t seq = 0;
  for (int i = 0; i < 5000; ++i) {
    if (ref.empty() || rng() % 3 != 0) {
      const int64_t t = static_cast<int64_t>(rng() % 50);
      q.push(Time::ps(t), 0, static_cast<uint32_t>(seq));
      ref.emplace_back(t, seq++);
    } else {
      const auto it = std::min_element(ref.begin(), ref.end());
      const Event e = q.pop();
      CHECK(e.time.count_ps() == it->first);
      CHECK(e.seq == it->second);
      ref.erase(it);
    }
  }
}

TEST_CASE("validate reports every problem of a program at once", "[ir]") {
  Program p;
  const DeviceId d0 = p.add_device("d0");
  const DeviceId d1 = p.add_device("d1");
  const StreamId s0 = p.add_stream(d0, StreamKind::Compute, "compute");
  const StreamId s1 = p.add_stream(d1, StreamKind::Compute, "compute");
  const OpId a = compute(p, s0, 1);
  const OpId b = compute(p, s1, -1);  // negative duration
  Op lone;
  lone.kind = OpKind::Send;  // a send without a recv
  lone.stream = s0;
  p.add_op(lone);
  p.add_dep(a, a);       // on itself
  p.add_dep(b, 999);     // on an op that does not exist
  Op c1;
  c1.kind = OpKind::Collective;
  c1.stream = s1;
  const OpId x = p.add_op(c1);
  const OpId y = p.add_op(c1);
  const OpId both[] = {x, y};
  p.add_group(GroupKind::AllReduce, both, Bytes{8});  // two members on one device
  p.finalize();
  const auto problems = validate(p);
  CHECK(problems.size() >= 5);
  auto mentions = [&](const char* text) {
    return std::any_of(problems.begin(), problems.end(), [&](const std::string& s) { return s.find(text) != std::string::npos; });
  };
  CHECK(mentions("negative duration"));
  CHECK(mentions("without a matching recv"));
  CHECK(mentions("depends on itself"));
  CHECK(mentions("does not exist"));
  CHECK(mentions("two ops on device 1"));
  CHECK_THROWS_WITH(require_valid(p), Catch::Contains("problem(s)") && Catch::Contains("negative duration"));
}

TEST_CASE("a send and its recv start together once both are issued and end together", "[engine]") {
  Program p;
  const DeviceId d0 = p.add_device("d0");
  const DeviceId d1 = p.add_device("d1");
  const StreamId c0 = p.add_stream(d0, StreamKind::Compute, "compute");
  const StreamId m0 = p.add_stream(d0, StreamKind::Comm, "comm");
  const StreamId c1 = p.add_stream(d1, StreamKind::Compute, "compute");
  const StreamId m1 = p.add_stream(d1, StreamKind::Comm, "comm");
  const OpId produce = compute(p, c0, 2);
  const auto [snd, rcv] = send_recv(p, m0, m1, 3);
  const OpId consume = compute(p, c1, 1);
  const OpId other = compute(p, c1, 4);  // d1 is busy meanwhile; recv sits on the comm stream
  p.add_dep(snd, produce);
  p.add_dep(consume, rcv);
  (void)other;
  p.finalize();
  REQUIRE(validate(p).empty());
  const Trace t = simulate(p, GivenTimes{});
  CHECK(t.records[rcv].start == u(0));  // issued at once, waits for its send
  CHECK(t.records[snd].start == u(2));
  CHECK(t.records[snd].end == u(5));
  CHECK(t.records[rcv].end == u(5));
  CHECK(t.records[consume].start == u(5));  // compute stream order: consume then other
  CHECK(t.records[other].start == u(6));
  CHECK(t.makespan == u(10));
}

TEST_CASE("a collective starts when its last member is issued", "[engine]") {
  Program p;
  std::vector<OpId> members;
  std::vector<OpId> before;
  for (int d = 0; d < 3; ++d) {
    const StreamId s = p.add_stream(p.add_device("d"), StreamKind::Compute, "compute");
    before.push_back(compute(p, s, d + 1));
    Op c;
    c.kind = OpKind::Collective;
    c.stream = s;
    members.push_back(p.add_op(c));
  }
  p.add_group(GroupKind::AllReduce, members, Bytes{1 << 20}, u(2));
  p.finalize();
  REQUIRE(validate(p).empty());
  const Trace t = simulate(p, GivenTimes{});
  for (OpId m : members) CHECK(t.records[m].end == u(5));
  CHECK(t.records[members[0]].start == u(1));
}

TEST_CASE("crossed recvs are a cycle for validate and a named deadlock for the engine", "[engine][ir]") {
  Program p;
  const StreamId s0 = p.add_stream(p.add_device("d0"), StreamKind::Comm, "comm");
  const StreamId s1 = p.add_stream(p.add_device("d1"), StreamKind::Comm, "comm");
  // Both devices first wait to receive, then send: neither send is ever issued.
  Op recv;
  recv.kind = OpKind::Recv;
  Op send;
  send.kind = OpKind::Send;
  recv.stream = s0;
  const OpId r0 = p.add_op(recv);
  send.stream = s0;
  const OpId x0 = p.add_op(send);
  recv.stream = s1;
  const OpId r1 = p.add_op(recv);
  send.stream = s1;
  const OpId x1 = p.add_op(send);
  const OpId g1[] = {x0, r1};
  const OpId g2[] = {x1, r0};
  p.add_group(GroupKind::SendRecv, g1, Bytes{1});
  p.add_group(GroupKind::SendRecv, g2, Bytes{1});
  p.finalize();
  const auto problems = validate(p);
  REQUIRE(problems.size() == 1);
  CHECK_THAT(problems[0], Catch::Contains("dependency cycle"));
  try {
    simulate(p, GivenTimes{});
    FAIL("expected a deadlock");
  } catch (const DeadlockError& e) {
    const std::string msg = e.what();
    CHECK_THAT(msg, Catch::Contains("deadlock"));
    CHECK_THAT(msg, Catch::Contains("recv #" + std::to_string(r0)));
    CHECK_THAT(msg, Catch::Contains("send #" + std::to_string(x1) ) );
    CHECK_THAT(msg, Catch::Contains("to be issued"));
  }
}

TEST_CASE("a dependency that never ends is named in the deadlock report", "[engine]") {
  Program p;
  const StreamId s0 = p.add_stream(p.add_device("d0"), StreamKind::Compute, "compute");
  const OpId a = compute(p, s0, 1);
  const OpId b = compute(p, s0, 1);
  p.add_dep(a, b);  // a waits for b, which runs after a on the same stream
  p.finalize();
  CHECK_FALSE(validate(p).empty());
  CHECK_THROWS_WITH(simulate(p, GivenTimes{}), Catch::Contains("op #0") && Catch::Contains("waits for") &&
                                                   Catch::Contains("op #1"));
}

TEST_CASE("random programs with paired sends in a consistent order always complete", "[engine][property]") {
  std::mt19937 rng(42);
  for (int trial = 0; trial < 50; ++trial) {
    Program p;
    const int devices = 2 + static_cast<int>(rng() % 5);
    std::vector<StreamId> comp, comm;
    for (int d = 0; d < devices; ++d) {
      const DeviceId id = p.add_device("d");
      comp.push_back(p.add_stream(id, StreamKind::Compute, "compute"));
      comm.push_back(p.add_stream(id, StreamKind::Comm, "comm"));
    }
    std::vector<std::pair<OpId, OpId>> pairs;
    std::vector<OpId> all;
    for (int k = 0; k < 200; ++k) {
      const int d = static_cast<int>(rng() % devices);
      if (rng() % 3 == 0) {
        int e = static_cast<int>(rng() % devices);
        if (e == d) e = (e + 1) % devices;
        pairs.push_back(send_recv(p, comm[static_cast<size_t>(d)], comm[static_cast<size_t>(e)], 0.5 * (rng() % 4)));
        all.push_back(pairs.back().first);
        all.push_back(pairs.back().second);
      } else {
        const OpId c = compute(p, comp[static_cast<size_t>(d)], 0.5 * (1 + rng() % 4));
        // Depend only on ops created earlier: a topological creation order.
        for (int j = 0; j < 2 && !all.empty(); ++j) p.add_dep(c, all[rng() % all.size()], u(0.25 * (rng() % 3)));
        all.push_back(c);
      }
    }
    p.finalize();
    REQUIRE(validate(p).empty());
    const Trace t = simulate(p, GivenTimes{});
    for (const auto& [s, r] : pairs) {
      CHECK(t.records[s].end == t.records[r].end);
    }
    for (OpId id = 0; id < p.num_ops(); ++id) {
      for (const Edge& e : p.deps(id)) CHECK(t.records[id].start >= t.records[e.op].end + p.latency(e));
    }
  }
}

TEST_CASE("the critical path follows the dependency that arrived last", "[metrics]") {
  Program p;
  const StreamId s0 = p.add_stream(p.add_device("d0"), StreamKind::Compute, "compute");
  const StreamId s1 = p.add_stream(p.add_device("d1"), StreamKind::Compute, "compute");
  const OpId a = compute(p, s0, 1);
  const OpId b = compute(p, s1, 5);  // the long one
  const OpId c = compute(p, s0, 1);
  p.add_dep(c, b);
  p.add_dep(c, a);
  p.finalize();
  const Trace t = simulate(p, GivenTimes{});
  CHECK(critical_path(p, t) == std::vector<OpId>{b, c});
}
