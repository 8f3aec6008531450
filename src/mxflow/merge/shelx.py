"""SHELX HKLF 4 files (the input of SHELXC/D/E) from a merged MTZ.

HKLF 4 is one reflection per line in the Fortran format ``(3I4, 2F8.2)``: h, k, l,
the intensity and its σ, ending with a line whose h, k, l are 0 0 0.  For
anomalous data each Bijvoet mate is its own line: I(+) under h k l and I(−)
under −h −k −l (the Friedel mate's index), as XDSCONV writes them for SHELX.

The columns read are those dials.merge writes (cctbx's labels for an
anomalous intensity array with root ``I``): ``I(+)``, ``SIGI(+)``, ``I(-)``,
``SIGI(-)``; without them, ``IMEAN`` / ``SIGIMEAN`` (one line per reflection).
Mates that were not measured (missing values, σ ≤ 0) are left out, and so is the
I(−) of a centric reflection (it is the same reflection as I(+)).  The F8.2
field holds at most 99999.99 (−9999.99 below zero): when the largest intensity
or σ would not fit, every intensity and σ is multiplied by one factor that makes
it fit (SHELX needs only relative intensities); the factor is never above 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import gemmi
import numpy as np

from mxflow.errors import BadInputError
from mxflow.util.files import atomic_write_text

#: the Bijvoet-mate columns of dials.merge's anomalous output
ANOMALOUS_LABELS = ("I(+)", "SIGI(+)", "I(-)", "SIGI(-)")
#: the mean-intensity columns of a merged MTZ without anomalous columns
MEAN_LABELS = ("IMEAN", "SIGIMEAN")
#: the largest and smallest values an F8.2 field holds
F82_MAX = 99999.99
F82_MIN = -9999.99
#: the index range a 3I4 field holds
I4_RANGE = (-999, 9999)


@dataclass
class HklfData:
    """Reflections of an HKLF 4 file: ``hkl`` (n × 3 int), ``i`` and ``sigma`` (n)."""

    hkl: np.ndarray
    i: np.ndarray
    sigma: np.ndarray


# -- computing ------------------------------------------------------------------


def mates_from_mtz(merged_mtz: str | Path) -> HklfData:
    """The lines an HKLF 4 file of ``merged_mtz`` holds, before any scaling.

    Anomalous columns (:data:`ANOMALOUS_LABELS`): I(+) at h k l, then I(−) at
    −h −k −l, for every reflection in the file's order, each where measured
    (finite, σ > 0) and I(−) only for acentric reflections.  Otherwise
    :data:`MEAN_LABELS`.  Raises BadInputError when the file has neither.
    """
    path = Path(merged_mtz)
    try:
        mtz = gemmi.read_mtz_file(str(path))
    except (RuntimeError, ValueError, OSError) as exc:
        raise BadInputError(path, f"not a readable MTZ file ({exc})") from None
    labels = [c.label for c in mtz.columns]
    data = np.array(mtz.array, dtype=float)
    hkl = data[:, :3].astype(int)
    col = {label: data[:, k] for k, label in enumerate(labels)}
    if all(label in col for label in ANOMALOUS_LABELS):
        ip, sp, im, sm = (col[label] for label in ANOMALOUS_LABELS)
        centric = np.asarray(mtz.spacegroup.operations().centric_flag_array(hkl), dtype=bool)
        plus = _measured(ip, sp)
        minus = _measured(im, sm) & ~centric
        # interleave: I(+) of a reflection, then its I(−), in the file's order
        order = np.argsort(
            np.concatenate([np.arange(len(hkl)), np.arange(len(hkl))]), kind="stable"
        )
        all_hkl = np.concatenate([hkl, -hkl])[order]
        all_i = np.concatenate([ip, im])[order]
        all_s = np.concatenate([sp, sm])[order]
        keep = np.concatenate([plus, minus])[order]
        return HklfData(all_hkl[keep], all_i[keep], all_s[keep])
    if all(label in col for label in MEAN_LABELS):
        i, s = (col[label] for label in MEAN_LABELS)
        keep = _measured(i, s)
        return HklfData(hkl[keep], i[keep], s[keep])
    raise BadInputError(
        path,
        f"no {'/'.join(ANOMALOUS_LABELS)} or {'/'.join(MEAN_LABELS)} columns for an HKLF 4 "
        f"file (it has {', '.join(labels)})",
    )


def _measured(i: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    return np.isfinite(i) & np.isfinite(sigma) & (sigma > 0)


def f82_scale(i: np.ndarray, sigma: np.ndarray) -> float:
    """The factor (≤ 1) that brings every intensity and σ into an F8.2 field."""
    scale = 1.0
    top = max(float(np.max(i, initial=0.0)), float(np.max(sigma, initial=0.0)))
    if top > F82_MAX:
        scale = F82_MAX / top
    low = float(np.min(i, initial=0.0))
    if low * scale < F82_MIN:
        scale = F82_MIN / low
    return scale


# -- writing and reading -------------------------------------------------------------


def hklf4_line(h: int, k: int, l: int, i: float, sigma: float) -> str:  # noqa: E741
    """One HKLF 4 line, ``(3I4, 2F8.2)``."""
    return f"{h:4d}{k:4d}{l:4d}{i:8.2f}{sigma:8.2f}"


def format_hklf4(data: HklfData, scale: float = 1.0) -> str:
    """The text of an HKLF 4 file of ``data`` with intensities and σ times ``scale``,
    ending with the 0 0 0 line."""
    lo, hi = I4_RANGE
    if data.hkl.size and (data.hkl.min() < lo or data.hkl.max() > hi):
        raise ValueError(f"a Miller index outside {lo}..{hi} does not fit HKLF 4's I4 fields")
    lines = [
        hklf4_line(int(h), int(k), int(l), i * scale, s * scale)
        for (h, k, l), i, s in zip(data.hkl, data.i, data.sigma, strict=True)  # noqa: E741
    ]
    lines.append(hklf4_line(0, 0, 0, 0.0, 0.0))
    return "\n".join(lines) + "\n"


def write_hklf4(merged_mtz: str | Path, path: str | Path) -> int:
    """Write the SHELX HKLF 4 file ``path`` of ``merged_mtz`` (see the module docstring);
    returns the number of reflection lines (the 0 0 0 line not counted).

    Raises BadInputError when the MTZ cannot be read or has no intensity columns.
    """
    data = mates_from_mtz(merged_mtz)
    scale = f82_scale(data.i, data.sigma)
    atomic_write_text(Path(path), format_hklf4(data, scale))
    return len(data.i)


def read_hklf4(path: str | Path) -> HklfData:
    """The reflections of an HKLF 4 file (fixed columns ``3I4, 2F8.2``), up to the
    0 0 0 line or the end of the file."""
    hkl, i, s = [], [], []
    for line in Path(path).read_text().splitlines():
        if not line.strip():
            continue
        h, k, l = (int(line[a : a + 4]) for a in (0, 4, 8))  # noqa: E741
        if h == k == l == 0:
            break
        hkl.append((h, k, l))
        i.append(float(line[12:20]))
        s.append(float(line[20:28]))
    return HklfData(np.array(hkl, dtype=int).reshape(-1, 3), np.array(i), np.array(s))


def is_f82(value: float) -> bool:
    """Whether ``value`` prints in an F8.2 field without widening it."""
    return math.isfinite(value) and len(f"{value:8.2f}") == 8
