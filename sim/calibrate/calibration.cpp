#include "sim/calibrate/calibration.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <ostream>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "sim/core/error.hpp"

namespace bubblesim::sim {
namespace {

constexpr size_t kNeighbours = 4;       // shapes an interpolation draws on
constexpr double kCausalWeight = 2;     // a causal fraction of 0.5 vs 1 counts as one doubling
constexpr double kExact = 1e-12;        // squared distance below which a shape is the measured one

bool is_attention(const std::string& c) { return c == "attention" || c == "attention_grad"; }
bool is_compute(const std::string& c) { return c == "gemm" || is_attention(c) || c == "memory"; }

std::vector<double> numbers(const std::string& text, const std::string& what) {
  std::vector<double> out;
  std::stringstream in(text);
  for (std::string item; std::getline(in, item, ',');) {
    char* end = nullptr;
    const double v = std::strtod(item.c_str(), &end);
    if (end == item.c_str() || !std::isfinite(v) || v < 0) throw InputError(what + ": bad shape \"" + text + "\"");
    out.push_back(v);
  }
  return out;
}

/// Position and work of one op of `op_class` with this shape key.
struct Located {
  std::vector<double> where;
  double work;
};

Located locate(const std::string& op_class, const std::string& shape) {
  const std::vector<double> v = numbers(shape, op_class);
  auto lg = [](double x) { return std::log2(std::max(x, 1.0)); };
  if (op_class == "gemm" && v.size() >= 4) {
    return {{lg(v[0]), lg(v[1]), lg(v[2])}, 2 * v[0] * v[1] * v[2] * std::max(v[3], 1.0)};
  }
  if (is_attention(op_class) && v.size() >= 6) {
    const double pairs = v[1] * v[2] * v[5];
    return {{lg(v[1]), lg(v[2]), lg(v[3] * v[4]), kCausalWeight * v[5]},
            4 * std::max(v[0], 1.0) * v[3] * v[4] * pairs * (op_class == "attention_grad" ? 2.5 : 1.0)};
  }
  if (op_class == "memory" && v.size() == 1) return {{lg(v[0])}, v[0]};
  throw InputError("calibration: shape \"" + shape + "\" does not fit op class \"" + op_class + "\"");
}

double distance2(const std::vector<double>& a, const std::vector<double>& b) {
  double d = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) d += (a[i] - b[i]) * (a[i] - b[i]);
  return d;
}

/// Interpolated time over `points` (skipping index `skip`), or -1 with none to draw on.
double interpolate(const std::vector<ComputePoint>& points, const std::vector<double>& where, double work,
                   size_t skip = SIZE_MAX) {
  std::vector<std::pair<double, size_t>> near;
  for (size_t i = 0; i < points.size(); ++i) {
    if (i != skip && points[i].seconds > 0) near.emplace_back(distance2(points[i].where, where), i);
  }
  if (near.empty()) return -1;
  std::sort(near.begin(), near.end());
  if (near.front().first < kExact) {
    const ComputePoint& p = points[near.front().second];
    return p.seconds * work / p.work;
  }
  double weight = 0, log_rate = 0;
  for (size_t k = 0; k < near.size() && k < kNeighbours; ++k) {
    const ComputePoint& p = points[near[k].second];
    const double w = 1 / near[k].first;
    weight += w;
    log_rate += w * std::log(p.work / p.seconds);
  }
  return work / std::exp(log_rate / weight);
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

LinkFit fit_link(const std::vector<std::pair<int64_t, double>>& points) {
  // Minimise sum ((alpha + gamma s - t) / t)^2: relative error, so small and large messages count alike.
  double aa = 0, ab = 0, bb = 0, a1 = 0, b1 = 0;
  for (const auto& [s, t] : points) {
    const double a = 1 / t, b = static_cast<double>(s) / t;
    aa += a * a;
    ab += a * b;
    bb += b * b;
    a1 += a;
    b1 += b;
  }
  const double det = aa * bb - ab * ab;
  double alpha = det != 0 ? (a1 * bb - b1 * ab) / det : 0;
  double gamma = det != 0 ? (aa * b1 - ab * a1) / det : 0;
  if (alpha < 0 || det == 0) {
    alpha = 0;
    gamma = b1 / bb;
  }
  if (gamma <= 0) throw InputError("calibration: the p2p samples do not grow with size; cannot fit a bandwidth");
  LinkFit f{alpha, 1 / gamma, {}};
  for (const auto& [s, t] : points) f.residuals.push_back({s, t, alpha + gamma * static_cast<double>(s)});
  return f;
}

void fill_loo(std::vector<ComputePoint>& points) {
  for (size_t i = 0; i < points.size(); ++i) points[i].loo_seconds = interpolate(points, points[i].where, points[i].work, i);
}

std::string join(const std::vector<int64_t>& v) {
  std::string s;
  for (int64_t x : v) s += (s.empty() ? "" : ",") + std::to_string(x);
  return s;
}

}  // namespace

std::string shape_key(const OpWork& w) {
  const std::string cls = w.op_class;
  const auto& s = w.shape;
  char buf[160];
  if (cls == "gemm") {
    std::snprintf(buf, sizeof buf, "%lld,%lld,%lld,%lld", static_cast<long long>(s[0]), static_cast<long long>(s[1]),
                  static_cast<long long>(s[2]), static_cast<long long>(std::max<int64_t>(s[3], 1)));
  } else if (is_attention(cls)) {
    std::snprintf(buf, sizeof buf, "%lld,%lld,%lld,%lld,%lld,%.6g", static_cast<long long>(s[0]),
                  static_cast<long long>(s[1]), static_cast<long long>(s[2]), static_cast<long long>(s[3]),
                  static_cast<long long>(s[4]), w.causal_fraction);
  } else {
    std::snprintf(buf, sizeof buf, "%.0f", w.bytes);
  }
  return buf;
}

double CalibrationProfile::predict(const std::string& op_class, const std::vector<double>& where, double work) const {
  const auto it = compute.find(op_class);
  if (it == compute.end() || work <= 0) return -1;
  return interpolate(it->second, where, work);
}

CalibrationProfile fit_profile(const std::string& name, const std::vector<Sample>& samples,
                               const std::vector<int64_t>& source_runs) {
  if (name.empty()) throw InputError("calibrate: --name is empty");
  std::map<std::pair<std::string, std::string>, std::vector<double>> compute;
  std::map<std::string, std::map<int64_t, std::vector<double>>> links;
  for (const Sample& s : samples) {
    if (!(s.seconds > 0)) continue;
    if (is_compute(s.op_class)) {
      compute[{s.op_class, s.shape}].push_back(s.seconds);
    } else if (s.op_class == "p2p" || s.op_class == "p2p_inter") {
      links[s.op_class == "p2p" ? "intra" : "inter"][static_cast<int64_t>(numbers(s.shape, "p2p").at(0))].push_back(s.seconds);
    }
  }
  if (compute.empty() && links.empty()) {
    throw InputError("calibrate: the chosen runs hold no compute or p2p samples (run bubblesim-hw bench first)");
  }
  CalibrationProfile p;
  p.name = name;
  p.source_runs = source_runs;
  for (const auto& [key, times] : compute) {
    const Located at = locate(key.first, key.second);
    p.compute[key.first].push_back({key.second, at.where, at.work, median(times), 0});
  }
  for (auto& [cls, points] : p.compute) fill_loo(points);
  for (const auto& [cls, by_size] : links) {
    std::vector<std::pair<int64_t, double>> points;
    for (const auto& [size, times] : by_size) points.emplace_back(size, median(times));
    if (points.size() < 2) throw InputError("calibrate: the " + cls + " link needs p2p samples of at least 2 sizes");
    p.links[cls] = fit_link(points);
  }
  return p;
}

std::string measurement_setup(const std::string& environment) {
  const nlohmann::json env = nlohmann::json::parse(environment, nullptr, false);
  if (!env.is_object()) return "an unrecorded setup";
  const auto text = [](const nlohmann::json& j, const char* key, const char* otherwise) {
    return j.contains(key) && j[key].is_string() ? j[key].get<std::string>() : std::string(otherwise);
  };
  const std::string backend = text(env, "backend", "host");
  if (env.contains("gpu") && env["gpu"].is_object()) {
    const nlohmann::json& gpu = env["gpu"];
    return backend + " on " + text(gpu, "gpu", "an unnamed GPU") + " (" + text(gpu, "attention_kernel", "cuda-core") +
           " attention)";
  }
  return backend + " on " + text(env, "cpu", "an unnamed CPU");
}

std::string setup_mismatch(Store& store, int64_t run, const CalibrationProfile& profile) {
  const std::string here = measurement_setup(store.environment(run));
  std::set<std::string> calibrated_on;
  for (const int64_t r : profile.source_runs) {
    try {
      calibrated_on.insert(measurement_setup(store.environment(r)));
    } catch (const InputError&) {  // a source run not in this database: nothing to compare
    }
  }
  if (calibrated_on.empty() || calibrated_on.count(here) != 0) return "";
  std::string there;
  for (const std::string& s : calibrated_on) there += (there.empty() ? "" : "; ") + s;
  return "run " + std::to_string(run) + " was measured on " + here + ", but profile \"" + profile.name +
         "\" was calibrated on " + there + ": the prediction is that setup's";
}

std::vector<Sample> samples_from_store(Store& store, const std::vector<int64_t>& runs) {
  std::vector<Sample> out;
  std::vector<int64_t> bench_runs;
  for (int64_t id : runs) {
    const RunRow r = store.run(id);
    if (r.status != "complete") {
      throw InputError("calibrate: run " + std::to_string(id) + " is " + r.status + "; only complete runs calibrate");
    }
    if (r.kind == "bench") {
      bench_runs.push_back(id);
      continue;
    }
    if (r.kind != "hw") throw InputError("calibrate: run " + std::to_string(id) + " is a " + r.kind + " run, not bench or hw");
    std::map<std::pair<std::string, std::string>, std::vector<double>> by_shape;
    for (const Store::OpRow& o : store.ops(id, "measured")) {
      if (o.op_class.empty() || o.end_s <= o.start_s) continue;
      OpWork w;
      w.op_class = o.op_class.c_str();
      const std::vector<double> v = numbers(o.shape, "run " + std::to_string(id));
      for (size_t i = 0; i < v.size() && i < w.shape.size(); ++i) w.shape[i] = static_cast<int64_t>(v[i]);
      w.causal_fraction = o.causal_fraction;
      w.bytes = o.hbm_bytes;
      by_shape[{o.op_class, shape_key(w)}].push_back(o.end_s - o.start_s);
    }
    for (const auto& [key, times] : by_shape) out.push_back({key.first, key.second, median(times)});
  }
  if (runs.empty() || !bench_runs.empty()) {
    for (const BenchSample& b : store.bench_samples(bench_runs)) out.push_back({b.op_class, b.shape, b.median_s});
  }
  return out;
}

ProfileRow CalibrationProfile::to_row() const {
  nlohmann::json params, residuals;
  for (const auto& [cls, points] : compute) {
    for (const ComputePoint& pt : points) {
      params["compute"][cls].push_back({{"shape", pt.shape}, {"seconds", pt.seconds}});
      residuals["compute"][cls].push_back({{"shape", pt.shape},
                                           {"measured_s", pt.seconds},
                                           {"leave_one_out_s", pt.loo_seconds},
                                           {"error", pt.loo_seconds > 0 ? pt.loo_seconds / pt.seconds - 1 : 0}});
    }
  }
  for (const auto& [cls, f] : links) {
    params["links"][cls] = {{"latency_s", f.latency_s}, {"bandwidth_Bps", f.bandwidth}};
    for (const LinkFit::Residual& r : f.residuals) {
      residuals["links"][cls].push_back({{"bytes", r.bytes}, {"measured_s", r.measured_s}, {"fitted_s", r.fitted_s}});
    }
  }
  return {name, "", join(source_runs), params.dump(), residuals.dump()};
}

CalibrationProfile CalibrationProfile::from_row(const ProfileRow& row) {
  CalibrationProfile p;
  p.name = row.name;
  std::stringstream runs(row.source_runs);
  for (std::string id; std::getline(runs, id, ',');) {
    if (!id.empty()) p.source_runs.push_back(std::stoll(id));
  }
  try {
    const nlohmann::json params = nlohmann::json::parse(row.parameters);
    const nlohmann::json residuals = row.residuals.empty() ? nlohmann::json{} : nlohmann::json::parse(row.residuals);
    if (params.contains("compute")) {
      for (const auto& [cls, points] : params["compute"].items()) {
        for (const auto& pt : points) {
          const std::string shape = pt.at("shape").get<std::string>();
          const Located at = locate(cls, shape);
          p.compute[cls].push_back({shape, at.where, at.work, pt.at("seconds").get<double>(), 0});
        }
        fill_loo(p.compute[cls]);
      }
    }
    if (params.contains("links")) {
      for (const auto& [cls, f] : params["links"].items()) {
        LinkFit fit{f.at("latency_s").get<double>(), f.at("bandwidth_Bps").get<double>(), {}};
        if (residuals.contains("links") && residuals["links"].contains(cls)) {
          for (const auto& r : residuals["links"][cls]) {
            fit.residuals.push_back({r.at("bytes").get<int64_t>(), r.at("measured_s").get<double>(),
                                     r.at("fitted_s").get<double>()});
          }
        }
        p.links[cls] = fit;
      }
    }
  } catch (const nlohmann::json::exception& e) {
    throw InputError("calibration profile \"" + row.name + "\": unreadable parameters (" + e.what() + ")");
  }
  return p;
}

Time CalibratedCompute::gemm(const GemmShape& s) const {
  OpWork w{"gemm", {s.m, s.n, s.k, s.batch, 0}, 0, 0, 0};
  const Located at = locate("gemm", shape_key(w));
  const double t = profile_.predict("gemm", at.where, at.work);
  return t < 0 ? fallback_.gemm(s) : Time::from_seconds(t);
}

Time CalibratedCompute::attention(const AttentionShape& s) const {
  const char* cls = s.backward ? "attention_grad" : "attention";
  OpWork w{cls, {s.batch, s.q_len, s.kv_len, s.heads, s.head_dim}, s.causal_fraction, 0, 0};
  const Located at = locate(cls, shape_key(w));
  const double t = profile_.predict(cls, at.where, at.work);
  return t < 0 ? fallback_.attention(s) : Time::from_seconds(t);
}

Time CalibratedCompute::memory_bound(Bytes bytes, MemoryOp kind) const {
  if (bytes.value <= 0) return Time::zero();
  const double b = static_cast<double>(bytes.value);
  const double t = profile_.predict("memory", {std::log2(b)}, b);
  return t < 0 ? fallback_.memory_bound(bytes, kind) : Time::from_seconds(t);
}

void apply_links(const CalibrationProfile& profile, ResolvedCluster& cluster) {
  if (const auto it = profile.links.find("intra"); it != profile.links.end()) {
    cluster.intra_latency = Time::from_seconds(it->second.latency_s);
    cluster.intra_bandwidth = Bandwidth{it->second.bandwidth};
  }
  if (const auto it = profile.links.find("inter"); it != profile.links.end()) {
    cluster.inter_latency = Time::from_seconds(it->second.latency_s);
    cluster.inter_bandwidth = Bandwidth{it->second.bandwidth};
  }
}

void write_profile(std::ostream& out, const CalibrationProfile& p) {
  char buf[256];
  out << "calibration profile " << p.name << " (source runs: " << (p.source_runs.empty() ? "-" : join(p.source_runs))
      << ")\n";
  for (const auto& [cls, points] : p.compute) {
    double sum = 0, worst = 0;
    int n = 0;
    for (const ComputePoint& pt : points) {
      if (pt.loo_seconds <= 0) continue;
      const double e = std::abs(pt.loo_seconds / pt.seconds - 1);
      sum += e;
      worst = std::max(worst, e);
      ++n;
    }
    std::snprintf(buf, sizeof buf, "\n%s: %zu shapes; leave-one-out error mean %.1f%%, worst %.1f%%\n", cls.c_str(),
                  points.size(), n ? 100 * sum / n : 0.0, 100 * worst);
    out << buf;
    std::snprintf(buf, sizeof buf, "  %-34s %12s %12s %14s %8s\n", "shape", "measured ms", "GFLOP/s", "leave-1-out ms", "error");
    out << buf;
    for (const ComputePoint& pt : points) {
      std::snprintf(buf, sizeof buf, "  %-34s %12.4f %12.3f %14.4f %7.1f%%\n", pt.shape.c_str(), pt.seconds * 1e3,
                    pt.work / pt.seconds / 1e9, pt.loo_seconds * 1e3,
                    pt.loo_seconds > 0 ? 100 * (pt.loo_seconds / pt.seconds - 1) : 0.0);
      out << buf;
    }
  }
  for (const auto& [cls, f] : p.links) {
    std::snprintf(buf, sizeof buf, "\nlink %s: latency %.3f us, bandwidth %.3f GB/s\n", cls.c_str(), f.latency_s * 1e6,
                  f.bandwidth / 1e9);
    out << buf;
    std::snprintf(buf, sizeof buf, "  %12s %12s %12s %8s\n", "bytes", "measured us", "fitted us", "error");
    out << buf;
    for (const LinkFit::Residual& r : f.residuals) {
      std::snprintf(buf, sizeof buf, "  %12lld %12.3f %12.3f %7.1f%%\n", static_cast<long long>(r.bytes),
                    r.measured_s * 1e6, r.fitted_s * 1e6, 100 * (r.fitted_s / r.measured_s - 1));
      out << buf;
    }
  }
}

}  // namespace bubblesim::sim
