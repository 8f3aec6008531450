"""Screw axes: what the axial reflections of merged data say, and what they cannot say.

From a few 10° wedges, or one short sweep, the reflections along an axis
(h00, 0k0, 00l) are often not measured at all.  Then no program can tell a
2₁ from a 2 along that axis, and the space group it reports (``P 2 21 2``
for a P2₁2₁2₁ crystal, say) is one guess among equals.  These functions
look at the axial reflections of a merged MTZ and say, for every rotation
axis of the point group along a, b or c, whether a screw is seen, ruled out,
or cannot be decided — so a report can say so instead of presenting a guess
as a result.

Conventions: Miller indices of the merged file's setting; axis j ∈ {a, b, c}
is the direct-lattice axis, whose axial reflections are those with the two
other indices zero (a* ∥ a for the axes that carry symmetry in every
conventional setting: monoclinic b, orthorhombic a, b, c, tetragonal and
hexagonal c, cubic a, b, c).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import gemmi
import numpy as np

from mxflow.model import AxisEvidence

AXES = "abc"
#: the axial reflections of each axis, as a report names them
AXIAL_NAMES = {"a": "h00", "b": "0k0", "c": "00l"}
#: mean I/σ below which the axial reflections that a screw would extinguish count as absent
ABSENT_I_OVER_SIGMA = 3.0


def _rotation_order(rot: np.ndarray) -> int:
    """Order n of a proper rotation matrix (R^n = I), 1 … 6."""
    m = np.eye(3, dtype=int)
    for n in range(1, 7):
        m = m @ rot
        if np.array_equal(m, np.eye(3, dtype=int)):
            return n
    return 1


def axis_folds(space_group: gemmi.SpaceGroup) -> dict[int, int]:
    """{axis index j: order of the highest rotation along lattice axis j} for axes with one."""
    folds: dict[int, int] = {}
    for op in space_group.operations().sym_ops:
        rot = np.array(op.rot, dtype=int) // gemmi.Op.DEN
        if round(np.linalg.det(rot)) < 0:
            rot = -rot  # the proper part of an improper operation
        for j in range(3):
            e = np.zeros(3, dtype=int)
            e[j] = 1
            if np.array_equal(rot @ e, e):
                n = _rotation_order(rot)
                if n > 1:
                    folds[j] = max(folds.get(j, 1), n)
    return folds


def assigned_condition(space_group: gemmi.SpaceGroup, axis: int, fold: int) -> int:
    """Largest m | fold such that the space group extinguishes axial reflections with index ≠ m·n."""
    ops = space_group.operations()
    best = 1
    for m in (d for d in range(2, fold + 1) if fold % d == 0):
        absent = True
        for idx in range(1, 2 * fold + 1):
            if idx % m == 0:
                continue
            hkl = [0, 0, 0]
            hkl[axis] = idx
            if not ops.is_systematically_absent(hkl):
                absent = False
                break
        if absent:
            best = max(best, m)
    return best


def _test_sets(fold: int) -> list[int]:
    """Extinction tests along an n-fold axis: the prime-power divisors m of ``fold``.

    Test m looks at the axial reflections whose index is not a multiple of m
    but is one of every smaller such divisor of m (4: l ≡ 2 mod 4; 2: odd l),
    so each test sees reflections no other test sees: 2 → 2₁; 3 → 3₁/3₂;
    4 → tests 2 (odd l) and 4 (l ≡ 2 mod 4); 6 → tests 2 (6₃) and 3 (6₂/6₄).
    """
    return [m for m in (2, 3, 4) if fold % m == 0]


def _in_test(idx: np.ndarray, m: int) -> np.ndarray:
    """Axial indices that test m looks at (see :func:`_test_sets`)."""
    off = idx % m != 0
    if m == 4:
        off &= idx % 2 == 0
    return off


def axial_evidence(
    hkl: np.ndarray, i_over_sigma: np.ndarray, space_group: gemmi.SpaceGroup
) -> list[AxisEvidence]:
    """Evidence for screw axes from merged reflections (``hkl`` (n, 3) ints, I/σ per reflection).

    One entry per lattice axis that carries a rotation of the point group
    (trigonal and hexagonal groups: c only — their 2-folds along a, b are
    never screws with axial extinctions).  A test's reflections count as
    absent when their mean I/σ is below ABSENT_I_OVER_SIGMA.
    """
    hkl = np.asarray(hkl, dtype=int)
    ios = np.asarray(i_over_sigma, dtype=float)
    hexagonal = space_group.crystal_system_str() in ("trigonal", "hexagonal")
    out = []
    for j, fold in sorted(axis_folds(space_group).items()):
        if hexagonal and j != 2:
            continue
        others = [k for k in range(3) if k != j]
        sel = (hkl[:, others[0]] == 0) & (hkl[:, others[1]] == 0) & (hkl[:, j] != 0)
        sel &= np.isfinite(ios)
        idx, val = np.abs(hkl[sel, j]), ios[sel]
        tests = []
        for m in _test_sets(fold):
            off = _in_test(idx, m)
            n_off = int(off.sum())
            mean_off = float(val[off].mean()) if n_off else None
            if mean_off is None:
                status = "unknown"
            else:
                status = "absent" if mean_off < ABSENT_I_OVER_SIGMA else "present"
            tests.append({"m": m, "n": n_off, "mean_i_over_sigma": mean_off, "status": status})
        status = {t["m"]: t["status"] for t in tests}
        if fold == 4 and status.get(2) == "present":
            status.pop(4)  # odd l present: no 4-fold screw, whatever l = 4n + 2 shows
        if "unknown" in status.values():
            verdict = "undetermined"
        elif "absent" in status.values():
            verdict = "screw"
        else:
            verdict = "no screw"
        out.append(
            AxisEvidence(
                AXES[j],
                fold,
                int(sel.sum()),
                tests,
                verdict,
                assigned_condition(space_group, j, fold),
            )  # fmt: skip
        )
    return out


def axial_evidence_from_mtz(path) -> tuple[str, list[AxisEvidence]]:
    """(space group of the file, :func:`axial_evidence`) for a merged MTZ with IMEAN/SIGIMEAN."""
    mtz = gemmi.read_mtz_file(str(path))
    i = mtz.column_with_label("IMEAN")
    s = mtz.column_with_label("SIGIMEAN")
    if i is None or s is None:
        raise ValueError(f"{path}: no IMEAN/SIGIMEAN columns (not a merged MTZ)")
    data = np.asarray(mtz)
    hkl = data[:, :3].astype(int)
    sig = np.asarray(s, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        ios = np.where(sig > 0, np.asarray(i, dtype=float) / sig, np.nan)
    return mtz.spacegroup.hm, axial_evidence(hkl, ios, mtz.spacegroup)


def space_group_note(space_group: str, evidence: list[AxisEvidence]) -> str | None:
    """A sentence for a report when the axial reflections cannot decide the screw
    axes, or disagree with the assigned space group; None when they support it.

    E.g. "screw axes along a, c cannot be decided (no h00 / 00l reflections that
    a screw would extinguish were measured): P 2 21 2 is one of the space
    groups these data allow".
    """
    names = AXIAL_NAMES
    parts = []
    unknown = [e for e in evidence if e.verdict == "undetermined"]
    if unknown:
        axes = ", ".join(e.axis for e in unknown)
        refl = " / ".join(names[e.axis] for e in unknown)
        plural = "axes" if len(unknown) > 1 else "axis"
        parts.append(
            f"screw {plural} along {axes} cannot be decided (no {refl} reflections that a "
            f"screw would extinguish were measured): {space_group} is one of the space groups "
            "these data allow"
        )
    for e in evidence:
        if e.verdict == "screw" and e.assigned == 1:
            parts.append(f"{names[e.axis]} shows extinctions that {space_group} does not have")
        elif e.verdict == "no screw" and e.assigned > 1:
            parts.append(
                f"{names[e.axis]} reflections that {space_group} extinguishes are observed"
            )
    return "; ".join(parts) or None


def axial_summary(merged_mtz: str | Path) -> dict:
    """{"space_group_note": caveat or None, "axial": per-axis evidence as dicts} of a
    merged MTZ; an unreadable file gives no note, no evidence and an "axial_error"."""
    try:
        sg, evidence = axial_evidence_from_mtz(merged_mtz)
    except (OSError, RuntimeError, ValueError) as exc:
        return {"space_group_note": None, "axial": [], "axial_error": str(exc)}
    return {
        "space_group_note": space_group_note(sg, evidence),
        "axial": [asdict(e) for e in evidence],
    }


# ------------------------------------------------------- space-group choice
#: fraction of "the other kind" mixed into each reflection's likelihood, so one
#: ice-ring or overlap outlier cannot decide a screw axis on its own
OUTLIER_FRACTION = 0.05
#: basis changes tried to bring a space group to its reference (standard) setting
_AXIS_PERMUTATIONS = ("x,y,z", "y,z,x", "z,x,y", "y,x,-z", "x,z,-y", "z,y,-x")


def merged_axial(
    hkl: np.ndarray, intensity: np.ndarray, sigma: np.ndarray, space_group: gemmi.SpaceGroup
) -> tuple[np.ndarray, np.ndarray]:
    """Axial reflections of unmerged observations, merged: (hkl (n, 3), I/σ (n,)).

    Observations of one symmetry-unique reflection (Friedel mates together)
    are averaged; σ of the mean is √(Σσ²)/n.  Only reflections with two
    indices zero are returned (any setting: equivalents of an axial
    reflection stay on the axis for the axes that carry symmetry).
    """
    from mxflow.cluster.intensity import canonical_keys

    hkl = np.asarray(hkl, dtype=np.int64)
    axial = (np.count_nonzero(hkl, axis=1) == 1) & np.isfinite(intensity) & (sigma > 0)
    if not axial.any():
        return np.zeros((0, 3), dtype=int), np.zeros(0)
    h, i, s = hkl[axial], np.asarray(intensity)[axial], np.asarray(sigma)[axial]
    keys = canonical_keys(h, space_group)
    uk, first, inv, n = np.unique(keys, return_index=True, return_inverse=True, return_counts=True)
    mean = np.bincount(inv, weights=i) / n
    sig = np.sqrt(np.bincount(inv, weights=s * s)) / n
    return np.abs(h[first]), mean / sig


def _signature(space_group: gemmi.SpaceGroup, max_index: int = 12) -> tuple:
    """Which axial reflections (index 1 … max_index along a, b, c) the group extinguishes."""
    ops = space_group.operations()
    sig = []
    for j in range(3):
        for n in range(1, max_index + 1):
            hkl = [0, 0, 0]
            hkl[j] = n
            sig.append(ops.is_systematically_absent(hkl))
    return tuple(sig)


def candidate_space_groups(point_group: gemmi.SpaceGroup) -> list[list[gemmi.SpaceGroup]]:
    """The Sohncke space groups of ``point_group``'s lattice and rotations, in its setting.

    Groups that axial extinctions cannot tell apart (enantiomorphs such as
    P 41 / P 43, C 1 2 1 / C 1 21 1, origin-shifted settings) are returned
    together, the reference-setting, lowest-numbered first (other settings
    of the same extinctions are left out).  The list starts
    with the symmorphic group (no screws).
    """
    ops = point_group.operations().derive_symmorphic()
    groups: dict[tuple, list[gemmi.SpaceGroup]] = {}
    for sg in gemmi.spacegroup_table():
        other = sg.operations()
        if sg.is_sohncke() and other.has_same_rotations(ops) and other.has_same_centring(ops):
            groups.setdefault(_signature(sg), []).append(sg)
    out = []
    for g in groups.values():
        g = sorted(g, key=lambda s: (not s.is_reference_setting(), s.number))
        out.append([g[0], *(s for s in g[1:] if s.is_reference_setting())])
    return sorted(out, key=lambda g: (sum(_signature(g[0])), g[0].number))


def screw_axes(space_group: gemmi.SpaceGroup) -> str:
    """The axes (of the group's own setting) along which it extinguishes axial reflections."""
    sig = _signature(space_group)
    return " ".join(AXES[j] for j in range(3) if any(sig[12 * j : 12 * (j + 1)]))


def axial_log_likelihood(
    hkl: np.ndarray, i_over_sigma: np.ndarray, space_group: gemmi.SpaceGroup, mean_present: float
) -> float:
    """log L of merged axial reflections under ``space_group``'s extinctions.

    An extinguished reflection's I/σ is N(0, 1); a present one's is an
    acentric Wilson intensity of mean ``mean_present`` (in σ units) plus
    N(0, 1) noise (an exponentially modified Gaussian).  Each is mixed with
    OUTLIER_FRACTION of the other, so no single reflection decides.
    """
    from scipy import stats

    z = np.asarray(i_over_sigma, dtype=float)
    if len(z) == 0:
        return 0.0
    ops = space_group.operations()
    absent = np.array([ops.is_systematically_absent(list(map(int, h))) for h in hkl], dtype=bool)
    p_abs = stats.norm.pdf(z)
    p_pres = stats.exponnorm.pdf(z, K=max(mean_present, 1.0))
    eps = OUTLIER_FRACTION
    p = np.where(absent, (1 - eps) * p_abs + eps * p_pres, (1 - eps) * p_pres + eps * p_abs)
    return float(np.sum(np.log(np.maximum(p, 1e-300))))


def score_candidates(
    hkl: np.ndarray, i_over_sigma: np.ndarray, point_group: gemmi.SpaceGroup
) -> list[tuple[list[gemmi.SpaceGroup], float]]:
    """Every candidate of :func:`candidate_space_groups` with its probability (0–1).

    Uniform prior over the candidates; probabilities from
    :func:`axial_log_likelihood`.  The mean I/σ of a present reflection is
    taken from the axial reflections no candidate extinguishes (their index
    a multiple of 12), else from all axial reflections.  Sorted by
    probability; among equals (an axis whose axial reflections were not
    measured leaves the screw open), first the groups whose standard setting
    keeps the data's axes, then the one with more screws: unmeasured axes
    are taken as screws, by far the commoner case in protein crystals
    (P 2₁2₁2₁, P 2₁ against P 2 2 2, P 2), which removes nothing from the
    data either way since nothing on that axis was measured.
    """
    cands = candidate_space_groups(point_group)
    hkl = np.asarray(hkl, dtype=int).reshape(-1, 3)
    z = np.asarray(i_over_sigma, dtype=float)
    never = np.abs(hkl).sum(axis=1) % 12 == 0
    pool = z[never] if never.sum() >= 3 else z
    mean_present = float(np.mean(pool)) if len(pool) else 10.0
    logl = np.array([axial_log_likelihood(hkl, z, g[0], mean_present) for g in cands])
    prob = np.exp(logl - logl.max())
    prob /= prob.sum()

    def keeps_axes(g: gemmi.SpaceGroup) -> bool:
        return reference_setting(g)[1].triplet() == "x,y,z"

    order = sorted(
        range(len(cands)),
        key=lambda k: (
            -round(float(prob[k]), 9),
            not keeps_axes(cands[k][0]),
            -sum(_signature(cands[k][0])),
            k,
        ),
    )
    return [(cands[k], float(prob[k])) for k in order]


def reference_setting(space_group: gemmi.SpaceGroup) -> tuple[gemmi.SpaceGroup, gemmi.Op]:
    """(the group in its reference setting, the reindexing op that takes data there).

    The op is for :meth:`gemmi.Mtz.reindex`; ``op.as_hkl().triplet()`` is the
    hkl form (new indices in terms of old, e.g. ``l,h,k``).  Only axis
    permutations are tried (what non-standard orthorhombic and monoclinic
    settings from DIALS need); a group none of them brings to its reference
    setting is returned unchanged with the identity.
    """
    if space_group.is_reference_setting():
        return space_group, gemmi.Op("x,y,z")
    for t in _AXIS_PERMUTATIONS:
        ops = space_group.operations()
        ops.change_basis_forward(gemmi.Op(t))
        found = gemmi.find_spacegroup_by_ops(ops)
        if found is not None and found.is_reference_setting():
            return found, gemmi.Op(t).inverse()
    return space_group, gemmi.Op("x,y,z")
