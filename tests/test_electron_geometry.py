"""The electron-diffraction geometry stage (mxflow.process.electron).

The real spots of the first MyD88 MicroED dataset (../shared/data/myd88_spots:
the tutorial's imported.expt, with distance=2193 mm and the format's rotation
axis, and its strong.refl) must give, through mxflow's stage alone: the rotation
axis within 1° of (−0.628, −0.778, 0); with the published cell, the distance
1772.5 mm ± 1 % and C2 99.08 31.01 54.27 β 107.7 each within 0.5 %.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pytest

from conftest import requires_dials
from mxflow.model import AxisTrial, ImageSweep
from mxflow.process import electron as ed

MYD88 = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "myd88_spots"
PUBLISHED_CELL = (99.06, 31.01, 54.30, 90.0, 107.7, 90.0)
TUTORIAL_CELL = (99.08, 31.01, 54.27, 90.0, 107.7, 90.0)
TRUE_AXIS = (-0.628, -0.778, 0.0)


def timepix_sweep(distance: float = 2.193, wavelength: float = 0.0251) -> ImageSweep:
    """The seed's sweep as mxflow reads its SMV headers (516 × 516 px of 55 µm)."""
    return ImageSweep(
        template="814/1/#####.img",
        format="smv",
        first=1,
        last=72,
        wavelength=wavelength,
        distance=distance,
        beam_center=(228.9, 235.8),
        pixel_size=(0.055, 0.055),
        image_size=(516, 516),
        osc_start=-56.73,
        osc_width=0.9149,
    )


# ---------------------------------------------------------------- pure functions
def test_electron_wavelengths_are_recognised():
    from mxflow.model import is_electron_wavelength as is_electron

    assert is_electron(0.0251) and is_electron(0.0197)
    assert not is_electron(0.9795) and not is_electron(None) and not is_electron(0.0)
    assert timepix_sweep().is_electron and not timepix_sweep(wavelength=0.9795).is_electron


def test_header_distance_in_metres_is_read_as_metres():
    reading = ed.read_header_distance(timepix_sweep(2.193))
    assert reading.unit == "m" and reading.distance == pytest.approx(2193.0)
    assert "metres" in reading.note and "2193 mm" in reading.note


def test_header_distance_in_mm_is_kept():
    reading = ed.read_header_distance(timepix_sweep(1772.5))
    assert reading.unit == "mm" and reading.distance == 1772.5 and reading.note is None


def test_xray_detector_with_an_electron_wavelength_is_refused():
    """A PILATUS sweep at 150 mm with λ 0.0251 in its header: neither mm nor m is possible."""
    sweep = timepix_sweep(150.0)
    sweep.pixel_size, sweep.image_size, sweep.beam_center = (0.172, 0.172), (981, 1043), (490, 521)
    with pytest.raises(ed.ElectronGeometryError, match="impossible .* is the wavelength right"):
        ed.read_header_distance(sweep)


def test_edge_resolution_of_the_seed_detector():
    # 12.6 mm from the beam to the nearest edge at 1772.5 mm: 2θ = 0.41°, d = 3.5 Å
    d = ed.edge_resolution(1772.5, 0.0251, (228.9, 235.8), (0.055, 0.055), (516, 516))
    assert d == pytest.approx(0.0251 / (2 * math.sin(math.atan2(228.9 * 0.055, 1772.5) / 2)))
    assert 3.0 < d < 4.0


def test_axis_sense_with_smaller_phi_rmsd_wins_among_equally_indexed():
    trials = [
        AxisTrial((1, 0, 0), 0.889, 0.50, 0.68, 0.57),
        AxisTrial((-1, 0, 0), 0.891, 0.52, 0.67, 0.29),
    ]
    assert ed.choose_axis(trials) == 1
    # a sense that indexes clearly fewer spots loses whatever its RMSD
    trials[1].indexed_fraction = 0.6
    assert ed.choose_axis(trials) == 0
    assert ed.choose_axis([AxisTrial((1, 0, 0), note="failed")]) is None


