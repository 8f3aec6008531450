"""Progress in words (mxflow.schedule.progress): the time-left estimate, the lines of
datasets, merges and the end of a run, the run log, and the executor choosing a bar
(terminal) or lines (anything else).  No Dask except the one watch run at the end."""

from __future__ import annotations

import math
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from mxflow.catalog.db import Catalog
from mxflow.model import (
    ClusterResult,
    Dataset,
    DatasetResult,
    MergeRecord,
    MergeSummary,
    MergingStats,
    ProcessingOptions,
    ShellStats,
)
from mxflow.schedule import executor as executor_module
from mxflow.schedule import fake
from mxflow.schedule.executor import Executor, WorkItem
from mxflow.schedule.post import merge_progress_lines
from mxflow.schedule.progress import (
    DatasetProgress,
    MergeProgress,
    ProgressTracker,
    RunLog,
    RunTally,
    eta_s,
    format_bar_postfix,
    format_cluster_line,
    format_dataset_line,
    format_duration,
    format_final_line,
    format_merge_done,
    format_merge_start,
)


def ok_result(name: str = "x", wall_s: float = 0.0, cc: float = 0.998) -> DatasetResult:
    shell = ShellStats(40.0, 1.8, completeness=0.995, cc_half=cc)
    return DatasetResult(
        name, name, "ok", space_group="P 43 21 2", d_min=1.8,
        stats=MergingStats.one_shell(shell), wall_s=wall_s,
    )  # fmt: skip


# -- the estimate ----------------------------------------------------------------


def test_eta_shares_the_remaining_work_among_the_workers_there_is_work_for():
    assert eta_s(60.0, 10, 2) == pytest.approx(300.0)  # 10 × 60 s on 2 workers
    assert eta_s(60.0, 10, 1) == pytest.approx(600.0)
    # fewer datasets left than workers: each left takes one mean time, side by side
    assert eta_s(60.0, 3, 8) == pytest.approx(60.0)
    assert eta_s(30.0, 5, 4) == pytest.approx(37.5)
    assert eta_s(60.0, 0, 2) == 0.0 and eta_s(None, 0, 2) == 0.0  # nothing left
    assert eta_s(None, 4, 2) is None  # nothing finished yet: no mean
    assert eta_s(math.nan, 4, 2) is None and eta_s(10.0, 4, 0) is None


def test_tracker_counts_and_estimates_from_the_mean_time_of_finished_datasets():
    t = ProgressTracker(workers=2, total=6)
    p = t.finished("a", ok_result(), 100.0)
    assert (p.done, p.total, p.failed) == (1, 6, 0)
    assert p.eta_s == pytest.approx(100.0 * 5 / 2)
    failed = DatasetResult("b", "b", "failed", reason="no lattice")
    p = t.finished("b", failed, 20.0)
    assert (p.done, p.failed, p.reason) == (2, 1, "no lattice")
    assert t.mean_s == pytest.approx(60.0)
    assert p.eta_s == pytest.approx(60.0 * 4 / 2)
    assert t.counts == {"ok": 1, "failed": 1}
    assert (p.space_group, p.d_min, p.cc_half) == (None, None, None)  # a failure has no figures
    # watch mode: more datasets arrive, the total grows with them
    t.total += 3
    assert t.finished("c", ok_result(), 60.0).total == 9


# -- the lines -----------------------------------------------------------------------


def test_format_duration():
    assert format_duration(4.25) == "4.2 s"
    assert format_duration(42.4) == "42 s"
    assert format_duration(185) == "3 min 05 s"
    assert format_duration(2 * 3600 + 7 * 60 + 40) == "2 h 07 min"
    assert format_duration(None) == "?" and format_duration(math.nan) == "?"


def test_dataset_line_of_a_success_has_its_figures_time_counts_and_time_left():
    p = ProgressTracker(workers=2, total=9)
    line = format_dataset_line(p.finished("proc/CPS0001-01/data00/multi_0", ok_result(), 62.0))
    assert line == (
        "mxflow: [1/9] proc/CPS0001-01/data00/multi_0: ok in 1 min 02 s: "
        "P 43 21 2, d_min 1.80 Å, CC½ 0.998, 99.5% complete; about 4 min 08 s left"
    )


