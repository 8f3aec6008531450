"""Raster (grid) scans of stills: some grid cells hit a crystal, the rest are blank.

Frames have zero oscillation; a hit shows the still pattern of a randomly
oriented crystal of population A.  The truth lists, per frame, the grid
position, whether it is a hit and the expected position (pixels, fast/slow)
and counts of every spot with at least ``min_counts`` expected counts, so hit
finders can be scored for recall and precision.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mxflow.simulate import crystal as xtal
from mxflow.simulate import geometry as geo
from mxflow.simulate import physics
from mxflow.simulate.header import image_header

STILL_GAIN = 4.0  # stills are exposed for the whole rocking curve: scale to a few hundred spots


def raster_location(cfg, out: Path, pin: int = 1) -> tuple[Path, str]:
    """Directory and prefix of a raster scan: ZOO OUT/<puck>-<pin>/scan00/2d/, plain OUT/scan00/."""
    if cfg.layout == "zoo":
        return out / f"{cfg.zoo_puck}-{pin:02d}" / "scan00" / "2d", "raster"
    return out / "scan00", "raster"


def still_spots(pop, U, scale, cfg, det, min_counts: float = 0.02):
    """Expected spots (x px, y px, counts, hkl) of one still of a crystal with orientation U."""
    A = U @ geo.b_matrix(pop.cell)
    hkl = physics.miller_indices(pop.cell, cfg.d_min)
    true_i = pop.truth.lookup(hkl)
    keep = np.isfinite(true_i)
    hkl, true_i = hkl[keep], true_i[keep] / pop.normaliser
    idx, frac, x, y, pol = physics.predict_still(A, hkl, cfg.wavelength, det, cfg.mosaicity)
    counts = STILL_GAIN * cfg.counts_at_dmin * scale * true_i[idx] * frac * pol
    on = counts > min_counts
    return x[on], y[on], counts[on], hkl[idx][on]


def simulate_raster(
    out: Path, cfg, det, pops, background, gaps, rng: np.random.Generator, pin: int = 1
):
    """Write the raster scan frames of one pin; return (directory, truth record)."""
    from mxflow.simulate.writers import make_writer

    rows, cols = cfg.raster_grid
    directory, prefix = raster_location(cfg, out, pin)
    writer = make_writer(cfg.format, directory, prefix, cfg, det)
    sigma = physics.spot_width_px(cfg.mosaicity, cfg.divergence, det, cfg.psf_px)
    frames = []
    for n in range(rows * cols):
        hit = bool(rng.random() < cfg.raster_hit_fraction)
        expected = background.copy()
        spots: list[list[float]] = []
        if hit:
            U = geo.random_rotation(rng)
            scale = float(np.exp(rng.uniform(np.log(0.5), np.log(2.0))))
            x, y, counts, _ = still_spots(pops[0], U, scale, cfg, det)
            expected += physics.render_spots(background.shape, x, y, np.full(len(x), sigma), counts)
            strong = counts >= 20.0
            spots = np.column_stack([x[strong], y[strong], counts[strong]]).round(2).tolist()
        img = physics.noisy_frame(expected, gaps, rng)
        writer.add(img, image_header(cfg, det, 0.0, 0.0))
        frames.append(
            {
                "frame": n + 1,
                "row": n // cols,
                "col": n % cols,
                "hit": hit,
                "n_spots": len(spots),
                "spots": spots,
            }
        )
    template = writer.close()
    record = {
        "template": str(Path(template).relative_to(out)),
        "format": cfg.format,
        "rows": rows,
        "cols": cols,
        "n_frames": rows * cols,
        "osc_width": 0.0,
        "spot_min_counts": 20.0,
        "spot_columns": ["x_px", "y_px", "expected_counts"],
        "frames": frames,
    }
    return directory, record


__all__ = ["simulate_raster", "still_spots", "raster_location", "xtal"]
