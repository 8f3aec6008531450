"""Which frames a hit map covers, and reading one frame's pixels.

Headers (geometry, overload, detector name) and Eiger HDF5 frames come from
the shared image layer :mod:`mxflow.images`; miniCBF pixels are decoded by
the GIL-free decoder in :mod:`mxflow.images.cbf`, so threads can decode
frames in parallel; Eiger files are kept open per thread while their frames
are read (:class:`mxflow.images.EigerReader`).  Frames are (file, index) pairs with ``index`` 0-based
within the file (always 0 for CBF).
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mxflow import images
from mxflow.errors import BadInputError
from mxflow.images.cbf import read_cbf_pixels

_CBF = re.compile(r"\.cbf(\.bz2|\.gz)?$", re.IGNORECASE)
_HDF5 = re.compile(r"\.(h5|nxs|hdf5|nx5)$", re.IGNORECASE)


@dataclass(frozen=True)
class FrameRef:
    """One frame: the file holding it and its 0-based index in that file."""

    file: str
    index: int = 0

    @property
    def is_cbf(self) -> bool:
        """A miniCBF file (.cbf, .cbf.gz, .cbf.bz2), read by mxflow's own decoder."""
        return bool(_CBF.search(self.file))


def _natural_key(path: Path) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name)]


def _image_files(directory: Path) -> list[Path]:
    """miniCBF files and Eiger master / NeXus files in ``directory``, in frame order."""
    files = [
        p
        for p in directory.iterdir()
        if p.is_file()
        and (_CBF.search(p.name) or (_HDF5.search(p.name) and not images.is_eiger_data_file(p)))
    ]
    return sorted(files, key=_natural_key)


def list_frames(paths: list[str | Path]) -> tuple[list[FrameRef], list[dict]]:
    """Frames named by ``paths`` (image files or directories of them), in order.

    CBF files give one frame each; an Eiger master gives one frame per image
    it holds.  Paths that cannot be used come back as error records
    ``{"file", "index": None, "error"}`` rather than stopping the others.
    """
    frames: list[FrameRef] = []
    errors: list[dict] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found = _image_files(p)
            if not found:
                errors.append(
                    {"file": str(p), "index": None, "error": "no image files in directory"}
                )
            candidates = found
        else:
            candidates = [p]
        for f in candidates:
            if _CBF.search(f.name):
                frames.append(FrameRef(str(f), 0))
                continue
            try:
                header = images.read_header(f)
            except BadInputError as exc:
                errors.append({"file": str(f), "index": None, "error": exc.problem})
                continue
            frames.extend(FrameRef(str(f), i) for i in range(header.n_frames))
    return frames, errors


def read_pixels(frame: FrameRef) -> np.ndarray:
    """Pixels (int32, shape (slow, fast)) of one frame; -1 gaps, -2 bad pixels.

    Raises BadInputError naming the file for missing, truncated or corrupt
    frames.
    """
    if frame.is_cbf:
        if frame.index != 0:
            raise BadInputError(frame.file, f"frame index {frame.index} of a one-frame CBF file")
        return read_cbf_pixels(frame.file)
    return _eiger_reader(frame.file).frame(frame.index)


_readers = threading.local()


def _eiger_reader(path: str) -> images.EigerReader:
    """This thread's open reader of ``path``: a raster scan's frames come from one
    file, so each thread keeps the last file it read open (mask and data
    blocks read once) and closes it when it moves to another."""
    current = getattr(_readers, "reader", None)
    if current is None or current.path != path:
        release_readers()
        current = _readers.reader = images.EigerReader(path)
    return current


def release_readers() -> None:
    """Close the file this thread keeps open (threads that end release theirs anyway)."""
    current = getattr(_readers, "reader", None)
    if current is not None:
        current.close()
        _readers.reader = None


def static_mask(header: images.FrameHeader) -> np.ndarray:
    """Pixels that can ever hold a measurement: True off the module gaps."""
    return images.module_gap_mask(header)
