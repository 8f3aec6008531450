"""Dendrogram nodes with statistics, and picking the clusters to merge (KAMO thresholds).

Node ids follow scipy's linkage numbering: leaves 0..n−1, merges n..2n−2
(the root is 2n−2).  Completeness and multiplicity of a node are estimated
before merging from the union of its members' unique reflections, as KAMO
does from index sets: completeness = |∪ keys| / possible (to ``d_min``),
multiplicity = Σ observations / |∪ keys|.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import gemmi
import numpy as np

from mxflow.cluster.cells import lcv_alcv
from mxflow.cluster.intensity import IntensitySet, cc_summary, node_members


@dataclass
class Thresholds:
    """Which clusters to merge.  Defaults from KAMO / ZOO (GUIDE §2.2–2.3).

    min_completeness in %, min_multiplicity as a ratio, max_lcv in %,
    max_alcv in Å, max_height in linkage units; None disables a test.
    """

    min_completeness: float = 90.0
    min_multiplicity: float = 2.0
    max_lcv: float | None = None
    max_alcv: float | None = None
    max_height: float | None = None
    max_clusters: int = 10
    min_datasets: int = 1
    # skip a node inside an already chosen one that lacks at most max(1, this × its size)
    # of its datasets: near-identical data, and run_03 drops single bad datasets anyway
    near_duplicate: float | None = 0.1


def possible_reflections(cell: Sequence[float], space_group: str, d_min: float) -> int:
    """Number of symmetry-unique reflections (Friedel mates merged) to ``d_min`` Å."""
    return gemmi.count_reflections(gemmi.UnitCell(*cell), gemmi.SpaceGroup(space_group), d_min)


def group_stats(
    idx: Sequence[int],
    sets: Sequence[IntensitySet],
    cells: Sequence[Sequence[float]],
    n_possible: int,
    cc: np.ndarray | None = None,
) -> dict[str, float]:
    """Completeness (%), multiplicity, LCV (%), aLCV (Å), CC mean / min of datasets ``idx``."""
    idx = list(idx)
    union = np.unique(np.concatenate([sets[i].keys for i in idx])) if idx else np.zeros(0)
    n_obs = sum(
        int(sets[i].counts.sum()) if sets[i].counts is not None else len(sets[i]) for i in idx
    )
    lcv, alcv = lcv_alcv([cells[i] for i in idx])
    stats = {
        "completeness": 100.0 * len(union) / n_possible if n_possible else 0.0,
        "multiplicity": n_obs / len(union) if len(union) else 0.0,
        "LCV": lcv,
        "aLCV": alcv,
    }
    if cc is not None:
        stats["cc_mean"], stats["cc_min"] = cc_summary(cc, idx)
    return stats


def dendrogram_nodes(
    linkage: np.ndarray,
    names: Sequence[str],
    sets: Sequence[IntensitySet],
    cells: Sequence[Sequence[float]],
    n_possible: int,
    cc: np.ndarray | None = None,
) -> list[dict]:
    """One dict per merge node: id, children, height, members (names), stats."""
    n = len(names)
    members = node_members(linkage, n)
    nodes = []
    for k, row in enumerate(linkage):
        nid = n + k
        nodes.append(
            {
                "id": nid,
                "children": [int(row[0]), int(row[1])],
                "height": float(row[2]),
                "members": [names[i] for i in members[nid]],
                "member_index": members[nid],
                "stats": group_stats(members[nid], sets, cells, n_possible, cc),
                "merged": False,
            }
        )
    return nodes


def failed_tests(
    stats: dict[str, float], height: float, n_members: int, t: Thresholds
) -> list[str]:
    """Plain-words list of the thresholds a node misses (empty when it passes)."""
    out = []
    if n_members < t.min_datasets:
        out.append(f"{n_members} datasets < {t.min_datasets}")
    if stats["completeness"] < t.min_completeness:
        out.append(f"completeness {stats['completeness']:.1f}% < {t.min_completeness:g}%")
    if stats["multiplicity"] < t.min_multiplicity:
        out.append(f"multiplicity {stats['multiplicity']:.2f} < {t.min_multiplicity:g}")
    if t.max_lcv is not None and stats["LCV"] > t.max_lcv:
        out.append(f"LCV {stats['LCV']:.2f}% > {t.max_lcv:g}%")
    if t.max_alcv is not None and stats["aLCV"] > t.max_alcv:
        out.append(f"aLCV {stats['aLCV']:.2f} Å > {t.max_alcv:g} Å")
    if t.max_height is not None and height > t.max_height:
        out.append(f"height {height:.3f} > {t.max_height:g}")
    return out


def near_duplicate_of(
    members: Sequence[str], chosen: Sequence[dict], fraction: float
) -> dict | None:
    """The chosen node that ``members`` is a near-identical subset of, if any.

    Near-identical: every member is in the chosen node, which has at most
    max(1, ⌊fraction × its size⌋) datasets more.  KAMO merges every such
    node again; merging it costs a full scaling run for almost the same data.
    """
    mine = set(members)
    for c in chosen:
        theirs = set(c["members"])
        if mine <= theirs and len(theirs) - len(mine) <= max(1, int(fraction * len(theirs))):
            return c
    return None


def pick_clusters(nodes: Sequence[dict], t: Thresholds) -> tuple[list[dict], list[dict]]:
    """Nodes to merge (largest first, then lowest height; at most ``max_clusters``) and the rest.

    A node that is a near-identical subset of one already chosen is skipped
    (``Thresholds.near_duplicate``).  Every node not chosen gets a
    ``why_not`` string.  Returns (chosen, not_chosen).
    """
    chosen, rest = [], []
    order = sorted(nodes, key=lambda nd: (-len(nd["members"]), nd["height"], nd["id"]))
    for nd in order:
        fails = failed_tests(nd["stats"], nd["height"], len(nd["members"]), t)
        dup = (
            near_duplicate_of(nd["members"], chosen, t.near_duplicate)
            if t.near_duplicate is not None and not fails
            else None
        )
        if fails:
            rest.append({**nd, "why_not": "; ".join(fails)})
        elif dup is not None:
            n_less = len(dup["members"]) - len(nd["members"])
            rest.append(
                {
                    **nd,
                    "why_not": f"near-identical to merged cluster {dup['id']} "
                    f"({n_less} dataset{'s' if n_less != 1 else ''} fewer)",
                }
            )
        elif len(chosen) >= t.max_clusters:
            rest.append({**nd, "why_not": f"max_clusters={t.max_clusters} reached"})
        else:
            chosen.append(nd)
    return chosen, rest
