"""After processing: merge each sample's datasets, and hit maps of raster scans.

A failure of one sample or one scan is recorded in the catalog without
stopping the others.  Both are idempotent: a merge whose input datasets have
not changed since its last success, or a hit map of a scan with the same
frames, is not redone (and a merge run again reuses its finished DIALS steps).

Merge routes per sample (as ZOO does with KAMO):

``proc``   every successfully processed whole dataset → ``OUT/merge/<sample>/``
``30deg``  the wedges plus the uncut small-wedge (``multi``) datasets →
           ``OUT/merge_30deg/<sample>/`` (only when the sample has wedges)

Each merge is logged as it goes: its start, then once it returns one line per
cluster (space group, d_min, CC½, completeness, or why not merged) and its
end with the time it took (:mod:`mxflow.schedule.progress`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from mxflow.catalog.db import Catalog
from mxflow.catalog.merge_table import cluster_label
from mxflow.catalog.summary import write_summary
from mxflow.hitmap import hitmap
from mxflow.merge import merge_sample
from mxflow.merge.inputs import wavelength_groups
from mxflow.model import (
    Dataset,
    DatasetResult,
    ImageSweep,
    MergeOptions,
    MergeRecord,
    MergeSummary,
    ProcessingOptions,
)
from mxflow.schedule.cluster import available_cores
from mxflow.schedule.progress import (
    MergeProgress,
    format_cluster_line,
    format_merge_done,
    format_merge_start,
)
from mxflow.util.files import safe_name


class MergeFn(Protocol):
    """What merges one sample: :func:`mxflow.merge.merge_sample` (tests pass a fake)."""

    def __call__(
        self, inputs: Sequence[DatasetResult], workdir: Path, options: MergeOptions
    ) -> MergeSummary: ...


MIN_DATASETS_TO_MERGE = 2


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


@dataclass
class SampleSettings:
    """What the sample sheet says about a sample that merging uses."""

    space_group: str | None = None
    reference: str | None = None  # reference MTZ
    anomalous: bool = False
    free_flags: str | None = None  # MTZ whose FreeR flags the merged files take


def sample_settings(datasets: Sequence[Dataset]) -> dict[str, SampleSettings]:
    """Per sample, the sample sheet's space group, reference MTZ, anomalous flag and
    free-flag MTZ (``mxflow run --free-flags`` sets it on the datasets of the samples
    whose sheet rows give none).

    A space group, reference or free-flag MTZ is taken when every dataset of the sample
    that has one agrees (a sheet giving two space groups for one sample name
    is ambiguous: neither is used); the sample is anomalous when any of its
    datasets is.
    """
    seen: dict[str, dict[str, set]] = defaultdict(lambda: defaultdict(set))
    for d in datasets:
        sample = d.sample or "sample"
        seen[sample]  # every sample gets settings, even an empty one
        for key, value in (
            ("space_group", d.space_group),
            ("reference", d.reference_mtz),
            ("free_flags", d.free_flags_mtz),
        ):
            if value:
                seen[sample][key].add(value)
        if d.anomalous:
            seen[sample]["anomalous"].add(True)
    return {
        sample: SampleSettings(**{k: next(iter(v)) for k, v in values.items() if len(v) == 1})
        for sample, values in seen.items()
    }


def merge_options(
    sample: str,
    cli: ProcessingOptions,
    label: str = "",
    sheet: SampleSettings | None = None,
    use_given_sg: bool = True,
) -> MergeOptions:
    """The merge options of one sample: the command line (``cli``) wins over the sheet.

    ``use_given_sg`` False: processing found the given space group wrong for
    some of the sample's datasets, so merging is not told it.
    """
    sheet = sheet or SampleSettings()
    given_sg = cli.space_group or sheet.space_group
    return MergeOptions(
        sample=sample,
        label=wavelength_words(label) if label else "",
        nproc=available_cores(),
        space_group=given_sg if use_given_sg else None,
        reference=sheet.reference,
        free_flags=sheet.free_flags,
        anomalous=cli.anomalous or sheet.anomalous,
    )


def _merge_one(
    name: str,
    members: list[tuple[str, DatasetResult]],
    workdir: Path,
    options: MergeOptions,
    out: Path,
    merge_fn: MergeFn,
) -> MergeRecord:
    """Run one merge; its failure becomes the record's reason, never an exception."""
    keys = sorted(k for k, _ in members)
    record = MergeRecord(name, "failed", inputs=keys, workdir=os.path.relpath(workdir, out))
    try:
        record.summary = merge_fn(merge_inputs([r for _, r in members], out), workdir, options)
    except Exception as exc:  # one sample's failure never stops the others
        record.reason = f"{type(exc).__name__}: {exc}"
        return record
    record.status = "ok" if record.summary.ok else "failed"
    record.reason = record.summary.failure_reason()
    return record


