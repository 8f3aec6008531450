"""Random protein-like atomic models and their true intensities (gemmi).

A model is a set of C/N/O/S atoms at random positions in the asymmetric unit
(about one non-hydrogen atom per 18 Å³ of protein, half the cell being
solvent) with atomic B factors around ``b_atom``; its structure factors are
computed with gemmi's DensityCalculatorX + FFT.  Random atoms give Wilson
statistics (acentric |F|² exponentially distributed) and the atomic B gives
a realistic fall-off with resolution.

Anomalous scatterers (:func:`add_heavy_atoms`) break Friedel's law.  With
f = f₀ + f′ + i f″ for the heavy atoms and the crystallographic convention
F(h) = Σ f exp(2πi h·x),

    F(+h) = F_real(h) + i f″ G(h),    F(−h)* = F_real(h) − i f″ G(h),

where F_real is the structure factor with f₀ + f′ only (the FFT, with f′
as a gemmi addend) and G(h) = Σ_sites Σ_ops exp(−B s²/4) exp(2πi h·(R x + t))
the heavy atoms' geometric sum, so I(+) = |F_real + i f″ G|² and
I(−) = |F_real − i f″ G|².  Centric reflections keep I(+) = I(−).
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
    intensity: np.ndarray  # I(+) of the ASU index when Friedel's law does not hold
    d: np.ndarray
    # I(−) = |F(−h)|² of each ASU index; None: Friedel's law holds (I(−) = I(+))
    intensity_minus: np.ndarray | None = None
    _keys: np.ndarray | None = None
    _vals: np.ndarray | None = None
    _signs: np.ndarray | None = None

    def _expand(self) -> None:
        """Sorted keys of all symmetry and Friedel mates of the ASU set, with their ASU
        index and sign (+1: equivalent to h, −1: to −h)."""
        sg = gemmi.SpaceGroup(self.space_group)
        keys, index, signs = [], [], []
        rows = np.arange(len(self.hkl))
        for op in sg.operations().sym_ops:
            rot = np.array(op.rot, dtype=np.int64) // gemmi.Op.DEN
            for sign in (1, -1):
                keys.append(pack_hkl(sign * (self.hkl @ rot)))
                index.append(rows)
                signs.append(np.full(len(rows), sign, dtype=np.int8))
        k, first = np.unique(np.concatenate(keys), return_index=True)
        self._keys, self._vals = k, np.concatenate(index)[first]
        self._signs = np.concatenate(signs)[first]

    def asu_index_sign(self, hkl: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(row, sign) of the ASU reflection equivalent to each of ``hkl`` (N×3): sign +1
        when hkl is a symmetry mate of the ASU index, −1 when of its Friedel mate
        (row −1, sign 0 where none)."""
        if self._keys is None:
            self._expand()
        assert self._keys is not None and self._vals is not None and self._signs is not None
        k = pack_hkl(hkl)
        pos = np.clip(np.searchsorted(self._keys, k), 0, len(self._keys) - 1)
        found = self._keys[pos] == k
        return np.where(found, self._vals[pos], -1), np.where(found, self._signs[pos], 0)

    def asu_index(self, hkl: np.ndarray) -> np.ndarray:
        """Row of the ASU reflection equivalent to each of ``hkl`` (N×3); −1 where none."""
        return self.asu_index_sign(hkl)[0]

    @property
    def anomalous(self) -> bool:
        return self.intensity_minus is not None

    @property
    def mean_intensity(self) -> np.ndarray:
        """(I(+) + I(−)) / 2 of each ASU reflection: what a Friedel-merged file measures."""
        if self.intensity_minus is None:
            return self.intensity
        return 0.5 * (self.intensity + self.intensity_minus)

    @property
    def delta_i(self) -> np.ndarray:
        """True Bijvoet difference I(+) − I(−) of each ASU reflection (0 without anomalous)."""
        if self.intensity_minus is None:
            return np.zeros_like(self.intensity)
        return self.intensity - self.intensity_minus

    def lookup(self, hkl: np.ndarray) -> np.ndarray:
        """|F(h)|² of arbitrary indices (N×3), I(+) or I(−) as the index says; NaN where
        not in the set (absences, beyond d_min)."""
        row, sign = self.asu_index_sign(hkl)
        r = np.maximum(row, 0)
        value = self.intensity[r]
        if self.intensity_minus is not None:
            value = np.where(sign < 0, self.intensity_minus[r], value)
        return np.where(row >= 0, value, np.nan)


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


@dataclass
class AnomalousScatterers:
    """Heavy-atom sites of a model and their scattering at the simulated wavelength.

    ``element``; ``sites`` (N×3 fractional coordinates of the ASU copies);
    ``b_iso`` (Å²); ``f_prime`` / ``f_double_prime`` (electrons, gemmi's
    Cromer–Liberman at ``energy_ev``).
    """

    element: str
    sites: np.ndarray
    b_iso: float
    f_prime: float
    f_double_prime: float
    energy_ev: float


