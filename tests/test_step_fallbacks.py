"""Retries after indexing (#12): refinement, integration and scaling fall back to simpler
attempts when DIALS's defaults fail for want of reflections, and say so in plain words.

Without DIALS: the reasons parser on DIALS 3.12's own messages, and the attempt runner
with fake ``dials.*`` programs (which fail the way DIALS does until given the fallback's
arguments).  With DIALS (slow): simulated tiny wedges of a small cell (1.5° in 0.1°
frames, 14 strong spots for the profile model), which fail dials.integrate with its
defaults, are integrated, scaled and merged, and the fallback is in summary.json, the
terminal table and the dataset page.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import gemmi
import pytest

from conftest import requires_dials
from mxflow.cli import main
from mxflow.engine import sweep_steps as D
from mxflow.engine.reasons import plain_reason
from mxflow.model import DatasetResult, ProcessingOptions
from mxflow.process import pipeline
from process_fixtures import simulate_tiny

#: dials.integrate's message (DIALS 3.12) as it stands in a log, indentation included
PROFILE_FAILURE = """
RuntimeError:
            Too few reflections for profile modelling:
              need 20 per degree or  50 in total
              got  9 per degree and 14 in total

            The default values may be conservative. Using fewer spots may still work.
            A solution may be to try changing parameters:
              profile.gaussian_rs.min_spots.per_degree=20
              profile.gaussian_rs.min_spots.overall=50
"""

REFINE_FAILURE = """
DialsRefineConfigError: Too few reflections to parameterise Beam1Mu1, Crystal1g_param_0, \
Crystal1g_param_1, Detector1Dist.
Try setting refinement.parameterisation.auto_reduction.action to fix these parameters (=fix) \
or additionally remove the associated reflections (=remove).
"""


def test_plain_reasons_of_dials_messages():
    assert plain_reason(PROFILE_FAILURE) == (
        "too few strong spots to model spot profiles (14 < 50, and 9 < 20 per degree)"
    )
    still = "Too few reflections for profile modelling:\n  expected >= 50, got 38\n"
    assert plain_reason(still) == "too few strong spots to model spot profiles (38 < 50)"
    assert plain_reason(REFINE_FAILURE) == (
        "too few reflections to refine the beam and crystal and detector (4 parameters)"
    )
    assert plain_reason("Sorry: Remaining number of reflections = 8, for experiment 0, "
                        "which is below the configured limit for this reflection manager\n") == (
        "too few reflections left for refinement (8)"
    )  # fmt: skip
    assert plain_reason("ValueError: All data sets have been rejected as bad.") == (
        "scaling rejected every reflection as bad"
    )
    # a message not known here keeps DIALS's own line (the caller's), never a guess
    assert plain_reason("Sorry: Unknown detector format\n") is None
    assert plain_reason("") is None


#: a stand-in for a dials program: fails with ``message`` unless every word of ``needs``
#: is among its arguments; otherwise writes each ``output.*=`` file.  Logs its calls.
FAKE = r"""#!{python}
import pathlib, sys
args = sys.argv[1:]
with open("calls.txt", "a") as fh:
    fh.write("{name} " + " ".join(args) + "\n")
if not all(n in args for n in {needs!r}):
    print({message!r})
    sys.exit(1)
for a in args:
    if a.startswith("output.") and "=" in a:
        pathlib.Path(a.split("=", 1)[1]).write_text("fake output")
