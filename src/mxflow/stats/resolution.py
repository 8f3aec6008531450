"""CC½ per resolution shell and the resolution decision (where the fitted CC½ falls to a target).

Observations are given as arrays: ``keys`` (one integer per symmetry-unique
reflection, Friedel mates sharing it), ``intensity`` (scaled) and ``s2`` =
1/d² in Å⁻².  CC½ is computed by the σ-τ method; the fit is the Aimless /
KAMO form CC½(s²) = ½[1 − tanh((s² − d0)/r)].  The per-dataset cut of
``mxflow process`` and the merged clusters' cut both use
:func:`estimate_d_min`.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from scipy.optimize import least_squares

from mxflow.model import ResolutionFit
from mxflow.stats.observations import read_unmerged_mtz


def d_at_radius(radius: float, distance: float, wavelength: float) -> float:
    """d-spacing (Å) recorded at ``radius`` mm from the beam on a flat detector normal to
    it at ``distance`` mm, for ``wavelength`` Å: λ / (2 sin(θ)), 2θ = atan(radius / distance)."""
    two_theta = math.atan2(radius, distance)
    return wavelength / (2 * math.sin(two_theta / 2))


def cc_half_sigma_tau(keys: np.ndarray, intensity: np.ndarray) -> float:
    """CC½ by the σ-τ method (Assmann, Brehm & Diederichs 2016) of one shell.

    Over reflections measured at least twice: σ²_y is the variance of the
    reflection means and σ²_ε the mean of (within-reflection variance / n);
    CC½ = (σ²_y − σ²_ε) / (σ²_y + σ²_ε).  NaN with fewer than 3 such reflections.
    """
    keys = np.asarray(keys)
    if not len(keys):
        return float("nan")
    uk, inv, n = np.unique(keys, return_inverse=True, return_counts=True)
    s1 = np.bincount(inv, weights=intensity, minlength=len(uk))
    s2 = np.bincount(inv, weights=np.asarray(intensity, dtype=float) ** 2, minlength=len(uk))
    m = n >= 2
    if m.sum() < 3:
        return float("nan")
    mean = s1[m] / n[m]
    var = (s2[m] - n[m] * mean**2) / (n[m] - 1)
    sy2 = float(np.var(mean, ddof=1))
    se2 = float(np.mean(np.maximum(var, 0) / n[m]))
    if sy2 + se2 <= 0:
        return float("nan")
    return (sy2 - se2) / (sy2 + se2)


def resolution_bins(s2: np.ndarray, keys: np.ndarray, n_bins: int) -> np.ndarray:
    """Bin index per observation: ``n_bins`` shells holding equal numbers of unique reflections."""
    uk, first = np.unique(keys, return_index=True)
    us2 = np.sort(np.asarray(s2)[first])
    edges = np.quantile(us2, np.linspace(0, 1, n_bins + 1)[1:-1]) if len(us2) else np.zeros(0)
    return np.searchsorted(edges, s2, side="right")


def binned_cc_half(
    keys: np.ndarray, intensity: np.ndarray, s2: np.ndarray, n_bins: int = 10
) -> tuple[np.ndarray, np.ndarray]:
    """(mean s² of each bin in Å⁻², σ-τ CC½ of each bin), equal-count bins low → high resolution."""
    b = resolution_bins(s2, keys, n_bins)
    centres, ccs = [], []
    for k in range(n_bins):
        sel = b == k
        if not sel.any():
            continue
        centres.append(float(np.mean(s2[sel])))
        ccs.append(cc_half_sigma_tau(keys[sel], intensity[sel]))
    return np.array(centres), np.array(ccs)


def tanh_model(s2: np.ndarray, d0: float, r: float) -> np.ndarray:
    """CC½(s²) = ½·[1 − tanh((s² − d0) / r)] (Aimless form; s² = 1/d² in Å⁻²)."""
    return 0.5 * (1.0 - np.tanh((np.asarray(s2) - d0) / r))


def fit_cc_half_tanh(s2: np.ndarray, cc: np.ndarray) -> tuple[float, float] | None:
    """Least-squares (soft-L1, f_scale 0.3) fit of :func:`tanh_model`; (d0, r) or None.

    Needs at least 3 finite bins.  s² is rescaled to max(s²) = 1 and the fit
    starts mid-range (d0 = 0.5, r = 0.5), which converges more reliably than
    KAMO's start at half the smallest s².
    """
    s2, cc = np.asarray(s2, dtype=float), np.asarray(cc, dtype=float)
    ok = np.isfinite(s2) & np.isfinite(cc)
    if ok.sum() < 3:
        return None
    x, y = s2[ok], cc[ok]
    scale = float(x.max())

    def resid(p: np.ndarray) -> np.ndarray:
        return tanh_model(x / scale, p[0], abs(p[1]) + 1e-6) - y

    res = least_squares(resid, x0=[0.5, 0.5], loss="soft_l1", f_scale=0.3)
    if not res.success:
        return None
    return float(res.x[0] * scale), float((abs(res.x[1]) + 1e-6) * scale)


def d_min_from_fit(d0: float, r: float, target: float = 0.5) -> float | None:
    """Resolution (Å) where the fitted CC½ equals ``target`` (0 < target < 1), or None."""
    if not 0 < target < 1:
        raise ValueError("CC½ target must be between 0 and 1")
    s2 = d0 + r * math.atanh(1.0 - 2.0 * target)
    return 1.0 / math.sqrt(s2) if s2 > 0 else None


def estimate_d_min(
    keys: np.ndarray,
    intensity: np.ndarray,
    s2: np.ndarray,
    target: float = 0.5,
    refl_per_bin: int = 50,
) -> ResolutionFit:
    """Where the tanh fit of binned CC½ crosses ``target``, clipped to the data.

    Bins hold about ``refl_per_bin`` unique reflections (9 to 200 bins, KAMO).
    The result's ``d_min`` (Å) is the data limit when the fit never falls to
    ``target`` inside the data, and None when there are too few bins for a fit.
    """
    n_unique = len(np.unique(keys))
    n_bins = int(min(200, max(9, n_unique // refl_per_bin)))
    centres, ccs = binned_cc_half(keys, intensity, s2, n_bins)
    data_limit = 1.0 / math.sqrt(float(np.max(s2))) if len(s2) else None
    fit = ResolutionFit(target, None, data_limit, centres.tolist(), ccs.tolist())
    params = fit_cc_half_tanh(centres, ccs)
    if params is None:
        fit.note = "fewer than 3 bins with a defined CC½: no fit"
        return fit
    fit.d0, fit.r = params
    d = d_min_from_fit(*params, target=target)
    if d is None or (data_limit is not None and d < data_limit):
        fit.note = f"CC½ stays above {target} to the data limit"
        fit.d_min = data_limit
    else:
        fit.d_min = d
    return fit


def cc_half_d_min(unmerged_mtz: str | Path, target: float = 0.5) -> ResolutionFit:
    """Where the fitted CC½ of a scaled unmerged MTZ falls to ``target``.

    Friedel mates are merged (non-anomalous CC½).  ``d_min`` is the data limit
    when CC½ stays above ``target`` to the edge, and None when there are too
    few bins for a fit.
    """
    obs = read_unmerged_mtz(unmerged_mtz)
    fit = estimate_d_min(obs.keys, obs.i, obs.s2, target=target)
    if fit.d_min is not None and not math.isfinite(fit.d_min):
        fit.d_min = None
    return fit


def sparse_shell_limit(
    d_measured: np.ndarray,
    d_possible: np.ndarray,
    d_min: float,
    n_bins: int = 20,
    fraction: float = 0.5,
) -> float:
    """The limit (Å) that leaves out nearly empty outer shells; ``d_min`` when none are.

    ``d_measured``: d (Å) of each measured unique reflection; ``d_possible``:
    d of every possible unique reflection (to at least ``d_min``).  The
    possible reflections to ``d_min`` are split into ``n_bins`` shells of
    equal count; outer shells are dropped while their completeness is below
    ``fraction`` × the median shell completeness (a small wedge is sparse
    everywhere; only shells sparser than its own typical shell go).  The
    limit returned is the outer edge (smallest d) of the last shell kept,
    never below ``d_min``.
    """
    d_possible = np.sort(np.asarray(d_possible, dtype=float)[np.asarray(d_possible) >= d_min])[::-1]
    d_measured = np.asarray(d_measured, dtype=float)
    if len(d_possible) < n_bins * 5:
        return d_min
    shells = np.array_split(d_possible, n_bins)
    edges = [(s[0], s[-1]) for s in shells]  # (largest d, smallest d) of each shell
    cmpl = []
    for k, (_, lo) in enumerate(edges):
        inner = np.inf if k == 0 else edges[k - 1][1]
        n = np.count_nonzero((d_measured >= lo) & (d_measured < inner))
        cmpl.append(n / len(shells[k]))
    ref = float(np.median(cmpl))
    k = n_bins
    while k > 1 and cmpl[k - 1] < fraction * ref:
        k -= 1
    return d_min if k == n_bins else float(edges[k - 1][1])


def sparse_shell_limit_from_mtz(
    unmerged_mtz: str | Path, d_min: float, n_bins: int = 20, fraction: float = 0.5
) -> float:
    """:func:`sparse_shell_limit` of a scaled unmerged MTZ, cut at ``d_min`` Å."""
    import gemmi

    obs = read_unmerged_mtz(unmerged_mtz, d_min=d_min)
    _, first = np.unique(obs.keys, return_index=True)
    d_measured = 1.0 / np.sqrt(obs.s2[first])
    hkl = gemmi.make_miller_array(obs.cell, obs.space_group, d_min * (1 - 1e-6))
    d_possible = np.asarray(obs.cell.calculate_d_array(hkl))
    return sparse_shell_limit(d_measured, d_possible, d_min, n_bins, fraction)
