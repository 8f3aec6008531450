"""Diffraction geometry in the DIALS laboratory frame (pure numpy functions).

Conventions (those dxtbx assigns to a PILATUS miniCBF file, checked with
``dials.import`` / ``dials.show`` on the simulator's output):

* beam along -z: s0 = (0, 0, -1/λ) (Å⁻¹);
* rotation axis m = (1, 0, 0) by default (:data:`ROTATION_AXIS`), right-handed
  rotation by +φ; every function that rotates takes the axis as a parameter, as
  electron microscopes have their tilt axis anywhere in the detector plane;
* detector fast axis f = (1, 0, 0), slow axis s = (0, -1, 0), normal along -z at
  ``distance`` mm; the beam hits pixel coordinate ``beam_xy`` (fast, slow) in pixel
  units measured from the outer corner of the first pixel (pixel i covers [i, i+1));
* crystal setting matrix A = U·B (DIALS/cctbx: B is the transpose of the
  fractionalisation matrix), so the reciprocal-lattice vector of h at φ = 0 is
  r0 = A·h (Å⁻¹) and at angle φ it is R(m, φ)·r0;
* a ray s1 is recorded at the geometric intersection shifted outward by the
  parallax of a silicon sensor of thickness t0, as in dxtbx's
  ParallaxCorrectedPxMmStrategy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import erf

ROTATION_AXIS = np.array([1.0, 0.0, 0.0])
FAST_AXIS = np.array([1.0, 0.0, 0.0])
SLOW_AXIS = np.array([0.0, -1.0, 0.0])


@dataclass(frozen=True)
class Detector:
    """A flat single-panel detector normal to the beam.

    Sizes in pixels (fast, slow), pixel size and distance in mm, beam centre in
    pixels (fast, slow) from the corner of the first pixel, sensor thickness in mm
    and its linear attenuation coefficient mu in mm⁻¹ (0 disables parallax).
    """

    n_fast: int = 981
    n_slow: int = 1043
    pixel_mm: float = 0.172
    distance_mm: float = 150.0
    beam_fast_px: float = 490.5
    beam_slow_px: float = 521.5
    thickness_mm: float = 0.45
    mu_per_mm: float = 0.0

    @property
    def origin(self) -> np.ndarray:
        """Lab position (mm) of the corner of pixel (0, 0)."""
        return (
            -self.beam_fast_px * self.pixel_mm * FAST_AXIS
            - self.beam_slow_px * self.pixel_mm * SLOW_AXIS
            + np.array([0.0, 0.0, -self.distance_mm])
        )


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly distributed random rotation matrix (from a random unit quaternion)."""
    q = rng.normal(size=4)
    w, x, y, z = q / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def b_matrix(cell: tuple[float, ...]) -> np.ndarray:
    """DIALS B matrix (Å⁻¹) of a unit cell (a, b, c Å; α, β, γ degrees).

    Columns are the reciprocal axes a*, b*, c* in the Cartesian frame where
    a* ∥ x... following cctbx: B = (fractionalisation matrix)ᵀ.
    """
    import gemmi

    frac = np.array(gemmi.UnitCell(*cell).frac.mat.tolist())
    return frac.T


