// Metrics derived from a Trace and its Program: makespan, per-device busy / idle / span, idle
// broken down by cause, bubble fractions in both conventions, and peak activation memory.
// Not a report: sim/report formats these; nothing here prints.
#pragma once

#include <vector>

#include "sim/exec/trace.hpp"
#include "sim/ir/program.hpp"

namespace bubblesim::sim {

struct IdleBreakdown {
  Time pipeline_bubble;  // waiting for another device's compute (fill, drain, dependencies)
  Time p2p_wait;         // waiting for a point-to-point transfer or its latency
  Time collective_wait;  // waiting for a collective
  Time imbalance;        // waiting for another ring rank's work (causal load imbalance); not separated
                         // in pipeline_only
  Time sp_wait;          // waiting for sequence-parallel traffic: Ulysses all-to-alls, ring K/V
                         // blocks, all-gather CP
};

struct DeviceMetrics {
  DeviceId device = 0;
  size_t ops = 0;
  Time busy;   // time the compute stream runs a compute op (collectives on it count as waiting)
  Time idle;   // makespan - busy
  Time span;   // last end - first start on the compute stream
  Time first_start;
  Time last_end;
  IdleBreakdown idle_breakdown;
  int64_t peak_activation = 0;  // in Program::memory_unit
};

struct Metrics {
  Time makespan;
  std::vector<DeviceMetrics> devices;
  double idle_fraction = 0;             // mean over devices of idle / makespan
  double bubble_fraction_of_ideal = 0;  // total idle / total busy
  double span_bubble_fraction = 0;      // mean over devices of (span - busy) / span
  Time max_idle;
  Time max_span_bubble;                 // max over devices of span - busy
  int64_t peak_activation = 0;          // max over devices
  DeviceId peak_activation_device = 0;
  size_t ops = 0;
};

/// O(ops + edges), plus a sort of memory events for devices with several streams.
Metrics compute_metrics(const Program& p, const Trace& t);

}  // namespace bubblesim::sim

namespace bubblesim::sim {

/// The chain of ops that bounds the iteration, first to last: from the op that ends last, each
/// step goes back to what made the op start when it did (the dependency that arrived last, the
/// previous op of its stream, or the group member issued last). O(length x degree).
std::vector<OpId> critical_path(const Program& p, const Trace& t);

}  // namespace bubblesim::sim
