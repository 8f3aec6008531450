"""Process one dataset with DIALS: import → ... → scaled unmerged and merged MTZ.

:func:`process_dataset` is the library entry point (the command line and
the Dask scheduler both call it).  It never raises for a problem of the
dataset: a failed step ends that dataset with ``status="failed"`` and a
``reason`` in plain words that quotes the DIALS error line and names the
step's log.  All output goes to the dataset's working directory, laid out
as a DIALS tutorial run would leave it (``imported.expt``, ``strong.refl``
... ``scaled.mtz``, ``merged.mtz``) plus ``stats.json`` / ``stats.txt``
(mxflow's merging-statistics table).  Steps whose outputs are complete and
whose inputs did not change are skipped on a rerun
(:mod:`mxflow.engine.steps`).

Space group: without one, the lattice comes from
dials.refine_bravais_settings, the point group from dials.symmetry and the
screw axes from the dataset's own axial reflections (:func:`_screw_axes`:
when they do not reach every axis, the point group stays and the note says
the screws are undetermined).  A
given one (command line or sample sheet) is used for indexing and skips
both, unless it explains too few spots compared with indexing without it
(CHECK_GIVEN_SG_BELOW, GIVEN_SG_MARGIN): then the dataset is processed as
if none were given and ``space_group_note`` says why.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
import traceback
from pathlib import Path

import gemmi
import numpy as np

from mxflow.engine import sweep_steps as D
from mxflow.engine.electron_steps import BRAVAIS_ARGS, ELECTRON_SCALE, FIX_DISTANCE
from mxflow.engine.expt import read_experiments
from mxflow.engine.reasons import plain_reason
from mxflow.engine.refl import read_reflections
from mxflow.engine.steps import (
    Step,
    dials_error_line,
    done_record_path,
    is_done,
    run_step,
    step_ok,
)
from mxflow.errors import BadInputError, MxflowError
from mxflow.model import Dataset, DatasetResult, ProcessingOptions, StepRecord, to_dict
from mxflow.process.electron import (
    ELECTRON_D_MAX,
    DistanceReading,
    ElectronGeometryError,
    electron_geometry,
    read_header_distance,
)
from mxflow.process.preflight import check_frames
from mxflow.stats import absences
from mxflow.stats.absences import axial_summary
from mxflow.stats.free_flags import write_merged_mtz
from mxflow.stats.merging import format_table, stats_from_mtz, stats_to_json
from mxflow.stats.resolution import cc_half_d_min, sparse_shell_limit_from_mtz
from mxflow.stats.scatterers import edge_note, edges_near, heavy_atom_or_note
from mxflow.util.files import atomic_write_text, write_json

#: fewer strong spots than this over the whole sweep: treat it as blank
MIN_SPOTS = 20
#: per-dataset resolution cut: where the fitted CC½ falls to this value (KAMO)
CC_HALF_CUT = 0.5
#: an indexing solution must explain at least this fraction of the strong spots
MIN_INDEXED_FRACTION = 0.25
#: with a given space group explaining fewer spots than this, indexing without it is tried too ...
CHECK_GIVEN_SG_BELOW = 0.9
#: ... and wins when it explains at least this much more (fraction of the strong spots)
GIVEN_SG_MARGIN = 0.15

STEP_WORDS = {
    "import": "importing the images (dials.import)",
    "find_spots": "spot finding (dials.find_spots)",
    "index": "indexing (dials.index)",
    "refine_bravais_settings": "Bravais lattice search (dials.refine_bravais_settings)",
    "reindex": "re-indexing (dials.reindex)",
    "refine": "refinement (dials.refine)",
    "integrate": "integration (dials.integrate)",
    "symmetry": "symmetry determination (dials.symmetry)",
    "scale": "scaling (dials.scale)",
}


class DatasetFailed(MxflowError):
    """A step of one dataset failed; the message is the reason shown to the user."""


class _Run:
    """Runs steps for one dataset and keeps their records."""

    def __init__(self, workdir: Path, result: DatasetResult):
        self.workdir = workdir
        self.result = result

    def step(self, step: Step, what: str | None = None) -> StepRecord:
        rec = run_step(step, self.workdir)
        self.result.steps.append(rec)
        if not step_ok(rec):
            raise DatasetFailed(self.failure(step, rec, what))
        return rec

    def failure(self, step: Step, rec: StepRecord, what: str | None = None) -> str:
        words = what or STEP_WORDS.get(step.name, step.program)
        error_line = dials_error_line(self.workdir, rec)
        if rec.returncode == 0 or rec.note:
            detail = f"{rec.note}: {error_line}" if error_line else rec.note
        else:
            detail = error_line or f"exit status {rec.returncode}"
        return f"{words} failed: {detail} (log: {rec.log})"


def _index(
    run: _Run,
    options: ProcessingOptions,
    sg: str | None,
    cell,
    stem: str = "indexed",
    attempts_slice: slice = slice(None),
) -> None:
    """dials.index with the retries of :func:`mxflow.engine.sweep_steps.index_attempts`.

    A solution that explains fewer than MIN_INDEXED_FRACTION of the strong
    spots is rejected (random spots can be "indexed" by a nonsense cell) and
    the next method is tried.  Writes ``<stem>.expt`` / ``<stem>.refl``.
    ``attempts_slice`` selects which of the attempts to try.
    """
    if _reuse_index(run, options, sg, cell, stem):
        return
    attempts = [
        D.index_step(options, label, extra, stem)
        for label, extra in D.index_attempts(options, sg, cell)[attempts_slice]
    ]
    errors = []
    for st in attempts:
        rec = run_step(st, run.workdir)
        run.result.steps.append(rec)
        if step_ok(rec):
            fraction = _indexed_fraction(run.workdir, stem)
            if fraction is not None and fraction >= MIN_INDEXED_FRACTION:
                return
            rec.note = f"rejected: only {100 * (fraction or 0):.0f}% of the strong spots indexed"
            errors.append(f"{st.label}: {rec.note}")
            done_record_path(run.workdir, st.name).unlink(missing_ok=True)
            continue
        errors.append(
            f"{st.label}: {dials_error_line(run.workdir, rec) or rec.note or rec.returncode}"
        )
    tried = ", ".join(st.label for st in attempts)
    raise DatasetFailed(
        f"indexing failed with every method tried ({tried}): {'; '.join(errors)} (logs: index_*.out)"
    )


def _log_text(workdir: Path, rec: StepRecord) -> str:
    try:
        return (workdir / rec.log).read_text(errors="replace")
    except OSError:
        return ""


def _why(workdir: Path, rec: StepRecord) -> str:
    """Why an attempt failed: in plain words when DIALS ran out of reflections
    (:func:`mxflow.engine.reasons.plain_reason`), else DIALS's error line."""
    if rec.returncode == 0 and rec.note:
        return rec.note
    text = _log_text(workdir, rec)
    if not text and not rec.command:  # an earlier run's attempt, its log since removed
        return "failed in an earlier run"
    return plain_reason(text) or dials_error_line(workdir, rec) or f"exit status {rec.returncode}"


