"""merge_sample: cell grouping → symmetry and indexing → clustering → run_01..03 → resolution.

Layout written under ``workdir``::

    merge_prep_<d>S_<sample>/        dials.cosym (symmetry + indexing), unscaled export
    merge_<method>_<d>S_<sample>/
        dendrogram_<method>.json, cc_table.json, cluster_summary.dat, merge_summary.json
        cluster_NNNN/run_01/ (all) [run_02/ (bad frames out)] [run_03/ (bad datasets out)]

A run exists only when the rejection step before it removed something; the
last one is the cluster's final run.  Every dataset left out is listed in
``rejected`` with its reason and stage; every dendrogram node not merged
says why.
"""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gemmi
import numpy as np

from mxflow.cluster import ambiguity, cells, intensity, select
from mxflow.engine.expt import read_experiments
from mxflow.engine.refl import read_reflections
from mxflow.errors import MxflowError
from mxflow.merge import analysis
from mxflow.merge.inputs import MergeInput, collect_inputs, wavelength_groups
from mxflow.merge.steps import (
    Observations,
    StepFailed,
    per_dataset_sets,
    read_observations,
    read_reference,
    run_step,
    scaling_intervals,
)
from mxflow.stats import absences
from mxflow.util.files import atomic_write_text, write_json
from mxflow.util.mtz import write_resolution_cut


@dataclass
class MergeOptions:
    """User choices for merging one sample (d in Å, thresholds in select.Thresholds)."""

    sample: str | None = None
    label: str = ""  # what tells this merge apart from others of the sample, e.g. "λ 0.9790 Å"
    anomalous: bool = False  # scale I+ and I- apart (dials.scale anomalous=True)
    space_group: str | None = None
    reference: str | None = None
    method: str = "cc"  # "cc" | "blend" | "both"
    d_min: float | None = None  # starting resolution; default: detector half-corner
    cc_half_target: float = 0.5  # 0.3 is the xia2 choice
    thresholds: select.Thresholds = field(default_factory=select.Thresholds)
    cell_rel_length: float = 0.10
    cell_angle: float = 5.0
    min_common: int = 3
    cc_d_min: float | None = None  # resolution limit for CC clustering (default: d start)
    reject_frames: bool = True
    reject_datasets: bool = True
    image_group: int = 10  # images per group for frame rejection
    min_delta_cc_half: float = 0.001  # ΔCC½ must also be below −this to reject (noise floor)
    fallback_largest: bool = True  # merge the largest cluster when none passes thresholds
    nproc: int = 1
    timeout: float | None = 3600.0


def _fmt_cell(c) -> str:
    return "(" + ", ".join(f"{x:.2f}" for x in c) + ")"


def _d_label(d: float | None) -> str:
    return "auto" if d is None else f"{d:.1f}"


# ----------------------------------------------------------------- cells
def choose_cell_group(
    items: list[MergeInput], opts: MergeOptions, reference_cell: tuple | None = None
) -> tuple[list[int], list[dict]]:
    """Indices of the cell group to merge and rejection rows for the others.

    The largest group of Niggli cells linked by KAMO's tolerances, or the
    group matching ``reference_cell`` when given.
    """
    reduced = [cells.niggli_cell(it.unit_cell, it.space_group.strip()[0]) for it in items]
    groups = cells.cell_groups(reduced, opts.cell_rel_length, opts.cell_angle)
    chosen = groups[0]
    if reference_cell is not None:
        ref = cells.niggli_cell(reference_cell)
        matching = [
            g
            for g in groups
            if cells.cells_similar(
                cells.median_cell([reduced[i] for i in g]),
                ref,
                opts.cell_rel_length,
                opts.cell_angle,
            )
        ]
        if matching:
            chosen = matching[0]
    med = cells.median_cell([reduced[i] for i in chosen])
    rejected = []
    for i in range(len(items)):
        if i not in chosen:
            rejected.append(
                {
                    "name": items[i].name,
                    "reason": (
                        f"reduced cell {_fmt_cell(reduced[i])} not within "
                        f"{100 * opts.cell_rel_length:g} % / {opts.cell_angle:g}° of the "
                        f"merged group's median {_fmt_cell(med)}"
                    ),
                    "stage": "cell",
                }
            )
    return chosen, rejected


