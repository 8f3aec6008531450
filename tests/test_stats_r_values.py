"""R factors of shells without signal or without repeated measurements: NaN ("-" in the
table), never negative.  stats_fullres.txt printed Rmeas −600.9 % in such shells."""

from __future__ import annotations

import math

import gemmi
import numpy as np
import pytest

from mxflow.model import MergingStats, ShellStats
from mxflow.stats.merging import format_table, r_value, stats_from_mtz
from stats_synthetic import asu_hkl, write_unmerged_mtz

CELL = (50.0, 60.0, 70.0, 90.0, 90.0, 90.0)
SIGNAL_D = 3.6  # Å: strong reflections below this resolution, measured twice
NOISE_D = 3.3  # Å: between NOISE_D and SIGNAL_D noise about a slightly negative mean, twice
# beyond NOISE_D: noise measured once only


def synthetic_mtz(path):
    h = asu_hkl(3.0, CELL)
    d = gemmi.UnitCell(*CELL).calculate_d_array(h)
    twice = d >= NOISE_D
    mean = np.where(d >= SIGNAL_D, 1000.0, -3.0)
    rng = np.random.default_rng(5)
    hkl = np.concatenate([h[twice], h[twice], h[~twice]])
    isym = np.concatenate([np.ones(twice.sum()), np.full(twice.sum(), 2), np.ones((~twice).sum())])
    base = np.concatenate([mean[twice], mean[twice], mean[~twice]])
    intensity = base + rng.normal(0, 20.0, len(base))
    return write_unmerged_mtz(path, hkl, isym, intensity, np.full(len(base), 20.0), CELL)


def test_noise_and_single_measurement_shells_have_no_r_values(tmp_path):
    s = stats_from_mtz(synthetic_mtz(tmp_path / "weak.mtz"), n_bins=8)
    signal = [x for x in s.shells if x.d_min >= SIGNAL_D]
    noise = [x for x in s.shells if x.d_max <= SIGNAL_D and x.d_min >= NOISE_D]
    single = [x for x in s.shells if x.d_max <= NOISE_D]
    assert signal and noise and single
    for x in signal:
        assert 0 < x.r_merge < x.r_meas < 0.1 and 0 < x.r_pim < x.r_meas
    for x in noise + single:
        # a noise shell's ΣĪ is negative: its Rmeas came out as a large negative percentage
        assert math.isnan(x.r_merge) and math.isnan(x.r_meas) and math.isnan(x.r_pim), x
    assert all(x.multiplicity == pytest.approx(1.0) for x in single)
    assert all(not (x.r_meas < 0) for x in [*s.shells, s.overall])
    assert 0 < s.overall.r_meas < 1

    table = format_table(s).splitlines()
    rmeas_col = table[1].split().index("Rmeas%")
    rows = [line.split() for line in table[2 : 2 + len(s.shells)]]
    shown = {id(x): cells[rmeas_col] for x, cells in zip(s.shells, rows, strict=True)}
    assert all(float(shown[id(x)]) > 0 for x in signal)
    assert all(shown[id(x)] == "-" for x in noise + single)
    assert all(v == "-" or float(v) >= 0 for v in shown.values())


def test_a_recorded_negative_r_is_printed_as_a_dash():
    """Statistics written before the fix (stats.json) still print no negative Rmeas."""
    shell = ShellStats(3.2, 3.0, n_obs=10, n_unique=5, n_possible=5, completeness=1.0)
    shell.multiplicity, shell.r_meas = 2.0, -6.009
    line = format_table(MergingStats.one_shell(shell)).splitlines()[2]
    assert "-600.9" not in line and line.split()[8] == "-"
    assert math.isnan(r_value(-6.009)) and math.isnan(r_value(math.inf))
    assert r_value(0.0) == 0.0 and r_value(12.5) == 12.5
