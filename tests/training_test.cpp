// The transformer workload (FLOPs of algorithms.md 5.5) and the training Program built from it.
#include <catch2/catch.hpp>

#include <set>

#include "sim/exec/executor.hpp"
#include "sim/ir/validate.hpp"
#include "sim/model/network.hpp"
#include "sim/sched/training.hpp"
#include "sim/workload/transformer.hpp"

using namespace bubblesim;
using namespace bubblesim::sim;

namespace {

double gemm_flops(const std::vector<LayerOp>& ops) {
  double f = 0;
  for (const LayerOp& op : ops) {
    if (op.kind == LayerOpKind::Gemm) f += 2.0 * op.gemm.m * op.gemm.n * op.gemm.k * op.gemm.batch;
  }
  return f;
}

const LayerShape kLlama3Layer{1, 8192, 1, 4096, 32, 8, 14336, true};

ResolvedModel llama3_8b() { return {"llama3-8b", 32, 4096, 32, 8, 14336, 128256, "swiglu", false}; }

ClusterJob job(int nodes, int tp, int pp, int dp, const char* schedule, int zero, int batch) {
  const std::string text = "cluster: {gpu: h100-sxm5-80gb, nodes: " + std::to_string(nodes) +
                           ", gpus_per_node: 8}\nmodel: {preset: llama3-8b}\ntraining: {seq_len: 4096, "
                           "global_batch_size: " + std::to_string(batch) + "}\nparallel: {tp: " + std::to_string(tp) +
                           ", pp: " + std::to_string(pp) + ", dp: " + std::to_string(dp) + ", schedule: " + schedule +
                           ", zero: " + std::to_string(zero) + "}\n";
  return plan_cluster(parse_scenario(text, "t.yaml"));
}

}  // namespace

TEST_CASE("a Llama-3-8B layer's forward GEMMs are the FLOPs of algorithms.md 5.5", "[workload]") {
  CHECK(gemm_flops(layer_ops(kLlama3Layer, Pass::Forward)) == Approx(3'573'412'790'272.0).epsilon(1e-15));
  // Backward GEMMs (dgrad + wgrad) are twice the forward.
  CHECK(gemm_flops(layer_ops(kLlama3Layer, Pass::InputGrad)) + gemm_flops(layer_ops(kLlama3Layer, Pass::WeightGrad)) ==
        Approx(2 * 3'573'412'790'272.0).epsilon(1e-15));
  // Megatron's per-layer fwd+bwd total (5.5): the difference of a two- and a one-layer model.
  ResolvedModel m = llama3_8b();
  m.layers = 2;
  const double two = model_flops_per_iteration(m, 8192, 1);
  m.layers = 1;
  CHECK(two - model_flops_per_iteration(m, 8192, 1) == Approx(12'369'505'812'480.0).epsilon(1e-15));
  CHECK(layer_params(llama3_8b()) == 218'103'808);
}

TEST_CASE("tensor parallelism splits every GEMM's work evenly and adds its collectives", "[workload]") {
  LayerShape tp4 = kLlama3Layer;
  tp4.tp = 4;
  CHECK(4 * gemm_flops(layer_ops(tp4, Pass::Forward)) == Approx(gemm_flops(layer_ops(kLlama3Layer, Pass::Forward))));
  size_t collectives = 0;
  for (const LayerOp& op : layer_ops(tp4, Pass::Forward)) {
    collectives += op.kind == LayerOpKind::TpAllGather || op.kind == LayerOpKind::TpReduceScatter;
  }
  CHECK(collectives == 4);  // Megatron-SP: 2 all-gathers and 2 reduce-scatters per layer
  size_t recompute = layer_ops(tp4, Pass::InputGrad, "full").size() - layer_ops(tp4, Pass::InputGrad).size();
  CHECK(recompute == layer_ops(tp4, Pass::Forward).size());
}

