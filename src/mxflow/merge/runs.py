"""Scaling and merging one cluster: run_01 → run_02 → run_03, then the resolution cut.

run_01 scales every member; run_02 scales again without the image groups
whose ΔCC½ is an outlier; run_03 without the outlier datasets.  A run exists
only when the rejection before it removed something; the last one is the
cluster's final run.  The final run is cut where the fitted CC½ falls to
the target; earlier runs keep all their data.  Every DIALS program is a
resumable engine step, so a killed merge resumes at the step it was in.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path

import gemmi
import numpy as np

from mxflow.engine import merge_steps
from mxflow.engine.electron_steps import ELECTRON_SCALE
from mxflow.engine.expt import read_experiments
from mxflow.engine.refl import read_reflections
from mxflow.errors import MxflowError
from mxflow.merge import analysis
from mxflow.merge.diagnostics import cluster_diagnostics
from mxflow.merge.observations import read_observations
from mxflow.merge.shelx import write_hklf4
from mxflow.merge.stages import EngineLog, Symmetrized
from mxflow.model import (
    ClusterDiagnostics,
    ClusterResult,
    DendrogramNode,
    HeavyAtom,
    MergeOptions,
    MergeRun,
    MergingStats,
    Rejection,
    ResolutionFit,
    is_electron_wavelength,
    to_dict,
)
from mxflow.stats import absences
from mxflow.stats.anomalous import anomalous_signal
from mxflow.stats.free_flags import write_merged_mtz
from mxflow.stats.merging import format_table, stats_from_mtz, stats_to_json
from mxflow.stats.observations import Observations
from mxflow.stats.resolution import estimate_d_min
from mxflow.stats.scatterers import heavy_atom_or_note
from mxflow.util.files import atomic_write_text, safe_name, write_json
from mxflow.util.mtz import write_unmerged_mtz


@dataclass
class ClusterJob:
    """What one cluster's runs need: where, which datasets, how."""

    cdir: Path
    method: str
    node: DendrogramNode
    member_idx: list[int]  # experiments of sym.expt that are the node's members
    sym: Symmetrized
    wedge: float  # degrees, for dials.scale's intervals
    d_start: float | None  # Å
    opts: MergeOptions
    engine: EngineLog
    sample: str = "sample"
    # why d_start is not the half-corner, when it was taken from an enclosing cluster
    start_note: str = ""

    @property
    def wavelength(self) -> float | None:
        """Median wavelength of the members (Å), None when none is known."""
        lam = [self.sym.items[i].wavelength for i in self.member_idx]
        known = [x for x in lam if x is not None and np.isfinite(x)]
        return float(np.median(known)) if known else None

    @property
    def is_electron(self) -> bool:
        """True when the members' wavelength is an electron one (λ < 0.1 Å)."""
        return is_electron_wavelength(self.wavelength)

    @property
    def heavy_atom(self) -> HeavyAtom | None:
        """The anomalous scatterer the merge was told of, at the members' wavelength."""
        if not self.opts.heavy_atom:
            return None
        return heavy_atom_or_note(self.opts.heavy_atom, self.wavelength, self.opts.n_sites)

    @property
    def mtz_names(self) -> merge_steps.MtzNames:
        """Project and crystal: the sample; dataset: the wavelength of the members (Å)."""
        lam = self.wavelength
        dataset = f"{lam:.4f}A" if lam is not None else "NATIVE"
        name = safe_name(self.sample, "sample")
        return merge_steps.MtzNames(name, name, dataset)


@dataclass
class _State:
    """The latest run of a cluster: its directory, observations and datasets (in file order)."""

    run: Path
    obs: Observations
    members: list[str]


def table_ids(refl: Path, expt: Path) -> list[int]:
    """Reflection-table id of each experiment of ``expt`` (in file order)."""
    ident = {v: k for k, v in read_reflections(refl, columns=[]).identifiers.items()}
    exps = read_experiments(expt)
    if ident and all(e.identifier in ident for e in exps):
        return [ident[e.identifier] for e in exps]
    return list(range(len(exps)))


