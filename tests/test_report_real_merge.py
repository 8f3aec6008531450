"""Every report page of a collection whose merge is a real one, written by mxflow's merge pipeline.

The merge (DIALS, about a minute; MXFLOW_TEST_REPORT_MERGE=DIR keeps it) is of
three l-cysteine sweeps and a wrong-cell copy of one (see merge_fixtures);
summary.json is written from DatasetResult objects.  Each test reads what the
merge wrote through the typed readers and checks that the page shows it.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from merge_fixtures import FAILED, METHOD_DIR, SAMPLE, WRONG
from mxflow.catalog.db import Catalog
from mxflow.catalog.merge_table import FINAL_DIR
from mxflow.catalog.summary import write_summary as write_catalog_summary
from mxflow.cli import main
from mxflow.merge.final import write_final
from mxflow.merge.outputs import read_cc_table, read_dendrogram, read_summary, write_summary
from mxflow.model import DatasetResult, MergeRecord, MergeSummary, from_dict, to_dict
from mxflow.report import write_reports
from mxflow.report.dashboard import collect_status
from test_report_pages import f2, parse

pytestmark = [pytest.mark.slow, pytest.mark.dials]


@pytest.fixture(scope="module")
def collection(real_merge, tmp_path_factory) -> tuple[Path, list[Path]]:
    import merge_fixtures

    out = merge_fixtures.write_collection(real_merge, tmp_path_factory.mktemp("real") / "OUT")
    return out, write_reports(out)


def merge_dir(out: Path) -> Path:
    return out / METHOD_DIR


def test_the_merge_is_what_the_tests_expect(collection):
    """The fixture's merge: one cluster of the three sweeps, the wrong cell rejected."""
    out, _ = collection
    ms = read_summary(merge_dir(out) / "merge_summary.json")
    assert [sorted(c.members) for c in ms.clusters if c.ok] == [
        ["20_integrated", "25_integrated", "30_integrated"]
    ]
    assert [(r.name, r.stage) for r in ms.rejected] == [(WRONG, "cell")]
    assert ms.not_merged  # the near-identical pair below the merged node


def test_every_page_written_with_working_links(collection):
    out, written = collection
    names = sorted(p.relative_to(out).as_posix() for p in written)
    assert names == sorted(
        ["report/index.html", "report/datasets.html", f"{METHOD_DIR.as_posix()}/report.html"]
    )
    for page in written:
        html = page.read_text()
        for s in re.findall(r'(?:src|href)="([^"#]+)"', html):
            if s.startswith(("data:", "/data/")) or s.endswith(".log"):
                continue
            assert (page.parent / s).exists(), f"{page.name}: broken link {s}"
    # the merge page links the files of the merge, the MTZ files of the cluster included
    html = (merge_dir(out) / "report.html").read_text()
    for name in (
        "cluster_summary.dat",
        "merge_summary.json",
        "dendrogram_cc.json",
        "cc_table.json",
    ):
        assert f'href="{name}"' in html
    ms = read_summary(merge_dir(out) / "merge_summary.json")
    for c in ms.clusters:
        assert f'href="{Path(c.merged_mtz).relative_to(METHOD_DIR.name)}"' in html


