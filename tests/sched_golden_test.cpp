// Every row of algorithms.md 5.1 (makespan, busy, idle, peak activations) and every op order of
// 5.2, as exact tests of the generators and the engine together.
#include <catch2/catch.hpp>

#include <optional>
#include <vector>

#include "sim/sched/closed_form.hpp"
#include "tests/pipeline_fixture.hpp"

using namespace bubblesim;
using namespace bubblesim::test;
using K = sim::ScheduleKind;

namespace {

struct Row {
  const char* id;
  Case c;
  double makespan;
  std::vector<double> busy;  // one value: every rank
  std::vector<double> idle;  // one value: every rank; empty: not stated
  std::vector<int64_t> peak; // one value: every rank; empty: not stated
  std::vector<double> spans = {};
};

double at(const std::vector<double>& v, size_t r) { return v.size() == 1 ? v[0] : v[r]; }

void check(const Row& row) {
  INFO("row " << row.id);
  const Simulated s = run(row.c);
  CHECK(units(s.metrics.makespan) == Approx(row.makespan).margin(1e-9));
  for (size_t r = 0; r < s.metrics.devices.size(); ++r) {
    INFO("rank " << r);
    const auto& d = s.metrics.devices[r];
    CHECK(units(d.busy) == Approx(at(row.busy, r)).margin(1e-9));
    if (!row.idle.empty()) CHECK(units(d.idle) == Approx(at(row.idle, r)).margin(1e-9));
    if (!row.peak.empty()) CHECK(d.peak_activation == (row.peak.size() == 1 ? row.peak[0] : row.peak[r]));
    if (!row.spans.empty()) CHECK(units(d.span) == Approx(at(row.spans, r)).margin(1e-9));
  }
}

}  // namespace

