#!/usr/bin/env bash
# The whole measure -> store -> calibrate -> predict -> validate loop on the host backend, with
# 2 MPI processes: correctness across ranks, microbenchmarks (a generic shape grid, not the
# scenarios' shapes, so every scenario below is held out), calibration, predictions, measured
# runs, validation. Fails if a check fails or an iteration-time error exceeds MAX_ERROR percent.
#
# The machine's speed drifts by 10-15% over tens of seconds (shared CPUs), so the measurement
# is made robust, not the threshold loose: compute shapes are timed in interleaved rounds
# (medians), each run takes the median of several iterations after warm-up, and the benchmark is
# repeated before and after every measured run so the profile (median over all repetitions)
# covers the same stretch of time as the runs it predicts.
#
# usage: host_loop.sh BUBBLESIM BUBBLESIM_HW MPIEXEC SOURCE_DIR [MAX_ERROR]
set -euo pipefail
sim=$1 hw=$2 mpiexec=$3 root=$4 max_error=${5:-15}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
db=$work/loop.db
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
mpi() { "$mpiexec" -np 2 "$@"; }
scenarios=(pipeline-1f1b-2 ulysses-2 ring-zigzag-2)

echo "== correctness: ring (each layout) and Ulysses attention across 2 ranks vs one"
mpi "$hw" check attention

bench() { mpi "$hw" bench gemm attention memory p2p --db "$db" --iterations 8 --warmup 1 --sizes 1K:16M >/dev/null; }
echo "== microbenchmarks, calibration, predictions"
bench
"$sim" calibrate --db "$db" --bench --name host-before | grep -E "shapes|link"
for s in "${scenarios[@]}"; do
  "$sim" run "$root/scenarios/host/$s.yaml" --calibration host-before --db "$db" --format json |
    /usr/bin/python3 -c "import json,sys; r=json.load(sys.stdin); print('predicted %-24s %.4f s' % (r['scenario'], r['iteration_time_s']))"
done

echo "== measured runs (each between two benchmark passes)"
runs=()
for s in "${scenarios[@]}"; do
  out=$(mpi "$hw" run "$root/scenarios/host/$s.yaml" --db "$db" --warmup 2 --iterations 9 2>/dev/null)
  echo "$out"
  runs+=("$(sed -n 's/.*stored as run \([0-9]*\) in .*/\1/p' <<<"$out")")
  bench
done

echo "== calibration over every benchmark pass, and validation"
"$sim" calibrate --db "$db" --bench --name host | grep -E "shapes|link"
status=0
for r in "${runs[@]}"; do
  "$sim" validate --db "$db" --run "$r" --calibration host --max-error "$max_error" || status=$?
done
"$sim" db list --db "$db"
[ "$status" -eq 0 ] && echo "host loop: every iteration-time error within ${max_error}%"
exit "$status"
