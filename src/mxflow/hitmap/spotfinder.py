"""mxflow's own spot finder: DIALS's "dispersion_extended" threshold in numba.

The algorithm is the one ``dials.find_spots`` runs by default (DIALS 3.x,
``threshold.algorithm=dispersion_extended``), re-implemented from its
published description for speed on raster scans:

1. **Dispersion test.**  For every valid pixel, the count ``m``, sum ``x``
   and sum of squares ``y`` of the valid pixels in the (2k+1)² box around it
   (k = ``kernel_size`` = 3, so 7 × 7, clipped at the image edge).  With
   ``m ≥ min_local`` and ``x ≥ 0`` the pixel is *dispersed* when the index of
   dispersion var/mean exceeds what Poisson noise allows:
   ``m·y − x² − x(m−1) > x·σ_b·√(2(m−1))`` (gain 1), i.e.
   ``var/mean > 1 + σ_b·√(2/(m−1))``.
2. **Erosion.**  Only the core of a dispersed region is kept: a pixel whose
   Chebyshev distance to the nearest non-dispersed pixel is at least ``k``
   (every pixel of the (2k−1)² box around it, inside the image, is
   dispersed).  Everything else that is valid is *background*.
3. **Strong test.**  The mean ``μ`` of the background pixels in a wider box
   (k + 2 = 5, so 11 × 11).  A core pixel is strong when its count is above
   ``global_threshold`` and at least ``μ + σ_s·√(gain·μ)``.
4. **Spots.**  Strong pixels are joined into spots through their four edge
   neighbours (as DIALS does for a still); spots with fewer than
   ``min_spot_size`` (3 for pixel-array detectors) or more than
   ``max_spot_size`` pixels are dropped, as are spots whose brightest pixel
   lies more than ``max_separation`` px from the intensity-weighted centroid.

The box sums are running sums over rows and columns in exact int64
arithmetic (the same numbers a summed-area table gives, without its memory
traffic); steps 2 and 3 look closely only at the few dispersed / core
pixels.  Kernels are compiled with ``nogil=True`` so frames can be
processed in threads.  Pixel coordinates: (x, y) = (fast, slow), with the
first pixel spanning 0..1, as in DIALS; so a pixel's centre is at +0.5.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np

# Pixels at or above this count are left out of the local sums (DIALS does
# the same, to keep its summed-area tables exact).
BIG = 1 << 24


@dataclass(frozen=True)
class SpotFinderParams:
    """Thresholds of the spot finder (defaults are ``dials.find_spots``'s).

    ``kernel_size`` is the half-width k of the (2k+1)² box in pixels;
    ``sigma_background`` / ``sigma_strong`` the dispersion and intensity
    thresholds in standard deviations; ``min_local`` the fewest valid pixels
    a box needs; ``global_threshold`` the count a strong pixel must exceed;
    ``gain`` the detector gain (counts per photon).  Spot sizes are in
    pixels, ``max_separation`` in pixels; ``max_strong_fraction`` is the
    largest fraction of valid pixels that may be strong before a frame is
    reported as unusable (DIALS stops at 0.25).
    """

    kernel_size: int = 3
    sigma_background: float = 6.0
    sigma_strong: float = 3.0
    min_local: int = 2
    global_threshold: float = 0.0
    gain: float = 1.0
    min_spot_size: int = 3
    max_spot_size: int = 1000
    max_separation: float = 2.0
    max_strong_fraction: float = 0.25


@numba.njit(nogil=True, cache=True)
def valid_pixels(image, static_mask, overload, out):
    """``out`` = pixel is usable: on a module, not negative, below ``overload``.

    ``image`` int32 (slow, fast); ``static_mask`` bool, True = on a sensor
    module and not masked; pixels ≥ ``BIG`` are also invalid.
    Returns the number of valid pixels and how many of them count > 0.
    """
    h, w = image.shape
    hi = min(overload, BIG)
    n = 0
    n_pos = 0
    for j in range(h):
        for i in range(w):
            v = image[j, i]
            ok = static_mask[j, i] and v > -1 and v < hi
            out[j, i] = ok
            n += ok
            n_pos += ok and v > 0
    return n, n_pos


@numba.njit(nogil=True, cache=True)
def dispersion_mask(image, valid, k, sigma_b, gain, min_local, out):
    """Step 1: ``out`` = valid pixel whose (2k+1)² box fails the Poisson test.

    Running box sums: ``colm/colx/coly`` hold, per column, the count, sum and
    sum of squares of the valid pixels in rows j−k..j+k; a horizontal running
    sum over columns i−k..i+k then gives the box.  All sums are exact int64;
    the threshold gain·((m−1) + σ_b·√(2(m−1))) is tabulated by m.
    Returns the number of dispersed pixels.
    """
    h, w = image.shape
    nk = (2 * k + 1) ** 2
    bound = np.zeros(nk + 1)
    for m in range(2, nk + 1):
        bound[m] = gain * ((m - 1) + sigma_b * math.sqrt(2.0 * (m - 1)))
    colm = np.zeros(w, np.int64)
    colx = np.zeros(w, np.int64)
    coly = np.zeros(w, np.int64)
    for r in range(min(k, h)):
        for i in range(w):
            ok = np.int64(valid[r, i])
            v = np.int64(image[r, i]) * ok
            colm[i] += ok
            colx[i] += v
            coly[i] += v * v
    n = 0
    for j in range(h):
        ra = j + k
        if ra < h:
            for i in range(w):
                ok = np.int64(valid[ra, i])
                v = np.int64(image[ra, i]) * ok
                colm[i] += ok
                colx[i] += v
                coly[i] += v * v
        rr = j - k - 1
        if rr >= 0:
            for i in range(w):
                ok = np.int64(valid[rr, i])
                v = np.int64(image[rr, i]) * ok
                colm[i] -= ok
                colx[i] -= v
                coly[i] -= v * v
        m = np.int64(0)
        x = np.int64(0)
        y = np.int64(0)
        for i in range(min(k, w)):
            m += colm[i]
            x += colx[i]
            y += coly[i]
        for i in range(w):
            ca = i + k
            if ca < w:
                m += colm[ca]
                x += colx[ca]
                y += coly[ca]
            cr = i - k - 1
            if cr >= 0:
                m -= colm[cr]
                x -= colx[cr]
                y -= coly[cr]
            hit = False
            if valid[j, i] and m >= min_local and x >= 0:
                # m·y − x² > gain·x·((m−1) + σ_b·√(2(m−1)))
                hit = float(m * y - x * x) > x * bound[m]
            out[j, i] = hit
            n += hit
    return n


@numba.njit(nogil=True, cache=True)
def erode(disp, r, out):
    """Step 2: ``out`` = ``disp`` pixel with only ``disp`` pixels within
    Chebyshev distance ``r`` (box clipped at the image edge).

    Equivalent to "Chebyshev distance to the nearest non-dispersed pixel
    > r"; with r = k − 1 this is DIALS's erosion by the kernel size k.
    Dispersed pixels are few, so each is checked directly.  Returns the
    number of core pixels.
    """
    h, w = disp.shape
    n = 0
    for j in range(h):
        j0 = max(0, j - r)
        j1 = min(h, j + r + 1)
        for i in range(w):
            keep = False
            if disp[j, i]:
                keep = True
                i0 = max(0, i - r)
                i1 = min(w, i + r + 1)
                for jj in range(j0, j1):
                    for ii in range(i0, i1):
                        if not disp[jj, ii]:
                            keep = False
                            break
                    if not keep:
                        break
            out[j, i] = keep
            n += keep
    return n


@numba.njit(nogil=True, cache=True)
def strong_pixels(image, valid, core, k2, sigma_s, gain, threshold, out_index):
    """Step 3: flat indices of strong pixels, in raster order, into ``out_index``.

    Background = valid and not core; μ = mean background count in the
    (2·k2+1)² box (0 when fewer than 2 background pixels).  Column sums of
    the background run down the image; the box is summed only at core
    pixels (few).  Returns the number of strong pixels, or −1 when
    ``out_index`` is too small.
    """
    h, w = image.shape
    colm = np.zeros(w, np.int64)
    colx = np.zeros(w, np.int64)
    cap = out_index.size
    n = 0
    for r in range(min(k2, h)):
        for i in range(w):
            ok = np.int64(valid[r, i] and not core[r, i])
            colm[i] += ok
            colx[i] += ok * image[r, i]
    for j in range(h):
        ra = j + k2
        if ra < h:
            for i in range(w):
                ok = np.int64(valid[ra, i] and not core[ra, i])
                colm[i] += ok
                colx[i] += ok * image[ra, i]
        rr = j - k2 - 1
        if rr >= 0:
            for i in range(w):
                ok = np.int64(valid[rr, i] and not core[rr, i])
                colm[i] -= ok
                colx[i] -= ok * image[rr, i]
        for i in range(w):
            if core[j, i] and valid[j, i]:
                m = np.int64(0)
                x = np.int64(0)
                for ii in range(max(0, i - k2), min(w, i + k2 + 1)):
                    m += colm[ii]
                    x += colx[ii]
                v = image[j, i]
                mean = x / m if m >= 2 else 0.0
                if v > threshold and v >= mean + sigma_s * math.sqrt(gain * mean):
                    if n >= cap:
                        return -1
                    out_index[n] = j * w + i
                    n += 1
    return n


@numba.njit(nogil=True, cache=True)
def _find_root(parent, a):
    while parent[a] != a:
        parent[a] = parent[parent[a]]
        a = parent[a]
    return a


@numba.njit(nogil=True, cache=True)
def label_spots(image, index, n, labels):
    """Step 4: 4-connected components of the strong pixels ``index[:n]``.

    ``labels`` is a flat int32 scratch image filled with −1; it is restored
    to −1 before returning.  Returns per spot (in order of first pixel):
    pixel count, summed counts, intensity-weighted centroid x and y (px,
    pixel centres at +0.5), and the position of the brightest pixel (its
    first occurrence in raster order), all as a (n_spots, 6) float64 array.
    """
    w = image.shape[1]
    parent = np.arange(n)
    for p in range(n):
        q = index[p]
        labels[q] = p
        i = q % w
        if i > 0:
            left = labels[q - 1]
            if left >= 0:
                ra = _find_root(parent, left)
                rb = _find_root(parent, p)
                if ra != rb:
                    parent[max(ra, rb)] = min(ra, rb)
        if q >= w:
            up = labels[q - w]
            if up >= 0:
                ra = _find_root(parent, up)
                rb = _find_root(parent, p)
                if ra != rb:
                    parent[max(ra, rb)] = min(ra, rb)
    spot_of = np.full(n, -1, np.int64)
    n_spots = 0
    for p in range(n):
        r = _find_root(parent, p)
        if spot_of[r] < 0:
            spot_of[r] = n_spots
            n_spots += 1
    out = np.zeros((n_spots, 6), np.float64)
    best = np.full(n_spots, -1.0)
    for p in range(n):
        s = spot_of[_find_root(parent, p)]
        q = index[p]
        y = q // w
        x = q - y * w
        v = float(image[y, x])
        out[s, 0] += 1.0
        out[s, 1] += v
        out[s, 2] += v * (x + 0.5)
        out[s, 3] += v * (y + 0.5)
        if v > best[s]:
            best[s] = v
            out[s, 4] = x + 0.5
            out[s, 5] = y + 0.5
        labels[q] = -1
    for s in range(n_spots):
        if out[s, 1] > 0:
            out[s, 2] /= out[s, 1]
            out[s, 3] /= out[s, 1]
    return out


@dataclass
class Spots:
    """Spots of one frame: centroids (px; x fast, y slow), summed counts and
    size in pixels, as 1-D arrays of equal length; ``n_strong`` is the
    number of strong pixels before spot filtering."""

    x: np.ndarray
    y: np.ndarray
    intensity: np.ndarray
    size: np.ndarray
    n_strong: int

    def __len__(self) -> int:
        return int(self.x.size)

    def select(self, keep: np.ndarray) -> Spots:
        return Spots(
            self.x[keep], self.y[keep], self.intensity[keep], self.size[keep], self.n_strong
        )


class Workspace:
    """Scratch arrays for one image size, reused frame after frame (one per thread)."""

    def __init__(self, shape: tuple[int, int]):
        self.shape = shape
        self.valid = np.empty(shape, np.bool_)
        self.disp = np.empty(shape, np.bool_)
        self.core = np.empty(shape, np.bool_)
        self.labels = np.full(shape[0] * shape[1], -1, np.int32)
        self.index = np.empty(shape[0] * shape[1] // 4 + 1, np.int64)


class UnusableFrame(ValueError):
    """A frame the spot finder cannot judge (blank, or mostly "strong")."""


class TooManyStrongPixels(UnusableFrame):
    """More pixels passed the threshold than ``max_strong_fraction`` allows."""


def find_spots(
    image: np.ndarray,
    static_mask: np.ndarray,
    overload: float | None = None,
    params: SpotFinderParams | None = None,
    workspace: Workspace | None = None,
) -> Spots:
    """Find the spots on one frame.

    ``image``: int32 counts, shape (slow, fast); negative values are gaps or
    bad pixels.  ``static_mask``: bool, same shape, True where a pixel may be
    used (on a module, not in the bad-pixel mask).  ``overload``: counts at
    which the detector saturates (those pixels are not used).  Raises
    :class:`TooManyStrongPixels` when more than ``params.max_strong_fraction``
    of the valid pixels are strong (a saturated or broken frame), and
    :class:`UnusableFrame` when no valid pixel has a positive count (a blank
    frame: shutter closed, detector not triggered, all zeros).
    """
    params = params or SpotFinderParams()
    image = np.ascontiguousarray(image, dtype=np.int32)
    if workspace is None or workspace.shape != image.shape:
        workspace = Workspace(image.shape)
    ws = workspace
    k = params.kernel_size
    if static_mask.shape != image.shape:
        raise ValueError(f"mask shape {static_mask.shape} differs from image shape {image.shape}")
    n_valid, n_positive = valid_pixels(image, static_mask, float(overload or np.inf), ws.valid)
    if n_positive == 0:
        raise UnusableFrame(f"blank frame: none of {n_valid} valid pixels has a positive count")
    dispersion_mask(
        image, ws.valid, k, params.sigma_background, params.gain, params.min_local, ws.disp
    )
    erode(ws.disp, k - 1, ws.core)
    cap = min(ws.index.size, int(params.max_strong_fraction * n_valid) + 1)
    n = strong_pixels(
        image,
        ws.valid,
        ws.core,
        k + 2,
        params.sigma_strong,
        params.gain,
        params.global_threshold,
        ws.index[:cap],
    )
    if n < 0:
        raise TooManyStrongPixels(
            f"more than {params.max_strong_fraction:.0%} of {n_valid} valid pixels are strong"
        )
    table = label_spots(image, ws.index, n, ws.labels)
    size = table[:, 0]
    sep = np.hypot(table[:, 4] - table[:, 2], table[:, 5] - table[:, 3])
    keep = (
        (size >= params.min_spot_size)
        & (size <= params.max_spot_size)
        & (sep <= params.max_separation)
    )
    t = table[keep]
    return Spots(t[:, 2], t[:, 3], t[:, 1], t[:, 0].astype(np.int64), int(n))
