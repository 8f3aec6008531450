"""Write the HTML reports of an output directory.

Writes OUT/report/index.html (the collection: one row per pin),
OUT/report/datasets.html (every dataset: symmetry, cell, resolution,
per-shell statistics, spots per frame, why failures failed) and
OUT/merge_*/report.html (per sample: dendrograms, clusters, rejections).
The pages open from disk with no network; copy the whole OUT tree (or just
OUT/report, OUT/merge_*/report.html and the files they link) to read them
elsewhere.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", metavar="OUT", help="mxflow output directory (holds summary.json)")


def run(args: argparse.Namespace) -> int:
    from mxflow.report.write import write_reports

    written = write_reports(Path(args.out))
    for p in written:
        print(p)
    return 0
