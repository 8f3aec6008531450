"""merge inputs given as processed DatasetResults keep their full dataset names."""

from __future__ import annotations

from pathlib import Path

from mxflow.merge.inputs import collect_inputs
from mxflow.model import DatasetResult, Rejection


def test_results_keep_names_and_failures_are_rejected(tmp_path, shared_data):
    src = shared_data / "l_cysteine_integrated"
    ok = DatasetResult(
        name="CPS0001-01/data00/multi_01",
        path="x",
        status="ok",
        sample="cys",
        integrated_expt=str(src / "20_integrated_experiments.json"),
        integrated_refl=str(src / "20_integrated.pickle"),
    )
    bad = DatasetResult(
        name="CPS0001-01/data00/multi_02", path="y", status="failed", reason="blank"
    )
    other = DatasetResult(name="elsewhere", path="z", status="ok", sample="other")
    inputs, rejected = collect_inputs([ok, bad, other], sample="cys")
    assert [i.name for i in inputs] == ["CPS0001-01/data00/multi_01"]
    assert rejected == [Rejection("CPS0001-01/data00/multi_02", "input", "processing: blank")]


def test_wavelength_groups():
    import math

    from mxflow.merge.inputs import wavelength_groups

    assert wavelength_groups([0.9790, 0.97905, 1.0000, math.nan, 0.9791]) == [[0, 1, 3, 4], [2]]
    assert wavelength_groups([1.0, 1.0, 1.0]) == [[0, 1, 2]]
    assert wavelength_groups([math.nan, None]) == [[0, 1]]
    assert wavelength_groups([]) == []


def test_run_merges_each_wavelength_of_a_sample_separately():
    """SAD peak and remote of one sample: two merges, labelled by wavelength."""
    from mxflow.model import DatasetResult
    from mxflow.schedule.post import split_by_wavelength

    def res(name, lam):
        return (name, DatasetResult(name=name, path=name, wavelength=lam))

    one = [res("a", 0.9790), res("b", 0.97902)]
    assert split_by_wavelength(one) == [("", one)]
    two = [res("a", 0.9790), res("b", 1.0332), res("c", 0.97902), res("d", None)]
    split = split_by_wavelength(two)
    assert [(label, [k for k, _ in m]) for label, m in split] == [
        ("0.9790A", ["a", "c", "d"]),
        ("1.0332A", ["b"]),
    ]


def test_merge_refuses_a_mistyped_space_group_before_any_work(tmp_path, capsys):
    """`mxflow merge --space-group` is checked by the one space-group argument type:
    a typo is a usage error (exit 2) naming the value, and no output folder is made."""
    import pytest

    from mxflow import cli

    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exc:
        cli.main(["merge", str(tmp_path), "--workdir", str(out), "--space-group", "P 21 21 2x"])
    assert exc.value.code == 2
    assert "P 21 21 2x" in capsys.readouterr().err
    assert not out.exists()


def test_relative_paths_become_absolute(tmp_path, shared_data, monkeypatch):
    """The DIALS steps of a merge run in folders of their own: an input given relative
    to where mxflow was started (as `mxflow run --workdir out` passes them) must still
    be found there."""
    import os

    src = shared_data / "l_cysteine_integrated"
    monkeypatch.chdir(src.parent)
    rel = Path(os.path.relpath(src, src.parent))
    res = DatasetResult(
        name="cys",
        path="x",
        status="ok",
        integrated_expt=str(rel / "20_integrated_experiments.json"),
        integrated_refl=str(rel / "20_integrated.pickle"),
    )
    for given in ([res], [rel / "20_integrated_experiments.json", rel / "20_integrated.pickle"]):
        (item,) = collect_inputs(given)[0]
        assert Path(item.expt).is_absolute() and Path(item.refl).is_absolute()
        assert Path(item.refl) == (src / "20_integrated.pickle").resolve()
