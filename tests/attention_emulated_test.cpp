// The GPU backend's attention kernels, tensor-core (hw/cuda/flash_attention.cuh) and CUDA-core
// (hw/cuda/simt_attention.cuh), run unchanged on CPU threads through
// tests/support/cuda_emulator.hpp, against the double-precision oracle the GPU test uses: forward
// (output, log-sum-exp) and backward (dQ, dK, dV added into what was there) for head dims 32, 64
// and 128, lengths that are not multiples of the tiles, every mask of kernel_masks(), and
// gradients from several key blocks meeting in one dQ row.
// This checks the kernels' tiling, masking, online softmax and barriers wherever the tests run;
// tests/gpu/gpu_kernels_test checks the same kernels on a real GPU.
#include <catch2/catch.hpp>

#include <cstdio>
#include <random>
#include <string>
#include <vector>

// The emulated device primitives come before the kernels that use them.
// clang-format off
#include "tests/support/cuda_emulator.hpp"
#include "hw/cuda/flash_attention.cuh"
#include "hw/cuda/simt_attention.cuh"
// clang-format on
#include "tests/support/attention_oracle.hpp"

using namespace bubblesim::hw;
namespace flash = bubblesim::hw::cuda::flash;
namespace simt = bubblesim::hw::cuda::simt;
namespace dev = bubblesim::hw::cuda::dev;
namespace emulator = bubblesim::hw::cuda::emulator;

