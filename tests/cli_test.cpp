// The `bubblesim` binary end to end: exit codes and one-line errors for bad input, the JSON
// contract of SCENARIO.md, the trace / SVG / CSV outputs, and every shipped scenario against its
// golden report (BUBBLESIM_UPDATE_GOLDEN=1 rewrites the goldens).
#include <catch2/catch.hpp>

#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

struct Result {
  int code;
  std::string out;
  std::string err;
};

std::string slurp(const fs::path& p) {
  std::ifstream f(p);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

/// A path in the temp folder unique to this test process.
fs::path temp(const std::string& name) {
  return fs::temp_directory_path() / ("bubblesim_" + std::to_string(::getpid()) + "_" + name);
}

Result cli(const std::string& args) {
  const fs::path err = temp("cli_err");
  const std::string cmd = std::string("cd '") + BUBBLESIM_SOURCE_DIR + "' && '" + BUBBLESIM_BINARY + "' " + args +
                          " 2>'" + err.string() + "'";
  FILE* pipe = ::popen(cmd.c_str(), "r");
  REQUIRE(pipe != nullptr);
  std::string out;
  std::array<char, 4096> buf{};
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), pipe)) > 0) out.append(buf.data(), n);
  const int status = ::pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out, slurp(err)};
}

const char* kScenario = "scenarios/teaching/compare/1f1b.yaml";

/// Equal JSON, numbers within a relative 1e-9 (reports go through double arithmetic).
bool near(const json& a, const json& b, std::string& where, const std::string& path = "") {
  if (a.is_number() && b.is_number()) {
    const double x = a.get<double>();
    const double y = b.get<double>();
    if (std::fabs(x - y) <= 1e-9 * std::max({1.0, std::fabs(x), std::fabs(y)})) return true;
  } else if (a.is_object() && b.is_object() && a.size() == b.size()) {
    for (auto it = a.begin(); it != a.end(); ++it) {
      if (!b.contains(it.key()) || !near(it.value(), b[it.key()], where, path + "." + it.key())) return false;
    }
    return true;
  } else if (a.is_array() && b.is_array() && a.size() == b.size()) {
    for (size_t i = 0; i < a.size(); ++i) {
      if (!near(a[i], b[i], where, path + "[" + std::to_string(i) + "]")) return false;
    }
    return true;
  } else if (a == b) {
    return true;
  }
  if (where.empty()) where = (path.empty() ? "(root)" : path) + ": " + a.dump() + " vs golden " + b.dump();
  return false;
}

void expect_input_error(const std::string& args, const std::string& needle) {
  INFO("bubblesim " << args);
  const Result r = cli(args);
  CHECK(r.code == 2);
  CHECK(r.out.empty());
  CHECK_THAT(r.err, Catch::StartsWith("error: ") && Catch::Contains(needle));
  CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);  // one line
}

}  // namespace

TEST_CASE("bad input exits with status 2 and a one-line error naming the field and rule", "[cli]") {
  const std::string s = kScenario;
  expect_input_error("run " + s + " --set parallel.schedule=1f2b", "valid: naive, gpipe");
  expect_input_error("run " + s + " --set pipeline_only.stages=0", "pipeline_only.stages: must be >= 1");
  expect_input_error("run " + s + " --set pipeline_only.times.F=-2", "must be > 0");
  expect_input_error("run " + s + " --set parallel.virtual_stages=2", "virtual_stages must be 1");
  expect_input_error("run " + s + " --set pipeline_only.partition=[4,4,4,3]", "sums to 15 but layers is 16");
  expect_input_error("run " + s + " --set pipeline_only.stages=200000 --set pipeline_only.layers=200000 "
                     "--set pipeline_only.microbatches=900000", "too large");
  expect_input_error("run " + s + " --set pipeline_only.stages=2000000000", "at most 1000000 stages");
  expect_input_error("run " + s + " --set pipeline_only.times.F=1e12", "beyond the simulator's clock");
  expect_input_error("run " + s + " --set typo.key=1", "unknown key");
  expect_input_error("run no/such/file.yaml", "cannot open scenario file");
  expect_input_error("run " + s + " --format xml", "unknown format");
  expect_input_error("frobnicate", "unknown command");
}

TEST_CASE("an unknown key in a file is reported with file:line", "[cli]") {
  const fs::path f = temp("typo.yaml");
  std::ofstream(f) << "pipeline_only:\n  stages: 2\n  microbatches: 2\n  times: {F: 1, B: 2}\n  latency: 1\n";
  expect_input_error("run " + f.string(), f.string() + ":5: pipeline_only.latency: unknown key");
}

TEST_CASE("sequence-parallel cluster scenarios run and report their waits", "[cli]") {
  const Result r = cli("run scenarios/cluster/usp-llama3-8b-2x8-a800-208k.yaml --format json");
  REQUIRE(r.code == 0);
  const json j = json::parse(r.out);
  REQUIRE(j["devices"].size() == 2);  // one per ring rank
  for (const json& d : j["devices"]) {
    const json& ib = d["idle_breakdown"];
    CHECK(ib["sp_wait"].get<double>() > 0);
    const double attributed = ib["pipeline_bubble"].get<double>() + ib["p2p_wait"].get<double>() +
                              ib["collective_wait"].get<double>() + ib["imbalance"].get<double>() +
                              ib["sp_wait"].get<double>();
    CHECK(attributed == Approx(d["idle"].get<double>()).epsilon(1e-6));
  }
  CHECK_THAT(j["notes"].dump(), Catch::Contains("ring groups cross nodes"));
  expect_input_error("run scenarios/cluster/usp-llama3-8b-2x8-a800-208k.yaml --set parallel.ring=4",
                     "= 32 but the cluster has 2 x 8 = 16 GPUs");
}

