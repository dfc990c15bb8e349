// Whole training steps on the visible GPUs (hw/cuda/node_runner, hw/cuda/gpu_runner), in one
// process, a thread per GPU: small Llama-style scenarios sized to the GPUs (a 1F1B pipeline over
// all of them; with two or more, also tensor x data parallelism with ZeRO-1, whose collectives
// run as NCCL's own). Every GPU's NCCL plan is checked first; then two iterations run and every
// op's measured times must respect what the Program orders on its GPU: each op starts after its
// stream predecessor and its dependencies there end, and ends after it starts. A hang is caught
// by the runner's stall timeout.
// Needs the CUDA runtime, cuBLAS, NCCL and the libraries next to it in tests/gpu-libs (copied at
// build time), so the binary can be carried to a GPU machine (scripts/gpu_check.sh).
// Exits 77 (CTest: skipped) when there is no usable GPU.
#include <algorithm>
#include <cstdio>
#include <exception>
#include <numeric>
#include <string>
#include <vector>

#include "hw/cuda/gpu_compute.hpp"
#include "hw/cuda/node_runner.hpp"
#include "hw/runner/comm_plan.hpp"
#include "sim/cli/commands.hpp"
#include "sim/scenario/scenario.hpp"

using namespace bubblesim;
using namespace bubblesim::hw;

namespace {

constexpr double kSlack = 2e-6;  // CUDA event resolution (about 0.5 us) and float rounding

int failures = 0;

void expect(bool ok, const std::string& what) {
  if (ok) return;
  ++failures;
  std::printf("FAIL: %s\n", what.c_str());
}

std::string scenario(int gpus, const std::string& parallel) {
  return "name: gpu-runner-test\ncluster: {gpu: h100-sxm5-80gb, nodes: 1, gpus_per_node: " + std::to_string(gpus) +
         "}\nmodel: {layers: " + std::to_string(2 * gpus) +
         ", hidden: 1024, heads: 8, kv_heads: 8, ffn_hidden: 2816, vocab: 8192, activation: swiglu}\n"
         "training: {seq_len: 1024, micro_batch_size: 1, global_batch_size: " + std::to_string(4 * gpus) +
         ", recompute: none}\nparallel: " + parallel + "\n";
}

void run(const char* what, int gpus, const std::string& parallel) {
  std::printf("== %s on %d GPU(s)\n", what, gpus);
  const sim::ClusterRun sim_run(sim::parse_scenario(scenario(gpus, parallel), "gpu_runner_test.yaml"),
                                sim::FlopsAccounting::Megatron, true);
  const sim::Program& p = sim_run.plan.program;
  std::vector<int32_t> all(static_cast<size_t>(gpus));
  std::iota(all.begin(), all.end(), 0);
  const CommPlan plan = plan_communication(sim_run.job, sim_run.plan, sim_run.trace, all);
  const std::string why = verify(plan, p);
  expect(why.empty(), std::string(what) + ": plan: " + why);
  if (!why.empty()) return;
  size_t calls = 0;
  for (const RankPlan& r : plan.ranks) {
    for (const Step& s : r.steps) calls += s.call != CommCall::None;
  }
  cuda::NodeRunner node(p, plan, 60);
  for (int it = 0; it < 2; ++it) {
    const std::vector<cuda::ReplayTimes> times = node.run_iteration();
    double makespan = 0;
    for (size_t g = 0; g < times.size(); ++g) {
      const cuda::ReplayTimes& t = times[g];
      const sim::DeviceId d = plan.ranks[g].device;
      // The runner lists the device's ops stream by stream: index them back.
      std::vector<size_t> at(p.num_ops(), SIZE_MAX);
      size_t k = 0;
      for (sim::StreamId s : p.devices()[d].streams) {
        sim::OpId previous = sim::kNone;
        for (sim::OpId op : p.stream(s).ops) {
          at[op] = k;
          expect(t.start[k] >= -kSlack && t.end[k] + kSlack >= t.start[k],
                 std::string(what) + ": " + sim::describe(p, op) + " ends before it starts");
          if (previous != sim::kNone) {
            expect(t.start[k] + kSlack >= t.end[at[previous]],
                   std::string(what) + ": " + sim::describe(p, op) + " starts before its stream predecessor ends");
          }
          previous = op;
          ++k;
        }
      }
      for (sim::StreamId s : p.devices()[d].streams) {
        for (sim::OpId op : p.stream(s).ops) {
          for (const sim::Edge& e : p.deps(op)) {
            if (p.op(e.op).device != d) continue;
            expect(t.start[at[op]] + kSlack >= t.end[at[e.op]],
                   std::string(what) + ": GPU " + std::to_string(g) + " " + sim::describe(p, op) +
                       " starts before its dependency " + sim::describe(p, e.op) + " ends");
          }
        }
      }
      makespan = std::max(makespan, t.makespan);
    }
    std::printf("   iteration %d: %.3f ms on the slowest GPU (%zu NCCL calls per iteration over %zu communicators)\n", it,
                makespan * 1e3, calls, plan.comms.size());
    expect(makespan > 0, std::string(what) + ": nothing was timed");
  }
}

}  // namespace

int main() {
  hw::cuda::set_run_environment();  // as bubblesim-hw does, before CUDA starts
  std::string why;
  const int visible = hw::cuda::device_count(&why);
  if (visible == 0) {
    std::printf("gpu_runner_test: no usable GPU (%s): skipped\n", why.c_str());
    return 77;
  }
  const int gpus = std::min(visible, 8);
  try {
    run("1F1B pipeline over every GPU", gpus, "{pp: " + std::to_string(gpus) + ", schedule: 1f1b}");
    if (gpus >= 2 && gpus % 2 == 0) {
      run("tensor x data parallel, ZeRO-1", gpus, "{tp: 2, dp: " + std::to_string(gpus / 2) + ", zero: 1}");
    }
  } catch (const std::exception& e) {
    std::printf("FAIL: %s\n", e.what());
    return 1;
  }
  std::printf("gpu_runner_test: %s\n", failures == 0 ? "ok" : "FAILED");
  return failures == 0 ? 0 : 1;
}
