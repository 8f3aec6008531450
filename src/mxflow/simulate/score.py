"""Scoring merged intensities against the simulator's truth (``mxflow score``).

The merged reflections are mapped onto the truth's asymmetric unit after each
candidate re-indexing operator (the twin laws of the truth lattice from
gemmi.find_twin_laws, plus the 24 axis permutations with sign changes, which
cover a merged file written in another setting); the operator giving the best
CC is kept.  CC is Pearson's correlation of merged and true intensities,
overall and in resolution shells of equal reflection count.

When the truth has anomalous scatterers and the merged MTZ has I(+) and
I(−) columns, the score also gives CC(ΔI_merged, ΔI_true) after the same
operator: ΔI = I(+) − I(−) of acentric reflections with both mates merged,
the true ΔI taken with the sign of the Friedel mate the index maps onto.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import gemmi
import numpy as np

from mxflow.errors import BadInputError
from mxflow.simulate import crystal as xtal
from mxflow.simulate.truth import read_truth

INTENSITY_LABELS = ("IMEAN", "I", "IOBS", "I-obs", "I_mean")
AMPLITUDE_LABELS = ("F", "FP", "FOBS", "F-obs", "F_mean")


def read_mtz_intensities(path: str | Path) -> tuple[gemmi.Mtz, np.ndarray, np.ndarray, str]:
    """(mtz, hkl N×3, intensity N, label) from a merged or unmerged MTZ.

    Takes IMEAN / I / IOBS, else the first intensity (type J) column, else an
    amplitude column (F, FP, FOBS or the first type F) squared.  Rows with
    missing values are dropped.
    """
    path = Path(path)
    if not path.is_file():
        raise BadInputError(str(path), "merged MTZ file not found")
    try:
        mtz = gemmi.read_mtz_file(str(path))
    except (RuntimeError, ValueError) as exc:
        raise BadInputError(str(path), f"cannot read as MTZ ({exc})") from exc
    labels = [c.label for c in mtz.columns]
    types = {c.label: c.type for c in mtz.columns}
    label = next((x for x in INTENSITY_LABELS if x in labels and types[x] == "J"), None)
    label = label or next((x for x in labels if types[x] == "J"), None)
    squared = False
    if label is None:
        label = next((x for x in AMPLITUDE_LABELS if x in labels and types[x] == "F"), None)
        label = label or next((x for x in labels if types[x] == "F"), None)
        squared = True
    if label is None:
        raise BadInputError(str(path), f"no intensity or amplitude column (columns: {labels})")
    if "M/ISYM" in labels:
        mtz.switch_to_original_hkl()
    data = np.array(mtz, copy=False)
    hkl = data[:, :3].astype(np.int64)
    values = data[:, labels.index(label)].astype(np.float64)
    ok = np.isfinite(values)
    values = values**2 if squared else values
    return mtz, hkl[ok], values[ok], label + ("^2" if squared else "")


def candidate_operators(cell, space_group: str) -> list[str]:
    """hkl operators to try: the truth lattice's twin laws and all signed axis permutations."""
    ops = list(xtal.twin_operators(cell, space_group))
    letters = "hkl"
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1, -1), repeat=3):
            m = np.zeros((3, 3), int)
            for i, (p, sgn) in enumerate(zip(perm, signs, strict=True)):
                m[i, p] = sgn
            if round(np.linalg.det(m)) != 1:
                continue
            trip = ",".join(("-" if m[i, perm[i]] < 0 else "") + letters[perm[i]] for i in range(3))
            if trip not in ops:
                ops.append(trip)
    return ops


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    if len(x) < 3 or np.std(x) == 0 or np.std(y) == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


def _matched(truth: xtal.TrueIntensities, hkl: np.ndarray, obs: np.ndarray, op: str):
    """Mean observed intensity per truth ASU reflection after applying ``op``: (rows, obs, true)."""
    rows = truth.asu_index(xtal.apply_hkl_op(op, hkl))
    ok = rows >= 0
    rows, obs = rows[ok], obs[ok]
    if rows.size == 0:
        return rows, obs, obs
    uniq, inv = np.unique(rows, return_inverse=True)
    mean = np.bincount(inv, weights=obs) / np.bincount(inv)
    return uniq, mean, truth.mean_intensity[uniq]


