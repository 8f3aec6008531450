"""The DIALS programs of single-sweep processing, as :class:`~mxflow.engine.steps.Step` s.

Each function returns the Step for one program of the DIALS tutorial
sequence (import → find_spots → index → refine_bravais_settings → reindex →
refine → integrate → symmetry → scale, which also writes the MTZ files), with the file
names DIALS uses by default, so a working directory looks like one made by
hand.  Parameter names are those of DIALS 3.12.  Nothing here runs a
program; :func:`mxflow.engine.steps.run_step` does.

Image files are passed to dials.import as separate arguments (never as a
PHIL ``template=`` string, which DIALS' parser would break on ``$`` or
quotes, and which DIALS 3.12 imports with a wrong start angle when
``image_range`` cuts a wedge).  DIALS takes any argument containing ``=``
for a parameter (``/data/dose=10/x_00001.cbf`` is "improper definition
name"), so frames whose paths contain ``=`` are given through symbolic links
in the working directory (:func:`link_images`: ``images/<name>``, the name
with ``=`` escaped as ``%3D``); the links point at the raw files, which are
never touched.  Experiment and reflection files whose paths contain ``=``
(an output directory such as ``/data/run=2/out``, with absolute paths in a
merge) are given as single-quoted PHIL values, ``input.experiments='…'``
(:func:`file_arg`).  Arguments without ``=`` are as before, so the done
records of earlier runs stay valid.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import NamedTuple

import gemmi

from mxflow.engine.steps import Step
from mxflow.model import Dataset, ProcessingOptions, UnitCell

#: crystal-system letter of a Bravais symbol ("oP" → "o") per gemmi crystal system
_SYSTEM_LETTER = {
    "triclinic": "a",
    "monoclinic": "m",
    "orthorhombic": "o",
    "tetragonal": "t",
    "trigonal": "h",
    "hexagonal": "h",
    "cubic": "c",
}

#: order of the lattice point group of each Bravais lattice (higher = more symmetric)
LATTICE_ORDER = {"a": 1, "m": 2, "o": 4, "t": 8, "h": 12, "c": 24}


def cell_arg(cell: UnitCell) -> str:
    """``a,b,c,alpha,beta,gamma`` (Å, degrees) for a PHIL unit_cell parameter."""
    return ",".join(f"{x:g}" for x in cell)


def sg_arg(space_group: str) -> str:
    """A space-group symbol without spaces (``P 21 21 21`` → ``P212121``) for PHIL."""
    sg = gemmi.SpaceGroup(space_group)
    return sg.xhm().replace(" ", "")


def bravais_of(space_group: str) -> str:
    """Bravais lattice symbol (``oP``, ``mC``, ``hR`` ...) of a space group."""
    sg = gemmi.SpaceGroup(space_group)
    letter = _SYSTEM_LETTER[sg.crystal_system_str()]
    centring = sg.centring_type()
    if letter == "h" and centring == "R":
        return "hR"
    return letter + centring


#: the folder of a working directory that holds links to frames whose paths contain "="
IMAGE_LINKS = "images"


def phil_quote(value: str) -> str:
    """``value`` as a single-quoted PHIL string (``$``, ``=``, spaces and quotes kept)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def file_arg(path: str) -> str:
    """A DIALS argument naming the experiment (``.expt``) or reflection (``.refl``) file
    ``path``: the path itself, or ``input.experiments='…'`` / ``input.reflections='…'``
    when it contains ``=`` (which DIALS would take for a parameter)."""
    if "=" not in path:
        return path
    suffix = Path(path).suffix.lower()
    kind = {".expt": "experiments", ".json": "experiments", ".refl": "reflections"}.get(suffix)
    if kind is None:
        raise ValueError(
            f"{path}: no DIALS parameter takes this file, and its '=' would be read as one"
        )
    return f"input.{kind}={phil_quote(path)}"


def _link_name(name: str) -> str:
    """A file name without ``=`` that differs for different names (``%`` and ``=`` escaped)."""
    return name.replace("%", "%25").replace("=", "%3D")


