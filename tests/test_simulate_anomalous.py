"""The simulator's anomalous scatterers (#13): I(+) ≠ I(−) exactly as the model says,
the truth records the Bijvoet differences, and ``mxflow score`` correlates merged ΔI
with the true ΔI after its reindexing search."""

from __future__ import annotations

import gemmi
import numpy as np
import pytest

from mxflow.simulate import SimulationConfig, score, simulate
from mxflow.simulate import crystal as xtal
from mxflow.simulate.score import load_truth_population, score_anomalous
from mxflow.util.files import read_json

CELL = (40.0, 50.0, 60.0, 90.0, 90.0, 90.0)
SG = "P 21 21 21"


def heavy_only_structure(n_sites: int, rng) -> tuple[gemmi.Structure, xtal.AnomalousScatterers]:
    uc, sg = gemmi.UnitCell(*CELL), gemmi.SpaceGroup(SG)
    st = xtal._build_structure(uc, sg, np.zeros((0, 3)), np.zeros(0, int), np.zeros(0))
    return st, xtal.add_heavy_atoms(st, "Zn", rng.random((n_sites, 3)), 1.282)


def test_zn_f_double_prime_above_the_k_edge_is_gemmis():
    st, ha = heavy_only_structure(1, np.random.default_rng(0))
    assert ha.energy_ev == pytest.approx(12398.42 / 1.282, rel=1e-5)
    fp, fpp = gemmi.cromer_liberman(z=30, energy=ha.energy_ev)
    assert (ha.f_prime, ha.f_double_prime) == (fp, fpp)
    assert 3.0 < ha.f_double_prime < 4.5  # just above the Zn K edge (9659 eV)


def test_heavy_atom_sum_has_the_phase_of_the_fft_structure_factors():
    """F of a model of heavy atoms alone is (f₀ + f′)·G: one phase convention for both."""
    st, ha = heavy_only_structure(2, np.random.default_rng(1))
    hkl, f = xtal.structure_factors(st, 2.5, {"Zn": ha.f_prime})
    g = xtal.heavy_atom_sum(hkl, st.cell, SG, ha)
    big = np.abs(g) > 1.0
    ratio = f[big] / g[big]
    assert np.max(np.abs(np.angle(ratio))) < 5e-3  # FFT grid error; a flipped sign gives π
    # f₀(Zn) + f′ between ~16 e (2.5 Å) and 30 − 6.3 e (low angle)
    assert ratio.real.min() > 14 and ratio.real.max() < 24


def test_friedel_law_broken_for_acentric_reflections_only():
    rng = np.random.default_rng(2)
    st = xtal.random_structure(CELL, SG, rng)
    ha = xtal.add_heavy_atoms(st, "Zn", rng.random((2, 3)), 1.282)
    t = xtal.structure_intensities(st, 2.5, ha)
    assert t.anomalous
    centric = np.asarray(
        gemmi.SpaceGroup(SG).operations().centric_flag_array(t.hkl.astype(np.int32)), bool
    )
    assert centric.any() and (~centric).any()
    scale = t.mean_intensity.mean()
    assert np.max(np.abs(t.delta_i[centric])) < 1e-4 * scale
    assert np.mean(np.abs(t.delta_i[~centric])) > 0.02 * scale
    # Hendrickson: <|ΔF|>/<F> ≈ √(2 N_A / N_P) · f″ / Z_eff, Z_eff ≈ 6.7 for C/N/O
    n_protein = len(st[0][0][0]) - 2
    expected = np.sqrt(2 * 2 / n_protein) * ha.f_double_prime / 6.7
    assert 0.5 * expected < xtal.bijvoet_ratio(t) < 2 * expected


def test_lookup_gives_i_minus_for_friedel_mates_and_their_symmetry_mates():
    rng = np.random.default_rng(3)
    st = xtal.random_structure(CELL, SG, rng)
    ha = xtal.add_heavy_atoms(st, "Zn", rng.random((2, 3)), 1.282)
    t = xtal.structure_intensities(st, 3.0, ha)
    hkl = t.hkl[:200]
    assert np.allclose(t.lookup(hkl), t.intensity[:200])
    assert np.allclose(t.lookup(-hkl), t.intensity_minus[:200])
    # a 2-fold of P 21 21 21 on -h: (h, -k, l) is a mate of -(−h, k, −l)
    mate_of_minus = hkl * np.array([1, -1, 1])
    rows, sign = t.asu_index_sign(mate_of_minus)
    acentric = np.all(hkl != 0, axis=1)
    assert np.all(sign[acentric] == -1)
    assert np.allclose(t.lookup(mate_of_minus)[acentric], t.intensity_minus[:200][acentric])


