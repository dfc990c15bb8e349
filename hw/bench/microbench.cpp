#include "hw/bench/microbench.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string_view>

#include "sim/core/error.hpp"
#include "sim/calibrate/calibration.hpp"
#include "sim/model/collectives.hpp"

namespace bubblesim::hw {
namespace {

constexpr size_t kEvictBytes = size_t{32} << 20;

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n == 0 ? 0 : (n % 2 == 1 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]));
}

/// Overwrites a buffer larger than a core's private caches, so the op's inputs come from the
/// shared cache or memory as they do inside a training step, where other ops ran in between.
void evict_caches() {
  static std::vector<char> scratch(kEvictBytes);
  static char round = 0;
  ++round;
  for (size_t i = 0; i < scratch.size(); i += 64) scratch[i] = round;
}

/// Min / median / max across ranks of each rank's median time (rank 0 gets them).
sim::BenchSample across_ranks(MpiBackend& b, const std::vector<double>& times) {
  const double mine = median(times);
  std::vector<int> counts;
  const std::vector<double> all = b.gather(std::span<const double>(&mine, 1), counts);
  sim::BenchSample s;
  s.iterations = static_cast<int64_t>(times.size());
  s.ranks = b.ranks();
  if (!all.empty()) {
    s.min_s = *std::min_element(all.begin(), all.end());
    s.max_s = *std::max_element(all.begin(), all.end());
    s.median_s = median(all);
  }
  return s;
}

/// One timed call of `body`, every rank starting together after a barrier.
double time_once(MpiBackend& b, const std::function<void()>& body) {
  b.barrier();
  const double t = b.now();
  body();
  return b.now() - t;
}

/// Times `body` per iteration after warm-up.
sim::BenchSample measure(MpiBackend& b, const BenchOptions& opt, const std::function<void()>& body) {
  for (int i = 0; i < opt.warmup; ++i) time_once(b, body);
  std::vector<double> times;
  for (int i = 0; i < opt.iterations; ++i) times.push_back(time_once(b, body));
  return across_ranks(b, times);
}

/// Compute shapes are timed in rounds, one iteration of every shape per round, so the machine's
/// slow phases (other tenants, frequency changes) fall on all shapes alike instead of on a few.
void measure_compute(MpiBackend& b, const BenchOptions& opt, const std::function<void(const sim::BenchSample&)>& emit) {
  const std::vector<sim::OpWork>& shapes = opt.compute_shapes;
  std::vector<std::vector<double>> times(shapes.size());
  for (int round = -opt.warmup; round < opt.iterations; ++round) {
    for (size_t i = 0; i < shapes.size(); ++i) {
      if (opt.time_compute) {
        b.barrier();
        const double t = opt.time_compute(shapes[i]);
        if (round >= 0) times[i].push_back(t);
        continue;
      }
      if (std::string_view(shapes[i].op_class) == "memory") {
        // A memory-bound op (norm, activation, merge) reads the tensor the op before it just
        // wrote: its input is as warm as one untimed pass leaves it, not evicted.
        b.compute(shapes[i]);
      } else if (opt.cold) {
        evict_caches();
      }
      const double t = time_once(b, [&] { b.compute(shapes[i]); });
      if (round >= 0) times[i].push_back(t);
    }
  }
  for (size_t i = 0; i < shapes.size(); ++i) {
    sim::BenchSample s = across_ranks(b, times[i]);
    s.op_class = shapes[i].op_class;
    s.shape = sim::shape_key(shapes[i]);
    s.bytes = static_cast<int64_t>(shapes[i].bytes);
    if (b.rank() == 0) emit(s);
  }
}

void wait_all(MpiBackend& b, std::vector<RequestId>& reqs) {
  while (!reqs.empty()) {
    std::erase_if(reqs, [&](RequestId r) { return b.test(r); });
    if (!reqs.empty()) b.check_alive();
  }
}

}  // namespace