namespace {

enum class Kernels { TensorCore, CudaCore };

struct Errors {
  double out, lse, dq, dk, dv;
};

/// Values in [-1, 1] rounded to bf16: the floats the oracle computes on, the bf16 the kernels do.
std::vector<float> random_bf16(size_t n, std::mt19937& rng, std::vector<dev::bf16>& as_bf16) {
  std::uniform_real_distribution<float> u(-1.0F, 1.0F);
  std::vector<float> f(n);
  as_bf16.resize(n);
  for (size_t i = 0; i < n; ++i) {
    as_bf16[i] = dev::to_bf16(u(rng));
    f[i] = dev::to_float(as_bf16[i]);
  }
  return f;
}

/// `v` copied one element past a 16-byte boundary, so the kernels take their element-wise loads.
template <class T>
std::vector<T> shifted_by_one(const std::vector<T>& v) {
  std::vector<T> out(v.size() + 1);
  std::copy(v.begin(), v.end(), out.begin() + 1);
  return out;
}

template <int D>
Errors run_kernels(const AttentionDims& d, const AttentionMask& mask, Kernels kernels, bool misaligned) {
  std::mt19937 rng(42);
  const size_t qn = d.heads * d.q_len * D, kn = d.heads * d.kv_len * D, rows = d.heads * d.q_len;
  std::vector<dev::bf16> qb, kb, vb;
  const auto q = random_bf16(qn, rng, qb), k = random_bf16(kn, rng, kb), v = random_bf16(kn, rng, vb);
  std::uniform_real_distribution<float> u(-1.0F, 1.0F);
  std::vector<float> dout(qn), dq0(qn), dk0(kn), dv0(kn);
  for (auto* x : {&dout, &dq0, &dk0, &dv0}) {
    for (float& f : *x) f = u(rng);
  }
  std::vector<float> out(qn), lse(rows), dq = dq0, dk = dk0, dv = dv0;
  test::reference_forward(d, mask, q, k, v, out, lse);
  test::reference_backward(d, mask, q, k, v, out, lse, dout, dq, dk, dv);

  const cuda::DeviceMask dm{mask.causal, mask.q_pos.empty() ? nullptr : mask.q_pos.data(),
                            mask.kv_pos.empty() ? nullptr : mask.kv_pos.data()};
  const cuda::Shape z{static_cast<int>(d.heads), static_cast<int>(d.q_len), static_cast<int>(d.kv_len),
                      1.0F / std::sqrt(static_cast<float>(D))};
  const auto blocks = [](int64_t len) { return static_cast<int>((len + flash::kRows - 1) / flash::kRows); };
  std::vector<float> k_out(qn), k_lse(rows), k_dq = dq0, k_dk = dk0, k_dv = dv0;
  constexpr int kKeys = flash::forward_keys(D), kQueries = flash::backward_queries(D);
  // The inputs as the kernels see them: where they are (vectors are 16-byte aligned), or shifted.
  const std::vector<dev::bf16> qs = shifted_by_one(qb), ks = shifted_by_one(kb), vs = shifted_by_one(vb);
  const std::vector<float> douts = shifted_by_one(dout);
  const int skip = misaligned ? 1 : 0;
  const dev::bf16 *kq = (misaligned ? qs : qb).data() + skip, *kk = (misaligned ? ks : kb).data() + skip,
                  *kv = (misaligned ? vs : vb).data() + skip;
  const float* kdout = (misaligned ? douts : dout).data() + skip;
  for (const void* p : {static_cast<const void*>(kq), static_cast<const void*>(kdout)}) {
    REQUIRE((reinterpret_cast<uintptr_t>(p) % 16 == 0) != misaligned);  // the load path meant
  }
  const int heads = static_cast<int>(d.heads);
  const auto grid = [](int64_t len, int per_block) { return static_cast<int>((len + per_block - 1) / per_block); };
  if (kernels == Kernels::TensorCore) {
    emulator::launch(blocks(d.q_len), heads, flash::kThreads, flash::ForwardLayout<D, kKeys>::bytes,
                     [&] { flash::forward<D, kKeys>(z, dm, kq, kk, kv, k_out.data(), k_lse.data()); });
  } else {
    emulator::launch(grid(d.q_len, simt::kFwdRows), heads, simt::kFwdRows, 0,
                     [&] { simt::forward_kernel<D>(z, dm, kq, kk, kv, k_out.data(), k_lse.data()); });
  }
  std::vector<float> delta(rows);  // as attention.cu's delta kernel: sum_c dO_ic O_ic in fp32
  for (size_t r = 0; r < rows; ++r) {
    float sum = 0.0F;
    for (int c = 0; c < D; ++c) sum += k_out[r * D + c] * dout[r * D + c];
    delta[r] = sum;
  }
  if (kernels == Kernels::TensorCore) {
    emulator::launch(blocks(d.kv_len), heads, flash::kThreads, flash::BackwardLayout<D, kQueries>::bytes, [&] {
      flash::backward<D, kQueries>(z, dm, kq, kk, kv, k_lse.data(), kdout, delta.data(), k_dq.data(), k_dk.data(),
                                   k_dv.data());
    });
  } else {
    emulator::launch(grid(d.kv_len, simt::kKvRows), heads, simt::kKvRows, 0, [&] {
      simt::dkdv_kernel<D>(z, dm, kq, kk, kv, k_lse.data(), kdout, delta.data(), k_dk.data(), k_dv.data());
    });
    emulator::launch(grid(d.q_len, simt::kDqRows), heads, simt::kDqRows, 0,
                     [&] { simt::dq_kernel<D>(z, dm, kq, kk, kv, k_lse.data(), kdout, delta.data(), k_dq.data()); });
  }

  // Gradients compared as increments over the starting values: an overwrite instead of an add
  // fails, and their own precision is not hidden under the starting values' size.
  const auto increment = [](std::vector<float> after, const std::vector<float>& before) {
    for (size_t i = 0; i < after.size(); ++i) after[i] -= before[i];
    return after;
  };
  return {test::max_error(k_out, out), test::max_error(k_lse, lse, false),
          test::max_error(increment(k_dq, dq0), increment(dq, dq0)),
          test::max_error(increment(k_dk, dk0), increment(dk, dk0)),
          test::max_error(increment(k_dv, dv0), increment(dv, dv0))};
}

Errors run_kernels(const AttentionDims& d, const AttentionMask& mask, Kernels kernels, bool misaligned) {
  switch (d.head_dim) {
    case 32:
      return run_kernels<32>(d, mask, kernels, misaligned);
    case 64:
      return run_kernels<64>(d, mask, kernels, misaligned);
    default:
      return run_kernels<128>(d, mask, kernels, misaligned);
  }
}

/// Runs both directions under every mask and head dim (and once with inputs that are not 16-byte
/// aligned) and checks each error against its tolerance.
void check_all(Kernels kernels, double forward, double backward) {
  const auto check = [&](const std::string& what, int64_t hd, const AttentionMask& mask, bool misaligned) {
    const Errors e = run_kernels({2, 100, 150, hd}, mask, kernels, misaligned);
    std::printf("%-12s %-36s out %.1e  lse %.1e  dq %.1e  dk %.1e  dv %.1e\n",
                kernels == Kernels::TensorCore ? "tensor-core" : "cuda-core", what.c_str(), e.out, e.lse, e.dq, e.dk,
                e.dv);
    INFO(what);
    CHECK(e.out <= forward);
    CHECK(e.lse <= 1e-4);  // absolutely: dropping one of n keys moves it by about 1/n
    CHECK(e.dq <= backward);
    CHECK(e.dk <= backward);
    CHECK(e.dv <= backward);
  };
  for (const int64_t hd : {32, 64, 128}) {
    const std::string dim = " hd" + std::to_string(hd);
    for (const auto& [name, mask] : test::kernel_masks()) check(name + dim, hd, mask, false);
    check("zigzag positions" + dim + ", misaligned", hd, test::kernel_masks().back().mask, true);
  }
}

}  // namespace

TEST_CASE("tensor-core attention kernels match the oracle under every mask and head dim") {
  // bf16 rounding of P, dO and dS (as FlashAttention-2 does) against a double oracle on the same
  // bf16 inputs: measured 1-2e-3 forward, 2-4e-3 backward.
  check_all(Kernels::TensorCore, 5e-3, 1e-2);
}

TEST_CASE("CUDA-core attention kernels match the oracle under every mask and head dim") {
  // fp32 throughout, with an exact exp here (measured at most 2e-5); on a GPU, whose fast exp
  // costs more, gpu_kernels_test allows 2e-3.
  check_all(Kernels::CudaCore, 1e-4, 1e-4);
}
