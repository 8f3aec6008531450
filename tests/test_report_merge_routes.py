"""The merge reports of `mxflow run`'s two merges of one sample (OUT/merge/<sample>/: the
whole sweeps; OUT/merge_30deg/<sample>/: the 30° wedges and the sweeps that were not cut)
count only their own datasets.  The 30° merge of lysB showed a red "Not accounted for:
CPS0002-01/data00/helical_001" for the helical sweep, which by design only its wedges
represent there."""

from __future__ import annotations

import numpy as np
import pytest

from mxflow.report import write_reports
from mxflow.report.load import find_merge_dirs, load_merge_dir, load_summary
from mxflow.report.pages import merge_context
from report_fixtures import _dataset, _write_merge, summary_entry, write_summary_json

SAMPLE = "Lys"
HELICAL = "CPS0002-01/data00/helical_001"
TEMPLATE = f"/data/collection/{HELICAL}_######.cbf"


def _run_output(out, extra_sweep: bool = False):
    """A collection as `mxflow run` records it: one helical sweep (kind sweep, under proc/)
    cut into four 30° wedges (kind wedge, under proc_30deg/), and four multi-crystal small
    wedges kept whole (kind sweep), which both merges take; each merge of the datasets
    `mxflow run` gives it.  ``extra_sweep``: one more small wedge that no merge mentions."""
    rng = np.random.default_rng(3)
    made = []

    def add(name, key, kind, wedge, mode, template):
        r, _ = _dataset(
            rng,
            out,
            SAMPLE,
            name.split("/")[0],
            name.split("/")[-1],
            mode,
            wedge,
            1200 if mode == "helical" else 100,
            0.1,
            with_refl=False,
        )
        r.name, r.path, r.workdir = name, template, key
        r.integrated_expt, r.integrated_refl = f"{key}/integrated.expt", f"{key}/integrated.refl"
        made.append((r, key, kind))
        return r

    sweep = add(HELICAL, f"proc/{HELICAL}", "sweep", "full", "helical", TEMPLATE)
    wedges = [
        add(
            f"{HELICAL}_{a}-{a + 299}",
            f"proc_30deg/{HELICAL}_{a}-{a + 299}",
            "wedge",
            f"{a}-{a + 299}",
            "helical",
            TEMPLATE,
        )
        for a in (1, 301, 601, 901)
    ]
    multi = [
        add(name, f"proc/{name}", "sweep", "full", "multi", f"/data/collection/{name}_######.cbf")
        for name in (f"CPS0002-02/data00/multi_{k:03d}" for k in range(1, 5 + extra_sweep))
    ]
    write_summary_json(out, [summary_entry(r, key, kind) for r, key, kind in made])
    given = multi[:4]  # the extra one (if any) is in neither merge: unaccounted in both
    _write_merge(
        out / "merge" / SAMPLE / f"merge_cc_2.2S_{SAMPLE}", rng, SAMPLE, "cc", [sweep, *given]
    )
    _write_merge(
        out / "merge_30deg" / SAMPLE / f"merge_cc_2.2S_{SAMPLE}",
        rng,
        SAMPLE,
        "cc",
        [*wedges, *given],
    )
    return sweep, wedges, multi


def _contexts(out):
    rows = load_summary(out)
    mds = {
        md.path.relative_to(out).parts[0]: md for md in map(load_merge_dir, find_merge_dirs(out))
    }
    assert set(mds) == {"merge", "merge_30deg"}
    return {k: merge_context(md, rows, out, str(out)) for k, md in mds.items()}


def test_each_merge_counts_only_its_own_datasets(tmp_path):
    sweep, wedges, multi = _run_output(tmp_path)
    ctx = _contexts(tmp_path)
    inputs = {k: {row["name"] for row in c["inputs"]} for k, c in ctx.items()}
    assert ctx["merge_30deg"]["unaccounted"] == []
    assert ctx["merge"]["unaccounted"] == []
    # the 30° merge: the wedges and the uncut small wedges, not the helical sweep they come from
    assert inputs["merge_30deg"] == {r.name for r in [*wedges, *multi]}
    assert ctx["merge_30deg"]["n_inputs"] == len(wedges) + len(multi)
    # the full merge: the whole sweeps, none of the 30° wedges
    assert inputs["merge"] == {r.name for r in [sweep, *multi]}
    assert ctx["merge"]["n_inputs"] == 1 + len(multi)

    merge_pages = [p for p in write_reports(tmp_path) if p.name == "report.html"]
    assert len(merge_pages) == 2
    for page in merge_pages:
        html = page.read_text()
        assert "Not accounted for" not in html
        assert "every dataset is accounted for" in html


@pytest.mark.parametrize("merge", ["merge", "merge_30deg"])
def test_a_dataset_of_its_own_kind_left_out_is_still_unaccounted(tmp_path, merge):
    """The filter leaves out only the other merge's datasets: a processed small wedge that
    neither merge mentions is still flagged in both."""
    *_, multi = _run_output(tmp_path, extra_sweep=True)
    assert _contexts(tmp_path)[merge]["unaccounted"] == [multi[-1].name]
