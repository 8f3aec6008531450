"""Cell, CC-clustering and indexing-ambiguity algorithms on synthetic numbers."""

from __future__ import annotations

import gemmi
import numpy as np
import pytest

from mxflow.cluster import ambiguity, cells, intensity, select
from mxflow.model import DendrogramNode, NodeStats


# ---------------------------------------------------------------- cells
def test_niggli_is_setting_independent():
    a = cells.niggli_cell((8.2, 5.4, 12.1, 90, 90, 90))
    b = cells.niggli_cell((5.4, 8.2, 12.1, 90, 90, 90))
    assert a == pytest.approx(b)
    assert a[:3] == pytest.approx((5.4, 8.2, 12.1))
    # a C-centred cell reduces to its primitive cell
    p = cells.niggli_cell((10, 20, 30, 90, 90, 90), "C")
    assert sorted(p[:3]) == pytest.approx([10, np.hypot(5, 10), 30])


def test_g6_distance_zero_for_same_lattice_and_grows():
    assert cells.g6_distance((50, 60, 70, 90, 90, 90), (60, 50, 70, 90, 90, 90)) < 1e-6
    assert cells.g6_distance((50, 60, 70, 90, 90, 90), (51, 60, 70, 90, 90, 90)) == pytest.approx(
        51**2 - 50**2, rel=1e-6
    )


def test_cell_groups_tolerance_graph():
    base = (50.0, 60.0, 70.0, 90, 90, 90)
    cs = [base, (52, 61, 69, 90, 90, 90), (60, 50, 70, 90, 90, 90), (50, 60, 90, 90, 90, 90)]
    groups = cells.cell_groups(cs)
    assert groups == [[0, 1, 2], [3]]  # c = 90 vs 70 Å is 28 % off
    assert not cells.cells_similar(base, (50, 60, 70, 90, 99, 90))


def test_lcv_alcv_by_hand():
    c1 = (50.0, 60.0, 70.0, 90, 90, 90)
    c2 = (51.0, 60.0, 70.0, 90, 90, 90)
    lcv, alcv = cells.lcv_alcv([c1, c2])
    d1 = np.hypot(50, 60)
    d2 = np.hypot(51, 60)
    dca = np.hypot(51, 70) - np.hypot(50, 70)
    assert alcv == pytest.approx(max(d2 - d1, dca))
    assert lcv == pytest.approx(alcv / (d1 if d2 - d1 > dca else np.hypot(50, 70)) * 100)
    assert cells.lcv_alcv([c1]) == (0.0, 0.0)


def test_blend_linkage_separates_two_cell_populations():
    rng = np.random.default_rng(1)
    pop1 = [(50 + rng.normal(0, 0.05), 60 + rng.normal(0, 0.05), 70, 90, 90, 90) for _ in range(8)]
    pop2 = [(51 + rng.normal(0, 0.05), 60 + rng.normal(0, 0.05), 70, 90, 90, 90) for _ in range(8)]
    z = cells.blend_linkage(pop1 + pop2)
    root = intensity.node_members(z, 16)
    left, right = int(z[-1, 0]), int(z[-1, 1])
    assert {tuple(root[left]), tuple(root[right])} == {tuple(range(8)), tuple(range(8, 16))}


# ------------------------------------------------------------ intensities
def _random_hkl(n: int, rng, lim: int = 12) -> np.ndarray:
    return rng.integers(-lim, lim + 1, size=(n, 3))


def test_canonical_keys_merge_symmetry_mates():
    sg = gemmi.SpaceGroup("P 4")
    hkl = np.array([[1, 2, 3], [-2, 1, 3], [-1, -2, -3], [2, 1, 3]])
    k = intensity.canonical_keys(hkl, sg)
    assert k[0] == k[1] == k[2]  # 4-fold mate and Friedel mate
    assert k[3] != k[0]  # (k,h,l) is not equivalent in 4/m
    assert (intensity.unpack_hkl(intensity.pack_hkl(hkl)) == hkl).all()


