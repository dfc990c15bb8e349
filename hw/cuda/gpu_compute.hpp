// The GPU backend's compute: an op's work (sim::OpWork: class, shape, causal fraction) enqueued
// on one CUDA stream with real kernels of that shape: cuBLAS bf16 GEMMs (fp32 accumulation),
// the tiled attention kernels (hw/cuda/attention.hpp; tensor-core unless
// BUBBLESIM_ATTENTION_KERNEL says cuda-core) with a causal mask giving the op's share of pairs,
// and a device-to-device copy moving the bytes of a memory-bound op. Buffers come from one device
// arena that grows to the largest op and is reused, as the host backend does.
// Not timing: callers put CUDA events around run().
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <map>
#include <string>
#include <nlohmann/json.hpp>
#include <tuple>

#include "hw/cuda/attention.hpp"
#include "sim/ir/program.hpp"

namespace bubblesim::hw::cuda {

class GpuCompute {
 public:
  static constexpr int64_t kMaxBytes = int64_t{32} << 30;
  /// Uses GPU `device` and a stream of its own, attention on `kernel`'s kernels. Refuses
  /// (InputError) ops needing more than `max_bytes` of buffers.
  explicit GpuCompute(int device, int64_t max_bytes = kMaxBytes,
                      AttentionKernel kernel = attention_kernel_from_environment());
  ~GpuCompute();
  GpuCompute(const GpuCompute&) = delete;
  GpuCompute& operator=(const GpuCompute&) = delete;

  cudaStream_t stream() const { return stream_; }
  AttentionKernel attention_kernel() const { return attention_kernel_; }
  /// Enqueues the op's work on `on` (null: this object's stream): "gemm" (m, n, k, batch),
  /// "attention" / "attention_grad" (batch, q, kv, heads, head dim, causal fraction), "memory"
  /// (bytes). InputError for another class. Ops on several streams share the arena: their
  /// values are meaningless, their work is real.
  void run(const sim::OpWork& work, cudaStream_t on = nullptr);
  /// Allocates now what run(work) will need (buffers, attention masks), so that run() never
  /// allocates: growing the arena synchronises the whole device, which must not happen while
  /// other streams hold NCCL calls waiting for peers.
  void prepare(const sim::OpWork& work);
  /// From here on run() refuses (InternalError) an op that was not prepared.
  void freeze() { frozen_ = true; }
  /// Bytes of device memory held for ops' operands.
  int64_t arena() const { return arena_bytes_; }
  /// Bytes of arena run(work) uses.
  static int64_t arena_bytes(const sim::OpWork& work);
  /// Waits for everything enqueued.
  void synchronize();
  /// Runs the op once between two CUDA events on the stream and returns the seconds between them.
  double time(const sim::OpWork& work);

 private:
  char* buffer(int64_t bytes);
  void release() noexcept;
  DeviceMask mask(int64_t q_len, int64_t kv_len, double fraction);

  AttentionKernel attention_kernel_;
  int device_;
  int64_t max_bytes_;
  cudaStream_t stream_ = nullptr;
  cudaEvent_t start_ = nullptr, end_ = nullptr;
  cublasHandle_t blas_ = nullptr;
  char* arena_ = nullptr;
  int64_t arena_bytes_ = 0;
  bool frozen_ = false;
  std::map<std::tuple<int64_t, int64_t, int64_t>, int64_t*> masks_;  // (q, kv, fraction in 1e-6) -> q_pos
};

/// Row-major C[m,n] = A[m,k] B[k,n] in bf16 with fp32 accumulation, for `batch` matrices laid
/// end to end, enqueued on the handle's stream.
void gemm(cublasHandle_t blas, const __nv_bfloat16* a, const __nv_bfloat16* b, __nv_bfloat16* c, int64_t m, int64_t n,
          int64_t k, int64_t batch);

/// Number of usable CUDA devices; 0 when there is no GPU or driver (never throws), with the CUDA
/// runtime's reason in `why` when given.
int device_count(std::string* why = nullptr);

/// What a measurement ran on: GPU model, memory, SM count and clocks, driver, CUDA runtime and
/// cuBLAS versions, the attention kernel, and `nvidia-smi topo -m` where nvidia-smi is found.
nlohmann::json gpu_environment(int device);

}  // namespace bubblesim::hw::cuda