def test_dataset_line_of_a_failure_has_its_short_reason_and_the_failed_count():
    reason = "DialsError: dials.index failed\n" + "Traceback ..." * 20
    p = DatasetProgress("proc/a", "failed", 12.0, 3, 9, 1, 300.0, reason=reason)
    assert format_dataset_line(p) == (
        "mxflow: [3/9] proc/a: FAILED in 12 s: DialsError: dials.index failed; "
        "1 failed, about 5 min 00 s left"
    )
    long = DatasetProgress("proc/a", "failed", 1.0, 1, 2, 1, None, reason="x" * 500)
    line = format_dataset_line(long)
    assert "x" * 99 + "…;" in line and "x" * 100 not in line
    assert line.endswith("1 failed, 1 to go")  # no mean yet: no estimate


def test_dataset_line_leaves_out_figures_it_does_not_have():
    r = ok_result(cc=math.nan)
    r.stats.overall.completeness = 0.0
    p = ProgressTracker(workers=1, total=1).finished("w", r, 3.0)
    assert (
        format_dataset_line(p) == "mxflow: [1/1] w: ok in 3.0 s: P 43 21 2, d_min 1.80 Å; all done"
    )
    # mxflow watch: the total is only what has been found so far
    watching = ProgressTracker(workers=1, total=1, watching=True).finished("w", r, 3.0)
    assert format_dataset_line(watching).endswith("; all found so far done, watching for more")
    bare = ProgressTracker(workers=1, total=2).finished("v", DatasetResult("v", "v", "ok"), 3.0)
    assert format_dataset_line(bare).startswith("mxflow: [1/2] v: ok in 3.0 s; about")


def test_bar_postfix_has_the_failed_count_and_time_left():
    t = ProgressTracker(workers=2, total=4)
    assert format_bar_postfix(t) == ""
    t.finished("a", DatasetResult("a", "a", "failed"), 30.0)
    assert format_bar_postfix(t) == "1 failed, ~45 s left"
    for k in "bcd":
        t.finished(k, ok_result(), 30.0)
    assert format_bar_postfix(t) == "1 failed"


def cluster(cid: int, error: str = "") -> ClusterResult:
    shell = ShellStats(50.0, 1.62, completeness=0.981, cc_half=0.9973)
    return ClusterResult(
        cid, "cc", ["a", "b", "c"], members=[] if error else ["a", "b"], error=error,
        space_group="P 21 21 21", stats=None if error else MergingStats.one_shell(shell),
    )  # fmt: skip


def test_merge_lines_start_clusters_and_end():
    m = MergeProgress("proc/lyso", 1, 2, 5)
    assert format_merge_start(m) == "mxflow: merge 1/2 proc/lyso: merging 5 dataset(s)"
    assert format_cluster_line(m, "7", cluster(7)) == (
        "mxflow: merge 1/2 proc/lyso: cluster 7 (2 dataset(s)): "
        "P 21 21 21, d_min 1.62 Å, CC½ 0.997, 98.1% complete"
    )
    assert format_cluster_line(m, "8", cluster(8, "dials.scale failed")) == (
        "mxflow: merge 1/2 proc/lyso: cluster 8 (3 dataset(s)): not merged: dials.scale failed"
    )
    summary = MergeSummary("lyso", clusters=[cluster(7), cluster(8, "dials.scale failed")])
    m.elapsed_s = 190.0
    lines = merge_progress_lines(m, MergeRecord("proc/lyso", "ok", summary=summary))
    assert lines == [
        format_cluster_line(m, "7", cluster(7)),
        format_cluster_line(m, "8", cluster(8, "dials.scale failed")),
        "mxflow: merge 1/2 proc/lyso: ok in 3 min 10 s, 1 of 2 cluster(s) merged",
    ]
    assert (m.status, m.n_clusters, m.n_merged) == ("ok", 2, 1)
    failed = MergeProgress(
        "30deg/thau", 2, 2, 2, "failed", "ValueError: no usable datasets", elapsed_s=1.5
    )
    assert format_merge_done(failed) == (
        "mxflow: merge 2/2 30deg/thau: FAILED in 1.5 s: ValueError: no usable datasets"
    )
    # a merge that raised has no summary: only its end
    raised = MergeRecord("proc/x", "failed", "RuntimeError: boom")
    assert merge_progress_lines(MergeProgress("proc/x", 1, 1, 2, elapsed_s=2.0), raised) == [
        "mxflow: merge 1/1 proc/x: FAILED in 2.0 s: RuntimeError: boom"
    ]  # fmt: skip


