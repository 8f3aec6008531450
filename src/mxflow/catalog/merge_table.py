"""The merged clusters of a sample as a text table, with the recommended one marked.

``mxflow merge`` prints it after merging, ``mxflow run`` at its end and
``mxflow status`` from the catalog's merge records.  It lives here, below
``merge``, so that ``mxflow status`` (catalog) can use it; the choice of the
recommended cluster is ``mxflow.merge.final.recommend``, and the catalog
side learns it from the ``final/final.json`` that choice wrote.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from mxflow.model import ClusterResult, MergeRecord, MergeSummary
from mxflow.util.files import read_json

FINAL_DIR = "final"  # OUT/merge/<sample>/final/: the recommended cluster's files
FINAL_JSON = "final.json"

COLUMNS = ("", "cluster", "n", "SG", "cell", "d/Å", "cmpl%", "mult", "CC½", "I/σ")


def _f(v: float | None, spec: str) -> str:
    return format(v, spec) if v is not None and math.isfinite(v) else "-"


def cluster_label(c: ClusterResult, summary: MergeSummary) -> str:
    """``12`` (or ``cc 12`` when the summary holds clusters of several methods)."""
    several = len({x.method for x in summary.clusters}) > 1
    return f"{c.method} {c.id}" if several else str(c.id)


def cluster_cells(c: ClusterResult, mark: bool = False) -> list[str]:
    """The table cells of one merged cluster (the first one "*" when recommended)."""
    ov = c.stats.overall if c.stats else None
    cell = c.unit_cell or (c.stats.unit_cell if c.stats else None)
    return [
        "*" if mark else "",
        str(c.id),
        str(len(c.members)),
        c.space_group or "-",
        " ".join(f"{x:.2f}" if i < 3 else f"{x:.1f}" for i, x in enumerate(cell)) if cell else "-",
        _f(c.d_min, ".2f"),
        _f(100 * c.completeness, ".1f"),
        _f(c.multiplicity, ".1f"),
        _f(c.cc_half, ".3f"),
        _f(ov.i_over_sigma if ov else None, ".1f"),
    ]


def _columns(rows: list[list[str]]) -> list[str]:
    table = [list(COLUMNS), *rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(COLUMNS))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines


def format_clusters(
    summary: MergeSummary,
    recommended: tuple[ClusterResult, str] | None = None,
    final_mtz: str | Path | None = None,
    title: str = "",
) -> str:
    """A sample's merged clusters: a title line, one row per merged cluster, then which is
    recommended, why, and ``final_mtz`` (its merged MTZ, the ``final/`` copy).

    ``recommended``: (cluster, reason) as ``mxflow.merge.final.recommend`` gives it;
    cell in Å and degrees, d in Å, completeness in %.
    """
    title = title or f"sample {summary.sample}" + (f" ({summary.label})" if summary.label else "")
    merged = [c for c in summary.clusters if c.ok]
    failed = [c for c in summary.clusters if not c.ok]
    head = f"{title}: {len(merged)} cluster(s) merged" + (
        f", {len(failed)} failed" if failed else ""
    )
    if not merged:
        return f"{head}: {summary.failure_reason()}"
    best = recommended[0] if recommended else None
    rows = []
    for c in merged:
        row = cluster_cells(c, best is not None and (c.method, c.id) == (best.method, best.id))
        row[1] = cluster_label(c, summary)
        rows.append(row)
    lines = [head, *("  " + line for line in _columns(rows))]
    if recommended:
        lines.append(f"  * recommended: cluster {cluster_label(best, summary)}, {recommended[1]}")
        if final_mtz:
            lines.append(f"    merged MTZ for refinement: {final_mtz}")
    return "\n".join(lines)


def read_final(merge_dir: str | Path) -> dict[str, Any] | None:
    """``final/final.json`` of a merge's folder, or None when there is none (or it is unreadable)."""
    path = Path(merge_dir) / FINAL_DIR / FINAL_JSON
    try:
        data = read_json(path)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def final_choice(summary: MergeSummary, merge_dir: str | Path) -> tuple[ClusterResult, str] | None:
    """The (cluster, reason) that ``final/`` of ``merge_dir`` holds, when it is one of
    ``summary``'s merged clusters."""
    final = read_final(merge_dir)
    if not final:
        return None
    for c in summary.clusters:
        if c.ok and (c.method, c.id) == (final.get("method"), final.get("cluster")):
            return c, str(final.get("reason", ""))
    return None


def format_record(record: MergeRecord, out: str | Path) -> str:
    """The table of one merge of ``mxflow run`` (a catalog record; ``out``: OUT), its
    recommended cluster read from ``OUT/<workdir>/final/``."""
    title = f"merge {record.name}"
    if record.summary is None:
        return f"{title}: {record.status}" + (f": {record.reason}" if record.reason else "")
    merge_dir = Path(out) / record.workdir
    choice = final_choice(record.summary, merge_dir)
    mtz = merge_dir / FINAL_DIR / "merged.mtz"
    return format_clusters(record.summary, choice, mtz if choice else None, title)
