// The `bubblesim` command line: run a scenario and print or write its reports; list the
// schedules and the scenario keys; calibrate and validate against measurements. Exit status: 0 ok,
// 2 bad input, 3 deadlock, 4 validation beyond --max-error, 1 internal error.
#include <boost/program_options.hpp>
#include <iostream>

#include "sim/cli/calibrate.hpp"
#include "sim/cli/collective.hpp"
#include "sim/cli/commands.hpp"
#include "sim/cli/db.hpp"
#include "sim/cli/sweep.hpp"
#include "sim/report/explain.hpp"
#include "sim/scenario/cluster_job.hpp"
#include <nlohmann/json.hpp>
#include "sim/core/error.hpp"

namespace po = boost::program_options;
using namespace bubblesim;
using namespace bubblesim::sim;

namespace {

constexpr int kExitOk = 0;
constexpr int kExitInternal = 1;
constexpr int kExitInput = 2;
constexpr int kExitDeadlock = 3;

const char* kUsage =
    "usage: bubblesim run SCENARIO [--set key.path=value ...] [--format text|json|csv]\n"
    "                              [--trace out.json] [--gantt out.svg] [--timing] [--db results.db]\n"
    "                              [--flops-accounting megatron|noncausal|megatron-sc21] [--calibration NAME]\n"
    "       bubblesim collective SCENARIO --op all-reduce|all-gather|reduce-scatter|all-to-all|sendrecv\n"
    "                            [--ranks N] [--group intra|inter|all] [--sizes 8B:8GB]\n"
    "                            [--algo auto|ring|nvls|two-level] [--channels N] [--protocol auto|LL|LL128|Simple]\n"
    "                            [--mode flow|analytic] [--format text|csv]\n"
    "       bubblesim explain SCENARIO [--set key.path=value ...] [--format text|json]\n"
    "       bubblesim sweep SCENARIO --vary key.path=v1,v2,... [--vary ...] [--set key.path=value ...]\n"
    "                       [--format text|csv|json] [--csv out.csv] [--json out.json] [--jobs N]\n"
    "       bubblesim db list [--format json] | show RUN | export RUN [--format csv|json|trace] [--db bubblesim.db]\n"
    "       bubblesim calibrate --name NAME (--bench | --runs ID,ID,...) [--db bubblesim.db]\n"
    "       bubblesim profile show NAME | list [--db bubblesim.db]\n"
    "       bubblesim validate --run HWRUN [--calibration NAME] [--max-error PCT] [--format text|json]\n"
    "                          [--db bubblesim.db]\n"
    "       bubblesim validate --published MANIFEST [--calibration NAME] [--max-error PCT] [--format text|json]\n"
    "                          [--db FILE: store the comparison]\n"
    "       bubblesim schedules          list the pipeline schedules\n"
    "       bubblesim keys               list every scenario key with its type\n"
    "       bubblesim presets            list the GPU and model presets with their sources\n"
    "       bubblesim --version\n";

int collective_command(const std::vector<std::string>& args) {
  CollectiveOptions co;
  po::options_description opts("collective options");
  opts.add_options()("scenario", po::value<std::string>(&co.scenario), "scenario YAML with a cluster section")(
      "op", po::value<std::string>(&co.op)->default_value(co.op), "all-reduce | all-gather | reduce-scatter | all-to-all | sendrecv")(
      "ranks", po::value<int>(&co.ranks)->default_value(0), "number of GPUs (0: the whole group)")(
      "group", po::value<std::string>(&co.group)->default_value(co.group), "intra | inter | all")(
      "sizes", po::value<std::string>(&co.sizes)->default_value(co.sizes), "BEGIN:END, doubling, e.g. 8B:8GB")(
      "algo", po::value<std::string>(&co.algo)->default_value(co.algo),
      "auto (NCCL's choice: NVLink SHARP for an all-reduce inside a Hopper node where faster, else ring) | ring | "
      "nvls | two-level (all-reduce)")(
      "channels", po::value<int>(&co.channels)->default_value(0),
      "ring channels of a ring crossing nodes (0: one per GPU of the group on each node, NCCL's rails)")(
      "protocol", po::value<std::string>(&co.protocol)->default_value(co.protocol),
      "NCCL protocol of ring collectives: auto (NCCL's choice by its cost model) | LL | LL128 | Simple")(
      "mode", po::value<std::string>(&co.mode)->default_value(co.mode), "flow | analytic")(
      "format", po::value<std::string>(&co.format)->default_value(co.format), "text | csv");
  po::positional_options_description pos;
  pos.add("scenario", 1);
  po::variables_map vm;
  po::store(po::command_line_parser(args).options(opts).positional(pos).run(), vm);
  po::notify(vm);
  if (co.scenario.empty()) throw InputError("collective: missing SCENARIO file (see bubblesim --help)");
  run_collective(co, std::cout);
  return kExitOk;
}

int explain_command(const std::vector<std::string>& args) {
  std::string scenario, format = "text";
  std::vector<std::string> overrides;
  po::options_description opts("explain options");
  opts.add_options()("scenario", po::value<std::string>(&scenario), "cluster scenario YAML file")(
      "set", po::value<std::vector<std::string>>(&overrides)->composing(), "override a key: key.path=value")(
      "format", po::value<std::string>(&format)->default_value(format), "text | json");
  po::positional_options_description pos;
  pos.add("scenario", 1);
  po::variables_map vm;
  po::store(po::command_line_parser(args).options(opts).positional(pos).run(), vm);
  po::notify(vm);
  if (scenario.empty()) throw InputError("explain: missing SCENARIO file (see bubblesim --help)");
  if (format != "text" && format != "json") throw InputError("--format: unknown format \"" + format + "\" (valid: text, json)");
  const Scenario sc = load_scenario(scenario, overrides);
  if (!sc.cluster) throw InputError(sc.source + ": explain needs a cluster scenario (cluster, model, training)");
  const ClusterJob job = plan_cluster(sc);
  const Explanation e = explain(job);
  if (format == "json") std::cout << explain_json(sc, e).dump(2) << "\n";
  else write_explain_text(std::cout, sc, job, e);
  return kExitOk;
}

int db_command(const std::vector<std::string>& args) {
  DbOptions d;
  po::options_description opts("db options");
  opts.add_options()("action", po::value<std::string>(&d.action), "list | show | export")(
      "run", po::value<std::string>(&d.run), "run id (show, export)")(
      "format", po::value<std::string>(&d.format), "list: text | json; export: csv | json | trace")(
      "db", po::value<std::string>(&d.db_path)->default_value(d.db_path), "the SQLite database");
  po::positional_options_description pos;
  pos.add("action", 1).add("run", 1);
  po::variables_map vm;
  po::store(po::command_line_parser(args).options(opts).positional(pos).run(), vm);
  po::notify(vm);
  if (d.action.empty()) throw InputError("db: missing action (list, show RUN, export RUN)");
  run_db_command(d, std::cout);
  return kExitOk;
}

int sweep_command(const std::vector<std::string>& args) {
  SweepOptions so;
  po::options_description opts("sweep options");
  opts.add_options()("scenario", po::value<std::string>(&so.scenario), "cluster scenario YAML file")(
      "vary", po::value<std::vector<std::string>>(&so.vary)->composing(),
      "key.path=v1,v2,... or zipped k1+k2=a1+a2,b1+b2 (';' separates values that hold commas); several --vary give every combination")(
      "set", po::value<std::vector<std::string>>(&so.overrides)->composing(), "override a key for every point")(
      "format", po::value<std::string>(&so.format)->default_value(so.format), "text | csv | json")(
      "csv", po::value<std::string>(&so.csv_path), "also write the table as CSV")(
      "json", po::value<std::string>(&so.json_path), "also write the table as JSON")(
      "jobs", po::value<int>(&so.jobs)->default_value(0), "worker threads (0: every core)");
  po::positional_options_description pos;
  pos.add("scenario", 1);
  po::variables_map vm;
  po::store(po::command_line_parser(args).options(opts).positional(pos).run(), vm);
  po::notify(vm);
  if (so.scenario.empty()) throw InputError("sweep: missing SCENARIO file (see bubblesim --help)");
  if (so.jobs < 0) throw InputError("--jobs: must be 0 (every core) or more");
  run_sweep_command(so, std::cout, std::cerr);
  return kExitOk;
}

int calibrate_command(const std::vector<std::string>& args) {
  CalibrateOptions c;
  po::options_description opts("calibrate options");
  opts.add_options()("name", po::value<std::string>(&c.name), "the profile's name (replaces one of that name)")(
      "bench", "fit every complete bench run of the database")(
      "runs", po::value<std::string>(&c.runs), "fit these runs (bench, or hw: their measured compute ops)")(
      "db", po::value<std::string>(&c.db_path)->default_value(c.db_path), "the SQLite database");
  po::variables_map vm;
  po::store(po::command_line_parser(args).options(opts).run(), vm);
  po::notify(vm);
  c.bench = vm.count("bench") > 0;
  run_calibrate(c, std::cout);
  return kExitOk;
}

int profile_command(const std::vector<std::string>& args) {
  std::string action, name, db = "bubblesim.db";
  po::options_description opts("profile options");
  opts.add_options()("action", po::value<std::string>(&action), "show | list")(
      "name", po::value<std::string>(&name), "profile name (show)")(
      "db", po::value<std::string>(&db)->default_value(db), "the SQLite database");
  po::positional_options_description pos;
  pos.add("action", 1).add("name", 1);
  po::variables_map vm;
  po::store(po::command_line_parser(args).options(opts).positional(pos).run(), vm);
  po::notify(vm);
  if (action.empty()) throw InputError("profile: missing action (show NAME, list)");
  run_profile_command(action, name, db, std::cout);
  return kExitOk;
}

int validate_command(const std::vector<std::string>& args) {
  ValidateOptions v;
  po::options_description opts("validate options");
  opts.add_options()("run", po::value<std::string>(&v.run), "the measured (hw) run")(
      "published", po::value<std::string>(&v.published), "or a published-results manifest (validation/*/published.yaml)")(
      "calibration", po::value<std::string>(&v.calibration), "predict with this profile")(
      "max-error", po::value<double>(&v.max_error_pct), "exit 4 if |iteration error| exceeds this percentage")(
      "format", po::value<std::string>(&v.format)->default_value(v.format), "text | json")(
      "db", po::value<std::string>(&v.db_path)->default_value(v.db_path), "the SQLite database");
  po::variables_map vm;
  po::store(po::command_line_parser(args).options(opts).run(), vm);
  po::notify(vm);
  v.db_given = vm.count("db") > 0 && !vm["db"].defaulted();
  v.command_line = "bubblesim validate";
  for (const std::string& a : args) v.command_line += " " + a;
  return run_validate(v, std::cout);
}

int run_command(const std::vector<std::string>& args) {
  po::options_description opts("run options");
  opts.add_options()("scenario", po::value<std::string>(), "scenario YAML file")(
      "set", po::value<std::vector<std::string>>()->composing(), "override a key: key.path=value")(
      "format", po::value<std::string>()->default_value("text"), "text | json | csv")(
      "trace", po::value<std::string>(), "write a Chrome/Perfetto trace")(
      "gantt", po::value<std::string>(), "write an SVG Gantt chart")(
      "timing", "print phase timings and peak memory of bubblesim itself to stderr")(
      "flops-accounting", po::value<std::string>()->default_value("megatron"),
      "megatron | noncausal | megatron-sc21 (how TFLOPS and MFU count model FLOPs)")(
      "db", po::value<std::string>(), "record the run (scenario, ops, predicted timeline, report) in this SQLite database")(
      "calibration", po::value<std::string>(), "use this calibration profile from the database (--db, else bubblesim.db)");
  po::positional_options_description pos;
  pos.add("scenario", 1);
  po::variables_map vm;
  po::store(po::command_line_parser(args).options(opts).positional(pos).run(), vm);
  po::notify(vm);
  if (!vm.count("scenario")) throw InputError("run: missing SCENARIO file (see bubblesim --help)");
  RunOptions ro;
  ro.scenario = vm["scenario"].as<std::string>();
  if (vm.count("set")) ro.overrides = vm["set"].as<std::vector<std::string>>();
  ro.format = vm["format"].as<std::string>();
  if (vm.count("trace")) ro.trace_path = vm["trace"].as<std::string>();
  if (vm.count("gantt")) ro.gantt_path = vm["gantt"].as<std::string>();
  ro.timing = vm.count("timing") > 0;
  ro.flops_accounting = vm["flops-accounting"].as<std::string>();
  if (vm.count("db")) ro.db_path = vm["db"].as<std::string>();
  if (vm.count("calibration")) ro.calibration = vm["calibration"].as<std::string>();
  ro.command_line = "bubblesim run";
  for (const std::string& a : args) ro.command_line += " " + a;
  run_scenario(ro, std::cout, std::cerr);
  return kExitOk;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  try {
    if (args.empty()) {
      std::cerr << kUsage;
      return kExitInput;
    }
    if (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
      std::cout << kUsage;
      return kExitOk;
    }
    if (args[0] == "--version") {
      std::cout << "bubblesim " << kVersion << "\n";
      return kExitOk;
    }
    const std::string cmd = args[0];
    args.erase(args.begin());
    if (cmd == "run") return run_command(args);
    if (cmd == "collective") return collective_command(args);
    if (cmd == "sweep") return sweep_command(args);
    if (cmd == "explain") return explain_command(args);
    if (cmd == "db") return db_command(args);
    if (cmd == "calibrate") return calibrate_command(args);
    if (cmd == "profile") return profile_command(args);
    if (cmd == "validate") return validate_command(args);
    if (cmd == "schedules") {
      print_schedules(std::cout);
      return kExitOk;
    }
    if (cmd == "presets") {
      print_presets(std::cout);
      return kExitOk;
    }
    if (cmd == "keys") {
      print_keys(std::cout);
      return kExitOk;
    }
    throw InputError("unknown command \"" + cmd + "\" (valid: run, collective, explain, sweep, db, calibrate, profile, validate, schedules, keys, presets; see bubblesim --help)");
  } catch (const InputError& e) {
    std::cerr << "error: " << e.what() << "\n";
    return kExitInput;
  } catch (const po::error& e) {
    std::cerr << "error: " << e.what() << " (see bubblesim --help)\n";
    return kExitInput;
  } catch (const DeadlockError& e) {
    std::cerr << "error: " << e.what() << "\n";
    return kExitDeadlock;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return kExitInternal;
  }
}
