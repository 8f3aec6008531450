"""One mxflow run per output directory: an OS-level lock on ``OUT/.mxflow.lock``.

The lock is ``fcntl.flock`` (exclusive, non-blocking) on a small file that
also holds the holder's PID, host and start time.  The kernel drops the lock
when the holding process dies for any reason (``kill -9`` included), so a
crashed run never leaves a stale lock behind; the file itself may stay and is
simply re-locked by the next run.
"""

from __future__ import annotations

import fcntl
import os
import socket
import time
from pathlib import Path

from mxflow.errors import MxflowError

LOCK_NAME = ".mxflow.lock"


class OutputDirBusy(MxflowError):
    """Another mxflow run holds the output directory."""


class RunLock:
    """Exclusive lock on an output directory, held from :meth:`acquire` to :meth:`release`.

    Use as a context manager::

        with RunLock(out):
            ...  # the only mxflow run writing to ``out``
    """

    def __init__(self, out: str | Path):
        self.out = Path(out)
        self.path = self.out / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        """Take the lock or raise :class:`OutputDirBusy` naming the holder's PID."""
        self.out.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
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


def _read_holder(fd: int) -> str:
    """'PID 1234 on host, started ...' from the lock file, or a fallback text."""
    try:
        text = os.pread(fd, 4096, 0).decode(errors="replace").strip()
    except OSError:
        text = ""
    fields = dict(part.split("=", 1) for part in text.split() if "=" in part)
    if "pid" not in fields:
        return "PID unknown"
    out = f"PID {fields['pid']}"
    if "host" in fields:
        out += f" on {fields['host']}"
    if "started" in fields:
        started = text.split("started=", 1)[1].strip()
        out += f", started {started}"
    return out


def lock_holder(out: str | Path) -> str | None:
    """Who holds ``out``'s lock right now ('PID … on …'), or None when it is free."""
    path = Path(out) / LOCK_NAME
    if not path.exists():
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_holder(fd)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
