"""``mxflow archive OUT``: a .tgz to take home, with the reports, summaries and merged data.

The main checks run on a real output directory: the real l-cysteine merge of
merge_fixtures (DIALS; MXFLOW_TEST_REPORT_MERGE=DIR keeps it) with its
reports, per-dataset work folders planted beside it, fake detector images
in the raw data tree and inside OUT, and DIALS intermediates.  The archive
is unpacked and checked: no image, no intermediate, every MTZ and summary,
every link of every archived page resolves inside it, and the unpacked
reports open in headless Chromium with their plots drawn.  The fast tests
use the synthetic output of report_fixtures and hand-written pages.
"""

from __future__ import annotations

import datetime
import filecmp
import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from mxflow.cli import main
from mxflow.report import write_reports
from mxflow.report.archive import (
    LEFT_OUT_IMAGE,
    LEFT_OUT_INTERMEDIATE,
    LEFT_OUT_LARGE,
    LEFT_OUT_OUTSIDE,
    MISSING,
    default_archive_path,
    plan_archive,
    raw_data_dirs,
    unlink_page,
)
from mxflow.report.archive_cli import archive
from report_fixtures import write_sample_output
from test_report_browser import (
    Watched,
    browser,  # noqa: F401  (the headless Chromium fixture)
)

IMAGE_MARK = b"FAKE-DETECTOR-IMAGE"
INTERMEDIATE_MARK = b"FAKE-DIALS-INTERMEDIATE"

#: what must be in the archive wherever it is in OUT (and all of final/)
RESULTS = (
    "summary.json",
    "merge_summary*.json",
    "final.json",
    "resolution.json",
    "cluster_summary.dat",
    "stats.txt",
    "stats.json",
    "merging_stats.txt",
    "merging_stats.json",
    "dendrogram_*.json",
    "cc_table.json",
    "merged.mtz",
    "merged_fullres.mtz",
    "unmerged.mtz",
    "scaled.mtz",
    "unmerged.cif",
)
#: what must not be in it
NEVER = (
    "*.cbf",
    "*.h5",
    "*.img",
    "*.img.gz",
    "*.refl",
    "*.expt",
    "*.pickle",
    "*.sqlite",
    "dials_*.mtz",
    "dials_*.cif",
    "scaled_unmerged.mtz",
    "unscaled*.mtz",
)


def members(tgz: Path) -> list[tarfile.TarInfo]:
    with tarfile.open(tgz) as tar:
        return tar.getmembers()


def unpack(tgz: Path, where: Path) -> Path:
    """Unpack ``tgz`` into ``where``; return its one top folder."""
    with tarfile.open(tgz) as tar:
        tar.extractall(where, filter="data")
    (top,) = list(where.iterdir())
    return top


def files_under(top: Path) -> list[str]:
    return sorted(p.relative_to(top).as_posix() for p in top.rglob("*") if p.is_file())


def links_of(page: Path) -> list[str]:
    return re.findall(r"""(?:href|src)\s*=\s*["']([^"']*)["']""", page.read_text())


def dead_links(top: Path) -> dict[str, list[str]]:
    """Per HTML page under ``top``: its links to files that are not there.

    Links with a scheme (data:, http:), fragments alone and, in DIALS' own pages only,
    their chart library's server paths (/javascript/...) are not local files."""
    dead: dict[str, list[str]] = {}
    for page in sorted(top.rglob("*.html")):
        for value in links_of(page):
            parts = urlsplit(value)
            if parts.scheme or not parts.path:
                continue
            if parts.path.startswith("/"):
                assert page.name.startswith("dials."), (page, value)
                assert parts.path.startswith("/javascript/"), (page, value)
                continue
            if not (page.parent / unquote(parts.path)).is_file():
                dead.setdefault(page.relative_to(top).as_posix(), []).append(value)
    return dead


# ---------------------------------------------------------------- the real output directory


