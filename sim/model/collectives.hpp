// Collectives as their algorithms' point-to-point steps (ring all-reduce / all-gather /
// reduce-scatter, pairwise all-to-all, ring send/recv, and the two-level all-reduce: intra-node
// reduce-scatter, inter-node all-reduce, intra-node all-gather), appended to a Program; and the
// alpha-beta closed forms of algorithms.md section 3 for the fast mode. Sizes follow nccl-tests.
// Not a network: the steps' transfers go over whatever NetworkModel the executor is given.
#pragma once

#include <array>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "sim/core/units.hpp"
#include "sim/ir/program.hpp"
#include "sim/model/nccl_protocol.hpp"
#include "sim/preset/presets.hpp"
#include "sim/topo/topology.hpp"

namespace bubblesim::sim {

enum class CollectiveOp : uint8_t { AllReduce, AllGather, ReduceScatter, AllToAll, SendRecv };
/// Auto: NCCL's choice, NVLink SHARP for an all-reduce inside a Hopper node when its cost model
/// says so (nccl_protocol.hpp), a ring otherwise. Nvls: NVLink SHARP (where NCCL supports it).
enum class CollectiveAlgo : uint8_t { Ring, TwoLevel, Nvls, Auto };

const char* to_string(CollectiveOp op);
/// Throws InputError listing the valid names.
CollectiveOp parse_collective(std::string_view name);
CollectiveAlgo parse_algorithm(std::string_view name);

/// nccl-tests' busbw / algbw factor for `n` ranks (doc/PERFORMANCE.md).
double busbw_factor(CollectiveOp op, int n);

struct RingHops;

/// One collective over the GPUs `gpus` (in ring order). `streams[i]` is the stream on which
/// position i issues, or kNone for a GPU the Program does not simulate (its transfers still go
/// over the network, as a symmetric twin of a simulated one). `size` is nccl-tests' S: all-reduce
/// buffer, all-gather total output, reduce-scatter total input, all-to-all per-rank send buffer,
/// send/recv message. `node_of` gives each position's node (may be empty: one node, or
/// unknown). TwoLevel needs it, with the same number of positions on every node; a Ring over
/// several nodes with several positions on each uses it to run NCCL's channels (ring_channels).
struct CollectiveSpec {
  CollectiveOp op = CollectiveOp::AllReduce;
  CollectiveAlgo algo = CollectiveAlgo::Ring;
  Bytes size;
  std::vector<int32_t> gpus;
  std::vector<StreamId> streams;
  std::vector<int32_t> node_of;
  /// Rings of other GPUs running the same collective at the same time (e.g. the other
  /// tensor-parallel ranks' data-parallel rings): their transfers ride on each step's group.
  std::vector<std::vector<int32_t>> twins;
  /// Fuse a ring's steps into one group whose transfers carry every step's bytes and latency:
  /// exact when the ring's links carry nothing else, and far fewer events (training Programs).
  /// An all-to-all is then one group with every pair's transfer at once (NCCL's grouped p2p).
  bool fuse_steps = false;
  /// Label of every op of the collective (the pass and layer it serves).
  Label label;
  /// Back-to-back collectives of the same kind on the same GPUs merged into this one (their
  /// sizes summed): each transfer pays its latency (the route's, or the protocol's base and chain
  /// latency) this many times, as they would; the protocol is chosen for the summed size.
  int32_t merged = 1;
  /// The share of the links' bandwidth NCCL's pipeline reaches at this size (nccl_efficiency):
  /// transfers carry bytes / efficiency. 1: the links' full rate.
  double efficiency = 1;
  /// At most this many ring channels (ring_channels); 0: one per position on each node.
  int32_t max_channels = 0;
  /// The cluster and its GPU. With both, a fused ring collective (algorithm Ring) runs as NCCL
  /// runs it (ring_protocol): under the protocol NCCL's cost model picks (or `protocol`), at
  /// that protocol's share of the bandwidth, paying its base latency plus the pipelined ring's
  /// chain latency. Without them, and for the two-level algorithm, all-to-all, send/recv and
  /// steps in lockstep, each transfer pays its route's latency once per step.
  const Topology* topology = nullptr;
  const GpuPreset* gpu = nullptr;
  /// NCCL_PROTO: the protocol ring collectives use; nullopt: NCCL's choice.
  std::optional<NcclProtocol> protocol = std::nullopt;
  /// ring_hops(*this), kept by a caller that expands the same GPUs many times (the route
  /// lookups behind it cost more than the rest of an expansion); nullptr: computed each time.
  const RingHops* hops = nullptr;
};

/// The hop latencies of a spec's rings under each protocol: for protocol p, ring order r (of
/// `orders`, ring_channels) and copy k (0: the spec's GPUs, then each twin), hop j's latency
/// from position orders[r][j] to the next (protocol_hop_latency over its route). Depends on the
/// spec's GPUs, twins, nodes, channels and topology only.
struct RingHops {
  std::vector<std::vector<size_t>> orders;
  std::array<std::vector<std::vector<std::vector<Time>>>, kNcclProtocols> hops;  // [p][r][k][j]
  Bandwidth bandwidth;  // ring_bandwidth(spec, orders)
  RingShape shape;      // nodes spanned and GPUs per node (gather_or_scatter is the op's)
  bool twins_in_one_node = true;  // every twin's GPUs share a node (NVLS needs it of every copy)
};
RingHops ring_hops(const CollectiveSpec& spec);

/// Whether `spec` runs as NCCL runs it, a pipelined ring under a protocol or NVLS (see
/// CollectiveSpec::topology): algorithm Ring, Nvls or Auto, an all-reduce, all-gather or
/// reduce-scatter over 2 or more GPUs, fused, with its topology and GPU.
bool runs_protocol(const CollectiveSpec& spec);

/// The per-rank bandwidth of the spec's ring over `channels` (ring_channels) on its topology when
/// nothing else loads its links: each step every channel's hop moves 1 / c of a chunk, so a link
/// that `load` of the c channels' hops cross moves the chunk at c x bandwidth / load; the least
/// over the links. One channel: the narrowest hop. c channels leaving each node by c GPUs:
/// min(B_i * c / (c - 1), the node's NICs, any shared uplink) (algorithms.md 3.3).
Bandwidth ring_bandwidth(const CollectiveSpec& spec, const std::vector<std::vector<size_t>>& channels);

/// NCCL's protocol for the spec's ring collective (or spec.protocol) and what it costs alone:
/// choose_protocol over the slowest channel's chain latency of each protocol and ring_bandwidth,
/// for the bytes each rank sends (size / ranks per step, divided by spec.efficiency); for
/// algorithm Nvls, or Auto where NVLS is supported and faster, NVLS (nvls/Simple: the buffer
/// each way at kNvlsShare of ring_bandwidth after nvls_latency()). Needs runs_protocol(spec);
/// throws InputError for Nvls where NCCL has no NVLS or under a forced LL or LL128.
ProtocolChoice ring_protocol(const CollectiveSpec& spec);

/// The rings NCCL runs for a ring collective, as orders of the spec's positions, each carrying
/// an equal share of the data. A group with g > 1 positions on each of several nodes gets
/// min(g, max_channels) channels: every channel visits each node's positions in turn (nodes in
/// order of first appearance) but leaves every node from a different GPU, so each channel
/// crosses between nodes on a different GPU's NIC and all the group's rails carry traffic, as
/// NCCL's rail-aligned rings do. Otherwise one channel, the positions in the given order.
/// Per step a GPU then sends (channels - 1) / channels of its chunk over NVLink and
/// 1 / channels through its NIC: busbw = min(B_i * g / (g - 1), g * B_e) (algorithms.md 3.3
/// writes min(B_i, g * B_e), counting the exit GPU's share on NVLink too).
std::vector<std::vector<size_t>> ring_channels(const CollectiveSpec& spec);

/// How much of the NVLink ring bandwidth NCCL achieves for a ring collective inside one node, by
/// the bytes each rank moves per step (nccl-tests size / ranks), beyond what the per-hop latency
/// already accounts for. Fitted to the 8 x A100 all-reduce sweep of hardware.md 2.3 (8 MB 110,
/// 128 MB 177, 512 MB 223, 1 GB 232 GB/s busbw) against this model's own alpha-beta time;
/// 1 where no sweep is recorded (Hopper's NVLS numbers measure another algorithm, PCIe GPUs).
double nccl_efficiency(const GpuPreset& gpu, CollectiveOp op, int64_t bytes_per_step);

/// Appends the collective's steps (one group per step and per ring) and returns, per position,
/// its last op (kNone where not simulated, or for a single GPU). A position's steps run in
/// order on its stream; `after[i]`, when given, is an op position i's first step waits for.
std::vector<OpId> expand_collective(Program& p, const CollectiveSpec& spec, std::span<const OpId> after = {});

/// Alpha-beta time (algorithms.md 3.1) with per-rank link bandwidth `bw` and per-step latency
/// `alpha`, for the ring algorithms (all-to-all pairwise, send/recv one hop).
Time alpha_beta_time(CollectiveOp op, Bytes size, int n, Bandwidth bw, Time alpha);

/// Two-level all-reduce (algorithms.md 3.3): g ranks per node at `intra`, N nodes at `inter`.
Time two_level_all_reduce_time(Bytes size, int g, int nodes, Bandwidth intra, Time alpha_intra, Bandwidth inter,
                               Time alpha_inter);

}  // namespace bubblesim::sim
