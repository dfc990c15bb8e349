// bubblesim-hw: runs a scenario's Program on real devices (the host backend: one MPI process per
// device, CPU kernels, MPI messages; the GPU backend: one process per GPU, CUDA kernels, NCCL) and
// microbenchmarks, storing every measurement in SQLite.
//   mpirun -np 2 bubblesim-hw run SCENARIO [--backend host|cuda] [--db FILE] [--set k=v]...
//                               [--iterations N] [--warmup N] [--stall-timeout S]
//   bubblesim-hw run SCENARIO --backend cuda [...]   (one process driving every GPU of the node)
//   mpirun -np 2 bubblesim-hw bench gemm|attention|memory|p2p|alltoall|allreduce|allgather|reducescatter|all
//                               [--db FILE] [--iterations N] [--warmup N] [--sizes 1K:64M] [--shapes-from SCENARIO]
//   mpirun -np GPUS bubblesim-hw bench ... --backend cuda [...]   (one GPU per rank; communication over NCCL)
//   bubblesim-hw replay SCENARIO --backend cuda [--device D] [--db FILE] [--set k=v]... [--iterations N]
//   mpirun -np 2 bubblesim-hw check attention [--layout contiguous|zigzag|striped|ulysses|all] [--seq N] [--backend cuda]
//   bubblesim-hw plan SCENARIO [--set k=v]... [--format text|json]   (every GPU's NCCL calls for
//                               run --backend cuda, checked; no GPU)
// Exit status: 0 ok, 2 bad input, 3 a rank failed, 5 a correctness check failed.
// Not the simulator: `bubblesim` predicts; this measures.
#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "build_info.hpp"
#include "hw/bench/microbench.hpp"
#include "hw/check/attention_check.hpp"
#ifdef BUBBLESIM_HW_CUDA
#include "hw/cuda/gpu_compute.hpp"
#ifdef BUBBLESIM_HW_NCCL
#include "hw/cuda/attention_check_gpu.hpp"
#include "hw/cuda/gpu_runner.hpp"
#include "hw/cuda/nccl_comm.hpp"
#include "hw/cuda/node_runner.hpp"
#endif
#include "hw/cuda/replay.hpp"
#endif
#include "hw/host/kernels.hpp"
#include "hw/host/mpi_backend.hpp"
#include "hw/runner/comm_plan.hpp"
#include "hw/runner/rank_map.hpp"
#include "hw/runner/runner.hpp"
#include "sim/calibrate/calibration.hpp"
#include "sim/cli/commands.hpp"
#include "sim/cli/collective.hpp"
#include "sim/core/error.hpp"
#include "sim/exec/executor.hpp"
#include "sim/ir/validate.hpp"
#include "sim/metrics/metrics.hpp"
#include "sim/model/network.hpp"
#include "sim/scenario/cluster_job.hpp"
#include "sim/store/store.hpp"

namespace bubblesim::hw {
namespace {

constexpr int kExitInput = 2;
constexpr int kExitFailure = 3;
constexpr int kExitMismatch = 5;

struct Options {
  std::string command, scenario, backend = "host", db = "bubblesim.db", sizes = "1K:16M", shapes_from;
  std::string layout = "all";
  std::string format = "text";  // plan: text or json
  int seq = 512;
  int device = 0;  // replay: the Program device
  std::vector<std::string> overrides, benches;
  int iterations = -1, warmup = -1;
  double stall_timeout = 120;
  std::string command_line;
};

int to_int(const std::string& v, const std::string& opt) {
  const auto n = parse_integer(v);
  if (!n || *n < 0 || *n > 1000000) throw InputError(opt + ": \"" + v + "\" is not a count");
  return static_cast<int>(*n);
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 0; i < argc; ++i) o.command_line += (i ? " " : "") + std::string(argv[i]);
  if (argc < 2) {
    throw InputError("usage: bubblesim-hw run SCENARIO | bench WHAT... | check attention | replay SCENARIO | "
                     "plan SCENARIO [options]");
  }
  o.command = argv[1];
  if (o.command != "run" && o.command != "bench" && o.command != "check" && o.command != "replay" &&
      o.command != "plan") {
    throw InputError("unknown command \"" + o.command + "\" (valid: run, bench, check, replay, plan)");
  }
  for (int i = 2; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw InputError(a + " needs a value");
      return argv[++i];
    };
    if (a == "--db") o.db = value();
    else if (a == "--set") o.overrides.push_back(value());
    else if (a == "--backend") o.backend = value();
    else if (a == "--iterations") o.iterations = to_int(value(), a);
    else if (a == "--warmup") o.warmup = to_int(value(), a);
    else if (a == "--sizes") o.sizes = value();
    else if (a == "--shapes-from") o.shapes_from = value();
    else if (a == "--stall-timeout") o.stall_timeout = to_int(value(), a);
    else if (a == "--layout") o.layout = value();
    else if (a == "--seq") o.seq = to_int(value(), a);
    else if (a == "--device") o.device = to_int(value(), a);
    else if (a == "--format" && o.command == "plan") o.format = value();
    else if (a.rfind("--", 0) == 0) throw InputError("unknown option " + a);
    else if ((o.command == "run" || o.command == "replay" || o.command == "plan") && o.scenario.empty()) o.scenario = a;
    else if (o.command == "bench") o.benches.push_back(a);
    else if (o.command == "check" && a == "attention" && o.scenario.empty()) o.scenario = a;
    else throw InputError("unexpected argument \"" + a + "\"");
  }
  if (o.backend == "cuda") {
#ifndef BUBBLESIM_HW_CUDA
    throw InputError("--backend cuda: this bubblesim-hw was built without CUDA (nvcc was not found when it was configured)");
#endif
#ifndef BUBBLESIM_HW_NCCL
    if (o.command == "check") {
      throw InputError("check --backend cuda: this bubblesim-hw was built without NCCL (not found at configure "
                       "time), which the correctness mode across GPUs needs");
    }
#endif
  } else if (o.backend != "host") {
    throw InputError("--backend: unknown backend \"" + o.backend + "\" (valid: host, cuda)");
  }
  if (o.command == "run" && o.scenario.empty()) throw InputError("run: which scenario? (bubblesim-hw run SCENARIO)");
  if (o.command == "plan" && o.scenario.empty()) throw InputError("plan: which scenario? (bubblesim-hw plan SCENARIO)");
  if (o.format != "text" && o.format != "json") {
    throw InputError("--format: unknown format \"" + o.format + "\" (valid: text, json)");
  }
  if (o.command == "replay") {
    if (o.scenario.empty()) throw InputError("replay: which scenario? (bubblesim-hw replay SCENARIO --backend cuda)");
    if (o.backend != "cuda") {
      throw InputError("replay: one device's ops on one GPU needs --backend cuda (bubblesim-hw run runs the whole "
                       "Program on the host backend)");
    }
  }
  if (o.command == "check" && o.scenario != "attention") throw InputError("check: what? (bubblesim-hw check attention)");
  if (o.command == "bench" && o.benches.empty()) {
    throw InputError("bench: which benchmark? (gemm, attention, memory, p2p, alltoall, allreduce, allgather, "
                     "reducescatter, all)");
  }
  return o;
}

