"""Sweep discovery: templates, missing frames, rotation vs. scan, Eiger, problems, CLI."""

from __future__ import annotations

import bz2

import pytest

from images_fixtures import cbf_frame, cbf_sweep, eiger_master, smv_frame
from mxflow.cli import main
from mxflow.discover.cli import format_ranges
from mxflow.discover.sweeps import find_sweeps, group_templates


def test_real_thaumatin_is_a_still_scan(shared_data):
    res = find_sweeps([shared_data / "thaumatin_grid"])
    assert res.problems == []
    assert len(res.sweeps) == 1
    s = res.sweeps[0]
    assert s.template.endswith("thaumatin_grid/thau_3_2_####.cbf.bz2")
    assert (s.first, s.last, s.format) == (1, 6, "cbf")
    assert s.osc_width == 0.0 and not s.is_rotation
    assert s.wavelength == pytest.approx(0.96859) and s.distance == pytest.approx(351.0)


def test_templates_and_missing_frames(tmp_path):
    cbf_sweep(tmp_path / "a", "xtal", [1, 2, 3, 5, 6, 9], start=10.0, width=0.5)
    cbf_sweep(tmp_path / "b", "other", [1, 2], digits=4, start=0.0, width=1.0)
    (tmp_path / "a" / "notes.txt").write_text("not an image")
    res = find_sweeps([tmp_path])
    assert res.problems == []
    assert [s.template for s in res.sweeps] == [
        str(tmp_path / "a" / "xtal_#####.cbf"),
        str(tmp_path / "b" / "other_####.cbf"),
    ]
    a = res.sweeps[0]
    assert (a.first, a.last, a.missing) == (1, 9, [4, 7, 8])
    assert a.osc_start == pytest.approx(10.0) and a.osc_width == pytest.approx(0.5)
    assert a.is_rotation and a.total_rotation == pytest.approx(4.5)
    assert a.frame_path(5).endswith("xtal_00005.cbf")


def test_group_templates_digit_count_and_prefix(tmp_path):
    files = [
        tmp_path / n for n in ["x_001.cbf", "x_002.cbf", "x_0003.cbf", "y_1_001.cbf", "plain.cbf"]
    ]
    templates, singles = group_templates(files)
    assert sorted(templates) == sorted(
        [str(tmp_path / "x_###.cbf"), str(tmp_path / "x_####.cbf"), str(tmp_path / "y_1_###.cbf")]
    )
    assert templates[str(tmp_path / "x_###.cbf")] == {1: files[0], 2: files[1]}
    assert singles == [tmp_path / "plain.cbf"]


def test_zero_oscillation_and_same_start_angle_are_stills(tmp_path):
    cbf_sweep(tmp_path, "zero", [1, 2, 3], start=0.0, width=0.0)
    # header says 0.1°/frame but every frame starts at the same angle: a raster scan
    for n in (1, 2, 3):
        cbf_frame(tmp_path / f"grid_{n:05d}.cbf", start=45.0, width=0.1)
    res = find_sweeps([tmp_path])
    kinds = {s.template.rsplit("/", 1)[1]: (s.is_rotation, s.osc_width) for s in res.sweeps}
    assert kinds == {"grid_#####.cbf": (False, 0.0), "zero_#####.cbf": (False, 0.0)}


def test_unreadable_frames_are_problems_not_fatal(tmp_path):
    paths = cbf_sweep(tmp_path, "s", range(1, 7), start=0.0, width=1.0)
    paths[2].write_text("garbage")  # frame 3: in the middle
    raw = paths[5].read_bytes()
    cut = raw.find(b"\x0c\x1a\x04\xd5") + 10
    paths[5].write_bytes(raw[:cut])  # frame 6: last, still being written
    (tmp_path / "bad_00001.cbf").write_text("not an image")  # a template with no good frame
    res = find_sweeps([tmp_path])
    assert [s.template for s in res.sweeps] == [str(tmp_path / "s_#####.cbf")]
    s = res.sweeps[0]
    # header-only discovery does not notice frame 3 (never read); frame 6 was checked as the last
    assert (s.first, s.last) == (1, 5)
    reasons = dict(res.problems)
    assert "truncated CBF" in reasons[str(paths[5])]
    assert "not a CBF image" in reasons[str(tmp_path / "bad_00001.cbf")]
    assert str(paths[2]) not in reasons


