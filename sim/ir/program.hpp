// The Program IR: per-device in-order streams of ops with explicit dependencies, paired
// send/recv and collectives as rendezvous groups, and labels for reports. Both the simulator
// and the hardware backend consume a Program; it holds no times measured or simulated.
// Not a scheduler: generators in sim/sched build Programs, the executor in sim/exec runs them.
#pragma once

#include <array>
#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "sim/core/units.hpp"

namespace bubblesim::sim {

using OpId = uint32_t;
using DeviceId = uint32_t;
using StreamId = uint32_t;  // global over all devices
using GroupId = uint32_t;
inline constexpr uint32_t kNone = std::numeric_limits<uint32_t>::max();

enum class OpKind : uint8_t { Compute, Send, Recv, Collective };

/// Pipeline phase: F forward, B full backward, I input-gradient backward, W weight-gradient
/// backward, FB an overlapped forward-and-backward pair (DualPipe "F&B").
enum class Phase : uint8_t { None, F, B, I, W, FB };

/// SendRecv pairs a send with its recv (both block, as NCCL); Transfer is one-sided: a recv whose
/// bytes the sender pushes without blocking its own streams (pipeline activations).
enum class GroupKind : uint8_t { SendRecv, AllReduce, AllGather, ReduceScatter, AllToAll, RingSendRecv, Transfer };

/// Which parallelism's traffic a communication op carries (reports split waits and the critical
/// path by it). None for compute ops and for programs that do not say.
enum class Traffic : uint8_t { None, TensorParallel, Pipeline, DataParallel, Ulysses, Ring, ContextGather };

const char* to_string(OpKind k);
const char* to_string(Traffic t);
const char* to_string(Phase p);
const char* to_string(GroupKind k);

/// What an op is, for reports and joins: never parsed from strings. -1 means "not applicable".
/// For Phase::FB the fields describe the forward half and the b_* fields the backward half.
struct Label {
  Phase phase = Phase::None;
  Traffic traffic = Traffic::None;
  int16_t chunk = -1;    // model chunk (virtual stage) on its rank; DualPipe: direction
  int16_t b_chunk = -1;
  int32_t stage = -1;    // pipeline stage in model order
  int32_t microbatch = -1;
  int32_t b_stage = -1;
  int32_t b_microbatch = -1;
  int32_t layer = -1;    // first transformer layer of the op, if it covers layers
  int32_t ring_step = -1;
};

struct Op {
  OpKind kind = OpKind::Compute;
  StreamId stream = kNone;
  DeviceId device = kNone;  // copy of the stream's device, for speed
  GroupId group = kNone;    // the send/recv pair or collective this op belongs to
  Label label;
  Time duration;            // given duration (fixed-time scenarios); the cost model may ignore it
  int32_t mem_alloc = 0;    // activation units allocated when the op starts
  int32_t mem_free = 0;     // activation units freed when the op ends
};
// One cache line per op: what a cost model needs beyond this (FLOPs, bytes, shapes) belongs
// in a side table keyed by op id, so fixed-time programs of millions of ops stay small.
static_assert(sizeof(Op) == 64, "Op should stay one cache line");

/// One dependency edge as stored after finalize(): the other op and an index into the latency
/// table (latencies repeat, so edges stay 8 bytes).
struct Edge {
  OpId op;
  uint32_t latency_index;
};

/// What a compute op works on, for the record (the store, calibration): its class, shape and
/// model FLOPs and HBM bytes. Kept in an optional side table so large programs stay small.
struct OpWork {
  const char* op_class = "";      // "gemm", "attention", "attention_grad", "memory"
  std::array<int64_t, 5> shape{}; // gemm: m, n, k, batch; attention: batch, q, kv, heads, head dim
  double causal_fraction = 0;     // attention
  double flops = 0;
  double bytes = 0;
};

/// Compute streams count as busy time; comm streams carry transfers that may overlap it.
enum class StreamKind : uint8_t { Compute, Comm };

struct Stream {
  DeviceId device;
  StreamKind kind;
  std::string name;
  std::vector<OpId> ops;  // in issue order
};

struct Device {
  std::string name;
  std::vector<StreamId> streams;
  /// Devices with the same peer group run the same part of the model side by side (the ring
  /// ranks of one pipeline stage): waiting for a peer to finish is imbalance, not a bubble.
  /// kNone: none.
  uint32_t peer_group = kNone;
};

/// One point-to-point transfer of a group, between two GPUs of the cluster (topology indices).
/// A group may carry transfers of GPUs the Program does not simulate: a representative rank's
/// collective moves the bytes of its whole ring, so the network sees all the traffic.
struct Transfer {
  int32_t from_gpu;
  int32_t to_gpu;
  Bytes bytes;
  int32_t hops = 1;  // ring steps fused into it, times merged collectives (the host backend's rounds)
  /// What the transfer pays after its bytes drain: kRouteLatency, its route's latency once per
  /// hop; otherwise this (a ring collective's NCCL protocol and pipelined-chain latency, set by
  /// expand_collective from the topology).
  Time latency = kRouteLatency;
  static constexpr Time kRouteLatency = Time::ps(-1);
};

/// A rendezvous: all member ops start together once every member has been issued on its
/// stream (NCCL semantics), and end together: after `duration`, or, under a network model,
/// when the last of its transfers has arrived.
struct Group {
  GroupKind kind;
  uint32_t member_begin;  // into member table
  uint32_t member_count;
  Bytes bytes;            // message size (send/recv) or buffer size (collective)
  Time duration;          // given duration (fixed-time scenarios)
  uint32_t transfer_begin = 0;
  uint32_t transfer_count = 0;
  /// For a collective expanded as one group (a training Program's fused ring or all-to-all):
  /// its nccl-tests size S, so a backend can run it as the library's own collective on each
  /// connected set of the transfers' GPUs. Zero when the group is one step of several (the
  /// backend then moves its transfers point to point) or not a collective.
  Bytes collective_size;
  /// The transfers' bytes over what the algorithm moves: 1 / (NCCL's efficiency x the
  /// protocol's share of the links) for a collective, so the network model sees the time they
  /// take; a backend that moves real bytes divides by it.
  double wire_scale = 1;
};

/// Builder and container. Adding is O(1) amortised; finalize() sorts the dependency edges into
/// forward and reverse CSR arrays in O(ops + edges). Queries are O(1).
class Program {
 public:
  DeviceId add_device(std::string name, uint32_t peer_group = kNone);
  StreamId add_stream(DeviceId device, StreamKind kind, std::string name);
  /// The device's first compute stream (kNone if it has none): the one whose ops count as busy.
  StreamId compute_stream(DeviceId device) const;
  /// Appends `op` to the end of its stream (op.stream must exist). Returns its id.
  OpId add_op(Op op);
  /// Adds activation units that `id` allocates when it starts and frees when it ends.
  void add_memory(OpId id, int32_t alloc_at_start, int32_t free_at_end) {
    ops_[id].mem_alloc += alloc_at_start;
    ops_[id].mem_free += free_at_end;
  }
  /// `op` may start only `latency` after `on` has ended.
  void add_dep(OpId op, OpId on, Time latency = Time::zero());
  /// Makes `members` one rendezvous group (a send and its recv, or a collective).
  GroupId add_group(GroupKind kind, std::span<const OpId> members, Bytes bytes, Time duration = Time::zero());
  /// Builds the dependency arrays; call once after the last add_dep. Idempotent.
  void finalize();
  bool finalized() const { return finalized_; }
  void reserve_ops(size_t n, size_t edges);
  void reserve_stream(StreamId s, size_t n) { streams_[s].ops.reserve(n); }

