"""--free-flags MTZ: mxflow merge, mxflow run, the sample sheet's free_flags column and the
per-dataset merged.mtz of mxflow process all reach the flag file (stats.free_flags)."""

from __future__ import annotations

from pathlib import Path

import gemmi
import numpy as np
import pytest

from images_fixtures import cbf_sweep
from mtz_readers import read_with_cctbx
from mxflow.cli import build_parser, main
from mxflow.discover.collection import Collection, discover_collection, read_sample_sheet
from mxflow.errors import BadInputError
from mxflow.model import Dataset, ProcessingOptions
from mxflow.schedule import fake, post
from mxflow.schedule.collection import discover
from mxflow.schedule.options import config_from_args
from mxflow.stats.free_flags import LABEL, free_flags
from run_fixtures import merge_options_of

SG, CELL = "P 21 21 21", (40.0, 50.0, 60.0, 90.0, 90.0, 90.0)
LATER = 4e9  # "now" far after every file was written


def _mtz(
    path: Path, flags: bool = True, cell=CELL, d_min: float = 3.0, seed: int = 1
) -> np.ndarray:
    """An MTZ of every reflection to ``d_min`` with IMEAN and (``flags``) random FreeR_flags."""
    mtz = gemmi.Mtz(with_base=True)
    mtz.spacegroup = gemmi.SpaceGroup(SG)
    mtz.set_cell_for_all(gemmi.UnitCell(*cell))
    mtz.add_dataset("x").wavelength = 1.0
    mtz.add_column("IMEAN", "J")
    mtz.add_column("SIGIMEAN", "Q")
    hkl = np.array(gemmi.make_miller_array(mtz.cell, mtz.spacegroup, d_min))
    cols = [hkl, np.ones(len(hkl)), np.full(len(hkl), 0.1)]
    values = np.random.default_rng(seed).integers(0, 20, len(hkl))
    if flags:
        mtz.add_column(LABEL, "I")
        cols.append(values)
    mtz.set_data(np.column_stack(cols).astype(np.float32))
    mtz.write_to_file(str(path))
    return values


# -------------------------------------------------------------- mxflow merge


@pytest.mark.parametrize(
    "make,message",
    [
        (None, "missing.mtz: free-flag MTZ not found"),
        ("noflags", "no free-flag column (FreeR_flag, FreeRflag, FREE, R-free-flags)"),
    ],
)
def test_merge_free_flags_is_checked_before_any_work(tmp_path, capsys, make, message):
    path = tmp_path / "missing.mtz"
    if make:
        path = tmp_path / "noflags.mtz"
        _mtz(path, flags=False)
    with pytest.raises(SystemExit) as exc:
        main(["merge", str(tmp_path / "x.expt"), "--workdir", str(tmp_path / "out"),
              "--free-flags", str(path)])  # fmt: skip
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "argument --free-flags" in err and message in err
    assert not (tmp_path / "out").exists()


def test_merge_free_flags_reaches_the_merge_options(tmp_path, monkeypatch):
    _mtz(tmp_path / "flags.mtz")
    opts = merge_options_of(tmp_path, monkeypatch, "--free-flags", "flags.mtz")
    assert opts.free_flags == str(tmp_path / "flags.mtz")  # absolute: DIALS runs elsewhere


# -------------------------------------------------------------- mxflow run


def _fake_collection(root, **_):
    sweep = fake.fake_sweep("/d/x_#####.cbf")
    coll = Collection(str(root), "fake")
    coll.datasets = [
        Dataset("a1", sweep, "a"),
        Dataset("a2", sweep, "a"),
        Dataset("b1", sweep, "b", free_flags_mtz="/sheet/b.mtz"),
        Dataset("b2", sweep, "b"),
        Dataset("c1", sweep, "c", free_flags_mtz="/sheet/c1.mtz"),
        Dataset("c2", sweep, "c", free_flags_mtz="/sheet/c2.mtz"),
    ]
    coll.wedges = [Dataset("a1_1-10", sweep, "a", wedge=(1, 10))]
    return coll


def test_run_free_flags_applies_to_every_sample_the_sheet_leaves_without(tmp_path):
    _mtz(tmp_path / "flags.mtz")
    argv = ["run", str(tmp_path), "--workdir", str(tmp_path / "out"),
            "--free-flags", str(tmp_path / "flags.mtz"),
            "--discover-fn", "test_free_flags_options:_fake_collection"]  # fmt: skip
    cfg = config_from_args(build_parser("run").parse_args(argv))
    coll = discover(tmp_path, cfg)
    cli_file = str(tmp_path / "flags.mtz")
    got = {d.name: d.free_flags_mtz for d in [*coll.datasets, *coll.wedges]}
    assert got == {
        "a1": cli_file, "a2": cli_file, "a1_1-10": cli_file,  # the sheet says nothing
        "b1": "/sheet/b.mtz", "b2": "/sheet/b.mtz",  # the sheet's file for the whole sample
        "c1": "/sheet/c1.mtz", "c2": "/sheet/c2.mtz",  # two files: left as the sheet says
    }  # fmt: skip
    settings = post.sample_settings(coll.datasets)
    options = {s: post.merge_options(s, ProcessingOptions(), sheet=v) for s, v in settings.items()}
    assert options["a"].free_flags == cli_file
    assert options["b"].free_flags == "/sheet/b.mtz"
    assert options["c"].free_flags is None  # ambiguous: neither