def test_unreadable_first_frame_moves_start(tmp_path):
    paths = cbf_sweep(tmp_path, "s", range(1, 5), start=0.0, width=1.0)
    paths[0].write_text("garbage")
    res = find_sweeps([tmp_path])
    s = res.sweeps[0]
    assert (s.first, s.last, s.osc_start) == (2, 4, pytest.approx(1.0))
    assert [p for p, _ in res.problems] == [str(paths[0])]


def test_inconsistent_last_frame_reported(tmp_path):
    cbf_sweep(tmp_path, "s", [1, 2, 3], start=0.0, width=1.0)
    cbf_frame(tmp_path / "s_00004.cbf", start=50.0, width=1.0)
    cbf_sweep(tmp_path, "t", [1, 2], start=0.0, width=1.0)
    cbf_frame(tmp_path / "t_00003.cbf", start=2.0, width=1.0, wavelength=1.2)
    res = find_sweeps([tmp_path])
    reasons = dict(res.problems)
    assert "expected 3.000" in reasons[str(tmp_path / "s_00004.cbf")]
    assert "wavelength" in reasons[str(tmp_path / "t_00003.cbf")]
    assert len(res.sweeps) == 2


def test_eiger_master_is_one_sweep(tmp_path):
    eiger_master(tmp_path / "e", "run1", n_frames=10, per_file=4, start=5.0, width=0.1)
    eiger_master(tmp_path / "f", "broken", n_frames=6, per_file=4)
    (tmp_path / "f" / "broken_data_000002.h5").unlink()
    res = find_sweeps([tmp_path])
    assert len(res.sweeps) == 1
    s = res.sweeps[0]
    assert s.template == str(tmp_path / "e" / "run1_master.h5")
    assert (s.format, s.first, s.last, s.osc_start) == ("eiger", 1, 10, pytest.approx(5.0))
    assert s.is_rotation and s.total_rotation == pytest.approx(1.0)
    assert res.headers[s.template].n_frames_expected == 10
    assert res.problems == [
        (
            str(tmp_path / "f" / "broken_master.h5"),
            "missing external data file broken_data_000002.h5",
        )
    ]


def test_smv_and_compressed_cbf(tmp_path):
    for n in (1, 2):
        smv_frame(tmp_path / f"lyso_{n:03d}.img", start=5.0 + (n - 1), width=1.0)
    p = cbf_frame(tmp_path / "tmp.cbf", start=1.0, width=0.2)
    (tmp_path / "z_0001.cbf.bz2").write_bytes(bz2.compress(p.read_bytes()))
    p.unlink()
    res = find_sweeps([tmp_path])
    by = {s.template.rsplit("/", 1)[1]: s for s in res.sweeps}
    assert set(by) == {"lyso_###.img", "z_####.cbf.bz2"}
    assert by["lyso_###.img"].format == "smv" and by["lyso_###.img"].n_frames == 2
    assert by["z_####.cbf.bz2"].osc_width == pytest.approx(0.2)


def test_explicit_paths_and_nonexistent(tmp_path):
    f = cbf_frame(tmp_path / "one_00001.cbf")
    res = find_sweeps([f, tmp_path / "nothing_here", tmp_path / "x.txt"])
    assert len(res.sweeps) == 1
    assert dict(res.problems)[str(tmp_path / "nothing_here")] == "does not exist"


def test_format_ranges():
    assert format_ranges([9, 3, 4, 5, 11, 12]) == "3-5,9,11-12"
    assert format_ranges([7]) == "7"


def test_cli_find_table_and_json(tmp_path, capsys):
    cbf_sweep(tmp_path, "s", [1, 2, 4], start=0.0, width=0.5)
    (tmp_path / "junk_00001.cbf").write_text("junk")
    assert main(["find", str(tmp_path)]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["template", "frames", "phi0"]
    row = lines[1].split()
    assert row == [
        str(tmp_path / "s_#####.cbf"),
        "1-4",
        "0.00",
        "0.500",
        "2.0",
        "1.00000",
        "200.0",
        "rotation",
        "3",
    ]
    assert "junk_00001.cbf" in err
    assert main(["find", "--json", str(tmp_path)]) == 0
    import json

    data = json.loads(capsys.readouterr().out)
    assert data["sweeps"][0]["missing"] == [3]
    assert data["problems"][0]["path"].endswith("junk_00001.cbf")
