"""Write PILATUS-style miniCBF files (byte-offset compression, "PILATUS_1.2" header).

The layout follows the files written by real PILATUS detectors (and read by
dxtbx's ``FormatCBFMiniPilatus``): a CIF block whose ``_array_data.header_contents``
holds ``# Key value`` lines, then one binary section compressed with the CBF
byte-offset scheme.  Pixel values are signed 32-bit integers; module-gap
pixels are -1 as on a real detector.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from mxflow.errors import BadInputError
from mxflow.images.cbf import CBF_BINARY_MARKER
from mxflow.util.files import atomic_write_bytes

_PADDING = 4095


def byte_offset_encode(data: np.ndarray) -> bytes:
    """CBF byte-offset compression: fabio's compiled encoder, else :func:`byte_offset_encode_numpy`."""
    try:
        from fabio.compression import compByteOffset_cython
    except ImportError:  # pragma: no cover - fabio without its extension
        return byte_offset_encode_numpy(data)
    flat = np.ascontiguousarray(data, dtype=np.int32).ravel()
    return bytes(compByteOffset_cython(flat))


def byte_offset_encode_numpy(data: np.ndarray) -> bytes:
    """Compress an integer array with the CBF byte-offset algorithm (vectorised).

    Each pixel is stored as the difference to the previous pixel (the first to
    0): one signed byte when |Δ| < 128, else the escape 0x80 and a little-endian
    int16 when |Δ| < 32768, else the escapes 0x80, 0x8000 and a little-endian
    int32.  Values must fit int32 and so must their differences.
    """
    flat = np.ascontiguousarray(data, dtype=np.int64).ravel()
    diff = np.diff(flat, prepend=0)
    if diff.size and (diff.max() > 2**31 - 1 or diff.min() < -(2**31)):
        raise ValueError("pixel differences exceed the int32 range of byte-offset CBF")
    small = np.abs(diff) < 128
    medium = ~small & (np.abs(diff) < 32768)
    large = ~small & ~medium
    sizes = np.where(small, 1, np.where(medium, 3, 7))
    ends = np.cumsum(sizes)
    starts = ends - sizes
    out = np.zeros(int(ends[-1]) if ends.size else 0, dtype=np.uint8)
    out[starts[small]] = diff[small].astype(np.int8).view(np.uint8)
    if medium.any():
        s = starts[medium]
        v = diff[medium].astype("<i2").view(np.uint8).reshape(-1, 2)
        out[s] = 0x80
        out[s + 1] = v[:, 0]
        out[s + 2] = v[:, 1]
    if large.any():
        s = starts[large]
        v = diff[large].astype("<i4").view(np.uint8).reshape(-1, 4)
        out[s] = 0x80
        out[s + 1] = 0x00
        out[s + 2] = 0x80
        for k in range(4):
            out[s + 3 + k] = v[:, k]
    return out.tobytes()