TEST_CASE("bubblesim presets lists every GPU and model with sources", "[cli]") {
  const Result r = cli("presets");
  REQUIRE(r.code == 0);
  for (const char* id : {"a100-sxm4-80gb", "a800-sxm4-80gb", "h100-sxm5-80gb", "h800-sxm5-80gb", "h200-sxm-141gb",
                         "l20-pcie-48gb", "llama2-7b", "llama2-13b", "llama3-8b", "llama3-70b", "gpt3-175b"}) {
    CHECK_THAT(r.out, Catch::Contains(id));
  }
  CHECK_THAT(r.out, Catch::Contains("[A100ds]") && Catch::Contains("[ncclTopo]"));
}

TEST_CASE("--format json prints exactly one object with the v1 keys", "[cli]") {
  const Result r = cli(std::string("run ") + kScenario + " --format json");
  REQUIRE(r.code == 0);
  const json j = json::parse(r.out);  // throws if anything but one JSON value is printed
  for (const char* key : {"scenario", "iteration_time_s", "tokens_per_s", "tflops_per_gpu", "mfu", "idle_fraction",
                          "bubble_fraction", "peak_memory_bytes", "devices"}) {
    CHECK(j.contains(key));
  }
  REQUIRE(j["devices"].size() == 4);
  for (const json& d : j["devices"]) {
    for (const char* key : {"device", "busy", "idle", "span", "idle_breakdown", "peak_memory_bytes"}) CHECK(d.contains(key));
    for (const char* key : {"pipeline_bubble", "p2p_wait", "collective_wait", "imbalance"}) {
      CHECK(d["idle_breakdown"].contains(key));
    }
    // The idle time is fully attributed to its causes.
    const json& ib = d["idle_breakdown"];
    CHECK(ib["pipeline_bubble"].get<double>() + ib["p2p_wait"].get<double>() + ib["collective_wait"].get<double>() +
              ib["imbalance"].get<double>() ==
          Approx(d["idle"].get<double>()));
  }
  CHECK(j["iteration_time_s"] == 132.0);  // (m + p - 1)(F + B) with 4 layers per stage: 11 * 12
  CHECK(j["bubble_fraction"].get<double>() == Approx(3.0 / 11));
  CHECK(j["closed_form"]["fraction"].get<double>() == Approx(3.0 / 11));
}

TEST_CASE("the text report has the device table, the formulas and an ASCII Gantt for small runs", "[cli][report]") {
  const Result r = cli(std::string("run ") + kScenario);
  REQUIRE(r.code == 0);
  CHECK_THAT(r.out, Catch::Contains("closed form (p-1)/(m+p-1) = 0.272727"));
  CHECK_THAT(r.out, Catch::Contains("   0 |F0"));
  CHECK_THAT(r.out, Catch::Contains("idle"));
  const Result big = cli(std::string("run ") + kScenario + " --set pipeline_only.stages=17 --set pipeline_only.layers=17");
  REQUIRE(big.code == 0);
  CHECK_THAT(big.out, !Catch::Contains("   0 |F0"));
}

TEST_CASE("--trace writes Chrome trace JSON with one event per op and named threads", "[cli][report]") {
  const fs::path f = temp("trace.json");
  REQUIRE(cli(std::string("run ") + kScenario + " --format json --trace " + f.string()).code == 0);
  const json t = json::parse(slurp(f));
  size_t complete = 0;
  size_t threads = 0;
  for (const json& e : t["traceEvents"]) {
    if (e["ph"] == "X") {
      ++complete;
      CHECK(e["dur"].get<double>() > 0);
      CHECK(e["args"].contains("microbatch"));
    }
    if (e["ph"] == "M" && e["name"] == "thread_name") ++threads;
  }
  CHECK(complete == 64);
  CHECK(threads == 4);
}

TEST_CASE("--gantt writes an SVG with a bar per op and the time axis", "[cli][report]") {
  const fs::path f = temp("gantt.svg");
  REQUIRE(cli(std::string("run ") + "scenarios/teaching/compare/dualpipe.yaml --format csv --gantt " + f.string()).code == 0);
  const std::string svg = slurp(f);
  CHECK_THAT(svg, Catch::StartsWith("<svg") && Catch::EndsWith("</svg>\n"));
  CHECK_THAT(svg, Catch::Contains("time (units)") && Catch::Contains("url(#idle)") && Catch::Contains("F&amp;B"));
  size_t bars = 0;
  for (size_t pos = 0; (pos = svg.find("<title>", pos)) != std::string::npos; ++pos) ++bars;
  CHECK(bars > 40);
}

