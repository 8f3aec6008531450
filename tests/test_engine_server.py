"""mxflow.engine.server_client / dials_server: DIALS programs through the fork server.

The server must be invisible: same log, same outputs, same StepRecord as a
plain process.  Tests that run DIALS are slow-marked and use three small
simulated frames.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import requires_dials
from mxflow.engine import server_client as sc
from mxflow.engine.runner import find_program, run_program

# --------------------------------------------------------------------------
# no DIALS needed


def test_server_script_is_package_data():
    path = sc.server_script()
    assert path.name == "dials_server.py" and path.is_file()
    assert "def main()" in path.read_text()


def _script(tmp_path: Path, name: str, first_line: str) -> str:
    p = tmp_path / name
    p.write_text(first_line + "\nprint('hi')\n")
    p.chmod(0o755)
    return str(p)


def test_launcher_python(tmp_path):
    assert sc.launcher_python(_script(tmp_path, "a", f"#!{sys.executable}")) == sys.executable
    via_env = sc.launcher_python(_script(tmp_path, "b", "#!/usr/bin/env python3"))
    assert via_env is not None and os.path.basename(via_env).startswith("python")
    assert sc.launcher_python(_script(tmp_path, "c", "#!/bin/sh")) is None
    assert sc.launcher_python(_script(tmp_path, "d", f"#!{sys.executable} -E")) is None
    assert sc.launcher_python(_script(tmp_path, "e", "no shebang")) is None
    assert sc.launcher_python(str(tmp_path / "missing")) is None


def test_disabled_by_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(sc.ENV_SWITCH, "0")
    assert not sc.server_enabled()
    exe = _script(tmp_path, "dials.fake", f"#!{sys.executable}")
    got = sc.run_with_server("dials.fake", exe, [], tmp_path, tmp_path / "x.log", None, {})
    assert got is None
    monkeypatch.setenv(sc.ENV_SWITCH, "1")
    assert sc.server_enabled()


def test_own_script_named_like_dials_runs_as_itself(tmp_path, monkeypatch):
    """A user's dials.* script (not a console-script launcher) is never replaced by the server."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    prog = bindir / "dials.version"
    prog.write_text(f"#!{sys.executable}\nimport sys\nprint('my own', sys.argv[1:])\n")
    prog.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv(sc.ENV_SWITCH, "1")
    rec = run_program("dials.version", ["a b"], tmp_path / "w")
    assert rec.returncode == 0
    assert (tmp_path / "w" / "dials.version.log").read_text() == "my own ['a b']\n"


def test_server_runs_a_console_script_like_its_launcher(tmp_path):
    """Protocol without DIALS: this venv's ``mxflow`` launcher through a server in this Python."""
    launcher = Path(sys.executable).with_name("mxflow")
    if not launcher.is_file() or sc.launcher_python(str(launcher)) is None:
        pytest.skip("mxflow is not installed as a console script in this Python")
    python = sc.launcher_python(str(launcher))
    work = tmp_path / "a dir with spaces"
    work.mkdir()
    env = dict(os.environ, MXFLOW_TEST_MARK="x")
    server = sc.DialsServer(python, env)
    try:
        for args in (["--version"], ["no-such-command"]):
            log = work / f"server {args[0]}.log"
            got = server.run("mxflow", str(launcher), args, work, log, None, env)
            with open(work / "process.log", "wb") as fh:
                ref = subprocess.run([str(launcher), *args], cwd=work, stdout=fh, stderr=fh)
            assert got.returncode == ref.returncode and not got.timed_out
            assert log.read_text() == (work / "process.log").read_text()
        assert got.returncode == 2 and "invalid choice" in log.read_text()
        with pytest.raises(sc.ServerError, match="not the console-script launcher"):
            server.run("mxflow", __file__, ["--version"], work, work / "x.log", None, env)
        assert server.alive
    finally:
        server.close()
    assert server.proc.returncode == 0  # it exits by itself when its stdin closes


# --------------------------------------------------------------------------
# with DIALS


