"""Process datasets as they arrive: poll ROOT until stopped.

Every --interval seconds (default 10) the tree under ROOT is searched again;
each dataset whose frames are complete and have stopped changing is
processed at once (same outputs, catalog and options as 'mxflow run').
Datasets still being written are left for a later poll.  Stop with Ctrl-C or
SIGTERM: running datasets finish and are recorded (a second signal stops at
once; they resume next time); watch then exits with status 130 and is
recorded as interrupted ('mxflow status OUT' says how many were left).

While watching, each sample has a live merge in OUT/merge_live/<sample>/
(live.json, merged.mtz): every processed dataset is added as it finishes,
reusing the cell, indexing choice and scales already found, and the run log
and the dashboard (mxflow serve OUT) show its statistics.  It is provisional
(no DIALS scaling, clustering or rejection).  When watching ends (--once,
--max-iterations or the first Ctrl-C) every sample is merged and the raster
scans mapped as 'mxflow run' does; a second Ctrl-C skips that, and
'mxflow run ROOT --workdir OUT' does it later without reprocessing anything.
"""

from __future__ import annotations

import argparse

from mxflow.schedule.options import add_collection_arguments, config_from_args
from mxflow.schedule.watch import DEFAULT_INTERVAL_S


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_collection_arguments(parser)
    parser.add_argument(
        "--interval",
        type=float,
        default=DEFAULT_INTERVAL_S,
        metavar="S",
        help=f"seconds between polls (default {DEFAULT_INTERVAL_S:g})",
    )
    parser.add_argument(
        "--once",
        action="store_true",
        help="poll once, process what is complete, merge, and exit",
    )
    parser.add_argument(
        "--no-live-merge",
        action="store_true",
        help="do not keep live merges (OUT/merge_live/) while watching",
    )
    parser.add_argument(
        "--no-merge", action="store_true", help="do not merge the samples when watching ends"
    )
    parser.add_argument(
        "--no-hitmap", action="store_true", help="no hit maps of raster scans when watching ends"
    )
    parser.add_argument(
        "--max-iterations",
        type=int,
        metavar="N",
        help="stop polling after N polls and finish what was found",
    )


def run(args: argparse.Namespace) -> int:
    from mxflow.schedule.watch import watch_collection

    config = config_from_args(args)
    config.merge = not args.no_merge
    config.hitmap = not args.no_hitmap
    max_iterations = 1 if args.once else args.max_iterations
    outcome = watch_collection(
        args.root,
        args.workdir,
        config,
        args.interval,
        max_iterations,
        live=not args.no_live_merge,
    )
    return 130 if outcome.stopped else 0
