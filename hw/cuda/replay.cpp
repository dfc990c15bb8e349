#include "hw/cuda/replay.hpp"

#include <algorithm>
#include <deque>
#include <string>

#include "hw/cuda/cuda_check.hpp"
#include "hw/runner/rank_map.hpp"
#include "sim/core/error.hpp"

namespace bubblesim::hw::cuda {

using sim::kNone;
using sim::OpId;

GpuReplay::GpuReplay(const sim::Program& p, sim::DeviceId device, int32_t job_gpu, int cuda_device)
    : p_(p), compute_(cuda_device) {
  if (device >= p.devices().size()) throw InputError("replay: the Program has no device " + std::to_string(device));
  // Kahn's order over the device's ops: stream order plus dependencies on the device.
  local_.assign(p.num_ops(), kNone);
  std::vector<OpId> mine;
  for (const sim::StreamId s : p.devices()[device].streams) {
    for (const OpId op : p.stream(s).ops) {
      local_[op] = static_cast<uint32_t>(mine.size());
      mine.push_back(op);
    }
  }
  std::vector<int32_t> waiting(mine.size(), 0);
  std::vector<std::vector<uint32_t>> after(mine.size());
  for (size_t i = 0; i < mine.size(); ++i) {
    for (const sim::Edge& e : p.deps(mine[i])) {
      if (local_[e.op] == kNone) continue;  // another device: its data counts as there
      ++waiting[i];
      after[local_[e.op]].push_back(static_cast<uint32_t>(i));
    }
  }
  for (const sim::StreamId s : p.devices()[device].streams) {
    const auto& ops = p.stream(s).ops;
    for (size_t k = 1; k < ops.size(); ++k) {
      ++waiting[local_[ops[k]]];
      after[local_[ops[k - 1]]].push_back(local_[ops[k]]);
    }
  }
  std::deque<uint32_t> ready;
  for (size_t i = 0; i < mine.size(); ++i) {
    if (waiting[i] == 0) ready.push_back(static_cast<uint32_t>(i));
  }
  while (!ready.empty()) {
    const uint32_t i = ready.front();
    ready.pop_front();
    order_.push_back(mine[i]);
    for (const uint32_t j : after[i]) {
      if (--waiting[j] == 0) ready.push_back(j);
    }
  }
  BUBBLESIM_ASSERT(order_.size() == mine.size(), "replay: the device's ops form a cycle in a validated Program");
  for (size_t i = 0; i < order_.size(); ++i) local_[order_[i]] = static_cast<uint32_t>(i);

  // What each communication op moves into this GPU becomes a device copy of that size.
  copy_bytes_.assign(order_.size(), 0);
  for (size_t i = 0; i < order_.size(); ++i) {
    const sim::Op& o = p.op(order_[i]);
    if (o.group == kNone || o.kind == sim::OpKind::Compute) continue;
    const GroupTraffic x = traffic_of(p, o.group, job_gpu, o.kind == sim::OpKind::Send, true);  // real bytes
    for (const auto* peers : {&x.in, &x.out}) {
      for (const PeerBytes& m : *peers) copy_bytes_[i] += m.bytes;
    }
    copy_buffer_bytes_ = std::max(copy_buffer_bytes_, copy_bytes_[i]);
  }
  if (copy_buffer_bytes_ > 0) BUBBLESIM_CUDA(cudaMalloc(&copy_buffer_, static_cast<size_t>(2 * copy_buffer_bytes_)));

  std::vector<cudaStream_t> of_program_stream(p.streams().size(), nullptr);
  for (const sim::StreamId s : p.devices()[device].streams) {
    cudaStream_t cs = nullptr;
    BUBBLESIM_CUDA(cudaStreamCreateWithFlags(&cs, cudaStreamNonBlocking));
    owned_.push_back(cs);
    of_program_stream[s] = cs;
  }
  streams_.resize(order_.size());
  start_.resize(order_.size());
  end_.resize(order_.size());
  for (size_t i = 0; i < order_.size(); ++i) {
    streams_[i] = of_program_stream[p.op(order_[i]).stream];
    BUBBLESIM_CUDA(cudaEventCreate(&start_[i]));
    BUBBLESIM_CUDA(cudaEventCreate(&end_[i]));
  }
  BUBBLESIM_CUDA(cudaEventCreate(&origin_));
}

GpuReplay::~GpuReplay() {
  // Nothing to report from a destructor; the device is synchronised before anything is freed.
  cudaDeviceSynchronize();
  for (size_t i = 0; i < start_.size(); ++i) {
    cudaEventDestroy(start_[i]);
    cudaEventDestroy(end_[i]);
  }
  cudaEventDestroy(origin_);
  for (cudaStream_t s : owned_) cudaStreamDestroy(s);
  cudaFree(copy_buffer_);
}

ReplayTimes GpuReplay::run_iteration() {
  BUBBLESIM_CUDA(cudaDeviceSynchronize());
  // Every stream starts after the origin.
  BUBBLESIM_CUDA(cudaEventRecord(origin_, owned_.empty() ? nullptr : owned_.front()));
  for (cudaStream_t s : owned_) BUBBLESIM_CUDA(cudaStreamWaitEvent(s, origin_, 0));
  for (size_t i = 0; i < order_.size(); ++i) {
    const OpId op = order_[i];
    cudaStream_t s = streams_[i];
    for (const sim::Edge& e : p_.deps(op)) {
      if (local_[e.op] != kNone) BUBBLESIM_CUDA(cudaStreamWaitEvent(s, end_[local_[e.op]], 0));
    }
    BUBBLESIM_CUDA(cudaEventRecord(start_[i], s));
    if (const sim::OpWork* w = p_.work(op)) {
      compute_.run(*w, s);
    } else if (copy_bytes_[i] > 0) {
      BUBBLESIM_CUDA(cudaMemcpyAsync(copy_buffer_ + copy_buffer_bytes_, copy_buffer_,
                                     static_cast<size_t>(copy_bytes_[i]), cudaMemcpyDeviceToDevice, s));
    }
    BUBBLESIM_CUDA(cudaEventRecord(end_[i], s));
  }
  BUBBLESIM_CUDA(cudaDeviceSynchronize());
  ReplayTimes t;
  t.start.resize(order_.size());
  t.end.resize(order_.size());
  for (size_t i = 0; i < order_.size(); ++i) {
    float a = 0, b = 0;
    BUBBLESIM_CUDA(cudaEventElapsedTime(&a, origin_, start_[i]));
    BUBBLESIM_CUDA(cudaEventElapsedTime(&b, origin_, end_[i]));
    t.start[i] = a * 1e-3;
    t.end[i] = b * 1e-3;
    t.makespan = std::max(t.makespan, t.end[i]);
  }
  return t;
}

}  // namespace bubblesim::hw::cuda
