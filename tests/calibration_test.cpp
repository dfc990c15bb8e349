// Calibration profiles: fits from samples, interpolation between measured shapes, link
// latency and bandwidth, the round trip through the store, the calibrated compute model and the
// cluster with calibrated links; validation joins measured and predicted traces op by op.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "sim/calibrate/calibration.hpp"
#include "sim/calibrate/published.hpp"
#include "sim/calibrate/validation.hpp"
#include "sim/cli/calibrate.hpp"
#include "sim/core/error.hpp"
#include "sim/model/compute.hpp"
#include "sim/preset/presets.hpp"
#include "sim/store/store.hpp"

using namespace bubblesim;
using namespace bubblesim::sim;

namespace {

/// A GEMM "machine" whose throughput grows with the smallest dimension, and 2 us + 10 GB/s links.
std::vector<Sample> synthetic() {
  std::vector<Sample> s;
  for (int64_t m : {256, 1024, 4096}) {
    for (int64_t n : {256, 1024, 4096}) {
      for (int64_t k : {256, 1024}) {
        const double rate = 1e10 * std::log2(static_cast<double>(std::min({m, n, k})));
        s.push_back({"gemm", std::to_string(m) + "," + std::to_string(n) + "," + std::to_string(k) + ",1",
                     2.0 * m * n * k / rate});
      }
    }
  }
  for (int64_t bytes = 1024; bytes <= (int64_t{1} << 24); bytes *= 4) {
    s.push_back({"p2p", std::to_string(bytes), 2e-6 + static_cast<double>(bytes) / 1e10});
  }
  s.push_back({"memory", "1048576", 1e-4});
  s.push_back({"memory", "4194304", 4e-4});
  return s;
}

}  // namespace

TEST_CASE("a measured shape is predicted exactly and others between their neighbours", "[calibrate]") {
  const CalibrationProfile p = fit_profile("t", synthetic(), {1});
  const RooflineCompute roofline(find_gpu("a100-sxm4-80gb", "gpu"));
  const CalibratedCompute c(p, roofline);
  const double exact = 2.0 * 1024 * 1024 * 1024 / (1e10 * 10);
  CHECK(c.gemm({1024, 1024, 1024}).seconds() == Approx(exact).epsilon(1e-9));
  // Batched: the same shape twice takes twice as long.
  CHECK(c.gemm({1024, 1024, 1024, 2}).seconds() == Approx(2 * exact).epsilon(1e-9));
  // 512^3 lies between the 256 and 1024 rates (8e10 and 1e11 FLOP/s).
  const double t = c.gemm({512, 512, 512}).seconds();
  const double flops = 2.0 * 512 * 512 * 512;
  CHECK(flops / t > 8e10);
  CHECK(flops / t < 1e11);
  // Memory: the measured bandwidth; attention has no table, so the roofline answers.
  CHECK(c.memory_bound(Bytes{1 << 20}).seconds() == Approx(1e-4));
  const AttentionShape a{1, 4096, 4096, 32, 128, 0.5, false};
  CHECK(c.attention(a) == roofline.attention(a));
  // Leave-one-out residuals are kept for every point.
  for (const ComputePoint& pt : p.compute.at("gemm")) CHECK(pt.loo_seconds > 0);
}

TEST_CASE("the link fit recovers latency and bandwidth from message times", "[calibrate]") {
  const CalibrationProfile p = fit_profile("t", synthetic(), {});
  const LinkFit& f = p.links.at("intra");
  CHECK(f.latency_s == Approx(2e-6).epsilon(1e-6));
  CHECK(f.bandwidth == Approx(1e10).epsilon(1e-6));
  CHECK(f.residuals.size() == 8);
  ResolvedCluster cluster;
  apply_links(p, cluster);
  CHECK(cluster.intra_latency.seconds() == Approx(2e-6).epsilon(1e-6));
  CHECK(cluster.intra_bandwidth.bytes_per_s == Approx(1e10).epsilon(1e-6));
}

