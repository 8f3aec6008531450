"""Benchmark: live-collection latency of ``mxflow watch``, wedge by wedge.

A ZOO small-wedge collection (``--wedges`` × ``--frames`` 1° frames on one pin,
the small 487 × 619 panel) is simulated once into a staging folder, then
written into the watched folder frame by frame at a beamline's pace:
``--frame-s`` per frame (exposure and read-out), ``--gap-s`` between wedges
(the next crystal centred).  ``mxflow watch`` (defaults; ``--interval``,
``--settle`` and the sample sheet's space group as a beamline would set them)
runs throughout.  Per wedge it measures

- **result latency**: last frame written → the dataset's result in the catalog
  (its ``finished`` time), target ≤ 60 s for a 10-frame wedge on 2 cores;
- **merge latency**: last frame written → the sample's live merge including
  it (``OUT/merge_live/<sample>/live.json``'s ``updated``), target ≤ 2 min
  after the last wedge;

then stops watch with SIGINT (it finishes, merges the sample as ``mxflow run``
does and exits) and compares, by CC to the simulated truth:

- the last live merge (every wedge) against watch's final batch merge;
- watch's final merge against ``mxflow run`` on the same data in a new
  directory (``--no-batch`` skips it): the same merge, within CC 0.002.

Writes bench/out/live.json.  Usage:
``nice .venv/bin/python bench/bench_live.py [--wedges 12] [--frames 10] [--gap-s 20]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench_collection import MXFLOW, OUT, run_measured, write_report

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
SAMPLE = "live"
SPACE_GROUP = "P 21 21 21"


def simulate_once(stage: Path, wedges: int, frames: int, seed: int) -> Path:
    """The collection in ``stage`` (simulated unless the same configuration is there)."""
    from mxflow.simulate import SimulationConfig, simulate

    cfg = dict(
        layout="zoo", zoo_mode="multi", n_crystals=wedges, frames=frames, osc_width=1.0,
        detector_size=(487, 619), distance=100.0, d_min=2.2, seed=seed,
    )  # fmt: skip
    stamp = stage / "bench_config.json"
    if stamp.exists() and json.loads(stamp.read_text()) == cfg:
        return stage / "zoo"
    if stage.exists():
        shutil.rmtree(stage)
    simulate(stage / "zoo", SimulationConfig(**cfg))
    stamp.write_text(json.dumps(cfg))
    return stage / "zoo"


def wedge_frames(staged: Path) -> list[list[Path]]:
    """The staged frames of each wedge, in collection order."""
    folder = staged / "CPS0001-01" / "data00"
    names = sorted({p.name.rsplit("_", 1)[0] for p in folder.glob("multi_*.cbf")})
    return [sorted(folder.glob(f"{n}_*.cbf")) for n in names]


def write_collection(staged: Path, root: Path, frame_s: float, gap_s: float) -> dict[str, float]:
    """Copy the wedges into ``root`` at the beamline's pace; wedge name → time of its last frame.

    Each frame is written under a temporary name and renamed, as a detector
    writes a whole file.
    """
    last: dict[str, float] = {}
    for n, frames in enumerate(wedge_frames(staged)):
        if n:
            time.sleep(gap_s)
        for src in frames:
            dst = root / src.relative_to(staged)
            dst.parent.mkdir(parents=True, exist_ok=True)
            tmp = dst.with_name(f".{dst.name}.part")
            shutil.copyfile(src, tmp)
            os.replace(tmp, dst)
            time.sleep(frame_s)
        last[frames[0].name.rsplit("_", 1)[0]] = time.time() - frame_s
    return last


class Monitor(threading.Thread):
    """Polls the catalog and the live merge: when each wedge's result and live update appear."""

    def __init__(self, out: Path, poll: float = 0.5):
        super().__init__(daemon=True)
        self.out, self.poll = out, poll
        self.finished: dict[str, float] = {}  # wedge → catalog finished time
        self.status: dict[str, str] = {}
        self.in_live: dict[str, float] = {}  # wedge → live.json updated time first including it
        self.live_figures: list[dict] = []
        self.stop = threading.Event()

    def run(self) -> None:
        db = self.out / "mxflow.sqlite"
        live = self.out / "merge_live" / SAMPLE / "live.json"
        seen_update = None
        while not self.stop.is_set():
            if db.exists():
                try:
                    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as conn:
                        rows = conn.execute(
                            "SELECT name, status, finished FROM datasets"
                        ).fetchall()
                    for name, status, finished in rows:
                        wedge = name.rsplit("/", 1)[-1]
                        if status in ("ok", "failed") and wedge not in self.finished:
                            self.finished[wedge] = finished
                            self.status[wedge] = status
                except sqlite3.Error:
                    pass
            if live.exists():
                try:
                    doc = json.loads(live.read_text())
                except (OSError, ValueError):
                    doc = None
                if doc and doc["updated"] != seen_update:
                    seen_update = doc["updated"]
                    for d in doc["datasets"]:
                        wedge = d["name"].rsplit("/", 1)[-1]
                        self.in_live.setdefault(wedge, doc["updated"])
                    overall = (doc.get("stats") or {}).get("overall") or {}
                    self.live_figures.append(
                        {
                            "datasets": sum(d["status"] == "used" for d in doc["datasets"]),
                            "d_min": doc.get("d_min"),
                            "cc_half": overall.get("cc_half"),
                            "completeness": overall.get("completeness"),
                        }
                    )
            time.sleep(self.poll)


def cc_to_truth(mtz: Path, truth: Path) -> float | None:
    from mxflow.simulate import score

    return round(float(score(mtz, truth)["cc_overall"]), 4) if mtz.exists() else None


