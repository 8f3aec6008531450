"""Starting the Dask cluster that processes datasets.

Local (default)
    A ``distributed.LocalCluster`` of worker *processes* (``processes=True``:
    DIALS runs as subprocesses, and mxflow's own Python work in one worker
    never holds the GIL of another), one thread each, so each worker runs one
    dataset at a time.  Sized so that workers × DIALS ``nproc`` ≤ cores: with
    neither ``--workers`` nor ``--nproc`` given, one worker per core with
    ``nproc=1`` — many steps of the DIALS pipeline (import, indexing,
    refinement, scaling) are single-threaded, and two datasets side by
    side keep two cores busy through them, which ``bench/bench_collection.py``
    measured as faster than one dataset at a time with ``nproc=2``.

Slurm / SGE / PBS (``--cluster slurm|sge|pbs``)
    Through dask-jobqueue.  The queue options come from a YAML or TOML file
    (``--cluster-config``), one section per scheduler.  Every key of the
    section is passed to the dask-jobqueue class (``SLURMCluster``,
    ``SGECluster``, ``PBSCluster``: ``queue``, ``account``, ``cores``,
    ``processes``, ``memory``, ``walltime``, ``job_extra_directives``,
    ``job_script_prologue``, ``local_directory``, ``interface`` …) except
    three of mxflow's own:

    ``jobs``          how many batch jobs to start (default 1)
    ``maximum_jobs``  if set, scale adaptively between 0 and this many jobs
    ``nproc``         DIALS ``nproc`` per dataset (default: cores per worker,
                      i.e. ``cores // processes``)

    Example ``cluster.yaml``::

        slurm:
          queue: mx
          account: beamline
          cores: 16          # per batch job
          processes: 4       # Dask workers per job -> 4 datasets per job, nproc 4 each
          memory: 64GB
          walltime: "04:00:00"
          job_extra_directives: ["--exclusive"]
          jobs: 2

    The same in TOML::

        [slurm]
        queue = "mx"
        cores = 16
        processes = 4
        memory = "64GB"
        walltime = "04:00:00"
        jobs = 2

Batch jobs that fail
    Slurm: the worker job is checked with ``sbatch --test-only`` before anything
    is submitted (:func:`check_queue`): a refused partition, account or memory,
    or a controller that does not answer, is a :class:`MxflowError`, not a run
    waiting for workers that never come.  With a fixed ``jobs``, a job that ends
    during the run (scancel, walltime, killed for memory) is replaced
    (:meth:`ClusterHandle.replace_lost_jobs`, called by the executor's loop);
    its task is rescheduled by Dask.  A dataset whose worker died for good gets
    Slurm's verdict on the job in its reason (:func:`slurm_job_fate`).
    Tested live on a single-node Slurm 22.05 (``tests/test_slurm_live.py``);
    SGE and PBS only by their job-script text.

Each worker advertises one ``dataset`` resource and every task asks for it,
so a worker runs one dataset at a time whatever its thread count.

Network
    A local cluster's scheduler, nannies and workers listen on 127.0.0.1 only,
    and the Dask dashboard (task names hold dataset paths) is off unless asked
    for (``dashboard=True``, ``mxflow run --dashboard``): then it too is on
    127.0.0.1, on any free port.  Without it the scheduler's HTTP server (Dask
    always starts one) answers only ``/health``.  A batch cluster's scheduler
    listens where its jobs can reach it (``interface`` in the config); its
    dashboard follows the same rule, on 127.0.0.1 of the submit host.

Bounds
    ``workers`` and ``nproc`` are whole numbers from 1 to 2 × the cores
    (:func:`mxflow.util.args.count_problem`), and a batch cluster needs its
    submit command (``sbatch``, ``qsub``) on PATH (:func:`check_batch_system`):
    otherwise :class:`MxflowError` before anything starts.
"""

from __future__ import annotations

import contextlib
import logging
import re
import shutil
import subprocess
import tempfile
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mxflow.errors import BadInputError, MxflowError
from mxflow.util.args import available_cores, count_problem