TEST_CASE("every makespan, busy, idle and peak of algorithms.md 5.1 is reproduced", "[sched][golden]") {
  const std::vector<Row> rows{
      {"P1", {K::Naive, 4, 1}, 12, {3}, {9}, {1}},
      {"P2", {K::GPipe, 4, 8}, 33, {24}, {9}, {8}},
      {"P3", {K::OneFOneB, 4, 8}, 33, {24}, {9}, {4, 3, 2, 1}},
      {"P4", {K::OneFOneB, 4, 2}, 15, {6}, {9}, {}},
      {"P5", {K::OneFOneB, 8, 32}, 117, {96}, {21}, {}},
      {"P6", {K::OneFOneB, 4, 8, 1, 2, 4}, 66, {48}, {18}, {4, 3, 2, 1}},
      {"P7", {K::Interleaved, 4, 8, 2}, 57, {48}, {9}, {11, 9, 7, 5}},
      {"P8", {K::Interleaved, 4, 8, 4}, 105, {96}, {9}, {}},
      {"P9", {K::Interleaved, 4, 10, 2, 1, 2, 0, 0, 0, 0, 5}, 69, {60}, {9}, {}},
      {"P10", {K::Interleaved, 4, 10, 2, 1, 2, 0, 0, 0, 0, 4}, 79, {60}, {19}, {}},
      {"P11", {K::LoopedBfs, 4, 8, 2}, 57, {48}, {9}, {16}},
      {"P12", {K::OneFOneB, 4, 8, 1, 1, 0, 1, 1}, 33, {24}, {9}, {4, 3, 2, 1}},
      {"P13", {K::ZbH1, 4, 8, 1, 1, 0, 1, 1}, 27, {24}, {3}, {4}},
      {"P14", {K::ZbH2, 4, 8, 1, 1, 0, 1, 1}, 27, {24}, {3}, {7}, {24}},
      {"P15", {K::ZbH1, 4, 8, 1, 2, 0, 2, 1}, 49, {40}, {9}, {}},
      {"P16", {K::ZbH2, 4, 8, 1, 2, 0, 2, 1}, 46, {40}, {6}, {}, {46, 44, 42, 40}},
      {"P17", {K::OneFOneB, 4, 8, 1, 2, 3}, 55, {40}, {15}, {}},
      {"P18", {K::ZbH1, 4, 8, 1, 1, 0, 1, 0.5}, 24.5, {20}, {4.5}, {}},
      {"P19", {K::ZbH2, 4, 8, 1, 1, 0, 1, 0.5}, 23, {20}, {3}, {}},
      {"P20", {K::ZbV, 4, 8, 2, 1, 0, 1, 1}, 51, {48}, {3}, {8}, {48}},
      {"P21", {K::ZbV, 2, 4, 2, 1, 0, 1, 1}, 25, {24}, {1}, {4}, {24}},
      {"P22", {K::ZbV, 4, 8, 2, 2, 0, 2, 1}, 86, {80}, {6}, {}},
      {"P23", {K::DualPipeV, 4, 8, 2, 1, 0, 1, 1, 3}, 54, {48}, {6}, {9}},
      {"P24", {K::DualPipeV, 4, 8, 2, 1, 0, 1, 1, 2}, 44, {43, 42, 41, 41}, {1, 2, 3, 3}, {9}},
      {"P25", {K::DualPipeV, 4, 10, 2, 1, 0, 1, 1, 3}, 66, {60}, {6}, {9}},
      {"P26", {K::DualPipeV, 4, 10, 2, 1, 0, 1, 1, 2}, 52, {51, 50, 49, 49}, {1, 2, 3, 3}, {9}},
      {"P27", {K::DualPipeV, 2, 4, 2, 1, 0, 1, 1, 2}, 22, {21}, {1}, {5}},
      {"P29", {K::DualPipe, 4, 8, 1, 1, 0, 1, 1, 3}, 26, {24}, {2}, {5}},
      {"P30", {K::DualPipe, 4, 8, 1, 1, 0, 1, 1, 2}, 22, {21}, {1}, {5}},
      {"P31", {K::DualPipe, 8, 16, 1, 1, 0, 1, 1, 3}, 54, {48}, {6}, {9}},
      {"P32", {K::DualPipe, 8, 16, 1, 1, 0, 1, 1, 2}, 44, {43, 42, 41, 41, 41, 41, 42, 43}, {}, {9}},
      {"P33", {K::GPipe, 4, 8, 1, 1, 2, 0, 0, 0, 1}, 39, {24}, {15}, {}},
      {"P34", {K::OneFOneB, 2, 4, 1, 1, 2, 0, 0, 0, 1}, 19, {12}, {7}, {}},
      {"P35a", {K::OneFOneB, 4, 8, 1, 1, 2, 0, 0, 0, 0.5}, 41, {24}, {17}, {}},
      {"P35b", {K::OneFOneB, 4, 8, 1, 1, 2, 0, 0, 0, 1}, 49, {24}, {25}, {}},
      {"P36a", {K::Interleaved, 4, 8, 2, 1, 2, 0, 0, 0, 0.5}, 64, {48}, {}, {}},
      {"P36b", {K::Interleaved, 4, 8, 2, 1, 2, 0, 0, 0, 1}, 71, {48}, {}, {}},
      {"P37a", {K::ZbH1, 4, 8, 1, 1, 0, 1, 1, 0, 1}, 41, {24}, {}, {}},
      {"P37b", {K::ZbH2, 4, 8, 1, 1, 0, 1, 1, 0, 1}, 30, {24}, {}, {}},
      {"P38a", {K::ZbV, 4, 8, 2, 1, 0, 1, 1, 0, 1}, 65, {48}, {}, {}},
      {"P38b", {K::DualPipeV, 4, 8, 2, 1, 0, 1, 1, 3, 1}, 75, {48}, {}, {}},
  };
  for (const Row& row : rows) check(row);
}

TEST_CASE("DualPipeV p8 m16 with F&B 2.5 matches P28 and the derived busy formula", "[sched][golden]") {
  const Simulated s = run({K::DualPipeV, 8, 16, 2, 1, 0, 1, 1, 2.5});
  CHECK(units(s.metrics.makespan) == Approx(99));
  CHECK(units(s.metrics.max_idle) == Approx(10.5));
  CHECK(s.metrics.peak_activation == 17);
  const int p = 8, m = 16;
  for (int r = 0; r < p; ++r) {
    // busy_r = 2m(F+B) - X_r (F+B-FB), X_r = 2m - 3p + r + 1 - [r = p-1] (algorithms.md 1.10)
    const int x = 2 * m - 3 * p + r + 1 - (r == p - 1 ? 1 : 0);
    CHECK(units(s.metrics.devices[static_cast<size_t>(r)].busy) == Approx(2.0 * m * 3 - x * 0.5));
  }
  CHECK(units(s.metrics.devices.front().busy) == Approx(91.5));
  CHECK(units(s.metrics.devices.back().busy) == Approx(88.5));
}

