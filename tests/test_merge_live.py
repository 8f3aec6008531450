"""Live merging (mxflow.merge.live): scales recovered, indexing chosen, cells checked, incremental."""

from __future__ import annotations

import math

import gemmi
import numpy as np
import pytest

from mxflow.cluster.intensity import apply_op, canonical_keys
from mxflow.merge.live import read_live, refine_scales, relative_scale, update_live_merge
from mxflow.model import DatasetResult
from stats_synthetic import write_unmerged_mtz

SG = "P 4"
CELL = (60.0, 60.0, 80.0, 90.0, 90.0, 90.0)


def test_relative_scale_recovers_k_and_b():
    rng = np.random.default_rng(1)
    s2 = rng.uniform(0.0, 0.2, 4000)  # to 2.2 Å
    ref = rng.exponential(1000.0, 4000)
    k, b = 2.5, 12.0  # I_obs·k·exp(B·s²/2) = I_ref
    obs = ref / (k * np.exp(0.5 * b * s2))
    got_k, got_b = relative_scale(s2, obs, np.full(4000, 1.0), ref, np.full(4000, 1.0))
    # ratios of sums over bins of finite width: exact to within the bins' curvature
    assert got_k == pytest.approx(k, rel=0.01)
    assert got_b == pytest.approx(b, abs=0.3)


def test_relative_scale_without_signal_falls_back_to_a_scale_only():
    s2 = np.linspace(0.01, 0.2, 100)
    noise = np.full(100, 1e6)  # nothing is significant
    assert relative_scale(s2, np.full(100, 2.0), noise, np.full(100, 4.0), noise) == (2.0, 0.0)


def test_refine_scales_finds_every_dataset_relative_to_the_others():
    rng = np.random.default_rng(2)
    truth = rng.exponential(500.0, 3000)
    s2_all = rng.uniform(0.0, 0.2, 3000)
    true = [(1.0, 0.0), (0.5, 6.0), (3.0, -4.0), (1.5, 2.0), (0.8, -4.0)]
    keys, s2, ints, sig = [], [], [], []
    for k, b in true:
        idx = rng.choice(3000, 1500, replace=False)
        i = truth[idx] / (k * np.exp(0.5 * b * s2_all[idx]))
        sigma = 0.03 * i + 1.0
        keys.append(idx.astype(np.int64))
        s2.append(s2_all[idx])
        ints.append(i + rng.normal(0, sigma))
        sig.append(sigma)
    got = refine_scales(keys, s2, ints, sig, [(1.0, 0.0)] * 5, cycles=6)
    # normalised: geometric-mean k 1, mean B 0; compare with the truth normalised the same way
    log_k = np.mean([math.log(k) for k, _ in true])
    mean_b = np.mean([b for _, b in true])
    for (k, b), (tk, tb) in zip(got, true, strict=True):
        assert k == pytest.approx(tk / math.exp(log_k), rel=0.03)
        assert b == pytest.approx(tb - mean_b, abs=0.6)


# -- update_live_merge on synthetic scaled MTZ files ---------------------------------


def _truth():
    hkl = np.array(gemmi.make_miller_array(gemmi.UnitCell(*CELL), gemmi.SpaceGroup(SG), 2.5))
    rng = np.random.default_rng(3)
    return hkl, rng.exponential(1000.0, len(hkl))


def _dataset(tmp_path, name, op="h,k,l", k=1.0, b=0.0, cell=CELL, seed=0, fraction=0.7):
    """A scaled unmerged MTZ of a random part of the truth, indexed by ``op``, on scale (k, B)."""
    hkl, truth = _truth()
    rng = np.random.default_rng(seed)
    pick = rng.random(len(hkl)) < fraction
    hkl, truth = hkl[pick], truth[pick]
    s2 = gemmi.UnitCell(*CELL).calculate_1_d2_array(hkl.astype(np.int32))
    i = truth / (k * np.exp(0.5 * b * s2))
    sigma = 0.05 * i + 5.0
    i = i + rng.normal(0, sigma)
    measured = hkl @ np.array(gemmi.Op(op).rot, dtype=int).T // gemmi.Op.DEN
    sg = gemmi.SpaceGroup(SG)
    asu, ops = gemmi.ReciprocalAsu(sg), sg.operations()
    mapped = [asu.to_asu([int(x) for x in row], ops) for row in measured]
    path = tmp_path / f"{name}.mtz"
    write_unmerged_mtz(
        path,
        np.array([m[0] for m in mapped]),
        np.array([m[1] for m in mapped]),
        i,
        sigma,
        cell=cell,
        space_group=SG,
    )
    result = DatasetResult(name=name, path=str(path), status="ok", sample="s")
    result.unmerged_mtz = path.name
    result.space_group = SG
    return (f"proc/{name}", result)


