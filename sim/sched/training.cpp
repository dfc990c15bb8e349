#include "sim/sched/training.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "sim/core/error.hpp"
#include "sim/model/collectives.hpp"
#include "sim/sched/schedule.hpp"
#include "sim/workload/transformer.hpp"

namespace bubblesim::sim {
namespace {

constexpr int64_t kParamBytes = 2;        // bf16 weights
constexpr int64_t kGradBytes = 4;         // fp32 main gradients, reduced in fp32 (Megatron with bf16)
constexpr int64_t kOptimizerBytes = 12;   // fp32 master weights, Adam m and v
constexpr int64_t kOptimizerTraffic = 34; // HBM bytes per local parameter in one Adam step
constexpr int64_t kBf16 = 2;

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
};

class Builder {
 public:
  Builder(const ClusterJob& job, const Topology& topo, const ComputeModel& compute)
      : job_(job), topo_(topo), compute_(compute), place_(job), shape_(layer_shape(job)) {}

  TrainingPlan run() {
    const PipelineShape ps = job_.shape;
    graph_ = canonical_stages(job_.schedule, ps);
    layout_stages();
    const int32_t ranks = ps.p;
    for (int32_t r = 0; r < ranks; ++r) {
      const int32_t gpu = place_.gpu(0, 0, r);
      const DeviceId d = p_.add_device("stage " + std::to_string(r) + " (gpu " + std::to_string(gpu) + ")");
      compute_stream_.push_back(p_.add_stream(d, StreamKind::Compute, "compute"));
      recv_stream_.push_back(p_.add_stream(d, StreamKind::Comm, "p2p"));
      dp_stream_.push_back(p_.add_stream(d, StreamKind::Comm, "dp"));
      plan_.gpu_of_device.push_back(gpu);
    }
    previous_pass_.assign(static_cast<size_t>(ranks), kNone);
    const size_t slots = graph_.size() * static_cast<size_t>(graph_.microbatches);
    fwd_last_.assign(slots, kNone);
    bwd_last_.assign(slots, kNone);
    const auto actions = generate(job_.schedule, ps, graph_);
    for (int32_t r = 0; r < ranks; ++r) emit_rank(static_cast<DeviceId>(r), actions[static_cast<size_t>(r)]);
    for (const PendingDep& d : pending_) {
      const OpId on = (d.backward ? bwd_last_ : fwd_last_)[slot(d.stage, d.mb)];
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
  size_t slot(int32_t stage, int32_t mb) const {
    return static_cast<size_t>(mb) * graph_.size() + static_cast<size_t>(stage);
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

  /// The tensor-parallel ring around rank (dp, pp), in tp order.
  std::vector<int32_t> tp_ring(int32_t dp, int32_t pp) const {
    std::vector<int32_t> g;
    for (int32_t t = 0; t < job_.parallel.tp; ++t) g.push_back(place_.gpu(t, dp, pp));
    return g;
  }

  std::vector<int32_t> dp_ring(int32_t tp, int32_t pp) const {
    std::vector<int32_t> g;
    for (int32_t d = 0; d < job_.parallel.dp; ++d) g.push_back(place_.gpu(tp, d, pp));
    return g;
  }

  Time duration(const LayerOp& op) const {
    switch (op.kind) {
      case LayerOpKind::Gemm: return compute_.gemm(op.gemm);
      case LayerOpKind::Attention: return compute_.attention(op.attn);
      case LayerOpKind::Memory: return compute_.memory_bound(op.bytes);
      default: return Time::zero();
    }
  }

  /// Appends one op of the workload to device d's compute stream; returns the last op added.
  OpId add(DeviceId d, const LayerOp& op, Label label) {
    if (op.kind == LayerOpKind::TpAllGather || op.kind == LayerOpKind::TpReduceScatter ||
        op.kind == LayerOpKind::TpAllReduce) {
      const auto ring = tp_ring(0, static_cast<int32_t>(d));
      const CollectiveOp kind = op.kind == LayerOpKind::TpAllGather       ? CollectiveOp::AllGather
                                : op.kind == LayerOpKind::TpReduceScatter ? CollectiveOp::ReduceScatter
                                                                          : CollectiveOp::AllReduce;
      CollectiveSpec spec{kind, CollectiveAlgo::Ring, op.bytes, ring, {}, {}, {}};
      spec.label = label;
      spec.fuse_steps = true;
      spec.streams.assign(ring.size(), kNone);
      spec.streams[0] = compute_stream_[d];
      return expand_collective(p_, spec)[0];
    }
    Op o;
    o.stream = compute_stream_[d];
    o.label = label;
    o.duration = duration(op);
    return p_.add_op(o);
  }

  /// Runs `ops` for every layer of the stage (in `reverse` order for backward passes).
  OpId add_layers(DeviceId d, const StageLayout& st, Pass pass, Label label, bool reverse, OpId& first) {
    const auto ops = layer_ops(shape_, pass, job_.training.recompute);
    OpId last = kNone;
    for (int32_t i = 0; i < st.layers; ++i) {
      const int32_t layer = st.first_layer + (reverse ? st.layers - 1 - i : i);
      label.layer = layer;
      for (const LayerOp& op : ops) {
        last = add(d, op, label);
        if (first == kNone) first = last;
      }
      after_layer_grad(d, pass);
    }
    return last;
  }

  void add_extra(DeviceId d, const std::vector<LayerOp>& ops, Label label, OpId& first, OpId& last) {
    for (const LayerOp& op : ops) {
      last = add(d, op, label);
      if (first == kNone) first = last;
    }
  }

  /// The activations (or their gradients) of microbatch `mb` arriving from the stage `from`.
  void receive(DeviceId d, int32_t from, int32_t mb, bool backward, OpId consumer) {
    const auto src_rank = graph_.device[static_cast<size_t>(from)];
    if (src_rank == static_cast<int32_t>(d)) {
      pending_.push_back({consumer, backward, from, mb});
      return;
    }
    Op recv;
    recv.kind = OpKind::Recv;
    recv.stream = recv_stream_[d];
    recv.label.phase = backward ? Phase::B : Phase::F;
    recv.label.microbatch = mb;
    const OpId id = p_.add_op(recv);
    const OpId members[] = {id};
    // Each TP rank sends its sequence shard (or, without sequence parallelism, a 1/tp slice as
    // Megatron's scatter/gather optimisation does).
    const int64_t bytes = shape_.tokens() / shape_.tp * shape_.hidden * kBf16;
    const GroupId g = p_.add_group(GroupKind::Transfer, members, Bytes{bytes});
    // Every tensor-parallel rank of every data-parallel replica moves its shard at the same time.
    std::vector<Transfer> transfers;
    for (int32_t k = 0; k < job_.parallel.dp; ++k) {
      const auto from_ring = tp_ring(k, src_rank);
      const auto to_ring = tp_ring(k, static_cast<int32_t>(d));
      for (size_t t = 0; t < from_ring.size(); ++t) transfers.push_back({from_ring[t], to_ring[t], Bytes{bytes}});
    }
    p_.set_transfers(g, transfers);
    pending_.push_back({id, backward, from, mb});
    p_.add_dep(consumer, id);
  }

  /// A placeholder first op so dependencies have something to attach to before the real ops.
  OpId open_pass(DeviceId d, Label label) {
    Op o;
    o.stream = compute_stream_[d];
    o.label = label;
    o.label.layer = -1;
    return p_.add_op(o);
  }

  void forward(DeviceId d, int32_t s, int32_t mb) {
    const StageLayout& st = stages_[static_cast<size_t>(s)];
    Label label{Phase::F, graph_.chunk[static_cast<size_t>(s)], -1, s, mb};
    OpId first = open_pass(d, label);
    if (graph_.prev[static_cast<size_t>(s)] >= 0) receive(d, graph_.prev[static_cast<size_t>(s)], mb, false, first);
    zero3_gather(d, st, first);
    OpId last = first;
    if (st.embedding) add_extra(d, embedding_ops(shape_, Pass::Forward), label, first, last);
    const OpId l = add_layers(d, st, Pass::Forward, label, false, first);
    if (l != kNone) last = l;
    if (st.head) add_extra(d, head_ops(shape_, vocab(), Pass::Forward), label, first, last);
    p_.add_memory(first, activation_kib(st), 0);
    fwd_last_[slot(s, mb)] = last;
  }

  /// B (with W) or I of (s, mb).
  void backward(DeviceId d, int32_t s, int32_t mb, bool with_weights) {
    const StageLayout& st = stages_[static_cast<size_t>(s)];
    Label label{with_weights ? Phase::B : Phase::I, graph_.chunk[static_cast<size_t>(s)], -1, s, mb};
    OpId first = open_pass(d, label);
    pending_.push_back({first, false, s, mb});
    if (graph_.next[static_cast<size_t>(s)] >= 0) receive(d, graph_.next[static_cast<size_t>(s)], mb, true, first);
    zero3_gather(d, st, first);
    OpId last = first;
    if (st.head) add_extra(d, head_ops(shape_, vocab(), Pass::InputGrad), label, first, last);
    const OpId l = add_layers(d, st, Pass::InputGrad, label, true, first);
    if (l != kNone) last = l;
    // A fused B sends its gradient on only after the whole backward (autograd), W included.
    if (with_weights) {
      const OpId w = weights(d, s, mb, label);
      if (w != kNone) last = w;
    }
    bwd_last_[slot(s, mb)] = last;
  }

  /// Weight gradients of (s, mb); returns the last op. After the stage's last microbatch, every
  /// layer's gradients (and the embedding's and head's) are reduced over data parallelism.
  OpId weights(DeviceId d, int32_t s, int32_t mb, Label label) {
    const StageLayout& st = stages_[static_cast<size_t>(s)];
    label.phase = label.phase == Phase::I ? Phase::W : label.phase;
    label.microbatch = mb;
    OpId first = kNone;
    OpId last = kNone;
    grad_sync_ = --weight_passes_left_[static_cast<size_t>(s)] == 0;
    if (st.head) add_extra(d, head_ops(shape_, vocab(), Pass::WeightGrad), label, first, last);
    const OpId l = add_layers(d, st, Pass::WeightGrad, label, true, first);
    if (l != kNone) last = l;
    if (st.embedding) add_extra(d, embedding_ops(shape_, Pass::WeightGrad), label, first, last);
    if (grad_sync_ && (st.embedding || st.head)) grad_bucket(d, embedding_params(st));
    grad_sync_ = false;
    if (last != kNone) p_.add_memory(last, 0, activation_kib(st));
    return last;
  }

  /// After a layer's weight gradients of the last microbatch: reduce them over data parallelism.
  void after_layer_grad(DeviceId d, Pass pass) {
    if (pass == Pass::WeightGrad && grad_sync_) grad_bucket(d, layer_params(job_.model));
  }

  /// One gradient bucket of `params` (whole model, before tp) reduced over dp during the backward.
  void grad_bucket(DeviceId d, int64_t params) {
    if (job_.parallel.dp == 1 || !job_.parallel.overlap_grad_reduce || params == 0) return;
    const CollectiveOp op = job_.parallel.zero >= 1 ? CollectiveOp::ReduceScatter : CollectiveOp::AllReduce;
    dp_collective(d, op, params / job_.parallel.tp * kGradBytes, last_compute(d));
  }

  OpId last_compute(DeviceId d) const { return p_.stream(compute_stream_[d]).ops.back(); }

  /// A data-parallel collective of the representative on its dp stream, after `after`, carrying
  /// the twin rings of the other tensor-parallel ranks. Returns its last op.
  OpId dp_collective(DeviceId d, CollectiveOp op, int64_t bytes, OpId after) {
    CollectiveSpec spec{op, CollectiveAlgo::Ring, Bytes{bytes}, dp_ring(0, static_cast<int32_t>(d)), {}, {}, {}};
    spec.fuse_steps = true;
    spec.streams.assign(spec.gpus.size(), kNone);
    spec.streams[0] = dp_stream_[d];
    spec.label.phase = Phase::None;
    for (int32_t t = 1; t < job_.parallel.tp; ++t) spec.twins.push_back(dp_ring(t, static_cast<int32_t>(d)));
    const OpId first_after[] = {after};
    return expand_collective(p_, spec, after == kNone ? std::span<const OpId>{} : first_after)[0];
  }

  /// ZeRO-3: gather the stage's parameters before each pass (no caching across microbatches),
  /// prefetched at most one pass ahead: it may start once the previous pass has started.
  void zero3_gather(DeviceId d, const StageLayout& st, OpId consumer) {
    if (job_.parallel.zero < 3 || job_.parallel.dp == 1) return;
    const int64_t bytes = stage_params(st) / job_.parallel.tp * kParamBytes;
    const OpId last = dp_collective(d, CollectiveOp::AllGather, bytes, previous_pass_[d]);
    previous_pass_[d] = consumer;
    if (last != kNone) p_.add_dep(consumer, last);
  }

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

  double largest_stage_params(DeviceId d) const {
    double most = 0;
    for (size_t s = 0; s < graph_.size(); ++s) {
      if (graph_.device[s] == static_cast<int32_t>(d)) {
        most = std::max(most, static_cast<double>(stage_params(stages_[s])) / job_.parallel.tp);
      }
    }
    return most;
  }

  /// Activations one microbatch keeps alive on a stage, per token per layer in bf16: the norm
  /// inputs and residuals (4h; sharded by tp only with sequence parallelism), Q/K/V and the
  /// attention output (2h + 2h_kv, sharded), the MLP intermediates (4i for SwiGLU, 2i for GELU,
  /// sharded), and without FlashAttention the scores, probabilities and dropout mask
  /// (5 a s / t bytes, Korthikanti et al.) unless recomputed. Full recompute keeps only the
  /// layer input (2h, sharded with sequence parallelism).
  double activation_bytes(const StageLayout& st) const {
    const ResolvedModel& m = job_.model;
    const double t = job_.parallel.tp;
    const double h = m.hidden;
    const double h_kv = static_cast<double>(m.kv_heads) * (h / m.heads);
    const double replicated = job_.parallel.sequence_parallel ? t : 1;
    double per_token = 0;
    if (job_.training.recompute == "full") {
      per_token = 2 * h / replicated;
    } else {
      const double mlp = (m.activation == "swiglu" ? 4.0 : 2.0) * m.ffn_hidden;
      per_token = 2 * 4 * h / replicated + 2 * (2 * h + 2 * h_kv + mlp) / t;
      if (job_.training.attention_kernel == "unfused" && job_.training.recompute == "none") {
        per_token += 5.0 * m.heads * static_cast<double>(job_.training.seq_len) / t;
      }
    }
    return per_token * static_cast<double>(shape_.tokens()) * st.layers;
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

  void emit_rank(DeviceId d, const RankActions& actions) {
    weight_passes_left_.assign(graph_.size(), 0);
    for (size_t s = 0; s < graph_.size(); ++s) {
      if (graph_.device[s] == static_cast<int32_t>(d)) weight_passes_left_[s] = graph_.microbatches;
    }
    for (const Action& a : actions) {
      switch (a.phase) {
        case Phase::F: forward(d, a.stage, a.microbatch); break;
        case Phase::B: backward(d, a.stage, a.microbatch, true); break;
        case Phase::I: backward(d, a.stage, a.microbatch, false); break;
        case Phase::W: {
          Label label{Phase::W, graph_.chunk[static_cast<size_t>(a.stage)], -1, a.stage, a.microbatch};
          weights(d, a.stage, a.microbatch, label);
          break;
        }
        case Phase::FB:
          forward(d, a.stage, a.microbatch);
          backward(d, a.b_stage, a.b_microbatch, true);
          break;
        case Phase::None: break;
      }
    }
    optimizer(d);
  }

  /// The optimizer step after every gradient reduction, then ZeRO's parameter all-gather.
  void optimizer(DeviceId d) {
    int64_t params = 0;
    for (size_t s = 0; s < graph_.size(); ++s) {
      if (graph_.device[s] == static_cast<int32_t>(d)) params += stage_params(stages_[s]) / job_.parallel.tp;
    }
    if (!job_.parallel.overlap_grad_reduce && job_.parallel.dp > 1) {
      // All gradients at once after the backward (Megatron-LM before overlapped buckets).
      const CollectiveOp op = job_.parallel.zero >= 1 ? CollectiveOp::ReduceScatter : CollectiveOp::AllReduce;
      dp_collective(d, op, params * kGradBytes, last_compute(d));
    }
    const int64_t local = job_.parallel.zero >= 1 ? params / job_.parallel.dp : params;
    Op o;
    o.stream = compute_stream_[d];
    o.duration = compute_.memory_bound(Bytes{local * kOptimizerTraffic});
    const OpId opt = p_.add_op(o);
    const auto& dp_ops = p_.stream(dp_stream_[d]).ops;
    if (!dp_ops.empty()) p_.add_dep(opt, dp_ops.back());
    const int32_t zero = job_.parallel.zero;
    if ((zero == 1 || zero == 2) && job_.parallel.dp > 1) dp_collective(d, CollectiveOp::AllGather, params * kParamBytes, opt);
    MemoryEstimate mem;
    const double dp = job_.parallel.dp;
    mem.params = static_cast<double>(params) * kParamBytes / (zero >= 3 ? dp : 1);
    if (zero >= 3) mem.params += largest_stage_params(d) * kParamBytes;  // the gathered stage
    mem.grads = static_cast<double>(params) * kGradBytes / (job_.parallel.zero >= 2 ? dp : 1);
    mem.optimizer = static_cast<double>(params) * kOptimizerBytes / (job_.parallel.zero >= 1 ? dp : 1);
    plan_.memory.push_back(mem);
  }

  void finish_plan() {
    const int64_t sequences = job_.training.global_batch_size;
    plan_.tokens = sequences * job_.training.seq_len;
    for (const char* dim : {"tp", "dp", "pp"}) {
      if (place_.crosses_nodes(dim, topo_)) plan_.notes.push_back(std::string(dim) + " groups cross nodes");
    }
  }

  const ClusterJob& job_;
  const Topology& topo_;
  const ComputeModel& compute_;
  RankPlacement place_;
  LayerShape shape_;
  Program p_;
  StageGraph graph_;
  std::vector<StageLayout> stages_;
  std::vector<StreamId> compute_stream_, recv_stream_, dp_stream_;
  std::vector<OpId> fwd_last_, bwd_last_;
  std::vector<PendingDep> pending_;
  std::vector<int32_t> weight_passes_left_;
  std::vector<OpId> previous_pass_;  // per device: the first op of its latest pass (ZeRO-3 prefetch)
  bool grad_sync_ = false;
  TrainingPlan plan_;
};

}  // namespace

RankPlacement::RankPlacement(const ClusterJob& job) {
  const ParallelSpec& ps = job.parallel;
  tp_ = ps.tp;
  dp_ = ps.dp;
  pp_ = ps.pp;
  int32_t stride = 1;
  for (const std::string& dim : ps.placement) {
    if (dim == "tp") stride_tp_ = stride, stride *= ps.tp;
    else if (dim == "dp") stride_dp_ = stride, stride *= ps.dp;
    else if (dim == "pp") stride_pp_ = stride, stride *= ps.pp;
    else if (dim == "ulysses") stride *= ps.ulysses;
    else if (dim == "ring") stride *= ps.ring;
  }
}

int32_t RankPlacement::gpu(int32_t tp, int32_t dp, int32_t pp) const {
  return tp * stride_tp_ + dp * stride_dp_ + pp * stride_pp_;
}

bool RankPlacement::crosses_nodes(const std::string& dim, const Topology& topo) const {
  const int32_t n = dim == "tp" ? tp_ : dim == "dp" ? dp_ : pp_;
  const int32_t last = dim == "tp" ? gpu(n - 1, 0, 0) : dim == "dp" ? gpu(0, n - 1, 0) : gpu(0, 0, n - 1);
  return topo.node_of(gpu(0, 0, 0)) != topo.node_of(last);
}

TrainingPlan build_training(const ClusterJob& job, const Topology& topo, const ComputeModel& compute) {
  if (job.parallel.ulysses > 1 || job.parallel.ring > 1) {
    throw InputError("parallel.ulysses / parallel.ring: sequence parallelism is not simulated in this version yet");
  }
  return Builder(job, topo, compute).run();
}

}  // namespace bubblesim::sim