def _first_that_works(run: _Run, steps: list[Step], attempts: list[D.Attempt]) -> None:
    """Run the first of ``steps`` (one per attempt, the plain one first) that succeeds.

    Steps that can fail for want of reflections (refinement, integration, scaling)
    have fallbacks: each attempt is a resumable step of the same name, so a rerun
    reuses whichever attempt succeeded before.  Each attempt that ran is in the
    dataset's steps; when a fallback is used, ``result.fallbacks`` gets one line in
    plain words: why the earlier attempts failed and which attempt was used, e.g.
    "integration: too few strong spots to model spot profiles (38 < 50, and 13 < 20
    per degree); summation integration used".  When every attempt fails the dataset
    fails with the reason of each.
    """
    words = STEP_WORDS.get(steps[0].name, steps[0].program)
    chosen = _reused(run, steps)
    failed: list[tuple[int, StepRecord]] = []
    if chosen is None:
        for i, st in enumerate(steps):
            rec = run_step(st, run.workdir)
            run.result.steps.append(rec)
            if step_ok(rec):
                chosen = i
                break
            failed.append((i, rec))
    else:  # reused: the earlier attempts' logs still tell why they failed
        failed = [(i, StepRecord(st.name, [], st.log_name, returncode=1))
                  for i, st in enumerate(steps[:chosen])]  # fmt: skip
    whys = [(i, _why(run.workdir, rec)) for i, rec in failed]
    if chosen is None:
        tried = "; ".join(f"{attempts[i].used.removesuffix(' used')}: {why}" for i, why in whys)
        logs = ", ".join(rec.log for _, rec in failed)
        raise DatasetFailed(f"{words} failed with every fallback tried ({tried}) (logs: {logs})")
    if chosen > 0:
        reasons = list(dict.fromkeys(why for _, why in whys))  # each cause once, in order
        topic = words.split(" (")[0]
        run.result.fallbacks.append(f"{topic}: {'; '.join(reasons)}; {attempts[chosen].used}")


