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

Steps 1–3 run in one pass down the image (:func:`find_strong_pixels`),
with the rows in flight in small ring buffers so that the image rows they
read are still in cache.  Pixel validity is computed on the fly from the
static mask, the count and the overload.  The step-1 box sums are exact
integers: running column sums, updated per row for the row entering and
the row leaving the box, and across them direct (2k+1)-term sums in a
branch-free loop that the compiler vectorises (the same numbers a
summed-area table gives, without its memory traffic); the test is done in
the same floating-point operations as a scalar loop would, so to the same
bits.  Erosion is separable: along the row from the runs of dispersed
pixels, then down the columns for those that pass.  Core pixels are few on
a diffraction frame, so background sums are kept only for the columns
within k + 2 of a run of core pixels, shifted down row by row where
possible.  Kernels are compiled with ``nogil=True`` so frames can be
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


def upper_limit(overload: float | None) -> int:
    """The integer count a valid pixel must stay below: ``overload`` (None or
    0 = none) capped at ``BIG``; for integer counts v, v < overload ⇔ v < this."""
    lim = min(float(overload or np.inf), float(BIG))
    if not lim > -1:  # NaN or negative: no pixel is valid
        return 0
    return int(math.ceil(lim))


@numba.njit(nogil=True, cache=True, inline="always")
def _is_valid(value, on_module, hi):
    """Pixel usable: on a module (``static_mask``), not negative, below ``hi``."""
    return on_module & (value > -1) & (value < hi)


@numba.njit(nogil=True, cache=True, inline="always")
def _dispersion_bound(m, sigma_b, gain):
    """gain·((m−1) + σ_b·√(2(m−1))) for a box of m valid pixels (0 for m ≤ 1)."""
    mm = max(m - 1, 0)
    return gain * (mm + sigma_b * math.sqrt(2.0 * mm))


@numba.njit(nogil=True, cache=True)
def _add_rows(image, static_mask, hi, ra, rr, colm, colx, coly):
    """Add image row ``ra`` to and take row ``rr`` from the column sums
    (count, sum, sum of squares of the valid pixels; either row may be −1 =
    none)."""
    w = image.shape[1]
    if ra >= 0 and rr >= 0:
        ia, sa, ir, sr = image[ra], static_mask[ra], image[rr], static_mask[rr]
        for i in range(w):
            va = ia[i]
            oka = sa[i] and va > -1 and va < hi
            xa = va if oka else 0
            vr = ir[i]
            okr = sr[i] and vr > -1 and vr < hi
            xr = vr if okr else 0
            colm[i] += np.int32(oka) - np.int32(okr)
            colx[i] += xa - xr
            coly[i] += np.int64(xa) * xa - np.int64(xr) * xr
    elif ra >= 0:  # the first rows of the image: nothing leaves the box yet
        _shift_row(image[ra], static_mask[ra], hi, 1, colm, colx, coly)
    elif rr >= 0:  # the last rows: nothing enters
        _shift_row(image[rr], static_mask[rr], hi, -1, colm, colx, coly)


@numba.njit(nogil=True, cache=True)
def _shift_row(row, mask_row, hi, sign, colm, colx, coly):
    """Add (``sign`` = 1) or take (−1) one image row to / from the column sums
    (used for the k rows at the top and bottom of the image only)."""
    for i in range(row.shape[0]):
        v = row[i]
        ok = mask_row[i] and v > -1 and v < hi
        x = v if ok else 0
        colm[i] += sign * np.int32(ok)
        colx[i] += sign * x
        coly[i] += sign * (np.int64(x) * x)


@numba.njit(nogil=True, cache=True, inline="always")
def _is_strong(v, x, m, sigma_s, gain, threshold):
    """Count ``v`` above ``threshold`` and ≥ μ + σ_s·√(gain·μ), μ = x/m (0 if m < 2)."""
    mean = x / m if m >= 2 else 0.0
    return v > threshold and v >= mean + sigma_s * math.sqrt(gain * mean)


