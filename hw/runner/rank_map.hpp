// Which Program device each rank of a job plays, and what a rank moves in a group. The Program
// simulates one representative per pipeline stage and ring rank; every tensor-, Ulysses- and
// data-parallel rank is a twin that runs its representative's ops on its own share of the data.
// Not placement itself: sim/sched/training.hpp's RankPlacement decides which GPU is which rank.
#pragma once

#include <span>
#include <vector>

#include "sim/sched/training.hpp"

namespace bubblesim::hw {

/// For every GPU of the job (index = MPI rank), the device it plays; InternalError if a GPU
/// matches no device.
std::vector<sim::DeviceId> device_of_gpus(const sim::ClusterJob& job, const sim::TrainingPlan& plan);

/// For every GPU of the job, its (tp, ulysses, ring, dp, pp) coordinates under the placement.
std::vector<sim::Coord> coords_of_gpus(const sim::ClusterJob& job);

struct PeerBytes {
  int32_t gpu;
  int64_t bytes;
};

/// What GPU `gpu` moves in group `g`: per peer (ascending), the bytes of its transfers to it
/// (when `sends`) and from it (when `receives`), transfers to itself skipped, as real bytes (the
/// transfers' over the group's wire_scale: they carry what the network model needs to time them);
/// and the most hops of any transfer it is an end of (a twin rank finds its own transfers in its
/// representative's group).
struct GroupTraffic {
  std::vector<PeerBytes> out, in;
  int32_t hops = 1;
};
GroupTraffic traffic_of(std::span<const sim::Transfer> transfers, int32_t gpu, bool sends, bool receives,
                        double wire_scale);
inline GroupTraffic traffic_of(const sim::Program& p, sim::GroupId g, int32_t gpu, bool sends, bool receives) {
  return traffic_of(p.transfers(g), gpu, sends, receives, p.groups()[g].wire_scale);
}

/// The connected sets of GPUs a group's transfers join (each ascending), in order of their
/// smallest GPU.
std::vector<std::vector<int32_t>> connected_sets(std::span<const sim::Transfer> transfers);

/// What twins run where the Program carries only their representative's transfers (a
/// tensor-parallel group inside a node): the same set of GPUs moved to the twin, keeping the
/// coordinates along the dimensions the set spans and taking the twin's for the others (its
/// data-parallel replica, its Ulysses rank).
class Twins {
 public:
  Twins(const sim::ClusterJob& job, const sim::TrainingPlan& plan);
  /// `gpus` (a set holding the representative of `twin`'s device) moved to `twin`, in the same
  /// order; InternalError if the result does not hold `twin`.
  std::vector<int32_t> moved(std::span<const int32_t> gpus, int32_t twin) const;
  /// Group g's transfers as GPU `gpu` runs them: the group's own when `gpu` is in any of them;
  /// otherwise those of the set holding its device's representative, moved to `gpu` (empty when
  /// the representative moves nothing either).
  std::vector<sim::Transfer> transfers(const sim::Program& p, sim::GroupId g, int32_t gpu) const;
  /// The GPU whose transfers the Program carries for device d.
  int32_t representative(sim::DeviceId d) const { return gpu_of_device_[d]; }
  /// The device GPU `gpu` plays.
  sim::DeviceId device(int32_t gpu) const { return device_of_[static_cast<size_t>(gpu)]; }

 private:
  std::vector<int32_t> gpu_of_device_;
  std::vector<sim::DeviceId> device_of_;
  std::vector<sim::Coord> coords_;
  sim::RankPlacement place_;
};

}  // namespace bubblesim::hw
