#include "sim/metrics/metrics.hpp"

#include <algorithm>

#include "sim/core/error.hpp"

namespace bubblesim::sim {
namespace {

/// Splits the idle gap [gap_start, start) before compute op `id` by what it waited for: its
/// binding dependency (the one that arrived last) and, for a compute dependency, how much of
/// the gap was the producer still running versus the edge's latency.
void attribute_gap(const Program& p, const Trace& t, OpId id, Time gap_start, IdleBreakdown& ib) {
  const Time start = t.records[id].start;
  const Time gap = start - gap_start;
  if (gap <= Time::zero()) return;
  const Edge* binding = nullptr;
  Time arrival = Time::zero();
  for (const Edge& e : p.deps(id)) {
    const Time a = t.records[e.op].end + p.latency(e);
    if (binding == nullptr || a > arrival) {
      binding = &e;
      arrival = a;
    }
  }
  if (binding == nullptr) {
    ib.pipeline_bubble += gap;
    return;
  }
  const OpKind kind = p.op(binding->op).kind;
  if (kind == OpKind::Send || kind == OpKind::Recv) {
    ib.p2p_wait += gap;
    return;
  }
  if (kind == OpKind::Collective) {
    ib.collective_wait += gap;
    return;
  }
  const Time producer_done = t.records[binding->op].end;
  const Time computing = std::clamp(producer_done - gap_start, Time::zero(), gap);
  ib.pipeline_bubble += computing;
  ib.p2p_wait += gap - computing;
}

int64_t peak_activation(const Program& p, const Trace& t, const Device& d) {
  struct MemEvent {
    Time time;
    int64_t delta;
  };
  std::vector<MemEvent> events;
  size_t streams_with_memory = 0;
  for (StreamId s : d.streams) {
    bool any = false;
    for (OpId id : p.stream(s).ops) {
      const Op& op = p.op(id);
      if (op.mem_alloc != 0) events.push_back({t.records[id].start, op.mem_alloc});
      if (op.mem_free != 0) events.push_back({t.records[id].end, -static_cast<int64_t>(op.mem_free)});
      any = any || op.mem_alloc != 0 || op.mem_free != 0;
    }
    streams_with_memory += any;
  }
  // One stream's events are already in time order; frees before allocations at equal times
  // (an activation lives over [start of F, end of B/W)).
  auto order = [](const MemEvent& a, const MemEvent& b) {
    return a.time < b.time || (a.time == b.time && a.delta < b.delta);
  };
  if (streams_with_memory > 1 || !std::is_sorted(events.begin(), events.end(), order)) {
    std::stable_sort(events.begin(), events.end(), order);
  }
  int64_t live = 0;
  int64_t peak = 0;
  for (const MemEvent& e : events) {
    live += e.delta;
    peak = std::max(peak, live);
  }
  return peak;
}

}  // namespace

Metrics compute_metrics(const Program& p, const Trace& t) {
  BUBBLESIM_ASSERT(t.records.size() == p.num_ops(), "trace does not match the program");
  Metrics m;
  m.makespan = t.makespan;
  m.ops = p.num_ops();
  double idle_fraction_sum = 0;
  double span_fraction_sum = 0;
  Time busy_total;
  Time idle_total;
  for (DeviceId dev = 0; dev < p.devices().size(); ++dev) {
    const Device& d = p.devices()[dev];
    DeviceMetrics dm;
    dm.device = dev;
    BUBBLESIM_ASSERT(!d.streams.empty(), "device without streams");
    const Stream& compute = p.stream(d.streams.front());
    Time cursor;
    bool first = true;
    for (OpId id : compute.ops) {
      const OpRecord& r = t.records[id];
      if (first) dm.first_start = r.start;
      first = false;
      dm.busy += r.end - r.start;
      attribute_gap(p, t, id, cursor, dm.idle_breakdown);
      cursor = r.end;
      dm.last_end = r.end;
    }
    dm.ops = compute.ops.size();
    dm.idle_breakdown.pipeline_bubble += m.makespan - cursor;  // drain after the last op
    dm.idle = m.makespan - dm.busy;
    dm.span = dm.last_end - dm.first_start;
    dm.peak_activation = peak_activation(p, t, d);
    if (m.makespan > Time::zero()) idle_fraction_sum += dm.idle.seconds() / m.makespan.seconds();
    if (dm.span > Time::zero()) span_fraction_sum += (dm.span - dm.busy).seconds() / dm.span.seconds();
    busy_total += dm.busy;
    idle_total += dm.idle;
    m.max_idle = max(m.max_idle, dm.idle);
    m.max_span_bubble = max(m.max_span_bubble, dm.span - dm.busy);
    if (dm.peak_activation > m.peak_activation) {
      m.peak_activation = dm.peak_activation;
      m.peak_activation_device = dev;
    }
    m.devices.push_back(dm);
  }
  const double n = static_cast<double>(std::max<size_t>(1, m.devices.size()));
  m.idle_fraction = idle_fraction_sum / n;
  m.span_bubble_fraction = span_fraction_sum / n;
  m.bubble_fraction_of_ideal = busy_total > Time::zero() ? idle_total.seconds() / busy_total.seconds() : 0.0;
  return m;
}

}  // namespace bubblesim::sim