def test_cell_mismatch_separates_scale_from_shape():
    observed = (117.84, 37.02, 64.31, 90.0, 107.54, 90.0)  # the tutorial's at 2193 mm
    scale, edge, angle = ed.cell_mismatch(observed, PUBLISHED_CELL)
    assert scale == pytest.approx(0.84, abs=0.01) and edge < 0.01 and angle < 0.2
    wrong = (109.0, 31.01, 54.30, 90.0, 107.7, 90.0)  # a 10 % too long
    _, edge, _ = ed.cell_mismatch(observed, wrong)
    assert edge > ed.CELL_SHAPE_TOL


def test_axis_angle_counts_the_sense():
    assert ed.axis_angle((1, 0, 0), (1, 0, 0)) == pytest.approx(0.0)
    assert ed.axis_angle((1, 0, 0), (-1, 0, 0)) == pytest.approx(180.0)
    assert ed.axis_angle((0.782563, -0.622571, 0), TRUE_AXIS) == pytest.approx(90.4, abs=0.3)


# ---------------------------------------------------------------- the real MyD88 spots
@pytest.fixture(scope="module")
def myd88_workdir(tmp_path_factory) -> Path:
    if not (MYD88 / "strong.refl").exists():
        pytest.skip(f"{MYD88} not present")
    work = tmp_path_factory.mktemp("myd88")
    for name in ("imported.expt", "strong.refl"):
        shutil.copy(MYD88 / name, work / name)
    return work


def _run(work: Path, cell):
    # the tutorial imported with distance=2193: the header's 2.193 read as metres
    reading = ed.read_header_distance(timepix_sweep(2.193))
    records: list = []
    result = ed.electron_geometry(work, timepix_sweep(), 1, reading, "C 2", cell, None, records)
    return result, records


@requires_dials
def test_myd88_axis_distance_and_cell_from_the_real_spots(myd88_workdir):
    result, records = _run(myd88_workdir, PUBLISHED_CELL)
    geo = result.geometry
    assert geo.axis_found and geo.header_distance_unit == "m"
    assert ed.axis_angle(geo.rotation_axis, TRUE_AXIS) < 1.0
    # the found sense and its reverse were both indexed; the kept one has the smaller RMSD φ
    assert len(geo.trials) == 2 and all(t.rmsd_z is not None for t in geo.trials)
    kept = min(geo.trials, key=lambda t: t.rmsd_z)
    assert ed.axis_angle(kept.axis, TRUE_AXIS) < 1.0
    assert geo.refined_distance == pytest.approx(1772.5, rel=0.01)
    for got, want in zip(geo.restrained_cell, TUTORIAL_CELL, strict=True):
        assert got == pytest.approx(want, rel=0.005)
    assert result.expt == "restrained.expt" and result.lattice_chosen
    assert result.indexed_fraction > 0.8
    assert any("1772" in n for n in geo.notes)
    # a rerun reuses every step
    again, records2 = _run(myd88_workdir, PUBLISHED_CELL)
    assert all(r.skipped for r in records2) and again.geometry == geo


@requires_dials
def test_myd88_without_cell_keeps_the_header_distance_and_says_so(myd88_workdir):
    result, _ = _run(myd88_workdir, None)
    geo = result.geometry
    assert geo.refined_distance is None and geo.distance_used == pytest.approx(2193.0)
    assert ed.axis_angle(geo.rotation_axis, TRUE_AXIS) < 1.0
    assert any("only as good as that distance" in n for n in geo.notes)


@requires_dials
def test_myd88_with_a_cell_10_percent_off_is_refused_with_the_reason(myd88_workdir):
    wrong = (108.97, 31.01, 54.30, 90.0, 107.7, 90.0)
    with pytest.raises(ed.ElectronGeometryError, match="does not fit this dataset's lattice"):
        _run(myd88_workdir, wrong)


