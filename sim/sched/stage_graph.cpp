#include "sim/core/error.hpp"
#include "sim/sched/schedule.hpp"

namespace bubblesim::sim {
namespace {

void add_stage(StageGraph& g, int32_t device, int16_t chunk, bool starts_path) {
  const auto id = static_cast<int32_t>(g.device.size());
  g.device.push_back(device);
  g.chunk.push_back(chunk);
  g.prev.push_back(starts_path ? -1 : id - 1);
  g.next.push_back(-1);
  if (!starts_path) g.next[static_cast<size_t>(id - 1)] = id;
}

}  // namespace

StageGraph path_stages(const std::vector<int32_t>& device_of_stage, int32_t ranks, int32_t m) {
  StageGraph g;
  g.ranks = ranks;
  g.microbatches = m;
  std::vector<int16_t> seen(static_cast<size_t>(ranks), 0);
  for (size_t s = 0; s < device_of_stage.size(); ++s) {
    const int32_t d = device_of_stage[s];
    BUBBLESIM_ASSERT(d >= 0 && d < ranks, "stage on a device outside the pipeline");
    add_stage(g, d, seen[static_cast<size_t>(d)]++, s == 0);
  }
  return g;
}

StageGraph canonical_stages(ScheduleKind kind, const PipelineShape& s) {
  StageGraph g;
  g.ranks = s.p;
  g.microbatches = s.m;
  switch (kind) {
    case ScheduleKind::ZbV:
    case ScheduleKind::DualPipeV:
      // V mapping: stage r on rank r, then stage p + j on rank p - 1 - j.
      for (int32_t st = 0; st < 2 * s.p; ++st) {
        const bool down = st < s.p;
        add_stage(g, down ? st : 2 * s.p - 1 - st, static_cast<int16_t>(down ? 0 : 1), st == 0);
      }
      return g;
    case ScheduleKind::DualPipe:
      // Direction 0 ("f"): stage j on rank j. Direction 1 ("r"): stage j on rank p - 1 - j.
      g.microbatches = s.m / 2;
      for (int32_t j = 0; j < s.p; ++j) add_stage(g, j, 0, j == 0);
      for (int32_t j = 0; j < s.p; ++j) add_stage(g, s.p - 1 - j, 1, j == 0);
      return g;
    default:
      // Loop mapping: stage c*p + r on rank r as its chunk c (v = 1: a plain path).
      for (int32_t st = 0; st < s.p * s.v; ++st) {
        add_stage(g, st % s.p, static_cast<int16_t>(st / s.p), st == 0);
      }
      return g;
  }
}

}  // namespace bubblesim::sim
