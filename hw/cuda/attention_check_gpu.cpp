#include "hw/cuda/attention_check_gpu.hpp"

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "hw/backend/attention_shards.hpp"
#include "hw/cuda/attention.hpp"
#include "hw/cuda/cuda_check.hpp"
#include "sim/core/error.hpp"
#include "sim/workload/sequence_parallel.hpp"

namespace bubblesim::hw::cuda {
namespace {

using Tensor = std::vector<float>;  // [heads][len][head_dim], host

/// Device memory of `n` elements of T, freed with its owner.
template <class T>
class Device {
 public:
  explicit Device(size_t n) : n_(std::max<size_t>(n, 1)) { BUBBLESIM_CUDA(cudaMalloc(&p_, n_ * sizeof(T))); }
  ~Device() { cudaFree(p_); }
  Device(const Device&) = delete;
  Device& operator=(const Device&) = delete;
  T* get() const { return p_; }
  int64_t bytes() const { return static_cast<int64_t>(n_ * sizeof(T)); }
  void swap(Device& o) noexcept {
    std::swap(p_, o.p_);
    std::swap(n_, o.n_);
  }

 private:
  T* p_ = nullptr;
  size_t n_;
};

/// check_values rounded to bf16 (the kernels' input type), so every copy of them is exact.
Tensor make(int64_t n, uint32_t seed) {
  Tensor t = check_values(n, seed);
  for (float& v : t) v = __bfloat162float(__float2bfloat16(v));
  return t;
}

/// Host -> device, as bf16 or as it is.
void upload_bf16(const Tensor& t, Device<__nv_bfloat16>& d, cudaStream_t s) {
  std::vector<__nv_bfloat16> b(t.size());
  std::transform(t.begin(), t.end(), b.begin(), [](float v) { return __float2bfloat16(v); });
  BUBBLESIM_CUDA(cudaMemcpyAsync(d.get(), b.data(), b.size() * sizeof(__nv_bfloat16), cudaMemcpyHostToDevice, s));
  BUBBLESIM_CUDA(cudaStreamSynchronize(s));  // `b` goes out of scope
}
template <class T>
void upload(const std::vector<T>& t, Device<T>& d, cudaStream_t s) {
  BUBBLESIM_CUDA(cudaMemcpyAsync(d.get(), t.data(), t.size() * sizeof(T), cudaMemcpyHostToDevice, s));
  BUBBLESIM_CUDA(cudaStreamSynchronize(s));
}
Tensor download(const Device<float>& d, size_t n, cudaStream_t s) {
  Tensor t(n);
  BUBBLESIM_CUDA(cudaMemcpyAsync(t.data(), d.get(), n * sizeof(float), cudaMemcpyDeviceToHost, s));
  BUBBLESIM_CUDA(cudaStreamSynchronize(s));
  return t;
}

/// Merges a partial attention result into the running one by log-sum-exp (rows of d values).
void merge(Tensor& out, Tensor& lse, const Tensor& part, const Tensor& part_lse, int64_t d) {
  constexpr float kNoKey = -std::numeric_limits<float>::infinity();
  for (size_t row = 0; row < lse.size(); ++row) {
    if (part_lse[row] == kNoKey) continue;
    const float merged = lse[row] == kNoKey ? part_lse[row]
                                            : std::max(lse[row], part_lse[row]) +
                                                  std::log1p(std::exp(-std::abs(lse[row] - part_lse[row])));
    const float a = lse[row] == kNoKey ? 0.0F : std::exp(lse[row] - merged);
    const float b = std::exp(part_lse[row] - merged);
    for (int64_t j = 0; j < d; ++j) {
      float& o = out[row * static_cast<size_t>(d) + static_cast<size_t>(j)];
      o = a * o + b * part[row * static_cast<size_t>(d) + static_cast<size_t>(j)];
    }
    lse[row] = merged;
  }
}

/// max |a - b| / max |b|.
double relative_error(const Tensor& a, const Tensor& b) {
  double diff = 0, scale = 1e-30;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    const double e = std::abs(static_cast<double>(a[i]) - b[i]);
    diff = std::isnan(e) ? std::numeric_limits<double>::infinity() : std::max(diff, e);
    scale = std::max(scale, static_cast<double>(std::abs(b[i])));
  }
  return a.size() == b.size() ? diff / scale : std::numeric_limits<double>::infinity();
}

struct Inputs {
  Tensor q, k, v, dout;
};

Inputs inputs(int64_t heads, int64_t seq, int64_t d) {
  const int64_t n = heads * seq * d;
  return {make(n, 1), make(n, 2), make(n, 3), make(n, 4)};
}

struct Result {
  Tensor out, dq, dk, dv;
};

/// Attention over the whole sequence on this GPU: the reference.
Result one_gpu(const Inputs& in, int64_t heads, int64_t seq, int64_t d, bool backward, AttentionKernel kernel,
               cudaStream_t s) {
  const auto n = static_cast<size_t>(heads * seq * d), rows_n = static_cast<size_t>(heads * seq);
  Device<__nv_bfloat16> q(n), k(n), v(n);
  upload_bf16(in.q, q, s);
  upload_bf16(in.k, k, s);
  upload_bf16(in.v, v, s);
  Device<float> out(n), lse(rows_n);
  const AttentionDims dims{heads, seq, seq, d};
  attention_forward(dims, DeviceMask{}, q.get(), k.get(), v.get(), out.get(), lse.get(), s, kernel);
  Result r{download(out, n, s), {}, {}, {}};
  if (!backward) return r;
  Device<float> dout(n), dq(n), dk(n), dv(n), delta(rows_n);
  upload(in.dout, dout, s);
  for (Device<float>* g : {&dq, &dk, &dv}) fill(g->get(), static_cast<int64_t>(n), 0, s);
  attention_backward(dims, DeviceMask{}, q.get(), k.get(), v.get(), out.get(), lse.get(), dout.get(), dq.get(), dk.get(),
                     dv.get(), delta.get(), s, kernel);
  r.dq = download(dq, n, s);
  r.dk = download(dk, n, s);
  r.dv = download(dv, n, s);
  return r;
}

/// Every rank's [heads][local][d] shard with its positions -> rank 0's [heads][seq][d].
Tensor gather_rows(const Tensor& mine, const std::vector<int64_t>& pos, int64_t heads, int64_t seq, int64_t d,
                   NcclComm& comm, const std::function<void()>& alive) {
  const cudaStream_t s = comm.stream();
  const int ranks = comm.ranks();
  const size_t gathered = comm.rank() == 0 ? static_cast<size_t>(ranks) : 0;  // only rank 0 receives
  Device<float> send(mine.size()), recv(mine.size() * gathered);
  Device<int64_t> send_pos(pos.size()), recv_pos(pos.size() * gathered);
  upload(mine, send, s);
  upload(pos, send_pos, s);
  comm.gather(send.get(), recv.get(), static_cast<int64_t>(mine.size() * sizeof(float)), alive);
  comm.gather(send_pos.get(), recv_pos.get(), static_cast<int64_t>(pos.size() * sizeof(int64_t)), alive);
  if (comm.rank() != 0) return {};
  const Tensor all = download(recv, mine.size() * static_cast<size_t>(ranks), s);
  std::vector<int64_t> all_pos(pos.size() * static_cast<size_t>(ranks));
  BUBBLESIM_CUDA(cudaMemcpyAsync(all_pos.data(), recv_pos.get(), all_pos.size() * sizeof(int64_t),
                                 cudaMemcpyDeviceToHost, s));
  BUBBLESIM_CUDA(cudaStreamSynchronize(s));
  return place_rows(all, all_pos, ranks, heads, seq, d);
}

void check_ring(GpuAttentionCheck& c, sim::RingLayout layout, NcclComm& comm, const std::function<void()>& alive) {
  const cudaStream_t s = comm.stream();
  const AttentionKernel kernel = c.kernel;
  const int64_t R = comm.ranks(), H = c.heads, D = c.head_dim, local = c.seq / R;
  const Inputs in = inputs(H, c.seq, D);
  const std::vector<int64_t> pos = sim::ring_positions(layout, R, local, comm.rank());
  const auto n = static_cast<size_t>(H * local * D), rows_n = static_cast<size_t>(H * local);
  Device<__nv_bfloat16> q(n), k(n), v(n), k_in(n), v_in(n);
  Device<int64_t> q_pos(pos.size()), kv_pos(pos.size()), kv_pos_in(pos.size());
  const auto own_block = [&] {
    upload_bf16(shard_rows(in.k, H, c.seq, D, pos), k, s);
    upload_bf16(shard_rows(in.v, H, c.seq, D, pos), v, s);
    upload(pos, kv_pos, s);
  };
  // K, V and their positions one hop round the ring.
  const auto pass_block = [&] {
    comm.ring_pass(k.get(), k_in.get(), k.bytes(), alive);
    comm.ring_pass(v.get(), v_in.get(), v.bytes(), alive);
    comm.ring_pass(kv_pos.get(), kv_pos_in.get(), kv_pos.bytes(), alive);
    k.swap(k_in);
    v.swap(v_in);
    kv_pos.swap(kv_pos_in);
  };
  upload_bf16(shard_rows(in.q, H, c.seq, D, pos), q, s);
  upload(pos, q_pos, s);
  own_block();
  const AttentionDims dims{H, local, local, D};
  // Forward: my queries against each block as it comes round, merged by log-sum-exp.
  Tensor out(n, 0), lse(rows_n, -std::numeric_limits<float>::infinity());
  Device<float> part(n), part_lse(rows_n);
  for (int64_t t = 0; t < R; ++t) {
    attention_forward(dims, DeviceMask{true, q_pos.get(), kv_pos.get()}, q.get(), k.get(), v.get(), part.get(),
                      part_lse.get(), s, kernel);
    merge(out, lse, download(part, n, s), download(part_lse, rows_n, s), D);
    if (t + 1 < R) pass_block();
  }
  const Tensor full_out = gather_rows(out, pos, H, c.seq, D, comm, alive);
  // Backward: dK/dV accumulators travel with their block and take one hop more, home.
  own_block();
  Device<float> d_out(n), d_lse(rows_n), dout(n), dq(n), dk(n), dv(n), dk_in(n), dv_in(n), delta(rows_n);
  upload(out, d_out, s);
  upload(lse, d_lse, s);
  upload(shard_rows(in.dout, H, c.seq, D, pos), dout, s);
  for (Device<float>* g : {&dq, &dk, &dv}) fill(g->get(), static_cast<int64_t>(n), 0, s);
  for (int64_t t = 0; t < R; ++t) {
    attention_backward(dims, DeviceMask{true, q_pos.get(), kv_pos.get()}, q.get(), k.get(), v.get(), d_out.get(),
                       d_lse.get(), dout.get(), dq.get(), dk.get(), dv.get(), delta.get(), s, kernel);
    comm.ring_pass(dk.get(), dk_in.get(), dk.bytes(), alive);
    comm.ring_pass(dv.get(), dv_in.get(), dv.bytes(), alive);
    dk.swap(dk_in);
    dv.swap(dv_in);
    if (t + 1 < R) pass_block();
  }
  const Tensor full_dq = gather_rows(download(dq, n, s), pos, H, c.seq, D, comm, alive);
  const Tensor full_dk = gather_rows(download(dk, n, s), pos, H, c.seq, D, comm, alive);
  const Tensor full_dv = gather_rows(download(dv, n, s), pos, H, c.seq, D, comm, alive);
  // Every rank computes the reference, so none waits on rank 0 for longer than the others take
  // (a long wait in the next communication would read as a stall); rank 0 compares.
  const Result ref = one_gpu(in, H, c.seq, D, true, kernel, s);
  if (comm.rank() != 0) return;
  c.forward_error = relative_error(full_out, ref.out);
  c.backward_error = std::max({relative_error(full_dq, ref.dq), relative_error(full_dk, ref.dk),
                               relative_error(full_dv, ref.dv)});
}

void check_ulysses(GpuAttentionCheck& c, NcclComm& comm, const std::function<void()>& alive) {
  const cudaStream_t s = comm.stream();
  const AttentionKernel kernel = c.kernel;
  const int64_t U = comm.ranks(), H = c.heads, D = c.head_dim, local = c.seq / U, hu = H / U;
  const Inputs in = inputs(H, c.seq, D);
  std::vector<int64_t> pos(static_cast<size_t>(local));
  for (int64_t i = 0; i < local; ++i) pos[static_cast<size_t>(i)] = comm.rank() * local + i;
  const auto block = static_cast<size_t>(hu * local * D);  // what each pair of ranks exchanges
  Device<float> send(block * static_cast<size_t>(U)), recv(block * static_cast<size_t>(U));
  // My tokens of all heads ([H][local][d], destination j's heads contiguous) -> all tokens of my
  // heads, laid out [hu][seq][d].
  const auto to_heads = [&](const Tensor& shard) {
    upload(shard, send, s);
    comm.all_to_all(send.get(), recv.get(), static_cast<int64_t>(block * sizeof(float)), alive);
    const Tensor got = download(recv, block * static_cast<size_t>(U), s);
    Tensor out(static_cast<size_t>(hu * c.seq * D));
    for (int64_t i = 0; i < U; ++i) {
      for (int64_t h = 0; h < hu; ++h) {
        std::copy_n(got.begin() + ((i * hu + h) * local) * D, local * D, out.begin() + (h * c.seq + i * local) * D);
      }
    }
    return out;
  };
  const auto n = static_cast<size_t>(hu * c.seq * D);
  Device<__nv_bfloat16> q(n), k(n), v(n);
  upload_bf16(to_heads(shard_rows(in.q, H, c.seq, D, pos)), q, s);
  upload_bf16(to_heads(shard_rows(in.k, H, c.seq, D, pos)), k, s);
  upload_bf16(to_heads(shard_rows(in.v, H, c.seq, D, pos)), v, s);
  Device<float> out(n), lse(static_cast<size_t>(hu * c.seq));
  attention_forward({hu, c.seq, c.seq, D}, DeviceMask{}, q.get(), k.get(), v.get(), out.get(), lse.get(), s, kernel);
  // Back: all tokens of my heads -> my tokens of all heads.
  const Tensor mine = download(out, n, s);
  Tensor packed(block * static_cast<size_t>(U));
  for (int64_t j = 0; j < U; ++j) {
    for (int64_t h = 0; h < hu; ++h) {
      std::copy_n(mine.begin() + (h * c.seq + j * local) * D, local * D, packed.begin() + ((j * hu + h) * local) * D);
    }
  }
  upload(packed, send, s);
  comm.all_to_all(send.get(), recv.get(), static_cast<int64_t>(block * sizeof(float)), alive);
  // From rank i: its heads of my tokens, so [H][local][d] in head order.
  const Tensor full = gather_rows(download(recv, block * static_cast<size_t>(U), s), pos, H, c.seq, D, comm, alive);
  const Result ref = one_gpu(in, H, c.seq, D, false, kernel, s);  // on every rank, as in check_ring
  if (comm.rank() != 0) return;
  c.forward_error = relative_error(full, ref.out);
}

}  // namespace

