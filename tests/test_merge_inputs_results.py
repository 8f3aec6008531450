"""merge inputs given as processed DatasetResults keep their full dataset names."""

from __future__ import annotations

from mxflow.merge.inputs import collect_inputs
from mxflow.model import DatasetResult


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
    assert rejected == [
        {"name": "CPS0001-01/data00/multi_02", "reason": "processing: blank", "stage": "input"}
    ]
