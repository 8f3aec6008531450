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
import importlib
import inspect
import json
import math
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


def split_by_wavelength(
    members: list[tuple[str, DatasetResult]],
) -> list[tuple[str, list[tuple[str, DatasetResult]]]]:
    """A sample's datasets per wavelength: [(label, members)], label "" for a single wavelength.

    Data of different wavelengths (MAD; SAD peak and remote) are merged
    separately, each labelled by its mean wavelength, e.g. "0.9790A".
    """
    from mxflow.merge.inputs import wavelength_groups

    lam = [r.wavelength if r.wavelength is not None else math.nan for _, r in members]
    groups = wavelength_groups(lam)
    if len(groups) <= 1:
        return [("", members)]
    out = []
    for g in groups:
        known = [lam[i] for i in g if math.isfinite(lam[i])]
        out.append((f"{sum(known) / len(known):.4f}A", [members[i] for i in g]))
    return out


def wavelength_words(label: str) -> str:
    """A :func:`split_by_wavelength` label in words: "0.9790A" → "λ 0.9790 Å"."""
    return f"λ {label.removesuffix('A')} Å"


def merge_inputs(results: list[DatasetResult], out: Path) -> list[DatasetResult]:
    """``merge_sample``'s inputs: the processed datasets with absolute integrated file paths.

    Passing results (not bare file paths) keeps each dataset's full name
    (``CPS0001-01/data00/multi_01``), so merge reports match the processing summary.
    """
    inputs = []
    for r in results:
        if r.integrated_expt and r.integrated_refl:
            inputs.append(
                dataclasses.replace(
                    r,
                    integrated_expt=str(out / r.integrated_expt),
                    integrated_refl=str(out / r.integrated_refl),
                )
            )
    return inputs


def sample_settings(datasets: list[Any]) -> dict[str, dict[str, Any]]:
    """Per sample, what the sample sheet says that merging uses: space group, reference
    MTZ, anomalous.

    ``datasets``: discovered :class:`~mxflow.model.Dataset` objects.  A space group
    or reference is taken when every dataset of the sample that has one agrees
    (a sheet giving two space groups for one sample name is ambiguous: neither
    is used); the sample is anomalous when any of its datasets is.
    """
    seen: dict[str, dict[str, set]] = defaultdict(lambda: defaultdict(set))
    for d in datasets:
        for key, value in (
            ("space_group", d.space_group),
            ("reference", d.reference_mtz),
            ("anomalous", d.anomalous or None),
        ):
            if value:
                seen[d.sample or "sample"][key].add(value)
    return {
        sample: {k: next(iter(v)) for k, v in values.items() if len(v) == 1}
        for sample, values in seen.items()
    }


def _merge_options(
    module: Any,
    sample: str,
    config: Any,
    label: str = "",
    sheet: dict | None = None,
    use_given_sg: bool = True,
) -> Any:
    """The merge module's options for one sample (None when it has no options class).

    ``use_given_sg`` False: processing found the given space group wrong for
    some of the sample's datasets, so merging is not told it.
    """
    cls = getattr(module, "MergeOptions", None)
    if cls is None:
        return None
    from mxflow.schedule.cluster import available_cores

    fields = {f.name for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else set()
    sheet = sheet or {}
    cli = getattr(config, "options", None)  # the command line wins over the sample sheet
    given_sg = getattr(cli, "space_group", None) or sheet.get("space_group")
    wanted = {
        "sample": sample,
        "label": wavelength_words(label) if label else None,
        "nproc": available_cores(),
        "space_group": given_sg if use_given_sg else None,
        "reference": sheet.get("reference"),
        "anomalous": bool(getattr(cli, "anomalous", False)) or bool(sheet.get("anomalous")),
    }
    return cls(**{k: v for k, v in wanted.items() if k in fields and v is not None})


def _merge_status(payload: dict) -> tuple[str, str]:
    """('ok', '') when at least one cluster merged, else ('failed', why)."""
    clusters = payload.get("clusters")
    if clusters is None:
        return str(payload.get("status", "ok")), str(payload.get("reason", ""))
    if any(isinstance(c, dict) and not c.get("error") for c in clusters):
        return "ok", ""
    notes = [str(n) for n in payload.get("notes", [])]
    errors = [str(c.get("error")) for c in clusters if isinstance(c, dict) and c.get("error")]
    return "failed", "; ".join(errors + notes) or "no cluster could be merged"


def merge_samples(
    out: Path,
    catalog: Catalog,
    config: Any,
    log: Callable[[str], None],
    settings: dict[str, dict[str, Any]] | None = None,
) -> int:
    """Merge every sample (both routes); returns the number of merges run.

    ``settings``: per sample, the sample sheet's space group and reference
    MTZ (:func:`sample_settings`).
    """
    settings = settings or {}
    try:
        merge_module = importlib.import_module("mxflow.merge")
        if not hasattr(merge_module, "merge_sample"):
            merge_module = importlib.import_module("mxflow.merge.pipeline")
        merge_sample = merge_module.merge_sample
    except (ImportError, AttributeError):
        log("mxflow: merging skipped (mxflow.merge.merge_sample is not available)")
        return 0
    n_run = 0
    jobs = [
        (sample, route, label, group)
        for (sample, route), members in sorted(merge_groups(catalog).items())
        for label, group in split_by_wavelength(members)
    ]
    for sample, route, label, members in jobs:
        name = f"{route}/{sample}" + (f"/{label}" if label else "")
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
        if label:  # one merge per wavelength
            workdir = workdir / label
        workdir.mkdir(parents=True, exist_ok=True)
        inputs = merge_inputs([r for _, r in members], out)
        refuted = [r.name for _, r in members if r.given_space_group_rejected]
        if refuted:
            log(
                f"mxflow: sample {sample}: the given space group did not fit {len(refuted)} "
                f"dataset(s) (e.g. {refuted[0]}); merging decides it from the data"
            )
        at = f", {wavelength_words(label)}" if label else ""
        log(f"mxflow: merging {len(members)} dataset(s) of sample {sample} ({route}{at})")
        try:
            result = merge_sample(
                inputs,
                workdir,
                _merge_options(
                    merge_module, sample, config, label, settings.get(sample), not refuted
                ),
            )
            payload = dict(result) if isinstance(result, dict) else {"result": result}
            status, reason = _merge_status(payload)
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
