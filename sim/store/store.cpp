#include "sim/store/store.hpp"

#include <sqlite3.h>

#include <chrono>
#include <cstdlib>
#include <cstdio>
#include <ctime>
#include <thread>

#include "sim/core/error.hpp"
#include "sim/core/units.hpp"

namespace bubblesim::sim {
namespace {

constexpr int kBusyTimeoutMs = 30'000;  // another process's transaction: wait, do not fail

const char* kSchemaV1 = R"sql(
CREATE TABLE runs(
  id INTEGER PRIMARY KEY,
  kind TEXT NOT NULL CHECK (kind IN ('sim', 'hw', 'bench')),
  scenario_name TEXT, scenario_text TEXT, scenario_hash TEXT,
  command_line TEXT, environment TEXT,
  status TEXT NOT NULL CHECK (status IN ('incomplete', 'complete', 'failed')),
  started_at TEXT NOT NULL, ended_at TEXT,
  summary TEXT);
CREATE TABLE devices(
  run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  device INTEGER NOT NULL, name TEXT,
  PRIMARY KEY (run_id, device));
CREATE TABLE ops(
  run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  op INTEGER NOT NULL, device INTEGER NOT NULL, stream TEXT, kind TEXT, phase TEXT,
  stage INTEGER, microbatch INTEGER, chunk INTEGER, layer INTEGER, ring_step INTEGER,
  traffic TEXT, bytes INTEGER,
  PRIMARY KEY (run_id, op));
CREATE TABLE op_timings(
  run_id INTEGER NOT NULL, op INTEGER NOT NULL,
  source TEXT NOT NULL CHECK (source IN ('predicted', 'measured')),
  start_s REAL NOT NULL, end_s REAL NOT NULL,
  PRIMARY KEY (run_id, op, source),
  FOREIGN KEY (run_id, op) REFERENCES ops(run_id, op) ON DELETE CASCADE);
CREATE TABLE bench_samples(
  id INTEGER PRIMARY KEY,
  run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  op_class TEXT NOT NULL, shape TEXT NOT NULL, bytes INTEGER, ranks INTEGER,
  iterations INTEGER NOT NULL, min_s REAL, median_s REAL, max_s REAL, algbw REAL, busbw REAL);
CREATE TABLE calibration_profiles(
  name TEXT PRIMARY KEY, created_at TEXT NOT NULL, source_runs TEXT NOT NULL,
  parameters TEXT NOT NULL, residuals TEXT);
CREATE TABLE comparisons(
  id INTEGER PRIMARY KEY,
  measured_run INTEGER REFERENCES runs(id), predicted_run INTEGER REFERENCES runs(id),
  calibration TEXT, created_at TEXT NOT NULL, result TEXT NOT NULL);
CREATE INDEX ops_by_device ON ops(run_id, device);
)sql";

/// Version 2: what each compute op works on (Program::work), for calibration.
const char* kMigrateToV2 = R"sql(
ALTER TABLE ops ADD COLUMN op_class TEXT;
ALTER TABLE ops ADD COLUMN shape TEXT;
ALTER TABLE ops ADD COLUMN causal_fraction REAL;
ALTER TABLE ops ADD COLUMN flops REAL;
ALTER TABLE ops ADD COLUMN hbm_bytes REAL;
)sql";

/// Version 3: the unit of a run's report times; op timings are seconds of the simulation clock.
const char* kMigrateToV3 = R"sql(
ALTER TABLE runs ADD COLUMN time_unit TEXT NOT NULL DEFAULT 's';
ALTER TABLE runs ADD COLUMN seconds_per_unit REAL NOT NULL DEFAULT 1;
)sql";

/// Version 4: every measured iteration of a hardware run as it completes (a run killed later
/// keeps them), and the bench sample's op_class/shape index for calibration.
const char* kMigrateToV4 = R"sql(
CREATE TABLE iterations(
  run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  iteration INTEGER NOT NULL, warmup INTEGER NOT NULL, makespan_s REAL NOT NULL,
  PRIMARY KEY (run_id, iteration));
CREATE INDEX bench_by_class ON bench_samples(op_class);
)sql";

/// How long a write waits for another process's transaction: BUBBLESIM_DB_BUSY_TIMEOUT_MS, else
/// kBusyTimeoutMs.
int busy_timeout_ms() {
  const char* env = std::getenv("BUBBLESIM_DB_BUSY_TIMEOUT_MS");
  if (env == nullptr) return kBusyTimeoutMs;
  const auto v = parse_integer(env);
  if (!v || *v < 0 || *v > 3'600'000) {
    throw InputError(std::string("BUBBLESIM_DB_BUSY_TIMEOUT_MS: \"") + env + "\" is not a time in ms (0 to 3600000)");
  }
  return static_cast<int>(*v);
}

