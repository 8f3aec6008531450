"""mxflow.stats: merging statistics on synthetic MTZs with known answers."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from mxflow.errors import BadInputError
from mxflow.stats.merging import format_table, stats_from_mtz, stats_to_json
from stats_synthetic import asu_hkl, write_unmerged_mtz

D_MIN = 5.05  # Å; no reflection of the test cell lies exactly on this limit


def pairs_mtz(tmp_path, keep_every=1, delta=10.0, sigma=5.0):
    """Each reflection measured twice, as I+δ (ISYM 1) and I−δ (ISYM 2)."""
    h = asu_hkl(D_MIN)[::keep_every]
    n = len(h)
    mean = np.linspace(100.0, 1000.0, n)
    hh = np.repeat(h, 2, axis=0)
    isym = np.tile([1, 2], n)
    intensity = np.repeat(mean, 2) + np.tile([delta, -delta], n)
    path = write_unmerged_mtz(tmp_path / "pairs.mtz", hh, isym, intensity, np.full(2 * n, sigma))
    return path, h, mean


def test_pairs_known_values(tmp_path):
    path, h, mean = pairs_mtz(tmp_path)
    s = stats_from_mtz(path, n_bins=4, calibrate_sigma=False)
    o = s.overall
    assert len(s.shells) == 4
    assert o.n_obs == 2 * len(h)
    assert o.n_unique == len(h)
    assert o.n_possible == len(h)
    assert o.completeness == pytest.approx(1.0)
    assert o.multiplicity == pytest.approx(2.0)
    # Ī = mean, σ(Ī) = 5/√2
    assert o.i_over_sigma == pytest.approx(np.mean(mean) / (5 / math.sqrt(2)), rel=1e-4)
    # Rmeas = Σ √2·2δ / Σ 2I = √2·δ / ⟨I⟩; Rmerge = δ / ⟨I⟩
    assert o.r_meas == pytest.approx(math.sqrt(2) * 10 / np.mean(mean), rel=1e-3)
    assert o.r_merge == pytest.approx(10 / np.mean(mean), rel=1e-3)
    # SigAno = 2δ / √(2σ²) for the acentric pairs; centric (h00, 0k0, 00l) excluded
    assert o.sig_ano == pytest.approx(20 / math.sqrt(50), rel=1e-4)
    # in P 21 21 21 the zones 0kl, h0l and hk0 are centric
    n_centric = int(np.sum(np.count_nonzero(h, axis=1) <= 2))
    assert 0 < o.n_ano == len(h) - n_centric
    # every acentric reflection has both mates, each measured once
    assert o.anom_completeness == pytest.approx(1.0) and o.anom_multiplicity == pytest.approx(1.0)
    assert all(x.anom_completeness == pytest.approx(1.0) for x in s.shells)
    assert sum(x.n_ano for x in s.shells) == o.n_ano
    # shells run low → high resolution and tile the range
    assert s.shells[0].d_max > s.shells[0].d_min > s.shells[-1].d_min
    assert sum(x.n_obs for x in s.shells) == o.n_obs
    assert sum(x.n_possible for x in s.shells) == o.n_possible
    assert s.inner is s.shells[0] and s.outer is s.shells[-1]
    # calibrated: the centric repeats disagree by 2δ = 2.83 σ, so σ is rescaled to that
    # scatter and the pairs' ΔI, of the same size, read as noise (SigAno = √(2/π))
    cal = stats_from_mtz(path, n_bins=4).overall
    assert cal.sig_ano == pytest.approx(math.sqrt(2 / math.pi), rel=1e-3)


def test_completeness_half(tmp_path):
    path, h, _ = pairs_mtz(tmp_path, keep_every=2)
    full = len(asu_hkl(D_MIN))
    s = stats_from_mtz(path, n_bins=3)
    assert s.overall.n_unique == len(h)
    # the data's own d range may be a hair narrower than D_MIN..∞
    assert s.overall.n_possible <= full
    assert s.overall.completeness == pytest.approx(len(h) / s.overall.n_possible)
    assert 0.45 < s.overall.completeness < 0.55


def test_cc_half_and_cc_ano_signal_vs_noise(tmp_path):
    rng = np.random.default_rng(1)
    h = asu_hkl(D_MIN)
    n = len(h)
    true_i = rng.uniform(100, 2000, n)
    anom = rng.normal(0, 60, n)  # true I+ − I−
    reps = 4
    hh = np.repeat(h, 2 * reps, axis=0)
    isym = np.tile([1, 2] * reps, n)
    sign = np.where(isym == 1, 0.5, -0.5)
    i_true = np.repeat(true_i, 2 * reps) + sign * np.repeat(anom, 2 * reps)
    sigma = np.full(len(hh), 10.0)
    noisy = i_true + rng.normal(0, 10.0, len(hh))
    path = write_unmerged_mtz(tmp_path / "sig.mtz", hh, isym, noisy, sigma)
    s = stats_from_mtz(path, n_bins=3)
    assert s.overall.cc_half > 0.99
    assert s.overall.cc_ano > 0.9
    assert s.overall.sig_ano > 3

    # pure noise around a constant: no correlation between half data sets
    flat = 500 + rng.normal(0, 10.0, len(hh))
    path = write_unmerged_mtz(tmp_path / "noise.mtz", hh, isym, flat, sigma)
    s = stats_from_mtz(path, n_bins=3)
    assert abs(s.overall.cc_half) < 0.2
    assert abs(s.overall.cc_ano) < 0.2
    assert s.overall.sig_ano < 1.5


def test_d_min_cut_and_json_and_table(tmp_path):
    path, _, _ = pairs_mtz(tmp_path)
    s = stats_from_mtz(path, n_bins=2, d_min=8.0)
    assert s.overall.d_min >= 8.0 - 1e-6
    d = stats_to_json(s)
    json.dumps(d, allow_nan=False)
    assert set(d) >= {"shells", "overall", "inner", "outer", "space_group", "unit_cell"}
    assert d["space_group"] == "P 21 21 21"
    text = format_table(s)
    assert "overall" in text and "CC1/2" in text and "Rmeas" in text
    assert text.splitlines()[1].split()[-3:] == ["ACmpl%", "AMult", "ASlope"]
    assert {"anom_completeness", "anom_multiplicity", "anom_slope"} <= set(d["overall"])


def test_bad_inputs(tmp_path):
    bogus = tmp_path / "not.mtz"
    bogus.write_text("hello")
    with pytest.raises(BadInputError, match="not.mtz"):
        stats_from_mtz(bogus)
    with pytest.raises(BadInputError, match="missing.mtz"):
        stats_from_mtz(tmp_path / "missing.mtz")