def plant(real_merge: Path, out: Path, raw: Path) -> dict[str, list[Path]]:
    """Around the collection of merge_fixtures: the raw data tree (``raw``, fake images)
    named by summary.json, each dataset's work folder with its MTZ files, statistics, logs,
    DIALS intermediates and images copied or linked in, the merge's DIALS reports and its
    intermediates, and the catalog.  Returns what was planted, by kind."""
    import merge_fixtures

    planted: dict[str, list[Path]] = {"image": [], "intermediate": [], "result": []}
    run = out / merge_fixtures.METHOD_DIR / "cluster_0004" / "run_01"
    src_run = real_merge / merge_fixtures.METHOD_DIR / "cluster_0004" / "run_01"
    assert run.is_dir() and src_run.is_dir()

    def fake(path: Path, mark: bytes, kind: str, size: int = 4096) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(mark + os.urandom(size))
        planted[kind].append(path)
        return path

    summary = json.loads((out / "summary.json").read_text())
    for d in summary["datasets"]:
        name, wd = d["name"], out / d["workdir"]
        pin = Path(d["workdir"]).parts[1]
        images = raw / pin / "data00"
        d["path"] = str(images / f"{name}_####.cbf")
        for i in (1, 2, 3):
            fake(images / f"{name}_{i:04d}.cbf", IMAGE_MARK, "image")
        (images / f"{name}.log").write_text("beamline log\n")
        wd.mkdir(parents=True, exist_ok=True)
        if d["status"] == "ok":
            for mtz in ("merged.mtz", "scaled.mtz", "merged_fullres.mtz"):
                shutil.copy2(src_run / "merged.mtz", wd / mtz)
                planted["result"].append(wd / mtz)
            for f, to in (
                ("merging_stats.txt", "stats.txt"),
                ("merging_stats.json", "stats.json"),
                ("resolution.json", "resolution.json"),
            ):
                shutil.copy2(src_run / f, wd / to)
                planted["result"].append(wd / to)
            d["merged_mtz"] = f"{d['workdir']}/merged.mtz"
            d["unmerged_mtz"] = f"{d['workdir']}/scaled.mtz"
        else:
            (wd / "dials.index.log").write_text("Indexing failed\n")  # the page links it
        for f in ("imported.expt", "indexed.refl", "indexed.expt", "integrated.refl"):
            fake(wd / f, INTERMEDIATE_MARK, "intermediate")
        (wd / "dials.integrate.log").write_text("not linked by any page\n")
        # images where a careless script might put them: copied, linked, a linked folder
        fake(wd / "images" / f"{name}_0001.cbf", IMAGE_MARK, "image")
        fake(wd / f"{name}_master.h5", IMAGE_MARK, "image")
        fake(wd / f"{name}_0001.img.gz", IMAGE_MARK, "image")
        (wd / f"{name}_0002.cbf").symlink_to(images / f"{name}_0002.cbf")
        (wd / "raw").symlink_to(images, target_is_directory=True)
        (wd / "beamline.log").symlink_to(images / f"{name}.log")
    (out / "summary.json").write_text(json.dumps(summary))
    for f in ("scaled.refl", "scaled.expt"):
        fake(run / f, INTERMEDIATE_MARK, "intermediate")
    fake(run.parent.parent.parent / "merge_prep_1.0S_lcys" / "symmetrized.refl",
         INTERMEDIATE_MARK, "intermediate")  # fmt: skip
    shutil.copy2(src_run / "scaled_unmerged.mtz", run / "scaled_unmerged.mtz")
    for html in ("dials.scale.html", "dials.merge.html"):  # the page links both
        shutil.copy2(src_run / html, run / html)
    fake(out / "mxflow.sqlite", INTERMEDIATE_MARK, "intermediate")
    # an image put beside the results of a folder archived whole
    fake(out / "merge/lcys/final/crystal_0001.cbf", IMAGE_MARK, "image")
    return planted


@pytest.fixture(scope="module")
def archived(real_merge, tmp_path_factory):
    """(OUT, planted, archive path, printed lines, unpacked top folder)."""
    import merge_fixtures

    base = tmp_path_factory.mktemp("archive")
    out = merge_fixtures.write_collection(real_merge, base / "OUT")
    planted = plant(real_merge, out, base / "raw")
    write_reports(out)
    lines: list[str] = []
    tgz = archive(out, base / "take_home.tgz", print_fn=lines.append)
    top = unpack(tgz, base / "unpacked")
    return out, planted, tgz, lines, top


