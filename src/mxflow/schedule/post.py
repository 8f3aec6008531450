"""After processing: merge each sample's datasets, and hit maps of raster scans.

A failure of one sample or one scan is recorded in the catalog without
stopping the others.  Both are idempotent: a merge whose input datasets have
not changed since its last success, or a hit map of a scan with the same
frames, is not redone (and a merge run again reuses its finished DIALS steps).

Merge routes per sample (as ZOO does with KAMO):

``proc``   every successfully processed whole dataset → ``OUT/merge/<sample>/``
``30deg``  the wedges plus the uncut small-wedge (``multi``) datasets →
           ``OUT/merge_30deg/<sample>/`` (only when the sample has wedges)

Samples are discovery's (the sheet's, ``--sample``, else one per pin), unless
``mxflow run --group-by-cell`` joins the pins of compatible processed cells
(:func:`group_by_cell`, a pure function; the groups are recorded in the catalog,
so summary.json, ``mxflow status`` and the reports show each dataset under its
group).  Pins left with one dataset each whose cells agree are named at the end
of the run (:func:`merge_hints`).

Each merge is logged as it goes: its start, then once it returns one line per
cluster (space group, d_min, CC½, completeness, or why not merged) and its
end with the time it took (:mod:`mxflow.schedule.progress`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import gemmi

from mxflow.catalog.db import Catalog
from mxflow.catalog.merge_table import cluster_label
from mxflow.catalog.summary import write_summary
from mxflow.cluster.cells import cell_groups, median_cell, niggli_cell
from mxflow.discover.collection import read_sample_sheet
from mxflow.hitmap import hitmap
from mxflow.hitmap.run import scan_name
from mxflow.merge import merge_sample
from mxflow.merge.inputs import wavelength_groups
from mxflow.merge.live import update_live_merge
from mxflow.model import (
    Dataset,
    DatasetResult,
    ImageSweep,
    LiveMerge,
    MergeOptions,
    MergeRecord,
    MergeSummary,
    ProcessingOptions,
    Thresholds,
    to_dict,
)
from mxflow.schedule.cluster import available_cores
from mxflow.schedule.progress import (
    MergeProgress,
    format_cluster_line,
    format_live_line,
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


def merge_rows(catalog: Catalog) -> list[dict]:
    """The catalog's dataset rows, each ``sample`` the one it is merged as: its recorded
    sample group's (``--group-by-cell``) when it has one, else discovery's."""
    grouped = catalog.grouped_samples()
    rows = catalog.rows()
    for row in rows:
        row["sample"] = grouped.get(row["key"], row["sample"])
    return rows


def merge_groups(catalog: Catalog) -> dict[tuple[str, str], list[tuple[str, DatasetResult]]]:
    """(sample, route) → [(key, result)] of successfully processed datasets.

    Route ``proc``: every whole sweep.  Route ``30deg`` (only for samples
    that have wedges): every wedge, plus the whole sweeps that were not cut
    (multi-mode small wedges), as KAMO's ``_kamo_30deg`` holds them.  Samples
    are those of :func:`merge_rows` (a recorded group of pins is one sample).
    """
    groups: dict[tuple[str, str], list[tuple[str, DatasetResult]]] = defaultdict(list)
    all_rows = merge_rows(catalog)
    cut = {r["parent"] for r in all_rows if r["kind"] == "wedge" and r["parent"]}
    samples_with_wedges = {r["sample"] for r in all_rows if r["kind"] == "wedge"}
    for row in all_rows:
        if row["status"] != "ok":
            continue
        result = catalog.result(row["key"])
        if result is None:
            continue
        sample = row["sample"] or "sample"
        # the catalog's sample is the current one: a sheet added or changed after
        # processing renames it, while the stored result keeps the old name
        result = dataclasses.replace(result, sample=sample)
        if row["kind"] == "sweep":
            groups[(sample, "proc")].append((row["key"], result))
            if row["key"] not in cut and row["sample"] in samples_with_wedges:
                groups[(sample, "30deg")].append((row["key"], result))
        else:
            groups[(sample, "30deg")].append((row["key"], result))
    return groups


# -- samples from cells (mxflow run --group-by-cell) ----------------------------

_MERGE_DEFAULTS = MergeOptions()
#: the merge's own cell tolerances: a group it is given passes its cell test
CELL_REL_LENGTH = _MERGE_DEFAULTS.cell_rel_length
CELL_ANGLE = _MERGE_DEFAULTS.cell_angle


@dataclass(frozen=True)
class CellGroup:
    """Datasets whose cells are compatible: merged as one sample ``name``.

    ``members``: their catalog keys (sorted); ``space_group``: the most common of
    theirs; ``cell``: the median of the cells of those in that space group (as
    processed, Å and degrees); ``samples``: the samples discovery gave them.
    """

    name: str
    members: tuple[str, ...]
    space_group: str | None = None
    cell: tuple[float, ...] = ()
    samples: tuple[str, ...] = ()

    def cell_words(self) -> str:
        """``P 43 21 2, 78.0 78.0 37.0 90.0 90.0 90.0``."""
        cell = " ".join(f"{x:.1f}" for x in self.cell)
        return ", ".join(p for p in (self.space_group or "", cell) if p)


def lattice_centring(space_group: str | None) -> str:
    """The centring letter of the setting a processed cell is given in ("P" when unknown;
    "R" for hexagonal axes of R groups, "P" for their rhombohedral axes)."""
    if not space_group:
        return "P"
    try:
        return gemmi.SpaceGroup(space_group).centring_type()
    except ValueError:
        return "P"


def group_by_cell(
    cells: Mapping[str, tuple[Sequence[float], str | None]],
    rel_length: float = CELL_REL_LENGTH,
    angle: float = CELL_ANGLE,
    taken: Collection[str] = (),
    prefix: str = "cell",
    samples: Mapping[str, str] | None = None,
) -> list[CellGroup]:
    """Groups of compatible cells: key → (cell, space group) in, named groups out.

    Each cell is Niggli-reduced in its own lattice centring (so the setting a
    dataset was indexed in does not matter), then the cells passing
    :func:`mxflow.cluster.cells.cells_similar` (edges within ``rel_length``,
    angles within ``angle``°) are joined (connected groups).  Only groups of
    two or more are returned, largest first (ties: by first key), named
    ``cell1``, ``cell2`` … (``prefix``), skipping the names in ``taken``.
    ``samples`` (key → sample), when given: a group must join two samples or
    more (one that lies within one sample is left out), and each group lists
    its samples.
    """
    keys = sorted(cells)
    reduced = [niggli_cell(cells[k][0], lattice_centring(cells[k][1])) for k in keys]
    out: list[CellGroup] = []
    number = 0
    for indices in cell_groups(reduced, rel_length, angle):
        if len(indices) < 2:
            continue
        members = tuple(keys[i] for i in indices)
        joined = tuple(sorted({samples[k] for k in members})) if samples is not None else ()
        if samples is not None and len(joined) < 2:
            continue
        groups = [cells[k][1] for k in members]
        counts = {g: groups.count(g) for g in groups}
        space_group = max(counts, key=lambda g: (counts[g], g is not None, str(g)))
        same = [cells[k][0] for k in members if cells[k][1] == space_group]
        number += 1
        while f"{prefix}{number}" in taken:
            number += 1
        out.append(CellGroup(f"{prefix}{number}", members, space_group, median_cell(same), joined))
    return out


def given_samples(sample_sheet: str | Path | None, default_sample: str | None) -> set[str]:
    """The sample names the user gave: the sheet's and ``--sample``'s.

    Datasets with one of these keep it; the others have the sample discovery
    made up for them (one per pin) and may be grouped by cell.
    """
    names = {e.name for e in read_sample_sheet(sample_sheet)} if sample_sheet else set()
    if default_sample:
        names.add(default_sample)
    return names


def _cell_of(result: DatasetResult | None) -> tuple[list[float], str | None] | None:
    if result is None or result.status != "ok" or not result.unit_cell:
        return None
    return list(result.unit_cell), result.space_group


def decide_cell_groups(
    catalog: Catalog,
    given: Collection[str] = (),
    rel_length: float = CELL_REL_LENGTH,
    angle: float = CELL_ANGLE,
) -> list[CellGroup]:
    """The sample groups of ``mxflow run --group-by-cell`` (not recorded here).

    Grouped: every successfully processed whole sweep whose sample is not one
    the user gave (``given``), by its processed cell; a wedge goes with its
    sweep (a wedge of a sweep that failed, by its own cell).  A dataset whose cell
    matches no other keeps its sample.  Each group lists every key it gives its
    name, wedges included.
    """
    rows = catalog.rows()
    by_key = {r["key"]: r for r in rows}
    free = [r for r in rows if r["status"] == "ok" and (r["sample"] or "") not in given]
    cells: dict[str, tuple[Sequence[float], str | None]] = {}
    for row in free:
        if row["kind"] == "wedge" and row["parent"] in cells:
            continue
        cell = _cell_of(catalog.result(row["key"]))
        if cell is not None:
            cells[row["key"]] = cell
    taken = {r["sample"] for r in rows if r["sample"]}
    sample_of = {k: by_key[k]["sample"] or "" for k in cells}
    groups = []
    for g in group_by_cell(cells, rel_length, angle, taken, samples=sample_of):
        members = set(g.members)
        wedges = {
            r["key"]
            for r in free
            if r["kind"] == "wedge" and r["key"] not in cells and r["parent"] in members
        }
        groups.append(dataclasses.replace(g, members=tuple(sorted(members | wedges))))
    return groups


def group_record(group: CellGroup) -> dict:
    """What the catalog keeps of a group (:meth:`Catalog.record_sample_groups`)."""
    return {
        "name": group.name,
        "by": "cell",
        "space_group": group.space_group,
        "cell": list(group.cell),
        "datasets": list(group.members),
        "samples": list(group.samples),
    }


def combine_settings(settings: Sequence[SampleSettings | None]) -> SampleSettings:
    """The sheet settings of a group of samples: a value all that give one agree on
    (e.g. ``--free-flags``, set on every dataset without a sheet sample); anomalous
    when any is."""
    given = [s for s in settings if s is not None]
    out = SampleSettings(
        anomalous=any(s.anomalous for s in given),
        n_flagged_anomalous=sum(s.n_flagged_anomalous for s in given),
        n_datasets=sum(s.n_datasets for s in given),
    )
    for name in ("space_group", "reference", "free_flags", "heavy_atom", "n_sites"):
        values = {getattr(s, name) for s in given if getattr(s, name)}
        if len(values) == 1:
            setattr(out, name, values.pop())
    return out


def unmerged_compatible(
    catalog: Catalog,
    given: Collection[str] = (),
    rel_length: float = CELL_REL_LENGTH,
    angle: float = CELL_ANGLE,
) -> list[CellGroup]:
    """Samples left with one processed whole dataset each whose cells agree: groups of
    two or more such samples, each of which was therefore not merged.

    Only samples the user did not name (``given``: the sheet's, ``--sample``) count:
    one per pin, as discovery makes them.  Samples are those merged
    (:func:`merge_rows`), so after ``--group-by-cell`` none is left.
    """
    rows = merge_rows(catalog)
    sweeps: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        if r["kind"] == "sweep" and r["status"] == "ok":
            sweeps[r["sample"] or ""].append(r)
    cells: dict[str, tuple[Sequence[float], str | None]] = {}
    sample_of: dict[str, str] = {}
    for sample, members in sweeps.items():
        if len(members) != 1 or sample in given:
            continue
        cell = _cell_of(catalog.result(members[0]["key"]))
        if cell is not None:
            cells[members[0]["key"]] = cell
            sample_of[members[0]["key"]] = sample
    return group_by_cell(cells, rel_length, angle, samples=sample_of)


def format_unmerged_hint(group: CellGroup, anything_merged: bool) -> str:
    """What the end of a run says of :func:`unmerged_compatible`'s ``group``."""
    s = group.samples
    which = f"{s[0]} … {s[-1]}" if len(s) > 2 else " and ".join(s)
    return (
        f"mxflow: {len(s)} samples ({which}) have one dataset each with compatible cells "
        f"({group.cell_words()}): "
        + ("these were not merged" if anything_merged else "nothing was merged")
        + "; to merge them as one sample rerun with --group-by-cell (or --sample NAME for "
        "every pin), or give a sample sheet (README § Sample sheet)"
    )


def merge_hints(catalog: Catalog, given: Collection[str] = ()) -> list[str]:
    """The end-of-run lines of :func:`unmerged_compatible` (none when nothing fits)."""
    groups = unmerged_compatible(catalog, given)
    merged = any(m.status == "ok" for m in catalog.merges())
    return [format_unmerged_hint(g, merged) for g in groups]


def _group_samples(
    catalog: Catalog, given: Collection[str], log: Callable[[str], None]
) -> list[CellGroup]:
    """Decide, record and log the groups of ``--group-by-cell``."""
    groups = decide_cell_groups(catalog, given)
    catalog.record_sample_groups([group_record(g) for g in groups])
    for g in groups:
        s = g.samples
        which = f"{s[0]} … {s[-1]}" if len(s) > 2 else ", ".join(s)
        log(
            f"mxflow: --group-by-cell: sample {g.name}: {len(g.members)} dataset(s) of "
            f"{len(s)} sample(s) ({which}) with compatible cells ({g.cell_words()})"
        )
    if not groups:
        log(
            "mxflow: --group-by-cell: no two processed datasets without a sample from the "
            "sheet or --sample have compatible cells: nothing grouped"
        )
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
    heavy_atom: str | None = None  # element of the anomalous scatterer (implies anomalous)
    n_sites: int | None = None  # expected heavy-atom sites per asymmetric unit
    n_flagged_anomalous: int = 0  # datasets of the sample flagged anomalous
    n_datasets: int = 0

    @property
    def mixed_anomalous(self) -> bool:
        """Some, not all, of the sample's datasets are flagged anomalous."""
        return 0 < self.n_flagged_anomalous < self.n_datasets


def mixed_anomalous_line(sample: str, s: SampleSettings) -> str | None:
    """The run log's line on a sample whose datasets disagree on the anomalous flag.

    The merge of a sample is one: it keeps I(+) and I(−) apart when any of its
    datasets is anomalous, for every dataset.  That loses nothing for the datasets
    flagged native (their mean intensities are the same; pairwise CC, ΔCC½ and
    clustering use Friedel-merged intensities either way) and keeps the signal of
    the others, so a wrong native flag on some datasets of a SAD sample does not
    weaken it.
    """
    if not s.mixed_anomalous:
        return None
    return (
        f"mxflow: sample {sample}: {s.n_flagged_anomalous} of {s.n_datasets} dataset(s) are "
        "flagged anomalous, the others not; the sample is merged as anomalous, I(+) and "
        "I(-) apart for all of them (mean intensities, clustering and rejection are the "
        "same either way)"
    )


def sample_settings(datasets: Sequence[Dataset]) -> dict[str, SampleSettings]:
    """Per sample, the sample sheet's space group, reference MTZ, anomalous flag,
    free-flag MTZ, heavy atom and number of sites (``mxflow run --free-flags`` sets
    the flag file on the datasets of the samples whose sheet rows give none;
    ``--heavy-atom`` / ``--sites`` set theirs on every dataset).

    A space group, reference, free-flag MTZ, heavy atom or number of sites is taken
    when every dataset of the sample that has one agrees (a sheet giving two space
    groups for one sample name is ambiguous: neither is used); the sample is
    anomalous when any of its datasets is.
    """
    seen: dict[str, dict[str, set]] = defaultdict(lambda: defaultdict(set))
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for d in datasets:
        sample = d.sample or "sample"
        seen[sample]  # every sample gets settings, even an empty one
        counts[sample][0] += bool(d.anomalous or d.heavy_atom)
        counts[sample][1] += 1
        for key, value in (
            ("space_group", d.space_group),
            ("reference", d.reference_mtz),
            ("free_flags", d.free_flags_mtz),
            ("heavy_atom", d.heavy_atom),
            ("n_sites", d.n_sites),
        ):
            if value:
                seen[sample][key].add(value)
        if d.anomalous:
            seen[sample]["anomalous"].add(True)
    return {
        sample: SampleSettings(
            **{k: next(iter(v)) for k, v in values.items() if len(v) == 1},
            n_flagged_anomalous=counts[sample][0],
            n_datasets=counts[sample][1],
        )
        for sample, values in seen.items()
    }


def merge_options(
    sample: str,
    cli: ProcessingOptions,
    label: str = "",
    sheet: SampleSettings | None = None,
    use_given_sg: bool = True,
    thresholds: Thresholds | None = None,
) -> MergeOptions:
    """The merge options of one sample: the command line (``cli``) wins over the sheet.

    ``use_given_sg`` False: processing found the given space group wrong for
    some of the sample's datasets, so merging is not told it.  A heavy atom
    (``cli.heavy_atom``, else the sheet's) makes the merge anomalous; the number
    of sites is the sheet's (``--sites`` is set on the datasets, so it is there).
    ``thresholds``: the cluster thresholds (default: :class:`Thresholds`').
    """
    sheet = sheet or SampleSettings()
    given_sg = cli.space_group or sheet.space_group
    heavy_atom = cli.heavy_atom or sheet.heavy_atom
    return MergeOptions(
        sample=sample,
        label=wavelength_words(label) if label else "",
        nproc=available_cores(),
        space_group=given_sg if use_given_sg else None,
        reference=sheet.reference,
        free_flags=sheet.free_flags,
        anomalous=cli.anomalous or sheet.anomalous or heavy_atom is not None,
        heavy_atom=heavy_atom,
        n_sites=sheet.n_sites,
        thresholds=thresholds or Thresholds(),
    )


def anomalous_lines(sample: str, results: Sequence[DatasetResult]) -> list[str]:
    """The run log's lines on the anomalous notes of a sample's datasets (what processing
    said of the edges near their wavelength, or of the heavy atom): one per distinct
    note, with how many of the datasets it is about."""
    notes: dict[str, int] = {}
    for r in results:
        if r.anomalous_note:
            notes[r.anomalous_note] = notes.get(r.anomalous_note, 0) + 1
    return [
        f"mxflow: sample {sample}: {note} ({n} of {len(results)} dataset(s))"
        for note, n in notes.items()
    ]


def electron_lines(sample: str, results: Sequence[DatasetResult]) -> list[str]:
    """The run log's lines on a sample's electron datasets: how their header distances
    were read, the refined distances (mm: range and median) or that none was refined
    (no known cell), and how far the rotation axis was from the image format's."""
    geos = [r.electron for r in results if r.electron is not None]
    if not geos:
        return []
    head = f"mxflow: sample {sample}: electron diffraction ({len(geos)} dataset(s)):"
    metres = sum(g.header_distance_unit == "m" for g in geos)
    parts = [f"header distance read as metres in {metres}"] if metres else []
    refined = sorted(g.refined_distance for g in geos if g.refined_distance)
    if refined:
        parts.append(
            f"distance refined against the known cell in {len(refined)}: "
            f"{refined[0]:.1f}-{refined[-1]:.1f} mm (median {statistics.median(refined):.1f})"
        )
    if len(refined) < len(geos):
        parts.append(
            f"{len(geos) - len(refined)} kept the header distance (no known cell: their "
            "cells' scale is only as good as that distance)"
        )
    turns = [g.axis_change_deg for g in geos if g.axis_found and g.axis_change_deg is not None]
    if turns:
        parts.append(
            f"rotation axis found from the spots, {statistics.median(turns):.1f} deg (median) "
            "from the image format's"
        )
    return [f"{head} {'; '.join(parts)}"]


#: merge options that do not change a merge's result (the machine's cores, time limits)
_RUN_ONLY_OPTIONS = ("nproc", "timeout")


def changed_options(previous: MergeRecord, options: MergeOptions) -> list[str]:
    """The merge options that differ from those ``previous`` was merged with (e.g. a
    sample sheet that now gives a heavy atom); none when it recorded none (a catalog
    from before the options were kept: its merge stands)."""
    before = previous.summary.options if previous.summary else None
    if before is None:
        return []
    old, new = to_dict(before), to_dict(options)
    return [k for k in new if k not in _RUN_ONLY_OPTIONS and old.get(k) != new[k]]


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


def merge_files_gone(out: Path, previous: MergeRecord | None) -> str:
    """The first file of an ok merge that is no longer on disk ("" when all are, or the
    merge was not ok): its folder, or its recommended cluster's merged MTZ."""
    if previous is None or previous.status != "ok" or not previous.workdir:
        return ""
    wd = out / previous.workdir
    if not wd.is_dir():
        return str(wd)
    for c in previous.summary.clusters if previous.summary else []:
        if c.ok and c.merged_mtz and not (wd / c.merged_mtz).is_file():
            return str(wd / c.merged_mtz)
    return ""


def merge_samples(
    out: Path,
    catalog: Catalog,
    cli: ProcessingOptions,
    log: Callable[[str], None],
    settings: dict[str, SampleSettings] | None = None,
    merge_fn: MergeFn = merge_sample,
    *,
    group_by_cell: bool = False,
    given: Collection[str] = (),
    thresholds: Thresholds | None = None,
) -> int:
    """Merge every sample (both routes, each wavelength apart); returns the number of merges run.

    ``cli``: the command line's processing options (its space group and
    anomalous flag win over the sample sheet's ``settings``).
    ``group_by_cell`` (``mxflow run --group-by-cell``): first the datasets whose
    sample the user did not give (``given``: the sheet's and ``--sample``'s names)
    are grouped by their processed cells (:func:`decide_cell_groups`), and each
    group, recorded in the catalog, is merged as one sample; without it a grouping
    recorded by an earlier run is dropped.  ``thresholds``: the cluster thresholds of
    every merge (``--min-anom-completeness`` …; default :class:`Thresholds`').  Samples are the catalog's (a sample sheet
    added or changed after processing renames them), and the record of any merge of a
    sample that no longer exists is dropped (its folder is left on disk).
    """
    settings = dict(settings or {})
    if group_by_cell:
        for g in _group_samples(catalog, given, log):
            settings[g.name] = combine_settings([settings.get(s) for s in g.samples])
    elif catalog.sample_groups():
        catalog.record_sample_groups([])
        log(
            "mxflow: the samples grouped by cell in an earlier run are apart again (no --group-by-cell)"
        )
    done = {m.name: m for m in catalog.merges()}
    n_run = 0
    jobs = [
        (sample, route, label, group)
        for (sample, route), members in sorted(merge_groups(catalog).items())
        for label, group in split_by_wavelength(members)
    ]
    names = [
        f"{route}/{sample}" + (f"/{label}" if label else "") for sample, route, label, _ in jobs
    ]
    stale = [name for name in done if name not in names]
    for name in stale:  # its sample (route, wavelength) no longer exists
        catalog.forget_merge(name)
        log(f"mxflow: merge {name}: no longer listed (no such sample now)")
    if stale:
        write_summary(out, catalog)
    todo = []
    for (sample, route, label, members), name in zip(jobs, names, strict=True):
        keys = sorted(k for k, _ in members)
        previous = done.get(name)
        refuted = [r.name for _, r in members if r.given_space_group_rejected]
        options = merge_options(
            sample, cli, label, settings.get(sample), not refuted, thresholds=thresholds
        )
        mixed = mixed_anomalous_line(sample, settings.get(sample) or SampleSettings())
        if mixed:
            log(mixed)
        gone = merge_files_gone(out, previous)
        if gone:
            log(f"mxflow: merge {name}: merged again: its files are gone ({gone})")
        elif previous and previous.status == "ok" and previous.inputs == keys:
            changed = changed_options(previous, options)
            if not changed:
                log(f"mxflow: merge {name}: already merged (the same {len(keys)} dataset(s))")
                continue
            log(f"mxflow: merge {name}: merged again: {', '.join(changed)} changed")
        if len(members) < MIN_DATASETS_TO_MERGE:
            why = f"only {len(members)} processed dataset(s)"
            catalog.record_merge(MergeRecord(name, "skipped", why, inputs=keys))
            log(f"mxflow: merge {name}: skipped: {why}")
            continue
        todo.append((name, sample, route, label, members, options, refuted))
    for index, (name, sample, route, label, members, options, refuted) in enumerate(todo, 1):
        workdir = (
            out / ("merge" if route == "proc" else f"merge_{route}") / safe_name(sample, "sample")
        )
        if label:  # one merge per wavelength
            workdir = workdir / label
        workdir.mkdir(parents=True, exist_ok=True)
        if refuted:
            log(
                f"mxflow: sample {sample}: the given space group did not fit {len(refuted)} "
                f"dataset(s) (e.g. {refuted[0]}); merging decides it from the data"
            )
        for line in anomalous_lines(sample, [r for _, r in members]):
            log(line)
        for line in electron_lines(sample, [r for _, r in members]):
            log(line)
        progress = MergeProgress(name, index, len(todo), len(members))
        log(format_merge_start(progress))
        t0 = time.perf_counter()
        record = _merge_one(name, members, workdir, options, out, merge_fn)
        progress.elapsed_s = time.perf_counter() - t0
        for line in merge_progress_lines(progress, record):
            log(line)
        catalog.record_merge(record)
        write_summary(out, catalog)
        n_run += 1
    return n_run


def update_live_merges(
    out: Path,
    catalog: Catalog,
    cli: ProcessingOptions,
    log: Callable[[str], None],
    settings: Mapping[str, SampleSettings] | None = None,
) -> list[LiveMerge]:
    """Add every newly processed whole dataset to its sample's live merge
    (:mod:`mxflow.merge.live`; one per sample and wavelength); returns those updated.

    The space group is the command line's, else the sheet's, else the first
    dataset's.  A failure is logged and leaves the other samples' live merges
    going; the batch merge (:func:`merge_samples`) does not depend on them.
    """
    settings = settings or {}
    updated = []
    for (sample, route), members in sorted(merge_groups(catalog).items()):
        if route != "proc":
            continue
        sheet = settings.get(sample) or SampleSettings()
        for label, group in split_by_wavelength(members):
            name = sample if not label else f"{sample}_{label}"
            t0 = time.perf_counter()
            try:
                live = update_live_merge(out, name, group, cli.space_group or sheet.space_group)
            except Exception as exc:  # a live merge is a view: it never stops watching
                log(f"mxflow: live merge {name}: not updated ({type(exc).__name__}: {exc})")
                continue
            if live is not None:
                log(format_live_line(live, time.perf_counter() - t0))
                updated.append(live)
    return updated


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
        stem = scan_name(scan.template)
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