def _reused(run: _Run, steps: list[Step]) -> int | None:
    """The index of the first of ``steps`` (attempts of one step) whose outputs an earlier
    run left complete and current, its record kept as the dataset's; None if none."""
    for i, st in enumerate(steps):
        if (old := is_done(st, run.workdir)) is not None:
            run.result.steps.append(old)
            return i
    return None


def _reuse_index(run: _Run, options: ProcessingOptions, sg: str | None, cell, stem: str) -> bool:
    """True (and its record kept) when an earlier run's successful indexing attempt,
    whichever it was, still holds: its outputs are reused."""
    steps = [D.index_step(options, label, extra, stem)
             for label, extra in D.index_attempts(options, sg, cell)]  # fmt: skip
    return _reused(run, steps) is not None


def _count_spots(workdir: Path) -> int:
    return read_reflections(workdir / "strong.refl", columns=[]).nrows


def _indexed_fraction(workdir: Path, stem: str = "indexed") -> float | None:
    """Fraction of the strong spots that ``<stem>.refl`` marks as indexed."""
    try:
        t = read_reflections(workdir / f"{stem}.refl", columns=["flags"])
        n_strong = _count_spots(workdir)
    except BadInputError:
        return None
    return float(t.has_flag("indexed").sum()) / n_strong if n_strong else None


def dataset_options(dataset: Dataset, options: ProcessingOptions) -> ProcessingOptions:
    """The options for one dataset: the command line's, completed by what the sample
    sheet says of its sample (space group, unit cell, anomalous, heavy atom); the
    command line wins, and a heavy atom makes the dataset anomalous."""
    heavy_atom = options.heavy_atom or dataset.heavy_atom
    return dataclasses.replace(
        options,
        space_group=options.space_group or dataset.space_group,
        unit_cell=options.unit_cell or dataset.unit_cell,
        anomalous=options.anomalous or dataset.anomalous or heavy_atom is not None,
        heavy_atom=heavy_atom,
    )


def anomalous_note(dataset: Dataset, options: ProcessingOptions) -> str | None:
    """What to say of anomalous scattering at the dataset's wavelength (``options``:
    :func:`dataset_options`'s): with a heavy atom, its f′/f″ there and where the
    energy lies from its edges (or why there are none: an unknown element); without
    one, the edges of common heavy atoms just below the energy, if any
    (:mod:`mxflow.stats.scatterers`); None when there is nothing to say."""
    wavelength = dataset.sweep.wavelength
    if options.heavy_atom:
        atom = heavy_atom_or_note(options.heavy_atom, wavelength, dataset.n_sites)
        sites = f"; {atom.n_sites} {atom.element} site(s) expected" if atom.n_sites else ""
        return atom.note + sites
    if not (wavelength and wavelength > 0):
        return None
    return edge_note(wavelength, edges_near(wavelength), options.anomalous)