def _truth(sg: str, rng, n: int = 3000) -> tuple[np.ndarray, np.ndarray]:
    """Unique keys and exponential 'true' intensities for space group ``sg``."""
    hkl = _random_hkl(n, rng)
    keys = np.unique(intensity.canonical_keys(hkl, sg))
    return keys, rng.exponential(100.0, size=len(keys))


def _dataset(name, keys, itrue, rng, frac=0.4, noise=0.05, op=None, sg="P 4"):
    sel = rng.random(len(keys)) < frac
    hkl = intensity.unpack_hkl(keys[sel])
    if op is not None:
        hkl = intensity.apply_op(hkl, op)
    obs = itrue[sel] * (1 + rng.normal(0, noise, sel.sum()))
    return intensity.merge_observations(name, hkl, obs, np.ones(sel.sum()), sg)


def test_cc_matrix_and_ward_split_two_populations():
    rng = np.random.default_rng(2)
    k1, i1 = _truth("P 4", rng)
    i2 = i1 * rng.normal(1, 0.6, len(i1)).clip(0.05)  # a second, different structure
    sets = [_dataset(f"a{j}", k1, i1, rng) for j in range(6)]
    sets += [_dataset(f"b{j}", k1, i2, rng) for j in range(6)]
    cc, nc = intensity.cc_matrix(sets)
    assert np.nanmin(cc[:6, :6]) > 0.9 and np.nanmax(cc[:6, 6:]) < 0.9
    assert (nc[np.triu_indices(12, 1)] > 50).all()
    z = intensity.ward_from_distance(intensity.cc_distance(cc))
    m = intensity.node_members(z, 12)
    children = {tuple(m[int(z[-1, 0])]), tuple(m[int(z[-1, 1])])}
    assert children == {tuple(range(6)), tuple(range(6, 12))}


def test_cc_block_gives_what_pair_cc_gives_for_every_pair():
    rng = np.random.default_rng(4)
    keys, itrue = _truth("P 4", rng)
    sets = [_dataset(f"d{j}", keys, itrue, rng, frac=f) for j, f in enumerate([0.4, 0.3, 0.05])]

    def one(name, k, v):
        k = np.asarray(k, dtype=np.int64)
        return intensity.IntensitySet(name, k, np.asarray(v, float), np.ones(len(k)))

    sets += [
        one("no_overlap", [-5, -4, -3], [1.0, 2.0, 3.0]),  # keys no other set has
        one("single", keys[:1], [7.0]),  # one common reflection: undefined
        one("flat", keys[:50], np.full(50, 3.0)),  # no spread: undefined
    ]
    cc, nc = intensity.cc_block(sets, sets[:4])
    assert cc.shape == (6, 4) and nc.shape == (6, 4)
    for i, a in enumerate(sets):
        for j, b in enumerate(sets[:4]):
            want, n = intensity.pair_cc(a, b)
            assert nc[i, j] == n
            if np.isnan(want):
                assert np.isnan(cc[i, j]), (a.name, b.name, cc[i, j])
            else:
                assert cc[i, j] == pytest.approx(want, abs=1e-12)
    full, n_full = intensity.cc_matrix(sets)
    assert np.all(np.diag(full) == 1.0) and list(np.diag(n_full)) == [len(s) for s in sets]
    assert np.allclose(full, full.T, equal_nan=True)


def test_remove_bad_pairs_drops_isolated_dataset():
    cc = np.array([[1, 0.9, 0.8], [0.9, 1, np.nan], [0.8, np.nan, 1.0]])
    nc = np.array([[100, 50, 40], [50, 100, 0], [40, 0, 100]])
    assert len(intensity.remove_bad_pairs(cc, nc)) == 1
    nc2 = np.array([[100, 50, 2], [50, 100, 50], [2, 50, 100]])
    cc2 = np.array([[1, 0.9, 0.8], [0.9, 1, 0.8], [0.8, 0.8, 1.0]])
    assert intensity.remove_bad_pairs(cc2, nc2, min_common=3) == [2]
    assert intensity.remove_bad_pairs(cc2, nc2, min_common=2) == []


