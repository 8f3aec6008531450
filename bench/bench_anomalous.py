"""Benchmark: Zn-SAD from many small wedges, mxflow's merge against the serial DIALS route.

Simulates ≥ 20 small wedges of one crystal form with Zn sites (the THAS1
seed's Zn K edge, λ 1.282 Å; a Bijvoet ratio of a few %), processes them
with ``mxflow process --heavy-atom Zn``, then merges them two ways in one run:

* mxflow: ``merge_sample`` with ``heavy_atom="Zn"`` (anomalous scaling, CC
  clustering, run_01..03, resolution from CC½); its recommended cluster
  (``merge.final.recommend``), never chosen by the truth;
* baseline: every wedge through dials.cosym → dials.scale anomalous=True →
  dials.merge (the serial DIALS route of the tutorial).

Reported for each: CC(ΔI_merged, ΔI_true) after the reindexing search of
``mxflow score``, CC to the true intensities, CCano and SigAno (overall and
inner shell, mxflow's statistics on each route's scaled unmerged MTZ) and
the wall time.  Simulated images and processing are reused when already
present under --out (delete it to redo).

    .venv/bin/python bench/bench_anomalous.py [--crystals 20] [--frames 10] [--out bench/out/anomalous]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from bench_merge import baseline, processed_pairs, processed_rows
from mxflow.merge import merge_sample
from mxflow.merge.final import recommend
from mxflow.model import MergeOptions, MergingStats, Thresholds
from mxflow.simulate import simulate
from mxflow.simulate.config import SimulationConfig
from mxflow.simulate.score import score
from mxflow.stats.merging import stats_from_mtz
from mxflow.util.files import read_json, write_json

WAVELENGTH = 1.282  # Å, 12 eV above the Zn K edge (THAS1 seed)


def anomalous_figures(stats: MergingStats | None) -> dict:
    if stats is None:
        return {}
    o, i = stats.overall, stats.inner
    return {
        "cc_ano": o.cc_ano,
        "sig_ano": o.sig_ano,
        "cc_ano_inner": i.cc_ano,
        "sig_ano_inner": i.sig_ano,
        "anom_completeness": o.anom_completeness,
        "anom_multiplicity": o.anom_multiplicity,
        "d_min": o.d_min,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--crystals", type=int, default=20)
    ap.add_argument("--frames", type=int, default=10, help="frames per wedge (1° each)")
    ap.add_argument("--sites", type=int, default=3, help="Zn sites per ASU")
    ap.add_argument("--nproc", type=int, default=2)
    ap.add_argument("--out", default="bench/out/anomalous")
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument(
        "--proc",
        help="an OUT of `mxflow run`/`process` that already processed these wedges "
        "(default: --out/proc, processed here when missing)",
    )
    a = ap.parse_args(argv)
    out = Path(a.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    cfg = SimulationConfig(
        n_crystals=a.crystals,
        frames=a.frames,
        osc_width=1.0,
        detector_size=(487, 619),
        distance=80.0,
        d_min=2.3,
        space_group="P 21 21 21",
        unit_cell=(54.0, 62.0, 71.0, 90.0, 90.0, 90.0),
        wavelength=WAVELENGTH,
        heavy_atom="Zn",
        n_sites=a.sites,
        counts_at_dmin=30.0,
        seed=a.seed,
    )
    t0 = time.perf_counter()
    sim = simulate(out / "sim", cfg)
    t_sim = time.perf_counter() - t0
    bijvoet = read_json(sim.truth_json)["populations"][0]["anomalous"]["bijvoet_ratio"]
    proc = Path(a.proc).resolve() if a.proc else out / "proc"
    t0 = time.perf_counter()
    if not (proc / "summary.json").exists():
        subprocess.run(
            [
                *(sys.executable, "-m", "mxflow.cli", "process", str(out / "sim")),
                *("--workdir", str(proc), "--heavy-atom", "Zn"),
                *("--nproc", str(a.nproc), "--no-progress"),
            ],
            check=False,
            stdout=subprocess.DEVNULL,
        )
    t_proc = time.perf_counter() - t0
    rows = processed_rows(proc)
    pairs = processed_pairs(proc)
    print(
        f"simulated {a.crystals} wedges (Bijvoet ratio {100 * bijvoet:.1f} %) in {t_sim:.0f} s; "
        f"processed {len(pairs)} ok in {t_proc:.0f} s"
    )

    for d in (out / "mxflow", out / "baseline"):  # timings of a fresh merge, not a rerun
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
    t0 = time.perf_counter()
    # the sample the processing recorded (merge_sample keeps only that sample's datasets)
    sample = next((r["sample"] for r in rows if r.get("sample")), None)
    opts = MergeOptions(
        sample=sample,
        anomalous=True,
        heavy_atom="Zn",
        n_sites=a.sites,
        nproc=a.nproc,
        thresholds=Thresholds(),
    )
    summary = merge_sample([proc], out / "mxflow", opts)
    t_mx = time.perf_counter() - t0
    best, reason = recommend(summary) or (None, "")
    mx_score = score(out / "mxflow" / best.merged_mtz, sim.truth_dir) if best else None

    base_mtz, t_base = baseline(
        out / "baseline",
        pairs,
        a.nproc,
        ("anomalous=True", "output.unmerged_mtz=scaled_unmerged.mtz"),
    )
    base_score = score(base_mtz, sim.truth_dir) if base_mtz else None
    base_unmerged = out / "baseline" / "scaled_unmerged.mtz"
    base_stats = stats_from_mtz(base_unmerged) if base_unmerged.is_file() else None

    def ano_cc(s: dict | None) -> float | None:
        return s["anomalous"]["cc_overall"] if s and s.get("anomalous") else None

    mx_dcc, base_dcc = ano_cc(mx_score), ano_cc(base_score)
    result = {
        "wedges": a.crystals,
        "processed_ok": len(pairs),
        "bijvoet_ratio": bijvoet,
        "simulate_s": t_sim,
        "process_s": t_proc,
        "mxflow": {
            "wall_s": t_mx,
            "best_cluster": best and {"id": best.id, "n": len(best.members), "why": reason},
            "cc_delta_i_truth": mx_dcc,
            "cc_delta_i_shells": mx_score
            and mx_score["anomalous"]
            and mx_score["anomalous"]["shells"],
            "cc_truth": mx_score and mx_score["cc_overall"],
            "d_ano": best and best.anomalous and best.anomalous.d_ano,
            **anomalous_figures(best.stats if best else None),
        },
        "baseline_cosym_scale_merge": {
            "wall_s": t_base,
            "cc_delta_i_truth": base_dcc,
            "cc_truth": base_score and base_score["cc_overall"],
            **anomalous_figures(base_stats),
        },
        "cc_delta_i_gain": (mx_dcc - base_dcc)
        if (mx_dcc is not None and base_dcc is not None)
        else None,
    }
    write_json(out / "bench_anomalous.json", result)
    print(json.dumps(result, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
