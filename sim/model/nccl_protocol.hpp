// NCCL's three wire protocols (LL, LL128, Simple) as its own cost model describes them
// (src/graph/tuning.cc, v2.30; hardware.md "Latency (α) figures"): a base latency per call, a
// per-hop latency per link class, the share of the links' bandwidth each reaches, and NCCL's choice
// of the fastest; the latency of a pipelined ring, whose chunks travel hop after hop; and NVLink
// SHARP's all-reduce inside a Hopper node. Not a network: the bandwidth a collective gets comes
// from the caller (the flow model shares links).
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "sim/core/units.hpp"
#include "sim/preset/presets.hpp"
#include "sim/topo/topology.hpp"

namespace bubblesim::sim {

enum class NcclProtocol : uint8_t { LL, LL128, Simple };
constexpr int kNcclProtocols = 3;

const char* to_string(NcclProtocol p);
/// "LL", "LL128" or "Simple" (NCCL_PROTO's names, any case); "auto" gives nullopt (NCCL's
/// choice). Throws InputError listing the valid names.
std::optional<NcclProtocol> parse_protocol(std::string_view name);

/// The latency NCCL's model charges once per ring collective under protocol `p`: 6.6 us (LL),
/// 14 us (LL128), 8.4 us (Simple).
Time protocol_base_latency(NcclProtocol p);

/// One hop's latency over a link of class `cls` under protocol `p`, for a link whose latency in
/// the topology is `simple`. The topology's link latencies are the Simple protocol's per-hop
/// figures (the presets' NVLink 3.4 us and PCIe 5.7 us are NCCL's); LL and LL128 scale them by
/// NCCL's ratios for that class (NVLink 0.6 / 1.9 of 3.4, PCIe 1.0 / 2.5 of 5.7, network
/// 2.7 / 4.0 of 14), so a calibrated or user-set latency keeps its meaning. NCCL charges LL's
/// intra-node hops 1.8 times when the collective spans nodes (`multi_node`).
Time protocol_hop_latency(NcclProtocol p, LinkClass cls, Time simple, bool multi_node);

/// What NCCL's protocol figures depend on for one ring collective.
struct RingShape {
  bool gather_or_scatter = false;  // all-gather or reduce-scatter (else all-reduce)
  int32_t nodes = 1;               // nodes the ring spans
  bool one_gpu_per_node = false;   // every node holds one of its GPUs
};

/// The share of the ring's bandwidth `ring_bw` (per rank and direction, the Simple protocol's)
/// that protocol `p` reaches: LL carries 8 data bytes per 16-byte line and runs at a quarter of
/// the links (a third for all-gather and reduce-scatter inside one node), at most llMaxBw: inside
/// a node 87.7 GB/s on Ampere and 141 on Hopper; across 2 nodes 22.5 (Ampere, AMD hosts as in a
/// DGX A100) or 39 (Intel hosts as in a DGX H100), across more 19.0 or 20.4; LL128 0.92 (0.7 with
/// one GPU per node); Simple all of it. 0 where NCCL does not enable the protocol (LL128 needs
/// NVLink inside the node).
double protocol_bandwidth_share(NcclProtocol p, const GpuPreset& gpu, const RingShape& ring, Bandwidth ring_bw);

/// The latency of a pipelined ring of `steps` steps whose hops have latencies `hops` (hop j
/// from position j to j + 1, cyclically): the most any chunk pays, the largest sum over `steps`
/// consecutive hops. NCCL's ring forwards each chunk as soon as it arrives, so a ring with a
/// few slow hops (those that cross nodes) pays them only as often as a chunk crosses them, not
/// once per step. O(hops).
Time ring_chain_latency(std::span<const Time> hops, int64_t steps);

/// A protocol (and algorithm: a ring, or NVLink SHARP) and what it costs one collective.
struct ProtocolChoice {
  NcclProtocol protocol = NcclProtocol::Simple;
  Time latency;          // base latency plus the ring's chain latency (NVLS: its own latency)
  double share = 1;      // of the ring's bandwidth (protocol_bandwidth_share, or kNvlsShare)
  double seconds = 0;    // the whole collective: latency + wire bytes / (bandwidth x share)
  bool nvls = false;     // NVLink SHARP all-reduce instead of a ring
};
/// "ring/LL", "ring/LL128", "ring/Simple" or "nvls/Simple".
std::string describe(const ProtocolChoice& c);

/// NVLink SHARP (NVLS) all-reduce inside one node of third-generation NVSwitches (Hopper): each
/// GPU sends its buffer to the switch, which reduces it, and receives the result multicast, once
/// each way, at kNvlsShare of its NVLink bandwidth per direction after NCCL's NVLS latency of
/// 25 us (Simple protocol only). kNvlsShare is nccl-tests' algbw over NCCL's NVLink figure for an
/// 8 x H100 all-reduce (275 of 370 GB/s, published.csv NCCL-H100-NVLS-AR); the same share gives
/// the H200's 475 and H800's 215 GB/s busbw within 1.1% (validation/nccl).
constexpr double kNvlsShare = 0.74;
Time nvls_latency();
/// Whether NCCL can run an all-reduce over `ranks` GPUs of one node of `gpu` with NVLS: Hopper
/// on NVSwitch, one node, more than 2 GPUs.
bool nvls_supported(const GpuPreset& gpu, int32_t nodes, size_t ranks);

/// NCCL's choice among the enabled protocols for a ring collective (or `forced`): the least
/// `latency[p] + wire_bytes / (ring_bw x share[p])`, where `latency[p]` is the protocol's base
/// latency plus its chain latency `chain[p]` and `wire_bytes` what each rank sends in all. Throws
/// InputError when `forced` is not enabled on this GPU, or the ring has no bandwidth.
ProtocolChoice choose_protocol(std::span<const Time, kNcclProtocols> chain, const GpuPreset& gpu, const RingShape& ring,
                               Bandwidth ring_bw, double wire_bytes, std::optional<NcclProtocol> forced = std::nullopt);

}  // namespace bubblesim::sim
