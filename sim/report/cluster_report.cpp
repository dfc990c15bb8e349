#include "sim/report/cluster_report.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>

namespace bubblesim::sim {
namespace {

constexpr double kGB = 1e9;

std::string fmt(const char* f, double x) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, x);
  return buf;
}

}  // namespace

namespace {

void busiest_links(ClusterResult& r, const Topology& topo, const std::vector<double>& link_bytes) {
  for (LinkId l = 0; l < link_bytes.size(); ++l) {
    if (link_bytes[l] <= 0 || r.iteration_s <= 0) continue;
    const Link& link = topo.link(l);
    r.busiest_links.push_back({link.name, to_string(link.cls), link_bytes[l] / (link.bandwidth.bytes_per_s * r.iteration_s)});
  }
  std::stable_sort(r.busiest_links.begin(), r.busiest_links.end(),
                   [](const auto& a, const auto& b) { return a.utilisation > b.utilisation; });
  if (r.busiest_links.size() > kBusiestLinks) r.busiest_links.resize(kBusiestLinks);
}

void summarise_path(ClusterResult& r, const Program& p, const Trace& t) {
  const auto path = critical_path(p, t);
  r.critical_path_ops = path.size();
  double compute = 0, tp = 0, pp = 0, dp = 0, sp = 0;
  for (OpId id : path) {
    const Op& op = p.op(id);
    const double d = (t.records[id].end - t.records[id].start).seconds();
    switch (op.label.traffic) {
      case Traffic::TensorParallel: tp += d; break;
      case Traffic::Pipeline: pp += d; break;
      case Traffic::DataParallel: dp += d; break;
      case Traffic::Ulysses:
      case Traffic::Ring:
      case Traffic::ContextGather: sp += d; break;
      case Traffic::None: compute += op.kind == OpKind::Compute ? d : 0; break;
    }
  }
  const double waiting = std::max(0.0, r.iteration_s - compute - tp - pp - dp - sp);
  r.critical_path = {{"compute", compute}, {"tensor-parallel collectives", tp}, {"pipeline transfers", pp},
                     {"data-parallel collectives", dp}, {"sequence-parallel communication", sp},
                     {"waiting (latency, issue order)", waiting}};
}

}  // namespace

ClusterResult make_cluster_result(const Scenario& sc, const ClusterJob& job, const TrainingPlan& plan, const Trace& t,
                                  const Topology& topo, const std::vector<double>& link_bytes,
                                  FlopsAccounting accounting) {
  ClusterResult r;
  r.accounting = accounting;
  r.scenario = &sc;
  r.job = &job;
  r.plan = &plan;
  r.trace = &t;
  r.metrics = compute_metrics(plan.program, t);
  r.iteration_s = t.makespan.seconds();
  const double world = job.cluster.world();
  r.tokens_per_s = r.iteration_s > 0 ? static_cast<double>(plan.tokens) / r.iteration_s : 0;
  double flops = model_flops_per_iteration(job.model, job.training.seq_len, job.training.global_batch_size,
                                           accounting, job.training.recompute == "full");
  if (job.training.attention_only()) {
    // Core attention alone: 2 b S^2 h forward with the causal half (Megatron), x3 with backward.
    const double s = static_cast<double>(job.training.seq_len);
    flops = 2 * static_cast<double>(job.training.micro_batch_size) * s * s * job.model.hidden *
            (job.training.scope == "attention-forward" ? 1 : 3) * (accounting == FlopsAccounting::Megatron ? 1 : 2);
  }
  r.tflops_per_gpu = r.iteration_s > 0 ? flops / r.iteration_s / world / 1e12 : 0;
  r.mfu = r.tflops_per_gpu * 1e12 / job.cluster.gpu->bf16_flops.value;
  r.gpu_memory_bytes = job.cluster.gpu->hbm_bytes.value;
  for (size_t d = 0; d < r.metrics.devices.size(); ++d) {
    const MemoryEstimate& m = plan.memory[d];
    const double activations = static_cast<double>(r.metrics.devices[d].peak_activation) * plan.activation_unit_bytes;
    r.peak_memory_bytes.push_back(m.params + m.grads + m.optimizer + m.buffers + activations);
  }
  busiest_links(r, topo, link_bytes);
  summarise_path(r, plan.program, t);
  return r;
}

