// The host backend: one MPI process per device, CPU kernels for compute (HostCompute), MPI
// point-to-point messages for transfers, a steady clock, and waits that poll so a SIGTERM from
// mpirun (another rank died) or a stalled peer ends them with RankFailure instead of a hang.
// MPI errors become exceptions with file:line and MPI's message.
// Not the runner: hw/runner decides what runs when.
#pragma once

#include <mpi.h>

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "hw/backend/backend.hpp"
#include "hw/host/host_compute.hpp"

namespace bubblesim::hw {

/// MPI_Init / MPI_Finalize, errors returned instead of aborting.
class MpiSession {
 public:
  MpiSession(int& argc, char**& argv);
  ~MpiSession();
  MpiSession(const MpiSession&) = delete;
  MpiSession& operator=(const MpiSession&) = delete;
  int rank() const { return rank_; }
  int size() const { return size_; }
  /// Ends every rank's process (after a failure on this one).
  [[noreturn]] void abort(int code);
  /// The MPI library's version line.
  static std::string library_version();

 private:
  int rank_ = 0, size_ = 1;
};

/// Throws RankFailure with file:line and MPI's error string if `rc` is not MPI_SUCCESS.
void mpi_check(int rc, const char* call, const char* file, int line);
#define BUBBLESIM_MPI(call) ::bubblesim::hw::mpi_check((call), #call, __FILE__, __LINE__)

class MpiBackend final : public Backend {
 public:
  /// `stall_timeout_s`: a wait that sees no progress for this long throws RankFailure.
  explicit MpiBackend(const MpiSession& session, double stall_timeout_s = 120);
  /// Sets the stall timeout (e.g. while rank 0 alone does a long check); returns the old one.
  double set_stall_timeout(double seconds) { return std::exchange(stall_timeout_s_, seconds); }
  int rank() const override { return rank_; }
  int ranks() const override { return size_; }
  double now() const override;
  void barrier() override;
  void compute(const sim::OpWork& work) override {
    if (device_compute_) {
      device_compute_(work);
    } else {
      compute_.run(work);
    }
  }
  /// Runs compute ops on another device instead of the CPU (the GPU backend: its kernels, back
  /// when done); messages and reductions stay with MPI in host memory.
  void set_device_compute(std::function<void(const sim::OpWork&)> run) { device_compute_ = std::move(run); }
  void reduce(int64_t bytes) override { compute_.reduce(bytes); }
  RequestId isend(int peer, int64_t bytes, int64_t tag, bool synchronous) override;
  RequestId irecv(int peer, int64_t bytes, int64_t tag) override;
  bool test(RequestId r) override;
  void check_alive() override;
  std::vector<double> gather(std::span<const double> values, std::vector<int>& counts) override;
  int64_t broadcast(int64_t value) override;
  /// The sum of every rank's `value`, on every rank.
  int64_t sum(int64_t value);
  /// Rank 0's bytes into `data` on every rank (e.g. NCCL's bootstrap id).
  void broadcast_bytes(std::span<char> data);

  /// Installs SIGTERM/SIGINT handlers that make the next poll throw RankFailure.
  static void install_signal_handlers();
  /// The largest message tag MPI allows.
  int64_t tag_limit() const { return tag_ub_; }

 private:
  struct Slot {
    MPI_Request request = MPI_REQUEST_NULL;
    std::vector<char> data;
    bool busy = false;
  };
  RequestId acquire(int64_t bytes);
  /// Polls `r` until done, checking signals and the stall timeout.
  void wait(MPI_Request& r, const char* what);

  int rank_, size_;
  double stall_timeout_s_;
  int64_t tag_ub_ = 32767;
  std::vector<Slot> slots_;
  std::vector<RequestId> free_;
  std::vector<char> send_data_;
  HostCompute compute_;
  std::function<void(const sim::OpWork&)> device_compute_;
};

}  // namespace bubblesim::hw
