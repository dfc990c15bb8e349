// Whole pipeline runs as the CLI does them (generate, lower, validate, simulate, metrics),
// and generation alone, for 1F1B at p=64, m=1024 and p=512, m=4096 (about 4.2 million ops).
#include <benchmark/benchmark.h>

#include "sim/exec/executor.hpp"
#include "sim/ir/validate.hpp"
#include "sim/metrics/metrics.hpp"
#include "sim/sched/lower.hpp"

using namespace bubblesim;
using namespace bubblesim::sim;

namespace {

Program build(ScheduleKind kind, int p, int m, int v, bool split) {
  const PipelineShape s{p, m, v, 0};
  const StageGraph g = canonical_stages(kind, s);
  std::vector<StageCost> costs(g.size(), StageCost{Time::from_seconds(1), Time::from_seconds(2),
                                                   Time::from_seconds(split ? 1 : 0), Time::from_seconds(split ? 1 : 0),
                                                   1, -1});
  LowerOptions opt;
  opt.p2p_latency = Time::from_seconds(0.01);
  return lower(generate(kind, s, g), g, costs, opt);
}

void BM_GenerateAndLower(benchmark::State& state) {
  const int p = static_cast<int>(state.range(0));
  const int m = static_cast<int>(state.range(1));
  size_t ops = 0;
  for (auto _ : state) {
    const Program prog = build(ScheduleKind::OneFOneB, p, m, 1, false);
    ops = prog.num_ops();
    benchmark::DoNotOptimize(ops);
  }
  state.counters["ops/s"] = benchmark::Counter(static_cast<double>(ops * state.iterations()), benchmark::Counter::kIsRate);
}

void run_whole(benchmark::State& state, ScheduleKind kind, int v, bool split) {
  const int p = static_cast<int>(state.range(0));
  const int m = static_cast<int>(state.range(1));
  size_t ops = 0;
  for (auto _ : state) {
    const Program prog = build(kind, p, m, v, split);
    require_valid(prog);
    const Trace t = simulate(prog, GivenTimes{});
    const Metrics metrics = compute_metrics(prog, t);
    ops = prog.num_ops();
    benchmark::DoNotOptimize(metrics.makespan);
  }
  state.counters["ops"] = static_cast<double>(ops);
  state.counters["ops/s"] = benchmark::Counter(static_cast<double>(ops * state.iterations()), benchmark::Counter::kIsRate);
}

void BM_Whole1F1B(benchmark::State& state) { run_whole(state, ScheduleKind::OneFOneB, 1, false); }
void BM_WholeZbV(benchmark::State& state) { run_whole(state, ScheduleKind::ZbV, 2, true); }
void BM_WholeDualPipeV(benchmark::State& state) { run_whole(state, ScheduleKind::DualPipeV, 2, true); }

}  // namespace

BENCHMARK(BM_GenerateAndLower)->Args({64, 1024})->Args({512, 4096})->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Whole1F1B)->Args({64, 1024})->Args({512, 4096})->Unit(benchmark::kMillisecond)->Iterations(3);
BENCHMARK(BM_WholeZbV)->Args({64, 1024})->Unit(benchmark::kMillisecond);
BENCHMARK(BM_WholeDualPipeV)->Args({64, 1024})->Unit(benchmark::kMillisecond);
