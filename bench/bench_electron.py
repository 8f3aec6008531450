"""Benchmark: simulated MicroED sweeps through mxflow vs the MyD88 tutorial's route by hand.

Both run in one invocation on the same simulated collection (the seed's
quirks: λ 0.0251 Å, 516 × 516 Timepix SMV, header distance 2.193 m, true
distances 1772.5 mm ± 1 %, the format's rotation axis 90° off):

* ``tutorial``: what the DIALS tutorial has a user type for each crystal,
  serially, given what the user found by hand for the first one (the true
  rotation axis in its right sense, which the tutorial finds with the image
  viewer and two indexing runs, here free): dials.import distance=2193
  goniometer.axis=…, find_spots d_max=20, index (distance fixed, goniometer
  free), refine_bravais_settings best_monoclinic_beta=False, reindex, refine
  restrained to the published cell (distance free), then dials.import again
  with that crystal's refined distance, find_spots, index space_group=C2,
  refine (distance fixed), integrate; then one dials.scale of all crystals and
  dials.merge (the tutorial's scaling without its image-group filtering);
* ``mxflow``: ``mxflow run`` with a sample sheet giving C2 and the published cell
  (2 workers × 1 core): the axis searched and both senses indexed, per crystal,
  then the clustered merge.

Reported: wall time of each (and the ratio), seconds per dataset, the refined
distances' error against each crystal's true distance, the rotation axis
error, and the merged data's CC to the true intensities.  Writes
bench/out/electron.json.

usage: .venv/bin/python bench/bench_electron.py [--crystals 3] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
PUBLISHED = (99.06, 31.01, 54.30, 90.0, 107.7, 90.0)
TIE = "refinement.parameterisation.crystal.unit_cell.restraints.tie_to_target"


def dials_env() -> dict[str, str]:
    env = dict(os.environ)
    for var in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"):
        env.pop(var, None)
    return env


def _distance(expt: Path) -> float:
    from mxflow.engine.expt import read_experiments

    return float(read_experiments(expt)[0].distance)


def tutorial_crystal(frames: list[str], axis: list[float], work: Path) -> float:
    """The tutorial's commands for one crystal in ``work``; returns the refined distance (mm)."""
    env = dials_env()
    work.mkdir(parents=True)
    cell = ",".join(f"{x:g}" for x in PUBLISHED)
    (work / "restraint.phil").write_text(
        f"{TIE} {{\n  values = {cell}\n  sigmas = {','.join(['0.01'] * 6)}\n}}\n"
    )

    def call(*cmd: str) -> None:
        with open(work / "tutorial.log", "ab") as log:
            subprocess.run(
                list(cmd), cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT, check=True
            )

    ax = "goniometer.axis=" + ",".join(f"{x:.4f}" for x in axis)
    fix = "detector.fix=distance"
    call("dials.import", *frames, "distance=2193", ax)
    call("dials.find_spots", "imported.expt", "d_max=20")
    call("dials.index", "imported.expt", "strong.refl", fix, "goniometer.fix=None")
    call("dials.refine_bravais_settings", "indexed.expt", "indexed.refl", fix,
         "best_monoclinic_beta=False")  # fmt: skip
    summary = json.loads((work / "bravais_summary.json").read_text())
    number, entry = next((k, v) for k, v in summary.items() if v["bravais"] == "mC")
    call("dials.reindex", "indexed.refl", f"change_of_basis_op={entry['cb_op']}")
    call("dials.refine", f"bravais_setting_{number}.expt", "reindexed.refl", "restraint.phil",
         "scan_varying=False", "output.experiments=restrained.expt",
         "output.reflections=restrained.refl")  # fmt: skip
    distance = _distance(work / "restrained.expt")
    call("dials.import", *frames, f"distance={distance:.2f}", ax)
    call("dials.find_spots", "imported.expt", "d_max=20")
    call("dials.index", "imported.expt", "strong.refl", fix, "goniometer.fix=None",
         "space_group=C2")  # fmt: skip
    call("dials.refine", "indexed.expt", "indexed.refl", fix)
    call("dials.integrate", "refined.expt", "refined.refl")
    return distance


