// Closed-form bubble and memory figures of each schedule (algorithms.md 1.13 and appendix),
// for reports to print beside the simulated values. Valid only with zero p2p latency and equal
// stages; the caller checks that. Not a simulator: no formula here is used to compute a result.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "sim/sched/schedule.hpp"

namespace bubblesim::sim {

/// Per-stage (per-chunk) pass times, in any one unit; b is the full backward (i + w if split).
struct PassTimes {
  double f = 0, b = 0, i = 0, w = 0, fb = 0;
};

enum class BubbleMeasure : uint8_t {
  IdleEveryRank,  // makespan - busy, the same on every rank
  MaxIdle,        // max over ranks of makespan - busy
  SpanEveryRank,  // span - busy on every rank (zero-bubble schedules)
};

struct ClosedForm {
  std::string bubble_formula;  // e.g. "(p-1)(F+B)"
  double bubble = 0;           // in the unit of PassTimes
  BubbleMeasure measure = BubbleMeasure::IdleEveryRank;
  std::optional<std::string> fraction_formula;  // bubble / total time
  std::optional<double> fraction;
  std::optional<std::string> relative_formula;  // bubble / ideal (busy) time
  std::optional<double> relative;
  std::optional<std::string> peak_formula;      // peak activations, max over ranks
  std::optional<double> peak;
  std::string regime;                           // conditions the formula assumes
};

/// The formula for `kind` at this shape and these times, or nullopt when none is known for this
/// regime (e.g. zb-v with unequal F, I, W).
std::optional<ClosedForm> closed_form(ScheduleKind kind, const PipelineShape& s, const PassTimes& t);

const char* to_string(BubbleMeasure m);

}  // namespace bubblesim::sim
