"""The free set: which reflections refinement must leave out, the same in every file of a crystal.

CCP4 convention: an integer column ``FreeR_flag`` with values 0–19, where 0
marks the test set (5 % of the reflections).  Every symmetry equivalent and
Friedel mate of a reflection gets the same flag.

mxflow draws no random set to store and look up: a reflection's flag is a
hash of its symmetry-unique Miller index (in the data's space group and
setting).  So every merged MTZ of one crystal form — each cluster, each
per-dataset ``merged.mtz``, every rerun — carries the same flag for the
same reflection, and data that reach a higher resolution later extend the
set without redrawing it.  Datasets indexed in another setting of an
ambiguous lattice (before dials.cosym made them consistent) have flags in
their own setting.
"""

from __future__ import annotations

from pathlib import Path

import gemmi
import numpy as np

from mxflow.cluster.intensity import canonical_keys
from mxflow.util.files import atomic_write_bytes
from mxflow.util.mtz import keep_resolution, remove_absences

LABEL = "FreeR_flag"
N_FLAGS = 20  # flags 0 … 19; 0 is the test set
#: mixed into the hash; changing it draws a different (equally valid) free set
SEED = 0x6D78666C6F77  # "mxflow"


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: uint64 → well-mixed uint64 (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def free_flags(hkl: np.ndarray, space_group: gemmi.SpaceGroup | str) -> np.ndarray:
    """FreeR_flag (0–19, 0 = test set) of each Miller index (N, 3) in ``space_group``.

    A pure function of the reflection: equivalents and Friedel mates share a
    flag, and about 1 in 20 reflections has flag 0.
    """
    keys = canonical_keys(np.asarray(hkl, dtype=np.int64), space_group).astype(np.uint64)
    return (_mix64(keys ^ np.uint64(SEED)) % np.uint64(N_FLAGS)).astype(np.int64)


def add_free_flags(mtz: gemmi.Mtz) -> None:
    """Give a merged MTZ its ``FreeR_flag`` column (replaced if present), in place."""
    flags = free_flags(np.asarray(mtz.make_miller_array()), mtz.spacegroup)
    if mtz.column_with_label(LABEL) is None:
        mtz.add_column(LABEL, "I", dataset_id=mtz.datasets[-1].id if mtz.datasets else -1)
    data = np.array(mtz, copy=True)
    data[:, mtz.column_labels().index(LABEL)] = flags
    mtz.set_data(data)
    mtz.history = [*mtz.history, f"mxflow: {LABEL} 0-{N_FLAGS - 1} (0 = test set) by hash"]


def write_merged_mtz(
    src: str | Path, dst: str | Path, note: str = "", d_min: float | None = None
) -> None:
    """The merged MTZ a user gets: ``src`` (a DIALS merged MTZ) written to ``dst`` with
    the reflections of d ≥ ``d_min`` Å (when given), no systematic absences and the
    FreeR_flag column; the history says what mxflow did (``note`` first).

    Used for every merged.mtz: per dataset (mxflow process) and per cluster (merging).
    ``dst`` is written then renamed.
    """
    mtz = gemmi.read_mtz_file(str(src))
    history = [f"mxflow: {note}"] if note else []
    if d_min:
        keep_resolution(mtz, d_min=d_min)
        history.append(f"mxflow: resolution cut at {d_min:.3f} A")
    history.append(f"mxflow: {remove_absences(mtz)} systematic absences removed")
    mtz.history = [*mtz.history, *history]
    add_free_flags(mtz)
    atomic_write_bytes(dst, mtz.write_to_bytes())