std::string read_file(const std::string& path) {
  std::ifstream f(path);
  std::ostringstream s;
  s << f.rdbuf();
  return s.str();
}

std::string cpu_model() {
  std::ifstream f("/proc/cpuinfo");
  for (std::string line; std::getline(f, line);) {
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  }
  return "unknown";
}

std::string hostname() {
  char host[256] = "";
  gethostname(host, sizeof host - 1);
  return host;
}

/// This rank's index among the ranks of its node (mpirun's local rank), for picking its GPU.
[[maybe_unused]] int local_rank(const MpiBackend& b) {
  for (const char* name : {"OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID"}) {
    if (const char* v = std::getenv(name)) {
      if (const auto n = parse_integer(v); n && *n >= 0) return static_cast<int>(*n);
    }
  }
  return b.rank();
}

#ifdef BUBBLESIM_HW_CUDA
/// The CUDA devices this process can use; InputError saying why when there are none.
int usable_gpus() {
  std::string why;
  const int n = cuda::device_count(&why);
  if (n == 0) throw InputError("--backend cuda: no usable CUDA GPU on " + hostname() + " (" + why + ")");
  return n;
}
#endif

/// Runs `check` (an input check that may fail on some ranks only, e.g. a node without a GPU)
/// on every rank, and then all stop alike if any failed: rank 0 says why when it failed itself,
/// otherwise each failing rank does; nobody waits for a rank that has already left.
void check_on_every_rank(MpiBackend& b, const std::function<void()>& check) {
  std::string mine;
  try {
    check();
  } catch (const InputError& e) {
    mine = e.what();
  }
  const int64_t failed = b.sum(mine.empty() ? 0 : 1);
  if (failed == 0) return;
  const bool rank0_failed = b.broadcast(mine.empty() ? 0 : 1) != 0;
  if (!rank0_failed && !mine.empty()) std::cerr << "bubblesim-hw: rank " << b.rank() << ": " << mine << "\n";
  throw InputError(rank0_failed && b.rank() == 0 ? mine
                                                 : std::to_string(failed) + " of " + std::to_string(b.ranks()) +
                                                       " ranks could not start (their messages say why)");
}

#ifdef BUBBLESIM_HW_NCCL
/// InputError unless this rank has a GPU of its own on its node (by local rank).
void require_own_gpu(const MpiBackend& b) {
  const int gpus = usable_gpus();
  if (local_rank(b) >= gpus) {
    throw InputError("--backend cuda: NCCL needs a GPU of its own per rank, but " + hostname() + " has " +
                     std::to_string(gpus) + " and this is its rank " + std::to_string(local_rank(b)) +
                     " (start at most that many ranks per node)");
  }
}

/// Every rank joins one NCCL communicator on GPU `device` (rank 0's id broadcast over MPI), with
/// buffers of `bytes`; the ranks agree their buffers are there before NCCL's bootstrap, which
/// would wait forever for a rank that failed.
std::unique_ptr<cuda::NcclComm> join_nccl(MpiBackend& b, int device, int64_t bytes) {
  check_on_every_rank(b, [&] { require_own_gpu(b); });
  cuda::NcclId id{};
  if (b.rank() == 0) id = cuda::nccl_unique_id();
  b.broadcast_bytes(std::span<char>(id.data(), id.size()));
  const auto agree = [&b](bool ok) { return b.sum(ok ? 0 : 1) == 0; };
  return std::make_unique<cuda::NcclComm>(id, b.rank(), b.ranks(), device, bytes, agree);
}
#endif

/// Every rank's pid and a hash of its host, gathered on rank 0 (to name a rank that died).
struct Peers {
  std::vector<int64_t> pid;
  std::vector<bool> same_host;  // as rank 0
};

Peers gather_peers(MpiBackend& b) {
  const double mine[2] = {static_cast<double>(getpid()),
                          static_cast<double>(std::hash<std::string>{}(hostname()) % (int64_t{1} << 52))};
  std::vector<int> counts;
  const std::vector<double> all = b.gather(mine, counts);
  Peers p;
  for (size_t r = 0; r + 1 < all.size(); r += 2) {
    p.pid.push_back(static_cast<int64_t>(all[r]));
    p.same_host.push_back(all[r + 1] == all[1]);
  }
  return p;
}

/// The ranks on this host whose process is gone (or a zombie), for the failure message.
std::string dead_ranks(const Peers& p) {
  std::string out;
  for (size_t r = 0; r < p.pid.size(); ++r) {
    if (!p.same_host[r]) continue;
    bool dead = kill(static_cast<pid_t>(p.pid[r]), 0) != 0 && errno == ESRCH;
    std::ifstream stat("/proc/" + std::to_string(p.pid[r]) + "/stat");
    std::string pid, comm, state;
    if (stat >> pid >> comm >> state && state == "Z") dead = true;
    if (dead) out += (out.empty() ? "" : ", ") + std::string("rank ") + std::to_string(r) + " (pid " + std::to_string(p.pid[r]) + ")";
  }
  return out;
}

nlohmann::json environment(const MpiBackend& b) {
  return {{"bubblesim", sim::kVersion},   {"git_revision", kGitRevision},       {"host", hostname()},
          {"cpu", cpu_model()},           {"mpi", MpiSession::library_version()}, {"ranks", b.ranks()},
          {"backend", "host"},            {"compiler", __VERSION__},            {"blas", "OpenBLAS, 1 thread per rank"}};
}

