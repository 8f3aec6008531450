"""Write a .tgz of an output directory to take home: reports, summaries, merged data.

The archive (default OUT/../YYMMDD_<name of OUT>.tgz, today's date, as
SPring-8 names its YYMMDD_BL_USER.tgz) unpacks into one folder named like
it, laid out as OUT is.  In it: report/ and every page the reports link
(merge reports, dataset pages, hit maps, the logs they link, DIALS' own
HTML reports up to --max-dials-html MiB each); the summaries (summary.json,
merge_summary*.json, final.json, resolution.json, cluster_summary.dat,
stats / merging_stats .txt and .json, dendrogram and cc_table JSON); the
reflection files (every merged.mtz, merged_fullres.mtz, unmerged.mtz,
scaled.mtz and unmerged.cif, and each merge's final/ folder).  Never in it:
detector images, anything outside OUT or in the raw data tree, DIALS
intermediates (.refl, .expt, .pickle), the catalog and hidden folders; nor,
unless a page links them, DIALS' twins of the results (dials_*.mtz,
scaled_unmerged.mtz, unmerged_fullres.mtz, unscaled*.mtz) and other logs.
The reports open offline from the unpacked folder; a link to a file left
out is plain text in the archived page.

An existing archive is not replaced without --force; the archive is never
written inside the raw data tree (--raw-data, plus the image folders named
in summary.json and the ROOT they lie in).  Prints the archive's path,
size and its files by kind.  'mxflow run --archive' writes it at the end of
a run.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from pathlib import Path

from mxflow.errors import MxflowError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", metavar="OUT", help="mxflow output directory (holds summary.json)")
    parser.add_argument(
        "--output",
        "-o",
        metavar="FILE.tgz",
        help="where to write the archive (default: OUT/../YYMMDD_<name of OUT>.tgz, today)",
    )
    parser.add_argument(
        "--force", action="store_true", help="replace the archive when it exists already"
    )
    parser.add_argument(
        "--raw-data",
        metavar="DIR",
        action="append",
        default=[],
        help="raw data tree (ROOT of mxflow run); nothing is taken from it and the archive "
        "is never written into it (repeatable; the image folders of summary.json always count)",
    )
    parser.add_argument(
        "--max-dials-html",
        metavar="MIB",
        type=float,
        default=1.0,
        help="DIALS HTML reports the pages link go in up to this size each (default 1 MiB; "
        "dials.scale.html is often larger; 0: none)",
    )


def archive(
    out: str | Path,
    output: str | Path | None = None,
    force: bool = False,
    raw_data: Iterable[str | Path] = (),
    max_dials_html_mib: float = 1.0,
    print_fn=print,
) -> Path:
    """Write the archive of ``out``, print what it holds; return its path."""
    from mxflow.report.archive import MIB, describe, make_archive

    result = make_archive(out, output, force, raw_data, int(max_dials_html_mib * MIB))
    for line in describe(result):
        print_fn(line)
    return result.path


def run(args: argparse.Namespace) -> int:
    archive(args.out, args.output, args.force, args.raw_data, args.max_dials_html)
    return 0


def archive_after_run(out: str | Path, root: str | Path, status: int) -> int:
    """``mxflow run --archive``: the archive of ``out`` (default path, replaced when the day's
    exists) once the run is over, whatever its status (a failed run is archived too, and
    said so).  Returns 0, or 1 when no archive
    could be written (the reason printed)."""
    if status:
        print(
            f"mxflow: the run did not end cleanly (exit status {status}); "
            f"archiving what it wrote in {out} all the same",
            file=sys.stderr,
        )
    try:  # the day's archive of an earlier run of this OUT is replaced
        archive(out, force=True, raw_data=[root], print_fn=lambda line: print(f"mxflow: {line}"))
    except MxflowError as exc:
        print(f"mxflow: no archive written: {exc}", file=sys.stderr)
        return 1
    return 0
