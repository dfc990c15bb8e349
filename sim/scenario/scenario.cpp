#include "sim/scenario/scenario.hpp"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <set>
#include <sstream>

#include "sim/core/error.hpp"
#include "sim/sched/schedule.hpp"

namespace bubblesim::sim {
namespace {

enum class Type { Map, Int, Number, String, Tokens, Duration, Rate, IntList, StringList };

struct KeySpec {
  std::string_view path;
  Type type;
  std::string_view doc;
  std::vector<std::string_view> choices = {};
};

const char* type_name(Type t) {
  switch (t) {
    case Type::Map: return "map";
    case Type::Int: return "integer";
    case Type::Number: return "number";
    case Type::String: return "string";
    case Type::Tokens: return "token count (e.g. 8192 or \"208K\")";
    case Type::Duration: return "time with unit (e.g. \"2 us\")";
    case Type::Rate: return "bandwidth with unit (e.g. \"200 Gb/s\")";
    case Type::IntList: return "list of integers";
    case Type::StringList: return "list of strings";
  }
  return "?";
}

const std::vector<KeySpec>& key_table() {
  static const std::vector<KeySpec> table{
      {"name", Type::String, "scenario name; defaults to the file name"},
      {"cluster", Type::Map, "the machines: GPU preset, nodes, links"},
      {"cluster.gpu", Type::String, "GPU preset id"},
      {"cluster.nodes", Type::Int, "number of nodes"},
      {"cluster.gpus_per_node", Type::Int, "GPUs per node"},
      {"cluster.intra_node", Type::Map, "overrides of the preset's NVLink figures"},
      {"cluster.intra_node.bandwidth", Type::Rate, "per GPU, per direction"},
      {"cluster.intra_node.latency", Type::Duration, "per transfer"},
      {"cluster.inter_node", Type::Map, "overrides of the preset's NIC figures"},
      {"cluster.inter_node.nics_per_node", Type::Int, "NICs per node"},
      {"cluster.inter_node.bandwidth", Type::Rate, "per NIC, per direction"},
      {"cluster.inter_node.latency", Type::Duration, "per transfer"},
      {"cluster.inter_node.oversubscription", Type::Number,
       "fabric oversubscription: a node's uplink carries its NICs' bandwidth divided by this (default 1, non-blocking)"},
      {"cluster.nccl", Type::Map, "how NCCL runs the collectives, as NCCL_ALGO and NCCL_PROTO set them"},
      {"cluster.nccl.algorithm", Type::String,
       "auto (NCCL's choice by its cost model: NVLink SHARP for all-reduces inside a Hopper node where it is "
       "faster, rings otherwise; default) or ring (NCCL_ALGO=Ring: no NVLS)", {"auto", "ring"}},
      {"cluster.nccl.protocol", Type::String,
       "auto (NCCL's choice by message size; default), LL, LL128 (NVLink only) or Simple (NCCL_PROTO)",
       {"auto", "LL", "LL128", "Simple"}},
      {"cluster.elementwise_efficiency", Type::Number,
       "share of HBM bandwidth a layer's memory-bound kernels reach (norms, activations, softmax, dropout, "
       "residual adds); default the GPU preset's (bubblesim presets)"},
      {"model", Type::Map, "the transformer: a preset and/or its fields"},
      {"model.preset", Type::String, "model preset id"},
      {"model.layers", Type::Int, "transformer layers"},
      {"model.hidden", Type::Int, "hidden size"},
      {"model.heads", Type::Int, "query heads"},
      {"model.kv_heads", Type::Int, "key/value heads (GQA)"},
      {"model.ffn_hidden", Type::Int, "MLP intermediate size"},
      {"model.vocab", Type::Int, "vocabulary size"},
      {"model.activation", Type::String, "MLP activation", {"swiglu", "gelu"}},
      {"model.tied_embeddings", Type::String,
       "the LM head shares the embedding matrix (GPT-style true; Llama-style false); split over the pipeline, "
       "its gradient is all-reduced between the first and the last stage", {"true", "false"}},
      {"training", Type::Map, "sequence and batch"},
      {"training.seq_len", Type::Tokens, "tokens per sequence; K = 1024"},
      {"training.micro_batch_size", Type::Int, "sequences per microbatch"},
      {"training.global_batch_size", Type::Int, "sequences per iteration"},
      {"training.dtype", Type::String, "compute precision", {"bf16", "fp16", "fp32"}},
      {"training.recompute", Type::String, "activation recompute", {"none", "selective", "full"}},
      {"training.attention_kernel", Type::String,
       "flash (the best FlashAttention for the GPU: FA3 on Hopper, FA2 elsewhere; default), flash2 "
       "(FlashAttention-2 everywhere) or unfused (score matrices in memory, as Megatron-LM in 2021)",
       {"flash", "flash2", "unfused"}},
      {"training.dropout", Type::Number,
       "dropout probability, 0 (default, Llama-style) to below 1 (GPT-style 0.1): adds the masks' memory traffic "
       "on the residual path and, with unfused attention, the attention dropout over the scores"},
      {"training.scope", Type::String,
       "what one iteration is: iteration (a training step, default), attention-forward or "
       "attention-forward-backward (one call of the distributed attention alone, as attention benchmarks time it)",
       {"iteration", "attention-forward", "attention-forward-backward"}},
      {"parallel", Type::Map, "parallel degrees and the pipeline schedule"},
      {"parallel.dp", Type::Int, "data-parallel degree"},
      {"parallel.tp", Type::Int, "tensor-parallel degree"},
      {"parallel.pp", Type::Int, "pipeline-parallel degree"},
      {"parallel.ulysses", Type::Int, "Ulysses (head-parallel) degree"},
      {"parallel.ring", Type::Int, "ring-attention degree"},
      {"parallel.ring_layout", Type::String, "token layout for causal balance", {"contiguous", "zigzag", "striped"}},
      {"parallel.cp_mode", Type::String, "context parallelism", {"ring", "allgather"}},
      {"parallel.schedule", Type::String, "pipeline schedule (see `bubblesim schedules`)"},
      {"parallel.virtual_stages", Type::Int, "chunks per pipeline rank"},
      {"parallel.microbatch_group_size", Type::Int,
       "interleaved-1f1b: microbatches per group (Megatron microbatch_group_size_per_vp_stage); default p"},
      {"parallel.zero", Type::Int, "ZeRO stage 0..3"},
      {"parallel.sequence_parallel", Type::String,
       "Megatron sequence parallelism with tp (true, default): all-gather / reduce-scatter and sharded norms; "
       "false: all-reduces and norms on the whole sequence", {"true", "false"}},
      {"parallel.overlap_grad_reduce", Type::String,
       "reduce gradients per layer bucket during the backward (true, default) or after it (false)", {"true", "false"}},
      {"parallel.partition", Type::IntList, "transformer layers per stage (per chunk), in model order"},
      {"parallel.placement", Type::StringList, "rank order, innermost first",
       {"tp", "ulysses", "ring", "dp", "pp"}},
      {"pipeline_only", Type::Map, "teaching mode: fixed op times instead of cluster/model/training"},
      {"pipeline_only.stages", Type::Int, "pipeline ranks (devices)"},
      {"pipeline_only.microbatches", Type::Int, "microbatches per iteration"},
      {"pipeline_only.times", Type::Map, "op times in abstract units: {F, B} or {F, I, W}, optional FB"},
      {"pipeline_only.times.F", Type::Number, "forward"},
      {"pipeline_only.times.B", Type::Number, "full backward"},
      {"pipeline_only.times.I", Type::Number, "backward for the input gradient"},
      {"pipeline_only.times.W", Type::Number, "backward for the weight gradient"},
      {"pipeline_only.times.FB", Type::Number, "an overlapped F&B pair (DualPipe); default F + B"},
      {"pipeline_only.p2p_latency", Type::Number, "added on every cross-device dependency"},
      {"pipeline_only.layers", Type::Int, "layers, for layer placement; times become per layer"},
      {"pipeline_only.partition", Type::IntList, "layers per stage, in order"},
      {"pipeline_only.layer_to_device", Type::IntList, "device of each layer; any placement"},
  };
  return table;
}

const KeySpec* find_key(const std::string& path) {
  for (const KeySpec& k : key_table()) {
    if (k.path == path) return &k;
  }
  return nullptr;
}

std::string join(const std::vector<std::string_view>& items) {
  std::string s;
  for (auto i : items) s += (s.empty() ? "" : ", ") + std::string(i);
  return s;
}

std::string scalar_text(const YAML::Node& n) {
  if (n.IsScalar()) return n.Scalar();
  YAML::Emitter e;
  e << YAML::Flow << n;
  return e.c_str();
}

class Loader {
 public:
  Loader(std::string source, std::set<std::string> overridden)
      : source_(std::move(source)), overridden_(std::move(overridden)) {}

