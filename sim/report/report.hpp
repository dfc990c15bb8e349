// Report writers: text (tables, bubble figures with their formulas, ASCII Gantt), JSON with the
// v1 keys of shared/SCENARIO.md, CSV, Chrome-trace/Perfetto JSON and an SVG Gantt chart.
// Not metrics: every figure printed here was computed in sim/metrics or sim/sched.
#pragma once

#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <ostream>
#include <string>

#include "sim/exec/trace.hpp"
#include "sim/ir/program.hpp"
#include "sim/metrics/metrics.hpp"
#include "sim/scenario/pipeline_job.hpp"
#include "sim/scenario/scenario.hpp"
#include "sim/sched/closed_form.hpp"

namespace bubblesim::sim {

/// How times are shown: `name` is the unit printed, `per_second` converts internal seconds.
/// pipeline_only scenarios use abstract units (one unit is stored as kSecondsPerUnit).
struct TimeUnit {
  std::string name = "units";
  double per_second = 1.0 / kSecondsPerUnit;
  double of(Time t) const { return t.seconds() * per_second; }
};

/// Everything a report may show about one simulated run.
struct RunResult {
  const Scenario* scenario = nullptr;
  const PipelineJob* job = nullptr;
  const Program* program = nullptr;
  const Trace* trace = nullptr;
  Metrics metrics;
  std::optional<ClosedForm> closed_form;  // when a formula exists and its assumptions hold
  std::string closed_form_note;           // why there is none, when there is none
  TimeUnit unit;
};

/// Collects metrics and the closed form for a simulated pipeline job.
RunResult make_result(const Scenario& sc, const PipelineJob& job, const Program& prog, const Trace& trace);

void write_text(std::ostream& out, const RunResult& r);
nlohmann::json to_json(const RunResult& r);
void write_csv(std::ostream& out, const RunResult& r);

/// ASCII Gantt, one row per device; empty when the program is too big to draw (more than
/// `max_devices` devices or `max_ops` ops).
std::string ascii_gantt(const Program& p, const Trace& t, const TimeUnit& unit, size_t width = 120,
                        size_t max_devices = 16, size_t max_ops = 400);

/// Chrome trace event format (loads in Perfetto and chrome://tracing): one process per device,
/// one thread per stream. Streams the events; O(ops) time, O(1) extra memory.
void write_chrome_trace(std::ostream& out, const Program& p, const Trace& t, const TimeUnit& unit,
                        const std::string& title);

/// Most ops an SVG Gantt draws; larger programs belong in a Perfetto trace.
inline constexpr size_t kMaxSvgOps = 50000;

/// Throws InputError if `p` has more than kMaxSvgOps ops.
void check_svg_size(const Program& p);

/// SVG Gantt: ops coloured by phase, idle time hatched, microbatch numbers inside the bars,
/// time axis in the scenario's unit. Calls check_svg_size() first.
void write_svg_gantt(std::ostream& out, const RunResult& r);

/// The same for any Program (cluster runs): one row per stream with ops, communication coloured
/// by the parallelism it serves.
void write_svg_gantt(std::ostream& out, const Program& p, const Trace& t, const TimeUnit& unit,
                     const std::string& title);

}  // namespace bubblesim::sim