@numba.njit(nogil=True, cache=True)
def _dispersed_row(colm, colx, coly, row, on_module, hi, k, sigma_b, gain, min_local, hit):
    """Step 1 for one row: ``hit[i]`` = 1 where pixel i is dispersed.

    ``colm/colx/coly`` are the column sums for this row, zero-padded by k
    columns each side (the image edge).  Returns the number of valid pixels
    in the row and how many of them have a count > 0.
    """
    w = row.size
    n_valid = 0
    n_positive = 0
    if k == 3:  # the default: the 7 terms written out, so that the loop vectorises
        for i in range(w):
            m = colm[i] + colm[i + 1] + colm[i + 2] + colm[i + 3]
            m += colm[i + 4] + colm[i + 5] + colm[i + 6]
            x = colx[i] + colx[i + 1] + colx[i + 2] + colx[i + 3]
            x += colx[i + 4] + colx[i + 5] + colx[i + 6]
            # exact in int32 (m ≤ 49, x < 49·BIG < 2³¹), which vectorises better
            m = np.int32(m)
            x = np.int32(x)
            y = coly[i] + coly[i + 1] + coly[i + 2] + coly[i + 3]
            y += coly[i + 4] + coly[i + 5] + coly[i + 6]
            # x ≥ 0 always: valid counts are ≥ 0
            v = row[i]
            ok = _is_valid(v, on_module[i], hi)
            hit[i] = (
                ok
                & (m >= min_local)
                & (float(m * y - np.int64(x) * x) > x * _dispersion_bound(m, sigma_b, gain))
            )
            n_valid += ok
            n_positive += ok & (v > 0)
    else:
        for i in range(w):
            m = np.int64(0)
            x = np.int64(0)
            y = np.int64(0)
            for d in range(2 * k + 1):
                m += colm[i + d]
                x += colx[i + d]
                y += coly[i + d]
            v = row[i]
            ok = _is_valid(v, on_module[i], hi)
            hit[i] = (
                ok
                & (m >= min_local)
                & (float(m * y - x * x) > x * _dispersion_bound(m, sigma_b, gain))
            )
            n_valid += ok
            n_positive += ok & (v > 0)
    return n_valid, n_positive


@numba.njit(nogil=True, cache=True, inline="always")
def _next_set(buf, words, i, w):
    """First i' ≥ i with ``buf[i']`` set (``w`` if none), skipping empty 8-byte words."""
    while i < w:
        if (i & 7) == 0 and words[i >> 3] == 0:
            i += 8
        elif buf[i]:
            return i
        else:
            i += 1
    return w


@numba.njit(nogil=True, cache=True)
def _add_background(image, static_mask, hi, core, rc, wpad, j0, j1, sign, c0, c1, bgm, bgx, pad):
    """Add (``sign`` = 1) or take away (−1) the background pixels (valid, not
    core) of rows j0..j1 − 1 (clipped to the image), columns c0..c1 − 1, to
    the column sums ``bgm`` (count) and ``bgx`` (sum), stored at c + ``pad``.
    ``core`` is a ring of ``rc`` rows of ``wpad`` bytes."""
    for jj in range(max(0, j0), min(image.shape[0], j1)):
        row, on_module = image[jj], static_mask[jj]
        o = (jj & (rc - 1)) * wpad
        for c in range(c0, c1):
            v = row[c]
            ok = _is_valid(v, on_module[c], hi) & (core[o + c] == 0)
            bgm[c + pad] += sign * np.int64(ok)
            bgx[c + pad] += sign * np.int64(v if ok else 0)


@numba.njit(nogil=True, cache=True)
def _background_columns(image, static_mask, hi, core, rc, wpad, js, k2, c0, c1, bgm, bgx, bg_row):
    """Make ``bgm``/``bgx`` hold the background sums of rows js − k2 .. js + k2
    for columns c0..c1 − 1: nothing to do where they already do, one row in
    and one out where they hold row js − 1, summed afresh elsewhere.
    ``bg_row[c]`` records the centre row column c holds."""
    c = c0
    while c < c1:
        state = 0 if bg_row[c] == js else (1 if bg_row[c] == js - 1 else 2)
        e = c + 1
        while e < c1 and (0 if bg_row[e] == js else (1 if bg_row[e] == js - 1 else 2)) == state:
            e += 1
        if state == 1:
            _add_background(
                image, static_mask, hi, core, rc, wpad, js + k2, js + k2 + 1, 1, c, e, bgm, bgx, k2
            )
            _add_background(
                image, static_mask, hi, core, rc, wpad, js - k2 - 1, js - k2, -1, c, e, bgm, bgx, k2
            )
        elif state == 2:
            for cc in range(c, e):
                m = np.int64(0)
                x = np.int64(0)
                for jj in range(max(0, js - k2), min(image.shape[0], js + k2 + 1)):
                    v = image[jj, cc]
                    ok = _is_valid(v, static_mask[jj, cc], hi) & (
                        core[(jj & (rc - 1)) * wpad + cc] == 0
                    )
                    m += ok
                    x += v if ok else 0
                bgm[cc + k2] = m
                bgx[cc + k2] = x
        bg_row[c:e] = js
        c = e


