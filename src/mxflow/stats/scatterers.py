"""Anomalous scatterers at a wavelength: absorption edges, f′ and f″, in plain words.

Units: energies in eV, wavelengths in Å, f′ / f″ in electrons.  Energy and
wavelength are related by E = hc / λ with CODATA's h, c and e
(:data:`HC_EV_A`, from scipy.constants).  Edge energies come from xraydb's
tables (Elam et al.), f′ / f″ from gemmi's Cromer–Liberman calculation
(valid for Z = 3 to 92, which :func:`check_element` enforces).  Only the
K and L edges are considered (:data:`EDGES`): the M edges of the elements
here lie below 5 keV, outside the range of macromolecular data collection.

:func:`heavy_atom_at` describes a given heavy atom (``--heavy-atom``, xia2's
``atom=``) at the data's wavelength; :func:`edges_near` lists the edges of
the common heavy atoms (:data:`COMMON_HEAVY_ATOMS`) close to a wavelength,
which :func:`edge_note` words for a dataset that may be anomalous data.
Computing and wording are apart: the ``*_note`` functions only format.
"""

from __future__ import annotations

import argparse
import math
import re
from dataclasses import dataclass

import gemmi
import scipy.constants
import xraydb

from mxflow.model import HeavyAtom

#: hc in eV·Å (CODATA, scipy.constants): E[eV] = HC_EV_A / λ[Å]
HC_EV_A = scipy.constants.h * scipy.constants.c / scipy.constants.e * 1e10
#: the absorption edges considered (xraydb's names)
EDGES = ("K", "L1", "L2", "L3")
#: atomic numbers gemmi's Cromer–Liberman f′/f″ cover
Z_RANGE = (3, 92)
#: heavy atoms whose edges :func:`edges_near` looks for (names only: energies from xraydb)
COMMON_HEAVY_ATOMS = (
    "Mn", "Fe", "Co", "Ni", "Cu", "Zn", "Ga", "Se", "Br", "Kr", "Rb", "Sr", "Y", "Mo",
    "Cd", "I", "Xe", "Sm", "Eu", "Gd", "Tb", "Ho", "Er", "Yb", "Lu", "Ta", "W", "Re",
    "Os", "Ir", "Pt", "Au", "Hg", "Tl", "Pb", "U",
)  # fmt: skip
#: eV above / below an edge within which a wavelength counts as "at the edge"
#: (a peak or inflection wavelength is chosen a few eV to a few tens of eV about it)
WINDOW_ABOVE_EV = 50.0
WINDOW_BELOW_EV = 10.0
#: f″ below this fraction of its value just above the next edge up: "little signal"
LITTLE_SIGNAL_FRACTION = 0.5
#: eV above an edge at which f″ "just above the edge" is taken
JUST_ABOVE_EV = 10.0
#: most heavy-atom sites per asymmetric unit a sheet or command line may give (a typo guard)
MAX_SITES = 9999


@dataclass(frozen=True)
class NearbyEdge:
    """An absorption edge close to the energy of the data (:func:`edges_near`).

    ``edge_ev`` and ``energy_ev`` in eV; ``offset_ev`` = energy − edge
    (above the edge when positive).
    """

    element: str
    edge: str
    edge_ev: float
    energy_ev: float

    @property
    def offset_ev(self) -> float:
        return self.energy_ev - self.edge_ev


# -- computing ------------------------------------------------------------------


def energy_ev(wavelength_a: float) -> float:
    """Photon energy (eV) of X-rays of wavelength ``wavelength_a`` (Å, above 0)."""
    if not (math.isfinite(wavelength_a) and wavelength_a > 0):
        raise ValueError(f"wavelength {wavelength_a!r} Å must be a number above 0")
    return HC_EV_A / wavelength_a


def wavelength_a(energy: float) -> float:
    """Wavelength (Å) of X-rays of energy ``energy`` (eV, above 0)."""
    if not (math.isfinite(energy) and energy > 0):
        raise ValueError(f"energy {energy!r} eV must be a number above 0")
    return HC_EV_A / energy


def check_element(symbol: str) -> str:
    """The canonical symbol of an element given as ``symbol`` ("zn", "ZN", "zinc" → "Zn").

    Raises ValueError, naming the value, when it is not an element of Z 3–92
    (the range gemmi's Cromer–Liberman f′/f″ cover).
    """
    text = str(symbol).strip()
    z = gemmi.Element(text).atomic_number if text.isalpha() and len(text) <= 2 else 0
    if z == 0 and text.isalpha() and len(text) > 2:
        try:  # an element name, as xraydb spells them
            z = xraydb.atomic_number(text.lower())
        except ValueError:
            z = 0
    if z == 0:
        raise ValueError(
            f"heavy atom {symbol!r} is not a chemical element symbol (e.g. Zn, Se, Br, Hg)"
        )
    if not Z_RANGE[0] <= z <= Z_RANGE[1]:
        raise ValueError(
            f"heavy atom {symbol!r} (Z {z}) is outside Z {Z_RANGE[0]}–{Z_RANGE[1]}, where "
            "f′/f″ are tabulated"
        )
    return gemmi.Element(z).name


