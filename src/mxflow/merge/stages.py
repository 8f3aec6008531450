"""The stages of merging one sample, before the per-cluster runs.

cell grouping → symmetry and indexing ambiguity (dials.cosym) → reference
setting → pairwise CC matrix → clustering (one dendrogram per method) →
cluster choice.  Each stage is a function with typed inputs and outputs;
DIALS runs through :class:`EngineLog` (resumable engine steps), the
algorithms are the pure functions of :mod:`mxflow.cluster`.  The per-cluster
runs and the resolution cut are in :mod:`mxflow.merge.runs`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

import gemmi
import numpy as np

from mxflow.cluster import ambiguity, cells, intensity, select
from mxflow.cluster.intensity import IntensitySet
from mxflow.engine import merge_steps
from mxflow.engine.expt import read_experiments
from mxflow.engine.steps import Step, StepFailed, run_or_raise
from mxflow.errors import MxflowError
from mxflow.merge.inputs import MergeInput
from mxflow.merge.observations import per_dataset_sets, read_observations
from mxflow.model import (
    Ambiguity,
    CCPair,
    Dendrogram,
    DendrogramNode,
    MergeOptions,
    NotMerged,
    Rejection,
    SpaceGroupCandidate,
    SpaceGroupChoice,
    StepRecord,
    UnitCell,
)
from mxflow.stats import absences
from mxflow.stats.observations import Observations


@dataclass
class EngineLog:
    """Runs a merge's engine steps and keeps their records (logs relative to ``root``).

    A step whose outputs are complete from an earlier run is not run again
    (:func:`mxflow.engine.steps.run_step`), so a killed merge resumes where it
    stopped.  A failed step raises :class:`~mxflow.engine.steps.StepFailed`.
    """

    root: Path
    records: list[StepRecord] = field(default_factory=list)

    def run(self, step: Step, workdir: Path) -> StepRecord:
        try:
            record = run_or_raise(step, workdir)
        except StepFailed as exc:
            self._keep(exc.record, workdir)
            raise
        self._keep(record, workdir)
        return record

    def _keep(self, record: StepRecord, workdir: Path) -> None:
        log = Path(workdir) / record.log
        rel = log.relative_to(self.root) if log.is_relative_to(self.root) else log
        self.records.append(dataclasses.replace(record, log=str(rel)))


def _fmt_cell(c) -> str:
    return "(" + ", ".join(f"{x:.2f}" for x in c) + ")"


# ----------------------------------------------------------------- cells
def group_cells(
    items: list[MergeInput], opts: MergeOptions, reference_cell: tuple | None = None
) -> tuple[list[MergeInput], list[Rejection]]:
    """The cell group to merge, and a rejection for every dataset outside it.

    The largest group of Niggli cells linked by KAMO's tolerances
    (``opts.cell_rel_length`` relative edge, ``opts.cell_angle`` degrees), or
    the group matching ``reference_cell`` (Å, degrees) when given.
    """
    reduced = [cells.niggli_cell(it.unit_cell, it.space_group.strip()[0]) for it in items]
    groups = cells.cell_groups(reduced, opts.cell_rel_length, opts.cell_angle)
    chosen = groups[0]
    if reference_cell is not None:
        ref = cells.niggli_cell(reference_cell)
        tol = (opts.cell_rel_length, opts.cell_angle)
        matching = [
            g
            for g in groups
            if cells.cells_similar(cells.median_cell([reduced[i] for i in g]), ref, *tol)
        ]
        if matching:
            chosen = matching[0]
    med = cells.median_cell([reduced[i] for i in chosen])
    rejected = [
        Rejection(
            items[i].name,
            "cell",
            f"reduced cell {_fmt_cell(reduced[i])} not within {100 * opts.cell_rel_length:g} % / "
            f"{opts.cell_angle:g}° of the merged group's median {_fmt_cell(med)}",
        )
        for i in range(len(items))
        if i not in chosen
    ]
    return [items[i] for i in chosen], rejected


# -------------------------------------------------------------- symmetry
@dataclass
class Symmetrized:
    """The datasets of a merge, consistently indexed in one space group.

    ``items[k]`` is experiment k of ``expt`` / ``refl``; ``obs`` their
    unscaled observations (from dials.export), tagged by dataset and image.
    """

    expt: Path
    refl: Path
    items: list[MergeInput]
    space_group: str
    cells: list[UnitCell]
    obs: Observations

    @property
    def names(self) -> list[str]:
        return [it.name for it in self.items]


def _exp_key(e) -> tuple:
    return (Path(e.template or "").name, e.image_range)


def _match_experiments(expt: Path, items: list[MergeInput]) -> list[int]:
    """Index into ``items`` of each experiment of ``expt`` (matched by image template and range)."""
    out = read_experiments(expt)
    if len(out) == len(items):
        return list(range(len(items)))
    keys_in: dict[tuple, list[int]] = {}
    for k, it in enumerate(items):
        for e in read_experiments(it.expt):
            keys_in.setdefault(_exp_key(e), []).append(k)
    order = []
    for e in out:
        cand = keys_in.get(_exp_key(e), [])
        order.append(cand.pop(0) if cand else -1)
    if -1 in order:
        raise MxflowError(f"{expt}: cannot match dials.cosym output experiments to its inputs")
    return order


def _symmetrized(prep: Path, expt: Path, refl: Path, items: list[MergeInput], mtz: str, engine):
    engine.run(
        merge_steps.export_unmerged(str(expt), str(refl), mtz, f"export_{Path(mtz).stem}"), prep
    )
    exps = read_experiments(expt)
    return Symmetrized(
        expt,
        refl,
        items,
        exps[0].space_group or "P 1",
        [tuple(e.unit_cell) for e in exps],
        read_observations(prep / mtz, expt),
    )


def resolve_symmetry(
    group: list[MergeInput], prep: Path, opts: MergeOptions, engine: EngineLog
) -> tuple[Symmetrized, list[Rejection]]:
    """dials.cosym (≥ 2 datasets), or dials.symmetry / dials.reindex (one), on ``group``.

    Returns the symmetrized datasets and a rejection for every dataset that
    dials.cosym left out.  Raises StepFailed or MxflowError when the step fails.
    """
    pairs = [(it.expt, it.refl) for it in group]
    if len(group) >= 2:
        step = merge_steps.cosym(pairs, opts.space_group, opts.nproc, opts.timeout)
    elif opts.space_group:
        step = merge_steps.assign_space_group(pairs, opts.space_group, opts.timeout)
    else:
        step = merge_steps.symmetry(pairs, opts.timeout)
    engine.run(step, prep)
    expt, refl = (prep / name for name in merge_steps.SYMMETRIZED)
    order = _match_experiments(expt, group)
    kept = set(order)
    dropped = [
        Rejection(
            it.name, "symmetry", "dropped by dials.cosym (inconsistent cell or too few reflections)"
        )
        for k, it in enumerate(group)
        if k not in kept
    ]
    items = [group[k] for k in order]
    return _symmetrized(prep, expt, refl, items, "unscaled.mtz", engine), dropped


def apply_reference(
    sym: Symmetrized,
    reference: IntensitySet | None,
    reference_path: str | None,
    prep: Path,
    opts: MergeOptions,
    engine: EngineLog,
) -> tuple[Symmetrized, Ambiguity]:
    """The indexing ambiguity of the lattice, and the reference's setting applied to all.

    dials.cosym has indexed the datasets consistently; a reference fixes
    which of the equivalent settings that is (one operator for the whole
    set, chosen by CC to the reference) and reindexes when it is not the
    identity.
    """
    med = cells.median_cell(sym.cells)
    ops = ambiguity.ambiguity_operators(med, sym.space_group)
    amb = Ambiguity(operators=[o.triplet() for o in ops])
    if reference is None or len(ops) < 2:
        return sym, amb
    obs = sym.obs
    whole = intensity.merge_observations("all", obs.hkl, obs.i, obs.sigma, obs.space_group)
    ((best, cc_ref),) = ambiguity.assign_by_reference([whole], reference, ops, sym.space_group)
    amb.reference, amb.reference_op, amb.reference_cc = reference_path, ops[best].triplet(), cc_ref
    if best == 0:
        return sym, amb
    step = merge_steps.reindex(
        str(sym.expt), str(sym.refl), ops[best].as_hkl().triplet(), opts.timeout
    )
    engine.run(step, prep)
    expt, refl = prep / "reindexed.expt", prep / "reindexed.refl"
    return _symmetrized(prep, expt, refl, sym.items, "unscaled_reindexed.mtz", engine), amb


# ----------------------------------------------------------- space group
def _axis_after(op: gemmi.Op, axis: str) -> str:
    """Which axis of the reindexed setting the data's ``axis`` (a, b or c) becomes."""
    rot = np.array(op.as_hkl().rot, dtype=int) // gemmi.Op.DEN  # new hkl = rot @ old hkl
    j = "abc".index(axis)
    return "abc"[int(np.flatnonzero(rot[:, j])[0])]


