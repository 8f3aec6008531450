"""Pure numerical pieces of merging: Tukey cuts, ΔCC½, bad image groups and datasets, quality.

Observations are :class:`mxflow.stats.observations.Observations` (``keys``
one integer per symmetry-unique reflection, ``i`` scaled intensities,
``s2`` = 1/d² in Å⁻², ``dataset`` and ``image`` per observation) or the
same as plain arrays with a group label per observation for ΔCC½.  CC½ is
the σ-τ value averaged over resolution bins (DIALS' ΔCC½ convention).
Nothing here runs a program or writes a file.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mxflow.cluster import intensity
from mxflow.stats.observations import Observations
from mxflow.stats.resolution import cc_half_sigma_tau, estimate_d_min, resolution_bins

#: groups of images are numbered dataset × GROUP_STRIDE + group within the dataset
GROUP_STRIDE = 100000


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


# ---------------------------------------------------------------- rejection
@dataclass
class BadImageGroup:
    """Images ``first``..``last`` of dataset ``dataset`` whose ΔCC½ is below the fence."""

    dataset: int
    first: int
    last: int
    delta_cc_half: float
    fence: float


def frame_rejection(
    obs: Observations, group_size: int, floor: float = 0.001
) -> list[BadImageGroup]:
    """Image groups to drop: ΔCC½ below the Tukey low fence and below −``floor``.

    The floor keeps excellent data intact: there the fences are so narrow
    that noise of 10⁻⁴ in ΔCC½ would otherwise count as an outlier.  Only
    datasets cut into two or more groups of ``group_size`` images take part:
    judging a short wedge whole is the job of :func:`dataset_rejection`
    (run_03), not of frame rejection.  Needs ≥ 4 eligible groups.
    """
    base = np.zeros(obs.dataset.max() + 1, dtype=int)
    for k in np.unique(obs.dataset):
        base[k] = obs.image[obs.dataset == k].min()
    group = obs.dataset * GROUP_STRIDE + (obs.image - base[obs.dataset]) // group_size
    n_groups = np.zeros(obs.dataset.max() + 1, dtype=int)
    for g in np.unique(group):
        n_groups[g // GROUP_STRIDE] += 1
    eligible = n_groups[obs.dataset] >= 2
    if len(np.unique(group[eligible])) < 4:
        return []
    dcc = delta_cc_half(obs.keys, obs.i, obs.s2, group)
    multi = {int(g) for g in np.unique(group[eligible])}
    ids = sorted(g for g in dcc if int(g) in multi)
    vals = np.array([dcc[g] for g in ids])
    lo, _ = tukey_fences(vals)
    bad = []
    for g, v in zip(ids, vals, strict=True):
        if v < lo and v < -floor:
            sel = group == g
            k = int(g // GROUP_STRIDE)
            images = obs.image[sel]
            bad.append(BadImageGroup(k, int(images.min()), int(images.max()), float(v), lo))
    return bad


def cc_to_rest(obs: Observations, k: int) -> float:
    """CC of dataset ``k``'s merged intensities with those of all the other datasets."""
    sel = obs.dataset == k
    a = intensity.merge_observations("a", obs.hkl[sel], obs.i[sel], obs.sigma[sel], obs.space_group)
    b = intensity.merge_observations(
        "b", obs.hkl[~sel], obs.i[~sel], obs.sigma[~sel], obs.space_group
    )
    return intensity.pair_cc(a, b)[0]


