"""Benchmark: ``mxflow run`` on a collection of small wedges against the serial DIALS script.

A simulated ZOO collection of ``--crystals`` (default 12) small wedges (multi
mode, ``--frames`` × 0.5° each) is processed in one run of this script by

1. **serial**: the DIALS tutorial's bash loop (seeds/002, "process.sh"):
   for each wedge, in sequence, ``dials.import``, ``dials.find_spots``,
   ``dials.index``, ``dials.refine``, ``dials.integrate`` with DIALS's
   default ``nproc`` (Auto: all cores for spot finding and integration);
2. **mxflow, same chain**: ``mxflow run`` with that very chain as its
   processing function (``--process-fn bench_collection:dials_chain``), once
   with 2 workers × nproc 1 and once with 1 worker × nproc 2 — this isolates
   what the scheduler gains, and decides the default worker layout.  DIALS
   programs run through mxflow's fork server (:mod:`mxflow.engine.server_client`,
   the default); the 2 × 1 layout is run a second time with
   ``MXFLOW_DIALS_SERVER=0`` (every program a fresh process) to measure what
   the server gains;
3. **mxflow, real pipeline**: ``mxflow run`` with its default processing
   (``mxflow.process.process_dataset``, which does more per dataset: symmetry,
   scaling, unmerged and merged MTZ, resolution cut, statistics table), given
   the space group as the tutorial's loop is; with ``--unknown-sg`` once more
   without it (Bravais search and dials.symmetry per wedge).  The mean time of
   each step is reported;
4. **scheduler overhead**: ``mxflow run`` of ``--fake-datasets`` fake datasets
   that take no time, i.e. per-dataset cost of discovery, Dask and the catalog.

Peak memory: the orchestrator's (``RUSAGE_SELF`` of ``mxflow run``, recorded
in its catalog) and the largest child process (``RUSAGE_CHILDREN`` measured
by a wrapper around each command: a Dask worker or a DIALS program).

Writes bench/out/collection.json and prints a table.  Usage:
``nice .venv/bin/python bench/bench_collection.py [--crystals 12] [--frames 20]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
OUT = BENCH / "out"
MXFLOW = [sys.executable, "-m", "mxflow.cli"]

# a wrapper that runs a command and reports its children's peak RSS (KiB) on stderr
_RUSAGE_WRAPPER = (
    "import resource, subprocess, sys; "
    "rc = subprocess.run(sys.argv[1:]).returncode; "
    "print('CHILD_MAXRSS_KB', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, "
    "file=sys.stderr); sys.exit(rc)"
)


# --------------------------------------------------------------------------
# the tutorial's DIALS chain, as an mxflow processing function


def dials_chain(dataset, workdir, options):
    """import → find_spots → index → refine → integrate of one dataset, as the tutorial loop.

    ``options.nproc`` goes to find_spots and integrate; ``options.space_group``
    to dials.index.  Returns a DatasetResult (ok when integrated.refl exists).
    """
    from mxflow.engine.runner import run_program
    from mxflow.model import DatasetResult

    workdir = Path(workdir)
    first, last = dataset.frames
    import_args = [f"template={dataset.sweep.template}"]
    if dataset.wedge is not None:
        import_args.append(f"image_range={first},{last}")
    index_args = ["imported.expt", "strong.refl"]
    if options.space_group:
        index_args.append(f"space_group={options.space_group.replace(' ', '')}")
    nproc = f"nproc={options.nproc}"
    chain = [
        ("dials.import", import_args, "imported.expt"),
        ("dials.find_spots", ["imported.expt", nproc], "strong.refl"),
        ("dials.index", index_args, "indexed.expt"),
        ("dials.refine", ["indexed.expt", "indexed.refl"], "refined.expt"),
        ("dials.integrate", ["refined.expt", "refined.refl", nproc], "integrated.refl"),
    ]
    result = DatasetResult(name=dataset.name, path=dataset.sweep.template)
    for program, args, output in chain:
        step = run_program(program, args, workdir)
        result.steps.append(step)
        if step.returncode != 0 or not (workdir / output).exists():
            result.status, result.reason = "failed", f"{program} failed (exit {step.returncode})"
            return result
    result.status = "ok"
    result.integrated_expt = "integrated.expt"
    result.integrated_refl = "integrated.refl"
    return result


# --------------------------------------------------------------------------
# helpers


def write_report(name: str, report: dict, show: bool = True) -> Path:
    """Write ``report`` to bench/out/<name>.json (and print it); returns the path."""
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{name}.json"
    path.write_text(json.dumps(report, indent=1) + "\n")
    if show:
        print(json.dumps(report, indent=1))
    return path


def run_measured(cmd: list[str], cwd: Path, env: dict | None = None) -> dict:
    """Run ``cmd`` under the rusage wrapper: wall seconds, exit status, children's peak RSS."""
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", _RUSAGE_WRAPPER, *cmd],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - t0
    child_kb = 0
    for line in proc.stderr.splitlines():
        if line.startswith("CHILD_MAXRSS_KB"):
            child_kb = int(line.split()[1])
    if proc.returncode != 0:
        print(proc.stderr[-3000:], file=sys.stderr)
    return {
        "wall_s": round(wall, 2),
        "rc": proc.returncode,
        "children_peak_rss_mb": round(child_kb / 1024, 1),
    }