def test_merge_page_shows_the_summary(collection):
    out, _ = collection
    mdir = merge_dir(out)
    ms = read_summary(mdir / "merge_summary.json")
    t = parse(mdir / "report.html")
    html = (mdir / "report.html").read_text()
    crows = t.tables["cluster-table"]
    assert [r[0].split()[0] for r in crows] == [str(c.id) for c in ms.clusters]
    for r, c in zip(crows, ms.clusters, strict=True):
        assert r[0] == f"{c.id} {c.final_run}"
        assert r[1] == str(len(c.members))
        assert r[2] == c.space_group
        assert r[3] == f2(c.d_min)
        assert r[4] == f2(100 * c.completeness, ".1f")
        assert r[5] == f2(c.multiplicity, ".1f")
        assert r[8] == f2(c.cc_half, ".3f")
        assert r[13] == f2(c.cc_half_outer, ".3f")
        section = html.split(f'id="cl-{c.id}"')[1].split("</details>")[0]
        assert f"Members: {', '.join(c.members)}" in section
        runs = t.tables[f"runs-{c.id}"]
        assert [r[0].split()[0] for r in runs] == [run.name for run in c.runs]
        final = next(r for r in runs if "(final)" in r[0])
        assert final[2] == f2(c.d_min) and final[3] == f2(c.cc_half, ".3f")
        # the per-shell table is the cluster's MergingStats
        shells = html.split(f'id="cl-{c.id}"')[1].split("</table>")[0].count("<tr")
        assert shells == 1 + len(c.stats.shells) + 1  # header, shells, overall
    # KAMO's table from the same types, the same numbers as cluster_summary.dat
    dat = (mdir / "cluster_summary.dat").read_text().splitlines()
    kamo = t.tables["kamo-table"]
    assert len(kamo) == len(dat) - 1
    for row, line in zip(kamo, dat[1:], strict=True):
        cols = dict(zip(dat[0].split(), line.split(), strict=True))
        assert row[:7] == [
            cols[k] for k in ("cluster", "ClH", "LCV", "aLCV", "run", "ds.all", "ds.used")
        ]
        assert row[11] == cols["CC1/2"] and row[7] == cols["Cmpl"]
    rej = t.tables["rejected-table"]
    assert [(r[0], r[1], r[2]) for r in rej] == [(x.name, x.stage, x.reason) for x in ms.rejected]
    notm = t.tables["notmerged-table"]
    assert [(r[0], r[1], r[2]) for r in notm] == [
        (str(n.id), str(n.n_members), n.why) for n in ms.not_merged
    ]
    # accounting: 3 merged, the wrong cell rejected, the failed sweep not processed
    assert t.tables["notproc-table"][0][0] == FAILED
    assert "every dataset is accounted for" in html
    assert re.search(r"<b>5</b> datasets of this sample ·\s*<b>3</b> used", html)
    facts = dict(t.tables["facts-table"])
    assert facts["Space group (all datasets)"] == ms.space_group
    assert facts["Start resolution (Å)"] == f2(ms.d_start)
    # what the merge was asked to do, from the options it recorded
    assert facts["CC½ target of the resolution cut"] == f2(ms.options.cc_half_target)
    assert facts["Cluster thresholds"].startswith(
        f"completeness ≥ {ms.options.thresholds.min_completeness:g} %"
    )
    amb = dict(t.tables["ambiguity-table"])
    assert amb["Operators"].startswith(", ".join(ms.ambiguity.operators))
    assert len(t.tables["merge-steps"]) == len(ms.steps)


def test_merge_page_data_for_the_scripts(collection):
    out, _ = collection
    mdir = merge_dir(out)
    ms = read_summary(mdir / "merge_summary.json")
    data = json.loads(parse(mdir / "report.html").data_json)
    assert data["dendrograms"] == {"cc": to_dict(read_dendrogram(mdir / "dendrogram_cc.json"))}
    pairs = read_cc_table(mdir / "cc_table.json")
    cc = data["cc_table"]
    assert sorted(cc["names"]) == sorted({p.name_i for p in pairs} | {p.name_j for p in pairs})
    for p in pairs:
        i, j = cc["names"].index(p.name_i), cc["names"].index(p.name_j)
        assert cc["cc"][i][j] == cc["cc"][j][i] == pytest.approx(p.cc)
    datasets = {
        d["name"]: from_dict(DatasetResult, d)
        for d in json.loads((out / "summary.json").read_text())["datasets"]
    }
    for c, jc in zip(ms.clusters, data["clusters"], strict=True):
        assert (jc["id"], jc["members"], jc["d_min"]) == (c.id, c.members, c.d_min)
        assert jc["cc_half"] == pytest.approx(c.cc_half)
        assert jc["res"]["d"] == [s.d_min for s in c.stats.shells]
        files = [
            f for m in c.members for f in (datasets[m].integrated_expt, datasets[m].integrated_refl)
        ]
        assert jc["command"].split(" --workdir")[0] == "mxflow merge " + " ".join(files)
        assert f"--d-min {c.d_min:.2f}" in jc["command"]
    assert data["not_merged"] == {str(n.id): n.why for n in ms.not_merged}


