"""`mxflow find --collection` counts what `mxflow run` schedules (issue 16, item 6).

On the demo collection (in miniature: 2 multi-mode wedges of lysA, lysB's helical
sweep long enough to be cut into two 30° wedges, and its raster scan), find used to
count the wedge route's units (multi wedges + helical wedges, 4) where run processes
every whole sweep once and every wedge cut from one (3 + 2 = 5).
"""

from __future__ import annotations

import json
import re

import pytest

from mxflow.cli import main
from mxflow.demo import DEMO_SAMPLES, SAMPLE_SHEET, simulate_once
from mxflow.schedule.collection import RunConfig, discover, plan


def _tiny_demo():
    """The demo's samples, small: 2 crystals of 2 frames for lysA; lysB's helical
    sweep 3 frames of 15° (45°: a 30° wedge and a 15° one, as the demo's 40°)."""
    samples = {
        name: {**cfg, "n_crystals": min(cfg["n_crystals"], 2), "frames": 2}
        for name, cfg in DEMO_SAMPLES.items()
    }
    samples["lysB"].update(frames=3, osc_width=15.0)
    return samples


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    work = tmp_path_factory.mktemp("demo")
    simulate_once(work, _tiny_demo())
    sheet = work / "sample_sheet.csv"
    sheet.write_text(SAMPLE_SHEET)
    return work / "data", sheet


def test_find_counts_what_run_schedules(demo, capsys):
    root, sheet = demo
    items = plan(discover(root, RunConfig(sample_sheet=str(sheet), settle_s=0)), root, 30.0)
    n_sweeps = sum(i.kind == "sweep" for i in items)
    n_wedges = sum(i.kind == "wedge" for i in items)
    assert (n_sweeps, n_wedges) == (3, 2)  # lysA's 2 wedges + lysB's sweep; lysB cut in 2

    assert main(["find", "--collection", str(root), "--sheet", str(sheet), "--settle-s", "0"]) == 0
    out = capsys.readouterr().out
    summary = re.search(
        r"(\d+) datasets: (\d+) to process \((\d+) whole sweeps \+ (\d+) wedges", out
    )
    assert summary, out
    assert [int(x) for x in summary.groups()] == [3, len(items), n_sweeps, n_wedges]
    assert "1 raster/still scans (hit maps, not processed)" in out
    # the per-dataset column adds up: each sweep once, plus the wedges cut from it
    wedges = {line.split()[0]: int(line.split()[5]) for line in out.splitlines()[1:4]}
    assert sum(wedges.values()) == n_wedges
    assert sorted(wedges.values()) == [0, 0, 2]

    assert (
        main(
            ["find", "--collection", str(root), "--sheet", str(sheet), "--settle-s", "0", "--json"]
        )
        == 0
    )
    doc = json.loads(capsys.readouterr().out)
    assert doc["to_process"] == {
        "sweeps": n_sweeps,
        "wedges": n_wedges,
        "to_process": len(items),
        "raster_scans": 1,
        "still_being_written": 0,
    }