def _pipeline(
    dataset: Dataset, workdir: Path, options: ProcessingOptions, result: DatasetResult
) -> None:
    run = _Run(workdir, result)
    options = dataset_options(dataset, options)
    result.anomalous_note = anomalous_note(dataset, options)
    sg, cell = options.space_group, options.unit_cell

    electron = dataset.sweep.is_electron
    reading, import_extra = None, []
    if electron:
        options, reading = _electron_options(dataset, options)
        import_extra = [ED_UNPOLARISED]
    paths = check_frames(dataset)
    frames = paths if dataset.sweep.format != "eiger" else None
    run.step(D.import_step(dataset, options, frames, workdir=workdir, extra=import_extra))
    run.step(D.find_spots_step(options))
    n_spots = _count_spots(workdir)
    if n_spots < MIN_SPOTS:
        first, last = dataset.frames
        raise DatasetFailed(
            f"blank sweep: only {n_spots} spots found on frames {first}-{last} of "
            f"{dataset.sweep.template} (no diffraction?)"
        )
    given_sg_note = None
    if electron:
        _electron_geometry_and_refine(run, dataset, options, reading)
    else:
        sg, given_sg_note = _index_and_refine(run, options, sg, cell)
    _first_that_works(
        run, [D.integrate_step(options, a) for a in D.INTEGRATE_ATTEMPTS], D.INTEGRATE_ATTEMPTS
    )
    run.step(D.symmetry_step(sg))
    stem, screw_note = "symmetrized", None
    if not sg:
        screws, screw_note = _screw_axes(workdir)
        if screws:
            run.step(D.space_group_step(screws))
            stem = "space_group"
    scale_extra = ELECTRON_SCALE if electron else None
    _first_that_works(
        run,
        [D.scale_step(options, stem, a, scale_extra) for a in D.SCALE_ATTEMPTS],
        D.SCALE_ATTEMPTS,
    )
    d_min = _decide_d_min(workdir, options, result)
    _write_merged_mtz(workdir, d_min, dataset.free_flags_mtz)

    result.unmerged_mtz = "scaled.mtz"
    result.merged_mtz = "merged.mtz"
    result.integrated_expt = "integrated.expt"
    result.integrated_refl = "integrated.refl"
    (exp, *_) = read_experiments(workdir / "scaled.expt")
    result.space_group = exp.space_group
    axial_note = screw_note or axial_summary(workdir / "merged_fullres.mtz")["space_group_note"]
    notes = [given_sg_note, axial_note]
    result.space_group_note = "; ".join(n for n in notes if n) or None
    result.unit_cell = [round(x, 4) for x in exp.unit_cell] if exp.unit_cell else None
    full = stats_from_mtz(workdir / "scaled.mtz")
    stats = stats_from_mtz(workdir / "scaled.mtz", d_min=d_min) if d_min else full
    result.d_min = round(stats.overall.d_min, 3)
    result.stats = stats
    write_json(workdir / "stats.json", stats_to_json(stats))
    write_json(workdir / "stats_fullres.json", stats_to_json(full))
    atomic_write_text(workdir / "stats.txt", format_table(stats) + "\n")
    atomic_write_text(workdir / "stats_fullres.txt", format_table(full) + "\n")


def _index_and_refine(
    run: _Run, options: ProcessingOptions, sg: str | None, cell
) -> tuple[str | None, str | None]:
    """X-ray data: index (in the given space group ``sg`` unless it explains clearly
    fewer spots), choose the lattice when none is given, refine.  Returns (the space
    group to go on with: None when the given one was not used, the note saying why)."""
    stem, note = "indexed", None
    if sg:
        stem, note = _index_in_given_space_group(run, options, sg, cell)
        if note:
            run.result.given_space_group_rejected = sg
            sg = None  # processed as if no space group had been given
    else:
        _index(run, options, None, cell)
    run.result.indexed_fraction = _indexed_fraction(run.workdir, stem)
    if sg:  # indexed in the given space group already: no lattice search needed
        _refine(run, "indexed.expt", "indexed.refl")
    else:
        _choose_lattice_and_refine(run, stem)
    return sg, note


def _index_in_given_space_group(
    run: _Run, options: ProcessingOptions, sg: str, cell
) -> tuple[str, str | None]:
    """Index in the given space group ``sg``, unless indexing without it explains clearly more.

    The fast attempt in ``sg`` runs first.  When it explains fewer than
    CHECK_GIVEN_SG_BELOW of the strong spots (or nothing), a fast indexing
    without ``sg`` is compared before any slower attempt in ``sg``; if it
    explains at least GIVEN_SG_MARGIN more, ``sg`` is not used.  Returns
    (stem of the indexing result to go on with, note saying why ``sg`` was
    not used or None).
    """
    failed_with_sg = False
    try:
        _index(run, options, sg, cell, attempts_slice=slice(1))
        with_sg = _indexed_fraction(run.workdir) or 0.0
    except DatasetFailed:
        failed_with_sg, with_sg = True, 0.0
    free = _index_without_symmetry(run, options) if with_sg < CHECK_GIVEN_SG_BELOW else None
    if free is not None and free >= with_sg + GIVEN_SG_MARGIN:
        how = (
            "gave no indexing solution"
            if failed_with_sg
            else f"explains {100 * with_sg:.0f}% of the strong spots"
        )
        return "indexed_free", (
            f"the given space group {sg} {how}, indexing without it {100 * free:.0f}%: "
            "not used for this dataset (check the sample sheet / --space-group)"
        )
    if failed_with_sg:  # neither way worked at once: the slower attempts in the given space group
        _index(run, options, sg, cell, attempts_slice=slice(1, None))
    return "indexed", None