bool is_compute_bench(const std::string& what) { return what == "gemm" || what == "attention" || what == "memory"; }
bool is_comm_bench(const std::string& what) {
  return what == "p2p" || what == "alltoall" || what == "allreduce" || what == "allgather" || what == "reducescatter";
}

namespace {

/// nccl-tests' busbw factor of a communication benchmark over n ranks.
double comm_factor(const std::string& what, int n) {
  if (what == "alltoall") return sim::busbw_factor(sim::CollectiveOp::AllToAll, n);
  if (what == "allreduce") return sim::busbw_factor(sim::CollectiveOp::AllReduce, n);
  if (what == "allgather") return sim::busbw_factor(sim::CollectiveOp::AllGather, n);
  if (what == "reducescatter") return sim::busbw_factor(sim::CollectiveOp::ReduceScatter, n);
  return 1;  // p2p, sendrecv
}

/// A device's communication (NCCL) timed as nccl-tests times it: warm-up calls, then, every rank
/// starting together, `iterations` calls back to back; the mean per call, min / median / max of
/// it across ranks.
void measure_device_comm(const std::string& what, const BenchOptions& opt, MpiBackend& b,
                         const std::function<void(const sim::BenchSample&)>& emit) {
  for (int64_t size : opt.sizes) {
    if (opt.check_comm && size <= BenchOptions::kCheckedBytes) {
      const int64_t wrong = opt.check_comm(what, size);
      if (b.sum(wrong) > 0) {
        throw RankFailure("bench " + what + " of " + std::to_string(size) + " bytes: the device's result is wrong (" +
                          std::to_string(wrong) + " wrong elements on rank " +
                          std::to_string(b.rank()) + "); nothing is timed on a wrong result");
      }
    }
    if (opt.warmup > 0) opt.run_comm(what, size, opt.warmup);
    b.barrier();
    const double t0 = b.now();
    const int64_t moved = opt.run_comm(what, size, opt.iterations);
    const double per_call = (b.now() - t0) / opt.iterations;
    sim::BenchSample s = across_ranks(b, {per_call});
    s.iterations = opt.iterations;
    s.op_class = what;
    s.shape = std::to_string(moved);
    s.bytes = moved;
    s.algbw = s.median_s > 0 ? static_cast<double>(moved) / s.median_s : 0;
    s.busbw = s.algbw * comm_factor(what, b.ranks());
    if (b.rank() == 0) emit(s);
  }
}

}  // namespace

std::vector<sim::OpWork> default_shapes(const std::string& op_class, bool gpu) {
  // The host grid is small enough for a CPU; a GPU's starts where its kernels fill the device
  // (transformer GEMMs of a few thousand rows, attention blocks of 1K to 8K, bf16 elements).
  const std::vector<int64_t> dims = gpu ? std::vector<int64_t>{1024, 4096, 8192} : std::vector<int64_t>{256, 1024, 2048};
  const std::vector<int64_t> inner = gpu ? std::vector<int64_t>{1024, 4096, 8192} : std::vector<int64_t>{256, 1024};
  const std::vector<int64_t> lens = gpu ? std::vector<int64_t>{1024, 2048, 4096, 8192} : std::vector<int64_t>{256, 512, 1024, 2048};
  const int64_t heads = gpu ? 8 : 4, head_dim = gpu ? 128 : 64, element = gpu ? 2 : 4;
  std::vector<sim::OpWork> out;
  if (op_class == "gemm") {
    for (int64_t m : dims) {
      for (int64_t n : gpu ? dims : std::vector<int64_t>{256, 1024, 4096}) {
        for (int64_t k : inner) {
          out.push_back({"gemm", {m, n, k, 1, 0}, 0, 2.0 * m * n * k, element * 1.0 * (m * k + k * n + m * n)});
        }
      }
    }
  } else if (op_class == "attention") {
    for (const char* cls : {"attention", "attention_grad"}) {
      for (int64_t len : lens) {
        for (double f : {1.0, 0.5}) {
          const double frac = f == 1.0 ? 1.0 : (static_cast<double>(len) + 1) / (2.0 * static_cast<double>(len));
          const double flops = 4.0 * heads * head_dim * static_cast<double>(len * len) * frac *
                               (std::string(cls) == "attention_grad" ? 2.5 : 1.0);
          out.push_back({cls, {1, len, len, heads, head_dim}, frac, flops, 0});
        }
      }
    }
  } else if (op_class == "memory") {
    for (int64_t bytes = int64_t{1} << 16; bytes <= (int64_t{1} << (gpu ? 30 : 28)); bytes <<= 2) {
      out.push_back({"memory", {}, 0, 0, static_cast<double>(bytes)});
    }
  }
  return out;
}