def choose_space_group(sym: Symmetrized, given: str | None, keep_setting: bool) -> SpaceGroupChoice:
    """The space group of all the sample's data, from their axial reflections together.

    The point group is dials.cosym's (or dials.symmetry's); every Sohncke
    group of that point group and lattice is scored by the likelihood of the
    merged axial reflections of all datasets
    (:func:`mxflow.stats.absences.score_candidates`), and the most probable
    is taken — with an unmeasured axis taken as a screw (see
    :func:`~mxflow.stats.absences.score_candidates`), and the label saying so.  The result is in the reference (standard) setting of its
    group unless ``keep_setting`` (a reference MTZ fixes the setting); a
    ``given`` space group (--space-group, sample sheet) is kept as given.
    """
    data_sg = gemmi.SpaceGroup(sym.space_group)
    point_group = gemmi.find_spacegroup_by_ops(data_sg.operations().derive_symmorphic())
    obs = sym.obs
    hkl, z = absences.merged_axial(obs.hkl, obs.i, obs.sigma, data_sg)
    evidence = absences.axial_evidence(hkl, z, point_group)
    scored = absences.score_candidates(hkl, z, point_group)
    candidates = []
    for group, p in scored:
        ref, _ = absences.reference_setting(group[0])
        name = ref.hm if ref.hm == group[0].hm else f"{ref.hm} (here {group[0].hm})"
        if len(group) > 1:
            name += " or " + " or ".join(g.hm for g in group[1:])
        candidates.append(SpaceGroupCandidate(name, p, absences.screw_axes(group[0])))
    n = len(sym.items)
    choice = SpaceGroupChoice(
        point_group=point_group.hm,
        space_group=point_group.hm,
        candidates=candidates,
        axial=evidence,
        undetermined=[e.axis for e in evidence if e.verdict == "undetermined"],
    )
    if given:
        choice.space_group = choice.label = data_sg.hm
        choice.source = "given (--space-group or the sample sheet)"
        return choice
    best_group, p_best = scored[0]
    best = best_group[0]
    op = gemmi.Op("x,y,z")
    if not keep_setting:
        best, op = absences.reference_setting(best)
    choice.space_group = best.hm
    choice.reindex = op.as_hkl().triplet()
    choice.undetermined = [_axis_after(op, a) for a in choice.undetermined]
    choice.source = f"axial reflections of all {n} dataset{'s' if n != 1 else ''}"
    parts = [best.hm]
    names = absences.AXIAL_NAMES
    if choice.undetermined:
        axes = ", ".join(choice.undetermined)
        refl = " / ".join(names[a] for a in choice.undetermined)
        parts.append(
            f"screw axis along {axes} undetermined ({refl} not measured, taken as a screw)"
            if len(choice.undetermined) == 1
            else f"screw axes along {axes} undetermined ({refl} not measured, taken as screws)"
        )
    if len(best_group) > 1:
        parts.append(
            "axial extinctions cannot tell it from " + ", ".join(g.hm for g in best_group[1:])
        )
    if p_best < 0.9 and not choice.undetermined:
        parts.append(f"probability {p_best:.2f}")
    choice.label = ", ".join(parts[:1]) + ("; " + "; ".join(parts[1:]) if parts[1:] else "")
    return choice