TEST_CASE("--gantt on a cluster run draws every stream, communication by the parallelism it serves", "[cli][report]") {
  const fs::path f = temp("cluster_gantt.svg");
  REQUIRE(cli("run validation/sequence_parallel/attention.yaml --set parallel.ring=4 --set parallel.ulysses=2 "
              "--set training.scope=attention-forward-backward --format json --gantt " + f.string()).code == 0);
  const std::string svg = slurp(f);
  CHECK_THAT(svg, Catch::StartsWith("<svg") && Catch::EndsWith("</svg>\n"));
  // Four ring ranks, each with a compute row and a ring row; the Ulysses all-to-alls and ring
  // blocks in their own colours.
  CHECK_THAT(svg, Catch::Contains(">stage 0 ring 3 compute<") && Catch::Contains(">stage 0 ring 3 ring<"));
  CHECK_THAT(svg, Catch::Contains("#eeca3b") && Catch::Contains("#9467bd") && Catch::Contains("ring K/V"));
  CHECK_THAT(svg, Catch::Contains("time (s)"));
  // Too many ops for an SVG: refused before anything is written to stdout.
  expect_input_error("run scenarios/bench/usp-llama3-70b-1024xh100.yaml --set model.layers=32 --set parallel.pp=4 "
                     "--set cluster.nodes=32 --set training.global_batch_size=4 --gantt " + f.string(),
                     "too many for an SVG");
}

TEST_CASE("two processes simulating the same scenario write identical traces", "[cli][determinism]") {
  const fs::path a = temp("det_a.json");
  const fs::path b = temp("det_b.json");
  const std::string s = "run scenarios/teaching/compare/dualpipe-v.yaml --set pipeline_only.p2p_latency=0.25 --format csv";
  REQUIRE(cli(s + " --trace " + a.string()).code == 0);
  REQUIRE(cli(s + " --trace " + b.string()).code == 0);
  CHECK(slurp(a) == slurp(b));
  CHECK(slurp(a).size() > 1000);
}

TEST_CASE("a bad output path fails before anything is printed", "[cli]") {
  const Result r = cli(std::string("run ") + kScenario + " --trace /no/such/dir/t.json");
  CHECK(r.code == 2);
  CHECK(r.out.empty());
  CHECK_THAT(r.err, Catch::Contains("--trace: cannot write"));
}

TEST_CASE("a scenario name with a comma is quoted in CSV", "[cli][report]") {
  const Result r = cli(std::string("run ") + kScenario + " --format csv --set 'name=a, \"b\"'");
  REQUIRE(r.code == 0);
  CHECK_THAT(r.out, Catch::Contains("\n\"a, \"\"b\"\"\",1f1b,"));
}

TEST_CASE("--format csv prints a header and one row per device", "[cli][report]") {
  const Result r = cli(std::string("run ") + kScenario + " --format csv");
  REQUIRE(r.code == 0);
  CHECK(std::count(r.out.begin(), r.out.end(), '\n') == 5);
  CHECK_THAT(r.out, Catch::StartsWith("scenario,schedule,stages"));
}

TEST_CASE("every shipped scenario runs and matches its golden report", "[cli][golden]") {
  const bool update = std::getenv("BUBBLESIM_UPDATE_GOLDEN") != nullptr;
  const fs::path root = fs::path(BUBBLESIM_SOURCE_DIR) / "scenarios" / "teaching";
  size_t checked = 0;
  for (const auto& entry : fs::recursive_directory_iterator(root)) {
    if (entry.path().extension() != ".yaml") continue;
    const fs::path rel = fs::relative(entry.path(), BUBBLESIM_SOURCE_DIR);
    INFO(rel.string());
    const Result r = cli("run " + rel.string() + " --format json");
    REQUIRE(r.code == 0);
    json j = json::parse(r.out);
    j.erase("events");
    const fs::path golden = fs::path(BUBBLESIM_SOURCE_DIR) / "tests/golden" / rel.parent_path() /
                            (rel.stem().string() + ".json");
    if (update) {
      fs::create_directories(golden.parent_path());
      std::ofstream(golden) << j.dump(2) << "\n";
    }
    REQUIRE(fs::exists(golden));
    std::string where;
    const bool same = near(j, json::parse(slurp(golden)), where);
    INFO(where);
    CHECK(same);
    ++checked;
  }
  CHECK(checked >= 13);
}

TEST_CASE("4.2 million ops (1F1B, p=512, m=4096) simulate within 1 GiB", "[cli][scale]") {
  const Result r = cli("run scenarios/bench/1f1b-p512-m4096.yaml --format csv --timing");
  REQUIRE(r.code == 0);
  CHECK(std::count(r.out.begin(), r.out.end(), '\n') == 513);
  const auto at = r.err.find("peak RSS ");
  REQUIRE(at != std::string::npos);
  const double mib = std::stod(r.err.substr(at + 9));
  INFO(r.err);
  CHECK(mib < 1024.0);
  CHECK_THAT(r.err, Catch::Contains("4194304 ops"));
}

/// The rows of bubblesim collective's CSV output, split at commas, without the header.
std::vector<std::vector<std::string>> csv_rows(const std::string& csv) {
  std::vector<std::vector<std::string>> rows;
  std::istringstream lines(csv);
  std::string line;
  std::getline(lines, line);  // header
  while (std::getline(lines, line)) {
    rows.emplace_back();
    std::istringstream row(line);
    for (std::string cell; std::getline(row, cell, ',');) rows.back().push_back(cell);
  }
  return rows;
}

