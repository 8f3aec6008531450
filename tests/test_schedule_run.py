"""mxflow run on a fake collection with a fake processing function (fast).

The fakes (mxflow.schedule.fake) are named by "module:function" strings, so
worker processes import them themselves; their behaviour is set through
environment variables, which the Dask worker processes inherit.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mxflow.catalog.db import Catalog
from mxflow.catalog.lock import OutputDirBusy, RunLock
from mxflow.model import Dataset
from mxflow.schedule import fake
from mxflow.schedule.collection import RunConfig, run_collection
from mxflow.schedule.tasks import RESULT_FILE

FAKE_PROCESS = "mxflow.schedule.fake:process_dataset"
FAKE_DISCOVER = "mxflow.schedule.fake:discover_collection"
REPO = Path(__file__).resolve().parents[1]


def make_collection(root: Path, n_multi: int = 4, helical: bool = True) -> list[str]:
    """Two pins of multi datasets (two samples) and one helical sweep cut in 2 wedges."""
    names = []
    for i in range(n_multi):
        pin, sample = ("CPS0001-01", "lyso") if i % 2 == 0 else ("CPS0001-02", "thau")
        t = f"{root}/{pin}/data{i:02d}/multi_{i}_#####.cbf"
        ds = Dataset(name=f"multi_{i}", sweep=fake.fake_sweep(t), sample=sample, mode="multi")
        fake.write_fake_dataset(root, ds)
        names.append(ds.name)
    if helical:
        sweep = fake.fake_sweep(f"{root}/CPS0002-01/data00/helical_#####.cbf", 1, 600)
        fake.write_fake_dataset(root, Dataset("helical", sweep, sample="lyso", mode="helical"))
        names.append("helical")
        for a in (1, 301):
            w = Dataset(f"helical_{a}-{a + 299}", sweep, "lyso", "helical", wedge=(a, a + 299))
            fake.write_fake_dataset(root, w)
            names.append(w.name)
    return names


def config(**kw) -> RunConfig:
    kw.setdefault("workers", 2)
    return RunConfig(
        process_fn=FAKE_PROCESS, discover_fn=FAKE_DISCOVER, progress=False, settle_s=0, **kw
    )


def calls(out: Path, key: str) -> int:
    path = out / key / fake.CALLS_LOG
    return len(path.read_text().splitlines()) if path.exists() else 0


def check_consistent(out: Path) -> dict[str, dict]:
    """Every 'ok' row has its outputs and result file; nothing is left 'running'."""
    with Catalog(out, readonly=True) as cat:
        rows = {r["key"]: r for r in cat.rows()}
    for key, row in rows.items():
        assert row["status"] != "running", key
        if row["status"] == "ok":
            assert (out / key / RESULT_FILE).is_file(), key
            assert (out / key / fake.OUTPUT).is_file(), key
            assert json.loads(row["result_json"])["status"] == "ok"
    summary = json.loads((out / "summary.json").read_text())
    assert {d["key"]: d["status"] for d in summary["datasets"]} == {
        k: r["status"] for k, r in rows.items()
    }
    return rows


def test_failed_dataset_does_not_stop_others(tmp_path, monkeypatch):
    root, out = tmp_path / "root", tmp_path / "out"
    make_collection(root)
    monkeypatch.setenv("MXFLOW_FAKE_FAIL", r"^multi_1$")
    monkeypatch.setenv("MXFLOW_FAKE_RAISE", r"^multi_2$")
    outcome = run_collection(root, out, config(merge=False), log=lambda m: None)
    assert outcome.counts == {"ok": 5, "failed": 2}
    rows = check_consistent(out)
    assert (
        rows["proc/CPS0001-02/data01/multi_1"]["reason"]
        == "fake failure: indexing found no lattice"
    )
    assert "RuntimeError: fake exception" in rows["proc/CPS0001-01/data02/multi_2"]["reason"]
    # the wedges live in their own tree and know their parent sweep
    wedge = rows["proc_30deg/CPS0002-01/data00/helical_301-600"]
    assert wedge["kind"] == "wedge" and wedge["parent"] == "proc/CPS0002-01/data00/helical"
    summary = json.loads((out / "summary.json").read_text())
    entry = next(d for d in summary["datasets"] if d["name"] == "helical_301-600")
    assert (entry["sample"], entry["mode"], entry["wedge"]) == ("lyso", "helical", "301-600")
    assert (
        entry["unmerged_mtz"] == "proc_30deg/CPS0002-01/data00/helical_301-600/fake_integrated.txt"
    )
    assert entry["total_rotation"] == pytest.approx(30.0)
    # steps are in the catalog
    with Catalog(out, readonly=True) as cat:
        steps = cat.steps("proc/CPS0001-01/data00/multi_0")
        assert [s["name"] for s in steps] == ["fake.integrate"] and steps[0]["returncode"] == 0
        run = cat.runs()[-1]
        assert run["status"] == "ok" and run["n_ok"] == 5 and run["peak_rss_mb"] > 0

    # a rerun does nothing; --retry-failed redoes only the failures
    monkeypatch.delenv("MXFLOW_FAKE_FAIL")
    monkeypatch.delenv("MXFLOW_FAKE_RAISE")
    run_collection(root, out, config(merge=False), log=lambda m: None)
    assert calls(out, "proc/CPS0001-01/data00/multi_0") == 1
    assert calls(out, "proc/CPS0001-02/data01/multi_1") == 1
    outcome = run_collection(root, out, config(merge=False, retry_failed=True), log=lambda m: None)
    assert outcome.counts == {"ok": 7}
    assert calls(out, "proc/CPS0001-02/data01/multi_1") == 2
    assert calls(out, "proc/CPS0001-01/data00/multi_0") == 1


def test_worker_killed_mid_task_is_retried(tmp_path, monkeypatch):
    root, out = tmp_path / "root", tmp_path / "out"
    make_collection(root, n_multi=3, helical=False)
    monkeypatch.setenv("MXFLOW_FAKE_CRASH", r"^multi_1$")  # os._exit on the first attempt
    monkeypatch.setenv("MXFLOW_FAKE_SLEEP", "0.3")
    outcome = run_collection(root, out, config(merge=False), log=lambda m: None)
    assert outcome.counts == {"ok": 3}
    key = "proc/CPS0001-02/data01/multi_1"
    assert (out / key / ".fake_crashed").exists()
    assert calls(out, key) == 2  # crashed once, then finished on a fresh worker
    assert calls(out, "proc/CPS0001-01/data00/multi_0") == 1
    check_consistent(out)


def test_worker_dying_every_time_is_reported_failed(tmp_path, monkeypatch):
    root, out = tmp_path / "root", tmp_path / "out"
    make_collection(root, n_multi=2, helical=False)
    monkeypatch.setenv("MXFLOW_FAKE_CRASH_ALWAYS", r"^multi_1$")
    outcome = run_collection(root, out, config(merge=False, retries=1), log=lambda m: None)
    assert outcome.counts == {"ok": 1, "failed": 1}
    with Catalog(out, readonly=True) as cat:
        row = cat.get("proc/CPS0001-02/data01/multi_1")
    assert "worker processing it died 2 times" in row["reason"]
    assert calls(out, "proc/CPS0001-02/data01/multi_1") == 2


def test_second_run_on_same_outdir_is_refused(tmp_path):
    root, out = tmp_path / "root", tmp_path / "out"
    make_collection(root, n_multi=1, helical=False)
    with RunLock(out):
        with pytest.raises(OutputDirBusy, match=f"PID {os.getpid()}"):
            run_collection(root, out, config(), log=lambda m: None)
        # the CLI says so and exits 1 without touching anything
        proc = subprocess.run(
            [sys.executable, "-m", "mxflow.cli", "run", str(root), "--workdir", str(out),
             "--process-fn", FAKE_PROCESS, "--discover-fn", FAKE_DISCOVER, "--settle", "0"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert proc.returncode == 1
        assert f"in use by another mxflow run (PID {os.getpid()}" in proc.stderr
    assert not (out / "proc").exists()


def _ok_keys(out: Path) -> set[str]:
    db = out / "mxflow.sqlite"
    if not db.exists():
        return set()
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            return {r[0] for r in conn.execute("SELECT key FROM datasets WHERE status='ok'")}
    except sqlite3.Error:
        return set()


def test_kill9_then_rerun_resumes_without_redoing(tmp_path):
    root, out = tmp_path / "root", tmp_path / "out"
    make_collection(root, n_multi=8, helical=False)
    env = dict(os.environ, MXFLOW_FAKE_SLEEP="1.0")
    cmd = [sys.executable, "-m", "mxflow.cli", "run", str(root), "--workdir", str(out),
           "--process-fn", FAKE_PROCESS, "--discover-fn", FAKE_DISCOVER, "--settle", "0",
           "--workers", "2", "--no-progress", "--no-merge"]  # fmt: skip
    # (the fake datasets have nothing to merge: a merge would fail, and the exit status say so)
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 60
        while len(_ok_keys(out)) < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        done_before = _ok_keys(out)
        assert len(done_before) >= 3, proc.stderr.read().decode() if proc.poll() else ""
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.stderr.close()
    # workers notice their parent is gone and exit; wait for them (same session)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    else:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail("worker processes outlived the killed run")

    # the catalog as the killed run left it: 'ok' only with outputs in place
    with Catalog(out, readonly=True) as cat:
        rows = cat.rows()
    assert {r["status"] for r in rows} <= {"ok", "running", "pending"}
    for r in rows:
        if r["status"] == "ok":
            assert (out / r["key"] / RESULT_FILE).is_file()

    rerun = subprocess.run(
        cmd,
        env=dict(os.environ, MXFLOW_FAKE_SLEEP="0.05"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert rerun.returncode == 0, rerun.stderr
    rows = check_consistent(out)
    assert {r["status"] for r in rows.values()} == {"ok"} and len(rows) == 8
    for key in done_before:  # finished before the kill: never redone
        assert calls(out, key) == 1, key
    with Catalog(out, readonly=True) as cat:
        runs = cat.runs()
    # the killed run never recorded its end: the rerun, holding the lock, recorded it
    assert runs[0]["status"] == "interrupted" and "killed" in runs[0]["note"]
    assert runs[1]["status"] == "ok"


def test_merge_routes_per_sample(tmp_path):
    """proc: every whole sweep of a sample; 30deg: its wedges plus the uncut multi sweeps."""
    from mxflow.schedule.post import merge_groups, merge_inputs

    root, out = tmp_path / "root", tmp_path / "out"
    make_collection(root, n_multi=4)
    run_collection(root, out, config(merge=False), log=lambda m: None)
    with Catalog(out) as cat:
        groups = {k: sorted(key for key, _ in v) for k, v in merge_groups(cat).items()}
    assert groups[("lyso", "proc")] == [
        "proc/CPS0001-01/data00/multi_0",
        "proc/CPS0001-01/data02/multi_2",
        "proc/CPS0002-01/data00/helical",
    ]
    assert groups[("lyso", "30deg")] == [
        "proc/CPS0001-01/data00/multi_0",
        "proc/CPS0001-01/data02/multi_2",
        "proc_30deg/CPS0002-01/data00/helical_1-300",
        "proc_30deg/CPS0002-01/data00/helical_301-600",
    ]
    assert ("thau", "30deg") not in groups  # no wedges: the route would repeat proc
    assert len(groups[("thau", "proc")]) == 2
    with Catalog(out) as cat:
        results = [r for _, r in merge_groups(cat)[("thau", "proc")]]
    for r in results:
        r.integrated_expt, r.integrated_refl = f"{r.workdir}/i.expt", f"{r.workdir}/i.refl"
    inputs = merge_inputs(results, out)
    assert len(inputs) == 2 and inputs[0].name == results[0].name  # full dataset names kept
    expt, refl = inputs[0].integrated_expt, inputs[0].integrated_refl
    assert expt.endswith("proc/CPS0001-02/data01/multi_1/i.expt") and expt.startswith("/")
    assert refl.endswith("multi_1/i.refl")
    assert results[0].integrated_expt.startswith("proc/")  # the catalog's results are not changed


def test_each_wavelength_of_a_sample_is_merged_apart(tmp_path, monkeypatch):
    """merge_samples: a sample measured at two wavelengths gives two merges, one per λ,
    in their own directories, labelled, and recorded as two catalog products."""
    from mxflow.model import DatasetResult, MergeSummary
    from mxflow.schedule import post

    def res(name, lam):
        r = DatasetResult(name=name, path=name, status="ok", wavelength=lam, workdir=f"proc/{name}")
        r.integrated_expt, r.integrated_refl = f"proc/{name}/i.expt", f"proc/{name}/i.refl"
        return (f"proc/{name}", r)

    members = [res("pk1", 0.97900), res("rm1", 1.03320), res("pk2", 0.97903), res("rm2", 1.0332)]
    monkeypatch.setattr(post, "merge_groups", lambda catalog: {("se", "proc"): members})
    calls = []

    def fake_merge(inputs, workdir, options):
        calls.append((sorted(i.name for i in inputs), Path(workdir), options.label))
        return MergeSummary(options.sample, notes=["nothing merged in this fake"])

    out = tmp_path / "out"
    with Catalog(out) as cat:
        assert (
            post.merge_samples(out, cat, config().options, lambda m: None, merge_fn=fake_merge) == 2
        )
        merges = {m.name: m for m in cat.merges()}
    assert calls == [
        (["pk1", "pk2"], out / "merge" / "se" / "0.9790A", "λ 0.9790 Å"),
        (["rm1", "rm2"], out / "merge" / "se" / "1.0332A", "λ 1.0332 Å"),
    ]
    assert set(merges) == {"proc/se/0.9790A", "proc/se/1.0332A"}
    assert merges["proc/se/0.9790A"].inputs == ["proc/pk1", "proc/pk2"]
    # a merge that merged nothing is recorded as failed, with why
    assert merges["proc/se/0.9790A"].status == "failed"
    assert merges["proc/se/0.9790A"].reason == "nothing merged in this fake"
    assert merges["proc/se/0.9790A"].summary.sample == "se"


def test_sample_sheet_settings_reach_the_merge(tmp_path, monkeypatch):
    """The sheet's space group, reference MTZ and anomalous flag of a sample are the
    merge's options (the command line's space group wins); conflicting values are dropped."""
    from mxflow.model import DatasetResult, MergeSummary
    from mxflow.schedule import post

    sweep = fake.fake_sweep("/d/x_#####.cbf")
    datasets = [
        Dataset("a", sweep, "se", "multi", anomalous=True, space_group="P 41 21 2", reference_mtz="/r/se.mtz"),
        Dataset("b", sweep, "se", "multi", space_group="P 41 21 2"),
        Dataset("c", sweep, "mix", "multi", space_group="P 2 2 2"),
        Dataset("d", sweep, "mix", "multi", space_group="P 4"),
    ]  # fmt: skip
    settings = post.sample_settings(datasets)
    assert settings == {
        "se": post.SampleSettings(
            "P 41 21 2", "/r/se.mtz", anomalous=True, n_flagged_anomalous=1, n_datasets=2
        ),
        "mix": post.SampleSettings(n_datasets=2),
    }

    def res(name):
        r = DatasetResult(name=name, path=name, status="ok", wavelength=1.0, workdir=name)
        r.integrated_expt, r.integrated_refl = f"{name}/i.expt", f"{name}/i.refl"
        return (name, r)

    monkeypatch.setattr(
        post, "merge_groups",
        lambda catalog: {("se", "proc"): [res("a"), res("b")], ("mix", "proc"): [res("c"), res("d")]},
    )  # fmt: skip
    seen = {}

    def fake_merge(inputs, workdir, options):
        seen[options.sample] = options
        return MergeSummary(options.sample)

    with Catalog(tmp_path / "out") as cat:
        post.merge_samples(
            tmp_path / "out", cat, config().options, lambda m: None, settings, fake_merge
        )
    se, mix = seen["se"], seen["mix"]
    assert (se.space_group, se.reference, se.anomalous) == ("P 41 21 2", "/r/se.mtz", True)
    assert (mix.space_group, mix.reference, mix.anomalous) == (None, None, False)
    cli = config()
    cli.options.space_group = "P 43 21 2"  # the command line wins over the sheet
    with Catalog(tmp_path / "out2") as cat:
        post.merge_samples(
            tmp_path / "out2", cat, cli.options, lambda m: None, settings, fake_merge
        )
    assert seen["se"].space_group == "P 43 21 2" and seen["se"].reference == "/r/se.mtz"
    # processing found the given space group wrong for one dataset: merging decides it itself
    refuted = res("b")
    refuted[1].given_space_group_rejected = "P 41 21 2"
    monkeypatch.setattr(post, "merge_groups", lambda catalog: {("se", "proc"): [res("a"), refuted]})
    messages = []
    with Catalog(tmp_path / "out3") as cat:
        post.merge_samples(
            tmp_path / "out3", cat, cli.options, messages.append, settings, fake_merge
        )
    assert seen["se"].space_group is None and seen["se"].reference == "/r/se.mtz"
    assert any("did not fit 1 dataset(s) (e.g. b)" in m for m in messages)


def test_default_functions_are_direct_references(tmp_path):
    """The DIALS pipeline and discovery are the defaults as functions (no import by name);
    --process-fn / --discover-fn still name others."""
    import pickle

    from mxflow.cli import build_parser
    from mxflow.discover import discover_collection
    from mxflow.process import process_dataset
    from mxflow.schedule.options import config_from_args
    from mxflow.schedule.tasks import resolve_function

    argv = ["run", str(tmp_path), "--workdir", str(tmp_path / "out")]
    cfg = config_from_args(build_parser("run").parse_args(argv))
    assert cfg.process_fn is process_dataset and cfg.discover_fn is discover_collection
    assert RunConfig().process_fn is process_dataset
    assert pickle.loads(pickle.dumps(cfg.process_fn)) is process_dataset  # sent to workers by name
    cfg = config_from_args(build_parser("run").parse_args([*argv, "--process-fn", FAKE_PROCESS]))
    assert resolve_function(cfg.process_fn) is fake.process_dataset


def _cli_run(
    root: Path, out: Path, *extra: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mxflow.cli", "run", str(root), "--workdir", str(out),
         "--process-fn", FAKE_PROCESS, "--discover-fn", FAKE_DISCOVER, "--settle", "0",
         "--no-merge", *extra],
        capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})},
    )  # fmt: skip


def test_run_without_a_terminal_prints_and_logs_one_line_per_dataset(tmp_path):
    """nohup, a batch job, `> log`: each finished dataset is one line (status, figures, its
    time, done/total, time left) in the output and in OUT/run.log; the last line counts
    what was processed, already done, failed and waited for."""
    root, out = tmp_path / "root", tmp_path / "out"
    make_collection(root, n_multi=4, helical=True)  # 5 sweeps + 2 wedges
    proc = _cli_run(root, out, "--workers", "2", env={"MXFLOW_FAKE_FAIL": r"^multi_1$"})
    assert proc.returncode == 0, proc.stderr
    with Catalog(out, readonly=True) as cat:
        keys = sorted(r["key"] for r in cat.rows())
    assert len(keys) == 7
    lines = [ln for ln in proc.stderr.splitlines() if re.match(r"mxflow: \[\d+/7\] ", ln)]
    assert [ln.split()[1] for ln in lines] == [f"[{i}/7]" for i in range(1, 8)]
    assert sorted(ln.split()[2].removesuffix(":") for ln in lines) == keys  # one per dataset
    by_key = {ln.split()[2].removesuffix(":"): ln for ln in lines}
    failed = by_key.pop("proc/CPS0001-02/data01/multi_1")
    assert re.search(
        r": FAILED in [\d.]+ s: fake failure: indexing found no lattice; 1 failed", failed
    )
    for ln in by_key.values():
        assert re.search(r": ok in [\d.]+ s: P 43 21 2, d_min 1.80 Å, 50.0% complete; ", ln), ln
    assert all(re.search(r"; (1 failed, )?about [\d.]+ s left$", ln) for ln in lines[:-1])
    assert lines[-1].endswith("all done")
    final = proc.stderr.splitlines()[-1]
    assert (
        final.startswith("mxflow: done in ")
        and ": 7 processed (6 ok, 1 failed), 0 already done, 0 waited for; " in final
    )
    run_log = (out / "run.log").read_text()
    assert run_log.count("==== mxflow run ") == 1
    assert all(ln in run_log for ln in [*lines, final])
    assert run_log.count("] proc") == 7  # each dataset once in the log too

    # a rerun processes nothing: every dataset is already done (the failure too)
    proc = _cli_run(root, out, "--workers", "2")
    assert proc.returncode == 0, proc.stderr
    assert not re.search(r"mxflow: \[\d+/\d+\] ", proc.stderr)
    assert ": 0 processed, 7 already done, 0 waited for; " in proc.stderr.splitlines()[-1]
    assert (out / "run.log").read_text().count("==== mxflow run ") == 2


def test_run_waits_for_data_still_being_written_then_processes_it(tmp_path):
    """Data copied a moment ago: `mxflow run` waits until the copy is complete, processes
    every dataset and exits 0."""
    root, out = tmp_path / "root", tmp_path / "out"
    names = make_collection(root, n_multi=2, helical=False)
    marker = root / "CPS0001-01" / "data00" / "multi_0.writing"
    marker.write_text("")
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mxflow.cli", "run", str(root), "--workdir", str(out),
         "--process-fn", FAKE_PROCESS, "--discover-fn", FAKE_DISCOVER, "--settle", "0",
         "--no-merge", "--settle-timeout", "60"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    time.sleep(2.5)
    marker.unlink()  # the copy finishes
    log, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, log
    assert "waiting for 1 dataset(s) still being written" in log
    assert ": 2 processed (2 ok), 0 already done, 1 waited for; " in log
    assert time.monotonic() - t0 >= 2.5
    summary = json.loads((out / "summary.json").read_text())
    assert sorted(d["name"] for d in summary["datasets"]) == sorted(names)
    assert all(d["status"] == "ok" for d in summary["datasets"])


def test_run_exits_1_when_data_are_still_being_written_at_the_timeout(tmp_path):
    root, out = tmp_path / "root", tmp_path / "out"
    make_collection(root, n_multi=2, helical=False)
    (root / "CPS0001-01" / "data00" / "multi_0.writing").write_text("")
    proc = _cli_run(root, out, "--settle-timeout", "1")
    assert proc.returncode == 1, proc.stderr
    assert "multi_0" in proc.stderr and "NOT processed" in proc.stderr
    assert (
        ": 1 processed (1 ok), 0 already done, "
        "1 waited for (1 still being written at the timeout: NOT processed); "
    ) in proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert [d["name"] for d in summary["datasets"]] == ["multi_1"]  # the complete one ran


def test_run_that_finds_nothing_exits_1(tmp_path):
    (tmp_path / "root").mkdir()
    proc = _cli_run(tmp_path / "root", tmp_path / "out")
    assert proc.returncode == 1
    assert "no rotation dataset or raster scan found" in proc.stderr