def parse_sites(text: str) -> int:
    """The expected number of heavy-atom sites per asymmetric unit from ``text``: a whole
    number from 1 to :data:`MAX_SITES` (ASCII digits).  Raises ValueError naming the value."""
    value = str(text).strip()
    if not re.fullmatch(r"[0-9]{1,4}", value) or not 1 <= int(value) <= MAX_SITES:
        raise ValueError(f"sites {text!r} must be a whole number from 1 to {MAX_SITES}")
    return int(value)


def element_edges(element: str) -> list[tuple[str, float]]:
    """(edge, energy in eV) of :data:`EDGES` of ``element`` (xraydb), lowest energy first."""
    table = xraydb.xray_edges(check_element(element))
    return sorted(((e, float(table[e].energy)) for e in EDGES if e in table), key=lambda x: x[1])


def f_prime_double_prime(element: str, energy: float) -> tuple[float, float]:
    """(f′, f″) in electrons of ``element`` at ``energy`` eV (Cromer–Liberman, gemmi)."""
    z = gemmi.Element(check_element(element)).atomic_number
    fp, fpp = gemmi.cromer_liberman(z=z, energy=energy)
    return float(fp), float(fpp)


def heavy_atom_at(element: str, wavelength: float, n_sites: int | None = None) -> HeavyAtom:
    """``element`` as the anomalous scatterer of data at ``wavelength`` Å.

    f′ / f″ (electrons) from Cromer–Liberman; ``edge`` / ``edge_ev`` the
    nearest edge below the energy (empty / NaN when the energy is below
    all of them); ``note`` says where the energy lies relative to the
    edges and what that means (:func:`heavy_atom_note`).  Raises ValueError
    for an unknown element (:func:`check_element`) or a wavelength ≤ 0.
    """
    symbol = check_element(element)
    e = energy_ev(wavelength)
    fp, fpp = f_prime_double_prime(symbol, e)
    edges = element_edges(symbol)
    below = [x for x in edges if x[1] <= e]
    above = [x for x in edges if x[1] > e]
    edge, edge_e = below[-1] if below else ("", math.nan)
    atom = HeavyAtom(symbol, e, fp, fpp, edge, edge_e, n_sites)
    next_up = above[0] if above else None
    fpp_peak = f_prime_double_prime(symbol, next_up[1] + JUST_ABOVE_EV)[1] if next_up else math.nan
    atom.note = heavy_atom_note(atom, wavelength, next_up, fpp_peak)
    return atom


def heavy_atom_or_note(
    element: str, wavelength: float | None, n_sites: int | None = None
) -> HeavyAtom:
    """:func:`heavy_atom_at`, never raising: for an unknown element or an unknown
    wavelength the HeavyAtom has NaN f′/f″ and a ``note`` saying why (the data
    are still treated as anomalous)."""
    try:
        symbol = check_element(element)
    except ValueError as exc:
        e = energy_ev(wavelength) if wavelength and wavelength > 0 else math.nan
        return HeavyAtom(
            str(element), e, math.nan, math.nan, n_sites=n_sites, note=bad_element_note(exc)
        )
    if wavelength is None or not (math.isfinite(wavelength) and wavelength > 0):
        return HeavyAtom(
            symbol, math.nan, math.nan, math.nan, n_sites=n_sites,
            note=f"{symbol}: wavelength unknown, so no f′/f″",
        )  # fmt: skip
    return heavy_atom_at(symbol, wavelength, n_sites)


def edges_near(
    wavelength: float,
    window_above_ev: float = WINDOW_ABOVE_EV,
    window_below_ev: float = WINDOW_BELOW_EV,
    elements: tuple[str, ...] = COMMON_HEAVY_ATOMS,
) -> list[NearbyEdge]:
    """The edges of ``elements`` from ``window_below_ev`` eV above the energy of
    ``wavelength`` Å to ``window_above_ev`` eV below it (the data lie just above
    the edge, at its peak, or just below it, at its inflection), nearest first."""
    e = energy_ev(wavelength)
    found = [
        NearbyEdge(el, name, edge_e, e)
        for el in elements
        for name, edge_e in element_edges(el)
        if -window_below_ev <= e - edge_e <= window_above_ev
    ]
    return sorted(found, key=lambda n: (abs(n.offset_ev), n.element))


# -- wording ----------------------------------------------------------------------


