#include "hw/check/attention_check.hpp"

#include <mpi.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "hw/backend/attention_shards.hpp"
#include "hw/host/kernels.hpp"
#include "sim/core/error.hpp"
#include "sim/workload/sequence_parallel.hpp"

namespace bubblesim::hw {
namespace {

using Tensor = std::vector<float>;  // [heads][len][head_dim]

/// Gathers every rank's [heads][local][d] shard with its positions into rank 0's [heads][seq][d].
Tensor gather_rows(const Tensor& mine, const std::vector<int64_t>& pos, int64_t heads, int64_t seq, int64_t d,
                   const MpiSession& s) {
  const auto local = static_cast<int64_t>(pos.size());
  Tensor all(s.rank() == 0 ? static_cast<size_t>(mine.size()) * static_cast<size_t>(s.size()) : 0);
  std::vector<int64_t> all_pos(s.rank() == 0 ? pos.size() * static_cast<size_t>(s.size()) : 0);
  BUBBLESIM_MPI(MPI_Gather(mine.data(), static_cast<int>(mine.size()), MPI_FLOAT, all.data(), static_cast<int>(mine.size()),
                           MPI_FLOAT, 0, MPI_COMM_WORLD));
  BUBBLESIM_MPI(MPI_Gather(pos.data(), static_cast<int>(local), MPI_INT64_T, all_pos.data(), static_cast<int>(local),
                           MPI_INT64_T, 0, MPI_COMM_WORLD));
  if (s.rank() != 0) return {};
  return place_rows(all, all_pos, s.size(), heads, seq, d);
}

double max_diff(const Tensor& a, const Tensor& b) {
  double m = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) m = std::max(m, static_cast<double>(std::abs(a[i] - b[i])));
  return m;
}

/// Sends `out` to the next rank and receives the previous rank's into `in` (same size).
template <class T>
void ring_pass(const std::vector<T>& out, std::vector<T>& in, MPI_Datatype type, const MpiSession& s) {
  const int next = (s.rank() + 1) % s.size(), prev = (s.rank() + s.size() - 1) % s.size();
  in.resize(out.size());
  BUBBLESIM_MPI(MPI_Sendrecv(out.data(), static_cast<int>(out.size()), type, next, 7, in.data(),
                             static_cast<int>(in.size()), type, prev, 7, MPI_COMM_WORLD, MPI_STATUS_IGNORE));
}

struct Reference {
  Tensor q, k, v, dout, out, lse, dq, dk, dv;
};

Reference reference(int64_t heads, int64_t seq, int64_t d, bool backward) {
  Reference r{check_values(heads * seq * d, 1), check_values(heads * seq * d, 2), check_values(heads * seq * d, 3), check_values(heads * seq * d, 4),
              Tensor(static_cast<size_t>(heads * seq * d)), Tensor(static_cast<size_t>(heads * seq)), {}, {}, {}};
  const AttentionDims dims{heads, seq, seq, d};
  attention_forward(dims, AttentionMask{}, r.q.data(), r.k.data(), r.v.data(), r.out.data(), r.lse.data());
  if (backward) {
    r.dq.assign(r.q.size(), 0);
    r.dk.assign(r.k.size(), 0);
    r.dv.assign(r.v.size(), 0);
    attention_backward(dims, AttentionMask{}, r.q.data(), r.k.data(), r.v.data(), r.out.data(), r.lse.data(),
                       r.dout.data(), r.dq.data(), r.dk.data(), r.dv.data());
  }
  return r;
}

void check_ring(AttentionCheck& c, sim::RingLayout layout, const MpiSession& s) {
  const int64_t R = s.size(), H = c.heads, D = c.head_dim, local = c.seq / R;
  const Reference ref = reference(H, c.seq, D, true);
  const std::vector<int64_t> pos = sim::ring_positions(layout, R, local, s.rank());
  const Tensor q = shard_rows(ref.q, H, c.seq, D, pos), dout = shard_rows(ref.dout, H, c.seq, D, pos);
  const AttentionDims dims{H, local, local, D};
  // Forward: my queries against each block as it comes round, merged by log-sum-exp.
  Tensor out(q.size(), 0), lse(static_cast<size_t>(H * local), -std::numeric_limits<float>::infinity());
  Tensor k = shard_rows(ref.k, H, c.seq, D, pos), v = shard_rows(ref.v, H, c.seq, D, pos), part(q.size()), part_lse(lse.size());
  std::vector<int64_t> kv_pos = pos;
  for (int64_t t = 0; t < R; ++t) {
    attention_forward(dims, AttentionMask{true, pos, kv_pos}, q.data(), k.data(), v.data(), part.data(), part_lse.data());
    merge_attention(out.data(), lse.data(), part.data(), part_lse.data(), H * local, D);
    if (t + 1 == R) break;
    Tensor k2, v2;
    std::vector<int64_t> p2;
    ring_pass(k, k2, MPI_FLOAT, s);
    ring_pass(v, v2, MPI_FLOAT, s);
    ring_pass(kv_pos, p2, MPI_INT64_T, s);
    k.swap(k2);
    v.swap(v2);
    kv_pos.swap(p2);
  }
  const Tensor full_out = gather_rows(out, pos, H, c.seq, D, s);
  // Backward: dK/dV accumulators travel with their block and take one hop more, home.
  k = shard_rows(ref.k, H, c.seq, D, pos);
  v = shard_rows(ref.v, H, c.seq, D, pos);
  kv_pos = pos;
  Tensor dq(q.size(), 0), dk(k.size(), 0), dv(v.size(), 0);
  for (int64_t t = 0; t < R; ++t) {
    attention_backward(dims, AttentionMask{true, pos, kv_pos}, q.data(), k.data(), v.data(), out.data(), lse.data(),
                       dout.data(), dq.data(), dk.data(), dv.data());
    Tensor dk2, dv2;
    ring_pass(dk, dk2, MPI_FLOAT, s);
    ring_pass(dv, dv2, MPI_FLOAT, s);
    dk.swap(dk2);
    dv.swap(dv2);
    if (t + 1 == R) break;
    Tensor k2, v2;
    std::vector<int64_t> p2;
    ring_pass(k, k2, MPI_FLOAT, s);
    ring_pass(v, v2, MPI_FLOAT, s);
    ring_pass(kv_pos, p2, MPI_INT64_T, s);
    k.swap(k2);
    v.swap(v2);
    kv_pos.swap(p2);
  }
  const Tensor full_dq = gather_rows(dq, pos, H, c.seq, D, s);
  const Tensor full_dk = gather_rows(dk, pos, H, c.seq, D, s);
  const Tensor full_dv = gather_rows(dv, pos, H, c.seq, D, s);
  if (s.rank() != 0) return;
  c.forward_error = max_diff(full_out, ref.out);
  c.backward_error = std::max({max_diff(full_dq, ref.dq), max_diff(full_dk, ref.dk), max_diff(full_dv, ref.dv)});
}

void check_ulysses(AttentionCheck& c, const MpiSession& s) {
  const int64_t U = s.size(), H = c.heads, D = c.head_dim, local = c.seq / U, hu = H / U;
  const Reference ref = reference(H, c.seq, D, false);
  std::vector<int64_t> pos(static_cast<size_t>(local));
  for (int64_t i = 0; i < local; ++i) pos[static_cast<size_t>(i)] = s.rank() * local + i;
  // Sequence shard, all heads -> all tokens, heads [rank * hu, (rank + 1) * hu).
  auto to_heads = [&](const Tensor& shard) {
    // Packed send: for each destination j, its heads of my tokens: [hu][local][d] blocks.
    Tensor recv(shard.size());
    BUBBLESIM_MPI(MPI_Alltoall(shard.data(), static_cast<int>(hu * local * D), MPI_FLOAT, recv.data(),
                               static_cast<int>(hu * local * D), MPI_FLOAT, MPI_COMM_WORLD));
    // From rank i: [hu][local][d] of tokens i*local..; lay out as [hu][seq][d].
    Tensor out(static_cast<size_t>(hu * c.seq * D));
    for (int64_t i = 0; i < U; ++i) {
      for (int64_t h = 0; h < hu; ++h) {
        std::copy_n(recv.begin() + ((i * hu + h) * local) * D, local * D, out.begin() + (h * c.seq + i * local) * D);
      }
    }
    return out;
  };
  const Tensor q = to_heads(shard_rows(ref.q, H, c.seq, D, pos)), k = to_heads(shard_rows(ref.k, H, c.seq, D, pos)),
               v = to_heads(shard_rows(ref.v, H, c.seq, D, pos));
  Tensor out(q.size()), lse(static_cast<size_t>(hu * c.seq));
  attention_forward({hu, c.seq, c.seq, D}, AttentionMask{}, q.data(), k.data(), v.data(), out.data(), lse.data());
  // Back: all tokens of my heads -> my tokens of all heads.
  Tensor send(out.size());
  for (int64_t j = 0; j < U; ++j) {
    for (int64_t h = 0; h < hu; ++h) {
      std::copy_n(out.begin() + (h * c.seq + j * local) * D, local * D, send.begin() + ((j * hu + h) * local) * D);
    }
  }
  Tensor shard(send.size());
  BUBBLESIM_MPI(MPI_Alltoall(send.data(), static_cast<int>(hu * local * D), MPI_FLOAT, shard.data(),
                             static_cast<int>(hu * local * D), MPI_FLOAT, MPI_COMM_WORLD));
  // shard now holds, from rank i, heads i*hu.. of my tokens: that is [H][local][d] in head order.
  const Tensor full = gather_rows(shard, pos, H, c.seq, D, s);
  if (s.rank() == 0) c.forward_error = max_diff(full, ref.out);
}

}  // namespace

AttentionCheck check_attention(const std::string& mode, int64_t seq, int64_t heads, int64_t head_dim,
                               const MpiSession& session) {
  AttentionCheck c{mode, seq, heads, head_dim, 0, 0};
  const int64_t n = session.size();
  if (mode == "ulysses") {
    if (heads % n != 0 || seq % n != 0) {
      throw InputError("check ulysses: " + std::to_string(heads) + " heads and sequence " + std::to_string(seq) +
                       " must both divide by the " + std::to_string(n) + " ranks");
    }
    check_ulysses(c, session);
    return c;
  }
  const sim::RingLayout layout = sim::parse_ring_layout(mode);
  if (seq % (2 * n) != 0) {
    throw InputError("check " + mode + ": sequence " + std::to_string(seq) + " must divide by 2 x " + std::to_string(n) +
                     " ranks");
  }
  check_ring(c, layout, session);
  return c;
}

}  // namespace bubblesim::hw
