"""Index, integrate and scale every rotation sweep found under the given paths (DIALS).

Each sweep is processed in its own directory OUT/<name>/ (dials.import,
find_spots, index, refine_bravais_settings + reindex (skipped when the space
group is given), refine, integrate, symmetry, scale — which writes the
unmerged and merged MTZ); the merged MTZ and the statistics are cut where
CC1/2 falls to 0.5.  OUT/summary.json lists every
dataset with its status, reason for failure, space group, cell, d_min,
merging statistics and the unmerged / merged MTZ (paths relative to OUT).
A failing dataset never stops the others.  Rerunning with the same OUT
skips the steps whose outputs are already complete.  OUT is locked while it
is written (another mxflow command writing there is refused, and refuses
this one), and the output directory of 'mxflow run' or 'mxflow watch' (it
holds mxflow.sqlite) is refused: their summary.json is the catalog's.

example:
  mxflow process /data/session1 --workdir proc --nproc 2
  mxflow process /data/x --workdir proc --space-group P212121 --unit-cell 54,62,71,90,90,90
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from mxflow.model import Dataset, DatasetResult, ImageSweep, ProcessingOptions, to_dict
from mxflow.process.pipeline import process_dataset
from mxflow.stats.scatterers import HEAVY_ATOM_HELP, SITES_HELP, cli_heavy_atom, sites_arg
from mxflow.util.args import (
    CORES_BOUND_HELP,
    UNIT_CELL_HELP,
    UNIT_CELL_METAVAR,
    core_count_arg,
    positive_float,
    space_group_arg,
    unit_cell_arg,
    workdir_arg,
)
from mxflow.util.files import safe_name, write_json

SUMMARY_NAME = "summary.json"


def _floats(text: str, n: int, what: str) -> tuple[float, ...]:
    try:
        values = tuple(float(x) for x in text.replace(" ", ",").split(",") if x)
    except ValueError:
        values = ()
    if len(values) != n:
        raise argparse.ArgumentTypeError(f"{what} needs {n} comma-separated numbers, got {text!r}")
    return values


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", metavar="PATH", help="image files or directories")
    parser.add_argument(
        "--workdir", "-o", required=True, metavar="OUT", type=workdir_arg, help="output directory"
    )
    parser.add_argument(
        "--nproc",
        type=core_count_arg,
        default=os.cpu_count() or 1,
        help=f"CPU cores to use (default: all; {CORES_BOUND_HELP})",
    )
    parser.add_argument(
        "--jobs",
        type=core_count_arg,
        default=None,
        help="datasets processed at once (default: min(datasets, nproc)); "
        f"the cores are shared out among them ({CORES_BOUND_HELP})",
    )
    parser.add_argument(
        "--space-group",
        metavar="SG",
        type=space_group_arg,
        help="known space group, e.g. P212121 or 19",
    )
    parser.add_argument(
        "--unit-cell",
        metavar=UNIT_CELL_METAVAR,
        type=unit_cell_arg,
        help=f"known unit cell: {UNIT_CELL_HELP}",
    )
    parser.add_argument(
        "--d-min", type=positive_float, metavar="D", help="high-resolution limit (Å, above 0)"
    )
    parser.add_argument(
        "--anomalous", action="store_true", help="keep Friedel mates apart in scaling"
    )
    parser.add_argument("--heavy-atom", metavar="EL", help=HEAVY_ATOM_HELP)
    parser.add_argument("--sites", type=sites_arg, metavar="N", help=SITES_HELP)
    parser.add_argument("--distance", type=float, metavar="MM", help="override detector distance")
    parser.add_argument(
        "--beam-centre",
        metavar="X,Y",
        type=lambda s: _floats(s, 2, "--beam-centre"),
        help="override beam centre (mm, fast,slow)",
    )
    parser.add_argument(
        "--rotation-axis",
        metavar="X,Y,Z",
        type=lambda s: _floats(s, 3, "--rotation-axis"),
        help="override rotation axis (DIALS lab frame)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def dataset_name(template: str) -> str:
    """A short, file-system-safe name from an image template (``/x/th_1_#####.cbf`` → ``th_1``)."""
    base = os.path.basename(template)
    base = re.sub(r"(\.(cbf|img|smv|h5|nxs)(\.(bz2|gz))?)$", "", base, flags=re.I)
    base = re.sub(r"_master$", "", base)
    base = re.sub(r"[_.-]*#+[_.-]*", "_", base).strip("_")
    return safe_name(base)


def datasets_from_sweeps(sweeps: list[ImageSweep], n_sites: int | None = None) -> list[Dataset]:
    """One Dataset per sweep, with unique names (and ``n_sites`` expected heavy-atom sites)."""
    out: list[Dataset] = []
    seen: dict[str, int] = {}
    for sweep in sweeps:
        name = dataset_name(sweep.template)
        if name in seen:
            seen[name] += 1
            name = f"{name}_{seen[name]}"
        else:
            seen[name] = 1
        out.append(Dataset(name=name, sweep=sweep, n_sites=n_sites))
    return out


def relative_to_out(result: DatasetResult, workdir: Path, out: Path) -> dict[str, Any]:
    """Summary entry: DatasetResult as a dict with output paths relative to OUT."""
    d = to_dict(result)
    for key in ("unmerged_mtz", "merged_mtz", "integrated_expt", "integrated_refl", "workdir"):
        if d.get(key):
            d[key] = os.path.relpath(workdir / d[key], out)
    for step in d.get("steps", []):
        step["log"] = os.path.relpath(workdir / step["log"], out)
    return d


def process_all(
    datasets: list[Dataset],
    out: Path,
    options: ProcessingOptions,
    jobs: int | None = None,
    progress: bool = True,
) -> list[DatasetResult]:
    """Process datasets (``jobs`` at once, sharing ``options.nproc`` cores); results in input order."""
    jobs = max(1, min(jobs or options.nproc, len(datasets) or 1))
    per_job = ProcessingOptions(**{**vars(options), "nproc": max(1, options.nproc // jobs)})
    results: dict[int, DatasetResult] = {}
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(datasets), unit="dataset", desc="processing", file=sys.stderr)
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {
            pool.submit(process_dataset, ds, out / ds.name, per_job): i
            for i, ds in enumerate(datasets)
        }
        for fut in as_completed(futures):
            i = futures[fut]
            results[i] = fut.result()
            if bar is not None:
                bar.set_postfix_str(f"{results[i].name}: {results[i].status}")
                bar.update(1)
    if bar is not None:
        bar.close()
    return [results[i] for i in range(len(datasets))]


def _pct(v: Any) -> str:
    return f"{100 * v:.1f}" if isinstance(v, int | float) else "-"


def _num(v: Any, spec: str) -> str:
    return format(v, spec) if isinstance(v, int | float) else "-"


def summary_table(entries: list[dict[str, Any]]) -> str:
    """Readable one-line-per-dataset table of summary entries."""
    head = (
        f"{'dataset':<16} {'status':<7} {'space group':<12} {'cell (Å, °)':<38} {'d_min':>5} "
        f"{'compl%':>6} {'mult':>5} {'I/sig':>6} {'Rmeas%':>6} {'CC1/2':>6}"
    )
    lines = [head, "-" * len(head)]
    for e in entries:
        o = (e.get("stats") or {}).get("overall") or {}
        cell = " ".join(f"{x:.2f}" for x in e["unit_cell"]) if e.get("unit_cell") else "-"
        lines.append(
            f"{e['name'][:16]:<16} {e['status']:<7} {(e.get('space_group') or '-'):<12} {cell:<38} "
            f"{_num(e.get('d_min'), '5.2f'):>5} {_pct(o.get('completeness')):>6} "
            f"{_num(o.get('multiplicity'), '.1f'):>5} {_num(o.get('i_over_sigma'), '.1f'):>6} "
            f"{_pct(o.get('r_meas')):>6} {_num(o.get('cc_half'), '.3f'):>6}"
        )
        if e["status"] != "ok" and e.get("reason"):
            lines.append(f"    reason: {e['reason']}")
        lines.extend(f"    fallback: {note}" for note in e.get("fallbacks") or [])
        if e.get("anomalous_note"):
            lines.append(f"    anomalous: {e['anomalous_note']}")
    return "\n".join(lines)


def run_process(
    paths: list[str],
    out: str | Path,
    options: ProcessingOptions,
    jobs: int | None = None,
    progress: bool = True,
    n_sites: int | None = None,
) -> dict[str, Any]:
    """Find sweeps under ``paths``, process them into ``out``, write and return the summary.

    ``n_sites``: expected heavy-atom sites per asymmetric unit (``--sites``), given to
    every dataset."""
    from mxflow.catalog.lock import locked

    out = Path(out)
    refuse_catalog_out(out)  # before anything is written, the lock file too
    with locked(out):
        refuse_catalog_out(out)  # (a run may have started in between)
        return _run_process(paths, out, options, jobs, progress, n_sites)


def refuse_catalog_out(out: Path) -> None:
    """Refuse the output directory of ``mxflow run`` / ``watch`` (it holds their catalog).

    Their summary.json is written from the catalog, in another layout than
    ``mxflow process``'s: replacing it would drop the run's datasets from the
    record (and the reports), and anything written beside it would be dropped
    again by the run's next summary.  So ``process`` works in its own directory.
    """
    from mxflow.catalog.db import catalog_path
    from mxflow.errors import BadInputError

    if catalog_path(out).exists():
        raise BadInputError(
            str(out),
            "the output directory of 'mxflow run' or 'mxflow watch' (it holds their catalog, "
            f"{catalog_path(out).name}); 'mxflow process' would replace its summary.json: "
            "choose another --workdir, or process with 'mxflow run'",
        )


def _run_process(
    paths: list[str],
    out: Path,
    options: ProcessingOptions,
    jobs: int | None,
    progress: bool,
    n_sites: int | None = None,
) -> dict[str, Any]:
    from mxflow.discover import find_sweeps

    t0 = time.perf_counter()
    found = find_sweeps(paths)
    rotation = [s for s in found.sweeps if s.is_rotation]
    problems = [{"path": p, "problem": why} for p, why in found.problems]
    problems += [
        {
            "path": s.template,
            "problem": "not a rotation sweep (stills or a raster scan): not processed",
        }
        for s in found.sweeps
        if not s.is_rotation
    ]
    datasets = datasets_from_sweeps(rotation, n_sites)
    results = process_all(datasets, out, options, jobs=jobs, progress=progress)
    summary = {
        "datasets": [
            relative_to_out(r, out / ds.name, out) for r, ds in zip(results, datasets, strict=True)
        ],
        "problems": problems,
        "options": to_dict(options),
        "wall_s": round(time.perf_counter() - t0, 2),
    }
    write_json(out / SUMMARY_NAME, summary)
    return summary


def options_from_args(args: argparse.Namespace) -> ProcessingOptions:
    """The processing options; an unknown ``--heavy-atom`` is warned about on stderr (and
    noted on every dataset), not refused: the data are processed as anomalous."""
    heavy_atom, warning = cli_heavy_atom(args.heavy_atom)
    if warning:
        print(warning, file=sys.stderr)
    return ProcessingOptions(
        nproc=max(1, args.nproc),
        space_group=args.space_group,
        unit_cell=args.unit_cell,
        d_min=args.d_min,
        anomalous=args.anomalous or heavy_atom is not None,
        heavy_atom=heavy_atom,
        distance=args.distance,
        beam_center=args.beam_centre,
        rotation_axis=args.rotation_axis,
    )


def run(args: argparse.Namespace) -> int:
    options = options_from_args(args)
    summary = run_process(
        args.paths,
        args.workdir,
        options,
        jobs=args.jobs,
        progress=not args.no_progress,
        n_sites=args.sites,
    )
    for p in summary["problems"]:
        print(f"skipped {p['path']}: {p['problem']}", file=sys.stderr)
    if not summary["datasets"]:
        print(f"no rotation sweeps found under {' '.join(args.paths)}", file=sys.stderr)
        return 1
    print(summary_table(summary["datasets"]))
    n_ok = sum(e["status"] == "ok" for e in summary["datasets"])
    print(
        f"\n{n_ok} of {len(summary['datasets'])} datasets processed; "
        f"summary: {Path(args.workdir) / SUMMARY_NAME}"
    )
    return 0 if n_ok == len(summary["datasets"]) else 2
