"""Unit-cell comparison: Niggli reduction, G6 vectors, cell groups, BLEND LCV / aLCV.

All cells are ``(a, b, c, α, β, γ)`` in Å and degrees.  Cells from different
crystals are compared after Niggli reduction (gemmi.GruberVector), which puts
every lattice in one standard primitive setting, so the comparison does not
depend on how each dataset happened to be indexed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import gemmi
import numpy as np
from scipy.cluster import hierarchy

Cell = Sequence[float]


def niggli_cell(cell: Cell, centring: str = "P") -> tuple[float, ...]:
    """The Niggli-reduced primitive cell (Å, degrees) of ``cell``.

    ``centring`` is the lattice centring letter of the setting ``cell`` is
    given in (P, C, I, F, R ...); the reduced cell is always primitive.
    """
    gv = gemmi.GruberVector(gemmi.UnitCell(*cell), centring)
    gv.niggli_reduce()
    return tuple(float(x) for x in gv.cell_parameters())


def g6_vector(cell: Cell) -> np.ndarray:
    """The G6 vector (a², b², c², 2bc·cosα, 2ac·cosβ, 2ab·cosγ) in Å²."""
    a, b, c, al, be, ga = cell
    ca, cb, cg = (math.cos(math.radians(x)) for x in (al, be, ga))
    return np.array([a * a, b * b, c * c, 2 * b * c * ca, 2 * a * c * cb, 2 * a * b * cg])


def g6_distance(cell1: Cell, cell2: Cell) -> float:
    """Euclidean G6 distance (Å²) between the Niggli-reduced forms of two P cells.

    A simpler stand-in for Andrews–Bernstein NCDist: identical to it away
    from the boundaries of the Niggli cone, larger near them (where NCDist
    would follow the boundary transformations).
    """
    return float(np.linalg.norm(g6_vector(niggli_cell(cell1)) - g6_vector(niggli_cell(cell2))))


def _angle_diff(x: float, y: float) -> float:
    """Angle difference (degrees) allowing the all-acute / all-obtuse flip near 90°."""
    return min(abs(x - y), abs(x - (180.0 - y)))


def cells_similar(
    cell1: Cell, cell2: Cell, rel_length: float = 0.10, angle: float = 5.0, reduce: bool = True
) -> bool:
    """KAMO's cell test: reduced edges within ``rel_length`` (fraction), angles within ``angle``°."""
    r1 = niggli_cell(cell1) if reduce else tuple(cell1)
    r2 = niggli_cell(cell2) if reduce else tuple(cell2)
    for x, y in zip(r1[:3], r2[:3], strict=True):
        if abs(x - y) > rel_length * min(x, y):
            return False
    return all(_angle_diff(x, y) <= angle for x, y in zip(r1[3:], r2[3:], strict=True))


def cell_groups(
    cells: Sequence[Cell], rel_length: float = 0.10, angle: float = 5.0
) -> list[list[int]]:
    """Connected groups of mutually similar cells, largest first (ties: lowest index first).

    Builds the graph whose edges join pairs passing :func:`cells_similar` and
    returns its connected components as lists of indices into ``cells``.
    """
    n = len(cells)
    reduced = [niggli_cell(c) for c in cells]
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(n):
        for j in range(i + 1, n):
            if cells_similar(reduced[i], reduced[j], rel_length, angle, reduce=False):
                parent[find(i)] = find(j)
    groups: dict[int, list[int]] = {}
    for i in range(n):
        groups.setdefault(find(i), []).append(i)
    return sorted(groups.values(), key=lambda g: (-len(g), g[0]))


def face_diagonals(cell: Cell) -> tuple[float, float, float]:
    """BLEND's three face diagonals (Å): D_ab, D_bc, D_ca with D_ab = √(a²+b²−2ab·cos(180°−γ))."""
    a, b, c, al, be, ga = cell

    def diag(x: float, y: float, ang: float) -> float:
        return math.sqrt(x * x + y * y - 2 * x * y * math.cos(math.radians(180.0 - ang)))

    return diag(a, b, ga), diag(b, c, al), diag(c, a, be)


def lcv_alcv(cells: Sequence[Cell]) -> tuple[float, float]:
    """BLEND Linear Cell Variation: (LCV in %, aLCV in Å) of a set of cells.

    For each face-diagonal type the largest absolute difference over pairs is
    found; the face with the largest spread gives aLCV (Å) and LCV = aLCV
    divided by the smaller of the two diagonals involved, × 100.  One cell
    gives (0, 0).
    """
    if len(cells) < 2:
        return 0.0, 0.0
    d = np.array([face_diagonals(c) for c in cells])  # (n, 3)
    best_abs, best_rel = -1.0, 0.0
    for k in range(3):
        lo, hi = float(d[:, k].min()), float(d[:, k].max())
        if hi - lo > best_abs:
            best_abs, best_rel = hi - lo, (hi - lo) / lo * 100.0
    return best_rel, best_abs


def blend_linkage(cells: Sequence[Cell]) -> np.ndarray:
    """BLEND-style Ward linkage (scipy format) on cell parameters.

    Each dataset is the vector (a, b, c, α, β, γ) in Å and degrees (parameters
    fixed by symmetry do not vary and so do not contribute); Ward linkage on
    their Euclidean distances.  Needs ≥ 2 cells.
    """
    x = np.asarray(cells, dtype=float)
    if len(x) < 2:
        raise ValueError("cell clustering needs at least two cells")
    return hierarchy.linkage(x, method="ward")


def median_cell(cells: Sequence[Cell]) -> tuple[float, ...]:
    """Parameter-wise median cell (Å, degrees)."""
    return tuple(float(v) for v in np.median(np.asarray(cells, dtype=float), axis=0))
