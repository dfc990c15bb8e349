#!/usr/bin/env bash
# The GPU backend's NCCL plans, checked without a GPU: `bubblesim-hw plan` builds every GPU's
# calls for the shipped cluster scenarios (pipeline, tensor, data, Ulysses and ring parallelism)
# and runs them under NCCL's matching and blocking rules; bad input is refused clearly.
#
# usage: nccl_plan.sh BUBBLESIM BUBBLESIM_HW MPIEXEC SOURCE_DIR
set -euo pipefail
hw=$2 mpiexec=$3 root=$4
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fail() { echo "FAIL: $*" >&2; exit 1; }

for s in cluster/llama2-7b-8xa100-tp2-pp2-dp2 cluster/usp-llama3-8b-2x8-a800-208k usp/llama3-8b-2x8-a800 \
         host/pipeline-1f1b-2 host/ring-zigzag-2 host/ulysses-2; do
  out=$("$hw" plan "$root/scenarios/$s.yaml")
  grep -q "^check: every GPU's calls meet their peers'" <<<"$out" || fail "$s: $out"
  echo "$s: $(head -1 <<<"$out")"
done
# The same as JSON, for scripts.
"$hw" plan "$root/scenarios/usp/llama3-8b-2x8-a800.yaml" --format json | /usr/bin/python3 -c '
import json, sys
r = json.load(sys.stdin)
assert r["ok"] and r["gpus"] == 16 and len(r["ranks"]) == 16, r["check"]
assert {c["stream"] for c in r["communicators"]} == {"compute", "dp", "ring"}, r["communicators"]
assert all(g["buffer_bytes"] > 0 and g["calls"]["all-to-all"] > 0 for g in r["ranks"])
print("json: ok")'
# Every schedule family and the other parallelisms through --set.
base=$root/scenarios/cluster/llama2-7b-8xa100-tp2-pp2-dp2.yaml
for sets in "parallel.schedule=interleaved-1f1b parallel.virtual_stages=2" "parallel.schedule=zb-h2" \
            "parallel.schedule=dualpipe parallel.tp=1 parallel.dp=4 training.global_batch_size=64" \
            "parallel.zero=3" "parallel.pp=1 parallel.dp=4"; do
  args=()
  for kv in $sets; do args+=(--set "$kv"); done
  out=$("$hw" plan "$base" "${args[@]}")
  grep -q "^check: every GPU's calls meet" <<<"$out" || fail "$sets: $out"
  echo "$sets: ok"
done

# Bad input: a clear message and exit status 2, never a crash.
expect_input_error() {
  local want=$1; shift
  set +e
  err=$("$@" 2>&1 >/dev/null)
  rc=$?
  set -e
  [ "$rc" = 2 ] || fail "$* exited $rc, not 2: $err"
  grep -q -- "$want" <<<"$err" || fail "$*: expected '$want' in: $err"
}
expect_input_error "plan: which scenario" "$hw" plan
expect_input_error "unknown format" "$hw" plan "$base" --format yaml
expect_input_error "pipeline_only" "$hw" plan "$root/scenarios/teaching/naive-2-devices.yaml"
expect_input_error "no-such.yaml" "$hw" plan "$root/no-such.yaml"
# A GPU run on a machine without a GPU (or a build without CUDA, or without NCCL, which needs one
# rank per GPU) says so.
# (No GPU visible, even on a machine that has some.)
export CUDA_VISIBLE_DEVICES=
expect_input_error "no usable CUDA GPU\|built without CUDA\|mpirun started 1 ranks" "$hw" run "$base" --backend cuda --db "$(mktemp -u)"
if grep -q "no usable CUDA GPU" <<<"$err"; then  # (a build with NCCL) the plan was checked first
  grep -q "NCCL plan checked: 9 communicators; the calls of all 8 GPUs" <<<"$err" || fail "node mode: no plan check in: $err"
fi
# Under mpirun every rank plans, the ranks compare their plans and rank 0 checks them all; only
# then does the missing GPU stop the run.
expect_input_error "no usable CUDA GPU\|built without CUDA\|built without NCCL" \
  "$mpiexec" --oversubscribe -x CUDA_VISIBLE_DEVICES -np 4 "$hw" run "$root/scenarios/cluster/llama2-7b-8xa100-tp2-pp2-dp2.yaml" \
  --set cluster.gpus_per_node=4 --set parallel.dp=1 --backend cuda --db "$(mktemp -u)"
if grep -q "no usable CUDA GPU" <<<"$err"; then
  grep -q "NCCL plan checked: .* communicators; the calls of all 4 GPUs" <<<"$err" || fail "mpirun: no plan check in: $err"
fi
echo "nccl plans: ok"
