#include "sim/scenario/cluster_job.hpp"

#include <numeric>

#include "sim/core/error.hpp"

namespace bubblesim::sim {
namespace {

constexpr int32_t kMaxWorld = 1 << 20;    // GPUs
constexpr int32_t kMaxLayers = 100'000;
constexpr int32_t kMaxWidth = 1 << 20;    // hidden, ffn_hidden
constexpr int64_t kMaxTokens = int64_t{1} << 34;
constexpr int64_t kMaxUnfusedSeq = 1 << 20;
constexpr int32_t kMaxVocab = 1 << 24;

[[noreturn]] void fail(const Scenario& sc, const std::string& key, const std::string& rule) {
  throw InputError(sc.where(key) + ": " + key + ": " + rule);
}

bool given(const Scenario& sc, const std::string& key) {
  for (const auto& [path, loc] : sc.locations) {
    if (path == key) return true;
  }
  return false;
}

std::string divisors_up_to(int32_t n, int32_t limit) {
  std::string s;
  for (int32_t d = 1; d <= n && d <= limit; ++d) {
    if (n % d == 0) s += (s.empty() ? "" : ", ") + std::to_string(d);
  }
  return s;
}

ResolvedModel resolve_model(const Scenario& sc) {
  const ModelSpec& m = *sc.model;
  ResolvedModel r;
  if (!m.preset.empty()) {
    const ModelPreset* p = nullptr;
    try {
      p = &find_model(m.preset, "model.preset");
    } catch (const InputError& e) {
      throw InputError(sc.where("model.preset") + ": " + e.what());
    }
    r = {std::string(p->id), p->layers, p->hidden, p->heads, p->kv_heads, p->ffn_hidden, p->vocab,
         std::string(p->activation), p->tied_embeddings};
  }
  const std::pair<const char*, std::pair<const std::optional<int32_t>*, int32_t*>> fields[] = {
      {"layers", {&m.layers, &r.layers}},     {"hidden", {&m.hidden, &r.hidden}},
      {"heads", {&m.heads, &r.heads}},        {"kv_heads", {&m.kv_heads, &r.kv_heads}},
      {"ffn_hidden", {&m.ffn_hidden, &r.ffn_hidden}}, {"vocab", {&m.vocab, &r.vocab}}};
  std::string missing;
  for (const auto& [name, slot] : fields) {
    if (*slot.first) *slot.second = **slot.first;
    if (*slot.second == 0) missing += (missing.empty() ? "" : ", ") + std::string(name);
  }
  if (!missing.empty()) fail(sc, "model", "missing " + missing + " (give a preset or every field)");
  if (given(sc, "model.activation")) r.activation = m.activation;
  if (m.tied_embeddings) r.tied_embeddings = *m.tied_embeddings;
  if (r.layers > kMaxLayers) fail(sc, "model.layers", "at most " + std::to_string(kMaxLayers));
  if (r.vocab > kMaxVocab) fail(sc, "model.vocab", "at most " + std::to_string(kMaxVocab) + " tokens");
  if (r.hidden > kMaxWidth || r.ffn_hidden > kMaxWidth) fail(sc, "model.hidden", "hidden sizes above 2^20 are not supported");
  if (r.hidden % r.heads != 0) {
    fail(sc, "model.heads", std::to_string(r.heads) + " heads do not divide hidden " + std::to_string(r.hidden));
  }
  if (r.heads % r.kv_heads != 0) {
    fail(sc, "model.kv_heads", std::to_string(r.kv_heads) + " KV heads do not divide " + std::to_string(r.heads) +
                                   " query heads");
  }
  return r;
}

void check_parallel(const Scenario& sc, ClusterJob& job) {
  const ParallelSpec& ps = job.parallel;
  const ResolvedModel& m = job.model;
  const int64_t degrees = static_cast<int64_t>(ps.dp) * ps.tp * ps.pp * ps.ulysses * ps.ring;
  if (degrees != job.cluster.world()) {
    fail(sc, "parallel", "dp x tp x pp x ulysses x ring = " + std::to_string(ps.dp) + " x " + std::to_string(ps.tp) +
                             " x " + std::to_string(ps.pp) + " x " + std::to_string(ps.ulysses) + " x " +
                             std::to_string(ps.ring) + " = " + std::to_string(degrees) + " but the cluster has " +
                             std::to_string(job.cluster.nodes) + " x " + std::to_string(job.cluster.gpus_per_node) +
                             " = " + std::to_string(job.cluster.world()) + " GPUs");
  }
  if (m.heads % ps.tp != 0 || m.kv_heads % ps.tp != 0) {
    fail(sc, "parallel.tp", "tp " + std::to_string(ps.tp) + " must divide the heads (" + std::to_string(m.heads) +
                                ") and the KV heads (" + std::to_string(m.kv_heads) +
                                "); valid: " + divisors_up_to(m.kv_heads, m.kv_heads));
  }
  const int32_t per_tp_kv = m.kv_heads / ps.tp;
  if ((m.heads / ps.tp) % ps.ulysses != 0 || per_tp_kv % ps.ulysses != 0) {
    fail(sc, "parallel.ulysses", "ulysses " + std::to_string(ps.ulysses) + " must divide the heads per tp rank (" +
                                     std::to_string(m.heads / ps.tp) + ") and the KV heads per tp rank (" +
                                     std::to_string(per_tp_kv) + "); valid: " + divisors_up_to(per_tp_kv, per_tp_kv));
  }
  const int32_t v = job.shape.v;
  if (ps.partition.empty()) {
    if (m.layers % (ps.pp * v) != 0) {
      fail(sc, "parallel.pp", "pp x virtual_stages = " + std::to_string(ps.pp * v) + " does not divide the " +
                                  std::to_string(m.layers) + " layers; give parallel.partition or choose pp from " +
                                  divisors_up_to(m.layers, m.layers));
    }
  } else {
    const size_t want = static_cast<size_t>(ps.pp) * static_cast<size_t>(v);
    if (ps.partition.size() != want) {
      fail(sc, "parallel.partition", "has " + std::to_string(ps.partition.size()) + " entries, pp x virtual_stages is " +
                                         std::to_string(want));
    }
    for (size_t i = 0; i < want; ++i) {
      const bool edge = i == 0 || i + 1 == want;
      if (ps.partition[i] < (edge ? 0 : 1)) {
        fail(sc, "parallel.partition", "entry " + std::to_string(i) + " is " + std::to_string(ps.partition[i]) +
                                           "; only the first and last stage may hold no layer");
      }
    }
    const int64_t sum = std::accumulate(ps.partition.begin(), ps.partition.end(), int64_t{0});
    if (sum != m.layers) {
      fail(sc, "parallel.partition", "sums to " + std::to_string(sum) + " but the model has " +
                                         std::to_string(m.layers) + " layers");
    }
  }
}

void check_training(const Scenario& sc, ClusterJob& job) {
  const TrainingSpec& t = job.training;
  const ParallelSpec& ps = job.parallel;
  if (t.seq_len <= 0) fail(sc, "training", "missing key \"seq_len\"");
  if (t.seq_len > kMaxTokens) fail(sc, "training.seq_len", "at most 2^34 tokens per sequence");
  if (static_cast<double>(t.seq_len) * t.micro_batch_size > static_cast<double>(kMaxTokens)) {
    fail(sc, "training.micro_batch_size", "at most 2^34 tokens per microbatch");
  }
  if (t.attention_kernel == "unfused" && t.seq_len > kMaxUnfusedSeq) {
    fail(sc, "training.attention_kernel", "unfused attention materialises s x s scores: at most " +
                                              std::to_string(kMaxUnfusedSeq) + " tokens per sequence");
  }
  if (t.attention_kernel == "unfused" && (ps.ulysses > 1 || ps.ring > 1)) {
    fail(sc, "training.attention_kernel", "sequence parallelism (ulysses or ring > 1) runs FlashAttention kernels; "
                                          "unfused attention is modelled without it");
  }
  if (t.attention_only() && (ps.pp > 1 || ps.dp > 1)) {
    fail(sc, "training.scope", t.scope + " times the distributed attention alone: pp and dp must be 1 (got pp " +
                                   std::to_string(ps.pp) + ", dp " + std::to_string(ps.dp) + ")");
  }
  if (t.attention_only() && t.attention_kernel == "unfused") {
    fail(sc, "training.scope", t.scope + " models FlashAttention kernels; attention_kernel unfused is not supported");
  }
  if (t.dtype == "fp32") fail(sc, "training.dtype", "fp32 training is not modelled (bf16 and fp16 are)");
  const bool zigzag = ps.ring_layout == "zigzag" && ps.ring > 1;
  const int64_t split = static_cast<int64_t>(ps.tp) * ps.ulysses * ps.ring * (zigzag ? 2 : 1);
  if (t.seq_len % split != 0) {
    fail(sc, "training.seq_len", std::to_string(t.seq_len) + " tokens do not split evenly over tp x ulysses x ring" +
                                     std::string(zigzag ? " x 2 (zigzag)" : "") + " = " +
                                     std::to_string(split));
  }
  if (t.attention_only()) {  // one call of the attention on one microbatch
    job.shape.m = 1;
    return;
  }
  const int64_t per_step = static_cast<int64_t>(t.micro_batch_size) * ps.dp;
  if (t.global_batch_size % per_step != 0) {
    fail(sc, "training.global_batch_size", std::to_string(t.global_batch_size) +
                                               " sequences are not a multiple of micro_batch_size x dp = " +
                                               std::to_string(per_step));
  }
  job.shape.m = static_cast<int32_t>(t.global_batch_size / per_step);
  const auto errors = check_shape(job.schedule, job.shape);
  if (!errors.empty()) {
    std::string msg;
    for (const auto& e : errors) msg += (msg.empty() ? "" : "; ") + e;
    fail(sc, "parallel.schedule", msg + " (m = global_batch_size / (micro_batch_size x dp) = " +
                                      std::to_string(job.shape.m) + ")");
  }
}

}  // namespace

ResolvedCluster resolve_cluster(const Scenario& sc) {
  if (!sc.cluster) throw InputError(sc.source + ": the scenario has no cluster section");
  const ClusterSpec& c = *sc.cluster;
  if (c.gpu.empty()) fail(sc, "cluster", "missing key \"gpu\" (a GPU preset id; see bubblesim presets)");
  ResolvedCluster r;
  try {
    r.gpu = &find_gpu(c.gpu, "cluster.gpu");
  } catch (const InputError& e) {
    throw InputError(sc.where("cluster.gpu") + ": " + e.what());
  }
  r.nodes = c.nodes;
  r.gpus_per_node = c.gpus_per_node;
  if (static_cast<int64_t>(c.nodes) * c.gpus_per_node > kMaxWorld) {
    fail(sc, "cluster.nodes", "at most " + std::to_string(kMaxWorld) + " GPUs in all (got " +
                                  std::to_string(static_cast<int64_t>(c.nodes) * c.gpus_per_node) + ")");
  }
  const GpuPreset& g = *r.gpu;
  const bool nvlink = g.nvlink_per_dir.value > 0;
  // Defaults are what NCCL achieves on these links (hardware.md), not line rates; a scenario's
  // own figures are taken as given.
  r.intra_bandwidth = c.intra_bandwidth.value_or(Bandwidth{nvlink ? g.nvlink_nccl.value : g.pcie_per_dir.value});
  r.intra_latency = c.intra_latency.value_or(g.nvlink_latency);
  r.nics_per_node = c.nics_per_node.value_or(g.nic.nics_per_node);
  r.inter_bandwidth = c.inter_bandwidth.value_or(g.nic.per_nic_nccl);
  r.inter_latency = c.inter_latency.value_or(g.nic.latency);
  r.oversubscription = c.oversubscription;
  r.elementwise_efficiency = c.elementwise_efficiency.value_or(g.elementwise_efficiency.value);
  r.nccl_nvls = c.nccl_algorithm == "auto";
  r.nccl_protocol = c.nccl_protocol;
  if (c.nccl_protocol == "LL128" && !nvlink) {
    fail(sc, "cluster.nccl.protocol", "NCCL runs LL128 only over NVLink, which " + c.gpu + " has not (got LL128)");
  }
  return r;
}

ClusterJob plan_cluster(const Scenario& sc) {
  BUBBLESIM_ASSERT(sc.cluster && sc.model && sc.training, "plan_cluster() needs a full scenario");
  ClusterJob job;
  job.cluster = resolve_cluster(sc);
  job.model = resolve_model(sc);
  job.training = *sc.training;
  job.parallel = sc.parallel;
  job.schedule = parse_schedule(sc.parallel.schedule);
  const ScheduleInfo& si = info(job.schedule);
  job.shape.p = job.parallel.pp;
  job.shape.v = sc.parallel.virtual_stages.value_or(std::max(1, si.fixed_chunks));
  job.shape.group_size = sc.parallel.microbatch_group_size.value_or(0);
  check_parallel(sc, job);
  check_training(sc, job);
  return job;
}

}  // namespace bubblesim::sim
