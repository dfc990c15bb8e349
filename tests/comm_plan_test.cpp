// The GPU backend's order of NCCL calls (hw/runner/comm_plan): for every parallelism the training
// Programs use, every GPU's plan meets its peers' (same communicators, same sizes, calls that
// pair up in order) and runs to the end under NCCL's blocking rules; a plan with calls out of
// order is caught. Plain C++: no GPU needed.
#include <catch2/catch.hpp>

#include <algorithm>
#include <numeric>
#include <set>

#include "hw/runner/comm_plan.hpp"
#include "hw/runner/rank_map.hpp"
#include "sim/cli/commands.hpp"
#include "sim/scenario/scenario.hpp"

using namespace bubblesim;
using namespace bubblesim::hw;

namespace {

std::string scenario(int gpus, const std::string& parallel, const std::string& model = "{preset: llama3-8b, layers: 8}",
                     const std::string& training = "{seq_len: 2048, global_batch_size: 8}") {
  const int nodes = gpus > 8 ? gpus / 8 : 1;
  return "cluster: {gpu: h100-sxm5-80gb, nodes: " + std::to_string(nodes) +
         ", gpus_per_node: " + std::to_string(gpus / nodes) + "}\nmodel: " + model +
         "\ntraining: " + training + "\nparallel: " + parallel + "\n";
}

struct Planned {
  std::unique_ptr<sim::ClusterRun> run;
  std::vector<sim::DeviceId> device_of;
  CommPlan plan;
};

Planned plan_all(const std::string& text) {
  Planned out;
  out.run = std::make_unique<sim::ClusterRun>(sim::parse_scenario(text, "t.yaml"), sim::FlopsAccounting::Megatron, true);
  out.device_of = device_of_gpus(out.run->job, out.run->plan);
  std::vector<int32_t> gpus(out.device_of.size());
  std::iota(gpus.begin(), gpus.end(), 0);
  out.plan = plan_communication(out.run->job, out.run->plan, out.run->trace, gpus);
  return out;
}

std::set<std::string> channels(const CommPlan& plan) {
  std::set<std::string> out;
  for (const Communicator& c : plan.comms) out.insert(c.channel);
  return out;
}

size_t count_calls(const CommPlan& plan, CommCall call) {
  size_t n = 0;
  for (const RankPlan& r : plan.ranks) {
    for (const Step& s : r.steps) n += s.call == call;
  }
  return n;
}

}  // namespace

TEST_CASE("every GPU's NCCL calls meet their peers' and run to the end, for every parallelism", "[comm_plan]") {
  struct Case {
    const char* what;
    std::string text;
  };
  const Case cases[] = {
      {"1F1B, tp 2, pp 4", scenario(8, "{tp: 2, pp: 4, dp: 1, schedule: 1f1b}")},
      {"interleaved 1F1B, pp 4, dp 2", scenario(8, "{tp: 1, pp: 4, dp: 2, schedule: interleaved-1f1b, virtual_stages: 2}")},
      {"ZB-H1, pp 8", scenario(8, "{pp: 8, schedule: zb-h1}")},
      {"ZB-V, pp 4, tp 2", scenario(8, "{tp: 2, pp: 4, schedule: zb-v, virtual_stages: 2}")},
      {"DualPipe, pp 4, dp 2", scenario(8, "{pp: 4, dp: 2, schedule: dualpipe}", "{preset: llama3-8b, layers: 8}",
                                        "{seq_len: 2048, global_batch_size: 16}")},
      {"GPipe, tied embeddings, pp 2, dp 4",
       scenario(8, "{pp: 2, dp: 4, schedule: gpipe}", "{preset: llama3-8b, layers: 8, tied_embeddings: true}")},
      {"ZeRO-3, tp 2, dp 8 over two nodes", scenario(16, "{tp: 2, dp: 8, zero: 3}")},
      {"USP zigzag: ulysses 4 x ring 4 over two nodes",
       scenario(16, "{ulysses: 4, ring: 4, ring_layout: zigzag}", "{preset: llama3-8b, layers: 4}",
                "{seq_len: 32K, global_batch_size: 1, recompute: full}")},
      {"ring 2 x pp 2 x tp 2, striped", scenario(8, "{tp: 2, ring: 2, pp: 2, ring_layout: striped}")},
      {"context all-gather, ring 4 x dp 2", scenario(8, "{ring: 4, dp: 2, cp_mode: allgather}")},
  };
  for (const Case& c : cases) {
    INFO(c.what);
    const Planned p = plan_all(c.text);
    CHECK(verify(p.plan, p.run->plan.program) == "");
    // Every step waits only for earlier steps, and every GPU has one.
    REQUIRE(p.plan.ranks.size() == p.device_of.size());
    for (const RankPlan& r : p.plan.ranks) {
      for (size_t i = 0; i < r.steps.size(); ++i) {
        for (uint32_t w : r.steps[i].waits) CHECK(w < i);
      }
    }
  }
}

