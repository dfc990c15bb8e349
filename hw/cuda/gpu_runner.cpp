#include "hw/cuda/gpu_runner.hpp"

#include <algorithm>
#include <chrono>
#include <exception>
#include <thread>

#include "hw/cuda/nccl_check.hpp"
#include "hw/cuda/nccl_comm.hpp"
#include "sim/core/error.hpp"

namespace bubblesim::hw::cuda {
namespace {

constexpr int64_t kBf16 = 2;  // collectives move bf16, as training does

/// One step's NCCL count (per rank for the split collectives) and the bytes of buffer it needs.
/// Collectives run in place, as frameworks run them on their own gradient and parameter
/// buffers (all-to-all, which NCCL cannot run in place, sends from one half and receives into
/// the other); a group of sends and receives takes each message its own range.
struct Extent {
  size_t count = 0;
  int64_t bytes = 0;
};

Extent extent(const Step& st, int64_t ranks) {
  const int64_t all = std::max<int64_t>(1, st.bytes / kBf16);  // S in elements
  const int64_t share = std::max<int64_t>(1, all / ranks);      // S / ranks
  switch (st.call) {
    case CommCall::None: return {};
    case CommCall::AllReduce: return {static_cast<size_t>(all), all * kBf16};
    case CommCall::AllGather:
    case CommCall::ReduceScatter: return {static_cast<size_t>(share), share * ranks * kBf16};
    case CommCall::AllToAll: return {static_cast<size_t>(share), 2 * share * ranks * kBf16};
    case CommCall::SendRecv: {
      Extent e;
      for (const PeerBytes& m : st.sends) e.bytes += m.bytes;
      for (const PeerBytes& m : st.recvs) e.bytes += m.bytes;
      return e;
    }
  }
  return {};
}

/// A GPU's rank in a communicator: its position among the communicator's GPUs.
int rank_in(const Communicator& c, int32_t gpu) {
  const auto it = std::lower_bound(c.gpus.begin(), c.gpus.end(), gpu);
  BUBBLESIM_ASSERT(it != c.gpus.end() && *it == gpu, "a step addresses a GPU outside its communicator");
  return static_cast<int>(it - c.gpus.begin());
}

}  // namespace

GpuRunner::GpuRunner(const sim::Program& p, const CommPlan& plan, size_t rank, NcclComm& world, int cuda_device)
    : p_(p), plan_(plan.ranks.at(rank)), comm_table_(plan.comms), device_(cuda_device), compute_(cuda_device) {
  try {
    BUBBLESIM_CUDA(cudaSetDevice(device_));
    if (world.handle() == nullptr) throw GpuError("GPU runner: the world communicator was aborted");
    // Communicators: one split of the world per round, each GPU asking for the one it is in.
    comms_.assign(comm_table_.size(), nullptr);
    for (int32_t round = 0; round < plan.rounds; ++round) {
      int color = NCCL_SPLIT_NOCOLOR, key = 0;
      for (size_t c = 0; c < comm_table_.size(); ++c) {
        const Communicator& comm = comm_table_[c];
        if (comm.round != round || !std::binary_search(comm.gpus.begin(), comm.gpus.end(), plan_.gpu)) continue;
        color = static_cast<int>(c);
        key = rank_in(comm, plan_.gpu);
      }
      ncclComm_t made = nullptr;
      BUBBLESIM_NCCL(ncclCommSplit(world.handle(), color, key, &made, nullptr), world.handle());
      if (color != NCCL_SPLIT_NOCOLOR) comms_[static_cast<size_t>(color)] = made;
    }
    // One buffer for the largest call, shared by all (its contents are never read).
    for (const Step& st : plan_.steps) {
      if (st.call == CommCall::None) continue;
      const Extent e = extent(st, static_cast<int64_t>(comm_table_[static_cast<size_t>(st.comm)].gpus.size()));
      buffer_bytes_ = std::max(buffer_bytes_, e.bytes);
    }
    size_t free = 0, total = 0;
    BUBBLESIM_CUDA(cudaMemGetInfo(&free, &total));
    if (buffer_bytes_ > static_cast<int64_t>(free) * 8 / 10) {
      throw InputError("GPU " + std::to_string(plan_.gpu) + ": the largest communication of this scenario needs " +
                       std::to_string(buffer_bytes_ >> 20) + " MiB of buffer, more than 80% of the " +
                       std::to_string(free >> 20) + " MiB free on CUDA device " + std::to_string(device_) +
                       " (fewer layers, a smaller batch or more ZeRO sharding keep it smaller)");
    }
    if (buffer_bytes_ > 0) {
      BUBBLESIM_CUDA(cudaMalloc(&buffer_, static_cast<size_t>(buffer_bytes_)));
      BUBBLESIM_CUDA(cudaMemset(buffer_, 0, static_cast<size_t>(buffer_bytes_)));  // NaN-free sums
    }
    for (size_t l = 0; l < plan_.lanes.size(); ++l) {
      cudaStream_t s = nullptr;
      BUBBLESIM_CUDA(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
      lanes_.push_back(s);
    }
    on_lane_.resize(lanes_.size());
    start_.assign(plan_.steps.size(), nullptr);
    end_.assign(plan_.steps.size(), nullptr);
    std::vector<size_t> step_of_op(p.num_ops(), plan_.steps.size());
    for (size_t i = 0; i < plan_.steps.size(); ++i) {
      on_lane_[plan_.steps[i].lane].push_back(i);
      BUBBLESIM_CUDA(cudaEventCreate(&start_[i]));
      BUBBLESIM_CUDA(cudaEventCreate(&end_[i]));
      if (plan_.steps[i].op != sim::kNone) step_of_op[plan_.steps[i].op] = i;
    }
    BUBBLESIM_CUDA(cudaEventCreate(&origin_));
    for (sim::StreamId s : p.devices()[plan_.device].streams) {
      for (sim::OpId op : p.stream(s).ops) {
        BUBBLESIM_ASSERT(step_of_op[op] < plan_.steps.size(), "an op of the device has no step in its plan");
        ops_.push_back(op);
        step_of_.push_back(step_of_op[op]);
      }
    }
  } catch (...) {
    abort();
    release();
    throw;
  }
}

GpuRunner::~GpuRunner() {
  // A finished run destroys its communicators cleanly; while an exception unwinds a peer may
  // never get there, so they are aborted instead.
  if (std::uncaught_exceptions() == 0) {
    cudaSetDevice(device_);
    cudaDeviceSynchronize();
    for (ncclComm*& c : comms_) {
      if (c != nullptr && ncclCommDestroy(c) != ncclSuccess) ncclCommAbort(c);
      c = nullptr;
    }
  }
  abort();
  release();
}

void GpuRunner::abort() noexcept {
  for (ncclComm*& c : comms_) {
    if (c != nullptr) ncclCommAbort(c);
    c = nullptr;
  }
}

void GpuRunner::release() noexcept {
  cudaSetDevice(device_);
  for (cudaEvent_t e : start_) {
    if (e != nullptr) cudaEventDestroy(e);
  }
  for (cudaEvent_t e : end_) {
    if (e != nullptr) cudaEventDestroy(e);
  }
  if (origin_ != nullptr) cudaEventDestroy(origin_);
  for (cudaStream_t s : lanes_) cudaStreamDestroy(s);
  if (buffer_ != nullptr) cudaFree(buffer_);
  start_.clear();
  end_.clear();
  lanes_.clear();
  origin_ = nullptr;
  buffer_ = nullptr;
}

std::string GpuRunner::describe(size_t i) const {
  const Step& st = plan_.steps[i];
  std::string s = st.op != sim::kNone ? sim::describe(p_, st.op) : "the send of group " + std::to_string(st.group);
  if (st.call != CommCall::None) s += std::string(" (") + to_string(st.call) + " on " + plan_.lanes[st.lane] + ")";
  return s;
}

void GpuRunner::enqueue(size_t i) {
  const Step& st = plan_.steps[i];
  cudaStream_t s = lanes_[st.lane];
  for (uint32_t w : st.waits) BUBBLESIM_CUDA(cudaStreamWaitEvent(s, end_[w], 0));
  BUBBLESIM_CUDA(cudaEventRecord(start_[i], s));
  if (st.call == CommCall::None) {
    if (st.op != sim::kNone && p_.op(st.op).kind == sim::OpKind::Compute) {
      if (const sim::OpWork* w = p_.work(st.op)) {
        compute_.run(*w, s);
      } else if (p_.op(st.op).duration > Time::zero()) {
        throw InputError(sim::describe(p_, st.op) + " takes time but records no work to run");
      }
    }
    BUBBLESIM_CUDA(cudaEventRecord(end_[i], s));
    return;
  }
  const Communicator& c = comm_table_[static_cast<size_t>(st.comm)];
  ncclComm_t comm = comms_[static_cast<size_t>(st.comm)];
  if (comm == nullptr) throw GpuError("GPU runner: " + describe(i) + " on a communicator this GPU is not in");
  const auto ranks = static_cast<int64_t>(c.gpus.size());
  const Extent e = extent(st, ranks);
  const size_t mine = e.count * static_cast<size_t>(rank_in(c, plan_.gpu) * kBf16);  // this rank's share, in place
  switch (st.call) {
    case CommCall::None: break;
    case CommCall::AllReduce:
      BUBBLESIM_NCCL(ncclAllReduce(buffer_, buffer_, e.count, ncclBfloat16, ncclSum, comm, s), comm);
      break;
    case CommCall::AllGather:
      BUBBLESIM_NCCL(ncclAllGather(buffer_ + mine, buffer_, e.count, ncclBfloat16, comm, s), comm);
      break;
    case CommCall::ReduceScatter:
      BUBBLESIM_NCCL(ncclReduceScatter(buffer_, buffer_ + mine, e.count, ncclBfloat16, ncclSum, comm, s), comm);
      break;
    case CommCall::AllToAll: {
      char* recv = buffer_ + e.bytes / 2;
#if NCCL_VERSION_CODE >= 22800
      BUBBLESIM_NCCL(ncclAlltoAll(buffer_, recv, e.count, ncclBfloat16, comm, s), comm);
#else
      BUBBLESIM_NCCL(ncclGroupStart(), comm);
      for (int peer = 0; peer < ranks; ++peer) {
        const size_t at = e.count * static_cast<size_t>(peer * kBf16);
        BUBBLESIM_NCCL(ncclSend(buffer_ + at, e.count, ncclBfloat16, peer, comm, s), comm);
        BUBBLESIM_NCCL(ncclRecv(recv + at, e.count, ncclBfloat16, peer, comm, s), comm);
      }
      BUBBLESIM_NCCL(ncclGroupEnd(), comm);
#endif
      break;
    }
    case CommCall::SendRecv: {
      BUBBLESIM_NCCL(ncclGroupStart(), comm);
      try {
        size_t at = 0;  // each message its own range of the buffer
        for (const PeerBytes& r : st.recvs) {
          BUBBLESIM_NCCL(ncclRecv(buffer_ + at, static_cast<size_t>(r.bytes), ncclInt8, rank_in(c, r.gpu), comm, s), comm);
          at += static_cast<size_t>(r.bytes);
        }
        for (const PeerBytes& out : st.sends) {
          BUBBLESIM_NCCL(ncclSend(buffer_ + at, static_cast<size_t>(out.bytes), ncclInt8, rank_in(c, out.gpu), comm, s), comm);
          at += static_cast<size_t>(out.bytes);
        }
      } catch (...) {
        ncclGroupEnd();  // closed, so NCCL's cleanup is not deferred into it
        throw;
      }
      BUBBLESIM_NCCL(ncclGroupEnd(), comm);
      break;
    }
  }
  BUBBLESIM_CUDA(cudaEventRecord(end_[i], s));
}

void GpuRunner::wait(const std::function<void()>& alive, double stall_timeout_s) {
  std::vector<size_t> next(lanes_.size(), 0);  // per lane: its first step not yet seen done
  auto progress = std::chrono::steady_clock::now();
  const auto spin_until = progress + std::chrono::milliseconds(10);
  for (;;) {
    bool all_done = true;
    for (size_t l = 0; l < lanes_.size(); ++l) {
      while (next[l] < on_lane_[l].size()) {
        const cudaError_t e = cudaEventQuery(end_[on_lane_[l][next[l]]]);
        if (e == cudaErrorNotReady) break;
        BUBBLESIM_CUDA(e);
        ++next[l];
        progress = std::chrono::steady_clock::now();
      }
      all_done = all_done && next[l] == on_lane_[l].size();
    }
    if (all_done) return;
    for (ncclComm* c : comms_) {
      if (c == nullptr) continue;
      ncclResult_t async = ncclSuccess;
      BUBBLESIM_NCCL(ncclCommGetAsyncError(c, &async), c);
      BUBBLESIM_NCCL(async, c);
    }
    if (alive) alive();
    const auto now = std::chrono::steady_clock::now();
    if (std::chrono::duration<double>(now - progress).count() > stall_timeout_s) {
      std::string waiting;
      for (size_t l = 0; l < lanes_.size(); ++l) {
        if (next[l] < on_lane_[l].size()) waiting += (waiting.empty() ? "" : "; ") + describe(on_lane_[l][next[l]]);
      }
      throw GpuError("GPU " + std::to_string(plan_.gpu) + ": no step finished for " +
                     std::to_string(static_cast<int>(stall_timeout_s)) + " s (a peer stopped or the fabric stalled), " +
                     "waiting on " + waiting + "; communicators aborted");
    }
    // Spin for the first 10 ms, then yield the core between polls.
    if (now > spin_until) std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
}

ReplayTimes GpuRunner::run_iteration(const std::function<void()>& alive, double stall_timeout_s) {
  try {
    BUBBLESIM_CUDA(cudaSetDevice(device_));
    BUBBLESIM_CUDA(cudaDeviceSynchronize());
    // Every lane starts after the origin.
    BUBBLESIM_CUDA(cudaEventRecord(origin_, lanes_.front()));
    for (cudaStream_t s : lanes_) BUBBLESIM_CUDA(cudaStreamWaitEvent(s, origin_, 0));
    for (size_t i = 0; i < plan_.steps.size(); ++i) enqueue(i);
    wait(alive, stall_timeout_s);
  } catch (...) {
    abort();  // peers may wait on calls this GPU never makes
    throw;
  }
  ReplayTimes t;
  t.start.resize(ops_.size());
  t.end.resize(ops_.size());
  for (size_t k = 0; k < ops_.size(); ++k) {
    float a = 0, b = 0;
    BUBBLESIM_CUDA(cudaEventElapsedTime(&a, origin_, start_[step_of_[k]]));
    BUBBLESIM_CUDA(cudaEventElapsedTime(&b, origin_, end_[step_of_[k]]));
    t.start[k] = a * 1e-3;
    t.end[k] = b * 1e-3;
    t.makespan = std::max(t.makespan, t.end[k]);
  }
  return t;
}

}  // namespace bubblesim::hw::cuda