def test_final_line_counts_processed_already_done_failed_and_waited_for():
    t = RunTally(
        elapsed_s=190.0, processed={"failed": 1, "ok": 6}, already_done=2, waited_for=3,
        left_out=1, merges={"ok": 2, "skipped": 1}, catalog={"ok": 8, "failed": 1},
    )  # fmt: skip
    assert format_final_line(t) == (
        "mxflow: done in 3 min 10 s: 7 processed (6 ok, 1 failed), 2 already done, "
        "3 waited for (1 still being written at the timeout: NOT processed); "
        "merges: 2 ok, 1 skipped; catalog: 8 ok, 1 failed"
    )
    stopped = RunTally(5.0, {}, already_done=0, not_started=4)
    assert format_final_line(stopped) == (
        "mxflow: done in 5.0 s: 0 processed, 0 already done, 4 not started (stopped), 0 waited for"
    )


# -- the log file -------------------------------------------------------------------


def test_run_log_keeps_lines_until_opened_then_writes_them_after_the_header(tmp_path):
    console: list[str] = []
    clock = iter(range(1000, 2000)).__next__
    log = RunLog(console.append, clock=clock)
    log("mxflow: 2 dataset(s)")
    assert not (tmp_path / "run.log").exists()  # not before the run holds OUT
    log.open(tmp_path / "run.log", "==== mxflow run r")
    log("merge proc/a: 1 cluster(s) merged\n  *  1  2")
    log.close()
    log("after close: console only")
    assert console == [
        "mxflow: 2 dataset(s)", "merge proc/a: 1 cluster(s) merged\n  *  1  2",
        "after close: console only",
    ]  # fmt: skip
    lines = (tmp_path / "run.log").read_text().splitlines()
    stamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d  "
    assert [re.sub(stamp, "", ln) for ln in lines] == [
        "==== mxflow run r", "mxflow: 2 dataset(s)", "merge proc/a: 1 cluster(s) merged",
        " " * 21 + "  *  1  2",  # a stamp's width and two spaces in
    ]  # fmt: skip
    assert all(re.match(stamp, ln) for ln in lines[:3])
    # a second run appends
    again = RunLog(lambda m: None)
    again.open(tmp_path / "run.log", "==== mxflow run r")
    again("second")
    again.close()
    assert (tmp_path / "run.log").read_text().count("==== mxflow run r") == 2


def test_run_log_that_cannot_be_opened_says_so_and_goes_on(tmp_path):
    console: list[str] = []
    log = RunLog(console.append)
    log.open(tmp_path / "no" / "such" / "dir" / "run.log")
    log("still printed")
    assert (
        console[0].startswith("mxflow: cannot write the log file") and console[1] == "still printed"
    )


# -- the executor: a bar on a terminal, lines otherwise ------------------------------


class _Future:
    def __init__(self, result):
        self._result = result

    def result(self):
        if isinstance(self._result, Exception):
            raise self._result
        return self._result


def _executor(
    tmp_path: Path, progress: bool, messages: list[str], file_log=None
) -> tuple[Executor, Catalog]:
    catalog = Catalog(tmp_path / "out")
    handle = SimpleNamespace(slots=2, client=None)
    run_id = catalog.start_run("test", 1, "host")
    ex = Executor(
        tmp_path / "out", catalog, handle, run_id, ProcessingOptions(),
        progress=progress, log=messages.append, file_log=file_log,
    )  # fmt: skip
    return ex, catalog