/// The fault a test injects: BUBBLESIM_HW_FAULT="kill:RANK:ITERATION" kills that rank (SIGKILL)
/// as the iteration starts; "throw:RANK:ITERATION" makes it fail with an error.
struct Fault {
  std::string kind;
  int rank = -1, iteration = -1;
};

Fault injected_fault() {
  Fault f;
  const char* env = std::getenv("BUBBLESIM_HW_FAULT");
  if (env == nullptr) return f;
  const std::string s = env;
  const auto a = s.find(':'), c = s.find(':', a + 1);
  if (a == std::string::npos || c == std::string::npos) throw InputError("BUBBLESIM_HW_FAULT: expected kind:rank:iteration");
  f.kind = s.substr(0, a);
  f.rank = to_int(s.substr(a + 1, c - a - 1), "BUBBLESIM_HW_FAULT");
  f.iteration = to_int(s.substr(c + 1), "BUBBLESIM_HW_FAULT");
  return f;
}

/// The failure path every rank shares: the run is marked failed (unless another rank already
/// did), nothing stored is touched, and the message names the rank.
struct RunContext {
  std::string db;
  int64_t run = 0;
  Peers peers;
};

/// Rank 0 opens the database and records the run as incomplete; every rank learns the run id, or
/// that rank 0 could not (then all stop alike instead of waiting for each other).
std::unique_ptr<sim::Store> open_run(const Options& o, const sim::RunInfo& info, MpiBackend& b, RunContext& ctx) {
  std::unique_ptr<sim::Store> store;
  std::string error;
  if (b.rank() == 0) {
    try {
      store = std::make_unique<sim::Store>(o.db);
      ctx.run = store->begin_run(info);
    } catch (const InputError& e) {
      error = e.what();
      ctx.run = 0;
    }
  }
  ctx.run = b.broadcast(ctx.run);
  if (!error.empty()) throw InputError(error);
  if (ctx.run == 0) throw InputError("rank 0 could not record the run in " + o.db + " (its message says why)");
  ctx.peers = gather_peers(b);
  return store;
}

sim::Scenario load_cluster_scenario(const Options& o) {
  sim::Scenario sc = sim::load_scenario(o.scenario, o.overrides);
  if (sc.pipeline_only) {
    throw InputError(o.scenario + ": a pipeline_only scenario gives op times, not work; bubblesim-hw runs "
                     "cluster scenarios (cluster, model, training, parallel)");
  }
  return sc;
}

sim::TrainingPlan build_program(const sim::ClusterJob& job, const sim::Topology& topo) {
  const sim::RooflineCompute compute(*job.cluster.gpu, job.training.attention_kernel, job.cluster.elementwise_efficiency);
  sim::TrainingPlan plan = sim::build_training(job, topo, compute, true);
  sim::require_valid(plan.program);
  return plan;
}

/// The scenario's training Program, as run and plan build it (members in construction order:
/// the topology refers to the job's cluster). `check` sees the job before the Program is built.
struct Planned {
  explicit Planned(const Options& o, const std::function<void(const sim::ClusterJob&)>& check = {})
      : scenario(load_cluster_scenario(o)),
        job(checked(sim::plan_cluster(scenario), check)),
        topo(job.cluster),
        plan(build_program(job, topo)) {}
  static sim::ClusterJob checked(sim::ClusterJob job, const std::function<void(const sim::ClusterJob&)>& check) {
    if (check) check(job);
    return job;
  }
  sim::Scenario scenario;
  sim::ClusterJob job;
  sim::Topology topo;
  sim::TrainingPlan plan;
};

/// The order NCCL calls follow: the simulator's trace of the Program.
sim::Trace nccl_order(const Planned& s) {
  sim::FlowNetwork network(s.topo);
  return sim::simulate(s.plan.program, sim::GivenTimes{}, &network);
}

/// bubblesim-hw plan: every GPU's NCCL plan for the scenario, checked under NCCL's matching and
/// blocking rules, on this machine (no GPU, one process): what a GPU run will call, before any
/// GPU time is spent.
int plan_command(const Options& o, const MpiBackend& b) {
  if (b.rank() != 0) return 0;
  const auto s = std::make_unique<Planned>(o);
  const int32_t world = s->job.cluster.world();
  const CommPlan plan = plan_communication(s->job, s->plan, nccl_order(*s));
  const std::string why = verify(plan, s->plan.program);
  if (o.format == "json") {
    nlohmann::json comms = nlohmann::json::array(), ranks = nlohmann::json::array();
    for (const Communicator& c : plan.comms) {
      comms.push_back({{"stream", c.channel}, {"gpus", c.gpus}, {"split", c.round}});
    }
    for (size_t k = 0; k < plan.ranks.size(); ++k) {
      const RankPlan& r = plan.ranks[k];
      std::map<std::string, int> calls;
      for (const Step& st : r.steps) {
        if (st.call != CommCall::None) ++calls[to_string(st.call)];
      }
      ranks.push_back({{"gpu", r.gpu},
                       {"device", r.device},
                       {"steps", r.steps.size()},
                       {"calls", calls},
                       {"buffer_bytes", buffer_bytes(plan, k)}});
    }
    std::cout << nlohmann::json{{"scenario", s->scenario.name}, {"gpus", world},    {"splits", plan.rounds},
                                {"communicators", comms},      {"ranks", ranks},    {"ok", why.empty()},
                                {"check", why.empty() ? "every GPU's calls meet their peers' with equal sizes and run "
                                                        "to the end under NCCL's rules"
                                                      : why}}
                     .dump(2)
              << "\n";
    return why.empty() ? 0 : kExitFailure;
  }
  std::map<std::pair<std::string, size_t>, int> sets;  // (channel, GPUs) -> communicators
  for (const Communicator& c : plan.comms) ++sets[{c.channel, c.gpus.size()}];
  std::printf("%s: %d GPUs, %zu NCCL communicators made in %d splits of the world:\n", s->scenario.name.c_str(), world,
              plan.comms.size(), plan.rounds);
  for (const auto& [key, n] : sets) {
    std::printf("  stream %-10s %3d x %3zu GPUs\n", key.first.c_str(), n, key.second);
  }
  std::printf("%5s %7s %7s %10s %10s %14s %10s %10s %12s\n", "GPU", "device", "steps", "send/recv", "all-reduce",
              "reduce-scatter", "all-gather", "all-to-all", "buffer MiB");
  for (size_t k = 0; k < plan.ranks.size(); ++k) {
    const RankPlan& r = plan.ranks[k];
    std::map<CommCall, int> calls;
    for (const Step& st : r.steps) ++calls[st.call];
    std::printf("%5d %7u %7zu %10d %10d %14d %10d %10d %12.1f\n", r.gpu, r.device, r.steps.size(),
                calls[CommCall::SendRecv], calls[CommCall::AllReduce], calls[CommCall::ReduceScatter],
                calls[CommCall::AllGather], calls[CommCall::AllToAll], static_cast<double>(buffer_bytes(plan, k)) / (1 << 20));
  }
  if (!why.empty()) {
    std::printf("check: FAILED: %s\n", why.c_str());
    return kExitFailure;
  }
  std::printf("check: every GPU's calls meet their peers' with equal sizes and run to the end under NCCL's rules\n");
  return 0;
}