void run_bench(const std::string& what, const BenchOptions& opt, MpiBackend& b,
               const std::function<void(const sim::BenchSample&)>& emit) {
  if (is_compute_bench(what)) {
    measure_compute(b, opt, emit);
    return;
  }
  if (!is_comm_bench(what)) {
    throw InputError("bench: unknown benchmark \"" + what +
                     "\" (valid: gemm, attention, memory, p2p, alltoall, allreduce, allgather, reducescatter)");
  }
  if (opt.run_comm) {
    measure_device_comm(what, opt, b, emit);
    return;
  }
  const int n = b.ranks();
  if (n < 2) throw InputError("bench " + what + " needs at least 2 ranks (mpirun -np 2 ...)");
  for (int64_t size : opt.sizes) {
    sim::BenchSample s;
    double factor = 1;
    if (what == "p2p") {
      // Ping-pong between ranks r and r ^ 1: half the round trip is one message's time.
      const int peer = b.rank() ^ 1;
      const bool active = peer < n;
      const bool first = (b.rank() & 1) == 0;
      s = measure(b, opt, [&] {
        if (!active) return;
        for (int leg = 0; leg < 2; ++leg) {
          std::vector<RequestId> r{(leg == 0) == first ? b.isend(peer, size, 1, false) : b.irecv(peer, size, 1)};
          wait_all(b, r);
        }
      });
      s.min_s /= 2;
      s.median_s /= 2;
      s.max_s /= 2;
      s.ranks = 2;
    } else if (what == "alltoall") {
      // nccl-tests' size: each rank's whole send buffer; every peer gets size / n.
      const int64_t part = size / n;
      s = measure(b, opt, [&] {
        std::vector<RequestId> r;
        for (int k = 1; k < n; ++k) {
          r.push_back(b.irecv((b.rank() + n - k) % n, part, 2));
          r.push_back(b.isend((b.rank() + k) % n, part, 2, false));
        }
        wait_all(b, r);
      });
      factor = comm_factor(what, n);
    } else {
      // Ring algorithms in steps of size / n: all-reduce = reduce-scatter (n - 1 steps, each
      // reducing what arrived) then all-gather (n - 1 steps); size is nccl-tests' S of each.
      const int64_t part = size / n;
      const int steps = what == "allreduce" ? 2 * (n - 1) : n - 1;
      const bool reducing = what != "allgather";
      s = measure(b, opt, [&] {
        for (int step = 0; step < steps; ++step) {
          std::vector<RequestId> r{b.irecv((b.rank() + n - 1) % n, part, 3), b.isend((b.rank() + 1) % n, part, 3, false)};
          wait_all(b, r);
          if (reducing && step < n - 1) b.reduce(part);
        }
      });
      factor = comm_factor(what, n);
    }
    s.op_class = what;
    s.shape = std::to_string(size);
    s.bytes = size;
    s.algbw = s.median_s > 0 ? static_cast<double>(size) / s.median_s : 0;
    s.busbw = s.algbw * factor;
    if (b.rank() == 0) emit(s);
  }
}

}  // namespace bubblesim::hw
