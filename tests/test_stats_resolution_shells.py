"""Per-dataset cut: outer shells that are nearly empty are left out."""

from __future__ import annotations

import numpy as np

from mxflow.stats.resolution import sparse_shell_limit


def _possible(n=20000, d_lo=2.0, seed=1):
    rng = np.random.default_rng(seed)
    return 1.0 / np.sqrt(rng.uniform(1 / 50**2, 1 / d_lo**2, n))  # uniform in s² ~ shells


def test_a_sparse_outer_region_is_cut_off():
    d = _possible()
    rng = np.random.default_rng(2)
    measured = d[np.where(d > 2.25, rng.random(len(d)) < 0.3, rng.random(len(d)) < 0.02)]
    limit = sparse_shell_limit(measured, d, 2.0)
    assert 2.2 < limit < 2.3


def test_uniformly_sparse_wedge_keeps_its_limit():
    d = _possible()
    rng = np.random.default_rng(3)
    measured = d[rng.random(len(d)) < 0.15]  # a small wedge: sparse everywhere, but evenly
    assert sparse_shell_limit(measured, d, 2.0) == 2.0


def test_never_below_d_min_and_too_few_reflections_keeps_it():
    d = _possible(n=50)
    assert sparse_shell_limit(d[:5], d, 2.0) == 2.0
