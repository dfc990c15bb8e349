// Scenario loading and pipeline planning: every bad input is one clear InputError naming the
// file:line (or --set), the key and the rule; good inputs parse with units and overrides.
#include <catch2/catch.hpp>

#include "sim/core/error.hpp"
#include "sim/scenario/cluster_job.hpp"
#include "sim/scenario/pipeline_job.hpp"

using namespace bubblesim;
using namespace bubblesim::sim;

namespace {

const std::string kBase =
    "name: t\n"
    "pipeline_only:\n"
    "  stages: 4\n"
    "  microbatches: 8\n"
    "  times: {F: 1, B: 2}\n"
    "parallel:\n"
    "  schedule: 1f1b\n";

PipelineJob plan(const std::string& text, const std::vector<std::string>& sets = {}) {
  return plan_pipeline(parse_scenario(text, "x.yaml", sets));
}

std::string error_of(const std::string& text, const std::vector<std::string>& sets = {}) {
  try {
    plan(text, sets);
  } catch (const InputError& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEST_CASE("a pipeline_only scenario plans with its defaults", "[scenario]") {
  const PipelineJob job = plan(kBase);
  CHECK(job.kind == ScheduleKind::OneFOneB);
  CHECK(job.shape.p == 4);
  CHECK(job.shape.m == 8);
  CHECK(job.shape.v == 1);
  CHECK(job.graph.size() == 4);
  CHECK(job.costs[0].f == Time::from_seconds(1 * kSecondsPerUnit));
  CHECK_FALSE(job.placement.has_value());
  CHECK(plan(kBase, {"parallel.schedule=zb-v", "pipeline_only.times={F: 1, I: 1, W: 1}"}).shape.v == 2);
}

TEST_CASE("an unknown key is an error with file:line and the known keys", "[scenario]") {
  const std::string msg = error_of("pipeline_only:\n  stages: 4\n  microbatchs: 8\n");
  CHECK_THAT(msg, Catch::StartsWith("x.yaml:3: pipeline_only.microbatchs: unknown key"));
  CHECK_THAT(msg, Catch::Contains("microbatches"));
  CHECK_THAT(error_of(kBase + "paralel: {}\n"), Catch::Contains("x.yaml:8") && Catch::Contains("paralel"));
}

TEST_CASE("an unknown schedule lists the valid ones", "[scenario]") {
  const std::string msg = error_of(kBase, {"parallel.schedule=1f2b"});
  CHECK_THAT(msg, Catch::Contains("--set parallel.schedule") && Catch::Contains("unknown schedule \"1f2b\""));
  CHECK_THAT(msg, Catch::Contains("gpipe, 1f1b, interleaved-1f1b") && Catch::Contains("dualpipe-v"));
}

TEST_CASE("interleaving constraints on m are checked", "[scenario]") {
  const std::string msg =
      error_of(kBase, {"parallel.schedule=interleaved-1f1b", "parallel.virtual_stages=2", "pipeline_only.microbatches=10"});
  CHECK_THAT(msg, Catch::Contains("parallel.virtual_stages") && Catch::Contains("remainder 2 < p=4"));
  CHECK_THAT(error_of(kBase, {"parallel.schedule=interleaved-1f1b", "parallel.virtual_stages=2",
                              "pipeline_only.microbatches=2"}),
             Catch::Contains("p <= microbatch group size <= m"));
  CHECK_NOTHROW(plan(kBase, {"parallel.schedule=interleaved-1f1b", "parallel.virtual_stages=2",
                             "pipeline_only.microbatches=10", "parallel.microbatch_group_size=5"}));
}

TEST_CASE("virtual stages on a schedule without chunks are refused", "[scenario]") {
  CHECK_THAT(error_of(kBase, {"parallel.virtual_stages=2"}),
             Catch::Contains("1f1b runs 1 chunk(s) per rank") && Catch::Contains("virtual_stages must be 1"));
  CHECK_THAT(error_of(kBase, {"parallel.schedule=gpipe", "parallel.virtual_stages=3"}), Catch::Contains("no chunks"));
  CHECK_THAT(error_of(kBase, {"parallel.schedule=zb-v", "parallel.virtual_stages=3",
                              "pipeline_only.times={F: 1, I: 1, W: 1}"}),
             Catch::Contains("must be 2"));
}

TEST_CASE("negative or zero times are refused", "[scenario]") {
  CHECK_THAT(error_of(kBase, {"pipeline_only.times={F: -1, B: 2}"}),
             Catch::Contains("pipeline_only.times.F") && Catch::Contains("must be > 0"));
  CHECK_THAT(error_of(kBase, {"pipeline_only.times={F: 1, B: 0}"}), Catch::Contains("times.B"));
  CHECK_THAT(error_of(kBase, {"pipeline_only.p2p_latency=-1"}), Catch::Contains("must be >= 0"));
  CHECK_THAT(error_of(kBase, {"pipeline_only.times={F: 1}"}), Catch::Contains("missing the backward"));
  CHECK_THAT(error_of(kBase, {"parallel.schedule=zb-h1"}), Catch::Contains("give times I and W"));
  CHECK_THAT(error_of(kBase, {"pipeline_only.times={F: 1, B: 3, I: 1, W: 1}"}), Catch::Contains("B must equal I + W"));
}

TEST_CASE("zero stages and zero microbatches are refused", "[scenario]") {
  CHECK_THAT(error_of(kBase, {"pipeline_only.stages=0"}),
             Catch::Contains("--set pipeline_only.stages: pipeline_only.stages: must be >= 1 (got 0)"));
  CHECK_THAT(error_of(kBase, {"pipeline_only.microbatches=0"}), Catch::Contains("must be >= 1"));
  CHECK_THAT(error_of(kBase, {"pipeline_only.stages=four"}), Catch::Contains("expected an integer"));
}

TEST_CASE("a partition must match the stages and sum to the layers", "[scenario]") {
  CHECK_THAT(error_of(kBase + "", {"pipeline_only.layers=24", "pipeline_only.partition=[6, 6, 6, 5]"}),
             Catch::Contains("sums to 23 but layers is 24"));
  CHECK_THAT(error_of(kBase, {"pipeline_only.layers=24", "pipeline_only.partition=[12, 12]"}),
             Catch::Contains("has 2 entries") && Catch::Contains("needs 4"));
  CHECK_THAT(error_of(kBase, {"pipeline_only.partition=[2, 2, 2, 2]"}), Catch::Contains("needs pipeline_only.layers"));
  const PipelineJob job = plan(kBase, {"pipeline_only.layers=10", "pipeline_only.partition=[1, 3, 3, 3]"});
  CHECK(job.costs[0].f == Time::from_seconds(1 * kSecondsPerUnit));
  CHECK(job.costs[1].f == Time::from_seconds(3 * kSecondsPerUnit));
  CHECK(job.costs[1].activation_units == 3);
}

TEST_CASE("a non-contiguous placement runs only on schedules for any placement", "[scenario]") {
  const std::vector<std::string> rr = {"pipeline_only.stages=3", "pipeline_only.layers=12",
                                       "pipeline_only.layer_to_device=[0,1,2,0,1,2,0,1,2,0,1,2]"};
  CHECK_THAT(error_of(kBase, rr), Catch::Contains("naive, gpipe, looped-bfs"));
  auto naive = rr;
  naive.push_back("parallel.schedule=naive");
  const PipelineJob job = plan(kBase, naive);
  REQUIRE(job.placement.has_value());
  CHECK_FALSE(job.placement->contiguous);
  CHECK(job.placement->stages == 12);
  CHECK(job.placement->hops_per_forward == 11);
  CHECK(job.placement->layers_of_device[0] == std::vector<int32_t>{0, 3, 6, 9});
  CHECK_THAT(error_of(kBase, {"pipeline_only.layers=3", "pipeline_only.layer_to_device=[0,1,2]"}),
             Catch::Contains("device 3 holds no layer"));
  CHECK_THAT(error_of(kBase, {"pipeline_only.layers=4", "pipeline_only.layer_to_device=[0,1,2,7]"}),
             Catch::Contains("outside 0..3"));
}

TEST_CASE("a program too large for memory is refused before it is built", "[scenario]") {
  CHECK_THAT(error_of(kBase, {"pipeline_only.stages=100000", "pipeline_only.microbatches=1000000"}),
             Catch::Contains("too large") && Catch::Contains("MiB"));
}

TEST_CASE("pipeline_only models one pipeline and replaces cluster, model and training", "[scenario]") {
  CHECK_THAT(error_of(kBase, {"parallel.ring=2"}), Catch::Contains("must be 1"));
  CHECK_THAT(error_of(kBase, {"parallel.pp=3"}), Catch::Contains("must equal pipeline_only.stages"));
  CHECK_THAT(error_of(kBase + "training: {seq_len: 8192}\n"), Catch::Contains("replaces cluster, model and training"));
}

TEST_CASE("full scenarios parse units, token counts and overrides", "[scenario]") {
  const std::string text =
      "cluster:\n  gpu: a800-sxm4-80gb\n  nodes: 2\n  gpus_per_node: 8\n"
      "  intra_node: {bandwidth: 200 GB/s, latency: 2 us}\n"
      "  inter_node: {nics_per_node: 4, bandwidth: 200 Gb/s, latency: 5 us}\n"
      "model: {preset: llama3-8b}\n"
      "training: {seq_len: 208K, global_batch_size: 1}\n"
      "parallel: {ulysses: 8, ring: 2, ring_layout: zigzag}\n";
  const Scenario sc = parse_scenario(text, "full.yaml", {"parallel.ring=4"});
  REQUIRE(sc.cluster.has_value());
  CHECK(sc.cluster->intra_bandwidth->bytes_per_s == Approx(200e9));
  CHECK(sc.cluster->inter_bandwidth->bytes_per_s == Approx(25e9));
  CHECK(*sc.cluster->inter_latency == Time::from_seconds(5e-6));
  CHECK(sc.training->seq_len == 212992);
  CHECK(sc.parallel.ring == 4);
  CHECK(sc.name == "full");
  CHECK_THAT(error_of(text + "", {"cluster.inter_node.latency=5"}), Catch::Contains("has no unit"));
  try {
    parse_scenario("cluster:\n  gpu: a\n  intra_node:\n    latency: 5\n", "f.yaml");
    FAIL("no error");
  } catch (const InputError& e) {
    CHECK_THAT(e.what(), Catch::StartsWith("f.yaml:4:"));
  }
  CHECK_THAT(error_of(text, {"parallel.ring_layout=zig"}), Catch::Contains("valid: contiguous, zigzag, striped"));
  CHECK_THAT(error_of(text, {"nonsense.key=1"}), Catch::Contains("--set nonsense.key: unknown key"));
}

TEST_CASE("duplicate keys and YAML syntax errors name the line", "[scenario]") {
  CHECK_THAT(error_of(kBase + "name: again\n"), Catch::Contains("x.yaml:8: name: duplicate key"));
  CHECK_THAT(error_of("pipeline_only: {stages: [1\n"), Catch::StartsWith("x.yaml:") && Catch::Contains("YAML syntax error"));
}

TEST_CASE("odd YAML shapes are input errors, not crashes", "[scenario]") {
  CHECK_THAT(error_of("[a]: 1\n"), Catch::Contains("keys must be plain names"));
  CHECK_THAT(error_of("- 1\n- 2\n"), Catch::Contains("must be a map"));
  CHECK_THAT(error_of("parallel: x\n" + kBase.substr(kBase.find("pipeline_only")), {"parallel.pp=2"}),
             Catch::Contains("not a map"));
  CHECK_THAT(error_of("name: n\n", {"pipeline_only.stages=2"}),
             Catch::StartsWith("--set pipeline_only.stages") && Catch::Contains("missing key \"microbatches\""));
  CHECK_THAT(error_of("cluster: {gpu: a}\nmodel: {}\ntraining: {seq_len: 9000000000000000000K}\n"),
             Catch::Contains("token count out of range"));
  CHECK_THAT(error_of(kBase, {"pipeline_only.times={F: 1e-13, B: 1}"}), Catch::Contains("too small to represent"));
  CHECK_THAT(error_of(kBase, {"parallel.zero=1"}), Catch::Contains("no meaning in a pipeline_only scenario"));
  CHECK_THAT(error_of(kBase, {"parallel.schedule=interleaved-1f1b", "parallel.virtual_stages=40000"}),
             Catch::Contains("at most 32767"));
}

namespace {

const std::string kCluster =
    "cluster: {gpu: h100-sxm5-80gb, nodes: 4, gpus_per_node: 8}\n"
    "model: {preset: llama3-70b}\n"
    "training: {seq_len: 8192, micro_batch_size: 1, global_batch_size: 64}\n"
    "parallel: {tp: 8, pp: 4, dp: 1, schedule: 1f1b}\n";

std::string cluster_error(const std::vector<std::string>& sets) {
  try {
    plan_cluster(parse_scenario(kCluster, "c.yaml", sets));
  } catch (const InputError& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEST_CASE("a cluster scenario resolves its presets and overrides", "[scenario][cluster]") {
  const ClusterJob job = plan_cluster(parse_scenario(kCluster, "c.yaml", {"model.layers=40"}));
  CHECK(job.cluster.world() == 32);
  CHECK(job.cluster.gpu->bf16_flops.value == Approx(989e12));
  CHECK(job.cluster.intra_bandwidth.bytes_per_s == Approx(371e9));  // NCCL's effective NVLink, not 450
  CHECK(job.cluster.inter_bandwidth.bytes_per_s == Approx(47.5e9));
  CHECK(job.cluster.nics_per_node == 8);
  CHECK(job.model.layers == 40);
  CHECK(job.model.kv_heads == 8);
  CHECK(job.shape.m == 64);
  CHECK(job.shape.p == 4);
}

TEST_CASE("cluster scenarios refuse what cannot run, naming the numbers", "[scenario][cluster]") {
  CHECK_THAT(cluster_error({"parallel.dp=2"}), Catch::Contains("= 64 but the cluster has 4 x 8 = 32 GPUs"));
  CHECK_THAT(cluster_error({"parallel.tp=16", "parallel.pp=2"}),
             Catch::Contains("tp 16 must divide") && Catch::Contains("valid: 1, 2, 4, 8"));
  CHECK_THAT(cluster_error({"parallel.pp=3", "parallel.tp=8", "cluster.nodes=3"}),
             Catch::Contains("does not divide the 80 layers"));
  CHECK_THAT(cluster_error({"cluster.gpu=h100"}), Catch::Contains("closest: h100-sxm5-80gb"));
  CHECK_THAT(cluster_error({"model.preset=llama3-7b"}), Catch::Contains("closest:") && Catch::Contains("llama3-8b"));
  CHECK_THAT(cluster_error({"training.micro_batch_size=2", "training.global_batch_size=63"}), Catch::Contains("not a multiple"));
  CHECK_THAT(cluster_error({"parallel.schedule=dualpipe", "training.global_batch_size=6"}),
             Catch::Contains("dualpipe needs microbatches >= 2 x ranks"));
  CHECK_THAT(cluster_error({"cluster.nodes=1000000"}), Catch::Contains("at most 1048576 GPUs"));
  CHECK_THAT(cluster_error({"cluster.intra_node.bandwidth=0 GB/s"}), Catch::Contains("must be > 0"));
  CHECK_THAT(cluster_error({"parallel.partition=[0, 40, 40, 1]"}), Catch::Contains("sums to 81"));
  CHECK_THAT(cluster_error({"parallel.partition=[20, 0, 40, 20]"}), Catch::Contains("only the first and last"));
  CHECK_THAT(cluster_error({"model.heads=60"}), Catch::Contains("do not divide hidden"));
}

TEST_CASE("cluster rules that depend on other keys apply only where they should", "[scenario][cluster]") {
  // Zigzag needs 2 x ring chunks only when there is a ring; fp32 is refused, not silently ignored.
  CHECK_NOTHROW(plan_cluster(parse_scenario(kCluster, "c.yaml", {"parallel.ring_layout=zigzag", "training.seq_len=8200"})));
  CHECK_THAT(cluster_error({"training.dtype=fp32"}), Catch::Contains("fp32 training is not modelled"));
  CHECK_THAT(cluster_error({"model.vocab=100000000"}), Catch::Contains("at most 16777216"));
}