def test_collection_and_dataset_pages(collection):
    out, _ = collection
    ms = read_summary(merge_dir(out) / "merge_summary.json")
    best = min((c for c in ms.clusters if c.ok), key=lambda c: c.d_min)
    t = parse(out / "report/index.html")
    html = (out / "report/index.html").read_text()
    assert (
        f"cluster {best.id}: {len(best.members)} datasets, {best.d_min:.2f} Å, "
        f"CC½ {best.cc_half:.3f}, {100 * best.completeness:.1f} % complete"
    ) in html
    (pin,) = t.tables["pin-table"]
    assert pin[0] == "CPS1234-01" and pin[1] == SAMPLE and pin[6] == "5"
    assert "merge (cc)" in pin[10]
    ds = {r[0]: r for r in parse(out / "report/datasets.html").tables["ds-table"]}
    assert sorted(ds) == sorted(["20_integrated", "25_integrated", "30_integrated", WRONG, FAILED])
    assert "failed" in ds[FAILED][-1]


def test_dashboard_lists_the_merge(collection):
    out, _ = collection
    status = collect_status(out)
    assert status["merges"] == [
        {"label": METHOD_DIR.name, "href": f"/{METHOD_DIR.as_posix()}/report.html", "written": True}
    ]
    assert status["counts"] == {"ok": 4, "failed": 1}


