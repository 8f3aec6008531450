"""A fork server for DIALS programs, run in DIALS's own Python (never imported by mxflow).

Usage: ``<dials python> dials_server.py``, started by
:mod:`mxflow.engine.server_client`.  Importing dials/cctbx/dxtbx costs each
DIALS program 1.5–5 s of start-up; this server pays it once: it imports the
command-line module of a program the first time that program is asked for
(and, while idle, those of the other programs mxflow uses), then runs every
request in a child made with ``os.fork()``, which starts with everything
already imported.

Protocol: one JSON object per line.  After start-up the server writes
``{"ready": true, "pid": ..., "python": ...}``.  Each request is

    {"program": "dials.index", "argv0": "/usr/bin/dials.index",
     "args": ["imported.expt", ...], "cwd": "/abs/dir", "log": "/abs/dir/index.out",
     "timeout": 600 or null, "env": {...} or null}

and is answered by ``{"returncode": int, "wall_s": float, "maxrss_kib": int,
"timed_out": bool}`` once the child has ended, or by ``{"error": "..."}`` if
the server cannot run that program (the client then starts it as a plain
process): not a console script of this Python, or ``argv0`` is not that
script's launcher (a user's own program of the same name runs as itself).  The child behaves like the program's console-script launcher: it
changes to ``cwd``, sends stdout and stderr to ``log`` (truncated), reads
stdin from /dev/null, sets ``sys.argv = [argv0, *args]``, calls the
program's ``console_scripts`` entry point and exits through a normal
interpreter shutdown with the program's status (the ``SystemExit`` code; 1
after an uncaught exception, reported in the log by ``sys.excepthook``).  Random
generators (Python, numpy, scitbx flex) are reseeded from the OS in every
child, as in a fresh process.  A child that outlives ``timeout`` is killed
with its process group (DIALS's own ``nproc`` workers included): status 124.

Run as a script, this file's directory (mxflow/engine/) is ``sys.path[0]``, so
no module beside it may share a top-level name with DIALS's Python
(``dials``, ``dxtbx``, ``cctbx``, ...).

Lifetime: the server exits when its stdin closes (the mxflow process ended,
even by ``kill -9``), killing a child still running; children get
``PR_SET_PDEATHSIG`` (SIGKILL) so that none outlives a killed server.
"""

import contextlib
import ctypes
import json
import os
import select
import signal
import sys
import time

#: programs whose modules are imported ahead of time while the server is idle
PRELOAD = (
    "dials.import",
    "dials.find_spots",
    "dials.index",
    "dials.refine_bravais_settings",
    "dials.reindex",
    "dials.refine",
    "dials.integrate",
    "dials.symmetry",
    "dials.scale",
    "dials.export",
    "dials.merge",
    "dials.cosym",
    "dials.estimate_resolution",
    "dials.compute_delta_cchalf",
)

_PR_SET_PDEATHSIG = 1