/// Flow and analytic rows of the same sweep agree: every column but the mode, the times within
/// a millionth or the printed 0.0001 us (the flow model moves whole bytes).
void check_modes_agree(const std::string& flow, const std::string& analytic) {
  const auto f = csv_rows(flow), a = csv_rows(analytic);
  REQUIRE(f.size() == a.size());
  for (size_t i = 0; i < f.size(); ++i) {
    INFO(i);
    REQUIRE(f[i].size() == 10);
    REQUIRE(a[i].size() == 10);
    CHECK(f[i][3] == "flow");
    CHECK(a[i][3] == "analytic");
    for (size_t c : {0, 1, 2, 4, 5, 9}) CHECK(f[i][c] == a[i][c]);
    CHECK(std::stod(f[i][6]) == Approx(std::stod(a[i][6])).epsilon(1e-6).margin(1e-4));
  }
}

TEST_CASE("bubblesim collective prints nccl-tests columns, flow and analytic agreeing inside a node", "[cli][collective]") {
  const std::string base = "collective scenarios/cluster/usp-llama3-8b-2x8-a800-208k.yaml --group intra --sizes 1M:64M "
                           "--format csv --op ";
  for (const char* op : {"all-reduce", "all-gather", "reduce-scatter", "all-to-all", "sendrecv"}) {
    INFO(op);
    const Result flow = cli(base + op);
    const Result analytic = cli(base + op + " --mode analytic");
    REQUIRE(flow.code == 0);
    REQUIRE(analytic.code == 0);
    CHECK(std::count(flow.out.begin(), flow.out.end(), '\n') == 8);  // header + 1M..64M
    check_modes_agree(flow.out, analytic.out);
  }
  const Result big = cli("collective scenarios/cluster/usp-llama3-8b-2x8-a800-208k.yaml --group intra --sizes 1G");
  REQUIRE(big.code == 0);
  CHECK_THAT(big.out, Catch::Contains("busbw(GB/s)") && Catch::Contains("1073741824"));
  // A800 NVLink as NCCL achieves it: 160 GB/s, of which a 1 GB all-reduce reaches 0.974 (the
  // A100 sweep's share at 128 MiB per step) less the Simple protocol's base latency and its 14
  // hop latencies: 155 GB/s busbw.
  CHECK_THAT(big.out, Catch::Contains("  155.12  ring/Simple"));
}

TEST_CASE("bubblesim collective across nodes runs a channel per rail, flow and analytic agreeing", "[cli][collective]") {
  // Selene: 4 DGX A100, 8 HDR NICs each. A 32-GPU all-reduce runs 8 channels, each crossing
  // between nodes on another NIC: busbw near 8 x 25 GB/s (NCCL reaches ~180-190 on DGX A100
  // clusters), not one NIC's 25 GB/s.
  const std::string base = "collective validation/megatron/gpt-selene.yaml --ranks 32 --sizes 256M:1G --format csv --op ";
  for (const char* op : {"all-reduce", "all-gather", "reduce-scatter"}) {
    INFO(op);
    const Result flow = cli(base + op);
    const Result analytic = cli(base + op + " --mode analytic");
    REQUIRE(flow.code == 0);
    REQUIRE(analytic.code == 0);
    check_modes_agree(flow.out, analytic.out);
    const double busbw = std::stod(csv_rows(flow.out).back().at(8));
    CHECK(busbw > 175);
    CHECK(busbw < 200);
  }
  const Result eight = cli("collective validation/megatron/gpt-selene.yaml --ranks 32 --sizes 1G");
  REQUIRE(eight.code == 0);
  CHECK_THAT(eight.out, Catch::Contains("(8 channels, each leaving a node by another GPU)"));
  const Result one = cli("collective validation/megatron/gpt-selene.yaml --ranks 32 --sizes 1G --channels 1");
  REQUIRE(one.code == 0);
  CHECK_THAT(one.out, !Catch::Contains("channels, each leaving"));
  const Result one_csv =
      cli("collective validation/megatron/gpt-selene.yaml --ranks 32 --sizes 1G --channels 1 --format csv");
  REQUIRE(one_csv.code == 0);
  const double single = std::stod(csv_rows(one_csv.out).at(0).at(8));
  CHECK(single < 25);  // one NIC carries every node crossing
  expect_input_error("collective validation/megatron/gpt-selene.yaml --channels -1", "negative");
}

TEST_CASE("bubblesim collective runs NCCL's protocols, its own choice by default or NCCL_PROTO's",
          "[cli][collective]") {
  // 2 x 8 A800: an 8-byte all-reduce under LL pays NCCL's 6.6 us base and the ring's slowest run
  // of 30 hops, 27 NVLink hops at 1.08 us and 3 NIC hops at 0.96 us: 38.6 us, not 30 x 5 us.
  const std::string s = "collective scenarios/cluster/usp-llama3-8b-2x8-a800-208k.yaml --op all-reduce --format csv";
  const Result tiny = cli(s + " --sizes 8");
  REQUIRE(tiny.code == 0);
  const auto row = csv_rows(tiny.out).at(0);
  CHECK(row.at(9) == "ring/LL");
  CHECK(std::stod(row.at(6)) == Approx(38.65).epsilon(1e-3));
  for (const char* mode : {"flow", "analytic"}) {
    const Result simple = cli(s + " --sizes 8 --protocol simple --mode " + mode);
    REQUIRE(simple.code == 0);
    const auto cells = csv_rows(simple.out).at(0);
    CHECK(cells.at(9) == "ring/Simple");
    // 8.4 us base, the longest run of 30 hops: 4 NIC hops of 5 us and 26 NVLink hops of 3.4.
    CHECK(std::stod(cells.at(6)) == Approx(8.4 + 4 * 5 + 26 * 3.4).epsilon(1e-3));
  }
  const Result sweep = cli(s + " --sizes 8:1G");
  REQUIRE(sweep.code == 0);
  std::vector<std::string> seen;
  for (const auto& cells : csv_rows(sweep.out)) {
    if (seen.empty() || seen.back() != cells.at(9)) seen.push_back(cells.at(9));
  }
  CHECK(seen == std::vector<std::string>{"ring/LL", "ring/LL128", "ring/Simple"});
  expect_input_error(s + " --protocol tree", "valid: auto, LL, LL128, Simple");
  expect_input_error("collective scenarios/cluster/usp-llama3-8b-2x8-a800-208k.yaml --op all-to-all --protocol LL",
                     "--protocol applies to ring");
}

