"""mxflow.images: reading detector frames and headers (CBF, Eiger HDF5 / NeXus, SMV).

Public API (see :mod:`mxflow.images.read`):
``FrameHeader``, ``read_header(path)``, ``read_frame(path, index=0)``,
``iter_frames(sweep_or_path, first=None, last=None)``, ``pixel_mask(frame_or_header, header=None)``,
``detect_format(path)``, ``is_eiger_data_file(path)``; ``EigerReader(path)`` keeps an Eiger
file open to read many frames.
"""

from mxflow.images.read import (
    BAD,
    GAP,
    EigerReader,
    FrameHeader,
    detect_format,
    is_eiger_data_file,
    iter_frames,
    module_gap_mask,
    pixel_mask,
    read_frame,
    read_header,
)

__all__ = [
    "BAD",
    "GAP",
    "EigerReader",
    "FrameHeader",
    "detect_format",
    "is_eiger_data_file",
    "iter_frames",
    "module_gap_mask",
    "pixel_mask",
    "read_frame",
    "read_header",
]