def apply_space_group(
    sym: Symmetrized, choice: SpaceGroupChoice, prep: Path, opts: MergeOptions, engine: EngineLog
) -> Symmetrized:
    """``sym`` in the chosen space group and setting (dials.reindex; unchanged when it already is).

    Raises MxflowError when DIALS's result is not the expected group.
    """
    if choice.reindex == "h,k,l" and gemmi.SpaceGroup(sym.space_group).hm == choice.space_group:
        return sym
    step = merge_steps.reindex(
        str(sym.expt),
        str(sym.refl),
        choice.reindex,
        opts.timeout,
        space_group=choice.space_group,
        name="reindex_sg",
        stem="space_group",
    )
    engine.run(step, prep)
    expt, refl = prep / "space_group.expt", prep / "space_group.refl"
    out = _symmetrized(prep, expt, refl, sym.items, "unscaled_space_group.mtz", engine)
    if gemmi.SpaceGroup(out.space_group).hm != choice.space_group:
        raise MxflowError(
            f"{expt}: dials.reindex gave {out.space_group}, expected {choice.space_group}"
        )
    return out


# ------------------------------------------------------------- CC matrix
@dataclass
class CCMatrix:
    """Pairwise CC of the datasets' merged intensities (indices as in Symmetrized.items).

    ``keep``: datasets with a defined CC to every other kept one.
    """

    sets: list[IntensitySet]
    cc: np.ndarray
    n_common: np.ndarray
    keep: list[int]
    pairs: list[CCPair]