TEST_CASE("bubblesim collective runs NVLink SHARP all-reduces on a Hopper node, as NCCL chooses", "[cli][collective]") {
  // A cluster-only scenario is enough for this command.
  const std::string h100 = "collective validation/nccl/dgx-h100.yaml --op all-reduce --format csv --sizes 1K:4G";
  const Result flow = cli(h100);
  const Result analytic = cli(h100 + " --mode analytic");
  REQUIRE(flow.code == 0);
  REQUIRE(analytic.code == 0);
  check_modes_agree(flow.out, analytic.out);
  const auto rows = csv_rows(flow.out);
  CHECK(rows.front().at(9) == "ring/LL");
  CHECK(rows.back().at(9) == "nvls/Simple");
  CHECK(std::stod(rows.back().at(8)) == Approx(480).epsilon(0.01));  // nccl-tests: ~480 GB/s busbw
  const Result ring = cli(h100 + " --algo ring");
  REQUIRE(ring.code == 0);
  CHECK(csv_rows(ring.out).back().at(9) == "ring/Simple");
  CHECK(std::stod(csv_rows(ring.out).back().at(8)) == Approx(370).epsilon(0.01));
  expect_input_error("collective scenarios/cluster/usp-llama3-8b-2x8-a800-208k.yaml --algo nvls", "NVLink SHARP runs");
  expect_input_error("collective validation/nccl/dgx-h100.yaml --algo nvls --protocol LL", "under LL");
  expect_input_error("collective validation/nccl/dgx-h100.yaml --op all-gather --algo nvls", "all-reduce only");
  expect_input_error("collective validation/nccl/dgx-h100.yaml --algo tree", "valid: auto, ring, nvls, two-level");
}

TEST_CASE("bubblesim collective follows NCCL's measured 8 x A100 all-reduce sweep", "[cli][collective]") {
  // hardware.md 2.3: 8 MB 110, 128 MB 177, 512 MB 223, 1 GB ~232 GB/s busbw.
  const Result r = cli("collective scenarios/cluster/llama2-7b-8xa100-tp2-pp2-dp2.yaml --group intra --op all-reduce "
                       "--sizes 8M:1G --format csv");
  REQUIRE(r.code == 0);
  std::map<long long, double> busbw;
  for (const auto& cells : csv_rows(r.out)) busbw[std::stoll(cells[4])] = std::stod(cells[8]);
  CHECK(busbw.at(8 << 20) == Approx(110).epsilon(0.02));
  CHECK(busbw.at(128 << 20) == Approx(177).epsilon(0.02));
  CHECK(busbw.at(512 << 20) == Approx(223).epsilon(0.02));
  CHECK(busbw.at(1 << 30) == Approx(232.5).epsilon(0.02));
}

TEST_CASE("bubblesim collective refuses bad sizes, groups and ranks", "[cli][collective]") {
  const std::string s = "collective scenarios/cluster/usp-llama3-8b-2x8-a800-208k.yaml";
  expect_input_error(s + " --sizes 8X:1G", "not a size");
  expect_input_error(s + " --sizes 1G:8", "below the start");
  expect_input_error(s + " --group rack", "unknown group");
  expect_input_error(s + " --group intra --ranks 9", "9 ranks do not fit");
  expect_input_error(s + " --op broadcast", "valid: all-reduce");
  expect_input_error(s + " --op all-gather --algo two-level", "all-reduce only");
}

TEST_CASE("a cluster scenario runs end to end with the v1 JSON keys", "[cli][cluster]") {
  const Result r = cli("run scenarios/cluster/llama2-7b-8xa100-tp2-pp2-dp2.yaml --format json");
  REQUIRE(r.code == 0);
  const json j = json::parse(r.out);
  for (const char* key : {"scenario", "iteration_time_s", "tokens_per_s", "tflops_per_gpu", "mfu", "idle_fraction",
                          "bubble_fraction", "peak_memory_bytes", "devices", "fits"}) {
    CHECK(j.contains(key));
  }
  CHECK(j["devices"].size() == 2);  // one representative per pipeline stage
  CHECK(j["tokens_per_s"].get<double>() == Approx(16.0 * 4096 / j["iteration_time_s"].get<double>()));
  CHECK(j["mfu"].get<double>() > 0.3);
  CHECK(j["mfu"].get<double>() < 0.8);
  CHECK(j["fits"] == true);
  CHECK(j["critical_path"]["compute"].get<double>() > 0);
  CHECK(j["critical_path"]["compute"].get<double>() <= j["iteration_time_s"].get<double>());
  REQUIRE(!j["busiest_links"].empty());
  CHECK(j["busiest_links"][0]["utilisation"].get<double>() <= 1.0 + 1e-9);
  // GPipe keeps every microbatch's activations: it does not fit, and says by how much.
  const Result g = cli("run scenarios/cluster/llama2-7b-8xa100-tp2-pp2-dp2.yaml --format json "
                       "--set parallel.schedule=gpipe --set training.global_batch_size=64");
  REQUIRE(g.code == 0);
  const json jg = json::parse(g.out);
  CHECK(jg["fits"] == false);
  CHECK(jg["over_memory_bytes"].get<double>() > 0);
}