@pytest.fixture(scope="module")
def frames(tmp_path_factory) -> list[str]:
    from mxflow.simulate import SimulationConfig, simulate

    out = tmp_path_factory.mktemp("server_frames")
    cfg = SimulationConfig(
        n_crystals=1, frames=3, osc_width=1.0, detector_size=(487, 619), distance=100.0, seed=3
    )
    simulate(out, cfg)
    return sorted(str(p) for p in out.rglob("*.cbf"))


def _run_both(monkeypatch, tmp_path, program, args, log="prog.log", timeout=None):
    """(process record, server record, process dir, server dir), dirs with spaces."""
    records, dirs = {}, {}
    for mode in ("0", "1"):
        monkeypatch.setenv(sc.ENV_SWITCH, mode)
        work = tmp_path / f"work {mode} dir"
        dirs[mode] = work
        records[mode] = run_program(program, args(work), work, log_name=log, timeout=timeout)
    return records["0"], records["1"], dirs["0"], dirs["1"]


def _expt_without_ids(path: Path) -> dict:
    data = json.loads(path.read_text())
    for exp in data["experiment"]:
        exp.pop("identifier", None)
    return data


@pytest.mark.slow
@requires_dials
def test_same_outputs_log_and_record(frames, tmp_path, monkeypatch):
    from mxflow.engine.refl import read_reflections

    started = sc.servers_started()
    proc, served, d0, d1 = _run_both(
        monkeypatch,
        tmp_path,
        "dials.import",
        lambda w: [*frames, "output.experiments=imported.expt"],
        log="import.out",
    )
    assert sc.servers_started() == started + 1  # the second run really went through a server
    for rec in (proc, served):
        assert rec.returncode == 0 and rec.note == "" and not rec.skipped and rec.wall_s > 0
    assert (proc.name, proc.command, proc.log) == (served.name, served.command, served.log)
    assert _expt_without_ids(d0 / "imported.expt") == _expt_without_ids(d1 / "imported.expt")
    assert (d0 / "import.out").read_text() == (d1 / "import.out").read_text()
    assert sorted(p.name for p in d0.iterdir()) == sorted(p.name for p in d1.iterdir())

    # DIALS's own multiprocessing inside a forked child: same spots with nproc=2
    for mode, work in (("0", d0), ("1", d1)):
        monkeypatch.setenv(sc.ENV_SWITCH, mode)
        rec = run_program("dials.find_spots", ["imported.expt", "nproc=2"], work)
        assert rec.returncode == 0
    a = read_reflections(d0 / "strong.refl")
    b = read_reflections(d1 / "strong.refl")
    assert a.nrows == b.nrows > 20
    for name in a.columns:
        assert np.array_equal(np.asarray(a.columns[name]), np.asarray(b.columns[name])), name


@pytest.mark.slow
@requires_dials
def test_failure_status_and_log(tmp_path, monkeypatch):
    proc, served, d0, d1 = _run_both(
        monkeypatch, tmp_path, "dials.index", lambda w: ["no such.expt"], log="index.out"
    )
    assert proc.returncode == served.returncode == 1
    text0 = (d0 / "index.out").read_text()
    text1 = (d1 / "index.out").read_text()
    # DIALS reports a user error as "Sorry: ..." without a traceback, either way
    assert text1.startswith("Sorry: Unable to handle the following arguments")
    assert text0.replace(str(d0), "W") == text1.replace(str(d1), "W")


def _server_pid() -> int:
    with sc._POOL.lock:
        pids = [s.proc.pid for lst in sc._POOL.idle.values() for s in lst]
    assert pids, "no idle server"
    return pids[-1]


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(x) for x in text.split()]


def _gone(pid: int, wait_s: float = 10.0) -> bool:
    t0 = time.monotonic()
    while time.monotonic() - t0 < wait_s:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        try:  # a zombie counts as gone (exited, not yet reaped by its parent)
            if "State:\tZ" in Path(f"/proc/{pid}/status").read_text():
                return True
        except OSError:
            return True
        time.sleep(0.05)
    return False


