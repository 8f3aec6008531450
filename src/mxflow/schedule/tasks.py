"""What runs on a worker: one dataset through the processing function.

The processing function is :data:`DEFAULT_PROCESS_FN` (the DIALS pipeline
:func:`mxflow.process.process_dataset`) unless another is named by an
importable ``"module:function"`` string, which every worker process imports
itself: tests and benchmarks substitute a fast fake
(``mxflow.schedule.fake:process_dataset``) through the command line
(``--process-fn``, a developer option) without patching anything across
processes.

:func:`run_task` never raises for a dataset-level problem: an exception in
the processing function becomes a ``failed`` DatasetResult whose reason says
what happened.  A worker process that dies (segfault, OOM kill, ``os._exit``)
is different: Dask notices the lost worker and runs the task again elsewhere.

When the function returns, the result is written to
``WORKDIR/mxflow_result.json`` (write then rename) *before* the orchestrator
records it, so a result finished just before the orchestrator was killed is
picked up by the next run instead of being computed again.  The file carries
the task's ``token``: if Dask runs the same task again (it recomputes results
held by a worker that died before the client fetched them), the saved result
is returned instead of processing the dataset twice.
"""

from __future__ import annotations

import importlib
import os
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mxflow.errors import MxflowError
from mxflow.model import Dataset, DatasetResult, ProcessingOptions, to_dict
from mxflow.process import process_dataset
from mxflow.util.files import read_json, write_json

ProcessFn = Callable[[Dataset, Path, ProcessingOptions], DatasetResult]

#: the processing function unless ``--process-fn MODULE:FUNCTION`` names another
DEFAULT_PROCESS_FN: ProcessFn = process_dataset
RESULT_FILE = "mxflow_result.json"


def resolve_function(spec: str | Callable[..., Any]) -> Callable[..., Any]:
    """The callable named by ``"package.module:function"`` (or ``spec`` itself if callable)."""
    if callable(spec):
        return spec
    module_name, sep, attr = str(spec).partition(":")
    if not sep or not module_name or not attr:
        raise MxflowError(f"process function '{spec}' must look like 'package.module:function'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise MxflowError(
            f"cannot import '{module_name}' for process function '{spec}': {exc}"
        ) from exc
    fn = module
    for part in attr.split("."):
        fn = getattr(fn, part, None)
        if fn is None:
            raise MxflowError(f"'{module_name}' has no '{attr}' (process function '{spec}')")
    if not callable(fn):
        raise MxflowError(f"process function '{spec}' is not callable")
    return fn


def function_name(spec: str | Callable[..., Any]) -> str:
    """``"module:function"`` of a function (a string is returned as it is)."""
    if callable(spec):
        return f"{spec.__module__}:{getattr(spec, '__qualname__', repr(spec))}"
    return str(spec)


def read_result_file(workdir: str | Path) -> DatasetResult | None:
    """The result a worker left in ``workdir`` (None when absent or unreadable)."""
    path = Path(workdir) / RESULT_FILE
    try:
        return DatasetResult.from_dict(read_json(path))
    except (OSError, ValueError, TypeError, KeyError):
        return None


def run_task(
    dataset: Dataset,
    workdir: str,
    out: str,
    options: ProcessingOptions,
    process_fn: str | ProcessFn = DEFAULT_PROCESS_FN,
    token: str = "",
) -> DatasetResult:
    """Process one dataset on a worker; returns its DatasetResult (paths relative to ``out``).

    ``workdir`` and ``out`` are absolute paths.  Any exception from the
    processing function becomes ``status='failed'`` with the exception as
    reason; the result (whatever its status) is saved in ``workdir`` before
    returning.
    """
    wd = Path(workdir)
    wd.mkdir(parents=True, exist_ok=True)
    if token:
        saved = _read_token_result(wd, token)
        if saved is not None:  # this very task already finished: Dask is recomputing it
            return saved
    # a previous result in this directory is stale as soon as we start again
    (wd / RESULT_FILE).unlink(missing_ok=True)
    t0 = time.perf_counter()
    try:
        fn = resolve_function(process_fn)
        result = fn(dataset, wd, options)
        if not isinstance(result, DatasetResult):
            raise TypeError(
                f"{function_name(process_fn)} returned {type(result).__name__}, not DatasetResult"
            )
    except Exception as exc:  # a dataset-level failure never stops the others
        result = DatasetResult(
            name=dataset.name,
            path=dataset.sweep.template,
            status="failed",
            reason=f"{type(exc).__name__}: {exc}".strip(),
        )
        (wd / "mxflow_traceback.txt").write_text(traceback.format_exc())
    wall = time.perf_counter() - t0
    result = complete_result(result, dataset, wd, Path(out))
    if not result.wall_s:
        result.wall_s = wall
    if result.status not in ("ok", "failed", "skipped"):
        result.status, result.reason = (
            "failed",
            result.reason or f"ended with status {result.status}",
        )
    write_json(wd / RESULT_FILE, {**to_dict(result), "token": token})
    return result


def _read_token_result(workdir: Path, token: str) -> DatasetResult | None:
    try:
        data = read_json(workdir / RESULT_FILE)
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("token") != token:
        return None
    try:
        return DatasetResult.from_dict(data)
    except (TypeError, KeyError):
        return None


def complete_result(
    result: DatasetResult, dataset: Dataset, workdir: Path, out: Path
) -> DatasetResult:
    """Fill the collection fields and make output paths relative to ``out``."""
    sweep = dataset.sweep
    first, last = dataset.frames
    result.sample = result.sample or dataset.sample
    result.mode = result.mode or dataset.mode
    result.wedge = dataset.wedge_label
    result.path = result.path or sweep.template
    result.workdir = _relative(str(workdir), workdir, out)
    if result.wavelength is None:
        result.wavelength = sweep.wavelength
    if result.osc_width is None:
        result.osc_width = sweep.osc_width
    if result.total_rotation is None:
        result.total_rotation = (last - first + 1) * sweep.osc_width
    for name in ("unmerged_mtz", "merged_mtz", "integrated_expt", "integrated_refl"):
        value = getattr(result, name)
        if value:
            setattr(result, name, _relative(value, workdir, out))
    return result


def _relative(path: str, workdir: Path, out: Path) -> str:
    """``path`` relative to ``out``; relative inputs are taken as relative to ``workdir``."""
    p = Path(path)
    if not p.is_absolute():
        p = workdir / p
    try:
        return os.path.relpath(p, out)
    except ValueError:
        return str(p)
