"""Live merging: a sample's merged statistics, updated dataset by dataset while data arrive.

``mxflow watch`` keeps one live merge per sample in ``OUT/merge_live/<sample>/``.
Each newly processed dataset (its scaled, unmerged MTZ from ``mxflow process``)
is added once, reusing what the live merge already knows:

1. **cell**: it must pass KAMO's cell test (:func:`mxflow.cluster.cells.cells_similar`,
   the merge's tolerances) against the median cell of the datasets used so far,
   and have the same lattice point group; otherwise it is left out, with the reason;
2. **indexing**: when the lattice allows several indexings (merohedry), it takes
   the operator whose intensities correlate best with the running merge
   (:func:`mxflow.cluster.ambiguity.assign_by_reference`); the others keep theirs;
3. **scale**: one scale and one relative B against the running merge
   (:func:`relative_scale`); the others keep theirs;
4. **merge**: the statistics of everything used (:func:`mxflow.stats.merging.merging_stats`),
   cut where CC½ falls to the target (:func:`mxflow.stats.resolution.estimate_d_min`),
   and ``merged.mtz`` (IMEAN, SIGIMEAN, NOBS, FreeR_flag).

Steps 1–3 cost one dataset's reflections; step 4 is numpy over all
observations (well under a second for 200 small wedges).  Nothing here runs
DIALS: a live merge is provisional (no cosym, no DIALS scaling model, no
clustering, no rejection).  The batch merge, which ``mxflow watch`` runs when
it stops and ``mxflow run`` runs after processing, is the result to use.

The per-dataset observations, reindexed, are cached in ``obs/`` (npz) so an
update reads only the new dataset's MTZ; ``live.json`` is the :class:`LiveMerge`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path

import gemmi
import numpy as np

from mxflow.cluster.ambiguity import ambiguity_operators, assign_by_reference
from mxflow.cluster.cells import cells_similar, median_cell
from mxflow.cluster.intensity import canonical_keys, merge_observations, op_matrix, unpack_hkl
from mxflow.model import DatasetResult, LiveDataset, LiveMerge, from_dict, to_dict
from mxflow.stats.free_flags import add_free_flags
from mxflow.stats.merging import merging_stats
from mxflow.stats.observations import Observations, observations_from_arrays
from mxflow.stats.resolution import estimate_d_min
from mxflow.util.files import atomic_write_bytes, read_json, safe_name, write_json

LIVE_DIR = "merge_live"
#: the merge's own cell tolerances (MergeOptions' defaults)
CELL_REL_LENGTH = 0.10
CELL_ANGLE = 5.0


def live_dir(out: Path, sample: str) -> Path:
    """Where a sample's live merge lives: ``OUT/merge_live/<sample>/``."""
    return Path(out) / LIVE_DIR / safe_name(sample, "sample")


def read_live(out: Path, sample: str) -> LiveMerge | None:
    """The sample's live merge as last written (None when there is none)."""
    path = live_dir(out, sample) / "live.json"
    if not path.exists():
        return None
    return from_dict(LiveMerge, read_json(path))


def all_live(out: Path) -> list[LiveMerge]:
    """Every live merge under OUT, by sample."""
    found = []
    for path in sorted((Path(out) / LIVE_DIR).glob("*/live.json")):
        try:
            found.append(from_dict(LiveMerge, read_json(path)))
        except (OSError, ValueError):
            continue
    return found


# ---------------------------------------------------------------- pure pieces


