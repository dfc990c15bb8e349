// Property tests over generated (schedule, p, m, v, times, latency): ops conserved, every
// pass exactly once with its dependencies, no deadlock, makespan at least the lower bounds,
// the GPipe/1F1B closed form at zero latency, and determinism.
#include <catch2/catch.hpp>

#include <algorithm>
#include <map>
#include <random>
#include <tuple>

#include "tests/pipeline_fixture.hpp"

using namespace bubblesim;
using namespace bubblesim::test;
using K = sim::ScheduleKind;

namespace {

Case random_case(std::mt19937& rng, K kind) {
  auto pick = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  const double quanta[] = {0.5, 1, 1.5, 2, 3};
  auto t = [&] { return quanta[pick(0, 4)]; };
  Case c;
  c.kind = kind;
  c.p = pick(1, 8);
  c.v = sim::info(kind).fixed_chunks != 0 ? sim::info(kind).fixed_chunks : (kind == K::Interleaved || kind == K::LoopedBfs ? pick(2, 4) : 1);
  c.m = pick(1, 24);
  if (kind == K::DualPipe) {
    c.p = 2 * pick(1, 4);
    c.m = 2 * c.p + 2 * pick(0, 6);
  }
  if (kind == K::DualPipeV || kind == K::ZbH2) c.m = 2 * c.p + pick(0, 10);
  if (kind == K::ZbH1) c.m = c.p + pick(0, 12);
  if (kind == K::Interleaved) c.m = c.p * pick(1, 4);
  c.f = t();
  if (sim::info(kind).splits_backward || pick(0, 1) == 1) {
    c.i = t();
    c.w = t();
  } else {
    c.b = t();
  }
  if (sim::info(kind).overlaps_fb) c.fb = std::max(c.f, c.i + c.w) + 0.5 * pick(0, 2);
  c.c = pick(0, 2) * 0.5;
  return c;
}

/// Longest chain of one microbatch: forwards down the path, backwards (B or I) back up, plus
/// the latency of each cross-rank hop.
double chain_lower_bound(const Case& c, const sim::StageGraph& g) {
  const double bwd = c.i > 0 ? c.i : c.b;
  double best = 0;
  for (size_t s = 0; s < g.size(); ++s) {
    if (g.prev[s] != -1) continue;
    double len = 0;
    int hops = 0;
    for (int32_t x = static_cast<int32_t>(s); x != -1; x = g.next[static_cast<size_t>(x)]) {
      len += c.f + bwd;
      const int32_t nx = g.next[static_cast<size_t>(x)];
      if (nx != -1 && g.device[static_cast<size_t>(nx)] != g.device[static_cast<size_t>(x)]) ++hops;
    }
    best = std::max(best, len + 2 * hops * c.c);
  }
  return best;
}

}  // namespace

