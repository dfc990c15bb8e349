// Predicted against measured, op by op: the same Program's compute ops (joined by op id) with
// their duration error, summarised per op class; each device's busy and idle time; and the
// iteration time. The result prints as a table and stores as JSON (comparisons table).
// Not the prediction or the measurement: callers bring both traces of one Program.
#pragma once

#include <nlohmann/json.hpp>
#include <ostream>
#include <string>
#include <vector>

#include "sim/exec/trace.hpp"
#include "sim/ir/program.hpp"

namespace bubblesim::sim {

struct ErrorSummary {
  size_t count = 0;
  double mean_abs = 0, median_abs = 0, p90_abs = 0, worst = 0;  // relative errors (0.1 = 10%)
  double bias = 0;                                               // mean signed error
};

/// Summary of relative errors (predicted / measured - 1).
ErrorSummary summarise_errors(std::vector<double> errors);
nlohmann::json to_json(const ErrorSummary& s);

struct Validation {
  double measured_s = 0, predicted_s = 0;
  double iteration_error = 0;  // predicted / measured - 1
  ErrorSummary ops;            // every compute op with recorded work
  std::vector<std::pair<std::string, ErrorSummary>> by_class;
  struct Device {
    std::string name;
    double measured_busy_s, predicted_busy_s, measured_idle_s, predicted_idle_s;
  };
  std::vector<Device> devices;
  std::string scenario, calibration;
  int64_t measured_run = 0, predicted_run = 0;
  /// What the comparison should be read with (e.g. a profile calibrated on another setup).
  std::vector<std::string> warnings;
};

/// Joins `measured` and `predicted` (traces of `p`, indexed by op id). InputError if a trace
/// does not cover the Program.
Validation compare_traces(const Program& p, const Trace& measured, const Trace& predicted);

nlohmann::json to_json(const Validation& v);
void write_text(std::ostream& out, const Validation& v);

}  // namespace bubblesim::sim
