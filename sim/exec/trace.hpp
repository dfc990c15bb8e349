// The trace: one OpRecord per op (start and end), the common output of the simulator and of
// the hardware backend, keyed by op id so predictions and measurements join op by op.
// Not metrics: sim/metrics derives everything a report shows from a Trace and its Program.
#pragma once

#include <vector>

#include "sim/core/units.hpp"
#include "sim/ir/program.hpp"

namespace bubblesim::sim {

struct OpRecord {
  OpId op = kNone;
  Time start;  // when the op began on its stream (for comm ops: when it was issued)
  Time end;
};

struct Trace {
  std::vector<OpRecord> records;  // indexed by op id
  Time makespan;                  // latest end over all ops
  uint64_t events = 0;            // engine events processed (for speed figures)
};

}  // namespace bubblesim::sim
