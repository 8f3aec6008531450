"""Heavy atoms at a wavelength: energies, edges (xraydb), f′/f″ (gemmi) and the notes."""

from __future__ import annotations

import math

import gemmi
import pytest
import xraydb

from mxflow.stats import scatterers as S


def test_energy_and_wavelength_use_codata_hc():
    # CODATA 2018: hc = 12398.419843320... eV·Å (exact since the 2019 SI)
    assert pytest.approx(12398.4198, abs=1e-3) == S.HC_EV_A
    assert S.energy_ev(1.0) == pytest.approx(12398.4198, abs=1e-3)
    assert S.wavelength_a(S.energy_ev(1.282)) == pytest.approx(1.282, abs=1e-12)
    for bad in (0.0, -1.0, math.nan):
        with pytest.raises(ValueError, match="above 0"):
            S.energy_ev(bad)


def test_zn_at_the_thas1_wavelength():
    """THAS1 seed: collected at the Zn K edge, 1.282 Å."""
    zn = S.heavy_atom_at("Zn", 1.282, n_sites=2)
    assert zn.element == "Zn" and zn.n_sites == 2
    assert zn.edge == "K" and zn.edge_ev == xraydb.xray_edges("Zn")["K"].energy == 9659.0
    assert zn.energy_ev == pytest.approx(9671.15, abs=0.05)
    assert (zn.f_prime, zn.f_double_prime) == pytest.approx(
        gemmi.cromer_liberman(z=30, energy=zn.energy_ev)
    )
    assert zn.f_prime < -5 and zn.f_double_prime > 3.5  # just above the edge: strong signal
    assert zn.note == (
        "λ 1.2820 Å (9671 eV) is 12 eV above the Zn K edge (9659 eV): f′ −6.3 e, f″ 3.9 e"
    )


def test_se_at_its_k_edge_and_just_below():
    se = S.heavy_atom_at("se", 0.9795)
    assert se.element == "Se"
    # 0.9795 Å is the Se K edge to 0.1 eV (GUIDE §7: 12.658 keV)
    assert abs(se.energy_ev - xraydb.xray_edges("Se")["K"].energy) < 0.5
    assert "is at the Se K edge (12658 eV)" in se.note
    below = S.heavy_atom_at("Se", 0.9800)
    assert "7 eV below the Se K edge (12658 eV)" in below.note
    assert below.f_double_prime < 1.0 < se.f_double_prime  # f″ jumps at the edge


def test_far_from_every_edge_says_there_is_little_signal():
    se = S.heavy_atom_at("Se", 1.5418)
    assert se.note.startswith("λ 1.5418 Å (8042 eV) is 4.6 keV below the Se K edge (12658 eV)")
    assert "little anomalous signal from Se" in se.note
    assert se.f_double_prime < 1.5
    # far above an edge: not "little", but not at the edge either
    hg = S.heavy_atom_at("Hg", 1.0)
    assert "114 eV above the Hg L3 edge (12284 eV), away from it" in hg.note
    assert "little" not in hg.note and hg.f_double_prime > 5


@pytest.mark.parametrize(
    "given,symbol", [("Zn", "Zn"), ("zn", "Zn"), ("ZN", "Zn"), (" se ", "Se"), ("zinc", "Zn")]
)
def test_check_element_gives_the_canonical_symbol(given, symbol):
    assert S.check_element(given) == symbol


@pytest.mark.parametrize(
    "bad,words",
    [
        ("Xx", "heavy atom 'Xx' is not a chemical element symbol"),
        ("", "heavy atom '' is not a chemical element symbol"),
        ("Zn2+", "heavy atom 'Zn2+' is not"),
        ("X", "heavy atom 'X' is not"),
        ("He", "(Z 2) is outside Z 3–92"),
        ("Og", "(Z 118) is outside Z 3–92"),
    ],
)
def test_bad_symbols_name_the_value(bad, words):
    with pytest.raises(ValueError) as exc:
        S.check_element(bad)
    assert words in str(exc.value)
    with pytest.raises(ValueError):
        S.heavy_atom_at(bad, 1.0)


def test_heavy_atom_or_note_never_raises():
    bad = S.heavy_atom_or_note("Xx", 1.282, n_sites=4)
    assert bad.element == "Xx" and bad.n_sites == 4
    assert math.isnan(bad.f_prime) and math.isnan(bad.f_double_prime)
    assert "'Xx' is not a chemical element symbol" in bad.note
    assert "anomalous processing on, without f′/f″" in bad.note
    assert math.isnan(S.heavy_atom_or_note("Zn", None).f_double_prime)
    assert S.heavy_atom_or_note("Zn", 1.282) == S.heavy_atom_at("Zn", 1.282)


def test_edges_near_finds_zn_at_1282():
    near = S.edges_near(1.282)
    assert [(n.element, n.edge) for n in near] == [("Zn", "K")]
    assert near[0].offset_ev == pytest.approx(12.15, abs=0.05)
    assert S.edge_note(1.282, near, anomalous=False) == (
        "λ 1.2820 Å (9671 eV) is 12 eV above the Zn K edge: anomalous data? "
        "(use --anomalous or --heavy-atom Zn)"
    )
    assert "processed as anomalous" in S.edge_note(1.282, near, anomalous=True)


def test_edges_near_the_se_edge_and_the_window():
    assert ("Se", "K") in [(n.element, n.edge) for n in S.edges_near(0.9795)]
    # 10 eV below the Se K edge is in, 20 eV below is out; 40 eV above in, 60 eV out
    k = xraydb.xray_edges("Se")["K"].energy
    at = {d: [n.element for n in S.edges_near(S.wavelength_a(k + d))] for d in (-20, -9, 40, 60)}
    assert "Se" not in at[-20] and "Se" in at[-9] and "Se" in at[40] and "Se" not in at[60]


@pytest.mark.parametrize("wavelength", [1.1, 1.3])
def test_nothing_near_a_wavelength_far_from_all_edges(wavelength):
    assert S.edges_near(wavelength) == []
    assert S.edge_note(wavelength, [], anomalous=False) is None
    # checked against every edge of the list directly
    e = S.energy_ev(wavelength)
    offsets = [
        e - edge.energy
        for el in S.COMMON_HEAVY_ATOMS
        for name, edge in xraydb.xray_edges(el).items()
        if name in S.EDGES
    ]
    assert min(o for o in offsets if o >= 0) > S.WINDOW_ABOVE_EV
    assert max(o for o in offsets if o < 0) < -S.WINDOW_BELOW_EV
