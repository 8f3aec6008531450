"""Run DIALS programs through a long-lived fork server in DIALS's own Python.

Every DIALS program spends 1.5–5 s importing dials/cctbx/dxtbx before doing
any work, and one dataset runs about eleven of them.  The fork server
(``dials_server.py`` beside this module, run by the Python named in the
shebang of the program's launcher, e.g. ``/usr/bin/python3`` for Debian's
DIALS) imports those modules once and runs each program in a forked child.
mxflow's own Python never imports DIALS: it only talks JSON lines to the
server over a pipe.

:func:`run_with_server` is what :func:`mxflow.engine.runner.run_program`
calls.  It returns None whenever the server cannot be used — disabled with
``MXFLOW_DIALS_SERVER=0``, the launcher is not a Python script (a shell
dispatcher), the program is not a console script of that Python, the server
does not start or died during the request — and the caller then runs the
program as a plain process.

Servers are started lazily, one per mxflow process and Python interpreter
(so each Dask worker process has its own), and one more for each thread
that runs a program while the others are busy; they are closed at exit, and
a process forked from mxflow starts its own.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

#: environment variable: "0", "no", "off" or "false" disables the server
ENV_SWITCH = "MXFLOW_DIALS_SERVER"
#: seconds to wait for a server to say it is ready
START_TIMEOUT_S = 120.0
#: after a server failed to start, plain processes are used for this long (s)
RETRY_AFTER_S = 300.0


def server_enabled() -> bool:
    """False when ``MXFLOW_DIALS_SERVER`` is 0/no/off/false."""
    return os.environ.get(ENV_SWITCH, "1").strip().lower() not in ("0", "no", "off", "false")


def server_script() -> Path:
    """Path of ``dials_server.py`` as installed with the mxflow package."""
    return Path(str(resources.files("mxflow.engine").joinpath("dials_server.py")))


def launcher_python(exe: str) -> str | None:
    """The Python interpreter named in the shebang of launcher ``exe`` (None if not Python).

    ``#!/usr/bin/python3`` → ``/usr/bin/python3``; ``#!/usr/bin/env python3``
    → python3 looked up on PATH.  Shell dispatchers (``#!/bin/sh``) and
    binaries give None.
    """
    try:
        with open(exe, "rb") as fh:
            first = fh.readline(512)
    except OSError:
        return None
    if not first.startswith(b"#!"):
        return None
    words = first[2:].decode(errors="replace").split()
    if not words:
        return None
    if os.path.basename(words[0]) == "env":
        words = [w for w in words[1:] if not w.startswith("-")]
        if not words:
            return None
        found = shutil.which(words[0])
        if found is None:
            return None
        words[0] = found
    elif len(words) > 1:  # interpreter flags (-E, -s ...) would change behaviour: no server
        return None
    python = words[0]
    if not os.path.basename(python).startswith("python") or not os.access(python, os.X_OK):
        return None
    return python


#: environment variables read while modules are imported (BLAS/OpenMP thread pools,
#: libtbx's environment, Python's own): a server is only reused when these are unchanged
_IMPORT_TIME_VARS = ("PYTHON", "LIBTBX_", "OMP_", "MKL_", "OPENBLAS_", "LD_", "CCTBX", "DIALS")


def import_env_key(env: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """The part of ``env`` that a running server cannot change for its children."""
    return tuple(sorted((k, v) for k, v in env.items() if k.startswith(_IMPORT_TIME_VARS)))


@dataclass
class ServerResult:
    """What the server reported about one program run."""

    returncode: int
    wall_s: float
    maxrss_kib: int
    timed_out: bool


class ServerError(RuntimeError):
    """The server could not run the request (the caller falls back to a process)."""


class ServerGone(ServerError):
    """The server process ended (killed, crashed) before answering."""


class DialsServer:
    """One fork-server process and its pipes; one request at a time."""

    def __init__(self, python: str, env: Mapping[str, str]):
        self.python = python
        self.env = dict(env)
        self.pid_owner = os.getpid()
        self.stderr = tempfile.TemporaryFile(prefix="mxflow-dials-server-")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [python, str(server_script())],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            env=self.env,
            cwd="/",
            close_fds=True,
        )
        self.unknown: set[str] = set()
        self._ready()

    def _read_line(self, timeout: float | None) -> dict:
        if timeout is not None:
            import select

            ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
            if not ready:
                raise ServerError(f"no answer from the DIALS server within {timeout:.0f} s")
        line = self.proc.stdout.readline()
        if not line:
            raise ServerGone(f"the DIALS server ended{self._stderr_tail()}")
        return json.loads(line)

    def _stderr_tail(self) -> str:
        try:
            self.stderr.seek(0)
            text = self.stderr.read().decode(errors="replace").strip()
        except (OSError, ValueError):
            return ""
        return f": {text[-500:]}" if text else ""

    def _ready(self) -> None:
        try:
            hello = self._read_line(START_TIMEOUT_S)
        except (ServerError, ValueError) as exc:
            self.close(kill=True)
            raise ServerError(f"DIALS server did not start: {exc}") from exc
        if not hello.get("ready"):
            self.close(kill=True)
            raise ServerError(f"DIALS server did not start: {hello}")

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def run(
        self,
        program: str,
        argv0: str,
        args: Sequence[str],
        cwd: Path,
        log: Path,
        timeout: float | None,
        env: Mapping[str, str] | None = None,
    ) -> ServerResult:
        """Run one program (environment ``env``, default the server's); raises ServerError."""
        request = {
            "program": program,
            "argv0": argv0,
            "args": list(args),
            "cwd": str(cwd),
            "log": str(log),
            "timeout": timeout,
            "env": dict(env) if env is not None else None,
        }
        try:
            self.proc.stdin.write((json.dumps(request) + "\n").encode())
            self.proc.stdin.flush()
            answer = self._read_line(None)
        except (OSError, ValueError) as exc:
            raise ServerGone(f"DIALS server connection lost: {exc}") from exc
        if "error" in answer:
            self.unknown.add(program)
            raise ServerError(answer["error"])
        return ServerResult(
            returncode=int(answer["returncode"]),
            wall_s=float(answer["wall_s"]),
            maxrss_kib=int(answer.get("maxrss_kib", 0)),
            timed_out=bool(answer.get("timed_out")),
        )

    def close(self, kill: bool = False, wait_s: float = 5.0) -> None:
        """Close the pipe (the server then exits) and reap it."""
        if os.getpid() != self.pid_owner:  # a forked copy: the server is not ours
            return
        if kill:
            with contextlib.suppress(OSError):
                self.proc.kill()
        for stream in (self.proc.stdin, self.proc.stdout):
            with contextlib.suppress(OSError, ValueError):
                stream.close()
        try:
            self.proc.wait(wait_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        with contextlib.suppress(OSError):
            self.stderr.close()


class _Pool:
    """Idle servers by (python, import-time environment); creates one when all are busy."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.idle: dict[tuple, list[DialsServer]] = {}
        self.failed_at: dict[str, float] = {}  # python -> time a start failed
        self.started = 0

    def acquire(self, python: str, env: Mapping[str, str]) -> DialsServer | None:
        key = (python, import_env_key(env))
        with self.lock:
            failed = self.failed_at.get(python)
            if failed is not None and time.monotonic() - failed < RETRY_AFTER_S:
                return None
            servers = self.idle.get(key, [])
            while servers:
                server = servers.pop()
                if server.alive:
                    return server
                server.close()
            # another environment: its idle servers will not be wanted again soon
            stale = [s for k, lst in self.idle.items() if k != key for s in lst]
            self.idle = {key: servers}
        for server in stale:
            server.close()
        try:
            server = DialsServer(python, env)
        except (OSError, ServerError):
            with self.lock:
                self.failed_at[python] = time.monotonic()
            return None
        with self.lock:
            self.started += 1
        return server

    def release(self, server: DialsServer) -> None:
        key = (server.python, import_env_key(server.env))
        if not server.alive:
            server.close()
            return
        with self.lock:
            self.idle.setdefault(key, []).append(server)

    def close_all(self) -> None:
        with self.lock:
            servers = [s for lst in self.idle.values() for s in lst]
            self.idle = {}
        for server in servers:
            server.close()


_POOL = _Pool()


def _after_fork_in_child() -> None:
    """A forked mxflow process must not share its parent's servers (pipes)."""
    global _POOL
    _POOL = _Pool()


os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(lambda: _POOL.close_all())


def close_servers() -> None:
    """Stop this process's idle DIALS servers (they are also stopped at exit)."""
    _POOL.close_all()


def server_memory_kib() -> list[dict[str, int]]:
    """Resident memory of this process's idle servers (VmRSS, VmHWM in KiB; Linux only)."""
    with _POOL.lock:
        pids = [s.proc.pid for lst in _POOL.idle.values() for s in lst]
    out = []
    for pid in pids:
        try:
            text = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
        out.append({k: int(fields[k].split()[0]) for k in ("VmRSS", "VmHWM") if k in fields})
    return out


def servers_started() -> int:
    """How many servers this process has started (for tests and benchmarks)."""
    return _POOL.started


def run_with_server(
    program: str,
    exe: str,
    args: Sequence[str],
    cwd: Path,
    log: Path,
    timeout: float | None,
    env: Mapping[str, str],
) -> ServerResult | None:
    """Run ``program`` through a fork server; None if the caller should start a process.

    ``exe`` is the launcher's absolute path (its shebang picks the Python and
    it becomes ``sys.argv[0]``); ``log`` is truncated and receives stdout and
    stderr; ``env`` is the program's complete environment.
    """
    if not server_enabled():
        return None
    python = launcher_python(exe)
    if python is None:
        return None
    for _attempt in range(2):  # a server found dead is replaced once
        server = _POOL.acquire(python, env)
        if server is None:
            return None
        if program in server.unknown:
            _POOL.release(server)
            return None
        try:
            return server.run(program, exe, args, cwd, log, timeout, env)
        except ServerGone:
            server.close(kill=True)
            continue
        except ServerError:
            return None
        finally:
            _POOL.release(server)
    return None