TEST_CASE("bubblesim sweep runs every combination, explains the invalid ones and ranks the rest", "[cli][sweep]") {
  const std::string usp = "scenarios/cluster/usp-llama3-8b-2x8-a800-208k.yaml";
  const Result r = cli("sweep " + usp + " --vary parallel.ulysses+parallel.ring=1+16,2+8,4+4,8+2,16+1"
                       " --vary parallel.ring_layout=contiguous,zigzag --set parallel.zero=3 --set training.recompute=full"
                       " --format json");
  REQUIRE(r.code == 0);
  const json j = json::parse(r.out);
  REQUIRE(j["points"].size() == 10);
  int ranked = 0, invalid = 0;
  double best = 0;
  for (const json& p : j["points"]) {
    if (!p["valid"].get<bool>()) {
      ++invalid;
      CHECK_THAT(p["reason"].get<std::string>(), Catch::Contains("ulysses 16 must divide"));
      continue;
    }
    if (p["rank"].get<int>() > 0) ++ranked;
    best = std::max(best, p["tokens_per_s"].get<double>());
    // Zigzag beats contiguous for the same split: causal imbalance costs the contiguous layout.
    if (p["values"]["parallel.ring_layout"] == "contiguous") CHECK(p["idle_breakdown"]["imbalance"].get<double>() > 0.2);
  }
  CHECK(invalid == 2);
  CHECK(ranked == 8);
  CHECK(j["best"]["tokens_per_s"].get<double>() == best);
  CHECK(j["best"]["values"]["parallel.ring_layout"] == "zigzag");
  // Text: the best is marked, invalid points say why; CSV: a header and one row per point.
  const Result text = cli("sweep " + usp + " --vary parallel.ulysses+parallel.ring=8+2,16+1 --set parallel.zero=3"
                          " --set training.recompute=full");
  CHECK_THAT(text.out, Catch::Contains("   * 8") && Catch::Contains("invalid: parallel.ulysses") && Catch::Contains("best (*)"));
  const Result csv = cli("sweep " + usp + " --vary parallel.ulysses+parallel.ring=8+2,16+1 --format csv --jobs 1");
  CHECK(std::count(csv.out.begin(), csv.out.end(), '\n') == 3);
  CHECK_THAT(csv.out, Catch::StartsWith("parallel.ulysses,parallel.ring,valid,reason,"));
  // Memory: without ZeRO-3 or recompute nothing fits at 208K, and the sweep says so.
  CHECK_THAT(cli("sweep " + usp + " --vary parallel.ring_layout=zigzag").out, Catch::Contains("no valid configuration fits"));
  expect_input_error("sweep " + usp, "at least one --vary");
  expect_input_error("sweep " + usp + " --vary parallel.ring", "expected key.path=value1,value2");
  expect_input_error("sweep " + usp + " --vary parallel.ulysses+parallel.ring=1+16,2", "gives 1 values for 2 keys");
  expect_input_error("sweep " + usp + " --vary parallel.rnig=1,2", "parallel.rnig");
  expect_input_error(std::string("sweep ") + kScenario + " --vary parallel.schedule=1f1b", "needs a cluster scenario");
}

TEST_CASE("bubblesim explain compares the parallelisms and checks the ring's overlap", "[cli][explain]") {
  const std::string usp = "scenarios/cluster/usp-llama3-8b-2x8-a800-208k.yaml";
  const Result r = cli("explain " + usp + " --format json");
  REQUIRE(r.code == 0);
  const json j = json::parse(r.out);
  CHECK(j["degree"] == 16);
  std::map<std::string, json> rows;
  for (const json& row : j["rows"]) rows[row["method"].get<std::string>()] = row;
  // SP-Ring at N = 16 (5.4 scaled): forward 2 (N - 1) K/V blocks, backward again plus N fp32 dK/dV hops.
  const double block = 212992.0 / 16 * 1024 * 2;  // one K (or V) block, bytes
  CHECK(rows.at("SP-Ring")["activation_comm_bytes"].get<double>() == Approx(15 * 2 * block * 2 + 16 * 2 * block * 2));
  CHECK(rows.count("USP 8x2 (this scenario)") == 1);
  CHECK(rows.at("USP 8x2 (this scenario)")["activation_comm_bytes"].get<double>() <
        rows.at("SP-Ring")["activation_comm_bytes"].get<double>());
  // ZeRO-3 shards every model state; TP + Megatron-SP sends 10 (N - 1) / N b S h e per layer.
  CHECK(rows.at("ZeRO-3")["model_state_bytes"].get<double>() == Approx(rows.at("DP")["model_state_bytes"].get<double>() / 16));
  CHECK(rows.at("TP + Megatron-SP")["activation_comm_bytes"].get<double>() == Approx(10.0 * 15 / 16 * 212992 * 4096 * 2));
  // 104K-token blocks hide their transfer easily; 1K-token blocks over 10 Gb/s NICs do not.
  CHECK(j["ring_overlap"]["holds"] == true);
  CHECK(j["groups_crossing_nodes"] == json::array({"ring"}));
  const json tiny = json::parse(cli("explain " + usp + " --format json --set training.seq_len=16K --set parallel.ulysses=1"
                                    " --set parallel.ring=16 --set 'cluster.inter_node.bandwidth=10 Gb/s'").out);
  CHECK(tiny["ring_overlap"]["holds"] == false);
  CHECK(tiny["ring_overlap"]["block_tokens"] == 1024);
  CHECK_THAT(cli("explain " + usp).out, Catch::Contains("overlap holds") && Catch::Contains("SP-Ulysses"));
  expect_input_error("explain " + usp + " --format csv", "valid: text, json");
}

