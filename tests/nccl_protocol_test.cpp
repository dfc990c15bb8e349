// NCCL's protocol figures, its choice among LL, LL128 and Simple, and the pipelined ring's chain
// latency (sim/model/nccl_protocol), against hand-computed values from hardware.md's tuning.cc figures.
#include <catch2/catch.hpp>

#include <array>
#include <vector>

#include "sim/core/error.hpp"
#include "sim/model/nccl_protocol.hpp"
#include "sim/preset/presets.hpp"

using namespace bubblesim;
using namespace bubblesim::sim;

namespace {

Time us(double v) { return Time::from_seconds(v * 1e-6); }

}  // namespace

TEST_CASE("a pipelined ring pays the slowest run of consecutive hops, lapping the ring when it has more steps", "[nccl]") {
  const std::vector<Time> hops{us(1), us(1), us(1), us(5)};
  CHECK(ring_chain_latency(hops, 0) == Time::zero());
  CHECK(ring_chain_latency(hops, 1) == us(5));
  CHECK(ring_chain_latency(hops, 3) == us(7));       // 1 + 1 + 5
  CHECK(ring_chain_latency(hops, 4) == us(8));       // one lap
  CHECK(ring_chain_latency(hops, 6) == us(8 + 6));   // a lap and the window 1 + 5
  const std::vector<Time> ends{us(5), us(1), us(1), us(5)};
  CHECK(ring_chain_latency(ends, 2) == us(10));      // the window wraps: hop 3, then hop 0
  const std::vector<Time> even(8, us(3.4));
  CHECK(ring_chain_latency(even, 14) == us(3.4) * 14);  // equal hops: one per step
  CHECK(ring_chain_latency({}, 5) == Time::zero());
}

TEST_CASE("LL and LL128 hops scale the topology's Simple-protocol latency by NCCL's ratios per link class", "[nccl]") {
  CHECK(protocol_hop_latency(NcclProtocol::Simple, LinkClass::NvLink, us(3.4), false) == us(3.4));
  CHECK(protocol_hop_latency(NcclProtocol::LL, LinkClass::NvLink, us(3.4), false) == us(0.6));
  CHECK(protocol_hop_latency(NcclProtocol::LL128, LinkClass::NvLink, us(3.4), false) == us(1.9));
  CHECK(protocol_hop_latency(NcclProtocol::LL, LinkClass::NvLink, us(3.4), true) == us(0.6 * 1.8));
  CHECK(protocol_hop_latency(NcclProtocol::LL, LinkClass::Pcie, us(5.7), false) == us(1.0));
  CHECK(protocol_hop_latency(NcclProtocol::LL128, LinkClass::Nic, us(14), true) == us(4.0));
  CHECK(protocol_hop_latency(NcclProtocol::LL, LinkClass::Nic, us(5), true) == us(5 * 2.7 / 14));
  CHECK(protocol_hop_latency(NcclProtocol::LL, LinkClass::Nic, Time::zero(), true) == Time::zero());
  CHECK(protocol_base_latency(NcclProtocol::LL) == us(6.6));
  CHECK(protocol_base_latency(NcclProtocol::LL128) == us(14));
  CHECK(protocol_base_latency(NcclProtocol::Simple) == us(8.4));
}

