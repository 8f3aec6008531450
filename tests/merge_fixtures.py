"""A real merge written by mxflow's own pipeline, for the report tests.

The l-cysteine sweeps of ``../shared/data/l_cysteine_integrated`` (20, 25,
30) plus a copy of sweep 20 with a 30 % longer a axis (rejected at cell
grouping) are merged with ``merge_sample`` as ``mxflow run`` lays a merge
out: ``ROOT/merge/lcys/merge_cc_1.0S_lcys/`` (about a minute with DIALS).

:func:`write_collection` then builds an output directory around that merge
whose ``summary.json`` rows are :class:`~mxflow.model.DatasetResult` objects
written with ``to_dict`` (the four merged inputs and one dataset that
failed processing).  Nothing in the merge directory is written by hand.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from mxflow.merge import merge_sample
from mxflow.model import DatasetResult, MergeOptions, StepRecord, Thresholds
from report_fixtures import shells_model, summary_entry, write_summary_json

REPO = Path(__file__).resolve().parents[1]
LCYS = REPO.parent / "shared" / "data" / "l_cysteine_integrated"
SAMPLE = "lcys"
SWEEPS = (20, 25, 30)
WRONG = "99_integrated"  # the copy with the wrong cell
FAILED = "35_integrated"  # processing 'failed': never given to the merge
MERGE_WORKDIR = Path("merge") / SAMPLE  # relative to an output directory, as `mxflow run` does
METHOD_DIR = MERGE_WORKDIR / f"merge_cc_1.0S_{SAMPLE}"
PIN = "CPS1234-01"


def have_data() -> bool:
    return all((LCYS / f"{n}_integrated_experiments.json").is_file() for n in SWEEPS)


def pair(n: int) -> tuple[Path, Path]:
    return LCYS / f"{n}_integrated_experiments.json", LCYS / f"{n}_integrated.pickle"


def wrong_cell_copy(where: Path) -> tuple[Path, Path]:
    """Sweep 20 with a crystal 30 % longer along a (a 'wrong cell' dataset), in ``where``."""
    where.mkdir(parents=True, exist_ok=True)
    expt, refl = where / f"{WRONG}_experiments.json", where / f"{WRONG}.pickle"
    if not expt.is_file():
        doc = json.loads(pair(20)[0].read_text())
        for xtal in doc["crystal"]:
            xtal["real_space_a"] = list(np.asarray(xtal["real_space_a"]) * 1.3)
        expt.write_text(json.dumps(doc))
    if not refl.exists():
        refl.symlink_to(pair(20)[1])
    return expt, refl


def run_real_merge(root: Path) -> Path:
    """Merge the l-cysteine sweeps into ``root/merge/lcys`` (kept when already there);
    returns ``root``."""
    root = Path(root)
    if (root / METHOD_DIR / "merge_summary.json").is_file():
        return root
    inputs: list[str | Path] = [p for n in SWEEPS for p in pair(n)]
    inputs += wrong_cell_copy(root / "inputs")
    opts = MergeOptions(
        sample=SAMPLE, d_min=1.0, thresholds=Thresholds(min_completeness=80, max_clusters=1)
    )
    merge_sample(inputs, root / MERGE_WORKDIR, opts)
    return root


def lcys_results(root: Path) -> list[DatasetResult]:
    """The datasets of the collection: the merge's inputs, processed, and one failed sweep."""
    rng = np.random.default_rng(11)
    out = []
    for name, (expt, refl) in [(f"{n}_integrated", pair(n)) for n in SWEEPS] + [
        (WRONG, wrong_cell_copy(root / "inputs"))
    ]:
        cell = (5.48, 8.22, 12.15, 90.0, 90.0, 90.0)
        if name == WRONG:
            cell = (5.48 * 1.3, *cell[1:])
        stats = shells_model(rng, 0.9, 1.0, space_group="P 21 21 21", unit_cell=cell)
        out.append(
            DatasetResult(
                name=name,
                path=f"/data/{PIN}/data00/{name}_####.cbf",
                status="ok",
                sample=SAMPLE,
                mode="single",
                space_group="P 21 21 21",
                unit_cell=list(cell),
                d_min=stats.overall.d_min,
                stats=stats,
                integrated_expt=str(expt),
                integrated_refl=str(refl),
                workdir=f"proc/{PIN}/{name}",
                wavelength=0.6889,
                total_rotation=180.0,
                osc_width=1.0,
                indexed_fraction=0.95,
                wall_s=60.0,
            )
        )
    out.append(
        DatasetResult(
            name=FAILED,
            path=f"/data/{PIN}/data00/{FAILED}_####.cbf",
            status="failed",
            reason="Indexing failed: no lattice explains more than 10% of the spots.",
            sample=SAMPLE,
            mode="single",
            workdir=f"proc/{PIN}/{FAILED}",
            wavelength=0.6889,
            steps=[StepRecord("dials.index", ["dials.index"], "dials.index.log", 1, 3.0)],
        )
    )
    return out


def write_collection(merged: Path, out: Path) -> Path:
    """An output directory ``out``: summary.json from :func:`lcys_results` and a copy of the
    real merge of ``merged`` (the large DIALS intermediates left out); returns ``out``."""
    out = Path(out)
    results = lcys_results(merged)
    write_summary_json(out, [summary_entry(r, r.workdir or "") for r in results])
    shutil.copytree(
        merged / MERGE_WORKDIR,
        out / MERGE_WORKDIR,
        ignore=shutil.ignore_patterns("*.refl", "*.expt", "scaled_unmerged.mtz", "*.html"),
        dirs_exist_ok=True,
    )
    return out