def same_reindexing(op1: str, op2: str) -> bool:
    """Whether two reindexing operators are the same modulo the point group."""
    test = np.random.default_rng(0).integers(-20, 21, size=(50, 3))
    keys = [canonical_keys(apply_op(test, op), SG) for op in (op1, op2)]
    return bool(np.array_equal(*keys))


def _cc_to_truth(mtz_path):
    mtz = gemmi.read_mtz_file(str(mtz_path))
    hkl = np.array(mtz.make_miller_array())
    i = np.array(mtz.column_with_label("IMEAN"))
    t_hkl, truth = _truth()
    t_keys = canonical_keys(t_hkl, SG)
    order = np.argsort(t_keys)
    pos = np.searchsorted(t_keys[order], canonical_keys(hkl, SG))
    return float(np.corrcoef(i, truth[order][pos])[0, 1])


def test_live_merge_reindexes_scales_and_checks_cells(tmp_path):
    out = tmp_path
    first = _dataset(tmp_path, "a", seed=1)
    flipped = _dataset(tmp_path, "b", op="k,h,-l", k=2.0, b=8.0, seed=2)
    far = _dataset(tmp_path, "c", cell=(70.0, 70.0, 80.0, 90, 90, 90), seed=3)
    live = update_live_merge(out, "s", [first], SG)
    assert live is not None and [d.status for d in live.datasets] == ["used"]
    assert live.stats is not None and live.merged_mtz == "merge_live/s/merged.mtz"

    live = update_live_merge(out, "s", [first, flipped, far], SG)
    a, b, c = live.datasets
    assert (a.status, b.status, c.status) == ("used", "used", "left out")
    # the alternative indexing chosen (gemmi names it by an equivalent of k,h,-l)
    assert same_reindexing(b.operator, "k,h,-l") and b.operator_cc > 0.9
    assert "cell 70.0 70.0 80.0" in c.reason and "unlike" in c.reason
    # scales relative to each other: b was 2× weaker and fell off with B 8 Å² more
    assert b.scale / a.scale == pytest.approx(2.0, rel=0.1)
    assert b.relative_b - a.relative_b == pytest.approx(8.0, abs=1.5)
    assert (
        _cc_to_truth(out / live.merged_mtz) > 0.985
    )  # b under the wrong indexing would drag it down
    assert live.stats.overall.completeness > 0.85

    # nothing new: nothing done; one more: only it is added, the others keep their choices
    assert update_live_merge(out, "s", [first, flipped, far], SG) is None
    more = _dataset(tmp_path, "d", op="k,h,-l", seed=4)
    live = update_live_merge(out, "s", [first, flipped, far, more], SG)
    assert [d.key for d in live.datasets] == ["proc/a", "proc/b", "proc/c", "proc/d"]
    assert live.datasets[1].operator == b.operator == live.datasets[3].operator
    assert live.last_added == "proc/d" and len(live.used) == 3
    assert read_live(out, "s").updated == live.updated


def test_unreadable_mtz_is_left_out_with_the_file_named(tmp_path):
    good = _dataset(tmp_path, "a", seed=1)
    bad = DatasetResult(name="x", path="x", status="ok", sample="s")
    bad.unmerged_mtz = "x.mtz"
    (tmp_path / "x.mtz").write_text("not an MTZ")
    live = update_live_merge(tmp_path, "s", [good, ("proc/x", bad)], SG)
    x = live.datasets[1]
    assert x.status == "left out" and "x.mtz" in x.reason
    assert len(live.used) == 1
