"""File helpers: write-then-rename, checksums, JSON with NaN as null, safe file names."""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any


def safe_name(name: str, default: str = "dataset") -> str:
    """A file or directory name from any text: runs of characters other than letters,
    digits and ``._+-`` (path separators included) become ``_``; leading and trailing
    ``.`` / ``_`` go; ``default`` if nothing is left."""
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", name).strip("._") or default


#: the most bytes (UTF-8) a sample name may have: it is part of file names, whose limit is 255
MAX_SAMPLE_NAME_BYTES = 100


def sample_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a sample name, or None when it can.

    Sample names become parts of file names (always through :func:`safe_name`); a name
    that reads as a path is refused rather than changed: empty, ``.``/``..`` or any name
    starting with ``.``, a ``/`` or ``\\``, a NUL or another control character, or longer
    than :data:`MAX_SAMPLE_NAME_BYTES`.
    """
    if not name.strip():
        return "is empty"
    if name.startswith("."):
        return "starts with '.' (a hidden file, or a path to the folder above)"
    if "/" in name or "\\" in name:
        return "contains a path separator ('/' or '\\')"
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        return "contains a control character (NUL, tab, newline ...)"
    if len(name.encode()) > MAX_SAMPLE_NAME_BYTES:
        return f"is longer than {MAX_SAMPLE_NAME_BYTES} bytes"
    return None


def check_sample_name(name: str) -> str:
    """``name`` when it can be a sample name (:func:`sample_name_problem`); else ValueError
    ``sample name '...' contains ...``."""
    problem = sample_name_problem(name)
    if problem:
        raise ValueError(
            f"sample name {name!r} {problem}; use letters, digits and . _ + - (e.g. lyso_1)"
        )
    return name


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers never see a partial file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; give what open() would
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def json_ready(v: Any) -> Any:
    """``v`` as plain JSON values: NaN / ±inf → None, dict keys → str, tuples → lists,
    numpy scalars → Python numbers, ``Path`` → str; dicts and lists recursively."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {str(k): json_ready(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [json_ready(x) for x in v]
    if hasattr(v, "item") and callable(v.item):  # numpy scalar
        return json_ready(v.item())
    if isinstance(v, Path):
        return str(v)
    return v


def write_json(path: str | Path, obj: Any) -> None:
    """Atomically write ``obj`` as JSON (NaN/inf become null, numpy scalars plain)."""
    atomic_write_text(path, json.dumps(json_ready(obj), indent=1) + "\n")


def read_json(path: str | Path) -> Any:
    with open(path) as fh:
        return json.load(fh)


def sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def checksums(paths: Iterable[str | Path]) -> dict[str, str]:
    """sha256 of every file, keyed by path (used to prove raw data untouched)."""
    return {str(p): sha256(p) for p in paths}
