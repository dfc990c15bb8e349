#!/usr/bin/env bash
# Bad input and faults of the host backend and the measurement store, each checked for a clear
# error and for what survives: world size mismatch, a rank killed mid-run, a rank failing with
# an error, a locked database, a database from a newer schema, a missing profile, a missing
# database, the wrong kind of run to validate, scenarios the backend cannot run.
# usage: host_faults.sh BUBBLESIM BUBBLESIM_HW MPIEXEC SOURCE_DIR
set -uo pipefail
sim=$1 hw=$2 mpiexec=$3 root=$4
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
scenario=$root/scenarios/host/ulysses-2.yaml
failures=0

# expect NAME WANT_SUBSTRING COMMAND...: the command fails (non-zero) and its output contains WANT.
expect() {
  local name=$1 want=$2
  shift 2
  local out rc
  out=$("$@" 2>&1)
  rc=$?
  if [ "$rc" -ne 0 ] && grep -qF -- "$want" <<<"$out"; then
    echo "ok   $name (exit $rc, $SECONDS s)"
  else
    echo "FAIL $name: exit $rc, expected an error containing \"$want\"; output:"
    sed 's/^/     /' <<<"$out" | tail -20
    failures=$((failures + 1))
  fi
}
# check NAME CONDITION-OUTPUT WANT: WANT is in the text.
check() {
  if grep -qF -- "$3" <<<"$2"; then echo "ok   $1"; else
    echo "FAIL $1: expected \"$3\" in:"
    sed 's/^/     /' <<<"$2" | tail -20
    failures=$((failures + 1))
  fi
}
run_hw() { "$mpiexec" -np "$1" "$hw" run "$scenario" --warmup 1 --iterations 2 "${@:2}"; }

expect "world size mismatch names both numbers" "the scenario has 2 GPUs but mpirun started 3 ranks" \
  run_hw 3 --db "$work/a.db"

db=$work/faults.db
expect "a rank killed mid-run stops the others" "rank 1 (pid" env BUBBLESIM_HW_FAULT=kill:1:2 "$mpiexec" -np 2 "$hw" run "$scenario" --warmup 1 --iterations 2 --db "$db"
show=$("$sim" db show 1 --db "$db")
check "the killed run is marked failed, naming the dead rank" "$show" "run 1 (hw, failed)"
check "its error says rank 1 died" "$show" "rank 1 (pid"
check "iterations measured before the failure are kept" "$show" "(warm-up) "
[ "$(sed -n 's/^measured iterations (s)://p' <<<"$show" | wc -w)" -ge 3 ] && echo "ok   two iterations stored before the kill" ||
  { echo "FAIL iterations before the kill were lost: $show"; failures=$((failures + 1)); }

expect "a rank failing with an error marks the run failed" "injected fault" env BUBBLESIM_HW_FAULT=throw:1:1 "$mpiexec" -np 2 "$hw" run "$scenario" --warmup 1 --iterations 2 --db "$db"
check "the error names the failing rank" "$("$sim" db show 2 --db "$db")" "rank 1: injected fault in iteration 1"

# A complete run afterwards: the database took every failure without damage.
run_hw 2 --db "$db" >/dev/null 2>&1 || { echo "FAIL a run after the failures"; failures=$((failures + 1)); }
check "the database is intact after the failures" "$("$sim" db list --db "$db")" "complete"

# Another process holding the write lock: a clear refusal after the (shortened) busy timeout.
/usr/bin/python3 -c "
import sqlite3, sys, time
c = sqlite3.connect(sys.argv[1], isolation_level=None)
c.execute('BEGIN EXCLUSIVE'); print('locked', flush=True); time.sleep(20)" "$db" >"$work/lock.out" &
locker=$!
for _ in $(seq 100); do grep -q locked "$work/lock.out" 2>/dev/null && break; sleep 0.1; done
expect "a locked database is refused clearly" "cannot start writing" \
  env BUBBLESIM_DB_BUSY_TIMEOUT_MS=500 "$mpiexec" -np 2 "$hw" run "$scenario" --db "$db"
kill "$locker" 2>/dev/null
wait "$locker" 2>/dev/null
check "the locked database lost nothing" "$("$sim" db list --db "$db")" "complete"

