"""Progress of a run in words: one line per finished dataset, per merge stage, and the end.

On a terminal ``mxflow run`` / ``mxflow watch`` draw a progress bar; without
one (nohup, a batch job, output redirected to a file, or ``--no-progress``)
the bar would stay silent for as long as the datasets take, so each finished
dataset gets one line instead::

    mxflow: [3/9] proc/CPS0001-01/data00/multi_0: ok in 1 min 02 s: P 43 21 2, d_min 1.80 Å, CC½ 0.998, 99.5% complete; 1 failed, about 4 min 10 s left

Computing and wording are apart: :class:`ProgressTracker` counts and times
(:func:`eta_s` is the estimate), the ``format_*`` functions turn one typed
record into one line and do nothing else.  :class:`RunLog` sends every line to
the console and to ``OUT/run.log``.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from mxflow.model import ClusterResult, DatasetResult, LiveMerge

#: the run's log file in OUT: every line `mxflow run` / `mxflow watch` print, time-stamped
RUN_LOG = "run.log"
#: a failure reason in a progress line is cut to this many characters
REASON_WIDTH = 100


def is_terminal() -> bool:
    """Whether both stdout and stderr are terminals (the bar is drawn only then)."""
    return _isatty(sys.stdout) and _isatty(sys.stderr)


def _isatty(stream: IO | None) -> bool:
    try:
        return stream is not None and stream.isatty()
    except (AttributeError, ValueError):  # replaced or closed streams
        return False


# -- computing ------------------------------------------------------------------


def eta_s(mean_s: float | None, remaining: int, workers: int) -> float | None:
    """Seconds left for ``remaining`` datasets taking ``mean_s`` each on ``workers`` workers.

    The remaining work (``remaining × mean_s``) is shared by as many workers as
    there are datasets left to give them (``min(workers, remaining)``).  0 when
    nothing remains; None when there is no mean yet (nothing finished) or no worker.
    The datasets running now count as whole ones, so the estimate errs long.
    """
    if remaining <= 0:
        return 0.0
    if mean_s is None or not math.isfinite(mean_s) or mean_s < 0 or workers < 1:
        return None
    return mean_s * remaining / min(workers, remaining)


@dataclass
class DatasetProgress:
    """One finished dataset and where the run stands after it (times in s, d in Å)."""

    name: str
    status: str  # ok, failed, skipped
    elapsed_s: float
    done: int  # datasets finished in this run so far, this one included
    total: int  # datasets this run has to process (grows in watch mode)
    failed: int  # of ``done``
    eta_s: float | None  # time left; None: not known
    reason: str = ""
    space_group: str | None = None
    d_min: float | None = None
    cc_half: float | None = None
    completeness: float | None = None  # fraction 0-1
    watching: bool = False  # mxflow watch: more datasets may still arrive


@dataclass
class ProgressTracker:
    """Counts and times the datasets of a run as they finish (no output of its own)."""

    workers: int = 1
    total: int = 0
    done: int = 0
    counts: dict[str, int] = field(default_factory=dict)  # status -> number
    durations: list[float] = field(default_factory=list)
    watching: bool = False  # mxflow watch: ``total`` is what has been found so far

    @property
    def failed(self) -> int:
        return self.counts.get("failed", 0)

    @property
    def mean_s(self) -> float | None:
        return sum(self.durations) / len(self.durations) if self.durations else None

    def eta_s(self) -> float | None:
        return eta_s(self.mean_s, self.total - self.done, self.workers)

    def finished(self, name: str, result: DatasetResult, elapsed_s: float) -> DatasetProgress:
        """Count ``result`` (of ``name``, which took ``elapsed_s``); where the run stands now."""
        self.done += 1
        self.counts[result.status] = self.counts.get(result.status, 0) + 1
        if math.isfinite(elapsed_s) and elapsed_s >= 0:
            self.durations.append(elapsed_s)
        ov = result.stats.overall if result.stats else None
        return DatasetProgress(
            name=name,
            status=result.status,
            elapsed_s=elapsed_s,
            done=self.done,
            total=max(self.total, self.done),
            failed=self.failed,
            eta_s=self.eta_s(),
            watching=self.watching,
            reason=result.reason,
            space_group=result.space_group,
            d_min=result.d_min,
            cc_half=ov.cc_half if ov else None,
            completeness=ov.completeness if ov else None,
        )


# -- wording ----------------------------------------------------------------------


def format_duration(seconds: float | None) -> str:
    """``42 s``, ``3 min 05 s``, ``2 h 07 min`` (``?`` when not known)."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "?"
    s = round(seconds)
    if s < 60:
        return f"{seconds:.1f} s" if seconds < 10 else f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def _finite(v: float | None) -> bool:
    return v is not None and math.isfinite(v)