def eiger_data_files(master: str) -> list[str]:
    """The ``<prefix>_data_NNNNNN.h5`` files beside an Eiger master file."""
    m = Path(master)
    stem = m.name
    for tail in ("_master.h5", ".nxs", ".h5", ".hdf5", ".nx5"):
        if stem.lower().endswith(tail):
            stem = stem[: -len(tail)]
            break
    return sorted(
        str(p)
        for p in m.parent.iterdir()
        if p.name.startswith(f"{stem}_data_") and p.name.endswith(".h5")
    )


def link_images(paths: list[str], workdir: str | Path, eiger: bool = False) -> list[str]:
    """Links ``workdir/images/<name>`` to the frame files ``paths`` (absolute), names with
    ``=`` escaped; returns the links' paths relative to ``workdir`` (as dials.import,
    which runs there, is given them).  ``eiger``: ``paths`` is one master file; its
    data files get links under their own names, which the master refers to.

    Links that already point at the same file are kept; others are replaced.
    """
    folder = Path(workdir) / IMAGE_LINKS
    folder.mkdir(parents=True, exist_ok=True)
    wanted = [(_link_name(Path(p).name), p) for p in paths]
    if eiger:
        wanted += [(Path(d).name, d) for d in eiger_data_files(paths[0])]
    for name, target in wanted:
        link = folder / name
        if link.is_symlink() and os.readlink(link) == target:
            continue
        link.unlink(missing_ok=True)
        link.symlink_to(target)
    return [f"{IMAGE_LINKS}/{name}" for name, _ in wanted[: len(paths)]]


def import_step(
    dataset: Dataset,
    options: ProcessingOptions,
    frame_paths: list[str] | None = None,
    workdir: str | Path | None = None,
    extra: list[str] | None = None,
) -> Step:
    """dials.import of the dataset's frames, with geometry overrides.

    One-file-per-frame data: every frame of the dataset's range is one
    argument (``frame_paths``, default from the sweep template).  Eiger /
    NeXus: the master file plus ``image_range`` for a wedge.  Overrides:
    distance (mm), beam centre (given in mm, fast/slow; passed to DIALS in
    pixels as ``fast_slow_beam_centre``), rotation axis (lab-frame vector).

    A frame path containing ``=`` cannot be a dials.import argument: with
    ``workdir`` (where the step will run) the frames are then given through
    links made there now (:func:`link_images`); without it that is an error.
    The step's inputs are the raw files either way.  ``extra``: further arguments
    (e.g. the electron route's unpolarised beam).
    """
    sweep = dataset.sweep
    first, last = dataset.frames
    args: list[str] = []
    inputs: list[str] = []
    if sweep.format == "eiger":
        paths = [os.path.abspath(sweep.template)]
    else:
        paths = frame_paths or [sweep.frame_path(n) for n in range(first, last + 1)]
        paths = [os.path.abspath(p) for p in paths]  # DIALS runs in the working directory
    inputs.extend(paths)
    if any("=" in p for p in paths):
        if workdir is None:
            raise ValueError(f"{paths[0]}: a frame path with '=' needs links in the workdir")
        args.extend(link_images(paths, workdir, eiger=sweep.format == "eiger"))
    else:
        args.extend(paths)
    if sweep.format == "eiger" and dataset.wedge is not None:
        args.append(f"image_range={first},{last}")
    if options.distance is not None:
        args.append(f"distance={options.distance:g}")
    if options.beam_center is not None:
        fast_px = options.beam_center[0] / sweep.pixel_size[0]
        slow_px = options.beam_center[1] / sweep.pixel_size[1]
        args.append(f"fast_slow_beam_centre={fast_px:.3f},{slow_px:.3f}")
    if options.rotation_axis is not None:
        args.append("goniometer.axis=" + ",".join(f"{x:g}" for x in options.rotation_axis))
    args.extend(extra or [])
    args.append("output.experiments=imported.expt")
    return Step("import", "dials.import", args, inputs=inputs, outputs=["imported.expt"])


def find_spots_step(options: ProcessingOptions) -> Step:
    """dials.find_spots of imported.expt; spots of d > ``options.d_max`` (Å) left out."""
    d_max = [f"spotfinder.filter.d_max={options.d_max:g}"] if options.d_max else []
    return Step(
        "find_spots",
        "dials.find_spots",
        ["imported.expt", f"nproc={options.nproc}", *d_max, "output.reflections=strong.refl"],
        inputs=["imported.expt"],
        outputs=["strong.refl"],
    )


