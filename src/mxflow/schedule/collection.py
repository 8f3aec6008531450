"""Processing a whole collection: plan the work, run it on Dask, merge, hit maps.

Work directories (and catalog keys) mirror the data tree, as KAMO's
``_kamoproc`` and ``_kamo_30deg``::

    OUT/proc/<pin>/<dir>/<dataset>/                  whole sweeps
    OUT/proc_30deg/<pin>/<dir>/<dataset>_<a>-<b>/    wedges of <wedge_deg>°
    OUT/merge/<sample>/, OUT/merge_30deg/<sample>/   merges
    OUT/hitmap/<pin>/<dir>/<scan>/                   raster-scan hit maps
    OUT/run.log                                      every line the runs printed

Without a terminal each finished dataset and each merge stage is one line of
the log (:mod:`mxflow.schedule.progress`).

where ``<pin>/<dir>`` is the directory of the images relative to ROOT.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from mxflow.catalog.db import Catalog, catalog_path
from mxflow.catalog.lock import RunLock, gone_note
from mxflow.catalog.merge_table import format_record
from mxflow.catalog.summary import SUMMARY_NAME, write_summary
from mxflow.discover import collection as discovery
from mxflow.discover import discover_collection
from mxflow.discover.collection import Collection
from mxflow.model import Dataset, ProcessingOptions, Thresholds
from mxflow.schedule import post
from mxflow.schedule.cluster import check_batch_system, start_cluster
from mxflow.schedule.executor import Executor, WorkItem, abandon_unstarted_clusters
from mxflow.schedule.progress import RUN_LOG, RunLog, RunTally, format_final_line
from mxflow.schedule.tasks import DEFAULT_PROCESS_FN, ProcessFn, resolve_function
from mxflow.util.files import safe_name

PROC_TREE = "proc"


def wedge_tree(wedge_deg: float) -> str:
    """Name of the wedge tree: ``proc_30deg`` for 30° wedges."""
    return f"proc_{wedge_deg:g}deg"


def image_dir(dataset: Dataset, root: Path) -> str:
    """Directory of the dataset's images relative to ``root`` ('' if not under it)."""
    parent = Path(dataset.sweep.template).parent
    try:
        rel = parent.resolve().relative_to(root.resolve())
    except ValueError:
        rel = Path(safe_name(parent.name))
    return "" if str(rel) == "." else rel.as_posix()


def dataset_key(dataset: Dataset, root: Path, tree: str) -> str:
    """Work directory of ``dataset`` relative to OUT (also its catalog key).

    Discovery names datasets by their image directory relative to ROOT plus
    the file prefix (``CPS1012-06/data00/single_001``): that path is kept
    under ``tree``.  A bare name gets the image directory prepended.  Wedges
    end in ``_<first>-<last>``.
    """
    if "/" in dataset.name:
        rel = "/".join(safe_name(p) for p in dataset.name.split("/") if p not in ("", ".", ".."))
    else:
        rel = "/".join(p for p in (image_dir(dataset, root), safe_name(dataset.name)) if p)
    if dataset.wedge is not None:
        label = f"{dataset.wedge[0]}-{dataset.wedge[1]}"
        if not rel.endswith(label):
            rel = f"{rel}_{label}"
    return f"{tree}/{rel}"


def plan(collection: Collection, root: str | Path, wedge_deg: float = 30.0) -> list[WorkItem]:
    """Work items for a discovered collection: whole sweeps, then wedges.

    ``collection.datasets`` (whole sweeps) go to ``proc/``.  Of
    ``collection.wedges`` (the units of the wedge route) only the real cuts
    go to ``proc_<deg>deg/``: a unit that is a whole sweep (a multi-mode
    small wedge, or a wedge spanning its whole sweep) is the same work as
    its ``proc/`` item and is not done twice.  Keys are made unique (a clash
    gets the frame range appended).
    """
    root = Path(root)
    items: list[WorkItem] = []
    used: set[str] = set()
    sweep_keys: dict[str, str] = {}

    def unique(key: str, ds: Dataset) -> str:
        if key in used:
            key = f"{key}_{ds.frames[0]}-{ds.frames[1]}"
        n, base = 2, key
        while key in used:
            key, n = f"{base}_{n}", n + 1
        used.add(key)
        return key

    for ds in collection.datasets:
        key = unique(dataset_key(ds, root, PROC_TREE), ds)
        sweep_keys.setdefault(ds.sweep.template, key)
        items.append(WorkItem(key, ds, "sweep"))
    tree = wedge_tree(wedge_deg)
    for ds in collection.wedges:
        whole = ds.wedge is None or tuple(ds.wedge) == (ds.sweep.first, ds.sweep.last)
        if whole and ds.sweep.template in sweep_keys:
            continue
        key = unique(dataset_key(ds, root, tree), ds)
        items.append(WorkItem(key, ds, "wedge", sweep_keys.get(ds.sweep.template)))
    return items


