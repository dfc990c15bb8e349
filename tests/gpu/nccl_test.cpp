// NCCL communication of the GPU backend (hw/cuda/nccl_comm), in one process: one thread per
// visible GPU joins one communicator (a single GPU makes a one-rank communicator, which NCCL
// runs too). Every operation is checked on known data at sizes that are and are not multiples of
// the ranks (NcclComm::check: each rank's received elements against the operation's definition),
// including after timed back-to-back batches; a size beyond the buffers and an unknown name are
// refused; ring attention in every layout and Ulysses across the GPUs are checked against one
// GPU's attention over the whole sequence; then the bus bandwidth of each operation at 64 MiB is
// printed, for the record.
// Needs only the CUDA runtime, cuBLAS and NCCL, so the binary can be carried to a GPU machine.
// Exits 77 (CTest: skipped) when there is no usable GPU.
#include <algorithm>
#include <atomic>
#include <barrier>
#include <chrono>
#include <cstdio>
#include <exception>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "hw/cuda/attention_check_gpu.hpp"
#include "hw/cuda/gpu_compute.hpp"
#include "hw/cuda/nccl_comm.hpp"
#include "sim/core/error.hpp"
#include "sim/model/collectives.hpp"

using namespace bubblesim;
using namespace bubblesim::hw;

namespace {

std::mutex report_mutex;
std::atomic<int> failures{0};
std::atomic<bool> rank_died{false};  // a rank threw: the others stop waiting on it

/// Passed to NcclComm's waits: throws once another rank has failed.
void alive() {
  if (rank_died) throw std::runtime_error("another rank failed");
}

void expect(bool ok, const std::string& what) {
  if (ok) return;
  ++failures;
  const std::lock_guard<std::mutex> lock(report_mutex);
  std::fprintf(stderr, "FAILED: %s\n", what.c_str());
}

constexpr CommCall kOps[] = {CommCall::SendRecv, CommCall::AllToAll, CommCall::AllReduce,
                                 CommCall::AllGather, CommCall::ReduceScatter};
constexpr const char* kNames[] = {"p2p", "alltoall", "allreduce", "allgather", "reducescatter"};
constexpr sim::CollectiveOp kCollective[] = {sim::CollectiveOp::SendRecv, sim::CollectiveOp::AllToAll,
                                             sim::CollectiveOp::AllReduce, sim::CollectiveOp::AllGather,
                                             sim::CollectiveOp::ReduceScatter};  // nccl-tests' busbw factors

void rank_main(const cuda::NcclId& id, int rank, int ranks, std::barrier<>& setup, std::vector<double>& busbw) {
  constexpr int64_t kMax = int64_t{64} << 20;
  // Every thread's buffers before NCCL's bootstrap, which would wait forever for a failed one.
  const auto agree = [&setup](bool ok) {
    if (!ok) rank_died = true;
    setup.arrive_and_wait();
    return !rank_died;
  };
  cuda::NcclComm comm(id, rank, ranks, rank, kMax, agree);
  for (size_t k = 0; k < std::size(kOps); ++k) {
    const CommCall op = kOps[k];
    expect(cuda::parse_comm_op(kNames[k]) == op, std::string("parse ") + kNames[k]);
    for (int64_t size : {int64_t{4}, int64_t{1000}, int64_t{4} << 10, (int64_t{1} << 20) + 12, kMax}) {
      const int64_t wrong = comm.check(op, size, alive);
      expect(wrong == 0, std::string(kNames[k]) + " of " + std::to_string(size) + " bytes on rank " +
                             std::to_string(rank) + ": " + std::to_string(wrong) + " wrong elements");
      const int64_t moved = comm.effective_size(op, size);
      expect(moved > 0 && moved <= std::max<int64_t>(size, 4 * ranks) && moved % 4 == 0,
             std::string(kNames[k]) + ": effective size " + std::to_string(moved) + " for " + std::to_string(size));
    }
    // Timed batches leave the communicator usable and correct.
    comm.enqueue(op, kMax, 3);
    comm.wait(alive);
    const auto t0 = std::chrono::steady_clock::now();
    constexpr int kIterations = 10;
    comm.enqueue(op, kMax, kIterations);
    comm.wait(alive);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / kIterations;
    busbw[k] = static_cast<double>(comm.effective_size(op, kMax)) / s * sim::busbw_factor(kCollective[k], ranks) / 1e9;
    expect(comm.check(op, 12345, alive) == 0, std::string(kNames[k]) + " after timed batches");
  }
  bool refused = false;
  try {
    comm.enqueue(CommCall::AllReduce, kMax + (int64_t{1} << 20));
  } catch (const InputError&) {
    refused = true;
  }
  expect(refused, "a size beyond the buffers is refused");
  // Correctness across the GPUs: distributed attention equals one GPU's over the whole sequence.
  for (const char* mode : {"contiguous", "zigzag", "striped", "ulysses"}) {
    const int64_t seq = 256 * ranks;  // ring: 2 x ranks chunks; Ulysses: 8 heads over up to 8 ranks
    if (std::string(mode) == "ulysses" && 8 % ranks != 0) continue;
    const cuda::GpuAttentionCheck c = cuda::check_attention_gpu(mode, seq, 8, 64, comm, alive);
    if (rank != 0) continue;
    {
      const std::lock_guard<std::mutex> lock(report_mutex);
      std::printf("attention %-10s %d GPU(s), seq %lld, %s: forward %.2e, backward %.2e (relative, tolerance %.0e)\n",
                  mode, ranks, static_cast<long long>(seq), cuda::to_string(c.kernel).c_str(), c.forward_error,
                  c.backward_error, c.tolerance());
    }
    expect(c.ok(), std::string("attention across GPUs, ") + mode);
  }
}

}  // namespace

