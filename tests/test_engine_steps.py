"""mxflow.engine.steps / dials: resumable steps (with a fake program), Bravais choice, names."""

from __future__ import annotations

import json
import os
import stat
import sys
import time

import pytest

from mxflow.engine import sweep_steps as D
from mxflow.engine.steps import Step, dials_error_line, run_step, step_ok
from mxflow.model import Dataset, ImageSweep, ProcessingOptions

FAKE = """#!{python}
import sys, pathlib
args = sys.argv[1:]
with open("calls.txt", "a") as fh:
    fh.write(repr(args) + "\\n")
if "fail" in args:
    print("some chatter")
    print("Sorry: no lattice found for these spots")
    sys.exit(1)
if "forget" not in args:
    text = pathlib.Path(args[0]).read_text() if pathlib.Path(args[0]).exists() else ""
    pathlib.Path("out.txt").write_text("seen: " + repr(args) + text)
"""


@pytest.fixture
def fake_program(tmp_path, monkeypatch):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    prog = bindir / "fake.prog"
    prog.write_text(FAKE.format(python=sys.executable))
    prog.chmod(prog.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    return "fake.prog"


def calls(workdir):
    return (workdir / "calls.txt").read_text().splitlines()


def test_skip_rerun_and_redo(tmp_path, fake_program):
    work = tmp_path / "work dir"
    work.mkdir()
    (work / "in.txt").write_text("a")
    step = Step("s1", fake_program, ["in.txt", "nproc=1"], inputs=["in.txt"], outputs=["out.txt"])
    rec = run_step(step, work)
    assert step_ok(rec) and not rec.skipped and rec.returncode == 0 and rec.wall_s > 0
    assert rec.command == [fake_program, "in.txt", "nproc=1"] and rec.log == "s1.out"
    assert len(calls(work)) == 1
    # same inputs: skipped, the earlier record comes back
    again = run_step(step, work)
    assert again.skipped and step_ok(again) and len(calls(work)) == 1
    # more cores: still the same result, still skipped
    step2 = Step("s1", fake_program, ["in.txt", "nproc=4"], inputs=["in.txt"], outputs=["out.txt"])
    assert run_step(step2, work).skipped
    # input changed: redone
    time.sleep(0.01)
    (work / "in.txt").write_text("bb")
    assert not run_step(step, work).skipped and len(calls(work)) == 2
    # output deleted: redone
    (work / "out.txt").unlink()
    assert not run_step(step, work).skipped and len(calls(work)) == 3
    assert (work / "out.txt").exists()
    # arguments changed: redone
    step3 = Step("s1", fake_program, ["in.txt", "x=1"], inputs=["in.txt"], outputs=["out.txt"])
    assert not run_step(step3, work).skipped


def test_failure_and_missing_output(tmp_path, fake_program):
    work = tmp_path / "w"
    rec = run_step(Step("bad", fake_program, ["fail"], outputs=["out.txt"]), work)
    assert rec.returncode == 1 and not step_ok(rec)
    assert dials_error_line(work, rec) == "Sorry: no lattice found for these spots"
    assert not (work / ".mxflow/done/bad.json").exists()
    rec = run_step(Step("quiet", fake_program, ["forget"], outputs=["out.txt"]), work)
    assert rec.returncode == 0 and not step_ok(rec) and "out.txt" in rec.note


def test_arguments_reach_the_program_unchanged(tmp_path, fake_program):
    """No shell: spaces, quotes, $ and ; arrive as written, and nothing is executed."""
    work = tmp_path / "odd $dir; (x)"
    weird = ["a b", "$HOME", "; touch pwned", "it's", "`id`", 'x="q"']
    rec = run_step(Step("odd", fake_program, weird, outputs=["out.txt"]), work)
    assert step_ok(rec)
    assert calls(work) == [repr(weird)]
    assert not (work / "pwned").exists() and not (tmp_path / "pwned").exists()


def test_choose_bravais_solution(tmp_path):
    summary = {
        "1": {
            "bravais": "aP",
            "recommended": True,
            "max_angular_difference": 0,
            "rmsd": 0.05,
            "cb_op": "a,b,c",
        },
        "2": {
            "bravais": "mP",
            "recommended": True,
            "max_angular_difference": 0.1,
            "rmsd": 0.05,
            "cb_op": "-a,-c,-b",
        },
        "3": {
            "bravais": "oP",
            "recommended": True,
            "max_angular_difference": 0.2,
            "rmsd": 0.05,
            "cb_op": "a,b,c",
        },
        "4": {
            "bravais": "tP",
            "recommended": False,
            "max_angular_difference": 3.0,
            "rmsd": 0.3,
            "cb_op": "b,c,a",
        },
    }
    path = tmp_path / "bravais_summary.json"
    path.write_text(json.dumps(summary))
    n, entry = D.choose_bravais_solution(path)
    assert n == 3 and entry["bravais"] == "oP"
    # a user's space group picks its lattice
    assert D.choose_bravais_solution(path, D.bravais_of("P 1 21 1"))[0] == 2
    summary = {k: {**v, "recommended": False} for k, v in summary.items()}
    path.write_text(json.dumps(summary))
    with pytest.raises(ValueError):
        D.choose_bravais_solution(path)


def test_bravais_and_phil_names():
    assert D.bravais_of("P 21 21 21") == "oP"
    assert D.bravais_of("C 1 2 1") == "mC"
    assert D.bravais_of("R 3 :H") == "hR"
    assert D.bravais_of("P 61 2 2") == "hP"
    assert D.bravais_of("I 4 2 2") == "tI"
    assert D.sg_arg("P 21 21 21") == "P212121"
    assert D.cell_arg((54.0, 62.0, 71.0, 90.0, 90.0, 90.0)) == "54,62,71,90,90,90"


def test_import_step_arguments(tmp_path):
    sweep = ImageSweep(
        template=str(tmp_path / "my data" / "x_####.cbf"),
        format="cbf",
        first=1,
        last=10,
        wavelength=1.0,
        distance=100.0,
        beam_center=(100.0, 120.0),
        pixel_size=(0.172, 0.172),
        image_size=(200, 240),
        osc_start=0.0,
        osc_width=1.0,
    )
    ds = Dataset(name="x", sweep=sweep, wedge=(3, 5))
    opts = ProcessingOptions(distance=2193.0, beam_center=(17.2, 34.4), rotation_axis=(107, 122, 0))
    step = D.import_step(ds, opts)
    files = [a for a in step.args if a.endswith(".cbf")]
    assert files == [str(tmp_path / "my data" / f"x_000{n}.cbf") for n in (3, 4, 5)]
    assert "distance=2193" in step.args
    assert "fast_slow_beam_centre=100.000,200.000" in step.args  # mm / pixel size
    assert "goniometer.axis=107,122,0" in step.args
    labels = [label for label, _ in D.index_attempts(ProcessingOptions(), None, None)]
    assert labels == ["fft3d", "fft3d_full", "fft1d", "fft3d_lowres"]
    known = D.index_attempts(ProcessingOptions(), "P 21 21 21", (54, 62, 71, 90, 90, 90))
    assert known[-1][0] == "real_space_grid_search"
    assert "indexing.known_symmetry.space_group=P212121" in known[0][1]
    # the first attempt refines only a few candidate lattices; the second is DIALS's default
    assert f"indexing.basis_vector_combinations.max_refine={D.FAST_INDEX_CANDIDATES}" in known[0][1]
    assert not any("max_refine" in a for a in known[1][1])
