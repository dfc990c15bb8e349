#include "sim/cli/calibrate.hpp"

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "build_info.hpp"
#include "sim/calibrate/calibration.hpp"
#include "sim/calibrate/published.hpp"
#include "sim/calibrate/validation.hpp"
#include "sim/cli/commands.hpp"
#include "sim/core/error.hpp"
#include "sim/store/store.hpp"

namespace bubblesim::sim {
namespace {

constexpr int kExitOverError = 4;

/// Opens an existing database (InputError naming the option and the file if there is none).
Store open_existing(const std::string& path) {
  if (!std::filesystem::exists(path)) throw InputError("--db: no database \"" + path + "\"");
  return Store(path);
}

/// The complete bench runs of `store`, all measured on one setup: InputError naming each setup's
/// runs otherwise (one profile must not average two machines, or two attention kernels).
std::vector<int64_t> bench_runs(Store& store, const std::string& path) {
  std::map<std::string, std::vector<int64_t>> by_setup;
  for (const RunRow& r : store.runs()) {
    if (r.kind != "bench" || r.status != "complete") continue;
    by_setup[measurement_setup(store.environment(r.id))].push_back(r.id);
  }
  if (by_setup.empty()) throw InputError("calibrate --bench: \"" + path + "\" holds no complete bench run");
  if (by_setup.size() == 1) return by_setup.begin()->second;
  std::string list;
  for (const auto& [setup, ids] : by_setup) {
    list += "\n  run" + std::string(ids.size() > 1 ? "s " : " ");
    for (size_t i = 0; i < ids.size(); ++i) list += (i > 0 ? ", " : "") + std::to_string(ids[i]);
    list += ": " + setup;
  }
  throw InputError("calibrate --bench: \"" + path + "\" holds bench runs measured on " +
                   std::to_string(by_setup.size()) + " different setups, which one profile must not mix:" + list +
                   "\ncalibrate one of them with --runs IDS");
}

int64_t run_id(const std::string& text, const char* option) {
  const auto v = parse_integer(text);
  if (!v || *v <= 0) throw InputError(std::string(option) + ": \"" + text + "\" is not a run id");
  return *v;
}

}  // namespace

void run_calibrate(const CalibrateOptions& opt, std::ostream& out) {
  if (opt.name.empty()) throw InputError("calibrate: --name NAME is required");
  if (opt.bench == !opt.runs.empty()) throw InputError("calibrate: give either --bench or --runs IDS");
  Store store = open_existing(opt.db_path);
  std::vector<int64_t> runs;
  if (opt.bench) {
    runs = bench_runs(store, opt.db_path);
  } else {
    std::stringstream in(opt.runs);
    for (std::string id; std::getline(in, id, ',');) runs.push_back(run_id(id, "--runs"));
  }
  const CalibrationProfile p = fit_profile(opt.name, samples_from_store(store, runs), runs);
  store.save_profile(p.to_row());
  write_profile(out, p);
  out << "\nstored profile \"" << p.name << "\" in " << opt.db_path << "\n";
}

void run_profile_command(const std::string& action, const std::string& name, const std::string& db_path,
                         std::ostream& out) {
  Store store = open_existing(db_path);
  if (action == "list") {
    for (const std::string& n : store.profile_names()) out << n << "\n";
    return;
  }
  if (action != "show") throw InputError("profile: unknown action \"" + action + "\" (valid: show NAME, list)");
  if (name.empty()) throw InputError("profile show: which profile? (bubblesim profile list)");
  const ProfileRow row = store.profile(name);
  out << "created " << row.created_at << "\n";
  write_profile(out, CalibrationProfile::from_row(row));
}

namespace {

/// Every entry of a published-results manifest predicted and compared (`--published`).
int run_validate_published(const ValidateOptions& opt, std::ostream& out) {
  const PublishedManifest m = load_published(opt.published);
  FlopsAccounting accounting;
  try {
    accounting = parse_flops_accounting(m.flops_accounting);
  } catch (const InputError& e) {
    throw InputError(m.path + ": flops_accounting: " + e.what());
  }
  std::unique_ptr<CalibrationProfile> profile;
  if (!opt.calibration.empty()) {
    Store store = open_existing(opt.db_path);
    profile = std::make_unique<CalibrationProfile>(CalibrationProfile::from_row(store.profile(opt.calibration)));
  }
  PublishedComparison c;
  c.manifest = m.path;
  c.title = m.title;
  c.scenario = m.scenario_path;
  c.calibration = opt.calibration;
  for (const PublishedEntry& e : m.entries) {
    const std::string who = e.where + ": entry " + e.id;
    nlohmann::json report;
    try {
      const Scenario sc = parse_scenario(m.scenario_text, m.scenario_path, e.overrides);
      if (sc.pipeline_only) {
        throw InputError(
            "the scenario is pipeline_only; published results compare with a cluster scenario "
            "(cluster, model, training)");
      }
      const ClusterRun run(sc, accounting, false, profile.get());
      report = to_json(run.result);
    } catch (const InputError& err) {
      throw InputError(who + ": " + err.what());
    }
    const double predicted = report_metric(report, e.metric, who);
    c.rows.push_back({e.id, e.metric, e.published, predicted, predicted / e.published - 1, report.value("fits", true)});
  }
  summarise(c);
  const nlohmann::json result = to_json(c);
  if (opt.format == "json") {
    out << result.dump(2) << "\n";
  } else {
    write_text(out, c);
  }
  if (opt.db_given) {
    Store store(opt.db_path);
    const int64_t id = store.store_comparison(0, 0, opt.calibration, result.dump());
    if (opt.format != "json") out << "stored as comparison " << id << " in " << opt.db_path << "\n";
  }
  if (opt.max_error_pct >= 0 && c.errors.mean_abs * 100 > opt.max_error_pct) {
    if (opt.format != "json") {  // JSON output stays one document; the exit status says it
      char buf[160];
      std::snprintf(buf, sizeof buf, "FAIL: mean absolute error %.1f%% exceeds --max-error %g%%\n",
                    100 * c.errors.mean_abs, opt.max_error_pct);
      out << buf;
    }
    return kExitOverError;
  }
  return 0;
}

}  // namespace

int run_validate(const ValidateOptions& opt, std::ostream& out) {
  if (opt.format != "text" && opt.format != "json") {
    throw InputError("--format: unknown format \"" + opt.format + "\" (valid: text, json)");
  }
  if (!opt.published.empty()) {
    if (!opt.run.empty()) throw InputError("validate: --run and --published are alternatives; give one");
    return run_validate_published(opt, out);
  }
  if (opt.run.empty())
    throw InputError("validate: --run HWRUN or --published MANIFEST is required (bubblesim db list shows the runs)");
  Store store = open_existing(opt.db_path);
  const int64_t measured_id = run_id(opt.run, "--run");
  const RunRow measured_run = store.run(measured_id);
  if (measured_run.kind != "hw" || measured_run.status != "complete") {
    throw InputError("--run " + opt.run + ": a " + measured_run.status + " " + measured_run.kind +
                     " run; validate compares with a complete hw run");
  }
  std::vector<std::string> overrides;
  const nlohmann::json env = nlohmann::json::parse(store.environment(measured_id), nullptr, false);
  if (env.is_object() && env.contains("replay_device")) {
    throw InputError("--run " + opt.run + ": a single-GPU replay of device " + env["replay_device"].dump() +
                     " measured that device alone; calibrate from it (bubblesim calibrate --runs " + opt.run +
                     "), validate a run of the whole Program");
  }
  if (env.is_object() && env.contains("overrides")) overrides = env["overrides"].get<std::vector<std::string>>();
  const Scenario sc = parse_scenario(store.scenario_text(measured_id), "run " + opt.run + " scenario", overrides);
  std::unique_ptr<CalibrationProfile> profile;
  if (!opt.calibration.empty()) profile = std::make_unique<CalibrationProfile>(CalibrationProfile::from_row(store.profile(opt.calibration)));
  const ClusterRun predicted(sc, FlopsAccounting::Megatron, true, profile.get());
  const Program& p = predicted.plan.program;

  Trace measured;
  measured.records.resize(p.num_ops());
  size_t rows = 0;
  for (const Store::OpRow& o : store.ops(measured_id, "measured")) {
    if (o.op < 0 || static_cast<size_t>(o.op) >= p.num_ops()) continue;
    const auto id = static_cast<OpId>(o.op);
    measured.records[id] = {id, Time::from_seconds(o.start_s), Time::from_seconds(o.end_s)};
    measured.makespan = std::max(measured.makespan, measured.records[id].end);
    ++rows;
  }
  if (rows != p.num_ops()) {
    throw InputError("--run " + opt.run + ": it measured " + std::to_string(rows) + " ops but the scenario's Program has " +
                     std::to_string(p.num_ops()) + " now (was it run by another bubblesim version?)");
  }
  Validation v = compare_traces(p, measured, predicted.trace);
  // The run's iteration time counts every rank, twins included (the stored timeline holds the
  // representative ranks only).
  const nlohmann::json summary = nlohmann::json::parse(store.summary(measured_id), nullptr, false);
  if (summary.is_object() && summary.contains("iteration_time_s")) {
    v.measured_s = summary["iteration_time_s"].get<double>();
    v.iteration_error = v.measured_s > 0 ? v.predicted_s / v.measured_s - 1 : 0;
  }
  v.scenario = sc.name;
  v.calibration = opt.calibration;
  v.measured_run = measured_id;
  if (profile) {
    if (std::string w = setup_mismatch(store, measured_id, *profile); !w.empty()) v.warnings.push_back(std::move(w));
  }

  RunInfo info;
  info.kind = "sim";
  info.scenario_name = sc.name;
  info.scenario_text = store.scenario_text(measured_id);
  info.command_line = opt.command_line;
  info.environment = nlohmann::json{{"bubblesim", kVersion},       {"git_revision", kGitRevision},
                                    {"validates_run", measured_id}, {"calibration", opt.calibration},
                                    {"overrides", overrides}}.dump();
  v.predicted_run = store.begin_run(info);
  store.store_trace(v.predicted_run, p, predicted.trace, "predicted");
  store.finish_run(v.predicted_run, "complete", to_json(predicted.result).dump());
  const nlohmann::json result = to_json(v);
  const int64_t comparison = store.store_comparison(measured_id, v.predicted_run, opt.calibration, result.dump());
  if (opt.format == "json") {
    out << result.dump(2) << "\n";
  } else {
    write_text(out, v);
    out << "\nstored as comparison " << comparison << " (prediction: run " << v.predicted_run << ") in " << opt.db_path
        << "\n";
  }
  if (opt.max_error_pct >= 0 && std::abs(v.iteration_error) * 100 > opt.max_error_pct) {
    if (opt.format != "json") {
      out << "FAIL: iteration error " << 100 * v.iteration_error << "% exceeds --max-error " << opt.max_error_pct
          << "%\n";
    }
    return kExitOverError;
  }
  return 0;
}

}  // namespace bubblesim::sim
