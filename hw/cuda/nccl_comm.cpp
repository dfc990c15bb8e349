#include "hw/cuda/nccl_comm.hpp"

#include <algorithm>
#include <cstring>
#include <exception>
#include <vector>

#include "hw/cuda/nccl_check.hpp"
#include "sim/core/error.hpp"

namespace bubblesim::hw::cuda {
namespace {

constexpr int64_t kElement = 4;  // fp32, nccl-tests' default type

constexpr std::pair<CommCall, std::string_view> kNames[] = {{CommCall::SendRecv, "p2p"},
                                                            {CommCall::AllToAll, "alltoall"},
                                                            {CommCall::AllReduce, "allreduce"},
                                                            {CommCall::AllGather, "allgather"},
                                                            {CommCall::ReduceScatter, "reducescatter"}};

/// Whether the op's size S is split over the ranks (each rank's share is S / ranks).
bool split(CommCall op) {
  return op == CommCall::AllToAll || op == CommCall::AllGather || op == CommCall::ReduceScatter;
}

}  // namespace

NcclId nccl_unique_id() {
  ncclUniqueId id;
  BUBBLESIM_NCCL(ncclGetUniqueId(&id), nullptr);
  static_assert(sizeof(id.internal) == std::tuple_size_v<NcclId>);
  NcclId out;
  std::memcpy(out.data(), id.internal, out.size());
  return out;
}

std::string nccl_version() {
  int v = 0;
  BUBBLESIM_NCCL(ncclGetVersion(&v), nullptr);
  // NCCL_VERSION(X, Y, Z) = X * 10000 + Y * 100 + Z from 2.9 on.
  return std::to_string(v / 10000) + "." + std::to_string(v / 100 % 100) + "." + std::to_string(v % 100);
}

CommCall parse_comm_op(std::string_view name) { return from_name(kNames, name, "unknown communication benchmark"); }

NcclComm::NcclComm(const NcclId& id, int rank, int ranks, int device, int64_t max_bytes,
                   const std::function<bool(bool)>& agree)
    : rank_(rank), ranks_(ranks), device_(device), max_bytes_(max_bytes) {
  if (ranks < 1 || rank < 0 || rank >= ranks) {
    throw InputError("NCCL communicator: rank " + std::to_string(rank) + " of " + std::to_string(ranks) + " is not a rank");
  }
  if (max_bytes < kElement * ranks) {
    throw InputError("NCCL communicator: buffers of " + std::to_string(max_bytes) + " bytes hold less than one fp32 per rank");
  }
  setup_agreed(
      [&] {
        BUBBLESIM_CUDA(cudaSetDevice(device));
        BUBBLESIM_CUDA(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
        BUBBLESIM_CUDA(cudaMalloc(&send_, static_cast<size_t>(max_bytes)));
        BUBBLESIM_CUDA(cudaMalloc(&recv_, static_cast<size_t>(max_bytes)));
        // Defined contents: NaN-free sums in all-reduce and reduce-scatter.
        BUBBLESIM_CUDA(cudaMemsetAsync(send_, 0, static_cast<size_t>(max_bytes), stream_));
        BUBBLESIM_CUDA(cudaStreamSynchronize(stream_));
      },
      agree, [&] { abort(); }, "NCCL communicator: another rank could not set up its GPU buffers; not joining");
  try {
    ncclUniqueId uid;
    std::memcpy(uid.internal, id.data(), id.size());
    BUBBLESIM_NCCL(ncclCommInitRank(&comm_, ranks, uid, rank), nullptr);
  } catch (...) {
    abort();
    throw;
  }
}

NcclComm::~NcclComm() {
  // A finished communicator is destroyed cleanly (ncclCommDestroy waits for pending work and
  // meets the other ranks of the host); while an exception unwinds, a peer may never get there,
  // so it is aborted instead.
  if (comm_ != nullptr && std::uncaught_exceptions() == 0) {
    if (ncclCommDestroy(comm_) != ncclSuccess) ncclCommAbort(comm_);
    comm_ = nullptr;
  }
  abort();
}

void NcclComm::abort() noexcept {
  if (comm_ != nullptr) {
    ncclCommAbort(comm_);
    comm_ = nullptr;
  }
  cudaSetDevice(device_);
  if (send_ != nullptr) cudaFree(send_);
  if (recv_ != nullptr) cudaFree(recv_);
  if (stream_ != nullptr) cudaStreamDestroy(stream_);
  for (cudaEvent_t e : events_) cudaEventDestroy(e);
  events_.clear();
  marked_ = done_ = 0;
  send_ = recv_ = nullptr;
  stream_ = nullptr;
}

void NcclComm::mark_done() {
  if (done_ == marked_) done_ = marked_ = 0;  // nothing pending: reuse the pool from the start
  if (marked_ == events_.size()) {
    cudaEvent_t e = nullptr;
    BUBBLESIM_CUDA(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
    events_.push_back(e);
  }
  BUBBLESIM_CUDA(cudaEventRecord(events_[marked_++], stream_));
}

int64_t NcclComm::effective_size(CommCall op, int64_t size) const {
  const int64_t unit = split(op) ? kElement * ranks_ : kElement;
  return std::max(unit, size / unit * unit);
}

size_t NcclComm::elements(CommCall op, int64_t size) const {
  if (comm_ == nullptr) throw GpuError("NCCL communicator: used after it was aborted");
  BUBBLESIM_ASSERT(op != CommCall::None, "an NCCL operation that moves nothing");
  const int64_t s = effective_size(op, size);
  if (s > max_bytes_) {
    throw InputError("NCCL: size " + std::to_string(s) + " exceeds the " + std::to_string(max_bytes_) +
                     " bytes of buffers this communicator was made with");
  }
  return static_cast<size_t>(s / kElement);
}

void NcclComm::enqueue(CommCall op, int64_t size, int count) {
  const size_t all = elements(op, size);
  const size_t share = all / static_cast<size_t>(ranks_);  // per rank, for the split ops
  for (int i = 0; i < count; ++i) {
    group([&] {
      if (op == CommCall::SendRecv) {
        const int next = (rank_ + 1) % ranks_, prev = (rank_ + ranks_ - 1) % ranks_;
        BUBBLESIM_NCCL(ncclSend(send_, all, ncclFloat32, next, comm_, stream_), comm_);
        BUBBLESIM_NCCL(ncclRecv(recv_, all, ncclFloat32, prev, comm_, stream_), comm_);
        return;
      }
      // S is all-reduce's buffer, all-gather's output (each rank gives S / ranks), reduce-scatter's
      // input (each rank keeps S / ranks of the sum) and all-to-all's (S / ranks per peer).
      enqueue_collective(op, send_, recv_, op == CommCall::AllReduce ? all : share, ncclFloat32, ranks_, comm_,
                         stream_);
    });
  }
}

int64_t NcclComm::check(CommCall op, int64_t size, const std::function<void()>& alive, double stall_timeout_s) {
  const size_t all = elements(op, size);
  const size_t share = all / static_cast<size_t>(ranks_);
  const int n = ranks_, r = rank_;
  const auto value = [](int rank, size_t i) { return static_cast<float>(rank + 1 + static_cast<int>(i % 7)); };
  std::vector<float> data(all);
  for (size_t i = 0; i < all; ++i) data[i] = value(r, i);
  BUBBLESIM_CUDA(cudaSetDevice(device_));
  BUBBLESIM_CUDA(cudaMemcpyAsync(send_, data.data(), all * kElement, cudaMemcpyHostToDevice, stream_));
  BUBBLESIM_CUDA(cudaMemsetAsync(recv_, 0xff, all * kElement, stream_));  // NaN until written
  enqueue(op, size, 1);
  wait(alive, stall_timeout_s);
  // What this rank must hold, and how many elements of it.
  const float all_ranks = static_cast<float>(n * (n + 1) / 2);
  size_t count = all;
  std::function<float(size_t)> want;
  switch (op) {
    case CommCall::SendRecv: want = [&](size_t i) { return value((r + n - 1) % n, i); }; break;
    case CommCall::AllReduce:
      want = [&](size_t i) { return all_ranks + static_cast<float>(n * static_cast<int>(i % 7)); };
      break;
    case CommCall::AllGather: want = [&](size_t i) { return value(static_cast<int>(i / share), i % share); }; break;
    case CommCall::ReduceScatter:
      count = share;
      want = [&](size_t i) { return all_ranks + static_cast<float>(n * static_cast<int>((r * share + i) % 7)); };
      break;
    case CommCall::AllToAll:
      want = [&](size_t i) { return value(static_cast<int>(i / share), r * share + i % share); };
      break;
    case CommCall::None: break;  // refused by elements()
  }
  // Everything on the communicator's stream, which does not synchronise with the default one.
  std::vector<float> got(count);
  BUBBLESIM_CUDA(cudaMemcpyAsync(got.data(), recv_, count * kElement, cudaMemcpyDeviceToHost, stream_));
  BUBBLESIM_CUDA(cudaMemsetAsync(send_, 0, all * kElement, stream_));
  BUBBLESIM_CUDA(cudaStreamSynchronize(stream_));
  int64_t wrong = 0;
  for (size_t i = 0; i < count; ++i) wrong += got[i] != want(i);  // NaN (never written) counts
  return wrong;
}

void NcclComm::group(const std::function<void()>& calls) {
  if (comm_ == nullptr) throw GpuError("NCCL communicator: used after it was aborted");
  try {
    BUBBLESIM_CUDA(cudaSetDevice(device_));
    BUBBLESIM_NCCL(ncclGroupStart(), comm_);
    try {
      calls();
    } catch (...) {
      ncclGroupEnd();  // closed, so NCCL's cleanup is not deferred into it
      throw;
    }
    BUBBLESIM_NCCL(ncclGroupEnd(), comm_);
    mark_done();
  } catch (...) {
    abort();  // peers may wait on what this rank never posted
    throw;
  }
}

void NcclComm::ring_pass(const void* send, void* recv, int64_t bytes, const std::function<void()>& alive) {
  const int next = (rank_ + 1) % ranks_, prev = (rank_ + ranks_ - 1) % ranks_;
  const auto n = static_cast<size_t>(bytes);
  group([&] {
    BUBBLESIM_NCCL(ncclSend(send, n, ncclInt8, next, comm_, stream_), comm_);
    BUBBLESIM_NCCL(ncclRecv(recv, n, ncclInt8, prev, comm_, stream_), comm_);
  });
  wait(alive);
}

void NcclComm::all_to_all(const void* send, void* recv, int64_t bytes_per_peer, const std::function<void()>& alive) {
  const auto n = static_cast<size_t>(bytes_per_peer);
  group([&] {
    for (int peer = 0; peer < ranks_; ++peer) {
      const size_t at = n * static_cast<size_t>(peer);
      BUBBLESIM_NCCL(ncclSend(static_cast<const char*>(send) + at, n, ncclInt8, peer, comm_, stream_), comm_);
      BUBBLESIM_NCCL(ncclRecv(static_cast<char*>(recv) + at, n, ncclInt8, peer, comm_, stream_), comm_);
    }
  });
  wait(alive);
}

void NcclComm::gather(const void* send, void* recv, int64_t bytes, const std::function<void()>& alive) {
  const auto n = static_cast<size_t>(bytes);
  group([&] {
    BUBBLESIM_NCCL(ncclSend(send, n, ncclInt8, 0, comm_, stream_), comm_);
    for (int peer = 0; rank_ == 0 && peer < ranks_; ++peer) {
      BUBBLESIM_NCCL(ncclRecv(static_cast<char*>(recv) + n * static_cast<size_t>(peer), n, ncclInt8, peer, comm_, stream_),
                     comm_);
    }
  });
  wait(alive);
}

void NcclComm::wait(const std::function<void()>& alive, double stall_timeout_s) {
  if (comm_ == nullptr) throw GpuError("NCCL communicator: used after it was aborted");
  try {
    poll_until(
        [&] {  // retire the operations done so far, in order; each one is progress
          const size_t before = done_;
          while (done_ < marked_) {
            const cudaError_t e = cudaEventQuery(events_[done_]);
            if (e == cudaErrorNotReady) break;
            BUBBLESIM_CUDA(e);
            ++done_;
          }
          return done_ > before;
        },
        [&] {
          const cudaError_t e = cudaStreamQuery(stream_);
          if (e == cudaErrorNotReady) return false;
          BUBBLESIM_CUDA(e);
          done_ = marked_ = 0;
          return true;
        },
        std::span<ncclComm_t const>(&comm_, 1), alive, stall_timeout_s, [&] {
          return "NCCL rank " + std::to_string(rank_) + ": no progress for " + std::to_string(stall_timeout_s) +
                 " s (a peer stopped or the fabric stalled); communicator aborted";
        });
  } catch (...) {
    abort();
    throw;
  }
}

}  // namespace bubblesim::hw::cuda