#ifdef BUBBLESIM_HW_NCCL
void report_plan(const CommPlan& plan, int gpus) {
  std::cerr << "bubblesim-hw: NCCL plan checked: " << plan.comms.size() << " communicators; the calls of all " << gpus
            << " GPUs meet their peers' and complete under NCCL's rules\n";
}

/// This rank's NCCL plan (hw/runner/comm_plan), ordered by the simulator's trace of the Program.
/// Every rank must have built the same order (same build, scenario and overrides), and rank 0
/// runs every GPU's plan under NCCL's rules first: a mismatch or a hang found here stops all
/// ranks with the reason, before any GPU waits.
CommPlan plan_nccl(const Planned& s, MpiBackend& b) {
  const sim::Trace order = nccl_order(s);
  const int32_t me[] = {b.rank()};
  CommPlan mine = plan_communication(s.job, s.plan, order, me);
  const auto order_hash = static_cast<int64_t>(mine.order_hash);
  if (b.sum(b.broadcast(order_hash) == order_hash ? 0 : 1) > 0) {
    throw InputError("the ranks planned different orders of NCCL calls: every rank must run the same bubblesim-hw "
                     "build on the same scenario file and --set options");
  }
  // Each rank's own steps, as rank 0 plans them too (52 bits, exact in a double).
  constexpr uint64_t kBits = (uint64_t{1} << 52) - 1;
  const double own[] = {static_cast<double>(fingerprint(mine.ranks[0]) & kBits)};
  std::vector<int> counts;
  const std::vector<double> steps_of = b.gather(own, counts);
  // Rank 0 plans and checks every GPU (29.5 s for 1024 GPUs on a 2-core VM); the others wait
  // that long, with room to spare.
  constexpr double kCheckSecondsPerGpu = 0.25;
  const double stall = b.set_stall_timeout(0);
  b.set_stall_timeout(stall + kCheckSecondsPerGpu * b.ranks());
  std::string why;
  if (b.rank() == 0) {
    const CommPlan every = plan_communication(s.job, s.plan, order);
    for (size_t r = 0; r < every.ranks.size() && why.empty(); ++r) {
      if (static_cast<double>(fingerprint(every.ranks[r]) & kBits) != steps_of[r]) {
        why = "rank " + std::to_string(r) + " planned other steps than rank 0 plans for it (a different build?)";
      }
    }
    if (why.empty()) why = verify(every, s.plan.program);
  }
  const int64_t verdict = b.broadcast(why.empty() ? 0 : 1);
  b.set_stall_timeout(stall);
  if (verdict != 0) {
    throw InternalError(b.rank() == 0 ? "the order of NCCL calls would not complete: " + why
                                      : "rank 0 found that the order of NCCL calls would not complete (its message says why)");
  }
  if (b.rank() == 0) report_plan(mine, b.ranks());
  return mine;
}
#endif

