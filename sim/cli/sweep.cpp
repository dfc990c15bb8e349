#include "sim/cli/sweep.hpp"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "sim/cli/commands.hpp"
#include "sim/core/error.hpp"
#include "sim/scenario/scenario.hpp"

namespace bubblesim::sim {
namespace {

/// One --vary: its keys (several when zipped with '+') and, per value, one entry per key.
struct Axis {
  std::vector<std::string> keys;
  std::vector<std::vector<std::string>> values;
};

std::vector<std::string> split(const std::string& text, char sep) {
  std::vector<std::string> out;
  size_t begin = 0;
  while (begin <= text.size()) {
    const size_t end = std::min(text.find(sep, begin), text.size());
    std::string v = text.substr(begin, end - begin);
    v.erase(0, v.find_first_not_of(' '));
    v.erase(v.find_last_not_of(' ') + 1);
    out.push_back(v);
    begin = end + 1;
  }
  return out;
}

/// "key.path=v1,v2,..." (";" separates instead when present, for values holding commas), or
/// zipped keys "k1+k2=a1+a2,b1+b2" that vary together.
Axis parse_vary(const std::string& text) {
  const size_t eq = text.find('=');
  if (eq == std::string::npos || eq == 0 || eq + 1 == text.size()) {
    throw InputError("--vary \"" + text + "\": expected key.path=value1,value2,... or k1+k2=a1+a2,b1+b2,...");
  }
  Axis a{split(text.substr(0, eq), '+'), {}};
  const std::string list = text.substr(eq + 1);
  for (const std::string& item : split(list, list.find(';') != std::string::npos ? ';' : ',')) {
    std::vector<std::string> v = a.keys.size() > 1 ? split(item, '+') : std::vector<std::string>{item};
    if (v.size() != a.keys.size()) {
      throw InputError("--vary \"" + text + "\": \"" + item + "\" gives " + std::to_string(v.size()) + " values for " +
                       std::to_string(a.keys.size()) + " keys");
    }
    for (const std::string& x : v) {
      if (x.empty()) throw InputError("--vary \"" + text + "\": an empty value");
    }
    a.values.push_back(std::move(v));
  }
  for (const std::string& k : a.keys) {
    if (k.empty()) throw InputError("--vary \"" + text + "\": an empty key");
  }
  return a;
}

double mean_fraction(const ClusterResult& r, Time IdleBreakdown::*part) {
  double sum = 0;
  for (const DeviceMetrics& d : r.metrics.devices) sum += (d.idle_breakdown.*part).seconds();
  return r.iteration_s > 0 ? sum / static_cast<double>(r.metrics.devices.size()) / r.iteration_s : 0;
}

void evaluate(const SweepOptions& opt, SweepPoint& point) {
  std::vector<std::string> overrides = opt.overrides;
  for (const auto& [key, value] : point.values) overrides.push_back(key + "=" + value);
  try {
    const Scenario sc = load_scenario(opt.scenario, overrides);
    if (!sc.cluster) throw InputError(sc.source + ": sweep needs a cluster scenario (cluster, model, training)");
    const ClusterRun run(sc, FlopsAccounting::Megatron);
    const ClusterResult& r = run.result;
    point.valid = true;
    point.iteration_s = r.iteration_s;
    point.tokens_per_s = r.tokens_per_s;
    point.tflops_per_gpu = r.tflops_per_gpu;
    point.mfu = r.mfu;
    point.peak_memory_bytes = *std::max_element(r.peak_memory_bytes.begin(), r.peak_memory_bytes.end());
    point.gpu_memory_bytes = r.gpu_memory_bytes;
    point.fits = point.peak_memory_bytes <= point.gpu_memory_bytes;
    point.idle = r.metrics.idle_fraction;
    point.pipeline_bubble = mean_fraction(r, &IdleBreakdown::pipeline_bubble);
    point.p2p_wait = mean_fraction(r, &IdleBreakdown::p2p_wait);
    point.collective_wait = mean_fraction(r, &IdleBreakdown::collective_wait);
    point.sp_wait = mean_fraction(r, &IdleBreakdown::sp_wait);
    point.imbalance = mean_fraction(r, &IdleBreakdown::imbalance);
  } catch (const InputError& e) {
    point.reason = e.what();
  } catch (const DeadlockError& e) {
    point.reason = e.what();
  }
}

/// Invalid points keep only the rule: the file name and line add nothing in a table.
std::string short_reason(const std::string& reason) {
  const size_t key = reason.find(": ");
  if (key == std::string::npos) return reason;
  const std::string_view first(reason.data(), key);
  return first.find(".yaml") != std::string_view::npos || first.find("--set") != std::string_view::npos
             ? reason.substr(key + 2)
             : reason;
}

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

void write_csv(std::ostream& out, const std::vector<SweepPoint>& points) {
  if (points.empty()) return;
  for (const auto& [key, value] : points.front().values) out << key << ",";
  out << "valid,reason,iteration_time_s,tokens_per_s,tflops_per_gpu,mfu,peak_memory_bytes,fits,idle_fraction,"
         "pipeline_bubble,p2p_wait,collective_wait,sp_wait,imbalance,rank\n";
  for (const SweepPoint& p : points) {
    for (const auto& [key, value] : p.values) out << csv_field(value) << ",";
    char buf[512];
    std::snprintf(buf, sizeof buf, "%.9g,%.9g,%.6g,%.6g,%.0f,%s,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,%d", p.iteration_s,
                  p.tokens_per_s, p.tflops_per_gpu, p.mfu, p.peak_memory_bytes, p.fits ? "true" : "false", p.idle,
                  p.pipeline_bubble, p.p2p_wait, p.collective_wait, p.sp_wait, p.imbalance, p.rank);
    out << (p.valid ? "true" : "false") << "," << csv_field(short_reason(p.reason)) << "," << buf << "\n";
  }
}

nlohmann::json to_json(const std::string& scenario, const std::vector<SweepPoint>& points) {
  nlohmann::json list = nlohmann::json::array();
  nlohmann::json best = nullptr;
  for (const SweepPoint& p : points) {
    nlohmann::json values = nlohmann::json::object();
    for (const auto& [key, value] : p.values) values[key] = value;
    nlohmann::json j = {{"values", values}, {"valid", p.valid}};
    if (!p.valid) {
      j["reason"] = short_reason(p.reason);
    } else {
      j.update({{"iteration_time_s", p.iteration_s}, {"tokens_per_s", p.tokens_per_s},
                {"tflops_per_gpu", p.tflops_per_gpu}, {"mfu", p.mfu}, {"peak_memory_bytes", p.peak_memory_bytes},
                {"fits", p.fits}, {"idle_fraction", p.idle},
                {"idle_breakdown", {{"pipeline_bubble", p.pipeline_bubble}, {"p2p_wait", p.p2p_wait},
                                    {"collective_wait", p.collective_wait}, {"sp_wait", p.sp_wait},
                                    {"imbalance", p.imbalance}}},
                {"rank", p.rank}});
    }
    if (p.rank == 1) best = j;
    list.push_back(std::move(j));
  }
  return {{"scenario", scenario}, {"points", list}, {"best", best}};
}

void write_text(std::ostream& out, const std::string& scenario, const std::vector<SweepPoint>& points) {
  std::vector<const SweepPoint*> order;
  for (const SweepPoint& p : points) order.push_back(&p);
  // Ranked points first (best first), then valid points that do not fit, then invalid ones.
  auto group = [](const SweepPoint* p) { return p->rank > 0 ? 0 : p->valid ? 1 : 2; };
  std::stable_sort(order.begin(), order.end(), [&](const SweepPoint* a, const SweepPoint* b) {
    if (group(a) != group(b)) return group(a) < group(b);
    return group(a) == 0 ? a->rank < b->rank : group(a) == 1 && a->tokens_per_s > b->tokens_per_s;
  });
  size_t valid = 0;
  for (const SweepPoint& p : points) valid += p.valid;
  out << "bubblesim sweep: " << scenario << ": " << points.size() << " configurations, " << valid << " valid\n";
  std::string head = "rank ";
  for (const auto& [key, value] : points.front().values) head += key + "  ";
  out << head << "| iter(s)  tokens/s  TFLOPS   MFU  peak GB  fits   idle  sp_wait  imbal  bubble\n";
  for (const SweepPoint* p : order) {
    const std::string rank = p->rank == 1 ? "*" : p->rank > 0 ? std::to_string(p->rank) : "-";
    char cell[16];
    std::snprintf(cell, sizeof cell, "%4s ", rank.c_str());
    std::string line = cell;
    for (const auto& [key, value] : p->values) {
      std::string cell = value;
      cell.resize(std::max(cell.size(), key.size()), ' ');
      line += cell + "  ";
    }
    if (!p->valid) {
      out << line << "| invalid: " << short_reason(p->reason) << "\n";
      continue;
    }
    char buf[256];
    std::snprintf(buf, sizeof buf, "| %7.3f %9.0f %7.1f %5.3f %8.1f  %-4s %5.1f%% %7.1f%% %5.1f%% %6.1f%%\n",
                  p->iteration_s, p->tokens_per_s, p->tflops_per_gpu, p->mfu, p->peak_memory_bytes / 1e9,
                  p->fits ? "yes" : "NO", 100 * p->idle, 100 * p->sp_wait, 100 * p->imbalance, 100 * p->pipeline_bubble);
    out << line << buf;
  }
  const auto best = std::find_if(points.begin(), points.end(), [](const SweepPoint& p) { return p.rank == 1; });
  if (best == points.end()) {
    out << "no valid configuration fits in memory\n";
    return;
  }
  out << "best (*):";
  for (const auto& [key, value] : best->values) out << " " << key << "=" << value;
  out << ", " << static_cast<long long>(best->tokens_per_s) << " tokens/s\n";
}

}  // namespace

std::vector<SweepPoint> run_sweep(const SweepOptions& opt, std::ostream& progress) {
  std::vector<Axis> axes;
  for (const std::string& v : opt.vary) axes.push_back(parse_vary(v));
  if (axes.empty()) throw InputError("sweep: give at least one --vary key.path=value1,value2,...");
  // Every combination, the first axis varying slowest.
  std::vector<SweepPoint> points(1);
  for (const Axis& a : axes) {
    std::vector<SweepPoint> next;
    for (const SweepPoint& p : points) {
      for (const auto& v : a.values) {
        SweepPoint q = p;
        for (size_t k = 0; k < a.keys.size(); ++k) q.values.emplace_back(a.keys[k], v[k]);
        next.push_back(std::move(q));
      }
    }
    points = std::move(next);
  }
  constexpr size_t kMaxPoints = 100'000;
  if (points.size() > kMaxPoints) {
    throw InputError("sweep: " + std::to_string(points.size()) + " combinations; at most " + std::to_string(kMaxPoints));
  }
  // The first point also checks the file and the keys: a typo fails the whole sweep at once.
  const Scenario first = load_scenario(opt.scenario, [&] {
    std::vector<std::string> o = opt.overrides;
    for (const Axis& a : axes) {
      for (size_t k = 0; k < a.keys.size(); ++k) o.push_back(a.keys[k] + "=" + a.values.front()[k]);
    }
    return o;
  }());
  if (!first.cluster) throw InputError(first.source + ": sweep needs a cluster scenario (cluster, model, training)");
  const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  const size_t workers = std::min(points.size(), static_cast<size_t>(opt.jobs > 0 ? opt.jobs : static_cast<int>(cores)));
  std::atomic<size_t> next{0};
  std::atomic<size_t> done{0};
  std::mutex print;
  const bool show = opt.progress && isatty(STDERR_FILENO);
  auto work = [&] {
    for (size_t i = next++; i < points.size(); i = next++) {
      evaluate(opt, points[i]);
      const size_t finished = ++done;
      if (show) {
        std::lock_guard<std::mutex> lock(print);
        progress << "\rsweep: " << finished << "/" << points.size() << " simulated" << std::flush;
      }
    }
  };
  std::vector<std::thread> pool;
  for (size_t w = 1; w < workers; ++w) pool.emplace_back(work);
  work();
  for (std::thread& t : pool) t.join();
  if (show) progress << "\r" << std::string(40, ' ') << "\r" << std::flush;
  std::vector<SweepPoint*> ranked;
  for (SweepPoint& p : points) {
    if (p.valid && p.fits) ranked.push_back(&p);
  }
  std::stable_sort(ranked.begin(), ranked.end(), [](const SweepPoint* a, const SweepPoint* b) { return a->tokens_per_s > b->tokens_per_s; });
  for (size_t i = 0; i < ranked.size(); ++i) ranked[i]->rank = static_cast<int>(i + 1);
  return points;
}

void run_sweep_command(const SweepOptions& opt, std::ostream& out, std::ostream& err) {
  if (opt.format != "text" && opt.format != "csv" && opt.format != "json") {
    throw InputError("--format: unknown format \"" + opt.format + "\" (valid: text, csv, json)");
  }
  // Output files are opened first, so a bad path fails before the work.
  std::ofstream csv, json;
  if (!opt.csv_path.empty() && !(csv = std::ofstream(opt.csv_path))) throw InputError("--csv: cannot write \"" + opt.csv_path + "\"");
  if (!opt.json_path.empty() && !(json = std::ofstream(opt.json_path))) throw InputError("--json: cannot write \"" + opt.json_path + "\"");
  const std::vector<SweepPoint> points = run_sweep(opt, err);
  if (opt.format == "csv") write_csv(out, points);
  else if (opt.format == "json") out << to_json(opt.scenario, points).dump(2) << "\n";
  else write_text(out, opt.scenario, points);
  if (csv.is_open()) write_csv(csv, points);
  if (json.is_open()) json << to_json(opt.scenario, points).dump(2) << "\n";
  if ((csv.is_open() && !csv.flush()) || (json.is_open() && !json.flush())) throw InputError("sweep: writing an output file failed");
}

}  // namespace bubblesim::sim
