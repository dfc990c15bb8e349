#include "sim/metrics/metrics.hpp"

#include <algorithm>

#include "sim/core/error.hpp"

namespace bubblesim::sim {
namespace {

bool is_sequence_parallel(Traffic t) {
  return t == Traffic::Ulysses || t == Traffic::Ring || t == Traffic::ContextGather;
}

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
  const Op& on = p.op(binding->op);
  const OpKind kind = on.kind;
  const bool sp = is_sequence_parallel(on.label.traffic);
  if (kind == OpKind::Send || kind == OpKind::Recv) {
    // Until the transfer began, the device waited for the sender's work (a bubble, or for a
    // ring, the other rank's heavier share); then for the bytes themselves.
    const Time before = std::clamp(t.records[binding->op].start - gap_start, Time::zero(), gap);
    (sp ? ib.imbalance : ib.pipeline_bubble) += before;
    (sp ? ib.sp_wait : ib.p2p_wait) += gap - before;
    return;
  }
  if (kind == OpKind::Collective) {
    (sp ? ib.sp_wait : ib.collective_wait) += gap;
    return;
  }
  const Time producer_done = t.records[binding->op].end;
  const Time computing = std::clamp(producer_done - gap_start, Time::zero(), gap);
  ib.pipeline_bubble += computing;
  ib.p2p_wait += gap - computing;
}

/// Peak of live activation units on a device with several streams: its alloc/free events
/// sorted by time, frees first at equal times (an activation lives over [start of F, end of
/// B/W)).
int64_t peak_activation_sorted(const Program& p, const Trace& t, const Device& d) {
  struct MemEvent {
    Time time;
    int64_t delta;
  };
  std::vector<MemEvent> events;
  for (StreamId s : d.streams) {
    for (OpId id : p.stream(s).ops) {
      const Op& op = p.op(id);
      if (op.mem_alloc != 0) events.push_back({t.records[id].start, op.mem_alloc});
      if (op.mem_free != 0) events.push_back({t.records[id].end, -static_cast<int64_t>(op.mem_free)});
    }
  }
  std::stable_sort(events.begin(), events.end(), [](const MemEvent& a, const MemEvent& b) {
    return a.time < b.time || (a.time == b.time && a.delta < b.delta);
  });
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
  BUBBLESIM_ASSERT(p.finalized(), "compute_metrics() needs a finalized program");
  BUBBLESIM_ASSERT(t.records.size() == p.num_ops(), "trace does not match the program");
  Metrics m;
  m.makespan = t.makespan;
  m.ops = p.num_ops();
  const size_t devices = p.devices().size();
  m.devices.resize(devices);
  // One pass in op-id order. Ids grow along every stream, so each stream's ops are met in
  // stream order, which on one stream is also time order.
  std::vector<StreamId> compute_stream(devices);
  std::vector<uint8_t> single_stream(devices);
  std::vector<Time> cursor(devices);
  std::vector<int64_t> live(devices, 0);
  std::vector<uint8_t> seen(devices, 0);
  std::vector<Time> last_comm_end(devices);  // the device's last op on a communication stream
  std::vector<OpKind> last_comm_kind(devices, OpKind::Collective);
  for (DeviceId d = 0; d < devices; ++d) {
    compute_stream[d] = p.compute_stream(d);  // kNone: the device has no busy time
    single_stream[d] = p.devices()[d].streams.size() == 1;
    m.devices[d].device = d;
  }
  for (OpId id = 0; id < p.num_ops(); ++id) {
    const Op& op = p.op(id);
    const DeviceId d = op.device;
    DeviceMetrics& dm = m.devices[d];
    const OpRecord& r = t.records[id];
    if (single_stream[d]) {
      live[d] += op.mem_alloc;
      dm.peak_activation = std::max(dm.peak_activation, live[d]);
      live[d] -= op.mem_free;
    }
    if (op.stream != compute_stream[d]) {
      if (r.end > last_comm_end[d]) last_comm_end[d] = r.end, last_comm_kind[d] = op.kind;
      continue;
    }
    BUBBLESIM_ASSERT(r.start >= cursor[d], "op ids do not follow stream order");
    if (!seen[d]) dm.first_start = r.start;
    seen[d] = 1;
    attribute_gap(p, t, id, cursor[d], dm.idle_breakdown);
    // A collective or transfer the compute stream waits on (tensor parallelism) is not work.
    if (op.kind == OpKind::Compute) {
      dm.busy += r.end - r.start;
    } else if (is_sequence_parallel(op.label.traffic)) {
      dm.idle_breakdown.sp_wait += r.end - r.start;
    } else if (op.kind == OpKind::Collective) {
      dm.idle_breakdown.collective_wait += r.end - r.start;
    } else {
      dm.idle_breakdown.p2p_wait += r.end - r.start;
    }
    cursor[d] = r.end;
    dm.last_end = r.end;
    ++dm.ops;
  }
  // The latest compute end among each device's peers (itself included).
  std::vector<Time> peer_end(cursor);
  {
    std::vector<std::pair<uint32_t, Time>> group_end;
    for (DeviceId d = 0; d < devices; ++d) {
      const uint32_t g = p.devices()[d].peer_group;
      if (g == kNone) continue;
      if (group_end.size() <= g) group_end.resize(g + 1, {0, Time::zero()});
      group_end[g].second = max(group_end[g].second, cursor[d]);
    }
    for (DeviceId d = 0; d < devices; ++d) {
      const uint32_t g = p.devices()[d].peer_group;
      if (g != kNone) peer_end[d] = group_end[g].second;
    }
  }
  double idle_fraction_sum = 0;
  double span_fraction_sum = 0;
  double busy_total = 0;  // seconds: a sum over thousands of devices can exceed int64 ps
  double idle_total = 0;
  for (DeviceId d = 0; d < devices; ++d) {
    DeviceMetrics& dm = m.devices[d];
    if (!single_stream[d]) dm.peak_activation = peak_activation_sorted(p, t, p.devices()[d]);
    // After the last compute op: the device's own trailing communication (say, the gradient
    // reduction and ZeRO's parameter all-gather), then the drain until the slowest device ends.
    const Time own = std::max(Time::zero(), last_comm_end[d] - cursor[d]);
    (last_comm_kind[d] == OpKind::Collective ? dm.idle_breakdown.collective_wait : dm.idle_breakdown.p2p_wait) += own;
    // Until its slowest peer (if any) finishes, the device waits on uneven work.
    const Time peers = std::clamp(peer_end[d] - cursor[d] - own, Time::zero(), m.makespan - cursor[d] - own);
    dm.idle_breakdown.imbalance += peers;
    dm.idle_breakdown.pipeline_bubble += m.makespan - cursor[d] - own - peers;
    dm.idle = m.makespan - dm.busy;
    dm.span = dm.last_end - dm.first_start;
    if (m.makespan > Time::zero()) idle_fraction_sum += dm.idle.seconds() / m.makespan.seconds();
    if (dm.span > Time::zero()) span_fraction_sum += (dm.span - dm.busy).seconds() / dm.span.seconds();
    busy_total += dm.busy.seconds();
    idle_total += dm.idle.seconds();
    m.max_idle = max(m.max_idle, dm.idle);
    m.max_span_bubble = max(m.max_span_bubble, dm.span - dm.busy);
    if (dm.peak_activation > m.peak_activation) {
      m.peak_activation = dm.peak_activation;
      m.peak_activation_device = d;
    }
  }
  const double n = static_cast<double>(std::max<size_t>(1, devices));
  m.idle_fraction = idle_fraction_sum / n;
  m.span_bubble_fraction = span_fraction_sum / n;
  m.bubble_fraction_of_ideal = busy_total > 0 ? idle_total / busy_total : 0.0;
  return m;
}

}  // namespace bubblesim::sim