def _scale(
    job: ClusterJob, run: Path, expt: Path, refl: Path, selection: list[str]
) -> Observations:
    o = job.opts
    step = merge_steps.scale(
        str(expt),
        str(refl),
        selection,
        job.wedge,
        job.d_start,
        o.anomalous,
        o.nproc,
        o.timeout,
        html="dials.scale.html",
        extra=ELECTRON_SCALE if job.is_electron else None,
        n_datasets=len(job.member_idx),
    )
    job.engine.run(step, run)
    return read_observations(run / "scaled_unmerged.mtz", run / "scaled.expt")


def _rescale(job: ClusterJob, prev: _State, name: str, selection: list[str], dropped: set[int]):
    run = job.cdir / name
    obs = _scale(job, run, prev.run / "scaled.expt", prev.run / "scaled.refl", selection)
    return _State(run, obs, [m for k, m in enumerate(prev.members) if k not in dropped])


def bad_frame_selection(
    st: _State, opts: MergeOptions
) -> tuple[list[str], set[int], list[Rejection]]:
    """dials.scale arguments that leave out the outlier image groups of ``st``'s run.

    A dataset whose every image group is an outlier is left out whole
    (``allbadframe``).  Returns (arguments, datasets dropped, rejections);
    no arguments when nothing is rejected.
    """
    bad = analysis.frame_rejection(st.obs, opts.image_group, opts.min_delta_cc_half)
    if not bad:
        return [], set(), []
    obs = st.obs
    tids = table_ids(st.run / "scaled.refl", st.run / "scaled.expt")
    per_ds: dict[int, list[analysis.BadImageGroup]] = {}
    for g in bad:
        per_ds.setdefault(g.dataset, []).append(g)
    excl, drop, removed = [], set(), []
    for k, groups in per_ds.items():
        images = obs.image[obs.dataset == k]
        n_bad = sum(
            len(np.unique(images[(images >= g.first) & (images <= g.last)])) for g in groups
        )
        if n_bad >= len(np.unique(images)):
            drop.add(k)
            removed.append(
                Rejection(st.members[k], "run_02", "allbadframe: every image group rejected")
            )
            continue
        for g in groups:
            excl.append(f"{tids[k]}:{g.first}:{g.last}")
            removed.append(
                Rejection(
                    st.members[k],
                    "run_02",
                    f"bad_frames: images {g.first}-{g.last} ΔCC½ {g.delta_cc_half:.4f} "
                    f"below Tukey fence {g.fence:.4f}",
                )
            )
    args = ["exclude_images=" + " ".join(excl)] if excl else []
    if drop:
        args.append("dataset_selection.exclude_datasets=" + ",".join(str(tids[k]) for k in drop))
    return args, drop, removed


def bad_dataset_selection(
    st: _State, opts: MergeOptions
) -> tuple[list[str], set[int], list[Rejection]]:
    """dials.scale arguments that leave out the outlier datasets of ``st``'s run (run_03)."""
    bad = analysis.dataset_rejection(st.obs, opts.min_delta_cc_half)
    if not bad:
        return [], set(), []
    tids = table_ids(st.run / "scaled.refl", st.run / "scaled.expt")
    removed = [Rejection(st.members[k], "run_03", why) for k, why in bad.items()]
    args = ["dataset_selection.exclude_datasets=" + ",".join(str(tids[k]) for k in sorted(bad))]
    return args, set(bad), removed


