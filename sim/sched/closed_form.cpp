#include "sim/sched/closed_form.hpp"

#include <algorithm>
#include <cmath>

namespace bubblesim::sim {
namespace {

constexpr double kRelativeTolerance = 1e-9;  // times equal up to floating-point noise

bool same(double a, double b) { return std::fabs(a - b) <= kRelativeTolerance * std::max(std::fabs(a), std::fabs(b)); }

}  // namespace

const char* to_string(BubbleMeasure m) {
  switch (m) {
    case BubbleMeasure::IdleEveryRank: return "idle of every rank";
    case BubbleMeasure::MaxIdle: return "largest idle over ranks";
    case BubbleMeasure::SpanEveryRank: return "span minus busy of every rank";
  }
  return "?";
}

std::optional<ClosedForm> closed_form(ScheduleKind kind, const PipelineShape& s, const PassTimes& t) {
  const double p = s.p;
  const double m = s.m;
  const double v = s.v;
  const double fb = t.f + t.b;
  ClosedForm c;
  c.regime = "zero p2p latency, equal stages";
  switch (kind) {
    case ScheduleKind::Naive:
      c.bubble_formula = "m(p-1)(F+B)";
      c.bubble = m * (p - 1) * fb;
      c.fraction_formula = "(p-1)/p";
      c.fraction = (p - 1) / p;
      c.relative_formula = "p-1";
      c.relative = p - 1;
      c.peak_formula = "1";
      c.peak = 1;
      return c;
    case ScheduleKind::GPipe:
    case ScheduleKind::OneFOneB:
      c.bubble_formula = "(p-1)(F+B)";
      c.bubble = (p - 1) * fb;
      c.fraction_formula = "(p-1)/(m+p-1)";
      c.fraction = (p - 1) / (m + p - 1);
      c.relative_formula = "(p-1)/m";
      c.relative = (p - 1) / m;
      c.peak_formula = kind == ScheduleKind::GPipe ? "m" : "min(p, m) on rank 0";
      c.peak = kind == ScheduleKind::GPipe ? m : std::min(p, m);
      return c;
    case ScheduleKind::Interleaved:
    case ScheduleKind::LoopedBfs: {
      if (m < p) return std::nullopt;  // fewer microbatches than ranks: no formula
      const double n = s.group_size == 0 ? p : s.group_size;
      c.bubble_formula = "(p-1)(f+b), f and b per chunk";
      c.bubble = (p - 1) * fb;
      c.fraction_formula = "(p-1)/(v*m+p-1)";
      c.fraction = (p - 1) / (v * m + p - 1);
      c.relative_formula = "(p-1)/(v*m)";
      c.relative = (p - 1) / (v * m);
      if (kind == ScheduleKind::Interleaved) {
        c.peak_formula = "min(v*m, 2(p-1)+(v-1)N+1) chunks on rank 0";
        c.peak = std::min(v * m, 2 * (p - 1) + (v - 1) * n + 1);
      } else {
        c.peak_formula = "v*m chunks";
        c.peak = v * m;
      }
      return c;
    }
    case ScheduleKind::ZbH1:
      c.bubble_formula = "(p-1)*max(F, I, F+I-W)";
      c.bubble = (p - 1) * std::max({t.f, t.i, t.f + t.i - t.w});
      c.fraction_formula = "bubble/(m(F+I+W)+bubble)";
      c.fraction = c.bubble / (m * (t.f + t.i + t.w) + c.bubble);
      c.relative_formula = "bubble/(m(F+I+W))";
      c.relative = c.bubble / (m * (t.f + t.i + t.w));
      c.peak_formula = "p";
      c.peak = p;
      return c;
    case ScheduleKind::ZbH2:
      c.measure = BubbleMeasure::SpanEveryRank;
      c.bubble_formula = "(p-1)*max(0, I-F, F+I-2W) (per span)";
      c.bubble = (p - 1) * std::max({0.0, t.i - t.f, t.f + t.i - 2 * t.w});
      c.relative_formula = "bubble/(m(F+I+W))";
      c.relative = c.bubble / (m * (t.f + t.i + t.w));
      c.peak_formula = "2p-1";
      c.peak = 2 * p - 1;
      return c;
    case ScheduleKind::ZbV:
      if (!same(t.f, t.i) || !same(t.i, t.w) || m < 2 * p - 1) return std::nullopt;
      c.measure = BubbleMeasure::SpanEveryRank;
      c.regime += ", F = I = W per chunk, m >= 2p-1";
      c.bubble_formula = "0 (per span; makespan adds (p-1)F)";
      c.bubble = 0;
      c.relative_formula = "0";
      c.relative = 0;
      c.peak_formula = "2p chunks";
      c.peak = 2 * p;
      return c;
    case ScheduleKind::DualPipe:
    case ScheduleKind::DualPipeV: {
      if (!same(t.f, t.i) || t.w > t.i * (1 + kRelativeTolerance)) return std::nullopt;
      const bool v_shape = kind == ScheduleKind::DualPipeV;
      c.measure = BubbleMeasure::MaxIdle;
      c.regime += ", F = I >= W";
      c.bubble_formula = v_shape ? "(p-1)(F&B+B-3W), per chunk" : "(p/2-1)(F&B+B-3W)";
      c.bubble = (v_shape ? p - 1 : p / 2 - 1) * (t.fb + t.b - 3 * t.w);
      c.peak_formula = v_shape ? "2p+1 chunks" : "p+1";
      c.peak = v_shape ? 2 * p + 1 : p + 1;
      return c;
    }
  }
  return std::nullopt;
}

}  // namespace bubblesim::sim
