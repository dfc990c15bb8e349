#include "sim/report/report.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace bubblesim::sim {
namespace {

std::string num(double x) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.6g", x);
  return buf;
}

std::string pct(double x) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f%%", 100.0 * x);
  return buf;
}

/// RFC 4180: quote a field holding a comma, quote or line break; double inner quotes.
std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\r\n") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

std::string pad(const std::string& s, size_t w) { return s.size() >= w ? s : std::string(w - s.size(), ' ') + s; }

bool uniform_stages(const PipelineJob& job) {
  return std::all_of(job.costs.begin(), job.costs.end(), [&](const StageCost& c) {
    const StageCost& c0 = job.costs.front();
    return c.f == c0.f && c.b == c0.b && c.i == c0.i && c.w == c0.w;
  });
}

/// The simulated value the closed form's bubble compares to.
double simulated_bubble(const RunResult& r, BubbleMeasure m) {
  const Metrics& mt = r.metrics;
  switch (m) {
    case BubbleMeasure::IdleEveryRank:
    case BubbleMeasure::MaxIdle: return r.unit.of(mt.max_idle);
    case BubbleMeasure::SpanEveryRank: return r.unit.of(mt.max_span_bubble);
  }
  return 0;
}

}  // namespace

RunResult make_result(const Scenario& sc, const PipelineJob& job, const Program& prog, const Trace& trace) {
  RunResult r;
  r.scenario = &sc;
  r.job = &job;
  r.program = &prog;
  r.trace = &trace;
  r.metrics = compute_metrics(prog, trace);
  if (job.latency != 0) {
    r.closed_form_note = "none with p2p latency > 0 (the static order stalls beyond any simple formula)";
  } else if (job.graph.size() != canonical_stages(job.kind, job.shape).size() || !uniform_stages(job)) {
    r.closed_form_note = "none for unequal stages or a layer placement of its own";
  } else {
    const StageCost& c = job.costs.front();
    const TimeUnit& u = r.unit;
    PassTimes t{u.of(c.f), u.of(c.b), u.of(c.i), u.of(c.w), 0};
    t.fb = job.options.fb_ratio ? *job.options.fb_ratio * (t.f + t.b) : t.f + t.b;
    r.closed_form = closed_form(job.kind, job.shape, t);
    if (!r.closed_form) r.closed_form_note = "none in this regime of F, I, W (see algorithms.md 1.8-1.10)";
  }
  return r;
}