def finish_run(
    job: ClusterJob, run: Path, d_cut: float | None, final: bool = False
) -> tuple[MergingStats, Path]:
    """Merge (French–Wilson), export, statistics, in the sample's space group.

    Cut at ``d_cut`` Å when given; unmerged.mtz is dials.export's
    ``unmerged_fullres.mtz`` (all the data) with the dataset named after the
    wavelength, mxflow's history, and the cut.  merged.mtz is dials.merge's file without
    systematic absences and with the FreeR_flag column
    (:mod:`mxflow.stats.free_flags`).  The ``final`` run also gets an
    unmerged mmCIF (all its data, for deposition).  Returns the statistics
    and the final .expt.
    """
    expt, refl = run / "scaled.expt", run / "scaled.refl"
    timeout, names = job.opts.timeout, job.mtz_names
    step = merge_steps.merge(str(expt), str(refl), d_cut, "dials_merged.mtz", timeout, names)
    job.engine.run(step, run)
    where = run.relative_to(job.cdir) if run.is_relative_to(job.cdir) else run.name
    what = f"{job.method} cluster {job.node.id} of sample {job.sample}, {where}"
    write_merged_mtz(
        run / "dials_merged.mtz",
        run / "merged.mtz",
        what,
        free_flags=job.opts.free_flags,
        history_lines=anomalous_history(job.opts, job.heavy_atom),
    )
    if job.opts.anomalous:
        write_hklf4(run / "merged.mtz", run / SHELX_NAME)
    full = "unmerged_fullres.mtz"
    step = merge_steps.export_unmerged(str(expt), str(refl), full, timeout=timeout, names=names)
    job.engine.run(step, run)
    write_unmerged_mtz(run / full, run / "unmerged.mtz", names.dataset, [f"mxflow: {what}"], d_cut)
    if final:
        step = merge_steps.export_mmcif(str(expt), str(refl), "dials_unmerged.cif", timeout)
        job.engine.run(step, run)
        write_unmerged_cif(run / "dials_unmerged.cif", run / "unmerged.cif", run / "merged.mtz")
    stats = stats_from_mtz(run / "unmerged.mtz")
    atomic_write_text(run / "merging_stats.txt", format_table(stats) + "\n")
    write_json(run / "merging_stats.json", stats_to_json(stats))
    return stats, expt


SHELX_NAME = "merged_hklf4.hkl"  # SHELX HKLF 4 beside merged.mtz (anomalous merges)


def anomalous_history(opts: MergeOptions, heavy: HeavyAtom | None) -> list[str]:
    """MTZ history lines of an anomalous merge: I(+)/I(−) kept, the heavy atom, f′/f″
    and the expected sites when given (none for a native merge)."""
    if not opts.anomalous:
        return []
    lines = ["anomalous: I(+) and I(-) scaled and merged apart (DANO, SIGDANO)"]
    if heavy is not None:
        f = (
            f", f' {heavy.f_prime:.2f} e, f'' {heavy.f_double_prime:.2f} e at "
            f"{heavy.energy_ev:.0f} eV"
            if np.isfinite(heavy.f_double_prime)
            else ""
        )
        sites = f", {heavy.n_sites} sites expected" if heavy.n_sites else ""
        lines.append(f"heavy atom {heavy.element}{sites}{f}")
    return lines


def write_unmerged_cif(src: Path, dst: Path, merged_mtz: Path) -> None:
    """``dst``: dials.export's unmerged mmCIF ``src`` with the cell and space group it lacks.

    DIALS 3.12 writes the observations and statistics but no ``_cell`` or
    ``_symmetry`` items; they are taken from the cluster's merged MTZ (its
    average cell and final space group).
    """
    doc = gemmi.cif.read(str(src))
    block = doc.sole_block()
    mtz = gemmi.read_mtz_file(str(merged_mtz))
    entry = block.find_value("_entry.id") or block.name
    block.set_pair("_cell.entry_id", entry)
    for name, value in zip(
        ("length_a", "length_b", "length_c", "angle_alpha", "angle_beta", "angle_gamma"),
        mtz.cell.parameters,
        strict=True,
    ):
        block.set_pair(f"_cell.{name}", f"{value:.4f}")
    block.set_pair("_symmetry.entry_id", entry)
    block.set_pair("_symmetry.space_group_name_H-M", gemmi.cif.quote(mtz.spacegroup.hm))
    block.set_pair("_symmetry.Int_Tables_number", str(mtz.spacegroup.number))
    atomic_write_text(dst, doc.as_string())


#: the line of dials.merge's log (DIALS 3.12) with its maximum-likelihood Wilson B (Å²)
_DIALS_WILSON_B = re.compile(r"^Wilson B factor\s+(-?\d+(?:\.\d+)?)\s*$", re.M)


