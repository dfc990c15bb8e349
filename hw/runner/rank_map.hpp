// Which Program device each rank of a job plays. The Program simulates one representative per
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

}  // namespace bubblesim::hw
