"""Small good and bad sweeps for the process tests (simulated, blank, noise, broken copies)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from mxflow.images.write_cbf import write_minicbf
from mxflow.simulate import SimulationConfig, simulate

#: a tiny, quick sweep: 30 × 1° on a 487 × 619 px detector, data to 2.2 Å
TINY = dict(
    n_crystals=1,
    frames=30,
    osc_width=1.0,
    detector_size=(487, 619),
    distance=100.0,
    d_min=2.2,
    seed=5,
)


def simulate_tiny(out_dir: Path, **overrides):
    """Simulate the tiny sweep into ``out_dir``; returns the SimulationResult."""
    return simulate(out_dir, SimulationConfig(**{**TINY, **overrides}))


def header(angle: float, width: float = 1.0) -> dict:
    return {
        "pixel_size_mm": 0.172,
        "exposure_s": 0.1,
        "wavelength_A": 1.0,
        "distance_mm": 100.0,
        "beam_xy_px": (243.5, 309.5),
        "start_angle_deg": angle,
        "angle_increment_deg": width,
    }


def write_blank_sweep(directory: Path, prefix: str, n: int = 10, seed: int = 0) -> list[Path]:
    """Frames with a flat Poisson background only: no diffraction at all."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        data = rng.poisson(2.0, size=(619, 487)).astype(np.int32)
        p = directory / f"{prefix}_{i + 1:04d}.cbf"
        write_minicbf(p, data, header(float(i)))
        paths.append(p)
    return paths


def write_noise_spot_sweep(directory: Path, prefix: str, n: int = 10, seed: int = 0) -> list[Path]:
    """Frames with strong spots at random places: spots are found, no lattice fits them."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[-3:4, -3:4]
    blob = np.exp(-(xx**2 + yy**2) / 2.0)
    paths = []
    for i in range(n):
        data = rng.poisson(2.0, size=(619, 487)).astype(np.float64)
        for _ in range(60):
            y, x = rng.integers(10, 609), rng.integers(10, 477)
            data[y - 3 : y + 4, x - 3 : x + 4] += 400 * blob
        p = directory / f"{prefix}_{i + 1:04d}.cbf"
        write_minicbf(p, rng.poisson(data).astype(np.int32), header(float(i)))
        paths.append(p)
    return paths


def copy_sweep(files: list[Path], directory: Path, prefix: str) -> list[Path]:
    """Copy frames under a new prefix (``sim_01_000001.cbf`` → ``<prefix>_000001.cbf``)."""
    directory.mkdir(parents=True, exist_ok=True)
    out = []
    for f in files:
        number = f.name.rsplit("_", 1)[1]
        dst = directory / f"{prefix}_{number}"
        shutil.copyfile(f, dst)
        out.append(dst)
    return out


def truncate(path: Path, keep_fraction: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep_fraction)])
