// Single-GPU replay: the ops of one Program device run on one GPU, each Program stream on a CUDA
// stream of its own, dependencies between the device's ops as CUDA events, compute ops with the
// real kernels of their shape (GpuCompute) and communication ops as device-to-device copies of the
// bytes the device receives in them, so a whole training step's compute can be measured and
// calibrated on one GPU. Dependencies on other devices count as met: the data is there.
// Times come from CUDA events around every op against one origin event per iteration.
// Not the multi-GPU runner: nothing crosses GPUs here.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <vector>

#include "hw/cuda/gpu_compute.hpp"
#include "sim/ir/program.hpp"

namespace bubblesim::hw::cuda {

/// One replayed iteration: start and end of each of the device's ops (seconds since the
/// iteration's origin), in the order of GpuReplay::ops().
struct ReplayTimes {
  std::vector<double> start, end;
  double makespan = 0;
};

class GpuReplay {
 public:
  /// Replays Program device `device`, whose GPU in the job is `job_gpu` (it picks the
  /// device's share of each transfer), on CUDA device `cuda_device`.
  GpuReplay(const sim::Program& p, sim::DeviceId device, int32_t job_gpu, int cuda_device);
  ~GpuReplay();
  GpuReplay(const GpuReplay&) = delete;
  GpuReplay& operator=(const GpuReplay&) = delete;

  ReplayTimes run_iteration();
  /// The device's ops in a dependency order (each after its stream predecessor and its
  /// dependencies on the device), the order ReplayTimes lists them.
  const std::vector<sim::OpId>& ops() const { return order_; }

 private:
  const sim::Program& p_;
  GpuCompute compute_;
  std::vector<sim::OpId> order_;
  std::vector<uint32_t> local_;            // op id -> index into order_ (kNone elsewhere)
  std::vector<int64_t> copy_bytes_;        // per local op: bytes copied (communication ops)
  std::vector<cudaStream_t> streams_;      // per local op: its stream (shared per Program stream)
  std::vector<cudaStream_t> owned_;        // one per Program stream of the device
  std::vector<cudaEvent_t> start_, end_;   // per local op
  cudaEvent_t origin_ = nullptr;
  char* copy_buffer_ = nullptr;
  int64_t copy_buffer_bytes_ = 0;
};

}  // namespace bubblesim::hw::cuda
