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


# --------------------------------------------------------------------------
# flags taken from another MTZ (--free-flags, the sample sheet's free_flags column)

from mxflow.cluster.intensity import apply_op, canonical_keys  # noqa: E402
from mxflow.errors import BadInputError  # noqa: E402
from mxflow.stats.free_flags import (  # noqa: E402
    load_free_flag_source,
    read_free_flag_source,
    write_merged_mtz,
)


def _write_mtz(path, sg, cell, hkl, columns):
    """An MTZ of ``hkl`` with ``columns`` {label: (type, values)}."""
    mtz = gemmi.Mtz(with_base=True)
    mtz.spacegroup = gemmi.SpaceGroup(sg)
    mtz.set_cell_for_all(gemmi.UnitCell(*cell))
    mtz.add_dataset("x").wavelength = 1.0
    for label, (kind, _) in columns.items():
        mtz.add_column(label, kind)
    data = np.column_stack([hkl, *[v for _, v in columns.values()]]).astype(np.float32)
    mtz.set_data(data)
    mtz.write_to_file(str(path))


def _truth(cell, sg, d_min, seed=5):
    """Every unique reflection of ``cell`` to ``d_min`` (setting A), a Wilson-like intensity
    and a random flag (not the hash: copied flags must be told from hash ones)."""
    rng = np.random.default_rng(seed)
    hkl = np.array(gemmi.make_miller_array(gemmi.UnitCell(*cell), gemmi.SpaceGroup(sg), d_min))
    return hkl, rng.exponential(1000.0, len(hkl)), rng.integers(0, 20, len(hkl))


def _flag_of(keys, table_keys, table_flags):
    """The flag of each canonical key in a (keys → flags) table; -1 where absent."""
    order = np.argsort(table_keys)
    k, f = table_keys[order], table_flags[order]
    pos = np.clip(np.searchsorted(k, keys), 0, len(k) - 1)
    return np.where(k[pos] == keys, f[pos], -1)


def _read_flags(path):
    mtz = gemmi.read_mtz_file(str(path))
    hkl = np.asarray(mtz.make_miller_array(), dtype=np.int64)
    return mtz, hkl, np.asarray(mtz.column_with_label(LABEL), dtype=int)


P4_CELL = (60.0, 60.0, 80.0, 90.0, 90.0, 90.0)


def test_flags_follow_the_source_through_the_twin_operator_and_are_extended(tmp_path):
    """P 4 (twin law k,h,-l): a source in setting A with intensities and flags to 2.5 Å;
    data in setting B to 2.0 Å.  The data are reindexed by CC, every common reflection
    takes the source's flag, the rest the hash flag of its index in setting A."""
    sg = "P 4"
    hkl_a, intensity, flags = _truth(P4_CELL, sg, 2.0)
    d = gemmi.UnitCell(*P4_CELL).calculate_d_array(hkl_a)
    in_source = d >= 2.5
    _write_mtz(
        tmp_path / "flags.mtz", sg, P4_CELL, hkl_a[in_source],
        {"IMEAN": ("J", intensity[in_source]), "SIGIMEAN": ("Q", np.full(in_source.sum(), 30.0)),
         "FreeR_flag": ("I", flags[in_source])},
    )  # fmt: skip
    twin = gemmi.Op("k,h,-l")
    hkl_b = apply_op(hkl_a, twin)  # the same reflections, indexed in the other setting
    rng = np.random.default_rng(9)
    noisy = intensity + rng.normal(0, 30.0, len(intensity))
    _write_mtz(
        tmp_path / "data.mtz", sg, P4_CELL, hkl_b,
        {"IMEAN": ("J", noisy), "SIGIMEAN": ("Q", np.full(len(noisy), 30.0))},
    )  # fmt: skip
    report = write_merged_mtz(
        tmp_path / "data.mtz", tmp_path / "out.mtz", free_flags=tmp_path / "flags.mtz"
    )
    assert report.chosen_by == "CC" and report.cc[report.operator] > 0.9
    mtz, hkl_out, out = _read_flags(tmp_path / "out.mtz")
    # the physical reflection of each output row, in setting A (k,h,-l is its own inverse)
    phys = apply_op(hkl_out, twin)
    src_keys, src_flags = canonical_keys(hkl_a[in_source], sg), flags[in_source]
    expected = _flag_of(canonical_keys(phys, sg), src_keys, src_flags)
    common = expected >= 0
    assert common.sum() == in_source.sum() == report.n_copied
    assert np.array_equal(out[common], expected[common])
    # without the reindexing the flags would not agree (so this test can fail)
    naive = _flag_of(canonical_keys(hkl_out, sg), src_keys, src_flags)
    assert np.mean(naive[common] == out[common]) < 0.3
    # beyond the source: the hash flag of the index in the source's setting
    assert (~common).sum() == report.n_extended == report.n_beyond > 0
    assert np.array_equal(out[~common], free_flags(phys[~common], sg))
    history = "\n".join(mtz.history)
    assert "flags.mtz" in history and report.operator in history
    assert f"{report.n_copied} flags copied, {report.n_extended} extended" in history
    other = read_with_cctbx(tmp_path / "out.mtz")
    assert LABEL in other["columns"] and other["n_refl"] == len(out)
    assert other["n_free"] == int((out == 0).sum()) > 0