def summary_of(values: list[float]) -> dict:
    if not values:
        return {}
    return {
        "median_s": round(statistics.median(values), 1),
        "max_s": round(max(values), 1),
        "min_s": round(min(values), 1),
    }


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--wedges", type=int, default=12)
    ap.add_argument("--frames", type=int, default=10, help="1° frames per wedge (default 10)")
    ap.add_argument("--frame-s", type=float, default=0.1, help="seconds per frame (default 0.1)")
    ap.add_argument("--gap-s", type=float, default=20.0, help="seconds between wedges (20)")
    ap.add_argument("--interval", type=float, default=2.0, help="watch --interval (2)")
    ap.add_argument("--settle", type=float, default=3.0, help="watch --settle (3)")
    ap.add_argument("--seed", type=int, default=31)
    ap.add_argument("--no-batch", action="store_true", help="skip the mxflow run comparison")
    ap.add_argument("--work", type=Path, default=OUT / "live_work")
    args = ap.parse_args()

    if shutil.which("dials.import") is None:
        print("DIALS is not on PATH", file=sys.stderr)
        return 1
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(BENCH), os.environ.get("PYTHONPATH", "")])
    )
    staged = simulate_once(OUT / "live_stage", args.wedges, args.frames, args.seed)
    truth = staged / "truth"
    if args.work.exists():
        shutil.rmtree(args.work)
    root, out = args.work / "zoo", args.work / "out"
    root.mkdir(parents=True)
    sheet = args.work / "sheet.csv"
    sheet.write_text(f"puck,pin,name,space_group\nCPS0001,1,{SAMPLE},{SPACE_GROUP}\n")
    report: dict = {
        "cores": len(os.sched_getaffinity(0)),
        "load_avg_1min_start": round(os.getloadavg()[0], 2),
        "wedges": args.wedges,
        "frames": args.frames,
        "frame_s": args.frame_s,
        "gap_s": args.gap_s,
        "watch_interval_s": args.interval,
        "watch_settle_s": args.settle,
    }
    cmd = [*MXFLOW, "watch", str(root), "--workdir", str(out), "--interval", str(args.interval),
           "--settle", str(args.settle), "--sample-sheet", str(sheet), "--no-progress"]  # fmt: skip
    log = (args.work / "watch.log").open("w")
    watch = subprocess.Popen(cmd, cwd=BENCH, env=env, stdout=log, stderr=subprocess.STDOUT)
    monitor = Monitor(out)
    monitor.start()
    try:
        time.sleep(3.0)  # watch starts its workers
        t_start = time.time()
        last_frame = write_collection(staged, root, args.frame_s, args.gap_s)
        t_written = time.time()
        names = list(last_frame)
        deadline = time.time() + 900
        while time.time() < deadline and not all(n in monitor.in_live for n in names):
            if all(monitor.status.get(n) == "failed" for n in names if n in monitor.status) and (
                len(monitor.status) == len(names)
            ):
                break
            time.sleep(1.0)
        t_live_done = time.time()
        watch.send_signal(signal.SIGINT)  # watching ends: the batch merge runs, then it exits
        t_sigint = time.time()
        rc = watch.wait(timeout=3600)
        t_exit = time.time()
    finally:
        monitor.stop.set()
        if watch.poll() is None:
            watch.kill()
        log.close()
    per_wedge = []
    for n in names:
        row = {"wedge": n, "status": monitor.status.get(n)}
        if n in monitor.finished and monitor.finished[n]:
            row["result_latency_s"] = round(monitor.finished[n] - last_frame[n], 1)
        if n in monitor.in_live:
            row["merge_latency_s"] = round(monitor.in_live[n] - last_frame[n], 1)
        per_wedge.append(row)
    result = [r["result_latency_s"] for r in per_wedge if "result_latency_s" in r]
    merge = [r["merge_latency_s"] for r in per_wedge if "merge_latency_s" in r]
    report.update(
        writing_s=round(t_written - t_start, 1),
        per_wedge=per_wedge,
        result_latency=summary_of(result),
        merge_latency=summary_of(merge),
        last_wedge_merge_latency_s=per_wedge[-1].get("merge_latency_s"),
        live_updates=monitor.live_figures,
        watch_rc=rc,
        final_merge_after_sigint_s=round(t_exit - t_sigint, 1),
        waited_for_live_s=round(t_live_done - t_written, 1),
    )
    live_mtz = out / "merge_live" / SAMPLE / "merged.mtz"
    final_mtz = out / "merge" / SAMPLE / "final" / "merged.mtz"
    report["cc_to_truth"] = {
        "live_last": cc_to_truth(live_mtz, truth),
        "watch_final": cc_to_truth(final_mtz, truth),
    }
    if not args.no_batch:  # the same data through mxflow run, in a fresh directory
        batch_out = args.work / "batch_out"
        res = run_measured(
            [*MXFLOW, "run", str(root), "--workdir", str(batch_out), "--settle", "0",
             "--no-progress", "--no-hitmap", "--sample-sheet", str(sheet)],
            BENCH, env,
        )  # fmt: skip
        report["batch_run"] = res
        report["cc_to_truth"]["batch_run"] = cc_to_truth(
            batch_out / "merge" / SAMPLE / "final" / "merged.mtz", truth
        )
    cc = report["cc_to_truth"]
    if cc.get("watch_final") is not None and cc.get("batch_run") is not None:
        cc["final_minus_batch"] = round(cc["watch_final"] - cc["batch_run"], 4)
    if cc.get("live_last") is not None and cc.get("watch_final") is not None:
        cc["live_minus_final"] = round(cc["live_last"] - cc["watch_final"], 4)
    write_report("live", report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