namespace {

void text_header(std::ostream& out, const RunResult& r) {
  const PipelineJob& job = *r.job;
  out << "bubblesim: " << r.scenario->name << "\n";
  out << "schedule " << info(job.kind).name << ": p=" << job.shape.p << " ranks, m=" << job.shape.m
      << " microbatches";
  if (job.shape.v > 1) out << ", v=" << job.shape.v << " chunks per rank";
  out << "\n";
  out << "times per " << (job.placement ? "layer" : job.shape.v > 1 ? "chunk" : "stage") << ": F=" << num(job.f);
  if (job.split_backward) {
    out << " I=" << num(job.i) << " W=" << num(job.w);
  } else {
    out << " B=" << num(job.b);
  }
  if (job.fb_given) out << " FB=" << num(job.fb);
  out << ", p2p latency " << num(job.latency) << " (" << r.unit.name << ")\n";
}

void text_placement(std::ostream& out, const PipelineJob& job) {
  if (!job.placement) return;
  const LayerPlacement& lp = *job.placement;
  out << "layers: " << lp.layers << " placed by " << to_string(lp.source) << " in " << lp.stages << " stages, "
      << lp.hops_per_forward << " device hops per forward pass\n";
  for (size_t d = 0; d < lp.layers_of_device.size(); ++d) {
    out << "  device " << d << ": layers";
    for (int32_t l : lp.layers_of_device[d]) out << " " << l;
    out << "\n";
  }
  if (lp.contiguous) return;
  if (lp.by_schedule && job.kind == ScheduleKind::DualPipe) {
    out << "  each device holds one stage of each direction, as dualpipe places them (two copies of the weights)\n";
  } else if (lp.by_schedule) {
    out << "  each device holds " << job.shape.v << " chunks of layers, as " << info(job.kind).name
        << " places them\n";
  } else {
    out << "  placement is NOT contiguous: each hop is a transfer (" << lp.hops_per_forward << " per forward, "
        << lp.hops_per_forward << " per backward, vs " << job.shape.p - 1
        << " for contiguous stages), and each device waits for the others between its layers\n";
  }
}

void text_devices(std::ostream& out, const RunResult& r) {
  const Metrics& m = r.metrics;
  out << pad("device", 6) << pad("busy", 10) << pad("idle", 10) << pad("span", 10) << pad("idle%", 8)
      << pad("bubble", 10) << pad("p2p_wait", 10) << pad("peak act.", 11) << pad("ops", 7) << "\n";
  for (const DeviceMetrics& d : m.devices) {
    out << pad(std::to_string(d.device), 6) << pad(num(r.unit.of(d.busy)), 10) << pad(num(r.unit.of(d.idle)), 10)
        << pad(num(r.unit.of(d.span)), 10)
        << pad(pct(m.makespan > Time::zero() ? d.idle.seconds() / m.makespan.seconds() : 0), 8)
        << pad(num(r.unit.of(d.idle_breakdown.pipeline_bubble)), 10)
        << pad(num(r.unit.of(d.idle_breakdown.p2p_wait)), 10) << pad(std::to_string(d.peak_activation), 11)
        << pad(std::to_string(d.ops), 7) << "\n";
  }
}

/// The bubble in both conventions, each beside its closed form where one applies.
void text_bubbles(std::ostream& out, const RunResult& r) {
  const Metrics& m = r.metrics;
  const std::string& u = r.unit.name;
  const auto& cf = r.closed_form;
  out << "iteration time (makespan): " << num(r.unit.of(m.makespan)) << " " << u << "\n";
  out << "bubble fraction, of total time (idle / makespan, mean over devices): " << num(m.idle_fraction);
  if (cf && cf->fraction) out << "   closed form " << *cf->fraction_formula << " = " << num(*cf->fraction);
  out << "\n";
  out << "bubble fraction, relative to ideal (idle / busy): " << num(m.bubble_fraction_of_ideal);
  if (cf && cf->relative && cf->measure != BubbleMeasure::SpanEveryRank) {
    out << "   closed form " << *cf->relative_formula << " = " << num(*cf->relative);
  }
  out << "\n";
  out << "span bubble (span - busy, max over devices): " << num(r.unit.of(m.max_span_bubble)) << " " << u
      << "   fraction of span (mean): " << num(m.span_bubble_fraction) << "\n";
  if (cf) {
    out << "closed form bubble " << cf->bubble_formula << " = " << num(cf->bubble) << " " << u << " ("
        << to_string(cf->measure) << "); simulated " << num(simulated_bubble(r, cf->measure)) << " " << u
        << "  [assumes " << cf->regime << "]\n";
  } else {
    out << "closed form: " << r.closed_form_note << "\n";
  }
  out << "peak activations: " << m.peak_activation << " (unit: " << r.program->memory_unit << ", on device "
      << m.peak_activation_device << ")";
  if (cf && cf->peak && !r.job->placement) out << "   closed form " << *cf->peak_formula << " = " << num(*cf->peak);
  out << "\n";
}

}  // namespace

void write_text(std::ostream& out, const RunResult& r) {
  text_header(out, r);
  text_placement(out, *r.job);
  out << "\n";
  text_devices(out, r);
  out << "\n";
  text_bubbles(out, r);
  const std::string gantt = ascii_gantt(*r.program, *r.trace, r.unit);
  if (!gantt.empty()) out << "\n" << gantt;
}