def relative_scale(
    s2: np.ndarray,
    i_obs: np.ndarray,
    sigma_obs: np.ndarray,
    i_ref: np.ndarray,
    sigma_ref: np.ndarray,
    n_bins: int = 6,
    min_signal: float = 5.0,
) -> tuple[float, float]:
    """Scale and relative B (Å²) that put ``i_obs`` on the scale of ``i_ref``.

    Pairs of the same reflection (``s2`` = 1/d², Å⁻²) are split into
    ``n_bins`` resolution bins of equal count.  In each bin where both sums of
    intensity are at least ``min_signal`` times their σ, the ratio of sums
    ΣI_ref / ΣI_obs (robust to the noise of single weak reflections) is taken,
    and ln(ratio) = ln k + (B/2)·s² fitted by least squares weighted by the
    inverse variance of ln(ratio).  With fewer than 2 such bins B is 0 and k
    the overall ratio of sums (1 when that is not positive).
    Returns (k, B): I_obs·k·exp(B·s²/2) is on the reference's scale.
    """
    s2, i_obs, sigma_obs, i_ref, sigma_ref = (
        np.asarray(x, dtype=float) for x in (s2, i_obs, sigma_obs, i_ref, sigma_ref)
    )
    order = np.argsort(s2)
    x, y, w = [], [], []
    for b in np.array_split(order, max(1, min(n_bins, len(order) // 20))):
        so, sr = i_obs[b].sum(), i_ref[b].sum()
        eo, er = math.sqrt((sigma_obs[b] ** 2).sum()), math.sqrt((sigma_ref[b] ** 2).sum())
        if so > min_signal * eo and sr > min_signal * er:
            x.append(s2[b].mean())
            y.append(math.log(sr / so))
            w.append(1.0 / ((eo / so) ** 2 + (er / sr) ** 2))
    if len(x) < 2:
        so, sr = i_obs.sum(), i_ref.sum()
        return (float(sr / so) if so > 0 and sr > 0 else 1.0), 0.0
    slope, intercept = np.polyfit(np.array(x), np.array(y), 1, w=np.sqrt(np.array(w)))
    return float(math.exp(intercept)), float(2.0 * slope)


def refine_scales(
    keys: Sequence[np.ndarray],
    s2: Sequence[np.ndarray],
    intensity: Sequence[np.ndarray],
    sigma: Sequence[np.ndarray],
    scales: Sequence[tuple[float, float]],
    cycles: int = 2,
) -> list[tuple[float, float]]:
    """Refine every dataset's (k, B) against the merge of all the others.

    Per dataset: canonical reflection ``keys`` (Friedel mates together),
    ``s2`` = 1/d² (Å⁻²), raw ``intensity`` and ``sigma``; ``scales`` the
    starting (k, B) of each (the previous update's: one or two cycles then
    suffice).  Each cycle merges everything on the current scales (weights
    1/σ²), and fits each dataset (:func:`relative_scale`) to that merge with
    its own observations taken out, so no dataset pulls the reference towards
    itself.  The result is normalised to a geometric-mean k of 1 and a mean B
    of 0 (the overall scale is arbitrary).
    """
    n = len(keys)
    current = [tuple(x) for x in scales]
    if n < 2:
        return [(1.0, 0.0)] * n
    uk, inv = np.unique(np.concatenate(keys), return_inverse=True)
    bounds = np.cumsum([0] + [len(k) for k in keys])
    for _ in range(cycles):
        parts = [apply_scale(intensity[j], sigma[j], s2[j], *current[j]) for j in range(n)]
        i_all = np.concatenate([p[0] for p in parts])
        w_all = 1.0 / np.concatenate([p[1] for p in parts]) ** 2
        s_tot = np.bincount(inv, weights=w_all * i_all, minlength=len(uk))
        w_tot = np.bincount(inv, weights=w_all, minlength=len(uk))
        new = []
        for j in range(n):
            sl = slice(bounds[j], bounds[j + 1])
            own = inv[sl]
            s_own = np.bincount(own, weights=w_all[sl] * i_all[sl], minlength=len(uk))
            w_own = np.bincount(own, weights=w_all[sl], minlength=len(uk))
            w_ref = (w_tot - w_own)[own]
            ok = w_ref > 0
            if ok.sum() < 20:
                new.append(current[j])
                continue
            i_ref = (s_tot - s_own)[own][ok] / w_ref[ok]
            new.append(
                relative_scale(
                    s2[j][ok], intensity[j][ok], sigma[j][ok], i_ref, 1.0 / np.sqrt(w_ref[ok])
                )
            )
        log_k = np.mean([math.log(k) for k, _ in new])
        mean_b = np.mean([b for _, b in new])
        current = [(k / math.exp(log_k), b - mean_b) for k, b in new]
    return [(float(k), float(b)) for k, b in current]


def apply_scale(
    i: np.ndarray, sigma: np.ndarray, s2: np.ndarray, k: float, b: float
) -> tuple[np.ndarray, np.ndarray]:
    """I·k·exp(B·s²/2) and σ the same (``s2`` = 1/d², Å⁻²; B in Å²)."""
    f = k * np.exp(0.5 * b * np.asarray(s2))
    return np.asarray(i) * f, np.asarray(sigma) * f


def _laue(space_group: str) -> str:
    return gemmi.SpaceGroup(space_group).laue_str()


# ---------------------------------------------------------------- the update


class _Cache:
    """Reindexed observations of each used dataset (original-setting hkl, I, σ), on disk
    and, for the one update this cache lives for, in memory (each file read once)."""

    def __init__(self, folder: Path):
        self.folder = folder / "obs"
        self._memo: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def path(self, key: str) -> Path:
        return self.folder / f"{safe_name(key, 'dataset')}.npz"

    def save(self, key: str, hkl: np.ndarray, i: np.ndarray, sigma: np.ndarray) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.path(key).with_suffix(".tmp.npz")
        hkl = hkl.astype(np.int32)
        np.savez(tmp, hkl=hkl, i=i, sigma=sigma)
        tmp.replace(self.path(key))
        self._memo[key] = (hkl, i, sigma)

    def load(self, key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if key not in self._memo:
            with np.load(self.path(key)) as z:
                self._memo[key] = (z["hkl"], z["i"], z["sigma"])
        return self._memo[key]


def _read_scaled(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, gemmi.UnitCell]:
    """hkl (as measured), I, σ of a scaled unmerged MTZ, and its cell (positive σ only)."""
    mtz = gemmi.read_mtz_file(str(path))
    if mtz.column_with_label("M/ISYM") is None:
        raise ValueError(f"{path}: not an unmerged MTZ (no M/ISYM column)")
    ints = gemmi.Intensities()
    ints.import_mtz(mtz, gemmi.DataType.Unmerged)
    hkl = np.array(ints.miller_array, dtype=np.int32)
    i, sigma = np.array(ints.value_array), np.array(ints.sigma_array)
    ok = np.isfinite(i) & np.isfinite(sigma) & (sigma > 0)
    if not ok.any():
        raise ValueError(f"{path}: no intensities with a positive σ")
    return hkl[ok], i[ok], sigma[ok], mtz.get_cell()


def _merged(live: LiveMerge, cache: _Cache) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """All used datasets' observations on the live scale (hkl, I, σ), or None."""
    cell = gemmi.UnitCell(*live.unit_cell)
    parts = []
    for d in live.used:
        hkl, i, sigma = cache.load(d.key)
        s2 = cell.calculate_1_d2_array(hkl)
        parts.append((hkl, *apply_scale(i, sigma, s2, d.scale, d.relative_b)))
    if not parts:
        return None
    return tuple(np.concatenate(p) for p in zip(*parts, strict=True))  # type: ignore[return-value]


def _add_dataset(
    live: LiveMerge,
    key: str,
    result: DatasetResult,
    out: Path,
    cache: _Cache,
    reference: tuple[np.ndarray, np.ndarray, np.ndarray] | None,
) -> LiveDataset:
    """Check, reindex and scale one dataset against the running merge; cache its data."""
    entry = LiveDataset(key, result.name, result.unmerged_mtz or "", added=time.time())
    if not result.unmerged_mtz:
        entry.status, entry.reason = "left out", "no scaled unmerged MTZ"
        return entry
    try:
        hkl, i, sigma, cell = _read_scaled(out / result.unmerged_mtz)
    except (OSError, RuntimeError, ValueError) as exc:
        entry.status, entry.reason = "left out", f"cannot read {result.unmerged_mtz}: {exc}"
        return entry
    own_sg = result.space_group or live.space_group
    if live.space_group and own_sg and _laue(own_sg) != _laue(live.space_group):
        entry.status = "left out"
        entry.reason = f"Laue group {_laue(own_sg)}, the live merge's is {_laue(live.space_group)}"
        return entry
    this_cell = tuple(cell.parameters)
    if live.unit_cell and not cells_similar(
        this_cell, tuple(live.unit_cell), CELL_REL_LENGTH, CELL_ANGLE
    ):
        entry.status = "left out"
        entry.reason = "cell {} unlike the live merge's {}".format(
            " ".join(f"{x:.1f}" for x in this_cell),
            " ".join(f"{x:.1f}" for x in live.unit_cell),
        )
        return entry
    if not live.space_group:
        live.space_group = own_sg or "P 1"
    sg = gemmi.SpaceGroup(live.space_group)
    if reference is not None:
        ref_hkl, ref_i, ref_sigma = reference
        ref_set = merge_observations("live", ref_hkl, ref_i, ref_sigma, sg)
        ops = ambiguity_operators(live.unit_cell or this_cell, sg)
        own = merge_observations(key, hkl, i, sigma, sg)
        if len(ops) > 1:
            ((best, cc),) = assign_by_reference([own], ref_set, ops, sg)
            entry.operator = ops[best].as_hkl().triplet()
            entry.operator_cc = None if math.isnan(cc) else round(cc, 4)
            if best:
                hkl = (hkl @ op_matrix(ops[best]).T).astype(np.int32)
                own = merge_observations(key, hkl, i, sigma, sg)
        common, ia, ib = np.intersect1d(own.keys, ref_set.keys, return_indices=True)
        ref_cell = gemmi.UnitCell(*live.unit_cell)
        s2 = ref_cell.calculate_1_d2_array(unpack_hkl(common).astype(np.int32))
        entry.scale, entry.relative_b = relative_scale(
            s2, own.i[ia], own.sigma[ia], ref_set.i[ib], ref_set.sigma[ib]
        )
    entry.n_obs = len(i)
    entry.unit_cell = [round(x, 4) for x in this_cell]
    cache.save(key, hkl, i, sigma)
    return entry


def _refine(live: LiveMerge, cache: _Cache, cycles: int = 2) -> None:
    """Every used dataset's scale refined against the others (:func:`refine_scales`)."""
    used = live.used
    if len(used) < 2:
        return
    cell, sg = gemmi.UnitCell(*live.unit_cell), gemmi.SpaceGroup(live.space_group)
    keys, s2, i, sigma = [], [], [], []
    for d in used:
        hkl, ii, ss = cache.load(d.key)
        keys.append(canonical_keys(hkl, sg))
        s2.append(cell.calculate_1_d2_array(hkl))
        i.append(ii)
        sigma.append(ss)
    start = [(d.scale, d.relative_b) for d in used]
    for d, (k, b) in zip(used, refine_scales(keys, s2, i, sigma, start, cycles), strict=True):
        d.scale, d.relative_b = round(k, 5), round(b, 3)


def _write_outputs(live: LiveMerge, folder: Path, out: Path, cache: _Cache) -> None:
    """Statistics of everything used, cut at the CC½ limit, and merged.mtz."""
    data = _merged(live, cache)
    live.stats, live.d_min, live.merged_mtz = None, None, ""
    if data is None:
        return
    cell, sg = gemmi.UnitCell(*live.unit_cell), gemmi.SpaceGroup(live.space_group)
    try:
        obs = observations_from_arrays(*data, cell, sg)
    except ValueError as exc:
        live.notes.append(f"no statistics: {exc}")
        return
    fit = estimate_d_min(obs.keys, obs.i, obs.s2, target=live.cc_half_target)
    live.d_min = fit.d_min
    if fit.d_min:
        keep = obs.s2 <= 1.0 / fit.d_min**2 * (1 + 1e-9)
        obs = observations_from_arrays(obs.hkl[keep], obs.i[keep], obs.sigma[keep], cell, sg)
    live.stats = merging_stats(obs, calibrate_sigma=False)
    _write_mtz(obs, folder / "merged.mtz", live)
    live.merged_mtz = str((folder / "merged.mtz").relative_to(out))


def _write_mtz(obs: Observations, path: Path, live: LiveMerge) -> None:
    mean = obs.intensities.clone()
    mean.prepare_for_merging(gemmi.DataType.Mean)
    mean.merge_in_place(gemmi.DataType.Mean)
    mtz = mean.prepare_merged_mtz(with_nobs=True)
    mtz.history = [
        f"mxflow: live merge of {len(live.used)} dataset(s) of {live.sample} (provisional)",
        "mxflow: per-dataset scale and B against the running merge; no rejection",
    ]
    add_free_flags(mtz)
    atomic_write_bytes(path, mtz.write_to_bytes())


def update_live_merge(
    out: Path,
    sample: str,
    members: Sequence[tuple[str, DatasetResult]],
    space_group: str | None = None,
    cc_half_target: float = 0.5,
) -> LiveMerge | None:
    """Add the datasets of ``members`` (catalog key, result) not yet in the sample's
    live merge, and rewrite its statistics and merged.mtz.

    ``space_group``: the sample's, when given (sheet or command line); else the
    first dataset's.  Returns the updated :class:`LiveMerge`, or None when
    nothing was new.  A dataset that cannot be used is kept as "left out" with
    the reason, and never tried again.
    """
    out = Path(out)
    folder = live_dir(out, sample)
    live = read_live(out, sample) or LiveMerge(sample, space_group=space_group or "")
    live.cc_half_target = cc_half_target
    known = {d.key for d in live.datasets}
    new = [(k, r) for k, r in members if k not in known]
    if not new:
        return None
    cache = _Cache(folder)
    reference = _merged(live, cache) if live.used else None
    for key, result in new:
        entry = _add_dataset(live, key, result, out, cache, reference)
        live.datasets.append(entry)
        if entry.status == "used":
            cells = [tuple(d.unit_cell) for d in live.used if d.unit_cell]
            live.unit_cell = [round(x, 4) for x in median_cell(cells)]
            reference = _merged(live, cache)
    _refine(live, cache)
    live.notes = []
    _write_outputs(live, folder, out, cache)
    live.updated = time.time()
    live.last_added = new[-1][0]
    write_json(folder / "live.json", to_dict(live))
    return live
