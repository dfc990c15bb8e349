#include "sim/model/collectives.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <iterator>
#include <limits>
#include <map>
#include <unordered_map>

#include "sim/core/error.hpp"

namespace bubblesim::sim {
namespace {

constexpr std::pair<CollectiveOp, std::string_view> kNames[] = {{CollectiveOp::AllReduce, "all-reduce"},
                                                                {CollectiveOp::AllGather, "all-gather"},
                                                                {CollectiveOp::ReduceScatter, "reduce-scatter"},
                                                                {CollectiveOp::AllToAll, "all-to-all"},
                                                                {CollectiveOp::SendRecv, "sendrecv"}};

GroupKind group_kind(CollectiveOp op) {
  switch (op) {
    case CollectiveOp::AllReduce: return GroupKind::AllReduce;
    case CollectiveOp::AllGather: return GroupKind::AllGather;
    case CollectiveOp::ReduceScatter: return GroupKind::ReduceScatter;
    case CollectiveOp::AllToAll: return GroupKind::AllToAll;
    case CollectiveOp::SendRecv: return GroupKind::RingSendRecv;
  }
  return GroupKind::AllReduce;
}

/// Whether the spec's positions sit on more than one node (node_of given for each).
bool spans_nodes(const CollectiveSpec& s) {
  return s.node_of.size() == s.gpus.size() &&
         std::any_of(s.node_of.begin(), s.node_of.end(), [&](int32_t v) { return v != s.node_of[0]; });
}

bool is_ring_op(CollectiveOp op) {
  return op == CollectiveOp::AllReduce || op == CollectiveOp::AllGather || op == CollectiveOp::ReduceScatter;
}

/// Steps of the ring algorithm for `op` over n ranks.
int64_t ring_steps(CollectiveOp op, size_t n) {
  const auto steps = static_cast<int64_t>(n) - 1;
  return op == CollectiveOp::AllReduce ? 2 * steps : steps;
}

/// One hop's latency from GPU a to GPU b under protocol p: protocol_hop_latency over its route
/// (none from a GPU to itself).
Time hop_latency(const Topology& topo, int32_t a, int32_t b, NcclProtocol p, bool multi_node) {
  Time t;
  if (a == b) return t;
  for (LinkId l : topo.route(a, b)) {
    const Link& link = topo.link(l);
    t += protocol_hop_latency(p, link.cls, link.latency, multi_node);
  }
  return t;
}

/// The hops of the spec's rings under every protocol, for its own GPUs only or with the twins'.
RingHops hops_of(const CollectiveSpec& s, bool with_twins) {
  BUBBLESIM_ASSERT(s.topology != nullptr && s.gpus.size() >= 2 && s.node_of.size() == s.gpus.size(),
                   "a ring's hops need the topology, 2 or more GPUs and each one's node");
  RingHops h;
  h.orders = ring_channels(s);
  h.bandwidth = ring_bandwidth(s, h.orders);
  std::unordered_map<int32_t, int> per_node;
  for (int32_t node : s.node_of) ++per_node[node];
  h.shape.nodes = static_cast<int32_t>(per_node.size());
  h.shape.one_gpu_per_node = h.shape.nodes > 1 && per_node.size() == s.gpus.size();
  h.twins_in_one_node = std::all_of(s.twins.begin(), s.twins.end(), [&](const std::vector<int32_t>& twin) {
    return std::all_of(twin.begin(), twin.end(), [&](int32_t g) { return s.topology->node_of(g) == s.topology->node_of(twin[0]); });
  });
  const bool multi = h.shape.nodes > 1;
  const size_t copies = with_twins ? 1 + s.twins.size() : 1;
  for (const NcclProtocol p : {NcclProtocol::LL, NcclProtocol::LL128, NcclProtocol::Simple}) {
    auto& per_order = h.hops[static_cast<size_t>(p)];
    per_order.resize(h.orders.size());
    for (size_t r = 0; r < h.orders.size(); ++r) {
      const std::vector<size_t>& order = h.orders[r];
      for (size_t k = 0; k < copies; ++k) {
        const std::vector<int32_t>& gpus = k == 0 ? s.gpus : s.twins[k - 1];
        std::vector<Time>& hops = per_order[r].emplace_back();
        for (size_t j = 0; j < order.size(); ++j) {
          hops.push_back(hop_latency(*s.topology, gpus[order[j]], gpus[order[(j + 1) % order.size()]], p, multi));
        }
      }
    }
  }
  return h;
}

/// NCCL's choice for the spec over its rings' hops `h` (the spec's own copy).
ProtocolChoice choose_for(const CollectiveSpec& s, const RingHops& h) {
  const int64_t steps = ring_steps(s.op, s.gpus.size());
  std::array<Time, kNcclProtocols> chain{};
  for (size_t p = 0; p < kNcclProtocols; ++p) {
    for (const auto& copies : h.hops[p]) chain[p] = max(chain[p], ring_chain_latency(copies[0], steps));
  }
  const int64_t chunk = s.size.value / static_cast<int64_t>(s.gpus.size());
  const double wire = static_cast<double>(steps) * std::ceil(static_cast<double>(chunk) / s.efficiency);
  RingShape shape = h.shape;
  shape.gather_or_scatter = s.op == CollectiveOp::AllGather || s.op == CollectiveOp::ReduceScatter;
  const bool nvls = s.op == CollectiveOp::AllReduce && nvls_supported(*s.gpu, shape.nodes, s.gpus.size()) &&
                    h.twins_in_one_node && (!s.protocol || *s.protocol == NcclProtocol::Simple);
  if (s.algo == CollectiveAlgo::Nvls && !nvls) {
    throw InputError(std::string("NVLink SHARP runs all-reduces of 3 or more GPUs inside one node of Hopper GPUs on "
                                 "NVSwitch, under the Simple protocol (this one: ") + to_string(s.op) + " of " +
                     std::to_string(s.gpus.size()) + " " + std::string(s.gpu->id) + " GPU(s) on " +
                     std::to_string(shape.nodes) + " node(s)" +
                     (s.protocol ? std::string(" under ") + to_string(*s.protocol) : std::string()) + ")");
  }
  ProtocolChoice nvls_choice;
  if (nvls) {  // the buffer to the switch and back, each way once
    const double wire_nvls = std::ceil(static_cast<double>(s.size.value) / s.efficiency);
    nvls_choice = {NcclProtocol::Simple, nvls_latency(), kNvlsShare,
                   nvls_latency().seconds() + wire_nvls / (h.bandwidth.bytes_per_s * kNvlsShare), true};
    if (s.algo == CollectiveAlgo::Nvls) return nvls_choice;
  }
  const ProtocolChoice ring = choose_protocol(chain, *s.gpu, shape, h.bandwidth, wire, s.protocol);
  return nvls && s.algo == CollectiveAlgo::Auto && nvls_choice.seconds < ring.seconds ? nvls_choice : ring;
}

/// Builds steps for subsets of the spec's ranks; remembers each rank's last op.
class Expander {
 public:
  Expander(Program& p, const CollectiveSpec& s, std::span<const OpId> after)
      : p_(p), s_(s), last_(s.gpus.size(), kNone), wire_scale_(1 / s.efficiency) {
    for (size_t i = 0; i < after.size() && i < last_.size(); ++i) last_[i] = after[i];
  }

