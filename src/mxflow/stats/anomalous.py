"""How strong the anomalous signal is and how far it extends.

Small pure functions on numbers that :mod:`mxflow.stats.merging` computes
(normalised Bijvoet differences ΔI/σ(ΔI), CCano per shell):

* :func:`normal_quantiles` and :func:`normal_probability_slope`: the
  "anomalous slope" of the normal probability plot of ΔI/σ(ΔI) (Diamond's
  fast_dp and aimless print one).  The sorted deviates are plotted against
  the quantiles of N(0, 1) expected for their rank (Blom's plotting
  positions); the slope of a least-squares line (with intercept) through
  the points whose expected quantile lies in |q| < ``q_max`` (2 by
  default) is ≈ 1 for pure noise with correct σ, above 1 with a real
  Bijvoet difference (the differences are wider than their σ), below 1
  when σ is overestimated.  Only the central part is fitted: the tails of
  a few thousand points carry outliers and little information about the
  width.
* :func:`anomalous_resolution`: where CCano, counted from the inner shell
  outward, first drops below a target (0.15 by default, a common rule of
  thumb for useful anomalous signal).
* :func:`anomalous_signal`: the overall figures of a cluster's
  :class:`~mxflow.model.MergingStats` and that resolution, as an
  :class:`~mxflow.model.AnomalousSignal`.

Resolutions d in Å; correlations as Pearson coefficients.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import ndtri

from mxflow.model import AnomalousSignal, HeavyAtom, MergingStats

#: the part of the normal probability plot fitted: expected quantiles |q| below this
SLOPE_Q_MAX = 2.0
#: fewer fitted points than this give no slope (NaN)
SLOPE_MIN_POINTS = 10
#: CCano above which a shell counts as carrying anomalous signal
CC_ANO_TARGET = 0.15


def normal_quantiles(n: int) -> np.ndarray:
    """Expected N(0, 1) quantiles of the ranks 1..n of a sorted sample.

    Parameters
    ----------
    n : int
        Sample size (≥ 0).

    Returns
    -------
    numpy.ndarray
        ``Φ⁻¹((i − 3/8) / (n + 1/4))`` for i = 1..n (Blom's plotting
        positions), increasing, symmetric about 0.
    """
    i = np.arange(1, n + 1, dtype=float)
    return ndtri((i - 0.375) / (n + 0.25))


def normal_probability_slope(
    z: np.ndarray, q_max: float = SLOPE_Q_MAX, min_points: int = SLOPE_MIN_POINTS
) -> float:
    """Slope of the normal probability plot of normalised deviates.

    Parameters
    ----------
    z : numpy.ndarray
        Normalised deviates, e.g. ΔI/σ(ΔI) of acentric Bijvoet pairs
        (non-finite values are ignored).
    q_max : float
        Only points whose expected quantile q satisfies |q| < ``q_max`` are
        fitted.
    min_points : int
        Fewer fitted points than this give NaN.

    Returns
    -------
    float
        Least-squares slope of sorted ``z`` against :func:`normal_quantiles`
        over the central part (dimensionless): ≈ 1 for N(0, 1) deviates,
        the standard deviation of ``z`` for any normal sample; NaN when
        too few points.
    """
    z = np.asarray(z, dtype=float)
    z = np.sort(z[np.isfinite(z)])
    q = normal_quantiles(len(z))
    central = np.abs(q) < q_max
    if np.count_nonzero(central) < max(min_points, 2):
        return math.nan
    x, y = q[central], z[central]
    x0 = x - x.mean()
    return float(np.dot(x0, y - y.mean()) / np.dot(x0, x0))


def anomalous_resolution(
    d_min: np.ndarray, cc_ano: np.ndarray, target: float = CC_ANO_TARGET
) -> float | None:
    """High-resolution limit of the anomalous signal from CCano per shell.

    Parameters
    ----------
    d_min : numpy.ndarray
        High-resolution limit of each shell (Å), shells ordered from low to
        high resolution.
    cc_ano : numpy.ndarray
        CCano of each shell (NaN where it could not be computed).
    target : float
        A shell carries signal when its CCano ≥ ``target``.

    Returns
    -------
    float or None
        ``d_min`` of the last shell, counted from the inner shell outward,
        of the unbroken run of shells with CCano ≥ ``target`` (a NaN CCano
        ends the run); None when the inner shell is already below (or NaN,
        or there are no shells).
    """
    n = shells_with_signal(cc_ano, target)
    return float(np.asarray(d_min, dtype=float)[n - 1]) if n else None


def shells_with_signal(cc_ano: np.ndarray, target: float = CC_ANO_TARGET) -> int:
    """Number of shells, from the inner one outward, before CCano first falls below ``target``.

    Parameters
    ----------
    cc_ano : numpy.ndarray
        CCano per shell, low to high resolution (a NaN ends the count).
    target : float
        The CCano a shell must reach.

    Returns
    -------
    int
        0 when the inner shell is below (or NaN); ``len(cc_ano)`` when every
        shell reaches the target.
    """
    cc = np.asarray(cc_ano, dtype=float)
    # a NaN shell ends the run like a weak one
    above = np.greater_equal(cc, target, where=np.isfinite(cc), out=np.zeros(len(cc), bool))
    return len(above) if above.all() else int(np.argmin(above))


def anomalous_signal(
    stats: MergingStats, heavy_atom: HeavyAtom | None = None, target: float = CC_ANO_TARGET
) -> AnomalousSignal:
    """The anomalous signal of merged data: overall figures and how far it extends.

    Parameters
    ----------
    stats : MergingStats
        Per-shell and overall statistics (:func:`mxflow.stats.merging.merging_stats`).
    heavy_atom : HeavyAtom, optional
        The anomalous scatterer, carried into the result as given.
    target : float
        CCano that a shell must reach to count (see :func:`anomalous_resolution`).

    Returns
    -------
    AnomalousSignal
        ``cc_ano``, ``sig_ano``, ``anom_completeness`` (fraction),
        ``anom_multiplicity`` and ``anom_slope`` of the overall row;
        ``d_ano`` (Å) from :func:`anomalous_resolution`; ``note`` says in
        words where the signal ends, or why there is no ``d_ano``.
    """
    o = stats.overall
    shells = stats.shells
    n = shells_with_signal(np.array([s.cc_ano for s in shells], dtype=float), target)
    d_ano = float(shells[n - 1].d_min) if n else None
    return AnomalousSignal(
        cc_ano=o.cc_ano,
        sig_ano=o.sig_ano,
        anom_completeness=o.anom_completeness,
        anom_multiplicity=o.anom_multiplicity,
        anom_slope=o.anom_slope,
        d_ano=d_ano,
        cc_ano_target=target,
        heavy_atom=heavy_atom,
        note=anomalous_note(stats, n, target),
    )


def anomalous_note(stats: MergingStats, n: int, target: float) -> str:
    """Plain words for where the anomalous signal ends, ``n`` shells from the inner one
    reaching CCano ≥ ``target`` (:func:`shells_with_signal`; formatting only)."""
    shells = stats.shells
    if not shells:
        return "no resolution shells: no anomalous resolution"
    inner = shells[0]
    if n == 0:
        if not math.isfinite(inner.cc_ano):
            return (
                f"CCano of the inner shell ({inner.d_max:.2f}–{inner.d_min:.2f} Å) could not "
                "be computed (too few Bijvoet pairs): no anomalous resolution"
            )
        return (
            f"CCano {inner.cc_ano:.3f} is below {target:g} already in the inner shell "
            f"({inner.d_max:.2f}–{inner.d_min:.2f} Å): no useful anomalous signal"
        )
    d_ano = shells[n - 1].d_min
    if n == len(shells):
        return f"CCano ≥ {target:g} in every shell, to {d_ano:.2f} Å (the data's limit)"
    nxt = shells[n]
    why = (
        f"CCano {nxt.cc_ano:.3f}"
        if math.isfinite(nxt.cc_ano)
        else "no CCano (too few Bijvoet pairs)"
    )
    return (
        f"CCano ≥ {target:g} to {d_ano:.2f} Å; {why} in the next shell "
        f"({nxt.d_max:.2f}–{nxt.d_min:.2f} Å)"
    )


#: bins of I/σ (as the scaling program gave σ) for :func:`sigma_factors`
SD_BIN_EDGES = (1.0, 2.0, 3.0, 5.0, 7.0, 10.0, 15.0, 20.0, 30.0, 50.0, 100.0)
MEAN_ABS_NORMAL = float(np.sqrt(2.0 / np.pi))  # mean of |N(0, 1)|


def _others(
    group: np.ndarray, i: np.ndarray, sigma: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(Ī₋ᵢ, σ(Ī₋ᵢ)², has others): the inverse-variance weighted mean of the other
    observations of each observation's group and its variance; where an observation is
    alone in its group, ``has others`` is False and the first two are meaningless."""
    w = 1.0 / sigma**2
    sw = np.bincount(group, weights=w)[group] - w
    swi = np.bincount(group, weights=w * i)[group] - w * i
    ok = sw > 1e-12 * w
    safe = np.where(ok, sw, 1.0)
    return swi / safe, 1.0 / safe, ok