def test_without_intensities_the_cell_picks_the_setting(tmp_path):
    """Orthorhombic a ≈ b: the source has flags only; the data's a and b are swapped
    (-y,-x,-z ≈ k,h,l).  The cell tells the settings apart."""
    sg, cell_a = "P 2 2 2", (50.0, 51.5, 70.0, 90.0, 90.0, 90.0)
    hkl_a, _, flags = _truth(cell_a, sg, 2.5)
    _write_mtz(tmp_path / "flags.mtz", sg, cell_a, hkl_a, {"FreeR_flag": ("I", flags)})
    cell_b = (51.5, 50.0, 70.0, 90.0, 90.0, 90.0)
    hkl_b = hkl_a[:, [1, 0, 2]]
    _write_mtz(
        tmp_path / "data.mtz", sg, cell_b, hkl_b,
        {"IMEAN": ("J", np.ones(len(hkl_b))), "SIGIMEAN": ("Q", np.ones(len(hkl_b)))},
    )  # fmt: skip
    report = write_merged_mtz(
        tmp_path / "data.mtz", tmp_path / "out.mtz", free_flags=tmp_path / "flags.mtz"
    )
    assert report.chosen_by == "cell" and report.operator != "x,y,z"
    _, hkl_out, out = _read_flags(tmp_path / "out.mtz")
    expected = _flag_of(canonical_keys(hkl_out[:, [1, 0, 2]], sg), canonical_keys(hkl_a, sg), flags)
    assert (expected >= 0).all() and np.array_equal(out, expected)
    assert report.n_copied == len(out) and report.n_extended == 0
    naive = _flag_of(canonical_keys(hkl_out, sg), canonical_keys(hkl_a, sg), flags)
    assert np.mean(naive == out) < 0.3


def test_an_undecidable_setting_is_identity_and_says_so(tmp_path):
    sg = "P 4"
    hkl, _, flags = _truth(P4_CELL, sg, 3.0)
    _write_mtz(tmp_path / "flags.mtz", sg, P4_CELL, hkl, {"FreeR_flag": ("I", flags)})
    _write_mtz(tmp_path / "data.mtz", sg, P4_CELL, hkl, {"IMEAN": ("J", np.ones(len(hkl)))})
    report = write_merged_mtz(
        tmp_path / "data.mtz", tmp_path / "out.mtz", free_flags=tmp_path / "flags.mtz"
    )
    assert (report.chosen_by, report.operator) == ("unchecked", "x,y,z")
    mtz, _, out = _read_flags(tmp_path / "out.mtz")
    assert np.array_equal(out, flags)
    assert "NOT CHECKED" in "\n".join(mtz.history)


def test_phenix_style_flags_are_converted_to_ccp4(tmp_path):
    """R-free-flags 0/1 with 1 = test set (5 %) → FreeR_flag 0 = test set, work 1–19."""
    sg, cell = "P 21 21 21", (40.0, 50.0, 60.0, 90.0, 90.0, 90.0)
    hkl = np.array(gemmi.make_miller_array(gemmi.UnitCell(*cell), gemmi.SpaceGroup(sg), 2.5))
    test = np.random.default_rng(4).random(len(hkl)) < 0.05
    _write_mtz(tmp_path / "phenix.mtz", sg, cell, hkl, {"R-free-flags": ("I", test.astype(int))})
    source = read_free_flag_source(tmp_path / "phenix.mtz")
    assert source.label == "R-free-flags" and "converted" in source.conversion
    assert np.array_equal(source.flags == 0, test)
    assert set(np.unique(source.flags[~test])) == set(range(1, 20))
    _merged_mtz(tmp_path / "data.mtz", sg, cell)
    write_merged_mtz(
        tmp_path / "data.mtz", tmp_path / "out.mtz", free_flags=tmp_path / "phenix.mtz"
    )
    mtz, hkl_out, out = _read_flags(tmp_path / "out.mtz")
    expected_test = _flag_of(canonical_keys(hkl_out, sg), canonical_keys(hkl, sg), test.astype(int))
    assert np.array_equal(out == 0, expected_test == 1)
    assert any("R-free-flags 0/1 with 1 = test set" in h for h in mtz.history)
    other = read_with_cctbx(tmp_path / "out.mtz")
    assert other["n_free"] == int((out == 0).sum()) == int((expected_test == 1).sum()) > 0
    assert other["free_values"] == list(range(20))


