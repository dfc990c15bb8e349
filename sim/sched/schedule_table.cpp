#include <algorithm>

#include "sim/core/error.hpp"
#include "sim/sched/schedule.hpp"

namespace bubblesim::sim {

const std::vector<ScheduleInfo>& schedule_table() {
  static const std::vector<ScheduleInfo> table{
      {ScheduleKind::Naive, "naive", 0, false, false, true,
       "layer-wise model parallelism: each microbatch goes all the way forward and back before the next"},
      {ScheduleKind::GPipe, "gpipe", 0, false, false, true, "all forwards, then all backwards (fill-drain)"},
      {ScheduleKind::OneFOneB, "1f1b", 1, false, false, false,
       "PipeDream-Flush: p-r-1 warm-up forwards, then one forward one backward"},
      {ScheduleKind::Interleaved, "interleaved-1f1b", 0, false, false, false,
       "Megatron virtual pipeline: v chunks per rank in a loop mapping"},
      {ScheduleKind::LoopedBfs, "looped-bfs", 0, false, false, true,
       "breadth-first: every microbatch of a local stage before the next stage"},
      {ScheduleKind::ZbH1, "zb-h1", 1, true, false, false, "zero bubble H1: weight gradients deferred, 1F1B memory"},
      {ScheduleKind::ZbH2, "zb-h2", 1, true, false, false,
       "zero bubble H2: twice the warm-up forwards, 2p-1 activations, zero span bubble"},
      {ScheduleKind::ZbV, "zb-v", 2, true, false, false, "zero bubble V: 2 chunks per rank in a V mapping"},
      {ScheduleKind::DualPipe, "dualpipe", 1, true, true, false,
       "DeepSeek DualPipe: two opposite pipelines with overlapped F&B pairs"},
      {ScheduleKind::DualPipeV, "dualpipe-v", 2, true, true, false,
       "DualPipe cut in half: one pipeline of 2p stages in a V mapping"},
  };
  return table;
}

const ScheduleInfo& info(ScheduleKind k) {
  for (const ScheduleInfo& i : schedule_table()) {
    if (i.kind == k) return i;
  }
  BUBBLESIM_ASSERT(false, "schedule missing from the table");
}

std::string schedule_names() {
  std::string s;
  for (const ScheduleInfo& i : schedule_table()) s += (s.empty() ? "" : ", ") + std::string(i.name);
  return s;
}

ScheduleKind parse_schedule(std::string_view name) {
  for (const ScheduleInfo& i : schedule_table()) {
    if (i.name == name) return i.kind;
  }
  throw InputError("unknown schedule \"" + std::string(name) + "\" (valid: " + schedule_names() + ")");
}

std::vector<std::string> check_shape(ScheduleKind kind, const PipelineShape& s) {
  std::vector<std::string> errors;
  const std::string name(info(kind).name);
  auto need = [&](bool ok, const std::string& msg) {
    if (!ok) errors.push_back(msg);
  };
  need(s.p >= 1, "stages must be >= 1 (got " + std::to_string(s.p) + ")");
  need(s.m >= 1, "microbatches must be >= 1 (got " + std::to_string(s.m) + ")");
  need(s.v >= 1, "virtual_stages must be >= 1 (got " + std::to_string(s.v) + ")");
  need(s.v <= INT16_MAX, "virtual_stages must be at most " + std::to_string(INT16_MAX) + " (got " +
                              std::to_string(s.v) + ")");
  if (!errors.empty()) return errors;
  const int fixed = info(kind).fixed_chunks;
  if (fixed != 0 && s.v != fixed) {
    errors.push_back(name + " runs " + std::to_string(fixed) + " chunk(s) per rank, so virtual_stages must be " +
                     std::to_string(fixed) + " (got " + std::to_string(s.v) + ")" +
                     (fixed == 1 ? "; use interleaved-1f1b, zb-v or dualpipe-v for chunks" : ""));
  }
  if ((kind == ScheduleKind::Naive || kind == ScheduleKind::GPipe) && s.v != 1) {
    errors.push_back(name + " has no chunks, so virtual_stages must be 1 (got " + std::to_string(s.v) + ")");
  }
  if (kind == ScheduleKind::Interleaved) {
    const int n = s.group_size == 0 ? s.p : s.group_size;
    need(s.v >= 2, "interleaved-1f1b needs virtual_stages >= 2 (got " + std::to_string(s.v) + "); use 1f1b for 1");
    need(n >= s.p && n <= s.m, "interleaved-1f1b needs p <= microbatch group size <= m (p=" + std::to_string(s.p) +
                                   ", group size=" + std::to_string(n) + ", m=" + std::to_string(s.m) + ")");
    const int rem = s.m % n;
    need(rem == 0 || rem >= s.p,
         "interleaved-1f1b needs m mod group size to be 0 or >= p, else dependency bubbles (m=" + std::to_string(s.m) +
             ", group size=" + std::to_string(n) + ", remainder " + std::to_string(rem) + " < p=" +
             std::to_string(s.p) + "); choose m a multiple of " + std::to_string(n) +
             " or set parallel.microbatch_group_size");
  }
  if (kind == ScheduleKind::ZbH1) need(s.m >= s.p, "zb-h1 needs microbatches >= stages (m=" + std::to_string(s.m) +
                                                       ", p=" + std::to_string(s.p) + ")");
  if (kind == ScheduleKind::ZbH2) need(s.m >= 2 * s.p, "zb-h2 needs microbatches >= 2 x stages (m=" +
                                                           std::to_string(s.m) + ", p=" + std::to_string(s.p) + ")");
  if (kind == ScheduleKind::DualPipe) {
    need(s.p % 2 == 0, "dualpipe needs an even number of ranks (got " + std::to_string(s.p) + ")");
    need(s.m % 2 == 0, "dualpipe needs an even number of microbatches (got " + std::to_string(s.m) + ")");
    need(s.m >= 2 * s.p, "dualpipe needs microbatches >= 2 x ranks (m=" + std::to_string(s.m) +
                             ", p=" + std::to_string(s.p) + ")");
  }
  if (kind == ScheduleKind::DualPipeV) need(s.m >= 2 * s.p, "dualpipe-v needs microbatches >= 2 x ranks (m=" +
                                                                std::to_string(s.m) + ", p=" + std::to_string(s.p) + ")");
  return errors;
}

}  // namespace bubblesim::sim
