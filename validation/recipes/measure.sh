#!/usr/bin/env bash
# One measurement campaign on 8-GPU nodes, into one database file to bring back:
#   1. the GPU's compute at the shapes of the scenarios below (GEMM, attention, memory-bound ops);
#   2. NCCL sendrecv, all-to-all, all-reduce, all-gather, reduce-scatter over 8 B to 1 GiB
#      (checked on known data first, then timed as nccl-tests times them);
#   3. measured runs of the USP headline scenario (Llama-3-8B, one sequence split between Ulysses
#      and ring attention: every split of the nodes' GPUs, zigzag) and of a pipeline scenario
#      (Llama-2-7B, tp 2 x pp 2 x dp 2 per node, 1F1B), each compared with its prediction;
#   4. a calibration profile from the benchmarks, and every run validated with it.
# usage: measure.sh GPU NODES DB [LAUNCHER...]
#   GPU       a800 | h100 (the preset and the nodes' NICs: A800 4 x 200 Gb/s, H100 8 x 400 Gb/s)
#   NODES     1 or 2 (8 GPUs each)
#   DB        the SQLite file every measurement goes into (created if missing, appended otherwise)
#   LAUNCHER  how to start one process per GPU over the nodes, e.g. "mpirun -np 16 --hostfile hosts"
#             or "srun --ntasks-per-node 8"; default "mpirun -np GPUS"
# Run from the repository root after scripts/build.sh (bubblesim-hw built with CUDA and NCCL).
# Exit status: the first failing step's (every step still runs; a failure is reported at the end).
set -uo pipefail
gpu=${1:?usage: measure.sh a800|h100 NODES DB [LAUNCHER...]}
nodes=${2:?usage: measure.sh a800|h100 NODES DB [LAUNCHER...]}
db=${3:?usage: measure.sh a800|h100 NODES DB [LAUNCHER...]}
shift 3
gpus=$((nodes * 8))
if [ $# -gt 0 ]; then launch=("$@"); else launch=(mpirun -np "$gpus"); fi
case $gpu in
  a800) cluster=(--set cluster.gpu=a800-sxm4-80gb --set cluster.inter_node.nics_per_node=4
                 --set "cluster.inter_node.bandwidth=200 Gb/s") ;;
  h100) cluster=(--set cluster.gpu=h100-sxm5-80gb --set cluster.inter_node.nics_per_node=8
                 --set "cluster.inter_node.bandwidth=400 Gb/s") ;;
  *) echo "measure.sh: GPU must be a800 or h100, not \"$gpu\"" >&2; exit 2 ;;
esac
case $nodes in 1 | 2) ;; *) echo "measure.sh: NODES must be 1 or 2, not \"$nodes\"" >&2; exit 2 ;; esac
hw=build/bubblesim-hw sim=build/bubblesim
for b in "$hw" "$sim"; do
  [ -x "$b" ] || { echo "measure.sh: $b not found: run scripts/build.sh first" >&2; exit 2; }
done
usp=scenarios/usp/llama3-8b-2x8-a800.yaml
pipeline=scenarios/cluster/llama2-7b-8xa100-tp2-pp2-dp2.yaml
nodes_set=(--set "cluster.nodes=$nodes")
# 64K tokens keep one iteration to seconds; the splits are every ulysses x ring of the GPUs with
# ulysses within a node (at most 8: Llama-3-8B has 8 KV heads).
usp_common=("${cluster[@]}" "${nodes_set[@]}" --set training.seq_len=64K --set parallel.ring_layout=zigzag)
splits=("8 1" "4 2" "2 4" "1 8")
[ "$nodes" -eq 2 ] && splits=("8 2" "4 4" "2 8" "1 16")
status=0
step() {
  local name=$1
  shift
  echo "== $name ($(date -u +%H:%M:%S))"
  "$@"
  local rc=$?
  if [ "$rc" -ne 0 ]; then echo "!! $name failed (exit $rc)"; [ "$status" -eq 0 ] && status=$rc; fi
}
first_run=$("$sim" db list --format json --db "$db" 2>/dev/null | python3 -c \
  'import json,sys; runs=json.load(sys.stdin)["runs"]; print(max([r["run"] for r in runs], default=0) + 1)' 2>/dev/null || echo 1)

step "compute benchmarks at the scenarios' shapes" \
  "${launch[@]}" "$hw" bench gemm attention memory --backend cuda --shapes-from "$usp" --db "$db"
step "NCCL benchmarks, $gpus GPUs" \
  "${launch[@]}" "$hw" bench p2p alltoall allreduce allgather reducescatter --backend cuda --sizes 8:1G --db "$db"
for split in "${splits[@]}"; do
  read -r u r <<<"$split"
  step "NCCL plan check, ulysses $u x ring $r" "$hw" plan "$usp" "${usp_common[@]}" \
    --set "parallel.ulysses=$u" --set "parallel.ring=$r"
  step "USP run, ulysses $u x ring $r" "${launch[@]}" "$hw" run "$usp" --backend cuda "${usp_common[@]}" \
    --set "parallel.ulysses=$u" --set "parallel.ring=$r" --warmup 1 --iterations 3 --db "$db"
done
step "pipeline run, 1F1B" "${launch[@]}" "$hw" run "$pipeline" --backend cuda "${cluster[@]}" "${nodes_set[@]}" \
  --set "parallel.dp=$((2 * nodes))" --warmup 1 --iterations 3 --db "$db"
profile="$gpu-${nodes}n-$(date -u +%Y%m%d)"
step "calibration profile $profile" "$sim" calibrate --db "$db" --bench --name "$profile"
for id in $("$sim" db list --format json --db "$db" | python3 -c \
  "import json,sys; print(' '.join(str(r['run']) for r in json.load(sys.stdin)['runs'] if r['run'] >= $first_run and r['kind'] == 'hw' and r['status'] == 'complete'))"); do
  step "validate run $id (preset)" "$sim" validate --run "$id" --db "$db"
  step "validate run $id ($profile)" "$sim" validate --run "$id" --calibration "$profile" --db "$db"
done
echo "== done: $db ($(du -h "$db" | cut -f1)); bring it back and run: build/bubblesim db list --db $(basename "$db")"
exit "$status"
