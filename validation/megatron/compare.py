#!/usr/bin/env python3
"""Megatron-LM SC21 (Narayanan et al. 2021) Table 1: achieved TFLOPS per GPU of GPT models from
1.7B to 1T parameters on up to 3072 A100 GPUs, with tensor, pipeline and data parallelism, against
bubblesim's prediction for the same configuration, counting FLOPs as the paper does
(--flops-accounting megatron-sc21: recompute included, non-causal attention).

Usage: compare.py [BUBBLESIM] [PUBLISHED_CSV] [--quick] [--max-mean=PERCENT]; --quick runs the
entries up to 128 GPUs only (for the test suite). Prints the table and the mean and worst absolute
percentage error; exits 1 when the mean error exceeds --max-mean.
"""
import csv
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCENARIO = os.path.join(ROOT, "validation", "megatron", "gpt-selene.yaml")


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    quick = "--quick" in sys.argv
    max_mean = next((float(a.split("=", 1)[1]) for a in sys.argv if a.startswith("--max-mean=")), None)
    binary = args[0] if args else os.path.join(ROOT, "build", "bubblesim")
    published = args[1] if len(args) > 1 else os.path.join(ROOT, "..", "shared", "validation", "published.csv")
    rows = [r for r in csv.DictReader(open(published, newline=""))
            if r["id"].startswith("MEG21-T1-") and r["metric"] == "TFLOPS_per_GPU"]
    results = []
    for r in rows:
        gpus = int(r["nodes"]) * int(r["gpus_per_node"])
        if quick and gpus > 128:
            continue
        h = int(r["hidden"])
        vpp = int(r["vpp"]) if r["vpp"].strip().isdigit() else 1
        sets = {
            "cluster.nodes": r["nodes"], "cluster.gpus_per_node": r["gpus_per_node"],
            "model.layers": r["layers"], "model.hidden": h, "model.heads": r["heads"], "model.kv_heads": r["heads"],
            "model.ffn_hidden": 4 * h, "training.micro_batch_size": r["micro_batch"],
            "training.global_batch_size": r["global_batch"], "parallel.dp": r["dp"], "parallel.tp": r["tp"],
            "parallel.pp": r["pp"], "parallel.virtual_stages": vpp,
            "parallel.schedule": "interleaved-1f1b" if vpp > 1 else "1f1b",
        }
        cmd = [binary, "run", SCENARIO, "--format", "json", "--flops-accounting", "megatron-sc21"]
        for k, v in sets.items():
            cmd += ["--set", f"{k}={v}"]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            print(f"{r['id']}: bubblesim failed: {done.stderr.strip()}")
            return 1
        report = json.loads(done.stdout)
        results.append((r["id"], r["model"], gpus, f"{r['tp']}/{r['pp']}/{r['dp']}", float(r["value"]),
                        report["tflops_per_gpu"], report["fits"]))
    print(f"{'id':18} {'model':10} {'GPUs':>5} {'tp/pp/dp':>9} {'published':>9} {'bubblesim':>9} {'error':>7} fits")
    errors = []
    for rid, model, gpus, par, pub, sim, fits in results:
        err = (sim - pub) / pub
        errors.append(abs(err))
        print(f"{rid:18} {model:10} {gpus:5d} {par:>9} {pub:9.1f} {sim:9.1f} {100 * err:+6.1f}% {fits}")
    mean = 100 * sum(errors) / len(errors)
    worst = 100 * max(errors)
    print(f"{len(results)} entries; mean absolute error {mean:.1f}%, worst {worst:.1f}% "
          f"(TFLOPS per GPU, Megatron SC21 FLOPs accounting)")
    if max_mean is not None and mean > max_mean:
        print(f"FAILED: mean error above {max_mean}%")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