def short_reason(reason: str, width: int = REASON_WIDTH) -> str:
    """The first line of ``reason``, cut to ``width`` characters."""
    text = " ".join(reason.split("\n", 1)[0].split()) or "no reason given"
    return text if len(text) <= width else text[: width - 1] + "…"


def figures(
    space_group: str | None,
    d_min: float | None,
    cc_half: float | None,
    completeness: float | None,
) -> str:
    """``P 43 21 2, d_min 1.80 Å, CC½ 0.998, 99.5% complete`` (what is known of it)."""
    parts = [space_group] if space_group else []
    if _finite(d_min):
        parts.append(f"d_min {d_min:.2f} Å")
    if _finite(cc_half):
        parts.append(f"CC½ {cc_half:.3f}")
    if _finite(completeness) and completeness > 0:
        parts.append(f"{100 * completeness:.1f}% complete")
    return ", ".join(parts)


def format_eta(p: DatasetProgress) -> str:
    """Where the run stands: ``1 failed, about 4 min 10 s left`` / ``all done`` (``all
    found so far done, watching for more`` in watch mode)."""
    failed = f"{p.failed} failed, " if p.failed else ""
    if p.done >= p.total:
        return (
            f"{failed}all found so far done, watching for more"
            if p.watching
            else f"{failed}all done"
        )
    if p.eta_s is None:
        return f"{failed}{p.total - p.done} to go"
    return f"{failed}about {format_duration(p.eta_s)} left"


def format_dataset_line(p: DatasetProgress) -> str:
    """One finished dataset as one log line (see the module docstring)."""
    head = f"mxflow: [{p.done}/{p.total}] {p.name}: "
    took = format_duration(p.elapsed_s)
    if p.status == "ok":
        what = f"ok in {took}"
        numbers = figures(p.space_group, p.d_min, p.cc_half, p.completeness)
        if numbers:
            what += f": {numbers}"
    else:
        what = f"{p.status.upper()} in {took}: {short_reason(p.reason)}"
    return f"{head}{what}; {format_eta(p)}"


def format_bar_postfix(p: ProgressTracker) -> str:
    """What the terminal bar shows after ``done/total``: ``1 failed, ~4 min 10 s left``."""
    parts = [f"{p.failed} failed"] if p.failed else []
    if p.done < p.total:
        eta = p.eta_s()
        if eta is not None:
            parts.append(f"~{format_duration(eta)} left")
    return ", ".join(parts)


@dataclass
class MergeProgress:
    """One merge of ``mxflow run`` (route/sample[/λ]) at its start or end."""

    name: str
    index: int  # 1-based among the merges this run does
    total: int
    n_datasets: int
    status: str = ""  # "" at the start; ok / failed at the end
    reason: str = ""
    n_clusters: int = 0
    n_merged: int = 0
    elapsed_s: float | None = None


def _merge_head(m: MergeProgress) -> str:
    return f"mxflow: merge {m.index}/{m.total} {m.name}"


def format_merge_start(m: MergeProgress) -> str:
    return f"{_merge_head(m)}: merging {m.n_datasets} dataset(s)"


def format_cluster_line(m: MergeProgress, label: str, cluster: ClusterResult) -> str:
    """One cluster of a merge: its figures, or why it was not merged."""
    n = len(cluster.members or cluster.node_members)
    head = f"{_merge_head(m)}: cluster {label} ({n} dataset(s))"
    if not cluster.ok:
        return f"{head}: not merged: {short_reason(cluster.error or 'no statistics')}"
    numbers = figures(cluster.space_group, cluster.d_min, cluster.cc_half, cluster.completeness)
    return f"{head}: {numbers}" if numbers else head


def format_merge_done(m: MergeProgress) -> str:
    took = format_duration(m.elapsed_s)
    if m.status == "ok":
        return f"{_merge_head(m)}: ok in {took}, {m.n_merged} of {m.n_clusters} cluster(s) merged"
    return f"{_merge_head(m)}: {m.status.upper()} in {took}: {short_reason(m.reason)}"


