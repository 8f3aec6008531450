"""Resolution of spot positions, ice-ring bands and a per-frame d_min estimate.

Geometry: a flat detector perpendicular to the beam (no two-theta offset),
as for raster scans; spot positions in pixels (x fast, y slow) with the first
pixel spanning 0..1, beam centre in the same convention, pixel size and
distance in mm, wavelength and d in Å, s = 1/d in Å⁻¹.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

# Hexagonal ice Ih, as DIALS uses for its ice-ring filter (Å, degrees; P 63/m m c)
ICE_CELL = (4.498, 4.498, 7.338, 90.0, 90.0, 120.0)
ICE_SPACE_GROUP = 194
# full width of an ice-ring band in d*² = 1/d² (Å⁻²), DIALS's default
ICE_WIDTH_DSTAR_SQ = 0.002


def spot_resolution(
    x: np.ndarray,
    y: np.ndarray,
    wavelength: float,
    distance: float,
    beam_center: tuple[float, float],
    pixel_size: tuple[float, float],
) -> np.ndarray:
    """d (Å) at detector positions ``x, y`` (px); ``inf`` at the beam centre."""
    dx = (np.asarray(x, float) - beam_center[0]) * pixel_size[0]
    dy = (np.asarray(y, float) - beam_center[1]) * pixel_size[1]
    two_theta = np.arctan2(np.hypot(dx, dy), distance)
    with np.errstate(divide="ignore"):
        return wavelength / (2.0 * np.sin(two_theta / 2.0))


@lru_cache(maxsize=8)
def ice_ring_d_spacings(d_min: float = 1.0) -> tuple[float, ...]:
    """d (Å) of the allowed reflections of hexagonal ice down to ``d_min``,
    distinct values only, from low to high resolution (gemmi does the
    crystallography)."""
    import gemmi

    cell = gemmi.UnitCell(*ICE_CELL)
    ops = gemmi.SpaceGroup(ICE_SPACE_GROUP).operations()
    hkls = gemmi.make_miller_array(cell, gemmi.SpaceGroup(ICE_SPACE_GROUP), d_min)
    ds = {
        round(cell.calculate_d(list(map(int, h))), 4)
        for h in hkls
        if not ops.is_systematically_absent(list(map(int, h)))
    }
    return tuple(sorted(ds, reverse=True))


def in_ice_ring(d: np.ndarray, width: float = ICE_WIDTH_DSTAR_SQ) -> np.ndarray:
    """True where d (Å) lies within ±width/2 (in 1/d², Å⁻²) of an ice ring."""
    d = np.asarray(d, float)
    dstar_sq = np.where(np.isfinite(d) & (d > 0), 1.0 / np.square(d), 0.0)
    finite = d[np.isfinite(d) & (d > 0)]
    if finite.size == 0:
        return np.zeros(d.shape, bool)
    rings = 1.0 / np.square(np.array(ice_ring_d_spacings(max(0.5, float(finite.min()) * 0.95))))
    return (np.abs(dstar_sq[..., None] - rings) <= width / 2).any(axis=-1)


def estimate_d_min(d: np.ndarray, quantile: float = 0.95, min_spots: int = 10) -> float | None:
    """The resolution (Å) where the spots run out: the ``quantile`` of the
    spots' s = 1/d, so that a few stray noise spots at the edge do not set it.

    None when fewer than ``min_spots`` spots have a finite resolution.
    """
    d = np.asarray(d, float)
    d = d[np.isfinite(d) & (d > 0)]
    if d.size < min_spots:
        return None
    return float(1.0 / np.quantile(1.0 / d, quantile))
