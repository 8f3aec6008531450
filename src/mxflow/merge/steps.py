"""DIALS steps of multi-crystal merging, and reading what they write.

Every program runs through :func:`mxflow.engine.runner.run_program` with an
argument list; a failing step raises :class:`StepFailed` carrying the log
tail, which the pipeline records as a reason (never a crash of the sample).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import gemmi
import numpy as np

from mxflow.cluster.intensity import IntensitySet, canonical_keys, merge_observations
from mxflow.engine.expt import read_experiments
from mxflow.engine.runner import log_tail, run_program
from mxflow.errors import MxflowError
from mxflow.model import StepRecord


class StepFailed(MxflowError):
    """A DIALS program exited with an error; the message carries its log tail."""


def run_step(program: str, args: list[str], cwd: Path, timeout: float | None = None) -> StepRecord:
    """Run a DIALS program in ``cwd``; raise StepFailed (with the log tail) if it fails."""
    rec = run_program(program, args, cwd, log_name=f"{program}.out", timeout=timeout)
    if rec.returncode != 0:
        tail = log_tail(cwd, rec, 6).replace("\n", " | ")
        raise StepFailed(f"{program} failed (exit {rec.returncode}): {tail}")
    return rec


def scaling_intervals(wedge_deg: float) -> tuple[float, float]:
    """dials.scale physical-model (scale, decay) intervals in degrees from the wedge width.

    xia2's rules: < 5° → 1/1.5, < 10° → 2/3, < 25° → 4/5, < 90° → 8/10, else 15/20.
    """
    for limit, pair in ((5, (1.0, 1.5)), (10, (2.0, 3.0)), (25, (4.0, 5.0)), (90, (8.0, 10.0))):
        if wedge_deg < limit:
            return pair
    return 15.0, 20.0


@dataclass
class Observations:
    """Unmerged observations of a multi-experiment MTZ, with dataset and image of each.

    ``keys``: canonical symmetry-unique keys (Friedel merged); ``s2`` = 1/d²
    (Å⁻²); ``dataset``: experiment index in the .expt written alongside;
    ``image``: image number within that experiment's scan.
    """

    hkl: np.ndarray
    keys: np.ndarray
    i: np.ndarray
    sigma: np.ndarray
    s2: np.ndarray
    dataset: np.ndarray
    image: np.ndarray
    cell: gemmi.UnitCell
    space_group: gemmi.SpaceGroup


def batch_map(mtz: gemmi.Mtz, image_ranges: list[tuple[int, int]]) -> dict[int, tuple[int, int]]:
    """BATCH number → (experiment index, image number) for an MTZ written by dials.export.

    dials.export gives each experiment a block of consecutive batch numbers,
    with a gap between blocks; the blocks are matched to ``image_ranges`` in
    order.  Raises MxflowError when the blocks and experiments disagree.
    """
    numbers = sorted(b.number for b in mtz.batches)
    if not numbers:
        raise MxflowError("MTZ has no batch headers")
    blocks: list[list[int]] = [[numbers[0]]]
    for n in numbers[1:]:
        if n == blocks[-1][-1] + 1:
            blocks[-1].append(n)
        else:
            blocks.append([n])
    if len(blocks) != len(image_ranges):
        raise MxflowError(f"MTZ has {len(blocks)} batch blocks for {len(image_ranges)} experiments")
    out = {}
    for k, (block, (first, _)) in enumerate(zip(blocks, image_ranges, strict=True)):
        for j, n in enumerate(block):
            out[n] = (k, first + j)
    return out


def read_observations(mtz_path: str | Path, expt_path: str | Path) -> Observations:
    """Observations of an unmerged MTZ from dials.export, tagged with dataset and image."""
    mtz = gemmi.read_mtz_file(str(mtz_path))
    exps = read_experiments(expt_path)
    ranges = [e.image_range or (1, 1) for e in exps]
    bmap = batch_map(mtz, ranges)
    data = np.asarray(mtz)
    col = {c.label: k for k, c in enumerate(mtz.columns)}
    hkl = data[:, [col["H"], col["K"], col["L"]]].astype(np.int64)
    batch = data[:, col["BATCH"]].astype(int)
    inten, sig = data[:, col["I"]], data[:, col["SIGI"]]
    ok = np.isfinite(inten) & (sig > 0)
    hkl, batch, inten, sig = hkl[ok], batch[ok], inten[ok], sig[ok]
    ds = np.array([bmap[b][0] for b in batch], dtype=int)
    im = np.array([bmap[b][1] for b in batch], dtype=int)
    cell = mtz.get_cell()
    d = np.asarray(mtz.make_d_array())[ok]
    sg = mtz.spacegroup
    return Observations(hkl, canonical_keys(hkl, sg), inten, sig, 1.0 / d**2, ds, im, cell, sg)


def per_dataset_sets(
    obs: Observations, names: list[str], d_min: float | None = None, d_max: float | None = None
) -> list[IntensitySet]:
    """One merged IntensitySet per experiment (index order) from tagged observations."""
    sets = []
    for k, name in enumerate(names):
        sel = obs.dataset == k
        sets.append(
            merge_observations(
                name,
                obs.hkl[sel],
                obs.i[sel],
                obs.sigma[sel],
                obs.space_group,
                obs.cell,
                d_min,
                d_max,
            )
        )
    return sets


def read_reference(path: str | Path) -> tuple[IntensitySet, gemmi.UnitCell, gemmi.SpaceGroup]:
    """Intensities of a reference MTZ (merged I or F, F squared), on canonical keys."""
    mtz = gemmi.read_mtz_file(str(path))
    labels = [c.label for c in mtz.columns]
    data = np.asarray(mtz)
    hkl = data[:, :3].astype(np.int64)
    for i_lab, s_lab, square in (
        ("IMEAN", "SIGIMEAN", False),
        ("I", "SIGI", False),
        ("F", "SIGF", True),
        ("FP", "SIGFP", True),
    ):
        if i_lab in labels and s_lab in labels:
            v = data[:, labels.index(i_lab)]
            s = data[:, labels.index(s_lab)]
            if square:
                v, s = v * v, 2 * np.abs(v) * s
            ok = np.isfinite(v) & np.isfinite(s)
            s = np.where(s > 0, s, 1.0)
            ref = merge_observations("reference", hkl[ok], v[ok], s[ok], mtz.spacegroup)
            return ref, mtz.get_cell(), mtz.spacegroup
    raise MxflowError(f"{path}: reference MTZ has no IMEAN/I/F/FP column with its sigma")