  /// From now on, ring steps run under `choice`: their transfers carry bytes / share and, for
  /// ring order r of `h` (the channel, or the members in order) and copy k (0: the spec's GPUs,
  /// then each twin), the protocol's base latency plus that ring's chain latency over `steps`
  /// steps, once per merged collective.
  void use_protocol(const ProtocolChoice& choice, const RingHops& h, int64_t steps) {
    share_ = choice.share;
    wire_scale_ = 1 / (s_.efficiency * share_);
    if (choice.nvls) {  // one latency for every transfer, as for the only ring order
      latency_.assign(1, std::vector<Time>(1 + s_.twins.size(), choice.latency * s_.merged));
      return;
    }
    const auto& hops = h.hops[static_cast<size_t>(choice.protocol)];
    latency_.assign(hops.size(), {});
    const Time base = protocol_base_latency(choice.protocol);
    for (size_t r = 0; r < hops.size(); ++r) {
      BUBBLESIM_ASSERT(hops[r].size() == 1 + s_.twins.size(), "ring hops computed without the twins");
      for (const std::vector<Time>& copy : hops[r])
        latency_[r].push_back((base + ring_chain_latency(copy, steps)) * s_.merged);
    }
  }

  /// One step over `members` (indices into the spec's ranks): member i sends `bytes` to
  /// member (i + shift) mod size, for every shift in [shift, last_shift] at once. With
  /// `channels` (orders of the same members), each channel's member j sends its share of the
  /// bytes to the channel's member j + 1 instead.
  void step(const std::vector<size_t>& members, int64_t bytes, size_t shift, int32_t hops = 1, size_t last_shift = 0,
            const std::vector<std::vector<size_t>>* channels = nullptr) {
    std::vector<OpId> ops;
    std::vector<Transfer> transfers;
    const size_t n = members.size();
    const auto wire = static_cast<int64_t>(std::ceil(static_cast<double>(bytes) / (s_.efficiency * share_)));
    // Ring order `ring` of the protocol's latencies (use_protocol), if any.
    const auto send = [&](size_t from, size_t to, int64_t b, size_t ring) {
      const std::vector<Time>* latency = latency_.empty() ? nullptr : &latency_[ring];
      transfers.push_back({s_.gpus[from], s_.gpus[to], Bytes{b}, hops * s_.merged});
      if (latency != nullptr) transfers.back().latency = (*latency)[0];
      for (size_t k = 0; k < s_.twins.size(); ++k) {
        transfers.push_back({s_.twins[k][from], s_.twins[k][to], Bytes{b}, hops * s_.merged});
        if (latency != nullptr) transfers.back().latency = (*latency)[k + 1];
      }
    };
    if (channels != nullptr) {
      const auto share = (wire + static_cast<int64_t>(channels->size()) - 1) / static_cast<int64_t>(channels->size());
      for (size_t c = 0; c < channels->size(); ++c) {
        const auto& order = (*channels)[c];
        for (size_t j = 0; j < order.size(); ++j) send(order[j], order[(j + 1) % order.size()], share, c);
      }
    }
    for (size_t i = 0; i < n; ++i) {
      const size_t r = members[i];
      for (size_t k = shift; channels == nullptr && k <= std::max(shift, last_shift); ++k) {
        send(r, members[(i + k) % n], wire, 0);
      }
      if (s_.streams[r] == kNone) continue;  // a twin the Program does not simulate
      Op op;
      op.kind = OpKind::Collective;
      op.stream = s_.streams[r];
      op.label = s_.label;
      const OpId id = p_.add_op(op);
      if (last_[r] != kNone) p_.add_dep(id, last_[r]);
      last_[r] = id;
      ops.push_back(id);
    }
    if (ops.empty()) return;
    const GroupId g = p_.add_group(group_kind(s_.op), ops, Bytes{bytes * static_cast<int64_t>(n)});
    p_.set_transfers(g, transfers);
    p_.set_wire_scale(g, wire_scale_);
    groups_.push_back(g);
  }

