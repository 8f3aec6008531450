"""Frame writers used by the simulator: one miniCBF per frame, or Eiger HDF5 (master + data)."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from mxflow.images.write_cbf import write_minicbf


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
        write_minicbf(self.directory / f"{self.prefix}_{self.count:06d}.cbf", image, header)

    def close(self) -> str:
        return str(self.directory / f"{self.prefix}_######.cbf")


def make_writer(fmt: str, directory: Path, prefix: str, cfg, det) -> FrameWriter:
    """A writer for ``fmt`` ("cbf" or "eiger")."""
    if fmt == "cbf":
        return CbfWriter(directory, prefix)
    if fmt == "eiger":
        from mxflow.images.write_nexus import EigerWriter

        return EigerWriter(directory, prefix, cfg, det)
    raise ValueError(f"unknown image format {fmt!r} (cbf or eiger)")
