"""After processing: merge each sample's datasets, and hit maps of raster scans.

Both stages are optional: they run only when their module provides the
function (``mxflow.merge.merge_sample``, ``mxflow.hitmap.hitmap``), and a
failure of one sample or one scan is recorded in the catalog's ``products``
table without stopping the others.  Both are idempotent: a merge whose input
datasets have not changed since its last success, or a hit map of a scan
with the same frames, is not redone.

Merge routes per sample (as ZOO does with KAMO):

``proc``   every successfully processed whole dataset → ``OUT/merge/<sample>/``
``30deg``  the wedges plus the uncut small-wedge (``multi``) datasets →
           ``OUT/merge_30deg/<sample>/`` (only when the sample has wedges)
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import re
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mxflow.catalog.db import Catalog
from mxflow.catalog.summary import write_summary
from mxflow.model import DatasetResult, ImageSweep

MIN_DATASETS_TO_MERGE = 2


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", name).strip("._") or "sample"


def absolute_result(result: DatasetResult, out: Path) -> DatasetResult:
    """A copy of ``result`` whose output paths are absolute (the catalog keeps them relative to OUT)."""
    r = dataclasses.replace(result)
    for name in ("unmerged_mtz", "merged_mtz", "integrated_expt", "integrated_refl", "workdir"):
        value = getattr(r, name)
        if value and not os.path.isabs(value):
            setattr(r, name, str(out / value))
    return r


def merge_groups(catalog: Catalog) -> dict[tuple[str, str], list[tuple[str, DatasetResult]]]:
    """(sample, route) → [(key, result)] of successfully processed datasets.

    Route ``proc``: every whole sweep.  Route ``30deg`` (only for samples
    that have wedges): every wedge, plus the whole sweeps that were not cut
    (multi-mode small wedges), as KAMO's ``_kamo_30deg`` holds them.
    """
    groups: dict[tuple[str, str], list[tuple[str, DatasetResult]]] = defaultdict(list)
    all_rows = catalog.rows()
    cut = {r["parent"] for r in all_rows if r["kind"] == "wedge" and r["parent"]}
    samples_with_wedges = {r["sample"] for r in all_rows if r["kind"] == "wedge"}
    for row in all_rows:
        if row["status"] != "ok":
            continue
        result = catalog.result(row["key"])
        if result is None:
            continue
        sample = row["sample"] or "sample"
        if row["kind"] == "sweep":
            groups[(sample, "proc")].append((row["key"], result))
            if row["key"] not in cut and row["sample"] in samples_with_wedges:
                groups[(sample, "30deg")].append((row["key"], result))
        else:
            groups[(sample, "30deg")].append((row["key"], result))
    return groups


def _merge_options(module: Any, results: list[DatasetResult]) -> Any:
    """Default merge options from the module, if it has an options class; else None."""
    cls = getattr(module, "MergeOptions", None)
    if cls is None:
        return None
    try:
        return cls()
    except TypeError:
        return None


def merge_samples(out: Path, catalog: Catalog, config: Any, log: Callable[[str], None]) -> int:
    """Merge every sample (both routes); returns the number of merges run."""
    try:
        import mxflow.merge as merge_module
        from mxflow.merge import merge_sample
    except ImportError:
        log("mxflow: merging skipped (mxflow.merge.merge_sample is not available)")
        return 0
    n_run = 0
    for (sample, route), members in sorted(merge_groups(catalog).items()):
        name = f"{route}/{sample}"
        keys = sorted(k for k, _ in members)
        previous = {p["name"]: p for p in catalog.products("merge")}.get(name)
        if (
            previous
            and previous["status"] == "ok"
            and (previous["result"] or {}).get("inputs") == keys
        ):
            continue
        if len(members) < MIN_DATASETS_TO_MERGE:
            catalog.record_product(
                "merge",
                name,
                "skipped",
                f"only {len(members)} processed dataset(s)",
                {"inputs": keys},
            )
            continue
        workdir = out / ("merge" if route == "proc" else f"merge_{route}") / _safe(sample)
        workdir.mkdir(parents=True, exist_ok=True)
        inputs = [absolute_result(r, out) for _, r in members]
        log(f"mxflow: merging {len(inputs)} dataset(s) of sample {sample} ({route})")
        try:
            result = merge_sample(inputs, workdir, _merge_options(merge_module, inputs))
            payload = dict(result) if isinstance(result, dict) else {"result": result}
            status = str(payload.get("status", "ok"))
            reason = str(payload.get("reason", ""))
        except Exception as exc:  # one sample's failure never stops the others
            payload, status, reason = {}, "failed", f"{type(exc).__name__}: {exc}"
        payload["inputs"] = keys
        payload["workdir"] = os.path.relpath(workdir, out)
        catalog.record_product(
            "merge", name, status, reason, json.loads(json.dumps(payload, default=str))
        )
        write_summary(out, catalog)
        n_run += 1
    return n_run


def scan_paths(scan: ImageSweep) -> list[str]:
    """The image files of a raster scan (missing frames left out)."""
    if scan.format == "eiger":
        return [scan.template]
    missing = set(scan.missing)
    return [scan.frame_path(i) for i in range(scan.first, scan.last + 1) if i not in missing]


def hitmaps(
    out: Path, root: Path, catalog: Catalog, scans: list[ImageSweep], log: Callable[[str], None]
) -> int:
    """A hit map per raster scan; returns the number computed."""
    if not scans:
        return 0
    try:
        from mxflow.hitmap import hitmap
    except ImportError:
        log("mxflow: hit maps skipped (mxflow.hitmap.hitmap is not available)")
        return 0
    takes_grid = "grid" in inspect.signature(hitmap).parameters
    done = {p["name"]: p for p in catalog.products("hitmap")}
    n_run = 0
    for scan in scans:
        parent = Path(scan.template).parent
        try:
            rel = parent.resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            rel = _safe(parent.name)
        stem = _safe(Path(scan.template).name.replace("#", ""))
        name = f"{rel}/{stem}" if rel != "." else stem
        paths = scan_paths(scan)
        previous = done.get(name)
        if (
            previous
            and previous["status"] == "ok"
            and (previous["result"] or {}).get("n_images") == len(paths)
        ):
            continue
        workdir = out / "hitmap" / name
        workdir.mkdir(parents=True, exist_ok=True)
        try:
            result = hitmap(paths, workdir, grid=None) if takes_grid else hitmap(paths, workdir)
            payload = dict(result) if isinstance(result, dict) else {"result": result}
            status, reason = "ok", ""
        except Exception as exc:
            payload, status, reason = {}, "failed", f"{type(exc).__name__}: {exc}"
        payload["n_images"] = len(paths)
        payload["workdir"] = os.path.relpath(workdir, out)
        catalog.record_product(
            "hitmap", name, status, reason, json.loads(json.dumps(payload, default=str))
        )
        n_run += 1
    if n_run:
        write_summary(out, catalog)
    return n_run
