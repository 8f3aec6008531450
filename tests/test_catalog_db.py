"""The SQLite catalog, the output-directory lock, summary.json and `mxflow status`."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from mxflow.catalog.db import Catalog
from mxflow.catalog.lock import OutputDirBusy, RunLock, lock_holder
from mxflow.catalog.summary import write_summary
from mxflow.cli import main
from mxflow.errors import BadInputError
from mxflow.model import Dataset, DatasetResult, MergingStats, ShellStats, StepRecord
from mxflow.schedule.fake import fake_sweep


def _dataset(name="x1", wedge=None) -> Dataset:
    return Dataset(
        name, fake_sweep("/data/CPS1-01/data00/x1_#####.cbf", 1, 100), "lyso", "single", wedge
    )


def test_lock_refuses_second_holder_and_names_pid(tmp_path):
    first = RunLock(tmp_path).acquire()
    assert lock_holder(tmp_path).startswith(f"PID {os.getpid()}")
    with pytest.raises(OutputDirBusy, match=rf"in use by another mxflow run \(PID {os.getpid()}"):
        RunLock(tmp_path).acquire()
    first.release()
    assert lock_holder(tmp_path) is None
    with RunLock(tmp_path):  # free again
        pass


def test_lock_held_by_another_process(tmp_path):
    code = (
        "import sys, time; from mxflow.catalog.lock import RunLock; "
        f"RunLock({str(tmp_path)!r}).acquire(); print('locked', flush=True); time.sleep(30)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(OutputDirBusy, match=f"PID {proc.pid}"):
            RunLock(tmp_path).acquire()
    finally:
        proc.kill()
        proc.wait()
    RunLock(tmp_path).acquire().release()  # the kernel dropped the dead holder's lock


def test_catalog_records_results_and_resets_interrupted(tmp_path):
    with Catalog(tmp_path) as cat:
        assert cat.add_dataset("proc/a", _dataset("a"), "sweep") is True
        assert cat.add_dataset("proc/a", _dataset("a"), "sweep") is False
        cat.add_dataset("proc_30deg/a_1-60", _dataset("a_1-60", (1, 60)), "wedge", "proc/a")
        run = cat.start_run("run test", os.getpid(), "host")
        cat.mark_running("proc/a", run)
        cat.mark_running("proc_30deg/a_1-60", run)
        result = DatasetResult(
            "a", "/data/x", status="ok", space_group="P 1", unit_cell=[10, 11, 12, 90, 90, 90],
            d_min=2.0, stats=MergingStats.one_shell(ShellStats(50.0, 2.0, completeness=0.93)), indexed_fraction=0.8,
            steps=[StepRecord("dials.import", ["dials.import"], "import.log", 0, 1.5)],
        )  # fmt: skip
        cat.record_result("proc/a", result, run)
        assert cat.reset_interrupted() == 1  # the wedge was left running
        row = cat.get("proc/a")
        assert (row["status"], row["completeness"], row["attempts"]) == ("ok", 0.93, 1)
        wedge = cat.get("proc_30deg/a_1-60")
        assert wedge["status"] == "pending" and "interrupted" in wedge["reason"]
        assert wedge["total_rotation"] == pytest.approx(6.0)
        assert [r["key"] for r in cat.conn.execute("SELECT key FROM wedges")] == [
            "proc_30deg/a_1-60"
        ]
        assert cat.steps("proc/a")[0]["name"] == "dials.import"
        assert cat.result("proc/a").space_group == "P 1"
        # re-registering never touches the state
        cat.add_dataset("proc/a", _dataset("a"), "sweep")
        assert cat.status_of("proc/a") == "ok"
        cat.finish_run(run, "ok")
        assert cat.runs()[0]["n_ok"] == 1 and cat.runs()[0]["n_pending"] == 1
        write_summary(tmp_path, cat)
    summary = json.loads((tmp_path / "summary.json").read_text())
    by_key = {d["key"]: d for d in summary["datasets"]}
    assert by_key["proc/a"]["unit_cell"] == [10, 11, 12, 90, 90, 90]
    assert by_key["proc_30deg/a_1-60"]["wedge"] == "1-60"
    assert by_key["proc_30deg/a_1-60"]["status"] == "pending"
    assert summary["counts"] == {"ok": 1, "pending": 1}


def test_failed_transaction_leaves_no_partial_row(tmp_path):
    with Catalog(tmp_path) as cat:
        cat.add_dataset("proc/a", _dataset("a"), "sweep")
        with pytest.raises(RuntimeError), cat.transaction() as c:
            c.execute("UPDATE datasets SET status='ok' WHERE key='proc/a'")
            raise RuntimeError("crash between statements")
        assert cat.status_of("proc/a") == "pending"


def test_status_command_prints_table(tmp_path, capsys):
    with Catalog(tmp_path) as cat:
        cat.add_dataset("proc/a", _dataset("a"), "sweep")
        cat.add_dataset("proc/b", _dataset("b"), "sweep")
        cat.record_result(
            "proc/a",
            DatasetResult("a", "/x", "ok", space_group="P 43 21 2", d_min=1.85,
                          unit_cell=[78.1, 78.1, 37.2, 90, 90, 90],
                          stats=MergingStats.one_shell(ShellStats(50.0, 2.0, completeness=0.951)), indexed_fraction=0.87),
        )  # fmt: skip
        cat.record_result("proc/b", DatasetResult("b", "/x", "failed", reason="no lattice found"))
    assert main(["status", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    lines = text.splitlines()
    assert lines[0].split()[:4] == ["dataset", "sample", "λ/Å", "φ/°"]
    row_a = next(line for line in lines if line.startswith("proc/a"))
    for cell in (
        "lyso",
        "1.0000",
        "10.0",
        "0.10",
        "87",
        "P 43 21 2",
        "78.1 78.1 37.2",
        "1.85",
        "95.1",
        "ok",
    ):
        assert cell in row_a
    assert "failed: no lattice found" in next(line for line in lines if line.startswith("proc/b"))
    assert "1 failed, 1 ok" in text
    assert main(["status", str(tmp_path), "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["datasets"]) == 2


def test_status_without_catalog_is_a_clear_error(tmp_path):
    with pytest.raises(BadInputError, match="no mxflow catalog"):
        Catalog(tmp_path, readonly=True)
    assert main(["status", str(tmp_path)]) == 1
