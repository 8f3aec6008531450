"""Fast miniCBF pixel decoding for raster scans (byte-offset compression).

The hit map reads thousands of frames, so the pixel decoding must not hold
Python's GIL: the byte-offset decoder here is compiled with numba
(``nogil=True``) and several frames can be decoded at once in threads.
Headers (wavelength, distance, beam centre, overload) are read by
:mod:`mxflow.images`; this module only turns the binary section into pixels.

Byte-offset compression (CBF ``x-CBF_BYTE_OFFSET``): each pixel is stored as
the difference from the previous pixel, as a signed 8-bit integer; the
escape value -128 announces a 16-bit little-endian difference, whose escape
-32768 announces a 32-bit one, whose escape -2**31 announces a 64-bit one.
"""

from __future__ import annotations

import bz2
import gzip
import re
from pathlib import Path

import numba
import numpy as np

from mxflow.errors import BadInputError
from mxflow.images.read import mime_int

CBF_BINARY_MARKER = b"\x0c\x1a\x04\xd5"


@numba.njit(nogil=True, cache=True)
def _decode_byte_offset(buf: np.ndarray, out: np.ndarray) -> int:
    """Decode byte-offset data ``buf`` (uint8) into ``out`` (int32).

    Returns the number of pixels decoded, or -1 when ``buf`` ends in the
    middle of a value (a truncated file).
    """
    n_in = buf.size
    n_out = out.size
    pos = 0
    value = np.int64(0)
    k = 0
    while k < n_out and pos < n_in:
        delta = np.int64(np.int8(buf[pos]))
        pos += 1
        if delta == -128:
            if pos + 2 > n_in:
                return -1
            delta = np.int64(np.int16(buf[pos] | (np.uint16(buf[pos + 1]) << 8)))
            pos += 2
            if delta == -32768:
                if pos + 4 > n_in:
                    return -1
                u = (
                    np.uint32(buf[pos])
                    | (np.uint32(buf[pos + 1]) << 8)
                    | (np.uint32(buf[pos + 2]) << 16)
                    | (np.uint32(buf[pos + 3]) << 24)
                )
                delta = np.int64(np.int32(u))
                pos += 4
                if delta == -2147483648:
                    if pos + 8 > n_in:
                        return -1
                    u8 = np.uint64(0)
                    for b in range(8):
                        u8 |= np.uint64(buf[pos + b]) << np.uint64(8 * b)
                    delta = np.int64(u8)
                    pos += 8
        value += delta
        out[k] = value
        k += 1
    return k


def decode_byte_offset(data: bytes | np.ndarray, n_pixels: int) -> np.ndarray:
    """Pixels (int32, flat) from byte-offset compressed ``data``.

    Raises ValueError when the data hold fewer than ``n_pixels`` values.
    """
    buf = np.frombuffer(data, dtype=np.uint8) if isinstance(data, bytes | bytearray) else data
    out = np.empty(n_pixels, dtype=np.int32)
    got = _decode_byte_offset(buf, out)
    if got != n_pixels:
        raise ValueError(f"compressed data hold {max(got, 0)} of {n_pixels} pixels")
    return out


def read_file_bytes(path: str | Path) -> bytes:
    """All (decompressed) bytes of ``path``; .bz2 and .gz are decompressed.

    Python's bz2 / gzip release the GIL while they decompress, so threads
    reading different frames run in parallel.
    """
    p = str(path)
    try:
        with open(p, "rb") as fh:
            raw = fh.read()
        if p.endswith(".bz2"):
            return bz2.decompress(raw)
        if p.endswith(".gz"):
            return gzip.decompress(raw)
        return raw
    except FileNotFoundError as exc:
        raise BadInputError(path, "file does not exist") from exc
    except (OSError, EOFError, ValueError) as exc:
        raise BadInputError(path, f"cannot be read or decompressed ({exc})") from exc


def decode_cbf(data: bytes, path: str | Path = "<bytes>") -> np.ndarray:
    """Pixels of a miniCBF image held in ``data``: int32, shape (slow, fast).

    Checks the byte-offset conversion, the declared binary size against the
    bytes present (truncation) and the element count against the image size.
    """
    pos = data.find(CBF_BINARY_MARKER)
    if pos < 0:
        raise BadInputError(path, "is not a complete CBF image (no binary data section found)")
    text = data[:pos].decode("latin-1")
    if "x-CBF_BYTE_OFFSET" not in text:
        raise BadInputError(path, "CBF compression is not byte-offset (only miniCBF is supported)")
    size = mime_int(text, "X-Binary-Size", path)
    fast = mime_int(text, "X-Binary-Size-Fastest-Dimension", path)
    slow = mime_int(text, "X-Binary-Size-Second-Dimension", path)
    m = re.search(r"^X-Binary-Number-of-Elements:\s*(\d+)", text, re.MULTILINE)
    if m and int(m.group(1)) != fast * slow:
        raise BadInputError(
            path,
            f"wrong image size: header says {fast} x {slow} pixels but {m.group(1)} elements",
        )
    start = pos + len(CBF_BINARY_MARKER)
    have = len(data) - start
    if have < size:
        raise BadInputError(
            path, f"truncated CBF: binary section has {have} of {size} bytes (X-Binary-Size)"
        )
    buf = np.frombuffer(data, dtype=np.uint8, count=size, offset=start)
    try:
        flat = decode_byte_offset(buf, fast * slow)
    except ValueError as exc:
        raise BadInputError(path, f"corrupt CBF data: {exc}") from exc
    return flat.reshape(slow, fast)


def read_cbf_pixels(path: str | Path) -> np.ndarray:
    """Pixels (int32, shape (slow, fast)) of a miniCBF file (plain, .bz2, .gz)."""
    return decode_cbf(read_file_bytes(path), path)
