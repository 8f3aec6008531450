"""Cluster and merge many datasets of one sample (KAMO / xia2.multiplex style).

INPUT can be an mxflow output directory (with summary.json), DIALS integrated
.expt/.refl pairs, or directories holding them: one dataset per folder (its
integrated pair, never DIALS' intermediate files; inside an mxflow output
directory, e.g. OUT/proc, the datasets its summary.json records there).
The same experiment given twice is an error.  Datasets are grouped by
reduced cell, indexed consistently (dials.cosym; a reference MTZ fixes the
setting), clustered by cell (BLEND-style) and/or intensity CC, and every
chosen cluster is scaled and merged: run_01 (all) -> run_02 (bad image groups
removed) -> run_03 (bad datasets removed), then cut where CC1/2 falls to the
target.  Results: OUT/merge_<method>_<d>S_<sample>/ with cluster_summary.dat
and merge_summary.json; OUT/final/ holds the recommended cluster's files
(final/merged.mtz is the one for refinement).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from mxflow.catalog.lock import locked
from mxflow.catalog.merge_table import FINAL_DIR, format_clusters
from mxflow.merge.final import recommend
from mxflow.merge.pipeline import merge_sample
from mxflow.model import ClusterResult, MergeOptions, MergeSummary, Thresholds
from mxflow.stats.free_flags import free_flags_arg
from mxflow.stats.scatterers import HEAVY_ATOM_HELP, SITES_HELP, cli_heavy_atom, sites_arg
from mxflow.util.args import (
    CORES_BOUND_HELP,
    core_count_arg,
    nonnegative_float,
    positive_float,
    sample_name_arg,
    space_group_arg,
    workdir_arg,
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="mxflow output dir (or a folder of it, e.g. OUT/proc), .expt/.refl files, or "
        "folders of them (one dataset per folder)",
    )
    p.add_argument("--workdir", required=True, type=workdir_arg, help="output directory")
    p.add_argument(
        "--sample",
        type=sample_name_arg,
        help="sample name (also selects that sample from an mxflow summary)",
    )
    p.add_argument(
        "--space-group",
        type=space_group_arg,
        help="force this space group (e.g. 'P 21 21 21' or 19); checked before any work starts",
    )
    p.add_argument("--reference", help="reference MTZ: indexing setting and cell group")
    p.add_argument(
        "--free-flags",
        type=free_flags_arg,
        metavar="MTZ",
        help="take the FreeR flags of every merged MTZ from this MTZ (FreeR_flag, FREE, "
        "R-free-flags or FreeRflag; the data reindexed into its setting; reflections beyond "
        "it extended); checked before any work starts",
    )
    p.add_argument(
        "--anomalous", action="store_true", help="anomalous data: scale I+ and I- separately"
    )
    p.add_argument("--heavy-atom", metavar="EL", help=HEAVY_ATOM_HELP)
    p.add_argument("--sites", type=sites_arg, metavar="N", help=SITES_HELP)
    p.add_argument(
        "--method",
        choices=["blend", "cc", "both"],
        default="cc",
        help="how datasets are clustered: 'cc' by intensity correlation (Ward, on "
        "sqrt(1 - CC)), 'blend' by unit cell (BLEND-style), 'both' each in its own folder (default: cc)",
    )
    p.add_argument(
        "--d-min",
        type=positive_float,
        help="starting resolution in Å, above 0 (default: half-corner)",
    )
    p.add_argument(
        "--cc-half",
        type=float,
        default=0.5,
        help="CC1/2 where the resolution is cut (default: 0.5; xia2 uses 0.3)",
    )
    p.add_argument(
        "--min-completeness",
        type=float,
        default=90.0,
        metavar="PCT",
        help="merge only clusters at least this complete, in %% (default: 90; KAMO's min_cmpl)",
    )
    p.add_argument(
        "--min-multiplicity",
        type=float,
        default=2.0,
        metavar="X",
        help="merge only clusters of at least this multiplicity (default: 2; KAMO's min_redun)",
    )
    p.add_argument(
        "--max-lcv",
        type=float,
        metavar="PCT",
        help="merge only clusters whose cells' linear cell variation (BLEND's LCV) is at "
        "most this, in %% (default: no limit)",
    )
    p.add_argument(
        "--max-alcv",
        type=float,
        metavar="Å",
        help="merge only clusters whose absolute linear cell variation (aLCV) is at most "
        "this, in Å (default: no limit)",
    )
    p.add_argument(
        "--max-height",
        type=float,
        metavar="H",
        help="merge only dendrogram nodes at most this high, in the method's linkage "
        "distance (default: no limit)",
    )
    p.add_argument(
        "--max-clusters",
        type=int,
        default=10,
        metavar="N",
        help="merge at most N clusters, the largest first (default: 10)",
    )
    p.add_argument(
        "--max-merged",
        type=float,
        default=3.0,
        metavar="X",
        help="merge budget: clusters are merged, the largest first, while their datasets "
        "add up to at most X times the datasets clustered (3: the whole set and two levels "
        "of the dendrogram below it), so that a large collection is not scaled ten times "
        "over (default: 3; 0: no budget, as KAMO)",
    )
    add_anomalous_threshold_arguments(p)
    p.add_argument(
        "--merge-near-duplicates",
        action="store_true",
        help="also merge clusters that lack only max(1, 10%%) of the datasets of one "
        "already merged (KAMO merges them all; skipped by default)",
    )
    p.add_argument(
        "--no-frame-rejection",
        action="store_true",
        help="keep every image: skip run_02, which leaves out groups of 10 images whose "
        "ΔCC1/2 marks them as outliers (default: run_02 runs)",
    )
    p.add_argument(
        "--no-dataset-rejection",
        action="store_true",
        help="keep every dataset of a cluster: skip run_03, which leaves out datasets whose "
        "ΔCC1/2 or CC to the rest marks them as outliers (default: run_03 runs)",
    )
    p.add_argument(
        "--nproc",
        type=core_count_arg,
        default=1,
        metavar="N",
        help=f"CPU cores each DIALS program may use (default: 1; {CORES_BOUND_HELP})",
    )


def add_anomalous_threshold_arguments(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
) -> None:
    """KAMO's min_acmpl / min_aredun: ``--min-anom-completeness``, ``--min-anom-multiplicity``
    (``mxflow merge``, ``run``, ``watch``)."""
    parser.add_argument(
        "--min-anom-completeness",
        type=nonnegative_float,
        metavar="PCT",
        help="anomalous merges: merge only clusters with at least this anomalous "
        "completeness, in %% (both Bijvoet mates measured; KAMO's min_acmpl; default: no limit)",
    )
    parser.add_argument(
        "--min-anom-multiplicity",
        type=nonnegative_float,
        metavar="X",
        help="anomalous merges: merge only clusters with at least this many observations "
        "per Bijvoet mate (KAMO's min_aredun; default: no limit)",
    )


def anomalous_thresholds(args: argparse.Namespace, base: Thresholds | None = None) -> Thresholds:
    """``base`` (default: :class:`Thresholds`' defaults) with the command line's
    anomalous completeness / multiplicity limits."""
    return dataclasses.replace(
        base or Thresholds(),
        min_anom_completeness=args.min_anom_completeness,
        min_anom_multiplicity=args.min_anom_multiplicity,
    )


def run(args: argparse.Namespace) -> int:
    heavy_atom, warning = cli_heavy_atom(args.heavy_atom)
    if warning:  # not refused: merged as anomalous, without f′/f″
        print(warning, file=sys.stderr)
    opts = MergeOptions(
        sample=args.sample,
        space_group=args.space_group,
        reference=args.reference,
        free_flags=args.free_flags,
        anomalous=args.anomalous or heavy_atom is not None,
        heavy_atom=heavy_atom,
        n_sites=args.sites,
        method=args.method,
        d_min=args.d_min,
        cc_half_target=args.cc_half,
        thresholds=anomalous_thresholds(
            args,
            Thresholds(
                min_completeness=args.min_completeness,
                min_multiplicity=args.min_multiplicity,
                max_lcv=args.max_lcv,
                max_alcv=args.max_alcv,
                max_height=args.max_height,
                max_clusters=args.max_clusters,
                near_duplicate=None if args.merge_near_duplicates else 0.1,
                max_merged=args.max_merged or None,
            ),
        ),
        reject_frames=not args.no_frame_rejection,
        reject_datasets=not args.no_dataset_rejection,
        nproc=args.nproc,
    )
    with locked(args.workdir):  # one writer at a time (a run's OUT is often the workdir)
        summary = merge_sample(args.inputs, args.workdir, opts)
    print(format_summary(summary, args.workdir))
    return 0 if summary.ok and all(c.ok for c in summary.clusters) else 1


def _failed_line(c: ClusterResult) -> str:
    return f"  {c.method} cluster {c.id:04d}: FAILED {c.error}"


def format_summary(summary: MergeSummary, workdir: str | Path | None = None) -> str:
    """What `mxflow merge` prints: the table of merged clusters (the recommended one marked,
    with ``workdir``'s final/merged.mtz when written), then failed clusters, rejections and notes."""
    final_mtz = Path(workdir) / FINAL_DIR / "merged.mtz" if workdir else None
    recommended = recommend(summary)
    lines = [
        format_clusters(
            summary, recommended, final_mtz if final_mtz and final_mtz.is_file() else None
        )
    ]
    lines += [_failed_line(c) for c in summary.clusters if not c.ok]
    lines += [f"  rejected {r.name} [{r.stage}]: {r.reason}" for r in summary.rejected]
    lines += [f"  note: {n}" for n in summary.notes]
    if not summary.clusters:
        lines += [
            f"  not merged: node {n.id} ({n.n_members} datasets): {n.why}"
            for n in summary.not_merged[:5]
        ]
    return "\n".join(lines)