class DiscoverFn(Protocol):
    """What finds a collection: :func:`mxflow.discover.discover_collection` (tests: a fake)."""

    def __call__(
        self,
        root: str | Path,
        *,
        sample_sheet: str | None,
        default_sample: str | None,
        wedge_deg: float,
        settle_s: float,
    ) -> Collection: ...


#: the discovery function unless ``--discover-fn MODULE:FUNCTION`` names another
DEFAULT_DISCOVER_FN: DiscoverFn = discover_collection
# a dataset whose newest file is younger than this is taken as still being written;
# with watch's 10 s polls a finished dataset starts within ~25 s (< 60 s)
DEFAULT_SETTLE_S = 15.0
#: `mxflow run` waits this long (s) for datasets still being written (data copied just now)
DEFAULT_SETTLE_TIMEOUT_S = 300.0


def discover(root: Path, config: RunConfig) -> Collection:
    """The collection under ``root``, found by ``config.discover_fn``."""
    fn: DiscoverFn = resolve_function(config.discover_fn)
    return fn(
        root,
        sample_sheet=config.sample_sheet,
        default_sample=config.default_sample,
        wedge_deg=config.wedge_deg,
        settle_s=discovery.DEFAULT_SETTLE_S if config.settle_s is None else config.settle_s,
    )


@dataclass
class RunConfig:
    """Everything ``mxflow run`` / ``mxflow watch`` need besides ROOT and OUT."""

    sample_sheet: str | None = None
    default_sample: str | None = None
    wedge_deg: float = 30.0
    cluster: str = "local"
    cluster_config: str | None = None
    workers: int | None = None
    nproc: int | None = None
    options: ProcessingOptions = field(default_factory=ProcessingOptions)
    process_fn: str | ProcessFn = DEFAULT_PROCESS_FN
    retries: int = 2
    retry_failed: bool = False
    progress: bool = True
    settle_s: float | None = DEFAULT_SETTLE_S
    # mxflow run: how long to wait for datasets still being written before giving up on them
    settle_timeout_s: float = DEFAULT_SETTLE_TIMEOUT_S
    merge: bool = True
    # mxflow run --group-by-cell: pins without a sample from the sheet or --sample whose
    # processed cells agree are merged as one sample (post.merge_samples)
    group_by_cell: bool = False
    hitmap: bool = True
    discover_fn: str | DiscoverFn = DEFAULT_DISCOVER_FN  # developer option, as process_fn
    # --dashboard: serve the Dask dashboard on 127.0.0.1 (any free port); off by default
    dashboard: bool = False
    thresholds: Thresholds = field(default_factory=Thresholds)  # which clusters to merge


class StopFlag:
    """SIGINT / SIGTERM handling: the first signal asks to stop, the second forces it.

    Within :meth:`aborting` (the cluster's start-up) a signal stops at once, by
    raising KeyboardInterrupt.
    """

    def __init__(self, log: Callable[[str], None]):
        self.count = 0
        self.log = log
        self.signal_name: str | None = None  # the first signal received
        self._abort = False

    def __call__(self) -> bool:
        return self.count > 0

    @property
    def forced(self) -> bool:
        return self.count > 1

    def handle(self, signum: int, frame: Any) -> None:
        self.count += 1
        name = signal.Signals(signum).name
        self.signal_name = self.signal_name or name
        if self._abort:
            self._abort = False
            self.log(f"mxflow: {name} during start-up: stopping now")
            raise KeyboardInterrupt
        if self.count == 1:
            self.log(
                f"mxflow: {name}: no new datasets will be started; finishing those running "
                "(send it again to stop now — they will be resumed next time)"
            )
        else:
            self.log(f"mxflow: {name}: stopping now")

    @contextmanager
    def aborting(self) -> Iterator[None]:
        """Within: a signal stops at once (KeyboardInterrupt), as one that came before."""
        if self():
            raise KeyboardInterrupt
        self._abort = True
        try:
            yield
        finally:
            self._abort = False

    @contextmanager
    def installed(self) -> Iterator[StopFlag]:
        if threading_main():
            old = {s: signal.signal(s, self.handle) for s in (signal.SIGINT, signal.SIGTERM)}
        else:
            old = {}
        try:
            yield self
        finally:
            for s, h in old.items():
                signal.signal(s, h)


