#!/usr/bin/env python3
"""Megatron-LM SC21 (Narayanan et al. 2021) Table 1: achieved TFLOPS per GPU of GPT models from
1.7B to 1T parameters on up to 3072 A100 GPUs, with tensor, pipeline and data parallelism, against
bubblesim's prediction for the same configuration, counting FLOPs as the paper does
(--flops-accounting megatron-sc21: recompute included, non-causal attention).

The rows of published.csv become a manifest (published.yaml beside this script: the scenario
overrides of each row), and `bubblesim validate --published` predicts every entry.

Table 2 (ZeRO-3 without model parallelism against PTD-P, 175B and 530B) and MT-NLG 530B's measured
iteration times and the SC21 figures' readings are printed after it, kept in table2.yaml,
mtnlg.yaml and figures.yaml; they are reported, not part of Table 1's figure.

Usage: compare.py [BUBBLESIM] [PUBLISHED_CSV] [--quick] [--max-mean=PERCENT] [--max-worst=PERCENT]
                  [--write-manifest]
  --quick            Table 1's entries up to 128 GPUs only
  --max-mean=P       exit 1 when Table 1's mean absolute error exceeds P percent
  --max-worst=P      exit 1 when Table 1's worst absolute error exceeds P percent
  --write-manifest   rewrite the manifests (published.yaml, table2.yaml, mtnlg.yaml, figures.yaml)
                     from PUBLISHED_CSV; without it the script fails if a committed manifest is not
                     what PUBLISHED_CSV gives (so none goes stale)
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
MANIFEST_T2 = os.path.join(HERE, "table2.yaml")
MANIFEST_MTNLG = os.path.join(HERE, "mtnlg.yaml")
MANIFEST_FIGURES = os.path.join(HERE, "figures.yaml")


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
                    "par": f"tp/pp/dp {r['tp']}/{r['pp']}/{r['dp']}", "set": sets})
    return out


def entries_table2(published):
    """Table 2: GPT-3 175B and GPT 530B, ZeRO-3 without model parallelism (DeepSpeed) against PTD-P.
    The PTD-P rows do not restate the interleaving; assumed as Table 1's nearest configurations:
    530B as there (1 layer per model chunk, 3 chunks), 175B with 2 chunks of 4 layers."""
    rows = [r for r in csv.DictReader(open(published, newline=""))
            if r["id"].startswith("MEG21-T2-") and r["metric"] == "TFLOPS_per_GPU"]
    out = []
    for r in rows:
        h = int(r["hidden"])
        zero3 = "ZeRO-3" in r["schedule"]
        sets = {
            "cluster.nodes": r["nodes"], "cluster.gpus_per_node": r["gpus_per_node"],
            "model.layers": r["layers"], "model.hidden": h, "model.heads": r["heads"], "model.kv_heads": r["heads"],
            "model.ffn_hidden": 4 * h, "training.micro_batch_size": r["micro_batch"],
            "training.global_batch_size": r["global_batch"].rstrip("*"), "parallel.dp": r["dp"],
            "parallel.tp": r["tp"], "parallel.pp": r["pp"],
        }
        if zero3:  # DeepSpeed ZeRO-3: gradients reduce-scattered during the backward
            sets.update({"parallel.zero": 3, "parallel.overlap_grad_reduce": "true", "parallel.schedule": "1f1b"})
            par = f"ZeRO-3, dp {r['dp']}"
        else:
            vpp = 3 if int(r["layers"]) == 105 else 2
            sets.update({"parallel.virtual_stages": vpp, "parallel.schedule": "interleaved-1f1b"})
            par = f"{r['tp']}/{r['pp']}/{r['dp']} v{vpp}"
        out.append({"id": r["id"], "published": float(r["value"]), "model": r["model"].replace("GPT-3 ", "GPT-"),
                    "gpus": int(r["nodes"]) * int(r["gpus_per_node"]), "par": par, "set": sets})
    return out


def entries_mtnlg(published):
    """MT-NLG 530B (Smith et al. 2022) on 280 to 420 DGX A100 40GB nodes: measured iteration time,
    tp 8 x pp 35 with Megatron-DeepSpeed's 1F1B, ZeRO-1 over data parallelism, microbatch 1,
    vocabulary 50272."""
    rows = [r for r in csv.DictReader(open(published, newline=""))
            if r["id"].startswith("MTNLG-") and r["metric"] == "iteration_time"]
    out = []
    for r in rows:
        h = int(r["hidden"])
        sets = {
            "cluster.gpu": "a100-sxm4-40gb", "cluster.nodes": r["nodes"], "cluster.gpus_per_node": r["gpus_per_node"],
            "model.layers": r["layers"], "model.hidden": h, "model.heads": r["heads"], "model.kv_heads": r["kv_heads"],
            "model.ffn_hidden": r["ffn"], "model.vocab": 50272, "training.micro_batch_size": 1,
            "training.global_batch_size": r["global_batch"], "parallel.dp": r["dp"], "parallel.tp": r["tp"],
            "parallel.pp": r["pp"], "parallel.schedule": "1f1b", "parallel.zero": 1,
        }
        out.append({"id": r["id"], "published": float(r["value"]), "model": "MT-NLG 530B",
                    "gpus": int(r["nodes"]) * int(r["gpus_per_node"]),
                    "par": f"tp/pp/dp {r['tp']}/{r['pp']}/{r['dp']}", "set": sets})
    return out


# The SC21 figures' models (layers, hidden, heads), from their captions as published.csv gives them.
FIGURE_MODELS = {"F11": (None, 20480, 128), "F12": (96, 12288, 96), "F18": (96, 12288, 96),
                 "F13": (32, 20480, 128), "F14": (32, 3840, 32), "F16": (32, 15360, 128)}


def entries_figures(published):
    """Megatron SC21's figures 11 to 16 and 18 (TFLOPS per GPU read off the plots, '~' readings:
    a loose check): weak scaling of the pipeline (F11: 3 layers per stage; its pp 1 rows are left
    out: as published.csv gives them, tp 1 x dp 8, a 15B model cannot fit 80 GB), interleaved against
    plain 1F1B (F12; F18 with the scatter/gather optimisation, which bubblesim always models: the
    unoptimised rows are left out), tensor against pipeline parallelism (F13), pipeline against data
    parallelism (F14) and the microbatch size (F16)."""
    rows = [r for r in csv.DictReader(open(published, newline=""))
            if r["id"].split("-")[1] in FIGURE_MODELS and r["metric"] == "TFLOPS_per_GPU" and "-unopt-" not in r["id"]
            and not r["id"].startswith("MEG21-F11-") or r["id"] in ("MEG21-F11-bs8-pp8", "MEG21-F11-bs128-pp8")]
    out = []
    for r in rows:
        layers, h, heads = FIGURE_MODELS[r["id"].split("-")[1]]
        pp, vpp = int(r["pp"]), int(r["vpp"] or 1)
        layers = layers or 3 * pp
        sets = {
            "cluster.nodes": r["nodes"], "cluster.gpus_per_node": 8, "model.layers": layers, "model.hidden": h,
            "model.heads": heads, "model.kv_heads": heads, "model.ffn_hidden": 4 * h,
            "training.micro_batch_size": r["micro_batch"], "training.global_batch_size": r["global_batch"],
            "parallel.dp": r["dp"], "parallel.tp": r["tp"], "parallel.pp": pp, "parallel.virtual_stages": vpp,
            "parallel.schedule": "interleaved-1f1b" if vpp > 1 else "1f1b",
        }
        out.append({"id": r["id"], "published": float(r["value"].lstrip("~")), "model": f"{layers}x{h}",
                    "gpus": int(r["nodes"]) * 8, "par": f"{r['tp']}/{pp}/{r['dp']}" + (f" v{vpp}" if vpp > 1 else ""),
                    "set": sets})
    return out


TITLE_T1 = "Megatron-LM SC21 Table 1 (TFLOPS per GPU, A100)"
TITLE_FIGURES = "Megatron-LM SC21 Figures 11-16 and 18 (TFLOPS per GPU read off the plots: a loose check)"
TITLE_MTNLG = "MT-NLG 530B on A100 40GB (iteration time, s)"
TITLE_T2 = "Megatron-LM SC21 Table 2: ZeRO-3 without model parallelism vs PTD-P (TFLOPS per GPU, A100)"


def manifest_text(es, scenario="gpt-selene.yaml", title=TITLE_T1, metric="tflops_per_gpu"):
    for e in es:
        e["note"] = f"{e['model']} on {e['gpus']} GPUs, {e['par']}"
    return manifest.text(title, scenario, metric, es, "megatron-sc21")


def run_table(binary, selected, title, metric="tflops_per_gpu"):
    """Predicts `selected` through bubblesim validate --published and prints the table."""
    # The entries to run, as a manifest of their own (the scenario by its absolute path).
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        f.write(manifest_text(selected, os.path.join(HERE, "gpt-selene.yaml"), title, metric))
    try:
        done = subprocess.run([binary, "validate", "--published", f.name, "--format", "json"],
                              capture_output=True, text=True)
    finally:
        os.unlink(f.name)
    if done.returncode != 0:
        print(f"bubblesim validate --published failed: {done.stderr.strip()}")
        return None
    result = json.loads(done.stdout)
    print(f"{'id':18} {'model':10} {'GPUs':>5} {'parallelism':>16} {'published':>9} {'bubblesim':>9} {'error':>7} fits")
    for e, row in zip(selected, result["rows"]):
        assert row["id"] == e["id"]
        print(f"{e['id']:18} {e['model']:10} {e['gpus']:5d} {e['par']:>16} {row['published']:9.1f} "
              f"{row['predicted']:9.1f} {100 * row['error']:+6.1f}% {row['fits']}")
    return result


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    quick = "--quick" in sys.argv
    max_mean = next((float(a.split("=", 1)[1]) for a in sys.argv if a.startswith("--max-mean=")), None)
    max_worst = next((float(a.split("=", 1)[1]) for a in sys.argv if a.startswith("--max-worst=")), None)
    binary = args[0] if args else os.path.join(ROOT, "build", "bubblesim")
    published = args[1] if len(args) > 1 else os.path.join(ROOT, "..", "shared", "validation", "published.csv")
    tables = [  # (manifest, entries, title, report metric, note on the summary line)
        (MANIFEST, entries(published), TITLE_T1, "tflops_per_gpu", " (TFLOPS per GPU, Megatron SC21 FLOPs accounting)"),
        (MANIFEST_T2, entries_table2(published), TITLE_T2, "tflops_per_gpu", ""),
        (MANIFEST_MTNLG, entries_mtnlg(published), TITLE_MTNLG, "iteration_time_s",
         " (iteration time: negative = predicted faster)"),
        (MANIFEST_FIGURES, entries_figures(published), TITLE_FIGURES, "tflops_per_gpu", ""),
    ]
    for path, es, title, metric, _ in tables:
        stale = manifest.check(path, manifest_text(es, title=title, metric=metric), "--write-manifest" in sys.argv)
        if stale:
            print(stale)
            return 1
    mean = worst = None
    for path, es, title, metric, note in tables[:1] if quick else tables:
        selected = [e for e in es if not quick or e["gpus"] <= 128]
        if mean is not None:
            print(f"\n{title}")
        result = run_table(binary, selected, title, metric)
        if result is None:
            return 1
        errors = result["errors"]
        print(f"{len(selected)} entries; mean absolute error {100 * errors['mean_abs_error']:.1f}%, "
              f"worst {100 * errors['worst_abs_error']:.1f}%{note}")
        if mean is None:  # Table 1's, the figures the limits apply to
            mean, worst = 100 * errors["mean_abs_error"], 100 * errors["worst_abs_error"]
    if max_mean is not None and mean > max_mean:
        print(f"FAILED: mean error above {max_mean}%")
        return 1
    if max_worst is not None and worst > max_worst:
        print(f"FAILED: worst error above {max_worst}%")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
