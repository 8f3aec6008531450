"""Anomalous statistics (mxflow.stats.merging, mxflow.stats.anomalous) on synthetic data
whose Bijvoet differences are known: none (pure noise with correct σ), a true difference
that stops at a chosen resolution, and a small hand-built case counted by hand."""

from __future__ import annotations

import math

import gemmi
import numpy as np
import pytest

from anomalous_synthetic import bijvoet_mtz
from mxflow.model import HeavyAtom, MergingStats, ShellStats
from mxflow.stats.anomalous import (
    anomalous_resolution,
    anomalous_signal,
    normal_probability_slope,
    normal_quantiles,
    shells_with_signal,
)
from mxflow.stats.merging import format_table, stats_from_mtz
from stats_synthetic import asu_hkl, write_unmerged_mtz

N_BINS = 6
#: mean of |N(0, 1)|: XDS' SigAno of pure noise with correct σ
SIGANO_NOISE = math.sqrt(2 / math.pi)


@pytest.fixture(scope="module")
def noise(tmp_path_factory):
    """No anomalous difference; σ correct; 2–6 observations per Bijvoet mate."""
    path, truth = bijvoet_mtz(
        tmp_path_factory.mktemp("ano") / "noise.mtz", seed=11, min_obs=2, max_obs=6
    )
    return stats_from_mtz(path, n_bins=N_BINS), truth


@pytest.fixture(scope="module")
def signal(tmp_path_factory, noise):
    """The same reflections with a true ΔI (σ 150 on ⟨I⟩ ≈ 1000) to the end of the third
    shell of the noise data, none beyond."""
    stats, _ = noise
    d_stop = stats.shells[2].d_min
    path, truth = bijvoet_mtz(
        tmp_path_factory.mktemp("ano") / "signal.mtz",
        seed=12,
        min_obs=2,
        max_obs=6,
        delta_sd=150.0,
        d_signal=d_stop * (1 - 1e-9),
    )
    return stats_from_mtz(path, n_bins=N_BINS), truth, d_stop


def test_noise_sigano_ccano_slope(noise):
    stats, truth = noise
    print(format_table(stats))
    assert len(stats.shells) == N_BINS
    n_acentric = int(np.count_nonzero(~truth.centric))
    assert stats.overall.n_ano == n_acentric
    for s in stats.shells:
        assert s.n_ano > 1500  # enough pairs for the tolerances below (σ of SigAno ≈ 0.015)
        assert s.sig_ano == pytest.approx(SIGANO_NOISE, abs=0.05)
        assert abs(s.cc_ano) < 0.1
        assert s.anom_slope == pytest.approx(1.0, abs=0.1)
        assert s.anom_completeness == pytest.approx(1.0)
    o = stats.overall
    assert o.sig_ano == pytest.approx(SIGANO_NOISE, abs=0.02)
    assert abs(o.cc_ano) < 0.05
    assert o.anom_slope == pytest.approx(1.0, abs=0.03)
    # 2–6 observations per mate, uniformly: 4 on average
    assert o.anom_multiplicity == pytest.approx(4.0, abs=0.1)
    sig = anomalous_signal(stats)
    assert sig.d_ano is None and "inner shell" in sig.note


def test_signal_ccano_slope_and_d_ano(signal):
    stats, truth, d_stop = signal
    print(format_table(stats))
    inner, beyond = stats.shells[:3], stats.shells[3:]
    for s in inner:
        assert s.cc_ano > 0.6
        assert s.sig_ano > 1.5
        assert s.anom_slope > 1.5
    for s in beyond:
        assert abs(s.cc_ano) < 0.1
        assert s.sig_ano == pytest.approx(SIGANO_NOISE, abs=0.05)
        assert s.anom_slope == pytest.approx(1.0, abs=0.1)
    assert stats.overall.anom_slope > 1.2
    sig = anomalous_signal(stats)
    assert sig.d_ano == pytest.approx(d_stop)
    assert f"{d_stop:.2f} Å" in sig.note
    assert sig.cc_ano == stats.overall.cc_ano and sig.sig_ano == stats.overall.sig_ano
    assert sig.anom_slope == stats.overall.anom_slope
    # a stricter target than the signal reaches: no anomalous resolution
    assert anomalous_signal(stats, target=0.99).d_ano is None


