#include "hw/runner/rank_map.hpp"

#include <algorithm>
#include <cmath>
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

GroupTraffic traffic_of(std::span<const sim::Transfer> transfers, int32_t gpu, bool sends, bool receives,
                        double wire_scale) {
  std::map<int32_t, int64_t> out, in;
  GroupTraffic x;
  for (const sim::Transfer& t : transfers) {
    if (t.from_gpu == t.to_gpu) continue;
    if (sends && t.from_gpu == gpu) out[t.to_gpu] += t.bytes.value;
    if (receives && t.to_gpu == gpu) in[t.from_gpu] += t.bytes.value;
    if (t.from_gpu == gpu || t.to_gpu == gpu) x.hops = std::max(x.hops, t.hops);
  }
  const auto real = [&](int64_t bytes) { return std::llround(static_cast<double>(bytes) / wire_scale); };
  for (const auto& [peer, bytes] : out) x.out.push_back({peer, real(bytes)});
  for (const auto& [peer, bytes] : in) x.in.push_back({peer, real(bytes)});
  return x;
}

std::vector<std::vector<int32_t>> connected_sets(std::span<const sim::Transfer> transfers) {
  std::map<int32_t, int32_t> parent;
  const auto root = [&](int32_t x) {
    while (parent[x] != x) x = parent[x] = parent[parent[x]];
    return x;
  };
  for (const sim::Transfer& t : transfers) {
    if (t.from_gpu == t.to_gpu) continue;
    parent.try_emplace(t.from_gpu, t.from_gpu);
    parent.try_emplace(t.to_gpu, t.to_gpu);
    const int32_t a = root(t.from_gpu), b = root(t.to_gpu);
    if (a != b) parent[std::max(a, b)] = std::min(a, b);
  }
  std::map<int32_t, std::vector<int32_t>> sets;
  for (const auto& [gpu, up] : parent) sets[root(gpu)].push_back(gpu);
  std::vector<std::vector<int32_t>> out;
  for (auto& [r, gpus] : sets) out.push_back(std::move(gpus));
  return out;
}

Twins::Twins(const sim::ClusterJob& job, const sim::TrainingPlan& plan)
    : gpu_of_device_(plan.gpu_of_device), device_of_(device_of_gpus(job, plan)), coords_(coords_of_gpus(job)), place_(job) {}

std::vector<int32_t> Twins::moved(std::span<const int32_t> gpus, int32_t twin) const {
  if (gpus.empty()) return {};
  const sim::Coord& at = coords_[static_cast<size_t>(twin)];
  bool spans[5] = {};
  for (int32_t g : gpus) {
    for (int k = 0; k < 5; ++k) spans[k] = spans[k] || coords_[static_cast<size_t>(g)].at[k] != coords_[static_cast<size_t>(gpus[0])].at[k];
  }
  std::vector<int32_t> out;
  for (int32_t g : gpus) {
    sim::Coord c = coords_[static_cast<size_t>(g)];
    for (int k = 0; k < 5; ++k) {
      if (!spans[k]) c.at[k] = at.at[k];
    }
    out.push_back(place_.gpu(c));
  }
  BUBBLESIM_ASSERT(std::find(out.begin(), out.end(), twin) != out.end(), "a twin's group does not hold the twin");
  return out;
}

std::vector<sim::Transfer> Twins::transfers(const sim::Program& p, sim::GroupId g, int32_t gpu) const {
  const auto all = p.transfers(g);
  const auto touches = [](const sim::Transfer& t, int32_t x) { return t.from_gpu != t.to_gpu && (t.from_gpu == x || t.to_gpu == x); };
  if (std::any_of(all.begin(), all.end(), [&](const sim::Transfer& t) { return touches(t, gpu); })) return {all.begin(), all.end()};
  const int32_t rep = representative(device(gpu));
  if (rep == gpu) return {};
  for (const std::vector<int32_t>& set : connected_sets(all)) {
    if (!std::binary_search(set.begin(), set.end(), rep)) continue;
    const std::vector<int32_t> to = moved(set, gpu);
    const auto at = [&](int32_t x) { return to[static_cast<size_t>(std::lower_bound(set.begin(), set.end(), x) - set.begin())]; };
    std::vector<sim::Transfer> out;
    for (const sim::Transfer& t : all) {
      if (t.from_gpu != t.to_gpu && std::binary_search(set.begin(), set.end(), t.from_gpu)) {
        sim::Transfer moved_copy = t;
        moved_copy.from_gpu = at(t.from_gpu);
        moved_copy.to_gpu = at(t.to_gpu);
        out.push_back(moved_copy);
      }
    }
    return out;
  }
  return {};
}

}  // namespace bubblesim::hw