@pytest.mark.slow
@requires_dials
def test_timeout_kills_child_and_server_goes_on(frames, tmp_path, monkeypatch):
    monkeypatch.setenv(sc.ENV_SWITCH, "1")
    work = tmp_path / "w"
    assert run_program("dials.import", [*frames], work).returncode == 0
    server = _server_pid()
    rec = run_program("dials.find_spots", ["imported.expt", "nproc=2"], work, timeout=0.05)
    assert rec.returncode == 124 and rec.note.startswith("timed out")
    assert _server_pid() == server and _children(server) == []
    again = run_program("dials.find_spots", ["imported.expt"], work)
    assert again.returncode == 0 and (work / "strong.refl").stat().st_size > 0
    assert _server_pid() == server


@pytest.mark.slow
@requires_dials
def test_restart_after_server_killed(frames, tmp_path, monkeypatch):
    monkeypatch.setenv(sc.ENV_SWITCH, "1")
    work = tmp_path / "w"
    assert run_program("dials.import", [frames[0]], work).returncode == 0
    with sc._POOL.lock:
        (killed,) = [s for lst in sc._POOL.idle.values() for s in lst]
    server = killed.proc.pid
    os.kill(server, signal.SIGKILL)  # not waited for: the client may still think it alive
    started = sc.servers_started()
    rec = run_program("dials.import", [frames[0], "output.experiments=again.expt"], work)
    assert rec.returncode == 0 and (work / "again.expt").is_file()
    assert sc.servers_started() == started + 1 and _server_pid() != server


@pytest.mark.slow
@requires_dials
def test_server_exits_when_mxflow_is_killed(frames, tmp_path):
    """kill -9 of the mxflow process: the server sees its stdin close and exits."""
    code = textwrap.dedent(
        f"""
        import sys, time
        from mxflow.engine import server_client as sc
        from mxflow.engine.runner import run_program
        rec = run_program("dials.import", [{frames[0]!r}], {str(tmp_path / "w")!r})
        with sc._POOL.lock:
            (server,) = [s for lst in sc._POOL.idle.values() for s in lst]
        print(rec.returncode, server.proc.pid, flush=True)
        time.sleep(120)
        """
    )
    env = dict(os.environ, **{sc.ENV_SWITCH: "1"})
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, env=env)
    try:
        rc, server = map(int, child.stdout.readline().split())
        assert rc == 0
        child.kill()
        child.wait()
        assert _gone(server), "the DIALS server outlived the killed mxflow process"
    finally:
        child.kill()


@pytest.mark.slow
@requires_dials
def test_server_protocol_unknown_program(tmp_path):
    """A program that is not a console script of DIALS's Python: the client falls back."""
    python = sc.launcher_python(find_program("dials.import"))
    server = sc.DialsServer(python, dict(os.environ))
    try:
        with pytest.raises(sc.ServerError, match="not a console script"):
            server.run("dials.no_such_program", "", [], tmp_path, tmp_path / "x.log", None)
        assert server.alive
    finally:
        server.close()
    assert server.proc.returncode == 0


@requires_dials
def test_no_engine_module_shadows_a_module_of_dials_python(tmp_path):
    """The server runs with mxflow/engine/ as sys.path[0]: no module there may hide one of DIALS's."""
    python = sc.launcher_python(find_program("dials.import"))
    engine_dir = sc.server_script().parent
    names = sorted(p.stem for p in engine_dir.glob("*.py") if p.stem != "__init__")
    names += sorted(p.name for p in engine_dir.iterdir() if (p / "__init__.py").is_file())
    assert "dials_server" in names
    code = "import importlib.util, sys; print(*[n for n in sys.argv[1:] if importlib.util.find_spec(n)])"
    found = subprocess.run(
        [python, "-I", "-c", code, *names], cwd=tmp_path, capture_output=True, text=True, check=True
    ).stdout.split()
    assert found == [], f"modules in {engine_dir} shadow DIALS's Python: {found}"
