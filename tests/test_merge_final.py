"""The recommended cluster of a merge, its final/ folder, and the cluster tables that
`mxflow merge`, `mxflow run` and `mxflow status` print."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from mxflow.catalog.db import Catalog
from mxflow.catalog.merge_table import FINAL_DIR, format_clusters, format_record
from mxflow.cli import main
from mxflow.merge.cli import format_summary
from mxflow.merge.final import recommend, write_final
from mxflow.model import ClusterResult, MergeRecord, MergeSummary, MergingStats, ShellStats


def cluster(
    cid: int, mult: float, cc: float, n: int = 3, error: str = "", d: float = 1.5
) -> ClusterResult:
    shell = ShellStats(
        50.0, d, completeness=0.95, multiplicity=mult, cc_half=cc, i_over_sigma=12.34
    )
    stats = None if error else MergingStats.one_shell(shell)
    run = f"merge_cc_1.0S_s/cluster_{cid:04d}/run_03"
    return ClusterResult(
        cid,
        "cc",
        [f"ds{i}" for i in range(n)],
        members=[f"ds{i}" for i in range(n)],
        error=error,
        final_run="run_03",
        space_group="P 21 21 21",
        unit_cell=(11.1, 12.2, 13.3, 90.0, 90.0, 90.0),
        stats=stats,
        merged_mtz="" if error else f"{run}/merged.mtz",
        unmerged_mtz="" if error else f"{run}/unmerged.mtz",
    )


def summary_of(*clusters: ClusterResult) -> MergeSummary:
    return MergeSummary("s", clusters=list(clusters))


# ------------------------------------------------------------------ the rule
def test_recommend_takes_the_highest_cc_half_of_the_most_redundant_half():
    a, b = cluster(10, 8.0, 0.95), cluster(11, 6.0, 0.99)
    c, d = cluster(12, 3.0, 0.999), cluster(13, 2.0, 0.9999)  # better CC½, less redundant
    best, why = recommend(summary_of(c, a, d, b))
    assert best is b
    assert (
        "highest CC½ (0.990)" in why
        and "the 2 most redundant of 4 merged clusters" in why
        and "≥ 6.0" in why
    )
    # an odd number: the top half is rounded up (2 of 3), so c is out but b stays in
    assert recommend(summary_of(a, b, c))[0] is b
    assert recommend(summary_of(a, cluster(14, 2.0, 0.99), c))[0] is c


def test_recommend_ignores_failed_clusters_and_nan():
    failed = cluster(20, 0.0, 0.0, error="dials.scale failed")
    failed.stats = MergingStats.one_shell(ShellStats(50, 1.0, multiplicity=99.0, cc_half=1.0))
    only = cluster(21, 3.0, 0.9)
    assert recommend(summary_of(failed, only)) == (only, "the only cluster merged")
    nan_cc = cluster(22, 9.0, math.nan)
    low = cluster(23, 1.0, 0.99)
    assert recommend(summary_of(nan_cc, only, low))[0] is only  # NaN CC½ never wins
    best, why = recommend(summary_of(nan_cc, only))  # the top half of 2 is 1
    assert best is nan_cc and why == "highest multiplicity (9.0) of 2 merged clusters (KAMO's rule)"
    assert recommend(summary_of(failed)) is None
    assert recommend(MergeSummary("s")) is None


# ------------------------------------------------------------------ the table
def test_format_clusters_marks_the_recommended_cluster():
    a, b = cluster(10, 8.0, 0.95, n=5), cluster(11, 6.0, 0.99, n=4, d=1.234)
    s = summary_of(a, b, cluster(12, 1.0, 0.5, n=2), cluster(13, 1.0, 0.5, error="boom"))
    text = format_clusters(s, recommend(s), "OUT/merge/s/final/merged.mtz")
    lines = text.splitlines()
    assert lines[0] == "sample s: 3 cluster(s) merged, 1 failed"
    assert lines[1].split() == ["cluster", "n", "SG", "cell", "d/Å", "cmpl%", "mult", "CC½", "I/σ"]
    rows = {ln.split()[0]: ln.split() for ln in lines[3:6]}
    assert rows["10"] == ["10", "5", "P", "21", "21", "21", "11.10", "12.20", "13.30", "90.0",
                          "90.0", "90.0", "1.50", "95.0", "8.0", "0.950", "12.3"]  # fmt: skip
    assert rows["*"][:3] == ["*", "11", "4"] and rows["*"][-5:] == ["1.23", "95.0", "6.0", "0.990", "12.3"]  # fmt: skip
    assert rows["12"][:2] == ["12", "2"]
    assert lines[6].startswith(
        "  * recommended: cluster 11, highest CC½ (0.990) of the 2 most redundant of 3"
    )
    assert lines[7] == "    merged MTZ for refinement: OUT/merge/s/final/merged.mtz"
    assert len(lines) == 8  # the failed cluster is not a row
    # columns line up: every row's d column starts where its header does
    col = lines[1].index("d/Å")
    assert all(ln[col:].split()[0] in {"1.50", "1.23", "----"} for ln in lines[2:6])


def test_format_clusters_of_several_methods_and_of_nothing():
    b = cluster(11, 6.0, 0.99)
    b.method = "blend"
    s = summary_of(cluster(10, 8.0, 0.95), b, cluster(12, 1.0, 1.0))
    text = format_clusters(s, recommend(s))
    assert "cc 10" in text and "blend 11" in text and "recommended: cluster blend 11" in text
    assert "merged MTZ" not in text  # no path given
    none = MergeSummary("s", notes=["no cluster passed the thresholds"])
    assert (
        format_clusters(none) == "sample s: 0 cluster(s) merged: no cluster passed the thresholds"
    )


# ------------------------------------------------------------------ final/
def fake_merge_dir(root: Path, s: MergeSummary) -> None:
    """The files a merge leaves in each cluster's final run (contents name the cluster)."""
    for c in s.clusters:
        if c.ok:
            run = root / Path(c.merged_mtz).parent
            run.mkdir(parents=True, exist_ok=True)
            for name in ("merged.mtz", "unmerged.mtz", "merging_stats.txt"):
                (run / name).write_text(f"{name} of {c.id}\n")


