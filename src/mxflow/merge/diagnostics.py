"""Per-image and per-dataset diagnostics of a merged cluster (radiation damage, bad crystals).

What xia2.multiplex and KAMO plot to show how each crystal behaved, computed
from the final run of a cluster (``scaled_unmerged.mtz`` of dials.scale and
its ``scaled.expt``), between the cluster's d_max and d_min:

* against image number, per dataset, one point per *image group*: the
  dials.scale scale and a relative B (from the inverse scale factors g of the
  MTZ's SCALEUSED column, I_scaled = I_raw / g), Rmerge, ⟨I/σ⟩ and the CC of
  the group with the rest of the cluster (:func:`image_groups`,
  :func:`scale_and_b`, :func:`r_merge_by_group`, :func:`i_over_sigma_by_group`,
  :func:`mxflow.merge.analysis.cc_to_rest_by_group`);
* ΔCC½ per dataset (:func:`mxflow.merge.analysis.cc_half_without_each`);
* completeness against the number of crystals merged, crystals added in
  order of decreasing completeness alone (:func:`completeness_curve`).

Image groups are the merge's ``image_group`` consecutive images counted from
the first image of the scan, widened (to a multiple of ``image_group``) for a
dataset whose images hold too few observations, so that the average group of
a dataset has at least ``min_obs`` observations.  Observations are the MTZ
rows with a finite I and σ(I) > 0 (as :func:`~mxflow.merge.observations.
read_observations` reads them), systematic absences left out.  Functions
taking ``groups`` take one integer label per observation and return one
value per label of ``np.unique(groups)``, in that order.

Entry point: :func:`cluster_diagnostics` → :class:`~mxflow.model.ClusterDiagnostics`.
Nothing here runs a program.
"""

from __future__ import annotations

import math
from pathlib import Path

import gemmi
import numpy as np

from mxflow.engine.expt import read_experiments
from mxflow.errors import MxflowError
from mxflow.merge import analysis
from mxflow.merge.analysis import MIN_COMMON, cc_to_rest_by_group
from mxflow.merge.observations import read_observations
from mxflow.model import ClusterDiagnostics, DatasetDiagnostics, ImageSeries
from mxflow.stats.observations import Observations

#: observations an image group should hold on average (groups are widened to reach it)
MIN_GROUP_OBS = 100
#: observations a group needs for a scale / B fit
MIN_FIT_OBS = 10


# ---------------------------------------------------------------- image groups
def group_width(n_obs: int, n_images: int, image_group: int, min_obs: int = MIN_GROUP_OBS) -> int:
    """Images per group of one dataset: ``image_group``, or the smallest multiple of it
    whose groups hold ``min_obs`` observations on average; at most ``n_images``.

    Parameters
    ----------
    n_obs : observations of the dataset.
    n_images : images in its scan.
    image_group : the merge's images per group (≥ 1).
    min_obs : observations wanted per group on average.
    """
    image_group = max(1, int(image_group))
    n_images = max(1, int(n_images))
    per_image = n_obs / n_images
    k = math.ceil(min_obs / (image_group * per_image)) if per_image > 0 else n_images
    return int(min(max(1, k) * image_group, n_images))


