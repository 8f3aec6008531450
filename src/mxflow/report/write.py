"""``write_reports(out_dir)``: every HTML report of an output directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mxflow.errors import BadInputError
from mxflow.report import pages
from mxflow.report.load import MergeRun, find_merge_dirs, load_merge_dir, load_summary
from mxflow.report.render import render, write_page, write_static


def _nav(out_dir: Path, page_dir: Path, merge_runs: list[MergeRun]) -> dict[str, Any]:
    """Links shared by every page's header, relative to ``page_dir``."""
    return {
        "index": pages.rel_link("report/index.html", page_dir, out_dir),
        "datasets": pages.rel_link("report/datasets.html", page_dir, out_dir),
        "merges": [
            {
                "label": f"{mr.sample} ({mr.method})",
                "href": pages.rel_link(str(mr.path / "report.html"), page_dir, out_dir),
            }
            for mr in merge_runs
        ],
        "static": pages.rel_link("report/static", page_dir, out_dir),
    }


def write_dataset_report(out_dir: Path, merge_runs: list[MergeRun]) -> Path:
    """OUT/report/datasets.html: all datasets, failed ones with the reason in plain words."""
    page_dir = out_dir / "report"
    entries = pages.dataset_entries(load_summary(out_dir), out_dir, page_dir)
    charts = {e["anchor"]: pages.chart_data_for_dataset(e) for e in entries}
    html = render(
        "datasets.html",
        title="Datasets",
        out=str(out_dir),
        nav=_nav(out_dir, page_dir, merge_runs),
        entries=entries,
        failed=[e for e in entries if e["status"] == "failed"],
        charts=charts,
    )
    return write_page(page_dir / "datasets.html", html)


def write_collection_report(out_dir: Path, merge_runs: list[MergeRun]) -> Path:
    """OUT/report/index.html: one row per pin, per-sample merges, hit maps."""
    page_dir = out_dir / "report"
    ctx = pages.collection_context(out_dir, page_dir, merge_runs)
    html = render(
        "collection.html",
        title="Collection",
        out=str(out_dir),
        nav=_nav(out_dir, page_dir, merge_runs),
        **ctx,
    )
    return write_page(page_dir / "index.html", html)


def write_merge_report(out_dir: Path, mr: MergeRun, merge_runs: list[MergeRun]) -> Path:
    """OUT/merge_*/report.html for one sample and clustering method."""
    ctx = pages.merge_context(mr, out_dir, str(out_dir))
    html = render(
        "merge.html",
        title=f"Merging {mr.sample}",
        out=str(out_dir),
        nav=_nav(out_dir, mr.path, merge_runs),
        **ctx,
    )
    return write_page(mr.path / "report.html", html)


def write_reports(out_dir: str | Path) -> list[Path]:
    """Write every report of ``out_dir``; return the pages written.

    Safe to call repeatedly and on a collection still running (absent files
    are skipped).  Raises BadInputError when ``out_dir`` is not a directory
    or a summary file is malformed.
    """
    out_dir = Path(out_dir).resolve()
    if not out_dir.is_dir():
        raise BadInputError(str(out_dir), "not a directory (expected an mxflow output directory)")
    write_static(out_dir / "report")
    merge_runs = [load_merge_dir(p) for p in find_merge_dirs(out_dir)]
    written = [
        write_collection_report(out_dir, merge_runs),
        write_dataset_report(out_dir, merge_runs),
    ]
    written += [write_merge_report(out_dir, mr, merge_runs) for mr in merge_runs]
    return written
