#include "hw/cuda/gpu_runner.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <set>
#include <thread>
#include <tuple>

#include "hw/cuda/nccl_check.hpp"
#include "hw/cuda/nccl_comm.hpp"
#include "sim/core/error.hpp"

namespace bubblesim::hw::cuda {
namespace {

constexpr int64_t kBf16 = kCollectiveElement;
constexpr size_t kInFlight = 1024;  // steps enqueued ahead of the oldest not yet done

/// A GPU's rank in a communicator: its position among the communicator's GPUs.
int rank_in(const Communicator& c, int32_t gpu) {
  const auto it = std::lower_bound(c.gpus.begin(), c.gpus.end(), gpu);
  BUBBLESIM_ASSERT(it != c.gpus.end() && *it == gpu, "a step addresses a GPU outside its communicator");
  return static_cast<int>(it - c.gpus.begin());
}

}  // namespace

void set_run_environment() {
  setenv("CUDA_DEVICE_MAX_CONNECTIONS", "32", 0);
  setenv("NCCL_RUNTIME_CONNECT", "0", 0);
}

GpuRunner::GpuRunner(const sim::Program& p, const CommPlan& plan, size_t rank, NcclComm& world, int cuda_device,
                     const std::function<bool(bool)>& agree, const std::function<void()>& alive, double stall_timeout_s)
    : p_(p), plan_(plan.ranks.at(rank)), comm_table_(plan.comms), device_(cuda_device), compute_(cuda_device) {
  // First everything local that can fail; then the GPUs agree that each succeeded before any
  // waits on another in NCCL's splits and connections.
  setup_agreed([&] { setup_local(plan, rank); }, agree, [&] { release(); },
               "GPU " + std::to_string(plan_.gpu) + ": another GPU could not set up its run; not joining NCCL");
  try {
    if (world.handle() == nullptr) throw GpuError("GPU runner: the world communicator was aborted");
    split(plan, world);
    connect(alive, stall_timeout_s);
  } catch (...) {
    abort();
    release();
    throw;
  }
}

void GpuRunner::setup_local(const CommPlan& plan, size_t rank) {
  BUBBLESIM_CUDA(cudaSetDevice(device_));
  // Every buffer and mask the compute ops need, and every kernel loaded and run once (CUDA loads
  // kernels at first launch, which may wait for the whole device): later, either would stall
  // behind NCCL calls that wait for peers.
  // Distinct by class, shape, causal fraction (in millionths) and bytes: any of them changes the work.
  std::set<std::tuple<std::string, std::array<int64_t, 5>, int64_t, int64_t>> seen;
  std::vector<const sim::OpWork*> distinct;
  for (const Step& st : plan_.steps) {
    if (st.op == sim::kNone || p_.op(st.op).kind != sim::OpKind::Compute) continue;
    const sim::OpWork* w = p_.work(st.op);
    if (w == nullptr) continue;
    const auto fraction = std::llround(w->causal_fraction * 1e6);
    if (seen.emplace(w->op_class, w->shape, fraction, static_cast<int64_t>(w->bytes)).second) distinct.push_back(w);
  }
  for (const sim::OpWork* w : distinct) compute_.prepare(*w);
  for (const sim::OpWork* w : distinct) compute_.run(*w);
  compute_.synchronize();
  compute_.freeze();
  // One buffer for the largest call, shared by all (its contents are never read).
  buffer_bytes_ = hw::buffer_bytes(plan, rank);
  size_t free = 0, total = 0;
  BUBBLESIM_CUDA(cudaMemGetInfo(&free, &total));
  if (buffer_bytes_ > static_cast<int64_t>(free) * 8 / 10) {
    throw InputError("GPU " + std::to_string(plan_.gpu) + ": the largest communication of this scenario needs " +
                     std::to_string(buffer_bytes_ >> 20) + " MiB of buffer, more than 80% of the " +
                     std::to_string(free >> 20) + " MiB left free on CUDA device " + std::to_string(device_) +
                     " by the compute ops' " + std::to_string(compute_.arena() >> 20) +
                     " MiB (fewer layers, a smaller batch or more ZeRO sharding keep them smaller)");
  }
  BUBBLESIM_CUDA(cudaMalloc(&buffer_, static_cast<size_t>(buffer_bytes_)));
  // Zeros stay zeros under sums and copies: no NaN or Inf ever reaches a reduction.
  BUBBLESIM_CUDA(cudaMemset(buffer_, 0, static_cast<size_t>(buffer_bytes_)));
  for (size_t l = 0; l < plan_.lanes.size(); ++l) {
    cudaStream_t s = nullptr;
    BUBBLESIM_CUDA(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    lanes_.push_back(s);
  }
  on_lane_.resize(lanes_.size());
  start_.assign(plan_.steps.size(), nullptr);
  end_.assign(plan_.steps.size(), nullptr);
  std::vector<size_t> step_of_op(p_.num_ops(), plan_.steps.size());
  for (size_t i = 0; i < plan_.steps.size(); ++i) {
    on_lane_[plan_.steps[i].lane].push_back(i);
    BUBBLESIM_CUDA(cudaEventCreate(&start_[i]));
    BUBBLESIM_CUDA(cudaEventCreate(&end_[i]));
    if (plan_.steps[i].op != sim::kNone) step_of_op[plan_.steps[i].op] = i;
  }
  BUBBLESIM_CUDA(cudaEventCreate(&origin_));
  for (sim::StreamId s : p_.devices()[plan_.device].streams) {
    for (sim::OpId op : p_.stream(s).ops) {
      BUBBLESIM_ASSERT(step_of_op[op] < plan_.steps.size(), "an op of the device has no step in its plan");
      step_of_.push_back(step_of_op[op]);
    }
  }
}

void GpuRunner::split(const CommPlan& plan, NcclComm& world) {
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
    if (color == NCCL_SPLIT_NOCOLOR) continue;
    comms_[static_cast<size_t>(color)] = made;
    int count = 0, me = 0;
    BUBBLESIM_NCCL(ncclCommCount(made, &count), made);
    BUBBLESIM_NCCL(ncclCommUserRank(made, &me), made);
    if (static_cast<size_t>(count) != comm_table_[static_cast<size_t>(color)].gpus.size() || me != key) {
      throw GpuError("GPU " + std::to_string(plan_.gpu) + ": NCCL split communicator " + std::to_string(color) + " has " +
                     std::to_string(count) + " ranks with this GPU as " + std::to_string(me) + ", not " +
                     std::to_string(comm_table_[static_cast<size_t>(color)].gpus.size()) + " and " + std::to_string(key));
    }
  }
}

void GpuRunner::connect(const std::function<void()>& alive, double stall_timeout_s) {
  // Per communicator, in the same (index) order on every GPU: one tiny call of each collective
  // kind it will run, then one group with a byte to and from every peer it will exchange with.
  // NCCL connects lazily, and a first contact blocks the host until the peer arrives; done here
  // in one consistent order, no queued iteration waits on a connection being made.
  std::vector<std::set<CommCall>> kinds(comms_.size());
  std::vector<std::set<int32_t>> to(comms_.size()), from(comms_.size());
  for (const Step& st : plan_.steps) {
    if (st.call == CommCall::None) continue;
    const auto c = static_cast<size_t>(st.comm);
    if (st.call != CommCall::SendRecv) kinds[c].insert(st.call);
    for (const PeerBytes& m : st.sends) to[c].insert(m.gpu);
    for (const PeerBytes& m : st.recvs) from[c].insert(m.gpu);
  }
  std::vector<size_t> warmed;
  for (size_t c = 0; c < comms_.size(); ++c) {
    ncclComm_t comm = comms_[c];
    if (comm == nullptr || (kinds[c].empty() && to[c].empty() && from[c].empty())) continue;
    const Communicator& set = comm_table_[c];
    Step tiny;
    tiny.comm = static_cast<int32_t>(c);
    tiny.bytes = kBf16 * static_cast<int64_t>(set.gpus.size());  // one element per rank
    const size_t lane = std::find(plan_.lane_comm.begin(), plan_.lane_comm.end(), static_cast<int32_t>(c)) -
                        plan_.lane_comm.begin();
    for (CommCall k : kinds[c]) {
      tiny.call = k;
      call(tiny, lanes_[lane]);
    }
    tiny.call = CommCall::SendRecv;
    tiny.sends.clear();
    tiny.recvs.clear();
    for (int32_t g : to[c]) tiny.sends.push_back({g, 1});
    for (int32_t g : from[c]) tiny.recvs.push_back({g, 1});
    if (!tiny.sends.empty() || !tiny.recvs.empty()) call(tiny, lanes_[lane]);
    warmed.push_back(lane);
  }
  // Wait as an iteration does: one marker per warmed lane.
  for (size_t lane : warmed) {
    cudaEvent_t e = nullptr;
    BUBBLESIM_CUDA(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
    warm_.push_back(e);
    BUBBLESIM_CUDA(cudaEventRecord(e, lanes_[lane]));
  }
  size_t done = 0;
  poll(
      [&] {
        const size_t before = done;
        while (done < warm_.size()) {
          const cudaError_t e = cudaEventQuery(warm_[done]);
          if (e == cudaErrorNotReady) break;
          BUBBLESIM_CUDA(e);
          ++done;
        }
        return done > before;
      },
      [&] { return done == warm_.size(); }, [&] { return "connecting on " + plan_.lanes[warmed[done]]; }, alive,
      stall_timeout_s);
}

GpuRunner::~GpuRunner() {
  // A finished run destroys its communicators cleanly; while an exception unwinds a peer may
  // never get there, so they are aborted instead.
  if (std::uncaught_exceptions() == 0) {
    cudaSetDevice(device_);
    cudaDeviceSynchronize();
    for (ncclComm*& c : comms_) {
      // On failure NCCL keeps no promise about the handle: said, and left alone.
      if (c != nullptr && ncclCommDestroy(c) != ncclSuccess) {
        std::fprintf(stderr, "bubblesim-hw: warning: GPU %d: destroying an NCCL communicator failed: %s\n", device_,
                     ncclGetLastError(nullptr));
      }
      c = nullptr;
    }
  }
  abort();
  release();
}

void GpuRunner::abort() noexcept {
  // All at once, a thread per communicator: aborting one frees memory, which may wait for the
  // device, where another communicator's kernel may be waiting for a peer that is gone.
  std::vector<std::thread> threads;
  for (ncclComm*& c : comms_) {
    if (c == nullptr) continue;
    try {
      threads.emplace_back([c] { ncclCommAbort(c); });
    } catch (...) {
      ncclCommAbort(c);  // no thread to be had: abort it here
    }
    c = nullptr;
  }
  for (std::thread& t : threads) t.join();
}

void GpuRunner::release() noexcept {
  cudaSetDevice(device_);
  for (auto* list : {&start_, &end_, &warm_}) {
    for (cudaEvent_t e : *list) {
      if (e != nullptr) cudaEventDestroy(e);
    }
    list->clear();
  }
  if (origin_ != nullptr) cudaEventDestroy(origin_);
  for (cudaStream_t s : lanes_) cudaStreamDestroy(s);
  if (buffer_ != nullptr) cudaFree(buffer_);
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

void GpuRunner::call(const Step& st, cudaStream_t s) {
  const Communicator& c = comm_table_[static_cast<size_t>(st.comm)];
  ncclComm_t comm = comms_[static_cast<size_t>(st.comm)];
  if (comm == nullptr) throw GpuError("GPU runner: a call on communicator " + std::to_string(st.comm) + ", which this GPU is not in");
  const auto ranks = static_cast<int64_t>(c.gpus.size());
  const CallExtent e = call_extent(st, ranks);
  const size_t mine = e.count * static_cast<size_t>(rank_in(c, plan_.gpu) * kBf16);  // this rank's share, in place
  BUBBLESIM_NCCL(ncclGroupStart(), comm);
  try {
    switch (st.call) {
      case CommCall::None: break;
      case CommCall::AllReduce:
      case CommCall::AllGather:
      case CommCall::ReduceScatter:
      case CommCall::AllToAll: {
        // In place, as frameworks run them on their own buffers (all-gather from this rank's
        // share, reduce-scatter into it); all-to-all, which NCCL cannot run in place, from one
        // half of the buffer into the other.
        const char* from = st.call == CommCall::AllGather ? buffer_ + mine : buffer_;
        char* to = st.call == CommCall::ReduceScatter ? buffer_ + mine
                   : st.call == CommCall::AllToAll    ? buffer_ + e.bytes / 2
                                                      : buffer_;
        enqueue_collective(st.call, from, to, e.count, ncclBfloat16, static_cast<int>(ranks), comm, s);
        break;
      }
      case CommCall::SendRecv: {
        size_t at = 0;  // each message its own range of the buffer
        for (const PeerBytes& r : st.recvs) {
          BUBBLESIM_NCCL(ncclRecv(buffer_ + at, static_cast<size_t>(r.bytes), ncclInt8, rank_in(c, r.gpu), comm, s), comm);
          at += static_cast<size_t>(r.bytes);
        }
        for (const PeerBytes& out : st.sends) {
          BUBBLESIM_NCCL(ncclSend(buffer_ + at, static_cast<size_t>(out.bytes), ncclInt8, rank_in(c, out.gpu), comm, s), comm);
          at += static_cast<size_t>(out.bytes);
        }
        break;
      }
    }
  } catch (...) {
    ncclGroupEnd();  // closed, so NCCL's cleanup is not deferred into it
    throw;
  }
  BUBBLESIM_NCCL(ncclGroupEnd(), comm);
}

void GpuRunner::enqueue(size_t i) {
  const Step& st = plan_.steps[i];
  cudaStream_t s = lanes_[st.lane];
  for (uint32_t w : st.waits) BUBBLESIM_CUDA(cudaStreamWaitEvent(s, end_[w], 0));
  BUBBLESIM_CUDA(cudaEventRecord(start_[i], s));
  if (st.call != CommCall::None) {
    call(st, s);
  } else if (st.op != sim::kNone && p_.op(st.op).kind == sim::OpKind::Compute) {
    if (const sim::OpWork* w = p_.work(st.op)) {
      compute_.run(*w, s);
    } else if (p_.op(st.op).duration > Time::zero()) {
      throw InputError(sim::describe(p_, st.op) + " takes time but records no work to run");
    }
  }
  BUBBLESIM_CUDA(cudaEventRecord(end_[i], s));
}

void GpuRunner::poll(const std::function<bool()>& reap, const std::function<bool()>& finished,
                     const std::function<std::string()>& waiting, const std::function<void()>& alive,
                     double stall_timeout_s) {
  poll_until(reap, finished, comms_, alive, stall_timeout_s, [&] {
    return "GPU " + std::to_string(plan_.gpu) + ": nothing finished for " +
           std::to_string(static_cast<int>(stall_timeout_s)) +
           " s (a peer stopped or the fabric stalled), waiting on " + waiting();
  });
}

ReplayTimes GpuRunner::run_iteration(const std::function<void()>& alive, double stall_timeout_s,
                                     const std::function<void()>& at_start) {
  BUBBLESIM_CUDA(cudaSetDevice(device_));
  BUBBLESIM_CUDA(cudaDeviceSynchronize());
  if (at_start) at_start();
  // Every lane starts after the origin.
  BUBBLESIM_CUDA(cudaEventRecord(origin_, lanes_.front()));
  for (cudaStream_t s : lanes_) BUBBLESIM_CUDA(cudaStreamWaitEvent(s, origin_, 0));
  // Steps go in the plan's order, at most kInFlight ahead of those done: CUDA's and NCCL's
  // queues are bounded, and a host thread blocked in a full queue could not see a failure.
  std::vector<size_t> issued(lanes_.size(), 0), next(lanes_.size(), 0);  // per lane: enqueued; seen done
  size_t completed = 0;
  const auto reap = [&] {
    const size_t before = completed;
    for (size_t l = 0; l < lanes_.size(); ++l) {
      while (next[l] < issued[l]) {
        const cudaError_t e = cudaEventQuery(end_[on_lane_[l][next[l]]]);
        if (e == cudaErrorNotReady) break;
        BUBBLESIM_CUDA(e);
        ++next[l];
        ++completed;
      }
    }
    return completed > before;
  };
  const auto waiting = [&] {
    std::string what;
    for (size_t l = 0; l < lanes_.size(); ++l) {
      if (next[l] < issued[l]) what += (what.empty() ? "" : "; ") + describe(on_lane_[l][next[l]]);
    }
    return what;
  };
  for (size_t i = 0; i < plan_.steps.size(); ++i) {
    if (i - completed >= kInFlight) {
      const size_t target = completed + 1;
      poll(reap, [&] { return completed >= target; }, waiting, alive, stall_timeout_s);
    }
    enqueue(i);
    ++issued[plan_.steps[i].lane];
  }
  poll(reap, [&] { return completed == plan_.steps.size(); }, waiting, alive, stall_timeout_s);
  ReplayTimes t;
  t.start.resize(step_of_.size());
  t.end.resize(step_of_.size());
  for (size_t k = 0; k < step_of_.size(); ++k) {
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