int run_command(const Options& o, MpiBackend& b, RunContext& ctx) {
  // Started alone with --backend cuda: this process drives every GPU of the node, a thread each.
  bool node_mode = false;
  const auto planned = std::make_unique<Planned>(o, [&](const sim::ClusterJob& job) {
    const int32_t world = job.cluster.world();
#ifdef BUBBLESIM_HW_NCCL
    node_mode = o.backend == "cuda" && b.ranks() == 1 && world > 1;
    const char* alone = o.backend == "cuda" ? "; on one node, start bubblesim-hw alone to drive all its GPUs" : "";
#else
    const char* alone = "";
#endif
    if (!node_mode && world != b.ranks()) {
      throw InputError(o.scenario + ": the scenario has " + std::to_string(world) + " GPUs but mpirun started " +
                       std::to_string(b.ranks()) + " ranks (use mpirun -np " + std::to_string(world) + alone + ")");
    }
  });
  const sim::Scenario& sc = planned->scenario;
  const sim::ClusterJob& job = planned->job;
  const sim::TrainingPlan& plan = planned->plan;
  const int32_t world_size = job.cluster.world();
  const std::vector<sim::DeviceId> device_of = device_of_gpus(job, plan);
  const int warmup = o.warmup < 0 ? 2 : o.warmup;
  const int iterations = o.iterations < 0 ? 5 : std::max(o.iterations, 1);
  nlohmann::json env = environment(b);
#ifdef BUBBLESIM_HW_NCCL
  // --backend cuda: the whole Program on this rank's GPU, communication over NCCL in the order
  // of a plan every rank builds alike and rank 0 checks before any GPU waits on it.
  std::optional<CommPlan> comm_plan, node_plan;
  int device = 0;
  if (node_mode) {
    node_plan = plan_communication(job, plan, nccl_order(*planned));
    if (const std::string why = verify(*node_plan, plan.program); !why.empty()) {
      throw InternalError("the order of NCCL calls would not complete: " + why);
    }
    report_plan(*node_plan, world_size);
    if (usable_gpus() < world_size) {
      throw InputError(o.scenario + ": the scenario has " + std::to_string(world_size) + " GPUs but " + hostname() +
                       " has " + std::to_string(usable_gpus()) + " (across nodes: mpirun -np " + std::to_string(world_size) +
                       ", one rank per GPU)");
    }
    env.erase("blas");
    env["backend"] = "cuda";
    env["ranks"] = world_size;
    env["communication"] = "NCCL " + cuda::nccl_version() + ": " + std::to_string(node_plan->comms.size()) +
                           " communicators (per Program stream and GPU set), collectives in bf16; one process, a "
                           "thread per GPU";
    env["gpu"] = cuda::gpu_environment(0);
  } else if (o.backend == "cuda") {
    comm_plan = plan_nccl(*planned, b);  // first: every rank takes part, GPU or not
    check_on_every_rank(b, [&] { require_own_gpu(b); });
    device = local_rank(b);
    env.erase("blas");
    env["backend"] = "cuda";
    env["communication"] = "NCCL " + cuda::nccl_version() + ": " + std::to_string(comm_plan->comms.size()) +
                           " communicators (per Program stream and GPU set), collectives in bf16";
    env["gpu"] = cuda::gpu_environment(device);
  }
#elif defined(BUBBLESIM_HW_CUDA)
  // --backend cuda without NCCL: compute ops on this rank's GPU, transfers as MPI messages in
  // host memory (so calibrate links from bench p2p on the same nodes).
  if (o.backend == "cuda") {
    const int device = local_rank(b) % usable_gpus();
    // Owned by the backend's hook from here on, so it lives as long as the backend does.
    auto gpu = std::make_shared<cuda::GpuCompute>(device);
    b.set_device_compute([gpu](const sim::OpWork& w) {
      gpu->run(w);
      gpu->synchronize();
    });
    env.erase("blas");
    env["backend"] = "cuda";
    env["communication"] = "MPI point-to-point in host memory (NCCL was not found when bubblesim-hw was built)";
    env["gpu"] = cuda::gpu_environment(device);
  }
#endif

  // The host runner is built before the run is recorded: its input checks (the same on every
  // rank) then stop all ranks alike, with one message.
  std::unique_ptr<Twins> twins;
  std::unique_ptr<Runner> host_runner;
  bool gpu_path = false;
#ifdef BUBBLESIM_HW_NCCL
  gpu_path = comm_plan.has_value() || node_plan.has_value();
#endif
  if (!gpu_path) {
    twins = std::make_unique<Twins>(job, plan);
    host_runner = std::make_unique<Runner>(plan.program, device_of[static_cast<size_t>(b.rank())], b.rank(), b, *twins,
                                           o.stall_timeout);
  }

  sim::RunInfo info;
  info.kind = "hw";
  info.scenario_name = sc.name;
  info.scenario_text = read_file(o.scenario);
  info.command_line = o.command_line;
  env["overrides"] = o.overrides;
  env["warmup"] = warmup;
  env["iterations"] = iterations;
  info.environment = env.dump();
  std::unique_ptr<sim::Store> store = open_run(o, info, b, ctx);

  const sim::Program& p = plan.program;
  // One iteration: every GPU's op times (start, end, ...) one after the other on rank 0, and how
  // many values each GPU gave; from the host runner, the GPU runner of each rank, or this
  // process's threads driving every GPU of the node.
  std::function<std::vector<double>(std::vector<int>&)> measure;
  std::function<RankTimes()> iterate;
#ifdef BUBBLESIM_HW_NCCL
  std::unique_ptr<cuda::NcclComm> world;
  std::unique_ptr<cuda::GpuRunner> gpu_runner;
  std::unique_ptr<cuda::NodeRunner> node;
  if (node_plan) {
    node = std::make_unique<cuda::NodeRunner>(p, *node_plan, o.stall_timeout);
    measure = [&](std::vector<int>& counts) {
      std::vector<double> all;
      counts.clear();
      for (const cuda::ReplayTimes& t : node->run_iteration()) {
        for (size_t i = 0; i < t.start.size(); ++i) {
          all.push_back(t.start[i]);
          all.push_back(t.end[i]);
        }
        counts.push_back(static_cast<int>(2 * t.start.size()));
      }
      return all;
    };
  }
  if (comm_plan) {
    world = join_nccl(b, device, cuda::NcclComm::min_buffer_bytes(b.ranks()));
    gpu_runner = std::make_unique<cuda::GpuRunner>(
        p, *comm_plan, 0, *world, device, [&b](bool ok) { return b.sum(ok ? 0 : 1) == 0; }, [&b] { b.check_alive(); },
        o.stall_timeout);
    iterate = [&] {
      cuda::ReplayTimes t =
          gpu_runner->run_iteration([&b] { b.check_alive(); }, o.stall_timeout, [&b] { b.barrier(); });
      return RankTimes{std::move(t.start), std::move(t.end), t.makespan, 0};
    };
  }
#endif
  if (host_runner) iterate = [&] { return host_runner->run_iteration(); };
  int64_t bytes_sent = -1;  // per iteration, the host runner's messages from this rank
  if (!measure) {
    measure = [&](std::vector<int>& counts) {
      const RankTimes t = iterate();
      if (host_runner) bytes_sent = t.bytes_sent;
      std::vector<double> flat;
      flat.reserve(2 * t.start.size());
      for (size_t i = 0; i < t.start.size(); ++i) {
        flat.push_back(t.start[i]);
        flat.push_back(t.end[i]);
      }
      return b.gather(flat, counts);
    };
  }
  const Fault fault = injected_fault();
  std::vector<sim::Trace> traces;
  std::vector<double> makespans;
#ifdef BUBBLESIM_HW_NCCL
  // A rank that fails leaves its communicators as they are: the process ends (MPI_Abort) and
  // the driver frees them, while an orderly teardown could wait for peers that cannot know yet.
  struct LeaveOnFailure {
    std::unique_ptr<cuda::GpuRunner>& runner;
    std::unique_ptr<cuda::NcclComm>& world;
    ~LeaveOnFailure() {
      if (std::uncaught_exceptions() > 0 && runner) {
        (void)runner.release();
        (void)world.release();
      }
    }
  } leave{gpu_runner, world};
#endif
  for (int it = 0; it < warmup + iterations; ++it) {
    if (fault.rank == b.rank() && fault.iteration == it) {
      if (fault.kind == "kill") raise(SIGKILL);
      throw RankFailure("rank " + std::to_string(b.rank()) + ": injected fault in iteration " + std::to_string(it));
    }
    std::vector<int> counts;
    const std::vector<double> all = measure(counts);
    if (b.rank() != 0) continue;
    // The representative rank of each device gives its ops' times; every rank counts for the makespan.
    sim::Trace trace;
    trace.records.resize(p.num_ops());
    double makespan = 0;
    size_t offset = 0;
    for (int r = 0; r < world_size; ++r) {
      const sim::DeviceId d = device_of[static_cast<size_t>(r)];
      const bool representative = plan.gpu_of_device[d] == r;
      size_t k = 0;
      for (sim::StreamId s : p.devices()[d].streams) {
        for (sim::OpId op : p.stream(s).ops) {
          const double start = all[offset + 2 * k], end = all[offset + 2 * k + 1];
          makespan = std::max(makespan, end);
          if (representative) trace.records[op] = {op, Time::from_seconds(start), Time::from_seconds(end)};
          ++k;
        }
      }
      offset += static_cast<size_t>(counts[static_cast<size_t>(r)]);
    }
    trace.makespan = Time::from_seconds(makespan);
    store->store_iteration(ctx.run, it, it < warmup, makespan);
    std::cerr << "bubblesim-hw: iteration " << it << (it < warmup ? " (warm-up)" : "") << ": " << makespan * 1e3 << " ms\n";
    if (it >= warmup) {
      traces.push_back(std::move(trace));
      makespans.push_back(makespan);
    }
  }
  // What each rank sent per iteration (the host runner's messages), for the record.
  std::vector<int> counts;
  const double sent[] = {static_cast<double>(bytes_sent)};
  const std::vector<double> sent_by_rank = b.gather(sent, counts);
  if (b.rank() != 0) return 0;
  // The iteration with the median makespan is the run's measured timeline.
  std::vector<size_t> order(makespans.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t c) { return makespans[a] < makespans[c]; });
  const sim::Trace& chosen = traces[order[order.size() / 2]];
  store->store_trace(ctx.run, p, chosen, "measured");
  const sim::Metrics m = sim::compute_metrics(p, chosen);
  nlohmann::json summary{{"iteration_time_s", chosen.makespan.seconds()},
                         {"iterations", makespans},
                         {"iteration_min_s", *std::min_element(makespans.begin(), makespans.end())},
                         {"iteration_max_s", *std::max_element(makespans.begin(), makespans.end())},
                         {"idle_fraction", m.idle_fraction},
                         {"tokens", plan.tokens}};
  if (host_runner) {
    std::vector<int64_t> per_rank;
    for (double v : sent_by_rank) per_rank.push_back(static_cast<int64_t>(v));
    summary["bytes_sent_per_rank"] = per_rank;
  }
  store->finish_run(ctx.run, "complete", summary.dump());
  std::printf("%s: measured iteration %.4f s (median of %d; min %.4f, max %.4f), idle %.1f%%; stored as run %lld in %s\n",
              sc.name.c_str(), chosen.makespan.seconds(), iterations, summary["iteration_min_s"].get<double>(),
              summary["iteration_max_s"].get<double>(), 100 * m.idle_fraction, static_cast<long long>(ctx.run),
              o.db.c_str());
  return 0;
}

