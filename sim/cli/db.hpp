// `bubblesim db list [--format json] | show RUN | export RUN --format csv|json|trace [--db FILE]`: what the SQLite
// store holds. Not the store itself (sim/store).
#pragma once

#include <ostream>
#include <string>

namespace bubblesim::sim {

struct DbOptions {
  std::string action;            // list | show | export
  std::string run;               // the run id, for show and export
  std::string format;            // list: text (default) | json; export: csv (default) | json | trace
  std::string db_path = "bubblesim.db";
};

void run_db_command(const DbOptions& opt, std::ostream& out);

}  // namespace bubblesim::sim
