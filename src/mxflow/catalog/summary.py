"""``OUT/summary.json`` from the catalog.

The format is the spine's ``{"datasets": [DatasetResult as dict, ...]}`` with,
per dataset, ``sample``, ``mode`` and ``wedge`` ("full" or "first-last"), plus
the catalog's ``key`` (the work directory relative to OUT), ``kind`` (sweep
or wedge) and ``attempts``.  Paths of outputs are relative to OUT; ``path`` is
the raw image template (outside OUT, absolute).  Merges, when run, are
listed under ``"merges"`` (each a :class:`~mxflow.model.MergeRecord` as a
dict: name, status, reason, inputs, workdir, summary) and hit maps under
``"hitmaps"``.  Samples decided after processing (``mxflow run --group-by-cell``)
are listed under ``"sample_groups"`` (name, by, space_group, cell, datasets,
samples); a grouped dataset's ``sample`` is its group, ``grouped_from`` the
sample discovery gave it.  The files discovery could not use are listed under
``"rejected"`` (path, reason, first_seen): always present, empty when none was
rejected.  The file is always written atomically (write then rename).
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


def dataset_entry(row: dict[str, Any], group: str | None = None) -> dict[str, Any]:
    """One summary entry from a ``datasets`` row (finished or not).

    ``group``: the sample a recorded sample group (``mxflow run --group-by-cell``)
    gives the dataset; it is then the entry's ``sample``, and ``grouped_from`` the
    sample discovery gave it.
    """
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
    if group:
        entry.update(sample=group, grouped_from=row["sample"] or "")
    entry.setdefault("path", row["template"])
    if not entry.get("path"):
        entry["path"] = row["template"]
    return entry


def summary_dict(catalog: Catalog) -> dict[str, Any]:
    """The whole summary as a plain dict."""
    grouped = catalog.grouped_samples()
    datasets = [dataset_entry(r, grouped.get(r["key"])) for r in catalog.rows()]
    out: dict[str, Any] = {
        "datasets": datasets,
        "counts": catalog.counts(),
        "rejected": [
            {"path": r["path"], "reason": r["reason"], "first_seen": r["first_seen"]}
            for r in catalog.rejected()
        ],
        "updated": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    merges = [to_dict(m) for m in catalog.merges()]
    hitmaps = [_product(p) for p in catalog.products("hitmap")]
    sample_groups = catalog.sample_groups()
    if sample_groups:
        out["sample_groups"] = sample_groups
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