def format_live_line(live: LiveMerge, seconds: float) -> str:
    """A live merge just updated: how many datasets, its figures, how long the update took."""
    used = len(live.used)
    left = len(live.datasets) - used
    ov = live.stats.overall if live.stats else None
    numbers = figures(
        live.space_group,
        live.d_min,
        ov.cc_half if ov else None,
        ov.completeness if ov else None,
    )
    head = f"mxflow: live merge {live.sample}: {used} dataset(s)"
    if left:
        head += f" ({left} left out)"
    return f"{head}: {numbers or 'no statistics yet'} (updated in {seconds:.1f} s)"


@dataclass
class RunTally:
    """What a run did, for its last line."""

    elapsed_s: float
    processed: dict[str, int]  # status -> datasets processed in this run
    already_done: int  # found finished (or failed) by an earlier run: not processed again
    not_started: int = 0  # queued but not processed (the run was stopped)
    waited_for: int = 0  # still being written when first found: the run waited for them
    left_out: int = 0  # still being written at the timeout: not processed
    merges: dict[str, int] = field(default_factory=dict)  # status -> merges in the catalog
    catalog: dict[str, int] = field(default_factory=dict)  # status -> datasets in the catalog


_ORDER = ("ok", "failed", "skipped", "pending", "running")


def _counts(counts: dict[str, int]) -> str:
    """``6 ok, 1 failed`` (ok, failed, skipped first; nothing for a count of 0)."""
    order = sorted(counts, key=lambda s: (_ORDER.index(s) if s in _ORDER else len(_ORDER), s))
    return ", ".join(f"{counts[s]} {s}" for s in order if counts[s])


def format_final_line(t: RunTally) -> str:
    """``mxflow: done in 3 min 10 s: 7 processed (6 ok, 1 failed), 2 already done, ...``."""
    n = sum(t.processed.values())
    parts = [f"{n} processed" + (f" ({_counts(t.processed)})" if n else "")]
    parts.append(f"{t.already_done} already done")
    if t.not_started:
        parts.append(f"{t.not_started} not started (stopped)")
    waited = f"{t.waited_for} waited for"
    if t.left_out:
        waited += f" ({t.left_out} still being written at the timeout: NOT processed)"
    parts.append(waited)
    text = f"mxflow: done in {format_duration(t.elapsed_s)}: " + ", ".join(parts)
    if t.merges:
        text += f"; merges: {_counts(t.merges)}"
    if t.catalog:
        text += f"; catalog: {_counts(t.catalog)}"
    return text


# -- the log file ---------------------------------------------------------------


class RunLog:
    """A log function: each message goes to ``console`` and, time-stamped, to a file.

    Messages before :meth:`open` are kept and written when the file is opened
    (once the run holds OUT's lock, so a run refused by the lock never writes
    into the log of the run that holds it).  A file that cannot be written
    never stops the run: the console still gets every line.
    """

    def __init__(self, console: Callable[[str], None], clock: Callable[[], float] = time.time):
        self.console = console
        self.clock = clock
        self.started = clock()  # the header's time: before any message kept for the file
        self.pending: list[str] = []
        self.fh: IO[str] | None = None
        self.path: Path | None = None

    def _stamp(self, message: str, at: float | None = None) -> str:
        when = self.clock() if at is None else at
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(when))
        lines = message.splitlines() or [""]
        pad = " " * len(stamp)  # a message of several lines: one stamp, the rest indented
        return "".join(f"{stamp if i == 0 else pad}  {ln}\n" for i, ln in enumerate(lines))

    def __call__(self, message: str) -> None:
        self.console(message)
        self.to_file(message)

    def to_file(self, message: str) -> None:
        """``message`` to the file only (what the terminal shows as a bar)."""
        text = self._stamp(message)
        if self.fh is None:
            self.pending.append(text)
        else:
            self._write(text)

    def _write(self, text: str) -> None:
        if self.fh is None:
            return
        try:
            self.fh.write(text)
            self.fh.flush()
        except (OSError, RuntimeError, ValueError):  # disk full, re-entered from a signal
            pass

    def open(self, path: str | Path, header: str = "") -> None:
        """Append to ``path`` from now on: ``header`` first, then the messages kept so far."""
        self.path = Path(path)
        try:
            self.fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (closed by close())
        except OSError as exc:
            self.console(f"mxflow: cannot write the log file {self.path}: {exc}")
            self.pending.clear()
            return
        if header:
            self._write(self._stamp(header, self.started))
        for text in self.pending:
            self._write(text)
        self.pending.clear()

    def close(self) -> None:
        if self.fh is not None:
            fh, self.fh = self.fh, None
            with contextlib.suppress(OSError):
                fh.close()