TEST_CASE("the interleaved remainder rule rejects P10 but the generator still reproduces it", "[sched]") {
  CHECK_FALSE(sim::check_shape(K::Interleaved, {4, 10, 2, 4}).empty());
  CHECK(sim::check_shape(K::Interleaved, {4, 10, 2, 5}).empty());
  CHECK(sim::check_shape(K::Interleaved, {4, 8, 2, 0}).empty());
}

TEST_CASE("closed forms agree with the simulated bubbles where they apply", "[sched][closed-form]") {
  struct Check {
    Case c;
    double bubble;
  };
  const std::vector<Check> checks{
      {{K::GPipe, 4, 8}, 9},          {{K::OneFOneB, 4, 8}, 9},
      {{K::Interleaved, 4, 8, 2}, 9}, {{K::ZbH1, 4, 8, 1, 1, 0, 1, 1}, 3},
      {{K::ZbH1, 4, 8, 1, 2, 0, 2, 1}, 9},
      {{K::ZbH2, 4, 8, 1, 2, 0, 2, 1}, 6},
      {{K::ZbV, 4, 8, 2, 1, 0, 1, 1}, 0},
      {{K::DualPipeV, 4, 8, 2, 1, 0, 1, 1, 3}, 6},
      {{K::DualPipeV, 4, 8, 2, 1, 0, 1, 1, 2}, 3},
      {{K::DualPipe, 4, 8, 1, 1, 0, 1, 1, 3}, 2},
      {{K::DualPipe, 8, 16, 1, 1, 0, 1, 1, 2}, 3},
  };
  for (const Check& ch : checks) {
    const Case& c = ch.c;
    INFO(sim::info(c.kind).name << " p=" << c.p << " m=" << c.m);
    const double b = c.i > 0 ? c.i + c.w : c.b;
    const auto cf = sim::closed_form(c.kind, {c.p, c.m, c.v, 0}, {c.f, b, c.i, c.w, c.fb > 0 ? c.fb : c.f + b});
    REQUIRE(cf.has_value());
    CHECK(cf->bubble == Approx(ch.bubble));
    const Simulated s = run(c);
    const double simulated = cf->measure == sim::BubbleMeasure::SpanEveryRank ? units(s.metrics.max_span_bubble)
                                                                              : units(s.metrics.max_idle);
    CHECK(simulated == Approx(ch.bubble).margin(1e-9));
    if (cf->fraction) CHECK(s.metrics.idle_fraction == Approx(*cf->fraction));
  }
  CHECK_FALSE(sim::closed_form(K::ZbV, {4, 8, 2, 0}, {2, 3, 2, 1, 5}).has_value());
}

TEST_CASE("no closed form is claimed outside the regime it holds in", "[sched][closed-form]") {
  // Looped BFS with fewer microbatches than ranks idles 15, not (p-1)(f+b) = 9.
  CHECK(units(run({K::LoopedBfs, 4, 2, 2}).metrics.max_idle) == Approx(15));
  CHECK_FALSE(sim::closed_form(K::LoopedBfs, {4, 2, 2, 0}, {1, 2, 0, 0, 3}).has_value());
  // ZB-V with m < 2p-1 has a span bubble.
  CHECK(units(run({K::ZbV, 4, 4, 2, 1, 0, 1, 1}).metrics.max_span_bubble) > 0);
  CHECK_FALSE(sim::closed_form(K::ZbV, {4, 4, 2, 0}, {1, 2, 1, 1, 3}).has_value());
  // DualPipe outside F = I >= W.
  CHECK_FALSE(sim::closed_form(K::DualPipe, {4, 8, 1, 0}, {1, 3, 1, 2, 4}).has_value());
}

TEST_CASE("GPipe runs F0..F7 then B0..B7 on every rank (5.2)", "[sched][order]") {
  const Simulated s = run({K::GPipe, 4, 8});
  for (sim::DeviceId d = 0; d < 4; ++d) CHECK(rank_order(s, d, false) == "F0 F1 F2 F3 F4 F5 F6 F7 B0 B1 B2 B3 B4 B5 B6 B7");
}

