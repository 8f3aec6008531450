"""Synthetic unmerged MTZ files with and without a Bijvoet difference (anomalous statistics tests).

Every ASU reflection to ``d_min`` is measured ``n_plus`` times as I(+) and
``n_minus`` times as I(−) (numbers drawn per reflection, ``min_obs`` to
``max_obs``),
each observation the true intensity plus N(0, σᵢ) noise with σᵢ the σ
written in the file (so σ is correct by construction).  The true intensity
of a mate is I ± ΔI/2, with ΔI drawn from N(0, ``delta_sd``) for
reflections at d ≥ ``d_signal`` (Å) and 0 beyond.  Centric reflections are
written as I(+) only, without a difference.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import gemmi
import numpy as np

from stats_synthetic import asu_hkl, write_unmerged_mtz

CELL = (50.0, 60.0, 70.0, 90.0, 90.0, 90.0)
SPACE_GROUP = "P 21 21 21"


@dataclass
class Truth:
    """What the synthetic file was made from: ASU hkl, d (Å), true ΔI and centric flags."""

    hkl: np.ndarray
    d: np.ndarray
    delta: np.ndarray
    centric: np.ndarray


def bijvoet_mtz(
    path: Path,
    d_min: float = 2.0,
    seed: int = 0,
    delta_sd: float = 0.0,
    d_signal: float = 0.0,
    min_obs: int = 1,
    max_obs: int = 4,
) -> tuple[Path, Truth]:
    """Write the MTZ described in the module docstring; returns it and the truth."""
    rng = np.random.default_rng(seed)
    hkl = asu_hkl(d_min, CELL, SPACE_GROUP)
    n = len(hkl)
    cell = gemmi.UnitCell(*CELL)
    d = 1 / np.sqrt(cell.calculate_1_d2_array(hkl.astype(np.int32)))
    centric = np.asarray(gemmi.SpaceGroup(SPACE_GROUP).operations().centric_flag_array(hkl), bool)
    mean = rng.exponential(1000.0, n) + 50.0  # Wilson-like acentric distribution
    delta = np.where((d >= d_signal) & ~centric, rng.normal(0.0, delta_sd, n), 0.0)
    n_plus = rng.integers(min_obs, max_obs + 1, n)
    n_minus = np.where(centric, 0, rng.integers(min_obs, max_obs + 1, n))
    rows_h, rows_isym, rows_true = [], [], []
    for isym, counts, sign in ((1, n_plus, 0.5), (2, n_minus, -0.5)):
        idx = np.repeat(np.arange(n), counts)
        rows_h.append(hkl[idx])
        rows_isym.append(np.full(len(idx), isym))
        rows_true.append(mean[idx] + sign * delta[idx])
    hh = np.concatenate(rows_h)
    isym = np.concatenate(rows_isym)
    true_i = np.concatenate(rows_true)
    # a σ that differs between observations: counting noise plus a floor
    sigma = np.sqrt(np.abs(true_i) + 400.0) * rng.uniform(0.8, 1.5, len(true_i))
    obs = true_i + rng.normal(0.0, 1.0, len(true_i)) * sigma
    write_unmerged_mtz(path, hh, isym, obs, sigma, cell=CELL, space_group=SPACE_GROUP)
    return path, Truth(hkl=hkl, d=d, delta=delta, centric=centric)