def pilatus_header_lines(header: Mapping[str, object]) -> list[str]:
    """The ``# Key value`` lines of a PILATUS_1.2 header, in the detector's order.

    ``header`` keys (SI units as PILATUS writes them, converted here):
    detector (str), timestamp (str), pixel_size_mm, thickness_mm, exposure_s,
    period_s, count_cutoff, wavelength_A, distance_mm, beam_xy_px (fast, slow),
    start_angle_deg, angle_increment_deg, polarization, oscillation_axis.
    """
    g = header.get
    px = float(g("pixel_size_mm", 0.172)) / 1000.0
    bx, by = g("beam_xy_px", (0.0, 0.0))  # type: ignore[misc]
    start = float(g("start_angle_deg", 0.0))
    inc = float(g("angle_increment_deg", 0.0))
    return [
        f"# Detector: {g('detector', 'PILATUS 1M, S/N 10-0000')}",
        f"# {g('timestamp', '2024-01-01T00:00:00.000')}",
        f"# Pixel_size {px * 1e6:.0f}e-6 m x {px * 1e6:.0f}e-6 m",
        f"# Silicon sensor, thickness {float(g('thickness_mm', 0.45)) / 1000.0:.6f} m",
        f"# Exposure_time {float(g('exposure_s', 0.1)):.7f} s",
        f"# Exposure_period {float(g('period_s', g('exposure_s', 0.1))):.7f} s",
        "# Tau = 0 s",
        f"# Count_cutoff {int(g('count_cutoff', 1048574))} counts",
        "# Threshold_setting: 6000 eV",
        "# Gain_setting: autog (vrf = 1.000)",
        "# N_excluded_pixels = 0",
        "# Excluded_pixels: badpix_mask.tif",
        "# Flat_field: (nil)",
        "# Trim_file: (nil)",
        "# Image_path: /ramdisk/",
        f"# Wavelength {float(g('wavelength_A', 1.0)):.5f} A",
        "# Energy_range (0, 0) eV",
        f"# Detector_distance {float(g('distance_mm', 150.0)) / 1000.0:.5f} m",
        "# Detector_Voffset 0.00000 m",
        f"# Beam_xy ({float(bx):.2f}, {float(by):.2f}) pixels",
        "# Flux 0.000000",
        "# Filter_transmission 1.0000",
        f"# Start_angle {start:.4f} deg.",
        f"# Angle_increment {inc:.4f} deg.",
        "# Detector_2theta 0.0000 deg.",
        f"# Polarization {float(g('polarization', 0.99)):.3f}",
        "# Alpha 0.0000 deg.",
        "# Kappa 0.0000 deg.",
        f"# Phi {start:.4f} deg.",
        f"# Phi_increment {inc:.4f} deg.",
        f"# Omega {start:.4f} deg.",
        f"# Omega_increment {inc:.4f} deg.",
        "# Chi 0.0000 deg.",
        "# Chi_increment 0.0000 deg.",
        f"# Oscillation_axis {g('oscillation_axis', 'X.CW')}",
        "# N_oscillations 1",
    ]


def minicbf_bytes(data: np.ndarray, header: Mapping[str, object], name: str = "image") -> bytes:
    """The bytes of a miniCBF file holding ``data`` (2-D, shape (slow, fast))."""
    if data.ndim != 2:
        raise ValueError(f"image must be 2-D, got shape {data.shape}")
    n_slow, n_fast = data.shape
    compressed = byte_offset_encode(data)
    md5 = base64.b64encode(hashlib.md5(compressed).digest()).decode()
    crlf = "\r\n"
    head = crlf.join(
        [
            "###CBF: VERSION 1.5, CBFlib v0.7.8 - PILATUS detectors",
            "",
            f"data_{name}",
            "",
            '_array_data.header_convention "PILATUS_1.2"',
            "_array_data.header_contents",
            ";",
            *pilatus_header_lines(header),
            ";",
            "",
            "_array_data.data",
            ";",
            "--CIF-BINARY-FORMAT-SECTION--",
            "Content-Type: application/octet-stream;",
            '     conversions="x-CBF_BYTE_OFFSET"',
            "Content-Transfer-Encoding: BINARY",
            f"X-Binary-Size: {len(compressed)}",
            "X-Binary-ID: 1",
            'X-Binary-Element-Type: "signed 32-bit integer"',
            "X-Binary-Element-Byte-Order: LITTLE_ENDIAN",
            f"Content-MD5: {md5}",
            f"X-Binary-Number-of-Elements: {n_slow * n_fast}",
            f"X-Binary-Size-Fastest-Dimension: {n_fast}",
            f"X-Binary-Size-Second-Dimension: {n_slow}",
            f"X-Binary-Size-Padding: {_PADDING}",
            "",
            "",
        ]
    )
    tail = crlf + "--CIF-BINARY-FORMAT-SECTION----" + crlf + ";" + crlf + crlf
    return (
        head.encode("ascii")
        + CBF_BINARY_MARKER
        + compressed
        + b"\x00" * _PADDING
        + tail.encode("ascii")
    )


def write_minicbf(path: str | Path, data: np.ndarray, header: Mapping[str, object]) -> None:
    """Write one frame as a PILATUS miniCBF file (atomically).

    ``data``: int32 array of shape (slow, fast) in counts, -1 for gap pixels.
    ``header``: see :func:`pilatus_header_lines` for the keys and units.
    """
    data = np.asarray(data)
    if not np.issubdtype(data.dtype, np.integer):
        raise BadInputError(str(path), f"CBF pixel data must be integers, got {data.dtype}")
    atomic_write_bytes(path, minicbf_bytes(data, header, name=Path(path).stem))