  /// `steps` ring steps of `bytes` each over `members` (over `channels` when given).
  void ring(const std::vector<size_t>& members, int64_t bytes, int steps,
            const std::vector<std::vector<size_t>>* channels = nullptr) {
    if (steps <= 0) return;
    if (s_.fuse_steps) {
      step(members, bytes * steps, 1, steps, 0, channels);
      return;
    }
    for (int k = 0; k < steps; ++k) step(members, bytes, 1, 1, 0, channels);
  }

  std::vector<OpId> done() { return last_; }
  /// The groups made so far.
  const std::vector<GroupId>& groups() const { return groups_; }

 private:
  Program& p_;
  const CollectiveSpec& s_;
  std::vector<OpId> last_;
  std::vector<GroupId> groups_;
  double share_ = 1;                         // of the links' bandwidth the protocol reaches
  double wire_scale_;                        // transfers' bytes over the algorithm's (Group::wire_scale)
  std::vector<std::vector<Time>> latency_;   // per ring order, per copy (use_protocol)
};

}  // namespace

const char* to_string(CollectiveOp op) {
  for (const auto& [o, name] : kNames) {
    if (o == op) return name.data();
  }
  return "?";
}

CollectiveOp parse_collective(std::string_view name) { return from_name(kNames, name, "--op: unknown collective"); }

CollectiveAlgo parse_algorithm(std::string_view name) {
  if (name == "auto") return CollectiveAlgo::Auto;
  if (name == "ring") return CollectiveAlgo::Ring;
  if (name == "nvls") return CollectiveAlgo::Nvls;
  if (name == "two-level") return CollectiveAlgo::TwoLevel;
  throw InputError("--algo: unknown algorithm \"" + std::string(name) + "\" (valid: auto, ring, nvls, two-level)");
}

double busbw_factor(CollectiveOp op, int n) {
  const double nn = n;
  switch (op) {
    case CollectiveOp::AllReduce: return 2 * (nn - 1) / nn;
    case CollectiveOp::AllGather:
    case CollectiveOp::ReduceScatter:
    case CollectiveOp::AllToAll: return (nn - 1) / nn;
    case CollectiveOp::SendRecv: return 1;
  }
  return 1;
}

std::vector<OpId> expand_collective(Program& p, const CollectiveSpec& s, std::span<const OpId> after) {
  const size_t n = s.gpus.size();
  BUBBLESIM_ASSERT(n >= 1 && s.streams.size() == n, "collective needs a stream (or kNone) per GPU");
  Expander e(p, s, after);
  if (n == 1) return e.done();
  std::vector<size_t> all(n);
  for (size_t i = 0; i < n; ++i) all[i] = i;
  const int64_t chunk = s.size.value / static_cast<int64_t>(n);
  const int steps = static_cast<int>(n) - 1;
  if (s.algo == CollectiveAlgo::TwoLevel && s.op != CollectiveOp::AllReduce) {
    throw InputError(std::string("the two-level algorithm exists for all-reduce only, not ") + to_string(s.op));
  }
  if (s.algo == CollectiveAlgo::TwoLevel) {
    BUBBLESIM_ASSERT(s.node_of.size() == n, "two-level needs each rank's node");
    std::map<int32_t, std::vector<size_t>> nodes;
    for (size_t i = 0; i < n; ++i) nodes[s.node_of[i]].push_back(i);
    const size_t g = nodes.begin()->second.size();
    for (const auto& [node, members] : nodes) {
      if (members.size() != g) throw InputError("two-level all-reduce needs the same number of ranks on every node");
    }
    const int64_t intra_chunk = s.size.value / static_cast<int64_t>(g);
    for (const auto& [node, members] : nodes) e.ring(members, intra_chunk, static_cast<int>(g) - 1);  // RS
    const int64_t inter_chunk = intra_chunk / static_cast<int64_t>(nodes.size());
    for (size_t local = 0; local < g; ++local) {  // all-reduce of each rank's shard across nodes
      std::vector<size_t> rail;
      for (const auto& [node, members] : nodes) rail.push_back(members[local]);
      e.ring(rail, inter_chunk, 2 * (static_cast<int>(rail.size()) - 1));
    }
    for (const auto& [node, members] : nodes) e.ring(members, intra_chunk, static_cast<int>(g) - 1);  // AG
    return e.done();
  }
  // Rings spanning nodes may run several channels (most training collectives stay in a node, and
  // skip the search).
  std::vector<std::vector<size_t>> channels;
  if (spans_nodes(s) && is_ring_op(s.op)) {
    channels = ring_channels(s);
  }
  const auto* rings = channels.size() > 1 ? &channels : nullptr;
  if (runs_protocol(s)) {
    RingHops computed;
    if (s.hops == nullptr) computed = hops_of(s, true);
    const RingHops& h = s.hops != nullptr ? *s.hops : computed;
    BUBBLESIM_ASSERT(h.orders == (rings != nullptr ? channels : std::vector<std::vector<size_t>>{all}),
                     "ring hops cached for other channels than the collective runs");
    const ProtocolChoice choice = choose_for(s, h);
    e.use_protocol(choice, h, ring_steps(s.op, n));
    if (choice.nvls) {
      // Through the switch and back: as every GPU sending its buffer spread over the others and
      // receiving as much, in one group, the whole collective (a backend runs NCCL's own). Two
      // rounds, reduce then multicast, for a backend that moves the bytes itself.
      e.step(all, s.size.value / static_cast<int64_t>(n - 1), 1, 2, static_cast<size_t>(steps));
      if (!e.groups().empty()) p.set_collective_size(e.groups()[0], s.size);
      return e.done();
    }
  }
  switch (s.op) {
    case CollectiveOp::AllReduce: e.ring(all, chunk, 2 * steps, rings); break;
    case CollectiveOp::AllGather:
    case CollectiveOp::ReduceScatter: e.ring(all, chunk, steps, rings); break;
    case CollectiveOp::AllToAll:
      // Fused (training Programs): every pair at once, as NCCL posts all of an all-to-all's
      // sends and receives in one group; otherwise pairwise steps.
      if (s.fuse_steps) {
        e.step(all, chunk, 1, 1, static_cast<size_t>(steps));
        break;
      }
      for (int k = 1; k <= steps; ++k) e.step(all, chunk, static_cast<size_t>(k));
      break;
    case CollectiveOp::SendRecv: e.step(all, s.size.value, 1); break;
  }
  // One group for the whole collective: a backend may run it as NCCL's own (send/recv is
  // point to point anyway).
  if (e.groups().size() == 1 && s.op != CollectiveOp::SendRecv) p.set_collective_size(e.groups()[0], s.size);
  return e.done();
}

bool runs_protocol(const CollectiveSpec& s) {
  return s.topology != nullptr && s.gpu != nullptr && s.algo != CollectiveAlgo::TwoLevel && is_ring_op(s.op) &&
         s.fuse_steps && s.gpus.size() >= 2;
}

Bandwidth ring_bandwidth(const CollectiveSpec& s, const std::vector<std::vector<size_t>>& channels) {
  BUBBLESIM_ASSERT(s.topology != nullptr, "ring_bandwidth needs the topology");
  const Topology& t = *s.topology;
  // Each step, every channel's hop moves 1 / c of a chunk over its route: a link crossed by
  // `load` of the c channels' hops moves load / c chunks, so the chunk moves at c x bw / load.
  std::unordered_map<LinkId, int> load;
  for (const auto& order : channels) {
    for (size_t j = 0; j < order.size(); ++j) {
      const int32_t a = s.gpus[order[j]], b = s.gpus[order[(j + 1) % order.size()]];
      if (a == b) continue;
      for (LinkId l : t.route(a, b)) ++load[l];
    }
  }
  const auto c = static_cast<double>(channels.size());
  double bw = std::numeric_limits<double>::infinity();
  for (const auto& [l, n] : load) bw = std::min(bw, c * t.link(l).bandwidth.bytes_per_s / n);
  return Bandwidth{bw};
}

ProtocolChoice ring_protocol(const CollectiveSpec& s) {
  BUBBLESIM_ASSERT(runs_protocol(s), "ring_protocol needs a fused ring collective with its topology and GPU");
  if (s.hops != nullptr) return choose_for(s, *s.hops);
  return choose_for(s, hops_of(s, false));
}

RingHops ring_hops(const CollectiveSpec& s) { return hops_of(s, true); }

std::vector<std::vector<size_t>> ring_channels(const CollectiveSpec& s) {
  const size_t n = s.gpus.size();
  const auto given = [n] {
    std::vector<size_t> order(n);
    for (size_t i = 0; i < n; ++i) order[i] = i;
    return std::vector<std::vector<size_t>>{order};
  };
  if (!spans_nodes(s) || s.max_channels == 1) return given();
  // Each node's positions in ring order, nodes in order of first appearance.
  std::vector<std::vector<size_t>> nodes;
  std::unordered_map<int32_t, size_t> index;
  for (size_t i = 0; i < n; ++i) {
    const auto [it, added] = index.try_emplace(s.node_of[i], nodes.size());
    if (added) nodes.emplace_back();
    nodes[it->second].push_back(i);
  }
  size_t g = n;
  for (const auto& members : nodes) g = std::min(g, members.size());
  if (s.max_channels > 0) g = std::min(g, static_cast<size_t>(s.max_channels));
  if (g < 2) return given();
  // Channel c enters each node at its c-th position and leaves from the one before it.
  std::vector<std::vector<size_t>> channels(g);
  for (size_t c = 0; c < g; ++c) {
    channels[c].reserve(n);
    for (const auto& members : nodes) {
      for (size_t j = 0; j < members.size(); ++j) channels[c].push_back(members[(c + j) % members.size()]);
    }
  }
  return channels;
}

double nccl_efficiency(const GpuPreset& gpu, CollectiveOp op, int64_t bytes_per_step) {
  if (gpu.arch != "ampere" || gpu.nvlink_per_dir.value <= 0 || op == CollectiveOp::AllToAll ||
      op == CollectiveOp::SendRecv) {
    return 1;
  }
  // (bytes per rank per step, efficiency): the A100 sweep's sizes / 8 ranks. Below 1 MiB per
  // step the sweep is dominated by single-process launch overhead (-g 8), so the 8 MB point holds.
  constexpr std::pair<double, double> kPoints[] = {
      {1 << 20, 0.712}, {16 << 20, 0.765}, {64 << 20, 0.94}, {128 << 20, 0.974}};
  const double x = std::max(1.0, static_cast<double>(bytes_per_step));
  if (x <= kPoints[0].first) return kPoints[0].second;
  for (size_t i = 1; i < std::size(kPoints); ++i) {
    if (x <= kPoints[i].first) {
      const double w = std::log2(x / kPoints[i - 1].first) / std::log2(kPoints[i].first / kPoints[i - 1].first);
      return kPoints[i - 1].second + w * (kPoints[i].second - kPoints[i - 1].second);
    }
  }
  return kPoints[std::size(kPoints) - 1].second;
}

Time alpha_beta_time(CollectiveOp op, Bytes size, int n, Bandwidth bw, Time alpha) {
  if (n <= 1) return Time::zero();
  const double s = static_cast<double>(size.value);
  const double frac = static_cast<double>(n - 1) / n;
  switch (op) {
    case CollectiveOp::AllReduce: return alpha * (2 * (n - 1)) + Time::from_seconds(2 * frac * s / bw.bytes_per_s);
    case CollectiveOp::AllGather:
    case CollectiveOp::ReduceScatter:
    case CollectiveOp::AllToAll: return alpha * (n - 1) + Time::from_seconds(frac * s / bw.bytes_per_s);
    case CollectiveOp::SendRecv: return alpha + Time::from_seconds(s / bw.bytes_per_s);
  }
  return Time::zero();
}

Time two_level_all_reduce_time(Bytes size, int g, int nodes, Bandwidth intra, Time alpha_intra, Bandwidth inter,
                               Time alpha_inter) {
  const double s = static_cast<double>(size.value);
  const Time intra_part = alpha_intra * (2 * (g - 1)) +
                          Time::from_seconds(2.0 * (g - 1) / g * s / intra.bytes_per_s);
  if (nodes <= 1) return intra_part;
  return intra_part + alpha_inter * (2 * (nodes - 1)) +
         Time::from_seconds(2.0 * (nodes - 1) / nodes * (s / g) / inter.bytes_per_s);
}

}  // namespace bubblesim::sim
