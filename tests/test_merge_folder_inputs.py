"""`mxflow merge FOLDER`: one dataset per dataset folder, never DIALS' intermediates.

The folders are fakes: small experiment lists (JSON, as DIALS writes them) and empty
reflection files (collecting the inputs reads only the experiment lists); no DIALS."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mxflow.errors import BadInputError
from mxflow.merge.inputs import collect_inputs
from mxflow.model import DatasetResult, to_dict

#: what one DIALS processing folder holds (dials.import ... dials.scale), all of one crystal
STEPS = (
    "imported",
    "indexed",
    "bravais_setting_1",
    "bravais_setting_2",
    "bravais_setting_5",
    "reindexed",
    "refined",
    "integrated",
    "symmetrized",
    "scaled",
)


def expt_doc(identifier: str, a: float = 40.0) -> dict:
    return {
        "__id__": "ExperimentList",
        "experiment": [
            {
                "__id__": "Experiment",
                "identifier": identifier,
                "beam": 0,
                "crystal": 0,
                "scan": 0,
            }
        ],
        "beam": [{"direction": [0.0, 0.0, 1.0], "wavelength": 1.0}],
        "crystal": [
            {
                "real_space_a": [a, 0.0, 0.0],
                "real_space_b": [0.0, 50.0, 0.0],
                "real_space_c": [0.0, 0.0, 60.0],
                "space_group_hall_symbol": " P 2ac 2ab",
            }
        ],
        "scan": [{"image_range": [1, 100], "oscillation": [0.0, 0.1]}],
    }


def dials_folder(folder: Path, identifier: str, steps=STEPS) -> Path:
    """A dataset folder as a DIALS processing run leaves it: every step's .expt/.refl pair
    (the experiment keeps its identifier from step to step, as in DIALS)."""
    folder.mkdir(parents=True, exist_ok=True)
    for step in steps:
        (folder / f"{step}.expt").write_text(json.dumps(expt_doc(identifier)))
        (folder / f"{step}.refl").write_bytes(b"")
    (folder / "strong.refl").write_bytes(b"")
    return folder


def proc_tree(out: Path, n: int = 4) -> list[Path]:
    """OUT/proc/<pin>/data00/<dataset>/ for n pins, as `mxflow run` lays them out."""
    return [
        dials_folder(out / "proc" / f"CPS0001-{k:02d}" / "data00" / "helical_001", f"id-{k}")
        for k in range(1, n + 1)
    ]


def test_a_processing_tree_gives_one_integrated_pair_per_folder(tmp_path):
    """The issue's case: 16 folders of ten step outputs each were 160 'datasets' (and
    dials.cosym crashed on their shared identifiers); now they are 16, each its
    integrated.expt and integrated.refl."""
    folders = proc_tree(tmp_path / "OUT", 16)
    inputs, rejected = collect_inputs([tmp_path / "OUT" / "proc"])
    assert rejected == []
    assert len(inputs) == 16
    assert sorted(Path(i.expt) for i in inputs) == sorted(
        (f / "integrated.expt").resolve() for f in folders
    )
    assert all(Path(i.refl).name == "integrated.refl" for i in inputs)
    assert len({i.name for i in inputs}) == 16
    assert sorted(i.identifier for i in inputs) == sorted(f"id-{k}" for k in range(1, 17))


def test_dials_tutorial_names_and_a_folder_of_several_datasets(tmp_path):
    """NN_integrated_experiments.json / NN_integrated.pickle: each NN is a dataset, their
    NN_indexed / NN_refined files are not."""
    d = tmp_path / "tutorial"
    d.mkdir()
    for n in (20, 25):
        for step in ("indexed", "refined", "integrated"):
            (d / f"{n}_{step}_experiments.json").write_text(json.dumps(expt_doc(f"t{n}")))
            (d / f"{n}_{step}.pickle").write_bytes(b"")
    inputs, rejected = collect_inputs([d])
    assert rejected == []
    assert sorted(Path(i.expt).name for i in inputs) == [
        "20_integrated_experiments.json",
        "25_integrated_experiments.json",
    ]
    assert sorted(Path(i.refl).name for i in inputs) == [
        "20_integrated.pickle",
        "25_integrated.pickle",
    ]


def test_a_folder_without_integrated_files_is_rejected_not_merged_from_intermediates(tmp_path):
    """A dataset whose processing stopped after indexing: named as rejected, with its folder."""
    out = tmp_path / "OUT"
    proc_tree(out, 2)
    stopped = dials_folder(out / "proc" / "CPS0001-09" / "data00" / "helical_001", "id-9",
                           steps=("imported", "indexed", "refined"))  # fmt: skip
    inputs, rejected = collect_inputs([out / "proc"])
    assert len(inputs) == 2
    assert all(Path(i.expt).name == "integrated.expt" for i in inputs)
    (r,) = rejected
    assert r.stage == "input" and str(stopped) in r.reason and "integrated" in r.reason


def test_scaled_files_when_a_folder_has_no_integrated_ones(tmp_path):
    """A folder whose integrated files were cleaned away but whose scaled pair was kept (as
    xia2's DataFiles keep it): the scaled pair is the dataset, the earlier steps are not."""
    steps = ("imported", "indexed", "refined", "AUTOMATIC_DEFAULT_scaled")
    d = dials_folder(tmp_path / "xia2" / "DataFiles", "x1", steps=steps)
    (item,) = collect_inputs([tmp_path / "xia2"])[0]
    assert Path(item.expt) == (d / "AUTOMATIC_DEFAULT_scaled.expt").resolve()


def _result(out: Path, folder: Path, status: str = "ok", sample: str = "lys") -> DatasetResult:
    """The DatasetResult `mxflow run` records: paths relative to OUT."""
    key = folder.relative_to(out).as_posix()
    name = key.split("/", 1)[1]
    res = DatasetResult(name=name, path=f"/data/{name}_#####.cbf", status=status, sample=sample)
    res.workdir = key
    if status == "ok":
        res.integrated_expt = f"{key}/integrated.expt"
        res.integrated_refl = f"{key}/integrated.refl"
    else:
        res.reason = "Indexing failed"
    return res


def test_a_folder_inside_an_output_directory_takes_the_recorded_results(tmp_path):
    """`mxflow merge OUT/proc` when OUT/summary.json records the datasets: those under
    OUT/proc, by their recorded names (the wedges of OUT/proc_30deg stay out); a failed one
    is rejected with its recorded reason."""
    out = tmp_path / "OUT"
    sweeps = proc_tree(out, 3)
    wedge = dials_folder(out / "proc_30deg" / "CPS0001-01" / "data00" / "helical_001_1-300", "w1")
    results = [_result(out, f) for f in sweeps] + [_result(out, wedge)]
    results[1] = _result(out, sweeps[1], status="failed")
    rows = [to_dict(r) | {"key": r.workdir, "kind": "sweep"} for r in results]
    (out / "summary.json").write_text(json.dumps({"datasets": rows}))

    inputs, rejected = collect_inputs([out / "proc"])
    assert [i.name for i in inputs] == [results[0].name, results[2].name]
    assert [Path(i.expt) for i in inputs] == [
        (sweeps[0] / "integrated.expt").resolve(),
        (sweeps[2] / "integrated.expt").resolve(),
    ]
    assert [(r.name, r.reason) for r in rejected] == [
        (results[1].name, "processing: Indexing failed")
    ]
    # one pin's folder, or a single dataset folder, of the same output directory
    inputs, _ = collect_inputs([out / "proc" / "CPS0001-03"])
    assert [i.name for i in inputs] == [results[2].name]
    inputs, _ = collect_inputs([out / "proc_30deg"])
    assert [i.name for i in inputs] == [results[3].name]


def test_a_dataset_folder_with_its_mxflow_result(tmp_path):
    """A copied proc tree without OUT/summary.json: each folder's mxflow_result.json
    (paths relative to the output directory it came from) names its dataset."""
    out = tmp_path / "copy"
    (folder,) = proc_tree(out, 1)
    res = _result(out, folder)
    (folder / "mxflow_result.json").write_text(json.dumps(to_dict(res)))
    (item,) = collect_inputs([out / "proc"])[0]
    assert item.name == "CPS0001-01/data00/helical_001"
    assert Path(item.expt) == (folder / "integrated.expt").resolve()
    assert item.sample == "lys"


def test_the_same_experiment_twice_is_an_error_naming_both_files(tmp_path):
    """A dataset copied to a second folder: dials.cosym would crash on the repeated
    identifier, so collecting the inputs stops and names both files."""
    a = dials_folder(tmp_path / "in" / "a", "same-id")
    b = dials_folder(tmp_path / "in" / "b", "same-id")
    with pytest.raises(BadInputError) as exc:
        collect_inputs([tmp_path / "in"])
    msg = str(exc.value)
    assert str((a / "integrated.expt").resolve()) in msg
    assert str((b / "integrated.expt").resolve()) in msg
    assert "same-id" in msg
    # the two files given by hand: the same error
    with pytest.raises(BadInputError, match="same-id"):
        collect_inputs([a / "integrated.expt", b / "integrated.expt"])


def test_the_whole_output_directory_does_not_merge_a_sweep_and_its_wedges(tmp_path):
    """`mxflow merge OUT`: a wedge cut from a sweep that is there whole would merge the same
    images twice; it is left out, saying how to merge the wedges instead.  A wedge whose
    sweep is not there (a cut sweep that failed, say) stays."""
    out = tmp_path / "OUT"
    (sweep,) = proc_tree(out, 1)
    cut = dials_folder(out / "proc_30deg" / "CPS0001-01" / "data00" / "helical_001_1-300", "w1")
    lone = dials_folder(out / "proc_30deg" / "CPS0009-01" / "data00" / "helical_001_1-300", "w9")
    results = [_result(out, sweep), _result(out, cut), _result(out, lone)]
    results[1].path = results[0].path  # the wedge's images are the sweep's
    results[1].wedge = results[2].wedge = "1-300"
    rows = [to_dict(r) | {"key": r.workdir, "kind": "sweep"} for r in results]
    (out / "summary.json").write_text(json.dumps({"datasets": rows}))

    inputs, rejected = collect_inputs([out])
    assert [i.name for i in inputs] == [results[0].name, results[2].name]
    assert [r.name for r in rejected] == [results[1].name]
    assert "also given whole" in rejected[0].reason and "proc_30deg" in rejected[0].reason
    # the wedges' own folder still merges the wedges
    inputs, _ = collect_inputs([out / "proc_30deg"])
    assert [i.name for i in inputs] == [results[1].name, results[2].name]