class Server:
    """The request loop; one child at a time."""

    def __init__(self, in_fd: int, out_fd: int):
        self.in_fd = in_fd
        self.out_fd = out_fd
        self.buffer = b""
        self.eof = False
        self.entry_points = self._console_scripts()
        self.loaded: dict[str, object] = {}
        self.preload = [p for p in PRELOAD if p in self.entry_points]
        self.child = 0  # pid of the running child (0: none)
        self.launchers: dict[tuple, bool] = {}  # (path, size, mtime) -> is a launcher
        self.start_env = dict(os.environ)  # before any DIALS import

    # -- set-up -----------------------------------------------------------
    @staticmethod
    def _console_scripts() -> dict:
        from importlib.metadata import entry_points

        return {ep.name: ep for ep in entry_points(group="console_scripts")}

    def load(self, program: str):
        """The entry-point function of ``program`` (imported on first use)."""
        fn = self.loaded.get(program)
        if fn is None:
            fn = self.entry_points[program].load()
            self.loaded[program] = fn
        return fn

    def is_launcher_of(self, path: str, program: str) -> bool:
        """True if file ``path`` is a console-script launcher running ``program``'s entry point.

        A launcher is a short script that names the entry point's module (pip:
        ``from dials.command_line.index import run``) or the program under
        ``console_scripts`` (setuptools' ``load_entry_point``).  Anything else
        (a user's own script of that name) must run as itself.
        """
        try:
            st = os.stat(path)
            key = (path, st.st_size, st.st_mtime_ns)
        except OSError:
            return False
        if key not in self.launchers:
            ok = False
            if st.st_size < 16384:
                try:
                    with open(path, encoding="utf-8", errors="replace") as fh:
                        text = fh.read()
                except OSError:
                    text = ""
                module = self.entry_points[program].value.split(":")[0].strip()
                ok = (
                    module in text
                    or ("console_scripts" in text and f"'{program}'" in text)
                    or ("console_scripts" in text and f'"{program}"' in text)
                )
            self.launchers[key] = ok
        return self.launchers[key]

    def preload_one(self) -> None:
        """Import one more module of :data:`PRELOAD` (errors only logged)."""
        program = self.preload.pop(0)
        if program in self.loaded:
            return
        try:
            self.load(program)
        except Exception as exc:  # a broken module: that program will run as a process
            print(f"dials_server: cannot import {program}: {exc!r}", file=sys.stderr, flush=True)

    # -- protocol -----------------------------------------------------------
    def send(self, obj: dict) -> None:
        data = (json.dumps(obj) + "\n").encode()
        while data:
            n = os.write(self.out_fd, data)
            data = data[n:]

    def _fill(self) -> None:
        chunk = os.read(self.in_fd, 65536)
        if chunk:
            self.buffer += chunk
        else:
            self.eof = True

    def next_line(self) -> bytes | None:
        """The next request line (None at end of input); imports PRELOAD modules while idle."""
        while b"\n" not in self.buffer and not self.eof:
            if self.preload:
                ready, _, _ = select.select([self.in_fd], [], [], 0)
                if not ready:
                    self.preload_one()
                    continue
            self._fill()
        if b"\n" in self.buffer:
            line, self.buffer = self.buffer.split(b"\n", 1)
            return line
        return None

    def serve(self) -> int:
        self.send({"ready": True, "pid": os.getpid(), "python": sys.executable})
        while True:
            line = self.next_line()
            if line is None:
                return 0
            if not line.strip():
                continue
            try:
                request = json.loads(line)
                answer = self.handle(request)
            except _ChildExit:
                raise
            except Exception as exc:
                answer = {"error": f"{type(exc).__name__}: {exc}"}
            if answer.get("client_gone"):
                return 0  # nobody to answer: the client's end of the pipe is closed
            try:
                self.send(answer)
            except BrokenPipeError:
                return 0

    # -- one request ----------------------------------------------------------
    def handle(self, request: dict) -> dict:
        program = request["program"]
        if program not in self.entry_points:
            return {"error": f"{program} is not a console script of this Python"}
        argv0 = request.get("argv0")
        if argv0 and not self.is_launcher_of(argv0, program):
            return {"error": f"{argv0} is not the console-script launcher of {program}"}
        try:
            fn = self.load(program)
        except Exception as exc:
            return {"error": f"cannot import {program}: {type(exc).__name__}: {exc}"}
        sys.stdout.flush()
        sys.stderr.flush()
        t0 = time.perf_counter()
        pid = os.fork()
        if pid == 0:
            raise _ChildExit(run_child(self, fn, request))
        self.child = pid
        with contextlib.suppress(OSError):  # also done in the child: whichever runs first
            os.setpgid(pid, pid)
        status, rusage, timed_out, client_gone = self.wait(pid, request.get("timeout"))
        self.child = 0
        returncode = 124 if timed_out else os.waitstatus_to_exitcode(status)
        return {
            "returncode": returncode,
            "wall_s": round(time.perf_counter() - t0, 4),
            "maxrss_kib": rusage.ru_maxrss if rusage else 0,
            "timed_out": timed_out,
            "client_gone": client_gone,
        }

    def wait(self, pid: int, timeout):
        """Wait for the child; kill its group on timeout or if the client goes away."""
        deadline = None if timeout is None else time.monotonic() + float(timeout)
        try:
            pidfd = os.pidfd_open(pid)
        except (AttributeError, OSError):
            pidfd = None
        timed_out = client_gone = False
        try:
            while True:
                done, status, rusage = _wait4(pid)
                if done:
                    return status, rusage, timed_out, client_gone
                if timed_out or client_gone:  # killed: reap it
                    _, status, rusage = _wait4(pid, block=True)
                    return status, rusage, timed_out, client_gone
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    timed_out = True
                    kill_group(pid)
                    continue
                watch = [] if self.eof else [self.in_fd]
                if pidfd is not None:
                    watch.append(pidfd)
                wait_s = 0.05 if pidfd is None else left
                if wait_s is not None:
                    wait_s = min(wait_s, 3600.0)
                ready, _, _ = select.select(watch, [], [], wait_s)
                if self.in_fd in ready:
                    self._fill()
                    if self.eof:  # the client is gone: nobody wants this result
                        client_gone = True
                        kill_group(pid)
        finally:
            if pidfd is not None:
                os.close(pidfd)


class _ChildExit(Exception):
    """Raised in a forked child to leave the server loop and exit with ``code``."""

    def __init__(self, code):
        super().__init__(code)
        self.code = code


