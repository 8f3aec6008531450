"""Watch mode: process datasets as they arrive on disk.

Every ``interval`` seconds the tree is discovered again; each dataset that is
complete and stable (discovery leaves sweeps whose frames are still being
written in ``collection.incomplete``) and not yet in the catalog as finished
is handed to a worker at once, without waiting for the others.  Between
polls the loop records finished datasets as they come back, so the delay
from a dataset's last frame to the start of its processing is at most
discovery's settle time plus one interval (plus any wait for a free worker).

Without a terminal each finished dataset is one line of the output, as in
``mxflow run``; every line also goes to ``OUT/run.log``.

SIGINT / SIGTERM: no new datasets are started, the running ones finish and
are recorded, then watch exits; a second signal stops at once and the
interrupted datasets are resumed by the next ``run`` or ``watch``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mxflow.schedule.collection import (
    RunConfig,
    StopFlag,
    _log,
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
) -> WatchOutcome:
    """Poll ``root`` and process new complete datasets until stopped.

    With ``max_iterations`` (``--once`` is 1), stop polling after that many
    discoveries and finish what was found; otherwise run until SIGINT/SIGTERM.
    """
    root, out = Path(root), Path(out)
    run_log = RunLog(log)  # also to OUT/run.log, once watch holds OUT
    try:
        return _watch(root, out, config, interval, max_iterations, run_log)
    finally:
        run_log.close()


def _watch(
    root: Path,
    out: Path,
    config: RunConfig,
    interval: float,
    max_iterations: int | None,
    log: RunLog,
) -> WatchOutcome:
    stop = StopFlag(log)
    iteration = 0
    waiting: set[str] = set()
    command = f"watch {root}"
    with stop.installed(), session(out, command, config, log, stop) as (catalog, executor):
        open_run_log(log, out, command)
        while not stop():
            t_poll = time.monotonic()
            try:
                collection = discover(root, config)
            except Exception as exc:  # a transient filesystem error must not end watching
                log(f"mxflow watch: discovery failed ({type(exc).__name__}: {exc}); retrying")
                collection = None
            iteration += 1
            if collection is not None:
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
                executor.collect(min(1.0, remaining))
        if not stop():
            executor.run_all(should_stop=stop)
        executor.queue.clear()
        while executor.in_flight and not stop.forced:
            executor.collect(0.5)
        executor.maybe_write_summary(force=True)
        counts = catalog.counts()
    return WatchOutcome(iteration, counts, stopped=stop())