GpuAttentionCheck check_attention_gpu(const std::string& mode, int64_t seq, int64_t heads, int64_t head_dim,
                                      NcclComm& comm, const std::function<void()>& alive) {
  GpuAttentionCheck c{mode, seq, heads, head_dim, 0, 0, attention_kernel_from_environment()};
  const int64_t n = comm.ranks();
  if (seq <= 0 || heads <= 0) {
    throw InputError("check attention --backend cuda: sequence " + std::to_string(seq) + " and " + std::to_string(heads) +
                     " heads must be positive");
  }
  if (!supported_head_dim(head_dim)) {
    throw InputError("check attention --backend cuda: no kernel for head dim " + std::to_string(head_dim));
  }
  if (mode == "ulysses") {
    if (heads % n != 0 || seq % n != 0) {
      throw InputError("check ulysses: " + std::to_string(heads) + " heads and sequence " + std::to_string(seq) +
                       " must both divide by the " + std::to_string(n) + " ranks");
    }
    check_ulysses(c, comm, alive);
    return c;
  }
  const sim::RingLayout layout = sim::parse_ring_layout(mode);
  if (seq % (2 * n) != 0) {
    throw InputError("check " + mode + ": sequence " + std::to_string(seq) + " must divide by 2 x " + std::to_string(n) +
                     " ranks");
  }
  check_ring(c, layout, comm, alive);
  return c;
}

}  // namespace bubblesim::hw::cuda
