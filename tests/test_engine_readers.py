"""mxflow.engine.expt / refl: reading DIALS files without DIALS."""

from __future__ import annotations

import json

import msgpack
import numpy as np
import pytest

from mxflow.engine.expt import read_crystal, read_experiments
from mxflow.engine.refl import FLAGS, read_reflections
from mxflow.errors import BadInputError


def test_expt_l_cysteine(shared_data):
    path = shared_data / "l_cysteine_integrated" / "20_integrated_experiments.json"
    (exp,) = read_experiments(path)
    assert exp.space_group == "P 2 2 2"
    a, b, c, al, be, ga = exp.unit_cell
    # README: 5.43, 8.14, 12.04 Å, 90°
    assert sorted([a, b, c]) == pytest.approx([5.43, 8.14, 12.04], rel=0.015)
    assert (al, be, ga) == pytest.approx((90, 90, 90), abs=0.2)
    assert exp.wavelength == pytest.approx(0.6889)
    assert exp.image_range[0] >= 1 and exp.n_images > 100
    assert exp.pixel_size == pytest.approx((0.172, 0.172))
    assert exp.image_size == (1475, 1679)
    # the beam hits the detector inside the image
    assert 0 < exp.beam_center[0] < 1475 and 0 < exp.beam_center[1] < 1679
    assert 100 < exp.distance < 300
    # A = UB: |A·(h,k,l)| = 1/d; a*·a = 1
    real = np.linalg.inv(exp.A)
    assert np.linalg.norm(real, axis=1) == pytest.approx([a, b, c], rel=1e-9)


def test_expt_synthetic_geometry(tmp_path):
    """A detector normal to the beam at 200 mm: beam centre where the beam hits it."""
    doc = {
        "__id__": "ExperimentList",
        "experiment": [{"__id__": "Experiment", "beam": 0, "detector": 0, "crystal": 0, "scan": 0}],
        "beam": [{"direction": [0.0, 0.0, 1.0], "wavelength": 1.0}],
        "detector": [
            {
                "panels": [
                    {
                        "fast_axis": [1.0, 0.0, 0.0],
                        "slow_axis": [0.0, -1.0, 0.0],
                        "origin": [-10.0, 20.0, -200.0],
                        "pixel_size": [0.1, 0.1],
                        "image_size": [400, 300],
                    }
                ]
            }
        ],
        "crystal": [
            {
                "real_space_a": [40.0, 0.0, 0.0],
                "real_space_b": [0.0, 50.0, 0.0],
                "real_space_c": [0.0, 0.0, 60.0],
                "space_group_hall_symbol": " P 2ac 2ab",
            }
        ],
        "scan": [{"image_range": [1, 30], "oscillation": [10.0, 0.5]}],
    }
    path = tmp_path / "x.expt"
    path.write_text(json.dumps(doc))
    exp = read_crystal(path)
    assert exp.space_group == "P 21 21 21"
    assert exp.unit_cell == pytest.approx((40, 50, 60, 90, 90, 90))
    assert exp.A @ np.array([1, 0, 0]) == pytest.approx([1 / 40, 0, 0])
    assert exp.distance == pytest.approx(200.0)
    assert exp.beam_center == pytest.approx((100.0, 200.0))
    assert exp.image_range == (1, 30) and exp.oscillation == (10.0, 0.5)


def test_expt_bad_input(tmp_path):
    p = tmp_path / "bad file.expt"
    p.write_text("{not json")
    with pytest.raises(BadInputError, match="bad file.expt"):
        read_experiments(p)
    p.write_text("{}")
    with pytest.raises(BadInputError, match="not a DIALS experiment list"):
        read_experiments(p)


def write_refl(path, nrows, columns):
    """A msgpack reflection table as DIALS writes it: {name: (type, ndarray)}."""
    data = {
        name: [kind, [nrows, np.ascontiguousarray(arr).tobytes()]]
        for name, (kind, arr) in columns.items()
    }
    doc = [
        "dials::af::reflection_table",
        1,
        {"identifiers": {0: "abc"}, "nrows": nrows, "data": data},
    ]
    path.write_bytes(msgpack.packb(doc, use_bin_type=True))


def test_refl_roundtrip(tmp_path):
    n = 5
    hkl = np.arange(15, dtype="<i4").reshape(5, 3) - 7
    xyz = np.random.default_rng(0).normal(size=(5, 3))
    flags = np.array(
        [
            FLAGS["indexed"],
            FLAGS["strong"],
            FLAGS["integrated_sum"],
            0,
            FLAGS["indexed"] | FLAGS["strong"],
        ],
        "<u8",
    )
    cols = {
        "miller_index": ("cctbx::miller::index<>", hkl),
        "xyzobs.px.value": ("vec3<double>", xyz),
        "id": ("int", np.array([0, 0, 1, 1, -1], "<i4")),
        "flags": ("std::size_t", flags),
        "entering": ("bool", np.array([1, 0, 1, 0, 1], np.uint8)),
        "bbox": ("int6", np.arange(30, dtype="<i4").reshape(5, 6)),
        "d": ("double", np.linspace(1, 5, 5)),
    }
    path = tmp_path / "t.refl"
    write_refl(path, n, cols)
    t = read_reflections(path)
    assert t.nrows == 5 and t.identifiers == {0: "abc"}
    assert np.array_equal(t["miller_index"], hkl)
    assert np.allclose(t["xyzobs.px.value"], xyz)
    assert t["entering"].dtype == bool and t["entering"].tolist() == [
        True,
        False,
        True,
        False,
        True,
    ]
    assert t["bbox"].shape == (5, 6) and t["bbox"][1, 0] == 6
    assert t.has_flag("indexed").tolist() == [True, False, False, False, True]
    assert t.has_flag("integrated").tolist() == [False, False, True, False, False]
    sub = t.select(t["id"] == 1)
    assert len(sub) == 2 and sub["d"].tolist() == [3.0, 4.0]
    only = read_reflections(path, columns=["d"])
    assert list(only.columns) == ["d"]
    with pytest.raises(BadInputError, match="no column 'nope'"):
        read_reflections(path, columns=["nope"])


def test_refl_bad_input(tmp_path):
    p = tmp_path / "old.pickle"
    p.write_bytes(b"\x80\x02}q\x00.")
    with pytest.raises(BadInputError, match="old.pickle"):
        read_reflections(p)
    write_refl(tmp_path / "short.refl", 4, {"d": ("double", np.zeros(3))})
    with pytest.raises(BadInputError, match="short.refl"):
        read_reflections(tmp_path / "short.refl")


def test_refl_identifiers_alone_stop_before_the_data(tmp_path):
    """columns=[] reads the identifiers and row count, not the (large) columns."""
    path = tmp_path / "big.refl"
    write_refl(path, 4, {"d": ("double", np.arange(4.0)), "s": ("std::string", np.zeros(4))})
    whole = path.read_bytes()
    assert read_reflections(path).skipped == ["s"]  # undecodable column: skipped, listed
    cut = tmp_path / "cut.refl"
    cut.write_bytes(whole[: whole.index(b"data") + 10])  # the data cut off part-way
    head = read_reflections(cut, columns=[])
    assert head.nrows == 4 and head.identifiers == {0: "abc"} and not head.columns
    with pytest.raises(BadInputError, match="cut.refl"):
        read_reflections(cut)