CLUSTER_KINDS = ("local", "slurm", "sge", "pbs")
RESOURCE = "dataset"  # one unit per worker: one dataset at a time
_JOBQUEUE_CLASSES = {"slurm": "SLURMCluster", "sge": "SGECluster", "pbs": "PBSCluster"}
_MXFLOW_KEYS = ("jobs", "maximum_jobs", "nproc")
#: the command each batch system's jobs are submitted with (dask-jobqueue runs it)
SUBMIT_COMMANDS = {"slurm": "sbatch", "sge": "qsub", "pbs": "qsub"}
#: every socket of a local cluster listens here
LOOPBACK = "127.0.0.1"
#: the scheduler's HTTP routes without a dashboard: no page naming tasks or workers
_HEALTH_ONLY = ["distributed.http.health"]


def check_counts(workers: int | None, nproc: int | None, cores: int | None) -> None:
    """Raise :class:`MxflowError` unless ``workers`` and ``nproc`` (None: not given) are
    whole numbers from 1 to 2 × ``cores`` (``workers=500: at most 4 on this machine
    (2 cores)``); ``cores`` None: no upper bound (a batch node's cores, not this
    machine's, bound DIALS nproc there)."""
    for name, value in (("workers", workers), ("nproc", nproc)):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            raise MxflowError(f"{name}={value!r}: must be a whole number")
        problem = count_problem(value, cores) if cores is not None else None
        if value < 1 or problem:
            raise MxflowError(f"{name}={value}: {problem or 'must be at least 1'}")


def check_batch_system(kind: str) -> None:
    """Raise :class:`MxflowError` (one line) when ``kind`` is a batch system whose submit
    command (:data:`SUBMIT_COMMANDS`) is not on PATH: its jobs could never start, and
    the run would wait for their workers for ever."""
    command = SUBMIT_COMMANDS.get(kind)
    if command and shutil.which(command) is None:
        raise MxflowError(
            f"--cluster {kind}: '{command}' is not on PATH, so no {kind} job can be "
            f"submitted from this machine; run where '{command}' works, or use --cluster local"
        )


