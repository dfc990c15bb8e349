// A scenario as loaded from YAML: every key checked against the documented key table
// (unknown keys and wrong types are errors with file:line), units parsed once, here, and
// `--set key.path=value` overrides applied with the same checks.
// Not the simulation: sim/scenario/pipeline_job.hpp turns a pipeline_only scenario into a
// Program; full cluster scenarios are only parsed in this version.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "sim/core/units.hpp"

namespace bubblesim::sim {

/// Fixed op times in abstract units (pipeline_only scenarios).
struct PipelineOnlySpec {
  int32_t stages = 0;
  int32_t microbatches = 0;
  std::optional<double> f, b, i, w, fb;  // per stage (per chunk with virtual stages), or per layer
  double p2p_latency = 0.0;
  std::optional<int32_t> layers;
  std::vector<int32_t> partition;        // layers per stage (per chunk), in model order
  std::vector<int32_t> layer_to_device;  // device of each layer, any placement
};

struct ClusterSpec {
  std::string gpu;
  int32_t nodes = 1;
  int32_t gpus_per_node = 1;
  std::optional<Bandwidth> intra_bandwidth;
  std::optional<Time> intra_latency;
  std::optional<int32_t> nics_per_node;
  std::optional<Bandwidth> inter_bandwidth;
  std::optional<Time> inter_latency;
  double oversubscription = 1;
  std::optional<double> elementwise_efficiency;  // overrides the GPU preset's
  std::string nccl_algorithm = "auto";           // auto | ring (cluster.nccl.algorithm)
  std::string nccl_protocol = "auto";            // auto | LL | LL128 | Simple (cluster.nccl.protocol)
};

struct ModelSpec {
  std::string preset;
  std::optional<int32_t> layers, hidden, heads, kv_heads, ffn_hidden, vocab;
  std::string activation = "swiglu";
  std::optional<bool> tied_embeddings;  // unset: the preset's (untied without a preset)
};

struct TrainingSpec {
  int64_t seq_len = 0;
  int32_t micro_batch_size = 1;
  int32_t global_batch_size = 1;
  std::string dtype = "bf16";
  std::string recompute = "none";
  std::string attention_kernel = "flash";
  /// Dropout probability (GPT-style models train with 0.1, Llama-style with none): when > 0, the
  /// residual path writes (and its backward reads) a mask, and unfused attention drops out the
  /// attention probabilities through memory (FlashAttention does it in registers).
  double dropout = 0;
  std::string scope = "iteration";  // or attention-forward / attention-forward-backward
  bool attention_only() const { return scope != "iteration"; }
};

struct ParallelSpec {
  int32_t dp = 1, tp = 1, pp = 1, ulysses = 1, ring = 1;
  std::string ring_layout = "contiguous";
  std::string cp_mode = "ring";
  std::string schedule = "1f1b";
  std::optional<int32_t> virtual_stages;
  std::optional<int32_t> microbatch_group_size;
  int32_t zero = 0;
  bool overlap_grad_reduce = true;
  bool sequence_parallel = true;
  std::vector<int32_t> partition;
  std::vector<std::string> placement{"tp", "ulysses", "ring", "dp", "pp"};
};

struct Scenario {
  std::string name;
  std::string source;  // file path, for messages
  std::optional<PipelineOnlySpec> pipeline_only;
  std::optional<ClusterSpec> cluster;
  std::optional<ModelSpec> model;
  std::optional<TrainingSpec> training;
  ParallelSpec parallel;
  /// "file:line" of each key as given (or "--set key" for overrides), for later checks.
  std::string where(const std::string& key_path) const;
  std::vector<std::pair<std::string, std::string>> locations;
};

/// What a command needs of a scenario: a job (cluster, model and training, or pipeline_only), or
/// only a cluster (`bubblesim collective`; model and training are then optional, checked if given).
enum class ScenarioNeeds : uint8_t { Job, Cluster };

/// Loads `path` and applies `overrides` ("key.path=value", value in YAML syntax).
/// Throws InputError with "file:line: key: rule (got value)" on the first problem.
Scenario load_scenario(const std::string& path, const std::vector<std::string>& overrides = {},
                       ScenarioNeeds needs = ScenarioNeeds::Job);
/// Same, from text; `source` names it in messages.
Scenario parse_scenario(const std::string& text, const std::string& source,
                        const std::vector<std::string>& overrides = {}, ScenarioNeeds needs = ScenarioNeeds::Job);

/// One documented key: its dotted path, type and description (also for `bubblesim keys`).
struct KeyDoc {
  std::string path;
  std::string type;
  std::string doc;
};
const std::vector<KeyDoc>& scenario_keys();

}  // namespace bubblesim::sim
