"""Zn-SAD from small wedges, images to files for phasing, as a user runs it (#13).

Ten crystals in a ZOO tree (one pin each, 10 × 1° per wedge, λ 1.282 Å just
above the Zn K edge, three Zn sites per ASU of a 54 × 62 × 71 Å P 21 21 21
cell: a Bijvoet ratio of about 4 %).  The collection is run twice into one
OUT, as a user who fixes the sample sheet would:

1. with a wrong sheet: half the pins flagged anomalous, the other half not;
2. with the right one: every pin anomalous, heavy atom Zn, 3 sites.

The first run must say what it did with the mixed flags and give a result
no worse than the second.  The second must recover the true Bijvoet
differences (CC(ΔI, ΔI_true) ≥ 0.5 in the recommended cluster), keep the
anomalous columns in the merged MTZ (read by gemmi and by cctbx), write the
SHELX HKLF 4 file, and report CCano and SigAno per cluster in
merge_summary.json.  About 10 minutes on 2 cores.

Developers: MXFLOW_TEST_SAD=DIR keeps the collection and both runs in DIR.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import gemmi
import pytest

from mtz_readers import read_with_cctbx
from mxflow.merge.outputs import read_summary
from mxflow.merge.shelx import read_hklf4
from mxflow.simulate import SimulationConfig, simulate
from mxflow.simulate.score import score

pytestmark = [pytest.mark.slow, pytest.mark.dials]

N = 10
SIM = dict(
    layout="zoo",
    zoo_mode="single",
    n_crystals=N,
    frames=10,
    osc_width=1.0,
    detector_size=(487, 619),
    distance=80.0,
    d_min=2.3,
    space_group="P 21 21 21",
    unit_cell=(54.0, 62.0, 71.0, 90.0, 90.0, 90.0),
    wavelength=1.282,
    heavy_atom="Zn",
    n_sites=3,
    counts_at_dmin=30.0,
    seed=11,
)


def _sheet(path: Path, right: bool) -> Path:
    rows = ["pin,name,anomalous,heavy_atom,sites"]
    for k in range(1, N + 1):
        if right:
            rows.append(f"CPS0001-{k:02d},thas1,yes,Zn,3")
        else:
            rows.append(f"CPS0001-{k:02d},thas1,{'yes' if k <= N // 2 else 'no'},,")
    path.write_text("\n".join(rows) + "\n")
    return path


def _run(root: Path, out: Path, sheet: Path) -> tuple[int, str]:
    argv = [sys.executable, "-m", "mxflow.cli", "run", str(root), "--workdir", str(out),
            "--sample-sheet", str(sheet), "--no-hitmap", "--no-progress", "--settle", "0"]  # fmt: skip
    p = subprocess.run(argv, capture_output=True, text=True)
    return p.returncode, p.stdout + p.stderr


def _keep(out: Path, dest: Path) -> None:
    """What a run left in final/ and its merge summary, before the next run replaces them."""
    merge = out / "merge" / "thas1"
    shutil.copytree(merge / "final", dest / "final")
    shutil.copyfile(merge / "merge_summary_thas1.json", dest / "summary.json")


@pytest.fixture(scope="module")
def sad(tmp_path_factory):
    if shutil.which("dials.index") is None:
        pytest.skip("DIALS not on PATH")
    keep = os.environ.get("MXFLOW_TEST_SAD")
    wd = Path(keep).resolve() if keep else tmp_path_factory.mktemp("sad")
    root, out = wd / "data", wd / "out"
    if not (wd / "right" / "log.txt").exists():
        shutil.rmtree(wd / "wrong", ignore_errors=True)
        shutil.rmtree(wd / "right", ignore_errors=True)
        sim = simulate(root, SimulationConfig(**SIM))
        for name, right in (("wrong", False), ("right", True)):
            (wd / name).mkdir(parents=True)
            rc, log = _run(root, out, _sheet(wd / f"{name}.csv", right))
            (wd / name / "rc").write_text(str(rc))
            _keep(out, wd / name)
            (wd / name / "log.txt").write_text(log)
        assert sim.truth_dir == root / "truth"
    return wd


def _result(wd: Path, name: str) -> tuple[int, str, Path]:
    d = wd / name
    return int((d / "rc").read_text()), (d / "log.txt").read_text(), d


def test_right_flags_recover_the_true_bijvoet_differences(sad):
    rc, log, d = _result(sad, "right")
    assert rc == 0, log[-3000:]
    sc = score(d / "final" / "merged.mtz", sad / "data" / "truth")
    assert sc["cc_overall"] > 0.98
    assert sc["anomalous"]["cc_overall"] >= 0.5, sc["anomalous"]
    assert "Zn K edge" in log


def test_merged_mtz_keeps_the_anomalous_columns_and_hklf4_sits_beside_it(sad):
    _, _, d = _result(sad, "right")
    mtz_path = d / "final" / "merged.mtz"
    mtz = gemmi.read_mtz_file(str(mtz_path))
    want = {"I(+)", "SIGI(+)", "I(-)", "SIGI(-)", "F(+)", "SIGF(+)", "F(-)", "SIGF(-)"}
    want |= {"DANO", "SIGDANO", "FreeR_flag"}
    assert want <= set(mtz.column_labels())
    history = " ".join(mtz.history)
    assert "heavy atom Zn, 3 sites expected" in history and "f''" in history
    assert want <= set(read_with_cctbx(mtz_path)["columns"])
    hkl = read_hklf4(d / "final" / "merged_hklf4.hkl")
    n_pairs = mtz.nreflections // 2
    assert len(hkl.hkl) > n_pairs  # I(+) and I(−) of most reflections


def test_merge_summary_reports_cc_ano_and_sig_ano_per_cluster(sad):
    _, _, d = _result(sad, "right")
    summary = read_summary(d / "summary.json")
    merged = [c for c in summary.clusters if c.ok]
    assert merged and all(c.anomalous is not None for c in merged)
    best = json.loads((d / "final" / "final.json").read_text())
    c = next(c for c in merged if c.id == best["cluster"])
    a = c.anomalous
    assert a.cc_ano > 0.3 and a.sig_ano > 1.0 and a.anom_slope > 1.1
    assert a.d_ano is not None and a.anom_completeness > 0.5
    assert a.heavy_atom.element == "Zn" and a.heavy_atom.n_sites == 3
    assert 3.0 < a.heavy_atom.f_double_prime < 4.5
    assert c.shelx_hkl.endswith("merged_hklf4.hkl")
    assert best["anomalous"]["cc_ano"] == pytest.approx(a.cc_ano)


def test_half_the_pins_flagged_native_is_said_and_not_worse(sad):
    rc, log, d = _result(sad, "wrong")
    assert rc == 0, log[-3000:]
    assert f"{N // 2} of {N} dataset(s) are flagged anomalous" in log
    wrong = score(d / "final" / "merged.mtz", sad / "data" / "truth")["anomalous"]
    right = score(sad / "right" / "final" / "merged.mtz", sad / "data" / "truth")["anomalous"]
    assert wrong["cc_overall"] >= right["cc_overall"] - 0.02, (wrong, right)
