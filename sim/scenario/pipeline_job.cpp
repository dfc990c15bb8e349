#include "sim/scenario/pipeline_job.hpp"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "sim/core/error.hpp"

namespace bubblesim::sim {
namespace {

constexpr int32_t kMaxLayers = 1'000'000;
constexpr uint64_t kAssumedMemory = 8ULL << 30;  // when the OS does not say
constexpr double kUsableMemory = 0.75;           // of physical memory, for one program
constexpr double kClockHeadroom = 0.5;           // an iteration may use half the int64 ps range

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
  return pages > 0 && page > 0 ? static_cast<uint64_t>(pages) * static_cast<uint64_t>(page) : kAssumedMemory;
}

/// pipeline_only models one pipeline of given op times: other parallel keys must stay out.
void check_parallel(const Scenario& sc, const PipelineOnlySpec& po) {
  const ParallelSpec& ps = sc.parallel;
  const std::pair<const char*, int32_t> degrees[] = {
      {"parallel.dp", ps.dp}, {"parallel.tp", ps.tp}, {"parallel.ulysses", ps.ulysses}, {"parallel.ring", ps.ring}};
  for (const auto& [key, value] : degrees) {
    if (value != 1) {
      fail(sc, key, "a pipeline_only scenario models one pipeline, so this must be 1 (got " +
                        std::to_string(value) + ")");
    }
  }
  if (given(sc, "parallel.pp") && ps.pp != po.stages) {
    fail(sc, "parallel.pp", "must equal pipeline_only.stages (" + std::to_string(po.stages) +
                                ") or be left out (got " + std::to_string(ps.pp) + ")");
  }
  if (given(sc, "parallel.partition")) {
    fail(sc, "parallel.partition", "in a pipeline_only scenario write the partition as pipeline_only.partition");
  }
  for (const char* key : {"parallel.zero", "parallel.placement", "parallel.ring_layout", "parallel.cp_mode",
                          "parallel.overlap_grad_reduce", "parallel.sequence_parallel"}) {
    if (given(sc, key)) fail(sc, key, "has no meaning in a pipeline_only scenario (fixed op times, one pipeline)");
  }
}

/// One pass through the model: per stage, its device, first layer and layer count.
struct ModelStages {
  std::vector<int32_t> device;
  std::vector<int32_t> first_layer;
  std::vector<int32_t> layers;
  void add(int32_t d, int32_t first, int32_t count) {
    device.push_back(d);
    first_layer.push_back(first);
    layers.push_back(count);
  }
};

/// Runs of consecutive layers on one device, from `layer_to_device`.
ModelStages stages_from_devices(const Scenario& sc, const PipelineOnlySpec& po) {
  const std::string key = "pipeline_only.layer_to_device";
  const std::vector<int32_t>& dev = po.layer_to_device;
  const int32_t layers = *po.layers;
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
  ModelStages st;
  std::vector<int32_t> runs(static_cast<size_t>(po.stages), 0);
  for (int32_t l = 0; l < layers; ++l) {
    const int32_t d = dev[static_cast<size_t>(l)];
    if (l == 0 || dev[static_cast<size_t>(l - 1)] != d) {
      st.add(d, l, 0);
      if (++runs[static_cast<size_t>(d)] > INT16_MAX) {
        fail(sc, key, "device " + std::to_string(d) + " holds more than " + std::to_string(INT16_MAX) +
                          " separate runs of layers");
      }
    }
    ++st.layers.back();
  }
  return st;
}

/// The partition's entries (or an even split) on the schedule's own devices.
ModelStages stages_from_partition(const Scenario& sc, const PipelineOnlySpec& po, const std::vector<int32_t>& devices,
                                  const ScheduleInfo& si, int32_t v) {
  const std::string key = "pipeline_only.partition";
  const int32_t layers = *po.layers;
  const size_t n = devices.size();
  std::vector<int32_t> part = po.partition;
  if (part.empty()) {
    if (static_cast<size_t>(layers) < n) {
      fail(sc, "pipeline_only.layers", std::to_string(layers) + " layers cannot fill " + std::to_string(n) + " stages");
    }
    for (size_t s = 0; s < n; ++s) part.push_back(static_cast<int32_t>(layers / n + (s < layers % n ? 1 : 0)));
  } else {
    if (part.size() != n) {
      fail(sc, key, "has " + std::to_string(part.size()) + " entries but " + std::string(si.name) + " with " +
                        std::to_string(po.stages) + " stages x " + std::to_string(v) + " virtual stages needs " +
                        std::to_string(n) + " (layers per stage, in order)");
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
  ModelStages st;
  int32_t first = 0;
  for (size_t s = 0; s < n; ++s) {
    st.add(devices[s], first, part[s]);
    first += part[s];
  }
  return st;
}

/// The report's view of the placement, from the final graph (DualPipe's second direction too).
LayerPlacement describe(const ModelStages& one_pass, const StageGraph& g, const std::vector<StageCost>& costs,
                        const std::vector<int32_t>& layers_per_stage, int32_t ranks, int32_t layers,
                        PlacementSource source, bool several_chunks) {
  LayerPlacement lp;
  lp.layers = layers;
  lp.source = source;
  lp.stages = static_cast<int32_t>(one_pass.device.size());
  for (size_t s = 1; s < one_pass.device.size(); ++s) lp.hops_per_forward += one_pass.device[s] != one_pass.device[s - 1];
  lp.layers_of_device.assign(static_cast<size_t>(ranks), {});
  for (size_t s = 0; s < g.size(); ++s) {
    auto& mine = lp.layers_of_device[static_cast<size_t>(g.device[s])];
    for (int32_t k = 0; k < layers_per_stage[s]; ++k) mine.push_back(costs[s].first_layer + k);
  }
  for (auto& ls : lp.layers_of_device) {
    std::sort(ls.begin(), ls.end());
    ls.erase(std::unique(ls.begin(), ls.end()), ls.end());
  }
  lp.contiguous = std::all_of(lp.layers_of_device.begin(), lp.layers_of_device.end(), [](const auto& ls) {
    return ls.empty() || ls.back() - ls.front() + 1 == static_cast<int32_t>(ls.size());
  });
  lp.by_schedule = source != PlacementSource::LayerToDevice && several_chunks;
  return lp;
}

/// Sets job.graph, the first layer of each stage in job.costs, and `layers_per_stage`.
void place_layers(const Scenario& sc, const PipelineOnlySpec& po, PipelineJob& job,
                  std::vector<int32_t>& layers_per_stage) {
  const ScheduleInfo& si = info(job.kind);
  const StageGraph canonical = canonical_stages(job.kind, job.shape);
  job.costs.assign(canonical.size(), StageCost{});
  if (!po.layers) {
    if (!po.partition.empty()) fail(sc, "pipeline_only.partition", "needs pipeline_only.layers");
    if (!po.layer_to_device.empty()) fail(sc, "pipeline_only.layer_to_device", "needs pipeline_only.layers");
    job.graph = canonical;
    layers_per_stage.assign(canonical.size(), 1);
    return;
  }
  if (*po.layers > kMaxLayers) {
    fail(sc, "pipeline_only.layers", "at most " + std::to_string(kMaxLayers) + " layers (got " +
                                         std::to_string(*po.layers) + ")");
  }
  if (!po.partition.empty() && !po.layer_to_device.empty()) {
    fail(sc, "pipeline_only.layer_to_device", "give either partition or layer_to_device, not both");
  }
  const bool dual = job.kind == ScheduleKind::DualPipe;
  // DualPipe's two directions each run the whole model over p stages, with one partition.
  std::vector<int32_t> model_devices = canonical.device;
  if (dual) model_devices.resize(canonical.size() / 2);
  PlacementSource source = PlacementSource::EvenSplit;
  ModelStages st;
  if (!po.layer_to_device.empty()) {
    if (dual) fail(sc, "pipeline_only.layer_to_device", "dualpipe places its two directions itself; use partition");
    st = stages_from_devices(sc, po);
    source = PlacementSource::LayerToDevice;
  } else {
    st = stages_from_partition(sc, po, model_devices, si, job.shape.v);
    source = po.partition.empty() ? PlacementSource::EvenSplit : PlacementSource::Partition;
  }
  if (dual) {
    job.graph = canonical;
    layers_per_stage = st.layers;
    layers_per_stage.insert(layers_per_stage.end(), st.layers.begin(), st.layers.end());
    for (size_t s = 0; s < canonical.size(); ++s) job.costs[s].first_layer = st.first_layer[s % st.layers.size()];
  } else if (si.any_placement || st.device == canonical.device) {
    job.graph = si.any_placement ? path_stages(st.device, po.stages, job.shape.m) : canonical;
    layers_per_stage = st.layers;
    job.costs.assign(job.graph.size(), StageCost{});
    for (size_t s = 0; s < job.graph.size(); ++s) job.costs[s].first_layer = st.first_layer[s];
  } else {
    fail(sc, "pipeline_only.layer_to_device",
         std::string(si.name) + " needs its own stage mapping (" + std::to_string(canonical.size()) +
             " runs of layers on devices " + list(canonical.device) + "), but this placement gives " +
             std::to_string(st.device.size()) + " runs on devices " + list(st.device) +
             "; schedules that run on any placement: naive, gpipe, looped-bfs");
  }
  const bool several_chunks = job.shape.v > 1 || dual;
  job.placement = describe(st, job.graph, job.costs, layers_per_stage, po.stages, *po.layers, source, several_chunks);
}

/// A time of the scenario in the simulator's clock, refusing values that round to nothing.
Time to_time(const Scenario& sc, const std::string& key, double units) {
  const Time t = Time::from_seconds(units * kSecondsPerUnit);
  if (units > 0 && t == Time::zero()) fail(sc, key, "too small to represent (the clock resolves 1e-9 units)");
  return t;
}

/// The program must fit in memory and its iteration in the int64-picosecond clock.
void check_size(const Scenario& sc, const PipelineJob& job, const std::vector<int32_t>& layers_per_stage) {
  const uint64_t slots = static_cast<uint64_t>(job.graph.size()) * static_cast<uint64_t>(job.graph.microbatches);
  const uint64_t ops = slots * (job.split_backward ? 3 : 2);
  const uint64_t need = ops * kBytesPerOp;
  const uint64_t have = physical_memory_bytes();
  if (ops >= kNone || static_cast<double>(need) > kUsableMemory * static_cast<double>(have)) {
    fail(sc, "pipeline_only.microbatches",
         "the program is too large: " + std::to_string(ops) + " ops would need about " + std::to_string(need >> 20) +
             " MiB, more than 3/4 of this machine's " + std::to_string(have >> 20) +
             " MiB (reduce stages, layers or microbatches)");
  }
  // Any schedule ends by the time every op has run one after another, plus every latency.
  const double per_pass = std::max(job.f + job.b, job.fb) + 2 * job.latency;
  const double layers = std::accumulate(layers_per_stage.begin(), layers_per_stage.end(), 0.0);
  const double bound = per_pass * layers * static_cast<double>(job.graph.microbatches);
  const double limit = kClockHeadroom * Time::max().seconds() / kSecondsPerUnit;
  if (bound > limit) {
    fail(sc, "pipeline_only.times", "the iteration could last " + std::to_string(bound) +
                                        " units, beyond the simulator's clock (about " +
                                        std::to_string(static_cast<int64_t>(limit)) + " units); scale the times down");
  }
}

void check_shape_or_fail(const Scenario& sc, const PipelineJob& job) {
  const auto errors = check_shape(job.kind, job.shape);
  if (errors.empty()) return;
  std::string msg;
  for (const auto& e : errors) msg += (msg.empty() ? "" : "; ") + e;
  const std::string key = given(sc, "parallel.virtual_stages") ? "parallel.virtual_stages"
                          : given(sc, "parallel.schedule")     ? "parallel.schedule"
                                                               : "pipeline_only.stages";
  fail(sc, key, msg);
}

std::vector<std::string> chunk_names(const PipelineJob& job) {
  if (job.kind == ScheduleKind::DualPipe) return {"f", "r"};
  std::vector<std::string> names;
  if (job.shape.v == 1) return names;
  constexpr int kLetters = 26;
  for (int32_t c = 0; c < job.shape.v; ++c) {
    names.push_back(c < kLetters ? std::string(1, static_cast<char>('a' + c)) : "c" + std::to_string(c));
  }
  return names;
}

}  // namespace

const char* to_string(PlacementSource s) {
  switch (s) {
    case PlacementSource::EvenSplit: return "even split";
    case PlacementSource::Partition: return "partition";
    case PlacementSource::LayerToDevice: return "layer_to_device";
  }
  return "?";
}

PipelineJob plan_pipeline(const Scenario& sc) {
  BUBBLESIM_ASSERT(sc.pipeline_only.has_value(), "plan_pipeline() on a cluster scenario");
  const PipelineOnlySpec& po = *sc.pipeline_only;
  check_parallel(sc, po);
  PipelineJob job;
  job.kind = parse_schedule(sc.parallel.schedule);
  const ScheduleInfo& si = info(job.kind);
  job.shape = {po.stages, po.microbatches, sc.parallel.virtual_stages.value_or(std::max(1, si.fixed_chunks)),
               sc.parallel.microbatch_group_size.value_or(0)};
  if (sc.parallel.microbatch_group_size && job.kind != ScheduleKind::Interleaved) {
    fail(sc, "parallel.microbatch_group_size", "only interleaved-1f1b uses a microbatch group size");
  }
  check_shape_or_fail(sc, job);
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

  constexpr int64_t kMaxStages = 1'000'000;
  if (static_cast<int64_t>(job.shape.p) * job.shape.v > kMaxStages) {
    fail(sc, "pipeline_only.stages", "at most " + std::to_string(kMaxStages) + " stages x virtual stages (got " +
                                         std::to_string(static_cast<int64_t>(job.shape.p) * job.shape.v) + ")");
  }
  std::vector<int32_t> layers_per_stage;
  place_layers(sc, po, job, layers_per_stage);
  check_size(sc, job, layers_per_stage);
  for (size_t s = 0; s < job.graph.size(); ++s) {
    const double k = layers_per_stage[s];
    StageCost& c = job.costs[s];
    c.f = to_time(sc, "pipeline_only.times.F", job.f * k);
    c.b = to_time(sc, "pipeline_only.times.B", job.b * k);
    c.i = to_time(sc, "pipeline_only.times.I", job.i * k);
    c.w = to_time(sc, "pipeline_only.times.W", job.w * k);
    c.activation_units = job.placement ? layers_per_stage[s] : 1;
  }
  job.options.p2p_latency = to_time(sc, "pipeline_only.p2p_latency", job.latency);
  if (job.fb_given) job.options.fb_ratio = job.fb / (job.f + job.b);
  job.options.chunk_names = chunk_names(job);
  job.options.memory_unit = job.placement ? "layer-microbatch" : job.shape.v > 1 ? "chunk-microbatch" : "stage-microbatch";
  return job;
}

Program build_program(const PipelineJob& job) {
  const auto actions = generate(job.kind, job.shape, job.graph);
  return lower(actions, job.graph, job.costs, job.options);
}

}  // namespace bubblesim::sim