TEST_CASE("1F1B p4 m8 has the op orders and start times of 5.2", "[sched][order]") {
  const Simulated s = run({K::OneFOneB, 4, 8});
  CHECK(rank_order(s, 0, true) == "F0@0 F1@1 F2@2 F3@3 B0@10 F4@12 B1@13 F5@15 B2@16 F6@18 B3@19 F7@21 B4@22 B5@25 B6@28 B7@31");
  CHECK(rank_order(s, 1, true) == "F0@1 F1@2 F2@3 B0@8 F3@10 B1@11 F4@13 B2@14 F5@16 B3@17 F6@19 B4@20 F7@22 B5@23 B6@26 B7@29");
  CHECK(rank_order(s, 2, true) == "F0@2 F1@3 B0@6 F2@8 B1@9 F3@11 B2@12 F4@14 B3@15 F5@17 B4@18 F6@20 B5@21 F7@23 B6@24 B7@27");
  CHECK(rank_order(s, 3, true) == "F0@3 B0@4 F1@6 B1@7 F2@9 B2@10 F3@12 B3@13 F4@15 B4@16 F5@18 B5@19 F6@21 B6@22 F7@24 B7@25");
}

TEST_CASE("1F1B p2 m4 with latency 1 matches the hand-checked 5.2 times", "[sched][order]") {
  const Simulated s = run({K::OneFOneB, 2, 4, 1, 1, 2, 0, 0, 0, 1});
  CHECK(rank_order(s, 0, true) == "F0@0 F1@1 B0@6 F2@8 B1@9 F3@11 B2@14 B3@17");
  CHECK(rank_order(s, 1, true) == "F0@2 B0@3 F1@5 B1@6 F2@10 B2@11 F3@13 B3@14");
  CHECK(units(s.metrics.makespan) == Approx(19));
}

TEST_CASE("interleaved 1F1B p4 m8 v2 has the op orders of 5.2", "[sched][order]") {
  const Simulated s = run({K::Interleaved, 4, 8, 2});
  CHECK(rank_order(s, 0, false) == "F0a F1a F2a F3a F0b F1b F2b F3b F4a F5a F6a B0b F7a B1b F4b B2b F5b B3b F6b B0a F7b B1a B2a B3a B4b B5b B6b B7b B4a B5a B6a B7a");
  CHECK(rank_order(s, 1, false) == "F0a F1a F2a F3a F0b F1b F2b F3b F4a B0b F5a B1b F6a B2b F7a B3b F4b B0a F5b B1a F6b B2a F7b B3a B4b B5b B6b B7b B4a B5a B6a B7a");
  CHECK(rank_order(s, 2, false) == "F0a F1a F2a F3a F0b F1b F2b B0b F3b B1b F4a B2b F5a B3b F6a B0a F7a B1a F4b B2a F5b B3a F6b B4b F7b B5b B6b B7b B4a B5a B6a B7a");
  CHECK(rank_order(s, 3, false) == "F0a F1a F2a F3a F0b B0b F1b B1b F2b B2b F3b B3b F4a B0a F5a B1a F6a B2a F7a B3a F4b B4b F5b B5b F6b B6b F7b B7b B4a B5a B6a B7a");
}

TEST_CASE("ZB-H1 p4 m8 has the op orders and start times of 5.2", "[sched][order]") {
  const Simulated s = run({K::ZbH1, 4, 8, 1, 1, 0, 1, 1});
  CHECK(rank_order(s, 0, true) == "F0@0 F1@1 F2@2 F3@3 I0@7 W0@8 F4@9 I1@10 W1@11 F5@12 I2@13 W2@14 F6@15 I3@16 W3@17 F7@18 I4@19 W4@20 I5@21 W5@22 I6@23 W6@24 I7@25 W7@26");
  CHECK(rank_order(s, 1, true) == "F0@1 F1@2 F2@3 I0@6 F3@7 I1@8 W0@9 F4@10 I2@11 W1@12 F5@13 I3@14 W2@15 F6@16 I4@17 W3@18 F7@19 I5@20 W4@21 I6@22 W5@23 I7@24 W6@25 W7@26");
  CHECK(rank_order(s, 2, true) == "F0@2 F1@3 I0@5 F2@6 I1@7 F3@8 I2@9 W0@10 F4@11 I3@12 W1@13 F5@14 I4@15 W2@16 F6@17 I5@18 W3@19 F7@20 I6@21 W4@22 I7@23 W5@24 W6@25 W7@26");
  CHECK(rank_order(s, 3, true) == "F0@3 I0@4 F1@5 I1@6 F2@7 I2@8 F3@9 I3@10 W0@11 F4@12 I4@13 W1@14 F5@15 I5@16 W2@17 F6@18 I6@19 W3@20 F7@21 I7@22 W4@23 W5@24 W6@25 W7@26");
}

