"""Dendrogram nodes with statistics, and picking the clusters to merge (KAMO thresholds).

Node ids follow scipy's linkage numbering: leaves 0..n−1, merges n..2n−2
(the root is 2n−2).  Completeness and multiplicity of a node are estimated
before merging from the union of its members' unique reflections, as KAMO
does from index sets: completeness = |∪ keys| / possible (to ``d_min``),
multiplicity = Σ observations / |∪ keys|.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import gemmi
import numpy as np

from mxflow.cluster.cells import lcv_alcv
from mxflow.cluster.intensity import IntensitySet, cc_summary, node_members
from mxflow.model import AnomalousSignal, DendrogramNode, NodeStats, Thresholds


def possible_reflections(cell: Sequence[float], space_group: str, d_min: float) -> int:
    """Number of symmetry-unique reflections (Friedel mates merged) to ``d_min`` Å."""
    return gemmi.count_reflections(gemmi.UnitCell(*cell), gemmi.SpaceGroup(space_group), d_min)


def group_stats(
    idx: Sequence[int],
    sets: Sequence[IntensitySet],
    cells: Sequence[Sequence[float]],
    n_possible: int,
    cc: np.ndarray | None = None,
) -> NodeStats:
    """Completeness (%), multiplicity, LCV (%), aLCV (Å), CC mean / min of datasets ``idx``."""
    idx = list(idx)
    union = np.unique(np.concatenate([sets[i].keys for i in idx])) if idx else np.zeros(0)
    n_obs = sum(
        int(sets[i].counts.sum()) if sets[i].counts is not None else len(sets[i]) for i in idx
    )
    lcv, alcv = lcv_alcv([cells[i] for i in idx])
    stats = NodeStats(
        completeness=100.0 * len(union) / n_possible if n_possible else 0.0,
        multiplicity=n_obs / len(union) if len(union) else 0.0,
        lcv=lcv,
        alcv=alcv,
    )
    if cc is not None:
        stats.cc_mean, stats.cc_min = cc_summary(cc, idx)
    return stats


def dendrogram_nodes(
    linkage: np.ndarray,
    names: Sequence[str],
    sets: Sequence[IntensitySet],
    cells: Sequence[Sequence[float]],
    n_possible: int,
    cc: np.ndarray | None = None,
) -> list[DendrogramNode]:
    """The merge nodes of a scipy ``linkage`` over datasets ``names``, with their statistics."""
    n = len(names)
    members = node_members(linkage, n)
    return [
        DendrogramNode(
            id=n + k,
            children=[int(row[0]), int(row[1])],
            height=float(row[2]),
            members=[names[i] for i in members[n + k]],
            member_index=list(members[n + k]),
            stats=group_stats(members[n + k], sets, cells, n_possible, cc),
        )
        for k, row in enumerate(linkage)
    ]


def single_node(
    names: Sequence[str],
    sets: Sequence[IntensitySet],
    cells: Sequence[Sequence[float]],
    n_possible: int,
    cc: np.ndarray | None = None,
) -> DendrogramNode:
    """The one "cluster" of a single dataset (no dendrogram to draw)."""
    return DendrogramNode(
        0, [], 0.0, list(names), [0], group_stats([0], sets, cells, n_possible, cc)
    )


def failed_tests(stats: NodeStats, height: float, n_members: int, t: Thresholds) -> list[str]:
    """Plain-words list of the thresholds a node misses (empty when it passes)."""
    out = []
    if n_members < t.min_datasets:
        out.append(f"{n_members} datasets < {t.min_datasets}")
    if stats.completeness < t.min_completeness:
        out.append(f"completeness {stats.completeness:.1f}% < {t.min_completeness:g}%")
    if stats.multiplicity < t.min_multiplicity:
        out.append(f"multiplicity {stats.multiplicity:.2f} < {t.min_multiplicity:g}")
    if t.max_lcv is not None and stats.lcv > t.max_lcv:
        out.append(f"LCV {stats.lcv:.2f}% > {t.max_lcv:g}%")
    if t.max_alcv is not None and stats.alcv > t.max_alcv:
        out.append(f"aLCV {stats.alcv:.2f} Å > {t.max_alcv:g} Å")
    if t.max_height is not None and height > t.max_height:
        out.append(f"height {height:.3f} > {t.max_height:g}")
    return out


def failed_anomalous_tests(anom: AnomalousSignal | None, t: Thresholds) -> list[str]:
    """Plain-words list of KAMO's anomalous thresholds (min_acmpl, min_aredun) that merged
    data miss; ``anom`` from :func:`mxflow.stats.anomalous.anomalous_signal` (anomalous
    completeness as a fraction there, the threshold in %)."""
    out = []
    if anom is None:
        return out
    if t.min_anom_completeness is not None:
        c = 100 * anom.anom_completeness
        if not c >= t.min_anom_completeness:  # NaN fails too
            out.append(f"anomalous completeness {c:.1f}% < {t.min_anom_completeness:g}%")
    if t.min_anom_multiplicity is not None:
        m = anom.anom_multiplicity
        if not m >= t.min_anom_multiplicity:
            out.append(f"anomalous multiplicity {m:.2f} < {t.min_anom_multiplicity:g}")
    return out


def near_duplicate_of(
    members: Sequence[str], chosen: Sequence[DendrogramNode], fraction: float
) -> DendrogramNode | None:
    """The chosen node that ``members`` is a near-identical subset of, if any.

    Near-identical: every member is in the chosen node, which has at most
    max(1, ⌊fraction × its size⌋) datasets more.  KAMO merges every such
    node again; merging it costs a full scaling run for almost the same data.
    """
    mine = set(members)
    for c in chosen:
        theirs = set(c.members)
        if mine <= theirs and len(theirs) - len(mine) <= max(1, int(fraction * len(theirs))):
            return c
    return None


def pick_clusters(
    nodes: Sequence[DendrogramNode], t: Thresholds
) -> tuple[list[DendrogramNode], list[DendrogramNode]]:
    """Nodes to merge (largest first, then lowest height; at most ``max_clusters``) and the rest.

    A node that is a near-identical subset of one already chosen is skipped
    (``Thresholds.near_duplicate``), and so is one that would take the
    datasets of all chosen nodes past ``Thresholds.max_merged`` times the
    datasets clustered (the merge budget: every chosen node is a full scaling
    run of its datasets, so this keeps the merge stage linear in the
    collection).  Every node not chosen comes back as a copy with its
    ``why_not`` filled in.  Returns (chosen, not_chosen).
    """
    chosen: list[DendrogramNode] = []
    rest: list[DendrogramNode] = []
    n_all = max((len(nd.members) for nd in nodes), default=0)
    budget = None if t.max_merged is None else t.max_merged * n_all
    used = 0
    for nd in sorted(nodes, key=lambda nd: (-len(nd.members), nd.height, nd.id)):
        fails = failed_tests(nd.stats, nd.height, len(nd.members), t)
        dup = (
            near_duplicate_of(nd.members, chosen, t.near_duplicate)
            if t.near_duplicate is not None and not fails
            else None
        )
        if fails:
            why = "; ".join(fails)
        elif dup is not None:
            n_less = len(dup.members) - len(nd.members)
            plural = "s" if n_less != 1 else ""
            why = f"near-identical to merged cluster {dup.id} ({n_less} dataset{plural} fewer)"
        elif len(chosen) >= t.max_clusters:
            why = f"max_clusters={t.max_clusters} reached"
        elif chosen and budget is not None and used + len(nd.members) > budget:
            why = (
                f"merge budget: {used} datasets already merged in {len(chosen)} cluster(s); "
                f"{len(nd.members)} more would pass max_merged={t.max_merged:g} × {n_all}"
            )
        else:
            chosen.append(nd)
            used += len(nd.members)
            continue
        rest.append(dataclasses.replace(nd, why_not=why))
    return chosen, rest