def tutorial_scale(dirs: list[Path], work: Path) -> None:
    env = dials_env()
    work.mkdir()
    files = [str(d / f"integrated.{ext}") for d in dirs for ext in ("expt", "refl")]
    with open(work / "scale.log", "wb") as log:
        for cmd in (
            ["dials.scale", *files],
            ["dials.merge", "scaled.expt", "scaled.refl"],
        ):
            subprocess.run(cmd, cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT, check=True)


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--crystals", type=int, default=3, help="MicroED sweeps (default 3)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = ap.parse_args()

    from mxflow.process.electron import axis_angle
    from mxflow.simulate.config import electron_config
    from mxflow.simulate.core import simulate
    from mxflow.simulate.score import score

    if shutil.which("dials.find_rotation_axis") is None:
        print("DIALS is not on PATH", file=sys.stderr)
        return 1
    tmp = Path(tempfile.mkdtemp(prefix="mxflow-bench-electron-"))
    report: dict = {"cores": len(os.sched_getaffinity(0)), "crystals": args.crystals,
                    "load_avg_1min": [round(os.getloadavg()[0], 2)]}  # fmt: skip
    try:
        sim = simulate(tmp / "814", electron_config(n_crystals=args.crystals, seed=9))
        truth = {c["name"]: c for c in json.loads(sim.truth_json.read_text())["crystals"]}

        # 1. the tutorial by hand, serially
        t0 = time.perf_counter()
        dirs, errors = [], []
        for sweep in sim.sweeps:
            name = Path(sweep.template).parent.name
            frames = [sweep.frame_path(n) for n in range(sweep.first, sweep.last + 1)]
            d = tutorial_crystal(frames, truth[name]["rotation_axis"], tmp / "tutorial" / name)
            errors.append(d / truth[name]["distance_mm"] - 1)
            dirs.append(tmp / "tutorial" / name)
        tutorial_scale(dirs, tmp / "tutorial" / "scale")
        wall = time.perf_counter() - t0
        cc = score(tmp / "tutorial" / "scale" / "merged.mtz", sim.truth_dir)["cc_overall"]
        report["tutorial"] = {
            "wall_s": round(wall, 1),
            "s_per_dataset": round(wall / args.crystals, 1),
            "distance_error_pct": [round(100 * e, 3) for e in errors],
            "cc_truth": round(cc, 4),
        }
        print(f"tutorial: {report['tutorial']}", flush=True)
        report["load_avg_1min"].append(round(os.getloadavg()[0], 2))

        # 2. mxflow run with a sample sheet
        sheet = tmp / "sheet.csv"
        sheet.write_text(
            f"name,directory,space_group,unit_cell\nmyd88,.,C2,{' '.join(map(str, PUBLISHED))}\n"
        )
        out = tmp / "mxflow"
        cmd = [sys.executable, "-m", "mxflow.cli", "run", str(tmp / "814"), "--workdir", str(out),
               "--sample-sheet", str(sheet), "--settle", "0", "--no-progress", "--no-hitmap",
               "--workers", "2", "--nproc", "1"]  # fmt: skip
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if proc.returncode:
            print(proc.stdout[-3000:], proc.stderr[-3000:], file=sys.stderr)
        summary = json.loads((out / "summary.json").read_text())
        ok = [d for d in summary["datasets"] if d["status"] == "ok"]
        dist = [d["electron"]["refined_distance"] / truth[d["name"]]["distance_mm"] - 1 for d in ok]
        axis = [axis_angle(d["electron"]["rotation_axis"], truth[d["name"]]["rotation_axis"])
                for d in ok]  # fmt: skip
        cc = score(out / "merge" / "myd88" / "final" / "merged.mtz", sim.truth_dir)["cc_overall"]
        report["mxflow"] = {
            "wall_s": round(wall, 1),
            "rc": proc.returncode,
            "processed_ok": len(ok),
            "s_per_dataset_processing": round(float(np.mean([d["wall_s"] for d in ok])), 1),
            "distance_error_pct": [round(100 * e, 3) for e in dist],
            "axis_error_deg": [round(a, 3) for a in axis],
            "cc_truth": round(cc, 4),
        }
        report["ratio_wall_mxflow_over_tutorial"] = round(wall / report["tutorial"]["wall_s"], 2)
        report["load_avg_1min"].append(round(os.getloadavg()[0], 2))
        print(f"mxflow: {report['mxflow']}")
        print(f"wall ratio mxflow / tutorial: {report['ratio_wall_mxflow_over_tutorial']}")
    finally:
        OUT.mkdir(exist_ok=True)
        (OUT / "electron.json").write_text(json.dumps(report, indent=1) + "\n")
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
