"""A merge killed during dials.scale resumes at that step, with the same result (DIALS; slow).

The real l-cysteine merge of the report tests (``real_merge``, never
interrupted, tests/merge_fixtures.py) is done again by `mxflow merge` with
the same inputs and options, killed with SIGKILL (its whole process group,
as a batch system or a closed terminal does) while dials.scale runs, then
run again.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import gemmi
import numpy as np
import pytest

import merge_fixtures
from mxflow.engine.steps import done_record_path
from mxflow.merge import merge_sample
from mxflow.merge.outputs import read_summary
from mxflow.model import MergeOptions, Thresholds

pytestmark = [pytest.mark.slow, pytest.mark.dials]


def _inputs(root: Path) -> list[Path]:
    """The inputs of ``real_merge``: sweeps 20, 25, 30 and the wrong-cell copy it made."""
    out = [p for n in merge_fixtures.SWEEPS for p in merge_fixtures.pair(n)]
    return out + list(merge_fixtures.wrong_cell_copy(root / "inputs"))


def _options() -> MergeOptions:
    """real_merge's options."""
    return MergeOptions(
        sample="lcys", d_min=1.0, thresholds=Thresholds(min_completeness=80, max_clusters=1)
    )


def _cli_args(inputs: list[Path], workdir: Path) -> list[str]:
    args = ["merge", *map(str, inputs), "--workdir", str(workdir), "--sample", "lcys"]
    return args + ["--d-min", "1.0", "--min-completeness", "80", "--max-clusters", "1"]


def _processes_in(directory: Path) -> list[int]:
    """PIDs of processes whose working directory is ``directory``."""
    found = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if Path(os.readlink(p / "cwd")) == directory:
                    found.append(int(p.name))
            except OSError:
                continue
    return found


def _wait_for(condition, timeout: float, what: str) -> None:
    t_end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > t_end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def _mtz_arrays(path: Path) -> dict[str, np.ndarray]:
    mtz = gemmi.read_mtz_file(str(path))
    return {c.label: np.asarray(c, dtype=float) for c in mtz.columns}


def test_merge_killed_during_scaling_resumes_at_that_step(tmp_path, real_merge):
    whole_dir = real_merge / merge_fixtures.MERGE_WORKDIR
    whole = read_summary(whole_dir / "merge_summary_lcys.json")
    assert whole.ok
    (cluster,) = whole.clusters
    inputs = _inputs(real_merge)

    work = (tmp_path / "killed").resolve()
    run_01 = work / "merge_cc_1.0S_lcys" / f"cluster_{cluster.id:04d}" / "run_01"
    proc = subprocess.Popen(
        [sys.executable, "-m", "mxflow.cli", *_cli_args(inputs, work)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        _wait_for(lambda: bool(_processes_in(run_01)), 300, "dials.scale to start in run_01")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
    # the DIALS child goes with the killed mxflow (the fork server ends when its stdin closes)
    _wait_for(lambda: not _processes_in(run_01), 30, "dials.scale to stop after the kill")
    assert not done_record_path(run_01, "scale").exists()  # scaling never finished
    prep = work / "merge_prep_1.0S_lcys"
    finished = {name: done_record_path(prep, name) for name in ("cosym", "export_unscaled")}
    assert all(p.exists() for p in finished.values())
    mtimes = {name: p.stat().st_mtime_ns for name, p in finished.items()}

    again = merge_sample(inputs, work, _options())
    assert again.ok
    by_name = {(Path(s.log).parent.name, s.name): s for s in again.steps}
    # the steps that finished before the kill are reused, not run again ...
    assert by_name[("merge_prep_1.0S_lcys", "cosym")].skipped
    assert by_name[("merge_prep_1.0S_lcys", "export_unscaled")].skipped
    assert {n: p.stat().st_mtime_ns for n, p in finished.items()} == mtimes
    # ... and the one that was killed runs again, as does everything after it
    assert not by_name[("run_01", "scale")].skipped
    assert not any(s.skipped for s in again.steps if Path(s.log).parent.name.startswith("run_"))

    # the same merge as the one never interrupted
    (resumed,) = again.clusters
    assert (resumed.id, resumed.members, resumed.final_run) == (
        cluster.id,
        cluster.members,
        cluster.final_run,
    )
    assert resumed.d_min == pytest.approx(cluster.d_min, abs=1e-6)
    assert resumed.cc_half == pytest.approx(cluster.cc_half, abs=1e-6)
    a = _mtz_arrays(whole_dir / cluster.merged_mtz)
    b = _mtz_arrays(work / resumed.merged_mtz)
    assert a.keys() == b.keys()
    for label in a:
        np.testing.assert_allclose(b[label], a[label], rtol=1e-6, err_msg=label)

    # and a third run finds everything done: no DIALS program runs at all
    third = merge_sample(inputs, work, _options())
    assert third.steps and all(s.skipped for s in third.steps)