def _index_without_symmetry(run: _Run, options: ProcessingOptions) -> float | None:
    """Fraction of the strong spots a fast indexing without the given space group
    and cell explains (into ``indexed_free.*``), or None when it fails."""
    try:
        _index(run, options, None, None, stem="indexed_free", attempts_slice=slice(1))
    except DatasetFailed:
        return None
    return _indexed_fraction(run.workdir, "indexed_free")


def _refine(run: _Run, expt: str, refl: str, extra: list[str] | None = None) -> None:
    """dials.refine of ``expt`` / ``refl``, with fewer free parameters when needed
    (``extra``: arguments every attempt takes)."""
    steps = [D.refine_step(expt, refl, a, extra) for a in D.REFINE_ATTEMPTS]
    _first_that_works(run, steps, D.REFINE_ATTEMPTS)


def _choose_lattice_and_refine(
    run: _Run,
    stem: str = "indexed",
    bravais_extra: list[str] | None = None,
    refine_extra: list[str] | None = None,
    bravais: str | None = None,
) -> None:
    """No space group given: dials.refine_bravais_settings, take the best
    recommended lattice (:func:`mxflow.engine.sweep_steps.choose_bravais_solution`;
    only ``bravais``, e.g. "mC", when given and found), reindex to it and refine;
    P 1 when nothing higher is recommended.  ``stem``: the indexing result to start
    from (``<stem>.expt`` / ``.refl``); ``bravais_extra`` / ``refine_extra``: further
    arguments of the lattice search and of refinement (the electron route's)."""
    workdir = run.workdir
    rbs_rec = run_step(D.refine_bravais_step(stem, bravais_extra), workdir)
    run.result.steps.append(rbs_rec)
    solution = None
    if step_ok(rbs_rec):
        try:
            solution, entry = D.choose_bravais_solution(workdir / "bravais_summary.json", bravais)
        except (ValueError, OSError):
            solution = None
    if solution is not None:
        run.step(D.reindex_step(entry["cb_op"], f"{stem}.refl"))
        _refine(run, f"bravais_setting_{solution}.expt", "reindexed.refl", refine_extra)
    else:  # no acceptable higher symmetry: refine the triclinic solution
        rbs_rec.note = (
            rbs_rec.note + "; " if rbs_rec.note else ""
        ) + "no Bravais solution used: P 1"
        _refine(run, f"{stem}.expt", f"{stem}.refl", refine_extra)


#: dials.import argument for electron data: an unpolarised beam (no polarisation
#: correction; at 2θ < 1° it would be below 10⁻⁴ anyway)
ED_UNPOLARISED = "geometry.beam.polarization_fraction=0.5"


def _electron_options(
    dataset: Dataset, options: ProcessingOptions
) -> tuple[ProcessingOptions, DistanceReading]:
    """The options of an electron dataset: the distance the header means (metres read
    as metres, :func:`~mxflow.process.electron.read_header_distance`) unless one is
    given, and spot finding without the low-resolution scatter (ELECTRON_D_MAX)."""
    if options.distance is not None:
        reading = DistanceReading(
            options.distance, "mm", f"distance given: {options.distance:g} mm"
        )
    else:
        try:
            reading = read_header_distance(dataset.sweep)
        except ElectronGeometryError as exc:
            raise DatasetFailed(f"electron diffraction: {exc}") from exc
    return (
        dataclasses.replace(
            options, distance=reading.distance, d_max=options.d_max or ELECTRON_D_MAX
        ),
        reading,
    )


