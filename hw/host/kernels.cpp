#include "hw/host/kernels.hpp"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

namespace bubblesim::hw {
namespace {

constexpr int64_t kBlock = 64;  // query and key rows per tile
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

/// How a tile of queries [q0, q1) and keys [k0, k1) is masked.
enum class Tile : uint8_t { Skip, Full, Diagonal };

Tile classify(const AttentionMask& m, int64_t q0, int64_t q1, int64_t k0, int64_t k1) {
  if (!m.causal) return Tile::Full;
  int64_t qmin = std::numeric_limits<int64_t>::max(), qmax = std::numeric_limits<int64_t>::min();
  for (int64_t i = q0; i < q1; ++i) {
    qmin = std::min(qmin, m.q(i));
    qmax = std::max(qmax, m.q(i));
  }
  int64_t kmin = std::numeric_limits<int64_t>::max(), kmax = std::numeric_limits<int64_t>::min();
  for (int64_t j = k0; j < k1; ++j) {
    kmin = std::min(kmin, m.kv(j));
    kmax = std::max(kmax, m.kv(j));
  }
  if (kmin > qmax) return Tile::Skip;
  return kmax <= qmin ? Tile::Full : Tile::Diagonal;
}

/// S = scale * Q[q0:q1] K[k0:k1]^T, masked entries -inf.
void scores(const AttentionDims& d, const AttentionMask& m, Tile tile, const float* q, const float* k, int64_t q0,
            int64_t bq, int64_t k0, int64_t bk, float scale, float* s) {
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(bq), static_cast<int>(bk),
              static_cast<int>(d.head_dim), scale, q + q0 * d.head_dim, static_cast<int>(d.head_dim),
              k + k0 * d.head_dim, static_cast<int>(d.head_dim), 0.0F, s, static_cast<int>(bk));
  if (tile != Tile::Diagonal) return;
  for (int64_t i = 0; i < bq; ++i) {
    const int64_t qp = m.q(q0 + i);
    for (int64_t j = 0; j < bk; ++j) {
      if (m.kv(k0 + j) > qp) s[i * bk + j] = kNegInf;
    }
  }
}

}  // namespace

void init_blas_single_thread() { openblas_set_num_threads(1); }

void gemm(const float* a, const float* b, float* c, int64_t m, int64_t n, int64_t k, int64_t batch) {
  for (int64_t i = 0; i < batch; ++i) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(m), static_cast<int>(n),
                static_cast<int>(k), 1.0F, a + i * m * k, static_cast<int>(k), b + i * k * n, static_cast<int>(n),
                0.0F, c + i * m * n, static_cast<int>(n));
  }
}

void attention_forward(const AttentionDims& d, const AttentionMask& mask, const float* q, const float* k,
                       const float* v, float* out, float* lse) {
  const float scale = 1.0F / std::sqrt(static_cast<float>(d.head_dim));
  std::vector<float> s(kBlock * kBlock), acc(kBlock * d.head_dim), row_max(kBlock), row_sum(kBlock);
  for (int64_t h = 0; h < d.heads; ++h) {
    const float* qh = q + h * d.q_len * d.head_dim;
    const float* kh = k + h * d.kv_len * d.head_dim;
    const float* vh = v + h * d.kv_len * d.head_dim;
    for (int64_t q0 = 0; q0 < d.q_len; q0 += kBlock) {
      const int64_t bq = std::min(kBlock, d.q_len - q0);
      std::fill(acc.begin(), acc.end(), 0.0F);
      std::fill(row_max.begin(), row_max.end(), kNegInf);
      std::fill(row_sum.begin(), row_sum.end(), 0.0F);
      for (int64_t k0 = 0; k0 < d.kv_len; k0 += kBlock) {
        const int64_t bk = std::min(kBlock, d.kv_len - k0);
        const Tile tile = classify(mask, q0, q0 + bq, k0, k0 + bk);
        if (tile == Tile::Skip) continue;
        scores(d, mask, tile, qh, kh, q0, bq, k0, bk, scale, s.data());
        for (int64_t i = 0; i < bq; ++i) {
          float* si = s.data() + i * bk;
          const float m_new = std::max(row_max[i], *std::max_element(si, si + bk));
          if (m_new == kNegInf) continue;  // nothing allowed in this row yet
          const float rescale = std::exp(row_max[i] - m_new);
          float sum = 0;
          for (int64_t j = 0; j < bk; ++j) {
            si[j] = std::exp(si[j] - m_new);
            sum += si[j];
          }
          row_sum[i] = row_sum[i] * rescale + sum;
          row_max[i] = m_new;
          float* ai = acc.data() + i * d.head_dim;
          for (int64_t c = 0; c < d.head_dim; ++c) ai[c] *= rescale;
        }
        // Rows with nothing allowed still hold -inf scores; their probabilities are 0.
        for (int64_t i = 0; i < bq; ++i) {
          if (row_max[i] == kNegInf) std::fill(s.data() + i * bk, s.data() + (i + 1) * bk, 0.0F);
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(bq), static_cast<int>(d.head_dim),
                    static_cast<int>(bk), 1.0F, s.data(), static_cast<int>(bk), vh + k0 * d.head_dim,
                    static_cast<int>(d.head_dim), 1.0F, acc.data(), static_cast<int>(d.head_dim));
      }
      for (int64_t i = 0; i < bq; ++i) {
        float* oi = out + (h * d.q_len + q0 + i) * d.head_dim;
        float& l = lse[h * d.q_len + q0 + i];
        if (row_sum[i] == 0) {
          std::fill(oi, oi + d.head_dim, 0.0F);
          l = kNegInf;
          continue;
        }
        const float inv = 1.0F / row_sum[i];
        for (int64_t c = 0; c < d.head_dim; ++c) oi[c] = acc[i * d.head_dim + c] * inv;
        l = row_max[i] + std::log(row_sum[i]);
      }
    }
  }
}

