"""mxflow.hitmap on real PILATUS3 6M raster frames (thaumatin_grid, DLS 2019),
against dials.find_spots with its default settings on the same frames."""

from __future__ import annotations

import bz2
import subprocess
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial import cKDTree

from conftest import requires_dials
from mxflow.engine.refl import read_reflections
from mxflow.hitmap import SpotFilter, hitmap


def grid_frames(shared_data: Path) -> list[Path]:
    frames = sorted((shared_data / "thaumatin_grid").glob("thau_3_2_*.cbf.bz2"))
    if len(frames) != 6:
        pytest.skip("thaumatin_grid frames not found")
    return frames


def test_real_raster_frames(shared_data, tmp_path):
    frames = grid_frames(shared_data)
    doc = hitmap(frames, tmp_path, grid=(3, 2))
    counts = [f["n_spots"] for f in doc["frames"]]
    assert doc["errors"] == []
    # frame 1 is the weak one; the others hold ~1,100-1,300 spots (dials.find_spots)
    assert int(np.argmin(counts)) == 0
    assert 150 < counts[0] < 450 and all(900 < c < 1600 for c in counts[1:])
    for f in doc["frames"]:
        assert 1.5 < f["d_min_est"] < 4.0  # thaumatin diffracts to ~2 Å here
        assert f["total_intensity"] > f["n_spots"] * f["median_intensity"] * 0.5
    assert doc["geometry"]["image_size"] == [2463, 2527]


@pytest.mark.slow
@requires_dials
def test_counts_and_positions_match_dials_find_spots(shared_data, tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    plain = []
    for f in grid_frames(shared_data):
        out = raw / f.name[: -len(".bz2")]
        out.write_bytes(bz2.decompress(f.read_bytes()))
        plain.append(out)
    work = tmp_path / "dials"
    work.mkdir()
    subprocess.run(["dials.import", *map(str, plain)], cwd=work, check=True, capture_output=True)
    subprocess.run(
        ["dials.find_spots", "imported.expt", "nproc=2"], cwd=work, check=True, capture_output=True
    )
    table = read_reflections(work / "strong.refl", columns=["id", "xyzobs.px.value"])
    ids = table.columns["id"]
    xyz = table.columns["xyzobs.px.value"]
    dials_counts = np.bincount(ids, minlength=6)

    # DIALS's defaults: no resolution limit, no ice-ring filter
    doc = hitmap(plain, tmp_path / "mx", spot_filter=SpotFilter(d_max=None), render=False)
    ours = np.array([f["n_spots"] for f in doc["frames"]])
    print("dials", dials_counts.tolist(), "mxflow", ours.tolist())
    assert np.all(np.abs(ours - dials_counts) <= 0.15 * dials_counts)
    assert (
        np.argsort(-ours, kind="stable").tolist()
        == np.argsort(-dials_counts, kind="stable").tolist()
    )

    # positions: the spots found are the same spots
    from mxflow.hitmap.frames import FrameRef, read_pixels, static_mask
    from mxflow.hitmap.run import scan_header
    from mxflow.hitmap.spotfinder import find_spots

    header, _ = scan_header([FrameRef(str(plain[0]))])
    mask = static_mask(header)
    for k, path in enumerate(plain):
        spots = find_spots(read_pixels(FrameRef(str(path))), mask, header.overload)
        ref = xyz[ids == k, :2]
        dist, _ = cKDTree(np.column_stack([spots.x, spots.y])).query(ref)
        assert np.mean(dist < 0.5) >= 0.95, (k, np.mean(dist < 0.5))
