"""Slow end to end: `mxflow run` on a simulated ZOO collection with DIALS, then a rerun."""

from __future__ import annotations

import json
import shutil

import pytest

from mxflow.catalog.db import Catalog
from mxflow.cli import main

pytestmark = [pytest.mark.slow, pytest.mark.dials]


@pytest.mark.skipif(shutil.which("dials.import") is None, reason="DIALS not on PATH")
def test_run_simulated_zoo_collection_and_rerun(tmp_path, capsys):
    from mxflow.simulate import SimulationConfig, simulate

    root, out = tmp_path / "zoo", tmp_path / "out"
    cfg = SimulationConfig(
        layout="zoo", zoo_mode="multi", n_crystals=2, frames=12, osc_width=1.0, seed=5,
        d_min=2.2, raster_grid=(2, 2),
    )  # fmt: skip
    simulate(root, cfg)
    argv = ["run", str(root), "--workdir", str(out), "--settle", "0", "--no-progress",
            "--space-group", cfg.space_group, "--no-merge"]  # fmt: skip
    # (merging has its own slow tests; here it would double the run time)
    assert main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    rows = {d["key"]: d for d in summary["datasets"]}
    assert set(rows) == {
        "proc/CPS0001-01/data00/multi_01",
        "proc/CPS0001-01/data00/multi_02",
    }
    for key, d in rows.items():
        assert d["status"] == "ok", d["reason"]
        assert (d["sample"], d["mode"], d["wedge"]) == ("CPS0001-01", "multi", "full")
        assert (out / d["integrated_refl"]).is_file() and d["integrated_refl"].startswith(key)
        assert d["space_group"].replace(" ", "") == "P212121"
    # the raster scan went to a hit map, never to processing
    assert [h["status"] for h in summary.get("hitmaps", [])] == ["ok"]
    # the run ends with its HTML reports, made from this real (simulated) collection
    index = (out / "report" / "index.html").read_text()
    assert "CPS0001-01" in index and "hit" in index.lower()
    datasets_page = (out / "report" / "datasets.html").read_text()
    for d in rows.values():
        assert d["name"] in datasets_page
        assert f"{d['d_min']:.2f}" in datasets_page  # the summary's resolution is on the page
    assert (out / "report" / "static" / "plotly.min.js").is_file()
    with Catalog(out, readonly=True) as cat:
        n_steps = {k: len(cat.steps(k)) for k in rows}
    capsys.readouterr()

    # a rerun redoes nothing
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "0 to process, 2 already done" in err
    with Catalog(out, readonly=True) as cat:
        assert {k: len(cat.steps(k)) for k in rows} == n_steps
        assert all(r["attempts"] == 1 for r in cat.rows())
    assert main(["status", str(out)]) == 0
    assert "2 ok" in capsys.readouterr().out