void attention_backward(const AttentionDims& d, const AttentionMask& mask, const float* q, const float* k,
                        const float* v, const float* out, const float* lse, const float* dout, float* dq, float* dk,
                        float* dv) {
  const float scale = 1.0F / std::sqrt(static_cast<float>(d.head_dim));
  const auto hd = static_cast<int>(d.head_dim);
  std::vector<float> p(kBlock * kBlock), dp(kBlock * kBlock), delta(d.q_len);
  for (int64_t h = 0; h < d.heads; ++h) {
    const int64_t qo = h * d.q_len * d.head_dim, ko = h * d.kv_len * d.head_dim;
    for (int64_t i = 0; i < d.q_len; ++i) {  // D_i = rowsum(dO * O)
      float sum = 0;
      for (int64_t c = 0; c < d.head_dim; ++c) sum += dout[qo + i * d.head_dim + c] * out[qo + i * d.head_dim + c];
      delta[i] = sum;
    }
    for (int64_t k0 = 0; k0 < d.kv_len; k0 += kBlock) {
      const int64_t bk = std::min(kBlock, d.kv_len - k0);
      for (int64_t q0 = 0; q0 < d.q_len; q0 += kBlock) {
        const int64_t bq = std::min(kBlock, d.q_len - q0);
        const Tile tile = classify(mask, q0, q0 + bq, k0, k0 + bk);
        if (tile == Tile::Skip) continue;
        scores(d, mask, tile, q + qo, k + ko, q0, bq, k0, bk, scale, p.data());
        for (int64_t i = 0; i < bq; ++i) {
          const float l = lse[h * d.q_len + q0 + i];
          for (int64_t j = 0; j < bk; ++j) p[i * bk + j] = l == kNegInf ? 0.0F : std::exp(p[i * bk + j] - l);
        }
        const float* dout_i = dout + qo + q0 * d.head_dim;
        // dV_j += P^T dO_i
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, static_cast<int>(bk), hd, static_cast<int>(bq), 1.0F,
                    p.data(), static_cast<int>(bk), dout_i, hd, 1.0F, dv + ko + k0 * d.head_dim, hd);
        // dP = dO_i V_j^T
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(bq), static_cast<int>(bk), hd, 1.0F,
                    dout_i, hd, v + ko + k0 * d.head_dim, hd, 0.0F, dp.data(), static_cast<int>(bk));
        for (int64_t i = 0; i < bq; ++i) {  // dS = P * (dP - D_i), kept in dp
          for (int64_t j = 0; j < bk; ++j) dp[i * bk + j] = p[i * bk + j] * (dp[i * bk + j] - delta[q0 + i]);
        }
        // dQ_i += scale dS K_j ; dK_j += scale dS^T Q_i
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(bq), hd, static_cast<int>(bk), scale,
                    dp.data(), static_cast<int>(bk), k + ko + k0 * d.head_dim, hd, 1.0F, dq + qo + q0 * d.head_dim, hd);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, static_cast<int>(bk), hd, static_cast<int>(bq), scale,
                    dp.data(), static_cast<int>(bk), q + qo + q0 * d.head_dim, hd, 1.0F, dk + ko + k0 * d.head_dim, hd);
      }
    }
  }
}

void merge_attention(float* o1, float* lse1, const float* o2, const float* lse2, int64_t rows, int64_t head_dim) {
  for (int64_t i = 0; i < rows; ++i) {
    const float m = std::max(lse1[i], lse2[i]);
    if (m == kNegInf) continue;  // neither part saw a key
    const float w1 = std::exp(lse1[i] - m), w2 = std::exp(lse2[i] - m);
    const float inv = 1.0F / (w1 + w2);
    for (int64_t c = 0; c < head_dim; ++c) {
      o1[i * head_dim + c] = (w1 * o1[i * head_dim + c] + w2 * o2[i * head_dim + c]) * inv;
    }
    lse1[i] = m + std::log(w1 + w2);
  }
}

void memory_op(float* dst, const float* src, int64_t bytes) {
  std::memcpy(dst, src, static_cast<size_t>(std::max<int64_t>(bytes / 2, 0)));
}

}  // namespace bubblesim::hw
