// Topology routes, the flow-level network (max-min sharing, latency) and the collective
// algorithms against the closed forms and exact values of algorithms.md 3 and 5.6.
#include <catch2/catch.hpp>

#include <optional>
#include <set>

#include "sim/exec/executor.hpp"
#include "sim/ir/validate.hpp"
#include "sim/model/collectives.hpp"
#include "sim/model/network.hpp"
#include "sim/preset/presets.hpp"
#include "sim/topo/topology.hpp"

using namespace bubblesim;
using namespace bubblesim::sim;

namespace {

constexpr int64_t kS = int64_t{1} << 30;

ResolvedCluster cluster(int nodes, int gpn, double intra_gbs, double inter_gbs, double alpha_us, int nics = 8,
                        const char* gpu = "h100-sxm5-80gb") {
  ResolvedCluster c;
  c.gpu = &find_gpu(gpu, "test");
  c.nodes = nodes;
  c.gpus_per_node = gpn;
  c.intra_bandwidth = Bandwidth{intra_gbs * 1e9};
  c.intra_latency = Time::from_seconds(alpha_us * 1e-6);
  c.nics_per_node = nics;
  c.inter_bandwidth = Bandwidth{inter_gbs * 1e9};
  c.inter_latency = Time::from_seconds(alpha_us * 1e-6);
  return c;
}

/// Simulates one collective over GPUs `gpus` of `topo` in flow mode; returns its time in s.
double flow_time(const Topology& topo, CollectiveOp op, CollectiveAlgo algo, int64_t size, const std::vector<int>& gpus,
                 int32_t max_channels = 0) {
  Program p;
  CollectiveSpec spec{op, algo, Bytes{size}, {}, {}, {}, {}, false, {}};
  spec.max_channels = max_channels;
  for (size_t i = 0; i < gpus.size(); ++i) {
    const DeviceId d = p.add_device("gpu " + std::to_string(gpus[i]));
    spec.gpus.push_back(gpus[i]);
    spec.streams.push_back(p.add_stream(d, StreamKind::Comm, "comm"));
    spec.node_of.push_back(topo.node_of(gpus[i]));
  }
  expand_collective(p, spec);
  p.finalize();
  REQUIRE(validate(p).empty());
  FlowNetwork net(topo);
  return simulate(p, GivenTimes{}, &net).makespan.seconds();
}

std::vector<int> first(int n) {
  std::vector<int> v(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) v[static_cast<size_t>(i)] = i;
  return v;
}

}  // namespace

TEST_CASE("routes stay inside a node over NVSwitch and cross nodes through the GPUs' own NICs", "[topo]") {
  const Topology t(cluster(2, 8, 450, 50, 2, 4));
  CHECK(t.route(0, 5).size() == 2);
  CHECK(t.link(t.route(0, 5)[0]).cls == LinkClass::NvLink);
  const auto& cross = t.route(3, 12);
  REQUIRE(cross.size() == 4);
  CHECK(t.link(cross[0]).name == "node0/gpu3->nic");
  CHECK(t.link(cross[1]).name == "node0/nic1->fabric");  // 4 NICs for 8 GPUs: GPU 3 uses NIC 1
  CHECK(t.link(cross[3]).name == "nic->node1/gpu4");
  CHECK(t.route_bandwidth(3, 12).bytes_per_s == Approx(50e9));
  CHECK(t.route_latency(0, 5) == Time::from_seconds(2e-6));
  CHECK(&t.route(0, 5) == &t.route(0, 5));  // computed once
}

TEST_CASE("uncontended ring collectives match algorithms.md 5.6 exactly", "[network][collective]") {
  const Topology t(cluster(1, 8, 100, 50, 5));
  CHECK(flow_time(t, CollectiveOp::AllReduce, CollectiveAlgo::Ring, kS, first(8)) == Approx(0.01886048192).epsilon(1e-9));
  for (CollectiveOp op : {CollectiveOp::AllGather, CollectiveOp::ReduceScatter, CollectiveOp::AllToAll}) {
    INFO(to_string(op));
    CHECK(flow_time(t, op, CollectiveAlgo::Ring, kS, first(8)) == Approx(0.00943024096).epsilon(1e-9));
  }
  CHECK(flow_time(t, CollectiveOp::SendRecv, CollectiveAlgo::Ring, kS, first(8)) == Approx(0.01074241824).epsilon(1e-9));
  // busbw = algbw x factor; with alpha = 0 the ring reaches the link bandwidth exactly.
  const Topology t0(cluster(1, 8, 100, 50, 0));
  const double time = flow_time(t0, CollectiveOp::AllReduce, CollectiveAlgo::Ring, kS, first(8));
  CHECK(kS / time * busbw_factor(CollectiveOp::AllReduce, 8) == Approx(100e9));
}

