#include "hw/runner/rank_map.hpp"

#include <algorithm>
#include <map>

#include "sim/core/error.hpp"

namespace bubblesim::hw {

std::vector<sim::Coord> coords_of_gpus(const sim::ClusterJob& job) {
  using sim::Dim;
  const sim::RankPlacement place(job);
  std::vector<sim::Coord> out(static_cast<size_t>(job.cluster.world()));
  sim::Coord c;
  for (c[Dim::Pp] = 0; c[Dim::Pp] < place.degree(Dim::Pp); ++c[Dim::Pp]) {
    for (c[Dim::Dp] = 0; c[Dim::Dp] < place.degree(Dim::Dp); ++c[Dim::Dp]) {
      for (c[Dim::Ring] = 0; c[Dim::Ring] < place.degree(Dim::Ring); ++c[Dim::Ring]) {
        for (c[Dim::Ulysses] = 0; c[Dim::Ulysses] < place.degree(Dim::Ulysses); ++c[Dim::Ulysses]) {
          for (c[Dim::Tp] = 0; c[Dim::Tp] < place.degree(Dim::Tp); ++c[Dim::Tp]) out[static_cast<size_t>(place.gpu(c))] = c;
        }
      }
    }
  }
  return out;
}

std::vector<sim::DeviceId> device_of_gpus(const sim::ClusterJob& job, const sim::TrainingPlan& plan) {
  using sim::Dim;
  const int32_t world = job.cluster.world();
  // (pp, ring) of every GPU, from the placement's coordinates.
  std::vector<std::pair<int32_t, int32_t>> stage_ring;
  for (const sim::Coord& c : coords_of_gpus(job)) stage_ring.emplace_back(c[Dim::Pp], c[Dim::Ring]);
  std::map<std::pair<int32_t, int32_t>, sim::DeviceId> device;
  for (sim::DeviceId d = 0; d < plan.gpu_of_device.size(); ++d) {
    device[stage_ring[static_cast<size_t>(plan.gpu_of_device[d])]] = d;
  }
  std::vector<sim::DeviceId> out(static_cast<size_t>(world));
  for (int32_t g = 0; g < world; ++g) {
    const auto it = device.find(stage_ring[static_cast<size_t>(g)]);
    BUBBLESIM_ASSERT(it != device.end(), "GPU " + std::to_string(g) + " plays no device of the Program");
    out[static_cast<size_t>(g)] = it->second;
  }
  return out;
}

GroupTraffic traffic_of(const sim::Program& p, sim::GroupId g, int32_t gpu, bool sends, bool receives) {
  std::map<int32_t, int64_t> out, in;
  GroupTraffic x;
  for (const sim::Transfer& t : p.transfers(g)) {
    if (t.from_gpu == t.to_gpu) continue;
    if (sends && t.from_gpu == gpu) out[t.to_gpu] += t.bytes.value;
    if (receives && t.to_gpu == gpu) in[t.from_gpu] += t.bytes.value;
    if (t.from_gpu == gpu || t.to_gpu == gpu) x.hops = std::max(x.hops, t.hops);
  }
  for (const auto& [peer, bytes] : out) x.out.push_back({peer, bytes});
  for (const auto& [peer, bytes] : in) x.in.push_back({peer, bytes});
  return x;
}

}  // namespace bubblesim::hw