TEST_CASE("unfused attention and dropout move the bytes of Megatron's kernels", "[workload]") {
  // GPT-1.5B of the Zero Bubble paper: microbatch 6 of 1024 tokens, hidden 2304, 24 heads.
  LayerShape s{6, 1024, 1, 2304, 24, 24, 9216, false};
  s.flash_attention = false;
  s.sequence_parallel = false;
  auto bytes = [](const std::vector<LayerOp>& ops, std::string_view name) {
    for (const LayerOp& op : ops) {
      if (op.kind == LayerOpKind::Memory && op.name == name) return op.bytes.value;
    }
    FAIL("no memory op " << name);
    return int64_t{0};
  };
  const int64_t scores = 6 * 24 * 1024 * 1024, activations = 6 * 1024 * 2304;
  // Without dropout: softmax reads and writes 2 bytes per score; its backward reads two, writes one.
  CHECK(bytes(layer_ops(s, Pass::Forward), "softmax") == 4 * scores);
  CHECK(bytes(layer_ops(s, Pass::InputGrad), "softmax_grad") == 6 * scores);
  CHECK(bytes(layer_ops(s, Pass::Forward), "norm_attn") == 8 * activations);
  // With dropout: + dropout's read, write and 1-byte mask (forward), its backward's read of the
  // gradient and the mask and write; bias-dropout-add before each norm writes a mask too.
  s.dropout = true;
  CHECK(bytes(layer_ops(s, Pass::Forward), "softmax") == 9 * scores);
  CHECK(bytes(layer_ops(s, Pass::InputGrad), "softmax_grad") == 11 * scores);
  CHECK(bytes(layer_ops(s, Pass::Forward), "norm_attn") == 11 * activations);
  CHECK(bytes(layer_ops(s, Pass::InputGrad), "norm_attn_grad") == 9 * activations);
  // FlashAttention keeps scores (and their dropout) on chip: no softmax op at all.
  s.flash_attention = true;
  for (const LayerOp& op : layer_ops(s, Pass::Forward)) CHECK(op.name != "softmax");
}

TEST_CASE("activations kept for the backward count dropout's masks only when training with dropout", "[workload]") {
  ResolvedModel m;
  m.layers = 24, m.hidden = 2304, m.heads = 24, m.kv_heads = 24, m.ffn_hidden = 9216, m.vocab = 51200;
  m.activation = "gelu";
  const double h = 2304, seq = 1024;
  // Korthikanti et al. (tp 1): 34 h + 5 a s per token with dropout, FlashAttention aside.
  CHECK(activation_bytes_per_token(m, 1, false, "none", false, 1024, true) == Approx(34 * h + 5 * 24 * seq));
  // Without dropout: no masks (2 h), and of the scores only the softmax output (2 a s).
  CHECK(activation_bytes_per_token(m, 1, false, "none", false, 1024, false) == Approx(32 * h + 2 * 24 * seq));
  // FlashAttention keeps no scores; the residual-path masks stay.
  CHECK(activation_bytes_per_token(m, 1, false, "none", true, 1024, true) == Approx(34 * h));
  CHECK(activation_bytes_per_token(m, 1, false, "full", false, 1024, true) == Approx(2 * h));
}

TEST_CASE("tied embeddings split over the pipeline are all-reduced between first and last stage", "[training]") {
  auto plan_of = [](const char* tied, int pp) {
    const std::string text = std::string("cluster: {gpu: a100-sxm4-80gb, nodes: 1, gpus_per_node: 8}\n") +
                             "model: {layers: 8, hidden: 1024, heads: 16, kv_heads: 16, ffn_hidden: 4096, vocab: 51200, "
                             "activation: gelu, tied_embeddings: " + tied + "}\n"
                             "training: {seq_len: 2048, global_batch_size: 16}\n"
                             "parallel: {tp: 2, pp: " + std::to_string(pp) + ", dp: " + std::to_string(4 / pp) + "}\n";
    const ClusterJob j = plan_cluster(parse_scenario(text, "t.yaml"));
    const Topology topo(j.cluster);
    const RooflineCompute compute(*j.cluster.gpu);
    TrainingPlan plan = build_training(j, topo, compute);
    REQUIRE(validate(plan.program).empty());
    std::vector<std::string> streams;
    for (const Stream& s : plan.program.streams()) {
      if (s.name == "embedding") streams.push_back(plan.program.devices()[s.device].name);
    }
    FlowNetwork net(topo);
    const Trace t = simulate(plan.program, GivenTimes{}, &net);
    return std::make_pair(streams, t.makespan);
  };
  const auto [tied, tied_time] = plan_of("true", 2);
  REQUIRE(tied.size() == 2);  // the first and the last stage
  CHECK_THAT(tied[0], Catch::StartsWith("stage 0"));
  CHECK_THAT(tied[1], Catch::StartsWith("stage 1"));
  const auto [untied, untied_time] = plan_of("false", 2);
  CHECK(untied.empty());
  CHECK(tied_time > untied_time);  // the optimizer waits for the all-reduce
  // Without a pipeline the head uses the embedding's own matrix: nothing to reduce.
  CHECK(plan_of("true", 1).first.empty());
}