TEST_CASE("every schedule conserves ops, never deadlocks and respects the lower bounds", "[sched][property]") {
  std::mt19937 rng(20261122);
  const K kinds[] = {K::Naive, K::GPipe, K::OneFOneB, K::Interleaved, K::LoopedBfs,
                     K::ZbH1,  K::ZbH2,  K::ZbV,      K::DualPipe,    K::DualPipeV};
  int simulated = 0;
  for (K kind : kinds) {
    for (int trial = 0; trial < 60; ++trial) {
      Case c = random_case(rng, kind);
      if (!sim::check_shape(kind, {c.p, c.m, c.v, 0}).empty()) continue;
      INFO(sim::info(kind).name << " p=" << c.p << " m=" << c.m << " v=" << c.v << " F=" << c.f << " B=" << c.b
                                << " I=" << c.i << " W=" << c.w << " FB=" << c.fb << " c=" << c.c);
      const Simulated s = run(c);  // throws on an invalid program or a deadlock
      ++simulated;
      const sim::StageGraph g = sim::canonical_stages(kind, {c.p, c.m, c.v, 0});
      // Ops conserved: every (stage, microbatch) has one forward and one backward (B, or I and W).
      std::map<std::tuple<int, int, char>, int> seen;
      for (const sim::Op& op : s.program.ops()) {
        const auto& l = op.label;
        switch (l.phase) {
          case sim::Phase::F: ++seen[{l.stage, l.microbatch, 'F'}]; break;
          case sim::Phase::B: ++seen[{l.stage, l.microbatch, 'B'}]; ++seen[{l.stage, l.microbatch, 'W'}]; break;
          case sim::Phase::I: ++seen[{l.stage, l.microbatch, 'B'}]; break;
          case sim::Phase::W: ++seen[{l.stage, l.microbatch, 'W'}]; break;
          case sim::Phase::FB:
            ++seen[{l.stage, l.microbatch, 'F'}];
            ++seen[{l.b_stage, l.b_microbatch, 'B'}];
            ++seen[{l.b_stage, l.b_microbatch, 'W'}];
            break;
          case sim::Phase::None: FAIL("op without a phase");
        }
      }
      CHECK(seen.size() == g.size() * static_cast<size_t>(g.microbatches) * 3);
      CHECK(std::all_of(seen.begin(), seen.end(), [](const auto& kv) { return kv.second == 1; }));
      // Every op ran, after its dependencies plus latency.
      for (sim::OpId id = 0; id < s.program.num_ops(); ++id) {
        const auto& r = s.trace.records[id];
        REQUIRE(r.op == id);
        for (const sim::Edge& e : s.program.deps(id)) {
          CHECK(r.start >= s.trace.records[e.op].end + s.program.latency(e));
        }
      }
      // Ops of a stream never overlap.
      for (const sim::Stream& st : s.program.streams()) {
        for (size_t k = 1; k < st.ops.size(); ++k) {
          CHECK(s.trace.records[st.ops[k]].start >= s.trace.records[st.ops[k - 1]].end);
        }
      }
      // Each rank is busy for exactly its share of the work: 2m(F+B) per chunk, less the
      // overlap gain of each F&B pair.
      for (size_t r = 0; r < s.metrics.devices.size(); ++r) {
        size_t pairs = 0;
        for (sim::OpId id : s.program.stream(static_cast<sim::StreamId>(r)).ops) {
          pairs += s.program.op(id).label.phase == sim::Phase::FB;
        }
        const double fb_full = c.f + (c.i > 0 ? c.i + c.w : c.b);
        const double gain = c.fb > 0 ? fb_full - c.fb : 0;
        const double chunks = static_cast<double>(g.size()) / c.p;
        CHECK(units(s.metrics.devices[r].busy) ==
              Approx(chunks * g.microbatches * fb_full - static_cast<double>(pairs) * gain).margin(1e-6));
      }
      // Lower bound: one microbatch's chain through all stages.
      CHECK(units(s.metrics.makespan) >= chain_lower_bound(c, g) - 1e-9);
      if ((kind == K::GPipe || kind == K::OneFOneB) && c.c == 0) {
        const double fb = c.f + (c.i > 0 ? c.i + c.w : c.b);
        CHECK(units(s.metrics.makespan) == Approx((c.m + c.p - 1) * fb));
      }
    }
  }
  CHECK(simulated > 400);
}

TEST_CASE("the same scenario simulated twice gives an identical trace", "[sched][property]") {
  std::mt19937 rng(7);
  for (K kind : {K::OneFOneB, K::Interleaved, K::ZbV, K::DualPipe, K::DualPipeV}) {
    Case c = random_case(rng, kind);
    if (!sim::check_shape(kind, {c.p, c.m, c.v, 0}).empty()) continue;
    const Simulated a = run(c);
    const Simulated b = run(c);
    REQUIRE(a.trace.records.size() == b.trace.records.size());
    for (size_t i = 0; i < a.trace.records.size(); ++i) {
      CHECK(a.trace.records[i].start == b.trace.records[i].start);
      CHECK(a.trace.records[i].end == b.trace.records[i].end);
    }
  }
}

TEST_CASE("zb-v also completes with fewer than 2p-1 microbatches, even fewer than p", "[sched][property]") {
  for (int p = 1; p <= 6; ++p) {
    for (int m = 1; m < 2 * p; ++m) {
      INFO("p=" << p << " m=" << m);
      const Simulated s = run({K::ZbV, p, m, 2, 1, 0, 1, 1});
      CHECK(units(s.metrics.devices[0].busy) == Approx(2.0 * m * 3));
    }
  }
}