def serial_script(templates: list[str], space_group: str) -> str:
    """The tutorial's process.sh for our wedges (without set -e: one failure must not stop it)."""
    sg = space_group.replace(" ", "")
    lines = ["#!/bin/bash", "# one directory per wedge, processed one after the other"]
    for i, t in enumerate(templates, 1):
        lines += [
            f"mkdir -p {i} && cd {i}",
            f"dials.import template={t} > /dev/null",
            "dials.find_spots imported.expt > /dev/null",
            f"dials.index imported.expt strong.refl space_group={sg} > /dev/null",
            "dials.refine indexed.expt indexed.refl > /dev/null",
            "dials.integrate refined.expt refined.refl > /dev/null",
            "cd ..",
        ]
    return "\n".join(lines) + "\n"


def catalog_stats(out: Path) -> dict:
    """Counts and the orchestrator's peak memory from an mxflow output directory."""
    with sqlite3.connect(out / "mxflow.sqlite") as conn:
        counts = dict(
            conn.execute("SELECT status, COUNT(*) FROM datasets GROUP BY status").fetchall()
        )
        run = conn.execute(
            "SELECT peak_rss_mb, children_peak_rss_mb, wall_s FROM runs ORDER BY id DESC LIMIT 1"
        ).fetchone()
    return {
        "counts": counts,
        "orchestrator_peak_rss_mb": round(run[0], 1),
        "orchestrator_children_peak_rss_mb": round(run[1], 1),
        "orchestrator_wall_s": round(run[2], 2),
    }


def mxflow_run(root: Path, out: Path, extra: list[str], env: dict) -> dict:
    cmd = [*MXFLOW, "run", str(root), "--workdir", str(out), "--settle", "0", "--no-progress",
           "--no-merge", "--no-hitmap", *extra]  # fmt: skip
    res = run_measured(cmd, BENCH, env)
    if (out / "mxflow.sqlite").exists():
        res.update(catalog_stats(out))
    return res


def mean_step_seconds(summary_json: Path) -> dict[str, float]:
    """Mean wall time (s) of each step over the datasets of an mxflow summary.json."""
    if not summary_json.exists():
        return {}
    totals: dict[str, list[float]] = {}
    for d in json.loads(summary_json.read_text())["datasets"]:
        for st in d.get("steps", []):
            totals.setdefault(st["name"], []).append(st["wall_s"])
    n = max(1, len(json.loads(summary_json.read_text())["datasets"]))
    return {k: round(sum(v) / n, 2) for k, v in totals.items()}


def count_integrated(work: Path) -> int:
    return sum(1 for _ in work.rglob("integrated.refl"))


