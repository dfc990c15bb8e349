// `bubblesim sweep`: the what-if study. Runs every combination of the --vary values of a cluster
// scenario on all cores, lists the combinations that are invalid with their reason, and ranks
// the valid ones by tokens/s among those that fit in memory.
// Not a new model: each point is exactly `bubblesim run SCENARIO --set ...`.
#pragma once

#include <ostream>
#include <string>
#include <vector>

namespace bubblesim::sim {

struct SweepOptions {
  std::string scenario;
  std::vector<std::string> overrides;   // --set, applied to every point
  std::vector<std::string> vary;        // --vary key.path=v1,v2,...
  std::string format = "text";          // text | csv | json (to standard output)
  std::string csv_path, json_path;      // also write these files
  int jobs = 0;                         // worker threads; 0: every core
  bool progress = true;                 // a progress line on standard error when it is a terminal
};

/// One point of the sweep.
struct SweepPoint {
  std::vector<std::pair<std::string, std::string>> values;  // the varied keys and this point's values
  bool valid = false;
  std::string reason;  // why the point is invalid
  double iteration_s = 0, tokens_per_s = 0, tflops_per_gpu = 0, mfu = 0;
  double peak_memory_bytes = 0, gpu_memory_bytes = 0;
  bool fits = false;
  // Means over the simulated devices, as fractions of the iteration.
  double idle = 0, pipeline_bubble = 0, p2p_wait = 0, collective_wait = 0, sp_wait = 0, imbalance = 0;
  int rank = 0;  // 1 = best tokens/s among points that fit; 0 = not ranked
};

/// Runs the sweep; throws InputError for a bad --vary or a scenario that is not a cluster one.
std::vector<SweepPoint> run_sweep(const SweepOptions& opt, std::ostream& progress);
void run_sweep_command(const SweepOptions& opt, std::ostream& out, std::ostream& err);

}  // namespace bubblesim::sim
