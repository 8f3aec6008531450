"""Benchmark: one simulated sweep through mxflow vs the plain DIALS tutorial command sequence.

Both run in one invocation, on the same images, each in its own worker
process so that peak memory can be told apart:

* ``plain``: the serial command list of the DIALS tutorial (dials.import,
  find_spots, index, refine_bravais_settings, reindex, refine, integrate,
  symmetry, scale, export, merge), started with ``subprocess.run`` one after
  the other, the Bravais solution picked as a user reading the table would
  (the highest-numbered recommended one);
* ``mxflow``: ``mxflow.process.process_dataset`` on the same sweep
  (preflight checks, done records, retries, mxflow's statistics table),
  its DIALS programs run through the fork server of
  :mod:`mxflow.engine.server_client` (the default);
* ``mxflow_processes``: the same with ``MXFLOW_DIALS_SERVER=0``, every DIALS
  program a fresh process.

Before that, the per-program start-up overhead: ``dials.find_spots`` on one
frame and ``dials.import`` of three frames, run ``--overhead-repeats`` times
each as a fresh process and through the server (alternating).

Reported per approach: wall time, peak resident memory of the DIALS
programs (``getrusage(RUSAGE_CHILDREN).ru_maxrss``, the largest child; with
the server this is the largest of the server and its forked children), of
the server itself (VmHWM) and of the orchestrating Python process itself
(``RUSAGE_SELF``), and the wall-time ratios to plain.  Writes
bench/out/process.json.

usage: .venv/bin/python bench/bench_process.py [--frames 30] [--repeats 1] [--nproc N]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"

SIM = dict(
    n_crystals=1,
    frames=30,
    osc_width=1.0,
    detector_size=(487, 619),
    distance=100.0,
    d_min=2.2,
    seed=5,
)


def dials_env() -> dict[str, str]:
    env = dict(os.environ)
    for var in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"):
        env.pop(var, None)
    return env


def plain_sequence(frames: list[str], work: Path) -> list[str]:
    """The tutorial's commands, run one after the other; returns the commands run."""
    env = dials_env()
    done = []

    def call(*cmd: str) -> None:
        done.append(" ".join(cmd[:3]) + (" ..." if len(cmd) > 3 else ""))
        with open(work / "plain.log", "ab") as log:
            subprocess.run(
                list(cmd), cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT, check=True
            )

    call("dials.import", *frames)
    call("dials.find_spots", "imported.expt")
    call("dials.index", "imported.expt", "strong.refl")
    call("dials.refine_bravais_settings", "indexed.expt", "indexed.refl")
    summary = json.loads((work / "bravais_summary.json").read_text())
    best = max(int(k) for k, v in summary.items() if v["recommended"])
    call("dials.reindex", "indexed.refl", f"change_of_basis_op={summary[str(best)]['cb_op']}")
    call("dials.refine", f"bravais_setting_{best}.expt", "reindexed.refl")
    call("dials.integrate", "refined.expt", "refined.refl")
    call("dials.symmetry", "integrated.expt", "integrated.refl")
    call("dials.scale", "symmetrized.expt", "symmetrized.refl")
    call("dials.export", "scaled.expt", "scaled.refl")
    call("dials.merge", "scaled.expt", "scaled.refl")
    return done


KINDS = ("plain", "mxflow_processes", "mxflow")


def worker(kind: str, data: Path, work: Path, nproc: int) -> dict:
    """Run one approach in this process; report wall time and peak memory (KiB)."""
    sys.path.insert(0, str(HERE.parent / "src"))
    from mxflow.discover import find_sweeps
    from mxflow.engine import server_client

    os.environ[server_client.ENV_SWITCH] = "1" if kind == "mxflow" else "0"

    (sweep,) = find_sweeps([data]).sweeps
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    if kind == "plain":
        frames = [os.path.abspath(sweep.frame_path(n)) for n in range(sweep.first, sweep.last + 1)]
        plain_sequence(frames, work)
        status, steps = "ok", []
    else:
        from mxflow.model import Dataset, ProcessingOptions
        from mxflow.process import process_dataset

        result = process_dataset(
            Dataset(name="bench", sweep=sweep), work, ProcessingOptions(nproc=nproc)
        )
        status = result.status if result.status == "ok" else f"failed: {result.reason}"
        steps = [(s.name, round(s.wall_s, 2)) for s in result.steps]
    wall = time.perf_counter() - t0
    servers = server_client.server_memory_kib()
    server_client.close_servers()  # reaps the server: its peak joins RUSAGE_CHILDREN
    return {
        "kind": kind,
        "status": status,
        "wall_s": round(wall, 2),
        "children_maxrss_kib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
        "self_maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "children_cpu_s": round(
            resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime
            + resource.getrusage(resource.RUSAGE_CHILDREN).ru_stime,
            2,
        ),
        "steps": steps,
        "servers_started": server_client.servers_started(),
        "server_vmhwm_kib": max((m.get("VmHWM", 0) for m in servers), default=0),
    }


