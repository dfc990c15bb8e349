#!/usr/bin/env python3
"""Megatron-LM SC21 (Narayanan et al. 2021) Table 1: achieved TFLOPS per GPU of GPT models from
1.7B to 1T parameters on up to 3072 A100 GPUs, with tensor, pipeline and data parallelism, against
bubblesim's prediction for the same configuration, counting FLOPs as the paper does
(--flops-accounting megatron-sc21: recompute included, non-causal attention).

The rows of published.csv become a manifest (published.yaml beside this script: the scenario
overrides of each row), and `bubblesim validate --published` predicts every entry.

Usage: compare.py [BUBBLESIM] [PUBLISHED_CSV] [--quick] [--max-mean=PERCENT] [--write-manifest]
  --quick            the entries up to 128 GPUs only (for the test suite)
  --max-mean=P       exit 1 when the mean absolute error exceeds P percent
  --write-manifest   rewrite published.yaml from PUBLISHED_CSV; without it the script fails if the
                     committed manifest is not what PUBLISHED_CSV gives (so it never goes stale)
Prints the table and the mean and worst absolute percentage error.
"""
import csv
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.dirname(HERE))
import manifest  # noqa: E402  (validation/manifest.py)
MANIFEST = os.path.join(HERE, "published.yaml")


def entries(published):
    rows = [r for r in csv.DictReader(open(published, newline=""))
            if r["id"].startswith("MEG21-T1-") and r["metric"] == "TFLOPS_per_GPU"]
    out = []
    for r in rows:
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
        out.append({"id": r["id"], "published": float(r["value"]), "model": r["model"],
                    "gpus": int(r["nodes"]) * int(r["gpus_per_node"]),
                    "par": f"{r['tp']}/{r['pp']}/{r['dp']}", "set": sets})
    return out


def manifest_text(es, scenario="gpt-selene.yaml"):
    for e in es:
        e["note"] = f"{e['model']} on {e['gpus']} GPUs, tp/pp/dp {e['par']}"
    return manifest.text("Megatron-LM SC21 Table 1 (TFLOPS per GPU, A100)", scenario, "tflops_per_gpu", es,
                         "megatron-sc21")


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    quick = "--quick" in sys.argv
    max_mean = next((float(a.split("=", 1)[1]) for a in sys.argv if a.startswith("--max-mean=")), None)
    binary = args[0] if args else os.path.join(ROOT, "build", "bubblesim")
    published = args[1] if len(args) > 1 else os.path.join(ROOT, "..", "shared", "validation", "published.csv")
    es = entries(published)
    text = manifest_text(es)
    stale = manifest.check(MANIFEST, text, "--write-manifest" in sys.argv)
    if stale:
        print(stale)
        return 1
    selected = [e for e in es if not quick or e["gpus"] <= 128]
    # The entries to run, as a manifest of their own (the scenario by its absolute path).
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        f.write(manifest_text(selected, os.path.join(HERE, "gpt-selene.yaml")))
    try:
        done = subprocess.run([binary, "validate", "--published", f.name, "--format", "json"],
                              capture_output=True, text=True)
    finally:
        os.unlink(f.name)
    if done.returncode != 0:
        print(f"bubblesim validate --published failed: {done.stderr.strip()}")
        return 1
    result = json.loads(done.stdout)
    print(f"{'id':18} {'model':10} {'GPUs':>5} {'tp/pp/dp':>9} {'published':>9} {'bubblesim':>9} {'error':>7} fits")
    for e, row in zip(selected, result["rows"]):
        assert row["id"] == e["id"]
        print(f"{e['id']:18} {e['model']:10} {e['gpus']:5d} {e['par']:>9} {row['published']:9.1f} "
              f"{row['predicted']:9.1f} {100 * row['error']:+6.1f}% {row['fits']}")
    mean = 100 * result["errors"]["mean_abs_error"]
    worst = 100 * result["errors"]["worst_abs_error"]
    print(f"{len(selected)} entries; mean absolute error {mean:.1f}%, worst {worst:.1f}% "
          f"(TFLOPS per GPU, Megatron SC21 FLOPs accounting)")
    if max_mean is not None and mean > max_mean:
        print(f"FAILED: mean error above {max_mean}%")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