int main() {
  std::string why;
  const int gpus = cuda::device_count(&why);
  if (gpus == 0) {
    std::printf("nccl_test: no usable GPU (%s): skipped\n", why.c_str());
    return 77;
  }
  std::printf("NCCL %s, %d GPU(s), one rank each\n", cuda::nccl_version().c_str(), gpus);
  bool refused = false;
  try {
    cuda::parse_comm_op("broadcast");
  } catch (const InputError& e) {
    refused = std::string(e.what()).find("valid: p2p") != std::string::npos;
  }
  expect(refused, "an unknown operation is refused with the valid names");

  const cuda::NcclId id = cuda::nccl_unique_id();
  std::vector<std::vector<double>> busbw(static_cast<size_t>(gpus), std::vector<double>(std::size(kOps)));
  std::vector<std::thread> threads;
  std::vector<std::exception_ptr> errors(static_cast<size_t>(gpus));
  std::barrier<> setup(gpus);
  for (int r = 0; r < gpus; ++r) {
    threads.emplace_back([&, r] {
      try {
        rank_main(id, r, gpus, setup, busbw[static_cast<size_t>(r)]);
      } catch (...) {
        errors[static_cast<size_t>(r)] = std::current_exception();
        rank_died = true;
      }
    });
  }
  for (std::thread& t : threads) t.join();
  for (int r = 0; r < gpus; ++r) {
    if (!errors[static_cast<size_t>(r)]) continue;
    try {
      std::rethrow_exception(errors[static_cast<size_t>(r)]);
    } catch (const std::exception& e) {
      expect(false, "rank " + std::to_string(r) + " threw: " + e.what());
    }
  }
  std::printf("busbw at 64 MiB (GB/s, rank 0, nccl-tests factors):\n");
  for (size_t k = 0; k < std::size(kOps); ++k) std::printf("  %-14s %8.1f\n", kNames[k], busbw[0][k]);
  std::printf("%s: %d failure(s)\n", failures == 0 ? "nccl_test passed" : "nccl_test FAILED", failures.load());
  return failures == 0 ? 0 : 1;
}