TEST_CASE("profiles round-trip through the store, and a missing one names those there are", "[calibrate][store]") {
  namespace fs = std::filesystem;
  const fs::path db = fs::temp_directory_path() / ("bubblesim_cal_" + std::to_string(::getpid()) + ".db");
  for (const char* suffix : {"", "-wal", "-shm"}) fs::remove(db.string() + suffix);
  const CalibrationProfile p = fit_profile("host", synthetic(), {3, 4});
  {
    Store store(db.string());
    store.save_profile(p.to_row());
    CHECK(store.profile_names() == std::vector<std::string>{"host"});
    const CalibrationProfile back = CalibrationProfile::from_row(store.profile("host"));
    CHECK(back.source_runs == std::vector<int64_t>{3, 4});
    CHECK(back.compute.at("gemm").size() == p.compute.at("gemm").size());
    CHECK(back.links.at("intra").bandwidth == Approx(p.links.at("intra").bandwidth));
    CHECK(back.predict("gemm", p.compute.at("gemm")[3].where, p.compute.at("gemm")[3].work) ==
          Approx(p.compute.at("gemm")[3].seconds));
    CHECK_THROWS_WITH(store.profile("nope"), Catch::Contains("no profile \"nope\"") && Catch::Contains("it has: host"));
  }
  fs::remove(db);
}

TEST_CASE("a run's measurement setup is its backend and processor, attention kernels included", "[calibrate]") {
  CHECK(measurement_setup(R"({"backend": "cuda", "gpu": {"gpu": "NVIDIA A800-SXM4-80GB",
                                                          "attention_kernel": "tensor-core"}})") ==
        "cuda on NVIDIA A800-SXM4-80GB (tensor-core attention)");
  CHECK(measurement_setup(R"({"backend": "cuda", "gpu": {"gpu": "NVIDIA A800-SXM4-80GB"}})") ==
        "cuda on NVIDIA A800-SXM4-80GB (cuda-core attention)");  // recorded before the kernel was
  CHECK(measurement_setup(R"({"backend": "host", "cpu": "AMD EPYC 7B13", "host": "n1"})") ==
        "host on AMD EPYC 7B13");
  CHECK(measurement_setup(R"({"cpu": "AMD EPYC 7B13", "host": "n2"})") == "host on AMD EPYC 7B13");
  CHECK(measurement_setup("") == "an unrecorded setup");
  CHECK(measurement_setup("not json") == "an unrecorded setup");
}

TEST_CASE("validating a run against a profile from another setup is flagged", "[calibrate][store]") {
  namespace fs = std::filesystem;
  const fs::path db = fs::temp_directory_path() / ("bubblesim_mismatch_" + std::to_string(::getpid()) + ".db");
  for (const char* suffix : {"", "-wal", "-shm"}) fs::remove(db.string() + suffix);
  {
    Store store(db.string());
    const auto add = [&](const char* kind, const char* env) {
      RunInfo info;
      info.kind = kind;
      info.environment = env;
      return store.begin_run(info);
    };
    const char* cuda_cores = R"({"backend": "cuda", "gpu": {"gpu": "NVIDIA H100", "attention_kernel": "cuda-core"}})";
    const int64_t bench = add("bench", cuda_cores), same = add("hw", cuda_cores);
    const int64_t other = add("hw", R"({"backend": "cuda", "gpu": {"gpu": "NVIDIA H100",
                                                         "attention_kernel": "tensor-core"}})");
    CalibrationProfile p = fit_profile("h100", synthetic(), {bench});
    CHECK(setup_mismatch(store, same, p).empty());
    CHECK_THAT(setup_mismatch(store, other, p),
               Catch::Contains("measured on cuda on NVIDIA H100 (tensor-core attention)") &&
                   Catch::Contains("profile \"h100\" was calibrated on cuda on NVIDIA H100 (cuda-core attention)"));
    p.source_runs = {99};  // not in this database: nothing to compare with
    CHECK(setup_mismatch(store, other, p).empty());
  }
  for (const char* suffix : {"", "-wal", "-shm"}) fs::remove(db.string() + suffix);
}

