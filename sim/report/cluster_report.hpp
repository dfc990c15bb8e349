// Reports of a simulated training job on a cluster: iteration time, tokens/s, TFLOPS per GPU and
// MFU, per-device busy / idle by cause and peak memory with whether it fits, in text, JSON (the
// v1 keys of SCENARIO.md) and CSV. Not metrics: figures come from sim/metrics and the plan.
#pragma once

#include <nlohmann/json_fwd.hpp>
#include <ostream>
#include <vector>

#include "sim/exec/trace.hpp"
#include "sim/metrics/metrics.hpp"
#include "sim/scenario/cluster_job.hpp"
#include "sim/scenario/scenario.hpp"
#include "sim/sched/training.hpp"
#include "sim/topo/topology.hpp"
#include "sim/workload/transformer.hpp"

namespace bubblesim::sim {

struct ClusterResult {
  const Scenario* scenario = nullptr;
  const ClusterJob* job = nullptr;
  const TrainingPlan* plan = nullptr;
  const Trace* trace = nullptr;
  Metrics metrics;
  double iteration_s = 0;
  double tokens_per_s = 0;
  double tflops_per_gpu = 0;
  double mfu = 0;
  std::vector<double> peak_memory_bytes;  // per simulated device
  double gpu_memory_bytes = 0;
  FlopsAccounting accounting = FlopsAccounting::Megatron;
  struct LinkUse {
    std::string name;
    const char* cls;
    double utilisation;  // bytes carried / (bandwidth x iteration time)
  };
  std::vector<LinkUse> busiest_links;  // most used first, at most kBusiestLinks
  struct PathPart {
    std::string what;
    double seconds;
  };
  std::vector<PathPart> critical_path;  // time on the critical path by kind of op, and waiting
  size_t critical_path_ops = 0;
};

inline constexpr size_t kBusiestLinks = 5;

/// `link_bytes` (per topology link, from the network model) gives the links' utilisation.
ClusterResult make_cluster_result(const Scenario& sc, const ClusterJob& job, const TrainingPlan& plan, const Trace& t,
                                  const Topology& topo, const std::vector<double>& link_bytes,
                                  FlopsAccounting accounting = FlopsAccounting::Megatron);
void write_text(std::ostream& out, const ClusterResult& r);
nlohmann::json to_json(const ClusterResult& r);
void write_csv(std::ostream& out, const ClusterResult& r);

}  // namespace bubblesim::sim
