"""Fast tests of the simulator: CBF codec, truth files, scoring, determinism, geometry."""

from __future__ import annotations

import json

import gemmi
import numpy as np
import pytest

from mxflow.images.cbf import decode_byte_offset
from mxflow.images.write_cbf import byte_offset_encode, byte_offset_encode_numpy
from mxflow.simulate import SimulationConfig, score, simulate
from mxflow.simulate import crystal as xtal
from mxflow.simulate import geometry as geo
from mxflow.simulate.score import load_truth_population, score_against


def small_config(**kw) -> SimulationConfig:
    base = dict(frames=4, osc_width=0.5, detector_size=(487, 407), distance=100.0, seed=3)
    base.update(kw)
    return SimulationConfig(**base)


def test_byte_offset_round_trip_with_16_and_32_bit_escapes(tmp_path):
    import fabio

    from mxflow.images.write_cbf import write_minicbf

    rng = np.random.default_rng(0)
    data = rng.poisson(3, (50, 60)).astype(np.int32)
    data[3, 4] = 1000  # needs the 16-bit escape
    data[3, 5] = -1
    data[7, 7] = 2_000_000  # needs the 32-bit escape
    data[7, 8] = -70_000
    data[0, 0] = -128
    data[9, 9] = 32767 + 40
    enc = byte_offset_encode(data)
    assert enc == byte_offset_encode_numpy(data)
    assert np.array_equal(decode_byte_offset(enc, data.size).reshape(data.shape), data)
    path = tmp_path / "x_000001.cbf"
    write_minicbf(path, data, {"beam_xy_px": (30.0, 25.0), "start_angle_deg": 12.5})
    img = fabio.open(str(path))
    assert np.array_equal(img.data, data)
    assert "PILATUS_1.2" in path.read_bytes()[:400].decode("ascii")


def test_rotation_angles_put_reflections_on_the_ewald_sphere():
    rng = np.random.default_rng(1)
    A = geo.random_rotation(rng) @ geo.b_matrix((50, 60, 70, 90, 100, 90))
    hkl = np.array([[1, 2, 3], [5, -4, 2], [10, 3, -8]])
    s0 = np.array([0, 0, -1.0])
    pa, pb, ok = geo.rotation_angles(hkl @ A.T, s0)
    for phi in (pa, pb):
        r = geo.rotate_about_axis((hkl @ A.T)[ok], phi[ok])
        assert np.allclose(np.linalg.norm(s0 + r, axis=1), 1.0)