TEST_CASE("run --db records runs that bubblesim db lists, shows and exports", "[cli][store]") {
  const fs::path db = temp("runs.db");
  for (const char* suffix : {"", "-wal", "-shm"}) fs::remove(db.string() + suffix);
  // Two processes writing at once both succeed.
  const std::string run = "run scenarios/teaching/compare/zb-v.yaml --format csv --db " + db.string();
  const std::string prefix = std::string("cd '") + BUBBLESIM_SOURCE_DIR + "' && '" + BUBBLESIM_BINARY + "' ";
  FILE* first = ::popen((prefix + run + " >/dev/null 2>&1").c_str(), "r");
  FILE* second = ::popen((prefix + run + " --set parallel.schedule=zb-h1 >/dev/null 2>&1").c_str(), "r");
  REQUIRE(first != nullptr);
  REQUIRE(second != nullptr);
  CHECK(WEXITSTATUS(::pclose(first)) == 0);
  CHECK(WEXITSTATUS(::pclose(second)) == 0);
  REQUIRE(cli("run scenarios/cluster/usp-llama3-8b-2x8-a800-208k.yaml --format json --db " + db.string()).code == 0);
  // A run that stops on an error is kept, marked failed.
  expect_input_error("run scenarios/teaching/compare/zb-v.yaml --gantt /nonexistent-dir/x.svg --db " + db.string(),
                     "--gantt: cannot write");
  const Result list = cli("db list --db " + db.string());
  REQUIRE(list.code == 0);
  CHECK(std::count(list.out.begin(), list.out.end(), '\n') == 5);  // header + 4 runs
  CHECK_THAT(list.out, Catch::Contains("complete") && Catch::Contains("failed") &&
                           Catch::Contains("usp-llama3-8b-2x8-a800-208k"));
  const json listed = json::parse(cli("db list --format json --db " + db.string()).out);
  REQUIRE(listed["runs"].size() == 4);
  CHECK(listed["runs"][2]["run"] == 3);
  CHECK(listed["runs"][2]["kind"] == "sim");
  CHECK(listed["runs"][2]["scenario"] == "usp-llama3-8b-2x8-a800-208k");
  CHECK(listed["runs"][3]["status"] == "failed");
  expect_input_error("db list --format csv --db " + db.string(), "text or json");
  const Result show = cli("db show 3 --db " + db.string());
  CHECK_THAT(show.out, Catch::Contains("run 3 (sim, complete)") && Catch::Contains("\"iteration_time_s\""));
  const Result csv = cli("db export 3 --db " + db.string());
  CHECK_THAT(csv.out, Catch::StartsWith("op,device,stream,kind,phase"));
  CHECK_THAT(csv.out, Catch::Contains(",ring,recv,") && Catch::Contains(",ulysses,"));
  // Compute ops carry what they work on: class, shape and FLOPs.
  CHECK_THAT(csv.out, Catch::Contains(",gemm,\"") && Catch::Contains(",attention_grad,\""));
  const json exported = json::parse(cli("db export 3 --format json --db " + db.string()).out);
  CHECK(exported["ops"].size() > 1000);
  CHECK(exported["report"]["scenario"] == "usp-llama3-8b-2x8-a800-208k");
  // Run 1 is either of the two concurrent ones (96 or 192 ops on 4 devices): an event per op
  // plus a name per device.
  // Fixed-time runs report abstract units; the store says what one is.
  CHECK_THAT(list.out, Catch::Contains(" units  compare-zb-v"));
  CHECK_THAT(cli("db show 1 --db " + db.string()).out, Catch::Contains("1 units = 0.001 s"));
  const json trace = json::parse(cli("db export 1 --format trace --db " + db.string()).out);
  CHECK((trace["traceEvents"].size() == 96 + 4 || trace["traceEvents"].size() == 192 + 4));
  expect_input_error("db show 99 --db " + db.string(), "no run 99");
  expect_input_error("db show x --db " + db.string(), "not a run id");
  expect_input_error("db export 1 --format xml --db " + db.string(), "valid: csv, json, trace");
  expect_input_error("db frobnicate --db " + db.string(), "unknown action");
  expect_input_error("db list --db /nonexistent.db", "no database");
}