def threading_main() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def peak_memory_mb() -> tuple[float, float]:
    """Peak resident memory (MB) of this process and of its largest finished child.

    From ``getrusage`` (``ru_maxrss`` is in KiB on Linux): RUSAGE_SELF is the
    orchestrator; RUSAGE_CHILDREN the largest waited-for descendant (a Dask
    worker, or a DIALS program run by one).
    """
    self_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    child_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return self_kb / 1024, child_kb / 1024


@contextmanager
def session(
    out: Path,
    command: str,
    config: RunConfig,
    log: Callable[[str], None] = _log,
    stop: StopFlag | None = None,
):
    """Lock OUT, open the catalog, reset interrupted rows, start the cluster; clean up after.

    Yields ``(catalog, executor)``.  Runs the catalog still has as ``running``
    (killed: no live run can hold OUT's lock now) are recorded as interrupted.  This run is recorded ``ok`` only when it ended
    without a signal (``stop``) and with every dataset it queued recorded;
    otherwise ``interrupted``, with a note saying why (``failed`` on an error).  A
    signal during the cluster's start-up stops it at once.  A batch system that is not
    installed is an error before OUT is locked or the catalog opened.
    """
    t0 = time.perf_counter()
    check_batch_system(config.cluster)
    with RunLock(out):
        _refuse_process_out(out, command)
        catalog = Catalog(out)
        for r in catalog.close_stale_runs(note=gone_note):
            started = time.strftime("%Y-%m-%d %H:%M", time.localtime(r["started"] or 0))
            log(
                f"mxflow: the earlier run '{r['command']}' (PID {r['pid']} on {r['host']}, "
                f"started {started}) ended without recording its end (killed?); "
                "recorded as interrupted"
            )
        run_id = catalog.start_run(command, os.getpid(), socket.gethostname())
        n_reset = catalog.reset_interrupted()
        if n_reset:
            log(f"mxflow: resuming {n_reset} dataset(s) interrupted in an earlier run")
        handle = None
        executor = None
        status = "failed"
        try:
            with stop.aborting() if stop is not None else contextlib.nullcontext():
                handle = start_cluster(
                    config.cluster,
                    config.workers,
                    config.nproc,
                    config.cluster_config,
                    config.retries,
                    dashboard=config.dashboard,
                )
            log(f"mxflow: {handle.description}")
            if config.dashboard:
                log(
                    f"mxflow: Dask dashboard (this machine only): {handle.dashboard_link}"
                    if handle.dashboard_link
                    else f"mxflow: Dask dashboard {handle.info.get('dashboard', 'not started')}"
                )
            options = ProcessingOptions(**{**config.options.__dict__, "nproc": handle.nproc})
            executor = Executor(
                out,
                catalog,
                handle,
                run_id,
                options,
                process_fn=config.process_fn,
                retries=config.retries,
                retry_failed=config.retry_failed,
                progress=config.progress,
                log=log,
                file_log=log.to_file if isinstance(log, RunLog) else None,
            )
            yield catalog, executor
            status = "ok"
        except KeyboardInterrupt:
            status = "interrupted"
            if handle is None:  # a signal during the cluster's start-up
                abandon_unstarted_clusters()
            raise
        finally:
            if executor is not None:
                if executor.in_flight or executor.queue:
                    n = executor.checkpoint()
                    status = "interrupted" if status != "failed" else status
                    if n:
                        log(f"mxflow: {n} dataset(s) interrupted; rerun to resume them")
                executor.close()
            if handle is not None:
                handle.close()
            write_summary(out, catalog)
            rss, child = peak_memory_mb()
            undone = executor.left_undone if executor is not None else 0
            signalled = stop is not None and stop()
            if status == "ok" and (signalled or undone):
                status = "interrupted"
            catalog.finish_run(
                run_id,
                status,
                wall_s=time.perf_counter() - t0,
                peak_rss_mb=rss,
                children_peak_rss_mb=child,
                note=_interrupted_note(stop, executor, undone) if status == "interrupted" else None,
            )
            catalog.close()


