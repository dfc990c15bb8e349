#include "sim/cli/commands.hpp"

#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>
#include <nlohmann/json.hpp>

#include "build_info.hpp"
#include "sim/core/error.hpp"
#include "sim/exec/executor.hpp"
#include "sim/ir/validate.hpp"
#include "sim/model/compute.hpp"
#include "sim/model/network.hpp"
#include "sim/report/cluster_report.hpp"
#include "sim/report/report.hpp"
#include "sim/sched/training.hpp"
#include "sim/store/store.hpp"
#include "sim/topo/topology.hpp"
#include "sim/scenario/cluster_job.hpp"
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

/// The report of `result` (RunResult or ClusterResult) in the chosen format.
template <class Result>
void write_report(std::ostream& out, const std::string& format, const Result& result) {
  if (format == "json") {
    out << to_json(result).dump(2) << "\n";
  } else if (format == "csv") {
    write_csv(out, result);
  } else {
    write_text(out, result);
  }
}

/// --db: the run is recorded as incomplete before it starts, with its ops, predicted timeline and
/// report once it has them, and as failed if it stops on an error; nothing without --db.
class RunRecorder {
 public:
  RunRecorder(const RunOptions& opt, const Scenario& sc) {
    if (opt.db_path.empty()) return;
    store_ = std::make_unique<Store>(opt.db_path);
    RunInfo info;
    info.kind = "sim";
    info.scenario_name = sc.name;
    std::ifstream file(opt.scenario);
    std::ostringstream text;
    text << file.rdbuf();
    info.scenario_text = text.str();
    info.command_line = opt.command_line;
    if (sc.pipeline_only) {  // reports in abstract units
      const TimeUnit unit;
      info.time_unit = unit.name;
      info.seconds_per_unit = 1 / unit.per_second;
    }
    char host[256] = "";
    gethostname(host, sizeof host - 1);
    info.environment = nlohmann::json{{"bubblesim", kVersion}, {"git_revision", kGitRevision}, {"host", host}, {"compiler", __VERSION__},
                                      {"overrides", opt.overrides}, {"calibration", opt.calibration}}.dump();
    run_ = store_->begin_run(info);
  }

  template <class Result>
  void complete(const Program& p, const Trace& t, const Result& result) {
    if (!store_) return;
    store_->store_trace(run_, p, t, "predicted");
    store_->finish_run(run_, "complete", to_json(result).dump());
  }

  /// Marks the run failed; if even that fails, says so on `err` (the run stays incomplete) and
  /// leaves the original error to propagate.
  void fail(const std::string& what, std::ostream& err) noexcept {
    if (!store_) return;
    try {
      store_->finish_run(run_, "failed", nlohmann::json{{"error", what}}.dump());
    } catch (const std::exception& e) {
      err << "warning: run " << run_ << " stays marked incomplete in the database: " << e.what() << "\n";
    }
  }

 private:
  std::unique_ptr<Store> store_;
  int64_t run_ = 0;
};

void run_cluster(const Scenario& sc, const RunOptions& opt, std::ostream& out, std::ostream& err, RunRecorder& record) {
  const FlopsAccounting accounting = parse_flops_accounting(opt.flops_accounting);  // a bad name fails first
  std::ofstream trace_file;
  std::ofstream gantt_file;
  if (!opt.trace_path.empty()) trace_file = open_output(opt.trace_path, "--trace");
  if (!opt.gantt_path.empty()) gantt_file = open_output(opt.gantt_path, "--gantt");
  std::unique_ptr<CalibrationProfile> profile;
  if (!opt.calibration.empty()) profile = std::make_unique<CalibrationProfile>(load_profile(opt));
  const ClusterRun run(sc, accounting, !opt.db_path.empty(), profile.get());
  if (!opt.gantt_path.empty()) check_svg_size(run.plan.program);  // before any report is printed
  const TrainingPlan& plan = run.plan;
  const Trace& trace = run.trace;
  const ClusterResult& result = run.result;
  const double t_build = run.build_s;
  const double t_validate = run.validate_s;
  const double t_sim = run.simulate_s;
  write_report(out, opt.format, result);
  record.complete(plan.program, trace, result);
  if (!opt.trace_path.empty()) {
    write_chrome_trace(trace_file, plan.program, trace, TimeUnit{"s", 1.0}, sc.name);
    close_output(trace_file, opt.trace_path, "--trace");
  }
  if (!opt.gantt_path.empty()) {
    char title[512];
    std::snprintf(title, sizeof title, "%s: iteration %.6g s, idle %.1f%%, %zu simulated devices", sc.name.c_str(),
                  result.iteration_s, 100 * result.metrics.idle_fraction, plan.program.devices().size());
    write_svg_gantt(gantt_file, plan.program, trace, TimeUnit{"s", 1.0}, title);
    close_output(gantt_file, opt.gantt_path, "--gantt");
  }
  if (opt.timing) {
    char buf[256];
    std::snprintf(buf, sizeof buf, "timing: build %.3f s, validate %.3f s, simulate %.3f s (%llu events); %zu ops\n",
                  t_build, t_validate, t_sim, static_cast<unsigned long long>(trace.events), plan.program.num_ops());
    err << buf;
  }
}