def _loo_deviations(group: np.ndarray, i: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """(Iᵢ − Ī₋ᵢ) / √(σᵢ² + σ(Ī₋ᵢ)²) (NaN for an observation alone in its group)."""
    mean, var, ok = _others(group, i, sigma)
    out = np.full(len(i), np.nan)
    out[ok] = (i[ok] - mean[ok]) / np.sqrt(sigma[ok] ** 2 + var[ok])
    return out


def _strength_bins(
    group: np.ndarray, i: np.ndarray, sigma: np.ndarray, edges: tuple[float, ...]
) -> np.ndarray:
    """Bin of each observation by Ī₋ᵢ/σᵢ, the strength of its reflection judged from the
    other measurements (its own I/σ would sort its own noise into the bins); an
    observation alone in its group by its own I/σ."""
    mean, _, ok = _others(group, i, sigma)
    strength = np.where(ok, mean, i) / sigma
    return np.searchsorted(np.asarray(edges), strength, side="right")


def sigma_factors(
    group: np.ndarray,
    i: np.ndarray,
    sigma: np.ndarray,
    edges: tuple[float, ...] = SD_BIN_EDGES,
    n_iter: int = 4,
    min_count: int = 30,
) -> np.ndarray:
    """Factors that calibrate σ on the scatter of repeated measurements, per bin of I/σ.

    Parameters
    ----------
    group : ndarray of int
        One id per observation; observations of one group measure one true
        intensity (for anomalous data: one reflection and one Friedel sign,
        so a true Bijvoet difference is never taken for error).
    i, sigma : ndarray
        Intensities and their σ as the scaling program wrote them.
    edges : tuple of float
        Inner edges of the I/σ bins (len(edges) + 1 bins).

    Returns
    -------
    ndarray
        One factor per bin of Ī₋ᵢ/σᵢ (:func:`_strength_bins`; the observation's own
        I/σ would bias the bins by its own noise): σ' = factor · σ makes the
        leave-one-out deviations
        (Iᵢ − Ī₋ᵢ)/√(σ'ᵢ² + σ'(Ī₋ᵢ)²) of the bin unit normal, judged by their
        mean |deviation| (√(2/π) for N(0, 1): the same measure SigAno takes of
        ΔI/σ(ΔI)), as XDS's CORRECT and Aimless's SD
        correction calibrate σ on symmetry mates.  Iterated, since σ(Ī₋ᵢ)
        changes with the factors; bins with fewer than ``min_count``
        deviations take the factor of the nearest filled bin (all 1 when none
        is filled); factors are kept within [0.2, 10].
    """
    group, i, sigma = (np.asarray(x) for x in (group, i, sigma))
    ok = np.isfinite(i) & np.isfinite(sigma) & (sigma > 0)
    group, i, sigma = group[ok], i[ok], sigma[ok]
    bins = _strength_bins(group, i, sigma, edges)
    n_bins = len(edges) + 1
    factor = np.ones(n_bins)
    for _ in range(n_iter):
        dev = _loo_deviations(group, i, sigma * factor[bins])
        filled = np.zeros(n_bins, bool)
        for b in range(n_bins):
            d = dev[(bins == b) & np.isfinite(dev)]
            if len(d) >= min_count:
                factor[b] *= np.mean(np.abs(d)) / MEAN_ABS_NORMAL
                filled[b] = True
        if not filled.any():
            return np.ones(n_bins)
        idx = np.flatnonzero(filled)
        for b in np.flatnonzero(~filled):
            factor[b] = factor[idx[np.argmin(np.abs(idx - b))]]
        factor = np.clip(factor, 0.2, 10.0)
    return factor


def calibrated_sigma(
    group: np.ndarray, i: np.ndarray, sigma: np.ndarray, factors: np.ndarray,
    edges: tuple[float, ...] = SD_BIN_EDGES,
) -> np.ndarray:  # fmt: skip
    """σ' = factor(bin of Ī₋ᵢ/σᵢ) · σ (:func:`sigma_factors`, the same bins)."""
    group, i, sigma = (np.asarray(x) for x in (group, i, sigma))
    bins = _strength_bins(group, i, sigma, edges)
    return sigma * np.asarray(factors)[np.clip(bins, 0, len(factors) - 1)]
