#!/usr/bin/env python3
"""NCCL measurements of ../shared/validation/published.csv (the NCCL-* rows: nccl-tests peak busbw
reported in NCCL's issue tracker, one p2p copy test) against `bubblesim collective` on one node of
the same GPUs with the presets' figures and NCCL's own choice of algorithm (--algo auto: NVLink
SHARP for an all-reduce inside a Hopper node, a ring otherwise), nothing set per row.

Compared: the rows a collective or a send/recv between GPUs of one node can express. The NVLS
share (nccl_protocol.hpp kNvlsShare) is fitted to one of them, NCCL-H100-NVLS-AR: it is printed
but not counted in the errors. Not compared, each with its reason (NOT_COMPARED): a NIC figure the
presets take from the row itself, and a GPU without a preset. A NCCL row in neither list fails
the script, so a new row is never skipped silently.

Usage: compare.py [BUBBLESIM] [PUBLISHED_CSV] [--max-mean=PERCENT] [--max-worst=PERCENT]. Prints
predicted vs published peak busbw (GB/s) per row, the mean and worst absolute error; exits 1 when
a limit is exceeded.
"""
import csv
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SIZES = "64M:8G"  # nccl-tests' peak busbw: the largest sizes

# id -> (scenario, op, ranks, what differs from the measurement)
COMPARED = {
    "NCCL-H100-NVLS-AR": ("dgx-h100.yaml", "all-reduce", 8, "NVLink SHARP; kNvlsShare is fitted to this row"),
    "NCCL-H100-NVL-eff": ("dgx-h100.yaml", "all-gather", 8,
                          "ring collectives other than NVLS all-reduce; all-gather here"),
    "NCCL-H100-AR-476": ("dgx-h100.yaml", "all-reduce", 8, "NVLink SHARP"),
    "NCCL-H200-AR": ("dgx-h200.yaml", "all-reduce", 8, "NVLink SHARP, NCCL 2.20"),
    "NCCL-A100-AR": ("dgx-a100.yaml", "all-reduce", 8, "ring; HPE Apollo 6500, NCCL 2.18"),
    "NCCL-A100-AR-pair": ("dgx-a100.yaml", "all-reduce", 2,
                          "ring; theirs two GPUs on a direct NV12 link, here two GPUs of an NVSwitch node"),
    "NCCL-H800-AR": ("hgx-h800.yaml", "all-reduce", 8,
                     "NVLink SHARP (215 GB/s busbw is above the H800's 200 GB/s of NVLink per direction)"),
    "NCCL-H100-P2P": ("dgx-h100.yaml", "sendrecv", 2,
                      "theirs CUDA peer copies (p2pBandwidthLatencyTest, unidirectional); here NCCL send/recv"),
}
FITTED = {"NCCL-H100-NVLS-AR"}
NOT_COMPARED = {
    "NCCL-NDR-NIC": "the NDR NIC presets take their 47.5 GB/s from this row: comparing would test nothing",
    "NCCL-H100PCIe-AR": "H100 PCIe with NVLink bridges: no preset (bubblesim's H100 is the SXM5 on NVSwitch)",
}


def published_value(text):
    """The first number of a published cell such as '~370' or '208'."""
    m = re.search(r"\d+(?:\.\d+)?", text)
    if not m:
        raise SystemExit(f"no number in published value {text!r}")
    return float(m.group())


def peak_busbw(bubblesim, scenario, op, ranks):
    cmd = [bubblesim, "collective", os.path.join(HERE, scenario), "--op", op, "--ranks", str(ranks),
           "--group", "intra", "--sizes", SIZES, "--format", "csv"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    rows = list(csv.DictReader(out.splitlines()))
    best = max(rows, key=lambda r: float(r["busbw_gbs"]))
    return float(best["busbw_gbs"]), int(best["size_bytes"])


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    flags = dict(a[2:].split("=", 1) for a in sys.argv[1:] if a.startswith("--") and "=" in a)
    bubblesim = args[0] if args else os.path.join(ROOT, "build", "bubblesim")
    published = args[1] if len(args) > 1 else os.path.join(ROOT, "..", "shared", "validation", "published.csv")
    with open(published, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["id"].startswith("NCCL-")]
    unknown = [r["id"] for r in rows if r["id"] not in COMPARED and r["id"] not in NOT_COMPARED]
    if unknown:
        print("NCCL rows neither compared nor listed as not compared: " + ", ".join(unknown))
        return 1
    print("NCCL measurements (peak busbw, GB/s) vs bubblesim collective on one node, preset figures")
    print(f"{'id':20} {'GPU':22} {'op':14} {'ranks':>5} {'published':>9} {'bubblesim':>9} {'at size':>11} {'error':>7}")
    errors = []
    for r in rows:
        if r["id"] not in COMPARED:
            continue
        scenario, op, ranks, note = COMPARED[r["id"]]
        want = published_value(r["value"])
        got, size = peak_busbw(bubblesim, scenario, op, ranks)
        err = 100 * (got - want) / want
        fitted = r["id"] in FITTED
        if not fitted:
            errors.append(err)
        print(f"{r['id']:20} {r['gpu'][:22]:22} {op:14} {ranks:5d} {want:9.1f} {got:9.1f} {size:11d} {err:+6.1f}%"
              + (" (fitted, not counted)" if fitted else ""))
        print(f"{'':20} {note}")
    mean = sum(abs(e) for e in errors) / len(errors)
    worst = max(abs(e) for e in errors)
    print(f"{len(errors)} entries; mean absolute error {mean:.1f}%, worst {worst:.1f}%")
    print("\nNot compared:")
    for r in rows:
        if r["id"] in NOT_COMPARED:
            print(f"  {r['id']:20} {NOT_COMPARED[r['id']]}")
    if "max-mean" in flags and mean > float(flags["max-mean"]):
        print(f"FAIL: mean absolute error {mean:.1f}% above {flags['max-mean']}%")
        return 1
    if "max-worst" in flags and worst > float(flags["max-worst"]):
        print(f"FAIL: worst absolute error {worst:.1f}% above {flags['max-worst']}%")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