def test_write_final_replaces_and_removes_the_folder(tmp_path):
    a, b = cluster(10, 8.0, 0.95), cluster(11, 6.0, 0.99)
    s = summary_of(a, b)
    fake_merge_dir(tmp_path, s)
    final = write_final(s, tmp_path)
    assert final == tmp_path / FINAL_DIR
    assert (final / "merged.mtz").read_text() == "merged.mtz of 10\n"
    assert (final / "merging_stats.txt").read_text() == "merging_stats.txt of 10\n"
    assert not (final / "unmerged.cif").exists()  # not written by that run
    (final / "stale.txt").write_text("from an earlier run")
    # a rerun in which cluster 11 became the better one replaces the folder
    b.stats.overall.multiplicity = 9.0
    (tmp_path / Path(b.merged_mtz).parent / "unmerged.cif").write_text("cif of 11\n")
    write_final(s, tmp_path)
    assert (final / "merged.mtz").read_text() == "merged.mtz of 11\n"
    assert (final / "unmerged.cif").read_text() == "cif of 11\n"
    assert not (final / "stale.txt").exists()
    assert json.loads((final / "final.json").read_text())["cluster"] == 11
    assert sorted(p.name for p in tmp_path.iterdir()) == ["final", "merge_cc_1.0S_s"]
    # nothing merged: no final/ at all
    assert write_final(summary_of(cluster(12, 1, 1, error="boom")), tmp_path) is None
    assert not final.exists()


def test_merge_and_status_print_the_table(tmp_path, capsys):
    """`mxflow status` (and the end of `mxflow run`) show the table of a catalog merge
    record, the recommended cluster being the one final/ holds; `mxflow merge` prints it too."""
    out = tmp_path / "OUT"
    s = summary_of(cluster(10, 8.0, 0.95), cluster(11, 6.0, 0.99), cluster(12, 1.0, 1.0))
    fake_merge_dir(out / "merge" / "s", s)
    write_final(s, out / "merge" / "s")
    with Catalog(out) as cat:
        cat.record_merge(MergeRecord("proc/s", "ok", "", ["proc/x"], "merge/s", s))
        cat.record_merge(MergeRecord("proc/t", "skipped", "only 1 processed dataset(s)"))
        records = cat.merges()
    assert main(["status", str(out)]) == 0
    printed = capsys.readouterr().out
    expected = format_record(records[0], out)
    assert expected in printed
    assert expected.splitlines()[0] == "merge proc/s: 3 cluster(s) merged"
    assert f"merged MTZ for refinement: {out}/merge/s/final/merged.mtz" in expected
    assert any(ln.split()[:2] == ["*", "11"] for ln in expected.splitlines())
    assert "merge proc/t: skipped: only 1 processed dataset(s)" in printed
    # no final/ (e.g. written by an older mxflow): no cluster is marked, no path
    (out / "merge/s/final/final.json").unlink()
    unmarked = format_record(records[0], out)
    assert "recommended" not in unmarked and not any(
        ln.split()[:1] == ["*"] for ln in unmarked.splitlines()
    )
    # mxflow merge: the same table, with the workdir's final/merged.mtz
    text = format_summary(s, out / "merge" / "s")
    assert f"merged MTZ for refinement: {out}/merge/s/final/merged.mtz" in text
    assert "  * recommended: cluster 11, highest CC½ (0.990)" in text