void write_text(std::ostream& out, const ClusterResult& r) {
  const ClusterJob& j = *r.job;
  const ParallelSpec& ps = j.parallel;
  out << "bubblesim: " << r.scenario->name << "\n";
  out << j.cluster.nodes << " x " << j.cluster.gpus_per_node << " " << j.cluster.gpu->id << "; " << (j.model.preset.empty() ? std::string("custom model") : j.model.preset)
      << " (" << j.model.layers << " layers, hidden " << j.model.hidden << "); seq " << j.training.seq_len
      << ", global batch " << j.training.global_batch_size << ", " << j.shape.m << " microbatches of "
      << j.training.micro_batch_size << "\n";
  out << "parallel: dp " << ps.dp << " x tp " << ps.tp << " x pp " << ps.pp;
  if (ps.ulysses > 1) out << " x ulysses " << ps.ulysses;
  if (ps.ring > 1) out << " x ring " << ps.ring << " (" << (ps.cp_mode == "allgather" ? "all-gather CP" : "ring attention")
                       << ", " << ps.ring_layout << ")";
  out << ", schedule " << info(j.schedule).name << ", ZeRO-" << ps.zero << ", recompute " << j.training.recompute << "\n";
  for (const std::string& n : r.plan->notes) out << "  " << n << "\n";
  out << "simulated: one representative GPU per pipeline stage" << (ps.ring > 1 ? " and ring rank" : "")
      << " (tensor-, Ulysses- and data-parallel ranks are symmetric; their traffic is carried)\n\n";
  out << "device  busy(s)   idle(s)  bubble   p2p_wait  coll_wait    sp_wait  imbalance  peak memory\n";
  for (size_t d = 0; d < r.metrics.devices.size(); ++d) {
    const DeviceMetrics& m = r.metrics.devices[d];
    out << fmt("%6.0f", static_cast<double>(d)) << fmt("%9.4f", m.busy.seconds()) << fmt("%10.4f", m.idle.seconds())
        << fmt("%8.4f", m.idle_breakdown.pipeline_bubble.seconds()) << fmt("%11.4f", m.idle_breakdown.p2p_wait.seconds())
        << fmt("%11.4f", m.idle_breakdown.collective_wait.seconds()) << fmt("%11.4f", m.idle_breakdown.sp_wait.seconds())
        << fmt("%11.4f", m.idle_breakdown.imbalance.seconds()) << fmt("%10.2f GB", r.peak_memory_bytes[d] / kGB) << "\n";
  }
  const double peak = *std::max_element(r.peak_memory_bytes.begin(), r.peak_memory_bytes.end());
  if (j.training.attention_only()) {
    out << "\n" << j.training.scope << " (the distributed attention alone): " << fmt("%.3f", r.iteration_s * 1e3)
        << " ms per call, " << fmt("%.2f", r.iteration_s > 0 ? 1 / r.iteration_s : 0.0) << " iterations/s";
  }
  out << "\niteration time " << fmt("%.4f", r.iteration_s) << " s; " << fmt("%.0f", r.tokens_per_s) << " tokens/s; "
      << fmt("%.1f", r.tflops_per_gpu) << " TFLOPS/GPU; MFU " << fmt("%.3f", r.mfu) << " (FLOPs: "
      << describe(r.accounting) << ")\n";
  out << "bubble fraction (idle / iteration, mean over stages) " << fmt("%.3f", r.metrics.idle_fraction) << "\n";
  out << "critical path (" << r.critical_path_ops << " ops):";
  for (const auto& part : r.critical_path) out << " " << part.what << " " << fmt("%.4f", part.seconds) << " s;";
  out << "\nbusiest links (bytes carried / capacity over the iteration):";
  for (const auto& l : r.busiest_links) out << " " << l.name << " (" << l.cls << ") " << fmt("%.0f%%", 100 * l.utilisation) << ";";
  out << "\n";
  out << "peak memory " << fmt("%.2f", peak / kGB) << " GB of " << fmt("%.2f", r.gpu_memory_bytes / kGB) << " GB: "
      << (peak <= r.gpu_memory_bytes ? "fits" : "DOES NOT FIT, over by " + fmt("%.2f", (peak - r.gpu_memory_bytes) / kGB) + " GB")
      << " (parameters, gradients, optimizer states, activations of the in-flight microbatches)\n";
}