def test_completeness_and_multiplicity_by_hand(tmp_path):
    """P 21 21 21: acentric means all three indices non-zero.  Acentric reflections are
    measured in turn with both mates (n₊ = 1, 2, 3 by turns, n₋ = 2), I(+) only, or not at
    all; centric ones once."""
    cell = (10.0, 11.0, 12.0, 90.0, 90.0, 90.0)
    h = asu_hkl(2.5, cell)
    acentric = np.count_nonzero(h, axis=1) == 3
    rows, isym = [], []
    n_both = n_mates_obs = 0
    for k, idx in enumerate(np.flatnonzero(acentric)):
        kind = k % 3
        if kind == 0:
            n_plus = 1 + (k // 3) % 3
            rows += [h[idx]] * (n_plus + 2)
            isym += [1] * n_plus + [2] * 2
            n_both += 1
            n_mates_obs += n_plus + 2
        elif kind == 1:
            rows += [h[idx]] * 2
            isym += [1, 1]
    for idx in np.flatnonzero(~acentric):
        rows.append(h[idx])
        isym.append(1)
    hh = np.array(rows)
    n = len(hh)
    rng = np.random.default_rng(3)
    path = write_unmerged_mtz(
        tmp_path / "hand.mtz",
        hh,
        np.array(isym),
        rng.uniform(100, 200, n),
        rng.uniform(5, 10, n),
        cell=cell,
    )
    s = stats_from_mtz(path, n_bins=1)
    o = s.overall
    # the possible reflections span the measured d range only
    uc = gemmi.UnitCell(*cell)
    d_all = 1 / np.sqrt(uc.calculate_1_d2_array(h.astype(np.int32)))
    d_meas = 1 / np.sqrt(uc.calculate_1_d2_array(hh.astype(np.int32)))
    in_range = (d_all >= d_meas.min() * (1 - 1e-9)) & (d_all <= d_meas.max() * (1 + 1e-9))
    n_acentric = int(np.count_nonzero(acentric & in_range))
    assert n_both >= 8 and n_acentric >= 3 * n_both - 2
    assert o.n_ano == n_both
    assert o.anom_completeness == pytest.approx(n_both / n_acentric, rel=1e-12)
    assert o.anom_multiplicity == pytest.approx(n_mates_obs / (2 * n_both), rel=1e-12)
    assert len(s.shells) == 1 and s.shells[0].anom_completeness == o.anom_completeness
    table = format_table(s).splitlines()
    col = table[1].split().index("ACmpl%")
    assert table[2].split()[col] == f"{100 * n_both / n_acentric:.1f}"


def test_no_pairs_gives_nan_not_zero(tmp_path):
    """I(+) only: no Bijvoet pair, anomalous completeness 0, the other figures undefined."""
    h = asu_hkl(6.0)
    path = write_unmerged_mtz(
        tmp_path / "plus.mtz", h, np.ones(len(h)), np.full(len(h), 100.0), np.full(len(h), 5.0)
    )
    o = stats_from_mtz(path, n_bins=1).overall
    assert o.n_ano == 0 and o.anom_completeness == 0.0
    assert math.isnan(o.anom_multiplicity) and math.isnan(o.anom_slope)
    assert math.isnan(o.sig_ano)


# ---------------------------------------------------------------- the pure functions


def test_normal_quantiles():
    q = normal_quantiles(7)
    assert np.all(np.diff(q) > 0) and q[3] == pytest.approx(0.0, abs=1e-12)
    assert q == pytest.approx(-q[::-1])
    assert len(normal_quantiles(0)) == 0


def test_normal_probability_slope_is_the_width():
    rng = np.random.default_rng(5)
    assert normal_probability_slope(rng.normal(0, 1, 20000)) == pytest.approx(1.0, abs=0.02)
    assert normal_probability_slope(rng.normal(3, 2.5, 20000)) == pytest.approx(2.5, abs=0.05)
    # the central part only: wild tails hardly move it (a straight fit over all would)
    z = rng.normal(0, 1, 20000)
    z[:100] = 50.0 * np.sign(z[:100])
    assert normal_probability_slope(z) == pytest.approx(1.0, abs=0.03)
    assert normal_probability_slope(z, q_max=10) > 1.5
    # non-finite values are ignored; too few points give NaN
    assert normal_probability_slope(np.r_[rng.normal(0, 1, 5000), np.nan]) == pytest.approx(
        1.0, abs=0.05
    )
    assert math.isnan(normal_probability_slope(np.array([0.1, -0.3, 1.0])))
    assert math.isnan(normal_probability_slope(np.array([])))


def test_anomalous_resolution_counts_from_the_inner_shell():
    d = np.array([5.0, 4.0, 3.0, 2.5, 2.0])
    assert anomalous_resolution(d, np.array([0.8, 0.5, 0.2, 0.1, 0.3])) == 3.0
    assert anomalous_resolution(d, np.array([0.8, 0.5, 0.15, 0.1, 0.3])) == 3.0  # ≥ target
    assert anomalous_resolution(d, np.array([0.8, 0.5, 0.2, 0.2, 0.2])) == 2.0
    assert anomalous_resolution(d, np.array([0.8, math.nan, 0.9, 0.9, 0.9])) == 5.0
    assert anomalous_resolution(d, np.array([0.1, 0.9, 0.9, 0.9, 0.9])) is None
    assert anomalous_resolution(d, np.full(5, math.nan)) is None
    assert anomalous_resolution(d, np.array([0.8, 0.5, 0.2, 0.1, 0.3]), target=0.6) == 5.0
    assert anomalous_resolution(np.array([]), np.array([])) is None
    assert shells_with_signal(np.array([0.3, 0.2, 0.1])) == 2


def _stats(cc: list[float]) -> MergingStats:
    d = [6.0 - k for k in range(len(cc) + 1)]
    shells = [ShellStats(d_max=d[k], d_min=d[k + 1], cc_ano=c, n_ano=100) for k, c in enumerate(cc)]
    overall = ShellStats(
        d_max=d[0],
        d_min=d[-1],
        cc_ano=0.42,
        sig_ano=1.3,
        n_ano=500,
        anom_completeness=0.93,
        anom_multiplicity=3.1,
        anom_slope=1.4,
    )
    return MergingStats(shells, overall, anomalous=True)


def test_anomalous_signal_edge_cases():
    ha = HeavyAtom("Zn", 9700.0, -6.0, 3.9, "K", 9659.0, n_sites=2)
    s = anomalous_signal(_stats([0.7, 0.4, 0.1, 0.5]), heavy_atom=ha)
    assert s.d_ano == 4.0 and s.heavy_atom is ha and s.cc_ano_target == 0.15
    assert (s.cc_ano, s.sig_ano, s.anom_completeness, s.anom_multiplicity, s.anom_slope) == (
        0.42,
        1.3,
        0.93,
        3.1,
        1.4,
    )
    assert "to 4.00 Å" in s.note and "0.100" in s.note
    # every shell: the data's limit
    s = anomalous_signal(_stats([0.7, 0.4, 0.3]))
    assert s.d_ano == 3.0 and "every shell" in s.note and s.heavy_atom is None
    # the inner shell already below the target
    s = anomalous_signal(_stats([0.05, 0.4, 0.3]))
    assert s.d_ano is None and "inner shell" in s.note and "0.050" in s.note
    # NaN CCano (too few pairs) ends the count, and says so
    s = anomalous_signal(_stats([0.7, math.nan, 0.9]))
    assert s.d_ano == 5.0 and "too few Bijvoet pairs" in s.note
    s = anomalous_signal(_stats([math.nan, 0.9]))
    assert s.d_ano is None and "could not be computed" in s.note
    # another target
    s = anomalous_signal(_stats([0.7, 0.4, 0.1]), target=0.5)
    assert s.d_ano == 5.0 and s.cc_ano_target == 0.5 and "0.5" in s.note


def test_sigma_factors_recover_a_miscalibrated_error_model():
    """σ written without the error that grows with I (σ² = I + (0.05 I)² is the truth,
    up to 2.5× the written σ for the strongest) and 1.3× too large for weak reflections,
    as DIALS's error model leaves small wedges: the factors undo it; right σ give ≈ 1."""
    from mxflow.stats.anomalous import calibrated_sigma, sigma_factors

    rng = np.random.default_rng(5)
    n_groups, per = 4000, 4
    true = np.repeat(rng.exponential(200.0, n_groups), per)
    group = np.repeat(np.arange(n_groups), per)
    sd = np.sqrt(true + 25.0 + (0.05 * true) ** 2)  # real error
    i = true + rng.normal(0, 1, len(true)) * sd
    written = np.sqrt(true + 25.0) / np.where(true < 30, 1.3, 1.0)
    k = sigma_factors(group, i, written)
    fixed = calibrated_sigma(group, i, written, k)
    strong, weak = true > 600, true < 30
    assert np.median(fixed[strong] / sd[strong]) == pytest.approx(1.0, abs=0.15)
    assert np.median(fixed[weak] / sd[weak]) == pytest.approx(1.0, abs=0.15)
    assert np.allclose(sigma_factors(group, i, sd), 1.0, atol=0.15)
