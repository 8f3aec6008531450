"""Write simulated rotation images (miniCBF or Eiger HDF5) with known truth.

Random protein-like crystals in a chosen space group are rotated in a PILATUS-style
beam/detector geometry (DIALS conventions: rotation axis +x, beam along -z).
Spots have Wilson fall-off, Lorentz-polarisation, partiality over each frame,
background with a solvent ring, Poisson noise and module gaps.  The truth
(orientation matrices, cells, true intensities) goes to OUT/truth/.

examples:
  mxflow simulate demo_data --n-crystals 3 --frames 60 --seed 1
  mxflow simulate zoo --layout zoo --zoo-mode multi --n-crystals 8 --frames 50 --osc 0.2
  mxflow simulate ambig --space-group P4 --unit-cell 60,60,80,90,90,90 --n-crystals 4
"""

from __future__ import annotations

import argparse

from mxflow.errors import MxflowError
from mxflow.util.args import (
    GRID_HELP,
    GRID_METAVAR,
    UNIT_CELL_HELP,
    UNIT_CELL_METAVAR,
    grid_arg,
    space_group_arg,
    unit_cell_arg,
)


def _floats(text: str, n: int) -> tuple[float, ...]:
    try:
        values = tuple(float(x) for x in text.replace(" ", ",").split(",") if x)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected {n} numbers separated by commas") from exc
    if len(values) != n:
        raise argparse.ArgumentTypeError(f"expected {n} numbers separated by commas")
    return values


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from mxflow.simulate.config import SimulationConfig

    d = SimulationConfig()
    parser.add_argument("out", help="output directory (created)")
    parser.add_argument(
        "--format",
        choices=["cbf", "eiger"],
        default=d.format,
        help=f"image files: miniCBF per frame, or an Eiger HDF5 master file (default: {d.format})",
    )
    parser.add_argument(
        "--layout",
        choices=["plain", "zoo"],
        default=d.layout,
        help="plain: OUT/<prefix>_NN_######.cbf; zoo: OUT/<puck>-<pin>/data00/...",
    )
    parser.add_argument(
        "--zoo-mode",
        choices=["multi", "single", "helical"],
        default=d.zoo_mode,
        help="zoo layout: multi puts every crystal on one pin, single and helical one crystal "
        f"per pin (default: {d.zoo_mode})",
    )
    parser.add_argument("--prefix", default=d.prefix, help="file prefix in the plain layout")
    parser.add_argument(
        "--n-crystals",
        type=int,
        default=d.n_crystals,
        metavar="N",
        help=f"crystals to simulate, one sweep each (default: {d.n_crystals})",
    )
    parser.add_argument("--frames", type=int, default=d.frames, help="frames per crystal")
    parser.add_argument("--osc", type=float, default=d.osc_width, help="degrees per frame")
    parser.add_argument(
        "--osc-start",
        type=float,
        default=None,
        help="start angle (deg); default random per crystal",
    )
    parser.add_argument(
        "--space-group",
        type=space_group_arg,
        default=d.space_group,
        metavar="SG",
        help=f"space group of the crystals, e.g. P212121 or 19 (default: {d.space_group})",
    )
    parser.add_argument(
        "--unit-cell",
        type=unit_cell_arg,
        default=d.unit_cell,
        metavar=UNIT_CELL_METAVAR,
        help=f"unit cell of the crystals: {UNIT_CELL_HELP} "
        f"(default: {','.join(f'{x:g}' for x in d.unit_cell)})",
    )
    parser.add_argument("--d-min", type=float, default=d.d_min, help="resolution limit (Å)")
    parser.add_argument("--wavelength", type=float, default=d.wavelength, help="Å")
    parser.add_argument(
        "--heavy-atom",
        metavar="EL",
        help="anomalous scatterer (e.g. Zn): N sites of EL in the model, with f′/f″ at the "
        "wavelength (gemmi's Cromer–Liberman), so that I(+) ≠ I(−) in the images "
        "(default: none; Friedel's law holds)",
    )
    parser.add_argument(
        "--sites",
        type=int,
        default=d.n_sites,
        help="heavy-atom sites per ASU (default: %(default)s)",
    )
    parser.add_argument("--distance", type=float, default=d.distance, help="mm")
    parser.add_argument(
        "--detector-size",
        type=lambda s: tuple(int(x) for x in _floats(s, 2)),
        default=d.detector_size,
        help="pixels fast,slow (default PILATUS 1M)",
    )
    parser.add_argument("--mosaicity", type=float, default=d.mosaicity, help="degrees (σ)")
    parser.add_argument(
        "--counts",
        type=float,
        default=d.counts_at_dmin,
        help="mean counts of a full reflection at d_min (intensity level)",
    )
    parser.add_argument("--background", type=float, default=d.background, help="counts/pixel")
    parser.add_argument(
        "--damage-b", type=float, default=d.damage_b_per_deg, help="B increase per degree (Å²)"
    )
    parser.add_argument(
        "--damage-scale",
        type=float,
        default=d.damage_scale_per_deg,
        help="fractional intensity loss per degree",
    )
    parser.add_argument(
        "--populations",
        type=int,
        default=d.n_populations,
        help="number of non-isomorphous populations",
    )
    parser.add_argument(
        "--cell-change",
        type=float,
        default=d.population_cell_change,
        help="fractional change of a between populations",
    )
    parser.add_argument(
        "--no-random-indexing",
        action="store_true",
        help="always use the reference setting (no indexing ambiguity)",
    )
    parser.add_argument(
        "--raster",
        type=grid_arg,
        default=None,
        metavar=GRID_METAVAR,
        help=f"also write a raster scan of stills on this grid: {GRID_HELP}",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=d.seed,
        help=f"random seed: the same seed writes the same images (default: {d.seed})",
    )


