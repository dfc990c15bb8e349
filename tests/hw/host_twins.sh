#!/usr/bin/env bash
# Twin ranks on the host backend: with tensor parallelism 2 and data parallelism 2 the Program
# carries only the representative's tensor-parallel groups; the other replica's ranks must run
# their own copies (hw/runner/rank_map Twins), so every rank sends the same bytes per iteration
# (the run's bytes_sent_per_rank). Before twins ran them, ranks 2 and 3 sent 3670016 bytes, ranks
# 0 and 1 5242880.
# usage: host_twins.sh BUBBLESIM BUBBLESIM_HW MPIEXEC SOURCE_DIR
set -euo pipefail
sim=$1 hw=$2 mpiexec=$3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
cat >"$work/tp2-dp2.yaml" <<'YAML'
name: host-tp2-dp2
cluster: {gpu: host-cpu, nodes: 1, gpus_per_node: 4}
model: {layers: 2, hidden: 256, heads: 4, kv_heads: 4, ffn_hidden: 512, vocab: 1024, activation: swiglu}
training: {seq_len: 256, micro_batch_size: 1, global_batch_size: 2, dtype: bf16, recompute: none}
parallel: {dp: 2, tp: 2, pp: 1, schedule: 1f1b}
YAML
"$mpiexec" -np 4 "$hw" run "$work/tp2-dp2.yaml" --db "$work/twins.db" --warmup 1 --iterations 1 --stall-timeout 60 \
  >/dev/null
"$sim" db show 1 --db "$work/twins.db" | sed -n '/^report: /,$p' | sed 's/^report: //' | /usr/bin/python3 -c '
import json, sys
sent = json.load(sys.stdin)["bytes_sent_per_rank"]
print("bytes sent per rank:", sent)
if len(sent) != 4 or min(sent) <= 0 or len(set(sent)) != 1:
    sys.exit("FAIL: every rank of a tp 2 x dp 2 run must send the same bytes")
print("twins: ok")
'