void run_pipeline(const Scenario& sc, const RunOptions& opt, std::ostream& out, std::ostream& err, RunRecorder& record);

}  // namespace

CalibrationProfile load_profile(const RunOptions& opt) {
  const std::string path = opt.db_path.empty() ? "bubblesim.db" : opt.db_path;
  if (!std::filesystem::exists(path)) {
    throw InputError("--calibration: no database \"" + path + "\" to read profile \"" + opt.calibration +
                     "\" from (bubblesim calibrate --db FILE writes profiles; --db names the file)");
  }
  Store store(path);
  return CalibrationProfile::from_row(store.profile(opt.calibration));
}

namespace {
ClusterJob calibrated_job(const Scenario& sc, const CalibrationProfile* calibration) {
  ClusterJob job = plan_cluster(sc);
  if (calibration != nullptr) apply_links(*calibration, job.cluster);
  return job;
}
}  // namespace

ClusterRun::ClusterRun(const Scenario& sc, FlopsAccounting accounting, bool record_work,
                       const CalibrationProfile* calibration)
    : job(calibrated_job(sc, calibration)),
      topo(job.cluster),
      compute(*job.cluster.gpu, job.training.attention_kernel, job.cluster.elementwise_efficiency),
      calibrated(calibration ? std::make_unique<CalibratedCompute>(*calibration, compute) : nullptr),
      network(topo) {
  Stopwatch clock;
  const ComputeModel& model = calibrated ? static_cast<const ComputeModel&>(*calibrated) : compute;
  plan = build_training(job, topo, model, record_work);
  build_s = clock.lap();
  require_valid(plan.program);
  validate_s = clock.lap();
  trace = simulate(plan.program, GivenTimes{}, &network);
  simulate_s = clock.lap();
  if (calibration != nullptr) {
    std::string fitted;
    for (const auto& [cls, points] : calibration->compute) fitted += (fitted.empty() ? "" : ", ") + cls;
    for (const auto& [cls, f] : calibration->links) fitted += (fitted.empty() ? "" : ", ") + cls + " links";
    plan.notes.push_back("calibration profile \"" + calibration->name + "\": measured " + fitted +
                         "; anything else from the preset's models");
  }
  result = make_cluster_result(sc, job, plan, trace, topo, network.link_bytes(), accounting);
}

void run_scenario(const RunOptions& opt, std::ostream& out, std::ostream& err) {
  if (opt.format != "text" && opt.format != "json" && opt.format != "csv") {
    throw InputError("--format: unknown format \"" + opt.format + "\" (valid: text, json, csv)");
  }
  const Scenario sc = load_scenario(opt.scenario, opt.overrides);
  if (sc.pipeline_only && !opt.calibration.empty()) {
    throw InputError("--calibration: " + opt.scenario + " is a pipeline_only scenario (op times given); calibration "
                     "profiles apply to cluster scenarios");
  }
  RunRecorder record(opt, sc);
  try {
    if (sc.pipeline_only) run_pipeline(sc, opt, out, err, record);
    else run_cluster(sc, opt, out, err, record);
  } catch (const std::exception& e) {
    record.fail(e.what(), err);
    throw;
  }
}