TEST_CASE("collectives run as NCCL's own over their group's GPUs, on a communicator per stream", "[comm_plan]") {
  const Planned p = plan_all(scenario(16, "{tp: 2, pp: 2, dp: 4, zero: 1, schedule: 1f1b}"));
  // Tensor-parallel collectives on the compute stream, gradients on the dp stream, activations
  // on the p2p stream: never behind each other.
  CHECK(channels(p.plan) == std::set<std::string>{"compute", "dp", "p2p"});
  CHECK(count_calls(p.plan, CommCall::AllGather) > 0);
  CHECK(count_calls(p.plan, CommCall::ReduceScatter) > 0);
  for (const Communicator& c : p.plan.comms) {
    if (c.channel == "compute") CHECK(c.gpus.size() == 2);  // a tp group
    if (c.channel == "dp") CHECK(c.gpus.size() == 4);       // a data-parallel group of one tp rank and stage
    if (c.channel == "p2p") CHECK(c.gpus.size() == 16);     // pipeline sends address GPUs of the world
  }
  // Every data-parallel replica runs its own tensor-parallel collectives, though the Program
  // only carries the representative's.
  CHECK(std::count_if(p.plan.comms.begin(), p.plan.comms.end(), [](const Communicator& c) { return c.channel == "compute"; }) == 8);
  // Disjoint groups come from one split: 8 tp groups in one round, 4 dp groups in one.
  CHECK(p.plan.rounds == 3);
  // A collective's size is nccl-tests' S of its group, the same on every member.
  const sim::Program& prog = p.run->plan.program;
  for (const RankPlan& r : p.plan.ranks) {
    for (const Step& s : r.steps) {
      if (s.call == CommCall::AllGather) CHECK(s.bytes == prog.groups()[s.group].collective_size.value);
      if (s.call == CommCall::SendRecv) CHECK((!s.sends.empty() || !s.recvs.empty()));
    }
  }
}

TEST_CASE("a plan whose calls do not pair up is refused before any GPU waits on it", "[comm_plan]") {
  Planned p = plan_all(scenario(4, "{pp: 4, schedule: 1f1b}", "{preset: llama3-8b, layers: 8}",
                                "{seq_len: 2048, global_batch_size: 4}"));
  REQUIRE(verify(p.plan, p.run->plan.program).empty());
  RankPlan& first = p.plan.ranks[0];
  // Stage 0 sends its activations forward and receives gradients back over one communicator.
  std::vector<size_t> sends, recvs;
  for (size_t i = 0; i < first.steps.size(); ++i) {
    if (first.steps[i].call != CommCall::SendRecv) continue;
    (first.steps[i].sends.empty() ? recvs : sends).push_back(i);
  }
  REQUIRE(sends.size() == 4);
  REQUIRE(recvs.size() == 4);
  SECTION("a receive issued before the send its peer waits for never ends") {
    // Swap what the last send and the first receive move: the GPU now waits for a gradient
    // before sending the activation that gradient needs.
    std::swap(first.steps[sends.back()].sends, first.steps[recvs.front()].sends);
    std::swap(first.steps[sends.back()].recvs, first.steps[recvs.front()].recvs);
    const std::string why = verify(p.plan, p.run->plan.program);
    CHECK_THAT(why, Catch::Contains("wait forever"));
  }
  SECTION("a message whose sizes differ at its two ends") {
    first.steps[sends.front()].sends[0].bytes += 2;
    CHECK_THAT(verify(p.plan, p.run->plan.program), Catch::Contains("receives"));
  }
  SECTION("a collective one member never reaches") {
    Planned d = plan_all(scenario(8, "{tp: 2, dp: 4}"));
    for (Step& s : d.plan.ranks[3].steps) {
      if (s.call != CommCall::None && d.plan.comms[static_cast<size_t>(s.comm)].channel == "dp") {
        s.call = CommCall::None;
        break;
      }
    }
    CHECK_THAT(verify(d.plan, d.run->plan.program), Catch::Contains("reached by 3 of its 4 GPUs"));
  }
}

