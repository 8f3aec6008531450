"""The ``mxflow`` command line: a thin dispatcher.

Each sub-command lives in the package that does the work, as a module with
``add_arguments(parser)`` and ``run(args) -> int``; its docstring's first
paragraph is the help text.  Modules are imported only when their command
runs, so ``mxflow --help`` is fast.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import select
import sqlite3
import sys

from mxflow.errors import MxflowError

# command name -> module implementing it
COMMANDS: dict[str, str] = {
    "demo": "mxflow.demo",
    "simulate": "mxflow.simulate.cli",
    "score": "mxflow.simulate.score_cli",
    "find": "mxflow.discover.cli",
    "process": "mxflow.process.cli",
    "run": "mxflow.schedule.run_cli",
    "watch": "mxflow.schedule.watch_cli",
    "status": "mxflow.catalog.status_cli",
    "merge": "mxflow.merge.cli",
    "report": "mxflow.report.cli",
    "serve": "mxflow.report.serve_cli",
    "archive": "mxflow.report.archive_cli",
    "hitmap": "mxflow.hitmap.cli",
    "check": "mxflow.check",
}

SUMMARIES: dict[str, str] = {
    "demo": "simulate a small collection and process it end to end",
    "simulate": "write simulated rotation images with known truth",
    "score": "compare a merged MTZ with the simulator's truth",
    "find": "list the image sweeps found under directories",
    "process": "index, integrate and scale every sweep found (DIALS)",
    "run": "process a whole beamline collection in parallel",
    "watch": "process datasets as they arrive",
    "status": "show the state of an output directory",
    "merge": "cluster and merge many datasets of one sample",
    "report": "write the HTML reports of an output directory",
    "serve": "live dashboard of an output directory (loopback)",
    "archive": "a .tgz of the reports, summaries and merged data, no images",
    "hitmap": "spot counts and heat maps of raster scans",
    "check": "installation self-test: DIALS, Python packages, machine",
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The argument parser; only ``command``'s module is imported."""
    from mxflow import __version__

    parser = argparse.ArgumentParser(
        prog="mxflow",
        description=(
            "mxflow: automated processing of multi-crystal MX rotation data "
            "(discover -> process with DIALS -> cluster -> merge -> report). "
            "Run 'mxflow COMMAND --help' for the options of a command."
        ),
    )
    parser.add_argument("--version", action="version", version=f"mxflow {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, summary in SUMMARIES.items():
        if name != command:
            sub.add_parser(name, help=summary)
            continue
        module = importlib.import_module(COMMANDS[name])
        p = sub.add_parser(
            name,
            help=summary,
            description=(module.__doc__ or summary).strip(),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(p)
        p.set_defaults(_module=module, _parser=p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command if command in COMMANDS else None)
    args = parser.parse_args(argv)
    if not getattr(args, "_module", None):
        parser.print_help()
        return 0
    check_workdir(args)
    try:
        status = int(args._module.run(args) or 0)
        sys.stdout.flush()  # a reader that went away shows here, not at interpreter exit
        return status
    except BrokenPipeError:
        if not _stdout_closed():
            raise  # another pipe (a DIALS program's, a socket): a real error
        return _reader_gone()
    except KeyboardInterrupt:
        print("mxflow: interrupted", file=sys.stderr)
        return 130
    except MxflowError as exc:
        print(f"mxflow {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except (OSError, sqlite3.OperationalError) as exc:
        message = fault_message(exc, getattr(args, "workdir", None) or getattr(args, "out", None))
        if message is None:
            raise  # not a fault of the disk or of permissions: a real error
        print(f"mxflow {args.command}: error: {message}", file=sys.stderr)
        return FAULT_STATUS


#: command → the argument holding its input trees (raw data): --workdir may not lie in one
INPUT_TREES: dict[str, str] = {
    "run": "root",
    "watch": "root",
    "process": "paths",
    "hitmap": "paths",
}


def check_workdir(args: argparse.Namespace) -> None:
    """A usage error (exit 2) when ``--workdir`` is, or is inside, one of the command's
    input trees (:data:`INPUT_TREES`): mxflow never writes into the raw data.  (``merge``'s
    inputs are processed data, and ``mxflow merge OUT --workdir OUT`` merges a whole OUT.)"""
    from mxflow.util.args import workdir_in_inputs

    attr = INPUT_TREES.get(args.command)
    workdir = getattr(args, "workdir", None)
    if not attr or not workdir:
        return
    given = getattr(args, attr)
    inputs = [given] if isinstance(given, str) else list(given or [])
    inside = workdir_in_inputs(workdir, inputs)
    if inside is not None:
        args._parser.error(
            f"argument --workdir: {workdir} is {'' if _same(workdir, inside) else 'inside '}"
            f"the input {inside}: mxflow never writes into the raw data; give an output "
            "folder outside it"
        )


def _same(a: str, b: str) -> bool:
    from pathlib import Path

    return Path(a).resolve() == Path(b).expanduser().resolve()


#: exit status of a command stopped by a full disk or a folder it may not write
FAULT_STATUS = 1
_FULL = {errno.ENOSPC, errno.EDQUOT}
_NOT_WRITABLE = {errno.EROFS, errno.EACCES, errno.EPERM}
RESUME_HINT = "the run can be resumed by running the same command again"


def fault_message(exc: BaseException, workdir: str | os.PathLike | None = None) -> str | None:
    """One line for a disk-full or write-permission fault (``OSError`` ENOSPC / EDQUOT /
    EROFS / EACCES / EPERM, SQLite's "database or disk is full" / "readonly database"),
    naming the path (the error's, else ``workdir``) and saying how to go on; None for any
    other error.  Everything finished before the fault is recorded, so the same command
    run again resumes."""
    path: object = None
    if isinstance(exc, sqlite3.OperationalError):
        text = str(exc).lower()
        if "full" in text:
            kind = "full"
        elif "readonly" in text or "read-only" in text or "unable to open" in text:
            kind = "readonly"
        else:
            return None
        path = os.path.join(os.fspath(workdir), "mxflow.sqlite") if workdir else None
        what = f"catalog: {exc}"
    elif isinstance(exc, OSError) and exc.errno in _FULL | _NOT_WRITABLE:
        kind = "full" if exc.errno in _FULL else "readonly"
        path = exc.filename
        what = exc.strerror or os.strerror(exc.errno)
    else:
        return None
    where = os.fspath(path) if path else (os.fspath(workdir) if workdir else "the output folder")
    if kind == "full":
        return f"{where}: no space left ({what}); free some space: {RESUME_HINT}"
    return (
        f"{where}: cannot write ({what}); make the output folder writable or give "
        f"another --workdir: {RESUME_HINT}"
    )


#: exit status of a command whose output reader went away (128 + SIGPIPE, as cat or grep)
BROKEN_PIPE_STATUS = 141


def _stdout_closed() -> bool:
    """Whether standard output is a pipe whose reader has gone (POLLERR on its write end)."""
    try:
        poll = select.poll()
        poll.register(sys.stdout.fileno(), select.POLLOUT)
        return any(ev & select.POLLERR for _, ev in poll.poll(0))
    except (OSError, ValueError, AttributeError):  # no fileno (a test's capture), no poll
        return False


def _reader_gone() -> int:
    """The end of a command whose standard output was closed by its reader (``mxflow
    status | head``): no traceback, and nothing more is written to the closed pipe (the
    output still buffered would otherwise fail again when Python exits)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass
    return BROKEN_PIPE_STATUS


if __name__ == "__main__":
    sys.exit(main())