namespace {

void run_pipeline(const Scenario& sc, const RunOptions& opt, std::ostream& out, std::ostream& err, RunRecorder& record) {
  Stopwatch clock;
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
  write_report(out, opt.format, result);
  record.complete(prog, trace, result);
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

}  // namespace

void print_schedules(std::ostream& out) {
  for (const ScheduleInfo& s : schedule_table()) {
    char buf[256];
    std::snprintf(buf, sizeof buf, "%-18s %s%s%s\n", std::string(s.name).c_str(), std::string(s.description).c_str(),
                  s.fixed_chunks == 2 ? " [2 chunks per rank]" : "", s.splits_backward ? " [needs I and W times]" : "");
    out << buf;
  }
}

void print_presets(std::ostream& out) {
  char buf[512];
  auto line = [&](const char* what, double value, const char* unit, std::string_view source) {
    std::snprintf(buf, sizeof buf, "  %-26s %12.6g %-8s %s\n", what, value, unit, std::string(source).c_str());
    out << buf;
  };
  out << "GPU presets (figure, value, unit, source; GB = 1e9 bytes)\n";
  for (const GpuPreset& g : gpu_presets()) {
    out << g.id << "  " << g.name << "\n";
    line("dense bf16/fp16 tensor", g.bf16_flops.value / 1e12, "TFLOP/s", g.bf16_flops.source);
    line("dense tf32 tensor", g.tf32_flops.value / 1e12, "TFLOP/s", g.tf32_flops.source);
    line("memory", g.hbm_bytes.value / 1e9, "GB", g.hbm_bytes.source);
    line("memory bandwidth", g.hbm_bandwidth.value / 1e9, "GB/s", g.hbm_bandwidth.source);
    line("SMs", g.sms.value, "", g.sms.source);
    line("NVLink per GPU per dir", g.nvlink_per_dir.value / 1e9, "GB/s", g.nvlink_per_dir.source);
    line("NVLink NCCL ceiling", g.nvlink_nccl.value / 1e9, "GB/s", g.nvlink_nccl.source);
    line("NVLink/PCIe hop latency", g.nvlink_latency.seconds() * 1e6, "us",
         g.nvlink_per_dir.value > 0 ? "NCCL Simple NVLink hop 3.4 us [ncclTune]" : "NCCL Simple PCIe hop 5.7 us [ncclTune]");
    line("PCIe per dir", g.pcie_per_dir.value / 1e9, "GB/s",
         std::string("gen ") .append(std::to_string(g.pcie_gen)).append("; ").append(g.pcie_per_dir.source));
    line("best GEMM efficiency", g.gemm_efficiency.value, "", g.gemm_efficiency.source);
    line("layer elementwise kernels", g.elementwise_efficiency.value, "of HBM", g.elementwise_efficiency.source);
    line("NICs per node", g.nic.nics_per_node, "", g.nic.source);
    line("NIC line rate per dir", g.nic.per_nic.bytes_per_s / 1e9, "GB/s", g.nic.source);
    line("NIC as NCCL achieves", g.nic.per_nic_nccl.bytes_per_s / 1e9, "GB/s", g.nic.source);
  }
  out << "\nModel presets (layers, hidden, heads, kv_heads, ffn_hidden, vocab, activation, embeddings)\n";
  for (const ModelPreset& m : model_presets()) {
    std::snprintf(buf, sizeof buf, "%-12s %3d %6d %3d %3d %6d %7d %-7s %-6s %s\n", std::string(m.id).c_str(), m.layers,
                  m.hidden, m.heads, m.kv_heads, m.ffn_hidden, m.vocab, std::string(m.activation).c_str(),
                  m.tied_embeddings ? "tied" : "untied", std::string(m.source).c_str());
    out << buf;
  }
}

void print_keys(std::ostream& out) {
  for (const KeyDoc& k : scenario_keys()) out << k.path << "  (" << k.type << ")  " << k.doc << "\n";
}

}  // namespace bubblesim::sim
