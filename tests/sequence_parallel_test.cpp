// Sequence parallelism: the exact causal work and bytes of algorithms.md 5.3 / 5.4, and the
// training Programs built with Ulysses, ring attention, USP and all-gather CP.
#include <catch2/catch.hpp>

#include <algorithm>
#include <map>
#include <set>

#include "sim/core/error.hpp"
#include "sim/exec/executor.hpp"
#include "sim/ir/validate.hpp"
#include "sim/metrics/metrics.hpp"
#include "sim/model/network.hpp"
#include "sim/sched/training.hpp"
#include "sim/workload/sequence_parallel.hpp"
#include "sim/workload/transformer.hpp"

using namespace bubblesim;
using namespace bubblesim::sim;

namespace {

constexpr int64_t S = 8192, P = 4, n = 2048;

std::vector<int64_t> steps(RingLayout layout, int64_t rank) {
  std::vector<int64_t> out;
  for (int64_t t = 0; t < P; ++t) out.push_back(ring_step_work(layout, P, n, rank, t).pairs);
  return out;
}

/// Step-synchronous critical path: the slowest rank of each step, summed.
int64_t critical(RingLayout layout) {
  int64_t total = 0;
  for (int64_t t = 0; t < P; ++t) {
    int64_t most = 0;
    for (int64_t r = 0; r < P; ++r) most = std::max(most, ring_step_work(layout, P, n, r, t).pairs);
    total += most;
  }
  return total;
}

struct Built {
  ClusterJob job;
  TrainingPlan plan;
  Trace trace;
  Metrics metrics;
};

/// Llama-3-8B (optionally fewer layers) on `nodes` x 8 GPUs with the given parallel section.
Built build(int nodes, const std::string& parallel, const std::string& training, int layers = 4,
            const std::string& gpu = "h100-sxm5-80gb") {
  const std::string text = "cluster: {gpu: " + gpu + ", nodes: " + std::to_string(nodes) +
                           ", gpus_per_node: 8}\nmodel: {preset: llama3-8b, layers: " + std::to_string(layers) +
                           "}\ntraining: {" + training + "}\nparallel: {" + parallel + "}\n";
  Built b{plan_cluster(parse_scenario(text, "sp.yaml")), {}, {}, {}};
  const Topology topo(b.job.cluster);
  const RooflineCompute compute(*b.job.cluster.gpu);
  b.plan = build_training(b.job, topo, compute);
  REQUIRE(validate(b.plan.program).empty());
  FlowNetwork net(topo);
  b.trace = simulate(b.plan.program, GivenTimes{}, &net);
  b.metrics = compute_metrics(b.plan.program, b.trace);
  return b;
}

/// Ops and bytes per traffic class, over all simulated devices.
struct TrafficCount {
  size_t ops = 0;
  int64_t bytes = 0;
};
std::map<Traffic, TrafficCount> traffic(const Program& p) {
  std::map<Traffic, TrafficCount> out;
  std::vector<uint8_t> seen(p.groups().size(), 0);
  for (OpId id = 0; id < p.num_ops(); ++id) {
    const Op& op = p.op(id);
    if (op.label.traffic == Traffic::None) continue;
    TrafficCount& c = out[op.label.traffic];
    ++c.ops;
    if (op.group != kNone && !seen[op.group]) {
      seen[op.group] = 1;
      c.bytes += p.groups()[op.group].bytes.value;
    }
  }
  return out;
}

}  // namespace