  size_t num_ops() const { return ops_.size(); }
  const Op& op(OpId id) const { return ops_[id]; }
  const std::vector<Op>& ops() const { return ops_; }
  const std::vector<Device>& devices() const { return devices_; }
  const std::vector<Stream>& streams() const { return streams_; }
  const Stream& stream(StreamId s) const { return streams_[s]; }
  const std::vector<Group>& groups() const { return groups_; }
  std::span<const OpId> members(GroupId g) const;
  /// Records what op `id` works on (the side table grows on first use).
  void set_work(OpId id, const OpWork& w) {
    if (work_.size() <= id) work_.resize(ops_.size());
    work_[id] = w;
  }
  /// nullptr when none was recorded.
  const OpWork* work(OpId id) const {
    return id < work_.size() && work_[id].op_class[0] != '\0' ? &work_[id] : nullptr;
  }
  void set_collective_size(GroupId g, Bytes size) { groups_[g].collective_size = size; }
  void set_wire_scale(GroupId g, double scale) { groups_[g].wire_scale = scale; }
  /// Sets the transfers of group `g` (once per group).
  void set_transfers(GroupId g, std::span<const Transfer> transfers);
  std::span<const Transfer> transfers(GroupId g) const {
    return {transfers_.data() + groups_[g].transfer_begin, groups_[g].transfer_count};
  }

  /// Ops that `id` waits for (finalized programs only).
  std::span<const Edge> deps(OpId id) const {
    return {dep_edges_.data() + dep_offsets_[id], dep_offsets_[id + 1] - dep_offsets_[id]};
  }
  /// Ops that wait for `id` (finalized programs only).
  std::span<const Edge> dependents(OpId id) const {
    return {rdep_edges_.data() + rdep_offsets_[id], rdep_offsets_[id + 1] - rdep_offsets_[id]};
  }
  Time latency(const Edge& e) const { return latencies_[e.latency_index]; }
  /// Dependencies added with an op id that does not exist, as (op, on) pairs; set by finalize().
  const std::vector<std::pair<OpId, OpId>>& invalid_edges() const { return invalid_edges_; }

  /// Suffix letters per chunk for short op names ("F3b"); empty: no suffix.
  std::vector<std::string> chunk_names;
  /// What one unit of Op::mem_alloc means, e.g. "stage-microbatch", "chunk", "layer".
  std::string memory_unit = "stage-microbatch";

 private:
  struct PendingEdge {
    OpId to;
    OpId from;
    uint32_t latency_index;
  };
  uint32_t latency_index(Time t);

  std::vector<Op> ops_;
  std::vector<Device> devices_;
  std::vector<Stream> streams_;
  std::vector<Group> groups_;
  std::vector<OpId> group_members_;
  std::vector<Transfer> transfers_;
  std::vector<OpWork> work_;  // optional, by op id
  std::vector<Time> latencies_;
  std::unordered_map<int64_t, uint32_t> latency_ids_;  // ps -> index into latencies_
  uint32_t last_latency_ = 0;                          // index returned last
  std::vector<PendingEdge> pending_;
  std::vector<uint32_t> dep_offsets_;   // size ops+1
  std::vector<Edge> dep_edges_;
  std::vector<uint32_t> rdep_offsets_;  // size ops+1
  std::vector<Edge> rdep_edges_;
  std::vector<std::pair<OpId, OpId>> invalid_edges_;
  bool finalized_ = false;
};

/// Short name from the label, e.g. "F3", "B0b", "(F7a&B3b)", "send #12".
std::string short_name(const Program& p, OpId id);
/// Full description for errors: short name, op id, device, stream.
std::string describe(const Program& p, OpId id);

}  // namespace bubblesim::sim
