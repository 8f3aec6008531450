"""miniCBF files at the byte level: the one place that checks and decodes them.

Used by :mod:`mxflow.images.read` (headers and frames) and by the hit maps
(:mod:`mxflow.hitmap.frames`), so every reader reports a bad file with the same
:class:`~mxflow.errors.BadInputError` naming the file and the problem.

A miniCBF file is a CIF text header, the 4-byte marker ``0C 1A 04 D5`` and one
binary section whose MIME lines (``X-Binary-Size``, ``X-Binary-Size-Fastest-Dimension``,
``X-Binary-Size-Second-Dimension``, ``X-Binary-Number-of-Elements``) describe it.

Pixels are decoded by a byte-offset decoder compiled with numba
(``nogil=True``), so several frames can be decoded at once in threads.
Byte-offset compression (CBF ``x-CBF_BYTE_OFFSET``): each pixel is stored as
the difference from the previous pixel, as a signed 8-bit integer; the
escape value -128 announces a 16-bit little-endian difference, whose escape
-32768 announces a 32-bit one, whose escape -2**31 announces a 64-bit one.
numba is imported the first time pixels are decoded, not with this module.
"""

from __future__ import annotations

import bz2
import functools
import gzip
import re
from pathlib import Path

import numpy as np

from mxflow.errors import BadInputError

CBF_BINARY_MARKER = b"\x0c\x1a\x04\xd5"
COMPRESSED = (".bz2", ".gz")


# --------------------------------------------------------------------------
# raw bytes


def open_raw(path: str | Path):
    """Open ``path`` for reading bytes, decompressing .bz2 / .gz on the fly."""
    p = str(path)
    try:
        if p.endswith(".bz2"):
            return bz2.open(p, "rb")
        if p.endswith(".gz"):
            return gzip.open(p, "rb")
        return open(p, "rb")
    except OSError as exc:
        raise BadInputError(path, f"cannot be opened ({exc.strerror or exc})") from exc


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


# --------------------------------------------------------------------------
# header and binary-section checks


def _check_start(data: bytes, path: str | Path) -> int:
    """Offset of the binary data in ``data`` (the bytes of a CBF file from its start)."""
    if not data.startswith(b"###CBF") and b"_array_data" not in data[:4096]:
        raise BadInputError(path, "is not a CBF image (no '###CBF' signature at the start)")
    pos = data.find(CBF_BINARY_MARKER)
    if pos < 0:
        raise BadInputError(path, "is not a complete CBF image (no binary data section found)")
    return pos


def read_cbf_head(
    path: str | Path, chunk: int = 16384, limit: int = 1 << 20
) -> tuple[str, int, bytes]:
    """Header text of a CBF file, the offset of its binary data and the bytes read.

    Reads only as far as the binary-section marker (usually a few kB), so it
    is cheap even for bzip2-compressed frames.
    """
    data = b""
    with open_raw(path) as fh:
        try:
            while CBF_BINARY_MARKER not in data and len(data) < limit:
                block = fh.read(chunk)
                if not block:
                    break
                data += block
        except (OSError, EOFError, ValueError) as exc:
            raise BadInputError(path, f"cannot be read or decompressed ({exc})") from exc
    pos = _check_start(data, path)
    return data[:pos].decode("latin-1"), pos + len(CBF_BINARY_MARKER), data


def mime_int(text: str, key: str, path: str | Path) -> int:
    """Integer field ``key`` of a CBF binary section's MIME header (BadInputError naming ``path``)."""
    m = re.search(rf"^{re.escape(key)}:\s*(\d+)", text, re.MULTILINE)
    if not m:
        raise BadInputError(path, f"CBF binary section has no {key}")
    return int(m.group(1))


def check_binary_size(size: int, have: int, path: str | Path) -> None:
    """BadInputError unless ``have`` bytes hold the ``size`` bytes of the binary section."""
    if have < size:
        raise BadInputError(
            path, f"truncated CBF: binary section has {have} of {size} bytes (X-Binary-Size)"
        )


# --------------------------------------------------------------------------
# byte-offset decoding


def _decode_byte_offset(buf: np.ndarray, out: np.ndarray) -> int:
    """Decode byte-offset data ``buf`` (uint8) into ``out`` (int32); compiled by numba.

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


@functools.cache
def _compiled_decoder():
    import numba

    return numba.njit(nogil=True, cache=True)(_decode_byte_offset)


def _decode(buf: np.ndarray, n_pixels: int) -> tuple[np.ndarray, int]:
    out = np.empty(n_pixels, dtype=np.int32)
    return out, int(_compiled_decoder()(buf, out))


def decode_byte_offset(data: bytes | np.ndarray, n_pixels: int) -> np.ndarray:
    """Pixels (int32, flat) from byte-offset compressed ``data``.

    Raises ValueError when the data hold fewer than ``n_pixels`` values.
    """
    buf = np.frombuffer(data, dtype=np.uint8) if isinstance(data, bytes | bytearray) else data
    out, got = _decode(buf, n_pixels)
    if got != n_pixels:
        raise ValueError(f"compressed data hold {max(got, 0)} of {n_pixels} pixels")
    return out


# --------------------------------------------------------------------------
# whole frames


def decode_cbf(data: bytes, path: str | Path = "<bytes>") -> np.ndarray:
    """Pixels of a miniCBF image held in ``data``: int32, shape (slow, fast).

    Checks the CBF signature, the byte-offset conversion, the declared binary
    size against the bytes present (truncation) and the element count against
    the image size; raises BadInputError naming ``path`` otherwise.
    """
    pos = _check_start(data, path)
    text = data[:pos].decode("latin-1")
    start = pos + len(CBF_BINARY_MARKER)
    size = mime_int(text, "X-Binary-Size", path)
    fast = mime_int(text, "X-Binary-Size-Fastest-Dimension", path)
    slow = mime_int(text, "X-Binary-Size-Second-Dimension", path)
    if "x-CBF_BYTE_OFFSET" not in text:
        raise BadInputError(path, "CBF compression is not byte-offset (only miniCBF is supported)")
    check_binary_size(size, len(data) - start, path)
    m = re.search(r"^X-Binary-Number-of-Elements:\s*(\d+)", text, re.MULTILINE)
    if m and int(m.group(1)) != fast * slow:
        raise BadInputError(
            path,
            f"wrong image size: header says {fast} x {slow} pixels "
            f"but the binary section holds {m.group(1)} elements",
        )
    buf = np.frombuffer(data, dtype=np.uint8, count=size, offset=start)
    flat, got = _decode(buf, fast * slow)
    if got < 0:
        raise BadInputError(path, "corrupt CBF data: the binary section ends inside a pixel value")
    if got != fast * slow:
        raise BadInputError(
            path, f"wrong image size: {got} pixels decoded, header says {fast} x {slow}"
        )
    return flat.reshape(slow, fast)


def read_cbf_pixels(path: str | Path) -> np.ndarray:
    """Pixels (int32, shape (slow, fast)) of a miniCBF file (plain, .bz2, .gz)."""
    return decode_cbf(read_file_bytes(path), path)
