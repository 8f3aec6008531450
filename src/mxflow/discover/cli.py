"""List the image sweeps found under directories or files.

Directories are walked recursively.  One-file-per-frame images (CBF, SMV)
are grouped into templates (frame number as ####); Eiger master / NeXus
files are one sweep each.  For every sweep the table shows the frame range,
the rotation (start, width per frame, total, in degrees), wavelength (Å),
distance (mm), whether it is a rotation sweep or a still / raster scan, and
the frames missing from the range.  Files that cannot be read are listed
after the table; they never stop the search.

With --collection, PATH is a beamline session (ZOO layout or any tree):
the table lists its datasets with sample, mode (multi / helical / single),
and the wedges each is cut into (--wedge-deg, 30° as KAMO's ZOO pass;
0 for a sweep processed only whole, as multi-mode small wedges).  The
summary counts what ``mxflow run`` would process, as it does: every whole
sweep once, plus every wedge cut from one; raster scans (hit maps, never
processed) and datasets still being written are counted separately.

Example:
  mxflow find /data/2024/visit1
  mxflow find /data/run --json > sweeps.json
  mxflow find --collection /data/240101_BL45XU_user --sheet samples.csv
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mxflow.discover.sweeps import find_sweeps
from mxflow.errors import MxflowError
from mxflow.model import ImageSweep, to_dict


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "paths", nargs="+", type=Path, metavar="PATH", help="directories or image files"
    )
    parser.add_argument("--json", action="store_true", help="print sweeps and problems as JSON")
    parser.add_argument(
        "--collection",
        action="store_true",
        help="PATH is a collection root: list datasets and wedges",
    )
    parser.add_argument("--sheet", type=Path, help="sample-sheet CSV (with --collection)")
    parser.add_argument("--sample", help="sample name for datasets not in the sheet")
    parser.add_argument(
        "--wedge-deg", type=float, default=30.0, help="wedge size in degrees (0: do not cut)"
    )
    parser.add_argument(
        "--settle-s",
        type=float,
        default=60.0,
        help="datasets modified less than this many seconds ago are still being written",
    )


def format_ranges(numbers: list[int]) -> str:
    """Compact frame list: [3, 4, 5, 9] -> '3-5,9'."""
    runs: list[list[int]] = []
    for n in sorted(numbers):
        if runs and n == runs[-1][1] + 1:
            runs[-1][1] = n
        else:
            runs.append([n, n])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


def sweep_row(s: ImageSweep) -> list[str]:
    """The table cells of one sweep."""
    return [
        s.template,
        f"{s.first}-{s.last}",
        f"{s.osc_start:.2f}",
        f"{s.osc_width:.3f}",
        f"{s.total_rotation:.1f}",
        f"{s.wavelength:.5f}",
        f"{s.distance:.1f}",
        "rotation" if s.is_rotation else "still",
        format_ranges(s.missing) if s.missing else "-",
    ]


HEADINGS = ["template", "frames", "phi0", "dphi", "total", "lambda/A", "dist/mm", "kind", "missing"]


def format_table(sweeps: list[ImageSweep]) -> str:
    """Plain-text table, one row per sweep, columns aligned."""
    rows = [HEADINGS] + [sweep_row(s) for s in sweeps]
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADINGS))]
    lines = []
    for r in rows:
        cells = [r[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(r[1:-2], widths[1:-2], strict=True)
        ]
        cells += [r[-2].ljust(widths[-2]), r[-1]]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def processing_counts(coll, root: Path, wedge_deg: float | None) -> dict:
    """What ``mxflow run`` schedules for ``coll`` (:func:`mxflow.schedule.collection.plan`):
    ``sweeps`` (whole sweeps), ``wedges`` (cut from them), ``to_process`` (the two
    together), ``raster_scans``, ``still_being_written``, and ``wedges_of``
    (sweep template -> wedges cut from it)."""
    from collections import Counter

    from mxflow.schedule.collection import plan

    items = plan(coll, root, wedge_deg or 30.0)
    n_sweeps = sum(1 for i in items if i.kind == "sweep")
    return {
        "sweeps": n_sweeps,
        "wedges": len(items) - n_sweeps,
        "to_process": len(items),
        "raster_scans": len(coll.raster_scans),
        "still_being_written": len(coll.incomplete),
        "wedges_of": dict(Counter(i.dataset.sweep.template for i in items if i.kind == "wedge")),
    }


def format_collection(coll, root: Path, wedge_deg: float | None = 30.0) -> str:
    """Plain-text table of a collection's datasets and a summary line counting what
    ``mxflow run`` would process (see :func:`processing_counts`)."""
    counts = processing_counts(coll, root, wedge_deg)
    n_wedges = counts["wedges_of"]
    heads = ["dataset", "sample", "mode", "frames", "total", "wedges", "anom"]
    rows = [heads] + [
        [
            d.name,
            d.sample,
            d.mode,
            f"{d.sweep.first}-{d.sweep.last}",
            f"{d.sweep.total_rotation:.1f}",
            str(n_wedges.get(d.sweep.template, 0)),
            "yes" if d.anomalous else "no",
        ]
        for d in coll.datasets
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(heads))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    deg = f" of {wedge_deg:g}°" if wedge_deg else ""
    lines.append(
        f"\n{len(coll.datasets)} datasets: {counts['to_process']} to process "
        f"({counts['sweeps']} whole sweeps + {counts['wedges']} wedges{deg}), "
        f"{counts['raster_scans']} raster/still scans (hit maps, not processed), "
        f"{counts['still_being_written']} still being written"
    )
    for name, why in coll.waiting.items():
        lines.append(f"  waiting: {name}: {why}")
    return "\n".join(lines)


def run_collection(args: argparse.Namespace) -> int:
    from mxflow.discover.collection import discover_collection

    if len(args.paths) != 1:
        raise MxflowError("--collection takes exactly one collection root")
    coll = discover_collection(
        args.paths[0],
        sample_sheet=args.sheet,
        default_sample=args.sample,
        wedge_deg=args.wedge_deg or None,
        settle_s=args.settle_s,
    )
    wedge_deg = args.wedge_deg or None
    if args.json:
        doc = to_dict(coll)
        counts = processing_counts(coll, args.paths[0], wedge_deg)
        doc["to_process"] = {k: v for k, v in counts.items() if k != "wedges_of"}
        print(json.dumps(doc, indent=1))
        return 0
    print(format_collection(coll, args.paths[0], wedge_deg))
    if coll.problems:
        print(f"{len(coll.problems)} files could not be used:", file=sys.stderr)
        for path, reason in coll.problems:
            print(f"  {path}: {reason}", file=sys.stderr)
    if coll.warnings:
        print(f"{len(coll.warnings)} files used with a warning:", file=sys.stderr)
        for path, reason in coll.warnings:
            print(f"  {path}: {reason}", file=sys.stderr)
    return 0


def run(args: argparse.Namespace) -> int:
    if args.collection:
        return run_collection(args)
    result = find_sweeps(args.paths)
    if args.json:
        print(
            json.dumps(
                {
                    "sweeps": [to_dict(s) for s in result.sweeps],
                    "problems": [{"path": p, "reason": r} for p, r in result.problems],
                },
                indent=1,
            )
        )
        return 0
    if result.sweeps:
        print(format_table(result.sweeps))
    n_rot = sum(s.is_rotation for s in result.sweeps)
    print(
        f"\n{len(result.sweeps)} sweeps ({n_rot} rotation, {len(result.sweeps) - n_rot} still/scan)"
    )
    if result.problems:
        print(f"{len(result.problems)} files could not be used:", file=sys.stderr)
        for path, reason in result.problems:
            print(f"  {path}: {reason}", file=sys.stderr)
    return 0 if result.sweeps or not result.problems else 1
