"""Collections: ZOO layout, modes, samples, wedges, raster scans, incomplete data, sample sheets."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from images_fixtures import cbf_frame, cbf_sweep, eiger_master
from mxflow.discover.collection import (
    dataset_prefix,
    discover_collection,
    mode_from_name,
    read_sample_sheet,
    wedge_ranges,
)
from mxflow.errors import BadInputError
from sheet_fixtures import write_mtz as write_reference_mtz

LATER = time.time() + 3600.0  # "now" for tests that want every file settled


@pytest.fixture
def zoo(tmp_path):
    """A small ZOO session: multi pin, helical pin, single pin, scans, KAMO output, a bad file."""
    root = tmp_path / "240101_BL45XU_user"
    p1 = root / "CPS1012-01"
    cbf_sweep(p1 / "data00", "CPS1012-01-multi_001", range(1, 11), width=1.0)
    cbf_sweep(p1 / "data00", "CPS1012-01-multi_002", range(1, 6), start=30.0, width=1.0)
    for n in range(1, 5):  # 2-D raster: stills
        cbf_frame(p1 / "scan00" / "2d" / f"2d_{n:05d}.cbf", start=0.0, width=0.0)
    p2 = root / "CPS1012-02"
    cbf_sweep(p2 / "data00", "cry00", range(1, 36), width=2.0)  # helical, 70°
    for n in range(1, 4):  # vertical edge scan that looks like a rotation: the directory says scan
        cbf_frame(p2 / "lv00_00" / f"lv_{n:05d}.cbf", start=10.0 + (n - 1) * 0.05, width=0.05)
    p3 = root / "CPS1012-03"
    cbf_sweep(p3 / "data00", "single_001", range(1, 21), width=2.0)  # 40°
    (p3 / "data00" / "junk_00001.cbf").write_text("not an image")
    cbf_sweep(root / "_kamoproc" / "CPS1012-01", "old", range(1, 3), width=1.0)
    return root


def by_name(datasets):
    return {d.name: d for d in datasets}


def test_zoo_datasets_modes_and_samples(zoo):
    c = discover_collection(zoo, now=LATER)
    assert c.layout == "zoo"
    ds = by_name(c.datasets)
    assert sorted(ds) == [
        "CPS1012-01/data00/CPS1012-01-multi_001",
        "CPS1012-01/data00/CPS1012-01-multi_002",
        "CPS1012-02/data00/cry00",
        "CPS1012-03/data00/single_001",
    ]
    assert [ds[n].mode for n in sorted(ds)] == ["multi", "multi", "helical", "single"]
    # no sheet: one sample per pin
    assert [ds[n].sample for n in sorted(ds)] == [
        "CPS1012-01",
        "CPS1012-01",
        "CPS1012-02",
        "CPS1012-03",
    ]
    assert ds["CPS1012-02/data00/cry00"].sweep.n_frames == 35
    # raster and vertical scans are never datasets; _kamoproc is not walked
    scans = sorted(str(Path(s.template).parent.relative_to(zoo)) for s in c.raster_scans)
    assert scans == ["CPS1012-01/scan00/2d", "CPS1012-02/lv00_00"]
    assert not any("_kamoproc" in d.sweep.template for d in c.datasets)
    assert not any("scan00" in w.sweep.template or "lv00" in w.sweep.template for w in c.wedges)
    # the unreadable file is a problem naming it, and did not stop anything
    assert [p for p, _ in c.problems] == [str(zoo / "CPS1012-03" / "data00" / "junk_00001.cbf")]
    assert c.incomplete == []


def test_zoo_wedges(zoo):
    c = discover_collection(zoo, wedge_deg=30.0, now=LATER)
    w = {(x.name, x.wedge) for x in c.wedges}
    assert w == {
        ("CPS1012-01/data00/CPS1012-01-multi_001", None),  # multi: never cut
        ("CPS1012-01/data00/CPS1012-01-multi_002", None),
        ("CPS1012-02/data00/cry00_1-15", (1, 15)),  # 30° / 2° = 15 frames
        ("CPS1012-02/data00/cry00_16-30", (16, 30)),
        ("CPS1012-02/data00/cry00_31-35", (31, 35)),  # remainder wedge
        ("CPS1012-03/data00/single_001_1-15", (1, 15)),
        ("CPS1012-03/data00/single_001_16-20", (16, 20)),
    }
    helical = [x for x in c.wedges if x.mode == "helical"]
    assert all(x.sample == "CPS1012-02" for x in helical)
    assert [x.frames for x in helical] == [(1, 15), (16, 30), (31, 35)]
    # no cutting when asked not to
    c2 = discover_collection(zoo, wedge_deg=None, now=LATER)
    assert all(x.wedge is None for x in c2.wedges) and len(c2.wedges) == 4
    c3 = discover_collection(zoo, wedge_deg=0, now=LATER)
    assert [x.wedge for x in c3.wedges] == [None] * 4


def test_wedge_ranges_rounding():
    assert wedge_ranges(1, 100, 0.1, 3.0) == [(1, 30), (31, 60), (61, 90), (91, 100)]
    assert wedge_ranges(1, 3600, 0.1, 30.0)[-1] == (3301, 3600)
    assert len(wedge_ranges(1, 3600, 0.1, 30.0)) == 12
    # 30° / 0.25° = 120 frames; 30° / 0.7° = 42.86 -> 43 frames
    assert wedge_ranges(5, 300, 0.7, 30.0)[:2] == [(5, 47), (48, 90)]
    assert wedge_ranges(1, 10, 1.0, 100.0) == [(1, 10)]


def test_mode_and_prefix_from_names():
    assert mode_from_name("MUL0001-01-multi_003") == "multi"
    assert mode_from_name("multi_02") == "multi"
    assert mode_from_name("cry00") == "helical"
    assert mode_from_name("helical_001") == "helical"
    assert mode_from_name("single_001") == "single"
    assert mode_from_name("lysozyme_1") is None
    assert dataset_prefix("/d/x_001_#####.cbf") == "x_001"
    assert dataset_prefix("/d/x_001_####.cbf.bz2") == "x_001"
    assert dataset_prefix("/d/run1_master.h5") == "run1"


def test_sample_sheet_assigns_samples(zoo, tmp_path):
    write_reference_mtz(tmp_path / "ref.mtz")
    sheet = tmp_path / "samples.csv"
    sheet.write_text(
        "# ZOO sample sheet\n"
        "pin,name,mode,anomalous,space_group,unit_cell,reference\n"
        "CPS1012-1,Lys_multi,multi,no,,,\n"
        'CPS1012-02,Lys_hel,helical,yes,P43212,"79.1 79.1 38.0 90 90 90",ref.mtz\n'
    )
    c = discover_collection(zoo, sample_sheet=sheet, default_sample="unknown", now=LATER)
    ds = by_name(c.datasets)
    assert ds["CPS1012-01/data00/CPS1012-01-multi_001"].sample == "Lys_multi"
    hel = ds["CPS1012-02/data00/cry00"]
    assert (hel.sample, hel.anomalous, hel.space_group) == ("Lys_hel", True, "P 43 21 2")
    assert hel.unit_cell == (79.1, 79.1, 38.0, 90.0, 90.0, 90.0)
    assert hel.reference_mtz == str(tmp_path / "ref.mtz")
    assert ds["CPS1012-03/data00/single_001"].sample == "unknown"  # not in the sheet
    assert all(w.anomalous for w in c.wedges if w.sample == "Lys_hel")
    assert sorted(c.samples()) == ["Lys_hel", "Lys_multi", "unknown"]


def test_sample_sheet_kamo_topdir_form(tmp_path):
    root = tmp_path / "run"
    cbf_sweep(root / "a" / "x1", "lyso", range(1, 4), width=1.0)
    cbf_sweep(root / "a" / "x2", "lyso", range(1, 4), width=1.0)
    cbf_sweep(root / "b", "thau", range(1, 4), width=1.0)
    sheet = tmp_path / "kamo.csv"
    sheet.write_text(f"topdir,name,anomalous\n{root / 'a'},lysozyme,true\nb,thaumatin,false\n")
    c = discover_collection(root, sample_sheet=sheet, now=LATER)
    assert c.layout == "generic"
    assert {d.name: (d.sample, d.anomalous) for d in c.datasets} == {
        "a/x1/lyso": ("lysozyme", True),
        "a/x2/lyso": ("lysozyme", True),
        "b/thau": ("thaumatin", False),
    }


@pytest.mark.parametrize(
    "text,message",
    [
        (
            "pin,name\nCPS1-01,a\nCPS1-1,b\n",
            "line 3, column pin: pin 'CPS1-1' is the pin 'CPS1-01' of line 2",
        ),
        (
            "pin,name,space_group\nCPS1-01,a,P 7\n",
            "line 2, column space_group: unknown space group 'P 7'",
        ),
        (
            "pin,name,unit_cell\nCPS1-01,a,10 20 30\n",
            "line 2, column unit_cell: unit cell '10 20 30' must be",
        ),
        ("pin,name,anomalous\n\nCPS1-01,a,maybe\n", "line 3, column anomalous: anomalous flag"),
        ("pin,name,mode\nCPS1-01,a,spiral\n", "line 2, column mode: mode 'spiral' is not one"),
        ("pin,name\nnopin,a\n", "line 2, column pin: pin 'nopin' is not PuckID-PinID"),
        ("pin,name\nCPS1-01,\n", "line 2, column name: no sample name"),
        ("pin,mode\nCPS1-01,multi\n", "line 1: no sample name column"),
        ("name,mode\na,multi\n", "line 1: no pin"),
        (
            "pin,name,reference\nCPS1-01,a,missing.mtz\n",
            "line 2, column reference: reference MTZ 'missing.mtz' not found",
        ),
        ("", "sample sheet is empty"),
    ],
)
def test_bad_sample_sheet(tmp_path, text, message):
    sheet = tmp_path / "bad.csv"
    sheet.write_text(text)
    with pytest.raises(BadInputError, match=message) as exc:
        read_sample_sheet(sheet)
    assert exc.value.path == str(sheet)
    assert str(sheet) in str(exc.value)


def test_bad_sheet_stops_collection_with_clear_error(zoo, tmp_path):
    sheet = tmp_path / "bad.csv"
    sheet.write_text("pin,name,space_group\nCPS1012-01,a,Q1\n")
    with pytest.raises(
        BadInputError, match="bad.csv: line 2, column space_group: unknown space group"
    ):
        discover_collection(zoo, sample_sheet=sheet)


def test_sheet_puck_and_pin_columns(tmp_path):
    sheet = tmp_path / "s.csv"
    sheet.write_text("puck,pin,name\ncps1012,6,Lys_06\n")
    (entry,) = read_sample_sheet(sheet)
    assert entry.pin == "CPS1012-6" and entry.name == "Lys_06"


def test_still_being_written_left_for_later(zoo):
    # CBF: frames just written (settle time not passed)
    c = discover_collection(zoo, settle_s=60.0)
    assert c.datasets == [] and c.wedges == []
    assert len(c.incomplete) == 4
    assert "modified" in c.waiting["CPS1012-02/data00/cry00"]
    # an Eiger master announcing more images than written, among settled data
    eiger_master(zoo / "CPS1012-04" / "data00", "single_001", n_frames=6, per_file=4, nimages=100)
    c = discover_collection(zoo, settle_s=60.0, now=LATER)
    assert [d.name for d in c.incomplete] == ["CPS1012-04/data00/single_001"]
    assert c.waiting["CPS1012-04/data00/single_001"] == "6 of 100 frames written"
    assert len(c.datasets) == 4


def test_eiger_dataset_in_collection(tmp_path):
    root = tmp_path / "zoo"
    eiger_master(root / "CPS2-01" / "data00", "single_001", n_frames=10, per_file=4, width=5.0)
    c = discover_collection(root, now=LATER)
    (d,) = c.datasets
    assert (d.name, d.mode, d.sweep.format, d.sweep.n_frames) == (
        "CPS2-01/data00/single_001",
        "single",
        "eiger",
        10,
    )
    assert [w.wedge for w in c.wedges] == [(1, 6), (7, 10)]


def test_generic_tree_samples(tmp_path):
    root = tmp_path / "visit"
    cbf_sweep(root / "xtal1", "lyso", range(1, 4), width=1.0)
    cbf_sweep(root / "xtal2" / "run2", "lyso", range(1, 4), width=1.0)
    cbf_sweep(root / "xtal2" / "grid", "g", range(1, 4), width=0.0)
    cbf_sweep(root / "long", "big", range(1, 41), width=1.0)  # 40° > 30°: cut
    c = discover_collection(root, now=LATER)
    assert c.layout == "generic"
    assert {d.name: d.sample for d in c.datasets} == {
        "xtal1/lyso": "xtal1",
        "xtal2/run2/lyso": "xtal2/run2",
        "long/big": "long",
    }
    assert [s.template.rsplit("/", 2)[-2] for s in c.raster_scans] == ["grid"]
    assert {w.name for w in c.wedges} == {
        "xtal1/lyso",
        "xtal2/run2/lyso",
        "long/big_1-30",
        "long/big_31-40",
    }
    c = discover_collection(root, default_sample="lyso", now=LATER)
    assert {d.sample for d in c.datasets} == {"lyso"}


def test_not_a_directory(tmp_path):
    with pytest.raises(BadInputError, match="not a directory"):
        discover_collection(tmp_path / "nope")


def test_cli_find_collection(zoo, capsys):
    from mxflow.cli import main

    assert main(["find", "--collection", str(zoo), "--settle-s", "0"]) == 0
    out, err = capsys.readouterr()
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines()[1:] if line.strip()}
    assert rows["CPS1012-02/data00/cry00"] == ["CPS1012-02", "helical", "1-35", "70.0", "3", "no"]
    assert rows["CPS1012-01/data00/CPS1012-01-multi_001"][4] == "0"  # processed whole, not cut
    assert (
        "4 datasets: 9 to process (4 whole sweeps + 5 wedges of 30°), "
        "2 raster/still scans (hit maps, not processed), 0 still being written"
    ) in out
    assert "junk_00001.cbf" in err
    assert main(["find", "--collection", str(zoo), str(zoo)]) == 1  # one root only