@pytest.mark.slow
@pytest.mark.dials
def test_no_images_no_intermediates(archived):
    out, planted, tgz, _, top = archived
    infos = members(tgz)
    assert infos and all(m.isfile() for m in infos)  # no links, no devices
    assert all(m.name.startswith("take_home/") for m in infos)
    names = files_under(top)
    assert len(names) == len(infos)
    for n in names:
        base = Path(n).name
        assert not any(fnmatch.fnmatchcase(base, p) for p in NEVER), n
        data = (top / n).read_bytes()
        assert IMAGE_MARK not in data and INTERMEDIATE_MARK not in data, n
    # the raw data tree's files are not there under any name
    assert not any(Path(n).name.endswith(".log") and "beamline" in n for n in names)
    assert not any("/raw/" in n or "/images/" in n for n in names)
    assert len(planted["image"]) > 20 and len(planted["intermediate"]) > 20


@pytest.mark.slow
@pytest.mark.dials
def test_every_result_file_is_there_unchanged(archived):
    out, planted, _, _, top = archived
    expected = []
    for p in out.rglob("*"):
        rel = p.relative_to(out)
        if not p.is_file() or p.is_symlink() or any(x.startswith(".") for x in rel.parts):
            continue
        if any(fnmatch.fnmatchcase(p.name, pat) for pat in NEVER):
            continue
        if any(fnmatch.fnmatchcase(p.name, pat) for pat in RESULTS) or rel.parent.name == "final":
            expected.append(rel.as_posix())
    assert {"summary.json", "merge/lcys/final/merged.mtz", "merge/lcys/final/final.json"} <= set(
        expected
    )
    assert {p.relative_to(out).as_posix() for p in planted["result"]} <= set(expected)
    names = set(files_under(top))
    assert sorted(set(expected) - names) == []
    for rel in expected:
        if not rel.endswith(".html"):
            assert filecmp.cmp(out / rel, top / rel, shallow=False), rel
    # the pages too, and the logs they link
    for rel in ("report/index.html", "report/datasets.html", "report/static/plotly.min.js"):
        assert rel in names
    assert "merge/lcys/merge_cc_1.0S_lcys/report.html" in names
    assert "proc/CPS1234-01/35_integrated/dials.index.log" in names
    assert "merge/lcys/merge_cc_1.0S_lcys/cluster_0004/run_01/scale.out" in names
    # a log no page links stays at home
    assert not any(n.endswith("dials.integrate.log") for n in names)


@pytest.mark.slow
@pytest.mark.dials
def test_every_link_of_every_archived_page_resolves(archived):
    out, _, _, _, top = archived
    pages = sorted(p.relative_to(top).as_posix() for p in top.rglob("*.html"))
    assert {
        "report/index.html",
        "report/datasets.html",
        "merge/lcys/merge_cc_1.0S_lcys/report.html",
        "merge/lcys/merge_cc_1.0S_lcys/cluster_0004/run_01/dials.merge.html",
    } <= set(pages)
    # in OUT the failed dataset's log and both DIALS reports are linked and there
    assert dead_links(out) == {}
    assert dead_links(top) == {}
    # the datasets page links each dataset's MTZ files, now inside the archive
    ds_links = links_of(top / "report/datasets.html")
    assert "../proc/CPS1234-01/20_integrated/merged.mtz" in ds_links
    assert "../proc/CPS1234-01/20_integrated/scaled.mtz" in ds_links
    # dials.scale.html (4 MiB) is over the 1 MiB limit: its link is plain text in the archive
    mpage = "merge/lcys/merge_cc_1.0S_lcys/report.html"
    scale = "cluster_0004/run_01/dials.scale.html"
    assert scale in links_of(out / mpage)
    assert (out / mpage).parent.joinpath(scale).stat().st_size > 1 << 20
    archived_page = (top / mpage).read_text()
    assert scale not in links_of(top / mpage)
    assert re.search(r'<span class="left-out" title="[^"]*larger[^"]*">run_01/dials\.scale\.html<',
                     archived_page)  # fmt: skip
    assert "cluster_0004/run_01/dials.merge.html" in links_of(top / mpage)
    # nothing else of the page changed
    assert len(links_of(out / mpage)) == len(links_of(top / mpage)) + 1


