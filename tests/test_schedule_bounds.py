"""Trust under misuse (#12 items 4 and 6, and item 10's command-line half).

Item 4: a local cluster listens on 127.0.0.1 only (scheduler, nannies, workers) and has
no Dask dashboard unless ``--dashboard`` asks for one, which is then on 127.0.0.1 too.
Item 6: worker and nproc counts are bounded (a usage error at parse time, MxflowError
for library callers), and a batch system that is not installed is one line at start,
before any dataset is marked running, never a hang.  Item 10: numbers out of range are
usage errors that name the option and the value.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from mxflow.catalog.db import Catalog
from mxflow.cli import main
from mxflow.errors import MxflowError
from mxflow.schedule.cluster import ClusterHandle, local_layout, start_cluster
from mxflow.util import args as util_args
from run_fixtures import FAKE_DISCOVER, FAKE_PROCESS, fake_collection, run_cmd

# -- item 4: loopback only, no dashboard by default -------------------------------------


@contextlib.contextmanager
def _cluster(**kw) -> Iterator[ClusterHandle]:
    handle = start_cluster("local", workers=1, retries=0, **kw)
    try:
        handle.client.wait_for_workers(1, timeout=60)
        yield handle
    finally:
        handle.close()


def _listening(handle: ClusterHandle) -> list[tuple[str, int]]:
    """(address, port) of every TCP socket listening in this process and its children
    (the scheduler runs here; nannies and workers in child processes)."""
    import psutil

    me = psutil.Process()
    found = []
    for proc in [me, *me.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            conns = proc.net_connections(kind="inet")
            found += [c.laddr[:2] for c in conns if c.status == psutil.CONN_LISTEN]
    return found


def _loopback(host: str) -> bool:
    return ipaddress.ip_address(host).is_loopback


def _host(address: str) -> str:
    """'127.0.0.1' of 'tcp://127.0.0.1:4321'."""
    return address.split("://", 1)[-1].rsplit(":", 1)[0].strip("[]")


def _check_loopback(handle: ClusterHandle) -> list[tuple[str, int]]:
    assert _host(handle.cluster.scheduler_address) == "127.0.0.1"
    info = handle.client.scheduler_info()
    workers = info["workers"]
    assert len(workers) == 1
    for address, worker in workers.items():
        assert _host(address) == "127.0.0.1", address
        assert _host(worker["nanny"]) == "127.0.0.1", worker["nanny"]
    sockets = _listening(handle)
    # the scheduler, the nanny and the worker at least
    assert len(sockets) >= 3, sockets
    assert all(_loopback(host) for host, _ in sockets), sockets
    return sockets


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_local_cluster_listens_on_loopback_only_and_has_no_dashboard():
    with _cluster() as handle:
        sockets = _check_loopback(handle)
        assert handle.dashboard_link == "" and "dashboard" not in handle.info
        # Dask always starts the scheduler's HTTP server: no page of it shows tasks or
        # workers (only /health answers)
        scheduler_ports = {
            s.getsockname()[1] for s in handle.cluster.scheduler.http_server._sockets.values()
        }
        assert scheduler_ports and scheduler_ports <= {p for _, p in sockets}
        for port in scheduler_ports:
            for page in ("status", "info/main/workers.html", "json/counts.json", "metrics"):
                assert _get(f"http://127.0.0.1:{port}/{page}") == 404, page
            assert _get(f"http://127.0.0.1:{port}/health") == 200


def _have_bokeh() -> bool:
    import importlib.util

    return importlib.util.find_spec("bokeh") is not None


def test_dashboard_when_asked_is_on_loopback():
    with _cluster(dashboard=True) as handle:
        _check_loopback(handle)
        link = handle.dashboard_link
        if not _have_bokeh():  # Dask serves a page saying it needs bokeh, on loopback
            assert link == "" and "needs the Python package bokeh" in handle.info["dashboard"]
            return
        assert link.startswith("http://127.0.0.1:") and link.endswith("/status"), link
        assert _get(link) == 200


def test_run_dashboard_option_prints_its_address(tmp_path):
    root, out = tmp_path / "root", tmp_path / "out"
    fake_collection(root, 1)
    proc = subprocess.run(
        run_cmd(root, out, "--workers", "1", "--dashboard"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if "Dask dashboard" in ln]
    assert len(lines) == 1, proc.stderr
    if _have_bokeh():
        assert lines[0].startswith("mxflow: Dask dashboard (this machine only): http://127.0.0.1:")
    else:
        assert "needs the Python package bokeh" in lines[0], lines[0]
    # without --dashboard: no such line
    proc = subprocess.run(
        run_cmd(root, out, "--workers", "1"), capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert "Dask dashboard" not in proc.stderr


# -- item 6 and 10: numbers on the command line ------------------------------------------


@pytest.fixture
def two_cores(monkeypatch):
    """A machine of 2 cores, for the bounds (--workers at most 4)."""
    monkeypatch.setattr(util_args, "available_cores", lambda: 2)


def _usage_error(capsys, argv: list[str]) -> str:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err.strip().splitlines()[-1]


@pytest.mark.parametrize(
    "option,value,why",
    [
        ("--workers", "0", "must be at least 1"),
        ("--workers", "-3", "must be at least 1"),
        ("--workers", "500", "at most 4 on this machine (2 cores)"),
        ("--workers", "two", "not a whole number"),
        ("--nproc", "0", "must be at least 1"),
        ("--nproc", "5", "at most 4 on this machine (2 cores)"),
        ("--d-min", "-2", "must be above 0"),
        ("--d-min", "0", "must be above 0"),
        ("--d-min", "nan", "not a number"),
        ("--wedge-deg", "0", "above 0 and at most 360"),
        ("--wedge-deg", "361", "above 0 and at most 360"),
        ("--settle", "-5", "must be 0 or more"),
        ("--settle-timeout", "-1", "must be 0 or more"),
        ("--retries", "-1", "must be 0 or more"),
        ("--retries", "1.5", "not a whole number"),
    ],
)
@pytest.mark.parametrize("command", ["run", "watch"])
def test_run_and_watch_numbers_out_of_range_are_usage_errors(
    capsys, tmp_path, two_cores, command, option, value, why
):
    argv = [command, str(tmp_path / "root"), "--workdir", str(tmp_path / "out")]
    line = _usage_error(capsys, [*argv, option, value])
    assert f"argument {option}: " in line and value in line and why in line, line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "argv,option,value",
    [
        (["merge", "IN"], "--nproc", "0"),
        (["merge", "IN"], "--nproc", "500"),
        (["merge", "IN"], "--d-min", "-2"),
        (["process", "IN"], "--nproc", "0"),
        (["process", "IN"], "--nproc", "500"),
        (["process", "IN"], "--jobs", "-1"),
        (["process", "IN"], "--d-min", "-2"),
        (["hitmap", "IN"], "--workers", "0"),
        (["hitmap", "IN"], "--workers", "500"),
        (["hitmap", "IN"], "--d-min", "0"),
    ],
)
def test_other_commands_numbers_out_of_range_are_usage_errors(
    capsys, tmp_path, two_cores, argv, option, value
):
    argv = [argv[0], str(tmp_path / "in"), "--workdir", str(tmp_path / "out")]
    line = _usage_error(capsys, [*argv, option, value])
    assert f"argument {option}: {value}: " in line, line


def test_bounds_are_stated_in_help(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "at most 2 × the cores" in text
    assert "--dashboard" in text


def test_numbers_in_range_are_read(two_cores):
    from mxflow.cli import build_parser

    args = build_parser("run").parse_args(
        ["run", "R", "--workdir", "O", "--workers", "4", "--nproc", "1", "--d-min", "1.5",
         "--wedge-deg", "360", "--settle", "0", "--settle-timeout", "0", "--retries", "0"]
    )  # fmt: skip
    assert (args.workers, args.nproc, args.d_min, args.wedge_deg) == (4, 1, 1.5, 360.0)
    assert (args.settle_s, args.settle_timeout_s, args.retries) == (0.0, 0.0, 0)
    assert args.dashboard is False


@pytest.mark.parametrize(
    "kw,why",
    [
        ({"workers": 500}, "workers=500: at most 4 on this machine (2 cores)"),
        ({"workers": -3}, "workers=-3: must be at least 1"),
        ({"workers": 0}, "workers=0: must be at least 1"),
        ({"nproc": 0}, "nproc=0: must be at least 1"),
        ({"nproc": 9}, "nproc=9: at most 4 on this machine (2 cores)"),
        ({"workers": 2.5}, "workers=2.5: must be a whole number"),
    ],
)
def test_library_counts_out_of_bounds_raise(kw, why):
    with pytest.raises(MxflowError, match=f"^{why.replace('(', '[(]').replace(')', '[)]')}"):
        local_layout(2, **kw)


def test_start_cluster_refuses_bad_counts_before_starting(monkeypatch):
    import mxflow.schedule.cluster as cluster

    monkeypatch.setattr(cluster, "available_cores", lambda: 2)
    t0 = time.monotonic()
    for kw in ({"workers": -3}, {"workers": 500}, {"nproc": 0}):
        with pytest.raises(MxflowError):
            start_cluster("local", **kw)
    assert time.monotonic() - t0 < 5  # nothing was started


# -- item 6: a batch system that is not installed ----------------------------------------


def _no_batch_path(tmp_path: Path) -> str:
    """A PATH without sbatch or qsub (the test's Python is called by its full path)."""
    bare = tmp_path / "bin"
    bare.mkdir(exist_ok=True)
    return str(bare)


@pytest.mark.parametrize("kind,command", [("slurm", "sbatch"), ("sge", "qsub"), ("pbs", "qsub")])
def test_start_cluster_without_the_batch_system_is_one_error(tmp_path, monkeypatch, kind, command):
    monkeypatch.setenv("PATH", _no_batch_path(tmp_path))
    with pytest.raises(MxflowError, match=f"'{command}' is not on PATH"):
        start_cluster(kind)


def test_run_with_slurm_but_no_sbatch_is_one_line_and_marks_nothing_running(tmp_path, capsys):
    root, out = tmp_path / "root", tmp_path / "out"
    fake_collection(root, 2)
    # an earlier run made the catalog (its datasets done)
    first = subprocess.run(
        run_cmd(root, out, "--workers", "1"), capture_output=True, text=True, timeout=120
    )
    assert first.returncode == 0, first.stderr
    with Catalog(out, readonly=True) as cat:
        runs_before = len(cat.runs())
        rows_before = sorted((r["key"], r["status"]) for r in cat.rows())

    env = dict(os.environ, PATH=_no_batch_path(tmp_path))
    t0 = time.monotonic()
    proc = subprocess.run(
        run_cmd(root, out, "--cluster", "slurm", "--retry-failed"),  # would redo them
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert time.monotonic() - t0 < 30
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "sbatch" in lines[0] and "Traceback" not in proc.stderr
    assert lines[0].startswith("mxflow run: error: --cluster slurm: 'sbatch' is not on PATH")
    with Catalog(out, readonly=True) as cat:
        assert not cat.rows("running")
        assert len(cat.runs()) == runs_before  # no run recorded: the catalog is unchanged
        assert sorted((r["key"], r["status"]) for r in cat.rows()) == rows_before

    # a fresh OUT: nothing at all is written
    fresh = tmp_path / "fresh"
    proc = subprocess.run(
        run_cmd(root, fresh, "--cluster", "slurm"),
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert proc.returncode != 0 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not fresh.exists() or not any(fresh.iterdir())


def test_watch_with_pbs_but_no_qsub_is_one_error(tmp_path, capsys, monkeypatch):
    root, out = tmp_path / "root", tmp_path / "out"
    fake_collection(root, 1)
    monkeypatch.setenv("PATH", _no_batch_path(tmp_path))
    argv = ["watch", str(root), "--workdir", str(out), "--cluster", "pbs", "--once",
            "--process-fn", FAKE_PROCESS, "--discover-fn", FAKE_DISCOVER, "--settle", "0"]  # fmt: skip
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "'qsub' is not on PATH" in err and "Traceback" not in err
    assert not (out / "mxflow.sqlite").exists()
