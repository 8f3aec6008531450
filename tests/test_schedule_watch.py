"""mxflow watch: datasets still being written are processed on a later poll; clean stop."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from mxflow.catalog.db import Catalog
from mxflow.model import Dataset
from mxflow.schedule import fake
from mxflow.schedule.collection import RunConfig
from mxflow.schedule.watch import watch_collection

FAKE_PROCESS = "mxflow.schedule.fake:process_dataset"
FAKE_DISCOVER = "mxflow.schedule.fake:discover_collection"


def _fake_dataset(root: Path, name: str, writing: bool = False) -> Dataset:
    ds = Dataset(name, fake.fake_sweep(f"{root}/CPS0001-01/{name}/x_#####.cbf"), "s", "multi")
    path = fake.write_fake_dataset(root, ds)
    if writing:
        path.with_name(f"{name}.writing").write_text("")
    return ds


def test_dataset_being_written_is_processed_on_a_later_poll(tmp_path):
    root, out = tmp_path / "root", tmp_path / "out"
    _fake_dataset(root, "done")
    _fake_dataset(root, "growing", writing=True)
    marker = root / "CPS0001-01" / "growing" / "growing.writing"
    cfg = RunConfig(process_fn=FAKE_PROCESS, discover_fn=FAKE_DISCOVER, progress=False, workers=2)
    messages: list[str] = []

    def log(message: str) -> None:
        messages.append(message)
        if "1 still being written" in message and marker.exists():
            threading.Timer(1.0, marker.unlink).start()  # the detector finishes writing

    outcome = watch_collection(root, out, cfg, interval=0.4, max_iterations=8, log=log)
    assert outcome.counts == {"ok": 2} and not outcome.stopped
    with Catalog(out, readonly=True) as cat:
        done = cat.get("proc/CPS0001-01/done/done")
        growing = cat.get("proc/CPS0001-01/growing/growing")
    # the growing one was first seen only after it was complete, a few polls later
    assert growing["first_seen"] - done["first_seen"] > 0.8
    assert growing["attempts"] == 1
    assert any("1 still being written" in m for m in messages)


def test_watch_with_real_discovery_waits_for_settled_files(tmp_path):
    """Simulated ZOO frames: a sweep whose files are fresh waits for the settle time."""
    from mxflow.simulate import SimulationConfig, simulate

    root, out = tmp_path / "zoo", tmp_path / "out"
    sim = simulate(
        root,
        SimulationConfig(layout="zoo", zoo_mode="multi", n_crystals=2, frames=3,
                         detector_size=(120, 128), seed=3),
    )  # fmt: skip
    old = time.time() - 600
    fresh_template = sim.sweeps[1].template
    for s in sim.sweeps:
        for i in range(s.first, s.last + 1):
            p = s.frame_path(i)
            t = time.time() if s.template == fresh_template else old
            os.utime(p, (t, t))
    cfg = RunConfig(
        process_fn=FAKE_PROCESS, progress=False, workers=2, settle_s=5.0, wedge_deg=30.0
    )
    outcome = watch_collection(root, out, cfg, interval=0.5, max_iterations=14, log=lambda m: None)
    assert outcome.counts == {"ok": 2}
    with Catalog(out, readonly=True) as cat:
        rows = {r["name"]: r for r in cat.rows()}
    first, second = rows["CPS0001-01/data00/multi_01"], rows["CPS0001-01/data00/multi_02"]
    # the fresh sweep was taken only once its files had been quiet for the settle time
    assert second["first_seen"] - first["first_seen"] > 1.5
    assert second["first_seen"] - os.stat(sim.sweeps[1].frame_path(1)).st_mtime >= 5.0
    assert second["key"] == "proc/CPS0001-01/data00/multi_02"
    assert second["started"] - second["first_seen"] < 1.0


def test_sigterm_finishes_running_datasets_and_exits(tmp_path):
    root, out = tmp_path / "root", tmp_path / "out"
    for i in range(6):
        _fake_dataset(root, f"d{i}")
    cmd = [sys.executable, "-m", "mxflow.cli", "watch", str(root), "--workdir", str(out),
           "--process-fn", FAKE_PROCESS, "--discover-fn", FAKE_DISCOVER, "--settle", "0",
           "--workers", "2", "--interval", "0.5", "--no-progress"]  # fmt: skip
    env = dict(os.environ, MXFLOW_FAKE_SLEEP="1.5")
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        running: list[dict] = []
        while time.monotonic() < deadline and len(running) < 2:
            time.sleep(0.2)
            if (out / "mxflow.sqlite").exists():
                with Catalog(out, readonly=True) as cat:
                    running = cat.rows("running")
        assert len(running) == 2
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130, err
    assert "no new datasets will be started" in err
    with Catalog(out, readonly=True) as cat:
        rows = {r["key"]: r for r in cat.rows()}
        runs = cat.runs()
    statuses = [r["status"] for r in rows.values()]
    assert "running" not in statuses
    for r in running:  # the two that were running finished and were recorded
        assert rows[r["key"]]["status"] == "ok"
    assert statuses.count("pending") >= 1  # the rest wait for the next run
    # stopped by the signal with datasets pending: not a complete run (#12 item 13)
    assert runs[-1]["status"] == "interrupted" and "stopped by SIGTERM" in runs[-1]["note"]
