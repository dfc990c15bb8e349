#include "hw/host/mpi_backend.hpp"

#include <chrono>
#include <csignal>
#include <string>

#include "sim/core/error.hpp"

namespace bubblesim::hw {
namespace {

volatile std::sig_atomic_t g_signal = 0;

void on_signal(int sig) { g_signal = sig; }

}  // namespace

void mpi_check(int rc, const char* call, const char* file, int line) {
  if (rc == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING] = "";
  int len = 0;
  MPI_Error_string(rc, text, &len);
  throw RankFailure(std::string(file) + ":" + std::to_string(line) + ": " + call + " failed: " + text);
}

MpiSession::MpiSession(int& argc, char**& argv) {
  BUBBLESIM_MPI(MPI_Init(&argc, &argv));
  BUBBLESIM_MPI(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
  BUBBLESIM_MPI(MPI_Comm_rank(MPI_COMM_WORLD, &rank_));
  BUBBLESIM_MPI(MPI_Comm_size(MPI_COMM_WORLD, &size_));
}

MpiSession::~MpiSession() { MPI_Finalize(); }

void MpiSession::abort(int code) {
  MPI_Abort(MPI_COMM_WORLD, code);
  std::_Exit(code);  // MPI_Abort does not return; this keeps the contract if it does
}

std::string MpiSession::library_version() {
  char text[MPI_MAX_LIBRARY_VERSION_STRING] = "";
  int len = 0;
  MPI_Get_library_version(text, &len);
  std::string s(text, static_cast<size_t>(len));
  const auto nl = s.find_first_of("\n,");
  return nl == std::string::npos ? s : s.substr(0, nl);
}

MpiBackend::MpiBackend(const MpiSession& session, double stall_timeout_s)
    : rank_(session.rank()), size_(session.size()), stall_timeout_s_(stall_timeout_s) {
  int* ub = nullptr;
  int found = 0;
  BUBBLESIM_MPI(MPI_Comm_get_attr(MPI_COMM_WORLD, MPI_TAG_UB, &ub, &found));
  if (found != 0 && ub != nullptr) tag_ub_ = *ub;
}

void MpiBackend::install_signal_handlers() {
  std::signal(SIGTERM, on_signal);
  std::signal(SIGINT, on_signal);
}

double MpiBackend::now() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

void MpiBackend::check_alive() {
  if (g_signal != 0) {
    throw RankFailure("rank " + std::to_string(rank_) + " stopped by signal " + std::to_string(g_signal) +
                      " (mpirun stops every rank when one dies)");
  }
}

void MpiBackend::wait(MPI_Request& r, const char* what) {
  const double start = now();
  for (;;) {
    int done = 0;
    BUBBLESIM_MPI(MPI_Test(&r, &done, MPI_STATUS_IGNORE));
    if (done != 0) return;
    check_alive();
    if (now() - start > stall_timeout_s_) {
      throw RankFailure("rank " + std::to_string(rank_) + ": " + what + " made no progress for " +
                        std::to_string(static_cast<int>(stall_timeout_s_)) + " s (a peer is stuck or dead)");
    }
  }
}

void MpiBackend::barrier() {
  MPI_Request r = MPI_REQUEST_NULL;
  BUBBLESIM_MPI(MPI_Ibarrier(MPI_COMM_WORLD, &r));
  wait(r, "barrier");
}

RequestId MpiBackend::acquire(int64_t bytes) {
  RequestId id;
  if (!free_.empty()) {
    id = free_.back();
    free_.pop_back();
  } else {
    id = static_cast<RequestId>(slots_.size());
    slots_.emplace_back();
  }
  Slot& s = slots_[id];
  s.busy = true;
  if (static_cast<int64_t>(s.data.size()) < bytes) s.data.resize(static_cast<size_t>(bytes));
  return id;
}

namespace {
int count_of(int64_t bytes) {
  if (bytes > INT32_MAX) throw InputError("a message of " + std::to_string(bytes) + " B exceeds MPI's 2 GiB count limit");
  return static_cast<int>(bytes);
}
int tag_of(int64_t tag, int64_t ub) {
  if (tag < 0 || tag > ub) {
    throw InputError("message tag " + std::to_string(tag) + " exceeds MPI's limit " + std::to_string(ub) +
                     ": the Program has too many groups for the host backend");
  }
  return static_cast<int>(tag);
}
}  // namespace

RequestId MpiBackend::isend(int peer, int64_t bytes, int64_t tag, bool synchronous) {
  if (static_cast<int64_t>(send_data_.size()) < bytes) send_data_.resize(static_cast<size_t>(bytes), 1);
  const RequestId id = acquire(0);
  auto call = synchronous ? MPI_Issend : MPI_Isend;
  BUBBLESIM_MPI(call(send_data_.data(), count_of(bytes), MPI_BYTE, peer, tag_of(tag, tag_ub_), MPI_COMM_WORLD,
                     &slots_[id].request));
  return id;
}

RequestId MpiBackend::irecv(int peer, int64_t bytes, int64_t tag) {
  const RequestId id = acquire(bytes);
  BUBBLESIM_MPI(MPI_Irecv(slots_[id].data.data(), count_of(bytes), MPI_BYTE, peer, tag_of(tag, tag_ub_),
                          MPI_COMM_WORLD, &slots_[id].request));
  return id;
}

bool MpiBackend::test(RequestId r) {
  Slot& s = slots_[r];
  BUBBLESIM_ASSERT(s.busy, "test() of a request that is not in flight");
  int done = 0;
  BUBBLESIM_MPI(MPI_Test(&s.request, &done, MPI_STATUS_IGNORE));
  if (done == 0) return false;
  s.busy = false;
  free_.push_back(r);
  return true;
}

std::vector<double> MpiBackend::gather(std::span<const double> values, std::vector<int>& counts) {
  int mine = static_cast<int>(values.size());
  counts.assign(static_cast<size_t>(size_), 0);
  MPI_Request r = MPI_REQUEST_NULL;
  BUBBLESIM_MPI(MPI_Igather(&mine, 1, MPI_INT, counts.data(), 1, MPI_INT, 0, MPI_COMM_WORLD, &r));
  wait(r, "gathering record counts");
  std::vector<int> displs(static_cast<size_t>(size_), 0);
  int total = 0;
  for (int i = 0; i < size_; ++i) {
    displs[static_cast<size_t>(i)] = total;
    total += counts[static_cast<size_t>(i)];
  }
  std::vector<double> all(rank_ == 0 ? static_cast<size_t>(total) : 0);
  BUBBLESIM_MPI(MPI_Igatherv(values.data(), mine, MPI_DOUBLE, all.data(), counts.data(), displs.data(), MPI_DOUBLE, 0,
                             MPI_COMM_WORLD, &r));
  wait(r, "gathering records");
  return all;
}

int64_t MpiBackend::sum(int64_t value) {
  int64_t total = 0;
  MPI_Request r = MPI_REQUEST_NULL;
  BUBBLESIM_MPI(MPI_Iallreduce(&value, &total, 1, MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD, &r));
  wait(r, "sum over ranks");
  return total;
}

void MpiBackend::broadcast_bytes(std::span<char> data) {
  MPI_Request r = MPI_REQUEST_NULL;
  BUBBLESIM_MPI(MPI_Ibcast(data.data(), static_cast<int>(data.size()), MPI_BYTE, 0, MPI_COMM_WORLD, &r));
  wait(r, "broadcast");
}

int64_t MpiBackend::broadcast(int64_t value) {
  MPI_Request r = MPI_REQUEST_NULL;
  BUBBLESIM_MPI(MPI_Ibcast(&value, 1, MPI_INT64_T, 0, MPI_COMM_WORLD, &r));
  wait(r, "broadcast");
  return value;
}

}  // namespace bubblesim::hw