namespace bubblesim::sim {

std::vector<OpId> critical_path(const Program& p, const Trace& t) {
  std::vector<OpId> path;
  if (p.num_ops() == 0) return path;
  std::vector<OpId> prev_in_stream(p.num_ops(), kNone);
  for (const Stream& s : p.streams()) {
    for (size_t i = 1; i < s.ops.size(); ++i) prev_in_stream[s.ops[i]] = s.ops[i - 1];
  }
  OpId cur = 0;
  for (OpId id = 1; id < p.num_ops(); ++id) {
    if (t.records[id].end > t.records[cur].end) cur = id;
  }
  std::vector<uint8_t> seen(p.num_ops(), 0);
  while (cur != kNone && !seen[cur]) {
    seen[cur] = 1;
    path.push_back(cur);
    const Time start = t.records[cur].start;
    OpId next = kNone;
    Time best = Time::zero();
    for (const Edge& e : p.deps(cur)) {  // the dependency that arrived last
      const Time arrival = t.records[e.op].end + p.latency(e);
      if (arrival <= start && (next == kNone || arrival > best)) {
        next = e.op;
        best = arrival;
      }
    }
    const OpId pred = prev_in_stream[cur];
    if (pred != kNone && (next == kNone || t.records[pred].end > best)) {
      next = pred;
      best = t.records[pred].end;
    }
    if (const GroupId g = p.op(cur).group; g != kNone) {  // a rendezvous waits for its last member
      for (OpId m : p.members(g)) {
        if (m != cur && t.records[m].start > best && !seen[m]) {
          next = m;
          best = t.records[m].start;
        }
      }
    }
    cur = next;
  }
  std::reverse(path.begin(), path.end());
  return path;
}

}  // namespace bubblesim::sim
