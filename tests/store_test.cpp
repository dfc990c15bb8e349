// The SQLite store: schema and migrations, refusals, transactional runs, queries.
#include <catch2/catch.hpp>

#include <sqlite3.h>
#include <unistd.h>

#include <filesystem>

#include "sim/core/error.hpp"
#include "sim/exec/executor.hpp"
#include "sim/model/cost_model.hpp"
#include "sim/store/store.hpp"

using namespace bubblesim;
using namespace bubblesim::sim;
namespace fs = std::filesystem;

namespace {

fs::path fresh(const std::string& name) {
  const fs::path p = fs::temp_directory_path() / ("bubblesim_" + std::to_string(::getpid()) + "_" + name);
  for (const char* suffix : {"", "-wal", "-shm"}) fs::remove(p.string() + suffix);
  return p;
}

int64_t pragma(const fs::path& db, const char* sql) {
  sqlite3* h = nullptr;
  sqlite3_open(db.c_str(), &h);
  sqlite3_stmt* s = nullptr;
  sqlite3_prepare_v2(h, sql, -1, &s, nullptr);
  sqlite3_step(s);
  const int64_t v = sqlite3_column_int64(s, 0);
  sqlite3_finalize(s);
  sqlite3_close(h);
  return v;
}

void exec(const fs::path& db, const char* sql) {
  sqlite3* h = nullptr;
  sqlite3_open(db.c_str(), &h);
  sqlite3_exec(h, sql, nullptr, nullptr, nullptr);
  sqlite3_close(h);
}

/// Two devices, a compute op each and a send/recv between them.
Program small_program() {
  Program p;
  const DeviceId a = p.add_device("a");
  const DeviceId b = p.add_device("b");
  const StreamId sa = p.add_stream(a, StreamKind::Compute, "compute");
  const StreamId sb = p.add_stream(b, StreamKind::Compute, "compute");
  Op f;
  f.stream = sa;
  f.duration = Time::from_seconds(1e-3);
  f.label.phase = Phase::F;
  f.label.microbatch = 0;
  const OpId first = p.add_op(f);
  f.stream = sb;
  const OpId second = p.add_op(f);
  p.add_dep(second, first);
  p.finalize();
  return p;
}

}  // namespace

TEST_CASE("a new database gets the schema, WAL and its version", "[store]") {
  const fs::path db = fresh("new.db");
  { Store s(db.string()); }
  CHECK(pragma(db, "PRAGMA user_version") == Store::kSchemaVersion);
  CHECK(pragma(db, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN "
                   "('runs', 'devices', 'ops', 'op_timings', 'bench_samples', 'calibration_profiles', 'comparisons')") == 7);
  sqlite3* h = nullptr;
  sqlite3_open(db.c_str(), &h);
  sqlite3_stmt* s = nullptr;
  sqlite3_prepare_v2(h, "PRAGMA journal_mode", -1, &s, nullptr);
  sqlite3_step(s);
  CHECK(std::string(reinterpret_cast<const char*>(sqlite3_column_text(s, 0))) == "wal");
  sqlite3_finalize(s);
  sqlite3_close(h);
  // Opening again migrates nothing and keeps what is there.
  { Store s(db.string()); CHECK(s.runs().empty()); }
}

TEST_CASE("the store refuses newer schemas and foreign databases", "[store]") {
  const fs::path newer = fresh("newer.db");
  { Store s(newer.string()); }
  exec(newer, "PRAGMA user_version = 99");
  CHECK_THROWS_WITH(Store(newer.string()), Catch::Contains("schema version 99 is newer"));
  const fs::path foreign = fresh("foreign.db");
  exec(foreign, "CREATE TABLE t(x)");
  CHECK_THROWS_WITH(Store(foreign.string()), Catch::Contains("not a bubblesim database"));
  CHECK_THROWS_AS(Store("/nonexistent-dir/x.db"), InputError);
}