@pytest.mark.slow
@pytest.mark.dials
def test_what_it_prints(archived):
    _, _, tgz, lines, top = archived
    m = re.fullmatch(r"archive: (.+) \(([\d.]+) MiB\)", lines[0])
    assert m and Path(m.group(1)) == tgz
    assert float(m.group(2)) == pytest.approx(tgz.stat().st_size / 2**20, abs=0.06)
    names = files_under(top)
    kinds = {
        "reports": sum(n.endswith((".html", ".css", ".js")) for n in names),
        "summaries": sum(n.endswith((".json", ".dat", ".txt")) for n in names),
        "reflection files": sum(n.endswith((".mtz", ".cif")) for n in names),
        "logs": sum(n.endswith((".log", ".out")) for n in names),
    }
    assert lines[1].startswith(f"  {len(names)} files (")
    for kind, n in kinds.items():
        assert f"{n} {kind}" in lines[1], (kind, lines[1])
    assert sum(kinds.values()) == len(names)
    left = next(line for line in lines if line.startswith("  left out:"))
    assert LEFT_OUT_IMAGE in left and LEFT_OUT_INTERMEDIATE in left
    assert any("dials.scale.html" in line and LEFT_OUT_LARGE in line for line in lines)


@pytest.mark.slow
@pytest.mark.dials
def test_cli_refuses_to_replace_an_archive(archived, capsys):
    out, _, tgz, _, _ = archived
    before = tgz.read_bytes()
    assert main(["archive", str(out), "--output", str(tgz)]) == 1
    err = capsys.readouterr().err
    assert str(tgz) in err and "--force" in err
    assert tgz.read_bytes() == before


@pytest.mark.slow
@pytest.mark.dials
def test_unpacked_reports_open_in_a_browser(archived, browser):  # noqa: F811
    """The unpacked collection page and merge page render from disk with no console error,
    no request leaving file://, the dendrogram and the per-resolution plots drawn."""
    out, _, _, _, top = archived
    context, blocked = browser
    w = Watched(context)
    page = w.page
    w.open((top / "report/index.html").as_uri())
    assert page.locator("#pin-table tbody tr").count() == 1
    href = page.locator("#pin-table a", has_text="merge (cc)").first.get_attribute("href")
    page.click(f"#pin-table a[href='{href}']")
    page.wait_for_load_state("load")
    assert page.url == (top / "merge/lcys/merge_cc_1.0S_lcys/report.html").as_uri()
    page.wait_for_selector("figure[data-dendro='cc'] .js-plotly-plot")
    n_nodes = page.evaluate(
        """() => document.querySelector("figure[data-dendro='cc'] div.plot").data
            .find(t => t.uid === "nodes").x.length"""
    )
    assert n_nodes >= 5  # 3 leaves and 2 joins
    page.locator("#plots").scroll_into_view_if_needed()
    page.wait_for_function(
        "document.querySelectorAll('#plots figure[data-drawn] .js-plotly-plot').length >= 6"
    )
    cc = page.evaluate(
        """() => document.querySelector("figure[data-res='cc_half'] div.plot").data
            .map(t => t.y.length)"""
    )
    assert cc and all(n > 0 for n in cc)
    # the left-out DIALS report is text, the kept one a link that opens
    assert page.locator("span.left-out", has_text="dials.scale.html").count() == 1
    link = page.locator("a", has_text="run_01/dials.merge.html").first.get_attribute("href")
    assert (top / "merge/lcys/merge_cc_1.0S_lcys" / link).is_file()
    assert w.errors == [], w.errors
    assert blocked == [], blocked


# ---------------------------------------------------------------- fast: synthetic outputs


