"""mxflow.hitmap spot finder: kernels against a plain re-statement of the
algorithm, and recall / precision of spot positions on synthetic frames."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment
from scipy.spatial import cKDTree

from mxflow.hitmap.spotfinder import (
    SpotFinderParams,
    TooManyStrongPixels,
    UnusableFrame,
    Workspace,
    find_spots,
    find_strong_pixels,
)


def _box(a: np.ndarray, j: int, i: int, k: int) -> np.ndarray:
    return a[max(0, j - k) : j + k + 1, max(0, i - k) : i + k + 1]


def reference_strong(image: np.ndarray, valid: np.ndarray, p: SpotFinderParams) -> np.ndarray:
    """Strong-pixel mask by direct per-pixel sums (slow, obviously correct)."""
    k = p.kernel_size
    h, w = image.shape
    img = image.astype(float)
    disp = np.zeros((h, w), bool)
    for j in range(h):
        for i in range(w):
            if not valid[j, i]:
                continue
            vals = _box(img, j, i, k)[_box(valid, j, i, k)]
            m, x = vals.size, vals.sum()
            if m < p.min_local or x < 0:
                continue
            if x == 0:
                continue  # var/mean undefined: DIALS's test is false here
            var = vals.var(ddof=1)
            mean = x / m
            disp[j, i] = var / mean > 1 + p.sigma_background * np.sqrt(2 / (m - 1))
    core = np.zeros((h, w), bool)
    for j in range(h):
        for i in range(w):
            core[j, i] = disp[j, i] and _box(disp, j, i, k - 1).all()
    bg = valid & ~core
    strong = np.zeros((h, w), bool)
    for j in range(h):
        for i in range(w):
            if not core[j, i]:
                continue
            vals = _box(img, j, i, k + 2)[_box(bg, j, i, k + 2)]
            mean = vals.mean() if vals.size >= 2 else 0.0
            v = img[j, i]
            strong[j, i] = v > p.global_threshold and v >= mean + p.sigma_strong * np.sqrt(mean)
    return strong


def synthetic_frame(
    shape=(300, 320), n_spots=40, background=2.0, seed=0, peak=(60, 400), sigma=(0.8, 1.3)
):
    """Poisson background plus Gaussian spots; returns (image, true (x, y) px)."""
    rng = np.random.default_rng(seed)
    h, w = shape
    lam = np.full(shape, background)
    yy, xx = np.mgrid[0:h, 0:w] + 0.5  # pixel centres, DIALS convention
    truth = []
    while len(truth) < n_spots:
        x, y = rng.uniform(12, w - 12), rng.uniform(12, h - 12)
        if any(np.hypot(x - a, y - b) < 12 for a, b in truth):
            continue
        truth.append((x, y))
        s = rng.uniform(*sigma)
        amp = rng.uniform(*peak)
        lam += amp * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * s * s))
    return rng.poisson(lam).astype(np.int32), np.array(truth)


def _kernel_strong(image, static, hi, p):
    index = np.empty(image.size + 1, np.int64)
    n, n_valid, _ = find_strong_pixels(
        image, static, hi, p.kernel_size, p.sigma_background, p.sigma_strong, 1.0,
        p.min_local, p.global_threshold, index,
    )  # fmt: skip
    assert n_valid == (static & (image > -1) & (image < hi)).sum()
    got = np.zeros(image.size, bool)
    got[index[:n]] = True
    assert np.all(np.diff(index[:n]) > 0)  # raster order
    return got.reshape(image.shape)


def test_kernels_match_direct_sums():
    image, _ = synthetic_frame(shape=(64, 72), n_spots=6, background=3.0, seed=3)
    image[10:14, :] = -1  # a module gap
    image[40, 50] = -2  # a bad pixel
    image[0:3, 0:3] = 0  # a dark corner (mean 0 there)
    static = np.ones(image.shape, bool)
    p = SpotFinderParams()
    valid = static & (image > -1)
    assert valid.sum() == image.size - 4 * 72 - 1
    want = reference_strong(image, valid, p)
    assert want.sum() > 20  # the test has something to find
    np.testing.assert_array_equal(_kernel_strong(image, static, 10**9, p), want)


@pytest.mark.parametrize("case", ["edges", "blob", "kernel2", "tiny", "gaps"])
def test_kernels_match_direct_sums_edge_cases(case):
    """Spots on the image edge, a big blob (long core runs over many rows),
    another kernel size, an image smaller than the box, wide dark gaps."""
    p = SpotFinderParams()
    hi = 10**9
    if case == "tiny":
        image = np.array([[1, 2, 0, 1], [0, 90, 80, 1], [2, 70, 95, 0], [1, 0, 1, 2], [3, 1, 0, 1]])
    else:
        image, _ = synthetic_frame(shape=(48, 56), n_spots=4, background=4.0, seed=11)
        yy, xx = np.mgrid[0:48, 0:56]
        edge = 300 * np.exp(-((xx - 0.5) ** 2 + (yy - 20.5) ** 2) / 3.0)
        edge += 300 * np.exp(-((xx - 55.5) ** 2 + (yy - 47.5) ** 2) / 3.0)
        image = image + np.rint(edge).astype(np.int32)
    if case == "blob":
        image = image + np.rint(900 * np.exp(-((xx - 30) ** 2 + (yy - 25) ** 2) / 60.0)).astype(int)
        image[25, 30] = 2000
        hi = 1500  # and an overloaded pixel in its middle
    if case == "kernel2":
        p = SpotFinderParams(kernel_size=2, min_local=10)
    if case == "gaps":
        image[:, 20:27] = -1
        image[30:35, :] = -1
    image = image.astype(np.int32)
    static = np.ones(image.shape, bool)
    static[4, 40 % image.shape[1]] = False
    valid = static & (image > -1) & (image < hi)
    want = reference_strong(image, valid, p)
    if case != "tiny":
        assert want.sum() > 5
    np.testing.assert_array_equal(_kernel_strong(image, static, hi, p), want)


def test_recall_and_precision_of_positions():
    image, truth = synthetic_frame(n_spots=40, seed=1)
    static = np.ones(image.shape, bool)
    spots = find_spots(image, static, overload=1e6)
    found = np.column_stack([spots.x, spots.y])
    dist = np.hypot(*(found[:, None, :] - truth[None, :, :]).transpose(2, 0, 1))
    rows, cols = linear_sum_assignment(dist)
    matched = dist[rows, cols] < 1.0
    recall = matched.sum() / len(truth)
    precision = matched.sum() / len(found)
    assert recall >= 0.95, recall
    assert precision >= 0.95, precision
    # centroids of bright spots are accurate to a fraction of a pixel
    assert np.median(dist[rows, cols][matched]) < 0.3


def test_pure_noise_gives_few_spots_and_faint_spots_are_missed():
    rng = np.random.default_rng(7)
    noise = rng.poisson(5.0, size=(300, 300)).astype(np.int32)
    static = np.ones(noise.shape, bool)
    assert len(find_spots(noise, static)) <= 2
    # spots below the noise must not be "found" at their positions
    faint, truth = synthetic_frame(n_spots=20, background=5.0, peak=(1, 2), seed=2)
    spots = find_spots(faint, np.ones(faint.shape, bool))
    if len(spots):
        tree = cKDTree(truth)
        hits = tree.query(np.column_stack([spots.x, spots.y]))[0] < 1.0
        assert hits.sum() <= 2


def test_masked_pixels_are_never_part_of_spots():
    image, truth = synthetic_frame(n_spots=20, seed=4)
    static = np.ones(image.shape, bool)
    x0, y0 = truth[0]
    static[int(y0) - 5 : int(y0) + 6, :] = False  # mask a band through spot 0
    spots = find_spots(image, static, overload=1e6)
    assert not np.any((np.abs(spots.y - y0) < 4) & (np.abs(spots.x - x0) < 4))
    assert len(spots) >= 15


def test_overloaded_and_tiny_spots():
    image = np.random.default_rng(5).poisson(1.0, size=(100, 100)).astype(np.int32)
    image[50, 50] = 5000  # a one-pixel "spot": below min_spot_size 3
    static = np.ones(image.shape, bool)
    assert len(find_spots(image, static)) == 0
    assert len(find_spots(image, static, params=SpotFinderParams(min_spot_size=1))) == 1
    # the same pixel above the overload is not valid at all
    assert (
        len(find_spots(image, static, overload=4000, params=SpotFinderParams(min_spot_size=1))) == 0
    )


def test_blank_and_saturated_frames_are_reported():
    static = np.ones((80, 80), bool)
    with pytest.raises(UnusableFrame, match="blank"):
        find_spots(np.zeros((80, 80), np.int32), static)
    checker = np.indices((80, 80)).sum(axis=0) % 2 * 1000  # every other pixel "strong"
    with pytest.raises(TooManyStrongPixels):
        find_spots(
            checker.astype(np.int32), static, params=SpotFinderParams(max_strong_fraction=0.01)
        )


def test_workspace_reuse_gives_identical_results():
    a, _ = synthetic_frame(seed=8)
    b, _ = synthetic_frame(seed=9)
    static = np.ones(a.shape, bool)
    ws = Workspace(a.shape)
    first = find_spots(a, static, workspace=ws)
    find_spots(b, static, workspace=ws)
    again = find_spots(a, static, workspace=ws)
    np.testing.assert_array_equal(first.x, again.x)
    np.testing.assert_array_equal(first.intensity, again.intensity)