def image_groups(
    dataset: np.ndarray, image: np.ndarray, first: np.ndarray, width: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Group label of every observation, and each label's dataset and first image.

    Parameters
    ----------
    dataset, image : int arrays, one per observation (dataset index, image number).
    first : first image number of each dataset's scan (indexed by dataset).
    width : images per group of each dataset (:func:`group_width`).

    Returns
    -------
    groups : label per observation, increasing with (dataset, image).
    group_dataset, group_first : per label of ``np.unique(groups)``: its dataset and the
        first image number of the group (the last is ``group_first + width − 1``, or the
        scan's end).
    """
    dataset, image = np.asarray(dataset, dtype=np.int64), np.asarray(image, dtype=np.int64)
    first, width = np.asarray(first, dtype=np.int64), np.asarray(width, dtype=np.int64)
    j = (image - first[dataset]) // width[dataset]
    stride = int(j.max()) + 1 if len(j) else 1
    groups = dataset * stride + j
    labels = np.unique(groups)
    g_ds = labels // stride
    return groups, g_ds, first[g_ds] + (labels % stride) * width[g_ds]


def _sums(groups: np.ndarray, *values: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """(count per label of np.unique(groups), [sum of each of ``values`` per label])."""
    _, inv = np.unique(groups, return_inverse=True)
    inv = inv.reshape(-1)
    n = np.bincount(inv)
    return n, [np.bincount(inv, weights=v, minlength=len(n)) for v in values]


# ---------------------------------------------------------------- values per group
def scale_and_b(
    g: np.ndarray, s2: np.ndarray, groups: np.ndarray, min_obs: int = MIN_FIT_OBS
) -> tuple[np.ndarray, np.ndarray]:
    """Relative scale and B of each group from dials.scale's inverse scale factors.

    A least-squares line ln g = ln k + B·(s²/2) through the group's
    observations (dials.scale's physical model has the same form, g = C·
    exp(B/(2d²)) times an absorption term that the fit averages out).

    Parameters
    ----------
    g : inverse scale factor of each observation (SCALEUSED, dimensionless, > 0).
    s2 : 1/d² of each observation (Å⁻²).
    groups : group label of each observation.
    min_obs : observations a group needs (fewer, or all at one resolution: NaN).

    Returns
    -------
    scale : k of each group (dimensionless, the scale extrapolated to d = ∞).
    b : B of each group (Å²; relative, only its change matters: it falls as
        radiation damage takes the high-resolution intensities).
    """
    x, y = np.asarray(s2, dtype=float) / 2, np.log(np.asarray(g, dtype=float))
    n, (sx, sy, sxx, sxy) = _sums(groups, x, y, x * x, x * y)
    with np.errstate(invalid="ignore", divide="ignore"):
        den = n * sxx - sx * sx
        ok = (n >= min_obs) & (den > 1e-12 * np.maximum(n * sxx, 1e-300))
        b = np.where(ok, (n * sxy - sx * sy) / den, np.nan)
        k = np.where(ok, np.exp((sy - b * sx) / n), np.nan)
    return k, b


def mean_intensity(keys: np.ndarray, i: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(⟨I⟩ of each observation's reflection, the reflection's multiplicity), per observation.

    ⟨I⟩ is the unweighted mean over all observations of the reflection (Rmerge's mean).
    """
    _, inv, counts = np.unique(keys, return_inverse=True, return_counts=True)
    inv = inv.reshape(-1)
    total = np.bincount(inv, weights=np.asarray(i, dtype=float))
    return (total / counts)[inv], counts[inv]


def r_merge_by_group(keys: np.ndarray, i: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Rmerge of each group against the cluster's mean intensities (a fraction, not %).

    Rmerge(G) = Σ_{j∈G} |I_j − ⟨I⟩_h(j)| / Σ_{j∈G} I_j over the group's observations j
    of reflections h measured at least twice in the cluster (anywhere); ⟨I⟩_h is the
    unweighted mean of all the cluster's observations of h (DIALS' "Rmerge vs batch",
    but without singletons, which would only add to the denominator).  NaN where the
    denominator is not positive.

    Parameters
    ----------
    keys : symmetry-unique reflection key of each observation.
    i : scaled intensity of each observation.
    groups : group label of each observation.
    """
    i = np.asarray(i, dtype=float)
    mean, mult = mean_intensity(keys, i)
    use = (mult >= 2).astype(float)
    _, (num, den) = _sums(groups, use * np.abs(i - mean), use * i)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / den, np.nan)


def i_over_sigma_by_group(i: np.ndarray, sigma: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Mean I/σ(I) of each group's unmerged observations (DIALS' "I/σ vs batch").

    Parameters
    ----------
    i, sigma : scaled intensity and its σ (> 0) of each observation.
    groups : group label of each observation.
    """
    n, (s,) = _sums(groups, np.asarray(i, dtype=float) / np.asarray(sigma, dtype=float))
    return s / n


# ---------------------------------------------------------------- per dataset
def delta_cc_half_by_dataset(
    keys: np.ndarray, i: np.ndarray, s2: np.ndarray, dataset: np.ndarray, n_datasets: int
) -> tuple[float, list[float], list[float]]:
    """ΔCC½ of each dataset (:func:`mxflow.merge.analysis.cc_half_without_each`).

    Parameters
    ----------
    keys, i, s2 : reflection key, scaled intensity and 1/d² (Å⁻²) of each observation.
    dataset : dataset index of each observation.
    n_datasets : number of datasets (one without observations gets NaN).

    Returns
    -------
    cc_half : σ-τ CC½ of all observations, averaged over 10 resolution bins.
    without : the same without each dataset, by index.
    delta : ``cc_half − without`` by index; negative where the data are better
        without the dataset.
    """
    full, wo = analysis.cc_half_without_each(keys, i, s2, dataset)
    without = [wo.get(k, math.nan) for k in range(n_datasets)]
    return full, without, [full - w for w in without]


def possible_reflections(
    cell: gemmi.UnitCell, space_group: gemmi.SpaceGroup, d_min: float, d_max: float
) -> int:
    """Symmetry-unique reflections (Friedel mates one, absences left out) with
    d_min ≤ d ≤ d_max (Å), as :mod:`mxflow.stats.merging` counts them."""
    hkl = gemmi.make_miller_array(cell, space_group, d_min * (1 - 1e-9), d_max * (1 + 1e-9))
    return len(hkl)


def completeness_curve(
    keys: np.ndarray, dataset: np.ndarray, n_possible: int, n_datasets: int | None = None
) -> tuple[list[int], list[float], list[float]]:
    """Completeness against the number of datasets merged, best datasets first.

    Parameters
    ----------
    keys : symmetry-unique reflection key of each observation (Friedel mates equal).
    dataset : dataset index of each observation.
    n_possible : possible reflections in the resolution range (> 0).
    n_datasets : number of datasets (default: the largest index + 1); one with no
        observations has completeness 0 and comes last.

    Returns
    -------
    order : dataset indices by decreasing completeness alone (ties: index order).
    alone : completeness (%) of each dataset alone, by index.
    curve : completeness (%) of the first n + 1 datasets of ``order`` merged;
        non-decreasing, the last value that of all the data.
    """
    keys, dataset = np.asarray(keys), np.asarray(dataset, dtype=np.int64)
    n_ds = int(n_datasets if n_datasets is not None else (dataset.max() + 1 if len(dataset) else 0))
    _, rinv = np.unique(keys, return_inverse=True)
    rinv = rinv.reshape(-1)
    n_ref = int(rinv.max()) + 1 if len(rinv) else 0
    per_ds = [np.unique(rinv[dataset == k]) for k in range(n_ds)]
    alone = [100.0 * len(r) / n_possible for r in per_ds]
    order = sorted(range(n_ds), key=lambda k: (-len(per_ds[k]), k))
    seen = np.zeros(n_ref, dtype=bool)
    curve = []
    for k in order:
        seen[per_ds[k]] = True
        curve.append(100.0 * int(seen.sum()) / n_possible)
    return order, alone, curve


# ---------------------------------------------------------------- the entry point
def read_scale_factors(mtz_path: str | Path, obs: Observations) -> np.ndarray:
    """SCALEUSED (dials.scale's inverse scale factor g) of each observation of ``obs``.

    ``obs`` must have been read from the same file by
    :func:`~mxflow.merge.observations.read_observations`; its rows are the MTZ
    rows with finite I and σ(I) > 0, which are selected the same way here and
    checked to be the same reflections.  Raises MxflowError when the file has
    no SCALEUSED column (not written by dials.scale) or the rows disagree.
    """
    mtz = gemmi.read_mtz_file(str(mtz_path))
    labels = [c.label for c in mtz.columns]
    if "SCALEUSED" not in labels:
        raise MxflowError(f"{mtz_path}: no SCALEUSED column (not scaled by dials.scale)")
    data = np.asarray(mtz)
    col = {lab: k for k, lab in enumerate(labels)}
    ok = np.isfinite(data[:, col["I"]]) & (data[:, col["SIGI"]] > 0)
    g = data[ok, col["SCALEUSED"]].astype(float)
    hkl = data[ok][:, [col["H"], col["K"], col["L"]]].astype(np.int64)
    if hkl.shape != obs.hkl.shape or not np.array_equal(hkl, obs.hkl):
        raise MxflowError(f"{mtz_path}: SCALEUSED rows do not match the observations read")
    return g


def run_name(run: Path) -> str:
    """A run folder's path below its ``cluster_NNNN`` folder (``run_02``,
    ``extended/run_01``), as :class:`~mxflow.model.MergeRun` names it."""
    parts = Path(run).parts
    for k in range(len(parts) - 1, -1, -1):
        if parts[k].startswith("cluster_"):
            return "/".join(parts[k + 1 :]) or Path(run).name
    return Path(run).name


def _image_range(scan: tuple[int, int] | None, images: np.ndarray) -> tuple[int, int]:
    """The scan's (first, last) image, else the images observed (else (1, 1))."""
    if scan:
        return int(scan[0]), int(scan[1])
    if len(images):
        return int(images.min()), int(images.max())
    return 1, 1


def cluster_diagnostics(
    run: Path,
    members: list[str],
    d_min: float | None,
    image_group: int,
    *,
    min_obs: int = MIN_GROUP_OBS,
) -> ClusterDiagnostics:
    """Per-image and per-dataset diagnostics of one run of a cluster (its final run).

    Parameters
    ----------
    run : the run folder (``.../cluster_NNNN/run_0N``) holding dials.scale's
        ``scaled_unmerged.mtz`` and ``scaled.expt``.
    members : name of each experiment of ``scaled.expt``, in file order.
    d_min : high-resolution limit (Å) of the cluster (its cut, or the fitted
        limit); None: all the data.
    image_group : the merge's images per group (``MergeOptions.image_group``).
    min_obs : observations an image group should hold on average; groups of a
        dataset with fewer observations per image are widened.

    Raises MxflowError when the files are missing, lack SCALEUSED or do not
    match ``members``.
    """
    run = Path(run)
    mtz, expt = run / "scaled_unmerged.mtz", run / "scaled.expt"
    for p in (mtz, expt):
        if not p.is_file():
            raise MxflowError(f"{p}: not found (the run was not scaled)")
    exps = read_experiments(expt)
    if len(exps) != len(members):
        raise MxflowError(f"{expt}: {len(exps)} experiments for {len(members)} members")
    obs = read_observations(mtz, expt)
    g = read_scale_factors(mtz, obs)
    keep = ~np.asarray(obs.space_group.operations().systematic_absences(obs.hkl), dtype=bool)
    keep &= g > 0
    if d_min:
        keep &= obs.s2 <= (1 / d_min**2) * (1 + 1e-6)
    keys, i, sigma, s2 = obs.keys[keep], obs.i[keep], obs.sigma[keep], obs.s2[keep]
    ds, im, g = obs.dataset[keep], obs.image[keep], g[keep]
    n_ds = len(members)
    out = ClusterDiagnostics(run_name(run), image_group=int(image_group), min_obs=int(min_obs))
    if not len(i):
        out.note = "no observations in the resolution range"
        out.datasets = [DatasetDiagnostics(m) for m in members]
        return out
    out.d_min, out.d_max = float(1 / math.sqrt(s2.max())), float(1 / math.sqrt(s2.min()))
    out.n_possible = possible_reflections(obs.cell, obs.space_group, out.d_min, out.d_max)

    ranges = [_image_range(e.image_range, im[ds == k]) for k, e in enumerate(exps)]
    first = np.array([r[0] for r in ranges], dtype=np.int64)
    last = np.array([r[1] for r in ranges], dtype=np.int64)
    n_obs = np.bincount(ds, minlength=n_ds)
    width = np.array(
        [
            group_width(int(n_obs[k]), int(last[k] - first[k] + 1), image_group, min_obs)
            for k in range(n_ds)
        ],
        dtype=np.int64,
    )
    groups, g_ds, g_first = image_groups(ds, im, first, width)
    g_n, _ = _sums(groups)
    scale, b = scale_and_b(g, s2, groups)
    rm = r_merge_by_group(keys, i, groups)
    isig = i_over_sigma_by_group(i, sigma, groups)
    cc = cc_to_rest_by_group(keys, i, groups, MIN_COMMON)

    out.cc_half, without, delta = delta_cc_half_by_dataset(keys, i, s2, ds, n_ds)
    order, alone, curve = completeness_curve(keys, ds, out.n_possible, n_ds)
    out.completeness_order = [members[k] for k in order]
    out.completeness_curve = curve
    for k, name in enumerate(members):
        sel = g_ds == k
        f = g_first[sel]
        series = ImageSeries(
            first=[int(x) for x in f],
            last=[int(min(x + width[k] - 1, last[k])) for x in f],
            n_obs=[int(x) for x in g_n[sel]],
            scale=[float(x) for x in scale[sel]],
            b=[float(x) for x in b[sel]],
            r_merge=[float(x) for x in rm[sel]],
            i_over_sigma=[float(x) for x in isig[sel]],
            cc_rest=[float(x) for x in cc[sel]],
        )
        out.datasets.append(
            DatasetDiagnostics(
                name=name,
                n_obs=int(n_obs[k]),
                n_unique=len(np.unique(keys[ds == k])),
                completeness=alone[k],
                delta_cc_half=delta[k],
                cc_half_without=without[k],
                group_width=int(width[k]),
                images=series,
            )
        )
    return out
