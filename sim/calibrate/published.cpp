#include "sim/calibrate/published.hpp"

#include <yaml-cpp/yaml.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "sim/core/error.hpp"
#include "sim/core/units.hpp"

namespace bubblesim::sim {
namespace {

std::string at(const std::string& path, const YAML::Node& n) {
  return n.Mark().is_null() ? path : path + ":" + std::to_string(n.Mark().line + 1);
}

/// Every key of map `n` is one of `known`; InputError naming the first that is not.
void check_keys(const std::string& path, const YAML::Node& n, const std::set<std::string>& known, const char* what) {
  for (const auto& kv : n) {
    const std::string key = kv.first.Scalar();
    if (known.count(key)) continue;
    std::string list;
    for (const std::string& k : known) list += (list.empty() ? "" : ", ") + k;
    throw InputError(at(path, kv.first) + ": unknown key \"" + key + "\" in " + what + " (valid: " + list + ")");
  }
}

std::string text(const std::string& path, const YAML::Node& n, const std::string& key) {
  if (!n.IsScalar()) throw InputError(at(path, n) + ": " + key + " must be a single value");
  return n.Scalar();
}

double positive_number(const std::string& path, const YAML::Node& n, const std::string& key) {
  const std::string s = text(path, n, key);
  const auto v = parse_number(s);
  if (!v || *v <= 0) throw InputError(at(path, n) + ": " + key + " must be a positive number (got \"" + s + "\")");
  return *v;
}

}  // namespace

PublishedManifest load_published(const std::string& path) {
  std::ifstream file(path);
  if (!file) throw InputError("--published: cannot read \"" + path + "\"");
  YAML::Node root;
  try {
    root = YAML::Load(file);
  } catch (const YAML::ParserException& e) {
    throw InputError(path + ":" + std::to_string(e.mark.line + 1) + ": YAML syntax error: " + e.msg);
  }
  if (!root.IsMap()) throw InputError(path + ":1: a published-results manifest is a map (scenario, metric, entries)");
  check_keys(path, root, {"title", "source", "scenario", "metric", "flops_accounting", "entries"}, "the manifest");
  PublishedManifest m;
  m.path = path;
  if (root["title"]) m.title = text(path, root["title"], "title");
  if (!root["scenario"]) throw InputError(path + ":1: missing key \"scenario\" (the scenario file the entries vary)");
  const std::string scenario = text(path, root["scenario"], "scenario");
  m.scenario_path = (std::filesystem::path(path).parent_path() / scenario).lexically_normal().string();
  std::ifstream sc(m.scenario_path);
  if (!sc) throw InputError(at(path, root["scenario"]) + ": cannot read the scenario \"" + m.scenario_path + "\"");
  std::ostringstream sc_text;
  sc_text << sc.rdbuf();
  m.scenario_text = sc_text.str();
  if (root["flops_accounting"]) m.flops_accounting = text(path, root["flops_accounting"], "flops_accounting");
  const std::string metric = root["metric"] ? text(path, root["metric"], "metric") : "";
  const YAML::Node entries = root["entries"];
  if (!entries || !entries.IsSequence() || entries.size() == 0) {
    throw InputError(at(path, entries ? entries : root) + ": \"entries\" must be a non-empty list");
  }
  std::set<std::string> ids;
  for (const YAML::Node& e : entries) {
    if (!e.IsMap()) throw InputError(at(path, e) + ": each entry is a map (id, published, set)");
    check_keys(path, e, {"id", "published", "set", "metric", "source", "note"}, "an entry");
    PublishedEntry entry;
    entry.where = at(path, e);
    if (!e["id"]) throw InputError(entry.where + ": an entry without \"id\"");
    entry.id = text(path, e["id"], "id");
    if (!ids.insert(entry.id).second) throw InputError(at(path, e["id"]) + ": id \"" + entry.id + "\" appears twice");
    if (!e["published"]) throw InputError(entry.where + ": entry " + entry.id + " has no \"published\" value");
    entry.published = positive_number(path, e["published"], "published");
    entry.metric = e["metric"] ? text(path, e["metric"], "metric") : metric;
    if (entry.metric.empty()) {
      throw InputError(entry.where + ": entry " + entry.id + " has no metric (give \"metric\" here or at the top)");
    }
    if (e["source"]) entry.source = text(path, e["source"], "source");
    if (e["note"]) entry.note = text(path, e["note"], "note");
    if (const YAML::Node set = e["set"]) {
      if (!set.IsMap()) throw InputError(at(path, set) + ": \"set\" is a map of scenario keys to values");
      for (const auto& kv : set) {
        std::string value;
        if (kv.second.IsScalar()) {
          value = kv.second.Scalar();
        } else {  // a list or map, passed on in YAML flow syntax as --set takes it
          YAML::Emitter flow;
          flow << YAML::Flow << kv.second;
          value = flow.c_str();
        }
        entry.overrides.push_back(kv.first.Scalar() + "=" + value);
      }
    }
    m.entries.push_back(std::move(entry));
  }
  return m;
}

double report_metric(const nlohmann::json& report, const std::string& metric, const std::string& where) {
  const auto it = report.find(metric);
  if (it != report.end() && it->is_number()) return it->get<double>();
  std::string keys;
  for (const auto& [k, v] : report.items()) {
    if (v.is_number()) keys += (keys.empty() ? "" : ", ") + k;
  }
  throw InputError(where + ": metric \"" + metric + "\" is not a number in the run's report (numeric keys: " + keys +
                   ")");
}

void summarise(PublishedComparison& c) {
  std::vector<double> errors;
  for (const PublishedRow& r : c.rows) errors.push_back(r.error);
  c.errors = summarise_errors(std::move(errors));
}

nlohmann::json to_json(const PublishedComparison& c) {
  nlohmann::json rows = nlohmann::json::array();
  for (const PublishedRow& r : c.rows) {
    rows.push_back({{"id", r.id},
                    {"metric", r.metric},
                    {"published", r.published},
                    {"predicted", r.predicted},
                    {"error", r.error},
                    {"fits", r.fits}});
  }
  return {{"manifest", c.manifest},       {"title", c.title}, {"scenario", c.scenario},
          {"calibration", c.calibration}, {"rows", rows},     {"errors", to_json(c.errors)}};
}

void write_text(std::ostream& out, const PublishedComparison& c) {
  out << "validate " << (c.title.empty() ? c.manifest : c.title) << " (" << c.rows.size() << " entries, scenario "
      << c.scenario << ", calibration " << (c.calibration.empty() ? "none: preset models" : c.calibration) << ")\n";
  size_t width = 2;
  for (const PublishedRow& r : c.rows) width = std::max(width, r.id.size());
  char buf[512];
  std::snprintf(buf, sizeof buf, "%-*s  %-18s %12s %12s %8s  %s\n", static_cast<int>(width), "id", "metric",
                "published", "predicted", "error", "fits");
  out << buf;
  for (const PublishedRow& r : c.rows) {
    std::snprintf(buf, sizeof buf, "%-*s  %-18s %12.5g %12.5g %+7.1f%%  %s\n", static_cast<int>(width), r.id.c_str(),
                  r.metric.c_str(), r.published, r.predicted, 100 * r.error, r.fits ? "yes" : "NO");
    out << buf;
  }
  const ErrorSummary& e = c.errors;
  std::snprintf(buf, sizeof buf, "%zu entries: mean absolute error %.1f%%, median %.1f%%, worst %.1f%%, bias %+.1f%%\n",
                e.count, 100 * e.mean_abs, 100 * e.median_abs, 100 * e.worst, 100 * e.bias);
  out << buf;
}

}  // namespace bubblesim::sim
