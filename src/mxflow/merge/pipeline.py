"""merge_sample: cell grouping → symmetry and indexing → space group → CC → clustering → run_01..03 → resolution.

Layout written under ``workdir`` (:class:`MergeLayout`)::

    merge_prep_<d>S_<sample>/        dials.cosym (symmetry + indexing), the space group of all
                                     the data (dials.reindex to its standard setting), unscaled export
    merge_<method>_<d>S_<sample>/
        dendrogram_<method>.json, cc_table.json, cluster_summary.dat, merge_summary.json
        cluster_NNNN/run_01/ (all) [run_02/ (bad frames out)] [run_03/ (bad datasets out)]
    merge_summary_<sample>.json      every method together
    final/                           the recommended cluster's files (merge.final)

Every dataset left out is listed in ``rejected`` with its reason and stage;
every dendrogram node not merged says why.  Every DIALS program is a
resumable engine step: a merge run again after a kill (or with the same
inputs) reuses what finished.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mxflow.cluster import cells, select
from mxflow.errors import MxflowError
from mxflow.merge import stages
from mxflow.merge.final import write_final
from mxflow.merge.inputs import MergeInput, collect_inputs, wavelength_groups
from mxflow.merge.observations import read_reference
from mxflow.merge.outputs import write_method_outputs, write_summary
from mxflow.merge.runs import ClusterJob, merge_cluster
from mxflow.merge.stages import EngineLog
from mxflow.model import (
    ClusterResult,
    DatasetResult,
    DendrogramNode,
    MergeOptions,
    MergeSummary,
    Rejection,
)
from mxflow.util.files import safe_name


@dataclass
class MergeLayout:
    """Directory names of one sample's merge (KAMO's, with the starting resolution in Å)."""

    root: Path
    sample: str
    d_start: float | None

    @property
    def name(self) -> str:
        """The sample as a file-name part (:func:`~mxflow.util.files.safe_name`: never a
        path, whatever the sample is called)."""
        return safe_name(self.sample, "sample")

    @property
    def _tag(self) -> str:
        d = "auto" if self.d_start is None else f"{self.d_start:.1f}"
        return f"{d}S_{self.name}"

    @property
    def prep(self) -> Path:
        return self.root / f"merge_prep_{self._tag}"

    def method_dir(self, method: str) -> Path:
        return self.root / f"merge_{method}_{self._tag}"

    def cluster_dir(self, method: str, node_id: int) -> Path:
        return self.method_dir(method) / f"cluster_{node_id:04d}"

    @property
    def summary(self) -> Path:
        return self.root / f"merge_summary_{self.name}.json"


def _wavelength_notes(items: list[MergeInput], summary: MergeSummary) -> None:
    lam = [it.wavelength for it in items]
    if not any(math.isfinite(x) for x in lam):
        return
    lo, hi = float(np.nanmin(lam)), float(np.nanmax(lam))
    summary.wavelength_range = (lo, hi)
    n = len(wavelength_groups(lam))
    if n > 1:
        summary.notes.append(
            f"the inputs span {n} wavelengths ({lo:.4f}–{hi:.4f} Å) and are merged together; "
            "mxflow run merges each wavelength of a sample separately"
        )


def nested_start(
    node: DendrogramNode, merged: list[ClusterResult], d_start: float | None
) -> tuple[float | None, str]:
    """Where a cluster's runs start (Å), and why, when not at the half-corner ``d_start``.

    A cluster inside one already merged (clusters go largest first) whose
    CC½ was still above the target at the half-corner, so that it was merged
    again to the detector corner, starts at that corner: its data are a
    subset of the same crystals, and the half-corner chain would only be run
    to be run again.  This halves the cost of the nested clusters of a large
    collection.  Returns (``d_start``, "") otherwise.
    """
    mine = set(node.members)
    for parent in merged:
        if parent.ok and parent.extended_to and mine <= set(parent.node_members):
            return parent.extended_to, (
                f"started at the detector corner ({parent.extended_to:.2f} Å), where the "
                f"enclosing cluster {parent.id} was extended (its CC½ stayed above the "
                "target at the half-corner)"
            )
    return d_start, ""


def _merge_clusters(
    method: str,
    sym: stages.Symmetrized,
    ccm: stages.CCMatrix,
    layout: MergeLayout,
    opts: MergeOptions,
    engine: EngineLog,
    summary: MergeSummary,
) -> None:
    """Cluster by ``method``, merge the chosen clusters, write the method's folder."""
    cell = cells.median_cell(sym.cells)
    n_possible = select.possible_reflections(cell, sym.space_group, layout.d_start or 2.0)
    dendrogram = stages.cluster(method, sym, ccm, n_possible)
    chosen, not_merged, notes = stages.choose_clusters(dendrogram, opts)
    summary.not_merged += not_merged
    summary.notes += notes
    wedge = stages.wedge_width(sym.items)
    done: list[ClusterResult] = []
    for node in chosen:
        d_start, start_note = nested_start(node, done, layout.d_start)
        job = ClusterJob(
            cdir=layout.cluster_dir(method, node.id),
            method=method,
            node=node,
            member_idx=[ccm.keep[i] for i in node.member_index],
            sym=sym,
            wedge=wedge,
            d_start=d_start,
            opts=opts,
            engine=engine,
            sample=layout.sample,
            start_note=start_note,
        )
        try:
            result = merge_cluster(job)
        except (MxflowError, ValueError) as exc:
            result = ClusterResult(node.id, method, list(node.members), error=str(exc))
        node.merged = result.ok
        where = f"{method}/cluster_{node.id:04d}"
        for run in result.runs:
            summary.rejected += [
                Rejection(r.name, f"{where}/{r.stage}", r.reason) for r in run.removed
            ]
        summary.clusters.append(result)
        done.append(result)
    write_method_outputs(
        layout.method_dir(method), summary.for_method(method), dendrogram, ccm.pairs
    )


