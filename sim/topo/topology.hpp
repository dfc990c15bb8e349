// The cluster as a graph (Boost.Graph): GPUs, each node's NVSwitch (or PCIe switch for PCIe-only
// GPUs), NICs and one non-blocking fabric, joined by directed links with a bandwidth per direction
// and a latency. Routes between GPUs are found with a breadth-first search of the graph, once per
// pair, when a Program is built; never inside the event loop.
// Not a network simulator: sim/model/network.hpp shares these links between flows.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "sim/core/units.hpp"
#include "sim/scenario/cluster_job.hpp"

namespace bubblesim::sim {

using LinkId = uint32_t;

enum class LinkClass : uint8_t { NvLink, Pcie, Nic };
const char* to_string(LinkClass c);

struct Link {
  Bandwidth bandwidth;  // this direction
  Time latency;         // added once per traversal
  LinkClass cls;
  std::string name;     // e.g. "node0/gpu3->nvswitch"
};

class Topology {
 public:
  /// Builds the graph of `c`: per node, GPU <-> switch links at the intra-node bandwidth and
  /// latency, GPU <-> NIC links over PCIe (GPU i uses NIC i * nics / gpus_per_node, as rails do;
  /// with more NICs than GPUs each GPU's NICs act as one), and NIC <-> fabric links at the NIC
  /// bandwidth with the inter-node latency. Not thread-safe: routes are cached on first use.
  explicit Topology(const ResolvedCluster& c);
  ~Topology();
  Topology(Topology&&) noexcept;
  Topology& operator=(Topology&&) noexcept;

  int32_t gpus() const { return gpus_; }
  int32_t node_of(int32_t gpu) const { return gpu / gpus_per_node_; }
  const Link& link(LinkId id) const { return links_[id]; }
  size_t links() const { return links_.size(); }

  /// The directed links from GPU `a` to GPU `b` (a != b), shortest in hops, never through another
  /// GPU. Computed with BFS on first use and cached: once per pair, O(V + E) at worst; the search
  /// stops when it reaches `b` (a route inside a node visits a few vertices).
  const std::vector<LinkId>& route(int32_t a, int32_t b) const {
    if (!dense_.empty()) {  // the hot path: one lookup per transfer started
      const auto* r = dense_[static_cast<size_t>(a) * static_cast<size_t>(gpus_) + static_cast<size_t>(b)];
      if (r != nullptr) return *r;
    }
    return find_route(a, b);
  }
  /// Sum of the route's latencies, and its narrowest link.
  Time route_latency(int32_t a, int32_t b) const;
  Bandwidth route_bandwidth(int32_t a, int32_t b) const;

 private:
  const std::vector<LinkId>& find_route(int32_t a, int32_t b) const;
  struct Graph;
  std::unique_ptr<Graph> graph_;
  std::vector<Link> links_;
  int32_t gpus_ = 0;
  int32_t gpus_per_node_ = 1;
  mutable std::unordered_map<uint64_t, std::vector<LinkId>> routes_;  // node-based: values never move
  /// Clusters up to kDenseRoutes GPUs also index the cached routes by a * gpus + b (the network
  /// looks one up per transfer).
  static constexpr int32_t kDenseRoutes = 2048;
  mutable std::vector<const std::vector<LinkId>*> dense_;
};

}  // namespace bubblesim::sim
