"""Rejection and clustering of anomalous data (#13 item 3): true Bijvoet differences are
not noise.

mxflow compares datasets and image groups on Friedel-merged intensities (the
canonical keys of :mod:`mxflow.cluster.intensity` put h and −h together), also
for anomalous merges.  A strong SAD signal (I(±) = I(1 ± δ), δ ~ N(0, 0.05):
⟨|ΔI|⟩/I ≈ 8 %, what the simulator's 3 Zn sites in a 54 × 62 × 71 Å cell
give, Bijvoet ratio 4 %) adds ~δ² to the relative spread between observations
of a reflection, a small fraction of the counting noise of small wedges, while
splitting the mates would halve the multiplicity that ΔCC½ and pairwise CC
are estimated from.  (With δ of 0.10 the CC between wedges of opposite hands
drops by ~0.04; still no rejection.)  Here half the wedges see the crystal's h and half its
−h, the worst case for a Friedel-merged comparison: nothing is rejected that
the same data without the signal keep, the pairwise CCs stay the same, and a
wedge of garbage is still caught.
"""

from __future__ import annotations

import gemmi
import numpy as np
import pytest

from mxflow.cluster.intensity import canonical_keys, merge_observations, pair_cc
from mxflow.merge.analysis import dataset_rejection, frame_rejection
from mxflow.stats.observations import Observations

CELL = (40.0, 50.0, 60.0, 90.0, 90.0, 90.0)


def wedges(rng, delta: float, garbage: int | None = None) -> Observations:
    """Six 20-image wedges of one P1 crystal; wedges 0-2 measure hkl (I(+) = I(1 + δ)),
    3-5 measure −h−k−l (I(−) = I(1 − δ)), with 10 % noise; δ ~ N(0, ``delta``)."""
    n_refl = 4000
    hkl_u = rng.integers(-15, 16, size=(n_refl, 3))
    hkl_u = hkl_u[np.any(hkl_u != 0, axis=1)]
    n_refl = len(hkl_u)
    cell = gemmi.UnitCell(*CELL)
    s2u = 1.0 / np.asarray(cell.calculate_d_array(hkl_u)) ** 2
    truth = rng.exponential(1.0, n_refl) * np.exp(-5 * s2u)
    d = rng.normal(0, delta, n_refl)
    hkl, val, ds, img, sign = [], [], [], [], []
    for k in range(6):
        window = np.arange(k * 300, k * 300 + 2500) % n_refl
        hand = 1 if k < 3 else -1
        for im in range(1, 21):
            pick = rng.choice(window, 100, replace=False)
            v = truth[pick] * (1 + hand * d[pick]) * (1 + rng.normal(0, 0.1, len(pick)))
            if k == garbage:
                v = rng.exponential(1.0, len(pick)) * np.exp(-5 * s2u[pick])
            hkl.append(hand * hkl_u[pick])
            val.append(v)
            ds.append(np.full(len(pick), k))
            img.append(np.full(len(pick), im))
            sign.append(np.full(len(pick), hand))
    hkl = np.concatenate(hkl)
    sg = gemmi.SpaceGroup("P 1")
    return Observations(
        hkl, np.concatenate(val), np.full(len(hkl), 0.1), canonical_keys(hkl, sg),
        1.0 / np.asarray(cell.calculate_d_array(hkl)) ** 2, cell, sg,
        sign=np.concatenate(sign), dataset=np.concatenate(ds), image=np.concatenate(img),
    )  # fmt: skip


def _pairwise(obs: Observations) -> np.ndarray:
    sets = [
        merge_observations(str(k), obs.hkl[m], obs.i[m], obs.sigma[m], obs.space_group)
        for k in range(6)
        for m in [obs.dataset == k]
    ]
    return np.array([pair_cc(sets[0], sets[j])[0] for j in range(1, 6)])


@pytest.mark.parametrize("seed", [1, 2])
def test_bijvoet_differences_are_not_rejected_as_noise(seed):
    with_signal = wedges(np.random.default_rng(seed), delta=0.05)
    without = wedges(np.random.default_rng(seed), delta=0.0)
    assert dataset_rejection(with_signal) == dataset_rejection(without) == {}
    assert frame_rejection(with_signal, 10) == [] and frame_rejection(without, 10) == []
    # CC of wedge 0 to the others: the other hand (3-5) as close as its own (1-2)
    cc = _pairwise(with_signal)
    assert np.all(cc > 0.7) and np.all(np.abs(cc - _pairwise(without)) < 0.02)


def test_garbage_wedge_is_still_caught_with_a_signal():
    bad = dataset_rejection(wedges(np.random.default_rng(3), delta=0.05, garbage=4))
    assert list(bad) == [4]
