// NCCL communication on the GPU backend: a communicator per process (one GPU each), bootstrapped
// from an id that one rank makes and the launcher hands to the others (over MPI), device buffers
// for the largest message, and the nccl-tests operations enqueued on a stream of its own:
// sendrecv (each rank sends to the next and receives from the previous, as nccl-tests' sendrecv),
// all-to-all (NCCL's own from 2.28, grouped send/recv before), all-reduce, all-gather and
// reduce-scatter (fp32 sum, nccl-tests' default type). Waits poll, so a dead peer or a signal
// ends them: the communicator is aborted and the caller's exception names why.
// NCCL errors become GpuError with file:line, NCCL's error string and its last-error text.
// Not MPI: the id travels however the caller likes; no NCCL header leaves hw/cuda.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "hw/runner/comm_plan.hpp"

struct ncclComm;
struct CUstream_st;
struct CUevent_st;

namespace bubblesim::hw::cuda {

/// NCCL's bootstrap id (ncclUniqueId's 128 bytes): made once, given to every rank.
using NcclId = std::array<char, 128>;
NcclId nccl_unique_id();
/// The NCCL library's version, e.g. "2.28.9".
std::string nccl_version();

/// The communication benchmark of a bubblesim-hw bench name: "p2p" (sendrecv, CommCall::SendRecv),
/// "alltoall", "allreduce", "allgather", "reducescatter"; InputError otherwise.
CommCall parse_comm_op(std::string_view name);

class NcclComm {
 public:
  /// Joins the communicator of `id` as `rank` of `ranks` on GPU `device`, with device buffers
  /// for nccl-tests sizes up to `max_bytes`. `agree`, when given, is called on every rank once
  /// its buffers are allocated (true) or failed (false), before NCCL's bootstrap (which waits
  /// for every rank without a timeout); it returns whether every rank succeeded, so one rank's
  /// failure stops all of them before any waits there.
  NcclComm(const NcclId& id, int rank, int ranks, int device, int64_t max_bytes,
           const std::function<bool(bool)>& agree = {});
  ~NcclComm();
  NcclComm(const NcclComm&) = delete;
  NcclComm& operator=(const NcclComm&) = delete;

  int rank() const { return rank_; }
  /// Aborts the communicator and frees its buffers (peers' pending calls then fail); idempotent.
  void abort() noexcept;
  int ranks() const { return ranks_; }

  /// The smallest buffer every operation fits: one fp32 element per rank.
  static constexpr int64_t min_buffer_bytes(int64_t ranks) { return int64_t{4} * ranks; }

  /// The nccl-tests size S actually moved for a requested `size`: whole fp32 elements, and for
  /// the ops that split S over the ranks (all-to-all, all-gather, reduce-scatter) a multiple of
  /// 4 x ranks bytes; at least one element per rank.
  int64_t effective_size(CommCall op, int64_t size) const;
  /// Enqueues `count` back-to-back operations of nccl-tests size `size` (effective_size) on the
  /// communicator's stream; returns at once.
  void enqueue(CommCall op, int64_t size, int count = 1);
  /// Returns once everything enqueued is done. Between polls it calls `alive` (which throws to
  /// stop, e.g. when another rank died) and checks NCCL's asynchronous error; on either, or when
  /// no operation completes for `stall_timeout_s` (each one is marked by an event), the
  /// communicator is aborted (so no kernel waits on a dead peer) and the exception propagates.
  void wait(const std::function<void()>& alive, double stall_timeout_s = 120);

  /// Runs one `op` of size `size` on known data (rank r's element i is r + 1 + i mod 7, exact in
  /// fp32 sums) and compares what this rank received with what the operation defines, as
  /// nccl-tests' -c check does; returns the number of wrong elements (0: correct). Leaves the
  /// send buffer as it found it (zeros).
  int64_t check(CommCall op, int64_t size, const std::function<void()>& alive, double stall_timeout_s = 120);

  /// Moves of caller-owned device buffers, enqueued on stream() in one NCCL group each and waited
  /// for (with `alive` and the stall timeout of wait()):
  /// `bytes` from `send` to the next rank, and the previous rank's into `recv`;
  void ring_pass(const void* send, void* recv, int64_t bytes, const std::function<void()>& alive);
  /// block j (`bytes_per_peer` each) of `send` to rank j, rank j's block for this rank into
  /// block j of `recv`;
  void all_to_all(const void* send, void* recv, int64_t bytes_per_peer, const std::function<void()>& alive);
  /// every rank's `bytes` of `send` into rank 0's `recv`, rank after rank (`recv` unused elsewhere).
  void gather(const void* send, void* recv, int64_t bytes, const std::function<void()>& alive);
  /// The stream the communicator's operations run on; kernels enqueued there are ordered with them.
  CUstream_st* stream() const { return stream_; }
  /// The NCCL communicator itself (to split it); null once aborted.
  ncclComm* handle() const { return comm_; }

 private:
  /// Enqueues `calls` (NCCL calls on stream()) as one group and marks its end; on a failure the
  /// group is closed and the communicator aborted.
  void group(const std::function<void()>& calls);
  /// Elements of an op of `size` (effective_size), refused beyond the buffers.
  size_t elements(CommCall op, int64_t size) const;
  void mark_done();  // records an event after the op just enqueued
  int rank_, ranks_, device_;
  int64_t max_bytes_;
  ncclComm* comm_ = nullptr;
  CUstream_st* stream_ = nullptr;
  void* send_ = nullptr;
  void* recv_ = nullptr;
  std::vector<CUevent_st*> events_;  // a pool; [done_, marked_) are pending, in order
  size_t marked_ = 0, done_ = 0;
};

}  // namespace bubblesim::hw::cuda
