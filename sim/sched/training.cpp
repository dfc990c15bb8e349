#include "sim/sched/training.hpp"

#include <algorithm>
#include <cmath>
#include <memory>
#include <numeric>

#include "sim/core/error.hpp"
#include "sim/model/collectives.hpp"
#include "sim/sched/schedule.hpp"
#include "sim/workload/sequence_parallel.hpp"
#include "sim/workload/transformer.hpp"

namespace bubblesim::sim {
namespace {

constexpr int64_t kOptimizerTraffic = 34; // HBM bytes per local parameter in one Adam step
constexpr int64_t kBf16 = 2;
constexpr double kFp32 = 4;

/// Layers and extra work of one pipeline stage (in model order).
struct StageLayout {
  int32_t layers = 0;
  int32_t first_layer = 0;
  bool embedding = false;
  bool head = false;
};

/// A dependency to add once every op exists: `op` waits for the last op of a pass.
struct PendingDep {
  OpId op;
  bool backward;  // wait for the B/I of (stage, mb), else for its F
  int32_t stage;
  int32_t mb;
  int32_t ring;   // the ring rank, whose device both ops are on
};

/// A data-parallel (gradient) group: dp x ulysses x ring ranks of one tp rank and stage, in GPU
/// order, with the positions of the simulated ring ranks and the twin groups of the other tp ranks.
struct DpGroup {
  std::vector<int32_t> gpus;
  std::vector<int32_t> node_of;  // per position of gpus
  std::vector<std::vector<int32_t>> twins;
  std::vector<size_t> position_of_ring;  // ring rank -> position in gpus
};

using Lanes = std::vector<OpId>;  // one op per ring rank of a stage

class Builder {
 public:
  Builder(const ClusterJob& job, const Topology& topo, const ComputeModel& compute, bool record_work)
      : job_(job), topo_(topo), compute_(compute), record_work_(record_work), place_(job), shape_(layer_shape(job)),
        ring_(job.parallel.ring), layout_(parse_ring_layout(job.parallel.ring_layout)),
        allgather_(job.parallel.cp_mode == "allgather") {}

  TrainingPlan run() {
    const PipelineShape ps = job_.shape;
    graph_ = canonical_stages(job_.schedule, ps);
    layout_stages();
    for (int32_t pp = 0; pp < ps.p; ++pp) {
      for (int32_t r = 0; r < ring_; ++r) {
        const int32_t gpu = place_.gpu(coord(pp, r));
        std::string name = "stage " + std::to_string(pp);
        if (ring_ > 1) name += " ring " + std::to_string(r);
        const DeviceId d = p_.add_device(name + " (gpu " + std::to_string(gpu) + ")",
                                         ring_ > 1 ? static_cast<uint32_t>(pp) : kNone);
        compute_stream_.push_back(p_.add_stream(d, StreamKind::Compute, "compute"));
        recv_stream_.push_back(p_.add_stream(d, StreamKind::Comm, "p2p"));
        dp_stream_.push_back(p_.add_stream(d, StreamKind::Comm, "dp"));
        sp_stream_.push_back(ring_ > 1 && !allgather_ ? p_.add_stream(d, StreamKind::Comm, "ring") : kNone);
        plan_.gpu_of_device.push_back(gpu);
      }
      dp_groups_.push_back(make_dp_group(pp));
    }
    previous_gathered_.assign(static_cast<size_t>(ps.p) * static_cast<size_t>(ring_), kNone);
    optimizer_op_.assign(previous_gathered_.size(), kNone);
    grads_reduced_.assign(previous_gathered_.size(), kNone);
    const size_t slots = graph_.size() * static_cast<size_t>(graph_.microbatches) * static_cast<size_t>(ring_);
    fwd_last_.assign(slots, kNone);
    bwd_last_.assign(slots, kNone);
    if (job_.training.attention_only()) {
      attention_benchmark();
    } else {
      const auto actions = generate(job_.schedule, ps, graph_);
      for (int32_t pp = 0; pp < ps.p; ++pp) emit_rank(pp, actions[static_cast<size_t>(pp)]);
      tied_embedding_allreduce();
      dualpipe_copies_allreduce();
    }
    for (const PendingDep& d : pending_) {
      const OpId on = (d.backward ? bwd_last_ : fwd_last_)[slot(d.stage, d.mb, d.ring)];
      BUBBLESIM_ASSERT(on != kNone, "training: a pass depends on one never scheduled");
      p_.add_dep(d.op, on);
    }
    p_.memory_unit = "KiB";
    p_.chunk_names = job_.schedule == ScheduleKind::DualPipe ? std::vector<std::string>{"f", "r"}
                                                             : std::vector<std::string>{};
    p_.finalize();
    finish_plan();
    plan_.program = std::move(p_);
    return std::move(plan_);
  }

 private:
  // ---- devices and groups --------------------------------------------------------------------

  DeviceId dev(int32_t pp, int32_t r) const { return static_cast<DeviceId>(pp * ring_ + r); }
  int32_t ring_of(DeviceId d) const { return static_cast<int32_t>(d) % ring_; }
  int32_t pp_of(DeviceId d) const { return static_cast<int32_t>(d) / ring_; }

  static Coord coord(int32_t pp, int32_t r) {
    Coord c;
    c[Dim::Pp] = pp;
    c[Dim::Ring] = r;
    return c;
  }

  /// Every combination of the dimensions in `dims` (others as in `base`), first dim fastest.
  std::vector<Coord> combinations(Coord base, std::initializer_list<Dim> dims) const {
    std::vector<Coord> out{base};
    for (Dim dim : dims) {
      std::vector<Coord> next;
      for (int32_t i = 0; i < place_.degree(dim); ++i) {
        for (Coord c : out) {
          c[dim] = i;
          next.push_back(c);
        }
      }
      out = std::move(next);
    }
    return out;
  }

  /// The group varying `dim` around device d, and the same group around every coordinate of
  /// `twin_dims` other than the device's own (the twins that run it at the same time).
  std::pair<std::vector<int32_t>, std::vector<std::vector<int32_t>>> group_with_twins(
      DeviceId d, Dim dim, std::initializer_list<Dim> twin_dims) const {
    const Coord here = coord(pp_of(d), ring_of(d));
    std::vector<std::vector<int32_t>> twins;
    for (const Coord& c : combinations(here, twin_dims)) {
      if (place_.gpu(c) != place_.gpu(here)) twins.push_back(place_.group(dim, c));
    }
    return {place_.group(dim, here), std::move(twins)};
  }

