#include "sim/scenario/pipeline_job.hpp"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "sim/core/error.hpp"

namespace bubblesim::sim {
namespace {

bool given(const Scenario& sc, const std::string& key) {
  return std::any_of(sc.locations.begin(), sc.locations.end(), [&](const auto& l) { return l.first == key; });
}

[[noreturn]] void fail(const Scenario& sc, const std::string& key, const std::string& rule) {
  throw InputError(sc.where(key) + ": " + key + ": " + rule);
}

std::string list(const std::vector<int32_t>& v) {
  std::string s;
  for (int32_t x : v) s += (s.empty() ? "" : ",") + std::to_string(x);
  return s;
}

uint64_t physical_memory_bytes() {
  const long pages = sysconf(_SC_PHYS_PAGES);
  const long page = sysconf(_SC_PAGE_SIZE);
  return pages > 0 && page > 0 ? static_cast<uint64_t>(pages) * static_cast<uint64_t>(page) : (8ULL << 30);
}

void check_parallel(const Scenario& sc, const PipelineOnlySpec& po) {
  for (const char* key : {"dp", "tp", "ulysses", "ring"}) {
    const std::string path = std::string("parallel.") + key;
    if (given(sc, path)) {
      const ParallelSpec& ps = sc.parallel;
      const int32_t v = std::string(key) == "dp" ? ps.dp : std::string(key) == "tp" ? ps.tp
                        : std::string(key) == "ulysses" ? ps.ulysses : ps.ring;
      if (v != 1) fail(sc, path, "a pipeline_only scenario models one pipeline, so this must be 1 (got " +
                                     std::to_string(v) + ")");
    }
  }
  if (given(sc, "parallel.pp") && sc.parallel.pp != po.stages) {
    fail(sc, "parallel.pp", "must equal pipeline_only.stages (" + std::to_string(po.stages) + ") or be left out (got " +
                                std::to_string(sc.parallel.pp) + ")");
  }
  if (given(sc, "parallel.partition")) {
    fail(sc, "parallel.partition", "in a pipeline_only scenario write the partition as pipeline_only.partition");
  }
}

/// Stage graph and layers per stage from the scenario's layer placement.
void place_layers(const Scenario& sc, const PipelineOnlySpec& po, PipelineJob& job, std::vector<int32_t>& per_stage) {
  const ScheduleInfo& si = info(job.kind);
  const StageGraph canonical = canonical_stages(job.kind, job.shape);
  // DualPipe's two directions share one partition of the model over p stages.
  const size_t model_stages = job.kind == ScheduleKind::DualPipe ? canonical.size() / 2 : canonical.size();
  if (!po.layers) {
    if (!po.partition.empty()) fail(sc, "pipeline_only.partition", "needs pipeline_only.layers");
    if (!po.layer_to_device.empty()) fail(sc, "pipeline_only.layer_to_device", "needs pipeline_only.layers");
    job.graph = canonical;
    per_stage.assign(canonical.size(), 1);
    return;
  }
  const int32_t layers = *po.layers;
  LayerPlacement lp;
  lp.layers = layers;
  if (!po.partition.empty() && !po.layer_to_device.empty()) {
    fail(sc, "pipeline_only.layer_to_device", "give either partition or layer_to_device, not both");
  }
  // Stages: the runs of consecutive layers on one device (layer_to_device), or the partition's
  // entries on the canonical mapping (V schedules put two in a row on one device).
  std::vector<int32_t> stage_device;
  std::vector<int32_t> first_layer;
  per_stage.clear();
  auto add_stage = [&](int32_t device, int32_t first, int32_t count) {
    stage_device.push_back(device);
    first_layer.push_back(first);
    per_stage.push_back(count);
  };
  if (!po.layer_to_device.empty()) {
    const std::string key = "pipeline_only.layer_to_device";
    const std::vector<int32_t>& dev = po.layer_to_device;
    if (dev.size() != static_cast<size_t>(layers)) {
      fail(sc, key, "has " + std::to_string(dev.size()) + " entries but layers is " + std::to_string(layers) +
                        " (one device per layer)");
    }
    std::vector<int32_t> count(static_cast<size_t>(po.stages), 0);
    for (int32_t d : dev) {
      if (d < 0 || d >= po.stages) {
        fail(sc, key, "device " + std::to_string(d) + " is outside 0.." + std::to_string(po.stages - 1) +
                          " (stages is " + std::to_string(po.stages) + ")");
      }
      ++count[static_cast<size_t>(d)];
    }
    for (size_t d = 0; d < count.size(); ++d) {
      if (count[d] == 0) fail(sc, key, "device " + std::to_string(d) + " holds no layer; every stage needs one");
    }
    for (int32_t l = 0; l < layers; ++l) {
      if (l == 0 || dev[static_cast<size_t>(l - 1)] != dev[static_cast<size_t>(l)]) add_stage(dev[static_cast<size_t>(l)], l, 0);
      ++per_stage.back();
    }
    lp.how = "layer_to_device";
  } else {
    std::vector<int32_t> part = po.partition;
    const std::string key = "pipeline_only.partition";
    if (part.empty()) {
      if (static_cast<size_t>(layers) < model_stages) {
        fail(sc, "pipeline_only.layers", std::to_string(layers) + " layers cannot fill " +
                                             std::to_string(model_stages) + " stages");
      }
      for (size_t s = 0; s < model_stages; ++s) {
        part.push_back(static_cast<int32_t>(layers / model_stages + (s < layers % model_stages ? 1 : 0)));
      }
      lp.how = "even split";
    } else {
      lp.how = "partition";
      if (part.size() != model_stages) {
        fail(sc, key, "has " + std::to_string(part.size()) + " entries but " + std::string(si.name) + " with " +
                          std::to_string(po.stages) + " stages x " + std::to_string(job.shape.v) +
                          " virtual stages needs " + std::to_string(model_stages) + " (layers per stage, in order)");
      }
      for (int32_t x : part) {
        if (x < 1) fail(sc, key, "every stage needs at least one layer (got " + list(part) + ")");
      }
      const int64_t sum = std::accumulate(part.begin(), part.end(), int64_t{0});
      if (sum != layers) {
        fail(sc, key, "sums to " + std::to_string(sum) + " but layers is " + std::to_string(layers) + " (got " +
                          list(part) + ")");
      }
    }
    int32_t l = 0;
    for (size_t s = 0; s < part.size(); ++s) {
      add_stage(canonical.device[s], l, part[s]);
      l += part[s];
    }
  }
  lp.layers_of_device.assign(static_cast<size_t>(po.stages), {});
  for (size_t s = 0; s < stage_device.size(); ++s) {
    for (int32_t k = 0; k < per_stage[s]; ++k) {
      lp.layers_of_device[static_cast<size_t>(stage_device[s])].push_back(first_layer[s] + k);
    }
  }
  for (auto& ls : lp.layers_of_device) std::sort(ls.begin(), ls.end());
  lp.stages = static_cast<int32_t>(stage_device.size());
  lp.hops_per_forward = 0;
  for (size_t s = 1; s < stage_device.size(); ++s) lp.hops_per_forward += stage_device[s] != stage_device[s - 1];
  lp.by_schedule = lp.how != "layer_to_device" && job.shape.v > 1;
  lp.contiguous = std::all_of(lp.layers_of_device.begin(), lp.layers_of_device.end(), [](const auto& ls) {
    return ls.empty() || ls.back() - ls.front() + 1 == static_cast<int32_t>(ls.size());
  });
  if (job.kind == ScheduleKind::DualPipe) {
    if (lp.how == "layer_to_device") {
      fail(sc, "pipeline_only.layer_to_device", "dualpipe places its two directions itself; use partition");
    }
    job.graph = canonical;
    std::vector<int32_t> both = per_stage;
    std::vector<int32_t> firsts = first_layer;
    per_stage.insert(per_stage.end(), both.begin(), both.end());
    first_layer.insert(first_layer.end(), firsts.begin(), firsts.end());
  } else if (si.any_placement) {
    job.graph = path_stages(stage_device, po.stages, job.shape.m);
  } else {
    if (stage_device != canonical.device) {
      fail(sc, "pipeline_only.layer_to_device",
           std::string(si.name) + " needs its own stage mapping (" + std::to_string(canonical.size()) +
               " runs of layers on devices " + list(canonical.device) + "), but this placement gives " +
               std::to_string(stage_device.size()) + " runs on devices " + list(stage_device) +
               "; schedules that run on any placement: naive, gpipe, looped-bfs");
    }
    job.graph = canonical;
  }
  job.costs.resize(per_stage.size());
  for (size_t s = 0; s < per_stage.size(); ++s) job.costs[s].first_layer = first_layer[s];
  job.placement = lp;
}

}  // namespace

PipelineJob plan_pipeline(const Scenario& sc) {
  BUBBLESIM_ASSERT(sc.pipeline_only.has_value(), "plan_pipeline() on a cluster scenario");
  const PipelineOnlySpec& po = *sc.pipeline_only;
  check_parallel(sc, po);
  PipelineJob job;
  job.kind = parse_schedule(sc.parallel.schedule);
  const ScheduleInfo& si = info(job.kind);
  job.shape.p = po.stages;
  job.shape.m = po.microbatches;
  job.shape.v = sc.parallel.virtual_stages.value_or(si.fixed_chunks == 0 ? 1 : si.fixed_chunks);
  job.shape.group_size = sc.parallel.microbatch_group_size.value_or(0);
  if (sc.parallel.microbatch_group_size && job.kind != ScheduleKind::Interleaved) {
    fail(sc, "parallel.microbatch_group_size", "only interleaved-1f1b uses a microbatch group size");
  }
  const auto shape_errors = check_shape(job.kind, job.shape);
  if (!shape_errors.empty()) {
    std::string msg;
    for (const auto& e : shape_errors) msg += (msg.empty() ? "" : "; ") + e;
    const std::string key = given(sc, "parallel.virtual_stages") ? "parallel.virtual_stages"
                            : given(sc, "parallel.schedule")     ? "parallel.schedule"
                                                                 : "pipeline_only.stages";
    fail(sc, key, msg);
  }
  job.split_backward = po.i.has_value();
  if (si.splits_backward && !job.split_backward) {
    fail(sc, "pipeline_only.times", std::string(si.name) +
                                        " splits the backward into input and weight gradients: give times I and W");
  }
  job.f = *po.f;
  job.i = po.i.value_or(0);
  job.w = po.w.value_or(0);
  job.b = po.b.value_or(job.i + job.w);
  job.fb_given = po.fb.has_value();
  job.fb = po.fb.value_or(job.f + job.b);
  job.latency = po.p2p_latency;

  // Memory check before anything is built.
  const uint64_t stages_total = static_cast<uint64_t>(po.stages) * static_cast<uint64_t>(job.shape.v);
  job.estimated_ops = stages_total * static_cast<uint64_t>(po.microbatches) * (si.splits_backward ? 3 : 2);
  const uint64_t need = job.estimated_ops * kBytesPerOp;
  const uint64_t have = physical_memory_bytes();
  if (job.estimated_ops >= kNone || need > have / 4 * 3) {
    fail(sc, "pipeline_only.microbatches",
         "the program is too large: " + std::to_string(job.estimated_ops) + " ops would need about " +
             std::to_string(need >> 20) + " MiB, more than 3/4 of this machine's " + std::to_string(have >> 20) +
             " MiB (reduce stages or microbatches)");
  }

  std::vector<int32_t> layers_per_stage;
  place_layers(sc, po, job, layers_per_stage);
  if (job.costs.size() != job.graph.size()) job.costs.resize(job.graph.size());
  for (size_t s = 0; s < job.graph.size(); ++s) {
    const double k = layers_per_stage[s];
    StageCost& c = job.costs[s];
    c.f = Time::from_seconds(job.f * k);
    c.b = Time::from_seconds(job.b * k);
    c.i = Time::from_seconds(job.i * k);
    c.w = Time::from_seconds(job.w * k);
    c.activation_units = job.placement ? layers_per_stage[s] : 1;
  }
  job.options.p2p_latency = Time::from_seconds(job.latency);
  if (job.fb_given) job.options.fb_ratio = job.fb / (job.f + job.b);
  if (job.kind == ScheduleKind::DualPipe) {
    job.options.chunk_names = {"f", "r"};
  } else if (job.shape.v > 1) {
    for (int32_t c = 0; c < job.shape.v; ++c) job.options.chunk_names.push_back(std::string(1, static_cast<char>('a' + c % 26)));
  }
  job.options.memory_unit = job.placement ? "layer-microbatch" : job.shape.v > 1 ? "chunk-microbatch" : "stage-microbatch";
  return job;
}

Program build_program(const PipelineJob& job) {
  const auto actions = generate(job.kind, job.shape, job.graph);
  return lower(actions, job.graph, job.costs, job.options);
}

}  // namespace bubblesim::sim
