"""Benchmark: a ZOO shift of 200 small wedges through ``mxflow run``, and the merge's growth.

A simulated ZOO tree of ``--crystals`` (default 200) small wedges on
``--pins`` pins (default 10, all one sample through a sample sheet that gives
the space group, as KAMO's users do) with one raster scan per pin, on a small
PILATUS-style panel (487 × 619 pixels, ``--frames`` × 1° each) is processed by
one ``mxflow run`` (defaults: workers sized to the machine, merge, hit maps,
reports).  Reported:

- wall time of the run, of processing alone (start → the first merge line
  of run.log) and per wedge; the mean of each dataset's own wall time;
- the orchestrator's peak RSS (target ≤ 1 GB) and the largest child's (a
  Dask worker or a DIALS program), as bench_collection measures them;
- scheduler overhead per wedge: ``mxflow run`` of the same number of fake
  datasets that take no time (discovery, Dask, catalog, summary);
- catalog size (mxflow.sqlite, bytes and per dataset);
- merge time against the number of datasets merged: the run's own merge of
  all of them, and ``mxflow merge`` of the first 25, 50, 100 (``--subsets``),
  each with the time of its steps by program (dials.cosym, dials.scale, ...)
  and mxflow's own time between them (CC matrix, clustering, statistics),
  and the CC to the simulated truth of its recommended cluster;
- load times of the report pages (index, datasets, the merge report) in
  headless Chromium, when Playwright and a system chromium are there.

The simulated data are kept in ``--data`` (default bench/out/shift_data) and
reused while the configuration is unchanged.  Writes bench/out/shift.json.
Usage: ``nice .venv/bin/python bench/bench_shift.py [--crystals 200] [--frames 10]``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import time
from datetime import datetime
from pathlib import Path

from bench_collection import MXFLOW, OUT, catalog_stats, run_measured, write_report

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
SAMPLE = "shift"
SPACE_GROUP = "P 21 21 21"


def sim_config(args) -> dict:
    """The simulator configuration (a dict, so that it can be stamped next to the data)."""
    return dict(
        layout="zoo", zoo_mode="multi", n_crystals=args.crystals, pins=args.pins,
        frames=args.frames, osc_width=1.0, detector_size=(487, 619), distance=100.0,
        d_min=2.2, raster_grid=tuple(args.raster), seed=args.seed,
    )  # fmt: skip


def simulate_once(data: Path, cfg: dict) -> Path:
    """Simulate into ``data`` unless the same configuration is there; returns the truth dir."""
    from mxflow.simulate import SimulationConfig, simulate

    stamp = data / "bench_config.json"
    wanted = json.loads(json.dumps(cfg))
    if stamp.exists() and json.loads(stamp.read_text()) == wanted:
        return data / "truth"
    if data.exists():
        shutil.rmtree(data)
    t0 = time.perf_counter()
    res = simulate(data / "zoo", SimulationConfig(**cfg))
    print(
        f"simulated {len(res.sweeps)} wedges, {res.n_frames} frames in {time.perf_counter() - t0:.0f} s"
    )
    shutil.move(str(data / "zoo" / "truth"), str(data / "truth"))
    stamp.write_text(json.dumps(wanted))
    return data / "truth"


def write_sheet(path: Path, pins: int) -> None:
    rows = ["puck,pin,name,space_group"]
    rows += [f"CPS0001,{p},{SAMPLE},{SPACE_GROUP}" for p in range(1, pins + 1)]
    path.write_text("\n".join(rows) + "\n")


_STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)\s+(.*)$")


def log_times(run_log: Path) -> dict:
    """Processing and merge wall time (s) from run.log's time stamps."""
    lines = []
    for line in run_log.read_text().splitlines():
        m = _STAMP.match(line)
        if m:
            lines.append((datetime.fromisoformat(m.group(1)).timestamp(), m.group(2)))
    if not lines:
        return {}
    start = lines[0][0]
    out: dict = {}
    # processing: the log's first line to the first merge (a resumed run appends to run.log:
    # the first run's processing); the merge: the last merge start to its end
    starts = [t for t, s in lines if "merging" in s and "dataset(s)" in s]
    ends = [t for t, s in lines if re.search(r"merge .*: (ok|failed) in", s)]
    merge_start, merge_end = (starts[-1] if starts else None), (ends[-1] if ends else None)
    if starts:
        out["processing_s"] = round(starts[0] - start, 1)
    if merge_start is not None and merge_end is not None and merge_end > merge_start:
        out["merge_s"] = round(merge_end - merge_start, 1)
    return out