def _ev_words(delta: float) -> str:
    """``12 eV`` / ``4.6 keV`` for an energy difference (eV, its size)."""
    d = abs(delta)
    return f"{d:.0f} eV" if d < 1000 else f"{d / 1000:.1f} keV"


def _relative(offset: float) -> str:
    """``12 eV above`` / ``3 eV below`` / ``at`` (an energy minus an edge, eV)."""
    if abs(offset) < 0.5:
        return "at"
    return f"{_ev_words(offset)} {'above' if offset > 0 else 'below'}"


def _f_words(fp: float, fpp: float) -> str:
    return f"f′ {fp:.1f} e, f″ {fpp:.1f} e".replace("-", "−")


def heavy_atom_note(
    atom: HeavyAtom,
    wavelength: float,
    next_edge: tuple[str, float] | None = None,
    fpp_above_next: float = math.nan,
) -> str:
    """Where ``atom``'s energy lies relative to its edges, in one sentence.

    ``next_edge``: (name, eV) of the nearest edge above the energy, and
    ``fpp_above_next`` f″ just above it: below an edge, far enough for f″ to
    be under :data:`LITTLE_SIGNAL_FRACTION` of that, the note says there is
    little anomalous signal.
    """
    head = f"λ {wavelength:.4f} Å ({atom.energy_ev:.0f} eV) is"
    el, f = atom.element, _f_words(atom.f_prime, atom.f_double_prime)
    above = atom.energy_ev - atom.edge_ev if atom.edge else math.nan
    if next_edge and next_edge[1] - atom.energy_ev <= WINDOW_BELOW_EV:
        name, e = next_edge
        return f"{head} {_relative(atom.energy_ev - e)} the {el} {name} edge ({e:.0f} eV): {f}"
    if math.isfinite(above) and above <= WINDOW_ABOVE_EV:
        return f"{head} {_ev_words(above)} above the {el} {atom.edge} edge ({atom.edge_ev:.0f} eV): {f}"
    if next_edge and atom.f_double_prime < LITTLE_SIGNAL_FRACTION * fpp_above_next:
        name, e = next_edge
        return (
            f"{head} {_ev_words(e - atom.energy_ev)} below the {el} {name} edge ({e:.0f} eV): "
            f"little anomalous signal from {el} ({f}; f″ {fpp_above_next:.1f} e just above "
            "the edge)"
        )
    if math.isfinite(above):
        return (
            f"{head} {_ev_words(above)} above the {el} {atom.edge} edge ({atom.edge_ev:.0f} eV), "
            f"away from it: {f}"
        )
    return f"{head} below every {el} edge: {f}"


def bad_element_note(exc: ValueError) -> str:
    """What processing says of a heavy atom :func:`check_element` refused."""
    return f"{exc}: anomalous processing on, without f′/f″"


def edge_note(wavelength: float, edges: list[NearbyEdge], anomalous: bool) -> str | None:
    """A dataset's note on the :func:`edges_near` its wavelength: None when there are none.

    ``anomalous``: whether the dataset is processed as anomalous already;
    when it is not, the note asks and says how to switch it on.
    """
    if not edges:
        return None
    where = " and ".join(f"{_relative(n.offset_ev)} the {n.element} {n.edge} edge" for n in edges)
    head = f"λ {wavelength:.4f} Å ({edges[0].energy_ev:.0f} eV) is {where}"
    first = edges[0].element
    if anomalous:
        return f"{head}: processed as anomalous (--heavy-atom {first} reports f′/f″)"
    return f"{head}: anomalous data? (use --anomalous or --heavy-atom {first})"


# -- command lines ------------------------------------------------------------------

#: the help of every ``--heavy-atom`` option
HEAVY_ATOM_HELP = (
    "element of the anomalous scatterer, e.g. Zn or Se (xia2's atom=): implies --anomalous, "
    "and f′/f″ at the data's wavelength are reported; a value that is not an element is "
    "warned about, not refused: processing goes on as anomalous, without f′/f″"
)
#: the help of every ``--sites`` option
SITES_HELP = "expected heavy-atom sites per asymmetric unit (recorded with the merged data)"


def sites_arg(text: str) -> int:
    """:func:`parse_sites` as an argparse ``type=`` (a usage error names the value)."""
    try:
        return parse_sites(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def cli_heavy_atom(value: str | None, option: str = "--heavy-atom") -> tuple[str | None, str]:
    """(the element to use, a warning) for a command line's heavy atom ``value``.

    A known element comes back as its canonical symbol with no warning ("");
    anything else comes back as given, with the warning to print: a typo
    does not stop processing (the data are still anomalous), it only loses f′/f″.
    """
    if value is None:
        return None, ""
    try:
        return check_element(value), ""
    except ValueError as exc:
        return value.strip(), f"mxflow: warning: {option}: {bad_element_note(exc)}"
