// A whole cluster job simulated at op level with network flows: Llama-3-70B, tp 8, pp 8, 1F1B,
// ZeRO-1, 64 microbatches, on H100 nodes, with data parallelism scaled to 64, 256, 1024 and 4096
// GPUs. Times plan + build + validate + simulate + metrics, as `bubblesim run` does.
#include <benchmark/benchmark.h>

#include "sim/exec/executor.hpp"
#include "sim/ir/validate.hpp"
#include "sim/metrics/metrics.hpp"
#include "sim/model/network.hpp"
#include "sim/sched/training.hpp"

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
    const ClusterJob job = plan_cluster(parse_scenario(text, "bench.yaml"));
    const Topology topo(job.cluster);
    const RooflineCompute compute(*job.cluster.gpu);
    const TrainingPlan plan = build_training(job, topo, compute);
    require_valid(plan.program);
    FlowNetwork net(topo);
    const Trace t = simulate(plan.program, GivenTimes{}, &net);
    const Metrics m = compute_metrics(plan.program, t);
    benchmark::DoNotOptimize(m.makespan);
    ops = plan.program.num_ops();
  }
  state.counters["ops"] = static_cast<double>(ops);
}

}  // namespace

BENCHMARK(BM_Llama70B)->Arg(64)->Arg(256)->Arg(1024)->Arg(4096)->Unit(benchmark::kMillisecond);
