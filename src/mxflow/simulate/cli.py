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
  mxflow simulate myd88_sim --electron --crystals 6 --seed 1   # MicroED, SMV Timepix frames
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


# option dest -> SimulationConfig field, for the options that set one
_FIELDS = {
    "format": "format",
    "layout": "layout",
    "zoo_mode": "zoo_mode",
    "prefix": "prefix",
    "n_crystals": "n_crystals",
    "pins": "pins",
    "frames": "frames",
    "osc": "osc_width",
    "osc_start": "osc_start",
    "space_group": "space_group",
    "unit_cell": "unit_cell",
    "d_min": "d_min",
    "wavelength": "wavelength",
    "heavy_atom": "heavy_atom",
    "sites": "n_sites",
    "distance": "distance",
    "detector_size": "detector_size",
    "mosaicity": "mosaicity",
    "counts": "counts_at_dmin",
    "background": "background",
    "damage_b": "damage_b_per_deg",
    "damage_scale": "damage_scale_per_deg",
    "populations": "n_populations",
    "cell_change": "population_cell_change",
    "raster": "raster_grid",
    "seed": "seed",
    "distance_spread": "distance_spread",
    "cell_spread": "cell_spread",
    "header_distance": "header_distance",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options that set a configuration field default to None: the field then keeps the
    value of the chosen preset (X-ray, or --electron), shown in the help as X-ray / ED."""
    from mxflow.simulate.config import SimulationConfig, electron_config

    d = SimulationConfig()
    e = electron_config()

    def both(x, y) -> str:
        return f"{x:g}" if x == y else f"{x:g}; --electron {y:g}"

    parser.add_argument("out", help="output directory (created)")
    parser.add_argument(
        "--electron",
        action="store_true",
        help="MicroED preset modelled on the DIALS MyD88 small-wedges tutorial: λ 0.0251 Å, "
        "516x516 Timepix SMV frames dxtbx reads as FormatSMVTimePix_SU_516x516, header "
        "distance 2.193 (metres) but true distances 1772.5 mm ± 1 %%, true rotation axis "
        "(-0.628,-0.778,0) unlike the format's (0.7826,-0.6226,0), C2 99.06,31.01,54.30,"
        "90,107.7,90 ± 0.3 %%, 72 frames of 0.9149°, OUT/<n>/00001.img; the other options "
        "change it",
    )
    parser.add_argument(
        "--format",
        choices=["cbf", "eiger", "smv"],
        default=None,
        help=f"image files: miniCBF per frame, an Eiger HDF5 master file, or SMV per frame "
        f"(default: {d.format}; --electron {e.format})",
    )
    parser.add_argument(
        "--layout",
        choices=["plain", "zoo", "folders"],
        default=None,
        help="plain: OUT/<prefix>_NN_######.cbf; zoo: OUT/<puck>-<pin>/data00/...; "
        f"folders: OUT/<n>/00001.img (default: {d.layout}; --electron {e.layout})",
    )
    parser.add_argument(
        "--zoo-mode",
        choices=["multi", "single", "helical"],
        default=None,
        help="zoo layout: multi puts every crystal on one pin, single and helical one crystal "
        f"per pin (default: {d.zoo_mode})",
    )
    parser.add_argument(
        "--prefix", default=None, help=f"file prefix in the plain layout (default: {d.prefix})"
    )
    parser.add_argument(
        "--n-crystals",
        "--crystals",
        type=int,
        default=None,
        metavar="N",
        help=f"crystals to simulate, one sweep each (default: {d.n_crystals})",
    )
    parser.add_argument(
        "--pins",
        type=int,
        default=None,
        help="zoo multi layout: spread the crystals over this many pins, a raster scan "
        f"(--raster) on each (default: {d.pins})",
    )
    parser.add_argument(
        "--frames",
        type=int,
        default=None,
        help=f"frames per crystal (default: {both(d.frames, e.frames)})",
    )
    parser.add_argument(
        "--osc",
        type=float,
        default=None,
        help=f"degrees per frame (default: {both(d.osc_width, e.osc_width)})",
    )
    parser.add_argument(
        "--osc-start",
        type=float,
        default=None,
        help="start angle (deg); default random per crystal",
    )
    parser.add_argument(
        "--space-group",
        type=space_group_arg,
        default=None,
        metavar="SG",
        help=f"space group of the crystals, e.g. P212121 or 19 (default: {d.space_group}; "
        f"--electron {e.space_group})",
    )
    parser.add_argument(
        "--unit-cell",
        type=unit_cell_arg,
        default=None,
        metavar=UNIT_CELL_METAVAR,
        help=f"unit cell of the crystals: {UNIT_CELL_HELP} "
        f"(default: {','.join(f'{x:g}' for x in d.unit_cell)}; "
        f"--electron {','.join(f'{x:g}' for x in e.unit_cell)})",
    )
    parser.add_argument(
        "--d-min",
        type=float,
        default=None,
        help=f"resolution limit (Å) (default: {both(d.d_min, e.d_min)})",
    )
    parser.add_argument(
        "--wavelength",
        type=float,
        default=None,
        help=f"Å (default: {both(d.wavelength, e.wavelength)})",
    )
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
        default=None,
        help=f"heavy-atom sites per ASU (default: {d.n_sites})",
    )
    parser.add_argument(
        "--distance",
        type=float,
        default=None,
        help=f"true distance, mm (default: {both(d.distance, e.distance)})",
    )
    parser.add_argument(
        "--distance-spread",
        type=float,
        default=None,
        metavar="FRACTION",
        help="each crystal's true distance is DISTANCE·(1 + U(-F, F)) "
        f"(default: {both(d.distance_spread, e.distance_spread)})",
    )
    parser.add_argument(
        "--header-distance",
        type=float,
        default=None,
        help="DISTANCE written to the headers instead of the true one (--electron: "
        f"{e.header_distance:g}, meant in metres)",
    )
    parser.add_argument(
        "--cell-spread",
        type=float,
        default=None,
        metavar="FRACTION",
        help="each crystal's cell edges are scaled by 1 + U(-F, F) "
        f"(default: {both(d.cell_spread, e.cell_spread)})",
    )
    parser.add_argument(
        "--detector-size",
        type=lambda s: tuple(int(x) for x in _floats(s, 2)),
        default=None,
        help="pixels fast,slow (default PILATUS 1M 981,1043; --electron 516,516)",
    )
    parser.add_argument(
        "--mosaicity",
        type=float,
        default=None,
        help=f"degrees (σ) (default: {both(d.mosaicity, e.mosaicity)})",
    )
    parser.add_argument(
        "--counts",
        type=float,
        default=None,
        help="mean counts of a full reflection at d_min (intensity level) "
        f"(default: {both(d.counts_at_dmin, e.counts_at_dmin)})",
    )
    parser.add_argument(
        "--background",
        type=float,
        default=None,
        help=f"counts/pixel (default: {both(d.background, e.background)})",
    )
    parser.add_argument(
        "--damage-b",
        type=float,
        default=None,
        help=f"B increase per degree (Å²) (default: {d.damage_b_per_deg:g})",
    )
    parser.add_argument(
        "--damage-scale",
        type=float,
        default=None,
        help=f"fractional intensity loss per degree (default: {d.damage_scale_per_deg:g})",
    )
    parser.add_argument(
        "--populations",
        type=int,
        default=None,
        help=f"number of non-isomorphous populations (default: {d.n_populations})",
    )
    parser.add_argument(
        "--cell-change",
        type=float,
        default=None,
        help=f"fractional change of a between populations (default: {d.population_cell_change:g})",
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
        default=None,
        help=f"random seed: the same seed writes the same images (default: {d.seed})",
    )


def config_from_args(args: argparse.Namespace):
    """The SimulationConfig of parsed options: the preset (X-ray, or --electron) with
    every option that was given (not None) put over it."""
    from mxflow.simulate.config import SimulationConfig, electron_config

    given = vars(args)
    overrides = {
        field: given[dest] for dest, field in _FIELDS.items() if given.get(dest) is not None
    }
    if args.no_random_indexing:
        overrides["random_indexing"] = False
    if args.electron:
        return electron_config(**overrides)
    return SimulationConfig(**overrides)


def run(args: argparse.Namespace) -> int:
    from mxflow.simulate.core import simulate
    from mxflow.util.files import read_json

    try:
        cfg = config_from_args(args)
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
