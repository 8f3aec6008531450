"""The DIALS programs of multi-crystal merging, as :class:`~mxflow.engine.steps.Step` s.

One function per program: symmetry and indexing ambiguity of many
datasets (dials.cosym, or dials.symmetry / dials.reindex for one),
reindexing, scaling (dials.scale, physical model), merging (dials.merge,
French–Wilson) and unmerged MTZ export (dials.export).  File names are the
DIALS defaults where a later step relies on them.  Nothing here runs a
program: :func:`mxflow.engine.steps.run_step` (or :func:`run_or_raise`)
does, so a killed merge resumes at the step it was in.

Step names are unique within one working directory: the preparation
directory of a merge holds symmetry, export and reindex steps, and each
``run_0N`` directory one scale, merge and export.

Experiment and reflection files are arguments through
:func:`~mxflow.engine.sweep_steps.file_arg`: a path containing ``=`` (an
output directory such as ``/data/run=2/out``) is given as
``input.experiments='…'``, which DIALS does not mistake for a parameter.
"""

from __future__ import annotations

from dataclasses import dataclass

from mxflow.engine.steps import Step
from mxflow.engine.sweep_steps import file_arg, sg_arg

SYMMETRIZED = ("symmetrized.expt", "symmetrized.refl")
SCALED = ("scaled.expt", "scaled.refl")


def _pairs(pairs: list[tuple[str, str]]) -> list[str]:
    return [p for pair in pairs for p in pair]


def _files(*paths: str) -> list[str]:
    """The DIALS arguments naming ``paths`` (see :func:`file_arg`)."""
    return [file_arg(p) for p in paths]


def cosym(pairs: list[tuple[str, str]], space_group: str | None, nproc: int, timeout=None) -> Step:
    """dials.cosym on ≥ 2 integrated datasets: one consistent indexing, the Laue group."""
    args = _files(*_pairs(pairs)) + [f"nproc={nproc}", "output.html=None"]
    if space_group:
        args.append(f"space_group={sg_arg(space_group)}")
    return Step("cosym", "dials.cosym", args, _pairs(pairs), list(SYMMETRIZED), timeout)


def symmetry(pairs: list[tuple[str, str]], timeout=None) -> Step:
    """dials.symmetry on one dataset (the Laue group from its own symmetry)."""
    args = _files(*_pairs(pairs)) + ["output.html=None"]
    return Step("symmetry", "dials.symmetry", args, _pairs(pairs), list(SYMMETRIZED), timeout)


def assign_space_group(pairs: list[tuple[str, str]], space_group: str, timeout=None) -> Step:
    """dials.reindex into a given space group (one dataset and a known space group)."""
    args = _files(*_pairs(pairs)) + [
        f"space_group={sg_arg(space_group)}",
        f"output.experiments={SYMMETRIZED[0]}",
        f"output.reflections={SYMMETRIZED[1]}",
    ]
    return Step("assign_sg", "dials.reindex", args, _pairs(pairs), list(SYMMETRIZED), timeout)


def reindex(
    expt: str,
    refl: str,
    change_of_basis: str,
    timeout=None,
    space_group: str | None = None,
    name: str = "reindex",
    stem: str = "reindexed",
) -> Step:
    """dials.reindex by ``change_of_basis`` (hkl triplet, new indices in terms of old,
    e.g. ``l,h,k`` takes cell (a, b, c) to (c, a, b)), then into ``space_group`` when given.

    Writes ``<stem>.expt`` / ``<stem>.refl``.
    """
    out = [f"{stem}.expt", f"{stem}.refl"]
    args = [*_files(expt, refl), f"change_of_basis_op={change_of_basis}"]
    if space_group:
        args.append(f"space_group={sg_arg(space_group)}")
    args += [f"output.experiments={out[0]}", f"output.reflections={out[1]}"]
    return Step(name, "dials.reindex", args, [expt, refl], out, timeout)


@dataclass
class MtzNames:
    """What an MTZ file calls its project, crystal and dataset (DIALS: AUTOMATIC/XTAL/NATIVE)."""

    project: str
    crystal: str
    dataset: str


