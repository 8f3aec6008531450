"""A fake processing function for tests and scheduler benchmarks (developer option).

``mxflow run ROOT --workdir OUT --process-fn mxflow.schedule.fake:process_dataset``
schedules, records and summarises a collection exactly as a real run does,
but each dataset only sleeps and writes a small output file instead of
running DIALS.  Its behaviour is set by environment variables, which worker
processes inherit (so nothing needs patching across processes):

``MXFLOW_FAKE_SLEEP``  seconds each dataset takes (default 0.05)
``MXFLOW_FAKE_FAIL``   regular expression: matching dataset names return a
                       ``failed`` result ("fake failure")
``MXFLOW_FAKE_RAISE``  regular expression: matching names raise RuntimeError
``MXFLOW_FAKE_CRASH``  regular expression: on its first attempt a matching
                       dataset kills its worker process (``os._exit``), as a
                       segfault or an OOM kill would; later attempts succeed
``MXFLOW_FAKE_CRASH_ALWAYS``  regular expression: matching names kill their
                       worker on every attempt

A fake discovery, ``--discover-fn mxflow.schedule.fake:discover_collection``,
reads datasets described by ``*.dataset.json`` files under ROOT (written by
:func:`write_fake_dataset`) instead of image headers; a dataset with a
``<name>.writing`` file beside its JSON counts as still being written.

Every call appends one line to ``WORKDIR/fake_calls.log`` (so tests can count
how often a dataset was really processed) and the output
``WORKDIR/fake_integrated.txt`` is written then renamed, as real outputs are.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any

from mxflow.discover.collection import Collection
from mxflow.model import (
    Dataset,
    DatasetResult,
    ImageSweep,
    MergingStats,
    ProcessingOptions,
    ShellStats,
    StepRecord,
    to_dict,
)
from mxflow.util.files import atomic_write_text, write_json

CALLS_LOG = "fake_calls.log"
OUTPUT = "fake_integrated.txt"
DATASET_SUFFIX = ".dataset.json"


def _matches(var: str, name: str) -> bool:
    pattern = os.environ.get(var)
    return bool(pattern) and re.search(pattern, name) is not None


def process_dataset(dataset: Dataset, workdir: Path, options: ProcessingOptions) -> DatasetResult:
    """Pretend to process ``dataset`` in ``workdir`` (see the module docstring)."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    with open(workdir / CALLS_LOG, "a") as fh:
        fh.write(f"{time.time():.3f} pid={os.getpid()} nproc={options.nproc}\n")
    if _matches("MXFLOW_FAKE_CRASH_ALWAYS", dataset.name):
        os._exit(3)
    if _matches("MXFLOW_FAKE_CRASH", dataset.name):
        marker = workdir / ".fake_crashed"
        if not marker.exists():
            marker.write_text("crashed once\n")
            os._exit(3)
    t0 = time.perf_counter()
    time.sleep(float(os.environ.get("MXFLOW_FAKE_SLEEP", "0.05")))
    if _matches("MXFLOW_FAKE_RAISE", dataset.name):
        raise RuntimeError(f"fake exception for {dataset.name}")
    step = StepRecord(name="fake.integrate", command=["fake"], log=CALLS_LOG, returncode=0)
    step.wall_s = time.perf_counter() - t0
    if _matches("MXFLOW_FAKE_FAIL", dataset.name):
        step.returncode = 1
        return DatasetResult(
            name=dataset.name,
            path=dataset.sweep.template,
            status="failed",
            reason="fake failure: indexing found no lattice",
            steps=[step],
        )
    first, last = dataset.frames
    atomic_write_text(workdir / OUTPUT, f"{dataset.name} frames {first}-{last}\n")
    return DatasetResult(
        name=dataset.name,
        path=dataset.sweep.template,
        status="ok",
        space_group="P 43 21 2",
        unit_cell=[78.0, 78.0, 37.0, 90.0, 90.0, 90.0],
        d_min=1.8,
        stats=MergingStats.one_shell(ShellStats(40.0, 1.8, completeness=0.5, multiplicity=2.0)),
        unmerged_mtz=OUTPUT,
        indexed_fraction=0.9,
        steps=[step],
    )


# -- fake discovery ------------------------------------------------------------


def fake_sweep(template: str, first: int = 1, last: int = 50, osc_width: float = 0.1) -> ImageSweep:
    """A plausible PILATUS-like sweep description (no images behind it)."""
    return ImageSweep(
        template=template,
        format="cbf",
        first=first,
        last=last,
        wavelength=1.0,
        distance=200.0,
        beam_center=(1231.5, 1263.5),
        pixel_size=(0.172, 0.172),
        image_size=(2463, 2527),
        osc_start=0.0,
        osc_width=osc_width,
        exposure=0.1,
    )


def dataset_from_dict(d: dict[str, Any]) -> Dataset:
    """Inverse of ``to_dict(dataset)``."""
    s = dict(d["sweep"])
    for k in ("beam_center", "pixel_size", "image_size"):
        s[k] = tuple(s[k])
    d = dict(d, sweep=ImageSweep(**s))
    if d.get("wedge") is not None:
        d["wedge"] = tuple(d["wedge"])
    if d.get("unit_cell") is not None:
        d["unit_cell"] = tuple(d["unit_cell"])
    return Dataset(**d)


def write_fake_dataset(root: str | Path, dataset: Dataset) -> Path:
    """Describe ``dataset`` in ``<its image directory>/<name>.dataset.json`` (atomically)."""
    path = Path(dataset.sweep.template).parent / f"{dataset.name}{DATASET_SUFFIX}"
    write_json(path, to_dict(dataset))
    return path


def discover_collection(root: str | Path, **_: Any) -> Collection:
    """Read every ``*.dataset.json`` under ``root`` (sorted).

    As ``mxflow.discover.discover_collection``: whole sweeps go to
    ``.datasets``; ``.wedges`` holds the cut wedges plus the whole sweeps
    that have no wedges.
    """
    out = Collection(str(root), "fake")
    for path in sorted(Path(root).rglob(f"*{DATASET_SUFFIX}")):
        try:
            ds = dataset_from_dict(json.loads(path.read_text()))
        except (OSError, ValueError, TypeError, KeyError) as exc:
            out.problems.append((str(path), f"unreadable fake dataset: {exc}"))
            continue
        if path.with_name(path.name[: -len(DATASET_SUFFIX)] + ".writing").exists():
            out.incomplete.append(ds)
        elif ds.wedge is not None:
            out.wedges.append(ds)
        else:
            out.datasets.append(ds)
    cut = {w.sweep.template for w in out.wedges}
    out.wedges = [ds for ds in out.datasets if ds.sweep.template not in cut] + out.wedges
    return out
