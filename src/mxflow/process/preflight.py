"""Checks on a dataset's frames before DIALS sees them (cheap: headers and sizes only).

A missing frame, an unreadable header or a truncated miniCBF would make a
DIALS program fail much later with a message that rarely names the file;
these checks fail early with :class:`~mxflow.errors.BadInputError` naming
the file and the problem.  Files are only opened for reading.
"""

from __future__ import annotations

import re
from pathlib import Path

from mxflow.errors import BadInputError
from mxflow.images.cbf import CBF_BINARY_MARKER
from mxflow.images.read import read_header
from mxflow.model import Dataset

_BINARY_SIZE = re.compile(rb"X-Binary-Size:\s*(\d+)")
_SECTION_END = b"--CIF-BINARY-FORMAT-SECTION--"


def check_cbf_complete(path: str | Path, head_bytes: int = 65536) -> None:
    """Raise BadInputError if an uncompressed miniCBF holds less data than its header declares.

    The binary section starts after the 4-byte marker ``0C 1A 04 D5``;
    ``X-Binary-Size`` gives its length in bytes; after it (and padding) the
    section is closed by ``--CIF-BINARY-FORMAT-SECTION----``.  Compressed files (.bz2,
    .gz) are not checked here (their headers are checked by read_header).
    """
    path = Path(path)
    if path.suffix.lower() != ".cbf":
        return
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(head_bytes)
    m = _BINARY_SIZE.search(head)
    start = head.find(CBF_BINARY_MARKER)
    if m is None or start < 0:
        raise BadInputError(path, "not a miniCBF image (no binary section header)")
    need = start + len(CBF_BINARY_MARKER) + int(m.group(1))
    if size < need:
        raise BadInputError(
            path, f"truncated CBF: {size} bytes on disk, the header needs at least {need}"
        )
    with open(path, "rb") as fh:
        fh.seek(max(need, size - 8192))
        tail = fh.read()
    if _SECTION_END not in tail:
        raise BadInputError(
            path, "truncated CBF: the binary section is not closed (file cut short?)"
        )


def frame_paths(dataset: Dataset) -> list[str]:
    """The file of every frame processed for ``dataset`` (the master file for Eiger)."""
    sweep = dataset.sweep
    if sweep.format == "eiger":
        return [sweep.template]
    first, last = dataset.frames
    return [sweep.frame_path(n) for n in range(first, last + 1)]


def check_frames(dataset: Dataset) -> list[str]:
    """Check every frame of the dataset; return their paths or raise BadInputError.

    Missing frames (listed in the sweep or absent on disk), unreadable
    headers and truncated CBFs are reported by file name.
    """
    sweep = dataset.sweep
    first, last = dataset.frames
    listed = [n for n in sweep.missing if first <= n <= last]
    if listed:
        shown = ", ".join(sweep.frame_path(n) for n in listed[:3])
        more = f" and {len(listed) - 3} more" if len(listed) > 3 else ""
        raise BadInputError(
            shown, f"frame(s) {listed[:3]}{more} of {sweep.template} missing or unreadable"
        )
    paths = frame_paths(dataset)
    for n, p in zip(range(first, last + 1), paths, strict=False):
        if not Path(p).is_file():
            raise BadInputError(p, f"frame {n} of {sweep.template} is missing")
    if sweep.format == "eiger":
        read_header(paths[0])
        return paths
    for p in paths:
        read_header(p)
        check_cbf_complete(p)
    return paths
