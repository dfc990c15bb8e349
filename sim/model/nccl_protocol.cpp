#include "sim/model/nccl_protocol.hpp"

#include <algorithm>
#include <cctype>
#include <limits>
#include <string>

#include "sim/core/error.hpp"

namespace bubblesim::sim {
namespace {

constexpr std::pair<NcclProtocol, std::string_view> kNames[] = {
    {NcclProtocol::LL, "LL"}, {NcclProtocol::LL128, "LL128"}, {NcclProtocol::Simple, "Simple"}};

// NCCL's ring figures in microseconds (tuning.cc v2.30, [ncclTune] in hardware.md), by protocol
// (LL, LL128, Simple); the base latencies are in protocol_base_latency.
constexpr double kNvlinkHopUs[kNcclProtocols] = {0.6, 1.9, 3.4};
constexpr double kPcieHopUs[kNcclProtocols] = {1.0, 2.5, 5.7};
constexpr double kNetHopUs[kNcclProtocols] = {2.7, 4.0, 14.0};
constexpr double kLlIntraInterNode = 1.8;  // LL's intra-node hops when the collective spans nodes
constexpr double kLlShareAllReduceOrNodes = 1.0 / 4;
constexpr double kLlShareInsideNode = 1.0 / 3;
constexpr double kLl128Share = 0.92;
constexpr double kLl128ShareOneGpuPerNode = 0.7;
// llMaxBw, LL's busbw ceiling in B/s: inside a node by GPU, across nodes by host CPU and node
// count (tuning.cc's llMaxBws; hosts as in DGX A100, AMD, and DGX H100, Intel).
constexpr double kLlMaxBwAmpere = 87.7e9;
constexpr double kLlMaxBwHopper = 141e9;
constexpr double kLlMaxBwAmd[2] = {22.5e9, 19.0e9};    // 2 nodes, more
constexpr double kLlMaxBwIntel[2] = {39.0e9, 20.4e9};  // 2 nodes, more

double ll_max_bw(const GpuPreset& gpu, int32_t nodes) {
  const bool hopper = gpu.arch == "hopper";
  if (nodes <= 1) return hopper ? kLlMaxBwHopper : kLlMaxBwAmpere;
  return (hopper ? kLlMaxBwIntel : kLlMaxBwAmd)[nodes == 2 ? 0 : 1];
}

size_t index(NcclProtocol p) { return static_cast<size_t>(p); }

}  // namespace

const char* to_string(NcclProtocol p) { return kNames[index(p)].second.data(); }

std::optional<NcclProtocol> parse_protocol(std::string_view name) {
  const auto same = [](std::string_view a, std::string_view b) {  // ignoring case, as NCCL_PROTO does
    return std::equal(a.begin(), a.end(), b.begin(), b.end(),
                      [](unsigned char x, unsigned char y) { return std::tolower(x) == std::tolower(y); });
  };
  if (same(name, "auto")) return std::nullopt;
  for (const auto& [p, n] : kNames) {
    if (same(name, n)) return p;
  }
  throw InputError("--protocol: unknown NCCL protocol \"" + std::string(name) + "\" (valid: auto, LL, LL128, Simple)");
}

std::string describe(const ProtocolChoice& c) { return std::string(c.nvls ? "nvls/" : "ring/") + to_string(c.protocol); }

Time nvls_latency() { return Time::ps(25'000'000); }

bool nvls_supported(const GpuPreset& gpu, int32_t nodes, size_t ranks) {
  return gpu.arch == "hopper" && gpu.nvlink_per_dir.value > 0 && nodes == 1 && ranks >= 3;  // NCCL: > 2 GPUs
}

Time protocol_base_latency(NcclProtocol p) {
  constexpr Time kBase[kNcclProtocols] = {Time::ps(6'600'000), Time::ps(14'000'000), Time::ps(8'400'000)};
  return kBase[index(p)];
}

Time protocol_hop_latency(NcclProtocol p, LinkClass cls, Time simple, bool multi_node) {
  if (p == NcclProtocol::Simple || simple == Time::zero()) return simple;
  const double* table = cls == LinkClass::NvLink ? kNvlinkHopUs : cls == LinkClass::Pcie ? kPcieHopUs : kNetHopUs;
  double ratio = table[index(p)] / table[index(NcclProtocol::Simple)];
  if (p == NcclProtocol::LL && multi_node && cls != LinkClass::Nic) ratio *= kLlIntraInterNode;
  return Time::from_seconds(simple.seconds() * ratio);
}

double protocol_bandwidth_share(NcclProtocol p, const GpuPreset& gpu, const RingShape& ring, Bandwidth ring_bw) {
  switch (p) {
    case NcclProtocol::Simple: return 1;
    case NcclProtocol::LL128:
      if (gpu.nvlink_per_dir.value <= 0) return 0;
      return ring.one_gpu_per_node ? kLl128ShareOneGpuPerNode : kLl128Share;
    case NcclProtocol::LL: {
      const double share =
          ring.nodes > 1 || !ring.gather_or_scatter ? kLlShareAllReduceOrNodes : kLlShareInsideNode;
      if (!(ring_bw.bytes_per_s > 0)) return share;
      return std::min(share, ll_max_bw(gpu, ring.nodes) / ring_bw.bytes_per_s);
    }
  }
  return 1;
}

Time ring_chain_latency(std::span<const Time> hops, int64_t steps) {
  const auto n = static_cast<int64_t>(hops.size());
  if (n == 0 || steps <= 0) return Time::zero();
  // Equal hops (a ring inside one node): one per step. The common case, on every TP collective.
  if (std::all_of(hops.begin() + 1, hops.end(), [&](Time t) { return t == hops[0]; })) return hops[0] * steps;
  Time lap;
  for (Time t : hops) lap += t;
  const int64_t laps = steps / n;
  const int64_t rest = steps % n;
  Time window;  // hops [0, rest)
  for (int64_t j = 0; j < rest; ++j) window += hops[static_cast<size_t>(j)];
  Time worst = window;
  for (int64_t j = 1, last = rest; rest > 0 && j < n; ++j, ++last) {  // slide to hops [j, j + rest)
    if (last == n) last = 0;
    window += hops[static_cast<size_t>(last)];
    window -= hops[static_cast<size_t>(j - 1)];
    worst = max(worst, window);
  }
  return lap * laps + worst;
}

ProtocolChoice choose_protocol(std::span<const Time, kNcclProtocols> chain, const GpuPreset& gpu, const RingShape& ring,
                               Bandwidth ring_bw, double wire_bytes, std::optional<NcclProtocol> forced) {
  if (!(ring_bw.bytes_per_s > 0)) throw InputError("a ring collective over links without bandwidth");
  ProtocolChoice best;
  best.seconds = std::numeric_limits<double>::infinity();
  for (const NcclProtocol p : {NcclProtocol::LL, NcclProtocol::LL128, NcclProtocol::Simple}) {
    if (forced && *forced != p) continue;
    const double share = protocol_bandwidth_share(p, gpu, ring, ring_bw);
    if (share <= 0) continue;
    const Time latency = protocol_base_latency(p) + chain[index(p)];
    const double seconds = latency.seconds() + wire_bytes / (ring_bw.bytes_per_s * share);
    if (seconds < best.seconds) best = {p, latency, share, seconds};
  }
  if (!(best.seconds < std::numeric_limits<double>::infinity())) {  // only a forced protocol can be off
    throw InputError(std::string("NCCL does not run the ") + to_string(forced.value_or(NcclProtocol::Simple)) +
                     " protocol on " + std::string(gpu.id) + " (LL128 needs NVLink)");
  }
  return best;
}

}  // namespace bubblesim::sim