def merge_sample(
    inputs: list[str | Path | DatasetResult],
    workdir: str | Path,
    options: MergeOptions | None = None,
) -> MergeSummary:
    """Cluster and merge the datasets of one sample; returns (and writes) the summary.

    Never raises for bad data: datasets that cannot be used are listed in
    ``rejected`` and clusters that fail carry an ``error``.  Raises
    BadInputError only for inputs that are not data at all.
    """
    opts = options or MergeOptions()
    wd = Path(workdir).resolve()  # DIALS programs run in sub-directories
    wd.mkdir(parents=True, exist_ok=True)
    items, rejected = collect_inputs(list(inputs), opts.sample)
    sample = opts.sample or next((it.sample for it in items if it.sample), "") or "sample"
    summary = MergeSummary(
        sample, opts.method, opts.label, n_inputs=len(items), rejected=rejected, options=opts
    )
    _wavelength_notes(items, summary)
    engine = EngineLog(wd, summary.steps)
    if not items:
        summary.notes.append("no usable datasets")
        write_final(summary, wd)  # none: a stale final/ goes
        write_summary(MergeLayout(wd, sample, None).summary, summary)
        return summary
    reference = reference_cell = None
    if opts.reference:
        reference, cell, _ = read_reference(opts.reference)
        reference_cell = cell.parameters
    group, rejected = stages.group_cells(items, opts, reference_cell)
    summary.rejected += rejected
    half_corner = [it.half_corner_d for it in group if it.half_corner_d]
    summary.d_start = opts.d_min or (float(np.median(half_corner)) if half_corner else None)
    layout = MergeLayout(wd, sample, summary.d_start)
    try:
        sym, rejected = stages.resolve_symmetry(group, layout.prep, opts, engine)
        summary.rejected += rejected
        sym, summary.ambiguity = stages.apply_reference(
            sym, reference, opts.reference, layout.prep, opts, engine
        )
        choice = stages.choose_space_group(sym, opts.space_group, keep_setting=bool(reference))
        sym = stages.apply_space_group(sym, choice, layout.prep, opts, engine)
        summary.space_group_choice = choice
    except MxflowError as exc:
        summary.rejected += [
            Rejection(it.name, "symmetry", f"symmetry step failed: {exc}") for it in group
        ]
        write_final(summary, wd)
        write_summary(layout.summary, summary)
        return summary
    summary.space_group = sym.space_group
    ccm, rejected = stages.cc_matrix(sym, opts.cc_d_min or summary.d_start, opts.min_common)
    summary.rejected += rejected
    stages.check_selective_breeding(sym, ccm, summary.ambiguity)
    for method in ["blend", "cc"] if opts.method == "both" else [opts.method]:
        _merge_clusters(method, sym, ccm, layout, opts, engine, summary)
    write_final(summary, wd)  # final/: the recommended cluster's files
    write_summary(layout.summary, summary)
    return summary
