// The SQLite store: runs (simulated, measured on hardware, microbenchmarks), their devices, the
// Program's ops and each op's start and end, so predictions and measurements join op by op.
// One database file, schema version in PRAGMA user_version with forward migrations, WAL, foreign
// keys, prepared statements, every write in a transaction; several processes may write at once
// (they wait for each other's transactions).
// Not a report: sim/report formats results; this only keeps them.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "sim/exec/trace.hpp"
#include "sim/ir/program.hpp"

struct sqlite3;
struct sqlite3_stmt;

namespace bubblesim::sim {

/// What describes a run besides its ops.
struct RunInfo {
  std::string kind = "sim";      // sim | hw | bench
  std::string scenario_name;
  std::string scenario_text;     // the YAML as given (with --set overrides listed in command)
  std::string command_line;
  std::string environment;       // JSON: host, bubblesim version, git revision, ...
  /// The unit the run's report gives times in ("s", or "units" for fixed-time scenarios) and how
  /// many seconds of the simulation clock one of it is: op timings are stored in those seconds.
  std::string time_unit = "s";
  double seconds_per_unit = 1;
};

struct RunRow {
  int64_t id = 0;
  std::string kind, scenario_name, scenario_hash, status, started_at, ended_at, command_line;
  int64_t ops = 0;
  double iteration_time = 0;  // from the report, in time_unit
  std::string time_unit;
  double seconds_per_unit = 1;
};

/// One microbenchmark measurement (nccl-tests discipline: min / median / max over ranks and
/// timed iterations). `shape` is the op's shape ("m,n,k,batch" for gemm; "batch,q,kv,heads,
/// head_dim,causal_fraction" for attention) or the message size for communication.
struct BenchSample {
  int64_t run_id = 0;
  std::string op_class;  // gemm | attention | attention_grad | memory | p2p | alltoall | allreduce | ...
  std::string shape;
  int64_t bytes = 0;     // message size (nccl-tests S) or bytes moved
  int64_t ranks = 1;
  int64_t iterations = 0;
  double min_s = 0, median_s = 0, max_s = 0;
  double algbw = 0, busbw = 0;  // B/s, communication only
};

/// A named calibration profile: fitted parameters and residuals as JSON, the runs they came from.
struct ProfileRow {
  std::string name, created_at, source_runs, parameters, residuals;
};

class Store {
 public:
  static constexpr int kSchemaVersion = 4;

  /// Opens (creating if needed) and migrates `path`; InputError if it is not a bubblesim
  /// database, is from a newer schema, or cannot be opened.
  explicit Store(const std::string& path);
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  /// Records a new run as incomplete and returns its id (its own transaction, so a run that
  /// dies later is still listed, marked incomplete).
  int64_t begin_run(const RunInfo& info);
  /// Stores the Program's devices and ops and the trace's start and end per op (`source`
  /// "predicted" or "measured"), in one transaction.
  /// `only`: store that device's ops alone (a single-GPU replay measured no other).
  void store_trace(int64_t run, const Program& p, const Trace& t, const std::string& source, DeviceId only = kNone);
  /// Marks the run complete (or failed) with its report summary (JSON).
  void finish_run(int64_t run, const std::string& status, const std::string& summary_json);

  std::vector<RunRow> runs();
  /// InputError naming the run if there is none.
  RunRow run(int64_t id);
  std::string summary(int64_t id);

  struct OpRow {
    int64_t op;
    int64_t device;
    std::string stream, kind, phase;
    int64_t stage, microbatch, layer, ring_step;
    std::string traffic;
    double start_s, end_s;
    std::string op_class, shape;  // what a compute op works on (empty when not recorded)
    double flops;
    double causal_fraction, hbm_bytes;
  };
  std::vector<OpRow> ops(int64_t run, const std::string& source = "predicted");
  std::vector<std::string> device_names(int64_t run);
  std::string scenario_text(int64_t run);
  /// The run's environment (JSON text).
  std::string environment(int64_t run);

  /// A measured iteration's makespan, stored as soon as it completes (its own transaction).
  void store_iteration(int64_t run, int64_t iteration, bool warmup, double makespan_s);
  struct IterationRow {
    int64_t iteration;
    bool warmup;
    double makespan_s;
  };
  std::vector<IterationRow> iterations(int64_t run);

  /// One microbenchmark sample (its own transaction: a bench killed later keeps it).
  void store_bench_sample(int64_t run, const BenchSample& b);
  /// Samples of complete bench runs, of `runs` only when not empty.
  std::vector<BenchSample> bench_samples(const std::vector<int64_t>& runs = {});

  /// Creates or replaces the profile of that name.
  void save_profile(const ProfileRow& p);
  /// InputError naming the profiles there are if there is none of that name.
  ProfileRow profile(const std::string& name);
  std::vector<std::string> profile_names();

  /// Stores a validation result (JSON); returns its id. Run ids of 0: none (published results).
  int64_t store_comparison(int64_t measured_run, int64_t predicted_run, const std::string& calibration,
                           const std::string& result_json);

 private:
  void exec(const char* sql);
  void migrate();
  sqlite3* db_ = nullptr;
  std::string path_;
};

/// A SHA-256-free, stable 64-bit FNV-1a hash of the scenario text, in hex (to find equal runs).
std::string scenario_hash(const std::string& text);

}  // namespace bubblesim::sim