std::string now_utc() {
  const std::time_t t = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

/// Runs `sql`; InputError "<context>: <sqlite's message>" if it fails.
void exec_sql(sqlite3* db, const char* sql, const std::string& context) {
  char* err = nullptr;
  if (sqlite3_exec(db, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    const std::string msg = err ? err : sqlite3_errmsg(db);
    sqlite3_free(err);
    throw InputError(context + ": " + msg);
  }
}

/// A prepared statement, finalized on scope exit.
class Stmt {
 public:
  Stmt(sqlite3* db, const char* sql) : db_(db) {
    if (sqlite3_prepare_v2(db, sql, -1, &s_, nullptr) != SQLITE_OK) {
      throw InternalError(std::string("sqlite: cannot prepare \"") + sql + "\": " + sqlite3_errmsg(db));
    }
  }
  ~Stmt() { sqlite3_finalize(s_); }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;
  Stmt& bind(int i, int64_t v) { return check(sqlite3_bind_int64(s_, i, v)); }
  Stmt& bind(int i, double v) { return check(sqlite3_bind_double(s_, i, v)); }
  Stmt& bind(int i, const std::string& v) {
    return check(sqlite3_bind_text(s_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT));
  }
  Stmt& bind_null(int i) { return check(sqlite3_bind_null(s_, i)); }
  /// One step: true while rows come back.
  bool step() {
    const int rc = sqlite3_step(s_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    throw InputError(std::string("sqlite: ") + sqlite3_errmsg(db_));
  }
  void run() {
    step();
    sqlite3_reset(s_);
    sqlite3_clear_bindings(s_);
  }
  int64_t integer(int col) const { return sqlite3_column_int64(s_, col); }
  double real(int col) const { return sqlite3_column_double(s_, col); }
  std::string text(int col) const {
    const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(s_, col));
    return p ? std::string(p) : std::string();
  }

 private:
  Stmt& check(int rc) {
    if (rc != SQLITE_OK) throw InternalError(std::string("sqlite bind: ") + sqlite3_errmsg(db_));
    return *this;
  }
  sqlite3* db_;
  sqlite3_stmt* s_ = nullptr;
};

/// BEGIN IMMEDIATE ... COMMIT, rolled back if the scope is left by an exception.
class Transaction {
 public:
  explicit Transaction(sqlite3* db) : db_(db) {
    exec_sql(db_, "BEGIN IMMEDIATE",
             std::string("--db \"") + sqlite3_db_filename(db_, "main") + "\": cannot start writing (another process kept "
             "it locked longer than the busy timeout, BUBBLESIM_DB_BUSY_TIMEOUT_MS)");
  }
  ~Transaction() {
    if (!done_) sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
  }
  void commit() {
    exec_sql(db_, "COMMIT", "sqlite: COMMIT");
    done_ = true;
  }

 private:
  sqlite3* db_;
  bool done_ = false;
};

}  // namespace

std::string scenario_hash(const std::string& text) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : text) {
    h ^= c;
    h *= 1099511628211ull;
  }
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