def _wait4(pid: int, block: bool = False):
    """(finished, status, rusage) of ``pid``."""
    while True:
        try:
            wpid, status, rusage = os.wait4(pid, 0 if block else os.WNOHANG)
        except InterruptedError:
            continue
        if wpid == 0:
            return False, 0, None
        return True, status, rusage


def kill_group(pid: int) -> None:
    """SIGKILL the child's process group (the child and DIALS's worker processes)."""
    for target in (lambda: os.killpg(pid, signal.SIGKILL), lambda: os.kill(pid, signal.SIGKILL)):
        try:
            target()
            return
        except OSError:
            continue


def _set_parent_death_signal(parent: int) -> None:
    """Ask Linux to SIGKILL this process when its parent (the server) dies."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the server died before prctl took effect
        os._exit(137)


def _reseed() -> None:
    """New random states from the OS, as a freshly started process would have."""
    import random

    random.seed()
    seed = int.from_bytes(os.urandom(4), "little") & 0x7FFFFFFF
    if "numpy" in sys.modules:
        with contextlib.suppress(Exception):
            sys.modules["numpy"].random.seed()
    for name in ("scitbx.array_family.flex", "scitbx.random"):
        if name in sys.modules:
            with contextlib.suppress(Exception):
                sys.modules[name].set_random_seed(seed)


def run_child(server: Server, fn, request: dict) -> int:
    """In the forked child: become the program; return its exit status."""
    parent = os.getppid()
    with contextlib.suppress(OSError):
        os.setpgid(0, 0)
    _set_parent_death_signal(parent)
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD, signal.SIGQUIT):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    os.close(server.in_fd)
    os.close(server.out_fd)

    os.chdir(request["cwd"])
    log_fd = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    null_fd = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null_fd, 0)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.close(log_fd)
    os.close(null_fd)
    _fresh_std_streams()
    _reset_logging()
    _reseed()
    env = request.get("env")
    if env is not None:
        # the request's environment, plus what importing DIALS added to the server's
        # (libtbx sets *_DIST, KMP_* ...), as it would in a fresh process
        added = {k: v for k, v in os.environ.items() if server.start_env.get(k) != v}
        os.environ.clear()
        os.environ.update(env)
        os.environ.update(added)
    sys.argv = [request.get("argv0") or request["program"], *request["args"]]

    try:
        value = fn()
    except SystemExit as exc:
        value = exc.code
    except BaseException as exc:
        # as the interpreter reports an uncaught exception (libtbx's hook prints a
        # Sorry without traceback); this function's own frame is left out
        sys.excepthook(type(exc), exc, exc.__traceback__.tb_next)
        return 130 if isinstance(exc, KeyboardInterrupt) else 1
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    print(value, file=sys.stderr)  # as sys.exit("message") does
    return 1


def _fresh_std_streams() -> None:
    """New sys.stdin/stdout/stderr on fds 0-2, buffered as at interpreter start-up."""
    import io

    sys.stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False), encoding=sys.stdin.encoding)
    sys.stdout = io.TextIOWrapper(
        io.BufferedWriter(io.FileIO(1, "w", closefd=False)),
        encoding=sys.stdout.encoding,
        errors=sys.stdout.errors,
    )
    sys.stderr = io.TextIOWrapper(
        io.BufferedWriter(io.FileIO(2, "w", closefd=False)),
        encoding=sys.stderr.encoding,
        errors="backslashreplace",
        line_buffering=True,
    )
    sys.__stdin__, sys.__stdout__, sys.__stderr__ = sys.stdin, sys.stdout, sys.stderr


def _reset_logging() -> None:
    """No logging handlers or levels left over from the server (there should be none)."""
    import logging

    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.setLevel(logging.WARNING)
    for logger in list(logging.Logger.manager.loggerDict.values()):
        if isinstance(logger, logging.Logger):
            for handler in list(logger.handlers):
                logger.removeHandler(handler)


def main() -> int:
    # the protocol gets private copies of the pipes; fds 0 and 1 become harmless
    in_fd = os.dup(0)
    out_fd = os.dup(1)
    null_fd = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null_fd, 0)
    os.close(null_fd)
    os.dup2(2, 1)  # stray prints while importing go to the server's stderr
    os.set_inheritable(in_fd, False)
    os.set_inheritable(out_fd, False)

    server = Server(in_fd, out_fd)

    def stop(signum, frame):
        if server.child:
            kill_group(server.child)
        os._exit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGHUP, stop)
    return server.serve()


if __name__ == "__main__":
    try:
        code = main()
    except _ChildExit as child:  # a forked child: exit like the program's launcher
        code = child.code
    sys.exit(code)
