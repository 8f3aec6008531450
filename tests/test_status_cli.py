"""`mxflow status` into a pipe that its reader closes early, and a filter that matches nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mxflow.catalog.db import Catalog
from mxflow.cli import main
from mxflow.model import Dataset, DatasetResult
from mxflow.schedule.fake import fake_sweep

#: enough datasets that the output (≈ 100 bytes a table row, ≈ 1 kB a JSON entry) is far
#: more than a pipe holds (64 kB), so that writing blocks and fails once `head` is gone
N_DATASETS = 1200


def _dataset(k: int) -> Dataset:
    template = f"/data/CPS1-{k % 16:02d}/data00/x{k:04d}_#####.cbf"
    return Dataset(f"x{k:04d}", fake_sweep(template, 1, 100), "lyso", "single", None)


@pytest.fixture(scope="module")
def big_out(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("out")
    with Catalog(out) as cat:
        for k in range(N_DATASETS):
            cat.add_dataset(f"proc/x{k:04d}", _dataset(k), "sweep")
        for k in range(0, N_DATASETS, 2):
            cat.record_result(f"proc/x{k:04d}", DatasetResult(f"x{k:04d}", "/x", "ok", d_min=1.9))
    return out


def mxflow_command() -> str:
    script = Path(sys.executable).with_name("mxflow")
    return str(script) if script.is_file() else f"{sys.executable} -m mxflow.cli"


@pytest.mark.parametrize("extra", ["--json", "", "--status ok"])
def test_status_into_head_ends_without_a_traceback(big_out, extra):
    """`mxflow status --json | head -1` ended in a BrokenPipeError traceback."""
    proc = subprocess.run(
        ["bash", "-c", f"{mxflow_command()} status {big_out} {extra} | head -1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0
    if extra == "--json":
        assert proc.stdout == "{\n"
    else:
        assert proc.stdout.split()[:2] == ["dataset", "sample"]
        assert proc.stdout.count("\n") == 1
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr, proc.stderr
    assert proc.stderr == ""


def test_status_into_a_closed_pipe_exits_as_cat_does(big_out):
    """The command itself ends with 128 + SIGPIPE (141), nothing on stderr."""
    proc = subprocess.run(
        ["bash", "-c", f"set -o pipefail; {mxflow_command()} status {big_out} --json | head -c 10"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 141
    assert proc.stderr == ""


def test_status_filter_matching_nothing_says_so(big_out, capsys):
    """`status --status failed` printed an empty table and no words."""
    assert main(["status", str(big_out), "--status", "failed"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "no dataset has status failed"
    assert "dataset  sample" not in out  # no empty table
    assert f"{N_DATASETS // 2} ok, {N_DATASETS // 2} pending" in out
    assert main(["status", str(big_out), "--status", "ok"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:2] == ["dataset", "sample"]
    assert sum(line.startswith("proc/x") for line in lines) == N_DATASETS // 2


def test_an_empty_output_directory_says_so(tmp_path, capsys):
    with Catalog(tmp_path):
        pass
    assert main(["status", str(tmp_path)]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "no datasets yet"
