"""One mxflow run per output directory: an OS-level lock on ``OUT/.mxflow.lock``.

The lock is ``fcntl.flock`` (exclusive, non-blocking) on a small file that
also holds the holder's PID, host and start time.  The kernel drops the lock
when the holding process dies for any reason (``kill -9`` included), so a
crashed run never leaves a stale lock behind; the file itself may stay and is
simply re-locked by the next run.

Every mxflow command that writes into an output directory holds its lock while
it writes (``run``, ``watch``, ``process``, ``merge``, ``report``, ``hitmap``),
so a second writer is refused with one line naming the holder's PID before it
writes anything.  A directory inside a locked one (``OUT/proc`` while a run
holds ``OUT``) is refused too.

The lock also tells whether a ``running`` row of the catalog's ``runs`` table
is alive: a run holds its OUT's lock from before its row is written until after
its end is recorded, so a ``running`` run whose PID is dead, or that does not
hold the lock, was killed (:func:`run_is_gone`); the next command holding the
lock records it as interrupted (:func:`locked`).
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mxflow.errors import BadInputError, MxflowError

LOCK_NAME = ".mxflow.lock"


class OutputDirBusy(MxflowError):
    """Another mxflow run holds the output directory."""


class RunLock:
    """Exclusive lock on an output directory, held from :meth:`acquire` to :meth:`release`.

    Use as a context manager::

        with RunLock(out):
            ...  # the only mxflow run writing to ``out``
    """

    def __init__(self, out: str | Path, create: bool = True):
        self.out = Path(out)
        self.path = self.out / LOCK_NAME
        # False: OUT must exist already (a command that only adds to an output directory)
        self.create = create
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        """Take the lock or raise :class:`OutputDirBusy` naming the holder's PID.

        Refused also when a directory above OUT is locked by another process (OUT
        is inside a live run's output directory); nothing is written then.  OUT
        is created unless ``create`` is False (then a missing OUT is a
        :class:`~mxflow.errors.BadInputError`); an OUT where the lock file cannot
        be written (read-only, no permission) is an :class:`MxflowError` naming it.
        """
        _refuse_locked_parent(self.out)
        if self.create:
            try:
                self.out.mkdir(parents=True, exist_ok=True)
            except FileExistsError:
                raise BadInputError(str(self.out), "exists and is not a directory") from None
            except OSError as exc:
                raise MxflowError(f"{self.out}: cannot create it ({exc.strerror})") from None
        elif not self.out.is_dir():
            raise BadInputError(
                str(self.out), "not a directory (expected an mxflow output directory)"
            )
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            if exc.errno not in (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC):
                raise
            raise MxflowError(
                f"{self.path}: cannot write the output directory's lock file ({exc.strerror}); "
                f"mxflow writes into {self.out}, so it must be writable"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise OutputDirBusy(
                f"{self.out} is in use by another mxflow run ({holder}); "
                "wait for it to finish or stop it, or choose another --workdir"
            ) from None
        # we hold the lock: record who we are (readers see it only while we hold it)
        info = f"pid={os.getpid()} host={socket.gethostname()} started={time.strftime('%Y-%m-%d %H:%M:%S')}\n"
        os.ftruncate(fd, 0)
        os.pwrite(fd, info.encode(), 0)
        os.fsync(fd)
        self._fd = fd
        return self

    def release(self) -> None:
        """Drop the lock (idempotent)."""
        if self._fd is not None:
            try:
                os.ftruncate(self._fd, 0)
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            finally:
                os.close(self._fd)
                self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _holder_fields(fd: int) -> dict[str, str]:
    """The lock file's ``pid``, ``host`` and ``started`` (those written), from ``fd``."""
    try:
        text = os.pread(fd, 4096, 0).decode(errors="replace").strip()
    except OSError:
        text = ""
    fields = dict(part.split("=", 1) for part in text.split() if "=" in part)
    if "started=" in text:
        fields["started"] = text.split("started=", 1)[1].strip()
    return fields


def _read_holder(fd: int) -> str:
    """'PID 1234 on host, started ...' from the lock file, or a fallback text."""
    fields = _holder_fields(fd)
    if "pid" not in fields:
        return "PID unknown"
    out = f"PID {fields['pid']}"
    if "host" in fields:
        out += f" on {fields['host']}"
    if "started" in fields:
        out += f", started {fields['started']}"
    return out


def lock_holder(out: str | Path) -> str | None:
    """Who holds ``out``'s lock right now ('PID … on …'), or None when it is free."""
    fields = _live_holder(out)
    if fields is None:
        return None
    if "pid" not in fields:
        return "PID unknown"
    text = f"PID {fields['pid']}"
    if "host" in fields:
        text += f" on {fields['host']}"
    if "started" in fields:
        text += f", started {fields['started']}"
    return text


def _live_holder(out: str | Path) -> dict[str, str] | None:
    """The lock file's fields while someone holds ``out``'s lock; None when it is free
    (or there is no lock file, or it cannot be read)."""
    path = Path(out) / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _holder_fields(fd)
        except OSError:
            return None
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _refuse_locked_parent(out: Path) -> None:
    """Raise :class:`OutputDirBusy` when a directory above ``out`` is locked
    (``mxflow process --workdir OUT/proc`` while a run holds OUT).

    As for OUT itself, a lock this process holds counts too: nothing in mxflow
    takes a lock inside the directory it holds."""
    try:
        parents = out.resolve().parents
    except OSError:
        return
    for parent in parents:
        if not (parent / LOCK_NAME).exists():
            continue
        if _live_holder(parent) is None:
            continue
        raise OutputDirBusy(
            f"{out} is inside {parent}, which is in use by another mxflow run "
            f"({lock_holder(parent) or 'PID unknown'}); wait for it to finish or stop it, "
            "or choose a --workdir outside it"
        )


# -- is a 'running' run alive? ----------------------------------------------------


def pid_alive(pid: int | None) -> bool:
    """Whether a process ``pid`` exists on this machine (another user's counts)."""
    if not pid or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def run_is_gone(run: Mapping[str, Any], out: str | Path) -> bool:
    """Whether a ``runs`` row still marked ``running`` belongs to a process that is gone.

    A run holds OUT's lock for as long as its row says running, so the row is stale
    when its PID is dead on this machine, or when the lock is free (this machine's
    run) or held by another process (any machine).  A run of another machine while
    the lock is free cannot be judged from here (the lock may not reach across
    machines): it is taken as alive.  Rows of other statuses are never "gone".
    """
    if run.get("status") != "running":
        return False
    here = run.get("host") == socket.gethostname()
    if here and not pid_alive(run.get("pid")):
        return True
    holder = _live_holder(out)
    if holder is None:
        return here
    if "pid" not in holder:  # taken a moment ago, not yet signed: cannot tell
        return False
    return (holder.get("pid"), holder.get("host")) != (str(run.get("pid")), run.get("host"))


def gone_note(run: Mapping[str, Any]) -> str:
    """Why a stale ``running`` run counts as interrupted, in plain words."""
    return (
        f"its process (PID {run.get('pid')} on {run.get('host')}) ended without recording "
        "its end (killed, or the machine went down)"
    )


def close_stale_runs(out: str | Path) -> list[dict[str, Any]]:
    """Record as interrupted every run the catalog of ``out`` still has as running.

    Call only while holding ``out``'s lock (then no live run owns such a row);
    returns those rows as they were (none when ``out`` has no catalog).
    """
    from mxflow.catalog.db import Catalog, catalog_path

    if not catalog_path(out).exists():
        return []
    with Catalog(out) as catalog:
        return catalog.close_stale_runs(note=gone_note)


@contextmanager
def locked(out: str | Path, create: bool = True) -> Iterator[RunLock]:
    """Hold ``out``'s lock (see :class:`RunLock`) for a command that writes into it;
    runs a killed run left as running are recorded as interrupted first."""
    with RunLock(out, create=create) as lock:
        close_stale_runs(out)
        yield lock