TEST_CASE("ZB-H2 p4 m8 has the op orders of 5.2", "[sched][order]") {
  const Simulated s = run({K::ZbH2, 4, 8, 1, 1, 0, 1, 1});
  CHECK(rank_order(s, 0, false) == "F0 F1 F2 F3 F4 F5 F6 I0 W0 F7 I1 W1 I2 W2 I3 W3 I4 W4 I5 W5 I6 W6 I7 W7");
  CHECK(rank_order(s, 1, false) == "F0 F1 F2 F3 F4 I0 F5 I1 F6 I2 W0 F7 I3 W1 I4 W2 I5 W3 I6 W4 I7 W5 W6 W7");
  CHECK(rank_order(s, 2, false) == "F0 F1 F2 I0 F3 I1 F4 I2 F5 I3 F6 I4 W0 F7 I5 W1 I6 W2 I7 W3 W4 W5 W6 W7");
  CHECK(rank_order(s, 3, false) == "F0 I0 F1 I1 F2 I2 F3 I3 F4 I4 F5 I5 F6 I6 W0 F7 I7 W1 W2 W3 W4 W5 W6 W7");
}

TEST_CASE("ZB-V p2 m4 has the op orders and start times of 5.2", "[sched][order]") {
  const Simulated s = run({K::ZbV, 2, 4, 2, 1, 0, 1, 1});
  CHECK(rank_order(s, 0, true) == "F0a@0 F1a@1 F2a@2 F0b@3 I0b@4 W0b@5 F1b@6 I1b@7 W1b@8 F3a@9 I0a@10 W0a@11 F2b@12 I2b@13 W2b@14 I1a@15 W1a@16 F3b@17 I3b@18 W3b@19 I2a@20 W2a@21 I3a@22 W3a@23");
  CHECK(rank_order(s, 1, true) == "F0a@1 F0b@2 F1a@3 F1b@4 I0b@5 W0b@6 F2a@7 I0a@8 W0a@9 F2b@10 I1b@11 W1b@12 F3a@13 I1a@14 W1a@15 F3b@16 I2b@17 W2b@18 I2a@19 I3b@20 I3a@21 W2a@22 W3b@23 W3a@24");
}

TEST_CASE("ZB-V p4 m8 has the op orders of 5.2", "[sched][order]") {
  const Simulated s = run({K::ZbV, 4, 8, 2, 1, 0, 1, 1});
  CHECK(rank_order(s, 0, false) == "F0a F1a F2a F3a F4a F5a F6a F0b I0b W0b F1b I1b W1b F2b I2b W2b F3b I3b W3b F7a I0a W0a F4b I4b W4b I1a W1a F5b I5b W5b I2a W2a F6b I6b W6b I3a W3a F7b I7b W7b I4a W4a I5a W5a I6a W6a I7a W7a");
  CHECK(rank_order(s, 1, false) == "F0a F1a F2a F3a F4a F0b F5a F1b I0b W0b F2b I1b W1b F3b I2b W2b F6a I0a W0a F4b I3b W3b F7a I1a W1a F5b I4b W4b I2a W2a F6b I5b W5b I3a W3a F7b I6b W6b I4a I7b I5a W4a I6a W5a I7a W6a W7b W7a");
  CHECK(rank_order(s, 2, false) == "F0a F1a F2a F0b F3a F1b F4a F2b I0b W0b F3b I1b W1b F5a I0a W0a F4b I2b W2b F6a I1a W1a F5b I3b W3b F7a I2a W2a F6b I4b W4b I3a W3a F7b I5b W5b I4a I6b I5a I7b I6a W4a I7a W5a W6b W7b W6a W7a");
  CHECK(rank_order(s, 3, false) == "F0a F0b F1a F1b F2a F2b F3a F3b I0b W0b F4a I0a W0a F4b I1b W1b F5a I1a W1a F5b I2b W2b F6a I2a W2a F6b I3b W3b F7a I3a W3a F7b I4b W4b I4a I5b I5a I6b I6a I7b I7a W4a W5b W6b W7b W5a W6a W7a");
}

