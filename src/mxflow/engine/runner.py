"""Run one external program in a working directory and record what it did.

The Driver layer of mxflow: every engine wrapper calls :func:`run_program`.
Programs are started with an argument list (never through a shell), so paths
with spaces or shell characters are passed through unchanged and cannot
inject commands.  stdout and stderr go to a log file in the working
directory; the returned :class:`~mxflow.model.StepRecord` carries the command
line, log path, exit status and wall time.

DIALS programs whose launcher is a Python script are run, when possible,
through a fork server in DIALS's own Python (:mod:`mxflow.engine.server_client`),
which saves each program its 1.5–5 s of start-up imports; the log, outputs
and StepRecord are the same as with a plain process, which is what runs when
the server cannot be used or ``MXFLOW_DIALS_SERVER=0``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from mxflow.engine.server_client import run_with_server
from mxflow.errors import MxflowError
from mxflow.model import StepRecord


class ProgramNotFound(MxflowError):
    """The external program is not on PATH."""


def find_program(name: str) -> str:
    """Absolute path of ``name`` on PATH, or raise :class:`ProgramNotFound`."""
    path = shutil.which(name)
    if path is None:
        raise ProgramNotFound(
            f"'{name}' is not on PATH: install DIALS (Debian: apt-get install dials) "
            "or activate a conda environment that has it"
        )
    return path


def run_program(
    program: str,
    args: Sequence[str],
    cwd: str | Path,
    log_name: str | None = None,
    timeout: float | None = None,
    env: Mapping[str, str] | None = None,
    step: str | None = None,
) -> StepRecord:
    """Run ``program args...`` in ``cwd``; stdout+stderr go to ``cwd/log_name``.

    Returns a StepRecord whose ``returncode`` is the exit status (``-9`` style
    negatives for signals, ``124`` for a timeout).  Never raises for a failing
    program: the caller decides what a non-zero status means.
    """
    cwd = Path(cwd)
    cwd.mkdir(parents=True, exist_ok=True)
    exe = find_program(program)
    log_name = log_name or f"{program}.log"
    command = [exe, *map(str, args)]
    full_env = dict(os.environ)
    # DIALS programs must use their own Python, never mxflow's venv
    for var in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"):
        full_env.pop(var, None)
    if env:
        full_env.update(env)
    record = StepRecord(name=step or program, command=[program, *map(str, args)], log=log_name)
    t0 = time.perf_counter()
    if env is None and program.startswith("dials."):
        served = run_with_server(
            program, exe, command[1:], cwd.resolve(), (cwd / log_name).resolve(), timeout, full_env
        )
        if served is not None:
            record.returncode = served.returncode
            if served.timed_out:
                record.note = f"timed out after {timeout:g} s"
            record.wall_s = time.perf_counter() - t0
            return record
    with open(cwd / log_name, "wb") as log:
        try:
            proc = subprocess.run(
                command,
                cwd=cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=full_env,
                timeout=timeout,
                check=False,
            )
            record.returncode = proc.returncode
        except subprocess.TimeoutExpired:
            record.returncode = 124
            record.note = f"timed out after {timeout:g} s"
    record.wall_s = time.perf_counter() - t0
    return record


def log_tail(cwd: str | Path, record: StepRecord, n_lines: int = 15) -> str:
    """The last lines of a step's log: the readable reason a step failed."""
    path = Path(cwd) / record.log
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(line for line in lines[-n_lines:] if line.strip())
