// Which Program device each rank of a job plays, and what a rank moves in a group. The Program simulates one representative per
// pipeline stage and ring rank; every tensor-, Ulysses- and data-parallel rank is a twin that
// runs its representative's ops on its own share of the data.
// Not placement itself: sim/sched/training.hpp's RankPlacement decides which GPU is which rank.
#pragma once

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
/// (when `sends`) and from it (when `receives`), transfers to itself skipped; and the most hops
/// of any transfer it is an end of (a twin rank finds its own transfers in its representative's
/// group).
struct GroupTraffic {
  std::vector<PeerBytes> out, in;
  int32_t hops = 1;
};
GroupTraffic traffic_of(const sim::Program& p, sim::GroupId g, int32_t gpu, bool sends, bool receives);

}  // namespace bubblesim::hw