TEST_CASE("every schedule builds a valid training Program that runs to the end", "[training]") {
  for (const char* schedule : {"gpipe", "1f1b", "zb-h1", "zb-v", "dualpipe", "dualpipe-v"}) {
    INFO(schedule);
    const ClusterJob j = job(2, 2, 4, 2, schedule, 1, 16);
    const Topology topo(j.cluster);
    const RooflineCompute compute(*j.cluster.gpu);
    const TrainingPlan plan = build_training(j, topo, compute);
    REQUIRE(validate(plan.program).empty());
    CHECK(plan.program.devices().size() == 4);
    FlowNetwork net(topo);
    const Trace t = simulate(plan.program, GivenTimes{}, &net);
    CHECK(t.makespan > Time::zero());
    CHECK(plan.tokens == 16 * 4096);
  }
}

TEST_CASE("ZeRO-3 gathers each layer's parameters before it runs; ZeRO-1 only after the optimizer", "[training]") {
  auto dp_ops = [](int zero) {
    const ClusterJob j = job(2, 2, 2, 4, "1f1b", zero, 16);
    const Topology topo(j.cluster);
    const RooflineCompute compute(*j.cluster.gpu);
    const TrainingPlan plan = build_training(j, topo, compute);
    size_t n = 0;
    for (const Stream& s : plan.program.streams()) n += s.name == "dp" ? s.ops.size() : 0;
    return std::make_pair(n, plan.memory[0]);
  };
  // 2 stages x 16 layers: a reduce-scatter bucket per layer and one for the embedding (stage 0)
  // or the LM head (stage 1), each ring fused into one op, then one parameter all-gather per
  // stage after the optimizer.
  const auto [ops1, mem1] = dp_ops(1);
  CHECK(ops1 == 2 * (16 + 1 + 1));
  // ZeRO-3 gathers each of the 16 layers and the embedding (or LM head) before it runs, in both
  // passes of each of 4 microbatches, instead of gathering once after the optimizer.
  const auto [ops3, mem3] = dp_ops(3);
  CHECK(ops3 == 2 * (16 + 1) + 2 * (2 * 4 * (16 + 1)));
  // Parameters sharded over dp = 4, plus two gathered blocks (the one computing, the one
  // prefetched): the embedding matrix is Llama-3-8B's largest block (525M vs 218M per layer).
  const double embedding = 128256.0 * 4096 / 2;  // per tp rank
  CHECK(mem3.params == Approx(mem1.params / 4 + 2 * embedding * 2));
  CHECK(mem3.optimizer == Approx(mem1.optimizer));  // both shard the optimizer states
  // ZeRO-0: an all-reduce per bucket, nothing after the optimizer.
  const auto [ops0, mem0] = dp_ops(0);
  CHECK(mem0.optimizer == Approx(4 * mem1.optimizer));
  CHECK(ops0 == 2 * (16 + 1));
}