def cc_matrix(
    sym: Symmetrized, d_min: float | None, min_common: int
) -> tuple[CCMatrix, list[Rejection]]:
    """Per-dataset merged sets to ``d_min`` Å, their CC matrix, and the datasets without one."""
    names = sym.names
    sets = per_dataset_sets(sym.obs, names, d_min=d_min)
    cc, nc = intensity.cc_matrix(sets)
    bad = intensity.remove_bad_pairs(cc, nc, min_common)
    rejected = [
        Rejection(
            names[b],
            "cc",
            f"no_common_refls: CC undefined or fewer than {min_common} common reflections "
            "with some datasets",
        )
        for b in bad
    ]
    pairs = [
        CCPair(i, j, names[i], names[j], float(cc[i, j]), int(nc[i, j]))
        for i in range(len(names))
        for j in range(i + 1, len(names))
    ]
    keep = [i for i in range(len(names)) if i not in bad]
    return CCMatrix(sets, cc, nc, keep, pairs), rejected


def check_selective_breeding(sym: Symmetrized, ccm: CCMatrix, amb: Ambiguity) -> None:
    """Record whether selective breeding (Brehm & Diederichs) agrees with dials.cosym.

    The operators are those :func:`apply_reference` found for the lattice (``amb.operators``).
    """
    ops = [gemmi.Op(t) for t in amb.operators]
    if len(ops) < 2 or len(ccm.sets) < 2:
        return
    sb = ambiguity.selective_breeding(ccm.sets, ops, sym.space_group)
    amb.selective_breeding_agrees = all(a == 0 for a in sb)
    amb.selective_breeding = {n: ops[a].triplet() for n, a in zip(sym.names, sb, strict=True) if a}


# ------------------------------------------------------------ clustering
def wedge_width(items: list[MergeInput]) -> float:
    """Median wedge width in degrees (10° when unknown): sets dials.scale's intervals."""
    widths = [it.total_rotation for it in items if math.isfinite(it.total_rotation)]
    return float(np.median(widths or [10.0]))


def cluster(method: str, sym: Symmetrized, ccm: CCMatrix, n_possible: int) -> Dendrogram:
    """The dendrogram of the kept datasets: by cell ("blend") or by intensity CC ("cc", Ward)."""
    keep = ccm.keep
    names = [sym.names[i] for i in keep]
    sets = [ccm.sets[i] for i in keep]
    kcells = [sym.cells[i] for i in keep]
    kcc = ccm.cc[np.ix_(keep, keep)]
    if len(keep) >= 2:
        if method == "blend":
            z = cells.blend_linkage(kcells)
        else:
            z = intensity.ward_from_distance(intensity.cc_distance(kcc))
        nodes = select.dendrogram_nodes(z, names, sets, kcells, n_possible, kcc)
    elif len(keep) == 1:
        nodes = [select.single_node(names, sets, kcells, n_possible, kcc)]
    else:
        nodes = []
    return Dendrogram(method, names, nodes)


def choose_clusters(
    dendrogram: Dendrogram, opts: MergeOptions
) -> tuple[list[DendrogramNode], list[NotMerged], list[str]]:
    """The nodes to merge, the ones not merged (with why), and notes.

    KAMO's thresholds (``opts.thresholds``); when no node passes and
    ``opts.fallback_largest`` is set, the largest node is merged anyway and a
    note says so.  Every node of ``dendrogram`` gets its ``why_not``.
    """
    method, nodes = dendrogram.method, dendrogram.nodes
    chosen, rest = select.pick_clusters(nodes, opts.thresholds)
    notes = []
    if not chosen and nodes and opts.fallback_largest:
        big = max(nodes, key=lambda nd: len(nd.members))
        chosen = [big]
        rest = [r for r in rest if r.id != big.id]
        notes.append(
            f"{method}: no cluster passed the thresholds; merged the largest (node {big.id}) anyway"
        )
    why = {r.id: r.why_not for r in rest}
    for nd in nodes:
        nd.why_not = why.get(nd.id, "")
    not_merged = [NotMerged(method, r.id, len(r.members), r.why_not) for r in rest]
    return chosen, not_merged, notes
