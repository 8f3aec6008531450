"""Command-line options shared by ``mxflow run`` and ``mxflow watch``."""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path
from typing import Any

from mxflow.discover.collection import Collection
from mxflow.merge.cli import add_anomalous_threshold_arguments, anomalous_thresholds
from mxflow.model import Dataset, ProcessingOptions
from mxflow.schedule.cluster import CLUSTER_KINDS
from mxflow.schedule.collection import (
    DEFAULT_DISCOVER_FN,
    DEFAULT_SETTLE_S,
    DEFAULT_SETTLE_TIMEOUT_S,
    RunConfig,
)
from mxflow.schedule.tasks import DEFAULT_PROCESS_FN, resolve_function
from mxflow.stats.free_flags import free_flags_arg
from mxflow.stats.scatterers import HEAVY_ATOM_HELP, SITES_HELP, cli_heavy_atom, sites_arg
from mxflow.util.args import (
    CORES_BOUND_HELP,
    UNIT_CELL_HELP,
    UNIT_CELL_METAVAR,
    core_count_arg,
    nonnegative_float,
    nonnegative_int,
    positive_float,
    sample_name_arg,
    space_group_arg,
    unit_cell_arg,
    wedge_deg_arg,
    workdir_arg,
)


def add_collection_arguments(parser: argparse.ArgumentParser) -> None:
    """ROOT, --workdir and the options of discovery, processing and execution."""
    parser.add_argument(
        "root", metavar="ROOT", help="top directory of the collection (e.g. a ZOO tree)"
    )
    parser.add_argument(
        "--workdir", "-o", required=True, metavar="OUT", type=workdir_arg, help="output directory"
    )
    g = parser.add_argument_group("collection")
    g.add_argument(
        "--sample-sheet", metavar="CSV", help="CSV mapping PuckID-PinID (or a directory) to sample"
    )
    g.add_argument(
        "--sample",
        dest="default_sample",
        type=sample_name_arg,
        metavar="NAME",
        help="sample name for datasets the sheet does not name (default: one per pin)",
    )
    g.add_argument(
        "--wedge-deg",
        type=wedge_deg_arg,
        default=30.0,
        metavar="DEG",
        help="also cut helical/single sweeps into wedges of DEG degrees, above 0 and at most "
        "360 (default 30)",
    )
    g.add_argument(
        "--settle",
        dest="settle_s",
        type=nonnegative_float,
        default=DEFAULT_SETTLE_S,
        metavar="S",
        help="seconds a dataset's files must stay unchanged before it is processed "
        f"(default {DEFAULT_SETTLE_S:g}; 0 for data known to be complete)",
    )
    g.add_argument(
        "--settle-timeout",
        dest="settle_timeout_s",
        type=nonnegative_float,
        default=DEFAULT_SETTLE_TIMEOUT_S,
        metavar="S",
        help="mxflow run: wait at most S seconds for datasets still being written, then "
        f"leave them out and exit with status 1 (default {DEFAULT_SETTLE_TIMEOUT_S:g})",
    )
    g = parser.add_argument_group("processing")
    g.add_argument(
        "--space-group",
        type=space_group_arg,
        metavar="SG",
        help="space group for every dataset (else determined)",
    )
    g.add_argument(
        "--unit-cell",
        type=unit_cell_arg,
        metavar=UNIT_CELL_METAVAR,
        help=f"unit cell for every dataset: {UNIT_CELL_HELP}",
    )
    g.add_argument(
        "--d-min", type=positive_float, metavar="Å", help="high-resolution limit (Å, above 0)"
    )
    g.add_argument("--anomalous", action="store_true", help="keep Friedel mates separate")
    g.add_argument(
        "--heavy-atom",
        metavar="EL",
        help=HEAVY_ATOM_HELP + "; wins over the sample sheet's heavy_atom column",
    )
    g.add_argument(
        "--sites",
        type=sites_arg,
        metavar="N",
        help=SITES_HELP + "; wins over the sample sheet's sites column",
    )
    g.add_argument(
        "--free-flags",
        type=free_flags_arg,
        metavar="MTZ",
        help="take the FreeR flags of every merged MTZ from this MTZ (extended beyond its "
        "resolution); for every sample the sample sheet gives no free_flags file",
    )
    g.add_argument(
        "--retry-failed",
        action="store_true",
        help="process again datasets that failed in an earlier run",
    )
    g = parser.add_argument_group("merging")
    add_anomalous_threshold_arguments(g)
    g = parser.add_argument_group("execution")
    g.add_argument(
        "--cluster",
        choices=CLUSTER_KINDS,
        default="local",
        help="where datasets run: local worker processes (default) or a batch system "
        "through dask-jobqueue",
    )
    g.add_argument(
        "--cluster-config",
        metavar="YAML|TOML",
        help="queue options for --cluster slurm|sge|pbs (see mxflow.schedule.cluster)",
    )
    g.add_argument(
        "--workers",
        type=core_count_arg,
        metavar="N",
        help=f"local worker processes (default: cores / nproc; {CORES_BOUND_HELP})",
    )
    g.add_argument(
        "--nproc",
        type=core_count_arg,
        metavar="N",
        help="DIALS nproc per dataset (default 1: one dataset per core; "
        f"{CORES_BOUND_HELP}; for larger batch nodes set nproc in --cluster-config)",
    )
    g.add_argument(
        "--dashboard",
        action="store_true",
        help="serve the Dask dashboard (task names show dataset paths) on 127.0.0.1, at a "
        "free port printed at start-up; off by default",
    )
    g.add_argument(
        "--retries",
        type=nonnegative_int,
        default=2,
        metavar="N",
        help="times a dataset is retried when its worker dies (default 2)",
    )
    g.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bar: one line per finished dataset instead, as when the output "
        "is not a terminal (every line also goes to OUT/run.log)",
    )
    g.add_argument(
        "--process-fn",
        default=DEFAULT_PROCESS_FN,
        metavar="MODULE:FUNCTION",
        help=argparse.SUPPRESS,
    )  # developer option: e.g. mxflow.schedule.fake:process_dataset
    g.add_argument(
        "--discover-fn",
        default=DEFAULT_DISCOVER_FN,
        metavar="MODULE:FUNCTION",
        help=argparse.SUPPRESS,
    )  # developer option: e.g. mxflow.schedule.fake:discover_collection


