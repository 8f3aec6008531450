"""Trust under misuse (#12 items 7 and 13): every writing command takes the OUT lock, and
the runs table stays true after signals and kills.

Item 7: `process`, `merge`, `report`, `hitmap`, `run` and `watch` refuse an output
directory another mxflow process holds (one line naming its PID, exit 1, nothing
written); `process` refuses a run's OUT and `run` a process's OUT (either would replace
the other's summary.json).  Item 13: a run stopped by SIGTERM with datasets pending is
recorded "interrupted" and exits nonzero; a run killed with SIGKILL is shown
"interrupted" by `mxflow status`, and the next run records it so; a signal during the
cluster's start-up stops at once.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import pytest

from mxflow.catalog.db import Catalog
from mxflow.catalog.lock import RunLock, run_is_gone
from mxflow.catalog.summary import write_summary
from mxflow.cli import main
from mxflow.model import Dataset
from mxflow.schedule import fake
from mxflow.schedule.collection import RunConfig, run_collection
from run_fixtures import FAKE_DISCOVER, FAKE_PROCESS, fake_collection, run_cmd


def _tree(top: Path) -> dict[str, bytes]:
    """Every file under ``top`` (relative path → content)."""
    return {
        p.relative_to(top).as_posix(): p.read_bytes() for p in sorted(top.rglob("*")) if p.is_file()
    }


@pytest.fixture
def busy_out(tmp_path):
    """OUT with a summary.json, locked by this test process (as a live run would be)."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "summary.json").write_text('{"datasets": [{"name": "the run\'s dataset"}]}\n')
    with RunLock(out):
        yield out


def _refused(
    capsys, argv: list[str], out: Path, before: dict[str, bytes], one_line: bool = True
) -> None:
    assert main(argv) == 1
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 or not one_line, err  # run and watch say what they found first
    assert f"{out} is in use by another mxflow run (PID {os.getpid()}" in lines[-1]
    assert _tree(out) == before  # summary.json unchanged, nothing added


# -- item 7: one writer per OUT ------------------------------------------------