nlohmann::json to_json(const RunResult& r) {
  using nlohmann::json;
  const Metrics& m = r.metrics;
  const PipelineJob& job = *r.job;
  json devices = json::array();
  for (const DeviceMetrics& d : m.devices) {
    devices.push_back({
        {"device", d.device},
        {"busy", r.unit.of(d.busy)},
        {"idle", r.unit.of(d.idle)},
        {"span", r.unit.of(d.span)},
        {"idle_breakdown",
         {{"pipeline_bubble", r.unit.of(d.idle_breakdown.pipeline_bubble)},
          {"p2p_wait", r.unit.of(d.idle_breakdown.p2p_wait)},
          {"collective_wait", r.unit.of(d.idle_breakdown.collective_wait)},
          {"imbalance", r.unit.of(d.idle_breakdown.imbalance)}}},
        {"peak_memory_bytes", nullptr},
        {"peak_activation", d.peak_activation},
        {"first_start", r.unit.of(d.first_start)},
        {"last_end", r.unit.of(d.last_end)},
        {"ops", d.ops},
    });
  }
  json j = {
      {"scenario", r.scenario->name},
      {"iteration_time_s", r.unit.of(m.makespan)},
      {"tokens_per_s", nullptr},
      {"tflops_per_gpu", nullptr},
      {"mfu", nullptr},
      {"idle_fraction", m.idle_fraction},
      {"bubble_fraction", m.idle_fraction},
      {"peak_memory_bytes", nullptr},
      {"devices", devices},
      {"time_unit", r.unit.name},
      {"schedule", std::string(info(job.kind).name)},
      {"stages", job.shape.p},
      {"microbatches", job.shape.m},
      {"virtual_stages", job.shape.v},
      {"bubble_fraction_of_ideal", m.bubble_fraction_of_ideal},
      {"span_bubble_fraction", m.span_bubble_fraction},
      {"max_idle", r.unit.of(m.max_idle)},
      {"max_span_bubble", r.unit.of(m.max_span_bubble)},
      {"peak_activation", m.peak_activation},
      {"peak_activation_unit", r.program->memory_unit},
      {"ops", m.ops},
      {"events", r.trace->events},
  };
  if (r.closed_form) {
    const ClosedForm& c = *r.closed_form;
    json cf = {{"bubble_formula", c.bubble_formula},
               {"bubble", c.bubble},
               {"measure", to_string(c.measure)},
               {"simulated_bubble", simulated_bubble(r, c.measure)},
               {"regime", c.regime}};
    if (c.fraction) cf["fraction_formula"] = *c.fraction_formula, cf["fraction"] = *c.fraction;
    if (c.relative) cf["relative_formula"] = *c.relative_formula, cf["relative"] = *c.relative;
    if (c.peak) cf["peak_formula"] = *c.peak_formula, cf["peak"] = *c.peak;
    j["closed_form"] = cf;
  } else {
    j["closed_form"] = nullptr;
    j["closed_form_note"] = r.closed_form_note;
  }
  if (job.placement) {
    const LayerPlacement& lp = *job.placement;
    j["placement"] = {{"layers", lp.layers},
                      {"how", to_string(lp.source)},
                      {"stages", lp.stages},
                      {"hops_per_forward", lp.hops_per_forward},
                      {"contiguous", lp.contiguous},
                      {"chunked_by_schedule", lp.by_schedule},
                      {"layers_of_device", lp.layers_of_device}};
  } else {
    j["placement"] = nullptr;
  }
  return j;
}

void write_csv(std::ostream& out, const RunResult& r) {
  const Metrics& m = r.metrics;
  out << "scenario,schedule,stages,microbatches,virtual_stages,iteration_time,time_unit,device,busy,idle,span,"
         "idle_fraction,pipeline_bubble,p2p_wait,collective_wait,imbalance,peak_activation,ops\n";
  for (const DeviceMetrics& d : m.devices) {
    out << csv_field(r.scenario->name) << "," << info(r.job->kind).name << "," << r.job->shape.p << "," << r.job->shape.m << ","
        << r.job->shape.v << "," << num(r.unit.of(m.makespan)) << "," << r.unit.name << "," << d.device << ","
        << num(r.unit.of(d.busy)) << "," << num(r.unit.of(d.idle)) << "," << num(r.unit.of(d.span)) << ","
        << num(m.makespan > Time::zero() ? d.idle.seconds() / m.makespan.seconds() : 0) << ","
        << num(r.unit.of(d.idle_breakdown.pipeline_bubble)) << "," << num(r.unit.of(d.idle_breakdown.p2p_wait)) << ","
        << num(r.unit.of(d.idle_breakdown.collective_wait)) << "," << num(r.unit.of(d.idle_breakdown.imbalance))
        << "," << d.peak_activation << "," << d.ops << "\n";
  }
}

}  // namespace bubblesim::sim
