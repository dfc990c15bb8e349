// Calibration profiles: compute tables per op class (measured time by shape, interpolated
// between measured shapes) and latency and bandwidth per link class (least squares over message
// sizes), fitted from microbenchmark samples or from the compute ops of measured runs; the
// ComputeModel that answers from those tables; and the cluster with its links replaced.
// Not the measurement: hw/ measures, sim/store keeps the samples and the profiles.
#pragma once

#include <array>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "sim/ir/program.hpp"
#include "sim/model/compute.hpp"
#include "sim/scenario/cluster_job.hpp"
#include "sim/store/store.hpp"

namespace bubblesim::sim {

/// The stored text of an op's shape: "m,n,k,batch" (gemm), "batch,q,kv,heads,head_dim,
/// causal_fraction" (attention, attention_grad), bytes (memory). The key samples join on.
std::string shape_key(const OpWork& w);

/// One measured shape of a compute class.
struct ComputePoint {
  std::string shape;          // shape_key
  std::vector<double> where;  // position in the interpolation space (log2 sizes, causal fraction)
  double work = 0;            // FLOPs (bytes for memory) of one op of this shape
  double seconds = 0;         // median measured time
  double loo_seconds = 0;     // predicted from the other points (leave-one-out), the residual's base
};

/// t = latency + bytes / bandwidth, fitted by least squares on relative error.
struct LinkFit {
  double latency_s = 0;
  double bandwidth = 0;  // B/s
  struct Residual {
    int64_t bytes;
    double measured_s, fitted_s;
  };
  std::vector<Residual> residuals;
};

struct CalibrationProfile {
  std::string name;
  std::vector<int64_t> source_runs;
  std::map<std::string, std::vector<ComputePoint>> compute;  // by op class
  std::map<std::string, LinkFit> links;                      // "intra" | "inter"

  ProfileRow to_row() const;
  /// InputError if the stored JSON is not a profile this version reads.
  static CalibrationProfile from_row(const ProfileRow& row);
  /// Time of one op of class `op_class` with `work` at `where`, interpolated in log throughput
  /// between the nearest measured shapes (inverse squared distance; a measured shape is exact).
  /// Negative when the class has no table.
  double predict(const std::string& op_class, const std::vector<double>& where, double work) const;
};

/// A measurement to fit: class, shape_key and median seconds (bench samples, or the compute ops
/// of measured runs), or a p2p message time (op_class "p2p" within a node, "p2p_inter" across).
struct Sample {
  std::string op_class, shape;
  double seconds;
};

/// Fits the compute tables and link classes of every class present in `samples`. InputError if
/// there is nothing to fit.
CalibrationProfile fit_profile(const std::string& name, const std::vector<Sample>& samples,
                               const std::vector<int64_t>& source_runs);

/// What a run was measured on, from its environment (JSON): the backend and the processor, e.g.
/// "cuda on NVIDIA H100 80GB HBM3 (tensor-core attention)" or "host on AMD EPYC 7B13". Runs on
/// different setups must not be fitted into one profile. GPU runs recorded before the attention
/// kernel was (it could then only be the CUDA-core one) read as cuda-core.
std::string measurement_setup(const std::string& environment);

/// "" when `profile` was calibrated on the setup run `run` was measured on (or its source runs
/// are not in `store`); otherwise a warning naming both. A profile from another setup (another
/// GPU, or the other attention kernels) predicts that setup: legitimate for a what-if,
/// misleading when unnoticed.
std::string setup_mismatch(Store& store, int64_t run, const CalibrationProfile& profile);

/// The samples of stored runs: bench runs give their samples, hw runs the median measured time
/// of each distinct compute shape. Empty `runs`: every complete bench run.
std::vector<Sample> samples_from_store(Store& store, const std::vector<int64_t>& runs);

/// Compute times from a profile's tables; classes it has no table for fall back to `fallback`.
class CalibratedCompute final : public ComputeModel {
 public:
  CalibratedCompute(const CalibrationProfile& profile, const ComputeModel& fallback)
      : profile_(profile), fallback_(fallback) {}
  Time gemm(const GemmShape& s) const override;
  Time attention(const AttentionShape& s) const override;
  Time memory_bound(Bytes bytes, MemoryOp kind = MemoryOp::Stream) const override;

 private:
  CalibrationProfile profile_;
  const ComputeModel& fallback_;
};

/// The cluster with its intra- and inter-node link latency and bandwidth from the profile, where
/// it has them.
void apply_links(const CalibrationProfile& profile, ResolvedCluster& cluster);

/// Human-readable profile: tables with their leave-one-out residuals, link fits, source runs.
void write_profile(std::ostream& out, const CalibrationProfile& p);

}  // namespace bubblesim::sim