TEST_CASE("ring causal work per rank and step is algorithms.md 5.3 exactly", "[sp]") {
  CHECK(steps(RingLayout::Contiguous, 3) == std::vector<int64_t>{2'098'176, 4'194'304, 4'194'304, 4'194'304});
  CHECK(steps(RingLayout::Contiguous, 0) == std::vector<int64_t>{2'098'176, 0, 0, 0});
  const int64_t contiguous[] = {2'098'176, 6'292'480, 10'486'784, 14'681'088};
  const int64_t striped[] = {8'386'560, 8'388'608, 8'390'656, 8'392'704};
  int64_t sums[3] = {0, 0, 0};
  for (int64_t r = 0; r < P; ++r) {
    CHECK(ring_rank_pairs(RingLayout::Contiguous, P, n, r) == contiguous[r]);
    CHECK(ring_rank_pairs(RingLayout::Zigzag, P, n, r) == 8'389'632);
    CHECK(steps(RingLayout::Zigzag, r) == std::vector<int64_t>{2'098'176, 2'097'152, 2'097'152, 2'097'152});
    CHECK(ring_rank_pairs(RingLayout::Striped, P, n, r) == striped[r]);
    sums[0] += ring_rank_pairs(RingLayout::Contiguous, P, n, r);
    sums[1] += ring_rank_pairs(RingLayout::Zigzag, P, n, r);
    sums[2] += ring_rank_pairs(RingLayout::Striped, P, n, r);
  }
  CHECK(steps(RingLayout::Striped, 0) == std::vector<int64_t>{2'098'176, 2'096'128, 2'096'128, 2'096'128});
  for (int64_t s : sums) CHECK(s == S * (S + 1) / 2);
  CHECK(critical(RingLayout::Contiguous) == 14'681'088);
  CHECK(critical(RingLayout::Zigzag) == 8'389'632);
  CHECK(critical(RingLayout::Striped) == 8'392'704);
  CHECK(static_cast<double>(critical(RingLayout::Contiguous)) / critical(RingLayout::Zigzag) == Approx(1.7499).margin(1e-4));
  // Zigzag steps after the first are half-blocks of the non-causal kind: 2c x c or c x 2c.
  const RingStepWork early = ring_step_work(RingLayout::Zigzag, P, n, 2, 1);  // source 1 < 2
  const RingStepWork late = ring_step_work(RingLayout::Zigzag, P, n, 1, 2);   // source 3 > 1
  CHECK((early.q_len == 2048 && early.kv_len == 1024 && early.causal_fraction() == 1.0));
  CHECK((late.q_len == 1024 && late.kv_len == 2048 && late.causal_fraction() == 1.0));
  // Forward attention FLOPs per layer per sequence (a = 32, d = 128): 4 d a x all pairs.
  CHECK(4.0 * 128 * 32 * static_cast<double>(sums[0]) == 549'822'922'752.0);
  CHECK_THROWS_AS(parse_ring_layout("diagonal"), InputError);
}

TEST_CASE("sequence-parallel bytes per rank and layer are algorithms.md 5.4 exactly", "[sp]") {
  SpShape s{1, 8192, 32, 8, 128, 1, 1, 4};
  const SpTraffic ring = sp_traffic(s, false);
  CHECK(ring.kv_block == 2 * 4'194'304);
  CHECK(ring.ring_forward == 25'165'824);
  CHECK(ring.ring_backward == 25'165'824 + 67'108'864);  // fp32 accumulators, 4 hops
  s.accumulator_bytes = 2;
  CHECK(sp_traffic(s, false).ring_backward == 25'165'824 + 33'554'432);
  CHECK(sp_traffic(s, true).allgather_forward == 25'165'824);
  SpShape u{1, 8192, 32, 8, 128, 1, 4, 1};
  CHECK(sp_traffic(u, false).ulysses_forward == 31'457'280);
  CHECK(sp_traffic(u, false).ulysses_backward == 31'457'280);
  CHECK(sp_traffic(u, false).ring_forward == 0);
  SpShape usp{1, 8192, 32, 8, 128, 1, 2, 4};
  const SpTraffic h = sp_traffic(usp, false);
  CHECK(h.ulysses_forward == 10'485'760);
  CHECK(h.ring_forward == 12'582'912);
  CHECK(h.ulysses_forward + h.ring_forward == 23'068'672);
}

TEST_CASE("Ulysses puts four all-to-alls around attention each way, on a/U heads", "[sp]") {
  LayerShape s{1, 8192, 1, 4096, 32, 8, 14336, true};
  s.ulysses = 4;
  auto count = [](const std::vector<LayerOp>& ops) {
    size_t a2a = 0;
    int64_t bytes = 0;
    for (const LayerOp& op : ops) {
      if (op.kind != LayerOpKind::UlyssesAllToAll) continue;
      ++a2a;
      bytes += op.bytes.value;
    }
    return std::make_pair(a2a, bytes);
  };
  const auto [fwd, fwd_bytes] = count(layer_ops(s, Pass::Forward));
  const auto [bwd, bwd_bytes] = count(layer_ops(s, Pass::InputGrad));
  CHECK(fwd == 4);
  CHECK(bwd == 4);
  // nccl-tests sizes (the send buffers) x (P - 1) / P = what each rank sends (5.4).
  CHECK(fwd_bytes * 3 / 4 == 31'457'280);
  CHECK(bwd_bytes == fwd_bytes);
  for (const LayerOp& op : layer_ops(s, Pass::Forward)) {
    if (op.kind == LayerOpKind::Attention) CHECK((op.attn.heads == 8 && op.attn.q_len == 8192));
    if (op.kind == LayerOpKind::Gemm) CHECK(op.gemm.m == 2048);  // the rank's sequence shard
  }
}

TEST_CASE("a ring attention layer moves the K/V blocks and dK/dV accumulators of 2.1", "[sp]") {
  const Built b = build(1, "ring: 4, dp: 2, ring_layout: zigzag", "seq_len: 32K, global_batch_size: 2", 2);
  REQUIRE(b.plan.program.devices().size() == 4);  // one device per ring rank
  const auto t = traffic(b.plan.program);
  const SpTraffic per = sp_traffic({1, 32768, 32, 8, 128, 1, 1, 4}, false);
  // Per device: 2 layers x 1 microbatch x (3 K/V recvs forward; 3 K/V + 4 dK/dV backward).
  CHECK(t.at(Traffic::Ring).ops == 4 * 2 * (3 + 3 + 4));
  // Every group carries the bytes one rank receives; summed over the ring they are the bytes
  // each rank sends.
  CHECK(t.at(Traffic::Ring).bytes == 4 * 2 * (per.ring_forward + per.ring_backward));
  // Gradients are reduced over dp x ring = 8 GPUs, and ZeRO-less weights are replicated on them.
  size_t dp_streams = 0;
  for (const Stream& s : b.plan.program.streams()) {
    if (s.name != "dp" || s.ops.empty()) continue;
    ++dp_streams;
    const Op& op = b.plan.program.op(s.ops.front());
    // A ring's 8 hops, or NVLink SHARP's 8 x 7 pairs on Hopper: 8 GPUs either way.
    std::set<std::pair<int32_t, int32_t>> pairs;
    std::set<int32_t> gpus;
    for (const Transfer& x : b.plan.program.transfers(op.group)) {
      pairs.insert({x.from_gpu, x.to_gpu});
      gpus.insert({x.from_gpu, x.to_gpu});
    }
    CHECK(gpus.size() == 8);
    CHECK((pairs.size() == 8 || pairs.size() == 56));
  }
  CHECK(dp_streams == 4);  // every ring rank's device reduces gradients
  // The zigzag layout keeps ranks balanced: no imbalance wait to speak of.
  for (const DeviceMetrics& d : b.metrics.devices) CHECK(d.idle_breakdown.imbalance.seconds() < 0.02 * b.trace.makespan.seconds());
}

TEST_CASE("contiguous causal ring attention idles the early ranks; zigzag and striped balance them", "[sp]") {
  const std::string train = "seq_len: 128K, global_batch_size: 1";
  const Built contiguous = build(1, "ring: 8, ring_layout: contiguous", train, 2);
  const Built zigzag = build(1, "ring: 8, ring_layout: zigzag", train, 2);
  const Built striped = build(1, "ring: 8, ring_layout: striped", train, 2);
  const double c = contiguous.trace.makespan.seconds();
  const double z = zigzag.trace.makespan.seconds();
  CHECK(c / z > 1.3);  // attention dominates at 128K: the last rank does ~(2 - 1/P)x the average
  CHECK(striped.trace.makespan.seconds() / z == Approx(1).margin(0.05));
  // Rank 0 (fewest pairs) waits for the others; the last rank never does.
  const auto& first = contiguous.metrics.devices.front().idle_breakdown;
  const auto& last = contiguous.metrics.devices.back().idle_breakdown;
  CHECK(first.imbalance.seconds() > 0.3 * c);
  CHECK(last.imbalance.seconds() < 0.01 * c);
  CHECK(contiguous.metrics.devices.front().busy < contiguous.metrics.devices.back().busy);
}

TEST_CASE("ring communication hides behind compute only when blocks are large enough", "[sp]") {
  // Across two nodes on slow NICs: 1K-token blocks cannot cover their transfer; 32K-token ones do.
  const std::string ring = "ring: 16, ring_layout: zigzag";
  const Built small = build(2, ring, "seq_len: 16K, global_batch_size: 1", 2);
  const Built large = build(2, ring, "seq_len: 512K, global_batch_size: 1", 2);
  // Exposed waits for ring traffic against the ring's own compute (block attention, merges).
  auto exposed = [](const Built& b) {
    double wait = 0, ring_compute = 0;
    for (const DeviceMetrics& d : b.metrics.devices) wait += d.idle_breakdown.sp_wait.seconds();
    for (OpId id = 0; id < b.plan.program.num_ops(); ++id) {
      const Op& op = b.plan.program.op(id);
      if (op.kind == OpKind::Compute && op.label.ring_step >= 0) {
        ring_compute += (b.trace.records[id].end - b.trace.records[id].start).seconds();
      }
    }
    return wait / ring_compute;
  };
  CHECK(exposed(small) > 0.2);
  CHECK(exposed(large) < 0.02);
}

TEST_CASE("USP and all-gather CP build, run and report crossing groups", "[sp]") {
  const Built usp = build(2, "ulysses: 8, ring: 2, ring_layout: zigzag, zero: 1", "seq_len: 64K, global_batch_size: 1", 2);
  CHECK(usp.plan.program.devices().size() == 2);
  const auto t = traffic(usp.plan.program);
  CHECK(t.at(Traffic::Ulysses).ops > 0);
  CHECK(t.at(Traffic::Ring).ops == 2 * 2 * (1 + 1 + 2));
  CHECK(std::find(usp.plan.notes.begin(), usp.plan.notes.end(), "ring groups cross nodes") != usp.plan.notes.end());
  // Ulysses placed outside the ring crosses nodes instead.
  const Built outer = build(2, "ulysses: 8, ring: 2, placement: [tp, ring, ulysses, dp, pp]",
                            "seq_len: 64K, global_batch_size: 1", 2);
  CHECK(std::find(outer.plan.notes.begin(), outer.plan.notes.end(), "ulysses groups cross nodes") != outer.plan.notes.end());
  CHECK(outer.trace.makespan > usp.trace.makespan);  // all-to-all over NICs is slower than NVLink
  // ZeRO-1 shards optimizer states over dp x ulysses x ring = 16 ranks.
  const Built plain = build(2, "ulysses: 8, ring: 2, zero: 0", "seq_len: 64K, global_batch_size: 1", 2);
  CHECK(usp.plan.memory[0].optimizer == Approx(plain.plan.memory[0].optimizer / 16));
  // All-gather CP: no ring stream, blocking gathers and reduce-scatters of K/V instead.
  const Built ag = build(1, "ring: 4, dp: 2, cp_mode: allgather, ring_layout: zigzag", "seq_len: 32K, global_batch_size: 2", 2);
  const auto ta = traffic(ag.plan.program);
  CHECK(ta.count(Traffic::Ring) == 0);
  CHECK(ta.at(Traffic::ContextGather).ops == 4 * 2 * 2);  // per device, layer: one gather, one scatter
  CHECK(ag.plan.memory[0].buffers > 0);
}

TEST_CASE("bad sequence-parallel input gets a one-line error naming the key", "[sp]") {
  auto error = [](const std::string& parallel, const std::string& training = "seq_len: 8K",
                  const std::string& model = "preset: llama3-8b") {
    const std::string text = "cluster: {gpu: h100-sxm5-80gb, nodes: 1, gpus_per_node: 8}\nmodel: {" + model + "}\n"
                             "training: {" + training + "}\nparallel: {" + parallel + "}\n";
    try {
      plan_cluster(parse_scenario(text, "bad.yaml"));
    } catch (const InputError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  CHECK_THAT(error("ring: 0, dp: 8"), Catch::Contains("parallel.ring"));
  CHECK_THAT(error("ulysses: 0, dp: 8"), Catch::Contains("parallel.ulysses"));
  CHECK_THAT(error("ulysses: 16"), Catch::Contains("16 but the cluster has"));
  CHECK_THAT(error("ulysses: 8, tp: 1, dp: 1", "seq_len: 8K") , Catch::Contains("no error"));
  CHECK_THAT(error("ulysses: 4, tp: 2"), Catch::Contains("no error"));
  CHECK_THAT(error("ulysses: 8", "seq_len: 8K", "preset: llama3-8b, kv_heads: 4"),
             Catch::Contains("parallel.ulysses") && Catch::Contains("valid: 1, 2, 4"));
  CHECK_THAT(error("ring: 8, ring_layout: zigzag", "seq_len: 8200"), Catch::Contains("zigzag"));
  CHECK_THAT(error("ring: 8, ring_layout: diagonal"), Catch::Contains("parallel.ring_layout"));
  CHECK_THAT(error("ring: 8, cp_mode: p2p"), Catch::Contains("parallel.cp_mode"));
  CHECK_THAT(error("ring: 8", "seq_len: 8K, attention_kernel: unfused"), Catch::Contains("training.attention_kernel"));
}

void check_bundles(const std::string& text);

TEST_CASE("bundled transfers give exactly the flows' timeline", "[sp][network]") {
  // Jobs where all-to-alls, ring steps, TP collectives, pipeline transfers and gradient buckets
  // overlap on shared NICs, an oversubscribed fabric or PCIe, so bundles form, drain and are
  // broken up again by newcomers.
  const char* kJobs[] = {
      "cluster: {gpu: h100-sxm5-80gb, nodes: 4, gpus_per_node: 8, inter_node: {nics_per_node: 2}}\n"
      "model: {preset: llama3-8b, layers: 4}\ntraining: {seq_len: 32K, global_batch_size: 4, recompute: full}\n"
      "parallel: {ulysses: 2, ring: 4, pp: 2, dp: 2, zero: 1, ring_layout: striped}\n",
      "cluster: {gpu: a800-sxm4-80gb, nodes: 4, gpus_per_node: 8, inter_node: {oversubscription: 4}}\n"
      "model: {preset: llama3-8b, layers: 4}\ntraining: {seq_len: 16K, global_batch_size: 8}\n"
      "parallel: {tp: 2, ring: 4, pp: 2, dp: 2, zero: 3, schedule: zb-h1, ring_layout: zigzag}\n",
      "cluster: {gpu: l20-pcie-48gb, nodes: 2, gpus_per_node: 8}\n"
      "model: {preset: llama3-8b, layers: 2}\ntraining: {seq_len: 16K, global_batch_size: 2}\n"
      "parallel: {ulysses: 4, ring: 2, dp: 2, cp_mode: allgather, ring_layout: zigzag}\n"};
  for (const char* text : kJobs) {
    INFO(text);
    check_bundles(text);
  }
}
void check_bundles(const std::string& text) {
  const ClusterJob job = plan_cluster(parse_scenario(text, "bundles.yaml"));
  const Topology topo(job.cluster);
  const RooflineCompute compute(*job.cluster.gpu);
  const TrainingPlan plan = build_training(job, topo, compute);
  FlowNetwork bundled(topo, true);
  FlowNetwork plain(topo, false);
  const Trace a = simulate(plan.program, GivenTimes{}, &bundled);
  const Trace b = simulate(plan.program, GivenTimes{}, &plain);
  REQUIRE(a.makespan == b.makespan);
  size_t differ = 0;
  for (OpId id = 0; id < plan.program.num_ops(); ++id) {
    differ += a.records[id].start != b.records[id].start || a.records[id].end != b.records[id].end;
  }
  CHECK(differ == 0);
  for (size_t l = 0; l < topo.links(); ++l) CHECK(bundled.link_bytes()[l] == Approx(plain.link_bytes()[l]));
}

TEST_CASE("each layout's token positions give exactly the causal pairs the ring work counts", "[sp]") {
  for (RingLayout layout : {RingLayout::Contiguous, RingLayout::Zigzag, RingLayout::Striped}) {
    for (int64_t ranks : {2, 4, 8}) {
      const int64_t local = 16;
      std::vector<int64_t> seen;
      std::vector<std::vector<int64_t>> pos;
      for (int64_t r = 0; r < ranks; ++r) {
        pos.push_back(ring_positions(layout, ranks, local, r));
        seen.insert(seen.end(), pos.back().begin(), pos.back().end());
      }
      std::sort(seen.begin(), seen.end());
      for (int64_t i = 0; i < ranks * local; ++i) REQUIRE(seen[static_cast<size_t>(i)] == i);  // a partition
      for (int64_t r = 0; r < ranks; ++r) {
        for (int64_t t = 0; t < ranks; ++t) {
          const auto& q = pos[static_cast<size_t>(r)];
          const auto& kv = pos[static_cast<size_t>((r - t + ranks) % ranks)];
          int64_t pairs = 0;
          for (int64_t qi : q) {
            for (int64_t kj : kv) pairs += kj <= qi ? 1 : 0;
          }
          CHECK(pairs == ring_step_work(layout, ranks, local, r, t).pairs);
        }
      }
    }
  }
}
