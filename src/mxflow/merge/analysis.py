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
    ``n_bins`` resolution shells of equal unique-reflection counts (fixed by all data).

    In one pass over the observations, not one per group: each shell's σ-τ
    sums (reflections measured twice or more, Σ mean, Σ mean², Σ var/n) are
    taken for all data, and each group's CC½ without it comes from
    correcting them on the reflections that group measured.  The same
    numbers as :func:`mean_cc_half` of the data without the group (to
    rounding), for any number of groups (200 datasets: 0.3 s, not 50 s).
    """
    keys, intensity, s2, groups = (np.asarray(x) for x in (keys, intensity, s2, groups))
    x = intensity.astype(float)
    bins = resolution_bins(s2, keys, n_bins)
    full = mean_cc_half(keys, x, bins, n_bins)
    labels, g = np.unique(groups, return_inverse=True)
    g = g.reshape(-1).astype(np.int64)
    if not len(x):
        return full, {}
    # a "unit" is a reflection within a shell, as cc_half_sigma_tau sees it there
    k0 = keys.astype(np.int64) - int(keys.min())
    units, first, u = np.unique(
        bins.astype(np.int64) * (int(k0.max()) + 1) + k0, return_index=True, return_inverse=True
    )
    u = u.reshape(-1)
    n_units, n_groups = len(units), len(labels)
    u_bin = bins[first]
    n = np.bincount(u, minlength=n_units).astype(float)
    s1 = np.bincount(u, weights=x, minlength=n_units)
    sq = np.bincount(u, weights=x * x, minlength=n_units)
    # one entry per (group, unit) pair: what the group adds to the unit
    pair, p = np.unique(g * n_units + u, return_inverse=True)
    p = p.reshape(-1)
    pg, pu = pair // n_units, pair % n_units
    pn = np.bincount(p).astype(float)
    ps1, psq = np.bincount(p, weights=x), np.bincount(p, weights=x * x)

    def terms(cnt, a, b):
        """(1, mean, mean², var/n) of units measured twice or more, 0 otherwise."""
        ok = cnt >= 2
        c = np.where(ok, cnt, 2.0)
        mean = a / c
        var = np.maximum((b - c * mean * mean) / (c - 1), 0.0)
        return [ok * 1.0, ok * mean, ok * mean * mean, ok * var / c]

    total = [np.bincount(u_bin, weights=t, minlength=n_bins) for t in terms(n, s1, sq)]
    old = terms(n[pu], s1[pu], sq[pu])
    new = terms(n[pu] - pn, s1[pu] - ps1, sq[pu] - psq)
    idx = pg * n_bins + u_bin[pu]
    c, m1, m2, e = (
        t[None, :]
        + np.bincount(idx, weights=b - a, minlength=n_groups * n_bins).reshape(n_groups, n_bins)
        for t, a, b in zip(total, old, new, strict=True)
    )
    n_obs = np.bincount(bins, minlength=n_bins)[None, :] - np.bincount(
        g * n_bins + bins, minlength=n_groups * n_bins
    ).reshape(n_groups, n_bins)
    c = np.rint(c)
    with np.errstate(invalid="ignore", divide="ignore"):
        sy2 = (m2 - m1 * m1 / c) / (c - 1)
        se2 = e / c
        cc = (sy2 - se2) / (sy2 + se2)
    cc[(n_obs <= 3) | (c < 3) | ~(sy2 + se2 > 0) | ~np.isfinite(cc)] = np.nan
    without = {}
    for k, label in enumerate(labels):
        row = cc[k][np.isfinite(cc[k])]
        without[int(label)] = float(row.mean()) if len(row) else float("nan")
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


#: reflections a group must share with the rest of the cluster for its CC (diagnostics)
MIN_COMMON = 10


def cc_to_rest_by_group(
    keys: np.ndarray, i: np.ndarray, groups: np.ndarray, min_common: int = MIN_COMMON
) -> np.ndarray:
    """Pearson CC of each group's intensities with the rest of the cluster's.

    A split-half CC whose halves are the group and every other observation of
    the cluster: over reflections measured both in the group and outside it,
    the correlation of the group's mean I with the mean I of the other
    observations (unweighted means).  Falls for an image group that disagrees
    with the rest (radiation damage, a bad image, a wrong crystal); it also
    falls with weaker data, as CC½ does.  NaN with fewer than ``min_common``
    common reflections or no spread.  One pass over the observations for all
    groups.

    Parameters
    ----------
    keys : symmetry-unique reflection key of each observation.
    i : scaled intensity of each observation.
    groups : group label of each observation.
    min_common : reflections the group must share with the rest.

    Returns the CC of each group of ``np.unique(groups)``, in that order.
    """
    i = np.asarray(i, dtype=float)
    labels, ginv = np.unique(groups, return_inverse=True)
    ginv = ginv.reshape(-1)
    _, rinv = np.unique(keys, return_inverse=True)
    rinv = rinv.reshape(-1)
    n_ref = int(rinv.max()) + 1 if len(rinv) else 0
    total_n = np.bincount(rinv, minlength=n_ref)
    total_s = np.bincount(rinv, weights=i, minlength=n_ref)
    # one entry per (group, reflection) pair
    pair, pinv = np.unique(ginv.astype(np.int64) * n_ref + rinv, return_inverse=True)
    pinv = pinv.reshape(-1)
    pn = np.bincount(pinv)
    ps = np.bincount(pinv, weights=i)
    pg, pr = pair // n_ref, pair % n_ref
    rest_n = total_n[pr] - pn
    keep = rest_n > 0
    x = (ps / pn)[keep]
    y = (total_s[pr][keep] - ps[keep]) / rest_n[keep]
    gl = pg[keep]
    m = len(labels)
    cnt = np.bincount(gl, minlength=m).astype(float)
    sx, sy = np.bincount(gl, x, m), np.bincount(gl, y, m)
    sxx, syy, sxy = np.bincount(gl, x * x, m), np.bincount(gl, y * y, m), np.bincount(gl, x * y, m)
    with np.errstate(invalid="ignore", divide="ignore"):
        vx, vy = cnt * sxx - sx * sx, cnt * syy - sy * sy
        cov = cnt * sxy - sx * sy
        ok = (cnt >= min_common) & (vx > 0) & (vy > 0)
        return np.where(ok, cov / np.sqrt(vx * vy), np.nan)


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
    # CC of each dataset's mean intensities with the rest's (observations with σ > 0)
    ok = np.isfinite(obs.i) & np.isfinite(obs.sigma) & (obs.sigma > 0)
    to_rest = dict(
        zip(
            np.unique(obs.dataset[ok]).tolist(),
            cc_to_rest_by_group(obs.keys[ok], obs.i[ok], obs.dataset[ok], min_common=2),
            strict=True,
        )
    )
    cv = np.array([to_rest.get(int(k), np.nan) for k in ks])
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
