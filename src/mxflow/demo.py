"""Simulate a small ZOO-style collection and run the whole mxflow job on it.

The embedded default is what a beamline shift looks like in miniature:

* sample ``lysA`` — pin CPS0001-01 measured in *multi* mode: small 10° wedges
  from several microcrystals in one loop;
* sample ``lysB`` — pin CPS0002-01 measured in *helical* mode (one 40° sweep,
  also cut into 30° wedges), with a raster scan of the loop (scan00/).

Both samples are P 2₁2₁2₁ crystals simulated by mxflow's own simulator with
known true intensities.  The demo then runs what ``mxflow run`` runs —
discovery with a sample sheet, DIALS processing of every dataset and wedge
in parallel, merging per sample (cell and CC clustering, run_01 → run_03,
CC½ resolution cut), hit maps of raster scans and the HTML reports — and
finally scores every merged MTZ against the truth.

Layout of DIR:
  data/               the simulated collection (read-only input)
  data_truth/         the simulator's truth per sample (truth.json, truth_A.mtz)
  sample_sheet.csv    pin → sample name, as a user would write it
  out/                mxflow's results (summary.json, proc/, merge/, report/index.html)
  demo.json           the scores against the truth

Running it again reuses the images and every finished step.

example:
  mxflow demo --workdir mxflow-demo
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from mxflow.util.files import atomic_write_text, read_json, write_json

#: geometry shared by every simulated dataset: a small PILATUS-style panel
_COMMON: dict[str, Any] = dict(
    detector_size=(487, 619), distance=100.0, d_min=2.2, osc_width=1.0, layout="zoo"
)

#: the embedded demo collection: sample name -> simulator configuration
DEMO_SAMPLES: dict[str, dict[str, Any]] = {
    "lysA": dict(_COMMON, zoo_mode="multi", zoo_puck="CPS0001", n_crystals=6, frames=10, seed=11),
    "lysB": dict(
        _COMMON,
        zoo_mode="helical",
        zoo_puck="CPS0002",
        n_crystals=1,
        frames=40,
        seed=12,
        raster_grid=(3, 4),
    ),
}

SAMPLE_SHEET = "puck,pin,name\nCPS0001,1,lysA\nCPS0002,1,lysB\n"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--workdir", "-o", default="mxflow-demo", metavar="DIR", help="output directory"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="parallel datasets (default: sized to the machine)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def simulate_once(workdir: Path, samples: dict[str, dict[str, Any]]) -> dict[str, Path]:
    """Simulate every sample into ``workdir/data`` unless the same configuration is there.

    Each sample is simulated into a scratch directory and its pin directories
    moved into the collection root, so the root looks like a beamline's; the
    truth goes to ``workdir/data_truth/<sample>``.  Returns sample -> truth dir.
    """
    from mxflow.simulate import SimulationConfig, simulate

    data, truth_root = workdir / "data", workdir / "data_truth"
    stamp = workdir / "demo_config.json"
    wanted = json.loads(json.dumps(samples))
    truths = {name: truth_root / name for name in samples}
    if stamp.exists() and data.is_dir():
        try:
            if read_json(stamp) == wanted and all(t.is_dir() for t in truths.values()):
                return truths
        except (OSError, ValueError):
            pass
    for path in (data, truth_root):
        if path.exists():
            shutil.rmtree(path)
    data.mkdir(parents=True)
    truth_root.mkdir(parents=True)
    for name, cfg in samples.items():
        with tempfile.TemporaryDirectory(dir=workdir) as tmp:
            simulate(Path(tmp), SimulationConfig(**cfg))
            for child in sorted(Path(tmp).iterdir()):
                target = truth_root / name if child.name == "truth" else data / child.name
                shutil.move(str(child), str(target))
    write_json(stamp, wanted)
    return truths


def score_merges(out: Path, truths: dict[str, Path]) -> list[dict[str, Any]]:
    """CC to the truth of every merged cluster (each sample against its own truth)."""
    from mxflow.merge.outputs import read_summary
    from mxflow.simulate import score

    rows = []
    for summary_path in sorted(out.glob("merge*/*/merge_*/merge_summary.json")):
        summary = read_summary(summary_path)
        sample = summary.sample
        route = summary_path.parents[2].name
        for cluster in summary.clusters:
            row = {"sample": sample, "route": route, "cluster": cluster.id, "cc": None}
            row.update(n=len(cluster.members), d_min=cluster.d_min)
            if cluster.ok and sample in truths:
                # paths in merge_summary.json are relative to the sample's merge directory
                path = summary_path.parents[1] / cluster.merged_mtz
                try:
                    row["cc"] = float(score(path, truths[sample])["cc_overall"])
                except Exception as exc:  # scoring is a report, not a reason to stop
                    row["error"] = str(exc)
            rows.append(row)
    return rows


def run_demo(
    workdir: str | Path, workers: int | None = None, progress: bool = True
) -> dict[str, Any]:
    """Simulate the demo collection, run mxflow on it, score the merges; returns demo.json.

    The collection is processed by the command a user types, ``mxflow run DATA
    --workdir OUT --sample-sheet SHEET``, with the paths as ``workdir`` gives them
    (``make demo`` gives a relative one), so the demo goes the user's way.
    """
    from mxflow.cli import main as mxflow_main

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    truths = simulate_once(workdir, DEMO_SAMPLES)
    t_sim = time.perf_counter() - t0
    sheet = workdir / "sample_sheet.csv"
    atomic_write_text(sheet, SAMPLE_SHEET)
    out = workdir / "out"
    argv = ["run", str(workdir / "data"), "--workdir", str(out), "--sample-sheet", str(sheet)]
    argv += ["--settle", "0"]
    if workers:
        argv += ["--workers", str(workers)]
    if not progress:
        argv.append("--no-progress")
    print("mxflow " + " ".join(argv), flush=True)
    status = mxflow_main(argv)
    demo = {
        "samples": DEMO_SAMPLES,
        "command": "mxflow " + " ".join(argv),
        "run_status": status,
        "simulate_s": round(t_sim, 2),
        "wall_s": round(time.perf_counter() - t0, 2),
        "merged_cc_to_truth": score_merges(out, truths),
        "summary": str((out / "summary.json").resolve()),
        "report": str((out / "report" / "index.html").resolve()),
    }
    write_json(workdir / "demo.json", demo)
    return demo


def run(args: argparse.Namespace) -> int:
    from mxflow.report import format_summary_table

    demo = run_demo(args.workdir, workers=args.workers, progress=not args.no_progress)
    out = Path(demo["summary"]).parent
    datasets = read_json(out / "summary.json")["datasets"]
    print()
    print(format_summary_table(datasets))
    print()
    print("merged clusters against the simulated truth (CC of intensities):")
    for row in demo["merged_cc_to_truth"]:
        cc = f"CC = {row['cc']:.3f}" if row["cc"] is not None else row.get("error", "no MTZ")
        print(
            f"  {row['sample']:<6} {row['route']:<12} cluster {row['cluster']}: "
            f"{row['n']} datasets, d_min {row['d_min'] or float('nan'):.2f} Å, {cc}"
        )
    if not demo["merged_cc_to_truth"]:
        print("  (no merged cluster: see the merge reports)")
    print()
    print(f"finished in {demo['wall_s']:.0f} s")
    print(f"collection (input): {Path(args.workdir) / 'data'}")
    print(f"results:            {out}")
    print(f"report:             {demo['report']}")
    n_ok = sum(e["status"] == "ok" for e in datasets)
    ok = bool(datasets) and n_ok == len(datasets) and bool(demo["merged_cc_to_truth"])
    ok = ok and demo["run_status"] == 0
    if not ok:
        print("mxflow demo: some datasets or merges failed (see the report)", file=sys.stderr)
    return 0 if ok else 1
