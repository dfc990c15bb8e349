#include "sim/report/explain.hpp"

#include <cstdio>
#include <nlohmann/json.hpp>

#include "sim/exec/executor.hpp"
#include "sim/model/compute.hpp"
#include "sim/model/cost_model.hpp"
#include "sim/model/network.hpp"
#include "sim/sched/training.hpp"
#include "sim/topo/topology.hpp"
#include "sim/workload/sequence_parallel.hpp"
#include "sim/workload/transformer.hpp"

namespace bubblesim::sim {
namespace {

constexpr double kParam = kParamBytes, kGrad = kGradBytes, kOptimizer = kOptimizerBytes;  // per parameter
constexpr double kElement = 2;  // bytes of an activation element (bf16)

/// The degree the rows compare at: the job's sequence-parallel degree, else its tp, else a node.
int32_t comparison_degree(const ClusterJob& job) {
  const int32_t sp = job.parallel.ulysses * job.parallel.ring;
  if (sp > 1) return sp;
  if (job.parallel.tp > 1) return job.parallel.tp;
  return job.cluster.gpus_per_node;
}

/// The ring groups that exchange K/V blocks at the same time: the job's own (with every twin
/// over tp, Ulysses and dp ranks), or N consecutive GPUs over the whole cluster when the job has
/// no ring.
std::vector<std::vector<int32_t>> ring_groups(const ClusterJob& job, int32_t n) {
  std::vector<std::vector<int32_t>> groups;
  if (job.parallel.ring > 1) {
    const RankPlacement place(job);
    Coord c;
    for (c[Dim::Tp] = 0; c[Dim::Tp] < place.degree(Dim::Tp); ++c[Dim::Tp]) {
      for (c[Dim::Ulysses] = 0; c[Dim::Ulysses] < place.degree(Dim::Ulysses); ++c[Dim::Ulysses]) {
        for (c[Dim::Dp] = 0; c[Dim::Dp] < place.degree(Dim::Dp); ++c[Dim::Dp]) groups.push_back(place.group(Dim::Ring, c));
      }
    }
    return groups;
  }
  for (int32_t first = 0; first + n <= job.cluster.world(); first += n) {
    std::vector<int32_t> g;
    for (int32_t i = 0; i < n; ++i) g.push_back(first + i);
    groups.push_back(g);
  }
  return groups;
}

/// Time for one ring step: every rank of every group sends `bytes` to the next, on the flow
/// network of the job's topology.
double ring_step_seconds(const Topology& topo, const std::vector<std::vector<int32_t>>& groups, int64_t bytes) {
  Program p;
  const DeviceId d = p.add_device("ring step");
  Op recv;
  recv.kind = OpKind::Recv;
  recv.stream = p.add_stream(d, StreamKind::Comm, "ring");
  const OpId id = p.add_op(recv);
  const OpId members[] = {id};
  const GroupId g = p.add_group(GroupKind::Transfer, members, Bytes{bytes});
  std::vector<Transfer> transfers;
  for (const auto& ring : groups) {
    for (size_t i = 0; i < ring.size(); ++i) transfers.push_back({ring[i], ring[(i + 1) % ring.size()], Bytes{bytes}});
  }
  p.set_transfers(g, transfers);
  p.finalize();
  FlowNetwork net(topo);
  return simulate(p, GivenTimes{}, &net).makespan.seconds();
}

RingOverlap ring_overlap(const ClusterJob& job, const Topology& topo, int32_t n) {
  const ResolvedModel& m = job.model;
  const int64_t ring = job.parallel.ring > 1 ? job.parallel.ring : n;
  const int64_t ulysses = job.parallel.ring > 1 ? job.parallel.ulysses : 1;
  const int64_t heads = m.heads / (job.parallel.tp * ulysses);
  const int64_t kv_heads = m.kv_heads / (job.parallel.tp * ulysses);
  const int64_t d = m.hidden / m.heads;
  const int64_t b = job.training.micro_batch_size;
  RingOverlap o;
  o.block_tokens = job.training.seq_len / ring;
  const RooflineCompute compute(*job.cluster.gpu, job.training.attention_kernel, job.cluster.elementwise_efficiency);
  o.compute_s = compute.attention({b, o.block_tokens, o.block_tokens, heads, d, 1.0, false}).seconds();
  const int64_t bytes =
      sp_traffic({b, job.training.seq_len, m.heads, m.kv_heads, d, job.parallel.tp, ulysses, ring}, false).kv_block;
  o.transfer_s = ring_step_seconds(topo, ring_groups(job, static_cast<int32_t>(ring)), bytes);
  // n >= (h_kv / h) e F / (2 BW) with the FLOP/s and bandwidth this block actually gets.
  const double flops = 4.0 * static_cast<double>(b) * static_cast<double>(o.block_tokens) *
                       static_cast<double>(o.block_tokens) * static_cast<double>(heads * d);
  const double flop_rate = flops / o.compute_s;
  const double bandwidth = static_cast<double>(bytes) / o.transfer_s;
  o.threshold_tokens = static_cast<double>(kv_heads) / static_cast<double>(heads) * kElement * flop_rate / (2 * bandwidth);
  o.holds = o.compute_s >= o.transfer_s;
  return o;
}

}  // namespace

Explanation explain(const ClusterJob& job) {
  const ResolvedModel& m = job.model;
  const TrainingSpec& t = job.training;
  Explanation e;
  const int32_t n = comparison_degree(job);
  e.degree = n;
  const double N = n;
  const double f = (N - 1) / N;
  const double b = static_cast<double>(t.micro_batch_size);
  const double S = static_cast<double>(t.seq_len);
  const double h = m.hidden;
  const double psi = static_cast<double>(layer_params(m));
  const bool flash = t.attention_kernel != "unfused";
  const double act = activation_bytes_per_token(m, 1, true, t.recompute, flash, t.seq_len, t.dropout > 0) * b * S;
  const double states = psi * (kParam + kGrad + kOptimizer);
  const double bshe = b * S * h * kElement;
  const double grad_all_reduce = 2 * f * psi * kGrad;
  auto sp = [&](int64_t ulysses, int64_t ring, bool allgather) {
    const SpTraffic s = sp_traffic({t.micro_batch_size, t.seq_len, m.heads, m.kv_heads, m.hidden / m.heads, 1,
                                    ulysses, ring}, allgather);
    return static_cast<double>(s.ulysses_forward + s.ulysses_backward + s.ring_forward + s.ring_backward +
                               s.allgather_forward + s.allgather_backward);
  };
  const bool ulysses_fits = m.heads % n == 0 && m.kv_heads % n == 0;
  e.rows.push_back({ulysses_fits ? "SP-Ulysses" : "SP-Ulysses (N must divide the KV heads)", "heads (attention), sequence",
                    ulysses_fits ? sp(n, 1, false) : 0, grad_all_reduce, states, act / N});
  e.rows.push_back({"SP-Ring", "sequence", sp(1, n, false), grad_all_reduce, states, act / N});
  const ParallelSpec& ps = job.parallel;
  if (ps.ulysses > 1 && ps.ring > 1) {
    e.rows.push_back({"USP " + std::to_string(ps.ulysses) + "x" + std::to_string(ps.ring) + " (this scenario)",
                      "heads x sequence", sp(ps.ulysses, ps.ring, ps.cp_mode == "allgather"), grad_all_reduce, states,
                      act / N});
  }
  e.rows.push_back({"All-gather CP", "sequence", sp(1, n, true), grad_all_reduce, states, act / N});
  e.rows.push_back({"DP", "batch", 0, grad_all_reduce, states, act / N});
  e.rows.push_back({"ZeRO-1", "batch; optimizer states", 0, f * psi * (kGrad + kParam),
                    psi * (kParam + kGrad + kOptimizer / N), act / N});
  e.rows.push_back({"ZeRO-2", "batch; gradients, optimizer states", 0, f * psi * (kGrad + kParam),
                    psi * (kParam + (kGrad + kOptimizer) / N), act / N});
  e.rows.push_back({"ZeRO-3", "batch; all model states", 0, f * psi * (2 * kParam + kGrad), states / N, act / N});
  const double tp_act = activation_bytes_per_token(m, n, false, t.recompute, flash, t.seq_len, t.dropout > 0) * b * S;
  e.rows.push_back({"TP", "hidden (weights)", 8 * f * bshe, 0, states / N, tp_act});
  e.rows.push_back({"TP + Megatron-SP", "hidden; sequence outside", 10 * f * bshe, 0, states / N, act / N});
  // A stage boundary carries the activations forward and their gradients back once per
  // microbatch; spread over the L / N layers of a stage. The first stage keeps N microbatches.
  e.rows.push_back({"PP (1F1B)", "layers", 2 * bshe * N / m.layers, 0, states / N, act});
  RankPlacement place(job);
  const Topology topo(job.cluster);
  for (Dim dim : kDims) {
    if (place.degree(dim) > 1 && place.crosses_nodes(dim, topo)) e.crossing.push_back(to_string(dim));
  }
  e.ring = ring_overlap(job, topo, n);
  return e;
}

void write_explain_text(std::ostream& out, const Scenario& sc, const ClusterJob& job, const Explanation& e) {
  const ResolvedModel& m = job.model;
  char buf[512];
  out << "bubblesim explain: " << sc.name << "\n";
  out << (m.preset.empty() ? std::string("custom model") : m.preset) << " (hidden " << m.hidden << ", " << m.heads << " heads, " << m.kv_heads << " KV heads), seq "
      << job.training.seq_len << ", micro batch " << job.training.micro_batch_size << ", recompute "
      << job.training.recompute << "\n";
  out << "per rank and per layer at degree N = " << e.degree
      << " (MB = 1e6 bytes; activation traffic per microbatch, forward + backward; weight traffic per iteration)\n\n";
  std::snprintf(buf, sizeof buf, "%-40s %-34s %14s %14s %14s %14s\n", "method", "splits", "act comm MB",
                "weight comm MB", "states MB", "activations MB");
  out << buf;
  for (const ExplainRow& r : e.rows) {
    std::snprintf(buf, sizeof buf, "%-40s %-34s %14.1f %14.1f %14.1f %14.1f\n", r.method.c_str(), r.split.c_str(),
                  r.activation_comm / 1e6, r.param_comm / 1e6, r.model_states / 1e6, r.activations / 1e6);
    out << buf;
  }
  out << "(sequence-parallel rows keep weights replicated: with ZeRO they shard states as the ZeRO rows do)\n\n";
  const RingOverlap& o = e.ring;
  std::snprintf(buf, sizeof buf,
                "ring overlap: K/V block of %lld tokens; attention per step %.3f ms vs K/V transfer %.3f ms on this "
                "cluster -> %s (compute covers the transfer from about %.0f tokens per block)\n",
                static_cast<long long>(o.block_tokens), o.compute_s * 1e3, o.transfer_s * 1e3,
                o.holds ? "overlap holds" : "overlap FAILS: ring traffic shows up as sp_wait", o.threshold_tokens);
  out << buf;
  out << "groups crossing nodes: ";
  if (e.crossing.empty()) out << "none";
  for (size_t i = 0; i < e.crossing.size(); ++i) out << (i ? ", " : "") << e.crossing[i];
  out << "\n";
}

nlohmann::json explain_json(const Scenario& sc, const Explanation& e) {
  nlohmann::json rows = nlohmann::json::array();
  for (const ExplainRow& r : e.rows) {
    rows.push_back({{"method", r.method}, {"splits", r.split}, {"activation_comm_bytes", r.activation_comm},
                    {"param_comm_bytes", r.param_comm}, {"model_state_bytes", r.model_states},
                    {"activation_bytes", r.activations}});
  }
  return {{"scenario", sc.name},
          {"degree", e.degree},
          {"rows", rows},
          {"ring_overlap",
           {{"block_tokens", e.ring.block_tokens}, {"compute_s", e.ring.compute_s}, {"transfer_s", e.ring.transfer_s},
            {"threshold_tokens", e.ring.threshold_tokens}, {"holds", e.ring.holds}}},
          {"groups_crossing_nodes", e.crossing}};
}

}  // namespace bubblesim::sim
