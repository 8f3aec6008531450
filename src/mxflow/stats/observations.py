"""Unmerged observations: the one in-memory form every statistic and merging decision reads.

Two readers fill it: :func:`read_unmerged_mtz` here (any unmerged MTZ,
Miller indices mapped to the reciprocal ASU with I(+)/I(−) signs, for the
statistics table), and :func:`mxflow.merge.observations.read_observations`
(a multi-experiment MTZ of dials.export / dials.scale, each observation
tagged with its dataset and image, for clustering and rejection).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import gemmi
import numpy as np

from mxflow.cluster.intensity import pack_hkl
from mxflow.errors import BadInputError
from mxflow.util.mtz import keep_resolution


@dataclass
class Observations:
    """Unmerged intensities, one entry per observation.

    ``hkl`` (N, 3) int; ``i`` and ``sigma`` the scaled intensity and its σ;
    ``keys`` one integer per symmetry-unique reflection (Friedel mates share
    it); ``s2`` = 1/d² (Å⁻²).  Filled by some readers only: ``sign`` (+1 for
    I(+), −1 for I(−), +1 for centric reflections), ``dataset`` (experiment
    index in the .expt written alongside), ``image`` (image number within
    that experiment's scan) and ``intensities`` (the same data as gemmi
    Intensities, sorted, for gemmi's statistics).
    """

    hkl: np.ndarray
    i: np.ndarray
    sigma: np.ndarray
    keys: np.ndarray
    s2: np.ndarray
    cell: gemmi.UnitCell
    space_group: gemmi.SpaceGroup
    sign: np.ndarray | None = None
    dataset: np.ndarray | None = None
    image: np.ndarray | None = None
    intensities: gemmi.Intensities | None = None


def read_unmerged_mtz(
    path: str | Path, d_min: float | None = None, d_max: float | None = None
) -> Observations:
    """Unmerged intensities of an MTZ (as written by dials.export / aimless), hkl in the ASU.

    Keeps reflections with d_min ≤ d ≤ d_max (Å) when the limits are given,
    drops systematic absences and non-positive σ.
    """
    path = Path(path)
    try:
        mtz = gemmi.read_mtz_file(str(path))
    except (RuntimeError, OSError, ValueError) as exc:
        raise BadInputError(path, f"cannot read MTZ ({exc})") from exc
    if mtz.column_with_label("M/ISYM") is None:
        raise BadInputError(path, "not an unmerged MTZ (no M/ISYM column)")
    keep_resolution(mtz, d_min, d_max)
    ints = gemmi.Intensities()
    try:
        ints.import_mtz(mtz, gemmi.DataType.Unmerged)
    except RuntimeError as exc:
        raise BadInputError(path, f"no unmerged intensities ({exc})") from exc
    # gemmi takes the cell from the batch headers; use the file's global
    # (median, as DIALS writes it) cell like dials.scale / dials.merge do
    ints.unit_cell = mtz.get_cell()
    try:
        return _prepared(ints)
    except ValueError as exc:
        raise BadInputError(path, str(exc)) from exc


def observations_from_arrays(
    hkl: np.ndarray,
    intensity: np.ndarray,
    sigma: np.ndarray,
    cell: gemmi.UnitCell,
    space_group: gemmi.SpaceGroup,
) -> Observations:
    """Unmerged observations from arrays (any symmetry equivalent of each hkl), as
    :func:`read_unmerged_mtz` returns them: hkl in the reciprocal ASU with I(+)/I(−)
    signs, systematic absences dropped.  ``sigma`` must be positive.  Raises
    ValueError when nothing is left."""
    ints = gemmi.Intensities()
    ints.set_data(
        cell,
        space_group,
        np.ascontiguousarray(hkl, dtype=np.int32),
        np.ascontiguousarray(intensity, dtype=float),
        np.ascontiguousarray(sigma, dtype=float),
    )
    ints.type = gemmi.DataType.Unmerged
    return _prepared(ints)


def _prepared(ints: gemmi.Intensities) -> Observations:
    """Map to the ASU with I(+)/I(−) signs, drop absences, and fill Observations."""
    ints.prepare_for_merging(gemmi.DataType.Anomalous)
    ints.remove_systematic_absences()
    ints.sort()
    sigma = np.asarray(ints.sigma_array)
    value = np.asarray(ints.value_array)
    if np.any(~(sigma > 0)) or np.any(~np.isfinite(value)):
        raise ValueError("intensities with non-positive σ or non-finite values")
    if len(ints) == 0:
        raise ValueError("no observations in the resolution range")
    hkl = np.array(ints.miller_array)
    return Observations(
        hkl=hkl,
        i=value.copy(),
        sigma=sigma.copy(),
        keys=pack_hkl(hkl),
        s2=np.asarray(ints.unit_cell.calculate_1_d2_array(hkl.astype(np.int32))),
        cell=ints.unit_cell,
        space_group=ints.spacegroup,
        sign=np.array(ints.isign_array, dtype=np.int8),
        intensities=ints,
    )
