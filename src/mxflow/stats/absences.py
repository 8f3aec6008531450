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
    names = {"a": "h00", "b": "0k0", "c": "00l"}
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
