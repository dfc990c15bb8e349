#include "sim/cli/db.hpp"

#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "sim/core/error.hpp"
#include "sim/core/units.hpp"
#include "sim/store/store.hpp"

namespace bubblesim::sim {
namespace {

int64_t run_id(const std::string& text) {
  const auto id = parse_integer(text);
  if (!id || *id < 1) {
    throw InputError("db: \"" + text + "\" is not a run id (a positive integer; bubblesim db list shows them)");
  }
  return *id;
}

void list(Store& store, const std::string& format, std::ostream& out) {
  if (format == "json") {
    nlohmann::json rows = nlohmann::json::array();
    for (const RunRow& r : store.runs()) {
      rows.push_back({{"run", r.id}, {"kind", r.kind}, {"status", r.status}, {"scenario", r.scenario_name},
                      {"scenario_hash", r.scenario_hash}, {"started_at", r.started_at}, {"ended_at", r.ended_at},
                      {"ops", r.ops}, {"iteration_time", r.iteration_time}, {"time_unit", r.time_unit},
                      {"seconds_per_unit", r.seconds_per_unit}});
    }
    out << nlohmann::json{{"runs", rows}}.dump(2) << "\n";
    return;
  }
  if (!format.empty() && format != "text") {
    throw InputError("--format: db list prints text or json, not \"" + format + "\"");
  }
  char buf[512];
  std::snprintf(buf, sizeof buf, "%6s  %-5s  %-11s  %-20s  %10s  %18s  %s\n", "run", "kind", "status", "started (UTC)",
                "ops", "iteration", "scenario");
  out << buf;
  for (const RunRow& r : store.runs()) {
    std::snprintf(buf, sizeof buf, "%6lld  %-5s  %-11s  %-20s  %10lld  %12.6g %-5s  %s\n", static_cast<long long>(r.id),
                  r.kind.c_str(), r.status.c_str(), r.started_at.c_str(), static_cast<long long>(r.ops),
                  r.iteration_time, r.time_unit.c_str(), r.scenario_name.c_str());
    out << buf;
  }
}

void show(Store& store, int64_t id, std::ostream& out) {
  const RunRow r = store.run(id);
  out << "run " << r.id << " (" << r.kind << ", " << r.status << "): " << r.scenario_name << "\n";
  out << "started " << r.started_at << (r.ended_at.empty() ? "" : ", ended " + r.ended_at) << "\n";
  out << "command: " << r.command_line << "\nscenario hash: " << r.scenario_hash << "\n";
  out << "ops stored: " << r.ops << "; op times in seconds of the simulation clock";
  if (r.time_unit != "s") out << " (the report's 1 " << r.time_unit << " = " << r.seconds_per_unit << " s)";
  out << "\n";
  const std::string env = store.environment(id);
  if (!env.empty()) out << "environment: " << env << "\n";
  if (r.kind == "hw") {
    out << "measured iterations (s):";
    for (const Store::IterationRow& it : store.iterations(id)) {
      out << " " << it.makespan_s << (it.warmup ? " (warm-up)" : "");
    }
    out << "\nop times: the iteration with the median time (source \"measured\")\n";
  }
  if (r.kind == "bench") out << "samples: " << store.bench_samples({id}).size() << " (db export " << id << " lists them)\n";
  const std::string summary = store.summary(id);
  if (!summary.empty()) out << "report: " << nlohmann::json::parse(summary).dump(2) << "\n";
}

void export_bench(Store& store, int64_t id, const std::string& format, std::ostream& out) {
  const std::vector<BenchSample> samples = store.bench_samples({id});
  if (format == "csv") {
    out << "op_class,shape,bytes,ranks,iterations,min_s,median_s,max_s,algbw_Bps,busbw_Bps\n";
    char buf[512];
    for (const BenchSample& b : samples) {
      std::snprintf(buf, sizeof buf, "%s,\"%s\",%lld,%lld,%lld,%.9g,%.9g,%.9g,%.6g,%.6g\n", b.op_class.c_str(),
                    b.shape.c_str(), static_cast<long long>(b.bytes), static_cast<long long>(b.ranks),
                    static_cast<long long>(b.iterations), b.min_s, b.median_s, b.max_s, b.algbw, b.busbw);
      out << buf;
    }
  } else if (format == "json") {
    nlohmann::json rows = nlohmann::json::array();
    for (const BenchSample& b : samples) {
      rows.push_back({{"op_class", b.op_class}, {"shape", b.shape}, {"bytes", b.bytes}, {"ranks", b.ranks},
                      {"iterations", b.iterations}, {"min_s", b.min_s}, {"median_s", b.median_s}, {"max_s", b.max_s},
                      {"algbw_Bps", b.algbw}, {"busbw_Bps", b.busbw}});
    }
    out << nlohmann::json{{"run", id}, {"samples", rows}}.dump(2) << "\n";
  } else {
    throw InputError("--format: a bench run exports as csv or json, not \"" + format + "\"");
  }
}

void export_run(Store& store, int64_t id, const std::string& format, std::ostream& out) {
  const RunRow run = store.run(id);
  if (run.kind == "bench") {
    export_bench(store, id, format, out);
    return;
  }
  // A hardware run's timeline is what it measured; a simulation's, what it predicted.
  const auto ops = store.ops(id, run.kind == "hw" ? "measured" : "predicted");
  if (format == "csv") {
    out << "op,device,stream,kind,phase,stage,microbatch,layer,ring_step,traffic,start_s,end_s,op_class,shape,flops\n";
    char buf[768];
    for (const Store::OpRow& o : ops) {
      std::snprintf(buf, sizeof buf, "%lld,%lld,%s,%s,%s,%lld,%lld,%lld,%lld,%s,%.12g,%.12g,%s,\"%s\",%.6g\n",
                    static_cast<long long>(o.op), static_cast<long long>(o.device), o.stream.c_str(), o.kind.c_str(),
                    o.phase.c_str(), static_cast<long long>(o.stage), static_cast<long long>(o.microbatch),
                    static_cast<long long>(o.layer), static_cast<long long>(o.ring_step), o.traffic.c_str(), o.start_s,
                    o.end_s, o.op_class.c_str(), o.shape.c_str(), o.flops);
      out << buf;
    }
  } else if (format == "json") {
    nlohmann::json rows = nlohmann::json::array();
    for (const Store::OpRow& o : ops) {
      rows.push_back({{"op", o.op}, {"device", o.device}, {"stream", o.stream}, {"kind", o.kind}, {"phase", o.phase},
                      {"stage", o.stage}, {"microbatch", o.microbatch}, {"layer", o.layer},
                      {"ring_step", o.ring_step}, {"traffic", o.traffic}, {"start_s", o.start_s}, {"end_s", o.end_s},
                      {"op_class", o.op_class}, {"shape", o.shape}, {"flops", o.flops}});
    }
    const std::string summary = store.summary(id);
    const RunRow r = store.run(id);
    out << nlohmann::json{{"run", id},
                          {"time_unit", r.time_unit},
                          {"seconds_per_unit", r.seconds_per_unit},
                          {"report", summary.empty() ? nlohmann::json() : nlohmann::json::parse(summary)},
                          {"ops", rows}}
               .dump(2)
        << "\n";
  } else if (format == "trace") {
    // Chrome trace events: one process per device, one thread per stream name.
    const auto names = store.device_names(id);
    nlohmann::json events = nlohmann::json::array();
    for (size_t d = 0; d < names.size(); ++d) {
      events.push_back({{"ph", "M"}, {"name", "process_name"}, {"pid", d}, {"args", {{"name", names[d]}}}});
    }
    for (const Store::OpRow& o : ops) {
      std::string name = o.phase.empty() ? o.kind : o.phase + std::to_string(o.microbatch);
      if (!o.traffic.empty()) name += " " + o.traffic;
      events.push_back({{"ph", "X"}, {"name", name}, {"pid", o.device}, {"tid", o.stream},
                        {"ts", o.start_s * 1e6}, {"dur", (o.end_s - o.start_s) * 1e6}});
    }
    out << nlohmann::json{{"traceEvents", events}}.dump() << "\n";
  } else {
    throw InputError("--format: unknown export format \"" + format + "\" (valid: csv, json, trace)");
  }
}

}  // namespace

void run_db_command(const DbOptions& opt, std::ostream& out) {
  if (opt.action != "list" && opt.action != "show" && opt.action != "export") {
    throw InputError("db: unknown action \"" + opt.action + "\" (valid: list, show RUN, export RUN)");
  }
  if (!std::filesystem::exists(opt.db_path)) {
    throw InputError("--db: no database \"" + opt.db_path + "\" (bubblesim run SCENARIO --db FILE creates one)");
  }
  Store store(opt.db_path);
  if (opt.action == "list") list(store, opt.format, out);
  else if (opt.action == "show") show(store, run_id(opt.run), out);
  else export_run(store, run_id(opt.run), opt.format.empty() ? "csv" : opt.format, out);
}

}  // namespace bubblesim::sim
