#!/usr/bin/env python3
"""Zero Bubble paper (Qi et al., ICLR 2024), Tables 5 and 6: the bubble rates the authors computed
for 1F1B, ZB-H1 and ZB-H2 from their profiled per-stage times T_F, T_B (our I), T_W and T_comm,
against bubblesim simulating the same schedules with those times.

The paper's bubble rate is (cost - m(T_F+T_B+T_W)) / cost with cost the longest stage time: the
longest span (last end - first start) over the stages, as the paper's schedules repeat without a
global barrier. From bubblesim's report that is (span - busy) / span of the device with the longest
span. (For 1F1B and ZB-H1 the first stage spans the whole iteration, so it equals idle / iteration
time; ZB-H2 is a parallelogram and is only "zero bubble" per span.) Usage: compare.py [BUBBLESIM] [PUBLISHED_CSV] (defaults: build/bubblesim,
../shared/validation/published.csv). Prints a table and the error summary; exits 1 above the limit.
"""
import csv
import json
import os
import subprocess
import sys
from collections import defaultdict

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCENARIO = os.path.join(ROOT, "validation", "zero_bubble", "zb-paper.yaml")
SCHEDULES = {"1F1B": "1f1b", "ZB-H1": "zb-h1", "ZB-H2": "zb-h2"}
MAX_ABS_ERROR = 0.0005  # the rates are published to 4 decimals


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build", "bubblesim")
    published = sys.argv[2] if len(sys.argv) > 2 else os.path.join(ROOT, "..", "shared", "validation", "published.csv")
    rows = list(csv.DictReader(open(published, newline="")))
    # Table 6: profiled times per (model, microbatches).
    profiled = defaultdict(dict)
    for r in rows:
        if r["id"].startswith("ZB-T6-") and r["metric"].startswith("profiled_T_"):
            key = r["id"].rsplit("-T_", 1)[0].replace("ZB-T6-", "")
            profiled[key][r["metric"].replace("profiled_", "")] = float(r["value"])
    results = []
    for r in rows:
        if not r["id"].startswith("ZB-T5-") or r["metric"] != "bubble_rate" or r["schedule"] not in SCHEDULES:
            continue
        key = r["id"].replace("ZB-T5-", "").rsplit("-" + r["schedule"], 1)[0]
        t = profiled[key]
        p = int(r["pp"])
        m = int(r["global_batch"]) // (int(r["micro_batch"]) * int(r["dp"]))
        sets = [f"parallel.schedule={SCHEDULES[r['schedule']]}", f"pipeline_only.stages={p}",
                f"pipeline_only.microbatches={m}",
                f"pipeline_only.times={{F: {t['T_F']}, I: {t['T_B']}, W: {t['T_W']}}}",
                f"pipeline_only.p2p_latency={t['T_comm']}"]
        args = [binary, "run", SCENARIO, "--format", "json"]
        for s in sets:
            args += ["--set", s]
        report = json.loads(subprocess.run(args, check=True, capture_output=True, text=True).stdout)
        longest = max(report["devices"], key=lambda d: d["span"])
        rate = (longest["span"] - longest["busy"]) / longest["span"]
        results.append((r["id"], r["schedule"], p, m, float(r["value"]), rate))
    print(f"{'id':28} {'schedule':8} {'p':>3} {'m':>4} {'published':>10} {'bubblesim':>10} {'error':>8}")
    worst = 0.0
    for rid, sched, p, m, pub, sim in results:
        worst = max(worst, abs(sim - pub))
        print(f"{rid:28} {sched:8} {p:3d} {m:4d} {pub:10.4f} {sim:10.4f} {sim - pub:+8.4f}")
    mean = sum(abs(s - p) for *_, p, s in results) / len(results)
    print(f"{len(results)} entries; mean absolute error {mean:.5f}, worst {worst:.5f} (bubble-rate points)")
    if not results or worst > MAX_ABS_ERROR:
        print(f"FAILED: worst error above {MAX_ABS_ERROR}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