def merge_profile(merge_dir: Path, truth: Path) -> dict:
    """Step times by program, the recommended cluster and its CC to the truth."""
    from mxflow.merge.outputs import read_summary
    from mxflow.simulate import score

    summaries = sorted(merge_dir.glob("merge_summary_*.json"))
    if not summaries:
        return {"error": f"no merge summary in {merge_dir}"}
    summary = read_summary(summaries[0])
    by_program: dict[str, float] = {}
    for step in summary.steps:
        by_program[step.name] = round(by_program.get(step.name, 0.0) + (step.wall_s or 0.0), 1)
    out: dict = {"steps_s": by_program, "steps_total_s": round(sum(by_program.values()), 1)}
    final = merge_dir / "final" / "final.json"
    if final.exists():
        doc = json.loads(final.read_text())
        out["recommended"] = {
            "cluster": doc.get("cluster"),
            "n_datasets": len(doc.get("datasets") or []),
            "d_min": round(doc["d_min"], 2) if doc.get("d_min") else None,
        }
    mtz = merge_dir / "final" / "merged.mtz"
    if mtz.exists():
        out["cc_to_truth"] = round(float(score(mtz, truth)["cc_overall"]), 4)
    out["clusters_merged"] = sum(1 for c in summary.clusters if c.ok)
    out["rejected"] = len(summary.rejected)
    return out


def integrated_pairs(out: Path) -> list[tuple[str, str]]:
    """(expt, refl) of every processed dataset of the run, in collection order."""
    doc = json.loads((out / "summary.json").read_text())
    pairs = []
    for d in doc["datasets"]:
        if d.get("status") == "ok" and d.get("integrated_expt") and d.get("integrated_refl"):
            # paths in summary.json are relative to OUT
            pairs.append(
                (d["name"], str(out / d["integrated_expt"]), str(out / d["integrated_refl"]))
            )
    pairs.sort(key=lambda p: p[0])
    return [(e, r) for _, e, r in pairs]


def live_replay(out: Path, work: Path, truth: Path, points: list[int]) -> dict:
    """The live merge (mxflow watch's) over the run's datasets: at each count n of
    ``points``, the time to add the n-th dataset to a live merge of the n − 1 before it,
    and the CC to the truth of the live merge of n."""
    from mxflow.catalog.db import Catalog
    from mxflow.merge.live import update_live_merge
    from mxflow.schedule.post import merge_groups

    with Catalog(out, readonly=True) as cat:
        members = sorted(merge_groups(cat)[(SAMPLE, "proc")], key=lambda m: m[1].name)
    rows = {}
    for n in points:
        if n > len(members):
            continue
        replay = work / f"live_{n}"
        if replay.exists():
            shutil.rmtree(replay)
        replay.mkdir(parents=True)
        (replay / "proc").symlink_to(out / "proc")  # the datasets' paths are relative to OUT
        if n > 1:
            update_live_merge(replay, SAMPLE, members[: n - 1], SPACE_GROUP)
        t0 = time.perf_counter()
        live = update_live_merge(replay, SAMPLE, members[:n], SPACE_GROUP)
        took = time.perf_counter() - t0
        ov = live.stats.overall
        rows[str(n)] = {
            "add_one_s": round(took, 2),
            "used": len(live.used),
            "d_min": round(live.d_min, 2) if live.d_min else None,
            "cc_half": round(ov.cc_half, 4),
            "completeness": round(ov.completeness, 4),
            "cc_to_truth": round(float(score_mtz(replay / live.merged_mtz, truth)), 4),
        }
        print(f"live merge, dataset {n} added: {json.dumps(rows[str(n)])}", flush=True)
    return rows


