"""Indexing ambiguity: selective breeding (Kabsch 2014) and reference-based assignment.

When the lattice has higher symmetry than the crystal (merohedry), each
dataset may be indexed in one of several equivalent-looking settings related
by the lattice's twin operators.  Each dataset is given one operator (index
into ``ops``; index 0 is the identity) so that all datasets agree.  Operators
are gemmi.Op acting on Miller indices (``Op.apply_to_hkl``).
"""

from __future__ import annotations

from collections.abc import Sequence

import gemmi
import numpy as np

from mxflow.cluster.intensity import (
    IntensitySet,
    canonical_keys,
    cc_block,
    op_matrix,
    pair_cc,
    unpack_hkl,
)


def ambiguity_operators(
    cell: Sequence[float], space_group: gemmi.SpaceGroup | str, max_obliquity: float = 3.0
) -> list[gemmi.Op]:
    """Identity plus one operator per alternative indexing (gemmi.find_twin_laws).

    ``cell`` in Å/degrees; ``max_obliquity`` in degrees (lattice pseudo-symmetry
    tolerance).  Returns ``[x,y,z]`` alone when the indexing is unique.
    """
    sg = gemmi.SpaceGroup(space_group) if isinstance(space_group, str) else space_group
    laws = gemmi.find_twin_laws(gemmi.UnitCell(*cell), sg, max_obliquity, False)
    return [gemmi.Op("x,y,z"), *laws]


def reindex_set(s: IntensitySet, op: gemmi.Op, space_group: gemmi.SpaceGroup | str) -> IntensitySet:
    """``s`` with every reflection reindexed by ``op`` and put back on canonical keys."""
    hkl = unpack_hkl(s.keys) @ op_matrix(op).T
    keys = canonical_keys(hkl, space_group)
    order = np.argsort(keys, kind="stable")
    d = s.d[order] if s.d is not None else None
    counts = s.counts[order] if s.counts is not None else None
    return IntensitySet(s.name, keys[order], s.i[order], s.sigma[order], d, counts)


def composition_table(ops: Sequence[gemmi.Op], space_group: gemmi.SpaceGroup | str) -> np.ndarray:
    """T[a, b] = c with M_b⁻¹·M_a ≡ M_c modulo the crystal's point group (−1 if none).

    Comparing dataset i under operator a with dataset j under b is the same
    as comparing i under T[a, b] with j unchanged.
    """
    rng = np.random.default_rng(7)
    test = rng.integers(-20, 21, size=(64, 3))
    mats = [op_matrix(o) for o in ops]
    signatures = [canonical_keys(test @ m.T, space_group) for m in mats]
    k = len(ops)
    table = np.full((k, k), -1, dtype=int)
    for a in range(k):
        for b in range(k):
            m = np.rint(np.linalg.inv(mats[b]) @ mats[a]).astype(np.int64)
            sig = canonical_keys(test @ m.T, space_group)
            for c in range(k):
                if np.array_equal(sig, signatures[c]):
                    table[a, b] = c
                    break
    return table


def _cc_under_ops(sets: Sequence[IntensitySet], ops: Sequence[gemmi.Op], space_group) -> np.ndarray:
    """C[i, a, j] = CC(dataset i reindexed by op a, dataset j as is); NaN where undefined."""
    n, k = len(sets), len(ops)
    c = np.full((n, k, n), np.nan)
    for a, o in enumerate(ops):  # one block of CCs per operator (cc_block), not n² pairs
        c[:, a, :] = cc_block([reindex_set(s, o, space_group) for s in sets], sets)[0]
    c[np.arange(n), :, np.arange(n)] = np.nan
    return c


def selective_breeding(
    sets: Sequence[IntensitySet],
    ops: Sequence[gemmi.Op],
    space_group: gemmi.SpaceGroup | str,
    max_cycles: int = 100,
) -> list[int]:
    """Kabsch (2014) selective breeding: one operator index per dataset.

    Start with everyone on the identity; for each dataset in turn take the
    operator that maximises its mean CC with all others under their current
    operators; repeat until nothing changes (or ``max_cycles``).  The answer
    is then relabelled so the most common operator becomes the identity.
    """
    n, k = len(sets), len(ops)
    if k == 1 or n < 2:
        return [0] * n
    table = composition_table(ops, space_group)
    if (table < 0).any():
        raise ValueError("ambiguity operators do not form a group modulo the space group")
    c = _cc_under_ops(sets, ops, space_group)
    cur = np.zeros(n, dtype=int)
    for _ in range(max_cycles):
        changed = False
        for i in range(n):
            others = [j for j in range(n) if j != i]
            scores = []
            for a in range(k):
                vals = np.array([c[i, table[a, cur[j]], j] for j in others])
                vals = vals[np.isfinite(vals)]
                scores.append(vals.mean() if len(vals) else -np.inf)
            best = int(np.argmax(scores))
            if best != cur[i] and scores[best] > scores[cur[i]] + 1e-12:
                cur[i] = best
                changed = True
        if not changed:
            break
    return normalise_assignment(cur.tolist(), ops, space_group, table)


def normalise_assignment(
    assignment: Sequence[int], ops: Sequence[gemmi.Op], space_group, table: np.ndarray | None = None
) -> list[int]:
    """Re-express an assignment so the most common operator becomes the identity.

    Applying one operator to every dataset changes nothing physically; this
    picks the equivalent answer that reindexes the fewest datasets.
    """
    if table is None:
        table = composition_table(ops, space_group)
    counts = np.bincount(np.asarray(assignment, dtype=int), minlength=len(ops))
    top = int(np.argmax(counts))
    return [int(table[a, top]) for a in assignment]


def assign_by_reference(
    sets: Sequence[IntensitySet],
    reference: IntensitySet,
    ops: Sequence[gemmi.Op],
    space_group: gemmi.SpaceGroup | str,
    min_common: int = 10,
) -> list[tuple[int, float]]:
    """For each dataset the operator with the highest CC to ``reference``, and that CC.

    Datasets sharing fewer than ``min_common`` reflections with the reference
    get (0, NaN): identity, undecided.
    """
    out = []
    for s in sets:
        best, best_cc = 0, -np.inf
        for a, o in enumerate(ops):
            cc, n = pair_cc(reindex_set(s, o, space_group), reference)
            if n >= min_common and np.isfinite(cc) and cc > best_cc:
                best, best_cc = a, cc
        out.append((best, float(best_cc) if np.isfinite(best_cc) else float("nan")))
    return out
