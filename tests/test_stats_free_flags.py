"""FreeR flags: one flag per reflection of a crystal form, in every file (CCP4 convention)."""

from __future__ import annotations

import gemmi
import numpy as np
import pytest

from mtz_readers import read_with_cctbx
from mxflow.stats.free_flags import LABEL, add_free_flags, free_flags


def _hkl(rng, n=20000, top=25):
    return rng.integers(-top, top + 1, size=(n, 3))


@pytest.mark.parametrize("sg", ["P 21 21 21", "P 4", "P 61 2 2", "C 1 2 1"])
def test_equivalents_and_friedel_mates_share_a_flag(sg):
    rng = np.random.default_rng(1)
    hkl = _hkl(rng)
    flags = free_flags(hkl, sg)
    group = gemmi.SpaceGroup(sg)
    for op in group.operations().sym_ops:
        rot = np.array(op.rot) // op.DEN
        for sign in (1, -1):
            assert np.array_equal(free_flags(sign * hkl @ rot, sg), flags), (sg, op.triplet())


def test_about_one_in_twenty_is_free_and_all_twenty_values_occur():
    rng = np.random.default_rng(2)
    hkl = _hkl(rng)
    keys = {tuple(x) for x in hkl}
    flags = free_flags(np.array(sorted(keys)), "P 1")
    assert set(np.unique(flags)) == set(range(20))
    assert 0.04 < np.mean(flags == 0) < 0.06


def test_flags_depend_on_the_reflection_only():
    """The same reflection gets the same flag whatever else is in the file (a cluster, a
    rerun, a file reaching higher resolution)."""
    rng = np.random.default_rng(3)
    hkl = _hkl(rng, 5000)
    low = hkl[np.abs(hkl).max(axis=1) <= 10]
    assert np.array_equal(
        free_flags(low, "P 21 21 21"), free_flags(hkl, "P 21 21 21")[np.abs(hkl).max(axis=1) <= 10]
    )


def _merged_mtz(path, sg="P 21 21 21", cell=(40, 50, 60, 90, 90, 90)):
    mtz = gemmi.Mtz(with_base=True)
    mtz.spacegroup = gemmi.SpaceGroup(sg)
    mtz.set_cell_for_all(gemmi.UnitCell(*cell))
    mtz.add_dataset("x").wavelength = 1.0
    mtz.add_column("IMEAN", "J")
    mtz.add_column("SIGIMEAN", "Q")
    hkl = np.array(gemmi.make_miller_array(mtz.cell, mtz.spacegroup, 3.0))
    data = np.column_stack([hkl, np.ones(len(hkl)), np.full(len(hkl), 0.1)])
    mtz.set_data(data.astype(np.float32))
    mtz.write_to_file(str(path))
    return len(hkl)


def test_add_free_flags_is_read_the_same_by_gemmi_and_cctbx(tmp_path):
    n = _merged_mtz(tmp_path / "in.mtz")
    mtz = gemmi.read_mtz_file(str(tmp_path / "in.mtz"))
    add_free_flags(mtz)
    add_free_flags(mtz)  # a second call replaces the column, never adds one
    mtz.write_to_file(str(tmp_path / "out.mtz"))
    back = gemmi.read_mtz_file(str(tmp_path / "out.mtz"))
    assert back.column_labels() == ["H", "K", "L", "IMEAN", "SIGIMEAN", LABEL]
    flags = np.asarray(back.column_with_label(LABEL), dtype=int)
    other = read_with_cctbx(tmp_path / "out.mtz")
    assert other["columns"] == back.column_labels()
    assert other["space_group"] == "P 21 21 21" and other["n_refl"] == n
    assert other["free_values"] == sorted(set(flags.tolist()))
    assert other["n_free"] == int((flags == 0).sum()) > 0


def test_remove_absences_drops_what_the_space_group_extinguishes(tmp_path):
    from mxflow.util.mtz import remove_absences

    mtz = gemmi.Mtz(with_base=True)
    mtz.spacegroup = gemmi.SpaceGroup("P 21 21 21")
    mtz.set_cell_for_all(gemmi.UnitCell(40, 50, 60, 90, 90, 90))
    mtz.add_dataset("x")
    mtz.add_column("IMEAN", "J")
    hkl = [(0, 3, 0), (0, 4, 0), (5, 0, 0), (0, 0, 7), (0, 0, 8), (1, 2, 3)]
    mtz.set_data(np.array([[*h, 1.0] for h in hkl], dtype=np.float32))
    assert remove_absences(mtz) == 3
    assert [tuple(h) for h in mtz.make_miller_array()] == [(0, 4, 0), (0, 0, 8), (1, 2, 3)]
    assert remove_absences(mtz) == 0