#: basis-vector combinations dials.index refines in the first attempt (DIALS: 50)
FAST_INDEX_CANDIDATES = 5
#: the first, fast indexing attempt's extra arguments (see :func:`index_attempts`)
FAST_INDEX = [
    f"indexing.basis_vector_combinations.max_refine={FAST_INDEX_CANDIDATES}",
    "indexing.fft3d.reciprocal_space_grid.n_points=128",
]


def index_attempts(
    options: ProcessingOptions, space_group: str | None, cell: UnitCell | None
) -> list[tuple[str, list[str]]]:
    """(label, extra arguments) of each indexing attempt, in the order tried.

    1. a fast 3D FFT (with the known cell / space group when given): a
       128³ grid instead of 256³ (DIALS then uses the spots to d = 5·max_cell/128,
       e.g. 3.7 Å for a 94 Å max_cell) and only the FAST_INDEX_CANDIDATES
       best-scoring basis-vector combinations refined instead of 50.  On the
       10-frame wedges of bench/bench_collection.py dials.index takes 3.4 s
       instead of 15 s, with cells equal to 0.02 %;
    2. 3D FFT with DIALS's defaults (large cells, few low-resolution spots);
    3. 1D FFT;
    4. 3D FFT on the low-resolution spots only (d ≥ 4 Å), which helps when
       high-angle spots are noisy or the geometry is slightly off;
    5. with a known cell: real-space grid search.
    """
    known: list[str] = []
    if space_group:
        known.append(f"indexing.known_symmetry.space_group={sg_arg(space_group)}")
    if cell:
        known.append(f"indexing.known_symmetry.unit_cell={cell_arg(cell)}")
    attempts = [
        ("fft3d", [*FAST_INDEX, *known]),
        ("fft3d_full", known),
        ("fft1d", ["indexing.method=fft1d", *known]),
        (
            "fft3d_lowres",
            [
                "indexing.method=fft3d",
                "indexing.fft3d.reciprocal_space_grid.d_min=4.0",
                "indexing.refinement_protocol.d_min_start=4.0",
                *known,
            ],
        ),
    ]
    if cell:
        attempts.append(
            ("real_space_grid_search", ["indexing.method=real_space_grid_search", *known])
        )
    return attempts


def index_step(
    options: ProcessingOptions,
    label: str,
    extra: list[str],
    stem: str = "indexed",
    expt: str = "imported.expt",
) -> Step:
    """dials.index ``expt`` strong.refl with one attempt's arguments, writing
    ``<stem>.expt`` / ``<stem>.refl`` (the step is "index"; for ``indexed_free`` "index_free")."""
    out = (
        []
        if stem == "indexed"
        else [f"output.experiments={stem}.expt", f"output.reflections={stem}.refl"]
    )
    return Step(
        "index" if stem == "indexed" else f"index_{stem.removeprefix('indexed_')}",
        "dials.index",
        [expt, "strong.refl", f"indexing.nproc={options.nproc}", *extra, *out],
        inputs=[expt, "strong.refl"],
        outputs=[f"{stem}.expt", f"{stem}.refl"],
        label=label,
    )


def refine_bravais_step(stem: str = "indexed", extra: list[str] | None = None) -> Step:
    """dials.refine_bravais_settings of ``<stem>.expt`` / ``.refl`` (``extra``: arguments
    such as the electron route's ``detector.fix=distance best_monoclinic_beta=False``)."""
    files = [f"{stem}.expt", f"{stem}.refl"]
    return Step(
        "refine_bravais_settings",
        "dials.refine_bravais_settings",
        [*files, *(extra or [])],
        inputs=files,
        outputs=["bravais_summary.json"],
    )


