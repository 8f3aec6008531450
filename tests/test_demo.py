"""mxflow demo: the simulated data are made once and reused (the DIALS part is covered by
test_process_e2e, which runs the same pipeline on the same kind of sweep)."""

from __future__ import annotations

from mxflow.cli import build_parser
from mxflow.demo import DEMO_CONFIG, simulate_once


def test_simulate_once_reuses_images(tmp_path):
    config = {**DEMO_CONFIG, "n_crystals": 1, "frames": 2}
    truth = simulate_once(tmp_path / "data", config)
    frames = sorted((tmp_path / "data").glob("*.cbf"))
    assert truth.is_dir() and len(frames) == 2
    stamps = [f.stat().st_mtime_ns for f in frames]
    assert simulate_once(tmp_path / "data", config) == truth.resolve()
    assert [f.stat().st_mtime_ns for f in frames] == stamps  # not rewritten
    # another configuration is simulated afresh
    simulate_once(tmp_path / "data", {**config, "seed": 99})
    assert [f.stat().st_mtime_ns for f in frames] != stamps


def test_demo_defaults_are_small():
    assert 2 <= DEMO_CONFIG["n_crystals"] <= 3 and DEMO_CONFIG["frames"] <= 40
    args = build_parser("demo").parse_args(["demo", "--workdir", "x y"])
    assert args.workdir == "x y" and args.nproc >= 1