/// One Program device's ops on one GPU (hw/cuda/replay.hpp): compute with real kernels,
/// transfers as device copies; stored as an hw run holding that device's ops, for calibrate --runs.
int replay_command(const Options& o, MpiBackend& b, RunContext& ctx) {
#ifndef BUBBLESIM_HW_CUDA
  (void)o, (void)b, (void)ctx;
  throw InputError("replay: this bubblesim-hw was built without CUDA");
#else
  if (b.ranks() != 1) throw InputError("replay runs on one GPU: start it alone or with mpirun -np 1");
  const sim::Scenario sc = sim::load_scenario(o.scenario, o.overrides);
  if (sc.pipeline_only) throw InputError(o.scenario + ": a pipeline_only scenario gives op times, not work");
  const sim::ClusterJob job = sim::plan_cluster(sc);
  const sim::Topology topo(job.cluster);
  const sim::RooflineCompute compute(*job.cluster.gpu, job.training.attention_kernel, job.cluster.elementwise_efficiency);
  sim::TrainingPlan plan = sim::build_training(job, topo, compute, true);
  sim::require_valid(plan.program);
  const sim::Program& p = plan.program;
  if (static_cast<size_t>(o.device) >= p.devices().size()) {
    const size_t n = p.devices().size();
    throw InputError("--device " + std::to_string(o.device) + ": the scenario's Program has " + std::to_string(n) +
                     (n == 1 ? " device (0)" : " devices (0 to " + std::to_string(n - 1) + ")"));
  }
  usable_gpus();  // refuses here, before anything is stored, when there is no GPU
  const auto device = static_cast<sim::DeviceId>(o.device);
  const int warmup = o.warmup < 0 ? 2 : o.warmup;
  const int iterations = o.iterations < 0 ? 5 : std::max(o.iterations, 1);
  cuda::GpuReplay replay(p, device, plan.gpu_of_device[device], 0);

  sim::RunInfo info;
  info.kind = "hw";
  info.scenario_name = sc.name;
  info.scenario_text = read_file(o.scenario);
  info.command_line = o.command_line;
  nlohmann::json env = environment(b);
  env.erase("blas");
  env["backend"] = "cuda";
  env["gpu"] = cuda::gpu_environment(0);
  env["replay_device"] = o.device;
  env["overrides"] = o.overrides;
  env["warmup"] = warmup;
  env["iterations"] = iterations;
  info.environment = env.dump();
  std::unique_ptr<sim::Store> store = open_run(o, info, b, ctx);
  std::vector<cuda::ReplayTimes> kept;
  for (int it = 0; it < warmup + iterations; ++it) {
    cuda::ReplayTimes t = replay.run_iteration();
    store->store_iteration(ctx.run, it, it < warmup, t.makespan);
    std::cerr << "bubblesim-hw: replay iteration " << it << (it < warmup ? " (warm-up)" : "") << ": " << t.makespan * 1e3
              << " ms\n";
    if (it >= warmup) kept.push_back(std::move(t));
  }
  // The iteration with the median time gives the op times, as for whole runs.
  std::sort(kept.begin(), kept.end(), [](const auto& x, const auto& y) { return x.makespan < y.makespan; });
  const cuda::ReplayTimes& chosen = kept[kept.size() / 2];
  sim::Trace trace;
  trace.records.resize(p.num_ops());
  for (size_t i = 0; i < replay.ops().size(); ++i) {
    const sim::OpId op = replay.ops()[i];
    trace.records[op] = {op, Time::from_seconds(chosen.start[i]), Time::from_seconds(chosen.end[i])};
  }
  trace.makespan = Time::from_seconds(chosen.makespan);
  store->store_trace(ctx.run, p, trace, "measured", device);
  store->finish_run(ctx.run, "complete",
                    nlohmann::json{{"iteration_time_s", chosen.makespan},
                                   {"iteration_min_s", kept.front().makespan},
                                   {"iteration_max_s", kept.back().makespan},
                                   {"replay_device", o.device},
                                   {"device", p.devices()[device].name}}
                        .dump());
  std::printf("%s: device %d (%s) replayed on %s: %.4f s per iteration (median of %d); stored as run %lld in %s\n",
              sc.name.c_str(), o.device, p.devices()[device].name.c_str(), env["gpu"]["gpu"].get<std::string>().c_str(),
              chosen.makespan, iterations, static_cast<long long>(ctx.run), o.db.c_str());
  return 0;
#endif
}