def _items(tmp_path: Path, n: int) -> list[WorkItem]:
    sweep = fake.fake_sweep(f"{tmp_path}/data/x_#####.cbf")
    return [WorkItem(f"proc/d{i}", Dataset(f"d{i}", sweep, "s", "multi")) for i in range(n)]


def test_executor_without_a_terminal_logs_one_line_per_finished_dataset(tmp_path, monkeypatch):
    monkeypatch.setattr(executor_module, "is_terminal", lambda: True)
    messages: list[str] = []
    ex, catalog = _executor(tmp_path, progress=False, messages=messages)  # --no-progress
    assert ex.bar is None and ex.lines
    items = _items(tmp_path, 3)
    assert ex.add(items) == 3 and ex.tracker.total == 3
    ex._record(items[0], _Future(ok_result("d0", wall_s=10.0)))
    ex._record(items[1], _Future(DatasetResult("d1", "d1", "failed", reason="no lattice")))
    ex._record(items[2], _Future(RuntimeError("cancelled")))
    catalog.close()
    assert [m.split(":")[1] for m in messages] == [
        " [1/3] proc/d0",
        " [2/3] proc/d1",
        " [3/3] proc/d2",
    ]
    assert messages[0].endswith(
        "ok in 10 s: P 43 21 2, d_min 1.80 Å, CC½ 0.998, 99.5% complete; about 10 s left"
    )
    assert "FAILED" in messages[1] and "no lattice; 1 failed" in messages[1]
    assert messages[2].endswith("FAILED in 0.0 s: RuntimeError: cancelled; 2 failed, all done")
    assert ex.tracker.counts == {"ok": 1, "failed": 2}