# ------------------------------------------------------------------ a real merge
def test_final_folder_of_the_real_lcysteine_merge(real_merge, tmp_path):
    import gemmi

    from merge_fixtures import MERGE_WORKDIR
    from mxflow.merge.outputs import read_summary

    merge_dir = real_merge / MERGE_WORKDIR
    s = read_summary(merge_dir / "merge_summary_lcys.json")
    best, why = recommend(s)
    final = write_final(s, merge_dir, tmp_path / "final")
    run = merge_dir / Path(best.merged_mtz).parent
    names = {p.name for p in final.iterdir()}
    assert {"merged.mtz", "unmerged.mtz", "merging_stats.txt", "final.json", "README.txt"} <= names
    assert ("unmerged.cif" in names) == (run / "unmerged.cif").is_file()
    for name in names - {"final.json", "README.txt"}:
        assert (final / name).read_bytes() == (run / name).read_bytes(), name
    mtz = gemmi.read_mtz_file(str(final / "merged.mtz"))
    assert "FreeR_flag" in [c.label for c in mtz.columns]
    assert mtz.spacegroup.hm == gemmi.SpaceGroup(best.space_group).hm
    record = json.loads((final / "final.json").read_text())
    assert (record["cluster"], record["method"], record["reason"]) == (best.id, best.method, why)
    assert record["datasets"] == best.members and len(best.members) >= 2
    assert record["d_min"] == pytest.approx(best.d_min)
    assert record["cc_half"] == pytest.approx(best.cc_half)
    assert record["completeness"] == pytest.approx(best.completeness)
    assert record["unit_cell"] == pytest.approx(list(best.unit_cell))
    readme = (final / "README.txt").read_text()
    assert f"cluster {best.id}" in readme and why in readme
    assert f"d_min         {best.d_min:.2f} Å" in readme
    assert all(m in readme for m in best.members)
    # merge_sample wrote the same folder itself (when the fixture merged in this session)
    if (merge_dir / FINAL_DIR).is_dir():
        assert (merge_dir / FINAL_DIR / "merged.mtz").read_bytes() == (
            final / "merged.mtz"
        ).read_bytes()


def test_mxflow_run_ends_with_the_table(tmp_path, monkeypatch):
    """The end of `mxflow run`: per merge its table (from the catalog and final/), before
    the "done in" line."""
    import functools

    from mxflow.schedule import post
    from mxflow.schedule.collection import run_collection
    from test_schedule_run import config, make_collection

    def fake_merge(inputs, workdir, options):
        s = summary_of(cluster(10, 8.0, 0.95), cluster(11, 6.0, 0.99), cluster(12, 1.0, 1.0))
        s.sample = options.sample
        fake_merge_dir(Path(workdir), s)
        write_final(s, workdir)
        return s

    monkeypatch.setattr(
        post, "merge_samples", functools.partial(post.merge_samples, merge_fn=fake_merge)
    )
    root, out = tmp_path / "root", tmp_path / "out"
    make_collection(root, n_multi=4, helical=False)
    messages: list[str] = []
    run_collection(root, out, config(hitmap=False), log=messages.append)
    done = next(i for i, m in enumerate(messages) if m.startswith("mxflow: done in"))
    tables = [m for m in messages[:done] if m.startswith("merge proc/")]
    assert [t.splitlines()[0] for t in tables] == [
        "merge proc/lyso: 3 cluster(s) merged",
        "merge proc/thau: 3 cluster(s) merged",
    ]
    for t, sample in zip(tables, ("lyso", "thau"), strict=True):
        assert any(ln.split()[:2] == ["*", "11"] for ln in t.splitlines())
        mtz = out / "merge" / sample / FINAL_DIR / "merged.mtz"
        assert t.splitlines()[-1] == f"    merged MTZ for refinement: {mtz}"
        assert mtz.read_text() == "merged.mtz of 11\n"
