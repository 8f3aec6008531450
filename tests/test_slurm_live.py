"""`mxflow run --cluster slurm` against a live single-node Slurm (``.ci/slurm.sh up``).

Dask workers are started by Slurm as batch jobs (dask-jobqueue); processing is
mxflow's fake (:mod:`mxflow.schedule.fake`), DIALS is not the point here.  Without
a running Slurm these tests skip, unless ``MXFLOW_REQUIRE_SLURM=1`` (set by
``.ci/run``), where they fail.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from mxflow.catalog.db import Catalog
from mxflow.schedule import fake
from run_fixtures import fake_collection, run_cmd

pytestmark = pytest.mark.slow

TESTS = Path(__file__).resolve().parent
#: --process-fn of a dataset that needs more memory than its job may have
HOG_FN = "test_slurm_live:hog_memory"


def slurm_problem() -> str:
    """Why no live Slurm can be used here ('' when one can)."""
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        return "Slurm commands (sinfo, sbatch) not on PATH; start one with .ci/slurm.sh up"
    try:
        proc = subprocess.run(
            ["sinfo", "-h", "-p", "debug", "-o", "%T"], capture_output=True, text=True, timeout=20
        )
    except subprocess.TimeoutExpired:
        return "sinfo did not answer within 20 s (slurmctld down?)"
    states = proc.stdout.split()
    if proc.returncode or not {"idle", "mixed", "allocated"} & set(states):
        return f"no usable node in partition 'debug' (sinfo: {proc.stderr.strip() or states})"
    return ""


@pytest.fixture(scope="module")
def slurm() -> None:
    problem = slurm_problem()
    if problem and os.environ.get("MXFLOW_REQUIRE_SLURM") == "1":
        pytest.fail(f"MXFLOW_REQUIRE_SLURM=1 but {problem}")
    if problem:
        pytest.skip(problem)


@pytest.fixture
def tag():
    """A job name tag of this test's worker jobs; those left in the queue are cancelled."""
    value = uuid.uuid4().hex[:8]
    yield value
    subprocess.run(["scancel", "-n", f"mxflow-{value}"], capture_output=True, timeout=30)


def hog_memory(dataset, workdir, options):
    """A dataset whose DIALS-like child process takes 1.5 GB (its job may have 600 MB)."""
    Path(workdir).mkdir(parents=True, exist_ok=True)
    with open(Path(workdir) / fake.CALLS_LOG, "a") as fh:
        fh.write(f"{time.time():.3f} pid={os.getpid()} hog\n")
    code = "import time; a = bytearray(1500 * 2**20); time.sleep(30)"
    subprocess.run([sys.executable, "-c", code], check=True)
    raise AssertionError("the memory hog was not killed")


def write_config(tmp: Path, tag: str, **over) -> Path:
    """A cluster.yaml for the local Slurm: 1-core jobs, logs in ``tmp/joblogs``."""
    section = {
        "queue": "debug",
        "cores": 1,
        "processes": 1,
        "memory": "600MB",
        "walltime": "00:10:00",
        "jobs": 2,
        "job_name": f"mxflow-{tag}",
        "log_directory": str(tmp / "joblogs"),
        "local_directory": str(tmp / "dask"),
        **over,
    }
    section = {k: v for k, v in section.items() if v is not None}  # None: left out
    path = tmp / "cluster.yaml"
    path.write_text(json.dumps({"slurm": section}))  # JSON is YAML
    return path


def run_mxflow(root: Path, out: Path, *extra: str, env=None, timeout=240):
    environ = {**os.environ, **(env or {})}
    environ["PYTHONPATH"] = os.pathsep.join([str(TESTS), environ.get("PYTHONPATH", "")])
    return subprocess.run(
        run_cmd(root, out, *extra), capture_output=True, text=True, env=environ, timeout=timeout
    )


def job_ids(tmp: Path) -> set[str]:
    """Slurm job ids of the worker jobs, from the names of their log files."""
    return {
        m.group(1) for p in (tmp / "joblogs").glob("*") if (m := re.search(r"-(\d+)\.", p.name))
    }


def job_state(job_id: str) -> str:
    out = subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True)
    m = re.search(r"JobState=(\S+)", out.stdout)
    return m.group(1) if m else ""


def results(out: Path) -> dict[str, tuple]:
    """key -> (status, reason, space group, cell, output file text) of every dataset."""
    with Catalog(out, readonly=True) as cat:
        rows = cat.rows()
    table = {}
    for row in rows:
        result = json.loads(row["result_json"] or "{}")
        output = out / row["key"] / fake.OUTPUT
        text = output.read_text() if output.exists() else None
        table[row["key"]] = (
            row["status"],
            row["reason"],
            result.get("space_group"),
            result.get("unit_cell"),
            text,
        )
    return table


