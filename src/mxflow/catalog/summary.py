"""``OUT/summary.json`` from the catalog.

The format is the spine's ``{"datasets": [DatasetResult as dict, ...]}`` with,
per dataset, ``sample``, ``mode`` and ``wedge`` ("full" or "first-last"), plus
the catalog's ``key`` (the work directory relative to OUT), ``kind`` (sweep
or wedge) and ``attempts``.  Paths of outputs are relative to OUT; ``path`` is
the raw image template (outside OUT, absolute).  Merges, when run, are
listed under ``"merges"`` (each a :class:`~mxflow.model.MergeRecord` as a
dict: name, status, reason, inputs, workdir, summary) and hit maps under
``"hitmaps"``.  The file is always written atomically (write then rename).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from mxflow.catalog.db import Catalog
from mxflow.model import DatasetResult, to_dict
from mxflow.util.files import write_json

SUMMARY_NAME = "summary.json"


def dataset_entry(row: dict[str, Any]) -> dict[str, Any]:
    """One summary entry from a ``datasets`` row (finished or not)."""
    if row.get("result_json"):
        entry = json.loads(row["result_json"])
    else:
        entry = to_dict(DatasetResult(name=row["name"], path=row["template"] or ""))
        entry.update(
            wavelength=row["wavelength"],
            total_rotation=row["total_rotation"],
            osc_width=row["osc_width"],
        )
    # the catalog row is authoritative for the state and the description
    entry.update(
        name=row["name"],
        status=row["status"],
        reason=row["reason"] or "",
        sample=row["sample"] or "",
        mode=row["mode"] or "",
        wedge=row["wedge"] or "full",
        workdir=row["key"],
        key=row["key"],
        kind=row["kind"],
        attempts=row["attempts"],
    )
    entry.setdefault("path", row["template"])
    if not entry.get("path"):
        entry["path"] = row["template"]
    return entry


def summary_dict(catalog: Catalog) -> dict[str, Any]:
    """The whole summary as a plain dict."""
    datasets = [dataset_entry(r) for r in catalog.rows()]
    out: dict[str, Any] = {
        "datasets": datasets,
        "counts": catalog.counts(),
        "updated": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    merges = [to_dict(m) for m in catalog.merges()]
    hitmaps = [_product(p) for p in catalog.products("hitmap")]
    if merges:
        out["merges"] = merges
    if hitmaps:
        out["hitmaps"] = hitmaps
    return out


def _product(p: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": p["name"],
        "status": p["status"],
        "reason": p["reason"] or "",
        "result": p["result"],
    }


def write_summary(out: str | Path, catalog: Catalog) -> Path:
    """Write ``OUT/summary.json`` atomically; returns its path."""
    path = Path(out) / SUMMARY_NAME
    write_json(path, summary_dict(catalog))
    return path
