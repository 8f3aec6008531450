"""Random protein-like atomic models and their true intensities (gemmi).

A model is a set of C/N/O/S atoms at random positions in the asymmetric unit
(about one non-hydrogen atom per 18 Å³ of protein, half the cell being
solvent) with atomic B factors around ``b_atom``; its structure factors are
computed with gemmi's DensityCalculatorX + FFT.  Random atoms give Wilson
statistics (acentric |F|² exponentially distributed) and the atomic B gives
a realistic fall-off with resolution.
"""

from __future__ import annotations

from dataclasses import dataclass

import gemmi
import numpy as np

_ELEMENTS = ("C", "N", "O", "S")
_ELEMENT_P = (0.63, 0.17, 0.19, 0.01)
_KEY = 1024  # packing base for hkl keys (|h| < 512)


@dataclass
class TrueIntensities:
    """True intensities of one crystal form in its space group's ASU.

    ``hkl`` (N×3 int), ``intensity`` (N, |F|² in electrons², no crystal scale/B),
    ``d`` (N, Å).  :meth:`lookup` maps any P1 indices to these values.
    """

    space_group: str
    cell: tuple[float, float, float, float, float, float]
    hkl: np.ndarray
    intensity: np.ndarray
    d: np.ndarray
    _keys: np.ndarray | None = None
    _vals: np.ndarray | None = None

    def _expand(self) -> None:
        """Sorted keys of all symmetry and Friedel mates of the ASU set, with their ASU index."""
        sg = gemmi.SpaceGroup(self.space_group)
        keys, index = [], []
        rows = np.arange(len(self.hkl))
        for op in sg.operations().sym_ops:
            rot = np.array(op.rot, dtype=np.int64) // gemmi.Op.DEN
            for sign in (1, -1):
                keys.append(pack_hkl(sign * (self.hkl @ rot)))
                index.append(rows)
        k, first = np.unique(np.concatenate(keys), return_index=True)
        self._keys, self._vals = k, np.concatenate(index)[first]

    def asu_index(self, hkl: np.ndarray) -> np.ndarray:
        """Row of the ASU reflection equivalent to each of ``hkl`` (N×3); −1 where none."""
        if self._keys is None:
            self._expand()
        assert self._keys is not None and self._vals is not None
        k = pack_hkl(hkl)
        pos = np.clip(np.searchsorted(self._keys, k), 0, len(self._keys) - 1)
        return np.where(self._keys[pos] == k, self._vals[pos], -1)

    def lookup(self, hkl: np.ndarray) -> np.ndarray:
        """|F|² of arbitrary indices (N×3); NaN where not in the set (absences, beyond d_min)."""
        row = self.asu_index(hkl)
        return np.where(row >= 0, self.intensity[np.maximum(row, 0)], np.nan)


def pack_hkl(hkl: np.ndarray) -> np.ndarray:
    """One int64 key per Miller index triple (|h|,|k|,|l| < 512)."""
    h = np.asarray(hkl, dtype=np.int64) + _KEY // 2
    return (h[:, 0] * _KEY + h[:, 1]) * _KEY + h[:, 2]


def random_structure(
    cell: tuple[float, ...],
    space_group: str,
    rng: np.random.Generator,
    b_atom: float = 20.0,
    solvent_fraction: float = 0.5,
) -> gemmi.Structure:
    """A random protein-like model: atoms uniformly spread over the ASU volume.

    Atom count = (1 − solvent_fraction)·V_cell / (18 Å³ · number of symmetry
    operators); B factors are b_atom ± 20 % (uniform).
    """
    uc = gemmi.UnitCell(*cell)
    sg = gemmi.SpaceGroup(space_group)
    n_ops = len(sg.operations())
    n_atoms = max(50, int((1 - solvent_fraction) * uc.volume / 18.0 / n_ops))
    frac = rng.random((n_atoms, 3))
    elements = rng.choice(len(_ELEMENTS), size=n_atoms, p=_ELEMENT_P)
    b_values = b_atom * rng.uniform(0.8, 1.2, size=n_atoms)
    return _build_structure(uc, sg, frac, elements, b_values)


