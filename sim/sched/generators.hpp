// Internal: one generator per schedule family, dispatched by generate() in generate.cpp.
// Not public API: callers use sim/sched/schedule.hpp.
#pragma once

#include <vector>

#include "sim/sched/schedule.hpp"

namespace bubblesim::sim::detail {

std::vector<std::vector<int32_t>> local_stages(const StageGraph& g);
std::vector<RankActions> naive(const StageGraph& g);
std::vector<RankActions> fill_drain(const StageGraph& g, bool backward_descending);
std::vector<RankActions> one_f_one_b(const PipelineShape& s);
std::vector<RankActions> interleaved(const PipelineShape& s);
std::vector<RankActions> zero_bubble_h(const PipelineShape& s, int warmup_factor);
std::vector<RankActions> zero_bubble_v(const PipelineShape& s);
std::vector<RankActions> dualpipe(const PipelineShape& s, bool cut_in_half);

}  // namespace bubblesim::sim::detail
