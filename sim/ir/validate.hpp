// Structural checks of a finalized Program: every problem found, not just the first.
// Not a schedule checker: whether a schedule is good is for metrics, not for validate().
#pragma once

#include <string>
#include <vector>

#include "sim/ir/program.hpp"

namespace bubblesim::sim {

/// Returns every problem of `p` (empty when valid): dependencies on missing ops or on
/// themselves, unpaired or malformed send/recv, malformed collectives, negative durations,
/// and dependency cycles (stream order, dependencies and rendezvous groups together).
/// O(ops + edges). `p` must be finalized.
std::vector<std::string> validate(const Program& p);

/// Throws InputError listing all problems (at most `max_listed`, then a count) if any.
void require_valid(const Program& p, size_t max_listed = 20);

}  // namespace bubblesim::sim