"""


def _fake(bindir: Path, name: str, needs: list[str], message: str) -> None:
    prog = bindir / name
    prog.write_text(FAKE.format(python=sys.executable, name=name, needs=needs, message=message))
    prog.chmod(prog.stat().st_mode | stat.S_IXUSR)


@pytest.fixture
def fakes(tmp_path, monkeypatch):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("MXFLOW_DIALS_SERVER", "0")
    work = tmp_path / "work"
    work.mkdir()
    for name in ("refined.expt", "refined.refl", "symmetrized.expt", "symmetrized.refl"):
        (work / name).write_text("input")
    return bindir, work


def _calls(work: Path) -> list[str]:
    return (work / "calls.txt").read_text().splitlines()


def _integrate(work: Path) -> DatasetResult:
    result = DatasetResult("x", str(work))
    attempts = D.INTEGRATE_ATTEMPTS
    steps = [D.integrate_step(ProcessingOptions(), a) for a in attempts]
    pipeline._first_that_works(pipeline._Run(work, result), steps, attempts)
    return result


def test_integration_falls_back_to_summation_and_a_rerun_reuses_it(fakes):
    bindir, work = fakes
    _fake(bindir, "dials.integrate", ["integration.profile.fitting=False"], PROFILE_FAILURE)
    result = _integrate(work)
    assert result.fallbacks == [
        "integration: too few strong spots to model spot profiles (14 < 50, and 9 < 20 per "
        "degree); summation integration used"
    ]
    assert [s.log for s in result.steps] == [
        "integrate.out",
        "integrate_few_spots.out",
        "integrate_summation.out",
    ]
    assert [s.returncode for s in result.steps] == [1, 1, 0]
    assert len(_calls(work)) == 3
    again = _integrate(work)  # resumed: the summation attempt's outputs are reused
    assert len(_calls(work)) == 3
    assert [s.skipped for s in again.steps] == [True]
    assert again.fallbacks == result.fallbacks


def test_first_attempt_that_works_leaves_no_fallback(fakes):
    bindir, work = fakes
    _fake(bindir, "dials.integrate", [], "never printed")
    result = _integrate(work)
    assert result.fallbacks == [] and [s.log for s in result.steps] == ["integrate.out"]
    assert "profile.gaussian_rs" not in _calls(work)[0]  # DIALS's defaults first


def test_every_attempt_failing_names_each_and_its_cause(fakes):
    bindir, work = fakes
    _fake(bindir, "dials.integrate", ["never-given"], PROFILE_FAILURE)
    with pytest.raises(pipeline.DatasetFailed) as err:
        _integrate(work)
    text = str(err.value)
    assert text.startswith("integration (dials.integrate) failed with every fallback tried")
    for used in ("profile-fitted integration", "profile model from fewer spots than DIALS's minimum",
                 "summation integration"):  # fmt: skip
        assert used in text
    assert "too few strong spots to model spot profiles (14 < 50" in text
    assert "integrate_summation.out" in text


def test_refinement_falls_back_to_fewer_parameters(fakes):
    bindir, work = fakes
    _fake(bindir, "dials.refine", ["refinement.parameterisation.beam.fix=all"], REFINE_FAILURE)
    result = DatasetResult("x", str(work))
    pipeline._refine(pipeline._Run(work, result), "refined.expt", "refined.refl")
    (note,) = result.fallbacks
    assert note.startswith("refinement: too few reflections to refine the beam and crystal")
    assert note.endswith("refinement of the crystal only (beam and detector fixed)")
    assert [s.returncode for s in result.steps] == [1, 1, 0]


def test_scaling_falls_back_to_a_simpler_model(fakes):
    bindir, work = fakes
    _fake(
        bindir, "dials.scale", ["model=KB"], "ValueError: All data sets have been rejected as bad."
    )
    result = DatasetResult("x", str(work))
    steps = [D.scale_step(ProcessingOptions(), "symmetrized", a) for a in D.SCALE_ATTEMPTS]
    pipeline._first_that_works(pipeline._Run(work, result), steps, D.SCALE_ATTEMPTS)
    assert result.fallbacks == [
        "scaling: scaling rejected every reflection as bad; simplest scaling model (one scale "
        "and B factor, KB) used"
    ]
    calls = _calls(work)
    assert "physical.absorption_correction=False" in calls[1] and "model=KB" in calls[2]


# ------------------------------------------------------------------ with DIALS

#: process_fixtures' tiny sweep made a small cell (11 × 12 × 13 Å) in 15 frames of 0.1°:
#: about 14 strong spots reach the profile model, fewer than DIALS's 50 in total and 20
#: per degree
TINY_WEDGE = dict(
    frames=15,
    osc_width=0.1,
    distance=60.0,
    d_min=0.9,
    unit_cell=(11.0, 12.0, 13.0, 90.0, 90.0, 90.0),
    space_group="P 21 21 21",
    counts_at_dmin=40.0,
    mosaicity=0.03,
)


@pytest.mark.slow
@requires_dials
def test_tiny_wedges_get_through_integration_and_scaling(tmp_path, capsys):
    root = tmp_path / "tiny"
    for name, seed in (("w1", 3), ("w2", 4)):
        simulate_tiny(root / name, **TINY_WEDGE, seed=seed, prefix=name)
    out = tmp_path / "out"
    rc = main(["process", str(root), "--workdir", str(out), "--nproc", "2", "--no-progress"])
    printed = capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    entries = {e["name"]: e for e in summary["datasets"]}
    assert rc == 0, printed
    for e in entries.values():
        assert e["status"] == "ok", e["reason"]
        (note,) = e["fallbacks"]
        assert note.startswith("integration: too few strong spots to model spot profiles (")
        assert note.endswith("used")
        assert f"fallback: {note}" in printed
        work = out / e["name"]
        assert "Too few reflections for profile modelling" in (work / "integrate.out").read_text()
        logs = [s["log"] for s in e["steps"] if s["name"] == "integrate"]
        assert len(logs) == 2 and logs[0].endswith("integrate.out")
        mtz = gemmi.read_mtz_file(str(work / "merged.mtz"))
        assert mtz.nreflections > 0 and mtz.column_with_label("IMEAN") is not None
    assert main(["report", str(out)]) == 0
    page = (out / "report" / "datasets.html").read_text()
    assert "Fallbacks used" in page and "too few strong spots to model spot profiles" in page
    # resumed: nothing runs again and the record still says what was used
    assert main(["process", str(root), "--workdir", str(out), "--nproc", "2", "--no-progress"]) == 0
    again = {e["name"]: e for e in json.loads((out / "summary.json").read_text())["datasets"]}
    for name, e in again.items():
        assert all(s["skipped"] for s in e["steps"])
        assert e["fallbacks"] == entries[name]["fallbacks"]