# -------------------------------------------------------------- symmetry
def _exp_key(e) -> tuple:
    return (Path(e.template or "").name, e.image_range)


def run_symmetry(
    items: list[MergeInput], prep: Path, opts: MergeOptions
) -> tuple[Path, Path, list[int], str]:
    """dials.cosym (≥ 2 datasets) or dials.symmetry (one) on ``items``.

    Returns (expt, refl, index into ``items`` of each output experiment, space group).
    """
    args: list[str] = []
    for it in items:
        args += [it.expt, it.refl]
    if len(items) >= 2:
        if opts.space_group:
            args.append(f"space_group={opts.space_group}")
        run_step(
            "dials.cosym", [*args, f"nproc={opts.nproc}", "output.html=None"], prep, opts.timeout
        )
    elif opts.space_group:
        run_step(
            "dials.reindex",
            [
                *args,
                f"space_group={opts.space_group}",
                "output.experiments=symmetrized.expt",
                "output.reflections=symmetrized.refl",
            ],
            prep,
            opts.timeout,
        )
    else:
        run_step("dials.symmetry", [*args, "output.html=None"], prep, opts.timeout)
    expt, refl = prep / "symmetrized.expt", prep / "symmetrized.refl"
    out = read_experiments(expt)
    # which input each output experiment is: by image template and range
    keys_in: dict[tuple, list[int]] = {}
    for k, it in enumerate(items):
        for e in read_experiments(it.expt):
            keys_in.setdefault(_exp_key(e), []).append(k)
    if len(out) == len(items):
        order = list(range(len(items)))
    else:
        order = []
        for e in out:
            cand = keys_in.get(_exp_key(e), [])
            order.append(cand.pop(0) if cand else -1)
        if -1 in order:
            raise MxflowError("cannot match dials.cosym output experiments to its inputs")
    return expt, refl, order, out[0].space_group or "P 1"


def export_unmerged(expt: Path, refl: Path, cwd: Path, name: str, timeout=None) -> Path:
    """dials.export to an unmerged MTZ ``cwd/name``."""
    run_step("dials.export", [str(expt), str(refl), f"mtz.hklout={name}"], cwd, timeout)
    return cwd / name


