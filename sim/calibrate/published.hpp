// Published results as a manifest: one scenario, the report metric to compare (tflops_per_gpu,
// iterations_per_s, tokens_per_s, ...) and entries, each a published value with the scenario
// overrides that reproduce its configuration. `bubblesim validate --published MANIFEST` predicts
// every entry and prints predicted vs published with the error, the same way it compares a
// measured run. Loading and the error table live here; the CLI runs the predictions.
//
//   title: Megatron-LM SC21 Table 1            # optional
//   scenario: gpt-selene.yaml                  # relative to the manifest
//   metric: tflops_per_gpu                     # a numeric key of the run's JSON report
//   flops_accounting: megatron-sc21            # optional: megatron | noncausal | megatron-sc21
//   entries:
//     - id: MEG21-T1-1.7B-a                    # unique
//       published: 137                         # > 0, in the metric's unit
//       set: {parallel.tp: 1, cluster.nodes: 4}  # optional --set overrides
//       metric: ...                            # optional, overrides the top-level one
//       source: ..., note: ...                 # optional text
#pragma once

#include <nlohmann/json.hpp>
#include <ostream>
#include <string>
#include <vector>

#include "sim/calibrate/validation.hpp"

namespace bubblesim::sim {

struct PublishedEntry {
  std::string id, metric, source, note;
  double published = 0;
  std::vector<std::string> overrides;  // "key.path=value"
  std::string where;                   // "manifest:line", for messages
};

struct PublishedManifest {
  std::string path, title;
  std::string scenario_path;  // resolved against the manifest's folder
  std::string scenario_text;
  std::string flops_accounting = "megatron";
  std::vector<PublishedEntry> entries;
};

/// Reads and checks a manifest (and reads its scenario). InputError with "file:line: what" for a
/// missing or misspelt key, a duplicate id, a value that is not a positive number, an unreadable
/// scenario, or no entries.
PublishedManifest load_published(const std::string& path);

/// One entry predicted.
struct PublishedRow {
  std::string id, metric;
  double published = 0, predicted = 0;
  double error = 0;  // predicted / published - 1
  bool fits = true;  // the predicted configuration fits in the GPUs' memory
};

struct PublishedComparison {
  std::string manifest, title, scenario, calibration;
  std::vector<PublishedRow> rows;
  ErrorSummary errors;  // over the rows' relative errors
};

/// The value of `metric` in a run's JSON report; InputError naming the numeric keys there are if
/// it has none of that name.
double report_metric(const nlohmann::json& report, const std::string& metric, const std::string& where);

/// Fills `errors` from the rows.
void summarise(PublishedComparison& c);

nlohmann::json to_json(const PublishedComparison& c);
void write_text(std::ostream& out, const PublishedComparison& c);

}  // namespace bubblesim::sim
