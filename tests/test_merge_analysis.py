"""Tukey cuts, σ-τ CC½, ΔCC½ and the tanh resolution fit on synthetic numbers."""

from __future__ import annotations

import math

import gemmi
import numpy as np
import pytest

from mxflow.merge import analysis
from mxflow.stats import resolution


def test_tukey_outliers():
    v = [1.0, 1.1, 0.9, 1.05, 0.95, 1.0, -3.0, 6.0]
    assert analysis.tukey_outliers(v).tolist() == [False] * 6 + [True, False]
    assert analysis.tukey_outliers(v, side="both").tolist() == [False] * 6 + [True, True]
    assert not analysis.tukey_outliers([1.0, -100.0, 2.0]).any()  # too few values


def _observations(rng, n_refl=2000, mult=4, noise=0.3, n_groups=8):
    """Random unique reflections with s² in (0, 0.25] and noisy repeated measurements."""
    s2u = rng.uniform(0.001, 0.25, n_refl)
    truth = rng.exponential(1.0, n_refl) * np.exp(-10 * s2u)
    idx = np.repeat(np.arange(n_refl), mult)
    obs = truth[idx] + rng.normal(0, noise, len(idx)) * np.exp(-10 * s2u[idx]) ** 0.3 * 0.2
    groups = rng.integers(0, n_groups, len(idx))
    return idx, obs, s2u[idx], groups, truth


