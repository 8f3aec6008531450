"""The header values the simulator writes with every frame (rotation sweeps and raster stills)."""

from __future__ import annotations

from mxflow.simulate import geometry as geo
from mxflow.simulate.config import SimulationConfig

DETECTOR_NAME = "PILATUS 1M, S/N 10-0000 (mxflow simulation)"


def detector_name(cfg: SimulationConfig) -> str:
    """The detector name the headers carry (the simulated PILATUS 1M unless configured)."""
    return cfg.detector_name or DETECTOR_NAME


def header_distance(cfg: SimulationConfig, det: geo.Detector) -> float:
    """The DISTANCE value the headers carry, in ``cfg.header_distance_unit``: the
    configured ``header_distance``, or else the true distance converted to that unit."""
    if cfg.header_distance is not None:
        return float(cfg.header_distance)
    return det.distance_mm / 1000.0 if cfg.header_distance_unit == "m" else det.distance_mm


def image_header(cfg: SimulationConfig, det: geo.Detector, angle: float, width: float) -> dict:
    """Header values of one frame (see mxflow.images.write_cbf.pilatus_header_lines).

    ``distance_mm`` is the detector's (true) distance; writers that record another
    value (SMV: ``header_distance``) take it from the configuration.
    """
    return {
        "detector": detector_name(cfg),
        "pixel_size_mm": det.pixel_mm,
        "thickness_mm": det.thickness_mm,
        "exposure_s": cfg.exposure,
        "period_s": cfg.exposure,
        "wavelength_A": cfg.wavelength,
        "distance_mm": det.distance_mm,
        "beam_xy_px": (det.beam_fast_px, det.beam_slow_px),
        "start_angle_deg": angle,
        "angle_increment_deg": width,
        "polarization": cfg.polarization_fraction,
    }