def overhead(frames: list[str], work: Path, repeats: int) -> dict:
    """Wall seconds of short DIALS runs as fresh processes and through the server."""
    sys.path.insert(0, str(HERE.parent / "src"))
    from mxflow.engine import server_client
    from mxflow.engine.runner import run_program

    runs = {
        "find_spots_1_frame": ("dials.find_spots", ["imported1.expt", "nproc=1"]),
        "import_3_frames": ("dials.import", [*frames[:3], "output.experiments=imported3.expt"]),
    }
    work.mkdir(parents=True, exist_ok=True)
    run_program("dials.import", [frames[0], "output.experiments=imported1.expt"], work)
    times: dict[str, dict[str, list[float]]] = {k: {"process": [], "server": []} for k in runs}
    for _ in range(repeats):
        for mode in ("process", "server"):
            os.environ[server_client.ENV_SWITCH] = "1" if mode == "server" else "0"
            for name, (program, args) in runs.items():
                rec = run_program(program, args, work, log_name=f"{name}_{mode}.log")
                if rec.returncode != 0:
                    raise SystemExit(f"{program} failed in the overhead test: see {work}")
                times[name][mode].append(round(rec.wall_s, 3))
    server_client.close_servers()
    os.environ.pop(server_client.ENV_SWITCH, None)
    out = {}
    for name, t in times.items():
        # the first server run also imports the program's modules: report it apart
        warm = t["server"][1:] or t["server"]
        out[name] = {
            "process_s": t["process"],
            "server_s": t["server"],
            "process_median_s": round(sorted(t["process"])[len(t["process"]) // 2], 3),
            "server_warm_median_s": round(sorted(warm)[len(warm) // 2], 3),
        }
        out[name]["saved_per_program_s"] = round(
            out[name]["process_median_s"] - out[name]["server_warm_median_s"], 3
        )
    return out


def run_worker(kind: str, data: Path, work: Path, nproc: int) -> dict:
    cmd = [sys.executable, __file__, "--worker", kind, "--data", str(data), "--work", str(work)]
    cmd += ["--nproc", str(nproc)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{kind} worker failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--frames", type=int, default=SIM["frames"])
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--nproc", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--overhead-repeats", type=int, default=5)
    ap.add_argument("--worker", choices=KINDS, help=argparse.SUPPRESS)
    ap.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.data, args.work, args.nproc)))
        return 0

    sys.path.insert(0, str(HERE.parent / "src"))
    from mxflow.simulate import SimulationConfig, score, simulate

    with tempfile.TemporaryDirectory(prefix="bench_process_") as tmp:
        tmp = Path(tmp)
        sim = simulate(tmp / "data", SimulationConfig(**{**SIM, "frames": args.frames}))
        frames = sorted(str(p) for p in (tmp / "data").rglob("*.cbf"))
        load0 = os.getloadavg()[0]
        over = overhead(frames, tmp / "overhead", args.overhead_repeats)
        for name, o in over.items():
            print(
                f"{name}: process {o['process_median_s']:.2f} s, server "
                f"{o['server_warm_median_s']:.2f} s (saved {o['saved_per_program_s']:.2f} s)",
                flush=True,
            )
        runs = []
        loads = [load0]
        for r in range(args.repeats):
            for kind in KINDS:  # alternate, so load drifts hit all alike
                res = run_worker(kind, tmp / "data", tmp / f"{kind}_{r}", args.nproc)
                merged = tmp / f"{kind}_{r}" / "merged.mtz"
                res["cc_to_truth"] = round(float(score(merged, sim.truth_dir)["cc_overall"]), 4)
                runs.append(res)
                loads.append(os.getloadavg()[0])
                print(
                    f"{kind:17s} run {r + 1}: {res['wall_s']:.1f} s  ({res['status']})", flush=True
                )

    def best(kind: str, key: str) -> float:
        return min(x[key] for x in runs if x["kind"] == kind)

    def peak(kind: str, key: str) -> int:
        return max(x[key] for x in runs if x["kind"] == kind)

    ratio = best("mxflow", "wall_s") / best("plain", "wall_s")
    report = {
        "sweep": {**SIM, "frames": args.frames},
        "nproc": args.nproc,
        "cpu_count": os.cpu_count(),
        "load_avg_1min": [round(x, 2) for x in loads],
        "overhead": over,
        "runs": runs,
        "wall_ratio_mxflow_over_plain": round(ratio, 3),
        "wall_ratio_mxflow_processes_over_plain": round(
            best("mxflow_processes", "wall_s") / best("plain", "wall_s"), 3
        ),
        "peak_dials_rss_mib": {k: round(peak(k, "children_maxrss_kib") / 1024, 1) for k in KINDS},
        "peak_server_rss_mib": round(peak("mxflow", "server_vmhwm_kib") / 1024, 1),
        "peak_orchestrator_rss_mib": {
            k: round(peak(k, "self_maxrss_kib") / 1024, 1) for k in KINDS
        },
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "process.json").write_text(json.dumps(report, indent=1) + "\n")
    print()
    print(
        f"{'':17s} {'wall s (best)':>14s} {'DIALS peak MiB':>15s} {'orchestrator MiB':>17s} {'CC truth':>9s}"
    )
    for kind in KINDS:
        cc = max(x["cc_to_truth"] for x in runs if x["kind"] == kind)
        print(
            f"{kind:17s} {best(kind, 'wall_s'):14.1f} {report['peak_dials_rss_mib'][kind]:15.1f} "
            f"{report['peak_orchestrator_rss_mib'][kind]:17.1f} {cc:9.3f}"
        )
    print(
        f"\nwall-time ratio mxflow / plain: {ratio:.3f}, mxflow_processes / plain: "
        f"{report['wall_ratio_mxflow_processes_over_plain']:.3f}   (load averages {report['load_avg_1min']})"
    )
    print(f"written {OUT / 'process.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
