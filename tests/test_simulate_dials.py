"""Slow round trip: DIALS 3.12 indexes, integrates and scales a simulated sweep.

Checks that the simulator's geometry is the one dxtbx reads from the headers:
the refined cell agrees with the truth within 0.5 %, the lattice is right,
DIALS's orientation matrix equals the true A up to a lattice symmetry
operator, and the merged intensities correlate with the true ones.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from mxflow.simulate import SimulationConfig, score, simulate

pytestmark = [pytest.mark.slow, pytest.mark.dials]


def _dials(workdir: Path, program: str, *args: str) -> None:
    if shutil.which(program) is None:
        pytest.skip(f"{program} not on PATH")
    proc = subprocess.run(
        ["nice", program, *args], cwd=workdir, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, f"{program} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"


def _dials_A(expt: Path) -> np.ndarray:
    crystal = json.loads(expt.read_text())["crystal"][0]
    real = np.array([crystal["real_space_a"], crystal["real_space_b"], crystal["real_space_c"]])
    return np.linalg.inv(real)


def test_dials_indexes_integrates_and_scales_simulated_sweep(tmp_path):
    cfg = SimulationConfig(frames=30, osc_width=1.0, osc_start=0.0, seed=11, d_min=2.0)
    res = simulate(tmp_path / "images", cfg)
    truth = res.crystals[0]
    work = tmp_path / "dials"
    work.mkdir()
    _dials(work, "dials.import", f"template={res.sweeps[0].template}")
    _dials(work, "dials.find_spots", "imported.expt", "nproc=2")
    # 1. without prior knowledge: P1 indexing, then the cell and orientation
    _dials(work, "dials.index", "imported.expt", "strong.refl")
    expt = json.loads((work / "indexed.expt").read_text())
    crystal = expt["crystal"][0]
    real = np.array([crystal["real_space_a"], crystal["real_space_b"], crystal["real_space_c"]])
    lengths = np.sort(np.linalg.norm(real, axis=1))
    assert np.allclose(lengths, sorted(truth["unit_cell"][:3]), rtol=0.005)
    # DIALS's A is the true A times an integer basis change of determinant +1
    change = np.linalg.inv(np.array(truth["A"])) @ _dials_A(work / "indexed.expt")
    assert np.allclose(change, np.round(change), atol=0.02)
    assert round(np.linalg.det(change)) == 1
    # 2. with the known space group: right lattice, integrate, scale, merge
    _dials(
        work,
        "dials.index",
        "imported.expt",
        "strong.refl",
        "space_group=P212121",
        "output.experiments=sg.expt",
        "output.reflections=sg.refl",
    )
    sg_cell = json.loads((work / "sg.expt").read_text())["crystal"][0]
    assert sg_cell["space_group_hall_symbol"].replace(" ", "") == "P2ac2ab"
    _dials(work, "dials.integrate", "sg.expt", "sg.refl", "nproc=2")
    _dials(work, "dials.scale", "integrated.expt", "integrated.refl", "d_min=2.0")
    _dials(work, "dials.merge", "scaled.expt", "scaled.refl")
    result = score(work / "merged.mtz", res.truth_dir)
    assert result["cc_overall"] >= 0.9, result
    assert result["shells"][0]["cc"] > result["shells"][-1]["cc"]