def test_plan_of_a_synthetic_output(tmp_path):
    out = write_sample_output(tmp_path / "OUT", n_multi=2, seed=3)
    write_reports(out)
    plan = plan_archive(out)
    files = set(plan.files)
    assert {"summary.json", "report/index.html", "report/datasets.html"} <= files
    assert "merge_cc_2.2S_Lys/report.html" in files and "merge_blend_2.2S_Lys/report.html" in files
    assert "merge_cc_2.2S_Lys/dendrogram_cc.json" in files
    hitmaps = [f for f in files if f.startswith("hitmap/")]
    assert {Path(f).name for f in hitmaps} >= {"hitmap.json", "hitmap.png"}
    refl = [f for f in plan.left_out if f.endswith(".refl")]
    assert refl and all(plan.left_out[f] == LEFT_OUT_INTERMEDIATE for f in refl)
    assert not any(f.endswith(".refl") for f in files)
    # the dataset page links DIALS logs this synthetic output never wrote: plain text later
    dead = plan.unlinked["report/datasets.html"]
    assert dead and set(dead.values()) == {MISSING}
    assert any(v.endswith(".log") for v in dead) and any(v.endswith(".mtz") for v in dead)
    # the image folders of summary.json are the raw data
    assert plan.raw_dirs and all(str(p).startswith("/data/collection/") for p in plan.raw_dirs)


def test_links_to_what_is_left_out_become_text(tmp_path):
    out = tmp_path / "OUT"
    (out / "report").mkdir(parents=True)
    (out / "summary.json").write_text('{"datasets": []}')
    (out / "proc").mkdir()
    (out / "proc/x.log").write_text("log\n")
    (out / "proc/x_0001.cbf").write_bytes(IMAGE_MARK)
    (out / "proc/x.refl").write_bytes(INTERMEDIATE_MARK)
    (out / "proc/map.png").write_bytes(b"png")
    (tmp_path / "elsewhere.txt").write_text("outside\n")
    (out / "proc/linked.txt").symlink_to(tmp_path / "elsewhere.txt")
    page = (
        '<p><a href="../proc/x.log">log</a> <a href="../proc/x_0001.cbf">image</a> '
        '<a href="../proc/x.refl?v=1#top">spots</a> <a href="../../elsewhere.txt">up</a> '
        '<a href="../proc/linked.txt">linked</a> <a href="../proc/gone.log">gone</a> '
        '<a href="../proc/map.png"><img src="../proc/map.png" alt="map"></a> '
        '<a href="#top">top</a> <a href="https://example.org/">web</a></p>'
    )
    (out / "report/index.html").write_text(page)
    plan = plan_archive(out)
    assert set(plan.files) == {
        "summary.json",
        "report/index.html",
        "proc/x.log",
        "proc/map.png",
    }
    assert plan.unlinked["report/index.html"] == {
        "../proc/x_0001.cbf": LEFT_OUT_IMAGE,
        "../proc/x.refl?v=1#top": LEFT_OUT_INTERMEDIATE,
        "../../elsewhere.txt": LEFT_OUT_OUTSIDE,
        "../proc/linked.txt": LEFT_OUT_OUTSIDE,
        "../proc/gone.log": MISSING,
    }
    text = unlink_page(page, plan.unlinked["report/index.html"])
    for label in ("image", "spots", "up", "linked", "gone"):
        assert re.search(
            rf'<span class="left-out" title="not in this archive [^"]*">{label}<', text
        )
    assert '<a href="../proc/x.log">log</a>' in text and '<img src="../proc/map.png"' in text
    assert '<a href="#top">top</a>' in text and 'href="https://example.org/"' in text
    # the archive holds the rewritten page, OUT keeps its own
    tgz = archive(out, tmp_path / "a.tgz", print_fn=lambda s: None)
    top = unpack(tgz, tmp_path / "u")
    assert dead_links(top) == {}
    assert (out / "report/index.html").read_text() == page
    assert (top / "report/index.html").read_text() == text


def test_cli_refuses_to_replace_and_force_replaces(tmp_path, capsys):
    out = write_sample_output(tmp_path / "OUT", n_multi=1, seed=4, with_refl=False)
    write_reports(out)
    tgz = tmp_path / "mine.tgz"
    tgz.write_bytes(b"an earlier archive")
    assert main(["archive", str(out), "--output", str(tgz)]) == 1
    err = capsys.readouterr().err
    assert f"{tgz} exists" in err and "--force" in err
    assert tgz.read_bytes() == b"an earlier archive"
    assert main(["archive", str(out), "--output", str(tgz), "--force"]) == 0
    printed = capsys.readouterr().out
    assert f"archive: {tgz} (" in printed
    assert any(m.name == "mine/report/index.html" for m in members(tgz))
    assert not list(tmp_path.glob(".mine.tgz.*"))  # no partial file left


