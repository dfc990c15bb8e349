#include "sim/ir/program.hpp"

#include <algorithm>

#include "sim/core/error.hpp"
#include "sim/core/memory.hpp"

namespace bubblesim::sim {

const char* to_string(OpKind k) {
  switch (k) {
    case OpKind::Compute: return "compute";
    case OpKind::Send: return "send";
    case OpKind::Recv: return "recv";
    case OpKind::Collective: return "collective";
  }
  return "?";
}

const char* to_string(Traffic t) {
  switch (t) {
    case Traffic::None: return "";
    case Traffic::TensorParallel: return "tp";
    case Traffic::Pipeline: return "pp";
    case Traffic::DataParallel: return "dp";
    case Traffic::Ulysses: return "ulysses";
    case Traffic::Ring: return "ring";
    case Traffic::ContextGather: return "cp-allgather";
  }
  return "?";
}

const char* to_string(Phase p) {
  switch (p) {
    case Phase::None: return "";
    case Phase::F: return "F";
    case Phase::B: return "B";
    case Phase::I: return "I";
    case Phase::W: return "W";
    case Phase::FB: return "F&B";
  }
  return "?";
}

const char* to_string(GroupKind k) {
  switch (k) {
    case GroupKind::SendRecv: return "send/recv";
    case GroupKind::AllReduce: return "all-reduce";
    case GroupKind::AllGather: return "all-gather";
    case GroupKind::ReduceScatter: return "reduce-scatter";
    case GroupKind::AllToAll: return "all-to-all";
    case GroupKind::RingSendRecv: return "ring send/recv";
    case GroupKind::Transfer: return "transfer";
  }
  return "?";
}

DeviceId Program::add_device(std::string name, uint32_t peer_group) {
  devices_.push_back(Device{std::move(name), {}, peer_group});
  return static_cast<DeviceId>(devices_.size() - 1);
}

StreamId Program::add_stream(DeviceId device, StreamKind kind, std::string name) {
  BUBBLESIM_ASSERT(device < devices_.size(), "stream on unknown device");
  streams_.push_back(Stream{device, kind, std::move(name), {}});
  const auto id = static_cast<StreamId>(streams_.size() - 1);
  devices_[device].streams.push_back(id);
  return id;
}

StreamId Program::compute_stream(DeviceId device) const {
  for (StreamId s : devices_[device].streams) {
    if (streams_[s].kind == StreamKind::Compute) return s;
  }
  return kNone;
}

void Program::reserve_ops(size_t n, size_t edges) {
  reserve_huge(ops_, n);
  reserve_huge(pending_, edges);
}

OpId Program::add_op(Op op) {
  BUBBLESIM_ASSERT(op.stream < streams_.size(), "op on unknown stream");
  BUBBLESIM_ASSERT(ops_.size() < kNone, "too many ops for 32-bit op ids");
  op.device = streams_[op.stream].device;
  const auto id = static_cast<OpId>(ops_.size());
  streams_[op.stream].ops.push_back(id);
  grow_huge(ops_, 1);
  ops_.push_back(op);
  finalized_ = false;
  return id;
}

uint32_t Program::latency_index(Time t) {
  // Consecutive edges mostly share a latency: check the last one before hashing.
  if (!latencies_.empty() && latencies_[last_latency_] == t) return last_latency_;
  const auto [it, added] = latency_ids_.try_emplace(t.count_ps(), static_cast<uint32_t>(latencies_.size()));
  if (added) latencies_.push_back(t);
  last_latency_ = it->second;
  return it->second;
}

void Program::add_dep(OpId op, OpId on, Time latency) {
  // Out-of-range ids are kept and reported by validate(), not asserted: IR can come from files.
  grow_huge(pending_, 1);
  pending_.push_back(PendingEdge{op, on, latency_index(latency)});
  finalized_ = false;
}

GroupId Program::add_group(GroupKind kind, std::span<const OpId> members, Bytes bytes, Time duration) {
  const auto id = static_cast<GroupId>(groups_.size());
  groups_.push_back(Group{kind, static_cast<uint32_t>(group_members_.size()),
                          static_cast<uint32_t>(members.size()), bytes, duration, 0, 0, Bytes{}});
  for (OpId m : members) {
    BUBBLESIM_ASSERT(m < ops_.size(), "group member is not an op");
    group_members_.push_back(m);
    ops_[m].group = id;
  }
  return id;
}

void Program::set_transfers(GroupId g, std::span<const Transfer> transfers) {
  BUBBLESIM_ASSERT(g < groups_.size() && groups_[g].transfer_count == 0, "transfers set twice");
  groups_[g].transfer_begin = static_cast<uint32_t>(transfers_.size());
  groups_[g].transfer_count = static_cast<uint32_t>(transfers.size());
  grow_huge(transfers_, transfers.size());
  transfers_.insert(transfers_.end(), transfers.begin(), transfers.end());
}

std::span<const OpId> Program::members(GroupId g) const {
  const Group& gr = groups_[g];
  return {group_members_.data() + gr.member_begin, gr.member_count};
}

void Program::finalize() {
  if (finalized_) return;
  // Merge edges kept from an earlier finalize() with the new ones.
  for (OpId to = 0; to + 1 < dep_offsets_.size(); ++to) {
    for (uint32_t e = dep_offsets_[to]; e < dep_offsets_[to + 1]; ++e) {
      pending_.push_back(PendingEdge{to, dep_edges_[e].op, dep_edges_[e].latency_index});
    }
  }
  const size_t n = ops_.size();
  auto build = [&](bool reverse, std::vector<uint32_t>& offsets, std::vector<Edge>& edges) {
    assign_huge(offsets, n + 1, uint32_t{0});
    for (const PendingEdge& e : pending_) {
      if (e.to >= n || e.from >= n) continue;
      ++offsets[(reverse ? e.from : e.to) + 1];
    }
    for (size_t i = 0; i < n; ++i) offsets[i + 1] += offsets[i];
    assign_huge(edges, offsets[n], Edge{});
    std::vector<uint32_t> fill(offsets.begin(), offsets.end() - 1);
    for (const PendingEdge& e : pending_) {
      if (e.to >= n || e.from >= n) continue;
      const OpId key = reverse ? e.from : e.to;
      edges[fill[key]++] = Edge{reverse ? e.to : e.from, e.latency_index};
    }
  };
  build(false, dep_offsets_, dep_edges_);
  build(true, rdep_offsets_, rdep_edges_);
  // Edges naming ops that do not exist cannot be stored; keep them aside for validate().
  for (const PendingEdge& e : pending_) {
    if (e.to >= n || e.from >= n) invalid_edges_.push_back({e.to, e.from});
  }
  pending_.clear();
  pending_.shrink_to_fit();
  finalized_ = true;
}

namespace {

std::string chunk_suffix(const Program& p, int chunk) {
  if (chunk < 0 || static_cast<size_t>(chunk) >= p.chunk_names.size()) return "";
  return p.chunk_names[static_cast<size_t>(chunk)];
}

}  // namespace

std::string short_name(const Program& p, OpId id) {
  const Op& op = p.op(id);
  const Label& l = op.label;
  if (op.kind != OpKind::Compute) {
    return std::string(to_string(op.kind)) + " #" + std::to_string(id);
  }
  if (l.phase == Phase::None) return "op #" + std::to_string(id);
  if (l.phase == Phase::FB) {
    return "(F" + std::to_string(l.microbatch) + chunk_suffix(p, l.chunk) + "&B" + std::to_string(l.b_microbatch) +
           chunk_suffix(p, l.b_chunk) + ")";
  }
  return std::string(to_string(l.phase)) + std::to_string(l.microbatch) + chunk_suffix(p, l.chunk);
}

std::string describe(const Program& p, OpId id) {
  if (id >= p.num_ops()) return "op #" + std::to_string(id) + " (no such op)";
  const Op& op = p.op(id);
  std::string s = short_name(p, id) + " (op #" + std::to_string(id);
  if (op.label.stage >= 0) s += ", stage " + std::to_string(op.label.stage);
  s += ") on device " + std::to_string(op.device) + " stream " + p.stream(op.stream).name;
  return s;
}

}  // namespace bubblesim::sim
