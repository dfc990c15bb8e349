// What one Llama-style transformer layer computes on one tensor-parallel rank (Megatron-LM with
// sequence parallelism): its GEMMs, attention, memory-bound ops and TP collectives, for the
// forward, input-gradient and weight-gradient passes, with shapes and model FLOPs
// (algorithms.md 2.6). Plus the embedding and LM-head work of the first and last stages.
// Not a scheduler: sim/sched/training.hpp places these ops on streams and devices.
#pragma once

#include <string_view>
#include <vector>

#include "sim/model/compute.hpp"
#include "sim/scenario/cluster_job.hpp"

namespace bubblesim::sim {

enum class Pass : uint8_t { Forward, InputGrad, WeightGrad };

enum class LayerOpKind : uint8_t {
  Gemm, Attention, Memory, TpAllGather, TpReduceScatter, TpAllReduce,
  UlyssesAllToAll,  // over the Ulysses group; bytes = the per-rank send buffer (nccl-tests size)
};

struct LayerOp {
  LayerOpKind kind;
  std::string_view name;
  GemmShape gemm{};       // Gemm
  AttentionShape attn{};  // Attention (on the whole of the ring rank's block; ring steps split it)
  Bytes bytes;            // Memory: HBM traffic; Tp*: nccl-tests size (whole gathered tensor)
  int32_t merged = 1;     // collectives: how many back-to-back ones of this kind it stands for
};

/// Merges runs of consecutive Ulysses all-to-alls (Q, K, V in; dQ, dK, dV out) into one op with
/// their sizes summed and `merged` set: the same bytes and latencies over the same links, with a
/// third of the groups and flows to simulate.
std::vector<LayerOp> merge_all_to_alls(const std::vector<LayerOp>& ops);

/// The sizes one tensor-parallel rank works with.
struct LayerShape {
  int64_t batch;    // sequences per microbatch
  int64_t seq;      // tokens per sequence
  int64_t tp;
  int64_t hidden, heads, kv_heads, ffn;
  bool swiglu;
  bool flash_attention = true;  // false: QK^T and PV as batched GEMMs, softmax through memory
  bool sequence_parallel = true;  // false (Megatron before 2022): all-reduces, norms replicated
  int64_t ulysses = 1, ring = 1;  // sequence-parallel degrees: each rank holds seq / (ulysses ring)
  bool dropout = false;           // dropout masks through memory (training.dropout > 0)
  /// Tokens of a microbatch the rank's GEMMs see (its sequence shard, gathered over tp).
  int64_t tokens() const { return batch * seq / (ulysses * ring); }
  int64_t head_dim() const { return hidden / heads; }
  /// Attention after the Ulysses all-to-all: seq / ring tokens of heads / (tp ulysses) heads.
  int64_t attention_seq() const { return seq / ring; }
  int64_t attention_heads() const { return heads / (tp * ulysses); }
  int64_t attention_kv_heads() const { return kv_heads / (tp * ulysses); }
};

LayerShape layer_shape(const ClusterJob& job);

/// The ops of one layer for one pass, in execution order. `recompute` "full" puts the forward
/// again in front of the input-gradient pass, "selective" the attention forward only.
std::vector<LayerOp> layer_ops(const LayerShape& s, Pass pass, std::string_view recompute = "none");

/// The distributed core attention alone, as attention benchmarks time it: the Ulysses
/// all-to-alls and the attention (forward), or their gradients (backward).
std::vector<LayerOp> core_attention_ops(const LayerShape& s, bool backward);

/// Embedding (first stage) and LM head with the loss (last stage) for one pass.
std::vector<LayerOp> embedding_ops(const LayerShape& s, Pass pass);
std::vector<LayerOp> head_ops(const LayerShape& s, int64_t vocab, Pass pass);

/// How model FLOPs are counted, to compare with a source on its own terms.
enum class FlopsAccounting : uint8_t {
  Megatron,      // Megatron-LM today: matmuls, 3x forward, causal attention as half, no recompute
  NonCausal,     // the same with full (non-causal) attention, as PaLM-style MFU counts it
  MegatronSc21,  // Megatron-LM SC21: non-causal attention and the recompute forward counted (4x)
};
FlopsAccounting parse_flops_accounting(std::string_view name);
const char* describe(FlopsAccounting a);

/// Model FLOPs of one iteration for `sequences` sequences of the model at length `seq`;
/// `full_recompute` matters only for MegatronSc21.
double model_flops_per_iteration(const ResolvedModel& m, int64_t seq, int64_t sequences,
                                 FlopsAccounting a = FlopsAccounting::Megatron, bool full_recompute = false);

/// Activation bytes one layer keeps per token of a microbatch for its backward, in bf16: the
/// norm inputs and residuals (4h; sharded by tp only with sequence parallelism), Q/K/V and the
/// attention output (2h + 2h_kv, sharded), the MLP intermediates (4i for SwiGLU, 2i for GELU,
/// sharded), and without FlashAttention the softmax output (2 a s / t bytes) unless recomputed.
/// With dropout (Korthikanti et al.'s 34 s b h + 5 a s^2 b / t): the two hidden dropout masks
/// (2h, sharded as the norms) and, without FlashAttention, the attention dropout's mask and
/// output (3 a s / t more). Full recompute keeps only the layer input (2h, sharded with sequence
/// parallelism).
double activation_bytes_per_token(const ResolvedModel& m, int64_t tp, bool sequence_parallel,
                                  std::string_view recompute, bool flash_attention, int64_t seq, bool dropout);

/// Parameters of one transformer layer (GQA, SwiGLU or GELU MLP; norms ignored).
int64_t layer_params(const ResolvedModel& m);

}  // namespace bubblesim::sim