def test_cli_missing_or_wrong_out(tmp_path, capsys):
    missing = tmp_path / "no_such_OUT"
    assert main(["archive", str(missing)]) == 1
    err = capsys.readouterr().err
    assert f"{missing}: no such output directory" in err
    assert not list(tmp_path.iterdir())
    (tmp_path / "empty").mkdir()
    assert main(["archive", str(tmp_path / "empty")]) == 1
    assert "not an mxflow output directory" in capsys.readouterr().err


def test_default_name_and_never_inside_the_raw_tree(tmp_path, capsys):
    """OUT inside ROOT: summary.json's keys repeat the image folders' path below ROOT, so
    ROOT is known and the default archive (OUT/..) would be inside it: refused."""
    root = tmp_path / "ROOT"
    out = root / "mxflow_out"
    (out / "report").mkdir(parents=True)
    rows = [
        {
            "name": "single_001",
            "path": str(root / "CPS1012-06" / "data00" / "single_001_#####.cbf"),
            "key": "proc/CPS1012-06/data00/single_001",
            "status": "ok",
        }
    ]
    (out / "summary.json").write_text(json.dumps({"datasets": rows}))
    (out / "report/index.html").write_text("<p>report</p>")
    assert raw_data_dirs(out) == sorted([root.resolve(), (root / "CPS1012-06/data00").resolve()])
    day = datetime.date(2025, 3, 7)
    assert default_archive_path(out, day) == root.resolve() / "250307_mxflow_out.tgz"
    assert main(["archive", str(out)]) == 1
    err = capsys.readouterr().err
    assert "inside the raw data tree" in err and str(root.resolve()) in err
    assert list(root.glob("*.tgz")) == []
    elsewhere = tmp_path / "home"
    elsewhere.mkdir()
    assert main(["archive", str(out), "-o", str(elsewhere / "x.tgz")]) == 0
    # --raw-data names another tree; an image folder alone counts too
    (tmp_path / "other").mkdir()
    assert main(["archive", str(out), "-o", str(tmp_path / "other/x.tgz"),
                 "--raw-data", str(tmp_path / "other")]) == 1  # fmt: skip
    assert "inside the raw data tree" in capsys.readouterr().err


def test_run_archive_at_the_end(tmp_path):
    """`mxflow run --archive`: the default archive beside OUT once the run is done, nothing
    of ROOT in it; a run that failed (found nothing) is archived too and says so."""
    from test_schedule_run import FAKE_DISCOVER, FAKE_PROCESS, make_collection

    root, out = tmp_path / "root", tmp_path / "out"
    make_collection(root, n_multi=2, helical=False)

    def run(*extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "mxflow.cli", "run", str(root), "--workdir", str(out),
             "--process-fn", FAKE_PROCESS, "--discover-fn", FAKE_DISCOVER, "--settle", "0",
             "--no-merge", "--archive", *extra],
            capture_output=True, text=True, timeout=180,
        )  # fmt: skip

    proc = run()
    assert proc.returncode == 0, proc.stderr
    (tgz,) = list(tmp_path.glob("*.tgz"))
    assert tgz == default_archive_path(out)
    assert f"mxflow: archive: {tgz} (" in proc.stdout
    names = [m.name for m in members(tgz)]
    assert f"{tgz.name[:-4]}/summary.json" in names
    assert f"{tgz.name[:-4]}/report/index.html" in names
    assert not any(n.endswith((".dataset.json", ".sqlite")) for n in names)
    # a failed run: still archived (the day's archive replaced), and said so
    shutil.rmtree(root)
    root.mkdir()
    shutil.rmtree(out)
    proc = run()
    assert proc.returncode == 1
    assert "did not end cleanly (exit status 1)" in proc.stderr
    assert f"mxflow: archive: {tgz} (" in proc.stdout