@numba.njit(nogil=True, cache=True)
def find_strong_pixels(
    image, static_mask, hi, k, sigma_b, sigma_s, gain, min_local, threshold, out_index
):
    """Steps 1–3: flat indices of the strong pixels, in raster order, into ``out_index``.

    ``image`` int32 (slow, fast); ``static_mask`` bool (True = on a module,
    not masked); a pixel is *valid* when on a module, ≥ 0 and < ``hi`` (an
    integer, at most ``BIG``).  One pass down the image: row j is tested for
    dispersion (step 1) and eroded along the row; row j − r (r = k − 1) is
    eroded down the columns (step 2) to give its core pixels; row j − r − k2
    (k2 = k + 2) gets the strong test (step 3).  The rows in flight are kept
    in small ring buffers, so the image rows they need are still in cache.

    ``k`` (≥ 1), ``sigma_b``, ``sigma_s``, ``gain``, ``min_local`` and
    ``threshold`` are :class:`SpotFinderParams`' ``kernel_size``,
    ``sigma_background``, ``sigma_strong``, ``gain``, ``min_local`` and
    ``global_threshold``.  Returns (strong, valid, valid with a count > 0)
    pixel numbers; strong is −1 when ``out_index`` is too small.
    """
    h, w = image.shape
    r = k - 1
    k2 = k + 2
    wpad = (w // 8 + 1) * 8  # ≥ w + 1: a zero stops every run
    # step 1: column sums of rows j − k .. j + k, padded by k zero columns
    colm = np.zeros(w + 2 * k, np.int32)
    colx = np.zeros(w + 2 * k, np.int32)  # ≤ (2k+1)·BIG: fits for k ≤ 63
    coly = np.zeros(w + 2 * k, np.int64)
    # dispersed pixels of row j at hit[r:r + w]; r ones each side: the box of
    # the erosion is clipped at the image edge
    hit = np.ones(w + 2 * r, np.uint8)
    # step 2: rows eroded along the row (ring of rh ≥ 2r + 1 rows)
    rh = 1
    while rh < 2 * r + 1:
        rh *= 2
    hrow = np.zeros(rh * wpad, np.uint8)
    # step 3: core rows (ring of rc ≥ 2·k2 + 2 rows) and background column
    # sums, padded by k2 zero columns, kept for the columns near core runs
    rc = 1
    while rc < 2 * k2 + 2:
        rc *= 2
    core = np.zeros(rc * wpad, np.uint8)
    core_words = core.view(np.uint64)
    n_core_row = np.zeros(rc, np.int64)
    bgm = np.zeros(w + 2 * k2, np.int64)
    bgx = np.zeros(w + 2 * k2, np.int64)
    bg_row = np.full(w, -(1 << 40), np.int64)  # the centre row bgm/bgx hold
    cap = out_index.size
    n = 0
    n_valid = 0
    n_positive = 0
    for rr in range(min(k, h)):
        _add_rows(image, static_mask, hi, rr, -1, colm[k:], colx[k:], coly[k:])
    for j in range(h + r + k2):
        if j < h:  # step 1 and the horizontal erosion for row j
            ra = j + k if j + k < h else -1
            _add_rows(image, static_mask, hi, ra, j - k - 1, colm[k:], colx[k:], coly[k:])
            nv, npos = _dispersed_row(
                colm, colx, coly, image[j], static_mask[j], hi, k, sigma_b, gain, min_local, hit[r:]
            )
            n_valid += nv
            n_positive += npos
            o = (j & (rh - 1)) * wpad
            out = hrow[o : o + w]
            for i in range(w):
                out[i] = hit[i]
            for d in range(1, 2 * r + 1):
                for i in range(w):
                    out[i] &= hit[i + d]
        jc = j - r
        if 0 <= jc < h:  # vertical erosion: the core pixels of row jc
            oc = (jc & (rc - 1)) * wpad
            crow = core[oc : oc + w]
            crow[:] = 1
            for jj in range(max(0, jc - r), min(h, jc + r + 1)):
                o = (jj & (rh - 1)) * wpad
                other = hrow[o : o + w]
                for i in range(w):
                    crow[i] &= other[i]
            nc = 0
            for i in range(w):
                nc += crow[i]
            n_core_row[jc & (rc - 1)] = nc
        js = jc - k2
        if 0 <= js < h and n_core_row[js & (rc - 1)]:  # step 3 for row js
            oc = (js & (rc - 1)) * wpad
            crow = core[oc : oc + wpad]
            cwords = core_words[oc // 8 : (oc + wpad) // 8]
            i = _next_set(crow, cwords, 0, w)
            while i < w:
                i0 = i  # a run of core pixels: columns i0 .. i1 − 1
                while crow[i]:
                    i += 1
                i1 = i
                _background_columns(
                    image, static_mask, hi, core, rc, wpad, js, k2,
                    max(0, i0 - k2), min(w, i1 + k2), bgm, bgx, bg_row,
                )  # fmt: skip
                m = np.int64(0)
                x = np.int64(0)
                for d in range(2 * k2 + 1):
                    m += bgm[i0 + d]
                    x += bgx[i0 + d]
                for t in range(i0, i1):
                    if t > i0:
                        m += bgm[t + 2 * k2] - bgm[t - 1]
                        x += bgx[t + 2 * k2] - bgx[t - 1]
                    if _is_strong(image[js, t], x, m, sigma_s, gain, threshold):
                        if n >= cap:
                            return -1, n_valid, n_positive
                        out_index[n] = js * w + t
                        n += 1
                i = _next_set(crow, cwords, i, w)
    return n, n_valid, n_positive


@numba.njit(nogil=True, cache=True)
def _find_root(parent, a):
    while parent[a] != a:
        parent[a] = parent[parent[a]]
        a = parent[a]
    return a


@numba.njit(nogil=True, cache=True, inline="always")
def _join(parent, a, b):
    ra = _find_root(parent, a)
    rb = _find_root(parent, b)
    if ra != rb:
        parent[max(ra, rb)] = min(ra, rb)


@numba.njit(nogil=True, cache=True)
def label_spots(image, index, n):
    """Step 4: 4-connected components of the strong pixels ``index[:n]``
    (flat indices in raster order: a pixel's left neighbour is the entry
    before it, its upper neighbour is found by a second cursor one row behind).

    Returns per spot (in order of first pixel):
    pixel count, summed counts, intensity-weighted centroid x and y (px,
    pixel centres at +0.5), and the position of the brightest pixel (its
    first occurrence in raster order), all as a (n_spots, 6) float64 array.
    """
    w = image.shape[1]
    parent = np.arange(n)
    u = 0
    for p in range(n):
        q = index[p]
        if p > 0 and index[p - 1] == q - 1 and q % w != 0:
            _join(parent, p - 1, p)
        while index[u] < q - w:
            u += 1
        if index[u] == q - w:
            _join(parent, u, p)
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
    """Scratch space for one image size, reused frame after frame (one per
    thread): the list of strong pixels, room for a quarter of the image."""

    def __init__(self, shape: tuple[int, int]):
        self.shape = shape
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
    if k < 1:
        raise ValueError(f"kernel_size must be at least 1, not {k}")
    if static_mask.shape != image.shape:
        raise ValueError(f"mask shape {static_mask.shape} differs from image shape {image.shape}")
    hi = upper_limit(overload)
    on_module = np.ascontiguousarray(static_mask, dtype=np.bool_)
    n, n_valid, n_positive = find_strong_pixels(
        image,
        on_module,
        hi,
        k,
        params.sigma_background,
        params.sigma_strong,
        params.gain,
        params.min_local,
        params.global_threshold,
        ws.index,
    )
    if n < 0:  # the kernel stopped early: count over the whole frame
        valid = on_module & (image > -1) & (image < hi)
        n_valid = int(np.count_nonzero(valid))
        n_positive = int(np.count_nonzero(valid & (image > 0)))
    if n_positive == 0:
        raise UnusableFrame(f"blank frame: none of {n_valid} valid pixels has a positive count")
    if n < 0 or n > min(ws.index.size, int(params.max_strong_fraction * n_valid) + 1):
        raise TooManyStrongPixels(
            f"more than {params.max_strong_fraction:.0%} of {n_valid} valid pixels are strong"
        )
    table = label_spots(image, ws.index, n)
    size = table[:, 0]
    sep = np.hypot(table[:, 4] - table[:, 2], table[:, 5] - table[:, 3])
    keep = (
        (size >= params.min_spot_size)
        & (size <= params.max_spot_size)
        & (sep <= params.max_separation)
    )
    t = table[keep]
    return Spots(t[:, 2], t[:, 3], t[:, 1], t[:, 0].astype(np.int64), int(n))