def perturb_structure(
    st: gemmi.Structure, rng: np.random.Generator, fraction: float = 0.3
) -> gemmi.Structure:
    """A related model: ``fraction`` of the atoms moved to new random positions.

    Used for a non-isomorphous population (same fold, different contents).
    """
    atoms = [a for r in st[0][0] for a in r]
    frac = np.array([st.cell.fractionalize(a.pos).tolist() for a in atoms])
    elements = np.array([_ELEMENTS.index(a.element.name) for a in atoms])
    b_values = np.array([a.b_iso for a in atoms])
    move = rng.random(len(atoms)) < fraction
    frac[move] = rng.random((int(move.sum()), 3))
    return _build_structure(st.cell, st.find_spacegroup(), frac, elements, b_values)


def _build_structure(uc, sg, frac, elements, b_values) -> gemmi.Structure:
    st = gemmi.Structure()
    st.cell = uc
    st.spacegroup_hm = sg.xhm()
    model = gemmi.Model(1)
    chain = gemmi.Chain("A")
    res = gemmi.Residue()
    res.name = "UNK"
    res.seqid = gemmi.SeqId(1, " ")
    for i, (xyz, e, b) in enumerate(zip(frac, elements, b_values, strict=True)):
        atom = gemmi.Atom()
        atom.name = f"{_ELEMENTS[e]}{i % 1000}"
        atom.element = gemmi.Element(_ELEMENTS[e])
        atom.pos = uc.orthogonalize(gemmi.Fractional(*xyz))
        atom.b_iso = float(b)
        atom.occ = 1.0
        res.add_atom(atom)
    chain.add_residue(res)
    model.add_chain(chain)
    st.add_model(model)
    st.setup_cell_images()
    return st


def structure_intensities(st: gemmi.Structure, d_min: float) -> TrueIntensities:
    """|F|² of all unique reflections to ``d_min`` Å (no systematic absences)."""
    dc = gemmi.DensityCalculatorX()
    dc.d_min = d_min
    dc.rate = 1.5
    dc.set_refmac_compatible_blur(st[0])
    dc.grid.setup_from(st)
    dc.put_model_density_on_grid(st[0])
    grid = gemmi.transform_map_to_f_phi(dc.grid, half_l=True)
    asu = grid.prepare_asu_data(dmin=d_min, unblur=dc.blur)
    hkl = np.array(asu.miller_array, dtype=np.int64)
    f = np.abs(np.array(asu.value_array))
    keep = np.any(hkl != 0, axis=1)
    hkl, f = hkl[keep], f[keep]
    cell = st.cell
    d = np.array(cell.calculate_d_array(hkl))
    sg = st.find_spacegroup()
    return TrueIntensities(
        space_group=sg.xhm(),
        cell=cell.parameters,
        hkl=hkl,
        intensity=(f**2).astype(np.float64),
        d=d,
    )


def twin_operators(cell: tuple[float, ...], space_group: str, max_obliq: float = 3.0) -> list[str]:
    """Alternative indexings allowed by the lattice (gemmi.find_twin_laws), as hkl triplets.

    Always starts with the identity "h,k,l".
    """
    ops = gemmi.find_twin_laws(
        gemmi.UnitCell(*cell), gemmi.SpaceGroup(space_group), max_obliq, False
    )
    return ["h,k,l"] + [op.as_hkl().triplet() for op in ops]


def apply_hkl_op(triplet: str, hkl: np.ndarray) -> np.ndarray:
    """Apply an hkl operator such as "-h-k,k,-l" to N×3 indices (as gemmi's Op.apply_to_hkl)."""
    rot = np.array(gemmi.Op(triplet).rot, dtype=np.int64) // gemmi.Op.DEN
    return np.asarray(hkl, dtype=np.int64) @ rot
