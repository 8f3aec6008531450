"""Paths containing '=' reach DIALS intact (issue #12 item 11).

DIALS takes any command-line argument containing '=' for a parameter, so an
image in ``/data/dose=10/`` failed in dials.import ("improper definition
name").  Frames with '=' in their path are given through links in the working
directory; experiment and reflection files with '=' (an output directory such
as ``/data/run=2/out``, whose absolute paths a merge passes) as quoted PHIL
values.  The DIALS tests run the real programs on a simulated sweep.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from images_fixtures import cbf_sweep, eiger_master
from mxflow.engine import merge_steps
from mxflow.engine import sweep_steps as D
from mxflow.engine.expt import read_experiments
from mxflow.engine.steps import Step, run_step
from mxflow.model import Dataset, ImageSweep, ProcessingOptions

needs_dials = pytest.mark.skipif(
    shutil.which("dials.import") is None, reason="dials.import not on PATH"
)


def cbf_dataset(directory: Path, n: int = 6, wedge: tuple[int, int] | None = None) -> Dataset:
    cbf_sweep(directory, "x", range(1, n + 1), width=1.0)
    sweep = ImageSweep(
        template=str(directory / "x_#####.cbf"),
        format="cbf",
        first=1,
        last=n,
        wavelength=1.0,
        distance=200.0,
        beam_center=(1.0, 1.0),
        pixel_size=(0.172, 0.172),
        image_size=(10, 12),
        osc_start=0.0,
        osc_width=1.0,
    )
    return Dataset(name="x", sweep=sweep, wedge=wedge)


def test_frames_with_equals_go_through_links(tmp_path):
    raw = tmp_path / "dose=10 $x" / "it's"
    ds = cbf_dataset(raw, wedge=(2, 4))
    work = tmp_path / "out=1" / "proc" / "x"
    step = D.import_step(ds, ProcessingOptions(distance=150.0), workdir=work)
    files = [a for a in step.args if a.endswith(".cbf")]
    assert files == [f"images/x_0000{n}.cbf" for n in (2, 3, 4)]
    assert not any("=" in a for a in files)
    for a in files:  # each link is the raw frame, which is not touched
        assert (work / a).is_symlink() and (work / a).resolve() == (raw / Path(a).name).resolve()
    assert step.inputs == [str(raw / f"x_0000{n}.cbf") for n in (2, 3, 4)]
    assert "distance=150" in step.args and "output.experiments=imported.expt" in step.args
    # built again (a resumed run): the same links, the same arguments
    assert D.import_step(ds, ProcessingOptions(distance=150.0), workdir=work).args == step.args
    # an '=' in a file name: the link's name has it escaped, still one per frame
    named = tmp_path / "n"
    cbf_sweep(named, "a=1", range(1, 3), width=1.0)
    (named / "a%3D1_00001.cbf").write_bytes(b"another file")
    sweep = ImageSweep(**{**ds.sweep.__dict__, "template": str(named / "a=1_#####.cbf"), "last": 2})
    args = D.import_step(Dataset("a", sweep), ProcessingOptions(), workdir=tmp_path / "w").args
    links = [a for a in args if a.endswith(".cbf")]
    assert links == ["images/a%3D1_00001.cbf", "images/a%3D1_00002.cbf"]
    assert (tmp_path / "w" / links[0]).resolve() == (named / "a=1_00001.cbf").resolve()


def test_frames_without_equals_are_given_as_before(tmp_path):
    ds = cbf_dataset(tmp_path / "plain data", wedge=(2, 3))
    step = D.import_step(ds, ProcessingOptions(), workdir=tmp_path / "w")
    assert [a for a in step.args if a.endswith(".cbf")] == [
        str(tmp_path / "plain data" / f"x_0000{n}.cbf") for n in (2, 3)
    ]
    assert not (tmp_path / "w" / D.IMAGE_LINKS).exists()


def test_eiger_master_with_equals_links_its_data_files(tmp_path):
    master = eiger_master(tmp_path / "run=3", "e", n_frames=6, per_file=4)
    sweep = ImageSweep(
        template=str(master),
        format="eiger",
        first=1,
        last=6,
        wavelength=1.0,
        distance=150.0,
        beam_center=(1.0, 1.0),
        pixel_size=(0.075, 0.075),
        image_size=(6, 8),
        osc_start=10.0,
        osc_width=0.2,
    )
    step = D.import_step(Dataset("e", sweep, wedge=(2, 5)), ProcessingOptions(), workdir=tmp_path)
    assert step.args[:2] == ["images/e_master.h5", "image_range=2,5"]
    links = sorted(p.name for p in (tmp_path / "images").iterdir())
    assert links == ["e_data_000001.h5", "e_data_000002.h5", "e_master.h5"]
    assert step.inputs == [str(master)]


def test_experiment_and_reflection_files_with_equals_are_quoted_phil(tmp_path):
    expt, refl = "/data/run=2/out $1/proc/a/x.expt", "/data/run=2/out $1/proc/a/x.refl"
    assert D.file_arg(expt) == "input.experiments='/data/run=2/out $1/proc/a/x.expt'"
    assert D.file_arg(refl) == "input.reflections='/data/run=2/out $1/proc/a/x.refl'"
    assert D.file_arg("/plain/x.expt") == "/plain/x.expt"  # unchanged: done records stay valid
    assert D.phil_quote("it's \\ here") == "'it\\'s \\\\ here'"
    steps = [
        merge_steps.cosym([(expt, refl), ("/p/b.expt", "/p/b.refl")], "P 2 2 2", 2),
        merge_steps.symmetry([(expt, refl)]),
        merge_steps.assign_space_group([(expt, refl)], "P 2 2 2"),
        merge_steps.reindex(expt, refl, "b,c,a"),
        merge_steps.export_unmerged(expt, refl, "x.mtz"),
        merge_steps.export_mmcif(expt, refl, "x.cif"),
        merge_steps.scale(expt, refl, [], 10.0, None, False, 2),
        merge_steps.merge(expt, refl, None, "m.mtz"),
    ]
    for step in steps:
        assert f"input.experiments='{expt}'" in step.args, step.name
        assert f"input.reflections='{refl}'" in step.args, step.name
        assert expt not in step.args and refl not in step.args
        assert step.inputs[:2] == [expt, refl]  # signed by the real files
    assert steps[0].args[2:4] == ["/p/b.expt", "/p/b.refl"]


# -- with DIALS -------------------------------------------------------------------------


def _run(step: Step, work: Path) -> None:
    record = run_step(step, work)
    log = (work / step.log_name).read_text() if (work / step.log_name).exists() else ""
    assert record.returncode == 0, f"{step.program} failed:\n{log[-3000:]}"


@pytest.mark.slow
@pytest.mark.dials
@needs_dials
def test_dials_processes_and_merge_steps_read_paths_with_equals(tmp_path):
    """A simulated sweep in 'dose=10 $x', processed in 'out=1' by the whole per-dataset
    pipeline (a wedge: the start angle of its first frame kept); then, as a merge does
    from its own folder, dials.reindex and dials.export given the absolute paths (with
    '=') of the scaled files."""
    from mxflow.process.pipeline import process_dataset
    from process_fixtures import simulate_tiny

    sim = simulate_tiny(tmp_path / "dose=10 $x" / "images", frames=20)
    sweep = sim.sweeps[0]
    assert "=" in sweep.template
    work = tmp_path / "out=1" / "proc" / "x_3-20"
    result = process_dataset(Dataset("x", sweep, wedge=(3, 20)), work, ProcessingOptions(nproc=2))
    assert result.status == "ok", result.reason
    assert [s.name for s in result.steps][0] == "import" and result.unmerged_mtz
    (exp,) = read_experiments(work / "imported.expt")
    assert exp.image_range == (3, 20)
    # frame 3's start angle (DIALS's template= import of a wedge would say frame 1's)
    assert exp.oscillation == pytest.approx((sweep.osc_start + 2 * sweep.osc_width, 1.0))

    other = tmp_path / "out=1" / "merge" / "s"
    expt, refl = str(work / "scaled.expt"), str(work / "scaled.refl")
    _run(merge_steps.reindex(expt, refl, "b,c,a"), other)
    assert read_experiments(other / "reindexed.expt")[0].image_range == (3, 20)
    _run(merge_steps.export_unmerged(expt, refl, "unmerged.mtz"), other)
    assert (other / "unmerged.mtz").stat().st_size > 0


@pytest.mark.dials
@needs_dials
def test_dials_imports_an_eiger_master_in_a_folder_with_equals(tmp_path):
    from mxflow.simulate import SimulationConfig, simulate

    cfg = SimulationConfig(frames=4, osc_width=1.0, seed=3, d_min=2.5, format="eiger")
    res = simulate(tmp_path / "run=3", cfg)
    sweep = res.sweeps[0]
    master = sweep.template
    work = tmp_path / "w=1"
    _run(D.import_step(Dataset("e", sweep, wedge=(2, 4)), ProcessingOptions(), workdir=work), work)
    (exp,) = read_experiments(work / "imported.expt")
    assert exp.image_range == (2, 4)
    assert exp.oscillation == pytest.approx((sweep.osc_start + sweep.osc_width, 1.0))
    assert os.path.realpath(work / "images" / Path(master).name) == os.path.realpath(master)