TEST_CASE("calibrate --bench refuses bench runs measured on different setups, naming them", "[calibrate][store]") {
  namespace fs = std::filesystem;
  const fs::path db = fs::temp_directory_path() / ("bubblesim_setups_" + std::to_string(::getpid()) + ".db");
  for (const char* suffix : {"", "-wal", "-shm"}) fs::remove(db.string() + suffix);
  {
    Store store(db.string());
    for (const char* env : {R"({"backend": "cuda", "gpu": {"gpu": "NVIDIA H100", "attention_kernel": "tensor-core"}})",
                            R"({"backend": "cuda", "gpu": {"gpu": "NVIDIA H100", "attention_kernel": "tensor-core"}})",
                            // recorded before the attention kernel was: the CUDA-core one
                            R"({"backend": "cuda", "gpu": {"gpu": "NVIDIA H100"}})"}) {
      RunInfo info;
      info.kind = "bench";
      info.environment = env;
      const int64_t run = store.begin_run(info);
      store.store_bench_sample(run, {0, "p2p", "1024", 1024, 2, 10, 1e-6, 2e-6, 3e-6, 5e8, 5e8});
      store.finish_run(run, "complete", "{}");
    }
  }
  CalibrateOptions o;
  o.db_path = db.string();
  o.name = "mixed";
  o.bench = true;
  std::ostringstream out;
  CHECK_THROWS_WITH(run_calibrate(o, out),
                    Catch::Contains("2 different setups") &&
                        Catch::Contains("runs 1, 2: cuda on NVIDIA H100 (tensor-core attention)") &&
                        Catch::Contains("run 3: cuda on NVIDIA H100 (cuda-core attention)") &&
                        Catch::Contains("--runs IDS"));
  for (const char* suffix : {"", "-wal", "-shm"}) fs::remove(db.string() + suffix);
}

TEST_CASE("fitting refuses what cannot be fitted", "[calibrate]") {
  CHECK_THROWS_WITH(fit_profile("x", {}, {}), Catch::Contains("no compute or p2p samples"));
  CHECK_THROWS_WITH(fit_profile("x", {{"p2p", "1024", 1e-6}}, {}), Catch::Contains("at least 2 sizes"));
  CHECK_THROWS_WITH(fit_profile("", synthetic(), {}), Catch::Contains("--name"));
  CHECK_THROWS_WITH(fit_profile("x", {{"gemm", "12,banana", 1e-3}}, {}), Catch::Contains("bad shape"));
}

TEST_CASE("validation joins the traces op by op and reports the iteration error", "[calibrate]") {
  Program p;
  const DeviceId d = p.add_device("d");
  const StreamId s = p.add_stream(d, StreamKind::Compute, "compute");
  Op op;
  op.stream = s;
  const OpId a = p.add_op(op), b = p.add_op(op);
  p.set_work(a, {"gemm", {8, 8, 8, 1, 0}, 0, 1024, 0});
  p.set_work(b, {"memory", {}, 0, 0, 64});
  p.finalize();
  auto trace = [](double a_end, double b_end) {
    Trace t;
    t.records = {{0, Time::zero(), Time::from_seconds(a_end)}, {1, Time::from_seconds(a_end), Time::from_seconds(b_end)}};
    t.makespan = Time::from_seconds(b_end);
    return t;
  };
  const Validation v = compare_traces(p, trace(1.0, 2.0), trace(1.1, 2.0));
  CHECK(v.iteration_error == Approx(0.0));
  CHECK(v.ops.count == 2);
  CHECK(v.ops.worst == Approx(0.1));
  CHECK(v.by_class.size() == 2);
  CHECK(v.devices.at(0).measured_busy_s == Approx(2.0));
  Trace short_trace;
  CHECK_THROWS_WITH(compare_traces(p, short_trace, trace(1, 2)), Catch::Contains("not the same Program"));
}

