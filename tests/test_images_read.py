"""Header and frame reading: miniCBF (real and synthetic), Eiger HDF5, SMV, bad input."""

from __future__ import annotations

import bz2
import gzip
import shutil

import h5py
import numpy as np
import pytest

from images_fixtures import cbf_frame, cbf_sweep, eiger_master, smv_frame
from mxflow.errors import BadInputError
from mxflow.images import (
    FrameHeader,
    detect_format,
    iter_frames,
    module_gap_mask,
    pixel_mask,
    read_frame,
    read_header,
)
from mxflow.model import ImageSweep

# ---------------------------------------------------------------- real data


def test_real_thaumatin_header(shared_data):
    path = shared_data / "thaumatin_grid" / "thau_3_2_0001.cbf.bz2"
    h = read_header(path)
    assert h.format == "cbf"
    assert h.wavelength == pytest.approx(0.96859)
    assert h.distance == pytest.approx(351.0)
    assert h.beam_center == pytest.approx((1261.61, 1306.96))
    assert h.pixel_size == pytest.approx((0.172, 0.172))
    assert h.image_size == (2463, 2527)
    assert h.osc_width == 0.0
    assert h.osc_start == pytest.approx(89.9997)
    assert h.exposure == pytest.approx(0.019)
    assert h.detector == "PILATUS3 6M"
    assert h.overload == 115897
    assert h.n_frames == 1


def test_real_thaumatin_frame_and_mask(shared_data):
    path = shared_data / "thaumatin_grid" / "thau_3_2_0001.cbf.bz2"
    h = read_header(path)
    frame = read_frame(path)
    assert frame.dtype == np.int32
    assert frame.shape == (2527, 2463)
    # PILATUS writes -1 in module gaps: they must coincide with the known 6M layout
    gaps = ~module_gap_mask(h)
    assert np.all(frame[gaps] == -1)
    assert gaps.sum() == 2463 * 2527 - 60 * 487 * 195
    good = pixel_mask(frame, h)
    assert not good[gaps].any()
    assert not good[frame < 0].any()
    assert good.sum() > 0.9 * 60 * 487 * 195
    assert frame[good].max() < h.overload


# ---------------------------------------------------------------- synthetic CBF


def test_cbf_header_and_frame(tmp_path):
    p = cbf_frame(tmp_path / "a_00001.cbf", start=12.5, width=0.25, wavelength=0.8, distance=123.4)
    h = read_header(p)
    assert isinstance(h, FrameHeader)
    assert (h.wavelength, h.distance, h.osc_start, h.osc_width) == pytest.approx(
        (0.8, 123.4, 12.5, 0.25)
    )
    assert h.image_size == (10, 12)
    assert h.beam_center == pytest.approx((5.5, 6.5))
    frame = read_frame(p)
    assert frame.shape == (12, 10)
    assert frame[0, 0] == -1 and frame[1, 1] == -2 and frame[5, 5] == 7
    mask = pixel_mask(frame)
    assert mask.sum() == 118 and not mask[0, 0] and not mask[1, 1]


@pytest.mark.parametrize("opener,ext", [(bz2.open, ".bz2"), (gzip.open, ".gz")])
def test_cbf_compressed(tmp_path, opener, ext):
    p = cbf_frame(tmp_path / "a_00001.cbf", start=3.0)
    q = tmp_path / f"b_00001.cbf{ext}"
    with opener(q, "wb") as fh:
        fh.write(p.read_bytes())
    assert read_header(q).osc_start == pytest.approx(3.0)
    assert np.array_equal(read_frame(q), read_frame(p))


def test_truncated_cbf(tmp_path):
    p = cbf_frame(tmp_path / "a_00001.cbf", shape=(40, 30), value=1000)
    raw = p.read_bytes()
    start = raw.find(b"\x0c\x1a\x04\xd5") + 4
    t = tmp_path / "t_00001.cbf"
    t.write_bytes(raw[: start + 20])
    with pytest.raises(BadInputError, match="truncated CBF") as exc:
        read_header(t)
    assert exc.value.path == str(t)
    with pytest.raises(BadInputError, match="truncated CBF"):
        read_frame(t)
    # a compressed truncated frame is caught when the pixels are read
    tb = tmp_path / "t_00002.cbf.bz2"
    tb.write_bytes(bz2.compress(raw[: start + 20]))
    read_header(tb)
    with pytest.raises(BadInputError, match="truncated CBF"):
        read_frame(tb)


def test_cbf_wrong_size(tmp_path):
    p = cbf_frame(tmp_path / "a_00001.cbf")
    raw = p.read_bytes().replace(
        b"X-Binary-Size-Second-Dimension: 12", b"X-Binary-Size-Second-Dimension: 13"
    )
    q = tmp_path / "w_00001.cbf"
    q.write_bytes(raw)
    with pytest.raises(BadInputError, match="wrong image size"):
        read_frame(q)
    # header consistent with itself (13 x 10 = 130 elements) but the data hold 120
    r = tmp_path / "w_00002.cbf"
    r.write_bytes(raw.replace(b"Number-of-Elements: 120", b"Number-of-Elements: 130"))
    with pytest.raises(BadInputError, match="wrong image size: 120 pixels decoded"):
        read_frame(r)


