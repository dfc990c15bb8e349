#include "sim/cli/collective.hpp"

#include <cctype>
#include <cmath>
#include <cstdio>
#include <vector>

#include "sim/core/error.hpp"
#include "sim/exec/executor.hpp"
#include "sim/model/collectives.hpp"
#include "sim/model/network.hpp"
#include "sim/scenario/cluster_job.hpp"
#include "sim/topo/topology.hpp"

namespace bubblesim::sim {
namespace {

constexpr int64_t kMaxSize = int64_t{1} << 40;
constexpr int kFloatBytes = 4;

int64_t parse_size(std::string s) {
  const std::string original = s;
  for (const char* suffix : {"iB", "B"}) {
    const std::string suf = suffix;
    if (s.size() > suf.size() && s.compare(s.size() - suf.size(), suf.size(), suf) == 0) {
      s.resize(s.size() - suf.size());
      break;
    }
  }
  int64_t scale = 1;
  if (!s.empty()) {
    switch (std::toupper(static_cast<unsigned char>(s.back()))) {
      case 'K': scale = int64_t{1} << 10; break;
      case 'M': scale = int64_t{1} << 20; break;
      case 'G': scale = int64_t{1} << 30; break;
      case 'T': scale = int64_t{1} << 40; break;
      default: break;
    }
    if (scale != 1) s.pop_back();
  }
  const auto v = parse_integer(s);
  if (!v || *v <= 0 || *v > kMaxSize / scale) {
    throw InputError("--sizes: \"" + original + "\" is not a size such as 8B, 64K or 8G (at most 1 TiB)");
  }
  return *v * scale;
}

std::vector<int> choose_gpus(const CollectiveOptions& opt, const ResolvedCluster& c) {
  const int avail = opt.group == "intra" ? c.gpus_per_node : opt.group == "inter" ? c.nodes : c.world();
  if (opt.group != "intra" && opt.group != "inter" && opt.group != "all") {
    throw InputError("--group: unknown group \"" + opt.group + "\" (valid: intra, inter, all)");
  }
  const int n = opt.ranks == 0 ? avail : opt.ranks;
  if (n < 1 || n > avail) {
    throw InputError("--ranks: " + std::to_string(n) + " ranks do not fit the " + opt.group + " group of this cluster (" +
                     std::to_string(avail) + " available)");
  }
  std::vector<int> gpus;
  for (int i = 0; i < n; ++i) gpus.push_back(opt.group == "inter" ? i * c.gpus_per_node : i);
  return gpus;
}

double flow_seconds(const Topology& topo, const CollectiveSpec& base) {
  Program p;
  CollectiveSpec spec = base;
  for (int gpu : spec.gpus) {
    spec.streams.push_back(p.add_stream(p.add_device("gpu " + std::to_string(gpu)), StreamKind::Comm, "comm"));
  }
  expand_collective(p, spec);
  p.finalize();
  FlowNetwork net(topo);
  return simulate(p, GivenTimes{}, &net).makespan.seconds();
}

}  // namespace

std::vector<int64_t> parse_size_range(const std::string& text) {
  const auto colon = text.find(':');
  const int64_t begin = parse_size(colon == std::string::npos ? text : text.substr(0, colon));
  const int64_t end = colon == std::string::npos ? begin : parse_size(text.substr(colon + 1));
  if (end < begin) throw InputError("--sizes: the end " + std::to_string(end) + " is below the start " + std::to_string(begin));
  std::vector<int64_t> sizes;
  for (int64_t s = begin; s <= end; s *= 2) sizes.push_back(s);
  return sizes;
}

void run_collective(const CollectiveOptions& opt, std::ostream& out) {
  const CollectiveOp op = parse_collective(opt.op);
  if (opt.mode != "flow" && opt.mode != "analytic") {
    throw InputError("--mode: unknown mode \"" + opt.mode + "\" (valid: flow, analytic)");
  }
  if (opt.format != "text" && opt.format != "csv") {
    throw InputError("--format: unknown format \"" + opt.format + "\" (valid: text, csv)");
  }
  const std::vector<int64_t> sizes = parse_size_range(opt.sizes);
  const Scenario sc = load_scenario(opt.scenario, {}, ScenarioNeeds::Cluster);
  const ResolvedCluster cluster = resolve_cluster(sc);
  // "auto": the scenario's cluster.nccl settings, NCCL's own choice unless they say otherwise.
  const std::optional<NcclProtocol> forced =
      parse_protocol(opt.protocol == "auto" ? cluster.nccl_protocol : opt.protocol);
  const CollectiveAlgo algo =
      opt.algo == "auto" && !cluster.nccl_nvls ? CollectiveAlgo::Ring : parse_algorithm(opt.algo);
  const Topology topo(cluster);
  const std::vector<int> gpus = choose_gpus(opt, cluster);
  const int n = static_cast<int>(gpus.size());
  const bool crosses = n > 1 && topo.node_of(gpus.front()) != topo.node_of(gpus.back());
  if ((algo == CollectiveAlgo::TwoLevel || algo == CollectiveAlgo::Nvls) && op != CollectiveOp::AllReduce) {
    throw InputError("--algo " + opt.algo + " exists for all-reduce only");
  }
  if (opt.channels < 0) throw InputError("--channels: " + std::to_string(opt.channels) + " is negative (0: automatic)");
  const int nodes = n > 0 ? topo.node_of(gpus.back()) - topo.node_of(gpus.front()) + 1 : 0;
  if (algo == CollectiveAlgo::TwoLevel && n % nodes != 0) {
    throw InputError("--algo two-level needs the same number of ranks on every node (" + std::to_string(n) +
                     " ranks over " + std::to_string(nodes) + " nodes)");
  }
  // Ring collectives run as NCCL's pipelined rings (ring_protocol), over NCCL's channels when
  // they cross nodes (ring_channels: each leaves every node on another GPU's NIC).
  CollectiveSpec base{op, algo, Bytes{0}, {gpus.begin(), gpus.end()}, {}, {}, {}, false, {}};
  for (int gpu : gpus) base.node_of.push_back(topo.node_of(gpu));
  base.max_channels = opt.channels;
  base.topology = &topo;
  base.gpu = cluster.gpu;
  base.protocol = forced;
  base.fuse_steps = algo != CollectiveAlgo::TwoLevel && op != CollectiveOp::AllToAll && op != CollectiveOp::SendRecv;
  const bool protocols = n > 1 && runs_protocol(base);
  if (forced && !protocols) {
    throw InputError("--protocol applies to ring all-reduce, all-gather and reduce-scatter over 2 or more GPUs");
  }
  if (algo == CollectiveAlgo::Nvls && !protocols)
    throw InputError("--algo nvls needs 3 or more GPUs of one Hopper node");
  RingHops hops;  // the same rings at every size
  if (protocols) {
    hops = ring_hops(base);
    base.hops = &hops;
    ring_protocol(base);  // refuses NVLS where NCCL has none, before anything is printed
  }
  const size_t channels = hops.orders.size();
  // All-to-all and send/recv in the analytic mode: the narrowest route and the slowest hop.
  Bandwidth bw{std::numeric_limits<double>::infinity()};
  Time alpha;
  for (int i = 0; n > 1 && i < n; ++i) {
    const int a = gpus[static_cast<size_t>(i)];
    const int b = gpus[static_cast<size_t>((i + 1) % n)];
    if (bw.bytes_per_s > topo.route_bandwidth(a, b).bytes_per_s) bw = topo.route_bandwidth(a, b);
    alpha = max(alpha, topo.route_latency(a, b));
  }
  // Inside one node, ring collectives reach NCCL's size-dependent share of the links.
  const auto efficiency = [&](int64_t size) {
    return crosses || algo == CollectiveAlgo::TwoLevel || n < 2 ? 1.0 : nccl_efficiency(*cluster.gpu, op, size / n);
  };
  const bool text = opt.format == "text";
  if (text) {
    out << "# bubblesim collective: " << to_string(op) << " over " << n << " GPU(s) of " << sc.name << " ("
        << cluster.nodes << " x " << cluster.gpus_per_node << " " << cluster.gpu->id << "), group " << opt.group
        << (crosses ? ", crossing nodes" : ", inside one node") << "; algorithm " << opt.algo;
    if (channels > 1) out << " (" << channels << " channels, each leaving a node by another GPU)";
    out << ", " << opt.mode << " model\n";
    out << "# sizes in bytes (K/M/G binary, as nccl-tests); algbw = size / time, busbw = algbw x "
        << busbw_factor(op, n) << " (nccl-tests factors); GB/s = 1e9 B/s\n";
    out << "# nccl: NCCL's algorithm and protocol for a ring-type collective (its choice by its cost model,\n"
        << "# or --algo and --protocol): ring/LL, ring/LL128, ring/Simple, or nvls/Simple (NVLink SHARP)\n";
    out << "#       size         count    type   redop    root     time(us)  algbw(GB/s)  busbw(GB/s)         nccl\n";
  } else {
    out << "op,ranks,algorithm,mode,size_bytes,count,time_us,algbw_gbs,busbw_gbs,nccl\n";
  }
  for (int64_t size : sizes) {
    double seconds = 0;
    CollectiveSpec spec = base;
    spec.size = Bytes{size};
    spec.efficiency = efficiency(size);
    std::optional<ProtocolChoice> choice;
    if (protocols) choice = ring_protocol(spec);
    if (n > 1 && opt.mode == "flow") {
      seconds = flow_seconds(topo, spec);
    } else if (choice) {
      seconds = choice->seconds;
    } else if (n > 1 && algo == CollectiveAlgo::TwoLevel) {
      // B_e of algorithms.md 3.3 is per GPU: the node's NICs shared by its g rails, within PCIe.
      const int g = n / nodes;
      const double per_gpu = std::min(cluster.gpu->pcie_per_dir.value,
                                      cluster.nics_per_node * cluster.inter_bandwidth.bytes_per_s / g);
      seconds = two_level_all_reduce_time(Bytes{size}, g, nodes, cluster.intra_bandwidth, cluster.intra_latency,
                                          Bandwidth{per_gpu}, cluster.inter_latency).seconds();
    } else if (n > 1) {
      // The bytes the flow model puts on the wire per step (chunk / efficiency, whole bytes).
      const int64_t chunk = size / n;
      const auto wire = static_cast<int64_t>(std::ceil(static_cast<double>(chunk) / efficiency(size)));
      seconds = alpha_beta_time(op, Bytes{size - chunk * n + wire * n}, n, bw, alpha).seconds();
    }
    const double algbw = seconds > 0 ? static_cast<double>(size) / seconds / 1e9 : 0;
    const double busbw = algbw * busbw_factor(op, n);
    const std::string nccl = choice ? describe(*choice) : "-";
    char buf[256];
    if (text) {
      std::snprintf(buf, sizeof buf, "%14lld  %12lld   float     %s      -1  %11.2f  %11.2f  %11.2f  %11s\n",
                    static_cast<long long>(size), static_cast<long long>(size / kFloatBytes),
                    op == CollectiveOp::AllReduce || op == CollectiveOp::ReduceScatter ? "sum " : "none",
                    seconds * 1e6, algbw, busbw, nccl.c_str());
    } else {
      std::snprintf(buf, sizeof buf, "%s,%d,%s,%s,%lld,%lld,%.4f,%.4f,%.4f,%s\n", to_string(op), n, opt.algo.c_str(),
                    opt.mode.c_str(), static_cast<long long>(size), static_cast<long long>(size / kFloatBytes),
                    seconds * 1e6, algbw, busbw, nccl.c_str());
    }
    out << buf;
  }
}

}  // namespace bubblesim::sim
