"""Writing and reading the simulator's truth: ``truth/truth.json`` and ``truth/truth_<pop>.mtz``.

truth.json holds the configuration, the detector and, per crystal: name,
population, space group, its own unit cell, U and the DIALS A = U·B matrix (Å⁻¹,
at rotation angle 0, about the crystal's ``rotation_axis``), scale, extra B, the
hkl operator that maps the crystal's own indices onto the truth setting, the
sweep template, frame range and oscillation, and the geometry the headers may
not tell: true rotation axis (and the one the format implies), true distance
(mm), the distance written to the headers and its unit, wavelength and beam
centre.  truth_<pop>.mtz holds the true ASU intensities
(IMEAN, SIGIMEAN) and amplitudes (F) of each population; with anomalous
scatterers also I(+), I(−) and the true Bijvoet difference DELTAI = I(+) − I(−)
(IMEAN is then their mean), and truth.json the element, f′, f″, sites and
Bijvoet ratio ⟨|ΔF|⟩/⟨F⟩.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import gemmi
import numpy as np

from mxflow.errors import BadInputError
from mxflow.model import ImageSweep
from mxflow.util.files import read_json, write_json


@dataclasses.dataclass(frozen=True)
class CrystalGeometry:
    """The true diffraction geometry of one crystal's sweep, next to what its headers say.

    ``rotation_axis`` unit vector (DIALS lab frame); ``format_rotation_axis`` the axis
    the image format implies (None: the format / header gives the true one);
    ``distance_mm`` true distance; ``header_distance`` the DISTANCE written, in
    ``header_distance_unit`` ("mm" or "m"; readers such as dxtbx take mm);
    ``wavelength`` Å; ``beam_center_px`` (fast, slow) pixels from the first pixel's corner.
    """

    rotation_axis: tuple[float, float, float]
    format_rotation_axis: tuple[float, float, float] | None
    distance_mm: float
    header_distance: float
    header_distance_unit: str
    wavelength: float
    beam_center_px: tuple[float, float]

    def record(self) -> dict[str, Any]:
        """The truth.json fields of this geometry."""
        return {
            "rotation_axis": [float(x) for x in self.rotation_axis],
            "format_rotation_axis": (
                None
                if self.format_rotation_axis is None
                else [float(x) for x in self.format_rotation_axis]
            ),
            "distance_mm": float(self.distance_mm),
            "header_distance": float(self.header_distance),
            "header_distance_unit": self.header_distance_unit,
            "wavelength": float(self.wavelength),
            "beam_center_px": [float(x) for x in self.beam_center_px],
        }


def crystal_record(
    spec,
    A: np.ndarray,
    sweep: ImageSweep,
    out: Path,
    n_spots: int,
    geometry: CrystalGeometry | None = None,
) -> dict:
    """The truth.json entry of one crystal (paths relative to the output directory)."""
    template = Path(sweep.template)
    return {
        "name": spec.name,
        "population": spec.population.name,
        "space_group": spec.population.truth.space_group,
        "unit_cell": list(spec.cell),
        "U": spec.U.tolist(),
        "A": A.tolist(),
        "scale": spec.scale,
        "b_extra": spec.b_extra,
        "indexing_op": spec.indexing_op,
        "template": str(template.relative_to(out)),
        "format": sweep.format,
        "first": sweep.first,
        "last": sweep.last,
        "osc_start": sweep.osc_start,
        "osc_width": sweep.osc_width,
        "n_reflections_recorded": int(n_spots),
        **(geometry.record() if geometry else {}),
    }


def write_truth_mtz(path: Path, pop) -> None:
    """True ASU intensities of one population as an MTZ (H K L IMEAN SIGIMEAN F, and
    I(+) I(-) DELTAI when Friedel's law does not hold)."""
    t = pop.truth
    mtz = gemmi.Mtz(with_base=True)
    mtz.spacegroup = gemmi.SpaceGroup(t.space_group)
    mtz.set_cell_for_all(gemmi.UnitCell(*t.cell))
    mtz.add_dataset("truth")
    mtz.add_column("IMEAN", "J")
    mtz.add_column("SIGIMEAN", "Q")
    mtz.add_column("F", "F")
    if t.intensity_minus is None:
        i = t.intensity
        cols = [t.hkl, i, 1e-3 * np.sqrt(i) + 1e-6, np.sqrt(i)]
    else:
        i = 0.5 * (t.intensity + t.intensity_minus)
        cols = [t.hkl, i, 1e-3 * np.sqrt(i) + 1e-6, np.sqrt(i)]
        cols += [t.intensity, t.intensity_minus, t.delta_i]
        mtz.add_column("I(+)", "K")
        mtz.add_column("I(-)", "K")
        mtz.add_column("DELTAI", "J")
    data = np.column_stack(cols).astype(np.float32)
    mtz.set_data(data)
    mtz.history = [f"mxflow simulate: true intensities of population {pop.name}"]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".mtz.part")
    mtz.write_to_file(str(tmp))
    tmp.replace(path)


