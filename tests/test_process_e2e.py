"""End to end: `mxflow process` on a tiny simulated sweep plus broken ones (runs DIALS).

One run over a directory whose name has spaces and shell characters holds:
a good simulated sweep, a truncated CBF, a sweep with a missing frame, a
non-image file named like a frame, a blank sweep and a sweep of random
(unindexable) spots.  The good one must come out right, every bad one must
fail with a reason naming its file, raw files stay untouched, and a rerun
skips every finished step.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import gemmi
import numpy as np
import pytest

from conftest import requires_dials
from mtz_readers import read_with_cctbx
from mxflow.cli import main
from mxflow.simulate import score
from mxflow.stats.free_flags import free_flags
from mxflow.util.files import checksums
from process_fixtures import (
    copy_sweep,
    simulate_tiny,
    truncate,
    write_blank_sweep,
    write_noise_spot_sweep,
)

pytestmark = [pytest.mark.slow, requires_dials]


def raw_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and "truth" not in p.parts)


@pytest.fixture(scope="module")
def processed(tmp_path_factory):
    base = tmp_path_factory.mktemp("e2e")
    root = base / "my collection; $x (1)"
    sim = simulate_tiny(root / "good")
    good_files = sorted((root / "good").glob("*.cbf"))
    trunc = copy_sweep(good_files[:10], root / "trunc", "trunc")
    truncate(trunc[4])
    missing = copy_sweep(good_files[:10], root / "missing", "missing")
    missing[4].unlink()
    (root / "junk").mkdir()
    (root / "junk" / "notes_0001.cbf").write_text("this is not an image\n")
    write_blank_sweep(root / "blank", "blank")
    write_noise_spot_sweep(root / "noise", "noise")
    before = checksums(raw_files(root))
    out = base / "out dir"
    t0 = time.perf_counter()
    rc = main(["process", str(root), "--workdir", str(out), "--nproc", "2", "--no-progress"])
    wall1 = time.perf_counter() - t0
    summary = json.loads((out / "summary.json").read_text())
    return dict(
        root=root,
        out=out,
        sim=sim,
        rc=rc,
        summary=summary,
        before=before,
        wall1=wall1,
        trunc=trunc[4],
        missing=missing[4],
    )


def entry(summary, name):
    (e,) = [d for d in summary["datasets"] if d["name"] == name]
    return e


def test_good_sweep(processed):
    s, out = processed["summary"], processed["out"]
    e = entry(s, "sim_01")
    assert e["status"] == "ok", e["reason"]
    # right Laue group (the screw axes need not be found from 30°)
    assert gemmi.SpaceGroup(e["space_group"]).laue_str() == "mmm"
    # the label never contradicts its note: screws it cannot decide leave the point group
    note = e["space_group_note"] or ""
    assert "does not have" not in note and "extinguishes are observed" not in note, note
    if "undetermined" in note:
        assert gemmi.SpaceGroup(e["space_group"]).is_symmorphic(), (e["space_group"], note)
    truth = processed["sim"].crystals[0]["unit_cell"]
    for got, want in zip(e["unit_cell"], truth, strict=True):
        assert got == pytest.approx(want, rel=0.005)
    assert (out / e["unmerged_mtz"]).is_file() and (out / e["merged_mtz"]).is_file()
    assert e["unmerged_mtz"] == "sim_01/scaled.mtz"
    merged = gemmi.read_mtz_file(str(out / e["merged_mtz"]))
    assert {"IMEAN", "F"} <= {c.label for c in merged.columns}  # French–Wilson amplitudes
    # the free set, as refinement programs read it: the same by gemmi and by cctbx
    flags = np.asarray(merged.column_with_label("FreeR_flag"), dtype=int)
    assert np.array_equal(
        flags, free_flags(np.asarray(merged.make_miller_array()), merged.spacegroup)
    )
    other = read_with_cctbx(out / e["merged_mtz"])
    assert other["columns"] == merged.column_labels() and other["n_refl"] == merged.nreflections
    assert gemmi.SpaceGroup(other["space_group"]) == merged.spacegroup
    assert other["cell"] == pytest.approx(list(merged.cell.parameters), abs=1e-3)
    assert other["n_free"] == int((flags == 0).sum()) > 0
    # merged.mtz is cut at the dataset's CC½ limit; the unmerged MTZ keeps everything
    full = gemmi.read_mtz_file(str(out / "sim_01" / "merged_fullres.mtz"))
    assert merged.resolution_high() == pytest.approx(e["d_min"], abs=0.02)
    assert full.resolution_high() <= merged.resolution_high()
    cc = score(out / e["merged_mtz"], processed["sim"].truth_dir)["cc_overall"]
    print(f"CC to truth {cc:.3f}; steps:", [(x["name"], round(x["wall_s"], 1)) for x in e["steps"]])
    assert cc >= 0.9
    st = e["stats"]["overall"]
    assert st["cc_half"] > 0.9 and 0 < st["completeness"] <= 1 and st["multiplicity"] > 1
    assert e["d_min"] == pytest.approx(st["d_min"], abs=0.01)
    assert [x["name"] for x in e["steps"]][:3] == ["import", "find_spots", "index"]
    assert all(x["returncode"] == 0 for x in e["steps"])


def test_bad_inputs_fail_clearly(processed):
    s = processed["summary"]
    assert processed["rc"] == 2  # some datasets failed
    trunc = entry(s, "trunc")
    assert trunc["status"] == "failed" and processed["trunc"].name in trunc["reason"]
    assert "truncated" in trunc["reason"]
    miss = entry(s, "missing")
    assert miss["status"] == "failed" and processed["missing"].name in miss["reason"]
    assert "missing" in miss["reason"]
    blank = entry(s, "blank")
    assert blank["status"] == "failed" and "blank sweep" in blank["reason"]
    assert "blank_####.cbf" in blank["reason"]
    noise = entry(s, "noise")
    assert noise["status"] == "failed" and "indexing failed" in noise["reason"]
    problems = {Path(p["path"]).name: p["problem"] for p in s["problems"]}
    assert "notes_0001.cbf" in problems


def test_raw_files_untouched(processed):
    assert checksums(raw_files(processed["root"])) == processed["before"]


def test_rerun_skips_finished_steps(processed):
    """Run again on the good sweep only (failed datasets would be retried, which is slow)."""
    out, root = processed["out"], processed["root"]
    rc = main(
        ["process", str(root / "good"), "--workdir", str(out), "--nproc", "2", "--no-progress"]
    )
    s = json.loads((out / "summary.json").read_text())
    e = entry(s, "sim_01")
    assert rc == 0 and e["status"] == "ok"
    assert e["steps"] and all(x["skipped"] for x in e["steps"])
    assert e["wall_s"] < 10  # nothing of the good dataset ran again
    # the reused result is the same
    first = entry(processed["summary"], "sim_01")
    assert e["unit_cell"] == first["unit_cell"] and e["stats"] == first["stats"]


def process_good_with_space_group(processed, out, space_group):
    """`mxflow process` of the good sweep with --space-group; (out, its summary entry), checked ok."""
    rc = main(
        ["process", str(processed["root"] / "good"), "--workdir", str(out), "--nproc", "2",
         "--space-group", space_group, "--no-progress"]
    )  # fmt: skip
    e = entry(json.loads((out / "summary.json").read_text()), "sim_01")
    assert rc == 0 and e["status"] == "ok", e["reason"]
    return out, e


def test_known_space_group_skips_lattice_search(processed, tmp_path):
    """With the space group given, indexing uses it and the Bravais search is not run."""
    out, e = process_good_with_space_group(processed, tmp_path / "known", "P 21 21 21")
    names = [x["name"] for x in e["steps"]]
    assert names == ["import", "find_spots", "index", "refine", "integrate", "symmetry", "scale"]
    assert e["space_group"] == "P 21 21 21"
    cc = score(out / e["merged_mtz"], processed["sim"].truth_dir)["cc_overall"]
    assert cc >= 0.9


def test_wrong_space_group_is_caught(processed, tmp_path):
    """A space group the crystal does not have (tetragonal for this orthorhombic
    cell) explains too few spots; indexing without it wins, the dataset says why."""
    _, e = process_good_with_space_group(processed, tmp_path / "wrong", "P 41 21 2")
    note = e["space_group_note"]
    assert note.startswith("the given space group P 41 21 2 ") and "indexing without it" in note
    assert e["given_space_group_rejected"] == "P 41 21 2"
    assert "index_free" in [x["name"] for x in e["steps"]]
    assert gemmi.SpaceGroup(e["space_group"]).laue_str() == "mmm"
    # the label never contradicts its note: screws it cannot decide leave the point group
    note = e["space_group_note"] or ""
    assert "does not have" not in note and "extinguishes are observed" not in note, note
    if "undetermined" in note:
        assert gemmi.SpaceGroup(e["space_group"]).is_symmorphic(), (e["space_group"], note)
    truth = processed["sim"].crystals[0]["unit_cell"]
    for got, want in zip(e["unit_cell"], truth, strict=True):
        assert got == pytest.approx(want, rel=0.005)
