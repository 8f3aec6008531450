"""Small MTZ files for the sample-sheet tests (not a test module)."""

from __future__ import annotations

from pathlib import Path

import gemmi
import numpy as np


def write_mtz(path: Path, labels: tuple[str, ...] = ("IMEAN", "SIGIMEAN")) -> Path:
    """A one-reflection merged MTZ with the columns ``labels`` (after H K L)."""
    mtz = gemmi.Mtz(with_base=True)
    mtz.spacegroup = gemmi.SpaceGroup("P 43 21 2")
    mtz.set_cell_for_all(gemmi.UnitCell(78, 78, 37, 90, 90, 90))
    mtz.add_dataset("crystal")
    for label in labels:
        mtz.add_column(label, "Q" if label.startswith("SIG") else "J")
    mtz.set_data(np.array([[1, 2, 3] + [10.0] * len(labels)], dtype=np.float32))
    mtz.write_to_file(str(path))
    return path
