#!/usr/bin/env python3
"""Medians over repeated matrix_bench.py runs, per label, and ratios against a baseline label.

    python bench/summarize.py runs.jsonl --baseline synapse-pg

Reads the JSON lines that ``matrix_bench.py --json-out`` appends; runs whose status isn't "ok"
are counted but left out of the medians. Prints a Markdown table (paste-ready for bench/README.md).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import defaultdict
from typing import Any

# (column title, scenario, path into "result", higher is better)
METRICS: list[tuple[str, str, tuple[str, ...], bool]] = [
    ("send events/s", "send", ("events_per_s",), True),
    ("send p50 ms", "send", ("send", "p50_ms"), False),
    ("send p90 ms", "send", ("send", "p90_ms"), False),
    ("send p99 ms", "send", ("send", "p99_ms"), False),
    ("send server CPU ms/req", "send", ("cpu", "server_cpu_ms_per_request"), False),
    ("/messages newest p50 ms", "messages", ("newest_page", "p50_ms"), False),
    ("/messages newest p99 ms", "messages", ("newest_page", "p99_ms"), False),
    ("/messages page p50 ms", "messages", ("page", "p50_ms"), False),
    ("/messages page p99 ms", "messages", ("page", "p99_ms"), False),
    ("/messages server CPU ms/req", "messages", ("cpu", "server_cpu_ms_per_request"), False),
    ("fanout last waiter p50 ms", "sync_fanout", ("last_waiter", "p50_ms"), False),
    ("fanout last waiter p99 ms", "sync_fanout", ("last_waiter", "p99_ms"), False),
    ("fanout every waiter p50 ms", "sync_fanout", ("every_waiter", "p50_ms"), False),
    ("fanout server CPU ms/req", "sync_fanout", ("cpu", "server_cpu_ms_per_request"), False),
    ("initial sync full p50 ms", "initial_sync", ("full", "p50_ms"), False),
    ("initial sync full p99 ms", "initial_sync", ("full", "p99_ms"), False),
    ("initial sync limit 1 p50 ms", "initial_sync", ("limit1", "p50_ms"), False),
    ("initial sync limit 1 p99 ms", "initial_sync", ("limit1", "p99_ms"), False),
    ("incremental sync p50 ms", "incremental_sync", ("sync", "p50_ms"), False),
    ("incremental sync p99 ms", "incremental_sync", ("sync", "p99_ms"), False),
]


def dig(d: Any, path: tuple[str, ...]) -> float | None:
    for key in path:
        if not isinstance(d, dict) or key not in d:
            return None
        d = d[key]
    return d if isinstance(d, (int, float)) else None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("files", nargs="+")
    p.add_argument("--baseline", help="label to divide by (ratio columns)")
    p.add_argument("--ranges", action="store_true", help="show min-max of the runs instead of n")
    args = p.parse_args(argv)

    values: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    runs: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    for path in args.files:
        with open(path, encoding="utf-8") as f:
            for line in f:
                if not line.strip():
                    continue
                row = json.loads(line)
                label, scenario, result = row.get("label") or row["base_url"], row["scenario"], row["result"]
                ok = result.get("status") == "ok"
                runs[label][scenario][0 if ok else 1] += 1
                if not ok:
                    continue
                for title, sc, key, _ in METRICS:
                    if sc == scenario and (v := dig(result, key)) is not None:
                        values[label][title].append(v)

    labels = list(values)
    if not labels:
        print("no successful runs", file=sys.stderr)
        return 1
    med = {lb: {t: statistics.median(v) for t, v in values[lb].items()} for lb in labels}
    header = ["metric (median)"] + labels
    if args.baseline in med:
        header += [f"{lb} / {args.baseline}" for lb in labels if lb != args.baseline]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for title, _, _, higher in METRICS:
        cells = [title]
        for lb in labels:
            v = med[lb].get(title)
            n = len(values[lb].get(title, []))
            vs = values[lb].get(title, [])
            extra = f"{min(vs):,.1f}–{max(vs):,.1f}" if args.ranges and vs else f"n={n}"
            cells.append("-" if v is None else f"{v:,.1f} ({extra})")
        if args.baseline in med:
            base = med[args.baseline].get(title)
            for lb in labels:
                if lb == args.baseline:
                    continue
                v = med[lb].get(title)
                if v is None or not base:
                    cells.append("-")
                else:
                    ratio = v / base
                    better = ratio > 1 if higher else ratio < 1
                    cells.append(f"{ratio:.2f}x ({'better' if better else 'worse'})")
        print("| " + " | ".join(cells) + " |")
    print()
    for lb in labels:
        print(f"{lb}: " + ", ".join(f"{sc} {ok} ok / {bad} not ok" for sc, (ok, bad) in runs[lb].items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
