#include "sim/model/collectives.hpp"

#include <algorithm>
#include <cmath>
#include <iterator>
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

/// Builds steps for subsets of the spec's ranks; remembers each rank's last op.
class Expander {
 public:
  Expander(Program& p, const CollectiveSpec& s, std::span<const OpId> after) : p_(p), s_(s), last_(s.gpus.size(), kNone) {
    for (size_t i = 0; i < after.size() && i < last_.size(); ++i) last_[i] = after[i];
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
    const auto wire = static_cast<int64_t>(std::ceil(static_cast<double>(bytes) / s_.efficiency));
    const auto send = [&](size_t from, size_t to, int64_t b) {
      transfers.push_back({s_.gpus[from], s_.gpus[to], Bytes{b}, hops * s_.merged});
      for (const auto& twin : s_.twins) transfers.push_back({twin[from], twin[to], Bytes{b}, hops * s_.merged});
    };
    if (channels != nullptr) {
      const auto share = (wire + static_cast<int64_t>(channels->size()) - 1) / static_cast<int64_t>(channels->size());
      for (const auto& order : *channels) {
        for (size_t j = 0; j < order.size(); ++j) send(order[j], order[(j + 1) % order.size()], share);
      }
    }
    for (size_t i = 0; i < n; ++i) {
      const size_t r = members[i];
      for (size_t k = shift; channels == nullptr && k <= std::max(shift, last_shift); ++k) {
        send(r, members[(i + k) % n], wire);
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
  if (name == "ring") return CollectiveAlgo::Ring;
  if (name == "two-level") return CollectiveAlgo::TwoLevel;
  throw InputError("--algo: unknown algorithm \"" + std::string(name) + "\" (valid: ring, two-level)");
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
  if (spans_nodes(s) &&
      (s.op == CollectiveOp::AllReduce || s.op == CollectiveOp::AllGather || s.op == CollectiveOp::ReduceScatter)) {
    channels = ring_channels(s);
  }
  const auto* rings = channels.size() > 1 ? &channels : nullptr;
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