TEST_CASE("two nodes: two-level all-reduce and the flat ring gated by one NIC (5.6)", "[network][collective]") {
  const Topology t(cluster(2, 8, 300, 50, 0));
  CHECK(flow_time(t, CollectiveOp::AllReduce, CollectiveAlgo::TwoLevel, kS, first(16)) ==
        Approx(0.0089478485).epsilon(1e-8));
  CHECK(flow_time(t, CollectiveOp::AllReduce, CollectiveAlgo::Ring, kS, first(16), 1) ==
        Approx(0.0402653184).epsilon(1e-9));
  CHECK(two_level_all_reduce_time(Bytes{kS}, 8, 2, Bandwidth{300e9}, Time::zero(), Bandwidth{50e9}, Time::zero())
            .seconds() == Approx(0.0089478485).epsilon(1e-8));
}

TEST_CASE("a ring crossing nodes runs one channel per GPU of a node, each on its own NIC", "[network][collective]") {
  // 5.6's two nodes: 8 channels, each crossing between the nodes on another GPU's NIC. Per step
  // a GPU sends 7/8 of its chunk over NVLink and 1/8 through its NIC: busbw =
  // min(B_i * 8/7, 8 B_e) = 342.9 GB/s (5.6 writes min(B_i, 8 B_e) = 300, counting the exit
  // GPU's share on NVLink too).
  const Topology t(cluster(2, 8, 300, 50, 0));
  CHECK(flow_time(t, CollectiveOp::AllReduce, CollectiveAlgo::Ring, kS, first(16)) ==
        Approx(2.0 * 15 / 16 * kS / (300e9 * 8 / 7)).epsilon(1e-7));
  // NIC-bound (8 x 25 GB/s < 342.9): busbw = 8 B_e, 5.6's min(B_i, g B_e) exactly.
  const Topology slow(cluster(2, 8, 300, 25, 0));
  CHECK(flow_time(slow, CollectiveOp::AllReduce, CollectiveAlgo::Ring, kS, first(16)) ==
        Approx(2.0 * 15 / 16 * kS / 200e9).epsilon(1e-9));
  CHECK(flow_time(slow, CollectiveOp::AllGather, CollectiveAlgo::Ring, kS, first(16)) ==
        Approx(15.0 / 16 * kS / 200e9).epsilon(1e-9));
  // Two channels: two NICs of each node busy.
  CHECK(flow_time(slow, CollectiveOp::AllReduce, CollectiveAlgo::Ring, kS, first(16), 2) ==
        Approx(2.0 * 15 / 16 * kS / 50e9).epsilon(1e-9));
  // Four nodes of 4 NICs for 8 GPUs: two channels share each NIC, the node's 4 x 25 GB/s bound it.
  const Topology shared(cluster(4, 8, 300, 25, 0, 4));
  CHECK(flow_time(shared, CollectiveOp::ReduceScatter, CollectiveAlgo::Ring, kS, first(32)) ==
        Approx(31.0 / 32 * kS / 100e9).epsilon(1e-9));
  // One GPU per node (a data-parallel ring across nodes): one channel, as before.
  const std::vector<int> one_per_node{0, 8, 16, 24};
  CHECK(flow_time(shared, CollectiveOp::AllReduce, CollectiveAlgo::Ring, kS, one_per_node) ==
        Approx(2.0 * 3 / 4 * kS / 25e9).epsilon(1e-9));
}

