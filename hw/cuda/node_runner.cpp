#include "hw/cuda/node_runner.hpp"

#include <condition_variable>
#include <exception>
#include <mutex>
#include <string>
#include <thread>

#include "hw/backend/backend.hpp"
#include "hw/cuda/cuda_check.hpp"

namespace bubblesim::hw::cuda {
namespace {

/// Every GPU's thread says whether its setup worked; all learn whether every one did (what
/// NcclComm needs before NCCL's bootstrap, which would wait forever for a thread that failed).
class Agreement {
 public:
  explicit Agreement(size_t parties) : parties_(parties) {}
  bool operator()(bool ok) {
    std::unique_lock lock(m_);
    all_ok_ = all_ok_ && ok;
    if (++arrived_ == parties_) {
      done_.notify_all();
    } else {
      done_.wait(lock, [&] { return arrived_ == parties_; });
    }
    return all_ok_;
  }

 private:
  std::mutex m_;
  std::condition_variable done_;
  size_t parties_, arrived_ = 0;
  bool all_ok_ = true;
};

}  // namespace

template <typename Work>
void NodeRunner::on_each_gpu(Work work) {
  std::vector<std::exception_ptr> errors(gpus_);
  std::vector<char> secondary(gpus_, 0);  // stopped because another GPU failed
  std::vector<std::thread> threads;
  for (size_t g = 0; g < gpus_; ++g) {
    threads.emplace_back([&, g] {
      try {
        work(g);
      } catch (const RankFailure&) {
        errors[g] = std::current_exception();
        secondary[g] = 1;
        failed_ = true;
      } catch (...) {
        errors[g] = std::current_exception();
        failed_ = true;
      }
    });
  }
  for (std::thread& t : threads) t.join();
  for (int pass = 0; pass < 2; ++pass) {
    for (size_t g = 0; g < gpus_; ++g) {
      if (errors[g] && (pass == 1 || !secondary[g])) std::rethrow_exception(errors[g]);
    }
  }
}

NodeRunner::NodeRunner(const sim::Program& p, const CommPlan& plan, double stall_timeout_s)
    : gpus_(plan.ranks.size()), stall_timeout_s_(stall_timeout_s) {
  for (size_t g = 0; g < gpus_; ++g) {
    if (plan.ranks[g].gpu != static_cast<int32_t>(g)) throw GpuError("node runner: the plan must list GPUs 0..n-1 in order");
  }
  worlds_.resize(gpus_);
  runners_.resize(gpus_);
  const NcclId id = nccl_unique_id();
  Agreement agree(gpus_);
  try {
    on_each_gpu([&](size_t g) {
      const auto rank = static_cast<int>(g);
      worlds_[g] = std::make_unique<NcclComm>(id, rank, static_cast<int>(gpus_), rank, int64_t{4} * static_cast<int64_t>(gpus_),
                                              [&agree](bool ok) { return agree(ok); });
      runners_[g] = std::make_unique<GpuRunner>(p, plan, g, *worlds_[g], rank);
    });
  } catch (...) {
    for (auto& r : runners_) {
      if (r) r->abort();
    }
    for (auto& w : worlds_) {
      if (w) w->abort();
    }
    throw;
  }
}

NodeRunner::~NodeRunner() {
  // After a failure nothing is waited for: every communicator is aborted. Otherwise each GPU's
  // communicators are destroyed in its own thread, as they were made.
  if (failed_) {
    for (auto& r : runners_) {
      if (r) r->abort();
    }
    for (auto& w : worlds_) {
      if (w) w->abort();
    }
  }
  try {
    on_each_gpu([&](size_t g) {
      runners_[g].reset();
      worlds_[g].reset();
    });
  } catch (...) {
    // Nothing to report from a destructor; whatever is left was aborted above or is freed here.
  }
}

std::vector<ReplayTimes> NodeRunner::run_iteration() {
  std::vector<ReplayTimes> out(gpus_);
  on_each_gpu([&](size_t g) {
    const auto alive = [this, g] {
      if (failed_) throw RankFailure("GPU " + std::to_string(g) + " stopped: another GPU of the node failed");
    };
    out[g] = runners_[g]->run_iteration(alive, stall_timeout_s_);
  });
  return out;
}

}  // namespace bubblesim::hw::cuda