Store::Store(const std::string& path) : path_(path) {
  if (sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
                      nullptr) != SQLITE_OK) {
    const std::string msg = db_ ? sqlite3_errmsg(db_) : "out of memory";
    sqlite3_close(db_);
    db_ = nullptr;
    throw InputError("--db: cannot open \"" + path + "\": " + msg);
  }
  const int busy_ms = busy_timeout_ms();
  sqlite3_busy_timeout(db_, busy_ms);
  try {
    exec("PRAGMA foreign_keys = ON");
    // Switching a new file to WAL needs it to itself; another process doing the same at that
    // moment answers "locked" at once rather than through the busy handler: try again.
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::milliseconds(busy_ms);
    for (;;) {
      const int rc = sqlite3_exec(db_, "PRAGMA journal_mode = WAL", nullptr, nullptr, nullptr);
      if (rc == SQLITE_OK) break;
      if ((rc != SQLITE_BUSY && rc != SQLITE_LOCKED) || std::chrono::steady_clock::now() > give_up) {
        throw InputError("--db \"" + path_ + "\": " + sqlite3_errmsg(db_));
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    migrate();
  } catch (...) {
    sqlite3_close(db_);
    db_ = nullptr;
    throw;
  }
}

Store::~Store() { sqlite3_close(db_); }

void Store::exec(const char* sql) { exec_sql(db_, sql, "--db \"" + path_ + "\""); }

void Store::migrate() {
  Transaction tx(db_);  // IMMEDIATE: two processes creating the schema at once take turns
  Stmt version(db_, "PRAGMA user_version");
  version.step();
  const int64_t v = version.integer(0);
  if (v > kSchemaVersion) {
    throw InputError("--db \"" + path_ + "\": schema version " + std::to_string(v) + " is newer than this bubblesim's (" +
                     std::to_string(kSchemaVersion) + "); use a newer bubblesim or another database");
  }
  if (v == 0) {
    Stmt tables(db_, "SELECT count(*) FROM sqlite_master WHERE type = 'table'");
    tables.step();
    if (tables.integer(0) > 0) {
      throw InputError("--db \"" + path_ + "\": not a bubblesim database (it has tables but no schema version)");
    }
    exec(kSchemaV1);
  }
  // Forward migrations, one step per version; a new file takes them all.
  if (v < 2) exec(kMigrateToV2);
  if (v < 3) exec(kMigrateToV3);
  if (v < 4) exec(kMigrateToV4);
  if (v < kSchemaVersion) exec(("PRAGMA user_version = " + std::to_string(kSchemaVersion)).c_str());
  tx.commit();
}

int64_t Store::begin_run(const RunInfo& info) {
  Transaction tx(db_);
  Stmt insert(db_,
              "INSERT INTO runs(kind, scenario_name, scenario_text, scenario_hash, command_line, environment, status, "
              "started_at, time_unit, seconds_per_unit) VALUES (?, ?, ?, ?, ?, ?, 'incomplete', ?, ?, ?)");
  insert.bind(1, info.kind).bind(2, info.scenario_name).bind(3, info.scenario_text);
  insert.bind(4, scenario_hash(info.scenario_text)).bind(5, info.command_line).bind(6, info.environment);
  insert.bind(7, now_utc()).bind(8, info.time_unit).bind(9, info.seconds_per_unit);
  insert.run();
  const int64_t id = sqlite3_last_insert_rowid(db_);
  tx.commit();
  return id;
}

void Store::store_trace(int64_t run, const Program& p, const Trace& t, const std::string& source, DeviceId only) {
  BUBBLESIM_ASSERT(t.records.size() == p.num_ops(), "store: trace does not match the program");
  Transaction tx(db_);
  Stmt device(db_, "INSERT OR REPLACE INTO devices(run_id, device, name) VALUES (?, ?, ?)");
  for (DeviceId d = 0; d < p.devices().size(); ++d) {
    device.bind(1, run).bind(2, static_cast<int64_t>(d)).bind(3, p.devices()[d].name);
    device.run();
  }
  Stmt op(db_,
          "INSERT OR IGNORE INTO ops(run_id, op, device, stream, kind, phase, stage, microbatch, chunk, layer, ring_step, "
          "traffic, bytes, op_class, shape, causal_fraction, flops, hbm_bytes) "
          "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
  Stmt timing(db_, "INSERT OR REPLACE INTO op_timings(run_id, op, source, start_s, end_s) VALUES (?, ?, ?, ?, ?)");
  for (OpId id = 0; id < p.num_ops(); ++id) {
    const Op& o = p.op(id);
    if (only != kNone && o.device != only) continue;
    const Label& l = o.label;
    op.bind(1, run).bind(2, static_cast<int64_t>(id)).bind(3, static_cast<int64_t>(o.device));
    op.bind(4, p.stream(o.stream).name).bind(5, std::string(to_string(o.kind))).bind(6, std::string(to_string(l.phase)));
    op.bind(7, static_cast<int64_t>(l.stage)).bind(8, static_cast<int64_t>(l.microbatch));
    op.bind(9, static_cast<int64_t>(l.chunk)).bind(10, static_cast<int64_t>(l.layer));
    op.bind(11, static_cast<int64_t>(l.ring_step)).bind(12, std::string(to_string(l.traffic)));
    if (o.group != kNone) {
      op.bind(13, p.groups()[o.group].bytes.value);
    } else {
      op.bind_null(13);
    }
    if (const OpWork* w = p.work(id)) {
      std::string shape;
      for (int64_t x : w->shape) shape += (shape.empty() ? "" : ",") + std::to_string(x);
      op.bind(14, std::string(w->op_class)).bind(15, shape).bind(16, w->causal_fraction);
      op.bind(17, w->flops).bind(18, w->bytes);
    } else {
      for (int c = 14; c <= 18; ++c) op.bind_null(c);
    }
    op.run();
    timing.bind(1, run).bind(2, static_cast<int64_t>(id)).bind(3, source);
    timing.bind(4, t.records[id].start.seconds()).bind(5, t.records[id].end.seconds());
    timing.run();
  }
  tx.commit();
}

void Store::finish_run(int64_t run, const std::string& status, const std::string& summary_json) {
  Transaction tx(db_);
  Stmt update(db_, "UPDATE runs SET status = ?, ended_at = ?, summary = ? WHERE id = ?");
  update.bind(1, status).bind(2, now_utc()).bind(3, summary_json).bind(4, run);
  update.run();
  tx.commit();
}

namespace {

constexpr const char* kRunColumns =
    "SELECT id, kind, scenario_name, scenario_hash, status, started_at, coalesce(ended_at, ''), command_line, "
    "(SELECT count(*) FROM ops WHERE ops.run_id = runs.id), "
    "coalesce(json_extract(summary, '$.iteration_time_s'), 0), time_unit, seconds_per_unit FROM runs ";

RunRow run_row(const Stmt& q) {
  return {q.integer(0), q.text(1), q.text(2), q.text(3), q.text(4), q.text(5), q.text(6), q.text(7),
          q.integer(8), q.real(9), q.text(10), q.real(11)};
}

}  // namespace

std::vector<RunRow> Store::runs() {
  std::vector<RunRow> out;
  Stmt q(db_, (std::string(kRunColumns) + "ORDER BY id").c_str());
  while (q.step()) out.push_back(run_row(q));
  return out;
}

RunRow Store::run(int64_t id) {
  Stmt q(db_, (std::string(kRunColumns) + "WHERE id = ?").c_str());
  q.bind(1, id);
  if (!q.step()) {
    throw InputError("--db \"" + path_ + "\": no run " + std::to_string(id) + " (bubblesim db list shows the runs)");
  }
  return run_row(q);
}

std::string Store::summary(int64_t id) {
  run(id);
  Stmt q(db_, "SELECT coalesce(summary, '') FROM runs WHERE id = ?");
  q.bind(1, id);
  q.step();
  return q.text(0);
}

std::vector<Store::OpRow> Store::ops(int64_t run_id, const std::string& source) {
  run(run_id);
  std::vector<OpRow> out;
  Stmt q(db_,
         "SELECT ops.op, device, stream, kind, phase, stage, microbatch, layer, ring_step, traffic, start_s, end_s, "
         "coalesce(op_class, ''), coalesce(shape, ''), coalesce(flops, 0), coalesce(causal_fraction, 0), "
         "coalesce(hbm_bytes, 0) "
         "FROM ops JOIN op_timings USING (run_id, op) WHERE run_id = ? AND source = ? ORDER BY ops.op");
  q.bind(1, run_id).bind(2, source);
  while (q.step()) {
    out.push_back({q.integer(0), q.integer(1), q.text(2), q.text(3), q.text(4), q.integer(5), q.integer(6),
                   q.integer(7), q.integer(8), q.text(9), q.real(10), q.real(11), q.text(12), q.text(13), q.real(14),
                   q.real(15), q.real(16)});
  }
  return out;
}

std::vector<std::string> Store::device_names(int64_t run_id) {
  std::vector<std::string> out;
  Stmt q(db_, "SELECT name FROM devices WHERE run_id = ? ORDER BY device");
  q.bind(1, run_id);
  while (q.step()) out.push_back(q.text(0));
  return out;
}

void Store::store_iteration(int64_t run, int64_t iteration, bool warmup, double makespan_s) {
  Transaction tx(db_);
  Stmt insert(db_, "INSERT OR REPLACE INTO iterations(run_id, iteration, warmup, makespan_s) VALUES (?, ?, ?, ?)");
  insert.bind(1, run).bind(2, iteration).bind(3, static_cast<int64_t>(warmup ? 1 : 0)).bind(4, makespan_s);
  insert.run();
  tx.commit();
}

std::vector<Store::IterationRow> Store::iterations(int64_t run_id) {
  run(run_id);
  std::vector<IterationRow> out;
  Stmt q(db_, "SELECT iteration, warmup, makespan_s FROM iterations WHERE run_id = ? ORDER BY iteration");
  q.bind(1, run_id);
  while (q.step()) out.push_back({q.integer(0), q.integer(1) != 0, q.real(2)});
  return out;
}

void Store::store_bench_sample(int64_t run, const BenchSample& b) {
  Transaction tx(db_);
  Stmt insert(db_,
              "INSERT INTO bench_samples(run_id, op_class, shape, bytes, ranks, iterations, min_s, median_s, max_s, "
              "algbw, busbw) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
  insert.bind(1, run).bind(2, b.op_class).bind(3, b.shape).bind(4, b.bytes).bind(5, b.ranks);
  insert.bind(6, b.iterations).bind(7, b.min_s).bind(8, b.median_s).bind(9, b.max_s);
  insert.bind(10, b.algbw).bind(11, b.busbw);
  insert.run();
  tx.commit();
}

std::vector<BenchSample> Store::bench_samples(const std::vector<int64_t>& runs_wanted) {
  std::vector<BenchSample> out;
  std::string sql =
      "SELECT run_id, op_class, shape, coalesce(bytes, 0), coalesce(ranks, 1), iterations, min_s, median_s, max_s, "
      "coalesce(algbw, 0), coalesce(busbw, 0) FROM bench_samples JOIN runs ON runs.id = run_id "
      "WHERE runs.status = 'complete'";
  if (!runs_wanted.empty()) {
    sql += " AND run_id IN (";
    for (size_t i = 0; i < runs_wanted.size(); ++i) sql += (i ? "," : "") + std::to_string(runs_wanted[i]);
    sql += ")";
  }
  sql += " ORDER BY bench_samples.id";
  Stmt q(db_, sql.c_str());
  while (q.step()) {
    out.push_back({q.integer(0), q.text(1), q.text(2), q.integer(3), q.integer(4), q.integer(5), q.real(6), q.real(7),
                   q.real(8), q.real(9), q.real(10)});
  }
  return out;
}

void Store::save_profile(const ProfileRow& p) {
  Transaction tx(db_);
  Stmt insert(db_,
              "INSERT OR REPLACE INTO calibration_profiles(name, created_at, source_runs, parameters, residuals) "
              "VALUES (?, ?, ?, ?, ?)");
  insert.bind(1, p.name).bind(2, now_utc()).bind(3, p.source_runs).bind(4, p.parameters).bind(5, p.residuals);
  insert.run();
  tx.commit();
}

ProfileRow Store::profile(const std::string& name) {
  Stmt q(db_, "SELECT name, created_at, source_runs, parameters, coalesce(residuals, '') FROM calibration_profiles "
              "WHERE name = ?");
  q.bind(1, name);
  if (!q.step()) {
    std::string names;
    for (const std::string& n : profile_names()) names += (names.empty() ? "" : ", ") + n;
    throw InputError("--calibration: no profile \"" + name + "\" in \"" + path_ + "\" (" +
                     (names.empty() ? std::string("it has none; bubblesim calibrate makes one") : "it has: " + names) +
                     ")");
  }
  return {q.text(0), q.text(1), q.text(2), q.text(3), q.text(4)};
}

std::vector<std::string> Store::profile_names() {
  std::vector<std::string> out;
  Stmt q(db_, "SELECT name FROM calibration_profiles ORDER BY name");
  while (q.step()) out.push_back(q.text(0));
  return out;
}

int64_t Store::store_comparison(int64_t measured_run, int64_t predicted_run, const std::string& calibration,
                                const std::string& result_json) {
  Transaction tx(db_);
  Stmt insert(db_, "INSERT INTO comparisons(measured_run, predicted_run, calibration, created_at, result) "
                   "VALUES (?, ?, ?, ?, ?)");
  // A comparison with published results has neither run.
  if (measured_run > 0) insert.bind(1, measured_run); else insert.bind_null(1);
  if (predicted_run > 0) insert.bind(2, predicted_run); else insert.bind_null(2);
  if (calibration.empty()) {
    insert.bind_null(3);
  } else {
    insert.bind(3, calibration);
  }
  insert.bind(4, now_utc()).bind(5, result_json);
  insert.run();
  const int64_t id = sqlite3_last_insert_rowid(db_);
  tx.commit();
  return id;
}

std::string Store::scenario_text(int64_t run_id) {
  run(run_id);
  Stmt q(db_, "SELECT coalesce(scenario_text, '') FROM runs WHERE id = ?");
  q.bind(1, run_id);
  q.step();
  return q.text(0);
}

std::string Store::environment(int64_t run_id) {
  run(run_id);
  Stmt q(db_, "SELECT coalesce(environment, '') FROM runs WHERE id = ?");
  q.bind(1, run_id);
  q.step();
  return q.text(0);
}

}  // namespace bubblesim::sim