def test_text_file_named_cbf(tmp_path):
    p = tmp_path / "notes_00001.cbf"
    p.write_text("this is a lab notebook, not an image\n")
    with pytest.raises(BadInputError, match="not a CBF image"):
        read_header(p)
    with pytest.raises(BadInputError, match="not a CBF image"):
        read_frame(p)


def test_cbf_missing_header_line(tmp_path):
    p = cbf_frame(tmp_path / "a_00001.cbf")
    q = tmp_path / "m_00001.cbf"
    q.write_bytes(p.read_bytes().replace(b"# Wavelength", b"# Wavelen_gth"))
    with pytest.raises(BadInputError, match="Wavelength"):
        read_header(q)


def test_missing_file_and_unknown_name(tmp_path):
    with pytest.raises(BadInputError, match="does not exist"):
        read_header(tmp_path / "nope_00001.cbf")
    (tmp_path / "x.txt").write_text("x")
    with pytest.raises(BadInputError, match="not a recognised image"):
        read_header(tmp_path / "x.txt")


# ---------------------------------------------------------------- Eiger


def test_eiger_header(tmp_path):
    m = eiger_master(tmp_path, n_frames=6, per_file=4, start=10.0, width=0.2)
    h = read_header(m)
    assert h.format == "eiger"
    assert h.n_frames == 6 and h.n_frames_expected == 6
    assert h.wavelength == pytest.approx(0.9793)
    assert h.distance == pytest.approx(150.0)
    assert h.pixel_size == pytest.approx((0.075, 0.075))
    assert h.beam_center == pytest.approx((3.25, 4.5))
    assert h.image_size == (6, 8)
    assert h.osc_start == pytest.approx(10.0) and h.osc_width == pytest.approx(0.2)
    assert h.angles == pytest.approx([10.0, 10.2, 10.4, 10.6, 10.8, 11.0])
    assert h.exposure == pytest.approx(0.01)
    assert "EIGER" in h.detector
    assert h.overload == 50000


def test_eiger_nxmx_fields(tmp_path):
    """NXmx naming: distance in mm, energy instead of wavelength, transformations group."""
    m = tmp_path / "n.nxs"
    with h5py.File(m, "w") as f:
        det = f.create_group("entry/instrument/detector")
        det["distance"] = 250.0
        det["distance"].attrs["units"] = "mm"
        det["beam_center_x"] = 10.0
        det["beam_center_y"] = 20.0
        det["x_pixel_size"] = 0.075
        det["x_pixel_size"].attrs["units"] = "mm"
        det["y_pixel_size"] = 0.075
        det["y_pixel_size"].attrs["units"] = "mm"
        f["entry/instrument/beam/incident_energy"] = 12398.419843320026
        f["entry/instrument/beam/incident_energy"].attrs["units"] = "eV"
        f["entry/sample/transformations/omega"] = np.array([0.0, 0.5, 1.0])
        f["entry/sample/transformations/omega_increment_set"] = 0.5
        f["entry/data/data"] = np.ones((3, 4, 5), np.uint16)
    h = read_header(m)
    assert h.wavelength == pytest.approx(1.0)
    assert h.distance == pytest.approx(250.0)
    assert h.pixel_size == pytest.approx((0.075, 0.075))
    assert h.image_size == (5, 4) and h.n_frames == 3 and h.n_frames_expected is None
    assert h.osc_width == pytest.approx(0.5) and h.angles == pytest.approx([0.0, 0.5, 1.0])
    assert read_frame(m, 2).shape == (4, 5)


def test_eiger_frames_across_data_files(tmp_path):
    m = eiger_master(tmp_path, n_frames=6, per_file=4)
    f4 = read_frame(m, 4)  # frame 5: second data file
    assert f4.dtype == np.int32 and f4.shape == (8, 6)
    assert f4[4, 4] == 5
    assert np.all(f4[0, :] == -1)  # gap row in pixel_mask
    assert f4[2, 2] == -2  # hot pixel flag
    numbers = [n for n, _ in iter_frames(m)]
    assert numbers == [1, 2, 3, 4, 5, 6]
    with pytest.raises(BadInputError, match="out of range"):
        read_frame(m, 6)


def test_eiger_missing_data_file(tmp_path):
    m = eiger_master(tmp_path, n_frames=6, per_file=4)
    (tmp_path / "x_data_000002.h5").unlink()
    with pytest.raises(BadInputError, match="missing external data file x_data_000002.h5"):
        read_header(m)


def test_eiger_data_file_is_not_a_sweep(tmp_path):
    eiger_master(tmp_path)
    with pytest.raises(BadInputError, match="master"):
        detect_format(tmp_path / "x_data_000001.h5")