def _interrupted_note(stop: StopFlag | None, executor: Executor | None, undone: int) -> str:
    """Why a run counts as interrupted: 'stopped by SIGTERM; 4 dataset(s) not processed …'."""
    parts = []
    name = stop.signal_name if stop is not None else None
    parts.append(f"stopped by {name or 'an interrupt'}" + ("" if executor else " during start-up"))
    if undone:
        parts.append(f"{undone} dataset(s) not processed (pending; the next run resumes them)")
    return "; ".join(parts)


def _refuse_process_out(out: Path, command: str) -> None:
    """A summary.json without a catalog is another command's ('mxflow process'): a run
    would replace it, and its datasets would vanish from the record."""
    if (out / SUMMARY_NAME).is_file() and not catalog_path(out).exists():
        from mxflow.errors import BadInputError

        raise BadInputError(
            str(out),
            f"holds a summary.json but no mxflow catalog ({catalog_path(out).name}), as "
            f"'mxflow process' writes; 'mxflow {command.split()[0]}' would replace that "
            "summary.json: choose another --workdir (or remove the summary.json)",
        )


@dataclass
class RunOutcome:
    """Status counts of the catalog after a run, whether a signal stopped it, the
    datasets it left out because their files were still being written, and the files
    discovery rejected ((path, reason): never processed, recorded in the catalog)."""

    counts: dict[str, int]
    stopped: bool = False
    still_written: list[str] = field(default_factory=list)
    found_nothing: bool = False
    failed_merges: list[str] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)


def discover_settled(
    root: Path,
    config: RunConfig,
    log: Callable[[str], None],
    sleep=time.sleep,
    waited: set[str] | None = None,
) -> Collection:
    """The collection under ``root``, once no dataset is still being written, or at the
    timeout ``config.settle_timeout_s`` (s); those still being written then are left out.

    What `mxflow run` uses on data copied a moment ago; `mxflow watch` polls instead.
    ``waited``, when given, receives the names of the datasets found still being written.
    """
    t_end = time.monotonic() + config.settle_timeout_s
    collection = discover(root, config)
    while collection.incomplete and (left := t_end - time.monotonic()) > 0:
        if waited is not None:
            waited.update(d.name for d in collection.incomplete)
        log(
            f"mxflow: waiting for {len(collection.incomplete)} dataset(s) still being written "
            f"(at most {left:.0f} s more; --settle-timeout)"
        )
        sleep(min(left, max(1.0, config.settle_s or 0.0)))
        collection = discover(root, config)
    return collection


def run_collection(
    root: str | Path, out: str | Path, config: RunConfig, log: Callable[[str], None] = _log
) -> RunOutcome:
    """Process every dataset and wedge under ``root`` into ``out``; then merge and hit maps.

    Safe to rerun: finished datasets are not redone, interrupted ones resume.
    """
    root, out = Path(root), Path(out)
    t0 = time.perf_counter()
    run_log = RunLog(log)  # also to OUT/run.log, once the run holds OUT
    try:
        return _run_collection(root, out, config, run_log, t0)
    finally:
        run_log.close()


def open_run_log(log: Callable[[str], None], out: Path, command: str) -> None:
    """Start writing ``log`` (a :class:`RunLog`) to ``OUT/run.log``, after a header line."""
    if isinstance(log, RunLog):
        log.open(out / RUN_LOG, f"==== mxflow {command} → {out} (pid {os.getpid()})")


def after_processing(
    out: Path,
    root: Path,
    catalog: Catalog,
    config: RunConfig,
    collection: Collection,
    log: Callable[[str], None],
) -> list[str]:
    """Merge every sample and make the hit maps (as ``config`` asks); returns the
    closing hints (pins of one cell left apart, each too little to merge)."""
    hints: list[str] = []
    if config.merge:
        settings = post.sample_settings(collection.datasets)
        given = post.given_samples(config.sample_sheet, config.default_sample)
        post.merge_samples(
            out,
            catalog,
            config.options,
            log,
            settings,
            group_by_cell=config.group_by_cell,
            given=given,
            thresholds=config.thresholds,
        )
        hints = post.merge_hints(catalog, given)
    if config.hitmap:
        post.hitmaps(out, root, catalog, collection.raster_scans, log)
    return hints


