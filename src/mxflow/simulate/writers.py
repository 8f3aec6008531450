"""Frame writers used by the simulator: one miniCBF or SMV file per frame, or Eiger HDF5
(master + data)."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from mxflow.images.write_cbf import write_minicbf
from mxflow.images.write_smv import SmvHeader, write_smv
from mxflow.simulate.config import SimulationConfig
from mxflow.simulate.geometry import Detector
from mxflow.simulate.header import header_distance


class FrameWriter(Protocol):
    def add(self, image: np.ndarray, header: dict) -> None: ...

    def close(self) -> str:
        """Finish writing; return the sweep template (CBF) or the master file path (Eiger)."""
        ...


class CbfWriter:
    """Writes ``<directory>/<prefix>_NNNNNN.cbf``, frames numbered from 1."""

    def __init__(self, directory: Path, prefix: str):
        self.directory = Path(directory)
        self.prefix = prefix
        self.count = 0

    def add(self, image: np.ndarray, header: dict) -> None:
        self.count += 1
        write_minicbf(self.directory / f"{self._stem}{self.count:06d}.cbf", image, header)

    @property
    def _stem(self) -> str:
        return f"{self.prefix}_" if self.prefix else ""

    def close(self) -> str:
        return str(self.directory / f"{self._stem}######.cbf")


class SmvWriter:
    """Writes ``<directory>/<prefix>_NNNNN.img`` (``NNNNN.img`` without a prefix), frames
    numbered from 1, as RED writes TimePix SMV files.

    The DISTANCE written is the configuration's header distance (its own unit, e.g.
    metres) and BEAM_CENTER_X / _Y the beam centre in pixels along fast / slow, as
    dxtbx's FormatSMVTimePix_SU_516x516 reads them.
    """

    def __init__(self, directory: Path, prefix: str, cfg: SimulationConfig, det: Detector):
        self.directory = Path(directory)
        self.prefix = prefix
        self.cfg = cfg
        self.det = det
        self.count = 0

    @property
    def _stem(self) -> str:
        return f"{self.prefix}_" if self.prefix else ""

    def header(self, values: dict) -> SmvHeader:
        """The SMV header of one frame from the simulator's header values."""
        return SmvHeader(
            size=(self.det.n_fast, self.det.n_slow),
            pixel_mm=self.det.pixel_mm,
            distance=header_distance(self.cfg, self.det),
            wavelength=float(values["wavelength_A"]),
            beam_center=(self.det.beam_fast_px, self.det.beam_slow_px),
            osc_start=float(values["start_angle_deg"]),
            osc_range=float(values["angle_increment_deg"]),
            exposure=float(values["exposure_s"]),
            beamline=self.cfg.smv_beamline,
            detector_sn=str(values["detector"]).split(" ")[0],
        )

    def add(self, image: np.ndarray, header: dict) -> None:
        self.count += 1
        write_smv(self.directory / f"{self._stem}{self.count:05d}.img", image, self.header(header))

    def close(self) -> str:
        return str(self.directory / f"{self._stem}#####.img")


def make_writer(
    fmt: str, directory: Path, prefix: str, cfg: SimulationConfig, det: Detector
) -> FrameWriter:
    """A writer for ``fmt`` ("cbf", "smv" or "eiger")."""
    if fmt == "cbf":
        return CbfWriter(directory, prefix)
    if fmt == "smv":
        return SmvWriter(directory, prefix, cfg, det)
    if fmt == "eiger":
        from mxflow.images.write_nexus import EigerWriter

        return EigerWriter(directory, prefix, cfg, det)
    raise ValueError(f"unknown image format {fmt!r} (cbf or eiger)")