def test_run_without_free_flags_leaves_the_datasets_alone(tmp_path):
    argv = ["run", str(tmp_path), "--workdir", str(tmp_path / "out"),
            "--discover-fn", "test_free_flags_options:_fake_collection"]  # fmt: skip
    coll = discover(tmp_path, config_from_args(build_parser("run").parse_args(argv)))
    assert [d.free_flags_mtz for d in coll.datasets[:2]] == [None, None]


def test_run_free_flags_missing_file_fails_at_the_command_line(tmp_path, capsys):
    with pytest.raises(SystemExit):
        build_parser("run").parse_args(
            ["run", str(tmp_path), "--workdir", "out", "--free-flags", "nope.mtz"]
        )
    assert "nope.mtz: free-flag MTZ not found" in capsys.readouterr().err


# -------------------------------------------------------------- sample sheet


def test_sample_sheet_free_flags_column_reaches_datasets_and_merge_options(tmp_path):
    root = tmp_path / "run"
    cbf_sweep(root / "a", "lyso", range(1, 4), width=1.0)
    cbf_sweep(root / "b", "thau", range(1, 4), width=1.0)
    (tmp_path / "sheets").mkdir()
    _mtz(tmp_path / "sheets" / "lyso_free.mtz")
    sheet = tmp_path / "sheets" / "samples.csv"
    sheet.write_text(
        f"topdir,name,freer\n{root / 'a'},lysozyme,lyso_free.mtz\n{root / 'b'},thau,\n"
    )
    entries = read_sample_sheet(sheet)
    assert [e.free_flags_mtz for e in entries] == [str(tmp_path / "sheets" / "lyso_free.mtz"), None]
    coll = discover_collection(root, sample_sheet=sheet, now=LATER, wedge_deg=1.0)
    by_sample = {d.sample: d.free_flags_mtz for d in coll.datasets}
    assert by_sample == {"lysozyme": str(tmp_path / "sheets" / "lyso_free.mtz"), "thau": None}
    assert {w.free_flags_mtz for w in coll.wedges if w.sample == "lysozyme"} == {
        str(tmp_path / "sheets" / "lyso_free.mtz")
    }
    settings = post.sample_settings(coll.datasets)
    assert settings["lysozyme"].free_flags == str(tmp_path / "sheets" / "lyso_free.mtz")
    opts = post.merge_options("lysozyme", ProcessingOptions(), sheet=settings["lysozyme"])
    assert opts.free_flags == str(tmp_path / "sheets" / "lyso_free.mtz")
    assert (
        post.merge_options("thau", ProcessingOptions(), sheet=settings["thau"]).free_flags is None
    )


@pytest.mark.parametrize(
    "column,value,message",
    [
        (
            "free_flags",
            "missing.mtz",
            "line 2, column free_flags: free-flag MTZ 'missing.mtz' not found",
        ),
        (
            "free_flags_mtz",
            "noflags.mtz",
            "line 2, column free_flags_mtz: free-flag MTZ .*noflags.mtz: no free-flag column",
        ),
    ],
)
def test_sample_sheet_bad_free_flags_file(tmp_path, column, value, message):
    _mtz(tmp_path / "noflags.mtz", flags=False)
    sheet = tmp_path / "s.csv"
    sheet.write_text(f"pin,name,{column}\nCPS1-01,a,{value}\n")
    with pytest.raises(BadInputError, match=message) as exc:
        read_sample_sheet(sheet)
    assert exc.value.path == str(sheet)


# -------------------------------------------------------------- mxflow process


def test_per_dataset_merged_mtz_takes_the_flags_or_says_why_not(tmp_path):
    from mxflow.process.pipeline import _write_merged_mtz

    source = _mtz(tmp_path / "flags.mtz", d_min=3.0, seed=3)
    src_hkl = np.array(gemmi.make_miller_array(gemmi.UnitCell(*CELL), gemmi.SpaceGroup(SG), 3.0))
    flag_of = {tuple(h): f for h, f in zip(src_hkl.tolist(), source.tolist(), strict=True)}
    work = tmp_path / "ds"
    work.mkdir()
    _mtz(work / "merged_fullres.mtz", flags=False, d_min=2.5)
    _write_merged_mtz(work, 2.8, str(tmp_path / "flags.mtz"))
    mtz = gemmi.read_mtz_file(str(work / "merged.mtz"))
    hkl = np.asarray(mtz.make_miller_array(), dtype=int)
    out = np.asarray(mtz.column_with_label(LABEL), dtype=int)
    d = mtz.make_d_array()
    inner = np.array([tuple(h) in flag_of for h in hkl.tolist()])
    assert d[inner].min() > 2.999 and d[~inner].max() < 3.001  # the source reaches 3.0 Å
    assert [flag_of[tuple(h)] for h in hkl[inner].tolist()] == out[inner].tolist()
    assert np.array_equal(out[~inner], free_flags(hkl[~inner], SG)) and (~inner).any()
    assert d.min() >= 2.8 * (1 - 1e-6)
    other = read_with_cctbx(work / "merged.mtz")
    assert other["n_refl"] == len(out) and other["n_free"] == int((out == 0).sum())
    # a flag file whose cell does not fit this dataset: hash flags, and the history says why
    _mtz(tmp_path / "other.mtz", cell=(44.0, 55.0, 66.0, 90, 90, 90))
    _write_merged_mtz(work, 2.8, str(tmp_path / "other.mtz"))
    mtz = gemmi.read_mtz_file(str(work / "merged.mtz"))
    assert np.array_equal(np.asarray(mtz.column_with_label(LABEL), dtype=int), free_flags(hkl, SG))
    history = " ".join(mtz.history)
    assert "FreeR flags by hash, not from" in history and "other.mtz" in history
