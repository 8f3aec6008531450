"""Write the HTML reports of an output directory.

Writes OUT/report/index.html (the collection: one row per pin),
OUT/report/datasets.html (every dataset: symmetry, cell, resolution,
per-shell statistics, spots per frame, why failures failed) and a
report.html in every merge folder merge_<method>_<d>S_<sample>/ (per sample
and clustering method: dendrograms, clusters, rejections).  Merge folders
are looked for up to three levels down: 'mxflow run' writes them as
OUT/merge/<sample>/merge_*/ (OUT/merge_30deg/<sample>/merge_*/ for the 30°
wedges, with a <λ>/ level when a sample has several wavelengths), 'mxflow
merge --workdir OUT' as OUT/merge_*/.
The pages open from disk with no network; copy the whole OUT tree (or just
OUT/report, the merge folders' report.html and the files they link) to read
them elsewhere.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", metavar="OUT", help="mxflow output directory (holds summary.json)")


def run(args: argparse.Namespace) -> int:
    from mxflow.catalog.lock import locked
    from mxflow.report.write import write_reports

    with locked(args.out, create=False):  # not while a run or a merge writes OUT
        written = write_reports(Path(args.out))
    for p in written:
        print(p)
    return 0
