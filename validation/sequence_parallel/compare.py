#!/usr/bin/env python3
"""Sequence-parallel attention benchmarks against bubblesim (training.scope attention-*):

* RFA:  ring-flash-attention README (batch API), 8 GPUs (A100, H800), Llama-3.1-8B attention shape
        (32 heads, 8 KV heads, d 128), 8K tokens per GPU: ring (contiguous), zigzag and stripe
        layouts, forward and forward+backward, plus the single-GPU flash_attn reference on 8K.
* RFAO: the same README's older table (5 MHA heads of d 128, qkv-packed).
* USP:  the USP paper's attention table (arXiv 2405.07719, Table 4 final / Table 3 v1), 8xA100
        NVLink and 8xL20 PCIe, forward only, every ulysses x ring split of 8, basic (contiguous)
        vs load-balanced (zigzag) ring. Its seq_len label is ambiguous (README: "test both"): a
        reading is kept only if no row would then have run faster than the GPUs' peak FLOP/s
        (per GPU, the 32K A100 rows would need 9.5 PFLOPS), one choice for the whole table.
        The table is reported but not part of the error target, for two reasons found here:
        its A100 128K rows imply 16% of peak where its 32K rows imply 48% (no single reading of
        the labels is consistent), and its L20 all-to-alls run at about 1 GB/s per GPU (a PCIe
        host without peer-to-peer, through the CPUs), which bubblesim's L20 topology (one PCIe
        switch at NCCL's PCIe rate) does not describe.

* USPO: yunchang's older README tables and charts (8 x A100 NVLink, batch 2, 8K or 4K tokens per
        GPU): 8, 2 and 64 (GQA, 8 KV) heads of d 128, ring and USP splits with basic, zigzag and
        stripe rings. Reported, not in the target: in its 2- and 8-head rows the three layouts run
        alike (8 heads, ring 8: 8.16 / 8.21 / 8.46 iter/s), as non-causal attention would, where
        causal zigzag and stripe rings do half the work of a contiguous one's last rank, so
        bubblesim predicts them 1.5-2.5x faster; its 64-head GQA rows, where the layouts differ as
        causal attention makes them, agree within -15% to +13%.

* USPR: yunchang's current README tables (8 x A100 NVLink, 4 x A100 on PCIe, 8 x L20), head sizes
        32 and 128, every ulysses x ring split, basic / zigzag / stripe, forward only. Reported,
        not in the target: no single reading of its seq_len labels makes every row possible (per
        GPU, its 128K rows would need 2-6 PFLOPS), and read as global its 128K rows agree (A100:
        group means 8.5% to 16.6%, GQA 0-2%) while its 512 to 32K rows run 2x to 100x slower than
        the attention they time, as fixed per-call costs (Python, launches, all-to-all setup) at
        those sizes would; the PCIe A100 box and the L20 all-to-alls as for USP above.

Not compared: RFA's varlen rows (several packed documents of unstated lengths), NEMO (FP8
whole-model runs; bubblesim models bf16).

Usage: compare.py [BUBBLESIM] [PUBLISHED_CSV] [--max-mean=PERCENT] [--write-manifest]. The target
rows are also a manifest, published.yaml (`bubblesim validate --published` runs it); the script
fails if that is not what PUBLISHED_CSV gives, and --write-manifest rewrites it. Prints every row, the mean and
worst absolute percentage error per source and over the target sources (RFA, RFAO), and whether
the fastest published configuration of each group is also the fastest predicted; exits 1 when
the target mean error exceeds --max-mean or a target group's best is ranked wrong.
"""
import csv
import os
import re
import sys
from collections import defaultdict

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SCENARIO = os.path.join(HERE, "attention.yaml")
MANIFEST = os.path.join(HERE, "published.yaml")  # the target rows, for bubblesim validate --published
sys.path.insert(0, os.path.dirname(HERE))
import manifest  # noqa: E402  (validation/manifest.py)
GPUS = {"A100": "a100-sxm4-80gb", "H800": "h800-sxm5-80gb", "L20": "l20-pcie-48gb"}
PEAK = {"a100-sxm4-80gb": 312e12, "h800-sxm5-80gb": 989e12, "l20-pcie-48gb": 119.5e12}  # dense bf16
TARGET = ("RFA", "RFAO")
LAYOUTS = {"ring_attn": "contiguous", "basic_ring": "contiguous", "zigzag_ring": "zigzag", "lb_ring": "zigzag",
           "stripe_attn": "striped"}


def tokens(label):
    m = re.match(r"\s*(\d+)\s*([kK]?)", label)
    return int(m.group(1)) * (1024 if m.group(2) else 1)