TEST_CASE("ring channels visit every node's GPUs and leave each node from a different GPU", "[collective]") {
  CollectiveSpec spec;
  spec.gpus = {0, 1, 2, 3, 4, 5};
  spec.node_of = {0, 0, 0, 1, 1, 1};
  const auto channels = ring_channels(spec);
  REQUIRE(channels.size() == 3);
  std::set<size_t> exits;
  for (const auto& order : channels) {
    REQUIRE(order.size() == 6);
    CHECK(std::set<size_t>(order.begin(), order.end()).size() == 6);
    CHECK(spec.node_of[order[0]] == 0);  // node 0's GPUs, then node 1's
    CHECK(spec.node_of[order[3]] == 1);
    exits.insert(order[2]);
  }
  CHECK(exits.size() == 3);
  spec.max_channels = 2;
  CHECK(ring_channels(spec).size() == 2);
  spec.node_of = {0, 0, 0, 0, 0, 0};  // one node: the given order
  CHECK(ring_channels(spec) == std::vector<std::vector<size_t>>{{0, 1, 2, 3, 4, 5}});
  spec.node_of = {0, 1, 0, 1, 0, 1};  // interleaved: grouped by node
  spec.max_channels = 0;
  CHECK(ring_channels(spec)[0] == std::vector<size_t>{0, 2, 4, 1, 3, 5});
}

