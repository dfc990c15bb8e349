// Test helper: build and simulate one pipeline schedule from plain numbers, the way
// algorithms.md section 5 states its cases (times in abstract units).
#pragma once

#include <cstdio>
#include <string>

#include "sim/exec/executor.hpp"
#include "sim/ir/validate.hpp"
#include "sim/metrics/metrics.hpp"
#include "sim/sched/lower.hpp"
#include "sim/sched/schedule.hpp"

namespace bubblesim::test {

struct Case {
  sim::ScheduleKind kind;
  int p = 4, m = 8, v = 1;
  double f = 1, b = 2;       // b: full backward; ignored when i > 0
  double i = 0, w = 0;       // split backward
  double fb = 0;             // overlapped F&B; 0: F + B
  double c = 0;              // p2p latency
  int group_size = 0;        // interleaved N
};

struct Simulated {
  sim::Program program;
  sim::Trace trace;
  sim::Metrics metrics;
};

inline sim::Program build(const Case& k) {
  using namespace sim;
  PipelineShape s{k.p, k.m, k.v, k.group_size};
  const StageGraph g = canonical_stages(k.kind, s);
  const auto actions = generate(k.kind, s, g);
  const double b = k.i > 0 ? k.i + k.w : k.b;
  std::vector<StageCost> costs(g.size(), StageCost{Time::from_seconds(k.f), Time::from_seconds(b),
                                                   Time::from_seconds(k.i), Time::from_seconds(k.w), 1, -1});
  LowerOptions opt;
  opt.p2p_latency = Time::from_seconds(k.c);
  if (k.fb > 0) opt.fb_ratio = k.fb / (k.f + b);
  if (k.kind == ScheduleKind::DualPipe) {
    opt.chunk_names = {"f", "r"};
  } else if (k.v > 1) {
    opt.chunk_names = {"a", "b", "c", "d"};
  }
  return lower(actions, g, costs, opt);
}

inline Simulated run(const Case& k) {
  sim::Program p = build(k);
  sim::require_valid(p);
  sim::Trace t = sim::simulate(p, sim::GivenTimes{});
  sim::Metrics m = sim::compute_metrics(p, t);
  return {std::move(p), std::move(t), std::move(m)};
}

/// "F0@0 F1@1 ..." for one rank (with_times) or "F0 F1 ...".
inline std::string rank_order(const Simulated& s, sim::DeviceId d, bool with_times) {
  std::string out;
  for (sim::OpId id : s.program.stream(s.program.devices()[d].streams.front()).ops) {
    if (!out.empty()) out += " ";
    out += sim::short_name(s.program, id);
    if (with_times) {
      char buf[32];
      std::snprintf(buf, sizeof buf, "@%g", s.trace.records[id].start.seconds());
      out += buf;
    }
  }
  return out;
}

inline double units(Time t) { return t.seconds(); }

}  // namespace bubblesim::test
