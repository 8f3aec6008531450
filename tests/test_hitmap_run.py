"""mxflow.hitmap end to end on synthetic scans: CBF decoding, bad frames,
grid layout, outputs (JSON, PNG, HTML) and the command line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from images_fixtures import eiger_master
from mxflow.cli import main as mxflow_main
from mxflow.errors import BadInputError, MxflowError
from mxflow.hitmap import SpotFilter, hitmap
from mxflow.hitmap.run import choose_grid, scan_name
from mxflow.images.cbf import decode_byte_offset, read_cbf_pixels
from mxflow.images.write_cbf import byte_offset_encode, write_minicbf
from mxflow.report.render import static_text
from test_hitmap_spotfinder import synthetic_frame

HEADER = {
    "detector": "PILATUS3 6M, S/N 60-0000",  # 300 x 320 px does not tile: no gap mask
    "wavelength_A": 1.0,
    "distance_mm": 150.0,
    "beam_xy_px": (160.0, 150.0),
    "exposure_s": 0.02,
    "count_cutoff": 1000000,
}


def test_byte_offset_decoder_handles_all_escape_widths():
    rng = np.random.default_rng(0)
    values = np.concatenate(
        [
            rng.integers(-50, 50, 1000),  # 8-bit deltas
            rng.integers(-30000, 30000, 1000),  # 16-bit
            rng.integers(-(2**31) + 1, 2**31 - 1, 1000),  # 32-bit
            [0, 2**31 - 1, -(2**31) + 1, 0, -1, -2],  # extreme jumps
        ]
    ).astype(np.int32)
    encoded = byte_offset_encode(values)
    np.testing.assert_array_equal(decode_byte_offset(encoded, values.size), values)
    with pytest.raises(ValueError, match="hold"):
        decode_byte_offset(encoded[: len(encoded) // 2], values.size)


def test_cbf_reader_checks_size_and_truncation(tmp_path):
    image, _ = synthetic_frame(seed=1)
    good = tmp_path / "good.cbf"
    write_minicbf(good, image, HEADER)
    np.testing.assert_array_equal(read_cbf_pixels(good), image)
    truncated = tmp_path / "cut.cbf"
    truncated.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    with pytest.raises(BadInputError, match="truncated"):
        read_cbf_pixels(truncated)
    with pytest.raises(BadInputError, match="does not exist"):
        read_cbf_pixels(tmp_path / "missing.cbf")


def write_scan(directory: Path, n: int, hits: dict[int, int]) -> list[Path]:
    """``n`` synthetic frames; frame k has ``hits.get(k, 0)`` spots."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for k in range(n):
        if hits.get(k, 0):
            image, _ = synthetic_frame(n_spots=hits[k], seed=100 + k)
        else:
            image = np.random.default_rng(100 + k).poisson(2.0, (300, 320)).astype(np.int32)
        p = directory / f"scan_{k + 1:04d}.cbf"
        write_minicbf(p, image, HEADER)
        paths.append(p)
    return paths