def simulate(binary, sets):
    return manifest.report(binary, SCENARIO, sets)["iterations_per_s"]


def row_case(r):
    """(group, label, sets, published) for a row, or None when the row is not compared."""
    src = r["id"].split("-")[0]
    if src == "RFA" and "-varlen-" in r["id"]:
        return None
    gpu = next(v for k, v in GPUS.items() if k in r["gpu"])
    metric = r["metric"]
    scope = "attention-forward-backward" if "fwd+bwd" in metric or "fwdbwd" in metric else "attention-forward"
    kind = metric.split("_throughput")[1].lstrip("_")
    base = {"cluster.gpu": gpu, "model.hidden": r["hidden"], "model.heads": r["heads"],
            "model.kv_heads": r["kv_heads"], "training.scope": scope}
    if src in ("RFA", "RFAO"):
        per_gpu = tokens(r["seq_len"])
        if kind == "flash_attn_single_gpu_div8":
            value = float(r["value"].split("/")[0])  # the single-GPU measurement itself
            sets = dict(base, **{"cluster.gpus_per_node": 1, "parallel.ring": 1, "training.seq_len": per_gpu})
            return (f"{src} {r['gpu'].split()[0]} {scope} single GPU", "single-gpu 8K", [sets], value)
        sets = dict(base, **{"training.seq_len": 8 * per_gpu, "parallel.ring": 8,
                             "parallel.ring_layout": LAYOUTS[kind]})
        return (f"{src} {r['gpu'].split()[0]} {scope}", LAYOUTS[kind], [sets], float(r["value"]))
    if src in ("USP", "USPO", "USPR"):
        if not re.match(r"^[0-9.]+$", r["value"]):
            return None  # "OOM"
        u, ring = int(r["ulysses"]), int(r["ring"])
        label = tokens(r["seq_len"])
        if src == "USP":
            layout = LAYOUTS[kind]
            group = f"USP {r['gpu'].split()[0]} {r['seq_len']}"
        elif src == "USPR":
            layout = "zigzag" if "zigzag" in kind else "striped" if "stripe" in kind else "contiguous"
            gpus = int(r["gpus_per_node"])
            if "PCIe machine" in r["gpu"]:  # A100s on PCIe (no NVLink): PCIe 4.0 between them
                base["cluster.intra_node.bandwidth"] = "25 GB/s"
            base["cluster.gpus_per_node"] = gpus
            # Batch: the L20 table's note gives 2 for MHA rows and 1 for GQA rows; for the A100
            # tables, the script's default of 2 (the same README's charts state bs=2).
            mha = r["heads"] == r["kv_heads"]
            base["training.micro_batch_size"] = 2 if mha or "L20" not in r["gpu"] else 1
            group = f"USPR {r['id'].split('-')[1]} h{r['hidden']}/{r['heads']}/{r['kv_heads']} {r['seq_len']}"
            readings = []
            for total in (gpus * label, label):
                readings.append(dict(base, **{"training.seq_len": total, "parallel.ulysses": u, "parallel.ring": ring,
                                              "parallel.ring_layout": layout}))
            return (group, f"u{u}r{ring} {layout} {kind.split('_')[-1]}", readings, float(r["value"]))
        else:
            # yunchang's charts and tables: the layout is in the id; batch 2 (the charts' bs).
            name = r["id"].lower()
            layout = "zigzag" if "zigzag" in name else "striped" if "strip" in name else "contiguous"
            base["training.micro_batch_size"] = 2
            group = f"USPO {r['id'].split('-')[1]} {scope}"
        readings = []
        for total in (8 * label, label):  # the label per GPU (as the benchmark scripts take it), or global
            readings.append(dict(base, **{"training.seq_len": total, "parallel.ulysses": u, "parallel.ring": ring,
                                          "parallel.ring_layout": layout}))
        return (group, f"u{u}r{ring} {layout}", readings, float(r["value"]))
    return None


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    max_mean = next((float(a.split("=", 1)[1]) for a in sys.argv if a.startswith("--max-mean=")), None)
    binary = args[0] if args else os.path.join(ROOT, "build", "bubblesim")
    published = args[1] if len(args) > 1 else os.path.join(ROOT, "..", "shared", "validation", "published.csv")
    cases = []
    for r in csv.DictReader(open(published, newline="")):
        if r["id"].split("-")[0] in ("RFA", "RFAO", "USP", "USPO", "USPR"):
            case = row_case(r)
            if case:
                cases.append((r["id"],) + case)
    target = [{"id": rid, "published": pub, "set": sets[0], "note": f"{group}: {label}"}
              for rid, group, label, sets, pub in cases if rid.split("-")[0] in TARGET]
    assert all(len(c[3]) == 1 for c in cases if c[0].split("-")[0] in TARGET)  # one reading each
    stale = manifest.check(MANIFEST, manifest.text("ring-flash-attention README: distributed attention (iterations/s)",
                                                   "attention.yaml", "iterations_per_s", target),
                           "--write-manifest" in sys.argv)
    if stale:
        print(stale)
        return 1
    predicted = {rid: [simulate(binary, s) for s in sets] for rid, _, _, sets, _ in cases}

    def possible(sets, iters_per_s):
        """Whether the published rate fits under the GPUs' peak (causal attention FLOPs, per GPU)."""
        seq, gpus = int(sets["training.seq_len"]), int(sets.get("cluster.gpus_per_node", 8))
        flops = 2.0 * int(sets.get("training.micro_batch_size", 1)) * seq * seq * int(sets["model.hidden"]) / gpus
        if sets["training.scope"] == "attention-forward-backward":
            flops *= 3.5
        return flops * iters_per_s <= PEAK[sets["cluster.gpu"]]

    # One reading of the seq_len label per source: the first under which every row is possible.
    reading = {}
    for src in ("RFA", "RFAO", "USP", "USPO", "USPR"):
        mine = [c for c in cases if c[0].split("-")[0] == src]
        options = max(len(c[3]) for c in mine)
        ok = [all(possible(c[3][min(i, len(c[3]) - 1)], c[4]) for c in mine) for i in range(options)]
        reading[src] = ok.index(True) if True in ok else 0
        if options > 1:
            errs = [sum(abs(predicted[c[0]][i] - c[4]) / c[4] for c in mine) / len(mine) for i in range(options)]
            print(f"{src}: seq_len label read as {'per GPU' if reading[src] == 0 else 'global'} (per GPU: "
                  f"{'possible' if ok[0] else 'impossible'}, mean error {100 * errs[0]:.1f}%; as global: "
                  f"{'possible' if ok[1] else 'impossible'}, mean error {100 * errs[1]:.1f}%)")
    print(f"\n{'id':36} {'configuration':22} {'published':>10} {'bubblesim':>10} {'error':>7}")
    by_source, groups = defaultdict(list), defaultdict(list)
    for rid, group, label, sets, pub in cases:
        sim = predicted[rid][min(reading[rid.split('-')[0]], len(sets) - 1)]
        err = (sim - pub) / pub
        by_source[rid.split("-")[0]].append(abs(err))
        groups[group].append((label, pub, sim))
        print(f"{rid:36} {label:22} {pub:10.2f} {sim:10.2f} {100 * err:+6.1f}%")
    print()
    target_errors = []
    for src, errs in by_source.items():
        if src in TARGET:
            target_errors += errs
        print(f"{src:5} {len(errs):3d} rows: mean {100 * sum(errs) / len(errs):5.1f}%, worst {100 * max(errs):5.1f}%"
              f"{'' if src in TARGET else '  (reported, not in the target: see the header of compare.py)'}")
    for group, entries in groups.items():
        errs = [abs(sim - pub) / pub for _, pub, sim in entries]
        print(f"  {group:40} {len(errs):3d} rows: mean {100 * sum(errs) / len(errs):5.1f}%, worst {100 * max(errs):5.1f}%")
    mean = 100 * sum(target_errors) / len(target_errors)
    print(f"target ({'+'.join(TARGET)}) {len(target_errors)} rows: mean {mean:5.1f}%, "
          f"worst {100 * max(target_errors):5.1f}%\n")
    wrong = []
    for group, entries in groups.items():
        if len(entries) < 2:
            continue
        best_pub = max(entries, key=lambda e: e[1])
        best_sim = max(entries, key=lambda e: e[2])
        # Published figures within 2% of the best (single benchmark runs) count as a tie.
        ok = best_sim[1] >= 0.98 * best_pub[1]
        print(f"best in {group:36}: published {best_pub[0]:16} predicted {best_sim[0]:16} {'ok' if ok else 'WRONG'}")
        if not ok:
            wrong.append(group)
    ranked = sum(1 for e in groups.values() if len(e) > 1)
    print(f"\nranking: {ranked - len(wrong)} of {ranked} groups' best configuration ranked first")
    if max_mean is not None and mean > max_mean:
        print(f"target mean error {mean:.1f}% exceeds {max_mean}%")
        return 1
    if max_mean is not None and any(g.split()[0] in TARGET for g in wrong):
        print("a target group's best configuration is ranked wrong")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