def test_process_refuses_an_out_that_is_in_use(busy_out, tmp_path, capsys):
    raw = tmp_path / "raw"
    raw.mkdir()
    before = _tree(busy_out)
    _refused(capsys, ["process", str(raw), "--workdir", str(busy_out)], busy_out, before)
    # also a folder inside it (OUT/proc of a live run)
    inside = busy_out / "proc"
    assert main(["process", str(raw), "--workdir", str(inside), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert f"inside {busy_out}, which is in use by another mxflow run (PID {os.getpid()}" in err
    assert not inside.exists()


def test_merge_report_and_hitmap_refuse_an_out_that_is_in_use(busy_out, tmp_path, capsys):
    raw = tmp_path / "raw"
    raw.mkdir()
    before = _tree(busy_out)
    _refused(capsys, ["merge", str(busy_out), "--workdir", str(busy_out)], busy_out, before)
    _refused(capsys, ["report", str(busy_out)], busy_out, before)
    _refused(capsys, ["hitmap", str(raw), "--workdir", str(busy_out)], busy_out, before)


def test_run_and_watch_refuse_an_out_that_is_in_use(busy_out, tmp_path, capsys):
    root = tmp_path / "root"
    fake_collection(root, 1)
    before = _tree(busy_out)
    fakes = ["--process-fn", FAKE_PROCESS, "--discover-fn", FAKE_DISCOVER, "--settle", "0"]
    run = ["run", str(root), "--workdir", str(busy_out), *fakes]
    _refused(capsys, run, busy_out, before, one_line=False)
    watch = ["watch", str(root), "--workdir", str(busy_out), "--once", *fakes]
    _refused(capsys, watch, busy_out, before, one_line=False)


def test_report_of_a_missing_out_creates_nothing(tmp_path, capsys):
    missing = tmp_path / "nothing_here"
    assert main(["report", str(missing)]) == 1
    assert "nothing_here" in capsys.readouterr().err
    assert not missing.exists()


def test_process_refuses_the_out_of_a_run(tmp_path, capsys):
    """`mxflow process` would replace summary.json, which `run` writes from its catalog."""
    out, raw = tmp_path / "out", tmp_path / "raw"
    raw.mkdir()
    with Catalog(out) as cat:
        cat.add_dataset("proc/a", Dataset("a", fake.fake_sweep("/x/a_#####.cbf")), "sweep")
        write_summary(out, cat)
    before = _tree(out)
    assert main(["process", str(raw), "--workdir", str(out), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert f"{out}: the output directory of 'mxflow run'" in err
    assert _tree(out) == before  # refused before anything was written, the lock file too
    assert json.loads((out / "summary.json").read_text())["datasets"][0]["key"] == "proc/a"


def test_run_refuses_the_out_of_process(tmp_path, capsys):
    root, out = tmp_path / "root", tmp_path / "out"
    fake_collection(root, 1)
    out.mkdir()
    (out / "summary.json").write_text('{"datasets": [], "options": {}, "wall_s": 1.0}\n')
    before = _tree(out)
    argv = ["run", str(root), "--workdir", str(out), "--process-fn", FAKE_PROCESS,
            "--discover-fn", FAKE_DISCOVER, "--settle", "0", "--no-progress"]  # fmt: skip
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "summary.json but no mxflow catalog" in err
    assert not (out / "mxflow.sqlite").exists() and not (out / "proc").exists()
    assert (out / "summary.json").read_bytes() == before["summary.json"]


# -- item 13: run records after signals and kills -------------------------------


def _wait_for_running(out: Path, proc: subprocess.Popen, n: int = 1) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[1]
        if (out / "mxflow.sqlite").exists():
            # (the tables may not be made yet)
            with Catalog(out, readonly=True) as cat, contextlib.suppress(sqlite3.OperationalError):
                if len(cat.rows("running")) >= n:
                    return
        time.sleep(0.1)
    pytest.fail("no dataset started running")


def _status_last_run(capsys, out: Path) -> str:
    assert main(["status", str(out)]) == 0
    text = capsys.readouterr().out
    return next(line for line in text.splitlines() if line.startswith("last run"))


def test_sigkill_run_is_shown_interrupted_and_recorded_so_by_the_next(tmp_path, capsys):
    root, out = tmp_path / "root", tmp_path / "out"
    fake_collection(root, 3)
    proc = subprocess.Popen(
        run_cmd(root, out, "--workers", "1"),
        env=dict(os.environ, MXFLOW_FAKE_SLEEP="60"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        _wait_for_running(out, proc)
        killed_pid = proc.pid
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the run and its Dask workers
        proc.communicate(timeout=30)
    with Catalog(out, readonly=True) as cat:
        (row,) = cat.runs()
    assert row["status"] == "running" and row["pid"] == killed_pid  # as the kill left it
    assert run_is_gone(row, out)
    line = _status_last_run(capsys, out)
    assert "interrupted" in line and f"PID {killed_pid}" in line, line
    assert "running" not in line.replace("interrupted", "")

    rerun = subprocess.run(
        run_cmd(root, out, "--workers", "1"),
        env=dict(os.environ, MXFLOW_FAKE_SLEEP="0.05"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert rerun.returncode == 0, rerun.stderr
    assert f"PID {killed_pid}" in rerun.stderr and "recorded as interrupted" in rerun.stderr
    with Catalog(out, readonly=True) as cat:
        first, second = cat.runs()
    assert first["status"] == "interrupted" and "killed" in first["note"]
    assert second["status"] == "ok"
    assert _status_last_run(capsys, out).endswith(", ok")


def test_sigterm_with_datasets_pending_is_recorded_interrupted_and_exits_nonzero(tmp_path, capsys):
    root, out = tmp_path / "root", tmp_path / "out"
    fake_collection(root, 5)
    proc = subprocess.Popen(
        run_cmd(root, out, "--workers", "1"),
        env=dict(os.environ, MXFLOW_FAKE_SLEEP="1.0"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        _wait_for_running(out, proc)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode not in (0, None) and proc.returncode > 0, err
    with Catalog(out, readonly=True) as cat:
        (run,) = cat.runs()
        counts = cat.counts()
    assert counts.get("pending", 0) >= 3 and "running" not in counts, counts
    assert run["status"] == "interrupted", run
    assert "SIGTERM" in run["note"] and "not processed" in run["note"]
    assert run["finished"] is not None
    line = _status_last_run(capsys, out)
    assert line.endswith(f", interrupted ({run['note']})"), line


def test_sigterm_during_cluster_start_up_stops_at_once(tmp_path, monkeypatch):
    """A signal while the cluster starts (many workers, a batch queue) ends the run at
    once, recorded as interrupted, instead of after the start-up."""
    import mxflow.schedule.collection as collection

    root, out = tmp_path / "root", tmp_path / "out"
    fake_collection(root, 2)

    def slow_start(*args, **kwargs):
        time.sleep(30)
        raise AssertionError("start-up was not interrupted")

    monkeypatch.setattr(collection, "start_cluster", slow_start)
    config = RunConfig(process_fn=FAKE_PROCESS, discover_fn=FAKE_DISCOVER, settle_s=0)
    config.progress, config.merge, config.hitmap = False, False, False
    timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGTERM))
    t0 = time.monotonic()
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            run_collection(root, out, config, log=lambda m: None)
    finally:
        timer.cancel()
    assert time.monotonic() - t0 < 10
    with Catalog(out, readonly=True) as cat:
        (run,) = cat.runs()
    assert run["status"] == "interrupted" and "SIGTERM" in run["note"]
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # the handler is put back


def test_stale_running_run_is_told_by_its_dead_pid_or_free_lock(tmp_path):
    host = socket.gethostname()
    dead = subprocess.Popen(["true"])
    dead.wait()
    with Catalog(tmp_path) as cat:
        cat.start_run("run /gone", dead.pid, host)
        cat.start_run("run /alive-elsewhere", os.getpid(), "another-host")
        cat.start_run("run /me", os.getpid(), host)
        gone, elsewhere, me = cat.runs()
    assert run_is_gone(gone, tmp_path)  # its PID is dead
    assert not run_is_gone(elsewhere, tmp_path)  # another machine, lock free: cannot tell
    assert run_is_gone(me, tmp_path)  # alive, but does not hold the lock: not a run of OUT
    with RunLock(tmp_path):
        assert not run_is_gone(me, tmp_path)  # it holds OUT's lock: live
        assert run_is_gone(gone, tmp_path)
        assert run_is_gone(elsewhere, tmp_path)  # someone else holds the lock
        with Catalog(tmp_path) as cat:
            fixed = cat.close_stale_runs(lambda r: r["id"] != me["id"])
            assert [r["id"] for r in fixed] == [gone["id"], elsewhere["id"]]
            statuses = [r["status"] for r in cat.runs()]
    assert statuses == ["interrupted", "interrupted", "running"]