TEST_CASE("validate --published predicts every entry of a manifest and compares it", "[cli][validate]") {
  const fs::path dir = temp("published");
  fs::create_directories(dir);
  const std::string scenario =
      std::string(BUBBLESIM_SOURCE_DIR) + "/scenarios/cluster/llama2-7b-8xa100-tp2-pp2-dp2.yaml";
  const json base = json::parse(cli("run " + scenario + " --format json").out);
  const double tokens = base["tokens_per_s"].get<double>();
  std::ofstream(dir / "m.yaml") << std::setprecision(17) << "title: small\nscenario: " << scenario
                                << "\nmetric: tokens_per_s\nentries:\n"
                                << "  - {id: base, published: " << tokens / 1.1 << "}\n"
                                << "  - {id: tp4, published: " << tokens << ", set: {parallel.tp: 4, parallel.dp: 1}}\n"
                                << "  - {id: mfu, published: 1, metric: mfu}\n";
  const std::string manifest = (dir / "m.yaml").string();
  const json j = json::parse(cli("validate --published " + manifest + " --format json").out);
  REQUIRE(j["rows"].size() == 3);
  CHECK(j["rows"][0]["predicted"].get<double>() == Approx(tokens));
  CHECK(j["rows"][0]["error"].get<double>() == Approx(0.1));
  // The override reaches the prediction: tp 4 x dp 1 is another configuration.
  CHECK(j["rows"][1]["predicted"].get<double>() != Approx(tokens));
  CHECK(j["rows"][2]["predicted"].get<double>() == Approx(base["mfu"].get<double>()));
  CHECK(j["errors"]["count"] == 3);
  const Result text = cli("validate --published " + manifest);
  CHECK(text.code == 0);
  CHECK_THAT(text.out, Catch::Contains("validate small (3 entries") && Catch::Contains("+10.0%"));
  // --db stores the comparison (no runs: published results); --max-error bounds the mean error.
  const fs::path db = dir / "p.db";
  for (const char* suffix : {"", "-wal", "-shm"}) fs::remove(db.string() + suffix);
  const Result over = cli("validate --published " + manifest + " --max-error 5 --db " + db.string());
  CHECK(over.code == 4);
  CHECK_THAT(over.out, Catch::Contains("stored as comparison 1") && Catch::Contains("FAIL: mean absolute error"));
  std::ofstream(dir / "bad.yaml") << "scenario: " << scenario << "\nmetric: tokens_per_s\nentries:\n"
                                  << "  - {id: odd, published: 1, set: {parallel.tp: 3}}\n";
  expect_input_error("validate --published " + (dir / "bad.yaml").string(), "bad.yaml:4: entry odd: ");
  std::ofstream(dir / "metric.yaml") << "scenario: " << scenario
                                     << "\nmetric: speed\nentries: [{id: a, published: 1}]\n";
  expect_input_error("validate --published " + (dir / "metric.yaml").string(), "metric \"speed\" is not a number");
  std::ofstream(dir / "pipe.yaml")
      << "scenario: " << BUBBLESIM_SOURCE_DIR
      << "/scenarios/teaching/naive-2-devices.yaml\nmetric: m\nentries: [{id: a, published: 1}]\n";
  expect_input_error("validate --published " + (dir / "pipe.yaml").string(), "pipeline_only");
  expect_input_error("validate --published " + manifest + " --run 1", "alternatives");
  expect_input_error("validate", "--run HWRUN or --published MANIFEST");
  // The committed manifests run as they are.
  CHECK(cli("validate --published validation/sequence_parallel/published.yaml --max-error 10").code == 0);
}

TEST_CASE("training.dropout adds the masks' traffic and is checked", "[cli][cluster]") {
  const std::string s = "run scenarios/cluster/llama2-7b-8xa100-tp2-pp2-dp2.yaml --format json";
  const double plain = json::parse(cli(s).out)["iteration_time_s"].get<double>();
  const double dropout = json::parse(cli(s + " --set training.dropout=0.1").out)["iteration_time_s"].get<double>();
  CHECK(dropout > plain);
  CHECK(dropout < 1.05 * plain);  // memory traffic on the residual path: a few per cent at most
  expect_input_error(s + " --set training.dropout=1.5", "training.dropout: a probability from 0 to below 1");
  expect_input_error(s + " --set training.dropout=lots", "training.dropout");
}

TEST_CASE("cluster.elementwise_efficiency sets how fast a layer's memory-bound kernels run", "[cli][cluster]") {
  const std::string s = "run scenarios/cluster/llama2-7b-8xa100-tp2-pp2-dp2.yaml --format json";
  const double preset = json::parse(cli(s).out)["iteration_time_s"].get<double>();
  const double fused = json::parse(cli(s + " --set cluster.elementwise_efficiency=0.85").out)["iteration_time_s"].get<double>();
  const double slow = json::parse(cli(s + " --set cluster.elementwise_efficiency=0.2").out)["iteration_time_s"].get<double>();
  CHECK(fused < preset);
  CHECK(slow > preset);
  expect_input_error(s + " --set cluster.elementwise_efficiency=0", "cluster.elementwise_efficiency: must be in (0, 1]");
  expect_input_error(s + " --set cluster.elementwise_efficiency=1.5", "must be in (0, 1]");
  const Result presets = cli("presets");
  CHECK_THAT(presets.out, Catch::Contains("layer elementwise kernels") && Catch::Contains("Zero Bubble Table 6"));
}
