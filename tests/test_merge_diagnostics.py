"""mxflow.merge.diagnostics: per-image and per-dataset diagnostics of a merged cluster.

The pure functions on small hand-computed cases and on simulated data with a
known answer (a decaying crystal, a dataset of noise); the entry point on the
final runs of a real merge (DIALS; ``real_merge`` fixture).
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import gemmi
import numpy as np
import pytest
from scipy.stats import spearmanr

from mxflow.engine import merge_steps
from mxflow.errors import MxflowError
from mxflow.merge import diagnostics as dg
from mxflow.model import (
    ClusterDiagnostics,
    ClusterResult,
    DatasetDiagnostics,
    ImageSeries,
    from_dict,
    to_dict,
)

CELL = gemmi.UnitCell(40.0, 50.0, 60.0, 90, 90, 90)
SG = gemmi.SpaceGroup("P 21 21 21")


# ---------------------------------------------------------------- hand-computed cases
def test_group_width_widens_sparse_datasets_to_multiples_of_the_group():
    assert dg.group_width(2000, 100, 10, min_obs=100) == 10  # 20 obs / image
    assert dg.group_width(1000, 100, 10, min_obs=100) == 10  # exactly 100 per group
    assert dg.group_width(999, 100, 10, min_obs=100) == 20  # a little short: doubled
    assert dg.group_width(300, 100, 10, min_obs=100) == 40
    assert dg.group_width(50, 100, 10, min_obs=100) == 100  # never wider than the scan
    assert dg.group_width(0, 100, 10, min_obs=100) == 100


def test_image_groups_count_from_the_scan_start():
    groups, g_ds, g_first = dg.image_groups(
        np.array([0, 0, 0, 1, 1, 1]),
        np.array([1, 10, 11, 5, 26, 16]),
        first=np.array([1, 5]),
        width=np.array([10, 10]),
    )
    assert g_ds.tolist() == [0, 0, 1, 1, 1]
    assert g_first.tolist() == [1, 11, 5, 15, 25]
    labels = np.unique(groups)
    assert [int(np.searchsorted(labels, g)) for g in groups] == [0, 0, 1, 2, 4, 3]


def test_r_merge_by_group_against_the_cluster_means():
    # reflection 1: 10 (group 0), 14 (group 1), mean 12; reflection 2: 4, 4, 4;
    # reflection 3 measured once (group 0): not counted
    keys = np.array([1, 1, 2, 2, 2, 3])
    i = np.array([10.0, 14.0, 4.0, 4.0, 4.0, 100.0])
    groups = np.array([0, 1, 0, 1, 1, 0])
    assert dg.r_merge_by_group(keys, i, groups) == pytest.approx([2 / 14, 2 / 22])


def test_i_over_sigma_by_group_is_the_mean_of_the_observations():
    got = dg.i_over_sigma_by_group(
        np.array([10.0, 30.0, 5.0]), np.array([1.0, 3.0, 5.0]), np.array([7, 7, 9])
    )
    assert got == pytest.approx([10.0, 1.0])


def test_cc_to_rest_by_group_matches_a_direct_computation():
    rng = np.random.default_rng(3)
    n_ref, n_obs = 60, 600
    true = rng.exponential(100, n_ref)
    keys = rng.integers(0, n_ref, n_obs)
    groups = rng.integers(0, 5, n_obs)
    i = true[keys] * (1 + 0.3 * rng.standard_normal(n_obs))
    got = dg.cc_to_rest_by_group(keys, i, groups)
    for n, g in enumerate(np.unique(groups)):
        xs, ys = [], []
        for k in np.unique(keys[groups == g]):
            inside = (keys == k) & (groups == g)
            outside = (keys == k) & (groups != g)
            if outside.any():
                xs.append(i[inside].mean())
                ys.append(i[outside].mean())
        assert got[n] == pytest.approx(np.corrcoef(xs, ys)[0, 1])
    # too few common reflections: no value
    assert np.isnan(dg.cc_to_rest_by_group(keys, i, groups, min_common=n_ref + 1)).all()


def test_completeness_curve_best_dataset_first():
    keys = np.array([1, 2, 3, 1, 2, 3, 4, 5, 6, 6])
    dataset = np.array([0, 0, 0, 1, 1, 1, 1, 1, 2, 2])
    order, alone, curve = dg.completeness_curve(keys, dataset, n_possible=10, n_datasets=4)
    assert order == [1, 0, 2, 3]  # dataset 3 has no observations: last
    assert alone == pytest.approx([30.0, 50.0, 10.0, 0.0])
    assert curve == pytest.approx([50.0, 50.0, 60.0, 60.0])


def test_possible_reflections_counts_what_the_statistics_count():
    hkl = gemmi.make_miller_array(CELL, SG, 3.03)  # (a limit on no reflection)
    d = np.asarray(CELL.calculate_d_array(hkl))
    assert dg.possible_reflections(CELL, SG, float(d.min()), float(d.max())) == len(hkl)
    # the limits are inclusive: the reflections lying on them count
    assert dg.possible_reflections(CELL, SG, float(d.min()), float(np.sort(d)[-2])) == len(hkl) - 1
    # no systematic absence among them (h00 with odd h in P 21 21 21)
    assert not np.asarray(SG.operations().systematic_absences(hkl)).any()


# ---------------------------------------------------------------- simulated data
def simulated(
    rng: np.random.Generator,
    n_datasets: int = 4,
    n_images: int = 100,
    d_min: float = 2.5,
    fraction: float = 0.5,
    noise=lambda image: 0.1 + 0 * image,
):
    """Observations of random wedges of one crystal form: each dataset measures a random
    ``fraction`` of the reflections once or twice, at random images 1..n_images, with a
    relative error ``noise(image)``."""
    hkl = np.asarray(gemmi.make_miller_array(CELL, SG, d_min))
    s2_ref = 1 / np.asarray(CELL.calculate_d_array(hkl)) ** 2
    true = rng.exponential(1000.0, len(hkl)) * np.exp(-20 * s2_ref / 2)  # B = 20 Å²
    rows = []
    for k in range(n_datasets):
        seen = np.flatnonzero(rng.random(len(hkl)) < fraction)
        seen = np.concatenate([seen, seen[rng.random(len(seen)) < 0.5]])
        image = rng.integers(1, n_images + 1, len(seen))
        rel = noise(image)
        i = true[seen] * (1 + rel * rng.standard_normal(len(seen)))
        sigma = rel * true[seen] + 1.0
        rows.append((seen, np.full(len(seen), k), image, i, sigma))
    seen, dataset, image, i, sigma = (np.concatenate(x) for x in zip(*rows, strict=True))
    return {
        "keys": seen,
        "s2": s2_ref[seen],
        "dataset": dataset,
        "image": image,
        "i": i,
        "sigma": sigma,
        "n_possible": len(hkl),
    }


def groups_of(obs, width: int = 10):
    n = obs["dataset"].max() + 1
    return dg.image_groups(
        obs["dataset"], obs["image"], np.ones(n, dtype=int), np.full(n, width, dtype=int)
    )


def test_decay_gives_falling_b_and_changing_scale():
    """dials.scale's g = k(image)·exp(B(image)·s²/2) with B falling by 0.1 Å² per image:
    the fitted B and scale of each image group follow it (through 3 % absorption-like
    scatter of g)."""
    rng = np.random.default_rng(5)
    obs = simulated(rng, n_datasets=1)
    image, s2 = obs["image"], obs["s2"]
    b_true, k_true = -0.1 * image, 1 + 0.004 * image
    g = k_true * np.exp(b_true * s2 / 2) * np.exp(0.03 * rng.standard_normal(len(image)))
    groups, _, first = groups_of(obs)
    scale, b = dg.scale_and_b(g, s2, groups)
    centre = first + 4.5
    assert np.isfinite(b).all() and len(b) == 10
    assert b == pytest.approx(-0.1 * centre, abs=0.4)
    assert scale == pytest.approx(1 + 0.004 * centre, rel=0.02)
    assert np.all(np.diff(b) < 0)  # the curve falls, group after group
    # no decay: B flat at zero within the scatter
    _, b0 = dg.scale_and_b(np.exp(0.03 * rng.standard_normal(len(image))), s2, groups)
    assert np.abs(b0).max() < 0.4
    # a group of 3 observations gets no fit
    few = np.where(np.arange(len(image)) < 3, -1, groups)
    k_few, b_few = dg.scale_and_b(g, s2, few)
    assert math.isnan(k_few[0]) and math.isnan(b_few[0]) and np.isfinite(b_few[1:]).all()


def test_growing_errors_show_in_rmerge_isigma_and_cc():
    """Errors growing along the scan (a dying crystal): Rmerge rises, I/σ and the CC
    with the rest of the cluster fall, image group after image group."""
    rng = np.random.default_rng(6)
    obs = simulated(rng, n_datasets=6, noise=lambda image: 0.05 + 0.01 * image)
    groups, g_ds, first = groups_of(obs)
    rm = dg.r_merge_by_group(obs["keys"], obs["i"], groups)
    isig = dg.i_over_sigma_by_group(obs["i"], obs["sigma"], groups)
    cc = dg.cc_to_rest_by_group(obs["keys"], obs["i"], groups)
    for k in range(6):
        sel = g_ds == k
        assert np.corrcoef(first[sel], rm[sel])[0, 1] > 0.9
        assert spearmanr(first[sel], isig[sel])[0] < -0.9
        assert spearmanr(first[sel], cc[sel])[0] < -0.8
        assert rm[sel][-1] > 2 * rm[sel][0] and isig[sel][-1] < isig[sel][0] / 2


def test_a_dataset_of_noise_gets_negative_delta_cc_half():
    rng = np.random.default_rng(7)
    obs = simulated(rng, n_datasets=5)
    noise = obs["dataset"] == 3
    obs["i"][noise] = rng.permutation(obs["i"][noise])  # right intensities, wrong reflections
    full, without, delta = dg.delta_cc_half_by_dataset(
        obs["keys"], obs["i"], obs["s2"], obs["dataset"], 6
    )
    assert delta[3] < -0.01
    assert all(delta[k] > 0 for k in (0, 1, 2, 4))
    assert without[3] > full > 0
    assert math.isnan(delta[5]) and math.isnan(without[5])  # a dataset with no observations


def test_completeness_curve_of_simulated_wedges_reaches_the_union():
    rng = np.random.default_rng(8)
    obs = simulated(rng, n_datasets=8, fraction=0.25)
    order, alone, curve = dg.completeness_curve(obs["keys"], obs["dataset"], obs["n_possible"], 8)
    assert sorted(order) == list(range(8))
    assert curve[0] == pytest.approx(max(alone))
    assert [alone[k] for k in order] == sorted(alone, reverse=True)
    assert np.all(np.diff(curve) >= 0)
    assert curve[-1] == pytest.approx(100 * len(np.unique(obs["keys"])) / obs["n_possible"])
    assert 25 < curve[0] < curve[-1] <= 100


def test_diagnostics_round_trip_through_json():
    rng = np.random.default_rng(9)
    series = ImageSeries(
        first=[1, 11],
        last=[10, 20],
        n_obs=[120, 130],
        scale=[1.0, float("nan")],
        b=[0.0, -1.5],
        r_merge=[0.05, 0.07],
        i_over_sigma=[12.0, 8.0],
        cc_rest=[0.99, float("nan")],
    )
    d = ClusterDiagnostics(
        run="run_02",
        d_min=1.5,
        d_max=30.0,
        image_group=10,
        min_obs=100,
        cc_half=float(rng.random()),
        n_possible=1000,
        completeness_order=["a"],
        completeness_curve=[55.0],
        datasets=[DatasetDiagnostics("a", 250, 550, 55.0, -0.01, 0.9, 10, series)],
    )
    c = ClusterResult(1, "cc", ["a"], diagnostics=d)
    text = json.dumps(to_dict(c))  # NaN written as null: valid JSON
    assert "NaN" not in text
    back = from_dict(ClusterResult, json.loads(text))
    s = back.diagnostics.datasets[0].images
    assert math.isnan(s.scale[1]) and math.isnan(s.cc_rest[1]) and s.b == [0.0, -1.5]
    assert to_dict(back) == to_dict(c)
    assert back.diagnostics.datasets[0].images.centre == [5.5, 15.5]
    assert (
        from_dict(ClusterResult, {"id": 2, "method": "cc", "node_members": []}).diagnostics is None
    )


def test_run_name_below_the_cluster_folder():
    assert dg.run_name(Path("/m/merge_cc/cluster_0004/run_02")) == "run_02"
    assert dg.run_name(Path("/m/merge_cc/cluster_0004/extended/run_01")) == "extended/run_01"


def test_scale_step_writes_its_html_report_only_when_asked():
    plain = merge_steps.scale("a.expt", "a.refl", [], 10.0, None, False, 2)
    assert "output.html=None" in plain.args
    html = merge_steps.scale("a.expt", "a.refl", [], 10.0, None, False, 2, html="dials.scale.html")
    assert "output.html=dials.scale.html" in html.args
    assert html.outputs == plain.outputs  # never a required output: resumability unchanged


def test_scale_step_skips_the_full_matrix_round_above_four_datasets():
    def args(n):
        return merge_steps.scale("a.expt", "a.refl", [], 10.0, None, False, 2, n_datasets=n).args

    assert "full_matrix=False" not in args(1) and "full_matrix=False" not in args(4)
    assert "full_matrix=False" in args(5) and "full_matrix=False" in args(200)


# ---------------------------------------------------------------- the real merge
def final_runs(root: Path):
    import merge_fixtures
    from mxflow.merge.outputs import read_summary

    mdir = root / merge_fixtures.METHOD_DIR
    ms = read_summary(mdir / "merge_summary.json")
    for c in ms.clusters:
        if c.ok:
            yield c, mdir.parent / Path(c.merged_mtz).parent


@pytest.mark.slow
@pytest.mark.dials
def test_cluster_diagnostics_of_a_real_merge(real_merge):
    runs = list(final_runs(real_merge))
    assert runs
    for c, run in runs:
        d_min = c.d_cut or c.d_min_estimate
        diag = dg.cluster_diagnostics(run, c.members, d_min, 10)
        assert diag.run == c.final_run and not diag.note
        assert [x.name for x in diag.datasets] == c.members
        # the same observations as the cluster's statistics (unmerged.mtz, to its cut)
        assert sum(x.n_obs for x in diag.datasets) == c.stats.overall.n_obs
        assert diag.d_min == pytest.approx(c.d_min, abs=1e-3)
        assert diag.n_possible == c.stats.overall.n_possible
        curve = diag.completeness_curve
        assert np.all(np.diff(curve) >= 0)
        assert curve[-1] == pytest.approx(100 * c.completeness, abs=0.01)
        assert sorted(diag.completeness_order) == sorted(c.members)
        assert curve[0] == pytest.approx(max(x.completeness for x in diag.datasets))
        for x in diag.datasets:
            s = x.images
            assert sum(s.n_obs) == x.n_obs and min(s.n_obs) > 0
            assert s.first == sorted(s.first) and all(
                a <= b for a, b in zip(s.first, s.last, strict=True)
            )
            assert all(b - a + 1 <= x.group_width for a, b in zip(s.first, s.last, strict=True))
            # SCALEUSED varies along the scan; every group has its fit and statistics
            for v in (s.scale, s.b, s.r_merge, s.i_over_sigma, s.cc_rest):
                assert np.isfinite(v).all(), (x.name, v)
            assert 0 < min(s.scale) < max(s.scale)
            assert min(s.r_merge) > 0 and max(s.r_merge) < 1 and min(s.cc_rest) > 0.5
            assert math.isfinite(x.delta_cc_half) and 0 < x.completeness <= 100
            assert x.n_unique <= diag.n_possible
        back = from_dict(ClusterDiagnostics, json.loads(json.dumps(to_dict(diag))))
        assert to_dict(back) == to_dict(diag)


@pytest.mark.slow
@pytest.mark.dials
def test_cluster_diagnostics_refuses_what_it_cannot_read(real_merge, tmp_path):
    c, run = next(final_runs(real_merge))
    with pytest.raises(MxflowError, match="experiments for"):
        dg.cluster_diagnostics(run, c.members[:-1], None, 10)
    with pytest.raises(MxflowError, match="not found"):
        dg.cluster_diagnostics(tmp_path, c.members, None, 10)
    shutil.copy(run / "scaled.expt", tmp_path / "scaled.expt")
    mtz = gemmi.read_mtz_file(str(run / "scaled_unmerged.mtz"))
    mtz.remove_column(mtz.column_labels().index("SCALEUSED"))
    mtz.write_to_file(str(tmp_path / "scaled_unmerged.mtz"))
    with pytest.raises(MxflowError, match="SCALEUSED"):
        dg.cluster_diagnostics(tmp_path, c.members, None, 10)


def test_report_series_leave_out_panels_without_data():
    """The merge page draws only the panels with a value; the others are named with why."""
    from mxflow.report.pages import diagnostics_series

    nan = float("nan")
    series = ImageSeries([1, 11], [10, 20], [4, 5], [nan, nan], [nan, nan], [0.1, 0.2], [3.0, 2.0])
    series.cc_rest = [nan, nan]
    d = ClusterDiagnostics(
        run="run_01",
        completeness_order=["a", "b"],
        completeness_curve=[40.0, 70.0],
        datasets=[
            DatasetDiagnostics("a", 9, 40, 40.0, nan, nan, 10, series),
            DatasetDiagnostics("b", 0, 0, 0.0, nan, nan, 0, ImageSeries()),
        ],
    )
    js = diagnostics_series(d)
    assert [p["key"] for p in js["panels"]] == ["r_merge", "i_over_sigma", "completeness"]
    assert len(js["missing"]) == 4 and any(m.startswith("ΔCC½") for m in js["missing"])
    assert js["datasets"][0]["r_merge"] == pytest.approx([10.0, 20.0])  # in %
    assert js["datasets"][0]["x"] == [5.5, 15.5] and js["curve"] == [40.0, 70.0]
    assert js["datasets"][0]["scale"] == [None, None]  # NaN is null in the page's JSON
    assert diagnostics_series(None) is None