def _electron_geometry_and_refine(
    run: _Run, dataset: Dataset, options: ProcessingOptions, reading: DistanceReading | None
) -> None:
    """The electron route from strong.refl to refined.expt (:mod:`mxflow.process.electron`):
    axis, both senses, and with a known cell the distance refined against it; then the
    lattice (when not chosen yet) and refinement, the distance fixed."""
    assert reading is not None
    sg, cell = options.space_group, options.unit_cell
    try:
        geom = electron_geometry(
            run.workdir,
            dataset.sweep,
            options.nproc,
            reading,
            sg,
            cell,
            options.rotation_axis,
            run.result.steps,
        )
    except ElectronGeometryError as exc:
        raise DatasetFailed(f"electron diffraction: {exc}") from exc
    run.result.electron = geom.geometry
    run.result.indexed_fraction = geom.indexed_fraction
    if geom.lattice_chosen:
        _refine(run, geom.expt, geom.refl, [FIX_DISTANCE])
    else:
        stem = geom.expt.removesuffix(".expt")
        lattice = D.bravais_of(sg) if sg else None
        _choose_lattice_and_refine(run, stem, BRAVAIS_ARGS, [FIX_DISTANCE], lattice)


def _screw_axes(workdir: Path) -> tuple[str | None, str | None]:
    """(the space group to write, when it has screws; a note, when the screws stay open).

    dials.symmetry gave the point group; the axial reflections of the
    integrated data (profile-fitted intensities, summation where there are
    none) decide the screws (:func:`mxflow.stats.absences.score_candidates`).
    A dataset whose axial reflections do not reach every axis keeps the
    point group's symmorphic group (``P 2 2 2``) and the note says that the
    screws are undetermined, with what was seen; so does one whose space
    group's standard setting would permute the axes (the sample's datasets
    keep one cell setting: merging assigns the space group).
    """
    expt = read_experiments(workdir / "symmetrized.expt")[0]
    if not expt.space_group:
        return None, None
    try:
        t = read_reflections(workdir / "symmetrized.refl")
    except BadInputError:
        return None, None
    if "miller_index" not in t or "flags" not in t:
        return None, None
    for kind in ("prf", "sum"):
        v, var = f"intensity.{kind}.value", f"intensity.{kind}.variance"
        if v in t and var in t:
            ok = t.has_flag(f"integrated_{kind}") & (t[var] > 0)
            if ok.any():
                break
    else:
        return None, None
    pg = gemmi.SpaceGroup(expt.space_group)
    hkl, z = absences.merged_axial(
        np.asarray(t["miller_index"])[ok], t[v][ok], np.sqrt(t[var][ok]), pg
    )
    evidence = absences.axial_evidence(hkl, z, pg)
    (best, p), *_ = absences.score_candidates(hkl, z, pg)
    best = best[0]
    names = absences.AXIAL_NAMES
    seen = [
        f"{names[e.axis]} {'shows' if e.verdict == 'screw' else 'shows no'} screw extinctions"
        for e in evidence
        if e.verdict != "undetermined"
    ]
    unknown = [e.axis for e in evidence if e.verdict == "undetermined"]
    if unknown:
        refl = " / ".join(names[a] for a in unknown)
        note = (
            f"{pg.hm}, screw axes undetermined: the point group, not a space-group assignment "
            f"({refl} not measured in this dataset"
            + ("; " + ", ".join(seen) if seen else "")
            + "); merging decides the space group from all datasets"
        )
        return None, note
    if best.hm == pg.hm:
        return None, None
    ref, op = absences.reference_setting(best)
    if op.triplet() != "x,y,z":
        return None, (
            f"{pg.hm} (point group): the axial reflections show {ref.hm} (here {best.hm}, "
            f"probability {p:.2f}); kept in the point group's setting, which the sample's "
            "datasets share; merging assigns the space group in its standard setting"
        )
    return best.hm, None