def write_truth(truth_dir, cfg, det, pops, records, raster, out: Path) -> Path:
    """Write truth.json and one MTZ per population; return the path of truth.json.

    ``raster``: the truth record of each pin's raster scan (empty: none).
    """
    truth_dir = Path(truth_dir)
    for pop in pops:
        write_truth_mtz(truth_dir / f"truth_{pop.name}.mtz", pop)
    doc: dict[str, Any] = {
        "generator": "mxflow simulate",
        "conventions": {
            "frame": "DIALS laboratory frame, s0 = (0, 0, -1/wavelength)",
            "rotation_axis": _unit(cfg.rotation_axis),
            "A": "U*B at rotation angle 0; r(phi) = R(axis, phi) A h (axis: each crystal's "
            "rotation_axis)",
            "distance_mm": "each crystal's true distance; header_distance is what the "
            "headers say, in header_distance_unit",
            "indexing_op": "hkl operator taking the crystal's own indices to the truth setting",
            "beam_center": "pixels (fast, slow) from the corner of the first pixel",
        },
        "config": _jsonable(dataclasses.asdict(cfg)),
        "detector": dataclasses.asdict(det),
        "wavelength": cfg.wavelength,
        "populations": [
            {
                "name": p.name,
                "space_group": p.truth.space_group,
                "unit_cell": list(p.cell),
                "mtz": f"truth_{p.name}.mtz",
                "n_unique": len(p.truth.hkl),
                **_anomalous_record(p),
            }
            for p in pops
        ],
        "crystals": records,
    }
    if raster:  # the first pin's scan (one pin: the only one), then every pin's
        doc["raster"] = raster[0]
        if len(raster) > 1:
            doc["rasters"] = raster
    path = truth_dir / "truth.json"
    write_json(path, doc)
    return path


def _anomalous_record(pop) -> dict[str, Any]:
    """truth.json's anomalous entry of a population ({} when Friedel's law holds)."""
    from mxflow.simulate.crystal import bijvoet_ratio

    ha = pop.heavy
    if ha is None:
        return {}
    return {
        "anomalous": {
            "element": ha.element,
            "n_sites": int(len(ha.sites)),
            "sites_fractional": ha.sites.tolist(),
            "b_iso": ha.b_iso,
            "energy_ev": ha.energy_ev,
            "f_prime": ha.f_prime,
            "f_double_prime": ha.f_double_prime,
            "bijvoet_ratio": bijvoet_ratio(pop.truth),
        }
    }


def _unit(v) -> list[float]:
    a = np.asarray(v, float)
    return (a / np.linalg.norm(a)).tolist()


def _jsonable(d: Any) -> Any:
    if isinstance(d, dict):
        return {k: _jsonable(v) for k, v in d.items()}
    if isinstance(d, list | tuple):
        return [_jsonable(v) for v in d]
    return d


def read_truth(truth_dir: str | Path) -> dict:
    """truth.json of a simulation (BadInputError when missing)."""
    path = Path(truth_dir) / "truth.json"
    if not path.is_file():
        raise BadInputError(
            str(truth_dir), "no truth.json here (not an mxflow simulate truth directory)"
        )
    return read_json(path)
