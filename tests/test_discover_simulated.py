"""Collections on data written by the simulator (ZOO layout), checked against its own record."""

from __future__ import annotations

import pytest

from mxflow.discover.collection import discover_collection
from mxflow.discover.sweeps import find_sweeps

simulate_mod = pytest.importorskip("mxflow.simulate.core")
config_mod = pytest.importorskip("mxflow.simulate.config")

LATER = 1e12  # "now" far in the future: every file has settled


def small_config(**kw):
    base = dict(layout="zoo", frames=12, osc_width=5.0, detector_size=(120, 110), d_min=4.0)
    base.update(kw)
    return config_mod.SimulationConfig(**base)


def test_simulated_zoo_helical(tmp_path):
    out = tmp_path / "session"
    res = simulate_mod.simulate(out, small_config(zoo_mode="helical", n_crystals=2))
    c = discover_collection(out, wedge_deg=30.0, now=LATER)
    assert c.layout == "zoo" and c.problems == [] and c.incomplete == []
    assert len(c.datasets) == 2
    truth = {s.template: s for s in res.sweeps}
    for d in c.datasets:
        t = truth[d.sweep.template]
        assert d.mode == "helical"
        assert (d.sweep.first, d.sweep.last, d.sweep.missing) == (t.first, t.last, [])
        assert d.sweep.osc_start == pytest.approx(t.osc_start)
        assert d.sweep.osc_width == pytest.approx(t.osc_width)
        assert d.sweep.wavelength == pytest.approx(t.wavelength)
        assert d.sweep.distance == pytest.approx(t.distance)
        assert d.sweep.beam_center == pytest.approx(t.beam_center, abs=0.01)
        assert d.sweep.image_size == t.image_size
    assert sorted(d.sample for d in c.datasets) == ["CPS0001-01", "CPS0001-02"]
    # 12 frames x 5° = 60°: two 30° wedges of 6 frames per crystal
    assert sorted((w.sample, w.wedge) for w in c.wedges) == [
        ("CPS0001-01", (1, 6)),
        ("CPS0001-01", (7, 12)),
        ("CPS0001-02", (1, 6)),
        ("CPS0001-02", (7, 12)),
    ]


def test_simulated_zoo_multi_with_sheet(tmp_path):
    out = tmp_path / "session"
    res = simulate_mod.simulate(out, small_config(zoo_mode="multi", n_crystals=3, frames=4))
    sheet = tmp_path / "sheet.csv"
    sheet.write_text("pin,name,anomalous\nCPS0001-01,sim_multi,yes\n")
    c = discover_collection(out, sample_sheet=sheet, now=LATER)
    assert sorted(d.sweep.template for d in c.datasets) == sorted(s.template for s in res.sweeps)
    assert {(d.mode, d.sample, d.anomalous) for d in c.datasets} == {("multi", "sim_multi", True)}
    assert [w.wedge for w in c.wedges] == [None, None, None]  # multi wedges are never cut
    assert find_sweeps([out]).problems == []


def test_simulated_zoo_eiger(tmp_path):
    pytest.importorskip("mxflow.images.write_nexus")
    from mxflow.images import read_frame, read_header

    out = tmp_path / "session"
    res = simulate_mod.simulate(out, small_config(format="eiger", zoo_mode="single", frames=8))
    (t,) = res.sweeps
    h = read_header(t.template)
    assert (h.format, h.n_frames, h.n_frames_expected) == ("eiger", 8, 8)
    assert h.angles == pytest.approx([t.osc_start + i * t.osc_width for i in range(8)])
    assert read_frame(t.template, 7).shape == (t.image_size[1], t.image_size[0])
    c = discover_collection(out, now=LATER)
    (d,) = c.datasets
    assert (d.sweep.template, d.mode, d.sweep.n_frames) == (t.template, "single", 8)
    assert d.sweep.osc_start == pytest.approx(t.osc_start)
    # 8 frames x 5° = 40°: a 30° wedge of 6 frames and the remaining 2
    assert [w.wedge for w in c.wedges] == [(1, 6), (7, 8)]
