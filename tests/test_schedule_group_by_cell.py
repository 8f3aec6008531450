"""Pins of one crystal form without a sample sheet: the run's end says they were not merged
and how to merge them; ``mxflow run --group-by-cell`` merges them as one sample.

The grouping itself is a pure function (cells in, named groups out); the wiring is
tested on a hand-made catalog with a fake merge, and end to end on fake runs (the
fake processing writes no integrated files, so the real merge of a group fails for
lack of usable data: what is checked is that it was run on the whole group).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mxflow.catalog.db import Catalog
from mxflow.catalog.status_cli import format_sample_group
from mxflow.catalog.summary import summary_dict
from mxflow.model import Dataset, DatasetResult, MergeSummary, ProcessingOptions
from mxflow.schedule import fake, post
from mxflow.schedule.collection import RunConfig, run_collection

FAKE_PROCESS = "mxflow.schedule.fake:process_dataset"
FAKE_DISCOVER = "mxflow.schedule.fake:discover_collection"
# fake.process_dataset's result
FAKE_CELL, FAKE_SG = (78.0, 78.0, 37.0, 90.0, 90.0, 90.0), "P 43 21 2"

ORTHO = (54.0, 62.0, 71.0, 90.0, 90.0, 90.0)
MONO = (40.0, 50.0, 60.0, 90.0, 100.0, 90.0)


# -- the pure function ------------------------------------------------------------


def test_compatible_cells_form_one_group_whatever_their_setting():
    """16 cells of one orthorhombic form (a few tenths of an Å apart, some indexed with
    the axes in another order) are one group, named cell1, with the common space group
    and the median cell."""
    cells = {}
    for i in range(16):
        a, b, c = ORTHO[0] + 0.05 * i, ORTHO[1] - 0.04 * i, ORTHO[2] + 0.03 * i
        cell = (a, b, c, 90, 90, 90) if i % 3 else (b, c, a, 90, 90, 90)  # another setting
        cells[f"proc/pin{i:02d}/d"] = (cell, "P 2 2 2" if i != 5 else "P 21 21 21")
    groups = post.group_by_cell(cells)
    assert len(groups) == 1
    (g,) = groups
    assert g.name == "cell1" and g.members == tuple(sorted(cells))
    assert g.space_group == "P 2 2 2"  # the most common
    assert len(g.cell) == 6 and g.cell[3:] == (90.0, 90.0, 90.0)
    assert g.cell_words().startswith("P 2 2 2, ")


def test_centred_and_primitive_settings_of_one_lattice_are_compatible():
    """A C-centred cell and the primitive cell of the same lattice (as a P 1 indexing
    would give it) reduce to one Niggli cell; reduced as primitive they would not."""
    from mxflow.cluster.cells import niggli_cell

    primitive = niggli_cell(MONO, "C")
    cells = {"a": (MONO, "C 1 2 1"), "b": (primitive, "P 1")}
    (g,) = post.group_by_cell(cells)
    assert g.members == ("a", "b")
    # the centring matters: the same cell called primitive is another lattice
    assert post.group_by_cell({"a": (MONO, "P 1 2 1"), "b": (primitive, "P 1")}) == []


def test_incompatible_cells_make_groups_by_size_and_singletons_keep_apart():
    cells = {f"ortho{i}": (ORTHO, "P 2 2 2") for i in range(3)}
    cells |= {f"mono{i}": (MONO, "C 1 2 1") for i in range(5)}
    cells["odd"] = ((100.0, 100.0, 100.0, 90.0, 90.0, 90.0), "P 2 3")
    groups = post.group_by_cell(cells)
    assert [(g.name, len(g.members)) for g in groups] == [("cell1", 5), ("cell2", 3)]
    assert set(groups[0].members) == {f"mono{i}" for i in range(5)}
    assert groups[0].space_group == "C 1 2 1" and groups[0].cell == MONO
    # names already used by samples are skipped
    assert [g.name for g in post.group_by_cell(cells, taken={"cell1"})] == ["cell2", "cell3"]
    # the merge's tolerances decide: 12 % longer edges are another cell, 8 % the same
    longer = {"x": (ORTHO, "P 2 2 2"), "y": (tuple(1.12 * v for v in ORTHO[:3]) + ORTHO[3:], None)}
    assert post.group_by_cell(longer) == []
    near = {"x": (ORTHO, "P 2 2 2"), "y": (tuple(1.08 * v for v in ORTHO[:3]) + ORTHO[3:], None)}
    assert len(post.group_by_cell(near)) == 1
    assert post.group_by_cell(near, rel_length=0.05) == []


def test_a_group_within_one_sample_is_no_group():
    """With samples given, a group must join two samples or more."""
    cells = {
        "p1/a": (ORTHO, None),
        "p1/b": (ORTHO, None),
        "p2/a": (MONO, None),
        "p3/a": (MONO, None),
    }
    samples = {"p1/a": "p1", "p1/b": "p1", "p2/a": "p2", "p3/a": "p3"}
    (g,) = post.group_by_cell(cells, samples=samples)
    assert g.name == "cell1" and g.members == ("p2/a", "p3/a") and g.samples == ("p2", "p3")


def test_lattice_centring_and_combined_settings():
    assert [post.lattice_centring(s) for s in ("C 1 2 1", "I 2 3", "R 3 :H", "R 3 :R")] == [
        "C",
        "I",
        "R",
        "P",
    ]
    assert post.lattice_centring(None) == post.lattice_centring("no such group") == "P"
    free = post.SampleSettings(free_flags="/f.mtz")
    assert post.combine_settings([free, free, None]) == free
    both = post.combine_settings([free, post.SampleSettings(free_flags="/g.mtz", anomalous=True)])
    assert both == post.SampleSettings(anomalous=True)  # flag files disagree: none


# -- the wiring, on a hand-made catalog ------------------------------------------------


def _add(cat: Catalog, key: str, sample: str, cell, sg="P 2 2 2", kind="sweep", parent=None):
    name = key.split("/", 1)[1]
    ds = Dataset(name, fake.fake_sweep(f"/data/{name}_#####.cbf"), sample, "single")
    cat.add_dataset(key, ds, kind, parent)
    ok = cell is not None
    r = DatasetResult(name, name, "ok" if ok else "failed", sample=sample, space_group=sg)
    r.unit_cell = list(cell) if ok else None
    r.integrated_expt, r.integrated_refl = f"{key}/i.expt", f"{key}/i.refl"
    cat.record_result(key, r)


def _catalog(out: Path) -> Catalog:
    """Pins A1-A3 of one cell (A2's helical sweep cut in two wedges), B1-B2 of another,
    C1 alone, S1 (sample 'lyso' from the sheet) of A's cell, and F1, whose sweep failed."""
    cat = Catalog(out)
    for pin in ("A1", "A2", "A3"):
        _add(cat, f"proc/{pin}/x", pin, ORTHO)
    for w in ("1-300", "301-600"):
        _add(cat, f"proc_30deg/A2/x_{w}", "A2", ORTHO, kind="wedge", parent="proc/A2/x")
    for pin in ("B1", "B2"):
        _add(cat, f"proc/{pin}/x", pin, MONO, "C 1 2 1")
    _add(cat, "proc/C1/x", "C1", (100.0, 100.0, 100.0, 90.0, 90.0, 90.0), "P 2 3")
    _add(cat, "proc/S1/x", "lyso", ORTHO)
    _add(cat, "proc/F1/x", "F1", None)
    return cat


def _fake_merge(calls: list):
    def merge(inputs, workdir, options):
        calls.append((options.sample, sorted(i.name for i in inputs), options.free_flags))
        return MergeSummary(options.sample, notes=["fake: nothing merged"])

    return merge


def test_group_by_cell_merges_each_group_of_pins_as_one_sample(tmp_path):
    """Two incompatible cells → two samples; the sheet's sample keeps its own; a pin
    matching no other keeps its own; wedges follow their sweep; the grouping is in the
    catalog, summary.json and mxflow status; without the option it is undone."""
    out = tmp_path / "out"
    calls: list = []
    logged: list[str] = []
    settings = {p: post.SampleSettings(free_flags="/f.mtz") for p in ("A1", "A2", "A3", "B1")}
    with _catalog(out) as cat:
        post.merge_samples(
            out, cat, ProcessingOptions(), logged.append, settings, _fake_merge(calls),
            group_by_cell=True, given={"lyso"},
        )  # fmt: skip
        groups = {g["name"]: g for g in cat.sample_groups()}
        merges = {m.name: m for m in cat.merges()}
        summary = summary_dict(cat)
        hints = post.merge_hints(cat, {"lyso"})
    assert sorted(calls) == [
        ("cell1", ["A1/x", "A2/x", "A3/x"], "/f.mtz"),
        ("cell1", ["A1/x", "A2/x_1-300", "A2/x_301-600", "A3/x"], "/f.mtz"),  # 30° route
        ("cell2", ["B1/x", "B2/x"], "/f.mtz"),  # B2 gives none: B1's, as within a sample
    ]
    assert set(groups) == {"cell1", "cell2"}
    assert groups["cell1"]["datasets"] == [
        "proc/A1/x", "proc/A2/x", "proc/A3/x", "proc_30deg/A2/x_1-300", "proc_30deg/A2/x_301-600",
    ]  # fmt: skip
    assert groups["cell1"]["samples"] == ["A1", "A2", "A3"] and groups["cell1"]["by"] == "cell"
    assert groups["cell2"]["space_group"] == "C 1 2 1" and groups["cell2"]["cell"] == list(MONO)
    assert merges["proc/cell1"].inputs == ["proc/A1/x", "proc/A2/x", "proc/A3/x"]
    assert merges["proc/lyso"].status == "skipped" and merges["proc/C1"].status == "skipped"
    assert "proc/A1" not in merges and "proc/F1" not in merges
    assert any("--group-by-cell: sample cell1: 5 dataset(s) of 3 sample(s) (A1 … A3)" in m
               for m in logged)  # fmt: skip
    assert hints == []  # C1 and lyso are apart for good reasons: no hint
    by_key = {d["key"]: d for d in summary["datasets"]}
    assert by_key["proc/A2/x"]["sample"] == "cell1" and by_key["proc/A2/x"]["grouped_from"] == "A2"
    assert by_key["proc_30deg/A2/x_1-300"]["sample"] == "cell1"
    assert by_key["proc/S1/x"]["sample"] == "lyso" and "grouped_from" not in by_key["proc/S1/x"]
    assert by_key["proc/F1/x"]["sample"] == "F1"
    assert [g["name"] for g in summary["sample_groups"]] == ["cell1", "cell2"]
    assert format_sample_group(summary["sample_groups"][1]) == (
        "sample cell2 (grouped by cell): 2 dataset(s) of 2 sample(s) (B1, B2), C 1 2 1, "
        "40.0 50.0 60.0 90.0 100.0 90.0"
    )

    # without --group-by-cell the pins are samples again, and the hint says how to join them
    logged.clear()
    calls.clear()
    with Catalog(out) as cat:
        post.merge_samples(
            out, cat, ProcessingOptions(), logged.append, merge_fn=_fake_merge(calls)
        )
        assert cat.sample_groups() == [] and cat.grouped_samples() == {}
        hints = post.merge_hints(cat, {"lyso"})
    assert any("grouped by cell in an earlier run are apart again" in m for m in logged)
    assert ("A2", ["A2/x_1-300", "A2/x_301-600"], None) in calls  # the pin's own 30° merge
    assert len(hints) == 2  # A2 has one whole dataset too
    assert hints[0].startswith("mxflow: 3 samples (A1 … A3) have one dataset each with "
                               "compatible cells (P 2 2 2, 54.0 62.0 71.0 90.0 90.0 90.0): ")  # fmt: skip
    assert hints[1].startswith("mxflow: 2 samples (B1 and B2) have one dataset each")
    assert "these were not merged" not in hints[0]  # only the fake A2 30° merge ran (failed)
    assert "nothing was merged; to merge them as one sample rerun with --group-by-cell" in hints[0]


def test_given_samples_are_the_sheets_names_and_the_default(tmp_path):
    sheet = tmp_path / "sheet.csv"
    sheet.write_text("puck,pin,name\nCPS0001,1,lyso\nCPS0001,2,thau\n")
    assert post.given_samples(sheet, None) == {"lyso", "thau"}
    assert post.given_samples(None, "all") == {"all"}
    assert post.given_samples(None, None) == set()


# -- end to end, fake runs -----------------------------------------------------------


def make_pins(root: Path, n: int = 16, sample_of=lambda pin: pin) -> list[str]:
    """``n`` pins with one single-crystal sweep each, sample = the pin (as without a sheet)."""
    pins = []
    for i in range(1, n + 1):
        pin = f"CPS0001-{i:02d}"
        sweep = fake.fake_sweep(f"{root}/{pin}/data00/single_#####.cbf", 1, 100)
        fake.write_fake_dataset(root, Dataset(f"{pin}/data00/single", sweep, sample_of(pin)))
        pins.append(pin)
    return pins


def config(**kw) -> RunConfig:
    return RunConfig(
        process_fn=FAKE_PROCESS, discover_fn=FAKE_DISCOVER, progress=False, settle_s=0,
        workers=2, hitmap=False, **kw,
    )  # fmt: skip


@pytest.fixture(autouse=True)
def _fast_fakes(monkeypatch):
    monkeypatch.setenv("MXFLOW_FAKE_SLEEP", "0")


def test_run_of_16_single_pins_ends_saying_how_to_merge_them(tmp_path):
    root, out = tmp_path / "root", tmp_path / "out"
    make_pins(root)
    messages: list[str] = []
    outcome = run_collection(root, out, config(), log=messages.append)
    assert outcome.counts == {"ok": 16} and not outcome.failed_merges
    done = next(i for i, m in enumerate(messages) if m.startswith("mxflow: done in"))
    assert messages[done + 1 :] == [
        "mxflow: 16 samples (CPS0001-01 … CPS0001-16) have one dataset each with compatible "
        "cells (P 43 21 2, 78.0 78.0 37.0 90.0 90.0 90.0): nothing was merged; to merge them "
        "as one sample rerun with --group-by-cell (or --sample NAME for every pin), or give a "
        "sample sheet (README § Sample sheet)"
    ]
    # --group-by-cell on the same OUT: nothing is processed again, the 16 are one sample; the
    # fakes have no integrated files, so the merge fails (exit status 1), but on all 16
    proc = subprocess.run(
        [sys.executable, "-m", "mxflow.cli", "run", str(root), "--workdir", str(out),
         "--process-fn", FAKE_PROCESS, "--discover-fn", FAKE_DISCOVER, "--settle", "0",
         "--workers", "1", "--no-progress", "--no-hitmap",
         "--group-by-cell"],
        capture_output=True, text=True, timeout=300, env={**os.environ, "MXFLOW_FAKE_SLEEP": "0"},
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    err = proc.stderr
    assert "mxflow: 0 to process, 16 already done" in err
    assert "mxflow: --group-by-cell: sample cell1: 16 dataset(s) of 16 sample(s)" in err
    assert "mxflow: merge 1/1 proc/cell1: merging 16 dataset(s)" in err
    assert "have one dataset each" not in err  # nothing left apart: no hint
    summary = json.loads((out / "summary.json").read_text())
    assert {d["sample"] for d in summary["datasets"]} == {"cell1"}
    (merge,) = summary["merges"]  # the 16 skipped per-pin merges are forgotten
    assert merge["name"] == "proc/cell1" and len(merge["inputs"]) == 16
    assert merge["status"] == "failed" and merge["reason"] == "no usable datasets"
    status = subprocess.run(
        [sys.executable, "-m", "mxflow.cli", "status", str(out)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert status.returncode == 0, status.stderr
    assert "sample cell1 (grouped by cell): 16 dataset(s) of 16 sample(s)" in status.stdout
    assert "CPS0001-01 … CPS0001-16), P 43 21 2, 78.0 78.0 37.0 90.0 90.0 90.0" in status.stdout


def test_sheet_samples_are_neither_grouped_nor_hinted(tmp_path):
    """Pins the sheet names keep their samples (the fake discovery reads no sheet: the
    datasets carry the names, the sheet tells they were given)."""
    root, out = tmp_path / "root", tmp_path / "out"
    names = {"CPS0001-01": "lyso_a", "CPS0001-02": "lyso_b"}
    make_pins(root, 4, sample_of=lambda pin: names.get(pin, pin))
    sheet = tmp_path / "sheet.csv"
    sheet.write_text("pin,name\nCPS0001-01,lyso_a\nCPS0001-02,lyso_b\n")
    messages: list[str] = []
    run_collection(
        root, out, config(sample_sheet=str(sheet), group_by_cell=True), log=messages.append
    )
    with Catalog(out, readonly=True) as cat:
        (group,) = cat.sample_groups()
        merges = {m.name: m.inputs for m in cat.merges()}
    assert group["name"] == "cell1" and group["samples"] == ["CPS0001-03", "CPS0001-04"]
    assert merges["proc/cell1"] == [
        "proc/CPS0001-03/data00/single",
        "proc/CPS0001-04/data00/single",
    ]
    assert merges["proc/lyso_a"] == ["proc/CPS0001-01/data00/single"]  # skipped: 1 dataset
    assert not any("have one dataset each" in m for m in messages)