def test_cc_half_sigma_tau_matches_random_half_split():
    rng = np.random.default_rng(0)
    idx, obs, _, _, _ = _observations(rng, mult=6)
    st = resolution.cc_half_sigma_tau(idx, obs)
    # classical random half-split estimate
    order = rng.permutation(len(idx))
    half = np.zeros(len(idx), dtype=bool)
    half[order[: len(idx) // 2]] = True
    m1 = np.bincount(idx[half], obs[half]) / np.maximum(np.bincount(idx[half]), 1)
    m2 = np.bincount(idx[~half], obs[~half]) / np.maximum(np.bincount(idx[~half]), 1)
    both = (np.bincount(idx[half]) > 0) & (np.bincount(idx[~half], minlength=len(m1)) > 0)
    split = np.corrcoef(m1[both], m2[both])[0, 1]
    assert 0.3 < st < 0.999
    assert st == pytest.approx(split, abs=0.05)
    assert math.isnan(resolution.cc_half_sigma_tau(np.array([1, 2]), np.array([1.0, 2.0])))


@pytest.mark.parametrize("n_groups", [3, 40, 400])
def test_cc_half_without_each_is_cc_half_of_the_rest(n_groups):
    """The one-pass CC½ without each group is what mean_cc_half gives on the data
    without it: many groups, groups of one observation, a group alone in a shell."""
    rng = np.random.default_rng(n_groups)
    idx, obs, s2, groups, _ = _observations(rng, n_refl=800, mult=3, n_groups=n_groups)
    outer = s2 > np.quantile(s2, 0.97)
    groups = np.where(outer, n_groups + 7, groups)  # one group owns the outermost shell part
    full, without = analysis.cc_half_without_each(idx, obs, s2, groups)
    bins = resolution.resolution_bins(s2, idx, 10)
    assert full == analysis.mean_cc_half(idx, obs, bins, 10)
    assert sorted(without) == sorted(np.unique(groups).tolist())
    for g, value in without.items():
        keep = groups != g
        want = analysis.mean_cc_half(idx[keep], obs[keep], bins[keep], 10)
        assert value == pytest.approx(want, abs=1e-12), g


def test_delta_cc_half_flags_the_bad_group():
    rng = np.random.default_rng(1)
    idx, obs, s2, groups, truth = _observations(rng, noise=0.1)
    bad = groups == 3
    obs = obs.copy()
    obs[bad] = rng.exponential(1.0, bad.sum()) * np.exp(-10 * s2[bad])  # unrelated intensities
    d = analysis.delta_cc_half(idx, obs, s2, groups)
    worst = min(d, key=d.get)
    assert worst == 3 and d[3] < 0
    flags = analysis.tukey_outliers([d[g] for g in sorted(d)])
    assert flags.tolist() == [g == 3 for g in sorted(d)]


def test_tanh_fit_recovers_resolution():
    s2 = np.linspace(0.02, 0.4, 15)
    cc = resolution.tanh_model(s2, 0.25, 0.05)
    d0, r = resolution.fit_cc_half_tanh(s2, cc + np.random.default_rng(2).normal(0, 0.01, len(s2)))
    assert d0 == pytest.approx(0.25, abs=0.01)
    d = resolution.d_min_from_fit(d0, r, 0.5)
    assert d == pytest.approx(1 / math.sqrt(0.25), abs=0.05)
    # CC½ 0.3 reaches further out than 0.5
    assert resolution.d_min_from_fit(d0, r, 0.3) < d
    assert resolution.fit_cc_half_tanh([0.1, 0.2], [0.9, 0.8]) is None


def test_estimate_d_min_on_observations():
    rng = np.random.default_rng(3)
    n = 6000
    s2u = rng.uniform(0.005, 0.3, n)
    signal = rng.exponential(1.0, n) * np.exp(-20 * s2u)
    idx = np.repeat(np.arange(n), 4)
    obs = signal[idx] + rng.normal(0, 0.02, len(idx))
    fit = resolution.estimate_d_min(idx, obs, s2u[idx], target=0.5)
    # where ⟨I⟩ ~ exp(-20 s²) drops to the noise level
    assert fit.d_min is not None and 1.9 < fit.d_min < 3.5, fit
    assert resolution.estimate_d_min(idx, obs, s2u[idx], target=0.3).d_min <= fit.d_min


CELL_P1 = (40, 50, 60, 90, 90, 90)


def _p1_crystal(rng, n_refl):
    """Random unique reflections of a 40 × 50 × 60 Å cell: (hkl, s² in Å⁻², true I)."""
    hkl_u = rng.integers(-15, 16, size=(n_refl, 3))
    s2u = 1.0 / np.asarray(gemmi.UnitCell(*CELL_P1).calculate_d_array(hkl_u)) ** 2
    truth = rng.exponential(1.0, n_refl) * np.exp(-5 * s2u)
    return hkl_u, s2u, truth


def _as_observations(hkl_u, s2u, rows):
    """Observations (P 1, σ = 0.1) from rows of (unique index, intensity, dataset, image)."""
    from mxflow.cluster.intensity import canonical_keys
    from mxflow.stats.observations import Observations

    p, v, ds, img = (np.array(x) for x in zip(*rows, strict=True))
    sg = gemmi.SpaceGroup("P 1")
    hkl = hkl_u[p]
    return Observations(
        hkl, v, np.full(len(v), 0.1), canonical_keys(hkl, sg), s2u[p],
        gemmi.UnitCell(*CELL_P1), sg, dataset=ds, image=img,
    )  # fmt: skip


def _tagged_observations(rng, bad_frames=(1, 11, 20), bad_dataset=5):
    """Six datasets of one P1 crystal: 0-3 have 30 images, 4-5 only 8 (one image group).

    Images ``bad_frames`` = (dataset, first, last) and the whole of ``bad_dataset``
    hold unrelated intensities.
    """
    n_refl = 3000
    hkl_u, s2u, truth = _p1_crystal(rng, n_refl)
    rows = []
    for ds, n_img in enumerate((30, 30, 30, 30, 8, 8)):
        for img in range(1, n_img + 1):
            pick = rng.choice(n_refl, 60, replace=False)
            value = truth[pick] * (1 + rng.normal(0, 0.1, len(pick)))
            garbage = ds == bad_dataset or (
                ds == bad_frames[0] and bad_frames[1] <= img <= bad_frames[2]
            )
            if garbage:
                value = rng.exponential(1.0, len(pick)) * np.exp(-5 * s2u[pick])
            rows += [(p, v, ds, img) for p, v in zip(pick, value, strict=True)]
    return _as_observations(hkl_u, s2u, rows)


def test_frame_rejection_leaves_single_group_wedges_to_dataset_rejection():
    from mxflow.merge.analysis import dataset_rejection, frame_rejection

    obs = _tagged_observations(np.random.default_rng(4))
    bad = frame_rejection(obs, group_size=10)
    # the bad image group of dataset 1 goes; the bad 8-image wedge (one group) is not judged here
    assert [(g.dataset, g.first, g.last) for g in bad] == [(1, 11, 20)]
    dropped = dataset_rejection(obs)
    assert list(dropped) == [5] and "bad_cc" in dropped[5]


def test_merge_output_folders_are_skipped_only_below_the_searched_directory():
    from pathlib import Path

    from mxflow.merge.inputs import _in_merge_output

    root = Path("/data/merge_tests/session1")  # a user's folder named merge_*: fine
    assert not _in_merge_output(root / "xtal_01" / "integrated.expt", root)
    assert _in_merge_output(root / "merge_cc_2.0S_s" / "cluster_0001" / "x.expt", root)
    assert not _in_merge_output(root / "merge_notes.expt", root)  # a file, not a folder


def _wedge_observations(rng, noisy=None, garbage=None):
    """Six 10-image wedges, each seeing its own window of reflections (neighbours
    overlap by half); ``noisy`` has 3× the noise, ``garbage`` random intensities."""
    n_refl = 4000
    hkl_u, s2u, truth = _p1_crystal(rng, n_refl)
    rows = []
    for ds in range(6):
        window = np.arange(ds * 600, ds * 600 + 1200) % n_refl
        for img in range(1, 11):
            pick = rng.choice(window, 150, replace=False)
            value = truth[pick] * (1 + rng.normal(0, 0.3 if ds == noisy else 0.1, len(pick)))
            if ds == garbage:
                value = rng.exponential(1.0, len(pick)) * np.exp(-5 * s2u[pick])
            rows += [(p, v, ds, img) for p, v in zip(pick, value, strict=True)]
    return _as_observations(hkl_u, s2u, rows)


@pytest.mark.parametrize("seed", [1, 2])
def test_dataset_rejection_keeps_weak_wedge_with_unique_reflections(seed):
    """A noisier wedge is a ΔCC½ outlier, but dropping it loses more unique
    reflections than CC½ gains (KAMO's CC½ × N_unique rule): it stays; a wedge of
    random intensities goes."""
    from mxflow.merge.analysis import dataset_rejection, delta_cc_half, tukey_fences

    rng = np.random.default_rng(seed)
    obs = _wedge_observations(rng, noisy=5)
    dcc = delta_cc_half(obs.keys, obs.i, obs.s2, obs.dataset)
    lo, _ = tukey_fences(list(dcc.values()))
    assert dcc[5] < lo and dcc[5] < -0.001  # the old rule alone would have dropped it
    assert dataset_rejection(obs) == {}
    bad = dataset_rejection(_wedge_observations(rng, garbage=5))
    assert list(bad) == [5] and "bad_cchalf" in bad[5] and "N_unique" in bad[5]


def test_wilson_b_is_dials_merges_when_its_log_has_one(tmp_path):
    from mxflow.merge.runs import wilson_b

    (tmp_path / "dials.merge.log").write_text(
        "Resolution                                  71.02    2.30\n"
        "Wilson B factor                              22.457\n"
        "Anomalous completeness                        0.0\n"
    )
    assert wilson_b(tmp_path) == (22.457, "dials.merge")
    # without one, mxflow's own fall-off, and the source says so
    rng = np.random.default_rng(8)
    mtz = gemmi.Mtz(with_base=True)
    mtz.spacegroup = gemmi.SpaceGroup("P 1")
    mtz.set_cell_for_all(gemmi.UnitCell(*CELL_P1))
    mtz.add_dataset("x")
    mtz.add_column("IMEAN", "J")
    hkl = np.array(gemmi.make_miller_array(mtz.cell, mtz.spacegroup, 2.0))
    s2 = 1 / np.asarray(mtz.cell.calculate_d_array(hkl)) ** 2
    mean = 1000 * np.exp(-30 * s2 / 2) * rng.exponential(1.0, len(hkl))  # B = 30 Å²
    mtz.set_data(np.column_stack([hkl, mean]).astype(np.float32))
    mtz.write_to_file(str(tmp_path / "merged.mtz"))
    (tmp_path / "dials.merge.log").write_text("no table here\n")
    b, source = wilson_b(tmp_path)
    assert source.startswith("mxflow fall-off") and 25 < b < 35
