#include "sim/topo/topology.hpp"

#include <boost/graph/adjacency_list.hpp>
#include <boost/graph/breadth_first_search.hpp>
#include <boost/graph/filtered_graph.hpp>
#include <algorithm>

#include "sim/core/error.hpp"

namespace bubblesim::sim {

const char* to_string(LinkClass c) {
  switch (c) {
    case LinkClass::NvLink: return "nvlink";
    case LinkClass::Pcie: return "pcie";
    case LinkClass::Nic: return "nic";
  }
  return "?";
}

struct Topology::Graph {
  struct VertexProps {
    bool is_gpu = false;
  };
  struct EdgeProps {
    LinkId link = 0;
  };
  using G = boost::adjacency_list<boost::vecS, boost::vecS, boost::directedS, VertexProps, EdgeProps>;
  using Vertex = G::vertex_descriptor;
  using EdgeDesc = G::edge_descriptor;
  G g;
  std::vector<Vertex> gpu_vertex;
  // Scratch of find_route, kept across searches so that a route costs only the vertices its
  // search reaches: a vertex is white unless stamped by the current search.
  std::vector<uint32_t> stamp;
  std::vector<boost::default_color_type> color;
  std::vector<EdgeDesc> via;
  std::vector<Vertex> queue;
  uint32_t search = 0;
};

namespace {

/// Keeps the BFS from passing through GPUs other than the route's ends.
template <class G>
struct NoTransitGpu {
  const G* g = nullptr;
  typename G::vertex_descriptor from{}, to{};
  bool operator()(typename G::vertex_descriptor v) const { return !(*g)[v].is_gpu || v == from || v == to; }
};

/// BFS colours of the current search (Topology::Graph's stamps): unstamped vertices are white.
struct StampedColors {
  using key_type = size_t;
  using value_type = boost::default_color_type;
  using reference = boost::default_color_type;
  using category = boost::read_write_property_map_tag;
  std::vector<uint32_t>* stamp;
  std::vector<boost::default_color_type>* color;
  uint32_t search;
};
boost::default_color_type get(const StampedColors& m, size_t v) {
  return (*m.stamp)[v] == m.search ? (*m.color)[v] : boost::white_color;
}
void put(const StampedColors& m, size_t v, boost::default_color_type c) {
  (*m.stamp)[v] = m.search;
  (*m.color)[v] = c;
}

/// The BFS queue, which reads as empty once the destination is found: boost's search then
/// stops there instead of visiting the whole cluster.
template <class Vertex>
class UntilFound {
 public:
  UntilFound(std::vector<Vertex>& storage, const bool& found) : q_(storage), found_(found) { q_.clear(); }
  void push(Vertex v) { q_.push_back(v); }
  void pop() { ++head_; }
  Vertex& top() { return q_[head_]; }
  bool empty() const { return found_ || head_ == q_.size(); }