def run(args: argparse.Namespace) -> int:
    from mxflow.simulate.config import SimulationConfig
    from mxflow.simulate.core import simulate
    from mxflow.util.files import read_json

    try:
        cfg = SimulationConfig(
            format=args.format,
            layout=args.layout,
            zoo_mode=args.zoo_mode,
            prefix=args.prefix,
            n_crystals=args.n_crystals,
            frames=args.frames,
            osc_width=args.osc,
            osc_start=args.osc_start,
            space_group=args.space_group,
            unit_cell=args.unit_cell,
            d_min=args.d_min,
            wavelength=args.wavelength,
            heavy_atom=args.heavy_atom,
            n_sites=args.sites,
            distance=args.distance,
            detector_size=args.detector_size,
            mosaicity=args.mosaicity,
            counts_at_dmin=args.counts,
            background=args.background,
            damage_b_per_deg=args.damage_b,
            damage_scale_per_deg=args.damage_scale,
            n_populations=args.populations,
            population_cell_change=args.cell_change,
            random_indexing=not args.no_random_indexing,
            raster_grid=args.raster,
            seed=args.seed,
        )
    except ValueError as exc:
        raise MxflowError(f"bad simulation settings: {exc}") from exc
    result = simulate(args.out, cfg)
    for sweep in result.sweeps:
        print(
            f"{sweep.template}  frames {sweep.first}-{sweep.last}  "
            f"osc {sweep.osc_start:.1f}+{sweep.osc_width:g} deg"
        )
    if result.raster_dir:
        print(f"raster scan: {result.raster_dir}")
    print(f"truth: {result.truth_json}")
    for pop in read_json(result.truth_json)["populations"]:
        if "anomalous" in pop:
            a = pop["anomalous"]
            print(
                f"population {pop['name']}: {a['n_sites']} {a['element']} sites, "
                f"f' {a['f_prime']:.2f} e, f'' {a['f_double_prime']:.2f} e, "
                f"Bijvoet ratio <|dF|>/<F> {100 * a['bijvoet_ratio']:.1f} %"
            )
    print(
        f"{result.n_frames} frames in {result.wall_s:.1f} s "
        f"({result.wall_s / max(result.n_frames, 1):.3f} s/frame)"
    )
    return 0
