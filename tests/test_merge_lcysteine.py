"""End-to-end `merge_sample` on the real l-cysteine sweeps (DIALS; slow)."""

from __future__ import annotations

import shutil
from pathlib import Path

import gemmi
import numpy as np
import pytest

from mtz_readers import read_cif_with_cctbx, read_with_cctbx
from mxflow.merge import merge_sample
from mxflow.merge.outputs import read_cc_table, read_dendrogram, read_summary
from mxflow.model import MergeOptions, Thresholds, to_dict

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "l_cysteine_integrated"

pytestmark = [pytest.mark.slow, pytest.mark.dials]


def _need_data():
    if not (DATA / "20_integrated_experiments.json").exists():
        pytest.skip("l_cysteine_integrated data not available")
    if shutil.which("dials.scale") is None:
        pytest.skip("DIALS not on PATH")


def test_lcysteine_merges_in_p212121(real_merge):
    """The real merge the report tests render (tests/merge_fixtures.py): sweeps 20, 25 and
    30 plus a copy of 20 with a 30 % longer a axis, d_min 1.0 Å, one cluster."""
    out = real_merge / "merge" / "lcys"
    s = read_summary(out / "merge_summary_lcys.json")
    assert [r.name for r in s.rejected if r.stage == "cell"] == ["99_integrated"]
    assert len(s.clusters) == 1
    c = s.clusters[0]
    assert c.ok, c
    assert c.space_group == "P 21 21 21"
    # the axial reflections mxflow reads agree with the screw axes DIALS assigned
    axial = {a.axis: a for a in c.axial}
    assert set(axial) == {"a", "b", "c"} and all(a.assigned == 2 for a in axial.values())
    # a full sweep of l-cysteine measures odd h00, 0k0 and 00l: all three 2₁ seen, nothing to caveat
    assert [axial[x].verdict for x in "abc"] == ["screw"] * 3
    assert c.space_group_note is None
    assert sorted(c.members) == ["20_integrated", "25_integrated", "30_integrated"]
    assert c.cc_half > 0.99 and c.completeness > 0.9
    mdir = out / "merge_cc_1.0S_lcys"
    assert (out / c.unmerged_mtz).exists()
    # the merged MTZ as refinement programs read it: gemmi and cctbx agree, FreeR_flag included
    merged = gemmi.read_mtz_file(str(out / c.merged_mtz))
    assert {"IMEAN", "SIGIMEAN", "I(+)", "I(-)", "F", "SIGF", "FreeR_flag"} <= set(
        merged.column_labels()
    )
    assert merged.spacegroup.hm == c.space_group == "P 21 21 21"
    other = read_with_cctbx(out / c.merged_mtz)
    assert other["columns"] == merged.column_labels() and other["n_refl"] == merged.nreflections
    assert gemmi.SpaceGroup(other["space_group"]) == merged.spacegroup
    assert other["cell"] == pytest.approx(list(merged.cell.parameters), abs=1e-3)
    flags = np.asarray(merged.column_with_label("FreeR_flag"), dtype=int)
    assert other["free_values"] == list(range(20))
    assert other["n_free"] == int((flags == 0).sum())
    assert 0.03 < other["n_free"] / merged.nreflections < 0.07
    # no systematically absent reflection is left (P 21 21 21: odd h00, 0k0, 00l)
    hkl = np.asarray(merged.make_miller_array(), dtype=np.int32)
    assert not np.asarray(merged.spacegroup.operations().systematic_absences(hkl)).any()
    assert any("systematic absences removed" in h for h in merged.history)
    # named for the sample and the wavelength, not DIALS / XTAL / NATIVE
    named = [d for d in merged.datasets if d.project_name != "HKL_base"]
    assert [(d.project_name, d.crystal_name) for d in named] == [("lcys", "lcys")]
    assert named[0].dataset_name == f"{named[0].wavelength:.4f}A" == "0.6889A"
    unmerged = gemmi.read_mtz_file(str(out / c.unmerged_mtz))
    u_named = [d for d in unmerged.datasets if d.project_name != "HKL_base"]
    assert [(d.project_name, d.crystal_name, d.dataset_name) for d in u_named] == [
        ("lcys", "lcys", "0.6889A")
    ]
    assert any(f"cluster {c.id} of sample lcys" in h for h in unmerged.history)
    assert unmerged.spacegroup == merged.spacegroup
    # the cluster's cell is the merged data's, with its spread over the members
    assert c.unit_cell == pytest.approx(merged.cell.parameters, abs=1e-4)
    assert c.unit_cell_spread is not None and max(c.unit_cell_spread[:3]) < 0.05
    # Wilson B as refinement programs compute it: dials.merge's ML estimate, read from its log
    assert c.wilson_b_source == "dials.merge" and 0 < c.wilson_b < 20
    # the unmerged mmCIF for deposition reads back with gemmi and cctbx, cell and symmetry included
    final_run = out / Path(c.merged_mtz).parent
    block = gemmi.cif.read(str(final_run / "unmerged.cif")).sole_block()
    rows = block.find("_diffrn_refln.", ["index_h", "index_k", "index_l", "intensity_net"])
    full = final_run / "unmerged_fullres.mtz"  # dials.export's, all the data
    n_unmerged = gemmi.read_mtz_file(str(full)).nreflections
    assert 0.9 * n_unmerged < len(rows) <= n_unmerged
    assert block.find_value("_symmetry.space_group_name_H-M") == "'P 21 21 21'"
    other = read_cif_with_cctbx(final_run / "unmerged.cif")
    assert other["n"] == len(rows) and other["space_group"] == "P 21 21 21"
    assert other["cell"] == pytest.approx(list(merged.cell.parameters), abs=1e-3)
    dat = (mdir / "cluster_summary.dat").read_text().splitlines()
    assert dat[0].split()[:4] == ["cluster", "ClH", "LCV", "aLCV"] and len(dat) == 2
    assert len(dat[1].split()) == len(dat[0].split())
    dendro = read_dendrogram(mdir / "dendrogram_cc.json")
    assert len(dendro.leaves) == 3
    assert [n.id for n in dendro.nodes] == [3, 4]
    assert dendro.nodes[-1].merged and len(dendro.nodes[-1].members) == 3
    table = read_cc_table(mdir / "cc_table.json")
    assert len(table) == 3 and all(r.cc > 0.9 and r.n_common > 100 for r in table)
    assert to_dict(read_summary(mdir / "merge_summary.json")) == to_dict(s.for_method("cc"))


def test_single_dataset_below_completeness_is_recorded(tmp_path):
    _need_data()
    opts = MergeOptions(
        sample="one",
        d_min=1.0,
        thresholds=Thresholds(min_completeness=101.0),
        fallback_largest=False,
        space_group="P 21 21 21",
    )
    s = merge_sample([DATA / "35_integrated_experiments.json"], tmp_path, opts)
    assert s.clusters == []
    assert len(s.not_merged) == 1 and "completeness" in s.not_merged[0].why
    assert (tmp_path / "merge_cc_1.0S_one" / "merge_summary.json").exists()