def test_status_command_and_summary_json_show_the_merge(collection, tmp_path, capsys):
    out, _ = collection
    ms = read_summary(merge_dir(out) / "merge_summary.json")
    best = next(c for c in ms.clusters if c.ok)
    final = write_final(ms, out / "merge/lcys", tmp_path / "merge/lcys" / FINAL_DIR)
    with Catalog(tmp_path) as cat:
        cat.record_merge(MergeRecord(f"proc/{SAMPLE}", "ok", "", ["proc/a"], "merge/lcys", ms))
        cat.record_merge(MergeRecord("proc/other", "skipped", "only 1 processed dataset(s)"))
        write_catalog_summary(tmp_path, cat)
    assert main(["status", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    lines = text.splitlines()
    i = lines.index(f"merge proc/{SAMPLE}: 1 cluster(s) merged")
    row = lines[i + 3].split()  # title, header, rule, the cluster
    assert row[:3] == ["*", str(best.id), str(len(best.members))]
    assert [f"{best.d_min:.2f}", f"{100 * best.completeness:.1f}"] == row[-5:-3]
    assert row[-2] == f"{best.cc_half:.3f}"
    assert lines[i + 4] == f"  * recommended: cluster {best.id}, the only cluster merged"
    assert lines[i + 5] == f"    merged MTZ for refinement: {final / 'merged.mtz'}"
    assert "merge proc/other: skipped: only 1 processed dataset(s)" in lines
    merges = json.loads((tmp_path / "summary.json").read_text())["merges"]
    assert [m["name"] for m in merges] == ["proc/lcys", "proc/other"]
    assert merges[0]["summary"] == to_dict(ms) and merges[1]["summary"] is None


def test_unaccounted_dataset_is_flagged(collection, tmp_path):
    out = Path(shutil.copytree(collection[0], tmp_path / "OUT"))
    p = merge_dir(out) / "merge_summary.json"
    ms = read_summary(p)
    lost = ms.clusters[0].members[-1]
    ms.clusters[0].members.remove(lost)
    write_summary(p, ms)
    write_reports(out)
    html = (p.parent / "report.html").read_text()
    assert "1 not accounted for" in html and lost in html.split("Not accounted for:")[1]


# ---------------------------------------------------------------- per-image diagnostics
def add_diagnostics(real_merge: Path, out: Path) -> MergeSummary:
    """The merge summary of ``out``, checked to hold every merged cluster's diagnostics as
    merge_cluster stored them (the same as computed again from the final run), with the DIALS
    HTML reports of its run folders copied next to the copies of the runs (the collection
    leaves them out)."""
    from mxflow.merge.diagnostics import cluster_diagnostics

    p = merge_dir(out) / "merge_summary.json"
    ms = read_summary(p)
    for c in ms.clusters:
        if not c.ok:
            continue
        run = real_merge / METHOD_DIR.parent / Path(c.merged_mtz).parent
        again = cluster_diagnostics(run, c.members, c.d_cut or c.d_min_estimate, 10)
        assert c.diagnostics is not None and c.diagnostics.run == c.final_run
        assert [x.name for x in c.diagnostics.datasets] == [x.name for x in again.datasets]
        for x, y in zip(c.diagnostics.datasets, again.datasets, strict=True):
            assert x.images.n_obs == y.images.n_obs
        assert c.diagnostics.completeness_curve == pytest.approx(again.completeness_curve)
        cdir = run.parents[len(Path(c.final_run).parts) - 1]
        for html in cdir.glob("**/dials.*.html"):
            target = p.parent / cdir.name / html.relative_to(cdir)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(html, target)
    write_summary(p, ms)
    return ms


@pytest.fixture(scope="module")
def with_diag(real_merge, tmp_path_factory) -> tuple[Path, MergeSummary]:
    import merge_fixtures

    out = merge_fixtures.write_collection(real_merge, tmp_path_factory.mktemp("diag") / "OUT")
    ms = add_diagnostics(real_merge, out)
    write_reports(out)
    return out, ms


def test_merge_page_against_image(with_diag):
    """The "Against image" section: every panel of each cluster, drawn from its diagnostics."""
    out, ms = with_diag
    mdir = merge_dir(out)
    html = (mdir / "report.html").read_text()
    data = json.loads(parse(mdir / "report.html").data_json)
    section = html.split('id="against-image"')[1].split("</section>")[0]
    for c, jc in zip(ms.clusters, data["clusters"], strict=True):
        if not c.ok:
            assert jc["diag"] is None
            continue
        d, jd = c.diagnostics, jc["diag"]
        block = section.split(f'id="diag-{c.id}"')[1].split('<div class="diag"')[0]
        panels = re.findall(r'data-img="(\w+)" data-cluster="(\d+)"', block)
        # the real data has every value: all seven panels, none said missing
        assert panels == [
            (k, str(c.id))
            for k in (
                "scale",
                "b",
                "r_merge",
                "i_over_sigma",
                "cc_rest",
                "delta_cc_half",
                "completeness",
            )
        ]
        assert "Not drawn" not in block
        assert [x["name"] for x in jd["datasets"]] == c.members == [x.name for x in d.datasets]
        for jx, x in zip(jd["datasets"], d.datasets, strict=True):
            s = x.images
            assert jx["x"] == s.centre and jx["n_obs"] == s.n_obs
            assert jx["b"] == pytest.approx(s.b, rel=1e-3, abs=1e-6)
            assert jx["r_merge"] == pytest.approx([100 * v for v in s.r_merge], rel=1e-3)
            assert jx["cc_rest"] == pytest.approx(s.cc_rest, rel=1e-3)
            assert jx["delta_cc_half"] == pytest.approx(x.delta_cc_half, rel=1e-3)
        assert jd["order"] == d.completeness_order
        assert jd["curve"][-1] == pytest.approx(100 * c.completeness, abs=0.01)
        # DIALS' own reports of the cluster's runs, linked relative to the page
        links = re.findall(r'<a href="([^"]+)">[^<]*dials\.\w+\.html</a>', block)
        assert links and all((mdir / h).is_file() for h in links)
        assert f"cluster_{c.id:04d}/{c.final_run}/dials.merge.html" in links


def test_cluster_without_diagnostics_says_so(real_merge, tmp_path):
    """A cluster whose diagnostics could not be computed: a sentence, no empty panels."""
    import merge_fixtures

    out = merge_fixtures.write_collection(real_merge, tmp_path / "OUT")
    p = merge_dir(out) / "merge_summary.json"
    stripped = read_summary(p)
    for c in stripped.clusters:
        c.diagnostics = None
    write_summary(p, stripped)
    write_reports(out)
    html = (merge_dir(out) / "report.html").read_text()
    section = html.split('id="against-image"')[1].split("</section>")[0]
    assert "data-img" not in section
    ms = read_summary(merge_dir(out) / "merge_summary.json")
    assert section.count("No per-image diagnostics for this cluster") == sum(
        c.ok for c in ms.clusters
    )
