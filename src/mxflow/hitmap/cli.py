"""Spot counts and heat maps of raster scans (mxflow's own fast spot finder).

Finds the diffraction spots on every frame of a raster (grid) scan with the
dispersion threshold that dials.find_spots uses by default, and writes
WORKDIR/hitmap.json (per frame: spots, total and median spot intensity,
estimated resolution limit), hitmap.png (heat map on the scan grid) and
hitmap.html (hover over a cell to see its frame).  Unreadable frames are
listed as errors and drawn hatched; they never stop the map.

Example (10 rows of 20 frames): mxflow hitmap /data/scan01/ --workdir hits --grid 10,20 --snake
"""

from __future__ import annotations

import argparse

from mxflow.catalog.lock import locked
from mxflow.hitmap.run import SpotFilter, hitmap
from mxflow.hitmap.spotfinder import SpotFinderParams
from mxflow.util.args import (
    CORES_BOUND_HELP,
    GRID_HELP,
    GRID_METAVAR,
    core_count_arg,
    grid_arg,
    positive_float,
    workdir_arg,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "paths", nargs="+", metavar="PATH", help="image files or directories (CBF, Eiger master)"
    )
    parser.add_argument("--workdir", required=True, type=workdir_arg, help="output directory")
    parser.add_argument(
        "--grid",
        type=grid_arg,
        metavar=GRID_METAVAR,
        help=f"raster shape: {GRID_HELP}; default: a near-square guess",
    )
    parser.add_argument(
        "--snake", action="store_true", help="serpentine scan: every second row runs backwards"
    )
    parser.add_argument(
        "--d-max",
        type=float,
        default=30.0,
        help="ignore spots at lower resolution than this (Å; 0 = no limit)",
    )
    parser.add_argument(
        "--d-min",
        type=positive_float,
        default=None,
        help="ignore spots at higher resolution than this (Å, above 0)",
    )
    parser.add_argument(
        "--ice-rings", action="store_true", help="ignore spots on hexagonal-ice rings"
    )
    parser.add_argument(
        "--min-spot-size",
        type=int,
        default=3,
        help="fewest pixels in a spot (DIALS: 3 for pixel detectors)",
    )
    parser.add_argument("--max-spot-size", type=int, default=1000, help="most pixels in a spot")
    parser.add_argument(
        "--sigma-strong", type=float, default=3.0, help="strong-pixel threshold in σ"
    )
    parser.add_argument(
        "--sigma-background", type=float, default=6.0, help="dispersion threshold in σ"
    )
    parser.add_argument(
        "--workers",
        type=core_count_arg,
        default=None,
        help=f"parallel workers (default: CPUs available; {CORES_BOUND_HELP})",
    )
    how = parser.add_mutually_exclusive_group()
    how.add_argument(
        "--processes", action="store_const", const="processes", dest="backend",
        help="worker processes (default for Eiger HDF5 scans: h5py reads one frame at a time "
        "per process, so processes decompress in parallel)",
    )  # fmt: skip
    how.add_argument(
        "--threads", action="store_const", const="threads", dest="backend",
        help="worker threads (default for CBF: mxflow's decoder runs in parallel threads)",
    )  # fmt: skip


def run(args: argparse.Namespace) -> int:
    params = SpotFinderParams(
        sigma_strong=args.sigma_strong,
        sigma_background=args.sigma_background,
        min_spot_size=args.min_spot_size,
        max_spot_size=args.max_spot_size,
    )
    spot_filter = SpotFilter(d_max=args.d_max or None, d_min=args.d_min, ice_rings=args.ice_rings)
    with locked(args.workdir):  # one writer at a time, also in (a folder of) a run's OUT
        doc = hitmap(
            args.paths,
            args.workdir,
            # hitmap() takes (cols, rows)
            grid=(args.grid[1], args.grid[0]) if args.grid else None,
            snake=args.snake,
            params=params,
            spot_filter=spot_filter,
            workers=args.workers,
            backend=args.backend or "auto",
        )
    good = [f for f in doc["frames"] if f["n_spots"] is not None]
    t = doc["timing"]
    print(
        f"{len(doc['frames'])} frames ({len(good)} read, {len(doc['frames']) - len(good)} unreadable) "
        f"in {t['wall_s']:.1f} s ({t['frames_per_s']:.1f} frames/s) -> {args.workdir}/hitmap.json, .png, .html"
    )
    if good:
        best = max(good, key=lambda f: f["n_spots"])
        print(f"best frame: {best['file']} #{best['index']}: {best['n_spots']} spots")
    for e in doc["errors"]:
        print(f"  unreadable: {e['file']}: {e['error']}")
    return 0 if good else 1
