"""mxflow demo: the embedded collection is simulated once and reused, laid out as a
ZOO tree that discovery reads with the demo's sample sheet.  The DIALS run itself is
covered by the slow collection tests, which run the same pipeline."""

from __future__ import annotations

from mxflow.cli import build_parser
from mxflow.demo import DEMO_SAMPLES, SAMPLE_SHEET, simulate_once
from mxflow.discover import discover_collection


def _tiny(samples):
    return {
        name: {**cfg, "n_crystals": min(cfg["n_crystals"], 2), "frames": 2}
        for name, cfg in samples.items()
    }


def test_simulate_once_reuses_images(tmp_path):
    samples = _tiny(DEMO_SAMPLES)
    truths = simulate_once(tmp_path, samples)
    frames = sorted((tmp_path / "data").rglob("*.cbf"))
    assert set(truths) == set(samples) and all(t.is_dir() for t in truths.values())
    assert frames, "no images simulated"
    stamps = [f.stat().st_mtime_ns for f in frames]
    assert simulate_once(tmp_path, samples) == truths
    assert [f.stat().st_mtime_ns for f in frames] == stamps  # not rewritten
    # another configuration is simulated afresh
    changed = {k: {**v, "seed": v["seed"] + 1} for k, v in samples.items()}
    simulate_once(tmp_path, changed)
    assert [f.stat().st_mtime_ns for f in sorted((tmp_path / "data").rglob("*.cbf"))] != stamps


def test_demo_collection_is_discovered_with_its_sheet(tmp_path):
    simulate_once(tmp_path, _tiny(DEMO_SAMPLES))
    sheet = tmp_path / "sheet.csv"
    sheet.write_text(SAMPLE_SHEET)
    coll = discover_collection(tmp_path / "data", sample_sheet=sheet, settle_s=0)
    by_sample = {}
    for d in coll.datasets:
        by_sample.setdefault(d.sample, set()).add(d.mode)
    assert by_sample == {"lysA": {"multi"}, "lysB": {"helical"}}
    assert len(coll.raster_scans) == 1  # the raster scan goes to hit maps, not processing


def test_demo_defaults_are_small():
    total = sum(c["n_crystals"] * c["frames"] for c in DEMO_SAMPLES.values())
    assert total <= 120  # frames: the demo must run in minutes on 2 cores
    args = build_parser("demo").parse_args(["demo", "--workdir", "x y"])
    assert args.workdir == "x y"