  /// Each GPU's node: collectives over several nodes run NCCL's rail channels (ring_channels).
  std::vector<int32_t> nodes_of(const std::vector<int32_t>& gpus) const {
    std::vector<int32_t> nodes;
    nodes.reserve(gpus.size());
    for (int32_t g : gpus) nodes.push_back(topo_.node_of(g));
    return nodes;
  }

  DpGroup make_dp_group(int32_t pp) const {
    DpGroup g;
    std::vector<std::pair<int32_t, Coord>> members;
    for (const Coord& c : combinations(coord(pp, 0), {Dim::Ulysses, Dim::Ring, Dim::Dp})) {
      members.emplace_back(place_.gpu(c), c);
    }
    std::sort(members.begin(), members.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
    g.position_of_ring.assign(static_cast<size_t>(ring_), 0);
    g.twins.assign(static_cast<size_t>(place_.degree(Dim::Tp) - 1), {});
    for (size_t i = 0; i < members.size(); ++i) {
      const Coord& c = members[i].second;
      g.gpus.push_back(members[i].first);
      if (c[Dim::Ulysses] == 0 && c[Dim::Dp] == 0) g.position_of_ring[static_cast<size_t>(c[Dim::Ring])] = i;
      for (int32_t t = 1; t < place_.degree(Dim::Tp); ++t) {
        Coord twin = c;
        twin[Dim::Tp] = t;
        g.twins[static_cast<size_t>(t - 1)].push_back(place_.gpu(twin));
      }
    }
    g.node_of = nodes_of(g.gpus);
    return g;
  }

  /// Ranks that reduce gradients together (and shard ZeRO states): dp x ulysses x ring.
  int32_t grad_group() const { return job_.parallel.dp * job_.parallel.ulysses * ring_; }

  size_t slot(int32_t stage, int32_t mb, int32_t r) const {
    return (static_cast<size_t>(mb) * graph_.size() + static_cast<size_t>(stage)) * static_cast<size_t>(ring_) +
           static_cast<size_t>(r);
  }

  void layout_stages() {
    const ResolvedModel& m = job_.model;
    const bool dual = job_.schedule == ScheduleKind::DualPipe;
    const size_t per_path = dual ? graph_.size() / 2 : graph_.size();
    std::vector<int32_t> part = job_.parallel.partition;
    if (part.empty()) part.assign(per_path, m.layers / static_cast<int32_t>(per_path));
    stages_.resize(graph_.size());
    for (size_t s = 0; s < graph_.size(); ++s) {
      const size_t j = s % per_path;
      StageLayout& st = stages_[s];
      st.layers = part[j];
      st.first_layer = std::accumulate(part.begin(), part.begin() + static_cast<ptrdiff_t>(j), 0);
      st.embedding = graph_.prev[s] < 0;
      st.head = graph_.next[s] < 0;
    }
  }

  // ---- ops -----------------------------------------------------------------------------------

  Time duration(const LayerOp& op) const {
    switch (op.kind) {
      case LayerOpKind::Gemm: return compute_.gemm(op.gemm);
      case LayerOpKind::Attention: return compute_.attention(op.attn);
      case LayerOpKind::Memory: return compute_.memory_bound(op.bytes, MemoryOp::Layer);
      default: return Time::zero();
    }
  }

  OpId compute_op(DeviceId d, Time duration, Label label) {
    Op o;
    o.stream = compute_stream_[d];
    o.label = label;
    o.duration = duration;
    return p_.add_op(o);
  }

  /// A memory-bound op moving `bytes` through HBM on device d (merges, accumulations, optimizer).
  OpId memory_op(DeviceId d, int64_t bytes, Label label) {
    const OpId id = compute_op(d, bytes > 0 ? compute_.memory_bound(Bytes{bytes}) : Time::zero(), label);
    if (record_work_ && bytes > 0) p_.set_work(id, {"memory", {}, 0, 0, static_cast<double>(bytes)});
    return id;
  }

  /// A blocking collective of device d's group along `dim`, issued on its compute stream.
  /// Its groups (and twins) are the same for every call, so each device's spec is built once.
  OpId group_collective(DeviceId d, CollectiveOp kind, Dim dim, Bytes bytes, Label label,
                        std::initializer_list<Dim> twin_dims, int32_t merged = 1) {
    auto& cache = dim == Dim::Ulysses ? ulysses_spec_ : tp_spec_;
    if (cache.size() <= d) cache.resize(d + 1);
    if (!cache[d]) {
      auto [gpus, twins] = group_with_twins(d, dim, twin_dims);
      // Tensor-parallel groups that each stay inside a node have NVLink to themselves: the
      // twins' identical transfers would change nothing and cost time. Where any of them spans
      // nodes (tp not aligned with the node size), they share NICs and fabric: all are carried.
      if (dim == Dim::Tp) {
        const auto inside_a_node = [&](const std::vector<int32_t>& set) {
          const std::vector<int32_t> nodes = nodes_of(set);
          return std::all_of(nodes.begin(), nodes.end(), [&](int32_t n) { return n == nodes.front(); });
        };
        if (inside_a_node(gpus) && std::all_of(twins.begin(), twins.end(), inside_a_node)) twins.clear();
      }
      cache[d] = std::make_unique<CollectiveSpec>(
          CollectiveSpec{kind, CollectiveAlgo::Ring, bytes, std::move(gpus), {}, {}, std::move(twins), true, {}});
      cache[d]->streams.assign(cache[d]->gpus.size(), kNone);
      cache[d]->streams[0] = compute_stream_[d];
      cache[d]->node_of = nodes_of(cache[d]->gpus);
      on_cluster(*cache[d]);
    }
    CollectiveSpec& spec = *cache[d];
    spec.op = kind;
    if (dim == Dim::Tp) cached_hops(tp_hops_, d, spec);  // Ulysses runs all-to-alls only
    spec.size = bytes;
    spec.merged = merged;
    spec.efficiency = efficiency(kind, bytes, spec.gpus);
    spec.label = label;
    spec.label.traffic = dim == Dim::Ulysses ? Traffic::Ulysses : Traffic::TensorParallel;
    return expand_collective(p_, spec)[0];
  }

  /// Appends one op of the workload to device d's compute stream; returns the last op added.
  OpId add(DeviceId d, const LayerOp& op, Label label) {
    switch (op.kind) {
      // Every Ulysses rank and dp replica runs its own tensor-parallel collective at the same
      // moment; group_collective carries their transfers where the group spans nodes.
      case LayerOpKind::TpAllGather:
        return group_collective(d, CollectiveOp::AllGather, Dim::Tp, op.bytes, label, {Dim::Ulysses, Dim::Dp});
      case LayerOpKind::TpReduceScatter:
        return group_collective(d, CollectiveOp::ReduceScatter, Dim::Tp, op.bytes, label, {Dim::Ulysses, Dim::Dp});
      case LayerOpKind::TpAllReduce:
        return group_collective(d, CollectiveOp::AllReduce, Dim::Tp, op.bytes, label, {Dim::Ulysses, Dim::Dp});
      case LayerOpKind::UlyssesAllToAll:
        // Every tp rank and dp replica runs its own Ulysses all-to-all at the same moment.
        return group_collective(d, CollectiveOp::AllToAll, Dim::Ulysses, op.bytes, label, {Dim::Tp, Dim::Dp},
                                op.merged);
      default: {
        const OpId id = compute_op(d, duration(op), label);
        if (record_work_) record(id, op);
        return id;
      }
    }
  }

  /// Program::work of a workload op.
  void record(OpId id, const LayerOp& op) {
    OpWork w;
    switch (op.kind) {
      case LayerOpKind::Gemm: {
        const GemmShape& g = op.gemm;
        w = {"gemm", {g.m, g.n, g.k, g.batch, 0}, 0, 2.0 * g.m * g.n * g.k * g.batch,
             2.0 * g.batch * (g.m * g.k + g.k * g.n + g.m * g.n)};
        break;
      }
      case LayerOpKind::Attention: record_attention(id, op.attn); return;
      case LayerOpKind::Memory: w = {"memory", {}, 0, 0, static_cast<double>(op.bytes.value)}; break;
      default: return;
    }
    p_.set_work(id, w);
  }

  void record_attention(OpId id, const AttentionShape& a) {
    const double pairs = static_cast<double>(a.q_len) * static_cast<double>(a.kv_len) * a.causal_fraction;
    p_.set_work(id, {a.backward ? "attention_grad" : "attention", {a.batch, a.q_len, a.kv_len, a.heads, a.head_dim},
                     a.causal_fraction, 4.0 * a.batch * a.heads * a.head_dim * pairs * (a.backward ? 2.5 : 1.0), 0});
  }

  /// One workload op on every ring rank of pipeline rank pp.
  void emit(int32_t pp, const LayerOp& op, Label label) {
    if (op.kind == LayerOpKind::Attention && ring_ > 1) {
      if (allgather_) allgather_attention(pp, op, label);
      else ring_attention(pp, op, label);
      return;
    }
    for (int32_t r = 0; r < ring_; ++r) add(dev(pp, r), op, label);
  }

  /// NCCL's achieved share of the links for a ring collective of `size` inside one node.
  double efficiency(CollectiveOp kind, Bytes size, const std::vector<int32_t>& gpus) const {
    if (gpus.size() < 2) return 1;
    for (int32_t g : gpus) {
      if (topo_.node_of(g) != topo_.node_of(gpus.front())) return 1;
    }
    return nccl_efficiency(*job_.cluster.gpu, kind, size.value / static_cast<int64_t>(gpus.size()));
  }

  /// Collectives run as NCCL runs them on this cluster (CollectiveSpec::topology): its choice of
  /// algorithm (NVLink SHARP for all-reduces inside a Hopper node, rings otherwise) and protocol.
  void on_cluster(CollectiveSpec& spec) const {
    spec.algo = job_.cluster.nccl_nvls ? CollectiveAlgo::Auto : CollectiveAlgo::Ring;
    spec.protocol = protocol_;
    spec.topology = &topo_;
    spec.gpu = job_.cluster.gpu;
  }

  /// Points spec.hops at cache[i], built on first use (ring_hops: the route lookups behind it
  /// cost more than the rest of an expansion, and the spec's GPUs are the same on every call).
  /// Ring collectives only: all-to-alls and send/recv have no ring.
  static void cached_hops(std::vector<std::unique_ptr<RingHops>>& cache, size_t i, CollectiveSpec& spec) {
    if (spec.op == CollectiveOp::AllToAll || spec.op == CollectiveOp::SendRecv || spec.gpus.size() < 2) return;
    if (cache.size() <= i) cache.resize(i + 1);
    if (!cache[i]) cache[i] = std::make_unique<RingHops>(ring_hops(spec));
    spec.hops = cache[i].get();
  }

  OpId last_compute(DeviceId d) const {
    const auto& ops = p_.stream(compute_stream_[d]).ops;
    return ops.empty() ? kNone : ops.back();
  }

  // ---- sequence parallelism ------------------------------------------------------------------

  int32_t prev_ring(int32_t r) const { return (r + ring_ - 1) % ring_; }

  /// Bytes of one K plus one V block travelling the ring (per sequence batch), in `element` bytes.
  int64_t kv_block_bytes(int64_t element) const {
    return 2 * shape_.batch * shape_.attention_seq() * shape_.attention_kv_heads() * shape_.head_dim() * element;
  }

  /// Ring rank r of stage pp receives `bytes` from ring rank r - 1 (every tp rank, Ulysses rank
  /// and dp replica does the same), once the ops in `deps` are done.
  OpId ring_recv(int32_t pp, int32_t r, int64_t bytes, Label label, std::initializer_list<OpId> deps) {
    const DeviceId d = dev(pp, r);
    Op o;
    o.kind = OpKind::Recv;
    o.stream = sp_stream_[d];
    o.label = label;
    o.label.traffic = Traffic::Ring;
    const OpId id = p_.add_op(o);
    const OpId members[] = {id};
    const GroupId g = p_.add_group(GroupKind::Transfer, members, Bytes{bytes});
    if (ring_transfers_.size() <= d) ring_transfers_.resize(d + 1);
    std::vector<Transfer>& transfers = ring_transfers_[d];
    if (transfers.empty()) {
      for (Coord to : combinations(coord(pp, r), {Dim::Tp, Dim::Ulysses, Dim::Dp})) {
        Coord from = to;
        from[Dim::Ring] = prev_ring(r);
        transfers.push_back({place_.gpu(from), place_.gpu(to), Bytes{0}});
      }
    }
    for (Transfer& t : transfers) t.bytes = Bytes{bytes};
    p_.set_transfers(g, transfers);
    for (OpId dep : deps) {
      if (dep != kNone) p_.add_dep(id, dep);
    }
    return id;
  }

  /// Ring attention over the ring ranks of stage pp (algorithms.md 2.1): at step t rank r
  /// computes its queries against the K/V block of rank r - t while the block moves on to
  /// r + 1 (posted at the start of the step, once both neighbours finished the previous step);
  /// the forward merges partial outputs by log-sum-exp; the backward sends the dK/dV
  /// accumulators (fp32) one hop after each step, P hops in all, so they end at their owner.
  void ring_attention(int32_t pp, const LayerOp& op, Label label) {
    const bool backward = op.attn.backward;
    const int64_t n = shape_.attention_seq();
    const int64_t b = shape_.batch;
    const int64_t q_width = shape_.attention_heads() * shape_.head_dim();
    const int64_t kv_width = shape_.attention_kv_heads() * shape_.head_dim();
    const size_t R = static_cast<size_t>(ring_);
    Lanes step_end(R), kv(R, kNone), dkv(R, kNone);
    for (int32_t r = 0; r < ring_; ++r) step_end[r] = last_compute(dev(pp, r));
    for (int32_t t = 0; t < ring_; ++t) {
      label.ring_step = t;
      Lanes next_kv(R, kNone);
      if (t + 1 < ring_) {
        for (int32_t r = 0; r < ring_; ++r) {
          next_kv[r] = ring_recv(pp, r, kv_block_bytes(2), label, {step_end[r], step_end[prev_ring(r)], kv[prev_ring(r)]});
        }
      }
      for (int32_t r = 0; r < ring_; ++r) {
        const DeviceId d = dev(pp, r);
        const RingStepWork w = ring_step_work(layout_, ring_, n, r, t);
        OpId last = kNone;
        if (w.pairs > 0) {
          AttentionShape a = op.attn;
          a.q_len = w.q_len;
          a.kv_len = w.kv_len;
          a.causal_fraction = w.causal_fraction();
          last = compute_op(d, compute_.attention(a), label);
          if (record_work_) record_attention(last, a);
          if (kv[r] != kNone) p_.add_dep(last, kv[r]);
          // Forward: merge the block's output into the fp32 accumulator by log-sum-exp.
          if (!backward && t > 0) {
            last = memory_op(d, ring_merge_bytes(b, w.q_len, q_width), label);
          }
        }
        if (backward && t > 0) {
          // Add the block's dQ, and its dK/dV to the accumulators that arrived from r - 1.
          const int64_t bytes = w.pairs > 0 ? ring_accumulate_bytes(b, w.q_len, q_width, n, kv_width) : 0;
          last = memory_op(d, bytes, label);
          p_.add_dep(last, dkv[r]);
        }
        if (last != kNone) step_end[r] = last;
      }
      if (backward) {
        Lanes next_dkv(R);
        for (int32_t r = 0; r < ring_; ++r) {
          next_dkv[r] = ring_recv(pp, r, kv_block_bytes(4), label, {step_end[r], step_end[prev_ring(r)]});
        }
        dkv = std::move(next_dkv);
      }
      kv = std::move(next_kv);
    }
    if (backward) {
      // The owner's dK/dV are complete once the last hop arrives.
      label.ring_step = -1;
      for (int32_t r = 0; r < ring_; ++r) p_.add_dep(compute_op(dev(pp, r), Time::zero(), label), dkv[r]);
    }
  }

  /// All-gather CP (algorithms.md 2.2): gather K/V over the ring group, attend locally with the
  /// layout's causal work, and reduce-scatter dK/dV in the backward; blocking, not overlapped.
  void allgather_attention(int32_t pp, const LayerOp& op, Label label) {
    const bool backward = op.attn.backward;
    const int64_t n = shape_.attention_seq();
    CollectiveSpec spec{backward ? CollectiveOp::ReduceScatter : CollectiveOp::AllGather, CollectiveAlgo::Ring,
                        Bytes{kv_block_bytes(2) * ring_}, place_.group(Dim::Ring, coord(pp, 0)), {}, {}, {}, false, {}};
    for (const Coord& c : combinations(coord(pp, 0), {Dim::Tp, Dim::Ulysses, Dim::Dp})) {
      if (place_.gpu(c) != place_.gpu(coord(pp, 0))) spec.twins.push_back(place_.group(Dim::Ring, c));
    }
    spec.node_of = nodes_of(spec.gpus);
    spec.label = label;
    spec.label.traffic = Traffic::ContextGather;
    spec.fuse_steps = true;
    on_cluster(spec);
    cached_hops(ring_hops_, static_cast<size_t>(pp), spec);
    for (int32_t r = 0; r < ring_; ++r) spec.streams.push_back(compute_stream_[dev(pp, r)]);
    if (!backward) expand_collective(p_, spec);
    for (int32_t r = 0; r < ring_; ++r) {
      AttentionShape a = op.attn;
      a.q_len = n;
      a.kv_len = n * ring_;
      a.causal_fraction = static_cast<double>(ring_rank_pairs(layout_, ring_, n, r)) /
                          (static_cast<double>(n) * static_cast<double>(n * ring_));
      const OpId id = compute_op(dev(pp, r), compute_.attention(a), label);
      if (record_work_) record_attention(id, a);
    }
    if (backward) expand_collective(p_, spec);
  }

  // ---- passes --------------------------------------------------------------------------------

  /// Runs `ops` for every layer of the stage (in `reverse` order for backward passes).
  void add_layers(int32_t pp, const StageLayout& st, Pass pass, Label label, bool reverse) {
    const auto ops = merge_all_to_alls(layer_ops(shape_, pass, job_.training.recompute));
    const bool gather = zero3() && (pass == Pass::Forward || pass == Pass::InputGrad);
    for (int32_t i = 0; i < st.layers; ++i) {
      label.layer = st.first_layer + (reverse ? st.layers - 1 - i : i);
      if (gather) {  // the layer starts once its parameters are gathered
        Lanes start;
        for (int32_t r = 0; r < ring_; ++r) start.push_back(compute_op(dev(pp, r), Time::zero(), label));
        zero3_gather(pp, layer_params(job_.model), start);
      }
      for (const LayerOp& op : ops) emit(pp, op, label);
      if (pass == Pass::WeightGrad && grad_sync_) grad_bucket(pp, layer_params(job_.model));
    }
  }

  void add_extra(int32_t pp, const std::vector<LayerOp>& ops, Label label) {
    for (const LayerOp& op : ops) emit(pp, op, label);
  }

  /// The activations (or their gradients) of microbatch `mb` arriving from the stage `from`.
  void receive(DeviceId d, int32_t from, int32_t mb, bool backward, OpId consumer) {
    const int32_t r = ring_of(d);
    const int32_t src_rank = graph_.device[static_cast<size_t>(from)];
    if (src_rank == pp_of(d)) {
      pending_.push_back({consumer, backward, from, mb, r});
      return;
    }
    Op recv;
    recv.kind = OpKind::Recv;
    recv.stream = recv_stream_[d];
    recv.label.phase = backward ? Phase::B : Phase::F;
    recv.label.traffic = Traffic::Pipeline;
    recv.label.microbatch = mb;
    const OpId id = p_.add_op(recv);
    const OpId members[] = {id};
    // Each TP rank sends its sequence shard (or, without sequence parallelism, a 1/tp slice as
    // Megatron's scatter/gather optimisation does).
    const int64_t bytes = shape_.tokens() / shape_.tp * shape_.hidden * kBf16;
    const GroupId g = p_.add_group(GroupKind::Transfer, members, Bytes{bytes});
    // Every tensor-parallel and Ulysses rank of every data-parallel replica moves its shard at
    // the same time.
    std::vector<Transfer> transfers;
    for (Coord to : combinations(coord(pp_of(d), r), {Dim::Tp, Dim::Ulysses, Dim::Dp})) {
      Coord at_source = to;
      at_source[Dim::Pp] = src_rank;
      transfers.push_back({place_.gpu(at_source), place_.gpu(to), Bytes{bytes}});
    }
    p_.set_transfers(g, transfers);
    pending_.push_back({id, backward, from, mb, r});
    p_.add_dep(consumer, id);
  }

  /// A placeholder first op on every ring rank so dependencies have something to attach to.
  Lanes open_pass(int32_t pp, Label label) {
    label.layer = -1;
    Lanes first;
    for (int32_t r = 0; r < ring_; ++r) first.push_back(compute_op(dev(pp, r), Time::zero(), label));
    return first;
  }

  /// Records the last op of each ring rank as the end of pass (s, mb).
  void close_pass(int32_t pp, std::vector<OpId>& table, int32_t s, int32_t mb) {
    for (int32_t r = 0; r < ring_; ++r) table[slot(s, mb, r)] = last_compute(dev(pp, r));
  }

  void forward(int32_t pp, int32_t s, int32_t mb) {
    const StageLayout& st = stages_[static_cast<size_t>(s)];
    Label label{Phase::F, Traffic::None, graph_.chunk[static_cast<size_t>(s)], -1, s, mb};
    const Lanes first = open_pass(pp, label);
    if (graph_.prev[static_cast<size_t>(s)] >= 0) {
      for (int32_t r = 0; r < ring_; ++r) receive(dev(pp, r), graph_.prev[static_cast<size_t>(s)], mb, false, first[r]);
    }
    zero3_gather(pp, embedding_params(st), first);  // the embedding's or LM head's block
    if (st.embedding) add_extra(pp, embedding_ops(shape_, Pass::Forward), label);
    add_layers(pp, st, Pass::Forward, label, false);
    if (st.head) add_extra(pp, head_ops(shape_, vocab(), Pass::Forward), label);
    for (int32_t r = 0; r < ring_; ++r) p_.add_memory(first[r], activation_kib(st), 0);
    close_pass(pp, fwd_last_, s, mb);
  }

  /// B (with W) or I of (s, mb).
  void backward(int32_t pp, int32_t s, int32_t mb, bool with_weights) {
    const StageLayout& st = stages_[static_cast<size_t>(s)];
    Label label{with_weights ? Phase::B : Phase::I, Traffic::None, graph_.chunk[static_cast<size_t>(s)], -1, s, mb};
    const Lanes first = open_pass(pp, label);
    for (int32_t r = 0; r < ring_; ++r) {
      pending_.push_back({first[r], false, s, mb, r});
      if (graph_.next[static_cast<size_t>(s)] >= 0) receive(dev(pp, r), graph_.next[static_cast<size_t>(s)], mb, true, first[r]);
    }
    zero3_gather(pp, embedding_params(st), first);  // the embedding's or LM head's block
    if (st.head) add_extra(pp, head_ops(shape_, vocab(), Pass::InputGrad), label);
    add_layers(pp, st, Pass::InputGrad, label, true);
    // A fused B sends its gradient on only after the whole backward (autograd), W included.
    if (with_weights) weights(pp, s, mb, label);
    close_pass(pp, bwd_last_, s, mb);
  }

  /// Weight gradients of (s, mb). After the stage's last microbatch, every layer's gradients
  /// (and the embedding's and head's) are reduced over data parallelism.
  void weights(int32_t pp, int32_t s, int32_t mb, Label label) {
    const StageLayout& st = stages_[static_cast<size_t>(s)];
    label.phase = label.phase == Phase::I ? Phase::W : label.phase;
    label.microbatch = mb;
    grad_sync_ = --weight_passes_left_[static_cast<size_t>(s)] == 0;
    if (st.head) add_extra(pp, head_ops(shape_, vocab(), Pass::WeightGrad), label);
    add_layers(pp, st, Pass::WeightGrad, label, true);
    if (st.embedding) add_extra(pp, embedding_ops(shape_, Pass::WeightGrad), label);
    if (grad_sync_ && (st.embedding || st.head)) grad_bucket(pp, embedding_params(st));
    grad_sync_ = false;
    for (int32_t r = 0; r < ring_; ++r) {
      const OpId last = last_compute(dev(pp, r));
      if (last != kNone) p_.add_memory(last, 0, activation_kib(st));
    }
  }

  // ---- gradients and ZeRO --------------------------------------------------------------------

  /// One gradient bucket of `params` (whole model, before tp) reduced during the backward.
  void grad_bucket(int32_t pp, int64_t params) {
    if (grad_group() == 1 || !job_.parallel.overlap_grad_reduce || params == 0) return;
    const CollectiveOp op = job_.parallel.zero >= 1 ? CollectiveOp::ReduceScatter : CollectiveOp::AllReduce;
    Lanes after;
    for (int32_t r = 0; r < ring_; ++r) after.push_back(last_compute(dev(pp, r)));
    dp_collective(pp, op, params / job_.parallel.tp * kGradBytes, after);
  }

  /// A gradient-group collective of stage pp on its ring ranks' dp streams, each position
  /// after its op in `after` (kNone: no wait), carrying the twin groups of the other tensor-
  /// parallel ranks. Returns each ring rank's last op.
  Lanes dp_collective(int32_t pp, CollectiveOp op, int64_t bytes, const Lanes& after) {
    const DpGroup& g = dp_groups_[static_cast<size_t>(pp)];
    CollectiveSpec spec{op, CollectiveAlgo::Ring, Bytes{bytes}, g.gpus, {}, g.node_of, g.twins, false, {}};
    spec.fuse_steps = true;
    spec.efficiency = efficiency(op, Bytes{bytes}, g.gpus);
    on_cluster(spec);
    cached_hops(dp_hops_, static_cast<size_t>(pp), spec);
    spec.streams.assign(spec.gpus.size(), kNone);
    spec.label.phase = Phase::None;
    spec.label.traffic = Traffic::DataParallel;
    std::vector<OpId> first_after(spec.gpus.size(), kNone);
    for (int32_t r = 0; r < ring_; ++r) {
      const size_t at = g.position_of_ring[static_cast<size_t>(r)];
      spec.streams[at] = dp_stream_[dev(pp, r)];
      first_after[at] = after[static_cast<size_t>(r)];
    }
    const auto last = expand_collective(p_, spec, first_after);
    Lanes out;
    for (int32_t r = 0; r < ring_; ++r) out.push_back(last[g.position_of_ring[static_cast<size_t>(r)]]);
    return out;
  }

  /// ZeRO-3 (as DeepSpeed runs it): each layer's parameters (and the embedding's or LM head's)
  /// are all-gathered right before the layer runs in a forward or backward pass, never kept
  /// across passes, and prefetched one layer ahead: a gather may start once the previous gathered
  /// block has started computing. `consumers`: the ops that need the parameters.
  void zero3_gather(int32_t pp, int64_t params, const Lanes& consumers) {
    if (job_.parallel.zero < 3 || grad_group() == 1 || params == 0) return;
    Lanes after;
    for (int32_t r = 0; r < ring_; ++r) after.push_back(previous_gathered_[dev(pp, r)]);
    const Lanes last = dp_collective(pp, CollectiveOp::AllGather, params / job_.parallel.tp * kParamBytes, after);
    for (int32_t r = 0; r < ring_; ++r) {
      previous_gathered_[dev(pp, r)] = consumers[r];
      if (last[r] != kNone) p_.add_dep(consumers[r], last[r]);
    }
  }

  bool zero3() const { return job_.parallel.zero >= 3 && grad_group() > 1; }

  /// The vocabulary as Megatron pads it: a multiple of 128 x tp, so every rank gets equal rows.
  int64_t vocab() const {
    const int64_t unit = 128 * static_cast<int64_t>(job_.parallel.tp);
    return (job_.model.vocab + unit - 1) / unit * unit;
  }

  /// Embedding and LM-head parameters of a stage (one matrix when tied and on one stage).
  int64_t embedding_params(const StageLayout& st) const {
    const int64_t matrix = vocab() * job_.model.hidden;
    const bool shared = job_.model.tied_embeddings && st.embedding && st.head;
    return (st.embedding ? matrix : 0) + (st.head && !shared ? matrix : 0);
  }

  int64_t stage_params(const StageLayout& st) const {
    return st.layers * layer_params(job_.model) + embedding_params(st);
  }

  /// ZeRO-3's gathered parameters on device pp at once: the block computing and the one
  /// prefetched, each a layer or the embedding / LM head.
  double gathered_params(int32_t pp) const {
    double most = 0;
    for (size_t s = 0; s < graph_.size(); ++s) {
      if (graph_.device[s] != pp) continue;
      const StageLayout& st = stages_[s];
      most = std::max({most, st.layers > 0 ? static_cast<double>(layer_params(job_.model)) : 0.0,
                       static_cast<double>(embedding_params(st))});
    }
    return 2 * most / job_.parallel.tp;
  }

  // ---- memory --------------------------------------------------------------------------------

  /// Activations one microbatch keeps alive on a stage (the rank's sequence shard). The stage
  /// with the LM head also keeps the cross-entropy's softmax over its vocabulary shard in fp32
  /// for the backward (Megatron's vocab-parallel cross-entropy upcasts the logits and saves it;
  /// recompute does not cover the loss).
  double activation_bytes(const StageLayout& st) const {
    const double per_token = activation_bytes_per_token(job_.model, job_.parallel.tp, job_.parallel.sequence_parallel,
                                                        job_.training.recompute, shape_.flash_attention,
                                                        job_.training.seq_len, job_.training.dropout > 0);
    const double tokens = static_cast<double>(shape_.tokens());
    const double softmax = st.head ? kFp32 * tokens * static_cast<double>(vocab() / job_.parallel.tp) : 0;
    return per_token * tokens * st.layers + softmax;
  }

  /// The same in Program memory units (KiB), refusing what an int32 unit count cannot hold.
  int32_t activation_kib(const StageLayout& st) const {
    const double kib = std::ceil(activation_bytes(st) / plan_.activation_unit_bytes);
    if (kib > INT32_MAX) {
      throw InputError("training: one microbatch's activations on a stage (" + std::to_string(kib / (1 << 20)) +
                       " GiB) are beyond what bubblesim can represent; the configuration cannot fit any GPU");
    }
    return static_cast<int32_t>(kib);
  }

  /// Sequence-parallel workspaces alive during one layer's attention (the largest of forward and
  /// backward): the Ulysses all-to-all outputs, the ring's double-buffered K/V blocks with the
  /// fp32 output or dQ/dK/dV accumulators, or the gathered K/V of all-gather CP.
  double sp_buffer_bytes() const {
    const double b = static_cast<double>(shape_.batch);
    const double n = static_cast<double>(shape_.attention_seq());
    const double q = static_cast<double>(shape_.attention_heads() * shape_.head_dim());
    const double kv = static_cast<double>(shape_.attention_kv_heads() * shape_.head_dim());
    double bytes = 0;
    if (job_.parallel.ulysses > 1) bytes += b * n * (2 * q + 2 * kv) * kBf16;
    if (ring_ > 1 && allgather_) {
      bytes += 2.0 * static_cast<double>(kv_block_bytes(kBf16)) * ring_;  // gathered K/V, then dK/dV
    } else if (ring_ > 1) {
      const double forward = 2.0 * static_cast<double>(kv_block_bytes(kBf16)) + b * n * q * 4;
      const double backward = 2.0 * static_cast<double>(kv_block_bytes(kBf16)) + 2.0 * static_cast<double>(kv_block_bytes(4)) +
                              b * n * q * 4;
      bytes += std::max(forward, backward);
    }
    return bytes;
  }

  // ---- the schedule --------------------------------------------------------------------------

  void emit_rank(int32_t pp, const RankActions& actions) {
    weight_passes_left_.assign(graph_.size(), 0);
    for (size_t s = 0; s < graph_.size(); ++s) {
      if (graph_.device[s] == pp) weight_passes_left_[s] = graph_.microbatches;
    }
    for (const Action& a : actions) {
      switch (a.phase) {
        case Phase::F: forward(pp, a.stage, a.microbatch); break;
        case Phase::B: backward(pp, a.stage, a.microbatch, true); break;
        case Phase::I: backward(pp, a.stage, a.microbatch, false); break;
        case Phase::W: {
          Label label{Phase::W, Traffic::None, graph_.chunk[static_cast<size_t>(a.stage)], -1, a.stage, a.microbatch};
          weights(pp, a.stage, a.microbatch, label);
          break;
        }
        case Phase::FB:
          forward(pp, a.stage, a.microbatch);
          backward(pp, a.b_stage, a.b_microbatch, true);
          break;
        case Phase::None: break;
      }
    }
    optimizer(pp);
  }

  /// training.scope attention-*: one call of the distributed attention (and its backward) on
  /// every ring rank of the single stage, nothing else.
  void attention_benchmark() {
    Label label{Phase::F, Traffic::None, 0, -1, 0, 0};
    label.layer = 0;
    const Lanes first = open_pass(0, label);
    for (const LayerOp& op : merge_all_to_alls(core_attention_ops(shape_, false))) emit(0, op, label);
    if (job_.training.scope == "attention-forward-backward") {
      label.phase = Phase::B;
      for (const LayerOp& op : merge_all_to_alls(core_attention_ops(shape_, true))) emit(0, op, label);
    }
    MemoryEstimate mem;
    mem.buffers = sp_buffer_bytes();
    for (int32_t r = 0; r < ring_; ++r) {
      // Q, K, V and the output of the rank's shard stay alive for the backward.
      const double qkvo = static_cast<double>(shape_.tokens()) *
                          (2.0 * job_.model.hidden + 2.0 * job_.model.kv_heads * shape_.head_dim()) / shape_.tp * kBf16;
      p_.add_memory(first[r], static_cast<int32_t>(std::ceil(qkvo / plan_.activation_unit_bytes)), 0);
      plan_.memory.push_back(mem);
    }
  }

  /// Tied embeddings with the embedding on one rank and the LM head on another (pp > 1): after the
  /// data-parallel reduction, Megatron all-reduces the shared matrix's gradient between the first
  /// and the last stage, before the optimizer.
  void tied_embedding_allreduce() {
    if (!job_.model.tied_embeddings) return;
    int32_t first = -1, last = -1, embeddings = 0, heads = 0;
    for (size_t s = 0; s < graph_.size(); ++s) {
      if (stages_[s].embedding) first = graph_.device[s], ++embeddings;
      if (stages_[s].head) last = graph_.device[s], ++heads;
    }
    // One embedding and one head on different ranks (not DualPipe's two pipelines).
    if (embeddings != 1 || heads != 1 || first == last) return;
    pair_allreduce(first, last, vocab() / job_.parallel.tp * job_.model.hidden * kGradBytes, "embedding");
  }

  /// DualPipe keeps two copies of the model: pipeline ranks i and p - 1 - i hold the same two
  /// stages (one per direction), each trained on its own half of the microbatches, so each pair
  /// all-reduces its gradients (its data-parallel shard of them under ZeRO) before the optimizer.
  void dualpipe_copies_allreduce() {
    if (job_.schedule != ScheduleKind::DualPipe) return;
    const int32_t p = job_.parallel.pp;
    for (int32_t i = 0; i < p / 2; ++i) {
      int64_t params = 0;
      for (size_t s = 0; s < graph_.size(); ++s) {
        if (graph_.device[s] == i) params += stage_params(stages_[s]) / job_.parallel.tp;
      }
      const int64_t local = job_.parallel.zero >= 1 ? params / grad_group() : params;
      pair_allreduce(i, p - 1 - i, local * kGradBytes, "copies");
    }
  }

  /// An all-reduce of `bytes` between pipeline ranks a and b, for every ring rank (every tp,
  /// Ulysses and dp coordinate at once), on a stream `name` of each side's own (the dp streams
  /// hold ZeRO's all-gathers after the optimizer): after each side's gradient reduction and
  /// before its optimizer step.
  void pair_allreduce(int32_t a_rank, int32_t b_rank, int64_t bytes, const char* name) {
    for (int32_t r = 0; r < ring_; ++r) {
      const Coord a = coord(a_rank, r);
      Coord b = a;
      b[Dim::Pp] = b_rank;
      CollectiveSpec spec{CollectiveOp::AllReduce, CollectiveAlgo::Ring, Bytes{bytes}, {place_.gpu(a), place_.gpu(b)},
                          {}, {}, {}, true, {}};
      for (Coord c : combinations(a, {Dim::Tp, Dim::Ulysses, Dim::Dp})) {
        if (place_.gpu(c) == place_.gpu(a)) continue;
        Coord cb = c;
        cb[Dim::Pp] = b_rank;
        spec.twins.push_back({place_.gpu(c), place_.gpu(cb)});
      }
      spec.efficiency = efficiency(CollectiveOp::AllReduce, Bytes{bytes}, spec.gpus);
      spec.node_of = nodes_of(spec.gpus);
      on_cluster(spec);
      spec.label.phase = Phase::None;
      spec.label.traffic = Traffic::DataParallel;
      const DeviceId da = dev(a_rank, r), db = dev(b_rank, r);
      spec.streams = {p_.add_stream(da, StreamKind::Comm, name), p_.add_stream(db, StreamKind::Comm, name)};
      const std::vector<OpId> after{grads_reduced_[da], grads_reduced_[db]};
      const auto done = expand_collective(p_, spec, after);
      p_.add_dep(optimizer_op_[da], done[0]);
      p_.add_dep(optimizer_op_[db], done[1]);
    }
  }

  /// The optimizer step after every gradient reduction, then ZeRO's parameter all-gather.
  void optimizer(int32_t pp) {
    int64_t params = 0;
    for (size_t s = 0; s < graph_.size(); ++s) {
      if (graph_.device[s] == pp) params += stage_params(stages_[s]) / job_.parallel.tp;
    }
    const int32_t group = grad_group();
    const int32_t zero = job_.parallel.zero;
    if (!job_.parallel.overlap_grad_reduce && group > 1) {
      // All gradients at once after the backward (Megatron-LM before overlapped buckets).
      Lanes after;
      for (int32_t r = 0; r < ring_; ++r) after.push_back(last_compute(dev(pp, r)));
      dp_collective(pp, zero >= 1 ? CollectiveOp::ReduceScatter : CollectiveOp::AllReduce, params * kGradBytes, after);
    }
    const int64_t local = zero >= 1 ? params / group : params;
    Lanes opt;
    for (int32_t r = 0; r < ring_; ++r) {
      const DeviceId d = dev(pp, r);
      const auto& dp_ops = p_.stream(dp_stream_[d]).ops;
      // What the optimizer waits for: the gradients' reduction, or without one the backward.
      grads_reduced_[d] = dp_ops.empty() ? last_compute(d) : dp_ops.back();
      const OpId o = memory_op(d, local * kOptimizerTraffic, Label{});
      if (!dp_ops.empty()) p_.add_dep(o, dp_ops.back());
      optimizer_op_[d] = o;
      opt.push_back(o);
    }
    if ((zero == 1 || zero == 2) && group > 1) dp_collective(pp, CollectiveOp::AllGather, params * kParamBytes, opt);
    MemoryEstimate mem;
    const double shards = group;
    mem.params = static_cast<double>(params) * kParamBytes / (zero >= 3 ? shards : 1);
    if (zero >= 3) mem.params += gathered_params(pp) * kParamBytes;  // the gathered blocks
    mem.grads = static_cast<double>(params) * kGradBytes / (zero >= 2 ? shards : 1);
    mem.optimizer = static_cast<double>(params) * kOptimizerBytes / (zero >= 1 ? shards : 1);
    mem.buffers = sp_buffer_bytes();
    for (int32_t r = 0; r < ring_; ++r) plan_.memory.push_back(mem);
  }

  void finish_plan() {
    const int64_t sequences =
        job_.training.attention_only() ? job_.training.micro_batch_size : job_.training.global_batch_size;
    plan_.tokens = sequences * job_.training.seq_len;
    for (Dim dim : kDims) {
      if (place_.crosses_nodes(dim, topo_)) plan_.notes.push_back(std::string(to_string(dim)) + " groups cross nodes");
    }
  }

  const ClusterJob& job_;
  const Topology& topo_;
  const ComputeModel& compute_;
  bool record_work_;
  RankPlacement place_;
  LayerShape shape_;
  int32_t ring_;
  RingLayout layout_;
  bool allgather_;
  Program p_;
  StageGraph graph_;
  std::vector<StageLayout> stages_;
  std::vector<StreamId> compute_stream_, recv_stream_, dp_stream_, sp_stream_;
  std::vector<DpGroup> dp_groups_;
  std::vector<std::unique_ptr<CollectiveSpec>> tp_spec_, ulysses_spec_;  // per device, built on first use
  // ring_hops (cached_hops): per device of its tensor-parallel group; per stage of its dp group
  // and of its context-parallel ring group.
  std::vector<std::unique_ptr<RingHops>> tp_hops_, dp_hops_, ring_hops_;
  std::optional<NcclProtocol> protocol_ = parse_protocol(job_.cluster.nccl_protocol);  // cluster.nccl.protocol
  std::vector<std::vector<Transfer>> ring_transfers_;                     // per device: its K/V arrivals
  std::vector<OpId> fwd_last_, bwd_last_;
  std::vector<PendingDep> pending_;
  std::vector<int32_t> weight_passes_left_;
  std::vector<OpId> previous_gathered_;  // per device: the first op of its latest ZeRO-3 gathered block
  std::vector<OpId> optimizer_op_, grads_reduced_;  // per device: its optimizer step, what it waited for
  bool grad_sync_ = false;
  TrainingPlan plan_;
};

}  // namespace

const char* to_string(Dim dim) {
  switch (dim) {
    case Dim::Tp: return "tp";
    case Dim::Ulysses: return "ulysses";
    case Dim::Ring: return "ring";
    case Dim::Dp: return "dp";
    case Dim::Pp: return "pp";
  }
  return "?";
}

RankPlacement::RankPlacement(const ClusterJob& job) {
  const ParallelSpec& ps = job.parallel;
  const int32_t degrees[] = {ps.tp, ps.ulysses, ps.ring, ps.dp, ps.pp};
  int32_t stride = 1;
  for (const std::string& name : ps.placement) {
    for (Dim dim : kDims) {
      if (name != to_string(dim)) continue;
      const int i = static_cast<int>(dim);
      degree_[i] = degrees[i];
      stride_[i] = stride;
      stride *= degrees[i];
    }
  }
}

int32_t RankPlacement::gpu(const Coord& c) const {
  int32_t g = 0;
  for (int i = 0; i < 5; ++i) g += c.at[i] * stride_[i];
  return g;
}

std::vector<int32_t> RankPlacement::group(Dim dim, Coord c) const {
  std::vector<int32_t> g;
  for (int32_t i = 0; i < degree(dim); ++i) {
    c[dim] = i;
    g.push_back(gpu(c));
  }
  return g;
}

bool RankPlacement::crosses_nodes(Dim dim, const Topology& topo) const {
  const auto g = group(dim, Coord{});
  return topo.node_of(g.front()) != topo.node_of(g.back());
}

TrainingPlan build_training(const ClusterJob& job, const Topology& topo, const ComputeModel& compute,
                            bool record_work) {
  return Builder(job, topo, compute, record_work).run();
}

}  // namespace bubblesim::sim