def add_heavy_atoms(
    st: gemmi.Structure,
    element: str,
    frac: np.ndarray,
    wavelength: float,
    b_iso: float = 20.0,
) -> AnomalousScatterers:
    """Put atoms of ``element`` at the fractional positions ``frac`` (N×3) into ``st``
    (in place) and return them with f′, f″ at ``wavelength`` Å."""
    from scipy.constants import c, e, h

    energy = h * c / e / (wavelength * 1e-10)
    el = gemmi.Element(element)
    fp, fpp = gemmi.cromer_liberman(z=el.atomic_number, energy=energy)
    frac = np.asarray(frac, dtype=np.float64).reshape(-1, 3)
    res = st[0][0][0]
    for i, xyz in enumerate(frac):
        atom = gemmi.Atom()
        atom.name = f"{el.name.upper()}{i + 1}"[:4]
        atom.element = el
        atom.pos = st.cell.orthogonalize(gemmi.Fractional(*xyz))
        atom.b_iso = float(b_iso)
        atom.occ = 1.0
        res.add_atom(atom)
    st.setup_cell_images()
    return AnomalousScatterers(el.name, frac, float(b_iso), float(fp), float(fpp), float(energy))


def heavy_atom_sum(
    hkl: np.ndarray, cell: gemmi.UnitCell, space_group: str, ha: AnomalousScatterers
) -> np.ndarray:
    """G(h) = Σ_sites Σ_ops exp(−B s²/4) exp(2πi h·(R x + t)) for N×3 ``hkl`` (complex N).

    The sum runs over every operation of the space group (centring included),
    as the FFT's density does; s² = 1/d² in Å⁻².
    """
    hkl = np.asarray(hkl, dtype=np.float64)
    s2 = np.array(cell.calculate_1_d2_array(hkl.astype(np.int32)))
    total = np.zeros(len(hkl), dtype=np.complex128)
    for op in gemmi.SpaceGroup(space_group).operations():
        rot = np.array(op.rot, dtype=np.float64) / gemmi.Op.DEN
        tran = np.array(op.tran, dtype=np.float64) / gemmi.Op.DEN
        xs = ha.sites @ rot.T + tran  # images of every site under this op
        total += np.exp(2j * np.pi * (hkl @ xs.T)).sum(axis=1)
    return total * np.exp(-ha.b_iso * s2 / 4.0)


def structure_factors(
    st: gemmi.Structure, d_min: float, addends: dict[str, float] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(hkl N×3, complex F N) of the ASU to ``d_min`` Å, F(0,0,0) left out.

    ``addends``: f′ (electrons) per element symbol, added to f₀ of those atoms.
    """
    dc = gemmi.DensityCalculatorX()
    dc.d_min = d_min
    dc.rate = 1.5
    for symbol, fp in (addends or {}).items():
        dc.addends.set(gemmi.Element(symbol), fp)
    dc.set_refmac_compatible_blur(st[0])
    dc.grid.setup_from(st)
    dc.put_model_density_on_grid(st[0])
    grid = gemmi.transform_map_to_f_phi(dc.grid, half_l=True)
    asu = grid.prepare_asu_data(dmin=d_min, unblur=dc.blur)
    hkl = np.array(asu.miller_array, dtype=np.int64)
    f = np.array(asu.value_array)
    keep = np.any(hkl != 0, axis=1)
    return hkl[keep], f[keep]


def structure_intensities(
    st: gemmi.Structure, d_min: float, heavy: AnomalousScatterers | None = None
) -> TrueIntensities:
    """|F|² of all unique reflections to ``d_min`` Å (no systematic absences).

    With ``heavy`` (atoms already in ``st``), I(+) and I(−) as the module
    docstring says; without, Friedel's law holds.
    """
    addends = {heavy.element: heavy.f_prime} if heavy else None
    hkl, f = structure_factors(st, d_min, addends)
    cell = st.cell
    d = np.array(cell.calculate_d_array(hkl))
    sg = st.find_spacegroup()
    if heavy is None:
        return TrueIntensities(
            space_group=sg.xhm(), cell=cell.parameters, hkl=hkl, intensity=np.abs(f) ** 2, d=d
        )
    g = 1j * heavy.f_double_prime * heavy_atom_sum(hkl, cell, sg.xhm(), heavy)
    return TrueIntensities(
        space_group=sg.xhm(),
        cell=cell.parameters,
        hkl=hkl,
        intensity=np.abs(f + g) ** 2,
        d=d,
        intensity_minus=np.abs(f - g) ** 2,
    )


def bijvoet_ratio(truth: TrueIntensities) -> float:
    """⟨|ΔF|⟩ / ⟨F⟩ over acentric reflections, F = √I (0 when Friedel's law holds)."""
    if truth.intensity_minus is None:
        return 0.0
    ops = gemmi.SpaceGroup(truth.space_group).operations()
    acentric = ~np.asarray(ops.centric_flag_array(truth.hkl.astype(np.int32)), dtype=bool)
    fp = np.sqrt(truth.intensity[acentric])
    fm = np.sqrt(truth.intensity_minus[acentric])
    return float(np.mean(np.abs(fp - fm)) / np.mean(0.5 * (fp + fm)))


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