  std::string loc(const YAML::Node& n, const std::string& path) const {
    for (std::string p = path;;) {
      if (overridden_.count(p)) return "--set " + p;
      const auto dot = p.rfind('.');
      if (dot == std::string::npos) break;
      p.resize(dot);
    }
    if (n.Mark().is_null()) {
      // A map that only --set created: name an override below it.
      for (const std::string& o : overridden_) {
        if (o.rfind(path + ".", 0) == 0) return "--set " + o;
      }
      return source_;
    }
    return source_ + ":" + std::to_string(n.Mark().line + 1);
  }

  [[noreturn]] void fail(const YAML::Node& n, const std::string& path, const std::string& rule) const {
    throw InputError(loc(n, path) + ": " + path + ": " + rule);
  }

  /// Checks every key under `node` against the key table, recursively.
  void check_map(const YAML::Node& node, const std::string& prefix, Scenario& sc) const {
    if (!node.IsMap()) fail(node, prefix.empty() ? "(top level)" : prefix, "expected a map of keys");
    std::set<std::string> seen;
    for (const auto& kv : node) {
      if (!kv.first.IsScalar()) fail(kv.first, prefix.empty() ? "(top level)" : prefix, "keys must be plain names");
      const std::string key = kv.first.Scalar();
      const std::string path = prefix.empty() ? key : prefix + "." + key;
      if (!seen.insert(key).second) fail(kv.first, path, "duplicate key");
      const KeySpec* spec = find_key(path);
      if (spec == nullptr) fail(kv.first, path, "unknown key \"" + key + "\"" + known_under(prefix));
      sc.locations.emplace_back(path, loc(kv.first, path));
      if (spec->type == Type::Map) {
        check_map(kv.second, path, sc);
      } else {
        check_value(kv.second, *spec, path);
      }
    }
  }