namespace {

namespace fs = std::filesystem;

fs::path write_manifest(const std::string& name, const std::string& text) {
  const fs::path dir = fs::temp_directory_path() / ("bubblesim_published_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  std::ofstream(dir / "scenario.yaml") << "name: x\n";
  const fs::path p = dir / name;
  std::ofstream(p) << text;
  return p;
}

void expect_manifest_error(const std::string& text, const std::string& needle) {
  const fs::path p = write_manifest("bad.yaml", text);
  try {
    load_published(p.string());
    FAIL("no error for:\n" << text);
  } catch (const InputError& e) {
    CHECK_THAT(e.what(), Catch::Contains(needle));
  }
}

}  // namespace

TEST_CASE("a published-results manifest loads its entries, overrides and scenario", "[calibrate][published]") {
  const fs::path p = write_manifest("ok.yaml",
                                    "title: T\nscenario: scenario.yaml\nmetric: tflops_per_gpu\n"
                                    "flops_accounting: megatron-sc21\nentries:\n"
                                    "  - id: a\n    published: 137\n    set: {parallel.tp: 2, parallel.partition: [0, 4]}\n"
                                    "  - id: b\n    published: 1.5e2\n    metric: mfu\n    note: n\n");
  const PublishedManifest m = load_published(p.string());
  CHECK(m.title == "T");
  CHECK(m.scenario_text == "name: x\n");
  CHECK(m.scenario_path == (p.parent_path() / "scenario.yaml").string());
  CHECK(m.flops_accounting == "megatron-sc21");
  REQUIRE(m.entries.size() == 2);
  CHECK(m.entries[0].metric == "tflops_per_gpu");
  CHECK(m.entries[0].published == 137);
  CHECK(m.entries[0].overrides == std::vector<std::string>{"parallel.tp=2", "parallel.partition=[0, 4]"});
  CHECK_THAT(m.entries[0].where, Catch::EndsWith("ok.yaml:6"));
  CHECK(m.entries[1].metric == "mfu");
  CHECK(m.entries[1].published == 150);
  CHECK(m.entries[1].note == "n");
}

TEST_CASE("a bad published-results manifest is refused with its line", "[calibrate][published]") {
  const std::string head = "scenario: scenario.yaml\nmetric: m\n";
  expect_manifest_error("metric: m\nentries: [{id: a, published: 1}]\n", "missing key \"scenario\"");
  expect_manifest_error("scenario: nowhere.yaml\nentries: [{id: a, published: 1}]\n", "cannot read the scenario");
  expect_manifest_error(head + "entries: []\n", "non-empty list");
  expect_manifest_error(head + "entry: []\n", ":3: unknown key \"entry\" in the manifest");
  expect_manifest_error(head + "entries:\n  - {id: a, published: 1}\n  - {id: a, published: 2}\n",
                        ":5: id \"a\" appears twice");
  expect_manifest_error(head + "entries:\n  - {id: a, published: -3}\n",
                        "published must be a positive number (got \"-3\")");
  expect_manifest_error(head + "entries:\n  - {id: a, published: 12 TFLOPS}\n", "positive number");
  expect_manifest_error(head + "entries:\n  - {id: a}\n", "entry a has no \"published\" value");
  expect_manifest_error(head + "entries:\n  - {id: a, published: 1, sets: {}}\n", "unknown key \"sets\" in an entry");
  expect_manifest_error("scenario: scenario.yaml\nentries:\n  - {id: a, published: 1}\n", "entry a has no metric");
  expect_manifest_error(head + "entries: [\n", "YAML syntax error");
  CHECK_THROWS_WITH(load_published("/nonexistent/manifest.yaml"), Catch::Contains("cannot read"));
}

TEST_CASE("a report metric is looked up by name, naming the numeric keys when it is not there",
          "[calibrate][published]") {
  const nlohmann::json report{{"tflops_per_gpu", 150.5}, {"mfu", 0.48}, {"scenario", "s"}};
  CHECK(report_metric(report, "mfu", "here") == 0.48);
  CHECK_THROWS_WITH(report_metric(report, "scenario", "m.yaml:4: entry a"),
                    Catch::Contains("m.yaml:4: entry a: metric \"scenario\" is not a number") &&
                        Catch::Contains("mfu, tflops_per_gpu"));
  PublishedComparison c;
  c.rows = {{"a", "m", 100, 110, 0.10, true}, {"b", "m", 100, 80, -0.20, true}};
  summarise(c);
  CHECK(c.errors.count == 2);
  CHECK(c.errors.mean_abs == Approx(0.15));
  CHECK(c.errors.worst == Approx(0.20));
  CHECK(c.errors.bias == Approx(-0.05));
  CHECK(to_json(c)["rows"][1]["predicted"] == 80);
}