def calls(out: Path, key: str) -> int:
    path = out / key / fake.CALLS_LOG
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_slurm_run_equals_local_run(slurm, tmp_path, tag):
    root = tmp_path / "root"
    fake_collection(root, 4)
    local = run_mxflow(root, tmp_path / "local", "--workers", "2")
    assert local.returncode == 0, local.stderr
    cfg = write_config(tmp_path, tag)
    t0 = time.monotonic()
    proc = run_mxflow(root, tmp_path / "slurm", "--cluster", "slurm", "--cluster-config", str(cfg))
    wall = time.monotonic() - t0
    assert proc.returncode == 0, proc.stderr
    assert "slurm: 2 job(s) x 1 worker(s)" in proc.stderr
    expected = results(tmp_path / "local")
    assert len(expected) == 4 and all(r[0] == "ok" for r in expected.values())
    assert results(tmp_path / "slurm") == expected
    for key in expected:
        assert calls(tmp_path / "slurm", key) == 1, key
    # the workers were Slurm jobs: their logs are named by job id, Slurm knows them
    ids = job_ids(tmp_path)
    assert ids, list((tmp_path / "joblogs").glob("*"))
    states = {i: job_state(i) for i in ids}
    assert set(states.values()) <= {"COMPLETED", "CANCELLED", "RUNNING", "COMPLETING"}, states
    assert any("Starting Worker" in p.read_text() for p in (tmp_path / "joblogs").glob("*"))
    print(f"slurm run: {wall:.1f} s, jobs {sorted(ids)}")


@pytest.mark.parametrize("mode", ["fixed", "adaptive"])
def test_scancelled_job_task_is_retried_on_a_new_job(slurm, tmp_path, tag, mode):
    # fixed: jobs: 1 (mxflow submits a replacement); adaptive: maximum_jobs: 1 (Dask's
    # adaptive scaling asks for a job again while tasks wait)
    root = tmp_path / "root"
    fake_collection(root, 3)
    size = {"jobs": 1} if mode == "fixed" else {"jobs": None, "maximum_jobs": 1}
    cfg = write_config(tmp_path, tag, **size)
    out = tmp_path / "out"
    env = {"MXFLOW_FAKE_SLEEP": "6"}
    environ = {**os.environ, **env, "PYTHONPATH": str(TESTS)}
    proc = subprocess.Popen(
        run_cmd(root, out, "--cluster", "slurm", "--cluster-config", str(cfg)),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=environ,
    )
    try:
        deadline = time.monotonic() + 90
        started: list[Path] = []
        while not started and time.monotonic() < deadline:
            started = list(out.glob(f"proc/**/{fake.CALLS_LOG}"))
            time.sleep(0.3)
        assert started, "no dataset started within 90 s"
        running = subprocess.run(
            ["squeue", "-h", "-n", f"mxflow-{tag}", "-t", "R", "-o", "%i"],
            capture_output=True,
            text=True,
        ).stdout.split()
        assert len(running) == 1, running
        subprocess.run(["scancel", running[0]], check=True)
        log, _ = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 0, log
    victim = started[0].parent.relative_to(out).as_posix()
    table = results(out)
    assert len(table) == 3 and all(r[0] == "ok" for r in table.values()), table
    # the cancelled dataset ran twice (once cut short), the others once; each output once
    assert calls(out, victim) == 2
    for key in set(table) - {victim}:
        assert calls(out, key) == 1, key
    ids = job_ids(tmp_path)
    assert running[0] in ids and len(ids) >= 2, ids  # a new job took over
    assert job_state(running[0]) == "CANCELLED"


def test_job_over_its_memory_limit_is_reported(slurm, tmp_path, tag):
    root = tmp_path / "root"
    fake_collection(root, 1)
    cfg = write_config(tmp_path, tag, jobs=1)
    out = tmp_path / "out"
    proc = run_mxflow(
        root, out, "--cluster", "slurm", "--cluster-config", str(cfg), "--retries", "0",
        "--process-fn", HOG_FN,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr  # a failed dataset is not a failed run
    ((status, reason, *_),) = results(out).values()
    assert status == "failed"
    assert re.search(r"Slurm job \d+ was killed for exceeding its memory limit", reason), reason


@pytest.mark.parametrize("why", ["bogus partition", "slurmctld unreachable"])
def test_unavailable_queue_is_a_clear_error(slurm, tmp_path, tag, why):
    root = tmp_path / "root"
    fake_collection(root, 1)
    over = {"queue": "nosuchpartition"} if why == "bogus partition" else {}
    cfg = write_config(tmp_path, tag, **over)
    env = {}
    if why == "slurmctld unreachable":  # a configuration naming a controller nobody runs
        conf = tmp_path / "slurm.conf"
        text = Path("/etc/slurm/slurm.conf").read_text()
        conf.write_text(re.sub(r"SlurmctldPort=\d+", "SlurmctldPort=6999", text))
        env = {"SLURM_CONF": str(conf)}
    t0 = time.monotonic()
    proc = run_mxflow(root, tmp_path / "out", "--cluster", "slurm", "--cluster-config", str(cfg),
                      env=env, timeout=150)  # fmt: skip
    wall = time.monotonic() - t0
    assert proc.returncode != 0
    assert "--cluster slurm:" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    if why == "bogus partition":
        assert "invalid partition" in proc.stderr.lower(), proc.stderr
    assert wall < 120, wall
    assert not job_ids(tmp_path)  # nothing was submitted