newer=$work/newer.db
/usr/bin/python3 -c "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); c.execute('PRAGMA user_version = 99'); c.commit()" "$newer"
expect "a newer schema is refused" "schema version 99 is newer" run_hw 2 --db "$newer"

expect "an unknown profile lists the profiles there are" 'no profile "nope"' \
  "$sim" run "$scenario" --calibration nope --db "$db"
expect "calibration from a missing database" "no database" "$sim" calibrate --db "$work/none.db" --bench --name x
expect "calibration from a database with no bench run" "holds no complete bench run" \
  "$sim" calibrate --db "$db" --bench --name x
expect "validating a failed run is refused" "validate compares with a complete hw run" \
  "$sim" validate --db "$db" --run 1
expect "a pipeline_only scenario cannot run on hardware" "cluster scenarios" \
  "$mpiexec" -np 2 "$hw" run "$root/scenarios/teaching/naive-2-devices.yaml" --db "$db"
expect "an unknown backend" "unknown backend \"tpu\"" "$mpiexec" -np 2 "$hw" run "$scenario" --backend tpu --db "$db"
# The GPU backend's refusals come before anything is stored.
runs_before=$("$sim" db list --db "$db" | wc -l)
probe=$("$mpiexec" -np 2 "$hw" check attention --backend cuda 2>&1)
if grep -q "built without CUDA" <<<"$probe"; then
  echo "ok   --backend cuda in a build without CUDA says so"
else
  expect "a replay needs the GPU backend" "replay: one device's ops on one GPU needs --backend cuda" \
    "$mpiexec" -np 1 "$hw" replay "$scenario" --db "$db"
  if ! nvidia-smi -L >/dev/null 2>&1; then
    expect "GPU compute benchmarks without a GPU" "no usable CUDA GPU" \
      "$mpiexec" -np 1 "$hw" bench gemm --backend cuda --db "$db"
    expect "NCCL benchmarks without a GPU" "no usable CUDA GPU" \
      "$mpiexec" -np 2 "$hw" bench p2p allgather --backend cuda --db "$db"
    expect "the correctness mode across GPUs without a GPU" "no usable CUDA GPU" \
      "$mpiexec" -np 2 "$hw" check attention --backend cuda
    expect "a GPU run without a GPU" "no usable CUDA GPU" \
      "$mpiexec" -np 2 "$hw" run "$scenario" --backend cuda --db "$db"
    expect "a replay without a GPU" "no usable CUDA GPU" \
      "$mpiexec" -np 1 "$hw" replay "$scenario" --backend cuda --device 0 --db "$db"
  fi
  expect "a replay of a device the Program lacks" "--device 7: the scenario's Program has 1 device (0)" \
    "$mpiexec" -np 1 "$hw" replay "$scenario" --backend cuda --device 7 --db "$db"
fi
[ "$("$sim" db list --db "$db" | wc -l)" -eq "$runs_before" ] && echo "ok   refused GPU commands stored no run" ||
  { echo "FAIL a refused GPU command stored a run"; failures=$((failures + 1)); }

# Every collective benchmark runs on the host backend too (ring steps over MPI), with nccl-tests'
# busbw factors: all-gather and reduce-scatter (n - 1) / n, all-reduce 2 (n - 1) / n.
out=$("$mpiexec" -np 2 "$hw" bench allgather reducescatter allreduce --sizes 4K:8K --iterations 2 --warmup 1 --db "$work/bench.db" 2>&1)
check "host all-gather / reduce-scatter benchmarks run and are stored" "$out" "stored 6 samples"
json=$("$sim" db export 1 --format json --db "$work/bench.db" 2>&1)
if /usr/bin/python3 -c '
import json, sys
samples = json.loads(sys.argv[1])["samples"]
f = {"allgather": 0.5, "reducescatter": 0.5, "allreduce": 1.0}
assert len(samples) == 6, samples
for s in samples:
    assert abs(s["busbw_Bps"] - s["algbw_Bps"] * f[s["op_class"]]) <= 1e-6 * s["algbw_Bps"], s
' "$json" 2>/dev/null; then echo "ok   benchmark busbw follows nccl-tests' factors"; else
  echo "FAIL benchmark busbw factors: $json" | head -c 2000; failures=$((failures + 1)); fi

[ "$failures" -eq 0 ] && echo "host faults: all checks passed" || echo "host faults: $failures checks failed"
exit "$failures"