  std::string known_under(const std::string& prefix) const {
    std::vector<std::string_view> names;
    for (const KeySpec& k : key_table()) {
      std::string_view p = k.path;
      if (prefix.empty()) {
        if (p.find('.') == std::string_view::npos) names.push_back(p);
      } else if (p.size() > prefix.size() + 1 && p.substr(0, prefix.size()) == prefix && p[prefix.size()] == '.' &&
                 p.substr(prefix.size() + 1).find('.') == std::string_view::npos) {
        names.push_back(p.substr(prefix.size() + 1));
      }
    }
    return " (known keys" + (prefix.empty() ? std::string() : " in " + prefix) + ": " + join(names) + ")";
  }

  void check_value(const YAML::Node& n, const KeySpec& spec, const std::string& path) const {
    const std::string expected = std::string("expected a ") + type_name(spec.type) + ", got \"" + scalar_text(n) + "\"";
    switch (spec.type) {
      case Type::IntList:
      case Type::StringList:
        if (!n.IsSequence()) fail(n, path, expected);
        for (const auto& item : n) {
          if (!item.IsScalar()) fail(n, path, expected);
          if (spec.type == Type::IntList) as_int(item, path);
          if (spec.type == Type::StringList) check_choice(item, spec, path);
        }
        return;
      default:
        if (!n.IsScalar()) fail(n, path, expected);
        break;
    }
    switch (spec.type) {
      case Type::Int: as_int(n, path); break;
      case Type::Number: as_number(n, path); break;
      case Type::String: check_choice(n, spec, path); break;
      case Type::Tokens: as_tokens(n, path); break;
      case Type::Duration: as_time(n, path); break;
      case Type::Rate: as_bandwidth(n, path); break;
      default: break;
    }
  }