# --------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--crystals", type=int, default=12, help="small wedges (default 12)")
    ap.add_argument(
        "--frames", type=int, default=20, help="frames per wedge, 0.5° each (default 20)"
    )
    ap.add_argument("--fake-datasets", type=int, default=200, help="datasets for the overhead run")
    ap.add_argument("--skip-real", action="store_true", help="skip mxflow's real pipeline")
    ap.add_argument("--skip-layouts", action="store_true", help="only 2 workers x nproc 1")
    ap.add_argument(
        "--skip-processes", action="store_true", help="skip the run without the DIALS server"
    )
    ap.add_argument(
        "--unknown-sg", action="store_true",
        help="also run mxflow's pipeline without the space group (Bravais search + dials.symmetry)",
    )  # fmt: skip
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = ap.parse_args()

    from mxflow.simulate import SimulationConfig, simulate

    if shutil.which("dials.import") is None:
        print("DIALS is not on PATH", file=sys.stderr)
        return 1
    tmp = Path(tempfile.mkdtemp(prefix="mxflow-bench-collection-"))
    report: dict = {
        "cores": len(os.sched_getaffinity(0)),
        "load_avg_1min": [round(os.getloadavg()[0], 2)],
        "crystals": args.crystals,
        "frames": args.frames,
    }
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(BENCH), os.environ.get("PYTHONPATH", "")])
    )
    try:
        cfg = SimulationConfig(
            layout="zoo", zoo_mode="multi", n_crystals=args.crystals, frames=args.frames,
            osc_width=0.5, seed=7,
        )  # fmt: skip
        t0 = time.perf_counter()
        sim = simulate(tmp / "zoo", cfg)
        report["simulate_s"] = round(time.perf_counter() - t0, 1)
        report["total_frames"] = sim.n_frames
        sg = cfg.space_group
        templates = [s.template for s in sim.sweeps]
        print(
            f"simulated {len(templates)} wedges ({sim.n_frames} frames) in {report['simulate_s']} s"
        )

        # 1. the serial tutorial loop
        serial_dir = tmp / "serial"
        serial_dir.mkdir()
        (serial_dir / "process.sh").write_text(serial_script(templates, sg))
        report["serial"] = run_measured(["bash", "process.sh"], serial_dir)
        report["serial"]["integrated"] = count_integrated(serial_dir)
        report["load_avg_1min"].append(round(os.getloadavg()[0], 2))
        print(f"serial DIALS loop: {report['serial']}", flush=True)

        # 2. the same chain under mxflow's scheduler, two worker layouts
        layouts = [("2x1", ["--workers", "2", "--nproc", "1"], "1")]
        if not args.skip_processes:
            layouts.append(("2x1_processes", ["--workers", "2", "--nproc", "1"], "0"))
        if not args.skip_layouts:
            layouts.append(("1x2", ["--workers", "1", "--nproc", "2"], "1"))
        for label, opts, server in layouts:
            out = tmp / f"mxflow_chain_{label}"
            res = mxflow_run(
                tmp / "zoo", out,
                [*opts, "--space-group", sg, "--process-fn", "bench_collection:dials_chain"],
                dict(env, MXFLOW_DIALS_SERVER=server),
            )  # fmt: skip
            res["integrated"] = count_integrated(out)
            res["ratio_to_serial"] = round(res["wall_s"] / report["serial"]["wall_s"], 3)
            report[f"mxflow_chain_{label}"] = res
            report["load_avg_1min"].append(round(os.getloadavg()[0], 2))
            print(f"mxflow run (tutorial chain, {label}): {res}", flush=True)

        # 3. mxflow's own pipeline
        try:
            from mxflow.process import process_dataset  # noqa: F401

            have_real = True
        except ImportError:
            have_real = False
        if have_real and not args.skip_real:
            out = tmp / "mxflow_real"
            res = mxflow_run(tmp / "zoo", out, ["--space-group", sg], env)
            res["ratio_to_serial"] = round(res["wall_s"] / report["serial"]["wall_s"], 3)
            res["mean_step_s"] = mean_step_seconds(out / "summary.json")
            report["mxflow_real"] = res
            report["load_avg_1min"].append(round(os.getloadavg()[0], 2))
            print(f"mxflow run (mxflow.process pipeline): {res}", flush=True)
            if args.unknown_sg:  # the same without telling mxflow the space group
                out = tmp / "mxflow_real_unknown_sg"
                res = mxflow_run(tmp / "zoo", out, [], env)
                res["ratio_to_serial"] = round(res["wall_s"] / report["serial"]["wall_s"], 3)
                res["mean_step_s"] = mean_step_seconds(out / "summary.json")
                report["mxflow_real_unknown_sg"] = res
                report["load_avg_1min"].append(round(os.getloadavg()[0], 2))
                print(f"mxflow run (space group not given): {res}", flush=True)
        else:
            report["mxflow_real"] = (
                "skipped" if have_real else "mxflow.process.process_dataset not available"
            )

        # 4. scheduler overhead with datasets that take no time
        from mxflow.model import Dataset
        from mxflow.schedule import fake

        fake_root = tmp / "fake"
        for i in range(args.fake_datasets):
            t = f"{fake_root}/CPS0001-{i // 10 + 1:02d}/data{i % 10:02d}/multi_#####.cbf"
            fake.write_fake_dataset(
                fake_root, Dataset(f"multi_{i}", fake.fake_sweep(t), "s", "multi")
            )
        fake_env = dict(env, MXFLOW_FAKE_SLEEP="0")
        res = mxflow_run(
            fake_root, tmp / "fake_out",
            ["--workers", "2", "--process-fn", "mxflow.schedule.fake:process_dataset",
             "--discover-fn", "mxflow.schedule.fake:discover_collection"], fake_env,
        )  # fmt: skip
        res["per_dataset_ms"] = round(1000 * res["wall_s"] / args.fake_datasets, 1)
        rerun = mxflow_run(
            fake_root, tmp / "fake_out",
            ["--workers", "2", "--process-fn", "mxflow.schedule.fake:process_dataset",
             "--discover-fn", "mxflow.schedule.fake:discover_collection"], fake_env,
        )  # fmt: skip
        res["rerun_nothing_to_do_s"] = rerun["wall_s"]
        report["overhead_fake"] = res
        print(f"scheduler overhead ({args.fake_datasets} zero-time datasets): {res}")
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    write_report("collection", report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
