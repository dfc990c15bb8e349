#include "sim/cli/commands.hpp"

#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>

#include "sim/core/error.hpp"
#include "sim/exec/executor.hpp"
#include "sim/ir/validate.hpp"
#include "sim/report/report.hpp"
#include "sim/scenario/pipeline_job.hpp"

namespace bubblesim::sim {
namespace {

class Stopwatch {
 public:
  double lap() {
    const auto now = std::chrono::steady_clock::now();
    const double s = std::chrono::duration<double>(now - last_).count();
    last_ = now;
    return s;
  }

 private:
  std::chrono::steady_clock::time_point last_ = std::chrono::steady_clock::now();
};

std::ofstream open_output(const std::string& path, const char* option) {
  std::ofstream f(path);
  if (!f) throw InputError(std::string(option) + ": cannot write \"" + path + "\"");
  return f;
}

void close_output(std::ofstream& f, const std::string& path, const char* option) {
  f.close();
  if (!f) throw InputError(std::string(option) + ": writing \"" + path + "\" failed (disk full?)");
}

}  // namespace

void run_scenario(const RunOptions& opt, std::ostream& out, std::ostream& err) {
  if (opt.format != "text" && opt.format != "json" && opt.format != "csv") {
    throw InputError("--format: unknown format \"" + opt.format + "\" (valid: text, json, csv)");
  }
  Stopwatch clock;
  const Scenario sc = load_scenario(opt.scenario, opt.overrides);
  if (!sc.pipeline_only) {
    throw InputError(opt.scenario + ": cluster scenarios (cluster, model, training) are read with their keys, types "
                                    "and units checked, but this version simulates only pipeline_only scenarios");
  }
  const PipelineJob job = plan_pipeline(sc);
  const double t_plan = clock.lap();
  // Output files are opened before the run, so a bad path fails before anything is printed.
  std::ofstream trace_file;
  std::ofstream gantt_file;
  if (!opt.trace_path.empty()) trace_file = open_output(opt.trace_path, "--trace");
  if (!opt.gantt_path.empty()) gantt_file = open_output(opt.gantt_path, "--gantt");
  const Program prog = build_program(job);
  if (!opt.gantt_path.empty()) check_svg_size(prog);
  const double t_build = clock.lap();
  require_valid(prog);
  const double t_validate = clock.lap();
  const Trace trace = simulate(prog, GivenTimes{});
  const double t_sim = clock.lap();
  const RunResult result = make_result(sc, job, prog, trace);
  const double t_metrics = clock.lap();

  if (opt.format == "json") {
    out << to_json(result).dump(2) << "\n";
  } else if (opt.format == "csv") {
    write_csv(out, result);
  } else {
    write_text(out, result);
  }
  if (!opt.trace_path.empty()) {
    write_chrome_trace(trace_file, prog, trace, result.unit, sc.name);
    close_output(trace_file, opt.trace_path, "--trace");
  }
  if (!opt.gantt_path.empty()) {
    write_svg_gantt(gantt_file, result);
    close_output(gantt_file, opt.gantt_path, "--gantt");
  }
  const double t_report = clock.lap();
  if (opt.timing) {
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    char buf[512];
    std::snprintf(buf, sizeof buf,
                  "timing: plan %.3f s, generate+lower %.3f s, validate %.3f s, simulate %.3f s (%llu events, "
                  "%.3g events/s), metrics %.3f s, report %.3f s; %zu ops; peak RSS %.1f MiB\n",
                  t_plan, t_build, t_validate, t_sim, static_cast<unsigned long long>(trace.events),
                  t_sim > 0 ? static_cast<double>(trace.events) / t_sim : 0.0, t_metrics, t_report, prog.num_ops(),
                  static_cast<double>(ru.ru_maxrss) / 1024.0);
    err << buf;
  }
}

void print_schedules(std::ostream& out) {
  for (const ScheduleInfo& s : schedule_table()) {
    char buf[256];
    std::snprintf(buf, sizeof buf, "%-18s %s%s%s\n", std::string(s.name).c_str(), std::string(s.description).c_str(),
                  s.fixed_chunks == 2 ? " [2 chunks per rank]" : "", s.splits_backward ? " [needs I and W times]" : "");
    out << buf;
  }
}

void print_keys(std::ostream& out) {
  for (const KeyDoc& k : scenario_keys()) out << k.path << "  (" << k.type << ")  " << k.doc << "\n";
}

}  // namespace bubblesim::sim