def test_unreadable_hdf5(tmp_path):
    p = tmp_path / "broken_master.h5"
    p.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\x00" * 100)
    with pytest.raises(BadInputError, match="unreadable HDF5"):
        read_header(p)
    q = tmp_path / "text_master.h5"
    q.write_text("hello")
    with pytest.raises(BadInputError, match="not an HDF5 file"):
        read_header(q)


# ---------------------------------------------------------------- SMV


def test_smv(tmp_path):
    p = smv_frame(tmp_path / "s_001.img", start=5.0, width=1.0)
    h = read_header(p)
    assert h.format == "smv"
    assert h.image_size == (4, 6)
    assert (h.wavelength, h.distance, h.osc_start, h.osc_width, h.exposure) == pytest.approx(
        (1.5418, 250.0, 5.0, 1.0, 1.5)
    )
    # ADSC convention: BEAM_CENTER_Y is along fast, BEAM_CENTER_X along slow (mm)
    assert h.beam_center == pytest.approx((2.0, 3.0))
    frame = read_frame(p)
    assert frame.dtype == np.int32 and frame.shape == (6, 4)
    assert frame[1, 2] == 6
    assert not pixel_mask(frame, h)[0, 0]  # saturated


# ---------------------------------------------------------------- sweeps and masks


def test_iter_frames_sweep_skips_missing(tmp_path):
    cbf_sweep(tmp_path, "s", [1, 2, 4], start=0.0, width=1.0, value=3)
    sweep = ImageSweep(
        template=str(tmp_path / "s_#####.cbf"),
        format="cbf",
        first=1,
        last=4,
        wavelength=1.0,
        distance=200.0,
        beam_center=(5.5, 6.5),
        pixel_size=(0.172, 0.172),
        image_size=(10, 12),
        osc_start=0.0,
        osc_width=1.0,
        missing=[3],
    )
    got = [(n, int(f[5, 5])) for n, f in iter_frames(sweep)]
    assert got == [(1, 3), (2, 3), (4, 3)]
    assert [n for n, _ in iter_frames(sweep, first=2, last=2)] == [2]


def test_module_gap_mask_eiger_and_unknown():
    h = FrameHeader(
        "x",
        "eiger",
        1.0,
        100.0,
        (0, 0),
        (0.075, 0.075),
        (4150, 4371),
        0,
        0.1,
        detector="Dectris EIGER X 16M",
    )
    good = module_gap_mask(h)
    assert good.shape == (4371, 4150)
    assert (~good).sum() == 4150 * 4371 - 32 * 1030 * 514
    assert not good[0, 1030] and good[0, 1029] and not good[514, 0]
    other = FrameHeader(
        "x", "smv", 1.0, 100.0, (0, 0), (0.1, 0.1), (100, 90), 0, 1.0, detector="ADSC"
    )
    assert module_gap_mask(other).all()


def test_raw_files_untouched(tmp_path):
    p = cbf_frame(tmp_path / "a_00001.cbf")
    before = p.read_bytes()
    read_header(p)
    read_frame(p)
    shutil.copy(p, tmp_path / "copy.cbf")
    assert p.read_bytes() == before


def test_eiger_reader_many_frames_and_counts(tmp_path):
    """EigerReader keeps the file open; saturated and over-range counts are handled as
    read_frame does: the type's maximum → -2, counts beyond int32 clipped."""
    import h5py

    from mxflow.images.read import EigerReader

    m = eiger_master(tmp_path, n_frames=6, per_file=4)
    with h5py.File(tmp_path / "x_data_000001.h5", "r+") as d:
        block = d["entry/data/data"]
        frame = block[1]
        frame[3, 1] = 2**32 - 1  # saturated / masked by the detector
        frame[3, 2] = 2**31 + 5  # beyond int32
        block[1] = frame
    with EigerReader(m) as reader:
        assert len(reader) == 6
        frames = [reader.frame(i) for i in range(6)]
    for i, f in enumerate(frames):
        assert np.array_equal(f, read_frame(m, i))
        assert f.dtype == np.int32 and f[4, 4] == i + 1 and np.all(f[0, :] == -1)
    assert frames[1][3, 1] == -2 and frames[1][3, 2] == 2**31 - 1
    with pytest.raises(BadInputError, match="out of range"), EigerReader(m) as reader:
        reader.frame(-1)


def test_eiger_uint16_saturation(tmp_path):
    import h5py

    m = eiger_master(tmp_path, n_frames=2, per_file=2)
    with h5py.File(tmp_path / "x_data_000001.h5", "r+") as d:
        block = d["entry/data/data"][()].astype(np.uint16)
        block[0, 5, 5] = 65535
        del d["entry/data/data"]
        d["entry/data/data"] = block
    f = read_frame(m, 0)
    assert f.dtype == np.int32 and f[5, 5] == -2 and f[4, 4] == 1