# ------------------------------------------------------------- ambiguity
@pytest.mark.parametrize(
    "sg,cell", [("P 4", (50, 50, 80, 90, 90, 90)), ("P 3", (60, 60, 40, 90, 90, 120))]
)
def test_selective_breeding_recovers_operators(sg, cell):
    rng = np.random.default_rng(3)
    ops = ambiguity.ambiguity_operators(cell, sg)
    assert len(ops) >= 2
    keys, itrue = _truth(sg, rng)
    true_ops = [int(x) for x in rng.integers(0, len(ops), size=12)]
    sets = [
        _dataset(f"d{j}", keys, itrue, rng, frac=0.3, noise=0.1, op=ops[a], sg=sg)
        for j, a in enumerate(true_ops)
    ]
    got = ambiguity.selective_breeding(sets, ops, sg)
    table = ambiguity.composition_table(ops, sg)
    # consistent: applying the found op undoes the true one, up to one global op
    undone = [int(table[t, g]) for g, t in zip(got, true_ops, strict=True)]
    assert len(set(undone)) == 1, (got, true_ops)


def test_reference_assignment_and_identity_when_unique():
    rng = np.random.default_rng(4)
    sg, cell = "P 4", (50, 50, 80, 90, 90, 90)
    ops = ambiguity.ambiguity_operators(cell, sg)
    keys, itrue = _truth(sg, rng)
    ref = intensity.IntensitySet("ref", keys, itrue, np.ones(len(keys)))
    twisted = _dataset("t", keys, itrue, rng, op=ops[1])
    plain = _dataset("p", keys, itrue, rng)
    res = ambiguity.assign_by_reference([twisted, plain], ref, ops, sg)
    assert [r[0] for r in res] == [1, 0]
    assert res[0][1] > 0.95
    # orthorhombic with distinct edges: no ambiguity
    assert len(ambiguity.ambiguity_operators((5.4, 8.1, 12.0, 90, 90, 90), "P 21 21 21")) == 1


# ---------------------------------------------------------------- select
def test_pick_clusters_thresholds_and_reasons():
    rng = np.random.default_rng(5)
    keys, itrue = _truth("P 4", rng)
    sets = [_dataset(f"d{j}", keys, itrue, rng, frac=0.35) for j in range(4)]
    cs = [(50, 50, 80, 90, 90, 90)] * 3 + [(51.5, 51.5, 80, 90, 90, 90)]
    z = intensity.ward_from_distance(intensity.cc_distance(intensity.cc_matrix(sets)[0]))
    nodes = select.dendrogram_nodes(z, [s.name for s in sets], sets, cs, len(keys))
    root = nodes[-1]
    assert root.id == 6 and len(root.members) == 4
    assert root.stats.completeness > 75
    assert root.stats.lcv > 0
    chosen, rest = select.pick_clusters(
        nodes, select.Thresholds(min_completeness=99, min_multiplicity=1)
    )
    assert chosen == [] and all("completeness" in r.why_not for r in rest)
    chosen, _ = select.pick_clusters(
        nodes, select.Thresholds(min_completeness=50, min_multiplicity=1, max_clusters=1)
    )
    assert [c.id for c in chosen] == [6]
    chosen, rest = select.pick_clusters(
        nodes, select.Thresholds(min_completeness=10, min_multiplicity=1, max_lcv=0.5)
    )
    assert all("d3" not in c.members for c in chosen)
    assert any("LCV" in r.why_not for r in rest)