def merge_samples(
    out: Path,
    catalog: Catalog,
    cli: ProcessingOptions,
    log: Callable[[str], None],
    settings: dict[str, SampleSettings] | None = None,
    merge_fn: MergeFn = merge_sample,
) -> int:
    """Merge every sample (both routes, each wavelength apart); returns the number of merges run.

    ``cli``: the command line's processing options (its space group and
    anomalous flag win over the sample sheet's ``settings``).
    """
    settings = settings or {}
    done = {m.name: m for m in catalog.merges()}
    n_run = 0
    jobs = [
        (sample, route, label, group)
        for (sample, route), members in sorted(merge_groups(catalog).items())
        for label, group in split_by_wavelength(members)
    ]
    todo = []
    for sample, route, label, members in jobs:
        name = f"{route}/{sample}" + (f"/{label}" if label else "")
        keys = sorted(k for k, _ in members)
        previous = done.get(name)
        if previous and previous.status == "ok" and previous.inputs == keys:
            log(f"mxflow: merge {name}: already merged (the same {len(keys)} dataset(s))")
            continue
        if len(members) < MIN_DATASETS_TO_MERGE:
            why = f"only {len(members)} processed dataset(s)"
            catalog.record_merge(MergeRecord(name, "skipped", why, inputs=keys))
            log(f"mxflow: merge {name}: skipped: {why}")
            continue
        todo.append((name, sample, route, label, members))
    for index, (name, sample, route, label, members) in enumerate(todo, 1):
        workdir = (
            out / ("merge" if route == "proc" else f"merge_{route}") / safe_name(sample, "sample")
        )
        if label:  # one merge per wavelength
            workdir = workdir / label
        workdir.mkdir(parents=True, exist_ok=True)
        refuted = [r.name for _, r in members if r.given_space_group_rejected]
        if refuted:
            log(
                f"mxflow: sample {sample}: the given space group did not fit {len(refuted)} "
                f"dataset(s) (e.g. {refuted[0]}); merging decides it from the data"
            )
        progress = MergeProgress(name, index, len(todo), len(members))
        log(format_merge_start(progress))
        options = merge_options(sample, cli, label, settings.get(sample), not refuted)
        t0 = time.perf_counter()
        record = _merge_one(name, members, workdir, options, out, merge_fn)
        progress.elapsed_s = time.perf_counter() - t0
        for line in merge_progress_lines(progress, record):
            log(line)
        catalog.record_merge(record)
        write_summary(out, catalog)
        n_run += 1
    return n_run


def merge_progress_lines(progress: MergeProgress, record: MergeRecord) -> list[str]:
    """The lines of a finished merge: one per cluster, then its end (fills ``progress``)."""
    summary = record.summary
    clusters = summary.clusters if summary else []
    progress.status, progress.reason = record.status, record.reason
    progress.n_clusters = len(clusters)
    progress.n_merged = sum(c.ok for c in clusters)
    lines = [format_cluster_line(progress, cluster_label(c, summary), c) for c in clusters]
    return [*lines, format_merge_done(progress)]


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
    done = {p["name"]: p for p in catalog.products("hitmap")}
    n_run = 0
    for scan in scans:
        parent = Path(scan.template).parent
        try:
            rel = parent.resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            rel = safe_name(parent.name, "sample")
        stem = safe_name(Path(scan.template).name.replace("#", ""), "sample")
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
            payload = hitmap(paths, workdir)
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
