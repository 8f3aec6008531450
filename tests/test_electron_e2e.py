"""MicroED small wedges, images to merged data, as a user runs it (#14).

A simulated collection with the MyD88 seed's header quirks (λ 0.0251 Å,
516 × 516 Timepix SMV frames, header distance 2.193 meant in metres while each
crystal's true distance is 1772.5 mm ± 1 %, the image format's rotation axis
90° from the true one), laid out as the seed is: one numbered folder per
crystal, ``1/00001.img`` … ``1/00072.img``.  Crystals 1–6 are good.  Three
inputs are bad: crystal 7 is given a cell 10 % off in the sample sheet,
crystal 8 has lost frame 30, and ``xray/`` is an X-ray CBF sweep whose header
wrongly says λ 0.0251 Å.

Run 1: ``mxflow run`` with a sheet that gives C2 and the published cell.  The
six good crystals must be processed with cells within 1 % of their truth and
refined distances within 1 % of their true distance, and their merged cluster
must correlate with the true intensities (CC ≥ 0.9); each bad input fails with
a message that names its dataset and says why, and the others finish.

Run 2: the same collection with a sheet that gives no cell: the datasets are
processed with the header distance (read as metres), and each one says that
the cell's scale is only as good as that distance; nothing is lost (every
dataset is processed or failed with a reason).

About 12 minutes on 2 cores.  Developers: MXFLOW_TEST_ED=DIR keeps the
collection and both runs in DIR.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import gemmi
import numpy as np
import pytest

from mtz_readers import read_with_cctbx
from mxflow.process.electron import axis_angle
from mxflow.simulate import SimulationConfig, simulate
from mxflow.simulate.config import electron_config
from mxflow.simulate.score import score

pytestmark = [pytest.mark.slow, pytest.mark.dials]

N_GOOD = 6
PUBLISHED = "99.06 31.01 54.30 90 107.7 90"
WRONG = "108.97 31.01 54.30 90 107.7 90"  # a 10 % too long


def _run(root: Path, out: Path, sheet: Path) -> tuple[int, str]:
    argv = [sys.executable, "-m", "mxflow.cli", "run", str(root), "--workdir", str(out),
            "--sample-sheet", str(sheet), "--no-hitmap", "--no-progress", "--settle", "0"]  # fmt: skip
    p = subprocess.run(argv, capture_output=True, text=True)
    return p.returncode, p.stdout + p.stderr


def _xray_with_electron_wavelength(dest: Path) -> None:
    """A small X-ray CBF sweep whose headers say λ 0.02510 Å instead of 1.00000 Å."""
    sim = simulate(dest / "_sim", SimulationConfig(n_crystals=1, frames=5, seed=3))
    dest.mkdir(exist_ok=True)
    for f in sorted(Path(sim.sweeps[0].template).parent.glob("*.cbf")):
        raw = f.read_bytes()
        assert b"# Wavelength 1.00000 A" in raw
        (dest / f.name).write_bytes(
            raw.replace(b"# Wavelength 1.00000 A", b"# Wavelength 0.02510 A")
        )
    shutil.rmtree(dest / "_sim")


def _collection(root: Path) -> dict:
    sim = simulate(root, electron_config(n_crystals=N_GOOD + 2, seed=5))
    (root / "8" / "00030.img").unlink()
    _xray_with_electron_wavelength(root / "xray")
    return json.loads(sim.truth_json.read_text())


def _sheet(path: Path, cell: bool) -> Path:
    rows = ["name,directory,space_group,unit_cell"]
    rows.append(f"myd88,.,C2,{PUBLISHED if cell else ''}")
    rows.append(f"myd88_wrong,7,C2,{WRONG if cell else ''}")
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.fixture(scope="module")
def ed(tmp_path_factory):
    if shutil.which("dials.find_rotation_axis") is None:
        pytest.skip("DIALS not on PATH")
    keep = os.environ.get("MXFLOW_TEST_ED")
    wd = Path(keep).resolve() if keep else tmp_path_factory.mktemp("ed")
    root = wd / "814"
    if not (wd / "truth.json").exists():
        shutil.rmtree(root, ignore_errors=True)
        truth = _collection(root)
        (wd / "truth.json").write_text(json.dumps(truth))
    for name, cell in (("cell", True), ("nocell", False)):
        if not (wd / f"{name}.log").exists():
            rc, log = _run(root, wd / name, _sheet(wd / f"{name}.csv", cell))
            (wd / f"{name}.rc").write_text(str(rc))
            (wd / f"{name}.log").write_text(log)
    return wd


def _summary(wd: Path, name: str) -> tuple[int, str, dict]:
    rc = int((wd / f"{name}.rc").read_text())
    log = (wd / f"{name}.log").read_text()
    return rc, log, json.loads((wd / name / "summary.json").read_text())


def _by_name(summary: dict) -> dict[str, dict]:
    return {d["name"]: d for d in summary["datasets"]}


def _truth(wd: Path) -> dict[str, dict]:
    return {c["name"]: c for c in json.loads((wd / "truth.json").read_text())["crystals"]}


def test_good_crystals_get_the_true_axis_distance_and_cell(ed):
    rc, log, summary = _summary(ed, "cell")
    datasets, truth = _by_name(summary), _truth(ed)
    good = [datasets[str(k)] for k in range(1, N_GOOD + 1) if str(k) in datasets]
    ok = [d for d in good if d["status"] == "ok"]
    assert len(ok) >= 5, log[-4000:]
    for d in ok:
        t, geo = truth[d["name"]], d["electron"]
        assert geo["header_distance_unit"] == "m" and geo["header_distance"] == pytest.approx(2.193)
        assert axis_angle(geo["rotation_axis"], t["rotation_axis"]) < 1.0, d["name"]
        assert geo["refined_distance"] == pytest.approx(t["distance_mm"], rel=0.01), d["name"]
        for got, want in zip(d["unit_cell"], t["unit_cell"], strict=True):
            assert got == pytest.approx(want, rel=0.01), (d["name"], d["unit_cell"], t["unit_cell"])
        assert d["space_group"] == "C 1 2 1"
    assert "electron diffraction" in log and "read as metres" in log


def test_merged_electron_data_correlate_with_the_truth(ed):
    rc, log, _ = _summary(ed, "cell")
    mtz = ed / "cell" / "merge" / "myd88" / "final" / "merged.mtz"
    assert mtz.exists(), log[-4000:]
    sc = score(mtz, ed / "814" / "truth")
    assert sc["cc_overall"] >= 0.9, sc
    # the file a user takes on: read by gemmi and by cctbx, C 2 with FreeR flags
    m = gemmi.read_mtz_file(str(mtz))
    assert m.spacegroup.hm == "C 1 2 1" and "FreeR_flag" in m.column_labels()
    cctbx = read_with_cctbx(mtz)
    assert "FreeR_flag" in cctbx["columns"] and "IMEAN" in cctbx["columns"]


def test_each_bad_input_fails_with_its_reason_and_the_others_finish(ed):
    rc, log, summary = _summary(ed, "cell")
    datasets = _by_name(summary)
    wrong, missing = datasets["7"], datasets["8"]
    xray = next(d for name, d in datasets.items() if name.startswith("xray"))
    assert wrong["status"] == "failed" and "does not fit this dataset's lattice" in wrong["reason"]
    assert "108.97" in wrong["reason"]
    assert missing["status"] == "failed" and "00030.img" in missing["reason"]
    assert xray["status"] == "failed" and "is the wavelength right" in xray["reason"]
    for d in (wrong, missing, xray):  # the run's log names each failed dataset
        assert any(d["name"] in line and "FAILED" in line for line in log.splitlines()), d["name"]
    assert sum(d["status"] == "ok" for d in datasets.values()) >= 5


def test_without_a_cell_datasets_keep_the_header_distance_and_say_so(ed):
    rc, log, summary = _summary(ed, "nocell")
    datasets = _by_name(summary)
    # nothing lost: every dataset of the collection is there, processed or failed with a reason
    assert set(datasets) == set(_by_name(_summary(ed, "cell")[2]))
    for d in datasets.values():
        assert d["status"] in ("ok", "failed"), d
        assert d["status"] == "ok" or d["reason"], d
    ok = [d for d in datasets.values() if d["status"] == "ok"]
    assert len(ok) >= 5, log[-4000:]
    truth = _truth(ed)
    for d in ok:
        geo = d["electron"]
        assert geo["refined_distance"] is None and geo["distance_used"] == pytest.approx(2193.0)
        assert any("only as good as that distance" in n for n in geo["notes"])
        # the cell is as wrong as the distance: about 2193 / 1772.5, the same for every edge
        ratio = np.array(d["unit_cell"][:3]) / np.array(truth[d["name"]]["unit_cell"][:3])
        assert np.ptp(ratio) < 0.02 and 1.1 < ratio.mean() < 1.35, ratio
    assert "kept the header distance" in log