nlohmann::json to_json(const ClusterResult& r) {
  using nlohmann::json;
  json devices = json::array();
  for (size_t d = 0; d < r.metrics.devices.size(); ++d) {
    const DeviceMetrics& m = r.metrics.devices[d];
    const MemoryEstimate& mem = r.plan->memory[d];
    devices.push_back({{"device", d},
                       {"gpu", r.plan->gpu_of_device[d]},
                       {"busy", m.busy.seconds()},
                       {"idle", m.idle.seconds()},
                       {"span", m.span.seconds()},
                       {"idle_breakdown",
                        {{"pipeline_bubble", m.idle_breakdown.pipeline_bubble.seconds()},
                         {"p2p_wait", m.idle_breakdown.p2p_wait.seconds()},
                         {"collective_wait", m.idle_breakdown.collective_wait.seconds()},
                         {"imbalance", m.idle_breakdown.imbalance.seconds()},
                         {"sp_wait", m.idle_breakdown.sp_wait.seconds()}}},
                       {"peak_memory_bytes", static_cast<int64_t>(r.peak_memory_bytes[d])},
                       {"memory",
                        {{"parameters", mem.params},
                         {"gradients", mem.grads},
                         {"optimizer", mem.optimizer},
                         {"sp_buffers", mem.buffers},
                         {"activations",
                          r.peak_memory_bytes[d] - mem.params - mem.grads - mem.optimizer - mem.buffers}}}});
  }
  const double peak = *std::max_element(r.peak_memory_bytes.begin(), r.peak_memory_bytes.end());
  return {{"scenario", r.scenario->name},
          {"iteration_time_s", r.iteration_s},
          {"iterations_per_s", r.iteration_s > 0 ? 1 / r.iteration_s : 0.0},
          {"scope", r.job->training.scope},
          {"tokens_per_s", r.tokens_per_s},
          {"tflops_per_gpu", r.tflops_per_gpu},
          {"mfu", r.mfu},
          {"idle_fraction", r.metrics.idle_fraction},
          {"bubble_fraction", r.metrics.idle_fraction},
          {"peak_memory_bytes", static_cast<int64_t>(peak)},
          {"fits", peak <= r.gpu_memory_bytes},
          {"over_memory_bytes", std::max(0.0, peak - r.gpu_memory_bytes)},
          {"gpu_memory_bytes", r.gpu_memory_bytes},
          {"flops_accounting", describe(r.accounting)},
          {"time_unit", "s"},
          {"simulated_devices", r.job->parallel.ring > 1 ? "one representative GPU per pipeline stage and ring rank"
                                                          : "one representative GPU per pipeline stage"},
          {"notes", r.plan->notes},
          {"critical_path", [&] {
             nlohmann::json parts = nlohmann::json::object();
             for (const auto& part : r.critical_path) parts[part.what] = part.seconds;
             return parts;
           }()},
          {"busiest_links", [&] {
             nlohmann::json links = nlohmann::json::array();
             for (const auto& l : r.busiest_links) {
               links.push_back({{"link", l.name}, {"class", l.cls}, {"utilisation", l.utilisation}});
             }
             return links;
           }()},
          {"devices", devices}};
}

void write_csv(std::ostream& out, const ClusterResult& r) {
  out << "scenario,device,gpu,busy_s,idle_s,pipeline_bubble_s,p2p_wait_s,collective_wait_s,peak_memory_bytes,"
         "iteration_time_s,tokens_per_s,tflops_per_gpu,mfu,imbalance_s,sp_wait_s\n";
  for (size_t d = 0; d < r.metrics.devices.size(); ++d) {
    const DeviceMetrics& m = r.metrics.devices[d];
    out << r.scenario->name << "," << d << "," << r.plan->gpu_of_device[d] << "," << m.busy.seconds() << ","
        << m.idle.seconds() << "," << m.idle_breakdown.pipeline_bubble.seconds() << ","
        << m.idle_breakdown.p2p_wait.seconds() << "," << m.idle_breakdown.collective_wait.seconds() << ","
        << r.peak_memory_bytes[d] << "," << r.iteration_s << "," << r.tokens_per_s << "," << r.tflops_per_gpu << ","
        << r.mfu << "," << m.idle_breakdown.imbalance.seconds() << "," << m.idle_breakdown.sp_wait.seconds() << "\n";
  }
}

}  // namespace bubblesim::sim
