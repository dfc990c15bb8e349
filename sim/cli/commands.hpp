// The commands behind the CLI, callable from tests: parse nothing from argv, print to the
// streams given. Not the argument parser (sim/cli/main.cpp).
#pragma once

#include <ostream>
#include <string>
#include <vector>

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
  std::string command_line;  // as typed, for the record
};

/// A cluster scenario planned, built and simulated, with its result (which points into it).
struct ClusterRun {
  /// `record_work`: keep each compute op's shape and FLOPs in the Program (for the store).
  ClusterRun(const Scenario& sc, FlopsAccounting accounting, bool record_work = false);
  ClusterRun(const ClusterRun&) = delete;
  ClusterRun& operator=(const ClusterRun&) = delete;
  ClusterJob job;
  Topology topo;
  RooflineCompute compute;
  TrainingPlan plan;
  FlowNetwork network;
  Trace trace;
  ClusterResult result;
  double build_s = 0, validate_s = 0, simulate_s = 0;
};

/// Loads, plans, simulates and reports one scenario. Throws InputError on bad input and
/// DeadlockError if the schedule cannot finish.
void run_scenario(const RunOptions& opt, std::ostream& out, std::ostream& err);
void print_schedules(std::ostream& out);
void print_keys(std::ostream& out);
/// Every GPU and model preset with its figures and their sources.
void print_presets(std::ostream& out);

}  // namespace bubblesim::sim
