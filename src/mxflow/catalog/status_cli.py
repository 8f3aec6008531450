"""Show the state of an output directory: one row per dataset, like KAMO's GUI.

Columns: dataset (its work directory under OUT), sample, wavelength (Å),
total rotation φ and Δφ per frame (degrees), % of spots indexed, space group,
unit cell (Å, degrees), resolution (Å), completeness (%), and the status —
with the reason for failed datasets ("no dataset has status S" when
--status S matches none).  Then per merge a table of its merged
clusters (datasets, SG, cell, d_min, completeness, multiplicity, CC½, I/σ)
with the recommended one marked and the path of its final/merged.mtz (or
the merge's status and why), the files discovery could not use (rejected:
never processed) with the reason for each, one line per sample group (pins merged as
one sample by 'mxflow run --group-by-cell', whose datasets the table shows under
the group's name), one line per hit map and the last run's state (running,
ok, failed or interrupted, and why: a run killed with kill -9 shows as
interrupted, its process being gone).  Safe to run while
'mxflow run' or 'mxflow watch' is writing OUT (the catalog is read-only here).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from mxflow.catalog.db import SAMPLE_GROUP, Catalog
from mxflow.catalog.lock import lock_holder, run_is_gone
from mxflow.catalog.merge_table import format_record
from mxflow.catalog.summary import summary_dict

COLUMNS = (
    "dataset",
    "sample",
    "λ/Å",
    "φ/°",
    "Δφ/°",
    "idx%",
    "SG",
    "cell",
    "d/Å",
    "cmpl%",
    "status",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", metavar="OUT", help="output directory of 'mxflow run' / 'watch'")
    parser.add_argument(
        "--status",
        dest="only",
        metavar="STATUS",
        help="only datasets with this status (ok, failed, pending, running), or only the "
        "files discovery rejected (rejected)",
    )
    parser.add_argument("--json", action="store_true", help="print summary.json's content instead")
    parser.add_argument(
        "--width",
        type=int,
        default=60,
        metavar="N",
        help="truncate the dataset column to N characters (default 60)",
    )


def _num(v: Any, fmt: str) -> str:
    return "" if v is None else format(v, fmt)


def row_cells(row: dict[str, Any], width: int = 60) -> list[str]:
    """The table cells of one catalog row."""
    cell = json.loads(row["unit_cell"]) if row.get("unit_cell") else None
    cell_text = " ".join(f"{x:.1f}" for x in cell) if cell else ""
    completeness = row.get("completeness")
    status = row["status"]
    if row.get("reason") and status != "ok":
        status = f"{status}: {row['reason']}"
    if row.get("attempts", 0) > 1:
        status += f" ({row['attempts']} attempts)"
    key = row["key"]
    if len(key) > width:
        key = "…" + key[-(width - 1) :]
    return [
        key,
        row.get("sample") or "",
        _num(row.get("wavelength"), ".4f"),
        _num(row.get("total_rotation"), ".1f"),
        _num(row.get("osc_width"), ".2f"),
        _num(None if row.get("indexed_fraction") is None else 100 * row["indexed_fraction"], ".0f"),
        row.get("space_group") or "",
        cell_text,
        _num(row.get("d_min"), ".2f"),
        _num(None if completeness is None else 100 * completeness, ".1f"),
        status,
    ]


def format_rejected(rejected: list[dict[str, Any]]) -> list[str]:
    """The lines about the files discovery rejected: a count, then ``  path: reason`` each
    (none when no file was rejected)."""
    if not rejected:
        return []
    head = f"{len(rejected)} files not used (rejected by discovery, never processed):"
    return [head, *(f"  {r['path']}: {r['reason']}" for r in rejected)]


def format_sample_group(group: dict[str, Any]) -> str:
    """One recorded sample group: ``sample cell1 (grouped by cell): 16 dataset(s) of
    16 sample(s) (CPS0001-01 … CPS0016-01), P 43 21 2, 78.0 78.0 37.0 90.0 90.0 90.0``."""
    samples = group.get("samples") or []
    joined = f"{samples[0]} … {samples[-1]}" if len(samples) > 2 else ", ".join(samples)
    text = (
        f"sample {group['name']} (grouped by {group.get('by', 'cell')}): "
        f"{len(group.get('datasets') or [])} dataset(s) of {len(samples)} sample(s)"
        + (f" ({joined})" if joined else "")
    )
    if group.get("space_group"):
        text += f", {group['space_group']}"
    if group.get("cell"):
        text += ", " + " ".join(f"{x:.1f}" for x in group["cell"])
    return text


def format_table(rows: list[list[str]], header: tuple[str, ...] = COLUMNS) -> str:
    """Left-aligned text columns; the last column is not padded."""
    table = [list(header), *rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    lines = []
    for r in table:
        cells = [c.ljust(w) for c, w in zip(r[:-1], widths[:-1], strict=True)] + [r[-1]]
        lines.append("  ".join(cells).rstrip())
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    with Catalog(args.out, readonly=True) as catalog:
        if args.json:
            json.dump(summary_dict(catalog), sys.stdout, indent=1)
            print()
            return 0
        rejected = catalog.rejected()
        if args.only == "rejected":
            print("\n".join(format_rejected(rejected)) or "no file was rejected")
            return 0
        rows = catalog.rows(args.only)
        grouped = catalog.grouped_samples()
        for r in rows:  # grouped datasets show the sample they are merged as
            r["sample"] = grouped.get(r["key"], r["sample"])
        counts = catalog.counts()
        if rows:
            print(format_table([row_cells(r, args.width) for r in rows]))
        elif args.only:
            print(f"no dataset has status {args.only}")
        else:
            print("no datasets yet")
        print()
        print("datasets: " + (", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "none"))
        for line in format_rejected(rejected):
            print(line)
        for g in catalog.sample_groups():
            print(format_sample_group(g))
        for m in catalog.merges():
            print(format_record(m, args.out))
        for p in catalog.products():
            if p["kind"] not in ("merge", SAMPLE_GROUP):  # hit maps
                extra = f": {p['reason']}" if p["reason"] else ""
                print(f"{p['kind']} {p['name']}: {p['status']}{extra}")
        runs = catalog.runs()
    holder = lock_holder(args.out)
    live = bool(runs) and runs[-1]["status"] == "running" and not run_is_gone(runs[-1], args.out)
    if holder and live:
        print(f"a run is in progress ({holder})")
    elif holder:  # merge, report, process or hitmap
        print(f"another mxflow command is writing {args.out} now ({holder})")
    if runs and not live:
        print(format_run(runs[-1], args.out))
    return 0


def format_run(run: dict[str, Any], out: str) -> str:
    """``last run: run ROOT at 2025-01-31 14:02, interrupted (stopped by SIGTERM; …)``.

    A run the catalog still has as running but whose process is gone (killed:
    :func:`~mxflow.catalog.lock.run_is_gone`) is shown as interrupted, saying so.
    """
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(run["started"] or 0))
    status, note = run["status"], run.get("note")
    if run_is_gone(run, out):
        status = "interrupted"
        note = (
            f"its process, PID {run['pid']} on {run['host']}, is gone without recording its "
            "end: killed, or the machine went down"
        )
    return f"last run: {run['command']} at {when}, {status}" + (f" ({note})" if note else "")