  void check_choice(const YAML::Node& n, const KeySpec& spec, const std::string& path) const {
    if (spec.choices.empty()) return;
    const std::string v = n.Scalar();
    if (std::find(spec.choices.begin(), spec.choices.end(), v) == spec.choices.end()) {
      fail(n, path, "unknown value \"" + v + "\" (valid: " + join(spec.choices) + ")");
    }
  }

  int64_t as_int(const YAML::Node& n, const std::string& path) const {
    const auto v = parse_integer(n.Scalar());
    if (!v) fail(n, path, "expected an integer, got \"" + n.Scalar() + "\"");
    return *v;
  }

  int32_t as_int32(const YAML::Node& n, const std::string& path) const {
    const int64_t v = as_int(n, path);
    if (v < INT32_MIN || v > INT32_MAX) fail(n, path, "integer out of range (got " + std::to_string(v) + ")");
    return static_cast<int32_t>(v);
  }

  double as_number(const YAML::Node& n, const std::string& path) const {
    const auto v = parse_number(n.Scalar());
    if (!v) fail(n, path, "expected a number, got \"" + n.Scalar() + "\"");
    return *v;
  }

  int64_t as_tokens(const YAML::Node& n, const std::string& path) const {
    std::string s = n.Scalar();
    int64_t scale = 1;
    if (!s.empty() && (s.back() == 'K' || s.back() == 'k')) {
      scale = 1024;
      s.pop_back();
    }
    const auto v = parse_integer(s);
    if (!v || *v <= 0) {
      fail(n, path, "expected a positive token count such as 8192 or \"208K\", got \"" + n.Scalar() + "\"");
    }
    if (*v > INT64_MAX / scale) fail(n, path, "token count out of range (got \"" + n.Scalar() + "\")");
    return *v * scale;
  }

  Time as_time(const YAML::Node& n, const std::string& path) const {
    try {
      return parse_time(n.Scalar(), path);
    } catch (const InputError& e) {
      throw InputError(loc(n, path) + ": " + e.what());
    }
  }

  Bandwidth as_bandwidth(const YAML::Node& n, const std::string& path) const {
    try {
      return parse_bandwidth(n.Scalar(), path);
    } catch (const InputError& e) {
      throw InputError(loc(n, path) + ": " + e.what());
    }
  }

  std::vector<int32_t> as_int_list(const YAML::Node& n, const std::string& path) const {
    std::vector<int32_t> v;
    for (const auto& item : n) v.push_back(as_int32(item, path));
    return v;
  }

  int32_t positive(const YAML::Node& n, const std::string& path) const {
    const int32_t v = as_int32(n, path);
    if (v < 1) fail(n, path, "must be >= 1 (got " + std::to_string(v) + ")");
    return v;
  }

