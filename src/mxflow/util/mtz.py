"""MTZ files through gemmi: a resolution cut, written then renamed."""

from __future__ import annotations

from pathlib import Path

import gemmi
import numpy as np

from mxflow.util.files import atomic_write_bytes


def keep_resolution(mtz: gemmi.Mtz, d_min: float | None = None, d_max: float | None = None) -> None:
    """Drop the reflections of ``mtz`` outside d_min ≤ d ≤ d_max (Å), in place."""
    if d_min is None and d_max is None:
        return
    d = mtz.make_d_array()
    keep = np.ones(len(d), dtype=bool)
    if d_min is not None:
        keep &= d >= d_min
    if d_max is not None:
        keep &= d <= d_max
    mtz.set_data(np.asarray(mtz)[keep])


def write_unmerged_mtz(
    src: str | Path,
    dst: str | Path,
    dataset_name: str,
    history: list[str],
    d_min: float | None = None,
) -> None:
    """The unmerged MTZ a user gets: ``src`` (dials.export's) with its dataset named
    ``dataset_name`` (dials.export 3.12 has no option for it), the ``history``
    lines added, and only d ≥ ``d_min`` Å when given.  Written then renamed."""
    mtz = gemmi.read_mtz_file(str(src))
    if d_min:
        keep_resolution(mtz, d_min=d_min)
        history = [*history, f"mxflow: resolution cut at {d_min:.3f} A"]
    for ds in mtz.datasets:
        if ds.id > 0 or len(mtz.datasets) == 1:
            ds.dataset_name = dataset_name
    mtz.history = [*mtz.history, *history]
    atomic_write_bytes(dst, mtz.write_to_bytes())


def remove_absences(mtz: gemmi.Mtz) -> int:
    """Drop the reflections that the file's space group extinguishes; returns how many."""
    hkl = np.asarray(mtz.make_miller_array(), dtype=np.int32)
    if not len(hkl):
        return 0
    absent = np.asarray(mtz.spacegroup.operations().systematic_absences(hkl), dtype=bool)
    if absent.any():
        mtz.set_data(np.asarray(mtz)[~absent])
    return int(absent.sum())
