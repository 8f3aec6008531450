"""``write_reports(out_dir)``: every HTML report of an output directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mxflow.errors import BadInputError
from mxflow.report import pages
from mxflow.report.load import (
    DatasetRow,
    MergeDir,
    find_hitmaps,
    find_merge_dirs,
    load_merge_dir,
    load_summary,
    read_json_file,
)
from mxflow.report.render import render, write_page, write_static


def _nav(out_dir: Path, page_dir: Path, merge_dirs: list[MergeDir]) -> dict[str, Any]:
    """Links shared by every page's header, relative to ``page_dir``."""
    return {
        "index": pages.rel_link("report/index.html", page_dir, out_dir),
        "datasets": pages.rel_link("report/datasets.html", page_dir, out_dir),
        "merges": [
            {
                "label": f"{md.sample} ({', '.join(x for x in (md.method, md.summary.label) if x)})",
                "href": pages.rel_link(str(md.path / "report.html"), page_dir, out_dir),
            }
            for md in merge_dirs
        ],
        "static": pages.rel_link("report/static", page_dir, out_dir),
    }


def write_dataset_report(out_dir: Path, rows: list[DatasetRow], merge_dirs: list[MergeDir]) -> Path:
    """OUT/report/datasets.html: all datasets, failed ones with the reason in plain words."""
    page_dir = out_dir / "report"
    entries = pages.dataset_entries(rows, out_dir, page_dir)
    charts = {e["anchor"]: pages.chart_data_for_dataset(e) for e in entries}
    html = render(
        "datasets.html",
        title="Datasets",
        out=str(out_dir),
        nav=_nav(out_dir, page_dir, merge_dirs),
        entries=entries,
        failed=[e for e in entries if e["status"] == "failed"],
        charts=charts,
    )
    return write_page(page_dir / "datasets.html", html)


def write_collection_report(
    out_dir: Path, rows: list[DatasetRow], merge_dirs: list[MergeDir]
) -> Path:
    """OUT/report/index.html: one row per pin, per-sample merges, hit maps."""
    page_dir = out_dir / "report"
    ctx = pages.collection_context(rows, out_dir, page_dir, merge_dirs)
    html = render(
        "collection.html",
        title="Collection",
        out=str(out_dir),
        nav=_nav(out_dir, page_dir, merge_dirs),
        **ctx,
    )
    return write_page(page_dir / "index.html", html)


def write_merge_report(
    out_dir: Path, md: MergeDir, rows: list[DatasetRow], merge_dirs: list[MergeDir]
) -> Path:
    """``merge_*/report.html`` for one sample and clustering method."""
    ctx = pages.merge_context(md, rows, out_dir, str(out_dir))
    html = render(
        "merge.html",
        title=f"Merging {md.sample}",
        out=str(out_dir),
        nav=_nav(out_dir, md.path, merge_dirs),
        **ctx,
    )
    return write_page(md.path / "report.html", html)


def _drawable(doc: Any) -> bool:
    """Whether a hitmap.json document has what its page draws: a grid and a list of frames."""
    grid = doc.get("grid") if isinstance(doc, dict) else None
    return (
        isinstance(grid, dict)
        and all(isinstance(grid.get(k), int) and grid[k] > 0 for k in ("rows", "cols"))
        and isinstance(doc.get("frames"), list)
    )


def write_hitmap_pages(out_dir: Path, merge_dirs: list[MergeDir]) -> list[Path]:
    """Every hit map's ``hitmap.html`` (beside its ``hitmap.json``) with the reports'
    stylesheet and navigation, links relative to it; a document without frames or
    grid is not a hit map the page can draw and is left alone."""
    from mxflow.hitmap.render import write_html

    written = []
    for hm in find_hitmaps(out_dir):
        js = out_dir / hm["json"]
        try:
            doc = read_json_file(js)
        except (BadInputError, OSError):
            continue
        if not _drawable(doc):
            continue
        page_dir = js.parent
        scan = hm["dir"].removeprefix("hitmap/")
        nav = _nav(out_dir, page_dir, merge_dirs)
        written.append(
            write_html(doc, page_dir / "hitmap.html", nav=nav, out=str(out_dir), scan=scan)
        )
    return written


def write_reports(out_dir: str | Path) -> list[Path]:
    """Write every report of ``out_dir``; return the pages written.

    Safe to call repeatedly and on a collection still running (absent files
    are skipped).  Raises BadInputError when ``out_dir`` is not a directory
    or a summary file is malformed (or of another merge-summary schema).
    """
    out_dir = Path(out_dir).resolve()
    if not out_dir.is_dir():
        raise BadInputError(str(out_dir), "not a directory (expected an mxflow output directory)")
    rows = load_summary(out_dir)
    merge_dirs = [load_merge_dir(p) for p in find_merge_dirs(out_dir)]
    write_static(out_dir / "report")
    hitmap_pages = write_hitmap_pages(out_dir, merge_dirs)  # before the collection page links them
    written = [
        write_collection_report(out_dir, rows, merge_dirs),
        write_dataset_report(out_dir, rows, merge_dirs),
    ]
    written += [write_merge_report(out_dir, md, rows, merge_dirs) for md in merge_dirs]
    return written + hitmap_pages