 private:
  std::string source_;
  std::set<std::string> overridden_;
};

/// Applies "a.b.c=value" to the YAML tree. The path must be a documented key.
std::string apply_override(YAML::Node& root, const std::string& assignment) {
  const auto eq = assignment.find('=');
  if (eq == std::string::npos || eq == 0) {
    throw InputError("--set " + assignment + ": expected key.path=value");
  }
  const std::string path = assignment.substr(0, eq);
  const std::string value_text = assignment.substr(eq + 1);
  if (find_key(path) == nullptr) throw InputError("--set " + path + ": unknown key \"" + path + "\"");
  YAML::Node value;
  try {
    value = YAML::Load(value_text);
  } catch (const YAML::Exception& e) {
    throw InputError("--set " + path + ": cannot parse value \"" + value_text + "\": " + e.msg);
  }
  std::vector<std::string> parts;
  std::stringstream ss(path);
  for (std::string part; std::getline(ss, part, '.');) parts.push_back(part);
  // Walk down, creating maps as needed. yaml-cpp nodes are handles; reset() rebinds a handle.
  YAML::Node node = root;
  std::string walked;
  for (size_t i = 0; i + 1 < parts.size(); ++i) {
    walked += (walked.empty() ? "" : ".") + parts[i];
    YAML::Node child = node[parts[i]];
    if (!child.IsDefined() || child.IsNull()) {
      node[parts[i]] = YAML::Node(YAML::NodeType::Map);
      child = node[parts[i]];
    }
    if (!child.IsMap()) {
      throw InputError("--set " + path + ": cannot set a key inside \"" + walked + "\", which is not a map");
    }
    node.reset(child);
  }
  node[parts.back()] = value;
  return path;
}

void extract_pipeline_only(const YAML::Node& n, const Loader& L, Scenario& sc) {
  PipelineOnlySpec po;
  const std::string base = "pipeline_only";
  if (!n["stages"]) L.fail(n, base, "missing key \"stages\" (pipeline ranks)");
  if (!n["microbatches"]) L.fail(n, base, "missing key \"microbatches\"");
  if (!n["times"]) L.fail(n, base, "missing key \"times\" (e.g. {F: 1, B: 2})");
  po.stages = L.positive(n["stages"], base + ".stages");
  po.microbatches = L.positive(n["microbatches"], base + ".microbatches");
  const YAML::Node t = n["times"];
  auto time_of = [&](const char* key) -> std::optional<double> {
    if (!t[key]) return std::nullopt;
    const std::string path = base + ".times." + key;
    const double v = L.as_number(t[key], path);
    if (!(v > 0)) L.fail(t[key], path, "op times must be > 0 (got " + t[key].Scalar() + ")");
    return v;
  };
  po.f = time_of("F");
  po.b = time_of("B");
  po.i = time_of("I");
  po.w = time_of("W");
  po.fb = time_of("FB");
  if (!po.f) L.fail(t, base + ".times", "missing F (the forward time)");
  if (po.i.has_value() != po.w.has_value()) {
    L.fail(t, base + ".times", "give I and W together (the two halves of the backward)");
  }
  if (!po.b && !po.i) L.fail(t, base + ".times", "missing the backward: give B, or I and W");
  if (po.b && po.i && std::fabs(*po.b - (*po.i + *po.w)) > 1e-12 * *po.b) {
    L.fail(t, base + ".times", "B must equal I + W when all three are given (B=" + t["B"].Scalar() +
                                   ", I+W=" + std::to_string(*po.i + *po.w) + ")");
  }
  if (n["p2p_latency"]) {
    po.p2p_latency = L.as_number(n["p2p_latency"], base + ".p2p_latency");
    if (po.p2p_latency < 0) L.fail(n["p2p_latency"], base + ".p2p_latency", "must be >= 0");
  }
  if (n["layers"]) po.layers = L.positive(n["layers"], base + ".layers");
  if (n["partition"]) po.partition = L.as_int_list(n["partition"], base + ".partition");
  if (n["layer_to_device"]) po.layer_to_device = L.as_int_list(n["layer_to_device"], base + ".layer_to_device");
  sc.pipeline_only = po;
}

void extract_parallel(const YAML::Node& n, const Loader& L, Scenario& sc) {
  ParallelSpec& ps = sc.parallel;
  const std::string base = "parallel";
  auto degree = [&](const char* key, int32_t& out) {
    if (n[key]) out = L.positive(n[key], base + "." + key);
  };
  degree("dp", ps.dp);
  degree("tp", ps.tp);
  degree("pp", ps.pp);
  degree("ulysses", ps.ulysses);
  degree("ring", ps.ring);
  if (n["virtual_stages"]) ps.virtual_stages = L.positive(n["virtual_stages"], base + ".virtual_stages");
  if (n["microbatch_group_size"]) {
    ps.microbatch_group_size = L.positive(n["microbatch_group_size"], base + ".microbatch_group_size");
  }
  if (n["overlap_grad_reduce"]) ps.overlap_grad_reduce = n["overlap_grad_reduce"].Scalar() == "true";
  if (n["sequence_parallel"]) ps.sequence_parallel = n["sequence_parallel"].Scalar() == "true";
  if (n["zero"]) {
    ps.zero = L.as_int32(n["zero"], base + ".zero");
    if (ps.zero < 0 || ps.zero > 3) L.fail(n["zero"], base + ".zero", "ZeRO stage must be 0..3");
  }
  if (n["ring_layout"]) ps.ring_layout = n["ring_layout"].Scalar();
  if (n["cp_mode"]) ps.cp_mode = n["cp_mode"].Scalar();
  if (n["schedule"]) {
    ps.schedule = n["schedule"].Scalar();
    try {
      parse_schedule(ps.schedule);
    } catch (const InputError& e) {
      L.fail(n["schedule"], base + ".schedule", e.what());
    }
  }
  if (n["partition"]) ps.partition = L.as_int_list(n["partition"], base + ".partition");
  if (n["placement"]) {
    ps.placement.clear();
    for (const auto& item : n["placement"]) ps.placement.push_back(item.Scalar());
    std::vector<std::string> sorted = ps.placement;
    std::sort(sorted.begin(), sorted.end());
    if (sorted != std::vector<std::string>{"dp", "pp", "ring", "tp", "ulysses"}) {
      L.fail(n["placement"], base + ".placement", "must list each of tp, ulysses, ring, dp, pp exactly once");
    }
  }
}

void extract_full(const YAML::Node& root, const Loader& L, Scenario& sc) {
  if (const YAML::Node c = root["cluster"]) {
    ClusterSpec cs;
    if (c["gpu"]) cs.gpu = c["gpu"].Scalar();
    if (c["nodes"]) cs.nodes = L.positive(c["nodes"], "cluster.nodes");
    if (c["gpus_per_node"]) cs.gpus_per_node = L.positive(c["gpus_per_node"], "cluster.gpus_per_node");
    if (c["elementwise_efficiency"]) {
      const std::string key = "cluster.elementwise_efficiency";
      cs.elementwise_efficiency = L.as_number(c["elementwise_efficiency"], key);
      if (!(*cs.elementwise_efficiency > 0 && *cs.elementwise_efficiency <= 1)) {
        L.fail(c["elementwise_efficiency"], key, "must be in (0, 1]: a share of the HBM bandwidth");
      }
    }
    if (const YAML::Node in = c["intra_node"]) {
      if (in["bandwidth"]) cs.intra_bandwidth = L.as_bandwidth(in["bandwidth"], "cluster.intra_node.bandwidth");
      if (in["latency"]) cs.intra_latency = L.as_time(in["latency"], "cluster.intra_node.latency");
    }
    if (const YAML::Node out = c["inter_node"]) {
      if (out["nics_per_node"]) cs.nics_per_node = L.positive(out["nics_per_node"], "cluster.inter_node.nics_per_node");
      if (out["bandwidth"]) cs.inter_bandwidth = L.as_bandwidth(out["bandwidth"], "cluster.inter_node.bandwidth");
      if (out["latency"]) cs.inter_latency = L.as_time(out["latency"], "cluster.inter_node.latency");
      if (out["oversubscription"]) {
        const std::string key = "cluster.inter_node.oversubscription";
        cs.oversubscription = L.as_number(out["oversubscription"], key);
        if (!(cs.oversubscription >= 1)) L.fail(out["oversubscription"], key, "must be >= 1 (1: non-blocking)");
      }
    }
    if (const YAML::Node nccl = c["nccl"]) {
      if (nccl["algorithm"]) cs.nccl_algorithm = nccl["algorithm"].Scalar();
      if (nccl["protocol"]) cs.nccl_protocol = nccl["protocol"].Scalar();
    }
    sc.cluster = cs;
  }
  if (const YAML::Node m = root["model"]) {
    ModelSpec ms;
    if (m["preset"]) ms.preset = m["preset"].Scalar();
    auto field = [&](const char* key, std::optional<int32_t>& out) {
      if (m[key]) out = L.positive(m[key], std::string("model.") + key);
    };
    field("layers", ms.layers);
    field("hidden", ms.hidden);
    field("heads", ms.heads);
    field("kv_heads", ms.kv_heads);
    field("ffn_hidden", ms.ffn_hidden);
    field("vocab", ms.vocab);
    if (m["activation"]) ms.activation = m["activation"].Scalar();
    if (m["tied_embeddings"]) ms.tied_embeddings = m["tied_embeddings"].Scalar() == "true";
    sc.model = ms;
  }
  if (const YAML::Node t = root["training"]) {
    TrainingSpec ts;
    if (t["seq_len"]) ts.seq_len = L.as_tokens(t["seq_len"], "training.seq_len");
    if (t["micro_batch_size"]) ts.micro_batch_size = L.positive(t["micro_batch_size"], "training.micro_batch_size");
    if (t["global_batch_size"]) {
      ts.global_batch_size = L.positive(t["global_batch_size"], "training.global_batch_size");
    }
    if (t["dtype"]) ts.dtype = t["dtype"].Scalar();
    if (t["recompute"]) ts.recompute = t["recompute"].Scalar();
    if (t["attention_kernel"]) ts.attention_kernel = t["attention_kernel"].Scalar();
    if (t["dropout"]) {
      ts.dropout = L.as_number(t["dropout"], "training.dropout");
      if (!(ts.dropout >= 0 && ts.dropout < 1)) L.fail(t["dropout"], "training.dropout", "a probability from 0 to below 1");
    }
    if (t["scope"]) ts.scope = t["scope"].Scalar();
    sc.training = ts;
  }
}

std::string stem(const std::string& path) {
  std::string s = path.substr(path.find_last_of('/') + 1);
  const auto dot = s.rfind('.');
  return dot == std::string::npos || dot == 0 ? s : s.substr(0, dot);
}

}  // namespace

std::string Scenario::where(const std::string& key_path) const {
  for (const auto& [path, location] : locations) {
    if (path == key_path) return location;
  }
  return source;
}

namespace {

Scenario parse_checked(const std::string& text, const std::string& source, const std::vector<std::string>& overrides,
                       ScenarioNeeds needs) {
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::ParserException& e) {
    throw InputError(source + ":" + std::to_string(e.mark.line + 1) + ": YAML syntax error: " + e.msg);
  }
  if (!root.IsDefined() || root.IsNull()) root = YAML::Node(YAML::NodeType::Map);
  if (!root.IsMap()) throw InputError(source + ":1: the scenario must be a map of keys (name, pipeline_only, ...)");
  std::set<std::string> overridden;
  for (const std::string& o : overrides) overridden.insert(apply_override(root, o));
  const Loader loader(source, overridden);
  Scenario sc;
  sc.source = source;
  loader.check_map(root, "", sc);
  sc.name = root["name"] ? root["name"].Scalar() : stem(source);
  if (root["parallel"]) extract_parallel(root["parallel"], loader, sc);
  if (root["pipeline_only"] && needs == ScenarioNeeds::Cluster) {
    loader.fail(root["pipeline_only"], "pipeline_only",
                "this command needs a cluster section, not a pipeline_only scenario");
  }
  if (root["pipeline_only"]) {
    for (const char* key : {"cluster", "model", "training"}) {
      if (root[key]) loader.fail(root[key], key, "a pipeline_only scenario replaces cluster, model and training; "
                                                 "remove one or the other");
    }
    extract_pipeline_only(root["pipeline_only"], loader, sc);
    return sc;
  }
  for (const char* key : {"cluster", "model", "training"}) {
    if (!root[key] && (needs == ScenarioNeeds::Job || std::string_view(key) == "cluster")) {
      loader.fail(root, key, std::string("missing section \"") + key +
                                 (needs == ScenarioNeeds::Job
                                      ? "\" (a scenario needs cluster, model and training, or pipeline_only)"
                                      : "\" (this command needs the cluster)"));
    }
  }
  extract_full(root, loader, sc);
  return sc;
}

}  // namespace

Scenario parse_scenario(const std::string& text, const std::string& source, const std::vector<std::string>& overrides,
                        ScenarioNeeds needs) {
  try {
    return parse_checked(text, source, overrides, needs);
  } catch (const YAML::Exception& e) {
    // Anything yaml-cpp still objects to is bad input too, never an internal error.
    throw InputError(source + ":" + std::to_string(e.mark.line + 1) + ": " + e.msg);
  }
}

Scenario load_scenario(const std::string& path, const std::vector<std::string>& overrides, ScenarioNeeds needs) {
  std::ifstream in(path);
  if (!in) throw InputError(path + ": cannot open scenario file");
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_scenario(ss.str(), path, overrides, needs);
}

const std::vector<KeyDoc>& scenario_keys() {
  static const std::vector<KeyDoc> docs = [] {
    std::vector<KeyDoc> d;
    for (const KeySpec& k : key_table()) {
      std::string type = type_name(k.type);
      if (!k.choices.empty()) type += ": " + join(k.choices);
      d.push_back({std::string(k.path), type, std::string(k.doc)});
    }
    return d;
  }();
  return docs;
}

}  // namespace bubblesim::sim