def choose_bravais_solution(
    summary_path: str | Path, bravais: str | None = None
) -> tuple[int, dict]:
    """(solution number, entry) from dials.refine_bravais_settings' bravais_summary.json.

    Among the *recommended* solutions the one of highest lattice symmetry
    wins (ties: smaller metric fit, then smaller rmsd).  With ``bravais``
    (e.g. ``"tP"`` from a user's space group) only that lattice is taken, if
    present.  Raises ValueError if nothing is recommended.
    """
    with open(summary_path) as fh:
        summary = json.load(fh)
    entries = [(int(k), v) for k, v in summary.items()]
    if bravais:
        wanted = [(k, v) for k, v in entries if v.get("bravais") == bravais]
        if wanted:
            entries = wanted
    recommended = [(k, v) for k, v in entries if v.get("recommended")]
    if not recommended:
        raise ValueError("no recommended Bravais lattice")

    def key(item: tuple[int, dict]) -> tuple[float, float, float]:
        _, v = item
        order = LATTICE_ORDER.get(str(v.get("bravais", "a"))[0], 1)
        return (-order, float(v.get("max_angular_difference", 0)), float(v.get("rmsd", 0)))

    return min(recommended, key=key)


def reindex_step(cb_op: str, refl: str = "indexed.refl") -> Step:
    return Step(
        "reindex",
        "dials.reindex",
        [refl, f"change_of_basis_op={cb_op}", "output.reflections=reindexed.refl"],
        inputs=[refl],
        outputs=["reindexed.refl"],
    )


class Attempt(NamedTuple):
    """One way of running a step that can fail for want of reflections.

    ``label`` names the attempt's log (``<step>_<label>.out``; "" for the first, plain
    one, whose log and done record are the step's own), ``extra`` its extra DIALS
    arguments, and ``used`` what it is in words, for the dataset's record
    ("summation integration used").
    """

    label: str
    extra: list[str]
    used: str


#: scan-static refinement with the parameters that have too few reflections fixed
_STATIC_REFINE = ["scan_varying=False", "refinement.parameterisation.auto_reduction.action=fix"]

#: refinement: DIALS's defaults, then scan-static with parameters that have too few
#: reflections fixed, then only the crystal (orientation and cell) refined
REFINE_ATTEMPTS = [
    Attempt("", [], "refinement with DIALS's defaults"),
    Attempt(
        "static",
        _STATIC_REFINE,
        "scan-static refinement, parameters without enough reflections fixed",
    ),
    Attempt(
        "crystal_only",
        [
            *_STATIC_REFINE,
            "refinement.parameterisation.beam.fix=all",
            "refinement.parameterisation.detector.fix=all",
        ],
        "refinement of the crystal only (beam and detector fixed)",
    ),
]

#: integration: profile fitting as DIALS does it, then with the profile model made from
#: however few strong spots there are, then summation only (the profile model still sets
#: the shoebox sizes).  DIALS models profiles when there are at least ``overall`` spots
#: *or* ``per_degree`` per degree, so both are set to 0: no minimum (DIALS still stops
#: when no spot is left)
_FEW_SPOTS = [
    "profile.gaussian_rs.min_spots.overall=0",
    "profile.gaussian_rs.min_spots.per_degree=0",
]
INTEGRATE_ATTEMPTS = [
    Attempt("", [], "profile-fitted integration"),
    Attempt(
        "few_spots",
        _FEW_SPOTS,
        "profile model from fewer spots than DIALS's minimum used",
    ),
    Attempt(
        "summation",
        [*_FEW_SPOTS, "integration.profile.fitting=False"],
        "summation integration used",
    ),
]

#: scaling: DIALS's physical model, then without its decay and absorption terms (one
#: scale per rotation interval), then one scale and B factor for the sweep (KB)
SCALE_ATTEMPTS = [
    Attempt("", [], "physical scaling model"),
    Attempt(
        "scale_only",
        ["physical.decay_correction=False", "physical.absorption_correction=False"],
        "simpler scaling model (scale only: no decay or absorption terms) used",
    ),
    Attempt("kb", ["model=KB"], "simplest scaling model (one scale and B factor, KB) used"),
]


