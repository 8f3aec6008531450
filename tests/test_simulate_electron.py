"""The simulator's MicroED mode (electron_config / mxflow simulate --electron).

Fast checks of the SMV Timepix files and the truth, then DIALS 3.12 as the
judge of the geometry: dxtbx must read the files as FormatSMVTimePix_SU_516x516,
and with the TRUE distance and rotation axis given on import, DIALS must index
the simulated spots (≥ 70 %) and find the true cell within 0.5 %; with the axis
the format assumes it must not.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from mxflow.cli import main
from mxflow.images.read import read_smv_frame, read_smv_header
from mxflow.images.write_smv import SmvHeader, smv_header_bytes
from mxflow.simulate import SimulationConfig, physics, simulate
from mxflow.simulate import geometry as geo
from mxflow.simulate.config import MYD88_TRUE_AXIS, TIMEPIX_FORMAT_AXIS, electron_config

HEADER_BYTES = 512
BEAM = (228.875, 235.78)  # px (fast, slow), as in the MyD88 headers


def _unit(v) -> np.ndarray:
    a = np.asarray(v, float)
    return a / np.linalg.norm(a)


@pytest.fixture(scope="module")
def ed_sweep(tmp_path_factory):
    """One simulated MicroED sweep of 72 frames (about 1 s)."""
    out = tmp_path_factory.mktemp("ed") / "sim"
    res = simulate(out, electron_config(n_crystals=1, seed=1))
    return res


def test_smv_header_round_trips_through_mxflow_reader(ed_sweep):
    sweep, truth = ed_sweep.sweeps[0], ed_sweep.crystals[0]
    first = Path(ed_sweep.out_dir) / "1" / "00001.img"
    assert sweep.template == str(Path(ed_sweep.out_dir) / "1" / "#####.img")
    assert sorted(p.name for p in first.parent.iterdir())[-1] == "00072.img"
    h = read_smv_header(first)
    assert h.wavelength == pytest.approx(0.0251)
    assert h.distance == pytest.approx(2.193)  # the header's metres, as a mm reader sees it
    assert h.pixel_size == (0.055, 0.055)
    assert h.image_size == (516, 516)
    assert h.osc_start == pytest.approx(truth["osc_start"], abs=1e-4)
    assert h.osc_width == pytest.approx(0.9149)
    assert h.exposure == pytest.approx(2.0)
    last = read_smv_header(first.parent / "00072.img")
    assert last.osc_start == pytest.approx(truth["osc_start"] + 71 * 0.9149, abs=1e-3)
    # header padded to HEADER_BYTES, then little-endian unsigned shorts
    raw = first.read_bytes()
    assert len(raw) == HEADER_BYTES + 516 * 516 * 2
    pixels = np.frombuffer(raw[HEADER_BYTES:], "<u2").reshape(516, 516)
    frame = read_smv_frame(first)
    assert frame.shape == (516, 516)
    assert np.array_equal(frame, pixels.astype(np.int32))
    assert frame.max() > 100  # spots, over a background of a few counts
    assert 0.5 < np.median(frame) < 5


def test_mxflow_reader_beam_centre_of_timepix_files(ed_sweep):
    """TimePix_SU headers give the beam centre in pixels, X along fast (as dxtbx reads it)."""
    h = read_smv_header(Path(ed_sweep.out_dir) / "1" / "00001.img")
    assert h.beam_center == pytest.approx(BEAM)


def test_smv_header_text_has_what_dxtbx_timepix_wants():
    h = SmvHeader(
        size=(516, 516),
        pixel_mm=0.055,
        distance=2.193,
        wavelength=0.0251,
        beam_center=BEAM,
        osc_start=-56.73,
        osc_range=0.9149,
        exposure=2.0,
        beamline="TimePix_SU",
    )
    raw = smv_header_bytes(h)
    assert len(raw) == HEADER_BYTES and raw.startswith(b"{\nHEADER_BYTES=")
    text = raw.decode("ascii").split("}")[0]
    keys = dict(line.rstrip(";").split("=", 1) for line in text.splitlines()[1:] if "=" in line)
    for key in [
        "BEAM_CENTER_X",
        "BEAM_CENTER_Y",
        "DISTANCE",
        "WAVELENGTH",
        "PIXEL_SIZE",
        "OSC_START",
        "OSC_RANGE",
        "PHI",
        "SIZE1",
        "SIZE2",
        "BYTE_ORDER",
        "DETECTOR_SN",
        "TIME",
    ]:
        assert key in keys, key
    assert keys["BEAMLINE"] == "TimePix_SU" and keys["SIZE1"] == keys["SIZE2"] == "516"
    assert float(keys["BEAM_CENTER_X"]) == pytest.approx(BEAM[0])  # fast, pixels
    assert float(keys["DISTANCE"]) == pytest.approx(2.193)


def test_truth_records_each_crystals_geometry(tmp_path):
    res = simulate(tmp_path / "sim", electron_config(n_crystals=4, frames=1, seed=2))
    truth = json.loads(res.truth_json.read_text())
    base = np.array([99.06, 31.01, 54.30])
    distances = []
    for n, c in enumerate(truth["crystals"], start=1):
        assert c["name"] == str(n) and c["template"] == f"{n}/#####.img"
        assert np.allclose(c["rotation_axis"], _unit(MYD88_TRUE_AXIS))
        assert np.allclose(c["format_rotation_axis"], TIMEPIX_FORMAT_AXIS)
        assert c["header_distance"] == 2.193 and c["header_distance_unit"] == "m"
        assert c["wavelength"] == 0.0251
        assert abs(c["distance_mm"] / 1772.5 - 1) <= 0.01
        distances.append(c["distance_mm"])
        edges = np.array(c["unit_cell"][:3])
        assert np.all(np.abs(edges / base - 1) <= 0.003) and not np.allclose(edges, base)
        assert c["unit_cell"][3:] == [90.0, 107.7, 90.0]
        # A = U·B of the crystal's own cell
        assert np.allclose(c["A"], np.array(c["U"]) @ geo.b_matrix(c["unit_cell"]))
    assert len(set(distances)) == 4
    assert truth["conventions"]["rotation_axis"] == pytest.approx(_unit(MYD88_TRUE_AXIS))
    assert (res.truth_dir / "truth_A.mtz").is_file()


def test_prediction_uses_the_given_rotation_axis():
    """Reflections predicted about a tilted axis lie on the (nearly flat) Ewald sphere
    when rotated about that axis, not about x."""
    rng = np.random.default_rng(0)
    cell = (99.06, 31.01, 54.30, 90.0, 107.7, 90.0)
    A = geo.random_rotation(rng) @ geo.b_matrix(cell)
    hkl = physics.miller_indices(cell, 2.5)
    det = geo.Detector(516, 516, 0.055, 1772.5, *BEAM, 0.0, 0.0)
    axis = _unit(MYD88_TRUE_AXIS)
    idx, phi, sig, x, y, lp = physics.predict_rotation(
        A, hkl, 0.0251, det, (0.0, 60.0), 0.5, 0.0005, axis=axis, polarization_fraction=0.5
    )
    assert len(idx) > 1000
    s0 = np.array([0.0, 0.0, -1 / 0.0251])
    r = geo.rotate_about_axis(hkl[idx] @ A.T, np.radians(phi), axis)
    assert np.allclose(np.linalg.norm(s0 + r, axis=1), 1 / 0.0251, rtol=1e-9)
    r_x = geo.rotate_about_axis(hkl[idx] @ A.T, np.radians(phi), geo.ROTATION_AXIS)
    assert np.median(np.abs(np.linalg.norm(s0 + r_x, axis=1) * 0.0251 - 1)) > 1e-6
    # the rocking width is σ_m/|ζ| with ζ about this axis
    s1 = s0 + r
    assert np.allclose(sig, np.hypot(0.5, 0.0005) / np.abs(geo.zeta(s1, s0, axis)))
    # unpolarised: P = (1 + cos² 2θ)/2, times the Lorentz factor about this axis
    cos2t = (s1 @ _unit(s0)) * 0.0251
    assert np.allclose(lp, 0.5 * (1 + cos2t**2) * geo.lorentz_factor(s1, s0, axis))


def test_default_axis_is_x_and_x_ray_prediction_unchanged():
    assert SimulationConfig().rotation_axis == (1.0, 0.0, 0.0)
    rng = np.random.default_rng(1)
    cell = (54.0, 62.0, 71.0, 90.0, 90.0, 90.0)
    A = geo.random_rotation(rng) @ geo.b_matrix(cell)
    hkl = physics.miller_indices(cell, 3.0)
    det = geo.Detector()
    default = physics.predict_rotation(A, hkl, 1.0, det, (0.0, 10.0), 0.05, 0.02)
    explicit = physics.predict_rotation(
        A, hkl, 1.0, det, (0.0, 10.0), 0.05, 0.02, axis=(2.0, 0.0, 0.0)
    )
    for a, b in zip(default, explicit, strict=True):
        assert np.array_equal(a, b)


def test_cli_electron_preset_with_overrides(tmp_path, capsys):
    out = tmp_path / "ed"
    rc = main(["simulate", str(out), "--electron", "--crystals", "2", "--frames", "3"])
    assert rc == 0
    for n in (1, 2):
        assert sorted(p.name for p in (out / str(n)).iterdir()) == [
            "00001.img",
            "00002.img",
            "00003.img",
        ]
    truth = json.loads((out / "truth" / "truth.json").read_text())
    assert truth["config"]["wavelength"] == 0.0251 and truth["config"]["frames"] == 3
    assert len(truth["crystals"]) == 2
    assert "6 frames" in capsys.readouterr().out


def test_cli_without_electron_keeps_x_ray_defaults():
    from mxflow.cli import build_parser
    from mxflow.simulate.cli import config_from_args

    args = build_parser("simulate").parse_args(["simulate", "out"])
    assert config_from_args(args) == SimulationConfig()
    args = build_parser("simulate").parse_args(["simulate", "out", "--frames", "7"])
    assert config_from_args(args) == SimulationConfig(frames=7)


# --------------------------------------------------------------------------
# DIALS as the judge


def _dials(workdir: Path, program: str, *args: str, check: bool = True):
    if shutil.which(program) is None:
        pytest.skip(f"{program} not on PATH")
    proc = subprocess.run(
        [program, *args], cwd=workdir, capture_output=True, text=True, timeout=300
    )
    if check:
        assert proc.returncode == 0, (
            f"{program} failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}"
        )
    return proc


def _indexed_fraction(log: str) -> float:
    """The last '% indexed' of a dials.index log (0 when there is none)."""
    rows = re.findall(r"\|\s*0\s*\|\s*(\d+)\s*\|\s*(\d+)\s*\|\s*([\d.]+)%", log)
    return float(rows[-1][2]) / 100.0 if rows else 0.0


def _cell(expt: Path) -> np.ndarray:
    """a, b, c (Å) and β (degrees) of the first crystal of an experiment list."""
    crystal = json.loads(expt.read_text())["crystal"][0]
    a, b, c = (np.array(crystal[f"real_space_{k}"]) for k in "abc")
    beta = np.degrees(np.arccos(a @ c / np.linalg.norm(a) / np.linalg.norm(c)))
    return np.array([np.linalg.norm(a), np.linalg.norm(b), np.linalg.norm(c), beta])


def _index(work: Path, name: str, template: str, *geometry: str) -> tuple[float, np.ndarray | None]:
    """Import with ``geometry`` overrides, index strong.refl in C2: (fraction, cell)."""
    _dials(
        work, "dials.import", f"template={template}", *geometry, f"output.experiments={name}.expt"
    )
    proc = _dials(
        work,
        "dials.index",
        f"{name}.expt",
        "strong.refl",
        "space_group=C2",
        f"output.experiments={name}_idx.expt",
        f"output.reflections={name}_idx.refl",
        f"output.log={name}_index.log",
        check=False,
    )
    if proc.returncode != 0:
        return 0.0, None
    log = (work / f"{name}_index.log").read_text()
    return _indexed_fraction(log), _cell(work / f"{name}_idx.expt")


@pytest.fixture(scope="module")
def dials_work(ed_sweep, tmp_path_factory):
    """dials.import of the sweep as its headers say, and dials.find_spots d_max=20."""
    if shutil.which("dials.import") is None:
        pytest.skip("DIALS programs not on PATH")
    work = tmp_path_factory.mktemp("ed_dials")
    _dials(work, "dials.import", f"template={ed_sweep.sweeps[0].template}")
    _dials(work, "dials.find_spots", "imported.expt", "d_max=20", "nproc=2")
    return work


@pytest.mark.dials
def test_dxtbx_reads_the_timepix_format(dials_work):
    log = (dials_work / "dials.import.log").read_text()
    assert "FormatSMVTimePix_SU_516x516" in log
    expt = json.loads((dials_work / "imported.expt").read_text())
    assert expt["beam"][0]["wavelength"] == pytest.approx(0.0251)
    assert expt["beam"][0]["polarization_fraction"] == pytest.approx(0.5)
    assert np.allclose(
        expt["goniometer"][0]["rotation_axis"], _unit(TIMEPIX_FORMAT_AXIS), atol=1e-4
    )
    panel = expt["detector"][0]["panels"][0]
    assert panel["image_size"] == [516, 516] and panel["pixel_size"] == [0.055, 0.055]
    # beam centre in pixels along fast / slow; the header's 2.193 m taken as mm
    assert np.allclose(panel["origin"], [-BEAM[0] * 0.055, BEAM[1] * 0.055, -2.193])


@pytest.mark.dials
def test_dials_indexes_with_the_true_geometry_not_the_formats_axis(ed_sweep, dials_work):
    truth = ed_sweep.crystals[0]
    template = ed_sweep.sweeps[0].template
    distance = f"distance={truth['distance_mm']:.4f}"
    true_axis = "goniometer.axis=" + ",".join(f"{x:.6f}" for x in truth["rotation_axis"])
    fraction, cell = _index(dials_work, "true", template, distance, true_axis)
    want = np.array([*truth["unit_cell"][:3], truth["unit_cell"][4]])
    print(f"true axis: {100 * fraction:.1f} % indexed, cell {cell}, truth {want}")
    assert fraction >= 0.70
    assert cell is not None and np.allclose(cell, want, rtol=0.005)
    # the same spots with the axis dxtbx assumes for this format
    fraction_f, cell_f = _index(dials_work, "format", template, distance)
    print(f"format axis: {100 * fraction_f:.1f} % indexed, cell {cell_f}")
    assert not (fraction_f >= 0.70 and cell_f is not None and np.allclose(cell_f, want, rtol=0.005))
