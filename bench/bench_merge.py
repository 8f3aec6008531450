"""Benchmark: mxflow's best cluster vs all wedges merged by dials.cosym + dials.scale + dials.merge.

Simulates ≥ 20 small wedges of two non-isomorphous populations (2 % apart in
a, different intensities), processes them with ``mxflow process``, then

* mxflow: ``merge_sample`` (CC clustering, run_01..03, resolution cut); the
  best cluster is chosen by mxflow's own rule (KAMO's: top half by
  multiplicity, then highest CC½), never by the truth;
* baseline: every wedge through dials.cosym → dials.scale → dials.merge;

and reports the CC of each merged MTZ to the simulator's true intensities
(``mxflow.simulate.score``) and the wall time of both, in one run.

    .venv/bin/python bench/bench_merge.py [--crystals 20] [--frames 20] [--out bench/out/merge]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from mxflow.cluster.select import Thresholds
from mxflow.engine.runner import run_program
from mxflow.merge.pipeline import MergeOptions, merge_sample
from mxflow.simulate import simulate
from mxflow.simulate.config import SimulationConfig
from mxflow.simulate.score import score
from mxflow.util.files import read_json, write_json


def best_cluster(clusters: list[dict]) -> dict | None:
    """KAMO's choose_best_result: top half by multiplicity, then highest CC½."""
    ok = [c for c in clusters if "error" not in c and c.get("cc_half") is not None]
    if not ok:
        return None
    ok.sort(key=lambda c: -c["multiplicity"])
    top = ok[: max(1, (len(ok) + 1) // 2)]
    return max(top, key=lambda c: c["cc_half"])


def baseline(out: Path, pairs: list[tuple[str, str]], nproc: int) -> tuple[Path | None, float]:
    """dials.cosym + dials.scale + dials.merge on every wedge; (merged MTZ, wall s)."""
    t0 = time.perf_counter()
    args = [p for pair in pairs for p in pair]
    for prog, a in (
        ("dials.cosym", [*args, f"nproc={nproc}", "output.html=None"]),
        (
            "dials.scale",
            ["symmetrized.expt", "symmetrized.refl", f"nproc={nproc}", "output.html=None"],
        ),
        ("dials.merge", ["scaled.expt", "scaled.refl", "output.mtz=merged.mtz"]),
    ):
        rec = run_program(prog, a, out)
        if rec.returncode != 0:
            print(f"baseline: {prog} failed, see {out / rec.log}", file=sys.stderr)
            return None, time.perf_counter() - t0
    return out / "merged.mtz", time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--crystals", type=int, default=20)
    ap.add_argument("--frames", type=int, default=20, help="frames per wedge (0.5° each)")
    ap.add_argument("--nproc", type=int, default=2)
    ap.add_argument("--out", default="bench/out/merge")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args(argv)
    out = Path(a.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    cfg = SimulationConfig(
        n_crystals=a.crystals,
        frames=a.frames,
        osc_width=0.5,
        n_populations=2,
        population_cell_change=0.02,
        seed=a.seed,
    )
    t0 = time.perf_counter()
    sim = simulate(out / "sim", cfg)
    t_sim = time.perf_counter() - t0
    t0 = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "mxflow.cli",
            "process",
            str(out / "sim"),
            "--workdir",
            str(out / "proc"),
            "--nproc",
            str(a.nproc),
        ],
        check=False,
    )
    t_proc = time.perf_counter() - t0
    rows = read_json(out / "proc" / "summary.json")
    rows = rows.get("datasets", rows) if isinstance(rows, dict) else rows
    pairs = [
        (str(out / "proc" / r["integrated_expt"]), str(out / "proc" / r["integrated_refl"]))
        for r in rows
        if r.get("status") == "ok" and r.get("integrated_expt")
    ]
    print(
        f"simulated {a.crystals} wedges in {t_sim:.0f} s; processed {len(pairs)} ok in {t_proc:.0f} s"
    )

    t0 = time.perf_counter()
    opts = MergeOptions(
        sample="bench", nproc=a.nproc, thresholds=Thresholds(min_completeness=80, max_clusters=3)
    )
    summary = merge_sample([out / "proc"], out / "mxflow", opts)
    t_mx = time.perf_counter() - t0
    best = best_cluster(summary["clusters"])
    mx_score = score(out / "mxflow" / best["merged_mtz"], sim.truth_dir) if best else None

    base_mtz, t_base = baseline(out / "baseline", pairs, a.nproc)
    base_score = score(base_mtz, sim.truth_dir) if base_mtz else None

    truth_pop = {c["name"]: c.get("population") for c in sim.crystals} if sim.crystals else {}
    purity = None
    if best and truth_pop:
        pops = [truth_pop.get(m.split("#")[0]) for m in best["members"]]
        top = max(set(pops), key=pops.count)
        purity = pops.count(top) / len(pops)
    result = {
        "wedges": a.crystals,
        "processed_ok": len(pairs),
        "mxflow": {
            "wall_s": t_mx,
            "best_cluster": best
            and {k: best[k] for k in ("id", "members", "cc_half", "completeness", "d_min")},
            "purity": purity,
            "cc_truth": mx_score and mx_score["cc_overall"],
            "population": mx_score and mx_score["population"],
        },
        "baseline_cosym_scale_merge": {
            "wall_s": t_base,
            "cc_truth": base_score and base_score["cc_overall"],
            "population": base_score and base_score["population"],
        },
    }
    write_json(out / "bench_merge.json", result)
    print(json.dumps(result, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
