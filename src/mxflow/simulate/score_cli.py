"""Compare a merged MTZ with the simulator's truth: CC overall and per resolution shell.

The best of the alternative indexings allowed by the truth lattice is used
(and, with several populations, the best-matching population).  Reads IMEAN,
I or F (squared) as written by dials.merge, dials.export or other programs.

example:
  mxflow score out/merged.mtz demo_data/truth --json score.json
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("merged_mtz", help="merged (or unmerged) MTZ file")
    parser.add_argument("truth_dir", help="the truth/ directory written by mxflow simulate")
    parser.add_argument("--population", default=None, help="score against this population only")
    parser.add_argument("--shells", type=int, default=10, help="number of resolution shells")
    parser.add_argument("--json", default=None, metavar="OUT.json", help="also write the result")


def run(args: argparse.Namespace) -> int:
    from mxflow.simulate.score import format_table, score
    from mxflow.util.files import write_json

    result = score(args.merged_mtz, args.truth_dir, args.population, args.shells)
    print(format_table(result))
    if args.json:
        write_json(args.json, result)
    return 0
