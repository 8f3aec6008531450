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

The box sums are exact integer sums: running column sums down the image
and, per row, direct (2k+1)-term sums across them, in a branch-free loop
that the compiler vectorises (the same numbers a summed-area table gives,
without its memory traffic).  Pixel validity is computed on the fly from
the static mask, the count and the overload.  Steps 2 and 3 work from the
lists of dispersed and core pixels (few on a diffraction frame): erosion is
done separably (row runs, then columns) and the background boxes are
summed only around runs of core pixels (whole-image scans take over when
the lists overflow).  Kernels are compiled with ``nogil=True`` so frames
can be processed in threads.  Pixel coordinates: (x, y) = (fast, slow), with the
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
    (either may be −1 = none).  Returns (valid, valid and positive) pixels
    of row ``ra``."""
    w = image.shape[1]
    nv = 0
    npos = 0
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
            nv += oka
            npos += xa > 0
    elif ra >= 0:
        ia, sa = image[ra], static_mask[ra]
        for i in range(w):
            va = ia[i]
            oka = sa[i] and va > -1 and va < hi
            xa = va if oka else 0
            colm[i] += np.int32(oka)
            colx[i] += xa
            coly[i] += np.int64(xa) * xa
            nv += oka
            npos += xa > 0
    elif rr >= 0:
        ir, sr = image[rr], static_mask[rr]
        for i in range(w):
            vr = ir[i]
            okr = sr[i] and vr > -1 and vr < hi
            xr = vr if okr else 0
            colm[i] -= np.int32(okr)
            colx[i] -= xr
            coly[i] -= np.int64(xr) * xr
    return nv, npos


@numba.njit(nogil=True, cache=True)
def dispersion_mask(image, static_mask, hi, k, sigma_b, gain, min_local, out, index):
    """Step 1: ``out`` = valid pixel whose (2k+1)² box fails the Poisson test.

    ``image`` int32 (slow, fast); ``static_mask`` bool (True = on a module,
    not masked); a pixel is valid when on a module, ≥ 0 and < ``hi`` (an
    integer, at most ``BIG``).  Per row, the column sums ``colm/colx/coly``
    (count, sum, sum of squares of the valid pixels in rows j−k..j+k; zero
    padding of k columns each side stands for the image edge) are updated
    for the row entering and the row leaving the box; the box sums are then
    direct (2k+1)-term sums over the padded columns, a branch-free loop the
    compiler vectorises.  All sums are exact integers; the test
    ``m·y − x² > x·gain·((m−1) + σ_b·√(2(m−1)))`` is evaluated in the same
    operations, hence to the same bits, as a scalar loop would.

    The flat indices of the dispersed pixels, in raster order, go to
    ``index`` (as many as fit).  Returns (dispersed, valid, valid with a
    count > 0) pixel numbers.
    """
    h, w = image.shape
    nb = 2 * k + 1
    colm = np.zeros(w + 2 * k, np.int32)
    colx = np.zeros(w + 2 * k, np.int32)  # ≤ (2k+1)·BIG: fits for k ≤ 63
    coly = np.zeros(w + 2 * k, np.int64)
    words = (w + 7) // 8
    hit = np.zeros(words * 8, np.uint8)
    hit_words = hit.view(np.uint64)
    cap = index.size
    n_valid = 0
    n_positive = 0
    n = 0
    for r in range(min(k, h)):
        nv, npos = _add_rows(image, static_mask, hi, r, -1, colm[k:], colx[k:], coly[k:])
        n_valid += nv
        n_positive += npos
    for j in range(h):
        ra = j + k if j + k < h else -1
        nv, npos = _add_rows(image, static_mask, hi, ra, j - k - 1, colm[k:], colx[k:], coly[k:])
        n_valid += nv
        n_positive += npos
        row, on_module = image[j], static_mask[j]
        cnt = 0
        if k == 3:  # the default: the 7 terms written out, so that the loop vectorises
            for i in range(w):
                m = colm[i] + colm[i + 1] + colm[i + 2] + colm[i + 3]
                m += colm[i + 4] + colm[i + 5] + colm[i + 6]
                x = colx[i] + colx[i + 1] + colx[i + 2] + colx[i + 3]
                x += colx[i + 4] + colx[i + 5] + colx[i + 6]
                y = coly[i] + coly[i + 1] + coly[i + 2] + coly[i + 3]
                y += coly[i + 4] + coly[i + 5] + coly[i + 6]
                # x ≥ 0 always: valid counts are ≥ 0
                h_i = (
                    _is_valid(row[i], on_module[i], hi)
                    & (m >= min_local)
                    & (float(m * y - np.int64(x) * x) > x * _dispersion_bound(m, sigma_b, gain))
                )
                hit[i] = h_i
                cnt += h_i
        else:
            for i in range(w):
                m = np.int64(0)
                x = np.int64(0)
                y = np.int64(0)
                for d in range(nb):
                    m += colm[i + d]
                    x += colx[i + d]
                    y += coly[i + d]
                h_i = (
                    _is_valid(row[i], on_module[i], hi)
                    & (m >= min_local)
                    & (float(m * y - x * x) > x * _dispersion_bound(m, sigma_b, gain))
                )
                hit[i] = h_i
                cnt += h_i
        if cnt:  # record the few hits, skipping 8 empty pixels at a time
            base = j * w
            c = n
            for q in range(words):
                if hit_words[q] != 0:
                    for i in range(q * 8, min(w, q * 8 + 8)):
                        if hit[i]:
                            if c < cap:
                                index[c] = base + i
                            c += 1
        out_row = out[j]
        for i in range(w):
            out_row[i] = hit[i]
        n += cnt
    return n, n_valid, n_positive


@numba.njit(nogil=True, cache=True, inline="always")
def _box_all_set(a, j, i, r):
    """All of ``a`` within Chebyshev distance ``r`` of (j, i), clipped at the edge."""
    h, w = a.shape
    for jj in range(max(0, j - r), min(h, j + r + 1)):
        for ii in range(max(0, i - r), min(w, i + r + 1)):
            if not a[jj, ii]:
                return False
    return True


@numba.njit(nogil=True, cache=True)
def erode(disp, r, disp_index, n_disp, core, core_index):
    """Step 2: set ``core`` at ``disp`` pixels with only ``disp`` pixels
    within Chebyshev distance ``r`` (box clipped at the image edge).

    Equivalent to "Chebyshev distance to the nearest non-dispersed pixel
    > r"; with r = k − 1 this is DIALS's erosion by the kernel size k.
    ``core`` must be all False on entry; only core pixels are written.

    When ``disp_index[:n_disp]`` holds all dispersed pixels (raster order),
    the box test is separable: a first pass finds, from the runs of
    consecutive indices, the pixels whose row segment i−r..i+r is all
    dispersed and stores that in ``disp`` (which is overwritten); a second
    looks at the 2r+1 rows above and below.  Otherwise every dispersed pixel
    of ``disp`` is checked box by box (``disp`` unchanged).  Flat indices of
    the core pixels, in raster order, go to ``core_index`` (as many as fit).
    Returns the number of core pixels.
    """
    h, w = disp.shape
    cap = core_index.size
    n = 0
    if n_disp <= disp_index.size:
        p = 0
        while p < n_disp:  # pass 1: horizontal erosion, run by run
            q0 = disp_index[p]
            j = q0 // w
            e = p + 1
            while e < n_disp and disp_index[e] == disp_index[e - 1] + 1 and disp_index[e] // w == j:
                e += 1
            a = q0 - j * w  # the run is columns a .. b − 1 of row j
            b = a + (e - p)
            row = disp[j]
            for i in range(a, b):
                row[i] = (i - r >= a or a == 0) and (i + r < b or b == w)
            p = e
        for p in range(n_disp):  # pass 2: vertical
            q = disp_index[p]
            j = q // w
            i = q - j * w
            keep = True
            for jj in range(max(0, j - r), min(h, j + r + 1)):
                if not disp[jj, i]:
                    keep = False
                    break
            if keep:
                core[j, i] = True
                if n < cap:
                    core_index[n] = q
                n += 1
    else:
        for j in range(h):
            for i in range(w):
                if disp[j, i] and _box_all_set(disp, j, i, r):
                    core[j, i] = True
                    if n < cap:
                        core_index[n] = j * w + i
                    n += 1
    return n


@numba.njit(nogil=True, cache=True)
def clear_core(core, core_index, n_core):
    """Reset ``core`` to all False after :func:`erode` set ``n_core`` pixels."""
    if n_core <= core_index.size:
        w = core.shape[1]
        for p in range(n_core):
            q = core_index[p]
            core[q // w, q % w] = False
    else:
        core[:] = False


@numba.njit(nogil=True, cache=True, inline="always")
def _is_strong(v, x, m, sigma_s, gain, threshold):
    """Count ``v`` above ``threshold`` and ≥ μ + σ_s·√(gain·μ), μ = x/m (0 if m < 2)."""
    mean = x / m if m >= 2 else 0.0
    return v > threshold and v >= mean + sigma_s * math.sqrt(gain * mean)


@numba.njit(nogil=True, cache=True)
def _strong_sparse(
    image, static_mask, hi, core, core_index, n_core, k2, sigma_s, gain, threshold, out_index
):
    """:func:`strong_pixels` for few core pixels, taken run by run (runs of
    neighbouring core pixels in a row).  Background column sums over rows
    j−k2..j+k2 are kept only for the columns within k2 of a run; a column
    already summed for the row above is updated by one row in and one row
    out, any other is summed afresh.  The box then slides along the run."""
    h, w = image.shape
    nb = 2 * k2 + 1
    colm = np.zeros(w + 2 * k2, np.int64)  # padded: column c at c + k2; pads stay 0
    colx = np.zeros(w + 2 * k2, np.int64)
    col_row = np.full(w, -2, np.int64)  # the centre row colm/colx hold for
    cap = out_index.size
    n = 0
    p = 0
    while p < n_core:
        q0 = core_index[p]
        j = q0 // w
        e = p + 1
        while e < n_core and core_index[e] == core_index[e - 1] + 1 and core_index[e] // w == j:
            e += 1
        i0 = q0 - j * w  # the run is columns i0 .. i1 − 1
        i1 = i0 + (e - p)
        for c in range(max(0, i0 - k2), min(w, i1 + k2)):
            if col_row[c] == j:
                continue
            m = np.int64(0)
            x = np.int64(0)
            if col_row[c] == j - 1:
                m = colm[c + k2]
                x = colx[c + k2]
                for jj, sign in ((j + k2, 1), (j - k2 - 1, -1)):
                    if 0 <= jj < h:
                        v = image[jj, c]
                        ok = _is_valid(v, static_mask[jj, c], hi) and not core[jj, c]
                        m += sign * ok
                        x += sign * ok * v
            else:
                for jj in range(max(0, j - k2), min(h, j + k2 + 1)):
                    v = image[jj, c]
                    ok = _is_valid(v, static_mask[jj, c], hi) and not core[jj, c]
                    m += ok
                    x += ok * v
            colm[c + k2] = m
            colx[c + k2] = x
            col_row[c] = j
        m = np.int64(0)
        x = np.int64(0)
        for d in range(nb):
            m += colm[i0 + d]
            x += colx[i0 + d]
        for i in range(i0, i1):
            if i > i0:
                m += colm[i + 2 * k2] - colm[i - 1]
                x += colx[i + 2 * k2] - colx[i - 1]
            if _is_strong(image[j, i], x, m, sigma_s, gain, threshold):
                if n >= cap:
                    return -1
                out_index[n] = j * w + i
                n += 1
        p = e
    return n


@numba.njit(nogil=True, cache=True)
def _strong_dense(image, static_mask, hi, core, k2, sigma_s, gain, threshold, out_index):
    """:func:`strong_pixels` for many core pixels: running background column
    sums down the whole image; the box is summed only at core pixels."""
    h, w = image.shape
    colm = np.zeros(w, np.int64)
    colx = np.zeros(w, np.int64)
    cap = out_index.size
    n = 0
    for jj in range(-k2, h):
        for rr, sign in ((jj + k2, 1), (jj - k2 - 1, -1)):
            if 0 <= rr < h:
                for i in range(w):
                    v = image[rr, i]
                    ok = _is_valid(v, static_mask[rr, i], hi) and not core[rr, i]
                    colm[i] += sign * ok
                    colx[i] += sign * ok * v
        if jj < 0:
            continue
        for i in range(w):
            if core[jj, i]:
                m = np.int64(0)
                x = np.int64(0)
                for ii in range(max(0, i - k2), min(w, i + k2 + 1)):
                    m += colm[ii]
                    x += colx[ii]
                if _is_strong(image[jj, i], x, m, sigma_s, gain, threshold):
                    if n >= cap:
                        return -1
                    out_index[n] = jj * w + i
                    n += 1
    return n


@numba.njit(nogil=True, cache=True)
def strong_pixels(
    image, static_mask, hi, core, core_index, n_core, k2, sigma_s, gain, threshold, out_index
):
    """Step 3: flat indices of strong pixels, in raster order, into ``out_index``.

    Background = valid (as in :func:`dispersion_mask`) and not ``core``;
    μ = mean background count in the (2·k2+1)² box (0 when fewer than 2
    background pixels).  With the core pixels listed in ``core_index`` (they
    are few on a diffraction frame) only the boxes around them are summed;
    otherwise background column sums run down the whole image.  Returns the
    number of strong pixels, or −1 when ``out_index`` is too small.
    """
    if n_core <= core_index.size:
        return _strong_sparse(
            image,
            static_mask,
            hi,
            core,
            core_index,
            n_core,
            k2,
            sigma_s,
            gain,
            threshold,
            out_index,
        )
    return _strong_dense(image, static_mask, hi, core, k2, sigma_s, gain, threshold, out_index)


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
    """Scratch arrays for one image size, reused frame after frame (one per thread).

    ``disp_index`` holds up to 1/8 of the pixels, ``core_index`` up to 2 %
    (above that the kernels fall back to whole-image scans); ``core`` and
    ``labels`` are kept all False / −1 between frames.
    """

    def __init__(self, shape: tuple[int, int]):
        n = shape[0] * shape[1]
        self.shape = shape
        self.disp = np.empty(shape, np.bool_)
        self.core = np.zeros(shape, np.bool_)
        self.disp_index = np.empty(n // 8 + 1, np.int32)
        self.core_index = np.empty(n // 50 + 1, np.int32)
        self.labels = np.full(n, -1, np.int32)
        self.index = np.empty(n // 4 + 1, np.int64)


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
    if image.size >= 1 << 31:
        raise ValueError(f"image of {image.size} pixels is too large (flat indices are int32)")
    hi = upper_limit(overload)
    on_module = np.ascontiguousarray(static_mask, dtype=np.bool_)
    n_disp, n_valid, n_positive = dispersion_mask(
        image,
        on_module,
        hi,
        k,
        params.sigma_background,
        params.gain,
        params.min_local,
        ws.disp,
        ws.disp_index,
    )
    if n_positive == 0:
        raise UnusableFrame(f"blank frame: none of {n_valid} valid pixels has a positive count")
    cap = min(ws.index.size, int(params.max_strong_fraction * n_valid) + 1)
    n_core = -1
    try:
        n_core = erode(ws.disp, k - 1, ws.disp_index, n_disp, ws.core, ws.core_index)
        n = strong_pixels(
            image,
            on_module,
            hi,
            ws.core,
            ws.core_index,
            n_core,
            k + 2,
            params.sigma_strong,
            params.gain,
            params.global_threshold,
            ws.index[:cap],
        )
    finally:  # leave ``core`` all False for the next frame
        if n_core < 0:
            ws.core[:] = False
        else:
            clear_core(ws.core, ws.core_index, n_core)
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
