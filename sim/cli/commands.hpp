// The commands behind the CLI, callable from tests: parse nothing from argv, print to the
// streams given. Not the argument parser (sim/cli/main.cpp).
#pragma once

#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "sim/calibrate/calibration.hpp"
#include "sim/exec/trace.hpp"
#include "sim/model/compute.hpp"
#include "sim/model/network.hpp"
#include "sim/report/cluster_report.hpp"
#include "sim/sched/training.hpp"
#include "sim/topo/topology.hpp"

namespace bubblesim::sim {

inline constexpr const char* kVersion = "0.1.0";

struct RunOptions {
  std::string scenario;
  std::vector<std::string> overrides;
  std::string format = "text";
  std::string trace_path;
  std::string gantt_path;
  bool timing = false;
  std::string flops_accounting = "megatron";
  std::string db_path;       // --db: record the run in this SQLite database
  std::string calibration;   // --calibration: a profile in the database (--db, else bubblesim.db)
  std::string command_line;  // as typed, for the record
};

/// A cluster scenario planned, built and simulated, with its result (which points into it).
struct ClusterRun {
  /// `record_work`: keep each compute op's shape and FLOPs in the Program (for the store).
  /// `calibration`: compute tables and link classes replace the presets' models where it has them.
  ClusterRun(const Scenario& sc, FlopsAccounting accounting, bool record_work = false,
             const CalibrationProfile* calibration = nullptr);
  ClusterRun(const ClusterRun&) = delete;
  ClusterRun& operator=(const ClusterRun&) = delete;
  ClusterJob job;
  Topology topo;
  RooflineCompute compute;
  std::unique_ptr<CalibratedCompute> calibrated;
  TrainingPlan plan;
  FlowNetwork network;
  Trace trace;
  ClusterResult result;
  double build_s = 0, validate_s = 0, simulate_s = 0;
};

/// Loads, plans, simulates and reports one scenario. Throws InputError on bad input and
/// DeadlockError if the schedule cannot finish.
void run_scenario(const RunOptions& opt, std::ostream& out, std::ostream& err);
/// The profile `opt.calibration` from the database (--db, else bubblesim.db); InputError naming
/// the profiles there are if it has none of that name, or if there is no database.
CalibrationProfile load_profile(const RunOptions& opt);
void print_schedules(std::ostream& out);
void print_keys(std::ostream& out);
/// Every GPU and model preset with its figures and their sources.
void print_presets(std::ostream& out);

}  // namespace bubblesim::sim