TEST_CASE("the LM head's stage keeps the cross-entropy's fp32 softmax over its vocabulary shard", "[training]") {
  // Llama-3-8B, tp 2 x pp 2: both stages hold 16 layers; stage 1 also keeps, per microbatch,
  // tokens x vocab / tp fp32 values for the loss's backward (Megatron upcasts the logits).
  const ClusterJob j = job(1, 2, 2, 2, "1f1b", 1, 16);
  const Topology topo(j.cluster);
  const RooflineCompute compute(*j.cluster.gpu);
  const TrainingPlan plan = build_training(j, topo, compute);
  std::vector<int64_t> first_alloc(plan.program.devices().size(), 0);
  for (DeviceId d = 0; d < plan.program.devices().size(); ++d) {
    for (StreamId s : plan.program.devices()[d].streams) {
      for (OpId op : plan.program.stream(s).ops) {
        if (first_alloc[d] == 0 && plan.program.op(op).mem_alloc > 0) first_alloc[d] = plan.program.op(op).mem_alloc;
      }
    }
  }
  REQUIRE(first_alloc.size() == 2);
  const double softmax = 4096.0 * (128256.0 / 2) * 4;  // one sequence of 4096 tokens per microbatch
  CHECK((first_alloc[1] - first_alloc[0]) * plan.activation_unit_bytes == Approx(softmax).epsilon(1e-3));
}

TEST_CASE("DualPipe's two model copies all-reduce their gradients pairwise before the optimizer", "[training]") {
  // tp 2 x pp 4: ranks i and 3 - i hold the same two stages (8 layers each) of Llama-3-8B; rank 0
  // and 3 also hold the embedding and the (untied) LM head.
  const ClusterJob j = job(1, 2, 4, 1, "dualpipe", 1, 16);
  const Topology topo(j.cluster);
  const RooflineCompute compute(*j.cluster.gpu);
  const TrainingPlan plan = build_training(j, topo, compute);
  REQUIRE(validate(plan.program).empty());
  const double layer = 218'103'808.0, matrix = 128256.0 * 4096;
  const double outer = (16 * layer + 2 * matrix) / 2 * 4, inner = 16 * layer / 2 * 4;  // gradient bytes per tp rank
  int streams = 0;
  for (const Stream& s : plan.program.streams()) {
    if (s.name != "copies") continue;
    ++streams;
    REQUIRE(s.ops.size() == 1);
    const bool outer_pair = s.device == 0 || s.device == 3;
    const auto transfers = plan.program.transfers(plan.program.op(s.ops[0]).group);
    REQUIRE(!transfers.empty());
    // A two-rank ring all-reduce: each side sends half the buffer in each of its 2 steps.
    CHECK(static_cast<double>(transfers[0].bytes.value) == Approx(outer_pair ? outer : inner).epsilon(1e-6));
  }
  CHECK(streams == 4);
  // Without DualPipe's copies (1F1B on the same job) there is no such exchange.
  const ClusterJob one = job(1, 2, 4, 1, "1f1b", 1, 16);
  const TrainingPlan plain = build_training(one, topo, compute);
  for (const Stream& s : plain.program.streams()) CHECK(s.name != "copies");
}