def _write_merged_mtz(workdir: Path, d_min: float | None, free_flags: str | None = None) -> None:
    """merged.mtz: dials.scale's merged_fullres.mtz with the reflections of d ≥ ``d_min`` (Å).

    The French–Wilson amplitudes were computed on all resolution shells; the
    cut only drops the outer reflections (d_min × (1 − 10⁻⁶), so a reflection
    exactly at the limit stays).  ``None`` keeps everything.  A FreeR_flag
    column is added (:mod:`mxflow.stats.free_flags`: the same flag for the
    same reflection in every file of a crystal form), taken from the MTZ
    ``free_flags`` (the sample's, from the sheet or ``--free-flags``) when
    given; when that free set does not fit this one dataset (its cell or
    lattice differ, as a small wedge's lower symmetry can), the hash flags
    are used and the file's history says why.
    """
    cut = d_min * (1 - 1e-6) if d_min else None
    src, dst = workdir / "merged_fullres.mtz", workdir / "merged.mtz"
    try:
        write_merged_mtz(src, dst, d_min=cut, free_flags=free_flags)
    except BadInputError as exc:
        if not free_flags:
            raise
        write_merged_mtz(src, dst, note=f"FreeR flags by hash, not from {exc}", d_min=cut)


def _decide_d_min(workdir: Path, options: ProcessingOptions, result: DatasetResult) -> float | None:
    """The resolution limit (Å) of this dataset's merged data and statistics.

    A given ``options.d_min`` wins; otherwise the CC½ = 0.5 point of the tanh
    fit (KAMO's per-dataset cut), never beyond the data, and not into outer
    shells that are nearly empty (:func:`~mxflow.stats.resolution.sparse_shell_limit`).  The unmerged MTZ
    keeps every reflection (merging decides again on many datasets).  The
    decision is written to ``resolution.json``.
    """
    if options.d_min:
        write_json(workdir / "resolution.json", {"d_min": options.d_min, "method": "given"})
        return options.d_min
    try:
        fit = cc_half_d_min(workdir / "scaled.mtz", target=CC_HALF_CUT)
        d_min, info = fit.d_min, to_dict(fit)
    except (BadInputError, ValueError) as exc:
        d_min, info = None, {"d_min": None, "note": f"no resolution estimate: {exc}"}
    info["method"] = f"CC1/2 = {CC_HALF_CUT} (tanh fit)"
    if d_min:
        with contextlib.suppress(BadInputError, ValueError, RuntimeError):
            trimmed = sparse_shell_limit_from_mtz(workdir / "scaled.mtz", d_min)
            if trimmed > d_min + 1e-3:
                info["sparse_shells"] = (
                    f"outer shells beyond {trimmed:.3f} A are less than half as complete as the "
                    f"dataset's median shell: cut there instead of at {d_min:.3f} A"
                )
                info["d_min_cc_half"], d_min = d_min, trimmed
                info["d_min"] = d_min
    write_json(workdir / "resolution.json", info)
    return round(d_min, 3) if d_min else None


def process_dataset(
    dataset: Dataset, workdir: str | Path, options: ProcessingOptions | None = None
) -> DatasetResult:
    """Process ``dataset`` in ``workdir`` (its own directory); never raises for a dataset problem.

    Returns a DatasetResult with status "ok" (MTZ paths, space group, cell,
    d_min and the statistics table filled in; paths relative to ``workdir``)
    or "failed" with ``reason``.  Every step's command line, log, exit status
    and wall time are in ``result.steps``.
    """
    options = options or ProcessingOptions()
    workdir = Path(workdir)
    sweep = dataset.sweep
    result = DatasetResult(
        name=dataset.name,
        path=sweep.template,
        sample=dataset.sample,
        mode=dataset.mode,
        wedge=dataset.wedge_label,
        workdir=".",
        wavelength=sweep.wavelength,
        osc_width=sweep.osc_width,
        total_rotation=(dataset.frames[1] - dataset.frames[0] + 1) * sweep.osc_width,
        status="running",
    )
    t0 = time.perf_counter()
    try:
        workdir.mkdir(parents=True, exist_ok=True)
        _pipeline(dataset, workdir, options, result)
        result.status = "ok"
    except MxflowError as exc:  # DatasetFailed, BadInputError, ProgramNotFound
        result.status = "failed"
        result.reason = str(exc)
    except Exception as exc:  # a bug or an unexpected file: still only this dataset fails
        result.status = "failed"
        result.reason = f"internal error: {type(exc).__name__}: {exc}"
        with contextlib.suppress(OSError):
            atomic_write_text(workdir / "mxflow_error.txt", traceback.format_exc())
    result.wall_s = round(time.perf_counter() - t0, 3)
    return result