def test_pick_clusters_skips_near_identical_subsets():
    stats = NodeStats(completeness=100.0, multiplicity=5.0, lcv=0.0, alcv=0.0)

    def node(nid, members, height):
        return DendrogramNode(nid, [], height, members, [], stats)

    pop_a = [f"a{j}" for j in range(10)]
    pop_b = [f"b{j}" for j in range(10)]
    nodes = [
        node(40, pop_a + pop_b, 3.0),  # root
        node(39, pop_a + pop_b[:9], 2.5),  # root minus one: near-identical
        node(38, pop_a, 1.0),
        node(37, pop_b, 1.0),
        node(36, pop_a[:9], 0.5),  # population A minus one: near-identical
        node(35, pop_a[:8], 0.4),  # minus two of ten: different enough
    ]
    chosen, rest = select.pick_clusters(nodes, select.Thresholds(max_merged=None))
    assert [c.id for c in chosen] == [40, 37, 38, 35]  # largest, then lowest height, id
    why = {r.id: r.why_not for r in rest}
    assert why[39] == "near-identical to merged cluster 40 (1 dataset fewer)"
    assert why[36].startswith("near-identical to merged cluster 38")
    # KAMO's behaviour (merge every node that passes) when switched off
    chosen, _ = select.pick_clusters(nodes, select.Thresholds(near_duplicate=None, max_merged=None))
    assert len(chosen) == 6


def test_pick_clusters_keeps_to_the_merge_budget():
    """The chosen clusters hold at most max_merged × the datasets clustered: 20 here."""
    stats = NodeStats(completeness=100.0, multiplicity=5.0, lcv=0.0, alcv=0.0)

    def node(nid, first, n, height):
        members = [f"d{j}" for j in range(first, first + n)]
        return DendrogramNode(nid, [], height, members, [], stats)

    nodes = [node(18, 0, 10, 3.0), node(17, 0, 6, 2.0), node(16, 5, 5, 1.5), node(15, 0, 4, 1.0)]
    chosen, rest = select.pick_clusters(nodes, select.Thresholds(max_merged=2.0))
    # 10, then 6 (16 merged), 5 would make 21 > 20, 4 makes 20
    assert [c.id for c in chosen] == [18, 17, 15]
    why = {r.id: r.why_not for r in rest}
    assert why[16] == (
        "merge budget: 16 datasets already merged in 2 cluster(s); "
        "5 more would pass max_merged=2 × 10"
    )
    # the largest cluster is always merged, however small the budget
    chosen, _ = select.pick_clusters(nodes, select.Thresholds(max_merged=0.5))
    assert [c.id for c in chosen] == [18]
    chosen, _ = select.pick_clusters(nodes, select.Thresholds(max_merged=None))
    assert [c.id for c in chosen] == [18, 17, 16, 15]
    # the default (3): four populations of 10 each get their own cluster, as do the
    # two pairs of them and the whole set; nothing below that
    tree = [node(60, 0, 40, 9.0), node(59, 0, 20, 5.0), node(58, 20, 20, 5.0)]
    tree += [node(57 - k, 10 * k, 10, 2.0) for k in range(4)]
    tree += [node(50 - k, 10 * k, 5, 1.0) for k in range(4)]
    chosen, rest = select.pick_clusters(tree, select.Thresholds())
    assert sorted(c.id for c in chosen) == [54, 55, 56, 57, 58, 59, 60]
    assert all(r.why_not.startswith("merge budget") for r in rest)


def test_a_cluster_inside_an_extended_one_starts_at_its_corner():
    from mxflow.merge.pipeline import nested_start
    from mxflow.model import ClusterResult

    stats = NodeStats(completeness=100.0, multiplicity=5.0, lcv=0.0, alcv=0.0)
    ok = object()  # any statistics: the merge went through
    root = ClusterResult(8, "cc", ["a", "b", "c", "d", "e"], stats=ok, extended_to=1.71)
    other = ClusterResult(9, "cc", ["x", "y"], stats=ok)  # not extended
    inside = DendrogramNode(7, [], 1.0, ["a", "b", "c"], [], stats)
    outside = DendrogramNode(6, [], 1.0, ["x", "a"], [], stats)
    d, why = nested_start(inside, [other, root], 2.30)
    assert d == 1.71 and "enclosing cluster 8" in why
    assert nested_start(outside, [other, root], 2.30) == (2.30, "")
    # a failed enclosing merge gives nothing to start from
    failed = ClusterResult(8, "cc", ["a", "b", "c", "d", "e"], error="scale failed")
    assert nested_start(inside, [failed], 2.30) == (2.30, "")
