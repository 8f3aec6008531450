"""Watch mode: process datasets as they arrive on disk.

Every ``interval`` seconds the tree is discovered again; each dataset that is
complete and stable (discovery leaves sweeps whose frames are still being
written in ``collection.incomplete``) and not yet in the catalog as finished
is handed to a worker at once, without waiting for the others.  Between
polls the loop records finished datasets as they come back, so the delay
from a dataset's last frame to the start of its processing is at most
discovery's settle time plus one interval (plus any wait for a free worker).

Live merges: whenever datasets finish, each whole dataset processed is
added to its sample's live merge (:mod:`mxflow.merge.live`: the running
cell, indexing choice and scales are kept, so an update costs the new
dataset plus a numpy pass over the observations, not a new merge), logged as
one line and shown by the dashboard.  They are provisional.

When watching ends (``--once``, ``--max-iterations``, or a first SIGINT /
SIGTERM), the running datasets finish and are recorded, and then every
sample is merged and the raster scans mapped exactly as ``mxflow run`` does
after processing (:func:`~mxflow.schedule.collection.after_processing`; a
merge of unchanged inputs is not redone).  A second signal stops at once;
the interrupted work is resumed by the next ``run`` or ``watch``.

Without a terminal each finished dataset is one line of the output, as in
``mxflow run``; every line also goes to ``OUT/run.log``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mxflow.schedule import post
from mxflow.schedule.collection import (
    RunConfig,
    StopFlag,
    _log,
    after_processing,
    discover,
    open_run_log,
    plan,
    session,
)
from mxflow.schedule.progress import RunLog

DEFAULT_INTERVAL_S = 10.0


@dataclass
class WatchOutcome:
    iterations: int
    counts: dict[str, int]
    stopped: bool


def watch_collection(
    root: str | Path,
    out: str | Path,
    config: RunConfig,
    interval: float = DEFAULT_INTERVAL_S,
    max_iterations: int | None = None,
    log: Callable[[str], None] = _log,
    live: bool = True,
) -> WatchOutcome:
    """Poll ``root`` and process new complete datasets until stopped.

    With ``max_iterations`` (``--once`` is 1), stop polling after that many
    discoveries and finish what was found; otherwise run until SIGINT/SIGTERM.
    ``live``: keep each sample's live merge up to date.  At the end, merge and
    map as ``config.merge`` and ``config.hitmap`` say (as ``mxflow run``).
    """
    root, out = Path(root), Path(out)
    run_log = RunLog(log)  # also to OUT/run.log, once watch holds OUT
    try:
        return _watch(root, out, config, interval, max_iterations, run_log, live)
    finally:
        run_log.close()


def _watch(
    root: Path,
    out: Path,
    config: RunConfig,
    interval: float,
    max_iterations: int | None,
    log: RunLog,
    live: bool,
) -> WatchOutcome:
    stop = StopFlag(log)
    iteration = 0
    waiting: set[str] = set()
    command = f"watch {root}"
    last = None  # the latest discovery that worked
    with stop.installed(), session(out, command, config, log, stop) as (catalog, executor):
        open_run_log(log, out, command)
        executor.tracker.watching = True  # "[n/n]" counts what has been found so far

        def collect(timeout: float) -> None:
            if executor.collect(timeout) and live:
                settings = post.sample_settings(last.datasets) if last else {}
                post.update_live_merges(out, catalog, config.options, log, settings)

        if live:  # datasets an earlier run or watch finished: in the live merge from the start
            post.update_live_merges(out, catalog, config.options, log)
        while not stop():
            t_poll = time.monotonic()
            try:
                collection = discover(root, config)
            except Exception as exc:  # a transient filesystem error must not end watching
                log(f"mxflow watch: discovery failed ({type(exc).__name__}: {exc}); retrying")
                collection = None
            iteration += 1
            if collection is not None:
                last = collection
                catalog.record_rejected(collection.problems, executor.run_id)
                n_new = executor.add(plan(collection, root, config.wedge_deg))
                executor.pump()
                incomplete = {d.name for d in collection.incomplete}
                if n_new or incomplete != waiting:
                    log(
                        f"mxflow watch: poll {iteration}: {n_new} new to process, "
                        f"{len(executor.in_flight)} running, {len(executor.queue)} queued, "
                        f"{len(incomplete)} still being written"
                    )
                waiting = incomplete
                executor.maybe_write_summary(force=bool(n_new))
            if max_iterations is not None and iteration >= max_iterations:
                break
            while not stop() and (remaining := interval - (time.monotonic() - t_poll)) > 0:
                collect(min(1.0, remaining))
        if not stop():
            while executor.busy and not stop():
                collect(1.0)
        executor.queue.clear()
        while executor.in_flight and not stop.forced:
            collect(0.5)
        executor.maybe_write_summary(force=True)
        if last is not None and not stop.forced:
            after_processing(out, root, catalog, config, last, log)
            executor.maybe_write_summary(force=True)
        counts = catalog.counts()
    return WatchOutcome(iteration, counts, stopped=stop())