 private:
  std::vector<Vertex>& q_;
  const bool& found_;
  size_t head_ = 0;
};

}  // namespace

Topology::Topology(const ResolvedCluster& c) : graph_(std::make_unique<Graph>()) {
  gpus_ = c.world();
  gpus_per_node_ = c.gpus_per_node;
  auto& g = graph_->g;
  auto add_link = [&](Graph::Vertex a, Graph::Vertex b, Bandwidth bw, Time lat, LinkClass cls, std::string name) {
    BUBBLESIM_ASSERT(bw.bytes_per_s > 0, "link without bandwidth: " + name);
    links_.push_back(Link{bw, lat, cls, std::move(name)});
    boost::add_edge(a, b, Graph::EdgeProps{static_cast<LinkId>(links_.size() - 1)}, g);
  };
  const bool nvlink = c.gpu->nvlink_per_dir.value > 0;
  const Bandwidth pcie{c.gpu->pcie_per_dir.value};
  const auto fabric = boost::add_vertex(Graph::VertexProps{false}, g);
  for (int32_t n = 0; n < c.nodes; ++n) {
    const std::string node = "node" + std::to_string(n);
    const auto sw = boost::add_vertex(Graph::VertexProps{false}, g);
    const std::string sw_name = node + (nvlink ? "/nvswitch" : "/pcie-switch");
    // More NICs than GPUs (e.g. 16 EFA ports for 8 GPUs): each GPU's share acts as one wider NIC.
    const int32_t nic_count = std::min(c.nics_per_node, c.gpus_per_node);
    const Bandwidth nic_bw{c.inter_bandwidth.bytes_per_s * std::max(1.0, static_cast<double>(c.nics_per_node) /
                                                                            c.gpus_per_node)};
    // With oversubscription the node's NICs meet at a leaf switch whose uplink is narrower.
    auto uplink = fabric;
    if (c.oversubscription > 1) {
      uplink = boost::add_vertex(Graph::VertexProps{false}, g);
      const Bandwidth up{nic_bw.bytes_per_s * nic_count / c.oversubscription};
      add_link(uplink, fabric, up, Time::zero(), LinkClass::Nic, node + "/leaf->fabric");
      add_link(fabric, uplink, up, Time::zero(), LinkClass::Nic, "fabric->" + node + "/leaf");
    }
    const std::string to = c.oversubscription > 1 ? "leaf" : "fabric";
    std::vector<Graph::Vertex> nics;
    for (int32_t k = 0; k < nic_count; ++k) {
      const auto nic = boost::add_vertex(Graph::VertexProps{false}, g);
      const std::string name = node + "/nic" + std::to_string(k);
      add_link(nic, uplink, nic_bw, c.inter_latency, LinkClass::Nic, name + "->" + to);
      add_link(uplink, nic, nic_bw, Time::zero(), LinkClass::Nic, to + "->" + name);
      nics.push_back(nic);
    }
    for (int32_t i = 0; i < c.gpus_per_node; ++i) {
      const auto gpu = boost::add_vertex(Graph::VertexProps{true}, g);
      graph_->gpu_vertex.push_back(gpu);
      const std::string name = node + "/gpu" + std::to_string(i);
      const LinkClass intra = nvlink ? LinkClass::NvLink : LinkClass::Pcie;
      add_link(gpu, sw, c.intra_bandwidth, c.intra_latency, intra, name + "->" + sw_name.substr(node.size() + 1));
      add_link(sw, gpu, c.intra_bandwidth, Time::zero(), intra, sw_name + "->gpu" + std::to_string(i));
      if (nics.empty()) continue;
      const auto nic = nics[static_cast<size_t>(i) * nics.size() / static_cast<size_t>(c.gpus_per_node)];
      add_link(gpu, nic, pcie, Time::zero(), LinkClass::Pcie, name + "->nic");
      add_link(nic, gpu, pcie, Time::zero(), LinkClass::Pcie, "nic->" + name);
    }
  }
}

Topology::~Topology() = default;
Topology::Topology(Topology&&) noexcept = default;
Topology& Topology::operator=(Topology&&) noexcept = default;

const std::vector<LinkId>& Topology::find_route(int32_t a, int32_t b) const {
  BUBBLESIM_ASSERT(a != b && a >= 0 && b >= 0 && a < gpus_ && b < gpus_, "route between invalid GPUs");
  const size_t dense = static_cast<size_t>(a) * static_cast<size_t>(gpus_) + static_cast<size_t>(b);
  if (gpus_ <= kDenseRoutes) {
    if (dense_.empty()) dense_.assign(static_cast<size_t>(gpus_) * static_cast<size_t>(gpus_), nullptr);
    if (dense_[dense] != nullptr) return *dense_[dense];
  }
  const uint64_t key = (static_cast<uint64_t>(a) << 32) | static_cast<uint32_t>(b);
  if (auto it = routes_.find(key); it != routes_.end()) {
    if (gpus_ <= kDenseRoutes) dense_[dense] = &it->second;
    return it->second;
  }
  using G = Graph::G;
  const G& g = graph_->g;
  const auto src = graph_->gpu_vertex[static_cast<size_t>(a)];
  const auto dst = graph_->gpu_vertex[static_cast<size_t>(b)];
  NoTransitGpu<G> keep{&g, src, dst};
  using Filtered = boost::filtered_graph<G, boost::keep_all, NoTransitGpu<G>>;
  Filtered fg(g, boost::keep_all{}, keep);
  Graph& scratch = *graph_;
  const size_t vertices = boost::num_vertices(g);
  if (scratch.stamp.size() != vertices) {
    scratch.stamp.assign(vertices, 0);
    scratch.color.assign(vertices, boost::white_color);
    scratch.via.resize(vertices);
    scratch.search = 0;
  }
  if (++scratch.search == 0) {  // the stamps wrapped: start over
    std::fill(scratch.stamp.begin(), scratch.stamp.end(), 0);
    scratch.search = 1;
  }
  bool found = false;
  struct Recorder : boost::default_bfs_visitor {
    std::vector<Graph::EdgeDesc>* via;
    Graph::Vertex dst;
    bool* found;
    void tree_edge(Graph::EdgeDesc e, const Filtered& f) const {
      (*via)[boost::target(e, f)] = e;
      if (boost::target(e, f) == dst) *found = true;
    }
  };
  Recorder rec;
  rec.via = &scratch.via;
  rec.dst = dst;
  rec.found = &found;
  UntilFound<Graph::Vertex> queue(scratch.queue, found);
  boost::breadth_first_visit(fg, src, queue, rec, StampedColors{&scratch.stamp, &scratch.color, scratch.search});
  if (!found) {
    throw InputError("no route from GPU " + std::to_string(a) + " to GPU " + std::to_string(b) +
                     " (a node without NICs cannot reach the others)");
  }
  const std::vector<Graph::EdgeDesc>& via = scratch.via;
  std::vector<LinkId> path;
  for (auto v = dst; v != src; v = boost::source(via[v], g)) path.push_back(g[via[v]].link);
  std::reverse(path.begin(), path.end());
  const std::vector<LinkId>& cached = routes_.emplace(key, std::move(path)).first->second;
  if (gpus_ <= kDenseRoutes) dense_[dense] = &cached;
  return cached;
}

Time Topology::route_latency(int32_t a, int32_t b) const {
  Time t;
  for (LinkId l : route(a, b)) t += links_[l].latency;
  return t;
}

Bandwidth Topology::route_bandwidth(int32_t a, int32_t b) const {
  double bw = std::numeric_limits<double>::infinity();
  for (LinkId l : route(a, b)) bw = std::min(bw, links_[l].bandwidth.bytes_per_s);
  return Bandwidth{bw};
}

}  // namespace bubblesim::sim