def wilson_b(run: Path) -> tuple[float, str]:
    """(Wilson B in Å², where it comes from) of a finished run.

    dials.merge's maximum-likelihood estimate (with form factors, as
    refinement programs compute it) when its log has one; otherwise mxflow's
    fall-off of ln⟨I⟩ over s²/2 (no form-factor normalisation, so larger),
    and the source says so.
    """
    try:
        found = _DIALS_WILSON_B.findall((run / "dials.merge.log").read_text(errors="replace"))
    except OSError:
        found = []
    if found:
        return float(found[-1]), "dials.merge"
    return _wilson_b(run / "merged.mtz"), "mxflow fall-off (dials.merge gave none)"


def _wilson_b(merged_mtz: Path) -> float:
    mtz = gemmi.read_mtz_file(str(merged_mtz))
    col = mtz.column_with_label("IMEAN")
    if col is None:
        return float("nan")
    return analysis.wilson_b(np.asarray(mtz.make_d_array()), np.asarray(col, dtype=float))


def _run_chain(job: ClusterJob, folder: str = "") -> tuple[_State, list[MergeRun]]:
    """run_01 (all members) → run_02 (bad frames out) → run_03 (bad datasets out), each
    only when the rejection before it removed something; in ``job.cdir / folder``."""
    o, sym = job.opts, job.sym
    ids_all = table_ids(sym.refl, sym.expt)
    use = ",".join(str(ids_all[i]) for i in job.member_idx)
    selection = (
        [f"dataset_selection.use_datasets={use}"] if len(job.member_idx) < len(ids_all) else []
    )
    prefix = f"{folder}/" if folder else ""
    run = job.cdir / f"{prefix}run_01"
    members = [sym.names[i] for i in job.member_idx]
    st = _State(run, _scale(job, run, sym.expt, sym.refl, selection), members)
    runs = [MergeRun(f"{prefix}run_01", list(members))]
    for name, enabled, choose in (
        ("run_02", o.reject_frames, bad_frame_selection),
        ("run_03", o.reject_datasets, bad_dataset_selection),
    ):
        if not enabled:
            continue
        args, dropped, why = choose(st, o)
        if args:
            st = _rescale(job, st, f"{prefix}{name}", args, dropped)
            runs.append(MergeRun(f"{prefix}{name}", list(st.members), why))
    return st, runs


def _fit(st: _State, target: float) -> tuple[ResolutionFit, float | None]:
    """The CC½ fit of a run and where to cut it (None: CC½ stays above target to its limit)."""
    fit = estimate_d_min(st.obs.keys, st.obs.i, st.obs.s2, target)
    d_cut = (
        fit.d_min if (fit.d_min and fit.data_limit and fit.d_min > fit.data_limit + 0.005) else None
    )
    return fit, d_cut


#: extend only when the corner is at least this much (Å) beyond the half-corner start
MIN_EXTENSION = 0.02


def extension_limit(job: ClusterJob, fit: ResolutionFit, d_cut: float | None) -> float | None:
    """How far (Å) to extend a cluster's merge beyond its start, or None.

    Extend when CC½ at the starting limit is still above the target (no cut
    was found inside the data), the start was mxflow's own (the detector
    half-corner, not ``--d-min``), and the members' detector corner (median)
    lies beyond it.
    """
    if job.opts.d_min or not job.d_start or d_cut is not None or fit.d_min is None:
        return None
    corners = [job.sym.items[i].corner_d for i in job.member_idx if job.sym.items[i].corner_d]
    if not corners:
        return None
    corner = float(np.median(corners))
    return corner if corner < job.d_start - MIN_EXTENSION else None


