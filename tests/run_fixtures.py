"""Fake collections and `mxflow run` command lines for the schedule tests (no DIALS):
datasets that :mod:`mxflow.schedule.fake` discovers and "processes"."""

from __future__ import annotations

import sys
from pathlib import Path

from mxflow.model import Dataset
from mxflow.schedule import fake

FAKE_PROCESS = "mxflow.schedule.fake:process_dataset"
FAKE_DISCOVER = "mxflow.schedule.fake:discover_collection"


def fake_collection(root: Path, n: int) -> None:
    """``n`` fake multi-crystal datasets under ``root``, on two pins of a ZOO tree."""
    for i in range(n):
        t = f"{root}/CPS0001-0{i % 2 + 1}/data{i:02d}/multi_{i}_#####.cbf"
        fake.write_fake_dataset(root, Dataset(f"multi_{i}", fake.fake_sweep(t), "s", "multi"))


def run_cmd(root: Path, out: Path, *extra: str) -> list[str]:
    """``mxflow run ROOT --workdir OUT`` with the fake functions, as a subprocess argv."""
    return [sys.executable, "-m", "mxflow.cli", "run", str(root), "--workdir", str(out),
            "--process-fn", FAKE_PROCESS, "--discover-fn", FAKE_DISCOVER, "--settle", "0",
            "--no-progress", "--no-merge", "--no-hitmap", *extra]  # fmt: skip


def merge_options_of(tmp_path: Path, monkeypatch, *extra: str):
    """The MergeOptions that ``mxflow merge x.expt --workdir out EXTRA`` (run in
    ``tmp_path``) hands to the merge, which is replaced by a fake that merges nothing."""
    import mxflow.merge.cli as merge_cli
    from mxflow.cli import main
    from mxflow.model import MergeSummary

    seen = {}

    def fake_merge(inputs, workdir, opts):
        seen["opts"] = opts
        return MergeSummary(opts.sample)

    monkeypatch.setattr(merge_cli, "merge_sample", fake_merge)
    monkeypatch.chdir(tmp_path)
    main(["merge", "x.expt", "--workdir", "out", *extra])
    return seen["opts"]
