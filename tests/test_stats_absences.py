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