def test_hitmap_ranks_frames_and_writes_outputs(tmp_path):
    hits = {1: 30, 4: 10, 5: 20}
    paths = write_scan(tmp_path / "scan", 6, hits)
    doc = hitmap(
        [tmp_path / "scan"], tmp_path / "out", grid=(3, 2), spot_filter=SpotFilter(d_max=None)
    )
    counts = [f["n_spots"] for f in doc["frames"]]
    assert [f["file"] for f in doc["frames"]] == [str(p) for p in paths]
    for k, want in hits.items():
        assert abs(counts[k] - want) <= 1, (k, counts)
    assert sorted(range(6), key=lambda k: -counts[k])[:3] == [1, 5, 4]
    assert max(counts[k] for k in (0, 2, 3)) <= 2
    assert doc["errors"] == []
    on_disk = json.loads((tmp_path / "out" / "hitmap.json").read_text())
    assert on_disk["frames"][1]["n_spots"] == counts[1]
    assert set(on_disk["frames"][0]) >= {"file", "index", "n_spots", "total_intensity", "d_min_est"}
    assert (tmp_path / "out" / "hitmap.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (tmp_path / "out" / "hitmap.html").read_text()
    assert "scan_0002.cbf" in page and "mouseenter" in page and "http" not in page.lower()
    # the reports' header and stylesheet (inline: no report pages here to link)
    assert '<header class="top">' in page and static_text("mxflow.css").strip() in page
    # a frame with 30 spots has a resolution estimate; the median spot is brighter than 0
    assert doc["frames"][1]["d_min_est"] > 0
    assert doc["frames"][1]["median_intensity"] > 0


def test_bad_frames_are_errors_and_the_map_still_renders(tmp_path):
    scan = tmp_path / "scan"
    paths = write_scan(scan, 4, {0: 15, 2: 25})
    data = paths[1].read_bytes()
    paths[1].write_bytes(data[: len(data) - 20000])  # truncated
    write_minicbf(paths[3], np.zeros((300, 320), np.int32), HEADER)  # all zeros
    write_minicbf(scan / "scan_0005.cbf", np.ones((200, 320), np.int32), HEADER)  # wrong size
    (scan / "scan_0006.cbf").write_bytes(b"not a CBF at all")
    for backend in ("threads", "processes"):
        doc = hitmap([scan], tmp_path / backend, grid=(3, 2), workers=2, backend=backend)
        frames = doc["frames"]
        assert len(frames) == 6
        assert frames[0]["n_spots"] >= 14 and frames[2]["n_spots"] >= 24
        errors = {Path(e["file"]).name: e["error"] for e in doc["errors"]}
        assert set(errors) == {"scan_0002.cbf", "scan_0004.cbf", "scan_0005.cbf", "scan_0006.cbf"}
        assert "truncated" in errors["scan_0002.cbf"]
        assert "blank" in errors["scan_0004.cbf"]
        assert "wrong image size" in errors["scan_0005.cbf"]
        assert "not a CBF image" in errors["scan_0006.cbf"]
        assert all(frames[k]["n_spots"] is None for k in (1, 3, 4, 5))
        assert (tmp_path / backend / "hitmap.png").stat().st_size > 1000
        assert "scan_0006.cbf" in (tmp_path / backend / "hitmap.html").read_text()


def test_grid_layout_and_parsing():
    g = choose_grid(6, (3, 2), snake=True)
    assert [g.cell(k) for k in range(6)] == [(0, 0), (0, 1), (0, 2), (1, 2), (1, 1), (1, 0)]
    assert (
        choose_grid(10, None, False).cols == 4 and choose_grid(10, None, False).source == "guessed"
    )
    with pytest.raises(MxflowError, match="holds"):
        choose_grid(7, (3, 2), False)


def test_scan_name_drops_frame_number_and_extension():
    """The hit-map folder of a scan is named after the scan: ``raster/`` for raster_0001.cbf...,
    not ``raster_.cbf/``; scans of other names stay apart."""
    assert scan_name("/data/CPS0002-01/scan00/2d/raster_######.cbf") == "raster"
    assert scan_name("raster_####.cbf") == "raster"
    assert scan_name("raster2_####.cbf") == "raster2"
    assert scan_name("grid_2_####.cbf.gz") == "grid_2"
    assert scan_name("scan_01_master.h5") == "scan_01"
    assert scan_name("xtal-####_b.img") == "xtal_b"
    assert scan_name("####.cbf") == "scan"


def test_eiger_master_frames_are_listed(tmp_path):
    master = eiger_master(tmp_path, n_frames=6, per_file=4, shape=(40, 36))
    doc = hitmap([master], tmp_path / "out", render=False)
    assert [(f["index"], f["n_spots"]) for f in doc["frames"]] == [(k, 0) for k in range(6)]
    assert doc["errors"] == []


def test_cli(tmp_path, capsys):
    write_scan(tmp_path / "scan", 4, {2: 12})
    rc = mxflow_main(
        [
            "hitmap",
            str(tmp_path / "scan"),
            "--workdir",
            str(tmp_path / "o"),
            "--grid",
            "2x2",
            "--snake",
        ]
    )
    assert rc == 0
    out = capsys.readouterr().out
    assert "best frame" in out and "scan_0003.cbf" in out
    doc = json.loads((tmp_path / "o" / "hitmap.json").read_text())
    assert doc["grid"] == {"cols": 2, "rows": 2, "snake": True, "source": "given"}
    assert (doc["frames"][2]["row"], doc["frames"][2]["col"]) == (1, 1)


def test_auto_backend_uses_processes_for_long_hdf5_scans(tmp_path):
    from mxflow.hitmap.frames import FrameRef
    from mxflow.hitmap.run import choose_backend

    h5 = [FrameRef("/d/scan_master.h5", i) for i in range(16)]
    cbf = [FrameRef(f"/d/scan_{i:04d}.cbf") for i in range(100)]
    assert choose_backend(h5, 2) == "processes"
    assert choose_backend(h5[:15], 2) == "threads"  # too short to pay for starting processes
    assert choose_backend(cbf, 2) == "threads"
    # the CLI resolves "auto" and records what it used; results do not depend on it
    master = eiger_master(tmp_path, n_frames=16, per_file=10, shape=(40, 36))
    for flag, expect in (([], "processes"), (["--threads"], "threads")):
        out = tmp_path / f"o{len(flag)}"
        assert (
            mxflow_main(["hitmap", str(master), "--workdir", str(out), "--workers", "2", *flag])
            == 0
        )
        doc = json.loads((out / "hitmap.json").read_text())
        assert doc["timing"]["backend"] == expect
        assert [f["n_spots"] for f in doc["frames"]] == [0] * 16