def rotation_angles(
    r0: np.ndarray, s0: np.ndarray, axis: np.ndarray = ROTATION_AXIS
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The two rotation angles φ (radians) that bring each r0 (N×3, Å⁻¹) onto the Ewald sphere.

    Solves |s0 + R(axis, φ)·r0| = |s0|, i.e. s0·r(φ) = -|r0|²/2.  Returns
    (phi_a, phi_b, ok) with ok False where the reflection never diffracts (in
    the blind region or beyond the limiting sphere).
    """
    m = np.asarray(axis, float) / np.linalg.norm(axis)
    r_par = (r0 @ m)[:, None] * m
    r_perp = r0 - r_par
    r_cross = np.cross(m, r_perp)
    # s0·r(φ) = s0·r_par + cos φ s0·r_perp + sin φ s0·(m × r_perp)
    a = r_perp @ s0
    b = r_cross @ s0
    c = -0.5 * np.einsum("ij,ij->i", r0, r0) - r_par @ s0
    rho = np.hypot(a, b)
    with np.errstate(invalid="ignore", divide="ignore"):
        cosd = c / rho
    ok = np.abs(cosd) <= 1.0
    delta = np.arccos(np.clip(cosd, -1, 1))
    base = np.arctan2(b, a)
    return base + delta, base - delta, ok


def rotate_about_axis(r0: np.ndarray, phi: np.ndarray, axis: np.ndarray = ROTATION_AXIS):
    """R(axis, φ)·r0 for N vectors r0 (N×3) and N angles φ (radians)."""
    m = np.asarray(axis, float) / np.linalg.norm(axis)
    cos, sin = np.cos(phi)[:, None], np.sin(phi)[:, None]
    r_par = (r0 @ m)[:, None] * m
    return r_par + cos * (r0 - r_par) + sin * np.cross(m, r0)


def ray_intersection(s1: np.ndarray, det: Detector) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixel coordinates (fast, slow; float, pixel i spans [i, i+1)) where rays s1 are recorded.

    Includes the sensor parallax shift (dxtbx convention).  Returns (x_px, y_px, ok),
    ok False for rays that miss the detector plane or fall outside it.
    """
    d = np.column_stack([FAST_AXIS, SLOW_AXIS, det.origin])
    v = s1 @ np.linalg.inv(d).T
    with np.errstate(invalid="ignore", divide="ignore"):
        x_mm = v[:, 0] / v[:, 2]
        y_mm = v[:, 1] / v[:, 2]
    ok = v[:, 2] > 0
    if det.mu_per_mm > 0 and det.thickness_mm > 0:
        dx, dy = parallax_shift(s1, det)
        x_mm = x_mm + dx
        y_mm = y_mm + dy
    x = x_mm / det.pixel_mm
    y = y_mm / det.pixel_mm
    ok &= (x >= 0) & (x < det.n_fast) & (y >= 0) & (y < det.n_slow)
    return x, y, ok


def parallax_shift(s1: np.ndarray, det: Detector) -> tuple[np.ndarray, np.ndarray]:
    """In-plane shift (mm, fast and slow) between the geometric and the recorded spot position.

    The mean absorption depth along the ray in a sensor of thickness t0 and
    attenuation μ is o = 1/μ − (t + 1/μ)·exp(−μ t), t = t0 / cos(angle to the normal);
    the recorded position moves by o times the in-plane direction of s1.
    """
    u = s1 / np.linalg.norm(s1, axis=1)[:, None]
    normal = np.cross(FAST_AXIS, SLOW_AXIS)
    cos_t = np.abs(u @ normal)
    mu, t0 = det.mu_per_mm, det.thickness_mm
    t = t0 / cos_t
    o = 1.0 / mu - (t + 1.0 / mu) * np.exp(-mu * t)
    return o * (u @ FAST_AXIS), o * (u @ SLOW_AXIS)


def zeta(s1: np.ndarray, s0: np.ndarray, axis: np.ndarray = ROTATION_AXIS) -> np.ndarray:
    """ζ = m·e1 with e1 = (s1 × s0)/|s1 × s0| (DIALS/XDS): a reflection's rocking width in φ is
    σ_m/|ζ|, and reflections with |ζ| < 0.05 (close to the rotation axis) are not recorded."""
    e1 = np.cross(s1, s0)
    return (e1 / np.linalg.norm(e1, axis=1)[:, None]) @ axis


def lorentz_factor(s1: np.ndarray, s0: np.ndarray, axis: np.ndarray = ROTATION_AXIS) -> np.ndarray:
    """Lorentz factor of a rotation: 1/|m·(ŝ1 × ŝ0)| (DIALS applies the inverse as correction)."""
    u1 = s1 / np.linalg.norm(s1, axis=1)[:, None]
    u0 = s0 / np.linalg.norm(s0)
    return 1.0 / np.maximum(np.abs(np.cross(u1, u0) @ axis), 1e-9)


def polarization_factor(
    s1: np.ndarray, s0: np.ndarray, fraction: float = 0.99, normal=(0.0, 1.0, 0.0)
) -> np.ndarray:
    """Fraction of intensity scattered along s1 (DIALS convention; the correction is 1/P).

    ``fraction`` is the fraction of the beam polarised in the plane whose normal
    is ``normal`` (horizontal plane for a synchrotron: normal = +y).
    """
    u1 = s1 / np.linalg.norm(s1, axis=1)[:, None]
    u0 = s0 / np.linalg.norm(s0)
    p1 = u1 @ np.asarray(normal)
    cos2t = u1 @ u0
    return (1 - 2 * fraction) * (1 - p1**2) + fraction * (1 + cos2t**2)


def frame_fraction(phi_c: np.ndarray, sigma: np.ndarray, start: float, width: float) -> np.ndarray:
    """Fraction of a Gaussian rocking curve (centre φ_c, width σ; degrees) inside [start, start+width]."""
    k = 1.0 / (np.sqrt(2.0) * sigma)
    return 0.5 * (erf((start + width - phi_c) * k) - erf((start - phi_c) * k))


def pixel_profile(
    centre: np.ndarray, sigma: np.ndarray, half: int
) -> tuple[np.ndarray, np.ndarray]:
    """1-D Gaussian spot profile integrated over pixels.

    For N spot centres (pixel units) returns (first_pixel[N], weights[N, 2·half+1])
    where weights[k, j] is the fraction of spot k falling in pixel first_pixel+j.
    """
    first = np.floor(centre).astype(np.int64) - half
    edges = first[:, None] + np.arange(2 * half + 2)[None, :]
    cdf = 0.5 * (1 + erf((edges - centre[:, None]) / (np.sqrt(2.0) * sigma[:, None])))
    return first, np.diff(cdf, axis=1)


def d_spacing_at(x_px: np.ndarray, y_px: np.ndarray, det: Detector, wavelength: float):
    """Resolution d (Å) of detector pixel positions (no parallax)."""
    dx = (x_px - det.beam_fast_px) * det.pixel_mm
    dy = (y_px - det.beam_slow_px) * det.pixel_mm
    two_theta = np.arctan2(np.hypot(dx, dy), det.distance_mm)
    with np.errstate(divide="ignore"):
        return wavelength / (2 * np.sin(two_theta / 2))


def silicon_mu_per_mm(wavelength: float) -> float:
    """Linear attenuation coefficient of silicon (mm⁻¹) at ``wavelength`` Å.

    Log-log interpolation of tabulated values (NIST XCOM, total with coherent,
    ρ = 2.33 g/cm³); good to a few per cent between 0.5 and 2 Å.
    """
    # energy keV -> mass attenuation cm^2/g
    table_e = np.array([6.0, 8.0, 10.0, 12.0, 15.0, 20.0, 30.0])
    table_mu = np.array([154.5, 68.5, 33.89, 20.2, 10.34, 4.464, 1.436])
    e_kev = 12.398419843 / wavelength
    mass = np.exp(np.interp(np.log(e_kev), np.log(table_e), np.log(table_mu)))
    return float(mass * 2.33 / 10.0)
