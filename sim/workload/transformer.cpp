#include "sim/workload/transformer.hpp"

#include <algorithm>
#include <string>

#include "sim/core/error.hpp"

namespace bubblesim::sim {
namespace {

constexpr int64_t kBf16 = 2;

LayerOp gemm_op(std::string_view name, int64_t m, int64_t n, int64_t k) {
  return {LayerOpKind::Gemm, name, GemmShape{m, n, k}, {}, {}};
}

LayerOp memory_op(std::string_view name, int64_t bytes) { return {LayerOpKind::Memory, name, {}, {}, Bytes{bytes}}; }

/// A TP collective on the layer's activations: nccl-tests size = the whole gathered tensor.
LayerOp tp_op(LayerOpKind kind, std::string_view name, const LayerShape& s) {
  return {kind, name, {}, {}, Bytes{s.tokens() * s.hidden * kBf16}};
}

struct Gemm {
  std::string_view name;
  int64_t m, n, k;
};

/// The forward GEMMs of a layer on one TP rank, in order.
std::vector<Gemm> forward_gemms(const LayerShape& s) {
  const int64_t T = s.tokens();
  const int64_t qkv = (s.heads + 2 * s.kv_heads) * s.head_dim() / s.tp;
  const int64_t up = (s.swiglu ? 2 : 1) * s.ffn / s.tp;
  return {{"qkv", T, qkv, s.hidden}, {"o_proj", T, s.hidden, s.hidden / s.tp},
          {"gate_up", T, up, s.hidden}, {"down", T, s.hidden, s.ffn / s.tp}};
}

AttentionShape attention(const LayerShape& s, bool backward) {
  const auto n = static_cast<double>(s.attention_seq());
  return {s.batch, s.attention_seq(), s.attention_seq(), s.attention_heads(), s.head_dim(), (n + 1) / (2 * n), backward};
}

/// Ulysses: Q, K, V (or their gradients) between sequence- and head-sharded layouts.
void ulysses_qkv(const LayerShape& s, bool backward, std::vector<LayerOp>& ops) {
  if (s.ulysses == 1) return;
  const int64_t q = s.tokens() * s.heads / s.tp * s.head_dim() * kBf16;
  const int64_t kv = s.tokens() * s.kv_heads / s.tp * s.head_dim() * kBf16;
  ops.push_back({LayerOpKind::UlyssesAllToAll, backward ? "ulysses_a2a_dq" : "ulysses_a2a_q", {}, {}, Bytes{q}});
  ops.push_back({LayerOpKind::UlyssesAllToAll, backward ? "ulysses_a2a_dk" : "ulysses_a2a_k", {}, {}, Bytes{kv}});
  ops.push_back({LayerOpKind::UlyssesAllToAll, backward ? "ulysses_a2a_dv" : "ulysses_a2a_v", {}, {}, Bytes{kv}});
}

/// Ulysses: the attention output (or its gradient) between head- and sequence-sharded layouts.
void ulysses_out(const LayerShape& s, bool backward, std::vector<LayerOp>& ops) {
  if (s.ulysses == 1) return;
  const int64_t o = s.tokens() * s.heads / s.tp * s.head_dim() * kBf16;
  ops.push_back({LayerOpKind::UlyssesAllToAll, backward ? "ulysses_a2a_do" : "ulysses_a2a_o", {}, {}, Bytes{o}});
}

int64_t activation_bytes(const LayerShape& s) { return (s.swiglu ? 3 : 2) * s.tokens() * s.ffn / s.tp * kBf16; }

/// Residual add and norm: read twice, write twice (a fused add-norm) on the sequence shard with
/// sequence parallelism, on the whole sequence (replicated on every TP rank) without. With
/// dropout, Megatron's bias-dropout-add kernel (reads the output and the residual, writes the sum
/// and a 1-byte mask) runs before the norm (reads and writes): 2 + 2 + 2 + 1 + 2 + 2 bytes per
/// element; its backward reads the mask as well.
int64_t norm_bytes(const LayerShape& s, bool backward = false) {
  const int64_t elements = s.tokens() / (s.sequence_parallel ? s.tp : 1) * s.hidden;
  if (!s.dropout) return 4 * kBf16 * elements;
  return (backward ? 4 * kBf16 + 1 : 5 * kBf16 + 1) * elements;
}

/// Before a column-parallel GEMM: all-gather the sequence shards (sequence parallelism only).
void gather(const LayerShape& s, std::string_view name, std::vector<LayerOp>& ops) {
  if (s.tp > 1 && s.sequence_parallel) ops.push_back(tp_op(LayerOpKind::TpAllGather, name, s));
}

/// After a row-parallel GEMM: reduce-scatter to shards, or all-reduce without sequence parallelism.
void reduce(const LayerShape& s, std::string_view name, std::vector<LayerOp>& ops) {
  if (s.tp == 1) return;
  ops.push_back(tp_op(s.sequence_parallel ? LayerOpKind::TpReduceScatter : LayerOpKind::TpAllReduce, name, s));
}

/// Attention without FlashAttention (Megatron-LM before FlashAttention): per (sequence, local
/// head) a QK^T GEMM, the scaled, masked softmax and the attention dropout through memory over the
/// s x s scores, and a PV GEMM. Bytes per score element, kernel by kernel (16-bit scores, 1-byte
/// dropout mask): forward, fused scale-mask-softmax reads 2 and writes 2, dropout (when training
/// with it) reads 2 and writes 2 plus the mask; backward, dropout's backward reads the gradient and
/// the mask and writes 2, softmax's backward reads the probabilities and the gradient and writes 2.
void unfused_attention(const LayerShape& s, bool backward, std::vector<LayerOp>& ops) {
  const int64_t batch = s.batch * s.heads / s.tp;
  const int64_t forward_bytes = (2 + 2) + (s.dropout ? 2 + 2 + 1 : 0);
  const int64_t backward_bytes = (s.dropout ? 2 + 1 + 2 : 0) + (2 + 2 + 2);
  const int64_t scores = batch * s.seq * s.seq * (backward ? backward_bytes : forward_bytes);
  LayerOp qk = gemm_op(backward ? "scores_grad" : "scores", s.seq, s.seq, s.head_dim());
  LayerOp pv = gemm_op(backward ? "context_grad" : "context", s.seq, s.head_dim(), s.seq);
  qk.gemm.batch = batch;
  pv.gemm.batch = batch;
  const int64_t passes = backward ? 2 : 1;  // a backward runs each GEMM twice (both operands)
  for (int64_t i = 0; i < passes; ++i) ops.push_back(backward ? pv : qk);
  ops.push_back(memory_op(backward ? "softmax_grad" : "softmax", scores));
  for (int64_t i = 0; i < passes; ++i) ops.push_back(backward ? qk : pv);
}

/// Core attention with the Ulysses all-to-alls around it: forward Q, K, V in and O out;
/// backward dO in and dQ, dK, dV out.
void attention_ops(const LayerShape& s, bool backward, std::vector<LayerOp>& ops) {
  if (!s.flash_attention) {
    unfused_attention(s, backward, ops);
    return;
  }
  if (backward) ulysses_out(s, true, ops); else ulysses_qkv(s, false, ops);
  ops.push_back({LayerOpKind::Attention, backward ? "attention_grad" : "attention", {}, attention(s, backward), {}});
  if (backward) ulysses_qkv(s, true, ops); else ulysses_out(s, false, ops);
}

std::vector<LayerOp> forward(const LayerShape& s) {
  const auto g = forward_gemms(s);
  std::vector<LayerOp> ops;
  ops.push_back(memory_op("norm_attn", norm_bytes(s)));
  gather(s, "tp_ag_attn", ops);
  ops.push_back(gemm_op(g[0].name, g[0].m, g[0].n, g[0].k));
  attention_ops(s, false, ops);
  ops.push_back(gemm_op(g[1].name, g[1].m, g[1].n, g[1].k));
  reduce(s, "tp_rs_attn", ops);
  ops.push_back(memory_op("norm_mlp", norm_bytes(s)));
  gather(s, "tp_ag_mlp", ops);
  ops.push_back(gemm_op(g[2].name, g[2].m, g[2].n, g[2].k));
  ops.push_back(memory_op("activation", activation_bytes(s)));
  ops.push_back(gemm_op(g[3].name, g[3].m, g[3].n, g[3].k));
  reduce(s, "tp_rs_mlp", ops);
  return ops;
}

/// Input gradients: the forward in reverse, each GEMM as its dgrad (m, k, n), each TP
/// collective as its dual.
std::vector<LayerOp> input_grad(const LayerShape& s) {
  const auto g = forward_gemms(s);
  std::vector<LayerOp> ops;
  gather(s, "tp_ag_mlp_grad", ops);
  ops.push_back(gemm_op("down_dgrad", g[3].m, g[3].k, g[3].n));
  ops.push_back(memory_op("activation_grad", activation_bytes(s) * 2));
  ops.push_back(gemm_op("gate_up_dgrad", g[2].m, g[2].k, g[2].n));
  reduce(s, "tp_rs_mlp_grad", ops);
  ops.push_back(memory_op("norm_mlp_grad", norm_bytes(s, true)));
  gather(s, "tp_ag_attn_grad", ops);
  ops.push_back(gemm_op("o_proj_dgrad", g[1].m, g[1].k, g[1].n));
  attention_ops(s, true, ops);
  ops.push_back(gemm_op("qkv_dgrad", g[0].m, g[0].k, g[0].n));
  reduce(s, "tp_rs_attn_grad", ops);
  ops.push_back(memory_op("norm_attn_grad", norm_bytes(s, true)));
  return ops;
}

/// Weight gradients: dW[k, n] = A^T[k, m] x dC[m, n] for every forward GEMM. With sequence
/// parallelism the column-parallel GEMMs (qkv, gate_up) saved only their input shard, which is
/// all-gathered again first (Megatron: 6 all-gathers and 4 reduce-scatters per layer in all).
std::vector<LayerOp> weight_grad(const LayerShape& s) {
  std::vector<LayerOp> ops;
  const auto g = forward_gemms(s);
  constexpr std::string_view kNames[] = {"qkv_wgrad", "o_proj_wgrad", "gate_up_wgrad", "down_wgrad"};
  constexpr std::string_view kGathers[] = {"tp_ag_qkv_wgrad", "", "tp_ag_gate_up_wgrad", ""};
  for (size_t i = g.size(); i-- > 0;) {
    if (!kGathers[i].empty()) gather(s, kGathers[i], ops);
    ops.push_back(gemm_op(kNames[i], g[i].k, g[i].n, g[i].m));
  }
  return ops;
}

}  // namespace

LayerShape layer_shape(const ClusterJob& job) {
  const ResolvedModel& m = job.model;
  return {job.training.micro_batch_size, job.training.seq_len, job.parallel.tp, m.hidden, m.heads, m.kv_heads,
          m.ffn_hidden, m.activation == "swiglu", job.training.attention_kernel != "unfused",
          job.parallel.sequence_parallel, job.parallel.ulysses, job.parallel.ring, job.training.dropout > 0};
}

std::vector<LayerOp> layer_ops(const LayerShape& s, Pass pass, std::string_view recompute) {
  switch (pass) {
    case Pass::Forward: return forward(s);
    case Pass::WeightGrad: return weight_grad(s);
    case Pass::InputGrad: {
      std::vector<LayerOp> ops;
      if (recompute == "full") ops = forward(s);
      // Selective recompute reruns the core attention from its saved (head-sharded) inputs:
      // no Ulysses all-to-all again, but a ring circulates K/V again.
      if (recompute == "selective" && s.flash_attention) {
        ops.push_back({LayerOpKind::Attention, "attention_recompute", {}, attention(s, false), {}});
      } else if (recompute == "selective") {
        unfused_attention(s, false, ops);
      }
      for (LayerOp& op : input_grad(s)) ops.push_back(op);
      return ops;
    }
  }
  return {};
}

std::vector<LayerOp> merge_all_to_alls(const std::vector<LayerOp>& ops) {
  std::vector<LayerOp> out;
  for (const LayerOp& op : ops) {
    if (op.kind == LayerOpKind::UlyssesAllToAll && !out.empty() && out.back().kind == LayerOpKind::UlyssesAllToAll) {
      out.back().bytes = Bytes{out.back().bytes.value + op.bytes.value};
      out.back().merged += op.merged;
      continue;
    }
    out.push_back(op);
  }
  return out;
}

std::vector<LayerOp> core_attention_ops(const LayerShape& s, bool backward) {
  std::vector<LayerOp> ops;
  attention_ops(s, backward, ops);
  return ops;
}

std::vector<LayerOp> embedding_ops(const LayerShape& s, Pass pass) {
  // Vocab-parallel embedding: each rank looks up its rows, then the partial embeddings are
  // summed (reduce-scatter to shards with sequence parallelism, all-reduce without).
  const int64_t bytes = 2 * s.tokens() * s.hidden * kBf16;
  std::vector<LayerOp> ops;
  if (pass == Pass::Forward) {
    ops.push_back(memory_op("embedding", bytes));
    reduce(s, "tp_rs_embedding", ops);
  } else if (pass == Pass::WeightGrad) {
    gather(s, "tp_ag_embedding_grad", ops);
    ops.push_back(memory_op("embedding_grad", 2 * bytes));
  }
  return ops;
}

std::vector<LayerOp> head_ops(const LayerShape& s, int64_t vocab, Pass pass) {
  const int64_t T = s.tokens();
  const int64_t v = vocab / s.tp;
  const int64_t logits = T * v * kBf16;
  std::vector<LayerOp> ops;
  switch (pass) {
    case Pass::Forward:
      ops.push_back(memory_op("final_norm", norm_bytes(s)));
      gather(s, "tp_ag_head", ops);
      ops.push_back(gemm_op("lm_head", T, v, s.hidden));
      ops.push_back(memory_op("cross_entropy", 3 * logits));
      break;
    case Pass::InputGrad:
      ops.push_back(memory_op("cross_entropy_grad", 2 * logits));
      ops.push_back(gemm_op("lm_head_dgrad", T, s.hidden, v));
      reduce(s, "tp_rs_head_grad", ops);
      break;
    case Pass::WeightGrad: ops.push_back(gemm_op("lm_head_wgrad", s.hidden, v, T)); break;
  }
  return ops;
}

double activation_bytes_per_token(const ResolvedModel& m, int64_t tp, bool sequence_parallel,
                                  std::string_view recompute, bool flash_attention, int64_t seq, bool dropout) {
  const double t = static_cast<double>(tp);
  const double h = m.hidden;
  const double h_kv = static_cast<double>(m.kv_heads) * (h / m.heads);
  const double replicated = sequence_parallel ? t : 1;
  if (recompute == "full") return 2 * h / replicated;
  const double mlp = (m.activation == "swiglu" ? 4.0 : 2.0) * m.ffn_hidden;
  double per_token = 2 * 4 * h / replicated + 2 * (2 * h + 2 * h_kv + mlp) / t;
  if (dropout) per_token += 2 * h / replicated;  // two 1-byte masks on the residual path
  if (!flash_attention && recompute == "none") {
    per_token += (dropout ? 5.0 : 2.0) * m.heads * static_cast<double>(seq) / t;
  }
  return per_token;
}

int64_t layer_params(const ResolvedModel& m) {
  const int64_t h = m.hidden;
  const int64_t kv = static_cast<int64_t>(m.kv_heads) * (h / m.heads);
  const int64_t mlp = (m.activation == "swiglu" ? 3 : 2) * h * static_cast<int64_t>(m.ffn_hidden);
  return 2 * h * h + 2 * h * kv + mlp;
}

FlopsAccounting parse_flops_accounting(std::string_view name) {
  if (name == "megatron") return FlopsAccounting::Megatron;
  if (name == "noncausal") return FlopsAccounting::NonCausal;
  if (name == "megatron-sc21") return FlopsAccounting::MegatronSc21;
  throw InputError("--flops-accounting: unknown convention \"" + std::string(name) +
                   "\" (valid: megatron, noncausal, megatron-sc21)");
}

const char* describe(FlopsAccounting a) {
  switch (a) {
    case FlopsAccounting::Megatron: return "Megatron-LM today: matmul FLOPs, causal attention as half, no recompute";
    case FlopsAccounting::NonCausal: return "matmul FLOPs with full (non-causal) attention, no recompute";
    case FlopsAccounting::MegatronSc21: return "Megatron-LM SC21: non-causal attention, recompute forward counted";
  }
  return "?";
}

double model_flops_per_iteration(const ResolvedModel& m, int64_t seq, int64_t sequences, FlopsAccounting a,
                                 bool full_recompute) {
  // Megatron-LM num_floating_point_operations: 3 (fwd + dgrad + wgrad) x 2 (FMA) x matmul MACs,
  // causal attention as half (algorithms.md 2.6). Forward-only terms below are a third of these.
  const double T = static_cast<double>(seq) * static_cast<double>(sequences);
  const double h = m.hidden;
  const double q = h;
  const double k = static_cast<double>(m.kv_heads) * (h / m.heads);
  const double linear = 6 * T * (h * (q + 2 * k) + q * h);
  const double core = 6 * q * static_cast<double>(seq) * static_cast<double>(seq) * static_cast<double>(sequences);
  const double mlp = (m.activation == "swiglu" ? 18 : 12) * T * h * m.ffn_hidden;
  const double logits = 6 * T * h * m.vocab;
  switch (a) {
    case FlopsAccounting::Megatron: return m.layers * (linear + core + mlp) + logits;
    case FlopsAccounting::NonCausal: return m.layers * (linear + 2 * core + mlp) + logits;
    case FlopsAccounting::MegatronSc21: {
      const double passes = full_recompute ? 4 : 3;  // forward, 2x backward, and the recompute
      return m.layers * passes / 3 * (linear + 2 * core + mlp) + logits;
    }
  }
  return 0;
}

}  // namespace bubblesim::sim