def _run_collection(root: Path, out: Path, config: RunConfig, log: RunLog, t0: float) -> RunOutcome:
    check_batch_system(config.cluster)  # before waiting for data and before OUT is touched
    waited: set[str] = set()
    collection = discover_settled(root, config, log, waited=waited)
    items = plan(collection, root, config.wedge_deg)
    n_sweeps = sum(1 for i in items if i.kind == "sweep")
    n_wedges = len(items) - n_sweeps
    for problem in collection.problems:
        log(f"mxflow: skipped: {_problem_text(problem)}")
    for problem in collection.warnings:
        log(f"mxflow: warning: {_problem_text(problem)}")
    waiting = collection.waiting or {d.name: "still being written" for d in collection.incomplete}
    for name, why in sorted(waiting.items()):
        log(f"mxflow: left out (still being written at the timeout): {name}: {why}")
    log(
        f"mxflow: {n_sweeps} dataset(s), {n_wedges} wedge(s) of {config.wedge_deg:g}°, "
        f"{len(collection.raster_scans)} raster scan(s)"
        + (f", {len(waiting)} still being written" if waiting else "")
    )
    stop = StopFlag(log)
    command = "run " + str(root)
    with stop.installed(), session(out, command, config, log, stop) as (catalog, executor):
        open_run_log(log, out, command)
        # files discovery could not use: in the catalog (status, summary.json, reports)
        catalog.record_rejected(collection.problems, executor.run_id)
        executor.add(items)
        n_todo = len(executor.queue)
        log(f"mxflow: {n_todo} to process, {len(items) - n_todo} already done")
        finished = executor.run_all(should_stop=stop)
        if not finished:
            # first signal: let the running ones finish unless a second one comes
            executor.queue.clear()
            while executor.in_flight and not stop.forced:
                executor.collect(0.5)
        executor.maybe_write_summary(force=True)
        hints = after_processing(out, root, catalog, config, collection, log) if finished else []
        counts = catalog.counts()
        merges = catalog.merges()
        processed = dict(executor.tracker.counts)
        write_summary(out, catalog)
        report = _write_reports(out, log)  # still holding OUT's lock
    for m in merges:
        log(format_record(m, out))
    merge_counts: dict[str, int] = {}
    for m in merges:
        merge_counts[m.status] = merge_counts.get(m.status, 0) + 1
    tally = RunTally(
        elapsed_s=time.perf_counter() - t0,
        processed=processed,
        already_done=len(items) - n_todo,
        not_started=n_todo - sum(processed.values()),
        waited_for=len(waited | set(waiting)),
        left_out=len(waiting),
        merges=merge_counts,
        catalog=counts,
    )
    log(
        format_final_line(tally)
        + f"; summary in {out / 'summary.json'}"
        + (f"; report: {report}" if report else "")
    )
    for hint in hints:  # not an error (a fragment screen's pins are rightly apart)
        log(hint)
    if waiting:
        log(
            f"mxflow: {len(waiting)} dataset(s) were still being written and were NOT processed; "
            "run again when the copy is complete (or use mxflow watch)"
        )
    rejected = sorted(collection.problems)
    if rejected:
        log(
            f"mxflow: {len(rejected)} file(s) could not be used and were NOT processed "
            f"(listed with their reasons by 'mxflow status {out}', in summary.json and in "
            "the report):"
        )
        for problem in rejected[:10]:
            log(f"  {_problem_text(problem)}")
        if len(rejected) > 10:
            log(f"  … and {len(rejected) - 10} more")
    nothing = not items and not collection.raster_scans
    if nothing:
        log(f"mxflow: no rotation dataset or raster scan found under {root}")
    failed = [m.name for m in merges if m.status == "failed"]
    return RunOutcome(counts, stop(), sorted(waiting), nothing, failed, rejected)


def _write_reports(out: Path, log) -> Path | None:
    """The HTML reports of ``out`` (index page path), or None if they could not be written."""
    try:
        from mxflow.report import write_reports

        write_reports(out)
    except Exception as exc:  # a report problem must not hide the processing results
        log(f"mxflow: could not write the HTML reports: {exc}")
        return None
    return out / "report" / "index.html"


def _problem_text(problem: tuple[str, str]) -> str:
    path, why = problem
    return f"{path}: {why}"