# ---------------------------------------------------------------- discovery of the seed's layout
def _fake_smv(path: Path, frame: int, wavelength: float = 0.0251) -> None:
    """A blank 516 × 516 SMV frame with the seed's header quirks (distance in metres)."""
    header = (
        "{\nHEADER_BYTES=  512;\nDIM=2;\nBYTE_ORDER=little_endian;\nTYPE=unsigned_short;\n"
        "SIZE1=516;\nSIZE2=516;\nPIXEL_SIZE=0.055;\nDISTANCE=2.193;\n"
        f"WAVELENGTH={wavelength};\nBEAM_CENTER_X=228.875;\nBEAM_CENTER_Y=235.78;\n"
        f"OSC_START={-56.73 + 0.9149 * (frame - 1):.4f};\nOSC_RANGE=0.9149;\nTIME=2.0;\n"
        "BEAMLINE=TimePix_SU;\n}\n"
    )
    path.write_bytes(header.encode().ljust(512, b" ") + bytes(516 * 516 * 2))


def test_numbered_crystal_folders_are_one_sample_and_electron_sweeps_stay_whole(tmp_path):
    """The seed's layout 814/1/00001.img … 814/2/…: a 66° sweep per crystal, found as one
    dataset each (not cut into 30° wedges), named after its folder, both of sample 814."""
    import os

    from mxflow.discover.collection import discover_collection

    root = tmp_path / "814"
    for crystal in ("1", "2"):
        (root / crystal).mkdir(parents=True)
        for n in range(1, 73):
            _fake_smv(root / crystal / f"{n:05d}.img", n)
    old = 1e9
    for f in root.rglob("*.img"):
        os.utime(f, (old, old))
    coll = discover_collection(root)
    assert [(d.name, d.sample, d.wedge) for d in coll.wedges] == [
        ("1", "814", None),
        ("2", "814", None),
    ]
    sweep = coll.wedges[0].sweep
    assert sweep.is_electron and sweep.n_frames == 72 and sweep.distance == pytest.approx(2.193)
    # the Timepix's beam centre is in pixels (X fast, Y slow), as dxtbx reads it
    assert sweep.beam_center == pytest.approx((228.875, 235.78))


def test_run_log_summarises_a_samples_electron_geometry():
    from mxflow.model import DatasetResult, ElectronGeometry
    from mxflow.schedule.post import electron_lines

    def result(name, refined):
        geo = ElectronGeometry(2.193, "m", 2193.0, refined, axis_found=True, axis_change_deg=90.4)
        return DatasetResult(name=name, path=name, electron=geo)

    xray = DatasetResult(name="x", path="x")
    assert electron_lines("lys", [xray]) == []
    (line,) = electron_lines("814", [result("1", 1772.5), result("2", 1750.0), result("3", None)])
    assert "electron diffraction (3 dataset(s))" in line
    assert "read as metres in 3" in line and "1750.0-1772.5 mm (median 1761.2)" in line
    assert "1 kept the header distance" in line and "90.4 deg" in line


def test_electron_microscope_stacks_are_named_not_skipped(tmp_path):
    """MRC / SER / DM4 files (dxtbx reads them, mxflow's image layer does not) are listed
    as problems with what to do, so that a run does not exit 0 having ignored them."""
    from mxflow.discover.collection import discover_collection

    (tmp_path / "grid3").mkdir()
    (tmp_path / "grid3" / "tilt_series.mrc").write_bytes(b"\0" * 1024)
    (tmp_path / "grid3" / "notes.txt").write_text("not an image")
    coll = discover_collection(tmp_path)
    assert coll.wedges == []
    ((path, why),) = coll.problems
    assert path.endswith("tilt_series.mrc") and "MRC electron-microscope images" in why
    assert "convert" in why
