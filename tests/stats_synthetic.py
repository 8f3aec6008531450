"""Small synthetic unmerged MTZ files with known merging statistics (for tests)."""

from __future__ import annotations

from pathlib import Path

import gemmi
import numpy as np


def write_unmerged_mtz(
    path: Path,
    hkl: np.ndarray,
    isym: np.ndarray,
    intensity: np.ndarray,
    sigma: np.ndarray,
    cell: tuple[float, ...] = (50.0, 60.0, 70.0, 90.0, 90.0, 90.0),
    space_group: str = "P 21 21 21",
) -> Path:
    """Write an unmerged MTZ (H K L M/ISYM BATCH I SIGI); hkl must be ASU indices."""
    mtz = gemmi.Mtz(with_base=True)
    mtz.spacegroup = gemmi.SpaceGroup(space_group)
    mtz.set_cell_for_all(gemmi.UnitCell(*cell))
    mtz.add_dataset("synthetic")
    for label, kind in (("M/ISYM", "Y"), ("BATCH", "B"), ("I", "J"), ("SIGI", "Q")):
        mtz.add_column(label, kind)
    n = len(hkl)
    data = np.column_stack(
        [hkl.astype(float), isym.astype(float), np.ones(n), intensity, sigma]
    ).astype(np.float32)
    mtz.set_data(data)
    batch = gemmi.Mtz.Batch()  # one batch header marks the file as unmerged
    batch.number = 1
    batch.cell = gemmi.UnitCell(*cell)
    batch.dataset_id = 1
    mtz.batches.append(batch)
    mtz.write_to_file(str(path))
    return path


def asu_hkl(d_min: float, cell=(50.0, 60.0, 70.0, 90.0, 90.0, 90.0), sg="P 21 21 21"):
    """All symmetry-allowed ASU reflections to d_min (Å)."""
    return gemmi.make_miller_array(gemmi.UnitCell(*cell), gemmi.SpaceGroup(sg), d_min)
