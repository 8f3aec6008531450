"""Resumable engine steps: run a program once, skip it next time if nothing changed.

A :class:`Step` names a program, its argument list, the files it reads and
the files it must write (relative to the working directory, or absolute).
:func:`run_step` runs it through :func:`mxflow.engine.runner.run_program`
unless a *done record* shows that an earlier run already produced its
outputs from the same inputs:

* after a successful run whose outputs all exist (and are not empty), a small
  JSON record ``.mxflow/done/<name>.json`` is written with a signature of the
  inputs (the argument list, and path, size and modification time of each
  input file) and the size of each output;
* on the next run the step is skipped when the record exists, the input
  signature is unchanged and every output still exists with its recorded
  size; otherwise the record is removed and the step runs again.  Because
  the outputs of one step are the inputs of the next, redoing a step makes
  every later step run again too.

Image files are signed by size and modification time, never read.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mxflow.engine.runner import log_tail, run_program
from mxflow.errors import MxflowError
from mxflow.model import StepRecord
from mxflow.util.files import read_json, write_json

DONE_DIR = ".mxflow/done"
INCOMPLETE = "finished without writing"


@dataclass
class Step:
    """One program run: ``program args...`` in the working directory."""

    name: str  # short name, unique within a working directory ("index", "integrate" ...)
    program: str  # executable on PATH, e.g. "dials.index"
    args: list[str]
    inputs: list[str] = field(default_factory=list)  # files read (relative to workdir or absolute)
    outputs: list[str] = field(default_factory=list)  # files that must exist afterwards
    timeout: float | None = None  # s
    label: str = ""  # variant of the step (e.g. the indexing method); names the log

    @property
    def log_name(self) -> str:
        return f"{self.name}_{self.label}.out" if self.label else f"{self.name}.out"


def _resolve(workdir: Path, name: str) -> Path:
    p = Path(name)
    return p if p.is_absolute() else workdir / p


#: arguments that change how a step runs but not what it writes (left out of signatures)
_NOT_SIGNED = re.compile(r"^([\w.]*\.)?nproc=")


def input_signature(step: Step, workdir: Path) -> str:
    """sha256 over the program, arguments and (path, size, mtime) of every input file.

    ``nproc=`` arguments are left out: using more cores gives the same result.
    """
    h = hashlib.sha256()
    args = [a for a in step.args if not _NOT_SIGNED.match(a)]
    h.update(json.dumps([step.program, args]).encode())
    for name in step.inputs:
        p = _resolve(workdir, name)
        try:
            st = p.stat()
            h.update(f"{name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{name}\0missing\n".encode())
    return h.hexdigest()


def _output_sizes(step: Step, workdir: Path) -> dict[str, int] | None:
    """Size of every output, or None if one is missing or empty."""
    sizes = {}
    for name in step.outputs:
        p = _resolve(workdir, name)
        try:
            size = p.stat().st_size
        except OSError:
            return None
        if size == 0:
            return None
        sizes[name] = size
    return sizes


def done_record_path(workdir: Path, name: str) -> Path:
    return Path(workdir) / DONE_DIR / f"{name}.json"


def is_done(step: Step, workdir: Path) -> StepRecord | None:
    """The earlier StepRecord (marked skipped) if the step's outputs are complete and current."""
    path = done_record_path(workdir, step.name)
    try:
        rec = read_json(path)
    except (OSError, ValueError):
        return None
    if rec.get("signature") != input_signature(step, workdir):
        return None
    if _output_sizes(step, workdir) != rec.get("outputs"):
        return None
    old = StepRecord(**rec["record"])
    old.skipped = True
    old.note = "outputs complete from an earlier run"
    return old


def run_step(step: Step, workdir: str | Path, force: bool = False) -> StepRecord:
    """Run ``step`` in ``workdir`` unless an earlier run left complete outputs.

    Returns the StepRecord (``skipped`` True when reused).  A run counts as
    successful only if the exit status is 0 and every output exists; the
    record's ``note`` says which outputs are missing otherwise.
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    if not force and (old := is_done(step, workdir)) is not None:
        return old
    done_record_path(workdir, step.name).unlink(missing_ok=True)
    signature = input_signature(step, workdir)
    # stale outputs of an earlier, different run must not be mistaken for new ones
    for name in step.outputs:
        p = _resolve(workdir, name)
        if p.is_file() and not Path(name).is_absolute():
            p.unlink()
    record = run_program(
        step.program,
        step.args,
        workdir,
        log_name=step.log_name,
        timeout=step.timeout,
        step=step.name,
    )
    if record.returncode == 0:
        sizes = _output_sizes(step, workdir)
        if sizes is None:
            bad = [n for n in step.outputs if not _nonempty(_resolve(workdir, n))]
            record.note = f"{INCOMPLETE} {', '.join(bad)}"
        else:
            write_json(
                done_record_path(workdir, step.name),
                {"signature": signature, "outputs": sizes, "record": asdict(record)},
            )
    return record


class StepFailed(MxflowError):
    """An engine program failed; the message names it and carries its log tail."""

    def __init__(self, message: str, record: StepRecord):
        super().__init__(message)
        self.record = record


def run_or_raise(step: Step, workdir: str | Path) -> StepRecord:
    """:func:`run_step`, raising :class:`StepFailed` (with the log's last lines) on failure.

    For pipelines that treat a failed program as the end of one unit of work
    (a cluster, a sample), not as one of several attempts.
    """
    record = run_step(step, workdir)
    if not step_ok(record):
        tail = log_tail(workdir, record, 6).replace("\n", " | ")
        why = record.note or f"exit {record.returncode}"
        raise StepFailed(f"{step.program} failed ({why}): {tail}", record)
    return record


def _nonempty(path: Path) -> bool:
    try:
        return path.stat().st_size > 0
    except OSError:
        return False


def step_ok(record: StepRecord) -> bool:
    """True if the step ran (or was reused) and produced its outputs."""
    return record.returncode == 0 and not record.note.startswith(INCOMPLETE)


_ERROR_PATTERNS = re.compile(
    r"^(Sorry:|Error:|ERROR|RuntimeError|ValueError|AssertionError|IndexError|KeyError|"
    r"\w*Error:|\w*Exception:|dials\.\w+: error)",
)


def dials_error_line(workdir: str | Path, record: StepRecord) -> str:
    """The most telling error line of a step's log ('' if none found).

    DIALS ends a failed run with a ``Sorry: ...`` line (a user error) or a
    Python traceback whose last line names the exception; the last such line
    wins.  Long lines are cut to 300 characters.
    """
    path = Path(workdir) / record.log
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    found = ""
    for i, line in enumerate(lines):
        text = line.strip()
        if _ERROR_PATTERNS.match(text):
            found = text
            # "Sorry:" messages sometimes continue on following indented lines
            nxt = lines[i + 1].strip() if i + 1 < len(lines) else ""
            if text.endswith(":") and nxt:
                found = f"{text} {nxt}"
    if not found and lines:
        found = next((ln.strip() for ln in reversed(lines) if ln.strip()), "")
    return found[:300]