# ------------------------------------------------------------ rejection
def frame_rejection(
    obs: Observations, group_size: int, floor: float = 0.001
) -> list[tuple[int, int, int, float, float]]:
    """Image groups to drop: ΔCC½ below the Tukey low fence and below −``floor``.

    The floor keeps excellent data intact: there the fences are so narrow
    that noise of 10⁻⁴ in ΔCC½ would otherwise count as an outlier.  Only
    datasets cut into two or more groups take part: a wedge no longer than
    ``group_size`` images is one group, and judging it whole is the job of
    :func:`dataset_rejection` (run_03), not of frame rejection.

    Returns (dataset index, first image, last image, ΔCC½, fence) per bad group.
    """
    base = np.zeros(obs.dataset.max() + 1, dtype=int)
    for k in np.unique(obs.dataset):
        base[k] = obs.image[obs.dataset == k].min()
    group = obs.dataset * 100000 + (obs.image - base[obs.dataset]) // group_size
    n_groups = np.zeros(obs.dataset.max() + 1, dtype=int)
    for g in np.unique(group):
        n_groups[g // 100000] += 1
    eligible = n_groups[obs.dataset] >= 2
    if len(np.unique(group[eligible])) < 4:
        return []
    dcc = analysis.delta_cc_half(obs.keys, obs.i, obs.s2, group)
    multi = {int(g) for g in np.unique(group[eligible])}
    ids = sorted(g for g in dcc if int(g) in multi)
    vals = np.array([dcc[g] for g in ids])
    lo, _ = analysis.tukey_fences(vals)
    bad = []
    for g, v in zip(ids, vals, strict=True):
        if v < lo and v < -floor:
            sel = group == g
            k = int(g // 100000)
            bad.append((k, int(obs.image[sel].min()), int(obs.image[sel].max()), float(v), lo))
    return bad


def dataset_rejection(
    obs: Observations, floor: float = 0.001, cc_floor: float = 0.05
) -> dict[int, str]:
    """Datasets to drop (index → reason): ΔCC½ or CC to the rest below the Tukey low fence.

    ΔCC½ must also be below −``floor`` (the data are better without the
    dataset) and removing the dataset must raise CC½ × N_unique (KAMO's rule
    for ΔCC½ rejection: a good but weak wedge that brings reflections no
    other wedge measured is kept).  The CC to the other datasets must also be
    more than ``cc_floor`` below the median dataset's (a fence of 0.986 among
    CCs of 0.99 is noise, not a bad crystal).  Needs ≥ 4 datasets.
    """
    ks = np.unique(obs.dataset)
    if len(ks) < 4:
        return {}
    cc_all, cc_without = analysis.cc_half_without_each(obs.keys, obs.i, obs.s2, obs.dataset)
    dcc = {k: cc_all - v for k, v in cc_without.items()}
    rest_cc = {}
    for k in ks:
        sel = obs.dataset == k
        a = intensity.merge_observations(
            "a", obs.hkl[sel], obs.i[sel], obs.sigma[sel], obs.space_group
        )
        b = intensity.merge_observations(
            "b", obs.hkl[~sel], obs.i[~sel], obs.sigma[~sel], obs.space_group
        )
        rest_cc[int(k)] = intensity.pair_cc(a, b)[0]
    out = {}
    dv = np.array([dcc[int(k)] for k in ks])
    cv = np.array([rest_cc[int(k)] for k in ks])
    lo_d, _ = analysis.tukey_fences(dv)
    lo_c, _ = analysis.tukey_fences(cv)
    med_c = float(np.nanmedian(cv)) if np.isfinite(cv).any() else math.nan
    for k, d, c in zip(ks, dv, cv, strict=True):
        why = []
        if d < lo_d and d < -floor:
            gain = analysis.information_gain_without(
                obs.keys, cc_all, cc_without[int(k)], obs.dataset == k
            )
            if gain > 0:
                why.append(
                    f"bad_cchalf: ΔCC½ {d:.4f} below Tukey fence {lo_d:.4f} "
                    f"(CC½ × N_unique {100 * gain:+.1f}% without it)"
                )
        if np.isfinite(c) and c < lo_c and c < med_c - cc_floor:
            why.append(
                f"bad_cc: CC to the other datasets {c:.3f} below Tukey fence {lo_c:.3f} "
                f"and {cc_floor:g} below the median {med_c:.3f}"
            )
        if why:
            out[int(k)] = "; ".join(why)
    if len(out) >= len(ks) - 1:
        return {}
    return out


# ------------------------------------------------------------- one run
def _table_ids(refl: Path, expt: Path) -> list[int]:
    """Reflection-table id of each experiment of ``expt`` (in file order)."""
    ident = {v: k for k, v in read_reflections(refl, columns=[]).identifiers.items()}
    exps = read_experiments(expt)
    if ident and all(e.identifier in ident for e in exps):
        return [ident[e.identifier] for e in exps]
    return list(range(len(exps)))


def wilson_b(merged_mtz: Path) -> float:
    """Approximate Wilson B (Å²): slope of ln⟨I⟩ against s²/2 over shells with d < 4.5 Å.

    No form-factor normalisation (⟨Σf²⟩ taken as constant), so it is an
    overall fall-off, comparable between runs of one sample.
    """
    mtz = gemmi.read_mtz_file(str(merged_mtz))
    if mtz.column_with_label("IMEAN") is None:
        return math.nan
    v = np.asarray(mtz.column_with_label("IMEAN"), dtype=float)
    d = np.asarray(mtz.make_d_array())
    ok = np.isfinite(v) & (d < 4.5)
    if ok.sum() < 50:
        return math.nan
    s2 = 1 / d[ok] ** 2
    edges = np.quantile(s2, np.linspace(0, 1, 11))
    xs, ys = [], []
    for a, b in zip(edges[:-1], edges[1:], strict=True):
        sel = (s2 >= a) & (s2 <= b)
        m = v[ok][sel].mean() if sel.any() else -1
        if m > 0:
            xs.append(s2[sel].mean())
            ys.append(math.log(m))
    if len(xs) < 3:
        return math.nan
    slope = np.polyfit(xs, ys, 1)[0]
    return float(-2 * slope)


def anisotropic_limits(obs: Observations, target: float) -> tuple[float, float]:
    """(best, worst) d (Å) where CC½ = target within 30° cones about a*, b*, c*."""
    frac = np.array(obs.cell.frac.mat.tolist())
    recip = obs.hkl @ frac  # rows: reciprocal-space Cartesian vectors (Å⁻¹)
    norm = np.linalg.norm(recip, axis=1)
    ds = []
    for axis in frac:  # a*, b*, c* directions are the rows of frac
        u = axis / np.linalg.norm(axis)
        cosang = np.abs(recip @ u) / np.maximum(norm, 1e-9)
        sel = cosang > math.cos(math.radians(30))
        if sel.sum() < 200:
            continue
        d, _ = analysis.estimate_d_min(obs.keys[sel], obs.i[sel], obs.s2[sel], target, 30)
        if d:
            ds.append(d)
    if not ds:
        return math.nan, math.nan
    return min(ds), max(ds)


def finish_run(run: Path, expt: Path, refl: Path, opts: MergeOptions, d_cut: float | None) -> dict:
    """Space group (dials.symmetry, absences only), merge (French–Wilson), export, statistics."""
    from mxflow.stats.merging import format_table, stats_from_mtz, stats_to_json

    try:
        run_step(
            "dials.symmetry",
            [
                str(expt),
                str(refl),
                "laue_group=None",
                "output.experiments=symmetrized.expt",
                "output.reflections=symmetrized.refl",
                "output.html=None",
            ],
            run,
            opts.timeout,
        )
        expt, refl = run / "symmetrized.expt", run / "symmetrized.refl"
    except StepFailed as exc:  # keep the cosym space group
        (run / "symmetry_note.txt").write_text(f"absence check failed, kept point group: {exc}\n")
    dmin_arg = [f"d_min={d_cut:.3f}"] if d_cut else []
    run_step(
        "dials.merge", [str(expt), str(refl), "output.mtz=merged.mtz", *dmin_arg], run, opts.timeout
    )
    export_unmerged(expt, refl, run, "unmerged.mtz", opts.timeout)
    if d_cut:
        shutil.copy(run / "unmerged.mtz", run / "unmerged_fullres.mtz")
        write_resolution_cut(run / "unmerged_fullres.mtz", run / "unmerged.mtz", d_cut)
    stats = stats_from_mtz(run / "unmerged.mtz")
    atomic_write_text(run / "merging_stats.txt", format_table(stats) + "\n")
    write_json(run / "merging_stats.json", stats_to_json(stats))
    return {"stats": stats, "expt": expt, "refl": refl}


def scale_run(
    run: Path, expt: Path, refl: Path, extra: list[str], wedge: float, d_min: float | None, opts
) -> Observations:
    """dials.scale into ``run`` (physical model, intervals from the wedge width)."""
    si, di = scaling_intervals(wedge)
    args = [
        str(expt),
        str(refl),
        *extra,
        f"physical.scale_interval={si}",
        f"physical.decay_interval={di}",
        "output.html=None",
        "output.unmerged_mtz=scaled_unmerged.mtz",
        f"nproc={opts.nproc}",
    ]
    if d_min:
        args.append(f"d_min={d_min:.3f}")
    if opts.anomalous:
        args.append("anomalous=True")
    run_step("dials.scale", args, run, opts.timeout)
    return read_observations(run / "scaled_unmerged.mtz", run / "scaled.expt")


def merge_cluster(
    cdir: Path,
    member_idx: list[int],
    sym_expt: Path,
    sym_refl: Path,
    names_by_sym: list[str],
    wedge: float,
    d_start: float | None,
    opts: MergeOptions,
) -> dict[str, Any]:
    """Scale and merge one cluster: run_01 → run_02 → run_03, then the resolution cut."""
    removed: list[dict] = []
    ids_all = _table_ids(sym_refl, sym_expt)
    use = ",".join(str(ids_all[i]) for i in member_idx)
    extra = [f"dataset_selection.use_datasets={use}"] if len(member_idx) < len(ids_all) else []
    run = cdir / "run_01"
    obs = scale_run(run, sym_expt, sym_refl, extra, wedge, d_start, opts)
    members = [names_by_sym[i] for i in member_idx]
    runs = [{"run": "run_01", "datasets": list(members), "removed": []}]

    def rescale(name: str, prev: Path, extra: list[str], dropped: set[int], current: list[str]):
        """Scale ``prev``'s output again into ``cdir/name`` with ``extra``; record the run."""
        new = cdir / name
        new_obs = scale_run(
            new, prev / "scaled.expt", prev / "scaled.refl", extra, wedge, d_start, opts
        )
        kept = [m for k, m in enumerate(current) if k not in dropped]
        runs.append(
            {"run": name, "datasets": kept, "removed": [r for r in removed if r["stage"] == name]}
        )
        return new, new_obs, kept

    members_now = list(members)
    if opts.reject_frames:
        bad = frame_rejection(obs, opts.image_group, opts.min_delta_cc_half)
        if bad:
            tids = _table_ids(run / "scaled.refl", run / "scaled.expt")
            per_ds: dict[int, list] = {}
            for k, a, b, v, lo in bad:
                per_ds.setdefault(k, []).append((a, b, v, lo))
            excl, drop = [], []
            for k, groups in per_ds.items():
                n_img = len(np.unique(obs.image[obs.dataset == k]))
                n_bad = sum(
                    len(
                        np.unique(
                            obs.image[(obs.dataset == k) & (obs.image >= a) & (obs.image <= b)]
                        )
                    )
                    for a, b, _, _ in groups
                )
                if n_bad >= n_img:
                    drop.append(k)
                    removed.append(
                        {
                            "name": members_now[k],
                            "reason": "allbadframe: every image group rejected",
                            "stage": "run_02",
                        }
                    )
                    continue
                for a, b, v, lo in groups:
                    excl.append(f"{tids[k]}:{a}:{b}")
                    removed.append(
                        {
                            "name": members_now[k],
                            "reason": f"bad_frames: images {a}-{b} ΔCC½ {v:.4f} below Tukey fence {lo:.4f}",
                            "stage": "run_02",
                        }
                    )
            extra2 = []
            if excl:
                extra2.append("exclude_images=" + " ".join(excl))
            if drop:
                extra2.append(
                    "dataset_selection.exclude_datasets=" + ",".join(str(tids[k]) for k in drop)
                )
            run, obs, members_now = rescale("run_02", run, extra2, set(drop), members_now)
    if opts.reject_datasets:
        bad_ds = dataset_rejection(obs, opts.min_delta_cc_half)
        if bad_ds:
            tids = _table_ids(run / "scaled.refl", run / "scaled.expt")
            for k, why in bad_ds.items():
                removed.append({"name": members_now[k], "reason": why, "stage": "run_03"})
            extra3 = [
                "dataset_selection.exclude_datasets="
                + ",".join(str(tids[k]) for k in sorted(bad_ds))
            ]
            run, obs, members_now = rescale("run_03", run, extra3, set(bad_ds), members_now)
    # resolution from the final run's scaled data
    d_est, info = analysis.estimate_d_min(obs.keys, obs.i, obs.s2, opts.cc_half_target)
    data_limit = info.get("data_limit")
    d_cut = d_est if (d_est and data_limit and d_est > data_limit + 0.005) else None
    for r in runs[:-1]:
        finish_run(
            cdir / r["run"],
            cdir / r["run"] / "scaled.expt",
            cdir / r["run"] / "scaled.refl",
            opts,
            None,
        )
    fin = finish_run(run, run / "scaled.expt", run / "scaled.refl", opts, d_cut)
    aniso = anisotropic_limits(obs, 0.5)
    write_json(
        run / "resolution.json",
        {**info, "target": opts.cc_half_target, "d_min": d_est, "cut_at": d_cut},
    )
    return {
        "runs": runs,
        "final_run": run.name,
        "final_dir": run,
        "members": members_now,
        "removed": removed,
        "stats": fin["stats"],
        "d_min_estimate": d_est,
        "d_cut": d_cut,
        "resolution": info,
        "aniso": aniso,
        "wilson_b": wilson_b(run / "merged.mtz"),
        "space_group": read_experiments(fin["expt"])[0].space_group,
        "unit_cell": read_experiments(fin["expt"])[0].unit_cell,
        **absences.axial_summary(run / "merged.mtz"),
    }


# ---------------------------------------------------------- the sample
def _summary_row_dat(node: dict, res: dict) -> str:
    st = res["stats"]
    o, ou, inn = st.overall, st.outer, st.inner

    def f(v, spec):
        return format(v, spec) if v is not None and math.isfinite(v) else "nan"

    cols = [
        f"{node['id']:04d}",
        f(node["height"], ".3f"),
        f(node["stats"]["LCV"], ".2f"),
        f(node["stats"]["aLCV"], ".2f"),
        res["final_run"],
        str(len(node["members"])),
        str(len(res["members"])),
    ]
    for s in (o, ou):
        cols += [
            f(100 * s.completeness, ".1f"),
            f(s.multiplicity, ".1f"),
            f(s.i_over_sigma, ".2f"),
            f(100 * s.r_meas, ".1f"),
            f(s.cc_half, ".3f"),
        ]
    cols += [
        f(100 * inn.completeness, ".1f"),
        f(inn.multiplicity, ".1f"),
        f(inn.i_over_sigma, ".2f"),
        f(100 * inn.r_meas, ".1f"),
        f(inn.cc_half, ".3f"),
        f(inn.sig_ano, ".2f"),
        f(inn.cc_ano, ".3f"),
        f(res["wilson_b"], ".1f"),
        f(res["aniso"][0], ".2f"),
        f(res["aniso"][1], ".2f"),
        f(res["d_min_estimate"] or math.nan, ".2f"),
    ]
    return " ".join(cols)


DAT_HEADER = (
    "cluster ClH LCV aLCV run ds.all ds.used Cmpl Redun I/sigI Rmeas CC1/2 "
    "Cmpl.ou Red.ou I/sig.ou Rmeas.ou CC1/2.ou Cmpl.in Red.in I/sig.in Rmeas.in CC1/2.in "
    "SigAno.in CCano.in WilsonB Aniso.bst Aniso.wst dmin.est"
)


def merge_sample(
    inputs: list[str | Path], workdir: str | Path, options: MergeOptions | None = None
) -> dict:
    """Cluster and merge the datasets of one sample; returns the merge_summary dict.

    Never raises for bad data: datasets that cannot be used are listed in
    ``rejected`` and clusters that fail carry an ``error``.  Raises
    BadInputError only for inputs that are not data at all.
    """
    opts = options or MergeOptions()
    wd = Path(workdir).resolve()  # DIALS programs run in sub-directories
    wd.mkdir(parents=True, exist_ok=True)
    items, rejected = collect_inputs(list(inputs), opts.sample)
    sample = opts.sample or next((it.sample for it in items if it.sample), "") or "sample"
    methods = ["blend", "cc"] if opts.method == "both" else [opts.method]
    summary: dict[str, Any] = {
        "sample": sample,
        "label": opts.label,
        "method": opts.method,
        "clusters": [],
        "rejected": rejected,
        "not_merged": [],
        "notes": [],
    }
    lam = [it.wavelength for it in items]
    if any(math.isfinite(x) for x in lam):
        summary["wavelength_range"] = [float(np.nanmin(lam)), float(np.nanmax(lam))]
    n_wavelengths = len(wavelength_groups(lam))
    if n_wavelengths > 1:
        summary["notes"].append(
            f"the inputs span {n_wavelengths} wavelengths "
            f"({np.nanmin(lam):.4f}–{np.nanmax(lam):.4f} Å) and are merged together; "
            "mxflow run merges each wavelength of a sample separately"
        )
    if not items:
        summary["notes"].append("no usable datasets")
        write_json(wd / f"merge_summary_{sample}.json", summary)
        return summary
    ref_set = ref_cell = None
    if opts.reference:
        ref_set, rc, _ = read_reference(opts.reference)
        ref_cell = rc.parameters
    idx, rej = choose_cell_group(items, opts, ref_cell)
    rejected += rej
    group = [items[i] for i in idx]
    hc = [it.half_corner_d for it in group if it.half_corner_d]
    d_start = opts.d_min or (float(np.median(hc)) if hc else None)
    summary["d_start"] = d_start
    prep = wd / f"merge_prep_{_d_label(d_start)}S_{sample}"
    try:
        sym_expt, sym_refl, order, sg = run_symmetry(group, prep, opts)
    except (StepFailed, MxflowError) as exc:
        for it in group:
            rejected.append(
                {"name": it.name, "reason": f"symmetry step failed: {exc}", "stage": "symmetry"}
            )
        write_json(wd / f"merge_summary_{sample}.json", summary)
        return summary
    in_sym = set(order)
    for k, it in enumerate(group):
        if k not in in_sym:
            rejected.append(
                {
                    "name": it.name,
                    "reason": "dropped by dials.cosym (inconsistent cell or too few reflections)",
                    "stage": "symmetry",
                }
            )
    sym_items = [group[k] for k in order]
    names = [it.name for it in sym_items]
    sym_exps = read_experiments(sym_expt)
    sym_cells = [tuple(e.unit_cell) for e in sym_exps]
    med = cells.median_cell(sym_cells)
    summary["space_group_cosym"] = sg
    # reference: one operator for the whole (consistently indexed) set
    unscaled = export_unmerged(sym_expt, sym_refl, prep, "unscaled.mtz", opts.timeout)
    obs = read_observations(unscaled, sym_expt)
    ops = ambiguity.ambiguity_operators(med, sg)
    summary["ambiguity"] = {"operators": [o.triplet() for o in ops], "resolved_by": "dials.cosym"}
    if ref_set is not None and len(ops) > 1:
        whole = intensity.merge_observations("all", obs.hkl, obs.i, obs.sigma, obs.space_group)
        ((best, cc_ref),) = ambiguity.assign_by_reference([whole], ref_set, ops, sg)
        summary["ambiguity"].update(
            {
                "reference": str(opts.reference),
                "reference_op": ops[best].triplet(),
                "reference_cc": cc_ref,
            }
        )
        if best != 0:
            run_step(
                "dials.reindex",
                [
                    str(sym_expt),
                    str(sym_refl),
                    f"change_of_basis_op={ops[best].as_hkl().triplet()}",
                ],
                prep,
                opts.timeout,
            )
            sym_expt, sym_refl = prep / "reindexed.expt", prep / "reindexed.refl"
            unscaled = export_unmerged(
                sym_expt, sym_refl, prep, "unscaled_reindexed.mtz", opts.timeout
            )
            obs = read_observations(unscaled, sym_expt)
    sets = per_dataset_sets(obs, names, d_min=opts.cc_d_min or d_start)
    if len(ops) > 1 and len(sets) >= 2:
        sb = ambiguity.selective_breeding(sets, ops, sg)
        summary["ambiguity"]["selective_breeding_agrees"] = all(a == 0 for a in sb)
        summary["ambiguity"]["selective_breeding"] = {
            n: ops[a].triplet() for n, a in zip(names, sb, strict=True) if a
        }
    cc, nc = intensity.cc_matrix(sets)
    bad = intensity.remove_bad_pairs(cc, nc, opts.min_common)
    for b in bad:
        rejected.append(
            {
                "name": names[b],
                "reason": f"no_common_refls: CC undefined or fewer than {opts.min_common} common reflections with some datasets",
                "stage": "cc",
            }
        )
    keep = [i for i in range(len(names)) if i not in bad]
    cc_rows = [
        {
            "i": i,
            "j": j,
            "name_i": names[i],
            "name_j": names[j],
            "cc": cc[i, j],
            "n_common": int(nc[i, j]),
        }
        for i in range(len(names))
        for j in range(i + 1, len(names))
    ]
    n_possible = select.possible_reflections(med, sg, d_start or 2.0)
    wedge = float(
        np.median(
            [it.total_rotation for it in sym_items if math.isfinite(it.total_rotation)] or [10.0]
        )
    )
    for method in methods:
        mdir = wd / f"merge_{method}_{_d_label(d_start)}S_{sample}"
        mdir.mkdir(parents=True, exist_ok=True)
        write_json(mdir / "cc_table.json", cc_rows)
        kn = [names[i] for i in keep]
        ksets = [sets[i] for i in keep]
        kcells = [sym_cells[i] for i in keep]
        kcc = cc[np.ix_(keep, keep)]
        if len(keep) >= 2:
            z = (
                cells.blend_linkage(kcells)
                if method == "blend"
                else intensity.ward_from_distance(intensity.cc_distance(kcc))
            )
            nodes = select.dendrogram_nodes(z, kn, ksets, kcells, n_possible, kcc)
        elif len(keep) == 1:
            nodes = [
                {
                    "id": 0,
                    "children": [],
                    "height": 0.0,
                    "members": kn,
                    "member_index": [0],
                    "stats": select.group_stats([0], ksets, kcells, n_possible, kcc),
                    "merged": False,
                }
            ]
        else:
            nodes = []
        chosen, rest = select.pick_clusters(nodes, opts.thresholds)
        if not chosen and nodes and opts.fallback_largest:
            big = max(nodes, key=lambda nd: len(nd["members"]))
            chosen = [big]
            rest = [r for r in rest if r["id"] != big["id"]]
            summary["notes"].append(
                f"{method}: no cluster passed the thresholds; merged the largest (node {big['id']}) anyway"
            )
        for r in rest:
            summary["not_merged"].append(
                {"method": method, "id": r["id"], "members": len(r["members"]), "why": r["why_not"]}
            )
        dat = [DAT_HEADER]
        for node in chosen:
            cdir = mdir / f"cluster_{node['id']:04d}"
            sym_idx = [keep[i] for i in node["member_index"]]
            entry: dict[str, Any] = {"id": node["id"], "method": method, "members": node["members"]}
            try:
                res = merge_cluster(cdir, sym_idx, sym_expt, sym_refl, names, wedge, d_start, opts)
            except (StepFailed, MxflowError, ValueError) as exc:
                entry["error"] = str(exc)
                summary["clusters"].append(entry)
                continue
            node["merged"] = True
            for r in res["removed"]:
                rejected.append({**r, "stage": f"{method}/cluster_{node['id']:04d}/{r['stage']}"})
            st = res["stats"]
            fd = res["final_dir"]
            entry.update(
                {
                    "members": res["members"],
                    "final_run": res["final_run"],
                    "space_group": res["space_group"],
                    "space_group_note": res["space_group_note"],
                    "axial": res["axial"],
                    "unit_cell": res["unit_cell"],
                    "d_min": st.overall.d_min,
                    "d_min_estimate": res["d_min_estimate"],
                    "cc_half": st.overall.cc_half,
                    "cc_half_outer": st.outer.cc_half,
                    "completeness": st.overall.completeness,
                    "multiplicity": st.overall.multiplicity,
                    "i_over_sigma": st.overall.i_over_sigma,
                    "merged_mtz": str((fd / "merged.mtz").relative_to(wd)),
                    "unmerged_mtz": str((fd / "unmerged.mtz").relative_to(wd)),
                    "runs": res["runs"],
                    "height": node["height"],
                    "LCV": node["stats"]["LCV"],
                    "aLCV": node["stats"]["aLCV"],
                }
            )
            summary["clusters"].append(entry)
            dat.append(_summary_row_dat(node, res))
        leaves = [{"id": i, "name": n} for i, n in enumerate(kn)]
        write_json(
            mdir / f"dendrogram_{method}.json",
            {
                "method": method,
                "leaves": leaves,
                "nodes": [{k: v for k, v in nd.items() if k != "member_index"} for nd in nodes],
            },
        )
        atomic_write_text(mdir / "cluster_summary.dat", "\n".join(dat) + "\n")
        msum = {
            **summary,
            "method": method,
            "clusters": [c for c in summary["clusters"] if c.get("method") == method],
        }
        write_json(mdir / "merge_summary.json", msum)
    write_json(wd / f"merge_summary_{sample}.json", summary)
    return summary
