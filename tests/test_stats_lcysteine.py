"""mxflow.stats and engine readers on real data: l-cysteine, symmetry → scale → export.

Runs dials.symmetry, dials.scale (KB model, to keep it ~10 s) and dials.export on
the four integrated l-cysteine sweeps, then compares mxflow's table with the
data's reference numbers and with dials.scale's own summary.
"""

from __future__ import annotations

import re

import pytest

from conftest import requires_dials
from mxflow.engine.expt import read_experiments
from mxflow.engine.refl import read_reflections
from mxflow.engine.runner import run_program
from mxflow.stats.merging import format_table, stats_from_mtz

pytestmark = [pytest.mark.slow, requires_dials]


@pytest.fixture(scope="module")
def scaled(shared_data, tmp_path_factory):
    src = shared_data / "l_cysteine_integrated"
    work = tmp_path_factory.mktemp("lcys")
    inputs = [str(p) for p in sorted(src.glob("*_integrated_experiments.json"))]
    inputs += [str(p) for p in sorted(src.glob("*_integrated.pickle"))]
    steps = [
        ("dials.symmetry", inputs),
        ("dials.scale", ["symmetrized.expt", "symmetrized.refl", "model=KB"]),
        ("dials.export", ["scaled.expt", "scaled.refl"]),
    ]
    for program, args in steps:
        rec = run_program(program, args, work, log_name=f"{program}.out")
        assert rec.returncode == 0, (work / rec.log).read_text()[-2000:]
    return work


def dials_summary(log: str, key: str) -> float:
    m = re.search(rf"^{re.escape(key)}\s+([-\d.]+)", log, re.M)
    assert m, key
    return float(m.group(1))


def test_lcysteine_table(scaled):
    stats = stats_from_mtz(scaled / "scaled.mtz")
    print(format_table(stats))
    assert stats.space_group == "P 21 21 21"
    o = stats.overall
    # data README: completeness 95.3 %, multiplicity 7.5, CC½ 1.000 (0.989 outer)
    assert o.completeness == pytest.approx(0.953, abs=0.02)
    assert o.multiplicity == pytest.approx(7.5, abs=0.3)
    assert o.cc_half > 0.99
    assert stats.outer.cc_half > 0.9
    assert stats.outer.d_min == pytest.approx(0.59, abs=0.01)
    # agree with dials.scale's own summary of the same scaled data
    log = (scaled / "dials.scale.log").read_text()
    assert o.r_meas == pytest.approx(dials_summary(log, "Rmeas(I)"), abs=0.003)
    assert o.i_over_sigma == pytest.approx(dials_summary(log, "I/sigma"), rel=0.05)
    assert o.multiplicity == pytest.approx(dials_summary(log, "Multiplicity"), abs=0.15)


def test_readers_on_dials_output(scaled):
    (exp, *_rest) = read_experiments(scaled / "scaled.expt")
    assert exp.space_group == "P 21 21 21"
    t = read_reflections(scaled / "scaled.refl")
    assert set(t.identifiers) == {0, 1, 2, 3}
    assert {"miller_index", "flags", "inverse_scale_factor", "xyzobs.px.value"} <= set(t.columns)
    n_scaled = int(t.has_flag("scaled").sum())
    # dials.export writes one MTZ row per scaled reflection
    import gemmi

    assert n_scaled == gemmi.read_mtz_file(str(scaled / "scaled.mtz")).nreflections