std::vector<sim::OpWork> shapes_for(const std::string& what, const Options& o) {
  if (o.shapes_from.empty()) return default_shapes(what, o.backend == "cuda");
  // Every distinct compute shape of the scenario's Program, of this benchmark's classes.
  const sim::Scenario sc = sim::load_scenario(o.shapes_from, o.overrides);
  const sim::ClusterJob job = sim::plan_cluster(sc);
  const sim::Topology topo(job.cluster);
  const sim::RooflineCompute compute(*job.cluster.gpu, job.training.attention_kernel, job.cluster.elementwise_efficiency);
  const sim::TrainingPlan plan = sim::build_training(job, topo, compute, true);
  std::vector<sim::OpWork> out;
  std::set<std::string> seen;
  for (sim::OpId id = 0; id < plan.program.num_ops(); ++id) {
    const sim::OpWork* w = plan.program.work(id);
    if (w == nullptr) continue;
    const std::string cls = w->op_class;
    const bool wanted = what == "attention" ? (cls == "attention" || cls == "attention_grad") : cls == what;
    if (wanted && seen.insert(cls + ":" + sim::shape_key(*w)).second) out.push_back(*w);
  }
  return out;
}

int bench_command(const Options& o, MpiBackend& b, RunContext& ctx) {
  std::vector<std::string> benches;
  for (const std::string& w : o.benches) {
    if (w == "all") {
      for (const char* x : {"gemm", "attention", "memory", "p2p", "alltoall", "allreduce", "allgather", "reducescatter"}) {
        benches.emplace_back(x);
      }
    } else if (is_compute_bench(w) || is_comm_bench(w)) {
      benches.push_back(w);
    } else {
      throw InputError("bench: unknown benchmark \"" + w +
                       "\" (valid: gemm, attention, memory, p2p, alltoall, allreduce, allgather, reducescatter, all)");
    }
  }
  sim::RunInfo info;
  info.kind = "bench";
  info.scenario_name = "bench " + o.command_line.substr(o.command_line.find("bench") + 6);
  info.command_line = o.command_line;
  nlohmann::json env = environment(b);
  BenchOptions opt;
#ifdef BUBBLESIM_HW_CUDA
  // One GPU per rank (mpirun -np GPUS): kernels on it, communication over NCCL.
  std::unique_ptr<cuda::GpuCompute> gpu;
#ifdef BUBBLESIM_HW_NCCL
  std::unique_ptr<cuda::NcclComm> nccl;
#endif
  if (o.backend == "cuda") {
    const bool comm = std::any_of(benches.begin(), benches.end(), [](const std::string& w) { return is_comm_bench(w); });
    const int device = local_rank(b) % usable_gpus();
    gpu = std::make_unique<cuda::GpuCompute>(device);
    env["backend"] = "cuda";
    env["gpu"] = cuda::gpu_environment(device);
    env.erase("blas");
    opt.time_compute = [&gpu](const sim::OpWork& w) { return gpu->time(w); };
#ifdef BUBBLESIM_HW_NCCL
    if (comm) {
      // nccl-tests' sizes: every requested size fits the buffers (and one fp32 per rank).
      int64_t largest = cuda::NcclComm::min_buffer_bytes(b.ranks());
      for (int64_t s : sim::parse_size_range(o.sizes)) largest = std::max(largest, s);
      nccl = join_nccl(b, device, largest);
      env["nccl"] = cuda::nccl_version();
      const double stall = o.stall_timeout;
      opt.run_comm = [&nccl, &b, stall](const std::string& what, int64_t size, int count) {
        const CommCall op = cuda::parse_comm_op(what);
        nccl->enqueue(op, size, count);
        nccl->wait([&b] { b.check_alive(); }, stall);
        return nccl->effective_size(op, size);
      };
      opt.check_comm = [&nccl, &b, stall](const std::string& what, int64_t size) {
        return nccl->check(cuda::parse_comm_op(what), size, [&b] { b.check_alive(); }, stall);
      };
    }
#else
    if (comm) {
      throw InputError("bench --backend cuda: this bubblesim-hw was built without NCCL (not found at configure time); "
                       "it benchmarks gemm, attention and memory only");
    }
#endif
  }
#endif
  info.environment = env.dump();
  std::unique_ptr<sim::Store> store = open_run(o, info, b, ctx);
  opt.warmup = o.warmup < 0 ? 3 : o.warmup;
  opt.iterations = o.iterations < 0 ? 10 : std::max(o.iterations, 1);
  opt.sizes = sim::parse_size_range(o.sizes);
  int64_t samples = 0;
  for (const std::string& what : benches) {
    if (is_compute_bench(what)) opt.compute_shapes = shapes_for(what, o);
    if (b.rank() == 0) std::printf("# %s\n# %-28s %6s %12s %12s %12s %10s %10s\n", what.c_str(), "shape or size", "ranks",
                                   "min us", "median us", "max us", "algbw GB/s", "busbw GB/s");
    run_bench(what, opt, b, [&](const sim::BenchSample& s) {
      store->store_bench_sample(ctx.run, s);
      ++samples;
      std::printf("  %-28s %6lld %12.2f %12.2f %12.2f %10.3f %10.3f\n", s.shape.c_str(), static_cast<long long>(s.ranks),
                  s.min_s * 1e6, s.median_s * 1e6, s.max_s * 1e6, s.algbw / 1e9, s.busbw / 1e9);
      std::fflush(stdout);
    });
  }
  if (b.rank() == 0) {
    store->finish_run(ctx.run, "complete", nlohmann::json{{"samples", samples}, {"benches", benches}}.dump());
    std::printf("stored %lld samples as run %lld in %s\n", static_cast<long long>(samples), static_cast<long long>(ctx.run),
                o.db.c_str());
  }
  return 0;
}

