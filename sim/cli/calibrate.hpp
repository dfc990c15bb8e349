// `bubblesim calibrate`, `bubblesim profile show|list` and `bubblesim validate`: the commands
// that fit profiles from stored measurements and compare predictions with measured runs or
// published results.
// Not the fitting or the comparison themselves (sim/calibrate).
#pragma once

#include <ostream>
#include <string>

namespace bubblesim::sim {

struct CalibrateOptions {
  std::string db_path = "bubblesim.db";
  std::string name;
  bool bench = false;   // every complete bench run (InputError if they were measured on different setups)
  std::string runs;     // or these runs (bench or hw), comma-separated ids
};
void run_calibrate(const CalibrateOptions& opt, std::ostream& out);

/// action: show NAME | list
void run_profile_command(const std::string& action, const std::string& name, const std::string& db_path,
                         std::ostream& out);

struct ValidateOptions {
  std::string db_path = "bubblesim.db";
  bool db_given = false;      // --db was typed (--published stores its comparison only then)
  std::string run;            // the measured (hw) run
  std::string published;      // or a published-results manifest (sim/calibrate/published.hpp)
  std::string calibration;    // profile to predict with; empty: the presets' models
  std::string format = "text";
  double max_error_pct = -1;  // >= 0: fail (exit 4) when |iteration error| is larger
  std::string command_line;
};
/// Returns the exit status: 0, or 4 when the iteration error (with --published: the mean absolute
/// error over the entries) exceeds --max-error.
int run_validate(const ValidateOptions& opt, std::ostream& out);

}  // namespace bubblesim::sim
