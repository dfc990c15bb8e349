// Runs a Program on the event engine: a state machine per (device, stream) walks its op list;
// an op starts when it heads its stream, its stream is free, and every dependency has ended
// (plus the edge's latency); rendezvous groups start when all members are issued.
// Not a cost model: durations come from the CostModel passed in.
#pragma once

#include "sim/exec/trace.hpp"
#include "sim/ir/program.hpp"
#include "sim/model/cost_model.hpp"
#include "sim/model/network.hpp"

namespace bubblesim::sim {

/// Simulates one iteration of `p` (finalized and valid) from t = 0. Groups with transfers go
/// over `network` when one is given; otherwise every group takes cost.group_time(). Deterministic:
/// the same inputs give the identical trace. Throws DeadlockError naming every blocked op and
/// what it waits for if the queue drains with ops pending. O((ops + edges) log queue), plus the
/// network's cost per transfer start and finish.
Trace simulate(const Program& p, const CostModel& cost, NetworkModel* network = nullptr);

}  // namespace bubblesim::sim
