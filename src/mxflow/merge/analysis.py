"""Pure numerical pieces of merging: Tukey cuts, σ-τ CC½, ΔCC½, the tanh resolution fit.

Observations are given as arrays: ``keys`` (one integer per symmetry-unique
reflection, e.g. from :func:`mxflow.cluster.intensity.canonical_keys`),
``intensity`` (scaled), ``s2`` = 1/d² in Å⁻², and a group label per
observation (dataset or image group) for ΔCC½.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.optimize import least_squares


def tukey_fences(values: Sequence[float], k: float = 1.5) -> tuple[float, float]:
    """Tukey's fences (Q1 − k·IQR, Q3 + k·IQR) of the finite values."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if not len(v):
        return -math.inf, math.inf
    q1, q3 = np.percentile(v, [25, 75])
    return float(q1 - k * (q3 - q1)), float(q3 + k * (q3 - q1))


def tukey_outliers(values: Sequence[float], k: float = 1.5, side: str = "low") -> np.ndarray:
    """Boolean mask of outliers: below the low fence (``side='low'``), above the high one, or both.

    Fewer than 4 finite values never give outliers (the quartiles mean nothing).
    """
    v = np.asarray(values, dtype=float)
    if np.isfinite(v).sum() < 4:
        return np.zeros(len(v), dtype=bool)
    lo, hi = tukey_fences(v, k)
    low, high = v < lo, v > hi
    return {"low": low, "high": high, "both": low | high}[side]


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


def mean_cc_half(keys: np.ndarray, intensity: np.ndarray, bins: np.ndarray, n_bins: int) -> float:
    """Average of the per-bin σ-τ CC½ over bins where it is defined (DIALS ΔCC½ convention)."""
    vals = []
    for k in range(n_bins):
        sel = bins == k
        if sel.sum() > 3:
            v = cc_half_sigma_tau(keys[sel], intensity[sel])
            if math.isfinite(v):
                vals.append(v)
    return float(np.mean(vals)) if vals else float("nan")


def delta_cc_half(
    keys: np.ndarray,
    intensity: np.ndarray,
    s2: np.ndarray,
    groups: np.ndarray,
    n_bins: int = 10,
) -> dict[int, float]:
    """ΔCC½ of every group: CC½(all) − CC½(all but that group), σ-τ, averaged over bins.

    A negative value means the data are better without the group.
    """
    full, without = cc_half_without_each(keys, intensity, s2, groups, n_bins)
    return {g: full - v for g, v in without.items()}


def cc_half_without_each(
    keys: np.ndarray,
    intensity: np.ndarray,
    s2: np.ndarray,
    groups: np.ndarray,
    n_bins: int = 10,
) -> tuple[float, dict[int, float]]:
    """(CC½ of all data, {group: CC½ without that group}); σ-τ CC½ averaged over
    ``n_bins`` resolution shells of equal unique-reflection counts (fixed by all data)."""
    keys, intensity, s2, groups = (np.asarray(x) for x in (keys, intensity, s2, groups))
    bins = resolution_bins(s2, keys, n_bins)
    full = mean_cc_half(keys, intensity, bins, n_bins)
    without = {}
    for g in np.unique(groups):
        keep = groups != g
        without[int(g)] = mean_cc_half(keys[keep], intensity[keep], bins[keep], n_bins)
    return full, without


def information_gain_without(
    keys: np.ndarray, cc_all: float, cc_without: float, dropped: np.ndarray
) -> float:
    """Relative change of CC½ × N_unique when the observations ``dropped`` (bool) go.

    KAMO's stopping rule for ΔCC½ rejection: a dataset is worth removing only
    when the better CC½ outweighs the unique reflections lost with it, i.e.
    when this is > 0.  ``keys`` are the unique-reflection keys of all
    observations.
    """
    n_all = len(np.unique(keys))
    n_without = len(np.unique(keys[~dropped]))
    if not (n_all and math.isfinite(cc_all) and math.isfinite(cc_without)) or cc_all <= 0:
        return float("nan")
    return (cc_without * n_without) / (cc_all * n_all) - 1.0


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
) -> tuple[float | None, dict]:
    """d_min (Å) where the tanh fit of binned CC½ crosses ``target``, clipped to the data.

    Bins hold about ``refl_per_bin`` unique reflections (9 to 200 bins, KAMO).
    Returns (d_min or None, details: bins, fit, data limit).  When the fit
    never falls to ``target`` inside the data, the data limit is returned.
    """
    n_unique = len(np.unique(keys))
    n_bins = int(min(200, max(9, n_unique // refl_per_bin)))
    centres, ccs = binned_cc_half(keys, intensity, s2, n_bins)
    data_limit = 1.0 / math.sqrt(float(np.max(s2))) if len(s2) else None
    info = {"s2": centres.tolist(), "cc_half": ccs.tolist(), "data_limit": data_limit}
    fit = fit_cc_half_tanh(centres, ccs)
    if fit is None:
        info["note"] = "fewer than 3 bins with a defined CC½: no fit"
        return None, info
    info["d0"], info["r"] = fit
    d = d_min_from_fit(*fit, target=target)
    if d is None or (data_limit is not None and d < data_limit):
        info["note"] = f"CC½ stays above {target} to the data limit"
        return data_limit, info
    return d, info
