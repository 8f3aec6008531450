"""Every sample-sheet field checked when the sheet is read (issue #12 item 10, the sheet half).

A bad cell is a BadInputError naming the sheet, the line and the column; a pin
in the sheet that matches no dataset is a warning naming it (the other pins are
processed).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from images_fixtures import cbf_sweep
from mxflow.discover.collection import discover_collection, read_sample_sheet
from mxflow.errors import BadInputError
from mxflow.util.args import canonical_space_group, parse_unit_cell
from sheet_fixtures import write_mtz


def sheet_error(tmp_path: Path, text: str) -> str:
    sheet = tmp_path / "samples.csv"
    sheet.write_text(text)
    with pytest.raises(BadInputError) as exc:
        read_sample_sheet(sheet)
    assert exc.value.path == str(sheet)
    return str(exc.value)


# -- unit cells ------------------------------------------------------------------


@pytest.mark.parametrize(
    "cell,words",
    [
        ("nan,78,37,90,90,90", "above 0"),
        ("78,inf,37,90,90,90", "above 0"),
        ("78,78,37,nan,90,90", "between 0 and 180"),
        ("78,78,-37,90,90,90", "above 0"),
        ("0,78,37,90,90,90", "above 0"),
        ("78,78,37,90,90,180", "between 0 and 180"),
        ("78,78,37,120,120,120", "cannot form a cell"),  # α+β+γ = 360°: flat
        ("78,78,37,10,10,170", "cannot form a cell"),  # α+β < γ
        ("78,78,37,100,100,170", "cannot form a cell"),  # α+β+γ > 360°
    ],
)
def test_impossible_cell_names_line_and_column(tmp_path, cell, words):
    msg = sheet_error(tmp_path, f'# comment\npin,name,unit_cell\nCPS1-01,a,"{cell}"\n')
    assert "samples.csv: line 3, column unit_cell: " in msg
    assert words in msg and cell in msg


def test_possible_cells_still_read(tmp_path):
    sheet = tmp_path / "s.csv"
    sheet.write_text(
        'pin,name,unit_cell\nCPS1-01,a,"78,78,37,90,90,90"\nCPS1-02,b,"40,40,40,109.47,109.47,109.47"\n'
        'CPS1-03,c,"30,40,50,60,70,80"\nCPS1-04,d,"60,60,60,60,60,60"\n'
    )
    cells = [e.unit_cell for e in read_sample_sheet(sheet)]
    assert cells[0] == (78, 78, 37, 90, 90, 90) and cells[3] == (60,) * 6
    assert parse_unit_cell("100 100 100 60 60 60") == (100, 100, 100, 60, 60, 60)


# -- pins --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "header,row,column,words",
    [
        ("pin", "CPS1234--1", "pin", "pin number '-1' must be a whole number from 1 to 999"),
        ("puck,pin", "CPS1234,-1", "pin", "pin number '-1' must be a whole number from 1 to 999"),
        ("pin", "CPS1234-12345678901234567890", "pin", "from 1 to 999"),
        ("pin", "CPS1234-0", "pin", "from 1 to 999"),
        ("pin", "CPS1234-\u0661", "pin", "from 1 to 999"),  # an Arabic-Indic digit one
        ("pin", "XYZ", "pin", "is not PuckID-PinID"),
        ("pin", "-5", "pin", "is not PuckID-PinID"),
        ("pin", "CPS 12/34-1", "pin", "puck 'CPS 12/34' must be letters and digits"),
        ("puck,pin", "CPS1234,one", "pin", "pin number 'one'"),
        ("puck,pin", "../x,1", "puck", "puck '../x' must be letters and digits"),
    ],
)
def test_bad_pin_names_line_and_column(tmp_path, header, row, column, words):
    msg = sheet_error(tmp_path, f"{header},name\n{row},a\n")
    assert f"samples.csv: line 2, column {column}: " in msg
    assert words in msg


def test_same_pin_spelled_two_ways(tmp_path):
    msg = sheet_error(tmp_path, "pin,name\nCPS1234-01,lyso\nCPS1234-2,lyso\ncps1234-1,thau\n")
    assert "line 4, column pin: " in msg
    assert "'cps1234-1' is the pin 'CPS1234-01' of line 2" in msg
    # a puck + pin row and a pin row
    msg = sheet_error(tmp_path, "puck,pin,name\nCPS1234,01,lyso\nCPS1234,001,thau\n")
    assert "line 3, column pin: " in msg and "of line 2" in msg


def test_directory_row_inside_a_pin_row_is_an_error(tmp_path):
    msg = sheet_error(tmp_path, "pin,topdir,name\nCPS1234-1,,lyso\n,CPS1234-01/data01,thau\n")
    assert "line 3, column topdir: " in msg
    assert "pin CPS1234-01 (line 2)" in msg and "never" in msg


def test_same_directory_spelled_two_ways(tmp_path):
    msg = sheet_error(tmp_path, "topdir,name\nvisit/a,lyso\n./visit/a/,thau\n")
    assert "line 3, column topdir: " in msg and "line 2" in msg


def test_good_pins_still_read(tmp_path):
    sheet = tmp_path / "s.csv"
    sheet.write_text("pin,name\nCPS1012-06,a\ncps1012-7,b\nAB1-16,c\n")
    assert [e.pin for e in read_sample_sheet(sheet)] == ["CPS1012-6", "CPS1012-7", "AB1-16"]


def test_pin_matching_no_dataset_is_a_warning_naming_it(tmp_path):
    root = tmp_path / "zoo"
    cbf_sweep(root / "CPS1234-01" / "data00", "multi_001", range(1, 4))
    sheet = tmp_path / "samples.csv"
    sheet.write_text("pin,name\nCPS1234-01,lyso\nCPS1243-02,lyso\n")
    coll = discover_collection(root, sample_sheet=sheet, settle_s=0)
    assert [d.sample for d in coll.datasets] == ["lyso"]
    assert coll.problems == []
    assert coll.warnings == [
        (str(sheet), "line 3: pin CPS1243-02 (sample lyso) matches no dataset under " + str(root))
    ]


def test_directory_matching_no_dataset_is_a_warning(tmp_path):
    root = tmp_path / "visit"
    cbf_sweep(root / "a", "x", range(1, 4))
    sheet = tmp_path / "samples.csv"
    sheet.write_text("topdir,name\na,lyso\nb,thau\n")
    coll = discover_collection(root, sample_sheet=sheet, settle_s=0)
    assert [d.sample for d in coll.datasets] == ["lyso"]
    assert [w for _, w in coll.warnings] == [
        f"line 3: directory b (sample thau) matches no dataset under {root}"
    ]


# -- space groups --------------------------------------------------------------------


@pytest.mark.parametrize("name", ["P 21 21 2 1", "P 2 2 2 1", "P 6 3", "P 3 12", "P 21 21 21 21"])
def test_space_group_with_stray_or_run_together_symbols(tmp_path, name):
    msg = sheet_error(tmp_path, f"pin,name,space_group\nCPS1-01,a,{name}\n")
    assert "line 2, column space_group: " in msg and f"space group {name!r}" in msg
    with pytest.raises(ValueError, match="space group"):
        canonical_space_group(name)


@pytest.mark.parametrize(
    "name,hm",
    [
        ("P 21 21 21", "P 21 21 21"),
        ("P212121", "P 21 21 21"),
        ("P 212121", "P 21 21 21"),
        ("P21 21 21", "P 21 21 21"),
        ("P 21 21 2", "P 21 21 2"),
        ("P 1 21 1", "P 1 21 1"),
        ("P 21", "P 1 21 1"),
        ("C 2", "C 1 2 1"),
        ("P 21/c", "P 1 21/c 1"),
        ("P 43 21 2", "P 43 21 2"),
        ("P 63", "P 63"),
        ("F m 3 m", "F m -3 m"),
        ("I m -3 m", "I m -3 m"),
        ("R 3 :H", "R 3"),
        ("19", "P 21 21 21"),
        ("P 2ac 2ab", "P 21 21 21"),
    ],
)
def test_space_group_names_still_read(name, hm):
    assert canonical_space_group(name) == hm


# -- reference and free-flag MTZ files -------------------------------------------------


def test_reference_that_is_not_an_mtz(tmp_path):
    msg = sheet_error(tmp_path, "pin,name,reference\nCPS1-01,a,/etc/passwd\n")
    assert "line 2, column reference: reference MTZ '/etc/passwd' is not an MTZ file" in msg
    (tmp_path / "empty.mtz").write_bytes(b"")
    msg = sheet_error(tmp_path, "pin,name,reference\nCPS1-01,a,empty.mtz\n")
    assert "column reference: reference MTZ 'empty.mtz' is not an MTZ file" in msg


def test_reference_missing_or_a_directory(tmp_path):
    msg = sheet_error(tmp_path, "pin,name,reference\nCPS1-01,a,missing.mtz\n")
    assert "line 2, column reference: reference MTZ 'missing.mtz' not found" in msg
    (tmp_path / "refs").mkdir()
    msg = sheet_error(tmp_path, "pin,name,reference\nCPS1-01,a,refs\n")
    assert "column reference: reference MTZ 'refs' not found" in msg


def test_reference_without_intensities(tmp_path):
    write_mtz(tmp_path / "phases.mtz", ("FOM", "PHIB"))
    msg = sheet_error(tmp_path, "pin,name,reference\nCPS1-01,a,phases.mtz\n")
    assert "column reference: reference MTZ 'phases.mtz' has no" in msg
    assert "IMEAN/SIGIMEAN" in msg


def test_good_reference_is_read(tmp_path):
    ref = write_mtz(tmp_path / "ref.mtz")
    write_mtz(tmp_path / "fp.mtz", ("FP", "SIGFP"))
    sheet = tmp_path / "s.csv"
    sheet.write_text("pin,name,reference\nCPS1-01,a,ref.mtz\nCPS1-02,b,fp.mtz\n")
    entries = read_sample_sheet(sheet)
    assert entries[0].reference_mtz == str(ref)


def test_free_flags_that_are_not_an_mtz(tmp_path):
    msg = sheet_error(tmp_path, "pin,name,free_flags\nCPS1-01,a,/etc/passwd\n")
    assert "line 2, column free_flags: free-flag MTZ" in msg


# -- other fields ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "header,row,where",
    [
        ("pin,name,mode", "CPS1-01,a,spiral", "line 2, column mode: mode 'spiral'"),
        ("pin,name,anom", "CPS1-01,a,maybe", "line 2, column anom: anomalous flag 'maybe'"),
        ("pin,name", "CPS1-01,", "line 2, column name: no sample name"),
        ("pin,name", "CPS1-01,a,b,c", "line 2: 4 fields, but the header has 2"),
    ],
)
def test_other_fields_name_line_and_column(tmp_path, header, row, where):
    assert where in sheet_error(tmp_path, f"{header}\n{row}\n")


def test_empty_trailing_fields_are_fine(tmp_path):
    sheet = tmp_path / "s.csv"
    sheet.write_text("pin,name\nCPS1-01,a,,\n")
    assert [e.name for e in read_sample_sheet(sheet)] == ["a"]


# -- heavy atom and sites (#13) --------------------------------------------------------


@pytest.mark.parametrize(
    "header,value,where",
    [
        (
            "heavy_atom",
            "Xx",
            "line 2, column heavy_atom: heavy atom 'Xx' is not a chemical element",
        ),
        ("atom", "Zn2+", "line 2, column atom: heavy atom 'Zn2+' is not a chemical element"),
        ("ha", "He", "line 2, column ha: heavy atom 'He' (Z 2) is outside Z 3–92"),
        ("sites", "0", "line 2, column sites: sites '0' must be a whole number from 1 to 9999"),
        ("sites", "-2", "line 2, column sites: sites '-2'"),
        ("sites", "2.5", "line 2, column sites: sites '2.5'"),
    ],
)
def test_bad_heavy_atom_or_sites_names_line_and_column(tmp_path, header, value, where):
    assert where in sheet_error(tmp_path, f"pin,name,{header}\nCPS1-01,a,{value}\n")


def test_heavy_atom_and_sites_reach_datasets_and_wedges(tmp_path):
    root = tmp_path / "run"
    cbf_sweep(root / "a", "thas1", range(1, 4), width=1.0)
    cbf_sweep(root / "b", "lyso", range(1, 4), width=1.0)
    sheet = tmp_path / "samples.csv"
    sheet.write_text(f"topdir,name,ha,sites\n{root / 'a'},thas1,zinc,2\n{root / 'b'},lyso,,\n")
    assert [(e.heavy_atom, e.n_sites) for e in read_sample_sheet(sheet)] == [
        ("Zn", 2),
        (None, None),
    ]
    coll = discover_collection(root, sample_sheet=sheet, settle_s=0, wedge_deg=1.0)
    got = {(d.sample, d.heavy_atom, d.n_sites) for d in [*coll.datasets, *coll.wedges]}
    assert got == {("thas1", "Zn", 2), ("lyso", None, None)}
    assert len(coll.wedges) == 6  # three 1° wedges of each sweep, each with the sheet's values