def score_mtz(mtz: Path, truth: Path) -> float:
    from mxflow.simulate import score

    return score(mtz, truth)["cc_overall"]


def page_load_times(report_dir: Path, extra: list[Path]) -> dict:
    """Navigation start → load event end (s) of each report page in headless Chromium."""
    try:
        from playwright.sync_api import sync_playwright

        from mxflow.report.browser_setup import CHROMIUM_ARGS, find_chromium
    except ImportError as exc:
        return {"skipped": f"playwright not installed ({exc})"}
    chromium = find_chromium()
    if chromium is None:
        return {"skipped": "no system chromium"}
    pages = [report_dir / "index.html", report_dir / "datasets.html", *extra]
    times: dict = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        for path in pages:
            if not path.exists():
                continue
            page.goto("about:blank")
            page.goto(path.as_uri(), wait_until="load")
            ms = page.evaluate("() => performance.getEntriesByType('navigation')[0].loadEventEnd")
            times[str(path.relative_to(report_dir.parent))] = {
                "load_s": round(ms / 1000.0, 3),
                "bytes": path.stat().st_size,
            }
        browser.close()
    return times


def fake_overhead(tmp: Path, n: int, env: dict) -> dict:
    """``mxflow run`` of ``n`` zero-time fake datasets: per-dataset scheduling cost."""
    from mxflow.model import Dataset
    from mxflow.schedule import fake

    root = tmp / "fake"
    for i in range(n):
        t = f"{root}/CPS0001-{i // 20 + 1:02d}/data00/multi_{i % 20 + 1:02d}_#####.cbf"
        fake.write_fake_dataset(root, Dataset(f"multi_{i}", fake.fake_sweep(t), "s", "multi"))
    cmd = [*MXFLOW, "run", str(root), "--workdir", str(tmp / "fake_out"), "--settle", "0",
           "--no-progress", "--no-merge", "--no-hitmap", "--workers", "2",
           "--process-fn", "mxflow.schedule.fake:process_dataset",
           "--discover-fn", "mxflow.schedule.fake:discover_collection"]  # fmt: skip
    res = run_measured(cmd, BENCH, dict(env, MXFLOW_FAKE_SLEEP="0"))
    res["per_dataset_ms"] = round(1000 * res["wall_s"] / n, 1)
    return res


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--crystals", type=int, default=200, help="small wedges (default 200)")
    ap.add_argument("--pins", type=int, default=10, help="pins they are on (default 10)")
    ap.add_argument("--frames", type=int, default=5, help="1° frames per wedge (default 5)")
    ap.add_argument("--raster", type=int, nargs=2, default=(4, 5), metavar=("ROWS", "COLS"))
    ap.add_argument("--seed", type=int, default=21)
    ap.add_argument(
        "--subsets", default="25,50,100",
        help="dataset counts merged again with mxflow merge (the run merges all)",
    )  # fmt: skip
    ap.add_argument("--workers", type=int, default=None, help="mxflow run --workers")
    ap.add_argument("--data", type=Path, default=OUT / "shift_data", help="simulated data (kept)")
    ap.add_argument("--work", type=Path, default=OUT / "shift_work", help="mxflow's output")
    ap.add_argument("--reuse", action="store_true", help="keep --work: mxflow run resumes")
    ap.add_argument(
        "--live-only", action="store_true",
        help="only the live-merge replay, over the datasets of an earlier run in --work "
        "(added to bench/out/shift.json)",
    )  # fmt: skip
    args = ap.parse_args()
    if args.live_only:
        path = OUT / "shift.json"
        report = json.loads(path.read_text()) if path.exists() else {}
        points = sorted({int(x) for x in args.subsets.split(",") if x} | {args.crystals})
        report["live_merge"] = live_replay(
            args.work / "out", args.work, args.data / "truth", points
        )
        write_report("shift", report, show=False)
        return 0

    if shutil.which("dials.import") is None:
        print("DIALS is not on PATH", file=sys.stderr)
        return 1
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(BENCH), os.environ.get("PYTHONPATH", "")])
    )
    cfg = sim_config(args)
    report: dict = {
        "cores": len(os.sched_getaffinity(0)),
        "load_avg_1min_start": round(os.getloadavg()[0], 2),
        "simulation": {k: v for k, v in cfg.items() if k != "layout"},
    }
    truth = simulate_once(args.data, cfg)
    if args.work.exists() and not args.reuse:
        shutil.rmtree(args.work)
    args.work.mkdir(parents=True, exist_ok=True)
    sheet = args.work / "sheet.csv"
    write_sheet(sheet, args.pins)
    out = args.work / "out"

    # 1. the whole shift: process, merge, hit maps, reports
    cmd = [*MXFLOW, "run", str(args.data / "zoo"), "--workdir", str(out), "--settle", "0",
           "--no-progress", "--sample-sheet", str(sheet)]  # fmt: skip
    if args.workers:
        cmd += ["--workers", str(args.workers)]
    print("running:", " ".join(cmd[2:]), flush=True)
    run = run_measured(cmd, BENCH, env)
    run.update(catalog_stats(out))
    run.update(log_times(out / "run.log"))
    n_ok = run["counts"].get("ok", 0)
    n_all = sum(run["counts"].values())
    run["per_wedge_s"] = round(run.get("processing_s", run["wall_s"]) / max(1, n_all), 2)
    summary = json.loads((out / "summary.json").read_text())
    walls = [d["wall_s"] for d in summary["datasets"] if d.get("wall_s")]
    run["mean_dataset_wall_s"] = round(sum(walls) / max(1, len(walls)), 2)
    db = out / "mxflow.sqlite"
    run["catalog_bytes"] = db.stat().st_size
    run["catalog_bytes_per_dataset"] = round(db.stat().st_size / max(1, n_all))
    run["hitmaps"] = len(list((out / "hitmap").rglob("hitmap.json")))
    report["run"] = run
    report["load_avg_1min_after_run"] = round(os.getloadavg()[0], 2)
    print(f"mxflow run: {json.dumps(run)}", flush=True)

    # 2. the merge's growth with the number of datasets
    curve: dict = {}
    merge_dir = out / "merge" / SAMPLE
    curve[str(n_ok)] = {"wall_s": run.get("merge_s"), **merge_profile(merge_dir, truth)}
    pairs = integrated_pairs(out)
    for n in sorted({int(x) for x in args.subsets.split(",") if x}):
        if n >= len(pairs):
            continue
        wd = args.work / f"merge_{n}"
        if wd.exists():
            shutil.rmtree(wd)
        files = [f for pair in pairs[:n] for f in pair]
        cmd = [*MXFLOW, "merge", *files, "--workdir", str(wd), "--sample", SAMPLE,
               "--space-group", SPACE_GROUP]  # fmt: skip
        res = run_measured(cmd, BENCH, env)
        res.update(merge_profile(wd, truth))
        curve[str(n)] = res
        print(f"mxflow merge of {n}: {json.dumps(res)}", flush=True)
    report["merge_curve"] = dict(sorted(curve.items(), key=lambda kv: int(kv[0])))
    points = sorted({int(x) for x in args.subsets.split(",") if x} | {n_ok})
    report["live_merge"] = live_replay(out, args.work, truth, points)

    # 3. scheduler overhead per dataset, and the report pages
    report["overhead_fake"] = fake_overhead(args.work, n_all, env)
    merge_pages = sorted(merge_dir.glob("merge_*/report.html"))
    report["page_load"] = page_load_times(out / "report", merge_pages)
    write_report("shift", report)
    return 0 if run["rc"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