def test_a_source_in_ccp4_convention_is_kept(tmp_path):
    sg, cell = "P 21 21 21", (40.0, 50.0, 60.0, 90.0, 90.0, 90.0)
    hkl, _, flags = _truth(cell, sg, 3.0)
    _write_mtz(tmp_path / "f.mtz", sg, cell, hkl, {"FREE": ("I", flags)})
    source = read_free_flag_source(tmp_path / "f.mtz")
    assert source.label == "FREE" and source.conversion == ""
    assert np.array_equal(source.flags, flags) and source.intensity is None


@pytest.mark.parametrize(
    "columns,message",
    [
        ({"IMEAN": ("J", None)}, "no free-flag column"),
        ({"FreeR_flag": ("I", "one")}, "one value only"),
        ({"FreeR_flag": ("I", "half")}, "no test set can be told"),
    ],
)
def test_a_source_without_usable_flags_is_refused(tmp_path, columns, message):
    sg, cell = "P 21 21 21", (40.0, 50.0, 60.0, 90.0, 90.0, 90.0)
    hkl = np.array(gemmi.make_miller_array(gemmi.UnitCell(*cell), gemmi.SpaceGroup(sg), 3.0))
    values = {
        None: np.ones(len(hkl)),
        "one": np.zeros(len(hkl)),
        "half": np.arange(len(hkl)) % 2,
    }
    cols = {k: (t, values[v]) for k, (t, v) in columns.items()}
    _write_mtz(tmp_path / "bad.mtz", sg, cell, hkl, cols)
    with pytest.raises(BadInputError, match=message) as exc:
        read_free_flag_source(tmp_path / "bad.mtz")
    assert exc.value.path == str(tmp_path / "bad.mtz")


def test_missing_or_unreadable_source_is_refused(tmp_path):
    with pytest.raises(BadInputError, match="free-flag MTZ not found"):
        load_free_flag_source(tmp_path / "missing.mtz")
    (tmp_path / "junk.mtz").write_text("not an MTZ")
    with pytest.raises(BadInputError, match="not a readable MTZ") as exc:
        read_free_flag_source(tmp_path / "junk.mtz")
    assert "junk.mtz" in str(exc.value)


def test_an_incompatible_cell_is_an_error_and_nothing_is_written(tmp_path):
    sg = "P 4"
    hkl, _, flags = _truth(P4_CELL, sg, 3.0)
    _write_mtz(tmp_path / "flags.mtz", sg, P4_CELL, hkl, {"FreeR_flag": ("I", flags)})
    _merged_mtz(tmp_path / "data.mtz", sg, (66.0, 66.0, 88.0, 90, 90, 90))
    with pytest.raises(BadInputError, match="does not match the data's") as exc:
        write_merged_mtz(
            tmp_path / "data.mtz", tmp_path / "out.mtz", free_flags=tmp_path / "flags.mtz"
        )
    assert exc.value.path == str(tmp_path / "flags.mtz")
    assert not (tmp_path / "out.mtz").exists()


def test_the_source_is_read_once_and_again_when_it_changes(tmp_path):
    sg, cell = "P 21 21 21", (40.0, 50.0, 60.0, 90.0, 90.0, 90.0)
    hkl, _, flags = _truth(cell, sg, 3.0)
    _write_mtz(tmp_path / "f.mtz", sg, cell, hkl, {"FreeR_flag": ("I", flags)})
    first = load_free_flag_source(tmp_path / "f.mtz")
    assert load_free_flag_source(tmp_path / "f.mtz") is first
    import os

    _write_mtz(tmp_path / "f.mtz", sg, cell, hkl, {"FreeR_flag": ("I", (flags + 1) % 20)})
    os.utime(tmp_path / "f.mtz", ns=(1, 10**18))  # a new mtime even on coarse clocks
    again = load_free_flag_source(tmp_path / "f.mtz")
    assert again is not first and np.array_equal(again.flags, (flags + 1) % 20)
