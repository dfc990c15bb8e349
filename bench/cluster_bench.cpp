// A whole cluster job simulated at op level with network flows: Llama-3-70B, tp 8, pp 8, 1F1B,
// ZeRO-1, 64 microbatches, on H100 nodes, with data parallelism scaled to 64, 256, 1024 and 4096
// GPUs. Times plan + build + validate + simulate + report figures (ClusterRun, as `bubblesim run`
// does). Also the
// sequence-parallel cases of issue 4 (run from the repository root: they read scenarios/).
#include <benchmark/benchmark.h>

#include <sstream>

#include "sim/cli/commands.hpp"
#include "sim/cli/sweep.hpp"

using namespace bubblesim;
using namespace bubblesim::sim;

namespace {

void BM_Llama70B(benchmark::State& state) {
  const int gpus = static_cast<int>(state.range(0));
  const int dp = gpus / 64;
  const std::string text = "cluster: {gpu: h100-sxm5-80gb, nodes: " + std::to_string(gpus / 8) +
                           ", gpus_per_node: 8}\nmodel: {preset: llama3-70b}\ntraining: {seq_len: 8192, "
                           "global_batch_size: " + std::to_string(64 * dp) + ", recompute: selective}\n"
                           "parallel: {tp: 8, pp: 8, dp: " + std::to_string(dp) + ", schedule: 1f1b, zero: 1}\n";
  size_t ops = 0;
  for (auto _ : state) {
    const Scenario sc = parse_scenario(text, "bench.yaml");
    const ClusterRun run(sc, FlopsAccounting::Megatron);  // what `bubblesim run` does
    benchmark::DoNotOptimize(run.result.iteration_s);
    ops = run.plan.program.num_ops();
  }
  state.counters["ops"] = static_cast<double>(ops);
}

/// Issue 4's case: ring 8 x Ulysses 8 x pp 16 on 1024 H100 (scenarios/bench/usp-llama3-70b-1024xh100.yaml),
/// and the USP study's sweep of 5 splits x 10 lengths of Llama-3-8B on 2 x 8 A800 (one thread).
void BM_Usp1024(benchmark::State& state) {
  const Scenario sc = load_scenario("scenarios/bench/usp-llama3-70b-1024xh100.yaml");
  size_t ops = 0;
  for (auto _ : state) {
    const ClusterRun run(sc, FlopsAccounting::Megatron);
    benchmark::DoNotOptimize(run.result.iteration_s);
    ops = run.plan.program.num_ops();
  }
  state.counters["ops"] = static_cast<double>(ops);
}

void BM_UspSweep50(benchmark::State& state) {
  SweepOptions opt;
  opt.scenario = "scenarios/usp/llama3-8b-2x8-a800.yaml";
  opt.vary = {"parallel.ulysses+parallel.ring=1+16,2+8,4+4,8+2,16+1",
              "training.seq_len=8K,16K,32K,48K,64K,96K,128K,160K,192K,208K"};
  opt.jobs = static_cast<int>(state.range(0));
  opt.progress = false;
  std::ostringstream quiet;
  for (auto _ : state) benchmark::DoNotOptimize(run_sweep(opt, quiet).size());
}

}  // namespace

BENCHMARK(BM_Usp1024)->Unit(benchmark::kMillisecond)->Iterations(3);
BENCHMARK(BM_UspSweep50)->Arg(1)->Arg(0)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Llama70B)->Arg(64)->Arg(256)->Arg(1024)->Arg(4096)->Unit(benchmark::kMillisecond);
