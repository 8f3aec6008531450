"""mxflow's own merging-statistics table from a scaled, unmerged MTZ.

The table XDS CORRECT.LP and KAMO print, one row per resolution shell plus
an overall row.  Definitions (Friedel mates merged unless stated):

* observations: unmerged measurements in the shell (systematic absences removed);
* unique: distinct reflections (hkl in the reciprocal ASU) measured at least once;
* possible: reflections allowed by the space group between the shell limits
  (``gemmi.make_miller_array`` with the MTZ cell and space group);
* completeness = unique / possible; multiplicity = observations / unique;
* I/σ: mean over unique reflections of Ī/σ(Ī), with Ī the inverse-variance
  weighted mean and σ(Ī) = (Σ 1/σᵢ²)^-½;
* Rmerge, Rmeas, Rpim and CC½ (σ-τ method) from ``gemmi.Intensities.
  calculate_merging_stats`` on the same shells.  The R values are Σ|Iᵢ − Ī| /
  ΣĪ over reflections measured more than once: a shell with none of those, or
  whose ΣĪ is not positive (noise beyond the diffraction limit), has no R
  value (NaN, printed "-"), never a negative one;
* CCano: Pearson correlation of ΔI = I(+) − I(−) between two random halves
  of the observations (acentric reflections whose I(+) and I(−) are both
  measured in both halves; n_cc_ano counts them, and CCano of pure noise
  scatters by about 1/√n_cc_ano around 0), seeded so the table is reproducible;
* Bijvoet pairs: acentric reflections (``centric_flag_array`` of the space
  group) with both I(+) and I(−) measured; ΔI = Ī(+) − Ī(−) of the
  inverse-variance weighted means and σ(ΔI) = (σ(Ī+)² + σ(Ī−)²)^½;
  n_ano counts the pairs;
* SigAno: mean |ΔI| / σ(ΔI) over the Bijvoet pairs (XDS' SigAno): the mean
  of |N(0, 1)|, √(2/π) ≈ 0.80, for pure noise with correct σ.  The σ of
  SigAno and of the anomalous slope are first calibrated, per shell and bin
  of I/σ, on the scatter of repeated measurements of one reflection and one
  Friedel sign (:func:`mxflow.stats.anomalous.sigma_factors`, as XDS's
  CORRECT and Aimless's SD correction do): DIALS's error model on small
  wedges leaves strong reflections' σ up to 2× too small and weak ones' too
  large, which made pure noise read 1.6 in the inner shell and 0.9 in the
  outer one.  A true Bijvoet difference is never part of that scatter, so it
  still shows; every other figure uses the σ as written;
* anomalous completeness: Bijvoet pairs / possible acentric reflections
  (the possible set above, its centric ones left out);
* anomalous multiplicity: observations per measured Bijvoet mate, Σ(n₊ + n₋)
  / (2 · n_ano) over the Bijvoet pairs (observations of acentric
  reflections with one mate only are not counted);
* anomalous slope: slope of the normal probability plot of ΔI/σ(ΔI) over
  the Bijvoet pairs, fitted where the expected N(0, 1) quantile is within
  ±2 (:func:`mxflow.stats.anomalous.normal_probability_slope`): ≈ 1 for
  pure noise with correct σ, above 1 with an anomalous signal.

Shells have equal reciprocal volume (gemmi Binner, method ``Dstar3``) and run
from low to high resolution; d in Å.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, NamedTuple

import gemmi
import numpy as np

from mxflow.model import MergingStats, ShellStats, to_dict
from mxflow.stats.anomalous import calibrated_sigma, normal_probability_slope, sigma_factors
from mxflow.stats.observations import Observations, read_unmerged_mtz


def _group_ids(keys: np.ndarray) -> tuple[np.ndarray, int]:
    """Index of each row's group (rows with equal ``keys`` rows) and the number of groups."""
    _, inverse = np.unique(keys, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    return inverse, int(inverse.max()) + 1 if inverse.size else 0


def _weighted_means(
    group: np.ndarray, n_groups: int, i: np.ndarray, sigma: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(Ī, σ(Ī), n) per group: inverse-variance weighted mean, its σ and the count."""
    w = 1.0 / sigma**2
    sw = np.bincount(group, weights=w, minlength=n_groups)
    swi = np.bincount(group, weights=w * i, minlength=n_groups)
    n = np.bincount(group, minlength=n_groups)
    with np.errstate(invalid="ignore", divide="ignore"):
        return swi / sw, 1.0 / np.sqrt(sw), n


class BijvoetPairs(NamedTuple):
    """Acentric reflections with both I(+) and I(−) measured (one entry per reflection).

    ``hkl`` (n, 3); ``delta`` = Ī(+) − Ī(−) and ``sigma`` = σ(ΔI); ``n_plus`` and
    ``n_minus`` the observations of each mate.
    """

    hkl: np.ndarray
    delta: np.ndarray
    sigma: np.ndarray
    n_plus: np.ndarray
    n_minus: np.ndarray


def _anomalous_pairs(
    hkl: np.ndarray, sign: np.ndarray, i: np.ndarray, sigma: np.ndarray, centric: np.ndarray
) -> BijvoetPairs:
    """The Bijvoet pairs of acentric observations: ΔI, σ(ΔI) and the count of each mate."""
    sel = ~centric
    if not np.any(sel):
        z = np.zeros(0)
        return BijvoetPairs(np.zeros((0, 3), int), z, z, z.astype(int), z.astype(int))
    keys = np.column_stack([hkl[sel], sign[sel]])
    group, n_groups = _group_ids(keys)
    mean, sig, count = _weighted_means(group, n_groups, i[sel], sigma[sel])
    first = np.zeros(n_groups, dtype=int)
    first[group[::-1]] = np.arange(len(group))[::-1]
    gkeys = keys[first]
    # pair I(+) with I(−) of the same hkl: groups are sorted by (h, k, l, sign)
    plus = gkeys[:, 3] > 0
    minus_idx = np.flatnonzero(~plus)
    plus_idx = np.flatnonzero(plus)
    # within a sorted unique array the (hkl, -1) entry immediately precedes (hkl, +1)
    cand = plus_idx[plus_idx > 0]
    prev = cand - 1
    ok = np.isin(prev, minus_idx) & np.all(gkeys[prev, :3] == gkeys[cand, :3], axis=1)
    p, m = cand[ok], prev[ok]
    delta = mean[p] - mean[m]
    sdelta = np.sqrt(sig[p] ** 2 + sig[m] ** 2)
    return BijvoetPairs(gkeys[p, :3], delta, sdelta, count[p], count[m])


def _cc_ano(
    hkl: np.ndarray, sign: np.ndarray, i: np.ndarray, sigma: np.ndarray, centric: np.ndarray
) -> tuple[float, np.ndarray]:
    """Half-dataset anomalous correlation, and the hkl of the pairs it used."""
    rng = np.random.default_rng(20240611)
    half = rng.integers(0, 2, size=len(i)).astype(bool)
    parts = []
    for mask in (half, ~half):
        pairs = _anomalous_pairs(hkl[mask], sign[mask], i[mask], sigma[mask], centric[mask])
        parts.append((pairs.hkl, pairs.delta))
    (h1, d1), (h2, d2) = parts
    if len(h1) == 0 or len(h2) == 0:
        return math.nan, np.zeros((0, 3), int)
    k1 = {tuple(x): n for n, x in enumerate(h1.tolist())}
    pairs = [(k1[tuple(x)], n) for n, x in enumerate(h2.tolist()) if tuple(x) in k1]
    if len(pairs) < 3:
        return math.nan, np.zeros((0, 3), int)
    a = np.array([d1[p] for p, _ in pairs])
    b = np.array([d2[q] for _, q in pairs])
    if np.std(a) == 0 or np.std(b) == 0:
        return math.nan, h2[[q for _, q in pairs]]
    return float(np.corrcoef(a, b)[0, 1]), h2[[q for _, q in pairs]]


def r_value(r: float) -> float:
    """An R factor (Rmerge, Rmeas, Rpim) as a fraction, or NaN where it is undefined.

    The numerator Σ|Iᵢ − Ī| is never negative, so a negative (or infinite) R
    means ΣĪ ≤ 0: a shell of noise, where an R factor says nothing.
    """
    r = float(r)
    return r if math.isfinite(r) and r >= 0 else math.nan


def _shell_row(
    obs: Observations,
    mask: np.ndarray,
    possible: int,
    possible_acentric: int,
    d_max: float,
    d_min: float,
    gemmi_stats: gemmi.MergingStats | None,
    sigma_ano: np.ndarray | None = None,
) -> ShellStats:
    """Statistics of the observations selected by ``mask`` (one shell or all);
    ``possible`` / ``possible_acentric``: the reflections (acentric ones) the shell can hold;
    ``sigma_ano``: σ of every observation for SigAno and the slope (None: ``obs.sigma``)."""
    hkl, sign, i, sigma = obs.hkl[mask], obs.sign[mask], obs.i[mask], obs.sigma[mask]
    row = ShellStats(d_max=float(d_max), d_min=float(d_min), n_possible=int(possible))
    row.n_obs = int(len(i))
    if row.n_obs == 0:
        row.anom_completeness = 0.0 if possible_acentric else math.nan
        return row
    group, n_unique = _group_ids(hkl)
    mean, sig, _ = _weighted_means(group, n_unique, i, sigma)
    row.n_unique = n_unique
    row.completeness = n_unique / possible if possible else math.nan
    row.multiplicity = row.n_obs / n_unique
    row.i_over_sigma = float(np.mean(mean / sig))
    if gemmi_stats is not None and gemmi_stats.stats_refl > 0:
        row.r_merge = r_value(gemmi_stats.r_merge())
        row.r_meas = r_value(gemmi_stats.r_meas())
        row.r_pim = r_value(gemmi_stats.r_pim())
        row.cc_half = float(gemmi_stats.cc_half())
    centric = obs.space_group.operations().centric_flag_array(hkl)
    pairs = _anomalous_pairs(hkl, sign, i, sigma, centric)
    row.n_ano = int(len(pairs.delta))
    if row.n_ano:
        # σ(ΔI) for SigAno and the slope from the calibrated σ (merging_stats), if given
        z = pairs.delta / pairs.sigma
        if sigma_ano is not None:
            z = pairs.delta / _anomalous_pairs(hkl, sign, i, sigma_ano[mask], centric).sigma
        row.sig_ano = float(np.mean(np.abs(z)))
        row.anom_multiplicity = float((pairs.n_plus.sum() + pairs.n_minus.sum()) / (2 * row.n_ano))
        row.anom_slope = normal_probability_slope(z)
    row.anom_completeness = row.n_ano / possible_acentric if possible_acentric else math.nan
    row.cc_ano, used = _cc_ano(hkl, sign, i, sigma, centric)
    row.n_cc_ano = int(len(used))
    return row


def _calibrated_by_shell(obs: Observations, bins: np.ndarray, n_bins: int) -> np.ndarray:
    """σ of every observation calibrated on the repeats of its own resolution shell, within
    one reflection and one Friedel sign (:func:`mxflow.stats.anomalous.sigma_factors`)."""
    out = obs.sigma.copy()
    for b in range(n_bins):
        m = bins == b
        if m.any():
            hand, _ = _group_ids(np.column_stack([obs.hkl[m], obs.sign[m]]))
            i, sigma = obs.i[m], obs.sigma[m]
            out[m] = calibrated_sigma(hand, i, sigma, sigma_factors(hand, i, sigma))
    return out


def merging_stats(
    obs: Observations, n_bins: int = 10, calibrate_sigma: bool = True
) -> MergingStats:
    """Per-shell and overall statistics of unmerged observations (see module docstring;
    ``calibrate_sigma`` False: SigAno and the slope with the σ as written)."""
    inv_d2 = obs.cell.calculate_1_d2_array(obs.hkl.astype(np.int32))
    n_bins = max(1, min(n_bins, len(np.unique(obs.hkl, axis=0)) // 20 or 1))
    binner = gemmi.Binner()
    binner.setup_from_1_d2(n_bins, gemmi.Binner.Method.Dstar3, inv_d2, obs.cell)
    bins = binner.get_bins_from_1_d2(inv_d2)
    d_all_min = float(1 / math.sqrt(inv_d2.max()))
    d_all_max = float(1 / math.sqrt(inv_d2.min()))
    # possible reflections over the data's resolution range, binned the same way
    # (a relative margin of 1e-9 keeps reflections lying exactly on the limits)
    possible_hkl = gemmi.make_miller_array(
        obs.cell, obs.space_group, d_all_min * (1 - 1e-9), d_all_max * (1 + 1e-9)
    )
    possible_bins = binner.get_bins(possible_hkl)
    n_possible = np.bincount(possible_bins, minlength=binner.size)
    possible_acentric = ~np.asarray(
        obs.space_group.operations().centric_flag_array(possible_hkl), bool
    )
    n_possible_acentric = np.bincount(possible_bins[possible_acentric], minlength=binner.size)

    mean_data = obs.intensities.clone()
    mean_data.prepare_for_merging(gemmi.DataType.Mean)
    mean_data.sort()
    per_shell = mean_data.calculate_merging_stats(binner)
    overall_g = mean_data.calculate_merging_stats(None)[0]

    sigma_ano = _calibrated_by_shell(obs, bins, binner.size) if calibrate_sigma else None
    shells = []
    for b in range(binner.size):
        d_max = d_all_max if b == 0 else binner.dmax_of_bin(b)
        d_min = d_all_min if b == binner.size - 1 else binner.dmin_of_bin(b)
        shells.append(
            _shell_row(
                obs,
                bins == b,
                int(n_possible[b]),
                int(n_possible_acentric[b]),
                d_max,
                d_min,
                per_shell[b],
                sigma_ano,
            )
        )
    overall = _shell_row(
        obs,
        np.ones(len(obs.i), bool),
        int(len(possible_hkl)),
        int(np.count_nonzero(possible_acentric)),
        d_all_max,
        d_all_min,
        overall_g,
        sigma_ano,
    )
    cell = obs.cell
    return MergingStats(
        shells=shells,
        overall=overall,
        space_group=obs.space_group.xhm(),
        unit_cell=(cell.a, cell.b, cell.c, cell.alpha, cell.beta, cell.gamma),
        anomalous=True,
    )


def stats_from_mtz(
    path: str | Path,
    n_bins: int = 10,
    d_min: float | None = None,
    d_max: float | None = None,
    calibrate_sigma: bool = True,
) -> MergingStats:
    """Merging statistics of a scaled unmerged MTZ (d limits in Å, optional)."""
    obs = read_unmerged_mtz(path, d_min=d_min, d_max=d_max)
    return merging_stats(obs, n_bins=n_bins, calibrate_sigma=calibrate_sigma)


def stats_to_json(stats: MergingStats) -> dict[str, Any]:
    """Plain-JSON form: shells, overall, inner, outer, space group, cell."""
    d = to_dict(stats)
    d["inner"] = to_dict(stats.inner)
    d["outer"] = to_dict(stats.outer)
    return d


def _fmt(v: float, spec: str, width: int) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-".rjust(width)
    return format(v, spec).rjust(width)


def format_table(stats: MergingStats) -> str:
    """The CORRECT.LP-style text table (percentages for completeness, anomalous
    completeness and R values; ACmpl / AMult / ASlope: anomalous completeness,
    multiplicity and normal-probability slope)."""
    head = (
        f"{'d_max':>6} {'d_min':>6} {'N_obs':>8} {'N_uniq':>7} {'N_poss':>7} {'Compl%':>7} "
        f"{'Mult':>5} {'I/sig':>6} {'Rmeas%':>7} {'CC1/2':>6} {'CCano':>6} {'SigAno':>6} "
        f"{'ACmpl%':>7} {'AMult':>5} {'ASlope':>6}"
    )

    def line(label: str, s: ShellStats) -> str:
        return (
            f"{_fmt(s.d_max, '.2f', 6)} {_fmt(s.d_min, '.2f', 6)} {s.n_obs:>8d} {s.n_unique:>7d} "
            f"{s.n_possible:>7d} {_fmt(100 * s.completeness, '.1f', 7)} "
            f"{_fmt(s.multiplicity, '.1f', 5)} {_fmt(s.i_over_sigma, '.1f', 6)} "
            f"{_fmt(100 * r_value(s.r_meas), '.1f', 7)} {_fmt(s.cc_half, '.3f', 6)} "
            f"{_fmt(s.cc_ano, '.3f', 6)} {_fmt(s.sig_ano, '.2f', 6)} "
            f"{_fmt(100 * s.anom_completeness, '.1f', 7)} {_fmt(s.anom_multiplicity, '.1f', 5)} "
            f"{_fmt(s.anom_slope, '.2f', 6)}{label}"
        )

    cell = " ".join(f"{x:.2f}" for x in stats.unit_cell) if stats.unit_cell else "-"
    out = [f"Space group {stats.space_group}   cell {cell}", head]
    out += [line("", s) for s in stats.shells]
    out.append("-" * len(head))
    out.append(line("  overall", stats.overall))
    out.append(line("  inner", stats.inner))
    out.append(line("  outer", stats.outer))
    return "\n".join(out)
