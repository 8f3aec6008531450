"""Process a whole beamline collection in parallel (Dask), resumably.

Finds every dataset under ROOT (ZOO trees: <PuckID>-<PinID>/data*/ with
multi, helical and single data; any other tree by a generic walk), cuts
helical and single sweeps into wedges (--wedge-deg, default 30°), processes
each dataset and wedge as its own Dask task, then merges each sample's
datasets and computes hit maps of raster scans (when those modules are
installed).  Without a sample sheet every pin is its own sample; --group-by-cell
merges the pins whose processed cells agree as one sample (cell1, cell2 …), and
a run that leaves such pins unmerged says so at its end.

Outputs: OUT/proc/<pin>/.../<dataset>/ (whole sweeps), OUT/proc_30deg/...
(wedges), OUT/mxflow.sqlite (the catalog; see 'mxflow status OUT') and
OUT/summary.json.  Rerunning the same command resumes: finished datasets are
not redone (failed ones only with --retry-failed).  Only one mxflow command
may write OUT at a time (run, watch, process, merge, report, hitmap), and OUT
may not hold another command's summary.json ('mxflow process').

Ctrl-C or SIGTERM: no new datasets start, those running finish and are
recorded (a second signal stops them at once; they resume next time), the
run is recorded as interrupted ('mxflow status OUT' says why) and exits with
status 130; during the cluster's start-up a signal stops at once.  A run
killed outright (kill -9) is shown as interrupted by 'mxflow status' and
recorded so by the next command writing OUT.

Developer option: --process-fn MODULE:FUNCTION replaces the DIALS pipeline by
any importable function f(dataset, workdir, options) -> DatasetResult, e.g.
mxflow.schedule.fake:process_dataset (see that module) for tests.

Cluster config (--cluster slurm|sge|pbs --cluster-config FILE): YAML or
TOML with one section per scheduler whose keys go to dask-jobqueue
(queue, account, cores, processes, memory, walltime, job_extra_directives ...)
plus mxflow's jobs, maximum_jobs and nproc, e.g.

  slurm:
    queue: mx
    cores: 16
    processes: 4
    memory: 64GB
    walltime: "04:00:00"
    jobs: 2
"""

from __future__ import annotations

import argparse

from mxflow.schedule.options import add_collection_arguments, config_from_args


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_collection_arguments(parser)
    parser.add_argument("--no-merge", action="store_true", help="process only; do not merge")
    parser.add_argument(
        "--group-by-cell",
        action="store_true",
        help="merge as one sample the pins (without a sample from --sample-sheet or --sample) "
        "whose processed cells agree: one sample per group of compatible cells, named cell1, "
        "cell2 … by size (a dataset matching no other keeps its pin's sample)",
    )
    parser.add_argument("--no-hitmap", action="store_true", help="no hit maps of raster scans")
    parser.add_argument(
        "--archive",
        action="store_true",
        help="at the end (also of a failed run, not of an interrupted one) write "
        "OUT/../YYMMDD_<name of OUT>.tgz to take home, as 'mxflow archive OUT' does "
        "(the day's archive is replaced)",
    )


def run(args: argparse.Namespace) -> int:
    from mxflow.schedule.collection import run_collection

    config = config_from_args(args)
    config.merge = not args.no_merge
    config.group_by_cell = args.group_by_cell
    config.hitmap = not args.no_hitmap
    outcome = run_collection(args.root, args.workdir, config)
    if outcome.stopped:
        return 130
    # data left out (still being written, or files discovery rejected), nothing at all to
    # process, or a merge that failed: the exit status says so
    left_out = outcome.still_written or outcome.rejected
    status = 1 if left_out or outcome.found_nothing or outcome.failed_merges else 0
    if args.archive:
        from mxflow.report.archive_cli import archive_after_run

        status = archive_after_run(args.workdir, args.root, status) or status
    return status
