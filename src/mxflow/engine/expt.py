"""Read DIALS experiment lists (``.expt`` / ``*_experiments.json``) without DIALS.

An experiment list is JSON: a list of ``experiment`` entries that point by
index into shared lists of ``beam``, ``detector``, ``goniometer``, ``scan``
and ``crystal`` models.  This module turns each experiment into a small
:class:`Experiment` record holding what mxflow needs downstream:

* crystal: space group (Hermann–Mauguin, from the Hall symbol), unit cell
  (Å, degrees) and the setting matrix A = U·B (Å⁻¹; its columns are a*, b*,
  c* in the DIALS lab frame, so that the reciprocal-lattice point of hkl is
  ``A @ (h, k, l)``);
* scan: image range (inclusive, 1-based frame numbers) and oscillation
  (start of the first image and width per image, degrees);
* beam: wavelength (Å) and direction (unit vector, sample → source is *not*
  used: DIALS stores the direction of the incident beam towards the
  detector, ``s0 / |s0|``);
* detector (first panel): distance (mm, along the panel normal), pixel size
  (mm), image size (px) and beam centre (px, fast/slow, measured from the
  corner of the first pixel).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gemmi
import numpy as np

from mxflow.errors import BadInputError
from mxflow.model import UnitCell


@dataclass
class Experiment:
    """One DIALS experiment, reduced to plain numbers (see module docstring)."""

    identifier: str = ""
    space_group: str | None = None  # Hermann–Mauguin, e.g. "P 21 21 21"
    unit_cell: UnitCell | None = None  # Å, degrees
    A: np.ndarray | None = None  # 3×3, Å⁻¹, columns a*, b*, c* (lab frame)
    image_range: tuple[int, int] | None = None  # inclusive frame numbers
    oscillation: tuple[float, float] | None = None  # (start, width) degrees
    wavelength: float | None = None  # Å
    beam_direction: tuple[float, float, float] | None = None
    rotation_axis: tuple[float, float, float] | None = None
    distance: float | None = None  # mm
    beam_center: tuple[float, float] | None = None  # px (fast, slow)
    pixel_size: tuple[float, float] | None = None  # mm (fast, slow)
    image_size: tuple[int, int] | None = None  # px (fast, slow)
    template: str | None = None  # image template or file of the imageset
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def n_images(self) -> int:
        if self.image_range is None:
            return 0
        return self.image_range[1] - self.image_range[0] + 1


def crystal_from_vectors(
    a: list[float], b: list[float], c: list[float], hall: str
) -> tuple[str, UnitCell, np.ndarray]:
    """(space group H-M, cell, A) from DIALS real-space vectors (Å) and a Hall symbol.

    A is the inverse of the matrix whose rows are a, b, c, so its columns
    are the reciprocal vectors a*, b*, c* (Å⁻¹).
    """
    real = np.array([a, b, c], dtype=float)
    lengths = np.linalg.norm(real, axis=1)

    def angle(u: np.ndarray, v: np.ndarray) -> float:
        cosang = float(np.dot(u, v) / (np.linalg.norm(u) * np.linalg.norm(v)))
        return float(np.degrees(np.arccos(np.clip(cosang, -1.0, 1.0))))

    cell = (
        float(lengths[0]),
        float(lengths[1]),
        float(lengths[2]),
        angle(real[1], real[2]),
        angle(real[0], real[2]),
        angle(real[0], real[1]),
    )
    sg = gemmi.find_spacegroup_by_ops(gemmi.symops_from_hall(hall.strip()))
    name = sg.xhm() if sg is not None else hall.strip()
    return name, cell, np.linalg.inv(real)


def _panel_geometry(panel: dict[str, Any], direction: np.ndarray) -> dict[str, Any]:
    """Distance (mm), beam centre (px) and sizes of one detector panel."""
    fast = np.asarray(panel["fast_axis"], dtype=float)
    slow = np.asarray(panel["slow_axis"], dtype=float)
    origin = np.asarray(panel["origin"], dtype=float)
    normal = np.cross(fast, slow)
    normal /= np.linalg.norm(normal)
    distance = float(np.dot(origin, normal))
    pixel = tuple(float(x) for x in panel["pixel_size"])
    out: dict[str, Any] = {
        "distance": abs(distance),
        "pixel_size": pixel,
        "image_size": tuple(int(x) for x in panel["image_size"]),
    }
    denom = float(np.dot(direction, normal))
    if abs(denom) > 1e-12:
        hit = direction * (distance / denom) - origin
        out["beam_center"] = (
            float(np.dot(hit, fast) / pixel[0]),
            float(np.dot(hit, slow) / pixel[1]),
        )
    return out


def parse_experiments(doc: dict[str, Any]) -> list[Experiment]:
    """Experiments of an already-loaded experiment-list JSON document."""
    out = []
    for entry in doc.get("experiment", []):
        exp = Experiment(identifier=entry.get("identifier", "") or "")

        def model(kind: str, entry: dict[str, Any] = entry) -> dict[str, Any] | None:
            idx = entry.get(kind)
            items = doc.get(kind) or []
            if idx is None or not isinstance(idx, int) or idx >= len(items):
                return None
            return items[idx]

        if (xtal := model("crystal")) is not None:
            exp.space_group, exp.unit_cell, exp.A = crystal_from_vectors(
                xtal["real_space_a"],
                xtal["real_space_b"],
                xtal["real_space_c"],
                xtal.get("space_group_hall_symbol", " P 1"),
            )
        if (scan := model("scan")) is not None:
            exp.image_range = (int(scan["image_range"][0]), int(scan["image_range"][1]))
            exp.oscillation = (float(scan["oscillation"][0]), float(scan["oscillation"][1]))
        direction = np.array([0.0, 0.0, -1.0])
        if (beam := model("beam")) is not None:
            exp.wavelength = float(beam["wavelength"])
            direction = np.asarray(beam["direction"], dtype=float)
            direction = direction / np.linalg.norm(direction)
            # DIALS stores the direction *towards the source*; s0 points the other way
            s0 = -direction
            exp.beam_direction = tuple(float(x) for x in s0)
            direction = s0
        if (gonio := model("goniometer")) is not None and "rotation_axis" in gonio:
            exp.rotation_axis = tuple(float(x) for x in gonio["rotation_axis"])
        if (det := model("detector")) is not None and det.get("panels"):
            geom = _panel_geometry(det["panels"][0], direction)
            exp.distance = geom["distance"]
            exp.pixel_size = geom["pixel_size"]
            exp.image_size = geom["image_size"]
            exp.beam_center = geom.get("beam_center")
        if (iset := model("imageset")) is not None:
            exp.template = iset.get("template") or (iset.get("images") or [None])[0]
        out.append(exp)
    return out


def read_experiments(path: str | Path) -> list[Experiment]:
    """Read a DIALS experiment list; raise BadInputError if it is not one."""
    path = Path(path)
    try:
        with open(path) as fh:
            doc = json.load(fh)
    except (OSError, ValueError) as exc:
        raise BadInputError(path, f"cannot read DIALS experiment list ({exc})") from exc
    if not isinstance(doc, dict) or doc.get("__id__") != "ExperimentList":
        raise BadInputError(path, "not a DIALS experiment list (no __id__ ExperimentList)")
    return parse_experiments(doc)


def read_crystal(path: str | Path, index: int = 0) -> Experiment:
    """The ``index``-th experiment of a file, which must carry a crystal model."""
    exps = read_experiments(path)
    if index >= len(exps) or exps[index].unit_cell is None:
        raise BadInputError(path, f"experiment {index} has no crystal model")
    return exps[index]