TEST_CASE("flows sharing a link split it max-min fairly", "[network]") {
  // Two nodes with one NIC each: two GPUs of node 0 send to node 1 at once through one NIC.
  const Topology t(cluster(2, 2, 300, 40, 1, 1));
  Program p;
  std::vector<OpId> ends;
  for (int i = 0; i < 4; ++i) p.add_stream(p.add_device("d"), StreamKind::Comm, "comm");
  for (int i = 0; i < 2; ++i) {
    Op a;
    a.kind = OpKind::Collective;
    a.stream = static_cast<StreamId>(i);
    Op b = a;
    b.stream = static_cast<StreamId>(i + 2);
    const OpId members[] = {p.add_op(a), p.add_op(b)};
    const GroupId g = p.add_group(GroupKind::AllToAll, members, Bytes{4'000'000'000});
    const Transfer tr[] = {{i, i + 2, Bytes{4'000'000'000}}};
    p.set_transfers(g, tr);
    ends.push_back(members[0]);
  }
  p.finalize();
  FlowNetwork net(t);
  const Trace tr = simulate(p, GivenTimes{}, &net);
  // Each gets 20 GB/s of the 40 GB/s NIC: 4 GB in 0.2 s, plus 1 us of fabric latency.
  CHECK(tr.records[ends[0]].end.seconds() == Approx(0.2 + 1e-6).epsilon(1e-9));
  CHECK(tr.records[ends[1]].end.seconds() == Approx(0.2 + 1e-6).epsilon(1e-9));
  CHECK(net.link_bytes()[t.route(0, 2)[1]] == Approx(8e9));  // both flows crossed node 0's NIC
}

TEST_CASE("a flow that starts later gets the bandwidth left when the first one ends", "[network]") {
  const Topology t(cluster(2, 2, 300, 40, 0, 1));
  Program p;
  for (int i = 0; i < 4; ++i) p.add_stream(p.add_device("d"), StreamKind::Comm, "comm");
  auto transfer = [&](int from, int to, int64_t bytes) {
    Op a;
    a.kind = OpKind::Collective;
    a.stream = static_cast<StreamId>(from);
    Op b = a;
    b.stream = static_cast<StreamId>(to);
    const OpId members[] = {p.add_op(a), p.add_op(b)};
    const GroupId g = p.add_group(GroupKind::AllToAll, members, Bytes{bytes});
    const Transfer tr[] = {{from, to, Bytes{bytes}}};
    p.set_transfers(g, tr);
    return members[0];
  };
  const OpId big = transfer(0, 2, 8'000'000'000);    // alone 0.2 s at 40 GB/s
  const OpId small = transfer(1, 3, 2'000'000'000);  // shares the NIC from t = 0
  p.finalize();
  FlowNetwork net(t);
  const Trace tr = simulate(p, GivenTimes{}, &net);
  // Both at 20 GB/s until the small one ends at 0.1 s (2 GB), then the big one alone at 40 GB/s
  // for its last 6 GB: 0.1 + 0.15 = 0.25 s.
  CHECK(tr.records[small].end.seconds() == Approx(0.1).epsilon(1e-9));
  CHECK(tr.records[big].end.seconds() == Approx(0.25).epsilon(1e-9));
}

TEST_CASE("the alpha-beta mode agrees with the flow mode on uncontended collectives", "[network][collective]") {
  for (int n : {2, 3, 4, 8}) {
    const Topology t(cluster(1, n, 150, 50, 3));
    for (CollectiveOp op : {CollectiveOp::AllReduce, CollectiveOp::AllGather, CollectiveOp::ReduceScatter,
                            CollectiveOp::AllToAll, CollectiveOp::SendRecv}) {
      for (int64_t size : {int64_t{8} * n, int64_t{1} << 20, int64_t{1} << 28}) {
        INFO(to_string(op) << " n=" << n << " size=" << size);
        const double flow = flow_time(t, op, CollectiveAlgo::Ring, size, first(n));
        const double ab = alpha_beta_time(op, Bytes{size}, n, Bandwidth{150e9}, Time::from_seconds(3e-6)).seconds();
        CHECK(flow == Approx(ab).epsilon(1e-6));
      }
    }
  }
}

TEST_CASE("a collective simulated on one representative GPU takes the time of the full ring", "[network][collective]") {
  const Topology t(cluster(2, 8, 300, 50, 2));
  const double full = flow_time(t, CollectiveOp::AllReduce, CollectiveAlgo::TwoLevel, kS, first(16));
  Program p;
  CollectiveSpec spec{CollectiveOp::AllReduce, CollectiveAlgo::TwoLevel, Bytes{kS}, {}, {}, {}, {}, false, {}};
  const StreamId only = p.add_stream(p.add_device("gpu 0"), StreamKind::Comm, "comm");
  for (int g = 0; g < 16; ++g) {
    spec.gpus.push_back(g);
    spec.streams.push_back(g == 0 ? only : kNone);
    spec.node_of.push_back(t.node_of(g));
  }
  const auto last = expand_collective(p, spec);
  CHECK(last[0] != kNone);
  CHECK(last[1] == kNone);
  p.finalize();
  REQUIRE(validate(p).empty());
  FlowNetwork net(t);
  CHECK(simulate(p, GivenTimes{}, &net).makespan.seconds() == Approx(full).epsilon(1e-12));
  CHECK(p.num_ops() == 7 + 2 + 7);  // intra RS, inter all-reduce, intra AG steps of GPU 0
}

TEST_CASE("fused ring steps take the step-wise time when the ring has its links to itself", "[network][collective]") {
  const Topology t(cluster(1, 8, 100, 50, 5));
  for (CollectiveOp op : {CollectiveOp::AllReduce, CollectiveOp::AllGather, CollectiveOp::ReduceScatter}) {
    Program p;
    CollectiveSpec spec{op, CollectiveAlgo::Ring, Bytes{kS}, {}, {}, {}, {}, false, {}};
    spec.fuse_steps = true;
    for (int g = 0; g < 8; ++g) {
      spec.gpus.push_back(g);
      spec.streams.push_back(p.add_stream(p.add_device("d"), StreamKind::Comm, "comm"));
    }
    expand_collective(p, spec);
    p.finalize();
    CHECK(p.groups().size() == 1);
    FlowNetwork net(t);
    INFO(to_string(op));
    CHECK(simulate(p, GivenTimes{}, &net).makespan.seconds() ==
          Approx(flow_time(t, op, CollectiveAlgo::Ring, kS, first(8))).epsilon(1e-9));
  }
}

TEST_CASE("with more NICs than GPUs, each GPU's NICs act as one wider NIC", "[topo]") {
  ResolvedCluster c = cluster(2, 8, 300, 25, 1, 16);
  const Topology t(c);
  CHECK(t.route_bandwidth(0, 8).bytes_per_s == Approx(50e9));  // two 25 GB/s NICs per GPU
}

TEST_CASE("an oversubscribed fabric narrows a node's uplink", "[topo]") {
  ResolvedCluster c = cluster(2, 8, 300, 50, 1, 8);
  c.oversubscription = 4;
  const Topology t(c);
  REQUIRE(t.route(0, 8).size() == 6);  // GPU, NIC, leaf, fabric, leaf, NIC, GPU
  CHECK(t.link(t.route(0, 8)[2]).bandwidth.bytes_per_s == Approx(100e9));  // leaf uplink: 8 x 50 GB/s / 4
  // All eight rails crossing at once share the leaf uplink: each gets 12.5 GB/s.
  CHECK(flow_time(t, CollectiveOp::AllReduce, CollectiveAlgo::TwoLevel, kS, first(16)) >
        flow_time(Topology(cluster(2, 8, 300, 50, 1, 8)), CollectiveOp::AllReduce, CollectiveAlgo::TwoLevel, kS,
                  first(16)));
}

namespace {

/// One fused ring collective over `gpus` of `topo`, run as NCCL runs it (protocol, pipelined
/// latency): its simulated time in s, and NCCL's choice for it.
std::pair<double, ProtocolChoice> nccl_ring(const Topology& topo, const GpuPreset& gpu, CollectiveOp op, int64_t size,
                                            const std::vector<int>& gpus,
                                            std::optional<NcclProtocol> forced = std::nullopt) {
  Program p;
  CollectiveSpec spec{op, CollectiveAlgo::Ring, Bytes{size}, {}, {}, {}, {}, true, {}};
  spec.topology = &topo;
  spec.gpu = &gpu;
  spec.protocol = forced;
  for (int g : gpus) {
    spec.gpus.push_back(g);
    spec.streams.push_back(p.add_stream(p.add_device("gpu " + std::to_string(g)), StreamKind::Comm, "comm"));
    spec.node_of.push_back(topo.node_of(g));
  }
  REQUIRE(runs_protocol(spec));
  const ProtocolChoice choice = ring_protocol(spec);
  expand_collective(p, spec);
  p.finalize();
  REQUIRE(validate(p).empty());
  FlowNetwork net(topo);
  return {simulate(p, GivenTimes{}, &net).makespan.seconds(), choice};
}

}  // namespace

TEST_CASE("a ring crossing nodes pays each slow hop only as often as a chunk crosses it", "[network][collective]") {
  // 2 x 8 GPUs, NVLink hops 3.4 us, NIC hops 5 us (Simple). An all-reduce's 30 steps over 8
  // channels of 16 hops, 2 of them between nodes: the longest run of 30 hops crosses 4 times.
  ResolvedCluster c = cluster(2, 8, 150, 25, 3.4, 8, "a800-sxm4-80gb");
  c.inter_latency = Time::from_seconds(5e-6);
  const Topology t(c);
  const auto [simple, choice] = nccl_ring(t, *c.gpu, CollectiveOp::AllReduce, 16, first(16), NcclProtocol::Simple);
  CHECK(choice.latency == Time::from_seconds((8.4 + 4 * 5 + 26 * 3.4) * 1e-6));
  CHECK(simple == Approx(choice.seconds).epsilon(1e-6));
  // In lockstep (no topology given) every step waits for its slowest hop: 30 x 5 us.
  CHECK(flow_time(t, CollectiveOp::AllReduce, CollectiveAlgo::Ring, 16, first(16)) == Approx(150e-6).epsilon(1e-3));
  // NCCL's own choice for 16 bytes is LL: 6.6 us base; a NIC hop costs 5 x 2.7 / 14 = 0.96 us
  // and an NVLink hop 0.6 x 1.8 = 1.08 us (LL's intra-node hops when the ring spans nodes), so
  // the slowest run of 30 hops is the one crossing least: 3 times.
  const auto [ll, auto_choice] = nccl_ring(t, *c.gpu, CollectiveOp::AllReduce, 16, first(16));
  CHECK(auto_choice.protocol == NcclProtocol::LL);
  CHECK(ll == Approx((6.6 + 3 * 5 * 2.7 / 14 + 27 * 0.6 * 1.8) * 1e-6).epsilon(1e-4));
}

TEST_CASE("NCCL's protocol choice sets a ring's time, the simulated one agreeing with the closed form", "[network][collective]") {
  const GpuPreset& a100 = find_gpu("a100-sxm4-80gb", "test");
  const Topology one(cluster(1, 8, 240, 25, 3.4, 8, "a100-sxm4-80gb"));
  ResolvedCluster two_nodes = cluster(4, 8, 240, 25, 3.4, 8, "a100-sxm4-80gb");
  two_nodes.inter_latency = Time::from_seconds(5e-6);
  const Topology four(two_nodes);
  for (CollectiveOp op : {CollectiveOp::AllReduce, CollectiveOp::AllGather, CollectiveOp::ReduceScatter}) {
    for (int64_t size : {int64_t{64}, int64_t{1} << 20, int64_t{8} << 20, int64_t{1} << 30}) {
      for (const auto* t : {&one, &four}) {
        const int n = t == &one ? 8 : 32;
        INFO(to_string(op) << " size " << size << " ranks " << n);
        const auto [simulated, choice] = nccl_ring(*t, a100, op, size * n / 8, first(n));
        CHECK(simulated == Approx(choice.seconds).epsilon(1e-6));
        if (size == 64) CHECK(choice.protocol == NcclProtocol::LL);
        if (size == int64_t{1} << 30) CHECK(choice.protocol == NcclProtocol::Simple);
      }
    }
  }
  // Inside the node: 8 bytes under LL take NCCL's 6.6 us base and 14 hops of 0.6 us.
  CHECK(nccl_ring(one, a100, CollectiveOp::AllReduce, 8, first(8)).first == Approx(15e-6).epsilon(1e-3));
}

TEST_CASE("each ring of a collective, its own and its twins', pays its own chain latency", "[network][collective]") {
  // 2 nodes x 4 GPUs. The simulated ring {0, 1, 2, 3} stays in node 0; its twin {2, 3, 4, 5}
  // crosses to node 1 and back, so its chunks pay two NIC hops where the first pays none.
  ResolvedCluster c = cluster(2, 4, 150, 25, 3.4, 4, "a100-sxm4-80gb");
  c.inter_latency = Time::from_seconds(5e-6);
  const Topology t(c);
  Program p;
  CollectiveSpec spec{CollectiveOp::AllGather, CollectiveAlgo::Ring, Bytes{1 << 20}, {0, 1, 2, 3}, {}, {0, 0, 0, 0},
                      {{2, 3, 4, 5}}, true, {}};
  spec.topology = &t;
  spec.gpu = c.gpu;
  spec.protocol = NcclProtocol::Simple;
  for (int g = 0; g < 4; ++g) spec.streams.push_back(p.add_stream(p.add_device("d"), StreamKind::Comm, "comm"));
  expand_collective(p, spec);
  p.finalize();
  REQUIRE(p.groups().size() == 1);
  const auto transfers = p.transfers(0);
  REQUIRE(transfers.size() == 8);
  const Time own = Time::from_seconds((8.4 + 3 * 3.4) * 1e-6);             // 3 NVLink hops
  const Time twin = Time::from_seconds((8.4 + 2 * 5 + 1 * 3.4) * 1e-6);    // the 3 hops 3->4, 4->5, 5->2
  for (size_t i = 0; i < transfers.size(); ++i) {
    INFO(i);
    CHECK(transfers[i].latency == (i % 2 == 0 ? own : twin));
  }
  // Merged collectives pay it once each.
  Program q;
  spec.merged = 3;
  spec.streams.clear();
  for (int g = 0; g < 4; ++g) spec.streams.push_back(q.add_stream(q.add_device("d"), StreamKind::Comm, "comm"));
  expand_collective(q, spec);
  q.finalize();
  CHECK(q.transfers(0)[0].latency == own * 3);
  CHECK(q.groups()[0].wire_scale == Approx(1.0));
}

TEST_CASE("NCCL runs large all-reduces inside a Hopper node with NVLink SHARP, rings elsewhere", "[network][collective]") {
  const Topology h100(cluster(1, 8, 370, 47.5, 3.4, 8, "h100-sxm5-80gb"));
  const GpuPreset& gpu = find_gpu("h100-sxm5-80gb", "test");
  const auto run = [&](CollectiveOp op, CollectiveAlgo algo, int64_t size) {
    Program p;
    CollectiveSpec spec{op, algo, Bytes{size}, {}, {}, {}, {}, true, {}};
    spec.topology = &h100;
    spec.gpu = &gpu;
    for (int g = 0; g < 8; ++g) {
      spec.gpus.push_back(g);
      spec.node_of.push_back(0);
      spec.streams.push_back(p.add_stream(p.add_device("d"), StreamKind::Comm, "comm"));
    }
    const ProtocolChoice choice = ring_protocol(spec);
    expand_collective(p, spec);
    p.finalize();
    REQUIRE(validate(p).empty());
    FlowNetwork net(h100);
    return std::pair{simulate(p, GivenTimes{}, &net).makespan.seconds(), choice};
  };
  // 1 GiB: the buffer to the switch and back at 0.74 of 370 GB/s after 25 us: busbw 477 GB/s.
  const auto [nvls, big] = run(CollectiveOp::AllReduce, CollectiveAlgo::Auto, kS);
  CHECK(big.nvls);
  CHECK(describe(big) == "nvls/Simple");
  CHECK(nvls == Approx(25e-6 + kS / (370e9 * kNvlsShare)).epsilon(1e-6));
  CHECK(nvls == Approx(big.seconds).epsilon(1e-6));
  // Small messages stay on the ring (LL's 15 us beat NVLS's 25 us), as do other collectives and
  // a ring asked for by name.
  CHECK_FALSE(run(CollectiveOp::AllReduce, CollectiveAlgo::Auto, 1024).second.nvls);
  CHECK_FALSE(run(CollectiveOp::AllGather, CollectiveAlgo::Auto, kS).second.nvls);
  const auto [ring, ring_choice] = run(CollectiveOp::AllReduce, CollectiveAlgo::Ring, kS);
  CHECK_FALSE(ring_choice.nvls);
  CHECK(ring > nvls * 1.2);
  // Nowhere else: not on Ampere, not across nodes.
  const Topology a100(cluster(1, 8, 240, 25, 3.4, 8, "a100-sxm4-80gb"));
  Program p;
  CollectiveSpec spec{
      CollectiveOp::AllReduce, CollectiveAlgo::Nvls, Bytes{kS}, first(8), {}, std::vector<int32_t>(8, 0), {}, true, {}};
  spec.topology = &a100;
  spec.gpu = &find_gpu("a100-sxm4-80gb", "test");
  for (int g = 0; g < 8; ++g) spec.streams.push_back(p.add_stream(p.add_device("d"), StreamKind::Comm, "comm"));
  CHECK_THROWS_WITH(expand_collective(p, spec), Catch::Contains("NVLink SHARP runs all-reduces"));
  CHECK_FALSE(nvls_supported(gpu, 2, 16));
}

TEST_CASE("a ring's bandwidth counts every link its channels share: NICs and an oversubscribed uplink", "[network][collective]") {
  const GpuPreset& gpu = find_gpu("a100-sxm4-80gb", "test");
  const auto agree = [&](const ResolvedCluster& c, int32_t max_channels) {
    const Topology t(c);
    Program p;
    CollectiveSpec spec{CollectiveOp::AllReduce, CollectiveAlgo::Ring, Bytes{kS}, {}, {}, {}, {}, true, {}};
    spec.topology = &t;
    spec.gpu = &gpu;
    spec.protocol = NcclProtocol::Simple;
    spec.max_channels = max_channels;
    for (int g = 0; g < 16; ++g) {
      spec.gpus.push_back(g);
      spec.node_of.push_back(t.node_of(g));
      spec.streams.push_back(p.add_stream(p.add_device("d"), StreamKind::Comm, "comm"));
    }
    const ProtocolChoice choice = ring_protocol(spec);
    expand_collective(p, spec);
    p.finalize();
    FlowNetwork net(t);
    CHECK(simulate(p, GivenTimes{}, &net).makespan.seconds() == Approx(choice.seconds).epsilon(1e-6));
    return ring_bandwidth(spec, ring_channels(spec)).bytes_per_s;
  };
  // 8 channels over 8 NICs of 50 GB/s, behind a leaf whose uplink is a quarter of them: 100 GB/s.
  ResolvedCluster oversubscribed = cluster(2, 8, 240, 50, 3.4, 8, "a100-sxm4-80gb");
  oversubscribed.oversubscription = 4;
  CHECK(agree(oversubscribed, 0) == Approx(100e9));
  // 4 channels leave each node by GPUs 7, 0, 1, 2 on NICs 3, 0, 0, 1 of 4: NIC 0 carries two.
  CHECK(agree(cluster(2, 8, 240, 50, 3.4, 4, "a100-sxm4-80gb"), 4) == Approx(4 * 50e9 / 2));
  // NVLS needs more than two GPUs of one Hopper node.
  const GpuPreset& h100 = find_gpu("h100-sxm5-80gb", "test");
  CHECK_FALSE(nvls_supported(h100, 1, 2));
  CHECK(nvls_supported(h100, 1, 3));
}
