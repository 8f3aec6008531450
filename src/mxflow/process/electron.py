"""Electron diffraction (MicroED / 3D ED): the geometry a header gets wrong, fixed from the data.

Electron data (λ < :data:`~mxflow.model.ELECTRON_MAX_WAVELENGTH`) have a nearly flat Ewald
sphere, and their image headers are often wrong in ways X-ray headers are not
(the DIALS "MyD88 small wedges" tutorial shows each):

* **distance units**: an SMV header may give the distance in metres (2.193),
  which dxtbx reads as millimetres.  :func:`read_header_distance` decides from
  the wavelength and the detector's size which reading is possible;
* **rotation axis**: the axis the image format assumes can be ~90° off.
  dials.find_rotation_axis finds it from the spots; since a flat Ewald sphere
  indexes with either sense of the axis, both are indexed and the one with the
  smaller RMSD in the rotation direction is kept (:func:`choose_axis`);
* **distance and cell scale** are one parameter with a flat Ewald sphere, so
  indexing and ordinary refinement keep the distance fixed.  With a known cell
  (sample sheet or command line), the distance is refined against it
  (``tie_to_target`` restraints, distance free), after the lattice setting is
  chosen with ``best_monoclinic_beta=False`` and the cell's shape is checked
  against the given one (:func:`cell_mismatch`).

:func:`electron_geometry` runs these steps for one dataset (resumable DIALS
steps, :mod:`mxflow.engine.electron_steps`) and returns the experiment and
reflection files to refine and integrate from, plus an
:class:`~mxflow.model.ElectronGeometry` record of what was decided (kept in
the dataset's summary.json).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mxflow.engine import electron_steps as E
from mxflow.engine import sweep_steps as D
from mxflow.engine.expt import read_experiments
from mxflow.engine.refl import ReflectionTable, read_reflections
from mxflow.engine.steps import run_step, step_ok
from mxflow.errors import BadInputError
from mxflow.model import AxisTrial, ElectronGeometry, ImageSweep, UnitCell
from mxflow.stats.resolution import d_at_radius
from mxflow.util.files import atomic_write_text

#: electron data: spots of lower resolution than this (Å) are left out of spot finding
#: (inelastic scatter around the direct beam, the beam stop), as in the MyD88 tutorial
ELECTRON_D_MAX = 20.0
#: a header distance is possible when the resolution at the detector edge nearest the
#: beam lies in this range (Å): no crystal diffracts beyond 0.3 Å, and a detector whose
#: edge is at 30 Å records nothing but the beam stop's shadow
PLAUSIBLE_EDGE_D = (0.3, 30.0)
#: an axis sense is a candidate when it indexes at least this fraction of the strong
#: spots less than the best one; among candidates the smallest RMSD in φ wins
AXIS_FRACTION_MARGIN = 0.05
#: an indexing solution must explain this fraction of the strong spots to count
MIN_AXIS_FRACTION = 0.25
#: the given cell fits the dataset's lattice when, after one common scale for the
#: distance, every edge agrees within this fraction and every angle within CELL_ANGLE_TOL
CELL_SHAPE_TOL = 0.03
CELL_ANGLE_TOL = 3.0  # degrees
#: a refined distance further than this fraction from the header's is not believed
MAX_DISTANCE_CHANGE = 0.4


class ElectronGeometryError(Exception):
    """The geometry stage cannot go on; the message says why, in plain words."""


def edge_resolution(
    distance: float,
    wavelength: float,
    beam_center: tuple[float, float],
    pixel_size: tuple[float, float],
    image_size: tuple[int, int],
) -> float:
    """d-spacing (Å) at the detector edge nearest the beam.

    Parameters
    ----------
    distance : float
        Sample–detector distance, mm (flat detector normal to the beam).
    wavelength : float
        Å.
    beam_center : (float, float)
        Beam position in pixels (fast, slow) from the corner of the first pixel.
    pixel_size : (float, float)
        mm (fast, slow).
    image_size : (int, int)
        Pixels (fast, slow).
    """
    bf, bs = beam_center
    nf, ns = image_size
    r = min(
        max(bf, 1e-3) * pixel_size[0],
        max(nf - bf, 1e-3) * pixel_size[0],
        max(bs, 1e-3) * pixel_size[1],
        max(ns - bs, 1e-3) * pixel_size[1],
    )
    return d_at_radius(r, distance, wavelength)


@dataclass(frozen=True)
class DistanceReading:
    """How a header distance was read: ``distance`` in mm, ``unit`` the header's
    unit ("mm" or "m"), ``note`` in plain words (None when nothing changed)."""

    distance: float
    unit: str
    note: str | None = None


def read_header_distance(sweep: ImageSweep) -> DistanceReading:
    """The detector distance (mm) of an electron sweep, its header's unit decided.

    The header's number is taken as mm when the resolution at the detector edge
    (:func:`edge_resolution`) is then possible (:data:`PLAUSIBLE_EDGE_D`); else as
    metres when that is possible.  Raises ElectronGeometryError when neither is
    (the wavelength is probably wrong: X-ray data with an electron wavelength).
    """
    args = (sweep.wavelength, sweep.beam_center, sweep.pixel_size, sweep.image_size)
    lo, hi = PLAUSIBLE_EDGE_D
    d_mm = edge_resolution(sweep.distance, *args)
    if lo <= d_mm <= hi:
        return DistanceReading(sweep.distance, "mm")
    d_m = edge_resolution(sweep.distance * 1000, *args)
    if lo <= d_m <= hi:
        return DistanceReading(
            sweep.distance * 1000,
            "m",
            f"header distance {sweep.distance:g} read as metres ({sweep.distance * 1000:g} mm): "
            f"as mm the detector edge would be at d = {d_mm:.3g} A for lambda "
            f"{sweep.wavelength:g} A, where no crystal diffracts; as metres at {d_m:.2f} A",
        )
    raise ElectronGeometryError(
        f"header distance {sweep.distance:g} is impossible for electrons of lambda "
        f"{sweep.wavelength:g} A on this detector both as mm (edge at d = {d_mm:.3g} A) and "
        f"as metres (edge at d = {d_m:.3g} A): is the wavelength right? (X-ray data "
        "with an electron wavelength in the header look like this); give --distance to "
        "process it anyway"
    )


def axis_angle(u: tuple[float, float, float], v: tuple[float, float, float]) -> float:
    """Angle (degrees, 0–180) between two axis directions, senses counted."""
    a, b = np.asarray(u, float), np.asarray(v, float)
    c = float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))
    return math.degrees(math.acos(max(-1.0, min(1.0, c))))


def refinement_rmsds(
    table: ReflectionTable, pixel_size: tuple[float, float], osc_width: float
) -> tuple[float, float, float, int]:
    """(RMSD x px, RMSD y px, RMSD φ images, n) of the reflections of ``table`` (an
    indexing result's, with ``flags``, ``xyzobs.mm.value`` and ``xyzcal.mm``: mm, mm,
    radians) marked as used in refinement.  ``pixel_size``: mm (fast, slow);
    ``osc_width``: degrees per image.  Raises ValueError when none was used."""
    used = table.has_flag("used_in_refinement")
    if not used.any():
        raise ValueError("no reflection used in refinement")
    d = table["xyzobs.mm.value"][used] - table["xyzcal.mm"][used]
    x, y, z = np.sqrt(np.mean(d**2, axis=0))
    return (
        float(x / pixel_size[0]),
        float(y / pixel_size[1]),
        float(math.degrees(z) / osc_width),
        int(used.sum()),
    )


def choose_axis(trials: list[AxisTrial]) -> int | None:
    """Index of the axis sense to keep: among the trials that indexed at least
    MIN_AXIS_FRACTION of the spots and within AXIS_FRACTION_MARGIN of the best
    fraction, the one with the smallest RMSD in φ; None when none indexed."""
    ok = [
        i
        for i, t in enumerate(trials)
        if t.indexed_fraction is not None
        and t.indexed_fraction >= MIN_AXIS_FRACTION
        and t.rmsd_z is not None
    ]
    if not ok:
        return None
    best = max(trials[i].indexed_fraction or 0.0 for i in ok)
    near = [i for i in ok if (trials[i].indexed_fraction or 0.0) >= best - AXIS_FRACTION_MARGIN]
    return min(near, key=lambda i: trials[i].rmsd_z or math.inf)


def cell_mismatch(observed: UnitCell, target: UnitCell) -> tuple[float, float, float]:
    """How the shape of ``observed`` differs from ``target`` once one scale is allowed.

    Returns (scale, worst edge, worst angle): ``scale`` the geometric mean of
    target / observed edge ratios (the factor a wrong distance puts on every
    edge), ``worst edge`` the largest |observed·scale / target − 1| (a fraction)
    and ``worst angle`` the largest angle difference (degrees).  Cells in Å and
    degrees, in the same setting.
    """
    obs, tgt = np.asarray(observed, float), np.asarray(target, float)
    scale = float(np.exp(np.mean(np.log(tgt[:3] / obs[:3]))))
    edge = float(np.max(np.abs(obs[:3] * scale / tgt[:3] - 1)))
    angle = float(np.max(np.abs(obs[3:] - tgt[3:])))
    return scale, edge, angle


def _trial(
    workdir: Path, stem: str, axis: tuple[float, float, float], sweep: ImageSweep
) -> AxisTrial:
    """The AxisTrial of indexing result ``<stem>.refl`` (``axis``: the sense it started from)."""
    refl = workdir / f"{stem}.refl"
    try:
        t = read_reflections(refl, columns=["flags", "xyzobs.mm.value", "xyzcal.mm"])
        strong = read_reflections(workdir / "strong.refl", columns=[]).nrows
        fraction = float(t.has_flag("indexed").sum()) / strong if strong else 0.0
        x, y, z, _ = refinement_rmsds(t, sweep.pixel_size, sweep.osc_width)
    except BadInputError as exc:
        return AxisTrial(axis, note=str(exc))
    except ValueError as exc:
        return AxisTrial(axis, note=f"{refl.name}: {exc}")
    return AxisTrial(axis, round(fraction, 4), round(x, 4), round(y, 4), round(z, 4))


def _index_sense(workdir, sweep, nproc, expt, stem, axis, step) -> AxisTrial:
    """Index one sense of the axis: the fast attempt, then DIALS's defaults when it fails
    or explains fewer than MIN_AXIS_FRACTION of the spots (``step`` runs a Step)."""
    trial = AxisTrial(axis)
    for fast in (True, False):
        rec = step(E.index_axis_step(nproc, expt, stem, fast))
        if not step_ok(rec):
            trial = AxisTrial(axis, note=f"indexing failed (log: {rec.log})")
            continue
        trial = _trial(workdir, stem, axis, sweep)
        if (trial.indexed_fraction or 0.0) >= MIN_AXIS_FRACTION:
            break
    return trial


def _write_if_changed(path: Path, text: str) -> None:
    """Write ``text`` unless the file already holds it (its mtime signs a step's input)."""
    try:
        if path.read_text() == text:
            return
    except OSError:
        pass
    atomic_write_text(path, text)


@dataclass
class GeometryResult:
    """What the geometry stage hands on: the files to refine from, the record, and the
    steps' records (for the dataset's step list)."""

    expt: str
    refl: str
    geometry: ElectronGeometry
    indexed_fraction: float | None
    lattice_chosen: bool  # True: expt is already in the given lattice's setting


def electron_geometry(
    workdir: Path,
    sweep: ImageSweep,
    nproc: int,
    reading: DistanceReading,
    space_group: str | None,
    cell: UnitCell | None,
    given_axis: tuple[float, float, float] | None,
    records: list,
) -> GeometryResult:
    """The ED geometry route on ``imported.expt`` / ``strong.refl`` in ``workdir``.

    Finds the rotation axis (unless ``given_axis``), indexes both senses with the
    distance fixed, keeps the better one; with ``cell`` (and ``space_group``)
    chooses that lattice's setting (``best_monoclinic_beta=False``), checks the
    cell's shape and refines the distance restrained to ``cell``.  Each DIALS run
    is a resumable step whose record is appended to ``records``.  Raises
    ElectronGeometryError with the reason in plain words.
    """
    header_value = reading.distance / 1000 if reading.unit == "m" else reading.distance
    imported = read_experiments(workdir / "imported.expt")[0]
    geo = ElectronGeometry(
        header_distance=header_value,
        header_distance_unit=reading.unit,
        distance_used=round(imported.distance or reading.distance, 3),
        format_axis=imported.rotation_axis,
    )
    if reading.note:
        geo.notes.append(reading.note)

    def step(st):
        rec = run_step(st, workdir)
        records.append(rec)
        return rec

    # 1. the axis: found from the spots, or given
    start = "imported.expt"
    if given_axis is not None:
        axis = tuple(float(x) for x in given_axis)
        geo.notes.append("rotation axis given: no search")
        found_expt = "axis_given.expt"
        if not step_ok(step(E.set_axis_step("set_axis", start, axis, found_expt))):
            raise ElectronGeometryError("could not set the given rotation axis (log: set_axis.out)")
    else:
        rec = step(E.find_rotation_axis_step())
        if step_ok(rec):
            found_expt = "optimised.expt"
            axis = read_experiments(workdir / found_expt)[0].rotation_axis
            geo.axis_found = True
        else:
            found_expt, axis = start, imported.rotation_axis
            geo.notes.append(
                "dials.find_rotation_axis failed (log: find_rotation_axis.out): the image "
                "format's axis is used"
            )
    if axis is None:
        raise ElectronGeometryError("the experiment has no rotation axis")
    reverse = tuple(-x for x in axis)

    # 2. both senses indexed, distance fixed, the axis free
    rev_step = E.set_axis_step("reverse_axis", found_expt, reverse, "axis_reversed.expt")
    senses = [(found_expt, "indexed_axis_found", axis)]
    if step_ok(step(rev_step)):
        senses.append(("axis_reversed.expt", "indexed_axis_reversed", reverse))
    trials = [
        _index_sense(workdir, sweep, nproc, expt, stem, ax, step) for expt, stem, ax in senses
    ]
    geo.trials = trials
    chosen = choose_axis(trials)
    if chosen is None:
        raise ElectronGeometryError(
            "indexing failed with both senses of the rotation axis ("
            + "; ".join(
                f"{t.note or f'{100 * (t.indexed_fraction or 0):.0f}% indexed'}" for t in trials
            )  # fmt: skip
            + ")"
        )
    stem = senses[chosen][1]
    t = trials[chosen]
    indexed = read_experiments(workdir / f"{stem}.expt")[0]
    geo.rotation_axis = tuple(round(x, 6) for x in (indexed.rotation_axis or senses[chosen][2]))
    if geo.format_axis is not None:
        geo.axis_change_deg = round(axis_angle(geo.format_axis, geo.rotation_axis), 2)
    other = [x for i, x in enumerate(trials) if i != chosen and x.rmsd_z is not None]
    geo.notes.append(
        f"rotation axis ({', '.join(f'{x:.3f}' for x in geo.rotation_axis)})"
        + (
            f", {geo.axis_change_deg:.1f} deg from the image format's"
            if geo.axis_change_deg is not None
            else ""
        )  # fmt: skip
        + f": RMSD in phi {t.rmsd_z:.2f} images"
        + (f" against {other[0].rmsd_z:.2f} with the axis reversed" if other else "")
    )

    # 3. without a known cell, the distance stays the header's
    if cell is None:
        geo.notes.append(
            f"no known cell: the distance is the header's ({geo.distance_used:g} mm), and the "
            "cell's scale is only as good as that distance (a flat Ewald sphere cannot tell "
            "them apart); give the cell in the sample sheet to refine the distance"
        )
        return GeometryResult(f"{stem}.expt", f"{stem}.refl", geo, t.indexed_fraction, False)

    # 4. the given lattice's setting, the cell's shape checked, the distance refined
    bravais = D.bravais_of(space_group) if space_group else None
    rbs = step(D.refine_bravais_step(stem, E.BRAVAIS_ARGS))
    if not step_ok(rbs):
        raise ElectronGeometryError(f"Bravais lattice search failed (log: {rbs.log})")
    try:
        number, entry = D.choose_bravais_solution(workdir / "bravais_summary.json", bravais)
    except (ValueError, OSError) as exc:
        raise ElectronGeometryError(f"no Bravais lattice solution ({exc})") from exc
    if bravais and entry.get("bravais") != bravais:
        raise ElectronGeometryError(
            f"the lattice of the given space group {space_group} ({bravais}) is not among the "
            f"solutions of the Bravais lattice search (best: {entry.get('bravais')}; "
            "log: refine_bravais_settings.out): check the sample sheet"
        )
    setting = f"bravais_setting_{number}.expt"
    observed = read_experiments(workdir / setting)[0].unit_cell
    scale, edge, angle = cell_mismatch(observed, cell)
    cell_words = " ".join(f"{x:g}" for x in cell)
    seen = " ".join(f"{x:.2f}" for x in observed)
    if edge > CELL_SHAPE_TOL or angle > CELL_ANGLE_TOL:
        raise ElectronGeometryError(
            f"the given cell ({cell_words}) does not fit this dataset's lattice ({seen} at "
            f"{geo.distance_used:g} mm): after one scale for the distance ({scale:.3f}) an edge "
            f"differs by {100 * edge:.1f}% and an angle by {angle:.1f} deg (allowed "
            f"{100 * CELL_SHAPE_TOL:.0f}% and {CELL_ANGLE_TOL:g} deg): check the sample sheet"
        )
    if not step_ok(step(D.reindex_step(entry["cb_op"], f"{stem}.refl"))):
        raise ElectronGeometryError("re-indexing to the chosen lattice failed (log: reindex.out)")
    _write_if_changed(workdir / E.RESTRAINT_PHIL, E.restraint_phil(cell))
    rec = step(E.restrained_refine_step(setting, "reindexed.refl"))
    if not step_ok(rec):
        raise ElectronGeometryError(
            f"refinement restrained to the given cell failed (log: {rec.log})"
        )
    refined = read_experiments(workdir / "restrained.expt")[0]
    geo.target_cell = tuple(cell)  # type: ignore[assignment]
    geo.restrained_cell = tuple(round(x, 4) for x in refined.unit_cell)  # type: ignore[assignment]
    geo.refined_distance = round(refined.distance, 2) if refined.distance else None
    if geo.refined_distance is None or (
        abs(geo.refined_distance / geo.distance_used - 1) > MAX_DISTANCE_CHANGE
    ):
        raise ElectronGeometryError(
            f"refinement against the given cell moved the distance from {geo.distance_used:g} "
            f"to {geo.refined_distance} mm, more than {100 * MAX_DISTANCE_CHANGE:.0f}%: "
            "not believed (check the cell and the wavelength)"
        )
    geo.notes.append(
        f"distance refined against the given cell {cell_words}: {geo.refined_distance:.1f} mm "
        f"(header {geo.distance_used:g} mm, {100 * (geo.refined_distance / geo.distance_used - 1):+.1f}%)"
    )
    return GeometryResult("restrained.expt", "restrained.refl", geo, t.indexed_fraction, True)
