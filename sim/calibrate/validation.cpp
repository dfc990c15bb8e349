#include "sim/calibrate/validation.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>

#include "sim/core/error.hpp"
#include "sim/metrics/metrics.hpp"

namespace bubblesim::sim {

ErrorSummary summarise_errors(std::vector<double> errors) {
  ErrorSummary s;
  s.count = errors.size();
  if (errors.empty()) return s;
  for (double e : errors) s.bias += e;
  s.bias /= static_cast<double>(errors.size());
  for (double& e : errors) e = std::abs(e);
  std::sort(errors.begin(), errors.end());
  for (double e : errors) s.mean_abs += e;
  s.mean_abs /= static_cast<double>(errors.size());
  s.median_abs = errors[errors.size() / 2];
  s.p90_abs = errors[std::min(errors.size() - 1, static_cast<size_t>(0.9 * static_cast<double>(errors.size())))];
  s.worst = errors.back();
  return s;
}

nlohmann::json to_json(const ErrorSummary& s) {
  return {{"count", s.count},       {"mean_abs_error", s.mean_abs}, {"median_abs_error", s.median_abs},
          {"p90_abs_error", s.p90_abs}, {"worst_abs_error", s.worst}, {"bias", s.bias}};
}

Validation compare_traces(const Program& p, const Trace& measured, const Trace& predicted) {
  if (measured.records.size() != p.num_ops() || predicted.records.size() != p.num_ops()) {
    throw InputError("validate: the measured run has " + std::to_string(measured.records.size()) +
                     " ops and the prediction " + std::to_string(predicted.records.size()) + ", the Program " +
                     std::to_string(p.num_ops()) + ": they are not the same Program (another bubblesim version?)");
  }
  Validation v;
  v.measured_s = measured.makespan.seconds();
  v.predicted_s = predicted.makespan.seconds();
  v.iteration_error = v.measured_s > 0 ? v.predicted_s / v.measured_s - 1 : 0;
  std::vector<double> all;
  std::map<std::string, std::vector<double>> by_class;
  for (OpId id = 0; id < p.num_ops(); ++id) {
    const OpWork* w = p.work(id);
    if (w == nullptr) continue;
    const double m = (measured.records[id].end - measured.records[id].start).seconds();
    const double q = (predicted.records[id].end - predicted.records[id].start).seconds();
    if (m <= 0) continue;
    const double e = q / m - 1;
    all.push_back(e);
    by_class[w->op_class].push_back(e);
  }
  v.ops = summarise_errors(all);
  for (auto& [cls, errors] : by_class) v.by_class.emplace_back(cls, summarise_errors(std::move(errors)));
  const Metrics mm = compute_metrics(p, measured), pm = compute_metrics(p, predicted);
  for (size_t d = 0; d < p.devices().size(); ++d) {
    v.devices.push_back({p.devices()[d].name, mm.devices[d].busy.seconds(), pm.devices[d].busy.seconds(),
                         mm.devices[d].idle.seconds(), pm.devices[d].idle.seconds()});
  }
  return v;
}

nlohmann::json to_json(const Validation& v) {
  nlohmann::json j{{"scenario", v.scenario},
                   {"calibration", v.calibration},
                   {"measured_run", v.measured_run},
                   {"predicted_run", v.predicted_run},
                   {"measured_iteration_s", v.measured_s},
                   {"predicted_iteration_s", v.predicted_s},
                   {"iteration_error", v.iteration_error},
                   {"compute_ops", to_json(v.ops)},
                   {"warnings", v.warnings}};
  for (const auto& [cls, s] : v.by_class) j["by_class"][cls] = to_json(s);
  for (const Validation::Device& d : v.devices) {
    j["devices"].push_back({{"device", d.name},
                            {"measured_busy_s", d.measured_busy_s},
                            {"predicted_busy_s", d.predicted_busy_s},
                            {"measured_idle_s", d.measured_idle_s},
                            {"predicted_idle_s", d.predicted_idle_s}});
  }
  return j;
}

void write_text(std::ostream& out, const Validation& v) {
  char buf[256];
  std::snprintf(buf, sizeof buf, "validate %s: measured run %lld vs prediction (run %lld, calibration %s)\n",
                v.scenario.c_str(), static_cast<long long>(v.measured_run), static_cast<long long>(v.predicted_run),
                v.calibration.empty() ? "none: preset models" : v.calibration.c_str());
  out << buf;
  for (const std::string& w : v.warnings) out << "warning: " << w << "\n";
  std::snprintf(buf, sizeof buf, "iteration: measured %.4f s, predicted %.4f s, error %+.1f%%\n", v.measured_s,
                v.predicted_s, 100 * v.iteration_error);
  out << buf;
  std::snprintf(buf, sizeof buf, "\n%-16s %6s %10s %10s %10s %10s %8s\n", "compute ops", "count", "mean |err|",
                "median", "p90", "worst", "bias");
  out << buf;
  auto row = [&](const std::string& name, const ErrorSummary& s) {
    std::snprintf(buf, sizeof buf, "%-16s %6zu %9.1f%% %9.1f%% %9.1f%% %9.1f%% %+7.1f%%\n", name.c_str(), s.count,
                  100 * s.mean_abs, 100 * s.median_abs, 100 * s.p90_abs, 100 * s.worst, 100 * s.bias);
    out << buf;
  };
  for (const auto& [cls, s] : v.by_class) row(cls, s);
  row("all", v.ops);
  std::snprintf(buf, sizeof buf, "\n%-22s %12s %12s %12s %12s\n", "device", "busy meas s", "busy pred s", "idle meas s",
                "idle pred s");
  out << buf;
  for (const Validation::Device& d : v.devices) {
    std::snprintf(buf, sizeof buf, "%-22s %12.4f %12.4f %12.4f %12.4f\n", d.name.c_str(), d.measured_busy_s,
                  d.predicted_busy_s, d.measured_idle_s, d.predicted_idle_s);
    out << buf;
  }
}

}  // namespace bubblesim::sim