TEST_CASE("a run is incomplete until finished, and keeps its ops and timeline", "[store]") {
  const fs::path db = fresh("runs.db");
  Store s(db.string());
  RunInfo info;
  info.scenario_name = "two devices";
  info.scenario_text = "pipeline_only: {}";
  const int64_t id = s.begin_run(info);
  REQUIRE(s.runs().size() == 1);
  CHECK(s.run(id).status == "incomplete");  // what a killed run leaves
  const Program p = small_program();
  const Trace t = simulate(p, GivenTimes{});
  s.store_trace(id, p, t, "predicted");
  s.finish_run(id, "complete", R"({"iteration_time_s": 0.002})");
  const RunRow r = s.run(id);
  CHECK(r.status == "complete");
  CHECK(r.ops == 2);
  CHECK(r.iteration_time == Approx(0.002));
  CHECK(r.time_unit == "s");
  CHECK(r.scenario_hash == scenario_hash("pipeline_only: {}"));
  const auto ops = s.ops(id);
  REQUIRE(ops.size() == 2);
  CHECK(ops[1].device == 1);
  CHECK(ops[1].phase == "F");
  CHECK(ops[1].start_s == Approx(0.001));
  CHECK(ops[1].end_s == Approx(0.002));
  CHECK(s.device_names(id) == std::vector<std::string>{"a", "b"});
  CHECK_THROWS_WITH(s.run(id + 1), Catch::Contains("no run"));
  // Deleting a run takes its ops and timings with it (foreign keys on).
  exec(db, "PRAGMA foreign_keys = ON; DELETE FROM runs");
  CHECK(pragma(db, "SELECT count(*) FROM op_timings") == 0);
}

TEST_CASE("an older database is migrated forward, keeping its runs", "[store]") {
  const fs::path db = fresh("v1.db");
  { Store s(db.string()); s.begin_run(RunInfo{}); }
  // Back to version 1: the ops table without what version 2 added.
  exec(db, "ALTER TABLE ops DROP COLUMN op_class; ALTER TABLE ops DROP COLUMN shape; "
           "ALTER TABLE ops DROP COLUMN causal_fraction; ALTER TABLE ops DROP COLUMN flops; "
           "ALTER TABLE ops DROP COLUMN hbm_bytes; ALTER TABLE runs DROP COLUMN time_unit; "
           "ALTER TABLE runs DROP COLUMN seconds_per_unit; DROP TABLE iterations; DROP INDEX bench_by_class; "
           "PRAGMA user_version = 1");
  REQUIRE(pragma(db, "SELECT count(*) FROM pragma_table_info('ops') WHERE name = 'flops'") == 0);
  Store s(db.string());
  CHECK(pragma(db, "PRAGMA user_version") == Store::kSchemaVersion);
  CHECK(pragma(db, "SELECT count(*) FROM pragma_table_info('ops') WHERE name IN "
                   "('op_class', 'shape', 'causal_fraction', 'flops', 'hbm_bytes')") == 5);
  CHECK(s.runs().size() == 1);
  CHECK(s.runs().front().time_unit == "s");  // version 3's default for older runs
  CHECK(pragma(db, "SELECT count(*) FROM sqlite_master WHERE name = 'iterations'") == 1);  // version 4
}

TEST_CASE("measured iterations, bench samples and comparisons are stored and read back", "[store]") {
  const fs::path db = fresh("v4.db");
  Store s(db.string());
  RunInfo hw;
  hw.kind = "hw";
  const int64_t run = s.begin_run(hw);
  s.store_iteration(run, 0, true, 2.5);
  s.store_iteration(run, 1, false, 2.0);
  const auto its = s.iterations(run);
  REQUIRE(its.size() == 2);
  CHECK(its[0].warmup);
  CHECK(its[1].makespan_s == 2.0);
  RunInfo bench;
  bench.kind = "bench";
  const int64_t b = s.begin_run(bench);
  s.store_bench_sample(b, {0, "p2p", "1024", 1024, 2, 10, 1e-6, 2e-6, 3e-6, 5e8, 5e8});
  // Samples of incomplete bench runs do not calibrate anything.
  CHECK(s.bench_samples().empty());
  s.finish_run(b, "complete", "{}");
  REQUIRE(s.bench_samples().size() == 1);
  CHECK(s.bench_samples({b}).front().median_s == 2e-6);
  CHECK(s.bench_samples({run}).empty());
  CHECK(s.store_comparison(run, b, "", "{\"iteration_error\": 0.01}") == 1);
  CHECK(pragma(db, "SELECT count(*) FROM comparisons WHERE calibration IS NULL") == 1);
}