def discover_with_cli_settings(
    root: str | Path,
    *,
    discover_fn: Any,
    free_flags: str | None = None,
    heavy_atom: str | None = None,
    n_sites: int | None = None,
    **kwargs: Any,
) -> Collection:
    """``discover_fn``'s collection with what the command line says of every sample.

    ``free_flags`` (an MTZ, ``mxflow run --free-flags``): the flag file of every sample
    the sample sheet gives none (see :func:`discover_with_free_flags`).  ``heavy_atom``
    and ``n_sites`` (``--heavy-atom``, ``--sites``): set on every dataset, over what
    the sheet says (the command line wins); merging takes them from there
    (:func:`mxflow.schedule.post.sample_settings`).
    """
    coll = resolve_function(discover_fn)(root, **kwargs)
    everything = [*coll.datasets, *coll.wedges, *coll.incomplete]
    if free_flags:
        _fill_free_flags(everything, free_flags)
    for ds in everything:
        if heavy_atom:
            ds.heavy_atom = heavy_atom
        if n_sites:
            ds.n_sites = n_sites
    return coll


def discover_with_free_flags(
    root: str | Path, *, free_flags: str, discover_fn: Any, **kwargs: Any
) -> Collection:
    """``discover_fn``'s collection with ``free_flags`` (an MTZ) as the flag file of every
    sample the sample sheet gives none (``mxflow run --free-flags``).

    A sample whose sheet rows name one flag file has it on all its datasets;
    one naming several is left as the sheet says (merging then uses none).
    """
    return discover_with_cli_settings(
        root, discover_fn=discover_fn, free_flags=free_flags, **kwargs
    )


def _fill_free_flags(everything: list[Dataset], free_flags: str) -> None:
    """``free_flags`` on the datasets of every sample none of whose datasets names a flag
    file; a sample naming one file has it on all its datasets."""
    named: dict[str, set[str]] = {}
    for ds in everything:
        named.setdefault(ds.sample, set())
        if ds.free_flags_mtz:
            named[ds.sample].add(ds.free_flags_mtz)
    for ds in everything:
        given = named[ds.sample]
        if not given:
            ds.free_flags_mtz = free_flags
        elif len(given) == 1:
            ds.free_flags_mtz = next(iter(given))


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """The run's configuration; an unknown ``--heavy-atom`` is warned about on stderr
    (and noted on every dataset, which the run log repeats), not refused."""
    heavy_atom, warning = cli_heavy_atom(args.heavy_atom)
    if warning:
        print(warning, file=sys.stderr)
    options = ProcessingOptions(
        space_group=args.space_group,
        unit_cell=args.unit_cell,
        d_min=args.d_min,
        anomalous=args.anomalous or heavy_atom is not None,
        heavy_atom=heavy_atom,
    )
    discover_fn: Any = args.discover_fn
    if args.free_flags or heavy_atom or args.sites:
        discover_fn = functools.partial(
            discover_with_cli_settings,
            discover_fn=args.discover_fn,
            free_flags=args.free_flags,
            heavy_atom=heavy_atom,
            n_sites=args.sites,
        )
    return RunConfig(
        sample_sheet=args.sample_sheet,
        default_sample=args.default_sample,
        wedge_deg=args.wedge_deg,
        cluster=args.cluster,
        cluster_config=args.cluster_config,
        workers=args.workers,
        nproc=args.nproc,
        options=options,
        process_fn=args.process_fn,
        retries=args.retries,
        retry_failed=args.retry_failed,
        progress=not args.no_progress,
        settle_s=args.settle_s,
        settle_timeout_s=args.settle_timeout_s,
        dashboard=args.dashboard,
        thresholds=anomalous_thresholds(args),
        discover_fn=discover_fn,
    )