TEST_CASE("tensor-parallel groups across nodes carry every replica's transfers; inside a node only their own",
          "[training]") {
  // tp 16 over four nodes of 8, dp 2 placed innermost: both replicas' rings cross the same NICs.
  auto tp_transfers = [](int gpus_per_node, const char* placement, int tp = 16, int dp = 2) {
    const int world = tp * dp;
    const std::string text = "cluster: {gpu: a100-sxm4-80gb, nodes: " + std::to_string(world / gpus_per_node) +
                             ", gpus_per_node: " + std::to_string(gpus_per_node) +
                             "}\nmodel: {layers: 2, hidden: 2048, heads: 16, kv_heads: 16, ffn_hidden: 8192, vocab: 32000}\n"
                             "training: {seq_len: 2048, global_batch_size: " + std::to_string(dp) + "}\n"
                             "parallel: {tp: " + std::to_string(tp) + ", dp: " + std::to_string(dp) +
                             ", placement: " + placement + "}\n";
    const ClusterJob j = plan_cluster(parse_scenario(text, "t.yaml"));
    const Topology topo(j.cluster);
    const RooflineCompute compute(*j.cluster.gpu);
    const TrainingPlan plan = build_training(j, topo, compute);
    std::set<int32_t> gpus;
    size_t groups = 0;
    for (GroupId g = 0; g < plan.program.groups().size(); ++g) {
      if (plan.program.op(plan.program.members(g)[0]).label.traffic != Traffic::TensorParallel) continue;
      ++groups;
      for (const Transfer& t : plan.program.transfers(g)) gpus.insert(t.from_gpu);
    }
    REQUIRE(groups > 0);
    return gpus.size();
  };
  CHECK(tp_transfers(8, "[dp, tp, ulysses, ring, pp]") == 32);  // spans nodes: both replicas' rings
  CHECK(tp_transfers(16, "[tp, dp, ulysses, ring, pp]") == 16);  // one node each: the representative's only
  // tp 4 on nodes of 6: the representative's group fits node 0, replica 1's spans nodes 0 and 1.
  CHECK(tp_transfers(6, "[tp, dp, ulysses, ring, pp]", 4, 3) == 12);
}

TEST_CASE("cluster.nccl picks NCCL's algorithm and protocol: NVLink SHARP speeds H100 all-reduces unless ruled out",
          "[training]") {
  // tp 8 without sequence parallelism on one H100 node: every layer all-reduces its activations.
  const auto run = [](const std::string& nccl) {
    const std::string text =
        "cluster: {gpu: h100-sxm5-80gb, nodes: 1, gpus_per_node: 8" + nccl +
        "}\nmodel: {preset: llama3-8b, layers: 2}\ntraining: {seq_len: 8192, global_batch_size: 1}\n"
        "parallel: {tp: 8, sequence_parallel: false}\n";
    const ClusterJob j = plan_cluster(parse_scenario(text, "t.yaml"));
    const Topology topo(j.cluster);
    const RooflineCompute compute(*j.cluster.gpu);
    const TrainingPlan plan = build_training(j, topo, compute);
    size_t pairs = 0;  // transfers of the first tensor-parallel group: 8 ring hops or 8 x 7 NVLS pairs
    for (GroupId g = 0; g < plan.program.groups().size() && pairs == 0; ++g) {
      if (plan.program.op(plan.program.members(g)[0]).label.traffic == Traffic::TensorParallel) {
        pairs = plan.program.transfers(g).size();
      }
    }
    FlowNetwork net(topo);
    return std::pair{simulate(plan.program, GivenTimes{}, &net).makespan.seconds(), pairs};
  };
  const auto [nccl_choice, nvls_pairs] = run("");
  const auto [ring, ring_pairs] = run(", nccl: {algorithm: ring}");
  const auto [ll, ll_pairs] = run(", nccl: {protocol: LL}");
  CHECK(nvls_pairs == 56);
  CHECK(ring_pairs == 8);
  CHECK(ll_pairs == 8);  // NVLS runs the Simple protocol only
  CHECK(nccl_choice < ring);
  CHECK(ring < ll);      // LL reaches a quarter of NVLink on 64 MiB activations
  // LL128 needs NVLink.
  CHECK_THROWS_WITH(plan_cluster(parse_scenario("cluster: {gpu: l20-pcie-48gb, nodes: 1, gpus_per_node: 8, nccl: "
                                                "{protocol: LL128}}\nmodel: {preset: llama3-8b}\ntraining: "
                                                "{seq_len: 4096, global_batch_size: 8}\nparallel: {dp: 8}\n",
                                                "t.yaml")),
                    Catch::Contains("t.yaml:1: cluster.nccl.protocol: NCCL runs LL128 only over NVLink"));
  CHECK_THROWS_WITH(parse_scenario("cluster: {gpu: h100-sxm5-80gb, nccl: {algorithm: tree}}\nmodel: {preset: llama3-8b}\n"
                                   "training: {seq_len: 4096, global_batch_size: 8}\n", "t.yaml"),
                    Catch::Contains("valid: auto, ring"));
}