def merge_cluster(job: ClusterJob) -> ClusterResult:
    """Scale and merge one cluster (run_01 → run_02 → run_03), cut where CC½ = target.

    Starts at ``job.d_start`` (the half-corner, KAMO's start); when CC½ is
    still above the target there, the whole chain is run again to the
    detector corner in ``extended/`` and that is the cluster's result
    (``resolution.json`` says which case applied).  Raises StepFailed,
    MxflowError or ValueError when a step fails; the caller records that as
    the cluster's error.
    """
    o = job.opts
    st, runs = _run_chain(job)
    fit, d_cut = _fit(st, o.cc_half_target)
    start = job.d_start
    corner = extension_limit(job, fit, d_cut)
    if corner is not None:
        for r in runs:  # the runs at the half-corner stay on disk and in the record
            r.stats, _ = finish_run(job, job.cdir / r.name, None)
        first = runs
        job = dataclasses.replace(job, d_start=corner)
        st, runs = _run_chain(job, "extended")
        runs = first + runs
        fit, d_cut = _fit(st, o.cc_half_target)
        case = (
            f"CC½ stayed above {o.cc_half_target} at the half-corner ({start:.2f} Å): "
            f"merged again to the detector corner ({corner:.2f} Å)"
        )
    elif o.d_min:
        case = f"started at the given d_min {o.d_min:.2f} Å"
    elif job.start_note:
        case = job.start_note
    elif d_cut is None and start:
        case = (
            f"CC½ stays above {o.cc_half_target} to the data limit; the detector corner "
            "is not beyond the half-corner start, so not extended"
        )
    else:
        case = f"started at the half-corner ({start:.2f} Å)" if start else "no starting limit"
    if d_cut is not None:
        case += f"; cut where CC½ falls to {o.cc_half_target} ({d_cut:.2f} Å)"
    final_runs = [r for r in runs if r.name.startswith("extended/")] if corner else runs
    for r in final_runs[:-1]:
        r.stats, _ = finish_run(job, job.cdir / r.name, None)
    runs[-1].stats, final_expt = finish_run(job, st.run, d_cut, final=True)
    resolution_info = {"start": start, "corner": corner, "case": case}
    write_json(st.run / "resolution.json", {**to_dict(fit), "cut_at": d_cut, **resolution_info})
    sg, evidence = _axial(st.run / "dials_merged.mtz")  # absences kept: they are the evidence
    exps = read_experiments(final_expt)
    member_cells = np.array([e.unit_cell for e in exps if e.unit_cell])
    best, worst = analysis.anisotropic_limits(st.obs, 0.5)
    b_factor, b_source = wilson_b(st.run)
    try:
        diagnostics = cluster_diagnostics(st.run, st.members, d_cut or fit.d_min, o.image_group)
        diagnostics.run = runs[-1].name
    except (MxflowError, ValueError, OSError, RuntimeError) as exc:
        diagnostics = ClusterDiagnostics(runs[-1].name, note=f"no diagnostics: {exc}")
    return ClusterResult(
        id=job.node.id,
        method=job.method,
        node_members=list(job.node.members),
        members=list(st.members),
        height=job.node.height,
        node_stats=job.node.stats,
        runs=runs,
        final_run=runs[-1].name,
        space_group=exps[0].space_group or "",
        space_group_note=absences.space_group_note(sg, evidence) if sg else None,
        axial=evidence,
        unit_cell=tuple(gemmi.read_mtz_file(str(st.run / "merged.mtz")).cell.parameters),
        unit_cell_spread=tuple(member_cells.std(axis=0)) if len(member_cells) else None,
        resolution=fit,
        d_cut=d_cut,
        resolution_case=case,
        extended_to=corner if corner is not None else (job.d_start if job.start_note else None),
        aniso_best=best,
        aniso_worst=worst,
        wilson_b=b_factor,
        wilson_b_source=b_source,
        stats=runs[-1].stats,
        merged_mtz=str((st.run / "merged.mtz").relative_to(job.engine.root)),
        unmerged_mtz=str((st.run / "unmerged.mtz").relative_to(job.engine.root)),
        diagnostics=diagnostics,
        anomalous=anomalous_signal(runs[-1].stats, job.heavy_atom) if o.anomalous else None,
        shelx_hkl=(str((st.run / SHELX_NAME).relative_to(job.engine.root)) if o.anomalous else ""),
    )


def _axial(merged_mtz: Path):
    try:
        return absences.axial_evidence_from_mtz(merged_mtz)
    except (OSError, RuntimeError, ValueError):
        return "", []
