"""The orchestrator's loop: hand datasets to Dask workers and record what comes back.

:class:`Executor` keeps a local queue of work items and at most ``slots``
tasks in flight (one per worker), so that a dataset is marked ``running`` in
the catalog only when a worker is about to take it, and stopping (Ctrl-C,
SIGTERM) leaves nothing half-submitted.  For every item it first decides
whether work is needed at all (:meth:`Executor.decide`):

* ``ok`` in the catalog and its ``mxflow_result.json`` present → nothing to do;
* ``failed`` → nothing to do unless ``retry_failed``;
* anything else, but a finished result file in its work directory (a worker
  finished just before the previous orchestrator was killed) → the result is
  recorded, nothing is recomputed;
* otherwise → processed (the engine skips steps already complete there).

Results are stored in the catalog one transaction each, and ``summary.json``
is rewritten atomically (at most every ``summary_every`` seconds, and at the
end).

Progress: on a terminal a bar (done/total, failed, time left); otherwise, or
with ``progress=False``, one line per finished dataset through ``log``
(:mod:`mxflow.schedule.progress`).
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mxflow.catalog.db import Catalog
from mxflow.catalog.summary import write_summary
from mxflow.model import Dataset, DatasetResult, ProcessingOptions
from mxflow.schedule.cluster import RESOURCE, ClusterHandle
from mxflow.schedule.progress import (
    ProgressTracker,
    format_bar_postfix,
    format_dataset_line,
    is_terminal,
)
from mxflow.schedule.tasks import (
    DEFAULT_PROCESS_FN,
    RESULT_FILE,
    ProcessFn,
    read_result_file,
    run_task,
)


@dataclass
class WorkItem:
    """One unit of processing: a dataset (or wedge) and its work directory key.

    ``key`` is the work directory relative to OUT (also the catalog key);
    ``kind`` is ``sweep`` or ``wedge``; ``parent`` the key of the sweep a
    wedge was cut from.
    """

    key: str
    dataset: Dataset
    kind: str = "sweep"
    parent: str | None = None


class Executor:
    """Submit work items to a Dask cluster and record their results in the catalog."""

    def __init__(
        self,
        out: str | Path,
        catalog: Catalog,
        handle: ClusterHandle,
        run_id: int,
        options: ProcessingOptions,
        process_fn: str | ProcessFn = DEFAULT_PROCESS_FN,
        retries: int = 2,
        retry_failed: bool = False,
        progress: bool = True,
        summary_every: float = 2.0,
        log=None,
        file_log=None,
    ):
        self.out = Path(out).resolve()
        self.catalog = catalog
        self.handle = handle
        self.run_id = run_id
        self.options = options
        self.process_fn = process_fn
        self.retries = retries
        self.retry_failed = retry_failed
        self.summary_every = summary_every
        self.queue: deque[WorkItem] = deque()
        self.in_flight: dict[Any, WorkItem] = {}  # future -> item
        self.submitted: dict[Any, float] = {}  # future -> time.monotonic() at submission
        self.seen: set[str] = set()
        self.done = {"ok": 0, "failed": 0, "skipped": 0, "reused": 0}
        # items queued for processing, and how many of them came back recorded
        self.n_queued = 0
        self.n_recorded = 0
        self._last_summary = 0.0
        self.log = log or (lambda msg: print(msg, file=sys.stderr))
        # where the per-dataset lines go while the bar is drawn (the run's log file)
        self.file_log = file_log
        self.tracker = ProgressTracker(workers=handle.slots)
        self.bar = None
        # without a terminal (or with --no-progress) a bar says nothing: one line per dataset
        self.lines = not (progress and is_terminal())
        if not self.lines:
            from tqdm import tqdm

            self.bar = tqdm(
                total=0,
                unit="dataset",
                desc="processing",
                leave=True,
                bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} "
                "[{elapsed}{postfix}]",
            )

    # -- deciding ---------------------------------------------------------
    def decide(self, item: WorkItem) -> str:
        """'done', 'adopt' (record a finished result file) or 'process'."""
        status = self.catalog.status_of(item.key)
        workdir = self.out / item.key
        if status == "ok":
            if (workdir / RESULT_FILE).exists():
                return "done"
            self.catalog.set_status(
                item.key, "pending", "outputs missing from the work directory; redoing"
            )
            return "process"
        if status in ("failed", "skipped") and not self.retry_failed:
            return "done"
        previous = read_result_file(workdir)
        if previous is not None and (
            previous.status == "ok" or (previous.status == "failed" and not self.retry_failed)
        ):
            return "adopt"
        return "process"

    def add(self, items: list[WorkItem]) -> int:
        """Register items in the catalog and queue those needing work; returns how many queued."""
        queued = 0
        for item in items:
            if item.key in self.seen:
                continue
            self.seen.add(item.key)
            self.catalog.add_dataset(item.key, item.dataset, item.kind, item.parent)
            action = self.decide(item)
            if action == "done":
                continue
            if action == "adopt":
                result = read_result_file(self.out / item.key)
                self.catalog.record_result(item.key, result, self.run_id)
                self.done["reused"] += 1
                continue
            self.queue.append(item)
            queued += 1
        self.n_queued += queued
        self.tracker.total += queued
        if self.bar is not None and queued:
            self.bar.total += queued
            self.bar.refresh()
        return queued

    # -- running ------------------------------------------------------------
    @property
    def busy(self) -> bool:
        return bool(self.queue or self.in_flight)

    @property
    def left_undone(self) -> int:
        """Items queued for processing that never came back recorded (still queued, in
        flight, put back by :meth:`checkpoint`, or dropped from the queue by a stop):
        a run that leaves any is not complete."""
        return self.n_queued - self.n_recorded

    def pump(self) -> None:
        """Hand queued items to the cluster while it has free slots."""
        options = self.options
        while self.queue and len(self.in_flight) < self.handle.slots:
            item = self.queue.popleft()
            self.catalog.mark_running(item.key, self.run_id)
            token = f"mxflow-{item.key}-{time.time_ns()}"
            future = self.handle.client.submit(
                run_task,
                item.dataset,
                str(self.out / item.key),
                str(self.out),
                options,
                self.process_fn,
                token,
                key=token,
                pure=False,
                retries=self.retries,
                resources={RESOURCE: 1},
            )
            self.in_flight[future] = item
            self.submitted[future] = time.monotonic()

    def collect(self, timeout: float) -> int:
        """Wait up to ``timeout`` s for tasks to finish; record them; returns how many finished.

        A batch cluster's jobs that ended (cancelled, killed) are replaced first: their
        tasks are rescheduled by Dask, and need a worker to run on."""
        self.handle.replace_lost_jobs()
        self.pump()
        if not self.in_flight:
            if timeout > 0:
                time.sleep(timeout)
            return 0
        from distributed import wait

        try:
            done, _ = wait(list(self.in_flight), timeout=timeout, return_when="FIRST_COMPLETED")
        except TimeoutError:
            return 0
        for future in done:
            item = self.in_flight.pop(future)
            self._record(item, future)
        self.pump()
        self.maybe_write_summary()
        return len(done)

    def _record(self, item: WorkItem, future: Any) -> None:
        since = self.submitted.pop(future, None)
        try:
            result = future.result()
        except Exception as exc:  # KilledWorker after too many deaths, cancelled …
            name = type(exc).__name__
            if name == "KilledWorker":
                # the batch system may know why (Slurm: killed for memory, walltime …)
                fate = self.handle.worker_fate(getattr(exc.last_worker, "name", ""))
                reason = f"the worker processing it died {self.retries + 1} times " + (
                    f"({fate})" if fate else "(crash or out of memory?)"
                )
            else:
                reason = f"{name}: {exc}"
            result = DatasetResult(
                name=item.dataset.name,
                path=item.dataset.sweep.template,
                status="failed",
                reason=reason,
            )
        self.catalog.record_result(item.key, result, self.run_id)
        self.n_recorded += 1
        self.done[result.status if result.status in self.done else "failed"] += 1
        # the dataset's own time on its worker; else (a worker that died) since submission
        elapsed = result.wall_s or (time.monotonic() - since if since is not None else 0.0)
        progress = self.tracker.finished(item.key, result, elapsed)
        if self.lines:
            self.log(format_dataset_line(progress))
            return
        if self.file_log is not None:
            self.file_log(format_dataset_line(progress))
        if result.status == "failed":
            with self.bar.external_write_mode():
                self.log(f"mxflow: {item.key}: failed: {result.reason}")
        self.bar.set_postfix_str(format_bar_postfix(self.tracker), refresh=False)
        self.bar.update(1)

    def run_all(self, poll: float = 1.0, should_stop=lambda: False) -> bool:
        """Process everything queued; returns False if stopped early by ``should_stop``."""
        while self.busy:
            if should_stop():
                return False
            self.collect(poll)
        return True

    def checkpoint(self) -> int:
        """Stop now: cancel tasks in flight, put them back to pending; returns how many."""
        n = 0
        futures = list(self.in_flight)
        with contextlib.suppress(Exception):
            self.handle.client.cancel(futures, force=True)
        for future in futures:
            item = self.in_flight.pop(future)
            self.submitted.pop(future, None)
            self.catalog.set_status(item.key, "pending", "interrupted by the user; will be resumed")
            n += 1
        self.queue.clear()
        return n

    # -- output -------------------------------------------------------------
    def maybe_write_summary(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last_summary >= self.summary_every:
            write_summary(self.out, self.catalog)
            self._last_summary = now

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def abandon_unstarted_clusters() -> int:
    """Close the Dask clusters whose start-up a signal cut short; returns how many.

    A KeyboardInterrupt raised while ``LocalCluster(...)`` starts leaves a
    cluster object that was never returned; Dask would close it again at exit and
    print a traceback (its workers are still "init").  Its worker processes are
    closed here as far as Dask can, and it is taken off Dask's list.
    """
    try:
        from distributed.deploy.spec import SpecCluster
    except ImportError:
        return 0
    n = 0
    for cluster in list(SpecCluster._instances):
        if getattr(cluster.status, "name", "") == "closed":
            continue
        with contextlib.suppress(BaseException):
            cluster.close(timeout=5)
        SpecCluster._instances.discard(cluster)
        n += 1
    return n