TEST_CASE("every GPU planning alone builds the communicators and order the others do", "[comm_plan]") {
  const Planned all = plan_all(scenario(8, "{tp: 2, pp: 2, dp: 2, schedule: 1f1b}"));
  const int32_t one[] = {5};
  const CommPlan alone = plan_communication(all.run->job, all.run->plan, all.run->trace, one);
  CHECK(alone.order_hash == all.plan.order_hash);
  REQUIRE(alone.ranks.size() == 1);
  CHECK(alone.ranks[0].steps.size() == all.plan.ranks[5].steps.size());
  CHECK(fingerprint(alone.ranks[0]) == fingerprint(all.plan.ranks[5]));
  CHECK(alone.comms.size() == all.plan.comms.size());
}

TEST_CASE("a GPU's buffer holds its largest call: collectives in place, all-to-all twice, messages side by side",
          "[comm_plan]") {
  Step st;
  st.call = CommCall::AllGather;
  st.bytes = 1000;  // 500 bf16 over 4 ranks: 125 each
  CHECK(call_extent(st, 4).count == 125);
  CHECK(call_extent(st, 4).bytes == 1000);
  st.call = CommCall::AllToAll;
  CHECK(call_extent(st, 4).bytes == 2000);
  st.call = CommCall::AllReduce;
  CHECK(call_extent(st, 4).count == 500);
  st.call = CommCall::SendRecv;
  st.sends = {{1, 300}, {2, 100}};
  st.recvs = {{3, 50}};
  CHECK(call_extent(st, 16).bytes == 450);
  const Planned p = plan_all(scenario(8, "{tp: 2, dp: 4, zero: 1}"));
  const sim::Program& prog = p.run->plan.program;
  int64_t largest = 0;
  for (const Step& s : p.plan.ranks[0].steps) {  // no all-to-all and no sends here: every call is in place
    if (s.call != CommCall::None) largest = std::max(largest, prog.groups()[s.group].collective_size.value);
  }
  CHECK(largest > 0);
  CHECK(buffer_bytes(p.plan, 0) >= largest);
  CHECK(buffer_bytes(p.plan, 0) < largest + 64);  // rounding to whole elements only
}

TEST_CASE("a twin runs its own copy of a group that carries only its representative's transfers", "[comm_plan]") {
  // tp 2 inside a node: the Program's tensor-parallel groups hold GPUs 0 and 1 only.
  const Planned p = plan_all(scenario(8, "{tp: 2, dp: 4}"));
  const sim::Program& prog = p.run->plan.program;
  const Twins twins(p.run->job, p.run->plan);
  sim::GroupId tp_group = sim::kNone;
  for (sim::GroupId g = 0; g < prog.groups().size() && tp_group == sim::kNone; ++g) {
    if (prog.op(prog.members(g)[0]).label.traffic == sim::Traffic::TensorParallel) tp_group = g;
  }
  REQUIRE(tp_group != sim::kNone);
  for (const sim::Transfer& t : prog.transfers(tp_group)) CHECK(t.from_gpu < 2);
  // GPU 5 (tp rank 1 of replica 2) runs the same ring between GPUs 4 and 5, bytes unchanged.
  const std::vector<sim::Transfer> own = twins.transfers(prog, tp_group, 5);
  REQUIRE(own.size() == prog.transfers(tp_group).size());
  for (size_t i = 0; i < own.size(); ++i) {
    CHECK(own[i].from_gpu == prog.transfers(tp_group)[i].from_gpu + 4);
    CHECK(own[i].to_gpu == prog.transfers(tp_group)[i].to_gpu + 4);
    CHECK(own[i].bytes == prog.transfers(tp_group)[i].bytes);
  }
  // A GPU in the group keeps the group's own transfers.
  CHECK(twins.transfers(prog, tp_group, 1).size() == prog.transfers(tp_group).size());
  CHECK(twins.moved(std::vector<int32_t>{0, 1}, 6) == std::vector<int32_t>{6, 7});
}