TEST_CASE("each protocol reaches NCCL's share of the ring bandwidth, LL128 only over NVLink", "[nccl]") {
  const GpuPreset& a100 = find_gpu("a100-sxm4-80gb", "test");
  const GpuPreset& h100 = find_gpu("h100-sxm5-80gb", "test");
  const GpuPreset& l20 = find_gpu("l20-pcie-48gb", "test");
  const Bandwidth nvlink{240e9};
  const RingShape all_reduce{false, 1, false};
  const RingShape gather{true, 1, false};
  const RingShape gather_two_nodes{true, 2, false};
  const RingShape one_per_node{false, 4, true};
  CHECK(protocol_bandwidth_share(NcclProtocol::Simple, a100, all_reduce, nvlink) == 1);
  CHECK(protocol_bandwidth_share(NcclProtocol::LL128, a100, all_reduce, nvlink) == Approx(0.92));
  CHECK(protocol_bandwidth_share(NcclProtocol::LL128, a100, one_per_node, Bandwidth{20e9}) == Approx(0.7));
  CHECK(protocol_bandwidth_share(NcclProtocol::LL128, l20, all_reduce, Bandwidth{25e9}) == 0);
  CHECK(protocol_bandwidth_share(NcclProtocol::LL, a100, all_reduce, nvlink) == Approx(0.25));
  CHECK(protocol_bandwidth_share(NcclProtocol::LL, a100, gather, Bandwidth{150e9}) == Approx(1.0 / 3));
  CHECK(protocol_bandwidth_share(NcclProtocol::LL, a100, gather_two_nodes, Bandwidth{80e9}) == Approx(0.25));
  // llMaxBw caps LL's busbw: inside a node 87.7 GB/s on Ampere, 141 on Hopper; across nodes by
  // host and node count (DGX A100's AMD: 22.5 on 2 nodes, 19 beyond; DGX H100's Intel: 39, 20.4).
  CHECK(protocol_bandwidth_share(NcclProtocol::LL, a100, all_reduce, Bandwidth{600e9}) == Approx(87.7 / 600));
  CHECK(protocol_bandwidth_share(NcclProtocol::LL, h100, all_reduce, Bandwidth{800e9}) == Approx(141.0 / 800));
  CHECK(protocol_bandwidth_share(NcclProtocol::LL, a100, gather_two_nodes, Bandwidth{180e9}) == Approx(22.5 / 180));
  CHECK(protocol_bandwidth_share(NcclProtocol::LL, a100, one_per_node, Bandwidth{180e9}) == Approx(19.0 / 180));
  CHECK(protocol_bandwidth_share(NcclProtocol::LL, h100, gather_two_nodes, Bandwidth{360e9}) == Approx(39.0 / 360));
  CHECK(protocol_bandwidth_share(NcclProtocol::LL, h100, one_per_node, Bandwidth{360e9}) == Approx(20.4 / 360));
}

TEST_CASE("NCCL picks LL for small messages, LL128 in between and Simple for large ones inside an A100 node", "[nccl]") {
  // 8 x A100 all-reduce: 14 NVLink hops at 3.4 us (Simple).
  const GpuPreset& a100 = find_gpu("a100-sxm4-80gb", "test");
  std::array<Time, kNcclProtocols> chain{};
  for (const NcclProtocol p : {NcclProtocol::LL, NcclProtocol::LL128, NcclProtocol::Simple}) {
    chain[static_cast<size_t>(p)] = protocol_hop_latency(p, LinkClass::NvLink, us(3.4), false) * 14;
  }
  const Bandwidth bw{240e9};
  const RingShape node{false, 1, false};
  const auto pick = [&](double size) { return choose_protocol(chain, a100, node, bw, 14 * size / 8); };
  const ProtocolChoice tiny = pick(8);
  CHECK(tiny.protocol == NcclProtocol::LL);
  CHECK(tiny.latency == us(6.6 + 14 * 0.6));
  CHECK(tiny.seconds == Approx(15.0e-6 + 14.0 / (240e9 * 0.25)));
  CHECK(pick(8 << 20).protocol == NcclProtocol::LL128);
  CHECK(pick(512 << 20).protocol == NcclProtocol::Simple);
  const ProtocolChoice forced = choose_protocol(chain, a100, node, bw, 14, NcclProtocol::Simple);
  CHECK(forced.protocol == NcclProtocol::Simple);
  CHECK(forced.latency == us(8.4 + 14 * 3.4));
  // Without NVLink NCCL never runs LL128.
  const GpuPreset& l20 = find_gpu("l20-pcie-48gb", "test");
  CHECK_THROWS_AS(choose_protocol(chain, l20, node, bw, 14, NcclProtocol::LL128), InputError);
  CHECK(choose_protocol(chain, l20, node, bw, 14.0 * (8 << 20) / 8).protocol != NcclProtocol::LL128);
  CHECK_THROWS_WITH(choose_protocol(chain, a100, node, Bandwidth{0}, 14), Catch::Contains("without bandwidth"));
}

TEST_CASE("protocol names read as NCCL_PROTO writes them", "[nccl]") {
  CHECK(parse_protocol("LL128") == NcclProtocol::LL128);
  CHECK(parse_protocol("simple") == NcclProtocol::Simple);
  CHECK(parse_protocol("ll") == NcclProtocol::LL);
  CHECK_FALSE(parse_protocol("auto").has_value());
  CHECK_THROWS_WITH(parse_protocol("tree"), Catch::Contains("valid: auto, LL, LL128, Simple"));
  CHECK(std::string(to_string(NcclProtocol::LL128)) == "LL128");
}