def load_truth_population(truth_dir: Path, pop: dict) -> xtal.TrueIntensities:
    path = Path(truth_dir) / pop["mtz"]
    mtz = gemmi.read_mtz_file(str(path))
    data = np.array(mtz, copy=False)
    labels = mtz.column_labels()
    hkl = data[:, :3].astype(np.int64)
    i = data[:, labels.index("IMEAN")].astype(np.float64)
    minus = None
    if "I(+)" in labels and "I(-)" in labels:  # anomalous truth: I(+) and I(−) apart
        i = data[:, labels.index("I(+)")].astype(np.float64)
        minus = data[:, labels.index("I(-)")].astype(np.float64)
    return xtal.TrueIntensities(
        space_group=mtz.spacegroup.xhm(),
        cell=mtz.cell.parameters,
        hkl=hkl,
        intensity=i,
        d=np.array(mtz.cell.calculate_d_array(hkl)),
        intensity_minus=minus,
    )


def score_against(
    truth: xtal.TrueIntensities, hkl: np.ndarray, obs: np.ndarray, n_shells: int = 10
) -> dict:
    """Best re-indexing and CC (overall, per shell) of observations against one truth."""
    trials = []
    for op in candidate_operators(truth.cell, truth.space_group):
        rows, o, t = _matched(truth, hkl, obs, op)
        trials.append({"op": op, "cc": _pearson(o, t), "n": int(len(rows))})
    valid = [t for t in trials if np.isfinite(t["cc"])]
    if not valid:
        return {
            "cc_overall": float("nan"),
            "n_matched": 0,
            "op": None,
            "shells": [],
            "trials": trials,
        }
    best = max(valid, key=lambda t: t["cc"])
    rows, o, t = _matched(truth, hkl, obs, best["op"])
    d = truth.d[rows]
    s2 = 1.0 / d**2
    order = np.argsort(s2)
    shells = []
    for chunk in np.array_split(order, min(n_shells, max(1, len(order) // 20))):
        if len(chunk) == 0:
            continue
        shells.append(
            {
                "d_max": float(d[chunk].max()),
                "d_min": float(d[chunk].min()),
                "n": int(len(chunk)),
                "cc": _pearson(o[chunk], t[chunk]),
            }
        )
    return {
        "cc_overall": best["cc"],
        "n_matched": best["n"],
        "n_truth": int(len(truth.hkl)),
        "op": best["op"],
        "shells": shells,
        "trials": sorted(valid, key=lambda t: -t["cc"])[:5],
    }


def read_mtz_bijvoet(mtz: gemmi.Mtz) -> tuple[np.ndarray, np.ndarray] | None:
    """(hkl N×3, ΔI = I(+) − I(−) N) of a merged MTZ's reflections with both mates, or
    None when it has no I(+) / I(−) columns."""
    labels = mtz.column_labels()
    if "I(+)" not in labels or "I(-)" not in labels or "M/ISYM" in labels:
        return None
    data = np.array(mtz, copy=False)
    plus = data[:, labels.index("I(+)")].astype(np.float64)
    minus = data[:, labels.index("I(-)")].astype(np.float64)
    ok = np.isfinite(plus) & np.isfinite(minus)
    return data[ok, :3].astype(np.int64), (plus - minus)[ok]


def score_anomalous(
    truth: xtal.TrueIntensities, hkl: np.ndarray, delta: np.ndarray, op: str, n_shells: int = 10
) -> dict:
    """CC(ΔI_merged, ΔI_true) of merged Bijvoet differences after the hkl operator ``op``.

    Centric reflections (no true ΔI) are left out; shells of equal count, low
    to high resolution.
    """
    rows, sign = truth.asu_index_sign(xtal.apply_hkl_op(op, hkl))
    ops = gemmi.SpaceGroup(truth.space_group).operations()
    acentric = ~np.asarray(ops.centric_flag_array(truth.hkl.astype(np.int32)), dtype=bool)
    ok = rows >= 0
    ok[ok] &= acentric[rows[ok]]
    rows, obs = rows[ok], delta[ok]
    true = sign[ok] * truth.delta_i[rows]
    d = truth.d[rows]
    order = np.argsort(1.0 / d**2)
    shells = []
    for chunk in np.array_split(order, min(n_shells, max(1, len(order) // 50))):
        if len(chunk):
            shells.append(
                {
                    "d_max": float(d[chunk].max()),
                    "d_min": float(d[chunk].min()),
                    "n": int(len(chunk)),
                    "cc": _pearson(obs[chunk], true[chunk]),
                }
            )
    return {"cc_overall": _pearson(obs, true), "n_matched": int(len(rows)), "shells": shells}


def score(
    merged_mtz: str | Path, truth_dir: str | Path, population: str | None = None, n_shells: int = 10
) -> dict:
    """CC of a merged (or unmerged) MTZ to the simulator's true intensities.

    Tries every population unless ``population`` names one, and the candidate
    re-indexing operators of each; reports the best.  Returns a JSON-ready dict
    with cc_overall, op, population, shells (d_max, d_min, n, cc; low to high
    resolution) and per-population results.
    """
    doc = read_truth(truth_dir)
    pops = doc["populations"]
    if population is not None:
        pops = [p for p in pops if p["name"] == population]
        if not pops:
            names = [p["name"] for p in doc["populations"]]
            raise BadInputError(str(truth_dir), f"no population {population!r} (have {names})")
    mtz, hkl, obs, label = read_mtz_intensities(merged_mtz)
    bijvoet = read_mtz_bijvoet(mtz)
    results = {}
    for pop in pops:
        truth = load_truth_population(Path(truth_dir), pop)
        results[pop["name"]] = score_against(truth, hkl, obs, n_shells)
    best_name = max(results, key=lambda k: np.nan_to_num(results[k]["cc_overall"], nan=-2.0))
    best = results[best_name]
    anomalous = None
    truth_pop = next(p for p in pops if p["name"] == best_name)
    if "anomalous" in truth_pop and best["op"] is not None:
        if bijvoet is None:
            anomalous = {"cc_overall": float("nan"), "why": "no I(+) / I(-) columns"}
        else:
            truth = load_truth_population(Path(truth_dir), truth_pop)
            anomalous = score_anomalous(truth, *bijvoet, best["op"], n_shells)
    return {
        "merged_mtz": str(merged_mtz),
        "truth_dir": str(truth_dir),
        "column": label,
        "n_merged": int(len(hkl)),
        "population": best_name,
        "cc_overall": best["cc_overall"],
        "op": best["op"],
        "n_matched": best["n_matched"],
        "shells": best["shells"],
        "populations": {
            k: {"cc_overall": v["cc_overall"], "op": v["op"]} for k, v in results.items()
        },
        "anomalous": anomalous,
    }


def format_table(result: dict) -> str:
    """A plain-text table of a score result."""
    lines = [
        f"merged: {result['merged_mtz']}  column {result['column']}  ({result['n_merged']} reflections)",
        f"population {result['population']}  re-indexing {result['op']}  "
        f"matched {result['n_matched']}  CC overall {result['cc_overall']:.4f}",
        f"{'d_max':>8} {'d_min':>8} {'n':>7} {'CC':>8}",
    ]
    for s in result["shells"]:
        lines.append(f"{s['d_max']:8.2f} {s['d_min']:8.2f} {s['n']:7d} {s['cc']:8.4f}")
    ano = result.get("anomalous")
    if ano:
        if "why" in ano:
            lines.append(f"anomalous: not scored ({ano['why']})")
        else:
            lines.append(
                f"anomalous: CC(dI, dI_true) overall {ano['cc_overall']:.4f}"
                f"  ({ano['n_matched']} acentric pairs)"
            )
            lines.append(f"{'d_max':>8} {'d_min':>8} {'n':>7} {'CC(dI)':>8}")
            for s in ano["shells"]:
                lines.append(f"{s['d_max']:8.2f} {s['d_min']:8.2f} {s['n']:7d} {s['cc']:8.4f}")
    return "\n".join(lines)