def refine_step(
    expt: str, refl: str, attempt: Attempt = REFINE_ATTEMPTS[0], extra: list[str] | None = None
) -> Step:
    """dials.refine (scan-static then scan-varying) of e.g. bravais_setting_N.expt +
    reindexed.refl, with one of :data:`REFINE_ATTEMPTS` (``extra``: arguments every
    attempt takes, e.g. ``detector.fix=distance`` for electron data)."""
    return Step(
        "refine",
        "dials.refine",
        [
            expt,
            refl,
            *(extra or []),
            *attempt.extra,
            "output.experiments=refined.expt",
            "output.reflections=refined.refl",
        ],
        inputs=[expt, refl],
        outputs=["refined.expt", "refined.refl"],
        label=attempt.label,
    )


def integrate_step(options: ProcessingOptions, attempt: Attempt = INTEGRATE_ATTEMPTS[0]) -> Step:
    """dials.integrate of refined.expt / refined.refl with one of :data:`INTEGRATE_ATTEMPTS`."""
    args = ["refined.expt", "refined.refl", f"nproc={options.nproc}"]
    if options.d_min:
        args.append(f"prediction.d_min={options.d_min:g}")
    args += [*attempt.extra]
    args += ["output.experiments=integrated.expt", "output.reflections=integrated.refl"]
    return Step(
        "integrate",
        "dials.integrate",
        args,
        inputs=["refined.expt", "refined.refl"],
        outputs=["integrated.expt", "integrated.refl"],
        label=attempt.label,
    )


def symmetry_step(space_group: str | None) -> Step:
    """dials.symmetry for the Laue group (mxflow decides the screw axes:
    :func:`space_group_step`), or (space group given) dials.reindex to that space group."""
    outputs = ["symmetrized.expt", "symmetrized.refl"]
    inputs = ["integrated.expt", "integrated.refl"]
    out_args = ["output.experiments=symmetrized.expt", "output.reflections=symmetrized.refl"]
    if space_group:
        return Step(
            "symmetry",
            "dials.reindex",
            [*inputs, f"space_group={sg_arg(space_group)}", *out_args],
            inputs=inputs,
            outputs=outputs,
        )
    args = [*inputs, "systematic_absences.check=False", *out_args]
    return Step("symmetry", "dials.symmetry", args, inputs=inputs, outputs=outputs)


def space_group_step(space_group: str) -> Step:
    """dials.reindex of the symmetrized data into ``space_group`` (same setting and cell:
    the screw axes mxflow found in the point group dials.symmetry gave)."""
    inputs = ["symmetrized.expt", "symmetrized.refl"]
    outputs = ["space_group.expt", "space_group.refl"]
    args = [
        *inputs,
        f"space_group={sg_arg(space_group)}",
        "output.experiments=space_group.expt",
        "output.reflections=space_group.refl",
    ]
    return Step("space_group", "dials.reindex", args, inputs=inputs, outputs=outputs)


def scale_step(
    options: ProcessingOptions,
    stem: str = "symmetrized",
    attempt: Attempt = SCALE_ATTEMPTS[0],
    extra: list[str] | None = None,
) -> Step:
    """dials.scale of one dataset; it also writes the unmerged MTZ (``scaled.mtz``, as
    dials.export would) and the merged MTZ at full resolution (``merged_fullres.mtz``:
    I, SIGI, anomalous I±, French–Wilson F, as dials.merge's defaults give), which
    saves two program runs per dataset; :func:`mxflow.process.pipeline` cuts the
    merged file at the dataset's resolution limit.  Reads ``<stem>.expt`` / ``.refl``;
    ``attempt``: one of :data:`SCALE_ATTEMPTS`; ``extra``: arguments every attempt takes."""
    inputs = [f"{stem}.expt", f"{stem}.refl"]
    args = [*inputs, f"nproc={options.nproc}"]
    if options.anomalous:
        args.append("anomalous=True")
    if options.d_min:
        args.append(f"cut_data.d_min={options.d_min:g}")
    args += [
        *(extra or []),
        *attempt.extra,
        "output.experiments=scaled.expt",
        "output.reflections=scaled.refl",
        "output.unmerged_mtz=scaled.mtz",
        "output.merged_mtz=merged_fullres.mtz",
    ]
    return Step(
        "scale",
        "dials.scale",
        args,
        inputs=inputs,
        outputs=["scaled.expt", "scaled.refl", "scaled.mtz", "merged_fullres.mtz"],
        label=attempt.label,
    )