TEST_CASE("DualPipeV p2 m4 has the op orders and start times of 5.2", "[sched][order]") {
  const Simulated s = run({K::DualPipeV, 2, 4, 2, 1, 0, 1, 1, 3});
  CHECK(rank_order(s, 0, true) == "F0a@0 F1a@1 F2a@2 F0b@3 I0b@4 W0b@5 F1b@6 (F3a&B1b)@7 (F2b&B0a)@11 B2b@14 (F3b&B1a)@17 B3b@20 I2a@22 W2a@23 I3a@24 W3a@25");
  CHECK(rank_order(s, 1, true) == "F0a@1 F0b@2 F1a@3 F1b@4 F2a@5 B0b@6 (F2b&B0a)@8 (F3a&B1b)@11 (F3b&B1a)@14 B2b@17 B2a@19 I3b@22 I3a@23 W3b@24 W3a@25");
  CHECK(units(s.metrics.makespan) == Approx(26));
  CHECK(units(run({K::DualPipeV, 2, 4, 2, 1, 0, 1, 1, 2}).metrics.makespan) == Approx(22));
}

TEST_CASE("DualPipeV p4 m8 has the op orders of 5.2", "[sched][order]") {
  const Simulated s = run({K::DualPipeV, 4, 8, 2, 1, 0, 1, 1, 3});
  CHECK(rank_order(s, 0, false) == "F0a F1a F2a F3a F4a F5a F6a F0b I0b W0b F1b I1b W1b F2b I2b W2b F3b (F7a&B3b) (F4b&B0a) B4b (F5b&B1a) B5b (F6b&B2a) B6b (F7b&B3a) B7b I4a W4a I5a W5a I6a W6a I7a W7a");
  CHECK(rank_order(s, 1, false) == "F0a F1a F2a F3a F4a F0b F5a F1b I0b W0b F2b I1b W1b F3b (F6a&B2b) (F4b&B0a) (F7a&B3b) (F5b&B1a) B4b (F6b&B2a) B5b (F7b&B3a) B6b B4a I7b I5a W7b I6a W5a I7a W6a W7a");
  CHECK(rank_order(s, 2, false) == "F0a F1a F2a F0b F3a F1b F4a F2b I0b W0b F3b (F5a&B1b) (F4b&B0a) (F6a&B2b) (F5b&B1a) (F7a&B3b) (F6b&B2a) B4b (F7b&B3a) B5b B4a B6b I5a I7b I6a W5a I7a W7b W6a W7a");
  CHECK(rank_order(s, 3, false) == "F0a F0b F1a F1b F2a F2b F3a F3b F4a B0b (F4b&B0a) (F5a&B1b) (F5b&B1a) (F6a&B2b) (F6b&B2a) (F7a&B3b) (F7b&B3a) B4b B4a B5b B5a I6b I6a I7b I7a W6b W6a W7b W7a");
}

TEST_CASE("DualPipe p4 m8 has the op orders of 5.2", "[sched][order]") {
  const Simulated s = run({K::DualPipe, 4, 8, 1, 1, 0, 1, 1, 3});
  CHECK(rank_order(s, 0, false) == "F0f F1f F2f F0r I0r W0r F1r (F3f&B1r) (F2r&B0f) B2r (F3r&B1f) B3r I2f W2f I3f W3f");
  CHECK(rank_order(s, 1, false) == "F0f F0r F1f F1r F2f B0r (F2r&B0f) (F3f&B1r) (F3r&B1f) B2r B2f I3r I3f W3r W3f");
  CHECK(rank_order(s, 2, false) == "F0r F0f F1r F1f F2r B0f (F2f&B0r) (F3r&B1f) (F3f&B1r) B2f B2r I3f I3r W3f W3r");
  CHECK(rank_order(s, 3, false) == "F0r F1r F2r F0f I0f W0f F1f (F3r&B1f) (F2f&B0r) B2f (F3f&B1r) B3f I2r W2r I3r W3r");
}