int check_command(const Options& o, const MpiSession& session, [[maybe_unused]] MpiBackend& backend) {
  std::vector<std::string> modes;
  if (o.layout == "all") modes = {"contiguous", "zigzag", "striped", "ulysses"};
  else modes = {o.layout};
  bool ok = true;
#ifdef BUBBLESIM_HW_NCCL
  if (o.backend == "cuda") {
    // One GPU per rank; bf16 inputs, 8 heads of 64 (the GPU kernels' shapes).
    const std::unique_ptr<cuda::NcclComm> comm =
        join_nccl(backend, local_rank(backend), cuda::NcclComm::min_buffer_bytes(session.size()));
    for (const std::string& mode : modes) {
      const cuda::GpuAttentionCheck c =
          cuda::check_attention_gpu(mode, o.seq, 8, 64, *comm, [&backend] { backend.check_alive(); });
      if (session.rank() != 0) continue;
      std::printf("%-10s %d GPUs, seq %lld, %lld heads x %lld, causal, %s kernels: forward %.2e, backward (dQ, dK, "
                  "dV) %.2e (max error relative to one GPU's attention; tolerance %.0e): %s\n",
                  mode.c_str(), session.size(), static_cast<long long>(c.seq), static_cast<long long>(c.heads),
                  static_cast<long long>(c.head_dim), cuda::to_string(c.kernel).c_str(), c.forward_error,
                  c.backward_error, c.tolerance(), c.ok() ? "ok" : "MISMATCH");
      ok = ok && c.ok();
    }
    return ok ? 0 : kExitMismatch;
  }
#endif
  for (const std::string& mode : modes) {
    const AttentionCheck c = check_attention(mode, o.seq, 4, 32, session);
    if (session.rank() != 0) continue;
    char backward[64] = "";
    if (mode != "ulysses") std::snprintf(backward, sizeof backward, ", backward (dQ, dK, dV) %.2e", c.backward_error);
    std::printf("%-10s %d ranks, seq %lld, %lld heads x %lld, causal: forward max |error| %.2e%s (tolerance %.0e): %s\n",
                mode.c_str(), session.size(), static_cast<long long>(c.seq), static_cast<long long>(c.heads),
                static_cast<long long>(c.head_dim), c.forward_error, backward, AttentionCheck::kTolerance,
                c.ok() ? "ok" : "MISMATCH");
    ok = ok && c.ok();
  }
  return ok ? 0 : kExitMismatch;
}

/// Marks the run failed with `message` unless it already ended (another rank got there first).
void mark_failed(const RunContext& ctx, const std::string& message) noexcept {
  if (ctx.run == 0) return;
  try {
    sim::Store store(ctx.db);
    if (store.run(ctx.run).status == "incomplete") {
      store.finish_run(ctx.run, "failed", nlohmann::json{{"error", message}}.dump());
    }
  } catch (const std::exception& e) {
    std::cerr << "bubblesim-hw: could not mark run " << ctx.run << " failed: " << e.what() << "\n";
  }
}

}  // namespace
}  // namespace bubblesim::hw

int main(int argc, char** argv) {
  using namespace bubblesim;
  using namespace bubblesim::hw;
#ifdef BUBBLESIM_HW_NCCL
  cuda::set_run_environment();  // before MPI, which may start CUDA
#endif
  MpiSession session(argc, argv);
  MpiBackend::install_signal_handlers();
  init_blas_single_thread();
  RunContext ctx;
  int rc = 0;
  try {
    const Options o = parse(argc, argv);
    ctx.db = o.db;
    MpiBackend backend(session, o.stall_timeout);
    if (o.command == "check") {
      rc = check_command(o, session, backend);
      if (session.size() > 1) rc = static_cast<int>(backend.broadcast(rc));  // every rank leaves with rank 0's verdict
    } else {
      rc = o.command == "run"      ? run_command(o, backend, ctx)
           : o.command == "plan"   ? plan_command(o, backend)
           : o.command == "replay" ? replay_command(o, backend, ctx)
                                   : bench_command(o, backend, ctx);
    }
  } catch (const InputError& e) {
    // Every rank sees the same input and fails the same way; rank 0 speaks. Once the run has
    // started a rank may fail alone (its GPU's memory, say): it names itself.
    if (session.rank() == 0 && ctx.run == 0) {
      std::cerr << "bubblesim-hw: " << e.what() << "\n";
    } else if (ctx.run != 0) {
      std::cerr << "bubblesim-hw: rank " << session.rank() << ": " << e.what() << "\n";
    }
    mark_failed(ctx, e.what());
    // Before the run starts every rank reads the same input and stops alike; after, a rank
    // alone may have failed, so all are stopped.
    if (ctx.run != 0 && session.size() > 1) session.abort(kExitInput);
    rc = kExitInput;
  } catch (const std::exception& e) {
    std::string message = e.what();
    const bool by_signal = message.find("stopped by signal") != std::string::npos;
    if (by_signal && session.rank() == 0) {
      const std::string dead = dead_ranks(ctx.peers);
      if (!dead.empty()) message = dead + " died; the others were stopped (" + message + ")";
    }
    std::cerr << "bubblesim-hw: rank " << session.rank() << ": " << message << "\n";
    if (!by_signal || session.rank() == 0) mark_failed(ctx, message);
    if (session.size() > 1) session.abort(kExitFailure);
    return kExitFailure;
  }
  return rc;
}
