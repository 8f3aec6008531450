"""Files discovery rejects are part of the record (issue #12 item 8).

An Eiger master whose data file is missing, a series of random bytes named
``.cbf`` and a ``.cbf`` that is no image are rejected by discovery; each must
be in the catalog, summary.json, ``mxflow status`` and the report's index page
with its reason, and a run that rejected files exits 1 saying how many.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from images_fixtures import cbf_frame, cbf_sweep, eiger_master
from mxflow.catalog.db import Catalog
from mxflow.catalog.summary import summary_dict
from mxflow.discover import discover_collection

FAKE_PROCESS = "mxflow.schedule.fake:process_dataset"


def bad_tree(root: Path) -> dict[str, str]:
    """One good CBF sweep and the three bad inputs; returns {bad path: words of its reason}."""
    cbf_sweep(root / "good", "x", range(1, 6))
    master = eiger_master(root / "eiger", "e", write_data=False)
    (root / "random").mkdir(parents=True)
    rand = [root / "random" / f"r_{i:05d}.cbf" for i in (1, 2, 3)]
    for p in rand:
        p.write_bytes(os.urandom(400))
    (root / "cif").mkdir()
    cif = root / "cif" / "notes.cbf"
    cif.write_text("###CBF: VERSION 1.5\n# a CIF without an image\ndata_x\n_diffrn.id DS1\n")
    return {
        str(master): "missing external data file e_data_000001.h5",
        **{str(p): "not a CBF image" for p in rand},
        str(cif): "no binary data section",
    }


def _mxflow(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mxflow.cli", *args],
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_discovery_lists_every_rejected_file_and_only_those(tmp_path):
    root = tmp_path / "root"
    bad = bad_tree(root)
    # a frame that does not match its sweep is used (with a warning), not rejected
    cbf_sweep(root / "odd", "s", [1, 2, 3], start=0.0, width=1.0)
    cbf_frame(root / "odd" / "s_00004.cbf", start=50.0, width=1.0)
    coll = discover_collection(root, settle_s=0)
    assert sorted(d.name for d in coll.datasets) == ["good/x", "odd/s"]
    reasons = dict(coll.problems)
    assert sorted(reasons) == sorted(bad)
    for path, words in bad.items():
        assert words in reasons[path], (path, reasons[path])
    assert [p for p, _ in coll.warnings] == [str(root / "odd" / "s_00004.cbf")]


def test_zoo_root_files_that_are_not_images_are_not_rejected(tmp_path):
    root = tmp_path / "zoo"
    cbf_sweep(root / "CPS0001-01" / "data00", "multi_001", range(1, 4))
    (root / "samples.csv").write_text("pin,name\nCPS0001-01,lyso\n")
    (root / "README.txt").write_text("beamtime notes\n")
    (root / "stray_00001.cbf").write_text("not an image")
    coll = discover_collection(root, settle_s=0)
    assert coll.layout == "zoo" and len(coll.datasets) == 1
    assert [p for p, _ in coll.problems] == [str(root / "stray_00001.cbf")]


def test_catalog_keeps_the_rejected_files_of_the_latest_discovery(tmp_path):
    with Catalog(tmp_path) as cat:
        cat.record_rejected([("/d/a.cbf", "not a CBF image"), ("/d/b.h5", "missing data")], 1)
        first = {r["path"]: r for r in cat.rejected()}
        assert {p: r["reason"] for p, r in first.items()} == {
            "/d/a.cbf": "not a CBF image",
            "/d/b.h5": "missing data",
        }
        # the next discovery: b was fixed, c is new, a is still bad (first seen kept)
        cat.record_rejected([("/d/a.cbf", "truncated CBF"), ("/d/c.cbf", "not a CBF image")], 2)
        now = {r["path"]: r for r in cat.rejected()}
        assert sorted(now) == ["/d/a.cbf", "/d/c.cbf"]
        assert now["/d/a.cbf"]["reason"] == "truncated CBF"
        assert now["/d/a.cbf"]["first_seen"] == first["/d/a.cbf"]["first_seen"]
        assert now["/d/a.cbf"]["run_id"] == 2
        assert [r["path"] for r in summary_dict(cat)["rejected"]] == ["/d/a.cbf", "/d/c.cbf"]
        assert summary_dict(cat)["rejected"][0]["reason"] == "truncated CBF"


def test_catalog_from_before_the_rejected_table_reads_as_none_rejected(tmp_path):
    conn = sqlite3.connect(tmp_path / "mxflow.sqlite")
    conn.execute("CREATE TABLE datasets (key TEXT PRIMARY KEY, status TEXT)")
    conn.commit()
    conn.close()
    with Catalog(tmp_path, readonly=True) as cat:
        assert cat.rejected() == []


def test_run_records_rejected_files_everywhere_and_exits_1(tmp_path):
    root, out = tmp_path / "root", tmp_path / "out"
    bad = bad_tree(root)
    args = ["run", str(root), "--workdir", str(out), "--process-fn", FAKE_PROCESS]
    args += ["--settle", "0", "--no-merge", "--no-hitmap", "--no-progress", "--workers", "1"]
    proc = _mxflow(*args)
    assert proc.returncode == 1, proc.stderr
    assert "5 file(s) could not be used and were NOT processed" in proc.stderr
    # the good dataset was processed all the same
    with Catalog(out, readonly=True) as cat:
        assert cat.counts() == {"ok": 1}
        rows = {r["path"]: r["reason"] for r in cat.rejected()}
    assert sorted(rows) == sorted(bad)
    for path, words in bad.items():
        assert words in rows[path]
    summary = json.loads((out / "summary.json").read_text())
    assert {r["path"]: r["reason"] for r in summary["rejected"]} == rows
    assert [d["status"] for d in summary["datasets"]] == ["ok"]

    status = _mxflow("status", str(out))
    assert status.returncode == 0, status.stderr
    assert "5 files not used" in status.stdout
    for path, reason in rows.items():
        assert f"{path}: {reason}" in status.stdout
    only = _mxflow("status", str(out), "--status", "rejected")
    assert only.returncode == 0 and "good" not in only.stdout.replace(str(root), "")
    assert all(path in only.stdout for path in rows)

    html = (out / "report" / "index.html").read_text()
    assert "Files not used" in html
    for path in rows:
        assert path in html
    assert "not a CBF image" in html and "missing external data file" in html

    # the bad files removed: the next run rejects nothing, exits 0 and the record is clear
    for path in bad:
        Path(path).unlink()
    proc = _mxflow(*args)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rejected"] == []
    assert "Files not used" not in (out / "report" / "index.html").read_text()
    assert "not used" not in _mxflow("status", str(out)).stdout


def test_watch_records_rejected_files(tmp_path):
    from mxflow.schedule.collection import RunConfig
    from mxflow.schedule.watch import watch_collection

    root, out = tmp_path / "root", tmp_path / "out"
    bad = bad_tree(root)
    cfg = RunConfig(process_fn=FAKE_PROCESS, progress=False, settle_s=0, workers=1)
    watch_collection(root, out, cfg, interval=0, max_iterations=1, log=lambda m: None)
    with Catalog(out, readonly=True) as cat:
        assert sorted(r["path"] for r in cat.rejected()) == sorted(bad)
        assert cat.counts() == {"ok": 1}
    summary = json.loads((out / "summary.json").read_text())
    assert sorted(r["path"] for r in summary["rejected"]) == sorted(bad)
