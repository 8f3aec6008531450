"""The header values the simulator writes with every frame (rotation sweeps and raster stills)."""

from __future__ import annotations

from mxflow.simulate import geometry as geo
from mxflow.simulate.config import SimulationConfig

DETECTOR_NAME = "PILATUS 1M, S/N 10-0000 (mxflow simulation)"


def image_header(cfg: SimulationConfig, det: geo.Detector, angle: float, width: float) -> dict:
    """Header values of one frame (see mxflow.images.write_cbf.pilatus_header_lines)."""
    return {
        "detector": DETECTOR_NAME,
        "pixel_size_mm": det.pixel_mm,
        "thickness_mm": det.thickness_mm,
        "exposure_s": cfg.exposure,
        "period_s": cfg.exposure,
        "wavelength_A": cfg.wavelength,
        "distance_mm": det.distance_mm,
        "beam_xy_px": (det.beam_fast_px, det.beam_slow_px),
        "start_angle_deg": angle,
        "angle_increment_deg": width,
        "polarization": 0.999,
    }
