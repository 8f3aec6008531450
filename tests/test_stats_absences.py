"""Screw-axis evidence from axial reflections (mxflow.stats.absences)."""

from __future__ import annotations

import gemmi
import numpy as np
import pytest

from mxflow.stats.absences import (
    assigned_condition,
    axial_evidence,
    axis_folds,
    space_group_note,
)


def axial(axis: int, indices, ios) -> tuple[np.ndarray, np.ndarray]:
    hkl = np.zeros((len(indices), 3), dtype=int)
    hkl[:, axis] = indices
    return hkl, np.asarray(ios, dtype=float)


def stack(*parts):
    return np.vstack([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def p212121_axial(axes=(0, 1, 2)):
    """Axial reflections of a P 21 21 21 crystal: even strong, odd absent (I/σ ~ 0)."""
    return stack(*[axial(j, range(1, 11), [0.3, 30.0] * 5) for j in axes])


@pytest.mark.parametrize(
    "sg, folds, assigned",
    [
        ("P 21 21 21", {0: 2, 1: 2, 2: 2}, {0: 2, 1: 2, 2: 2}),
        ("P 2 21 2", {0: 2, 1: 2, 2: 2}, {0: 1, 1: 2, 2: 1}),
        ("P 43 21 2", {0: 2, 1: 2, 2: 4}, {0: 2, 1: 2, 2: 4}),
        ("P 42 21 2", {0: 2, 1: 2, 2: 4}, {0: 2, 1: 2, 2: 2}),
        ("P 1 21 1", {1: 2}, {1: 2}),
        ("P 61 2 2", {0: 2, 1: 2, 2: 6}, {0: 1, 1: 1, 2: 6}),
        ("P 1", {}, {}),
    ],
)
def test_axes_and_assigned_conditions(sg, folds, assigned):
    g = gemmi.SpaceGroup(sg)
    assert axis_folds(g) == folds
    assert {j: assigned_condition(g, j, n) for j, n in folds.items()} == assigned


def test_all_axes_measured_supports_p212121():
    hkl, ios = p212121_axial()
    ev = axial_evidence(hkl, ios, gemmi.SpaceGroup("P 21 21 21"))
    assert [e.verdict for e in ev] == ["screw"] * 3
    assert space_group_note("P 21 21 21", ev) is None


def test_unmeasured_axes_are_undetermined_not_absent():
    """Small wedges: only 0k0 measured. DIALS then says P 2 21 2; the note says why that is a guess."""
    hkl, ios = p212121_axial(axes=(1,))
    ev = axial_evidence(hkl, ios, gemmi.SpaceGroup("P 2 21 2"))
    assert [(e.axis, e.verdict) for e in ev] == [
        ("a", "undetermined"), ("b", "screw"), ("c", "undetermined"),
    ]  # fmt: skip
    note = space_group_note("P 2 21 2", ev)
    assert "along a, c cannot be decided" in note and "h00 / 00l" in note


def test_disagreement_with_the_assigned_space_group_is_reported():
    hkl, ios = p212121_axial()
    note = space_group_note("P 2 2 2", axial_evidence(hkl, ios, gemmi.SpaceGroup("P 2 2 2")))
    assert note.count("shows extinctions that P 2 2 2 does not have") == 3
    present = stack(*[axial(j, range(1, 7), [25.0] * 6) for j in range(3)])
    note = space_group_note("P 21 21 21", axial_evidence(*present, gemmi.SpaceGroup("P 21 21 21")))
    assert note.count("extinguishes are observed") == 3


def test_fourfold_needs_l_4n_plus_2_to_tell_41_from_42():
    g = gemmi.SpaceGroup("P 41 21 2")
    odd_absent = axial(2, [1, 3, 4, 5, 7, 8], [0.1, -0.2, 40, 0.5, 0.3, 22])
    ev = {e.axis: e for e in axial_evidence(*odd_absent, g)}
    assert ev["c"].verdict == "undetermined"  # no l = 4n + 2 measured: 4₁ or 4₂
    with_2mod4 = axial(2, [1, 2, 3, 4, 6], [0.1, 0.4, -0.2, 40, 0.2])
    assert {e.axis: e for e in axial_evidence(*with_2mod4, g)}["c"].verdict == "screw"
    odd_present = axial(2, [1, 3, 4], [30, 25, 40])
    assert {e.axis: e for e in axial_evidence(*odd_present, g)}["c"].verdict == "no screw"


# ------------------------------------------------ space-group choice (likelihood)
from mxflow.stats.absences import (  # noqa: E402
    candidate_space_groups,
    merged_axial,
    reference_setting,
    score_candidates,
)


def _axial_set(screws: str, axes: str = "abc", n_max: int = 14, seed: int = 0):
    """Merged axial reflections of an orthorhombic crystal with screws along ``screws``,
    measured along ``axes`` only: (hkl, I/σ)."""
    rng = np.random.default_rng(seed)
    hkl, z = [], []
    for j, axis in enumerate("abc"):
        if axis not in axes:
            continue
        for n in range(1, n_max + 1):
            h = [0, 0, 0]
            h[j] = n
            hkl.append(h)
            absent = axis in screws and n % 2 == 1
            z.append(rng.normal() if absent else rng.exponential(15.0) + rng.normal())
    return np.array(hkl), np.array(z)


def test_candidates_of_p222_are_the_eight_settings_without_duplicates():
    groups = candidate_space_groups(gemmi.SpaceGroup("P 2 2 2"))
    names = [g[0].hm for g in groups]
    assert len(names) == 8 and names[0] == "P 2 2 2" and "P 21 21 21" in names
    assert all(len(g) == 1 for g in groups)  # the origin-shifted P 21 21 2 setting is not listed
    tetragonal = [[s.hm for s in g] for g in candidate_space_groups(gemmi.SpaceGroup("P 4 2 2"))]
    assert ["P 41 21 2", "P 43 21 2"] in tetragonal  # enantiomorphs: one extinction pattern


@pytest.mark.parametrize("screws", ["abc", "b", "ac", ""])
def test_the_true_screws_get_the_highest_probability(screws):
    hkl, z = _axial_set(screws)
    (best, p), *rest = score_candidates(hkl, z, gemmi.SpaceGroup("P 2 2 2"))
    want = {"abc": "P 21 21 21", "b": "P 2 21 2", "ac": "P 21 2 21", "": "P 2 2 2"}[screws]
    assert best[0].hm == want and p > 0.99
    assert abs(p + sum(q for _, q in rest) - 1) < 1e-9


def test_an_unmeasured_axis_is_taken_as_a_screw_and_ties():
    hkl, z = _axial_set("abc", axes="ab")  # no 00l measured
    (best, p), (second, q), *_ = score_candidates(hkl, z, gemmi.SpaceGroup("P 2 2 2"))
    assert best[0].hm == "P 21 21 21" and second[0].hm == "P 21 21 2"
    assert abs(p - q) < 1e-9 and abs(p - 0.5) < 1e-3


def test_among_equals_the_setting_of_the_data_is_kept():
    # 0k0 not measured, h00 and 00l show screws: P 21 21 21 (no change of axes) and
    # P 21 2 21 (standard P 21 21 2 only after permuting the axes) are equally likely
    hkl, z = _axial_set("ac", axes="ac")
    (best, p), (second, q), *_ = score_candidates(hkl, z, gemmi.SpaceGroup("P 2 2 2"))
    assert {best[0].hm, second[0].hm} == {"P 21 21 21", "P 21 2 21"} and abs(p - q) < 1e-9
    assert best[0].hm == "P 21 21 21"


def test_one_strong_outlier_does_not_remove_a_screw():
    hkl, z = _axial_set("abc")
    odd_a = np.flatnonzero((hkl[:, 0] % 2 == 1) & (hkl[:, 1] == 0) & (hkl[:, 2] == 0))
    z[odd_a[0]] = 12.0  # one 'absent' reflection measured strong (an overlap, ice)
    (best, _), *_ = score_candidates(hkl, z, gemmi.SpaceGroup("P 2 2 2"))
    assert best[0].hm == "P 21 21 21"


@pytest.mark.parametrize(
    "hm, ref, hkl_op, cell_out",
    [
        ("P 2 21 2", "P 2 2 21", "l,h,k", (30, 10, 20)),
        ("P 21 2 21", "P 21 21 2", "l,h,k", (30, 10, 20)),
        ("P 21 21 21", "P 21 21 21", "h,k,l", (10, 20, 30)),
    ],
)
def test_reference_setting_reindexes_mtz_to_the_standard_symbol(hm, ref, hkl_op, cell_out):
    sg, op = reference_setting(gemmi.SpaceGroup(hm))
    assert sg.hm == ref and op.as_hkl().triplet() == hkl_op
    mtz = gemmi.Mtz(with_base=True)
    mtz.spacegroup = gemmi.SpaceGroup(hm)
    mtz.set_cell_for_all(gemmi.UnitCell(10, 20, 30, 90, 90, 90))
    mtz.add_dataset("d")
    mtz.add_column("I", "J")
    mtz.set_data(np.array([[1, 2, 3, 5.0]], dtype=np.float32))
    mtz.reindex(op)
    assert mtz.spacegroup.hm == ref
    assert tuple(round(x) for x in mtz.cell.parameters[:3]) == cell_out


def test_space_group_from_unmerged_observations():
    hkl, z = _axial_set("abc")
    # three observations per reflection, with Friedel mates and signs mixed
    obs_hkl = np.concatenate([hkl, -hkl, hkl])
    obs_i = np.concatenate([z, z, z]) * 10.0
    sigma = np.full(len(obs_i), 10.0 * np.sqrt(3.0))  # σ of the mean of three is 10
    ax, zz = merged_axial(obs_hkl, obs_i, sigma, gemmi.SpaceGroup("P 2 2 2"))
    assert len(ax) == len(hkl) and np.allclose(np.sort(zz), np.sort(z))
    (best, p), *_ = score_candidates(ax, zz, gemmi.SpaceGroup("P 2 2 2"))
    assert best[0].hm == "P 21 21 21" and p > 0.99
