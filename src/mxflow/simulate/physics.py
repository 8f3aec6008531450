"""Reflection lists, intensities, background and noise for simulated frames.

All functions are pure numpy: reciprocal-space vectors in Å⁻¹, angles in
degrees unless named ``_rad``, detector positions in pixels (fast, slow).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mxflow.simulate import geometry as geo


@dataclass
class SpotList:
    """The reflections of one crystal that reach the detector during a sweep.

    Arrays of length N: ``hkl`` (as indexed by the crystal's A matrix),
    ``phi`` (degrees, centre of the rocking curve), ``sigma_phi`` (degrees),
    ``x``, ``y`` (recorded position, pixels), ``sigma_px`` (spot width, pixels),
    ``full`` (expected counts of the whole reflection on the detector), ``d`` (Å).
    """

    hkl: np.ndarray
    phi: np.ndarray
    sigma_phi: np.ndarray
    x: np.ndarray
    y: np.ndarray
    sigma_px: np.ndarray
    full: np.ndarray
    d: np.ndarray

    def take(self, idx: np.ndarray) -> SpotList:
        return SpotList(*(getattr(self, f)[idx] for f in self.__dataclass_fields__))

    def __len__(self) -> int:
        return len(self.phi)


def miller_indices(cell: tuple[float, ...], d_min: float) -> np.ndarray:
    """All Miller indices (N×3, P1, without 0,0,0) with d ≥ d_min (Å)."""
    a, b, c = cell[:3]
    hmax, kmax, lmax = (int(np.ceil(x / d_min)) for x in (a, b, c))
    hh, kk, ll = np.meshgrid(
        np.arange(-hmax, hmax + 1),
        np.arange(-kmax, kmax + 1),
        np.arange(-lmax, lmax + 1),
        indexing="ij",
    )
    hkl = np.column_stack([hh.ravel(), kk.ravel(), ll.ravel()])
    bmat = geo.b_matrix(cell)
    s2 = np.einsum("ij,ij->i", hkl @ bmat.T, hkl @ bmat.T)
    keep = (s2 <= 1.0 / d_min**2) & (s2 > 0)
    return hkl[keep]


def spot_width_px(mosaicity: float, divergence: float, det: geo.Detector, psf_px: float) -> float:
    """Gaussian σ (pixels) of a spot: detector point spread plus beam divergence and
    mosaic spread (degrees, σ) projected over the crystal-to-detector distance."""
    ang = np.radians(divergence + 0.5 * mosaicity)
    return float(np.hypot(psf_px, ang * det.distance_mm / det.pixel_mm))


def spot_width_by_resolution_px(
    mosaicity: float,
    divergence: float,
    det: geo.Detector,
    psf_px: float,
    wavelength: float,
    d: np.ndarray,
) -> np.ndarray:
    """Gaussian σ (pixels) of each spot when its size follows resolution d (Å).

    A mosaic block tilted by η moves the reciprocal-lattice point by |r|·η across
    the beam, which turns the diffracted ray by about η·λ/d (radians): small for
    electrons (λ/d ~ 0.01), so MicroED spots stay a few pixels wide even with a
    rocking width of a degree.  Beam divergence (degrees, σ) turns every ray by
    itself; both are projected over the distance and added to the detector's
    point spread ``psf_px`` in quadrature.
    """
    mosaic = np.radians(mosaicity) * wavelength / np.asarray(d, float)
    ang = np.hypot(mosaic, np.radians(divergence))
    return np.hypot(psf_px, ang * det.distance_mm / det.pixel_mm)


def predict_rotation(
    A: np.ndarray,
    hkl: np.ndarray,
    wavelength: float,
    det: geo.Detector,
    phi_range: tuple[float, float],
    mosaicity: float,
    divergence: float,
    margin: float = 3.0,
    axis: np.ndarray | tuple[float, float, float] = (1.0, 0.0, 0.0),
    polarization_fraction: float = 0.999,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Where and when reflections diffract in a rotation sweep.

    A: setting matrix UB at φ = 0 (Å⁻¹); hkl: N×3; phi_range (start, end) in
    degrees; ``axis`` the rotation axis (DIALS lab frame, any length);
    ``polarization_fraction`` of the beam (0.5: unpolarised, as for electrons).
    Returns (index into hkl, φ_c degrees, σ_φ degrees, x px, y px, LP factor)
    for every diffraction event inside [start − margin, end + margin] that hits
    the detector.  σ_φ = √(mosaicity² + divergence²) / |ζ|.
    """
    m = np.asarray(axis, float) / np.linalg.norm(axis)
    s0 = np.array([0.0, 0.0, -1.0 / wavelength])
    r0 = hkl @ A.T
    pa, pb, ok = geo.rotation_angles(r0, s0, m)
    idx_all, phi_all = [], []
    lo = phi_range[0] - margin
    hi = phi_range[1] + margin
    for phi in (pa, pb):
        deg = np.degrees(phi)
        base = lo + np.mod(deg - lo, 360.0)
        turn = 0
        while True:
            val = base + 360.0 * turn
            sel = ok & (val <= hi)
            if not sel.any():
                break
            idx_all.append(np.flatnonzero(sel))
            phi_all.append(val[sel])
            turn += 1
    idx = np.concatenate(idx_all) if idx_all else np.zeros(0, int)
    phic = np.concatenate(phi_all) if phi_all else np.zeros(0)
    r = geo.rotate_about_axis(r0[idx], np.radians(phic), m)
    s1 = s0 + r
    x, y, hit = geo.ray_intersection(s1, det)
    z = geo.zeta(s1, s0, m)
    hit &= np.abs(z) > 0.05
    lp = geo.polarization_factor(s1, s0, fraction=polarization_fraction) * geo.lorentz_factor(
        s1, s0, m
    )
    sigma_phi = np.hypot(mosaicity, divergence) / np.maximum(np.abs(z), 0.05)
    sel = np.flatnonzero(hit)
    return idx[sel], phic[sel], sigma_phi[sel], x[sel], y[sel], lp[sel]


def predict_still(
    A: np.ndarray,
    hkl: np.ndarray,
    wavelength: float,
    det: geo.Detector,
    mosaicity: float,
    bandwidth: float = 2e-4,
    cutoff: float = 0.01,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Reflections recorded on a still (zero-oscillation) frame.

    The fraction recorded is exp(−ε²/2σ²) with ε = |s0 + r| − |s0| (Å⁻¹) the
    distance from the Ewald sphere and σ = |r|·mosaicity(rad) + bandwidth·|s0|.
    Returns (index into hkl, fraction, x px, y px, LP factor) where fraction > cutoff.
    """
    s0 = np.array([0.0, 0.0, -1.0 / wavelength])
    r = hkl @ A.T
    s1 = s0 + r
    eps = np.linalg.norm(s1, axis=1) - 1.0 / wavelength
    sig = np.linalg.norm(r, axis=1) * np.radians(mosaicity) + bandwidth / wavelength
    frac = np.exp(-0.5 * (eps / sig) ** 2)
    near = np.flatnonzero(frac > cutoff)
    # the ray is drawn through the nearest point of the Ewald sphere
    s1n = s1[near] / np.linalg.norm(s1[near], axis=1)[:, None] / wavelength
    x, y, hit = geo.ray_intersection(s1n, det)
    lp = geo.polarization_factor(s1n, s0, fraction=0.999)
    sel = np.flatnonzero(hit)
    return near[sel], frac[near][sel], x[sel], y[sel], lp[sel]


def background_map(
    det: geo.Detector,
    wavelength: float,
    level: float,
    ring_level: float,
    ring_d: float = 3.2,
    ring_width: float = 0.012,
    halo_level: float = 0.0,
    halo_width: float = 0.025,
) -> np.ndarray:
    """Expected background counts per pixel (slow, fast).

    A smooth term falling from ``level`` near the beam to 0.6·level at high
    angle (air and diffuse scatter) plus a solvent ring, a Gaussian in s = 1/d
    centred at 1/ring_d Å⁻¹ of σ ``ring_width`` Å⁻¹ and peak ``ring_level``;
    with ``halo_level`` > 0 also the inelastic halo of electron diffraction
    around the direct beam, a Gaussian in s of σ ``halo_width`` Å⁻¹ and peak
    ``halo_level`` counts.
    """
    ys, xs = np.mgrid[0 : det.n_slow, 0 : det.n_fast].astype(np.float64) + 0.5
    d = geo.d_spacing_at(xs, ys, det, wavelength)
    s = 1.0 / d
    smooth = level * (0.6 + 0.4 * np.exp(-((s / 0.35) ** 2)))
    ring = ring_level * np.exp(-0.5 * ((s - 1.0 / ring_d) / ring_width) ** 2)
    if halo_level > 0:
        ring = ring + halo_level * np.exp(-0.5 * (s / halo_width) ** 2)
    return smooth + ring


def pilatus_gap_mask(
    n_fast: int, n_slow: int, module: tuple[int, int] = (487, 195), gap: tuple[int, int] = (7, 17)
) -> np.ndarray:
    """Boolean (slow, fast) mask, True on the inter-module gaps of a PILATUS-style detector.

    Modules of module[0] × module[1] pixels (fast × slow) separated by gap[0]
    pixels along fast and gap[1] along slow, starting at pixel (0, 0).
    """
    mask = np.zeros((n_slow, n_fast), dtype=bool)
    fx = np.arange(n_fast) % (module[0] + gap[0]) >= module[0]
    sy = np.arange(n_slow) % (module[1] + gap[1]) >= module[1]
    mask[:, fx] = True
    mask[sy, :] = True
    return mask


def render_spots(
    shape: tuple[int, int], x: np.ndarray, y: np.ndarray, sigma: np.ndarray, counts: np.ndarray
) -> np.ndarray:
    """Expected counts (slow, fast) of Gaussian spots integrated over pixels.

    Only a box of ±⌈3σ⌉ pixels around each spot is computed.
    """
    n_slow, n_fast = shape
    out = np.zeros(n_slow * n_fast)
    if len(x) == 0:
        return out.reshape(shape)
    half = int(np.ceil(3 * float(np.max(sigma))))
    fx0, wx = geo.pixel_profile(x, sigma, half)
    fy0, wy = geo.pixel_profile(y, sigma, half)
    n = 2 * half + 1
    px = fx0[:, None] + np.arange(n)[None, :]
    py = fy0[:, None] + np.arange(n)[None, :]
    val = counts[:, None, None] * wy[:, :, None] * wx[:, None, :]
    ix = np.broadcast_to(px[:, None, :], val.shape)
    iy = np.broadcast_to(py[:, :, None], val.shape)
    inside = (ix >= 0) & (ix < n_fast) & (iy >= 0) & (iy < n_slow)
    flat = iy[inside] * n_fast + ix[inside]
    out += np.bincount(flat, weights=val[inside], minlength=n_slow * n_fast)
    return out.reshape(shape)


def noisy_frame(
    expected: np.ndarray, gaps: np.ndarray, rng: np.random.Generator, cutoff: int = 1048574
) -> np.ndarray:
    """Poisson counts (int32) from expected counts; gap pixels set to −1, counts clipped at cutoff."""
    img = rng.poisson(expected).astype(np.int64)
    np.minimum(img, cutoff, out=img)
    img = img.astype(np.int32)
    img[gaps] = -1
    return img


def wilson_normaliser(d: np.ndarray, intensity: np.ndarray, d_min: float) -> float:
    """Mean true intensity of the outermost shell (d_min ≤ d < 1.1·d_min)."""
    sel = (d >= d_min) & (d < 1.1 * d_min)
    if not sel.any():
        sel = d <= np.quantile(d, 0.05)
    return float(np.mean(intensity[sel]))
