#include "sim/core/error.hpp"
#include "sim/sched/generators.hpp"
#include "sim/sched/schedule.hpp"

namespace bubblesim::sim {

std::vector<RankActions> generate(ScheduleKind kind, const PipelineShape& s, const StageGraph& g) {
  BUBBLESIM_ASSERT(info(kind).any_placement || g.size() == canonical_stages(kind, s).size(),
                   "schedule needs its canonical stage graph");
  switch (kind) {
    case ScheduleKind::Naive: return detail::naive(g);
    case ScheduleKind::GPipe: return detail::fill_drain(g, false);
    case ScheduleKind::LoopedBfs: return detail::fill_drain(g, true);
    case ScheduleKind::OneFOneB: return detail::one_f_one_b(s);
    case ScheduleKind::Interleaved: return detail::interleaved(s);
    case ScheduleKind::ZbH1: return detail::zero_bubble_h(s, 1);
    case ScheduleKind::ZbH2: return detail::zero_bubble_h(s, 2);
    case ScheduleKind::ZbV: return detail::zero_bubble_v(s);
    case ScheduleKind::DualPipe: return detail::dualpipe(s, false);
    case ScheduleKind::DualPipeV: return detail::dualpipe(s, true);
  }
  BUBBLESIM_ASSERT(false, "unhandled schedule kind");
}

}  // namespace bubblesim::sim