def test_executor_on_a_terminal_draws_a_bar_with_the_same_counts(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(executor_module, "is_terminal", lambda: True)
    messages: list[str] = []
    in_file: list[str] = []
    ex, catalog = _executor(tmp_path, progress=True, messages=messages, file_log=in_file.append)
    assert ex.bar is not None and not ex.lines
    items = _items(tmp_path, 4)
    ex.add(items)
    ex._record(items[0], _Future(ok_result("d0", wall_s=20.0)))
    ex._record(items[1], _Future(DatasetResult("d1", "d1", "failed", reason="no lattice")))
    assert (ex.bar.n, ex.bar.total) == (2, 4)
    assert ex.bar.postfix == "1 failed, ~10 s left"  # mean (20 + 0) / 2 s, 2 left on 2 workers
    ex.close()
    catalog.close()
    assert messages == ["mxflow: proc/d1: failed: no lattice"]  # only failures, above the bar
    # the run's log file still gets the line of every dataset
    assert [ln.split()[1:3] for ln in in_file] == [["[1/4]", "proc/d0:"], ["[2/4]", "proc/d1:"]]
    assert "2/4" in capsys.readouterr().err


def test_executor_draws_no_bar_without_a_terminal(tmp_path, monkeypatch):
    monkeypatch.setattr(executor_module, "is_terminal", lambda: False)
    ex, catalog = _executor(tmp_path, progress=True, messages=[])
    catalog.close()
    assert ex.bar is None and ex.lines


# -- mxflow watch without a terminal ----------------------------------------------------


def test_watch_without_a_terminal_prints_and_logs_one_line_per_dataset(tmp_path, monkeypatch):
    from mxflow.schedule.collection import RunConfig
    from mxflow.schedule.watch import watch_collection

    monkeypatch.setattr(executor_module, "is_terminal", lambda: False)  # even under pytest -s
    root, out = tmp_path / "root", tmp_path / "out"
    for name in ("a", "b", "c"):
        sweep = fake.fake_sweep(f"{root}/CPS0001-01/{name}/x_#####.cbf")
        fake.write_fake_dataset(root, Dataset(name, sweep, "s", "multi"))
    cfg = RunConfig(
        process_fn="mxflow.schedule.fake:process_dataset",
        discover_fn="mxflow.schedule.fake:discover_collection",
        progress=True, workers=2, settle_s=0,
    )  # fmt: skip
    messages: list[str] = []
    outcome = watch_collection(root, out, cfg, interval=0.2, max_iterations=1, log=messages.append)
    assert outcome.counts == {"ok": 3}
    lines = [m for m in messages if re.match(r"mxflow: \[\d/3\] ", m)]
    assert sorted(ln.split()[2] for ln in lines) == [f"proc/CPS0001-01/{n}/{n}:" for n in "abc"]
    assert sorted(ln.split()[1] for ln in lines) == ["[1/3]", "[2/3]", "[3/3]"]
    assert all(" ok in " in ln and "P 43 21 2, d_min 1.80 Å" in ln for ln in lines)
    log = (out / "run.log").read_text()
    assert "==== mxflow watch" in log
    assert all(ln in log for ln in lines)


def test_merge_samples_logs_each_merge_stage(tmp_path, monkeypatch):
    """post.merge_samples: per merge its start, its clusters and its end, numbered among
    the merges run; a merge of too few datasets or of unchanged inputs says so."""
    from mxflow.schedule import post

    def res(name: str) -> tuple[str, DatasetResult]:
        r = DatasetResult(name=name, path=name, status="ok", wavelength=1.0, workdir=name)
        r.integrated_expt, r.integrated_refl = f"{name}/i.expt", f"{name}/i.refl"
        return (f"proc/{name}", r)

    groups = {
        ("lyso", "proc"): [res("a"), res("b"), res("c")],
        ("thau", "proc"): [res("d")],
        ("zz", "proc"): [res("e"), res("f")],
    }
    monkeypatch.setattr(post, "merge_groups", lambda catalog: groups)

    def fake_merge(inputs, workdir, options):
        if options.sample == "zz":
            raise RuntimeError("boom")
        return MergeSummary(options.sample, clusters=[cluster(1), cluster(2, "too few")])

    out = tmp_path / "out"
    messages: list[str] = []
    with Catalog(out) as cat:
        post.merge_samples(out, cat, ProcessingOptions(), messages.append, merge_fn=fake_merge)
    timed = [re.sub(r" in [\d.]+ s", " in T", m) for m in messages]
    assert timed == [
        "mxflow: merge proc/thau: skipped: only 1 processed dataset(s)",
        "mxflow: merge 1/2 proc/lyso: merging 3 dataset(s)",
        "mxflow: merge 1/2 proc/lyso: cluster 1 (2 dataset(s)): "
        "P 21 21 21, d_min 1.62 Å, CC½ 0.997, 98.1% complete",
        "mxflow: merge 1/2 proc/lyso: cluster 2 (3 dataset(s)): not merged: too few",
        "mxflow: merge 1/2 proc/lyso: ok in T, 1 of 2 cluster(s) merged",
        "mxflow: merge 2/2 proc/zz: merging 2 dataset(s)",
        "mxflow: merge 2/2 proc/zz: FAILED in T: RuntimeError: boom",
    ]
    messages.clear()
    with Catalog(out) as cat:  # again: lyso's inputs are unchanged, zz failed and is redone
        post.merge_samples(out, cat, ProcessingOptions(), messages.append, merge_fn=fake_merge)
    assert messages[:2] == [
        "mxflow: merge proc/lyso: already merged (the same 3 dataset(s))",
        "mxflow: merge proc/thau: skipped: only 1 processed dataset(s)",
    ]
    assert messages[2] == "mxflow: merge 1/1 proc/zz: merging 2 dataset(s)"
    # a merge whose folder was deleted is merged again, not reported as done
    shutil.rmtree(out / "merge" / "lyso")
    messages.clear()
    with Catalog(out) as cat:
        post.merge_samples(out, cat, ProcessingOptions(), messages.append, merge_fn=fake_merge)
    assert (
        messages[0]
        == f"mxflow: merge proc/lyso: merged again: its files are gone ({out}/merge/lyso)"
    )
    assert "mxflow: merge 1/2 proc/lyso: merging 3 dataset(s)" in messages