def test_truth_files_record_the_bijvoet_differences(tmp_path):
    cfg = SimulationConfig(
        frames=2, detector_size=(487, 407), distance=100.0, d_min=3.0, unit_cell=CELL,
        heavy_atom="Zn", n_sites=3, wavelength=1.282, seed=4,
    )  # fmt: skip
    res = simulate(tmp_path, cfg)
    doc = read_json(res.truth_json)
    ano = doc["populations"][0]["anomalous"]
    assert ano["element"] == "Zn" and ano["n_sites"] == 3 and len(ano["sites_fractional"]) == 3
    assert 0.01 < ano["bijvoet_ratio"] < 0.1
    mtz = gemmi.read_mtz_file(str(res.truth_dir / "truth_A.mtz"))
    assert {"I(+)", "I(-)", "DELTAI", "IMEAN"} <= set(mtz.column_labels())
    t = load_truth_population(res.truth_dir, doc["populations"][0])
    assert t.anomalous
    data = np.array(mtz, copy=False)
    labels = mtz.column_labels()
    assert np.allclose(
        data[:, labels.index("DELTAI")], t.delta_i, rtol=1e-4, atol=1e-6 * t.intensity.max()
    )


def test_friedel_truth_has_no_anomalous_columns(tmp_path):
    cfg = SimulationConfig(frames=1, detector_size=(487, 407), distance=100.0, d_min=3.0)
    res = simulate(tmp_path, cfg)
    assert "anomalous" not in read_json(res.truth_json)["populations"][0]
    assert "I(+)" not in gemmi.read_mtz_file(str(res.truth_dir / "truth_A.mtz")).column_labels()


def test_unknown_heavy_atom_is_refused():
    with pytest.raises(ValueError, match="Xx"):
        SimulationConfig(heavy_atom="Xx")


def merged_mtz_from(t: xtal.TrueIntensities, path, op: str, noise: float, seed: int) -> None:
    """A merged MTZ (IMEAN, I(+), I(-)) in the setting op⁻¹ of the truth, with noise."""
    rng = np.random.default_rng(seed)
    inv = gemmi.Op(op).inverse()
    hkl = np.array([inv.apply_to_hkl(list(map(int, h))) for h in t.hkl])
    sd = noise * t.mean_intensity.mean()
    plus = t.intensity + rng.normal(0, sd, len(hkl))
    minus = t.intensity_minus + rng.normal(0, sd, len(hkl))
    mtz = gemmi.Mtz(with_base=True)
    mtz.spacegroup = gemmi.SpaceGroup(t.space_group)
    mtz.set_cell_for_all(gemmi.UnitCell(*t.cell))
    mtz.add_dataset("x")
    for label, kind in (("IMEAN", "J"), ("I(+)", "K"), ("I(-)", "K")):
        mtz.add_column(label, kind)
    mtz.set_data(np.column_stack([hkl, 0.5 * (plus + minus), plus, minus]).astype(np.float32))
    mtz.write_to_file(str(path))


@pytest.fixture(scope="module")
def anomalous_sim(tmp_path_factory):
    root = tmp_path_factory.mktemp("anosim")
    cfg = SimulationConfig(
        frames=1, detector_size=(487, 407), distance=100.0, d_min=2.5, space_group="P 4",
        unit_cell=(45.0, 45.0, 60.0, 90, 90, 90), heavy_atom="Se", n_sites=4,
        wavelength=0.979, seed=6,
    )  # fmt: skip
    res = simulate(root, cfg)
    doc = read_json(res.truth_json)
    return res, load_truth_population(res.truth_dir, doc["populations"][0])


@pytest.mark.parametrize("op", ["h,k,l", "k,h,-l"])
def test_score_correlates_merged_and_true_bijvoet_differences(tmp_path, anomalous_sim, op):
    res, t = anomalous_sim
    path = tmp_path / "merged.mtz"
    merged_mtz_from(t, path, op, noise=0.02, seed=1)
    out = score(path, res.truth_dir)
    assert out["cc_overall"] > 0.99  # op, or an operator equivalent to it in P 4
    assert out["anomalous"]["cc_overall"] > 0.8
    assert out["anomalous"]["shells"] and out["anomalous"]["n_matched"] > 1000
    # noise ten times larger: the correlation drops, so the figure measures something
    merged_mtz_from(t, path, op, noise=1.0, seed=1)
    assert score(path, res.truth_dir)["anomalous"]["cc_overall"] < 0.3


def test_swapped_bijvoet_mates_score_negative(anomalous_sim):
    _, t = anomalous_sim
    out = score_anomalous(t, -t.hkl, t.delta_i, "h,k,l")  # I(+) − I(−) filed under −h
    assert out["cc_overall"] < -0.99


def test_merged_file_without_bijvoet_columns_is_said_so(tmp_path, anomalous_sim):
    res, t = anomalous_sim
    mtz = gemmi.Mtz(with_base=True)
    mtz.spacegroup = gemmi.SpaceGroup(t.space_group)
    mtz.set_cell_for_all(gemmi.UnitCell(*t.cell))
    mtz.add_dataset("x")
    mtz.add_column("IMEAN", "J")
    mtz.set_data(np.column_stack([t.hkl, t.mean_intensity]).astype(np.float32))
    mtz.write_to_file(str(tmp_path / "m.mtz"))
    out = score(tmp_path / "m.mtz", res.truth_dir)
    assert out["cc_overall"] > 0.999
    assert "I(+)" in out["anomalous"]["why"]