def dataset_rejection(
    obs: Observations, floor: float = 0.001, cc_floor: float = 0.05
) -> dict[int, str]:
    """Datasets to drop (index → reason): ΔCC½ or CC to the rest below the Tukey low fence.

    ΔCC½ must also be below −``floor`` (the data are better without the
    dataset) and removing the dataset must raise CC½ × N_unique (KAMO's rule
    for ΔCC½ rejection: a good but weak wedge that brings reflections no
    other wedge measured is kept).  The CC to the other datasets must also be
    more than ``cc_floor`` below the median dataset's (a fence of 0.986 among
    CCs of 0.99 is noise, not a bad crystal).  Needs ≥ 4 datasets, and never
    drops all but one.
    """
    ks = np.unique(obs.dataset)
    if len(ks) < 4:
        return {}
    cc_all, cc_without = cc_half_without_each(obs.keys, obs.i, obs.s2, obs.dataset)
    dv = np.array([cc_all - cc_without[int(k)] for k in ks])
    cv = np.array([cc_to_rest(obs, int(k)) for k in ks])
    lo_d, _ = tukey_fences(dv)
    lo_c, _ = tukey_fences(cv)
    med_c = float(np.nanmedian(cv)) if np.isfinite(cv).any() else math.nan
    out = {}
    for k, d, c in zip(ks, dv, cv, strict=True):
        why = []
        if d < lo_d and d < -floor:
            gain = information_gain_without(obs.keys, cc_all, cc_without[int(k)], obs.dataset == k)
            if gain > 0:
                why.append(
                    f"bad_cchalf: ΔCC½ {d:.4f} below Tukey fence {lo_d:.4f} "
                    f"(CC½ × N_unique {100 * gain:+.1f}% without it)"
                )
        if np.isfinite(c) and c < lo_c and c < med_c - cc_floor:
            why.append(
                f"bad_cc: CC to the other datasets {c:.3f} below Tukey fence {lo_c:.3f} "
                f"and {cc_floor:g} below the median {med_c:.3f}"
            )
        if why:
            out[int(k)] = "; ".join(why)
    if len(out) >= len(ks) - 1:
        return {}
    return out


# ---------------------------------------------------------------- quality
def wilson_b(d: np.ndarray, mean_i: np.ndarray) -> float:
    """Approximate Wilson B (Å²): slope of ln⟨I⟩ against s²/2 over shells with d < 4.5 Å.

    ``d`` in Å and merged intensities ``mean_i`` per reflection.  No
    form-factor normalisation (⟨Σf²⟩ taken as constant), so it is an overall
    fall-off, comparable between runs of one sample.  NaN with fewer than 50
    reflections or 3 positive shells.
    """
    v, d = np.asarray(mean_i, dtype=float), np.asarray(d, dtype=float)
    ok = np.isfinite(v) & (d < 4.5)
    if ok.sum() < 50:
        return math.nan
    s2 = 1 / d[ok] ** 2
    edges = np.quantile(s2, np.linspace(0, 1, 11))
    xs, ys = [], []
    for a, b in zip(edges[:-1], edges[1:], strict=True):
        sel = (s2 >= a) & (s2 <= b)
        m = v[ok][sel].mean() if sel.any() else -1
        if m > 0:
            xs.append(s2[sel].mean())
            ys.append(math.log(m))
    if len(xs) < 3:
        return math.nan
    slope = np.polyfit(xs, ys, 1)[0]
    return float(-2 * slope)


def anisotropic_limits(obs: Observations, target: float) -> tuple[float, float]:
    """(best, worst) d (Å) where CC½ = target within 30° cones about a*, b*, c*.

    NaN, NaN when no cone holds 200 observations.
    """
    frac = np.array(obs.cell.frac.mat.tolist())
    recip = obs.hkl @ frac  # rows: reciprocal-space Cartesian vectors (Å⁻¹)
    norm = np.linalg.norm(recip, axis=1)
    ds = []
    for axis in frac:  # a*, b*, c* directions are the rows of frac
        u = axis / np.linalg.norm(axis)
        cosang = np.abs(recip @ u) / np.maximum(norm, 1e-9)
        sel = cosang > math.cos(math.radians(30))
        if sel.sum() < 200:
            continue
        fit = estimate_d_min(obs.keys[sel], obs.i[sel], obs.s2[sel], target, 30)
        if fit.d_min:
            ds.append(fit.d_min)
    if not ds:
        return math.nan, math.nan
    return min(ds), max(ds)
