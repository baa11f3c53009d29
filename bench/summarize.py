#!/usr/bin/env python3
"""Summarises the last `cargo bench -p mxfed-bench` run from criterion's JSON output.

    python3 bench/summarize.py [CRITERION_DIR]     (default: $CARGO_TARGET_DIR or target, /criterion)

For every benchmark it prints criterion's point estimate (the slope of the linear fit, else the
mean), the median per-iteration time, and the fastest sample's per-iteration time. On a busy
machine the fastest sample is the best guide to the uncontended cost; the estimate includes
whatever else the machine was doing. Then, per group, mxfed's speed-up over ruma.
Standard library only.
"""

import json
import os
import sys
from pathlib import Path


def fmt(ns: float) -> str:
    if ns >= 1000:
        return f"{ns / 1000:.2f} µs"
    return f"{ns:.0f} ns"


def main() -> int:
    if len(sys.argv) > 1:
        root = Path(sys.argv[1])
    else:
        root = Path(os.environ.get("CARGO_TARGET_DIR", "target")) / "criterion"
    if not root.is_dir():
        print(f"summarize: no criterion output at {root}", file=sys.stderr)
        return 1
    rows = []
    for bench in sorted(root.glob("*/*/new/benchmark.json")):
        meta = json.loads(bench.read_text())
        est = json.loads((bench.parent / "estimates.json").read_text())
        sample = json.loads((bench.parent / "sample.json").read_text())
        point = (est.get("slope") or est["mean"])["point_estimate"]
        median = est["median"]["point_estimate"]
        fastest = min(t / n for t, n in zip(sample["times"], sample["iters"]))
        rows.append((meta["group_id"], meta["function_id"] or "", point, median, fastest))

    print(f"{'benchmark':<48} {'estimate':>11} {'median':>11} {'fastest':>11}")
    for group, func, point, median, fastest in rows:
        print(f"{group + '/' + func:<48} {fmt(point):>11} {fmt(median):>11} {fmt(fastest):>11}")

    print()
    print(f"{'group':<24} {'mxfed':>11} {'ruma':>11} {'speed-up (estimate)':>20} {'(fastest)':>10}")
    by_group: dict[str, dict[str, tuple[float, float]]] = {}
    for group, func, point, _, fastest in rows:
        by_group.setdefault(group, {})[func] = (point, fastest)
    for group, funcs in by_group.items():
        if "mxfed" in funcs and "ruma" in funcs:
            (mp, mf), (rp, rf) = funcs["mxfed"], funcs["ruma"]
            print(f"{group:<24} {fmt(mp):>11} {fmt(rp):>11} {rp / mp:>19.2f}x {rf / mf:>9.2f}x")
    sig = by_group.get("10_event_signature", {})
    if {"mxfed", "dalek_verify_strict"} <= sig.keys():
        for i, what in enumerate(("estimate", "fastest")):
            over = sig["mxfed"][i] / sig["dalek_verify_strict"][i] - 1
            print(f"10_event_signature: mxfed vs raw dalek verify_strict ({what}): {over:+.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