def export_unmerged(
    expt: str,
    refl: str,
    mtz: str,
    name: str = "export",
    timeout=None,
    names: MtzNames | None = None,
) -> Step:
    """dials.export of ``expt``/``refl`` to the unmerged MTZ ``mtz``."""
    args = [*_files(expt, refl), f"mtz.hklout={mtz}"]
    if names:
        args += [f"mtz.project_name={names.project}", f"mtz.crystal_name={names.crystal}"]
    return Step(name, "dials.export", args, [expt, refl], [mtz], timeout)


def export_mmcif(expt: str, refl: str, cif: str, timeout=None) -> Step:
    """dials.export of scaled data to an unmerged mmCIF (for deposition), uncompressed."""
    args = [*_files(expt, refl), "format=mmcif", f"mmcif.hklout={cif}", "mmcif.compress=None"]
    return Step("export_mmcif", "dials.export", args, [expt, refl], [cif], timeout)


def scaling_intervals(wedge_deg: float) -> tuple[float, float]:
    """dials.scale physical-model (scale, decay) intervals in degrees from the wedge width.

    xia2's rules: < 5° → 1/1.5, < 10° → 2/3, < 25° → 4/5, < 90° → 8/10, else 15/20.
    """
    for limit, pair in ((5, (1.0, 1.5)), (10, (2.0, 3.0)), (25, (4.0, 5.0)), (90, (8.0, 10.0))):
        if wedge_deg < limit:
            return pair
    return 15.0, 20.0


#: above this many datasets dials.scale skips its final full-matrix round (xia2's rule since
#: DIALS 3.2: the Levenberg–Marquardt round over every dataset's parameters grows much
#: faster than the data; it only refines the parameters' error estimates)
FULL_MATRIX_MAX_DATASETS = 4


def scale(
    expt: str,
    refl: str,
    selection: list[str],
    wedge_deg: float,
    d_min: float | None,
    anomalous: bool,
    nproc: int,
    timeout=None,
    html: str | None = None,
    extra: list[str] | None = None,
    n_datasets: int = 1,
) -> Step:
    """dials.scale (physical model, intervals from the wedge width in degrees).

    ``selection``: dataset / image selection arguments
    (``dataset_selection.use_datasets=...``, ``exclude_images=...``);
    ``d_min`` in Å.  Writes scaled.expt, scaled.refl and the unmerged MTZ
    scaled_unmerged.mtz; with ``html`` (e.g. ``dials.scale.html``) also
    dials.scale's HTML report.  The report is not a required output, and
    without ``html`` the arguments are those of earlier versions, so their
    finished steps are still reused (with it, a run scaled without the
    report is scaled again once).  ``extra``: further arguments (electron data:
    :data:`~mxflow.engine.electron_steps.ELECTRON_SCALE`).  ``n_datasets`` above
    :data:`FULL_MATRIX_MAX_DATASETS`: ``full_matrix=False``.
    """
    si, di = scaling_intervals(wedge_deg)
    args = [
        *_files(expt, refl),
        *selection,
        f"physical.scale_interval={si}",
        f"physical.decay_interval={di}",
        f"output.html={html or None}",
        "output.unmerged_mtz=scaled_unmerged.mtz",
        f"nproc={nproc}",
    ]
    if d_min:
        args.append(f"d_min={d_min:.3f}")
    if anomalous:
        args.append("anomalous=True")
    if n_datasets > FULL_MATRIX_MAX_DATASETS:
        args.append("full_matrix=False")
    args.extend(extra or [])
    outputs = [*SCALED, "scaled_unmerged.mtz"]
    return Step("scale", "dials.scale", args, [expt, refl], outputs, timeout)


def merge(
    expt: str,
    refl: str,
    d_min: float | None,
    mtz: str,
    timeout=None,
    names: MtzNames | None = None,
) -> Step:
    """dials.merge (French–Wilson) to the merged MTZ ``mtz``, cut at ``d_min`` Å when given.

    dials.merge also writes its HTML report ``dials.merge.html`` (its default;
    not a required output).
    """
    args = [*_files(expt, refl), f"output.mtz={mtz}"]
    if names:
        args += [
            f"output.project_name={names.project}",
            f"output.crystal_names={names.crystal}",
            f"output.dataset_names={names.dataset}",
        ]
    if d_min:
        args.append(f"d_min={d_min:.3f}")
    return Step("merge", "dials.merge", args, [expt, refl], [mtz], timeout)