def local_layout(
    cores: int, workers: int | None = None, nproc: int | None = None
) -> tuple[int, int]:
    """(workers, nproc) for a local cluster with workers × nproc ≤ cores.

    Given neither: one single-threaded DIALS worker per core.  Given one, the
    other fills the cores.  Given both, they are used as they are (the user
    may oversubscribe on purpose, each up to 2 × ``cores``).  A count below 1 or
    above that is a :class:`MxflowError` (:func:`check_counts`).
    """
    check_counts(workers, nproc, cores)
    if workers and nproc:
        return workers, nproc
    if workers:
        return workers, max(1, cores // workers)
    if nproc:
        return max(1, cores // nproc), nproc
    return cores, 1


def load_cluster_config(path: str | Path | None, kind: str) -> dict[str, Any]:
    """The ``kind`` section of a YAML (.yaml/.yml) or TOML (.toml) file ({} without a file)."""
    if path is None:
        return {}
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise BadInputError(str(path), f"cannot read cluster config: {exc.strerror}") from exc
    try:
        if path.suffix.lower() == ".toml":
            data = tomllib.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text) or {}
    except Exception as exc:
        raise BadInputError(str(path), f"not valid YAML/TOML: {exc}") from exc
    if not isinstance(data, dict):
        raise BadInputError(str(path), "expected a mapping with one section per scheduler")
    section = data.get(kind, {})
    if not isinstance(section, dict):
        raise BadInputError(str(path), f"section '{kind}' must be a mapping of options")
    return dict(section)


@dataclass
class ClusterHandle:
    """A started cluster: its client, how many datasets it runs at once, DIALS nproc."""

    client: Any
    cluster: Any
    slots: int
    nproc: int
    description: str
    info: dict[str, Any] = field(default_factory=dict)
    #: the Dask dashboard's address ('' when it is off, the default)
    dashboard_link: str = ""
    #: batch systems: the kind, and the fixed number of jobs kept running (0: adaptive)
    kind: str = "local"
    jobs: int = 0
    #: batch systems: worker name -> batch job id, as last seen
    job_ids: dict[str, str] = field(default_factory=dict)
    _last_heal: float = 0.0

    def replace_lost_jobs(self, every_s: float = 5.0) -> None:
        """Batch cluster of a fixed size: submit a new job for each one that ended (cancelled,
        killed for memory or walltime, node failure), at most every ``every_s`` seconds.

        dask-jobqueue keeps a lost job in its spec but never submits it again by itself;
        scaling to the same size does (Dask's ``deploy.lost-worker-timeout`` after the loss).
        """
        if self.kind == "local" or not self.jobs:
            return
        now = time.monotonic()
        if now - self._last_heal < every_s:
            return
        self._last_heal = now
        self.remember_job_ids()
        with contextlib.suppress(Exception):  # a failed submission is retried next time
            self.cluster.scale(jobs=self.jobs)

    def remember_job_ids(self) -> None:
        """Note the batch job id of every current job (the job of a dead worker is then
        still known when its task is reported)."""
        for name, job in list(getattr(self.cluster, "workers", {}).items()):
            job_id = getattr(job, "job_id", None)
            if job_id:
                self.job_ids[str(name)] = str(job_id)

    def worker_fate(self, worker_name: str) -> str:
        """What the batch system says about the job of a dead worker ('' if unknown): for
        Slurm, e.g. "Slurm job 12 was killed for exceeding its memory limit"."""
        if self.kind != "slurm":
            return ""
        self.remember_job_ids()
        name = str(worker_name)
        job_id = self.job_ids.get(name) or self.job_ids.get(name.rsplit("-", 1)[0])
        return slurm_job_fate(job_id) if job_id else ""

    def close(self) -> None:
        """Stop the client and the cluster (workers are terminated)."""
        for thing in (self.client, self.cluster):
            with contextlib.suppress(Exception):  # closing after a crash: nothing to save
                thing.close()


def _http_routes(dashboard: bool) -> dict[str, Any]:
    """Dask config for the scheduler's HTTP server: with ``dashboard`` Dask's own routes
    (info pages, JSON, Prometheus), without it only ``/health``."""
    return {} if dashboard else {"distributed.scheduler.http.routes": list(_HEALTH_ONLY)}


def _have_dashboard() -> bool:
    """Whether Dask can serve its dashboard here (it needs bokeh): Dask's own test."""
    try:
        import distributed.dashboard.scheduler  # noqa: F401
    except ImportError:
        return False
    return True


def _dashboard_info(cluster: Any, dashboard: bool) -> tuple[str, dict[str, str]]:
    """(the dashboard's address, {}) of a started cluster; ('', {}) when none was asked
    for; ('', {"dashboard": why there is none}) when Dask could not start it.

    (Dask lists its HTTP server as the "dashboard" service whether or not the dashboard
    is on it, so ``cluster.dashboard_link`` alone does not tell.)
    """
    if not dashboard:
        return "", {}
    if not _have_dashboard():
        return "", {"dashboard": "not started: it needs the Python package bokeh"}
    try:
        return str(cluster.dashboard_link or ""), {}
    except Exception as exc:  # no such service: say why, do not stop the run for it
        return "", {"dashboard": f"not started: {exc}"}


def _configure_dask(retries: int) -> None:
    import dask

    dask.config.set(
        {
            # a worker that dies with a task is replaced (the nanny restarts it) and
            # the task runs again, up to this many times before it is reported failed
            "distributed.scheduler.allowed-failures": retries,
            "distributed.worker.daemon": False,  # workers start DIALS subprocesses
            "distributed.admin.tick.limit": "60s",  # long DIALS calls are not a stall
            "distributed.comm.timeouts.connect": "60s",
        }
    )


def start_cluster(
    kind: str = "local",
    workers: int | None = None,
    nproc: int | None = None,
    config_path: str | Path | None = None,
    retries: int = 2,
    dashboard: bool = False,
) -> ClusterHandle:
    """Start the cluster named by ``kind`` and connect a client to it.

    ``dashboard``: also serve the Dask dashboard, on 127.0.0.1 at any free port
    (:attr:`ClusterHandle.dashboard_link`); off by default.  Raises
    :class:`MxflowError` for a count out of bounds (:func:`check_counts`) or a batch
    system that is not installed (:func:`check_batch_system`), before starting anything.
    """
    if kind not in CLUSTER_KINDS:
        raise MxflowError(f"unknown cluster '{kind}' (choose from {', '.join(CLUSTER_KINDS)})")
    check_batch_system(kind)
    if kind == "local":
        n_workers, n_proc = local_layout(available_cores(), workers, nproc)
    else:
        check_counts(None, nproc, cores=None)
    _configure_dask(retries)
    import dask
    from distributed import Client, LocalCluster

    if kind == "local":
        with dask.config.set(_http_routes(dashboard)):
            cluster = LocalCluster(
                n_workers=n_workers,
                threads_per_worker=1,
                processes=True,
                memory_limit=0,  # DIALS memory is in subprocesses; never pause or kill on it
                resources={RESOURCE: 1},
                host=LOOPBACK,  # scheduler, nannies and workers: never another interface
                scheduler_port=0,
                # any free port, never another run's (Dask's own HTTP server is there
                # even without a dashboard: health only, see _http_routes)
                dashboard_address=f"{LOOPBACK}:0",
                scheduler_kwargs={"dashboard": dashboard},
                worker_dashboard_address=None,
                silence_logs=logging.ERROR,
            )
        client = Client(cluster)
        desc = f"local: {n_workers} worker process(es) x DIALS nproc {n_proc}"
        link, info = _dashboard_info(cluster, dashboard)
        return ClusterHandle(client, cluster, n_workers, n_proc, desc, info, link)

    # a lost batch job is forgotten (and can be replaced) this long after its worker left
    dask.config.set({"distributed.deploy.lost-worker-timeout": "5s"})
    with dask.config.set(_http_routes(dashboard)):
        cluster, own, processes = make_jobqueue_cluster(kind, config_path, dashboard)
    try:
        check_queue(kind, cluster.job_script())
    except MxflowError:
        cluster.close()
        raise
    jobs = int(own.get("jobs", 1))
    maximum = own.get("maximum_jobs")
    if maximum:
        cluster.adapt(minimum_jobs=0, maximum_jobs=int(maximum))
        jobs = int(maximum)
    else:
        cluster.scale(jobs=jobs)
    n_proc = int(nproc or own["nproc"])
    client = Client(cluster)
    slots = max(1, jobs * processes)
    desc = f"{kind}: {jobs} job(s) x {processes} worker(s) x DIALS nproc {n_proc}"
    link, info = _dashboard_info(cluster, dashboard)
    info["job_script"] = cluster.job_script()
    fixed = 0 if maximum else jobs
    return ClusterHandle(client, cluster, slots, n_proc, desc, info, link, kind, fixed)


#: how long the queue check may take (Slurm retries an unreachable controller for a while)
QUEUE_CHECK_TIMEOUT_S = 60.0


def check_queue(kind: str, job_script: str, timeout_s: float = QUEUE_CHECK_TIMEOUT_S) -> None:
    """Raise :class:`MxflowError` when the batch system would refuse ``job_script`` (bogus
    partition or account, too much memory, controller down), within ``timeout_s`` s.

    Slurm only (``sbatch --test-only``: checked, nothing submitted); SGE and PBS have no
    such check, so there a refused job shows only in dask-jobqueue's log.  Without it a
    refused submission would leave the run waiting for workers that never come.
    """
    if kind != "slurm":
        return
    with tempfile.NamedTemporaryFile("w", suffix=".sh", prefix="mxflow-job-") as fh:
        fh.write(job_script)
        fh.flush()
        try:
            proc = subprocess.run(
                ["sbatch", "--test-only", fh.name],
                capture_output=True,
                text=True,
                timeout=timeout_s,
            )
        except subprocess.TimeoutExpired as exc:
            raise MxflowError(
                f"--cluster slurm: sbatch did not answer within {timeout_s:.0f} s "
                "(is slurmctld running? see 'sinfo')"
            ) from exc
    if proc.returncode != 0:
        said = " ".join(proc.stderr.split()) or f"exit status {proc.returncode}"
        raise MxflowError(
            f"--cluster slurm: the queue refuses mxflow's worker job ({said}); "
            "check queue/partition, account, memory and walltime in --cluster-config, and 'sinfo'"
        )


def _scontrol_fields(text: str) -> dict[str, str]:
    """``Key=Value`` pairs of one ``scontrol show job -o`` line (values without spaces)."""
    return dict(re.findall(r"(\w+)=(\S*)", text))


def _slurm_job_record(job_id: str, timeout_s: float) -> tuple[dict[str, str], str]:
    """(``scontrol show job`` fields, the end of the job's stderr and stdout files)."""
    try:
        proc = subprocess.run(
            ["scontrol", "show", "job", "-o", str(job_id)],
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
    except (OSError, subprocess.TimeoutExpired):
        return {}, ""
    if proc.returncode != 0 or "JobState=" not in proc.stdout:
        return {}, ""
    fields = _scontrol_fields(proc.stdout)
    said = ""
    for key in ("StdErr", "StdOut"):
        path = re.sub(r"%[jJA]", str(job_id), fields.get(key, ""))
        with contextlib.suppress(OSError):
            said += Path(path).read_text(errors="replace")[-20000:] if path else ""
    return fields, said


def slurm_job_fate(job_id: str, timeout_s: float = 20.0, settle_s: float = 10.0) -> str:
    """One sentence on how Slurm job ``job_id`` ended, from ``scontrol show job`` and the
    job's stderr file: "Slurm job 12 was killed for exceeding its memory limit (--mem
    573M)", "Slurm job 12 ended CANCELLED (reason None)"; '' when Slurm no longer knows it.
    A job still ending is waited for up to ``settle_s`` s."""
    deadline = time.monotonic() + settle_s
    while True:
        fields, said = _slurm_job_record(job_id, timeout_s)
        state = fields.get("JobState", "")
        if state not in ("RUNNING", "COMPLETING", "PENDING") or time.monotonic() > deadline:
            break
        time.sleep(1.0)
    if not fields:
        return ""
    memory = fields.get("MinMemoryNode") or fields.get("MinMemoryCPU") or "?"
    if state == "OUT_OF_MEMORY" or re.search(r"exceeded (job )?memory limit|oom-kill", said, re.I):
        return f"Slurm job {job_id} was killed for exceeding its memory limit (--mem {memory})"
    if state == "TIMEOUT":
        return f"Slurm job {job_id} reached its walltime ({fields.get('TimeLimit', '?')})"
    return f"Slurm job {job_id} ended {state} (reason {fields.get('Reason', '?')})"


def make_jobqueue_cluster(
    kind: str, config_path: str | Path | None, dashboard: bool = False
) -> tuple[Any, dict[str, Any], int]:
    """The dask-jobqueue cluster object of ``kind`` (no job submitted yet).

    The scheduler's dashboard is off unless ``dashboard`` (then on 127.0.0.1 of this
    machine, any free port), whatever dask-jobqueue's default (all interfaces, 8787);
    ``scheduler_options`` of the section still win.
    Returns (cluster, mxflow's own keys from the section, worker processes per job).
    """
    section = load_cluster_config(config_path, kind)
    own = {k: section.pop(k) for k in _MXFLOW_KEYS if k in section}
    scheduler = dict(section.pop("scheduler_options", None) or {})
    scheduler.setdefault("dashboard_address", f"{LOOPBACK}:0")
    if not dashboard:
        scheduler.setdefault("dashboard", False)
    section["scheduler_options"] = scheduler
    import dask_jobqueue

    cls = getattr(dask_jobqueue, _JOBQUEUE_CLASSES[kind])
    section.setdefault("cores", 1)
    section.setdefault("memory", "4GB")
    processes = int(section.get("processes", 1))
    extra = list(section.pop("worker_extra_args", []))
    extra += ["--resources", f"{RESOURCE}=1"]
    try:
        cluster = cls(worker_extra_args=extra, **section)
    except Exception as exc:
        where = f" ({config_path})" if config_path else ""
        raise MxflowError(f"cannot set up the {kind} cluster{where}: {exc}") from exc
    own.setdefault("nproc", max(1, int(section["cores"]) // processes))
    return cluster, own, processes
