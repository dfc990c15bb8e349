#include "hw/cuda/node_runner.hpp"

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <exception>
#include <mutex>
#include <string>
#include <thread>

#include "hw/backend/backend.hpp"
#include "hw/cuda/cuda_check.hpp"

namespace bubblesim::hw::cuda {
namespace {

/// The GPUs' threads meeting: each arrives saying whether it is fine, and learns whether every
/// one is once all have arrived. Reusable: each meeting is a generation. A GPU whose thread failed
/// never arrives; its failure (`failed`) releases the others with false.
/// Used before NCCL's bootstrap (which would wait forever for a thread that failed its setup)
/// and before each iteration's origin (so no GPU counts the others' start-up as waiting).
class Meeting {
 public:
  Meeting(size_t parties, const std::atomic<bool>& failed) : parties_(parties), failed_(failed) {}
  bool operator()(bool ok) {
    std::unique_lock lock(m_);
    const uint64_t generation = generation_;
    all_ok_ = all_ok_ && ok;
    if (++arrived_ == parties_) {
      outcome_ = all_ok_;
      arrived_ = 0;
      all_ok_ = true;
      ++generation_;
      met_.notify_all();
      return outcome_;
    }
    while (generation_ == generation) {
      if (failed_) return false;
      met_.wait_for(lock, std::chrono::milliseconds(10));
    }
    return outcome_;  // this generation's: the next cannot end before this thread arrives again
  }

 private:
  std::mutex m_;
  std::condition_variable met_;
  size_t parties_, arrived_ = 0;
  uint64_t generation_ = 0;
  bool all_ok_ = true, outcome_ = true;
  const std::atomic<bool>& failed_;
};

}  // namespace

template <typename Work>
void NodeRunner::on_each_gpu(Work work) {
  std::vector<std::exception_ptr> errors(gpus_);
  std::atomic<int> first{-1};  // the GPU that failed first: its error is the cause
  std::vector<std::thread> threads;
  const auto run = [&](size_t g) {
    try {
      work(g);
    } catch (...) {
      errors[g] = std::current_exception();
      int none = -1;
      first.compare_exchange_strong(none, static_cast<int>(g));
      failed_ = true;  // the others' waits stop; aborting waits until every thread is back
    }
  };
  for (size_t g = 0; g < gpus_; ++g) {
    try {
      threads.emplace_back(run, g);
    } catch (...) {  // no thread: this GPU fails, and the started ones see it
      errors[g] = std::current_exception();
      int none = -1;
      first.compare_exchange_strong(none, static_cast<int>(g));
      failed_ = true;
    }
  }
  for (std::thread& t : threads) t.join();
  if (failed_) abort_all();
  if (first >= 0) std::rethrow_exception(errors[static_cast<size_t>(first.load())]);
}

void NodeRunner::abort_all() noexcept {
  // Every GPU's communicators at once, a thread per GPU (NCCL may wait for the other GPUs of
  // the node to abort theirs too).
  std::vector<std::thread> threads;
  for (size_t g = 0; g < gpus_; ++g) {
    const auto one = [this, g] {
      if (runners_[g]) runners_[g]->abort();
      if (worlds_[g]) worlds_[g]->abort();
    };
    try {
      threads.emplace_back(one);
    } catch (...) {
      one();
    }
  }
  for (std::thread& t : threads) t.join();
}

NodeRunner::NodeRunner(const sim::Program& p, const CommPlan& plan, double stall_timeout_s)
    : gpus_(plan.ranks.size()), stall_timeout_s_(stall_timeout_s) {
  for (size_t g = 0; g < gpus_; ++g) {
    if (plan.ranks[g].gpu != static_cast<int32_t>(g)) throw GpuError("node runner: the plan must list GPUs 0..n-1 in order");
  }
  worlds_.resize(gpus_);
  runners_.resize(gpus_);
  const NcclId id = nccl_unique_id();
  Meeting buffers(gpus_, failed_), runs(gpus_, failed_);
  on_each_gpu([&](size_t g) {
    const auto rank = static_cast<int>(g);
    worlds_[g] = std::make_unique<NcclComm>(id, rank, static_cast<int>(gpus_), rank,
                                            NcclComm::min_buffer_bytes(static_cast<int64_t>(gpus_)),
                                            [&buffers](bool ok) { return buffers(ok); });
    runners_[g] = std::make_unique<GpuRunner>(p, plan, g, *worlds_[g], rank, [&runs](bool ok) { return runs(ok); },
                                              alive(g), stall_timeout_s_);
  });
}

std::function<void()> NodeRunner::alive(size_t gpu) const {
  return [this, gpu] {
    if (failed_) throw RankFailure("GPU " + std::to_string(gpu) + " stopped: another GPU of the node failed");
  };
}

NodeRunner::~NodeRunner() {
  // After a failure every communicator was aborted (on_each_gpu). Otherwise each GPU's
  // communicators are destroyed in its own thread, as they were made.
  try {
    on_each_gpu([&](size_t g) {
      runners_[g].reset();
      worlds_[g].reset();
    });
  } catch (const std::exception& e) {
    // What failed to be destroyed was aborted (on_each_gpu); said, since a destructor cannot throw.
    std::fprintf(stderr, "bubblesim-hw: warning: tearing down the node's GPUs: %s\n", e.what());
  } catch (...) {
    std::fprintf(stderr, "bubblesim-hw: warning: tearing down the node's GPUs failed\n");
  }
}

std::vector<ReplayTimes> NodeRunner::run_iteration() {
  std::vector<ReplayTimes> out(gpus_);
  Meeting start(gpus_, failed_);
  on_each_gpu([&](size_t g) {
    out[g] = runners_[g]->run_iteration(alive(g), stall_timeout_s_, [this, &start, g] {
      if (!start(true)) alive(g)();  // released by a failure: stop as the other waits do
    });
  });
  return out;
}

}  // namespace bubblesim::hw::cuda
