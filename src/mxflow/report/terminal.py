"""Plain-text output for terminals: the final summary table and progress bars."""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

from mxflow.model import DatasetResult

T = TypeVar("T")

COLUMNS = (
    "Dataset",
    "Sample",
    "Mode",
    "Frames",
    "SG",
    "d_min",
    "Cmpl%",
    "CC½",
    "I/σ",
    "Time",
    "Status",
)


def _row(r: DatasetResult, reason_width: int) -> list[str]:
    ov = r.stats.overall if r.stats else None

    def f(v: float | None, spec: str) -> str:
        return format(v, spec) if v is not None and math.isfinite(v) else "-"

    status = r.status
    if status == "failed" and r.reason:
        reason = r.reason.replace("\n", " ")
        if len(reason) > reason_width:
            reason = reason[: reason_width - 1] + "…"
        status = f"FAILED: {reason}"
    return [
        r.name or "?",
        r.sample,
        r.mode,
        r.wedge or "full",
        r.space_group or "-",
        f(r.d_min, ".2f"),
        f(ov.completeness * 100 if ov else None, ".1f"),
        f(ov.cc_half if ov else None, ".3f"),
        f(ov.i_over_sigma if ov else None, ".1f"),
        f"{r.wall_s / 60:.1f}m" if r.wall_s else "-",
        status,
    ]


def format_summary_table(
    results: Iterable[DatasetResult | dict[str, Any]], reason_width: int = 70
) -> str:
    """A fixed-width table of datasets (one line each) and a count line, for the terminal.

    ``results`` are DatasetResult objects or their dicts (summary.json rows).
    Numeric columns are right-aligned; a failed dataset shows its reason,
    shortened to ``reason_width`` characters.
    """
    rows = [
        _row(r if isinstance(r, DatasetResult) else DatasetResult.from_dict(r), reason_width)
        for r in results
    ]
    if not rows:
        return "No datasets."
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(COLUMNS)]
    right = {5, 6, 7, 8, 9}

    def line(cells: list[str] | tuple[str, ...]) -> str:
        out = []
        for i, c in enumerate(cells):
            if i == len(cells) - 1:
                out.append(c)
            else:
                out.append(c.rjust(widths[i]) if i in right else c.ljust(widths[i]))
        return "  ".join(out).rstrip()

    text = [line(COLUMNS), line(["-" * w for w in widths])]
    text += [line(r) for r in rows]
    n_ok = sum(r[-1] == "ok" for r in rows)
    n_failed = sum(r[-1].startswith("FAILED") for r in rows)
    text.append(
        f"{len(rows)} datasets: {n_ok} ok, {n_failed} failed, {len(rows) - n_ok - n_failed} other"
    )
    return "\n".join(text)


def progress(
    items: Iterable[T], desc: str, total: int | None = None, unit: str = "dataset"
) -> Iterator[T]:
    """Iterate with a tqdm progress bar on a terminal (plain iteration otherwise)."""
    if not sys.stderr.isatty():
        yield from items
        return
    from tqdm import tqdm

    yield from tqdm(items, desc=desc, total=total, unit=unit, dynamic_ncols=True)
