"""Benchmark: mxflow's best cluster vs all wedges merged by dials.cosym + dials.scale + dials.merge.

Simulates ≥ 20 small wedges of two non-isomorphous populations (2 % apart in
a, different intensities), processes them with ``mxflow process``, then

* mxflow: ``merge_sample`` (CC clustering, run_01..03, resolution cut); the
  best cluster is mxflow's recommended one (``merge.final.recommend``,
  KAMO's rule: top half by multiplicity, then highest CC½), never by the truth;
* baseline: every wedge through dials.cosym → dials.scale → dials.merge;

and reports the CC of each merged MTZ to the simulator's true intensities
(``mxflow.simulate.score``) and the wall time of both, in one run.

Wedges are small (10 × 1° on a 487 × 619 px detector, data to 2.2 Å) so
the whole run fits a 2-core machine; mxflow merges with its default
thresholds (KAMO's: completeness ≥ 90 %, multiplicity ≥ 2, at most 10
clusters, near-identical sub-clusters skipped).  Simulated images and
processing are reused when already present under --out (delete it to redo).

    .venv/bin/python bench/bench_merge.py [--crystals 20] [--frames 10] [--out bench/out/merge]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from mxflow.engine.runner import run_program
from mxflow.merge import merge_sample
from mxflow.merge.final import recommend
from mxflow.model import MergeOptions, Thresholds, to_dict
from mxflow.process.cli import dataset_name
from mxflow.simulate import simulate
from mxflow.simulate.config import SimulationConfig
from mxflow.simulate.score import score
from mxflow.util.files import read_json, write_json


def baseline(
    out: Path, pairs: list[tuple[str, str]], nproc: int, scale_args: tuple[str, ...] = ()
) -> tuple[Path | None, float]:
    """dials.cosym + dials.scale (with ``scale_args``) + dials.merge on every wedge;
    (merged MTZ, wall s)."""
    t0 = time.perf_counter()
    args = [p for pair in pairs for p in pair]
    for prog, a in (
        ("dials.cosym", [*args, f"nproc={nproc}", "output.html=None"]),
        (
            "dials.scale",
            [
                *("symmetrized.expt", "symmetrized.refl", f"nproc={nproc}", "output.html=None"),
                *scale_args,
            ],
        ),
        ("dials.merge", ["scaled.expt", "scaled.refl", "output.mtz=merged.mtz"]),
    ):
        rec = run_program(prog, a, out)
        if rec.returncode != 0:
            print(f"baseline: {prog} failed, see {out / rec.log}", file=sys.stderr)
            return None, time.perf_counter() - t0
    return out / "merged.mtz", time.perf_counter() - t0


def processed_rows(proc: Path) -> list[dict]:
    """The dataset rows of ``proc/summary.json`` (a list, or a dict with ``datasets``)."""
    rows = read_json(proc / "summary.json")
    return rows.get("datasets", rows) if isinstance(rows, dict) else rows


def processed_pairs(proc: Path) -> list[tuple[str, str]]:
    """(integrated .expt, .refl) of every dataset processed ok under ``proc``."""
    return [
        (str(proc / r["integrated_expt"]), str(proc / r["integrated_refl"]))
        for r in processed_rows(proc)
        if r.get("status") == "ok" and r.get("integrated_expt")
    ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--crystals", type=int, default=20)
    ap.add_argument("--frames", type=int, default=10, help="frames per wedge (1° each)")
    ap.add_argument("--nproc", type=int, default=2)
    ap.add_argument("--out", default="bench/out/merge")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args(argv)
    out = Path(a.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    cfg = SimulationConfig(
        n_crystals=a.crystals,
        frames=a.frames,
        osc_width=1.0,
        detector_size=(487, 619),
        distance=100.0,
        d_min=2.2,
        n_populations=2,
        population_cell_change=0.02,
        seed=a.seed,
    )
    t0 = time.perf_counter()
    sim = simulate(out / "sim", cfg)
    t_sim = time.perf_counter() - t0
    t0 = time.perf_counter()
    if not (out / "proc" / "summary.json").exists():
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
                "--no-progress",
            ],
            check=False,
            stdout=subprocess.DEVNULL,
        )
    t_proc = time.perf_counter() - t0
    pairs = processed_pairs(out / "proc")
    print(
        f"simulated {a.crystals} wedges in {t_sim:.0f} s; processed {len(pairs)} ok in {t_proc:.0f} s"
    )

    for d in (out / "mxflow", out / "baseline"):  # timings of a fresh merge, not a rerun
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
    t0 = time.perf_counter()
    opts = MergeOptions(sample="bench", nproc=a.nproc, thresholds=Thresholds())
    summary = merge_sample([out / "proc"], out / "mxflow", opts)
    t_mx = time.perf_counter() - t0
    best, _ = recommend(summary) or (None, "")
    mx_score = score(out / "mxflow" / best.merged_mtz, sim.truth_dir) if best else None

    base_mtz, t_base = baseline(out / "baseline", pairs, a.nproc)
    base_score = score(base_mtz, sim.truth_dir) if base_mtz else None

    # simulator crystal → processed dataset name, the way `mxflow process` names sweeps
    truth_pop = {dataset_name(c["template"]): c["population"] for c in sim.crystals}

    def purity(members: list[str]) -> float | None:
        pops = [truth_pop.get(m.split("#")[0]) for m in members]
        if not pops or None in pops:
            return None
        return max(pops.count(p) for p in set(pops)) / len(pops)

    merged = []
    for c in summary.clusters:
        row = {"id": c.id, "n": len(c.members), "purity": purity(c.members)}
        if not c.ok:
            row["error"] = c.error
        else:
            sc = score(out / "mxflow" / c.merged_mtz, sim.truth_dir)
            row.update(
                cc_half=c.cc_half,
                multiplicity=c.multiplicity,
                completeness=c.completeness,
                d_min=c.d_min,
                cc_truth=sc["cc_overall"],
                population=sc["population"],
            )
        merged.append(row)
    mx_cc = mx_score and mx_score["cc_overall"]
    base_cc = base_score and base_score["cc_overall"]
    result = {
        "wedges": a.crystals,
        "processed_ok": len(pairs),
        "simulate_s": t_sim,
        "process_s": t_proc,
        "mxflow": {
            "wall_s": t_mx,
            "best_cluster": best
            and {
                "id": best.id,
                "members": best.members,
                "cc_half": best.cc_half,
                "completeness": best.completeness,
                "d_min": best.d_min,
                "space_group": best.space_group,
                "resolution_case": best.resolution_case,
            },
            "purity": best and purity(best.members),
            "cc_truth": mx_cc,
            "population": mx_score and mx_score["population"],
            "clusters_merged": merged,
            "not_merged": len(summary.not_merged),
            "rejected": [to_dict(r) for r in summary.rejected],
        },
        "baseline_cosym_scale_merge": {
            "wall_s": t_base,
            "cc_truth": base_cc,
            "population": base_score and base_score["population"],
        },
        "cc_gain": (mx_cc - base_cc) if (mx_cc is not None and base_cc is not None) else None,
    }
    write_json(out / "bench_merge.json", result)
    print(json.dumps(result, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
