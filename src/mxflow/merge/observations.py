"""Reading what the DIALS steps of a merge write: tagged observations, per-dataset sets.

A multi-experiment MTZ of dials.export or dials.scale numbers its batches in
one block per experiment; :func:`read_observations` turns the batches back
into (dataset, image) for every observation, which frame and dataset
rejection need.  A reference MTZ is read by :func:`read_reference`.
"""

from __future__ import annotations

from pathlib import Path

import gemmi
import numpy as np

from mxflow.cluster.intensity import IntensitySet, canonical_keys, merge_observations
from mxflow.engine.expt import read_experiments
from mxflow.errors import MxflowError
from mxflow.stats.observations import Observations


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
    return Observations(
        hkl=hkl,
        i=inten,
        sigma=sig,
        keys=canonical_keys(hkl, sg),
        s2=1.0 / d**2,
        cell=cell,
        space_group=sg,
        dataset=ds,
        image=im,
    )


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
