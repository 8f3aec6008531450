"""Resolution from the data: a merge starts at the detector half-corner (KAMO) and goes
beyond it only when CC½ there is still above the target.

Two sets of the same four simulated P2₁2₁2₁ wedges (10 × 1° on a 487 × 619 px
detector at 100 mm: half-corner 2.30 Å, corner 1.70 Å):

* "far": spots to 1.75 Å, strong — CC½ at 2.30 Å is far above 0.5, so the
  merge must be run again towards the corner and end well beyond 2.30 Å;
* "near": spots only to 2.6 Å — CC½ falls inside the half-corner, so the
  merge stays there and is cut where CC½ falls to the target.

Also checked: one space group for the sample in its standard setting, no
systematically absent reflection in any merged MTZ, and the MTZ read the
same by gemmi and cctbx.  Developers: MXFLOW_TEST_MERGE_RES=DIR keeps the
processed wedges between runs.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import gemmi
import numpy as np
import pytest

from mtz_readers import read_with_cctbx
from mxflow.merge import merge_sample
from mxflow.model import MergeOptions, ProcessingOptions, Thresholds
from mxflow.process.cli import run_process
from mxflow.simulate import SimulationConfig, simulate
from mxflow.stats import absences

pytestmark = [pytest.mark.slow, pytest.mark.dials]

SIM = dict(
    n_crystals=4,
    frames=10,
    osc_width=1.0,
    detector_size=(487, 619),
    distance=100.0,
    space_group="P 21 21 21",
    unit_cell=(40.0, 50.0, 60.0, 90.0, 90.0, 90.0),
    n_populations=1,
    seed=11,
)
CASES = {"far": dict(d_min=1.75, counts_at_dmin=40.0), "near": dict(d_min=2.6)}
HALF_CORNER = 2.30


def _processed(root: Path, case: str) -> list[Path]:
    images = root / case / "images"
    simulate(images, SimulationConfig(**SIM, **CASES[case]))
    proc = root / case / "proc"
    if not (proc / "summary.json").exists():
        run_process([str(images)], proc, ProcessingOptions(nproc=2), jobs=2, progress=False)
    summary = json.loads((proc / "summary.json").read_text())
    ok = [d["name"] for d in summary["datasets"] if d["status"] == "ok"]
    assert len(ok) >= 3, summary["datasets"]
    return [p for n in ok for p in (proc / n / "integrated.expt", proc / n / "integrated.refl")]


@pytest.fixture(scope="module")
def merges(tmp_path_factory):
    if shutil.which("dials.scale") is None:
        pytest.skip("DIALS not on PATH")
    keep = os.environ.get("MXFLOW_TEST_MERGE_RES")
    root = Path(keep) if keep else tmp_path_factory.mktemp("merge_resolution")
    out = {}
    for case in CASES:
        wd = root / case / "merge"
        shutil.rmtree(wd, ignore_errors=True)
        # "far" also merges a second, nested cluster: it must start at the root's corner
        thresholds = (
            Thresholds(min_completeness=0, min_multiplicity=1.0, max_clusters=2)
            if case == "far"
            else Thresholds(min_completeness=30, min_multiplicity=1.0, max_clusters=1)
        )
        opts = MergeOptions(sample=case, nproc=2, thresholds=thresholds)
        out[case] = (wd, merge_sample(_processed(root, case), wd, opts))
    return out


def _best(summary):
    ok = [c for c in summary.clusters if c.ok]
    assert ok, summary.failure_reason()
    return max(ok, key=lambda c: len(c.members))


def test_spots_to_the_corner_are_merged_beyond_the_half_corner(merges):
    wd, s = merges["far"]
    assert s.d_start == pytest.approx(HALF_CORNER, abs=0.02)
    c = _best(s)
    assert c.final_run.startswith("extended/"), c.resolution_case
    assert "detector corner" in c.resolution_case
    assert c.d_min < HALF_CORNER - 0.15  # well beyond where it started
    res = json.loads((wd / Path(c.merged_mtz).parent / "resolution.json").read_text())
    assert res["corner"] == pytest.approx(1.70, abs=0.02) and res["start"] == s.d_start
    assert gemmi.read_mtz_file(str(wd / c.merged_mtz)).resolution_high() < HALF_CORNER - 0.15


def test_a_nested_cluster_starts_at_the_corner_its_enclosing_cluster_reached(merges):
    wd, s = merges["far"]
    root = _best(s)
    nested = [c for c in s.clusters if c.ok and c is not root]
    assert len(nested) == 1, [(c.id, c.error) for c in s.clusters]
    c = nested[0]
    assert set(c.node_members) < set(root.node_members)
    assert root.extended_to == pytest.approx(1.70, abs=0.02)
    # no half-corner chain to be run again: straight to the corner
    assert not c.final_run.startswith("extended/") and c.runs[0].name == "run_01"
    assert not (wd / Path(c.merged_mtz).parent.parent / "extended").exists()
    assert f"enclosing cluster {root.id}" in c.resolution_case
    assert c.extended_to == root.extended_to
    assert c.d_min < HALF_CORNER - 0.1
    res = json.loads((wd / Path(c.merged_mtz).parent / "resolution.json").read_text())
    assert res["start"] == pytest.approx(root.extended_to) and res["corner"] is None


def test_spots_inside_the_half_corner_stay_and_are_cut_where_cc_half_falls(merges):
    wd, s = merges["near"]
    c = _best(s)
    assert not c.final_run.startswith("extended/"), c.resolution_case
    assert not (wd / Path(c.merged_mtz).parent.parent / "extended").exists()
    assert c.d_cut is not None and 2.4 < c.d_cut < 3.0, c.resolution_case
    assert "cut where CC½ falls" in c.resolution_case
    assert c.d_min == pytest.approx(c.d_cut, abs=0.05)


@pytest.mark.parametrize("case", list(CASES))
def test_one_standard_space_group_and_no_absences_left(merges, case):
    wd, s = merges[case]
    choice = s.space_group_choice
    assert choice is not None and choice.point_group == "P 2 2 2", choice
    probs = [x.probability for x in choice.candidates]
    assert len(probs) == 8 and probs[0] == max(probs) and abs(sum(probs) - 1) < 1e-6
    # every axis the wedges measured shows its 2₁ (the truth is P 21 21 21); one never
    # measured is taken as a screw and the label says it is undetermined
    seen = [e for e in choice.axial if e.verdict != "undetermined"]
    assert seen and all(e.verdict == "screw" for e in seen), choice.axial
    sg = gemmi.SpaceGroup(choice.space_group)
    assert sg.is_reference_setting()
    # screws: every axis seen with one, and every undetermined axis (taken as a screw)
    assert set(absences.screw_axes(sg).split()) == {e.axis for e in seen} | set(choice.undetermined)
    if choice.undetermined:
        assert "undetermined" in choice.label
        tied = [x.space_group for x in choice.candidates if x.probability > probs[0] - 1e-6]
        assert "P 21 21 21" in tied, choice.candidates  # the truth is as likely as the choice
    else:
        assert choice.space_group == "P 21 21 21" and probs[0] > 0.9
    for c in s.clusters:
        for mtz_path in (c.merged_mtz, c.unmerged_mtz):
            mtz = gemmi.read_mtz_file(str(wd / mtz_path))
            assert mtz.spacegroup == sg  # every file of every cluster
        assert c.space_group == choice.space_group
        merged = gemmi.read_mtz_file(str(wd / c.merged_mtz))
        hkl = np.asarray(merged.make_miller_array())
        absent = [merged.spacegroup.operations().is_systematically_absent(list(h)) for h in hkl]
        assert not any(absent)


def test_extended_merge_reads_the_same_in_cctbx(merges):
    wd, s = merges["far"]
    c = _best(s)
    mtz = gemmi.read_mtz_file(str(wd / c.merged_mtz))
    other = read_with_cctbx(wd / c.merged_mtz)
    assert gemmi.SpaceGroup(other["space_group"]) == mtz.spacegroup
    assert np.allclose(other["cell"], mtz.cell.parameters, atol=1e-3)
    assert other["n_refl"] == mtz.nreflections
    assert "FreeR_flag" in other["columns"] and other["free_values"] == list(range(20))
