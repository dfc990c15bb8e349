// What one GPU issues, and in which order, to run its Program device's ops with NCCL. Compute
// ops go on a CUDA stream per Program stream; each communication op becomes one NCCL call on a
// stream of its communicator: the library's own collective over the connected GPUs of a group
// that is a whole collective, otherwise grouped sends and receives of the GPU's transfers (ring
// steps, pipeline activations). Order across streams is kept by events.
// NCCL matches calls by their order on a communicator, never by tags, and a call blocks its
// stream until its peers arrive, so every GPU must issue in orders that fit together:
//  - communicators are per (Program stream name, set of GPUs), so pipeline, data-parallel and
//    tensor-parallel traffic never queue behind each other;
//  - on each communicator, calls follow the order in which the simulator finished their groups
//    (then their start, then the group id): the same order on every GPU, and one that a real
//    run can follow, since a call only waits for work that finished earlier in that run.
// verify() runs every GPU's plan under NCCL's matching and blocking rules on the CPU, so a plan
// that would hang or mismatch sizes is an error before any GPU waits on it.
// Plain C++ (no CUDA): hw/cuda/gpu_runner executes plans; tests check them on a CPU.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "hw/runner/rank_map.hpp"
#include "sim/exec/trace.hpp"
#include "sim/ir/program.hpp"
#include "sim/sched/training.hpp"

namespace bubblesim::hw {

enum class CommCall : uint8_t { None, SendRecv, AllReduce, AllGather, ReduceScatter, AllToAll };
const char* to_string(CommCall c);

/// An NCCL communicator the job needs.
struct Communicator {
  std::string channel;        // the Program stream whose traffic it carries ("p2p", "dp", ...)
  std::vector<int32_t> gpus;  // ascending; a GPU's rank in the communicator is its position
  int32_t round = 0;          // communicators of one round are disjoint: one split of the world
};

/// One call of a GPU's plan.
struct Step {
  sim::OpId op = sim::kNone;       // kNone: this GPU's one-sided send of `group`
  sim::GroupId group = sim::kNone;
  CommCall call = CommCall::None;  // None: compute, or a communication op moving nothing here
  int32_t comm = -1;               // into CommPlan::comms (calls other than None)
  int64_t bytes = 0;               // a collective's nccl-tests size S
  std::vector<PeerBytes> sends, recvs;  // SendRecv: one NCCL group of sends and receives
  uint32_t lane = 0;               // the CUDA stream it runs on (RankPlan::lanes)
  std::vector<uint32_t> waits;     // earlier steps on other lanes that must end first
};

struct RankPlan {
  int32_t gpu = 0;
  sim::DeviceId device = 0;
  /// CUDA streams: the device's Program streams (in the device's order), then one per
  /// communicator this GPU uses, named after it.
  std::vector<std::string> lanes;
  std::vector<int32_t> lane_comm;  // per lane: its communicator, or -1 for a Program stream
  std::vector<Step> steps;         // in issue order: every wait points to an earlier step
};

struct CommPlan {
  std::vector<Communicator> comms;  // the same on every GPU
  int32_t rounds = 0;
  std::vector<RankPlan> ranks;      // the GPUs asked for, in that order
  /// Hash of the communicators and of the order of every group: equal on every GPU that built
  /// the same Program and trace (checked across ranks before any NCCL call).
  uint64_t order_hash = 0;
};

/// Plans GPUs `gpus` of `job`, each playing its device of `plan` (rank_map), ordering
/// communication by `order` (a simulated trace of plan.program). A collective group that holds
/// only its representative's GPUs (tensor-parallel groups carry no twins) is run by every twin
/// on its own group: the same GPUs moved along the dimensions the group does not span.
/// InputError for a group the GPU backend cannot run; InternalError if the order contradicts
/// the Program.
CommPlan plan_communication(const sim::ClusterJob& job, const sim::TrainingPlan& plan, const sim::Trace& order,
                            std::span<const int32_t> gpus);
/// The same for every GPU of the job's cluster (0 .. world - 1).
CommPlan plan_communication(const sim::ClusterJob& job, const sim::TrainingPlan& plan, const sim::Trace& order);

/// Collectives move bf16 elements, as training does.
inline constexpr int64_t kCollectiveElement = 2;

/// What one call moves on the GPU: NCCL's count (elements per rank for the split collectives,
/// per peer for all-to-all; 0 for a group of sends and receives, which count bytes) and the
/// bytes of device buffer it needs. Collectives run in place, as frameworks run them on their
/// own gradient and parameter buffers; all-to-all, which NCCL cannot run in place, sends from one
/// half and receives into the other; a group of sends and receives gives each message its own
/// range.
struct CallExtent {
  size_t count = 0;
  int64_t bytes = 0;
};
CallExtent call_extent(const Step& st, int64_t ranks);

/// The device buffer GPU `plan.ranks[rank]` needs for all its calls (one buffer, shared: its
/// contents are never read), including the tiny calls that make its connections.
int64_t buffer_bytes(const CommPlan& plan, size_t rank);

/// Hash of a GPU's steps in order (what it calls, where, with whom, after what): the plan rank 0
/// checks is the one each rank runs when the hashes agree.
uint64_t fingerprint(const RankPlan& r);

/// Runs the plans of every GPU of the job (plan.ranks must hold them all) as NCCL would: a lane
/// runs its steps in order, a step starts once its waits are done, a collective completes when
/// every member of its communicator has reached it, a group of sends and receives when each
/// peer has reached the matching call (the n-th send from A to B on a communicator meets B's
/// n-th receive from A there) and, conservatively, every call joined to those has started too. Returns "" when every step completes and every pair agrees on
/// sizes; otherwise what is wrong (sizes that differ, calls that never meet, or the steps that
/// wait forever and on whom).
std::string verify(const CommPlan& plan, const sim::Program& p);

}  // namespace bubblesim::hw