def test_truth_mtz_matches_model_and_scores_one(tmp_path):
    res = simulate(tmp_path / "sim", small_config())
    truth_mtz = res.truth_dir / "truth_A.mtz"
    mtz = gemmi.read_mtz_file(str(truth_mtz))
    assert mtz.spacegroup.hm == "P 21 21 21"
    data = np.array(mtz, copy=False)
    # the MTZ holds |F|² of the model: recompute a few directly from a structure-factor sum
    rng = np.random.default_rng(np.random.SeedSequence(3).spawn(4)[0])
    st = xtal.random_structure(res.crystals[0]["unit_cell"], "P 21 21 21", rng)
    calc = gemmi.StructureFactorCalculatorX(st.cell)
    for row in data[:: len(data) // 5][:5]:
        f = calc.calculate_sf_from_model(st[0], [int(x) for x in row[:3]])
        assert abs(abs(f) ** 2 - row[3]) < 1e-3 * row[3] + 1.0
    result = score(truth_mtz, res.truth_dir)
    assert result["cc_overall"] == pytest.approx(1.0, abs=1e-6)
    assert len(result["shells"]) == 10


def test_score_finds_twin_operator(tmp_path):
    cfg = small_config(space_group="P 4", unit_cell=(60, 60, 50, 90, 90, 90), d_min=3.0)
    res = simulate(tmp_path / "p4", cfg)
    mtz = gemmi.read_mtz_file(str(res.truth_dir / "truth_A.mtz"))
    data = np.array(mtz, copy=False).copy()
    data[:, :3] = xtal.apply_hkl_op("k,h,-l", data[:, :3].astype(int))
    mtz.set_data(data)
    twinned = tmp_path / "twinned.mtz"
    mtz.write_to_file(str(twinned))
    plain = score(res.truth_dir / "truth_A.mtz", res.truth_dir)
    result = score(twinned, res.truth_dir)
    assert result["cc_overall"] == pytest.approx(1.0, abs=1e-6)
    assert result["op"] != "h,k,l"
    assert plain["op"] == "h,k,l"
    # without re-indexing the twinned P4 data correlate only through the Wilson fall-off
    truth = load_truth_population(res.truth_dir, {"mtz": "truth_A.mtz"})
    trials = score_against(truth, data[:, :3].astype(int), data[:, 3].astype(float))["trials"]
    identity = [t["cc"] for t in trials if t["op"] == "h,k,l"]
    assert not identity or identity[0] < 0.8


def test_same_seed_same_bytes(tmp_path):
    a = simulate(tmp_path / "a", small_config(frames=2))
    b = simulate(tmp_path / "b", small_config(frames=2))
    c = simulate(tmp_path / "c", small_config(frames=2, seed=4))
    fa = sorted((tmp_path / "a").glob("*.cbf"))
    assert len(fa) == 2
    for f in fa:
        assert f.read_bytes() == (tmp_path / "b" / f.name).read_bytes()
    assert fa[0].read_bytes() != (tmp_path / "c" / fa[0].name).read_bytes()
    assert a.crystals[0]["A"] == b.crystals[0]["A"]
    assert a.crystals[0]["A"] != c.crystals[0]["A"]


def test_images_have_gaps_background_and_strong_spots(tmp_path):
    import fabio

    res = simulate(tmp_path / "s", SimulationConfig(frames=2, seed=5))
    img = fabio.open(res.sweeps[0].frame_path(2)).data
    assert img.shape == (1043, 981)
    assert (img[:, 487:494] == -1).all() and (img[195:212, :] == -1).all()
    good = img[img >= 0]
    assert 1 <= np.median(good) <= 6
    assert good.max() > 1000
    assert 50 < (good > 50).sum() < 20000


def test_eiger_master_and_data_files_readable(tmp_path):
    import h5py
    import hdf5plugin  # noqa: F401  (registers bitshuffle/LZ4)

    cfg = small_config(format="eiger", frames=3)
    res = simulate(tmp_path / "e", cfg)
    master = res.sweeps[0].template
    assert master.endswith("_master.h5")
    with h5py.File(master, "r") as fh:
        assert fh["/entry/definition"][()] == b"NXmx"
        frames = fh["/entry/data/data_000001"]
        assert frames.shape == (3, 407, 487)
        img = frames[1]
        assert fh["/entry/instrument/beam/incident_wavelength"][()] == pytest.approx(1.0)
        assert fh["/entry/instrument/detector/detector_distance"][()] == pytest.approx(0.1)
        assert fh["/entry/instrument/detector/detectorSpecific/nimages"][()] == 3
        omega = fh["/entry/sample/goniometer/omega"][()]
        assert np.allclose(np.diff(omega), 0.5)
        mask = fh["/entry/instrument/detector/pixel_mask"][()]
    assert (img[mask > 0] == 2**32 - 1).all()
    assert np.median(img[mask == 0]) < 10


def test_zoo_layout_populations_and_raster(tmp_path):
    cfg = small_config(
        layout="zoo",
        zoo_mode="multi",
        n_crystals=2,
        frames=2,
        n_populations=2,
        space_group="P 4",
        unit_cell=(60, 60, 50, 90, 90, 90),
        d_min=2.5,
        raster_grid=(1, 3),
        raster_hit_fraction=0.7,
    )
    res = simulate(tmp_path / "zoo", cfg)
    root = tmp_path / "zoo" / "CPS0001-01"
    assert sorted(p.name for p in (root / "data00").glob("*.cbf"))[:2] == [
        "multi_01_000001.cbf",
        "multi_01_000002.cbf",
    ]
    assert len(list((root / "scan00" / "2d").glob("raster_*.cbf"))) == 3
    crystals = res.crystals
    assert [c["population"] for c in crystals] == ["A", "B"]
    assert crystals[1]["unit_cell"][0] == pytest.approx(60 * 1.02)
    assert len({c["name"] for c in crystals}) == 2
    # population B is a different structure: it scores 1 against itself, not against A
    r = score(res.truth_dir / "truth_B.mtz", res.truth_dir)
    assert r["population"] == "B" and r["cc_overall"] == pytest.approx(1.0)
    assert r["populations"]["A"]["cc_overall"] < 0.9
    raster = json.loads(res.truth_json.read_text())["raster"]
    assert raster["n_frames"] == 3
    for frame in raster["frames"]:
        assert (frame["n_spots"] > 50) == frame["hit"]


def test_zoo_multi_pins_each_with_a_raster(tmp_path):
    cfg = small_config(
        layout="zoo", zoo_mode="multi", n_crystals=5, frames=1, pins=2, raster_grid=(1, 2)
    )
    res = simulate(tmp_path / "zoo", cfg)
    root = tmp_path / "zoo"
    # crystals fill the pins in order, as equally as possible (3 + 2)
    assert [s.template.split("/")[-3] for s in res.sweeps] == ["CPS0001-01"] * 3 + [
        "CPS0001-02"
    ] * 2
    assert [p.parent.parent.name for p in res.raster_dirs] == ["CPS0001-01", "CPS0001-02"]
    for pin in ("CPS0001-01", "CPS0001-02"):
        assert len(list((root / pin / "scan00" / "2d").glob("raster_*.cbf"))) == 2
    doc = json.loads(res.truth_json.read_text())
    assert [r["template"].split("/")[0] for r in doc["rasters"]] == ["CPS0001-01", "CPS0001-02"]
    assert doc["raster"] == doc["rasters"][0]
    assert res.n_frames == 5 + 4
