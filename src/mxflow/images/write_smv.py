"""Writing SMV (ADSC-style) frames: an ASCII ``{ KEY=VALUE; }`` header padded to
HEADER_BYTES, then the pixels as unsigned 16-bit integers.

The header keys are the ones dxtbx's SMV format classes look for.  With
``beamline="TimePix_SU"`` and 516 × 516 pixels dxtbx picks
``FormatSMVTimePix_SU_516x516``, which reads (see that class):

* ``DISTANCE`` as millimetres, whatever unit the writer meant;
* ``BEAM_CENTER_X`` / ``BEAM_CENTER_Y`` in **pixels** along fast / slow, from the
  outer corner of the first pixel (other SMV classes read millimetres);
* ``OSC_START`` / ``OSC_RANGE`` (degrees), ``TIME`` (s), ``WAVELENGTH`` (Å);
* a fixed rotation axis (0.7826, −0.6226, 0) and an unpolarised beam — neither is
  in the header.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

SMV_MAX = 65535  # largest count an unsigned short holds


@dataclass(frozen=True)
class SmvHeader:
    """The values of one SMV header.

    ``size`` pixels (fast, slow) → SIZE1, SIZE2; ``pixel_mm`` mm; ``distance`` as
    written (its unit is the writer's business: dxtbx reads millimetres);
    ``wavelength`` Å; ``beam_center`` (BEAM_CENTER_X, BEAM_CENTER_Y) in the unit
    the target format class expects (pixels for TimePix_SU); ``osc_start`` and
    ``osc_range`` degrees; ``exposure`` s.
    """

    size: tuple[int, int]
    pixel_mm: float
    distance: float
    wavelength: float
    beam_center: tuple[float, float]
    osc_start: float
    osc_range: float
    exposure: float
    beamline: str = ""
    detector_sn: str = "unknown"
    date: str = "Thu Jan  1 00:00:00 2026"
    header_bytes: int = 512


def smv_header_lines(h: SmvHeader) -> list[str]:
    """``KEY=VALUE;`` lines of the header, in the order RED-converted TimePix files use."""
    lines = [
        f"HEADER_BYTES={h.header_bytes:5d};",
        "DIM=2;",
        "BYTE_ORDER=little_endian;",
        "TYPE=unsigned_short;",
        f"SIZE1={h.size[0]};",
        f"SIZE2={h.size[1]};",
        f"PIXEL_SIZE={h.pixel_mm:.6f};",
        f"WAVELENGTH={h.wavelength:.6f};",
        f"DISTANCE={h.distance:.6g};",
        f"PHI={h.osc_start:.4f};",
        f"OSC_START={h.osc_start:.4f};",
        f"OSC_RANGE={h.osc_range:.4f};",
        f"TIME={h.exposure:.4f};",
        f"DATE={h.date};",
        f"DETECTOR_SN={h.detector_sn};",
        f"BEAM_CENTER_X={h.beam_center[0]:.4f};",
        f"BEAM_CENTER_Y={h.beam_center[1]:.4f};",
    ]
    if h.beamline:
        lines.append(f"BEAMLINE={h.beamline};")
    return lines


def smv_header_bytes(h: SmvHeader) -> bytes:
    """The header block: ``{`` newline, the lines, ``}``, padded with spaces to HEADER_BYTES."""
    text = "{\n" + "\n".join(smv_header_lines(h)) + "\n}\n"
    raw = text.encode("ascii")
    if len(raw) > h.header_bytes:
        raise ValueError(f"SMV header needs {len(raw)} bytes, more than {h.header_bytes}")
    return raw.ljust(h.header_bytes, b" ")


def smv_pixels(image: np.ndarray) -> bytes:
    """Little-endian unsigned shorts of an image (slow, fast): negatives become 0 and
    counts above 65535 are clipped."""
    return np.clip(image, 0, SMV_MAX).astype("<u2").tobytes()


def write_smv(path: str | Path, image: np.ndarray, header: SmvHeader) -> None:
    """Write one SMV frame (image shape (slow, fast) must match ``header.size``)."""
    if image.shape != (header.size[1], header.size[0]):
        raise ValueError(f"image shape {image.shape} does not match SIZE1/SIZE2 {header.size}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(smv_header_bytes(header) + smv_pixels(image))
    tmp.replace(path)
