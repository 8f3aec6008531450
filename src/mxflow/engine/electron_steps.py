"""The DIALS programs of the electron-diffraction geometry route, as :class:`Step` s.

The route of the DIALS "MyD88 small wedges" tutorial, one program per step
(nothing here runs a program; :func:`mxflow.engine.steps.run_step` does):

1. dials.find_rotation_axis: the axis from the spots (``optimised.expt``);
2. dials.modify_geometry: the same axis reversed (``axis_reversed.expt``), since a
   flat Ewald sphere indexes with either sense;
3. dials.index of each sense with the distance fixed and the goniometer free
   (``indexed_axis_found`` / ``indexed_axis_reversed``);
4. dials.refine_bravais_settings with the distance fixed and
   ``best_monoclinic_beta=False`` (the C-centred setting of the published cell, not
   the I-centred one DIALS prefers), dials.reindex to the chosen lattice;
5. dials.refine, scan-static, restrained to the known cell (``tie_to_target``) with
   the distance free: the cell fixes the scale that a flat Ewald sphere cannot
   (``restrained.expt``).

Parameter names are those of DIALS 3.12.
"""

from __future__ import annotations

from mxflow.engine.steps import Step
from mxflow.engine.sweep_steps import FAST_INDEX, cell_arg
from mxflow.model import UnitCell

#: the distance fixed in indexing and unrestrained refinement: with a flat Ewald sphere
#: the distance and the cell's scale are one parameter
FIX_DISTANCE = "refinement.parameterisation.detector.fix=distance"
#: the rotation axis refined in indexing (the spots' axis is only approximate)
FREE_GONIOMETER = "refinement.parameterisation.goniometer.fix=None"
#: the cell restraint's σ per parameter (Å, degrees): the tutorial's "fairly strong ties"
CELL_RESTRAINT_SIGMA = 0.01


def find_rotation_axis_step() -> Step:
    """dials.find_rotation_axis imported.expt strong.refl → optimised.expt."""
    inputs = ["imported.expt", "strong.refl"]
    return Step(
        "find_rotation_axis",
        "dials.find_rotation_axis",
        [*inputs, "output.experiments=optimised.expt"],
        inputs=inputs,
        outputs=["optimised.expt"],
    )


def axis_arg(axis: tuple[float, float, float]) -> str:
    """``x,y,z`` of a lab-frame axis for PHIL (6 decimals: 10⁻⁴° of direction)."""
    return ",".join(f"{x:.6f}" for x in axis)


def set_axis_step(name: str, expt: str, axis: tuple[float, float, float], output: str) -> Step:
    """dials.modify_geometry: ``expt`` with the rotation axis ``axis`` (lab frame)."""
    return Step(
        name,
        "dials.modify_geometry",
        [expt, f"geometry.goniometer.axes={axis_arg(axis)}", f"output.experiments={output}"],
        inputs=[expt],
        outputs=[output],
    )


def index_axis_step(nproc: int, expt: str, stem: str, fast: bool = True) -> Step:
    """dials.index ``expt`` strong.refl with the distance fixed and the axis free, into
    ``<stem>.expt`` / ``.refl`` (step name ``index_<stem>``).  ``fast``: the X-ray
    route's fast 3D FFT (:data:`~mxflow.engine.sweep_steps.FAST_INDEX`; on the
    simulated MicroED sweeps 3.6 s instead of 20 s, the same RMSDs); else DIALS's
    defaults (label ``full``)."""
    inputs = [expt, "strong.refl"]
    return Step(
        f"index_{stem}",
        "dials.index",
        [
            *inputs,
            f"indexing.nproc={nproc}",
            FIX_DISTANCE,
            FREE_GONIOMETER,
            *(FAST_INDEX if fast else []),
            f"output.experiments={stem}.expt",
            f"output.reflections={stem}.refl",
        ],
        inputs=inputs,
        outputs=[f"{stem}.expt", f"{stem}.refl"],
        label="" if fast else "full",
    )


#: refine_bravais_settings arguments for electron data
BRAVAIS_ARGS = [FIX_DISTANCE, "best_monoclinic_beta=False"]


#: the PHIL file of the cell restraint, written into the working directory
RESTRAINT_PHIL = "restraint.phil"


def restraint_phil(cell: UnitCell) -> str:
    """PHIL text tying the crystal's cell to ``cell`` (Å, degrees) with
    :data:`CELL_RESTRAINT_SIGMA` (a file: DIALS takes a ``.multiple`` scope's values
    and sigmas from the command line as two separate restraints)."""
    sigmas = ",".join([f"{CELL_RESTRAINT_SIGMA:g}"] * 6)
    return (
        "refinement.parameterisation.crystal.unit_cell.restraints.tie_to_target {\n"
        f"  values = {cell_arg(cell)}\n"
        f"  sigmas = {sigmas}\n"
        "}\n"
    )


def restrained_refine_step(expt: str, refl: str) -> Step:
    """Scan-static dials.refine of ``expt`` / ``refl`` restrained by :data:`RESTRAINT_PHIL`
    (:func:`restraint_phil`, written beforehand), the distance free, into
    ``restrained.expt`` / ``restrained.refl``."""
    inputs = [expt, refl, RESTRAINT_PHIL]
    return Step(
        "refine_restrained",
        "dials.refine",
        [
            *inputs,
            "scan_varying=False",
            "output.experiments=restrained.expt",
            "output.reflections=restrained.refl",
        ],
        inputs=inputs,
        outputs=["restrained.expt", "restrained.refl"],
    )


#: dials.scale arguments for electron data: no absorption surface (it models X-ray path
#: lengths through a mounted crystal).  On the simulated MicroED collection (6 × 66°
#: sweeps) a merge's dials.scale took 52 s instead of 400 s with the same statistics
#: (Rmeas 0.073, CC½ 0.998, I/σ 18.3 against 18.4): the term's 286 s full-matrix round
#: changed nothing
ELECTRON_SCALE = ["physical.absorption_correction=False"]
