"""``mxflow check``: the installation self-test (mxflow.check)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections import namedtuple
from pathlib import Path

import pytest

from conftest import REPO, requires_dials
from mxflow import check
from mxflow.check import CheckResult, Status
from mxflow.cli import main

#: lines that must be OK on a working installation (disk space and the optional ones may WARN)
REQUIRED = [
    "mxflow",
    "DIALS",
    "DIALS reads CBF",
    "DIALS reads Eiger HDF5",
    *(f"python: {d.module}" for d in check.PYTHON_DEPENDENCIES),
    "numba spot finder",
    "workdir",
    "CPU cores",
    "memory",
]

OTHER = ["disk space", "browser (optional)", "cctbx/iotbx (optional)"]


def parse_table(text: str) -> dict[str, tuple[str, str, str]]:
    """{name: (status, detail, fix)} from ``mxflow check``'s output."""
    names = REQUIRED + OTHER
    rows: dict[str, tuple[str, str, str]] = {}
    last = None
    for line in text.splitlines():
        fix = re.match(r"^ +fix: (.*)$", line)
        if fix and last:
            status, detail, _ = rows[last]
            rows[last] = (status, detail, fix.group(1))
            continue
        m = re.match(r"^(OK|WARN|FAIL|SKIP) +(.*)$", line)
        if not m:
            continue
        rest = m.group(2)
        name = max((n for n in names if rest.startswith(n + " ") or rest == n), key=len, default="")
        assert name, f"unknown line: {line!r}"
        rows[name] = (m.group(1), rest[len(name) :].strip(), "")
        last = name
    return rows


def _python_only_path(tmp_path: Path) -> str:
    """A PATH of one directory holding python (no DIALS program)."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for name in ("python", "python3"):
        (bindir / name).symlink_to(sys.executable)
    return str(bindir)


# --- the whole command


@requires_dials
@pytest.mark.dials
@pytest.mark.timeout(300)
def test_check_passes_on_this_installation(tmp_path):
    work = tmp_path / "work"
    proc = subprocess.run(
        [sys.executable, "-m", "mxflow.cli", "check", "--workdir", str(work)],
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = parse_table(proc.stdout)
    for name in REQUIRED:
        assert rows[name][0] == "OK", (name, rows.get(name), proc.stdout)
    assert rows["disk space"][0] in ("OK", "WARN")
    assert re.search(r"DIALS \d+\.\d+", rows["DIALS"][1])
    for fmt in ("CBF", "Eiger HDF5"):
        n_spots = int(re.search(r"(\d+) spots", rows[f"DIALS reads {fmt}"][1]).group(1))
        assert n_spots >= check.MIN_SPOTS
    assert "FAIL" not in proc.stdout
    assert re.search(r"^\d+ OK.* in [\d.]+ s: mxflow is ready to run$", proc.stdout, re.M)
    # the temporary folder of images and DIALS logs is gone
    assert [p.name for p in work.iterdir()] == []


def test_without_dials_on_path_fails_naming_dials_and_the_fix(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", _python_only_path(tmp_path))
    assert shutil.which("dials.version") is None and shutil.which("python") is not None
    rc = main(["check", "--workdir", str(tmp_path / "work")])
    out = capsys.readouterr().out
    assert rc == 1
    rows = parse_table(out)
    status, detail, fix = rows["DIALS"]
    assert status == "FAIL"
    assert "dials.version is not on PATH" in detail
    assert "apt-get install -y dials" in fix and "make install" in fix
    assert re.search(r"^FAIL +DIALS +dials.version is not on PATH$", out, re.M)
    assert re.search(r"^ +fix: make install", out, re.M)
    for fmt in ("CBF", "Eiger HDF5"):
        assert rows[f"DIALS reads {fmt}"][0] == "SKIP"
    # the checks that do not need DIALS still ran and passed
    assert rows["numba spot finder"][0] == "OK"
    assert rows["workdir"][0] == "OK"
    assert "mxflow cannot run until the FAIL lines are fixed" in out


def test_workdir_that_cannot_be_written_fails_naming_it(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    work = blocker / "work"
    rc = main(["check", "--workdir", str(work)])
    out = capsys.readouterr().out
    assert rc == 1
    rows = parse_table(out)
    status, detail, fix = rows["workdir"]
    assert status == "FAIL"
    assert f"cannot write in {work}" in detail
    assert "--workdir" in fix and str(work) in fix
    for fmt in ("CBF", "Eiger HDF5"):
        assert rows[f"DIALS reads {fmt}"][0] == "SKIP"
        assert (
            "workdir" in rows[f"DIALS reads {fmt}"][1] or "DIALS" in rows[f"DIALS reads {fmt}"][1]
        )


def test_read_only_workdir_fails(tmp_path):
    work = tmp_path / "ro"
    work.mkdir()
    work.chmod(0o555)
    try:
        if os.access(work, os.W_OK):
            pytest.skip("running as root: a read-only mode does not stop writing")
        result = check.check_workdir(work)
    finally:
        work.chmod(0o755)
    assert result.status is Status.FAIL
    assert str(work) in result.detail and "Permission denied" in result.detail


@requires_dials
@pytest.mark.dials
@pytest.mark.timeout(300)
def test_eiger_check_fails_without_the_bitshuffle_plugin(tmp_path, monkeypatch):
    """With HDF5 looking for plugins in an empty folder, the Eiger data cannot be read."""
    empty = tmp_path / "no_plugins"
    empty.mkdir()
    monkeypatch.setenv("HDF5_PLUGIN_PATH", str(empty))
    result = check.check_dials_images(tmp_path / "scratch", "eiger")
    assert result.status is Status.FAIL, result
    assert "dials.find_spots failed" in result.detail and "bitshuffle" in result.detail
    assert "bitshuffle" in result.fix and f"HDF5_PLUGIN_PATH={empty}" in result.fix
    assert "dials-support@" not in result.detail


def test_scratch_folder_is_removed_unless_kept(tmp_path, monkeypatch):
    seen = []

    def fake_images(scratch, fmt):
        (scratch / fmt).mkdir()
        seen.append(scratch)
        return CheckResult(f"DIALS reads {fmt}", Status.OK)

    monkeypatch.setattr(check, "check_dials", lambda: (CheckResult("DIALS", Status.OK), "dials"))
    monkeypatch.setattr(check, "check_dials_images", fake_images)
    monkeypatch.setattr(check, "check_spotfinder", lambda: CheckResult("numba", Status.OK))
    monkeypatch.setattr(check, "check_browser", lambda: CheckResult("browser", Status.OK))
    monkeypatch.setattr(check, "check_cctbx", lambda exe: CheckResult("cctbx", Status.OK))
    results, kept = check.run_checks(tmp_path / "a")
    assert kept is None and seen[0].parent == tmp_path / "a" and not seen[0].exists()
    assert [r.name for r in results[:4]] == [
        "mxflow",
        "DIALS",
        "DIALS reads cbf",
        "DIALS reads eiger",
    ]
    results, kept = check.run_checks(tmp_path / "b", keep=True)
    assert kept == seen[-1] and sorted(p.name for p in kept.iterdir()) == ["cbf", "eiger"]


# --- single checks


def test_dependencies_are_those_of_pyproject():
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    wanted = {}
    for spec in deps:
        m = re.fullmatch(
            r"([A-Za-z0-9_.-]+)(?:\[([^\]]+)\])?(?:>=([\w.]+))?", spec.replace(" ", "")
        )
        assert m, spec
        wanted[m.group(1).lower()] = m.group(3) or ""
        for extra in (m.group(2) or "").split(","):
            if extra:
                wanted.setdefault(extra.lower(), "")
    have = {d.dist.lower(): d.minimum for d in check.PYTHON_DEPENDENCIES}
    assert have == wanted


def test_dependency_missing_or_too_old_fails(monkeypatch):
    missing = check.check_dependency(
        check.Dependency("mxflow_no_such_module", "no-such-dist", "1.0")
    )
    assert missing.status is Status.FAIL
    assert "does not import" in missing.detail and "ModuleNotFoundError" in missing.detail
    assert "make install" in missing.fix and "'no-such-dist>=1.0'" in missing.fix
    old = check.check_dependency(check.Dependency("numpy", "numpy", "999.0"))
    assert old.status is Status.FAIL and "older than 999.0" in old.detail


def test_dials_programs_cover_what_mxflow_runs():
    names = set()
    for path in (REPO / "src" / "mxflow").rglob("*.py"):
        names |= set(re.findall(r"[\"'](dials\.[a-z_]+)[\"']", path.read_text()))
    names -= {"dials.version", "dials.python"}
    assert names <= set(check.DIALS_PROGRAMS), names - set(check.DIALS_PROGRAMS)


def test_dials_lacking_a_program_fails(tmp_path, monkeypatch):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake = bindir / "dials.version"
    fake.write_text("#!/bin/sh\necho 'DIALS 3.99'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(bindir))
    result, exe = check.check_dials()
    assert result.status is Status.FAIL and exe is None
    assert "DIALS 3.99" in result.detail and "lacks dials.import" in result.detail


def test_spot_finder_check_passes():
    result = check.check_spotfinder()
    assert result.status is Status.OK, result


def test_meminfo_and_low_memory_warns(tmp_path):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text(
        "MemTotal:        4000000 kB\nMemFree:          100000 kB\nMemAvailable:     1048576 kB\n"
        "HugePages_Total:       0\n"
    )
    info = check.read_meminfo(meminfo)
    assert info["MemTotal"] == 4000000 * 1024 and info["HugePages_Total"] == 0
    low = check.check_memory(meminfo)
    assert low.status is Status.WARN and "1.0 GiB available of 3.8 GiB" in low.detail and low.fix
    meminfo.write_text("MemTotal: 33554432 kB\nMemAvailable: 16777216 kB\n")
    assert check.check_memory(meminfo) == CheckResult(
        "memory", Status.OK, "16.0 GiB available of 32.0 GiB"
    )


def test_low_disk_warns(tmp_path, monkeypatch):
    Usage = namedtuple("Usage", "total used free")
    monkeypatch.setattr(check.shutil, "disk_usage", lambda p: Usage(100 * 2**30, 0, 2**30))
    low = check.check_disk(tmp_path / "not" / "yet")
    assert low.status is Status.WARN and "1.0 GiB free of 100.0 GiB" in low.detail
    assert str(tmp_path) in low.detail and low.fix
    monkeypatch.setattr(check.shutil, "disk_usage", lambda p: Usage(100 * 2**30, 0, 50 * 2**30))
    assert check.check_disk(tmp_path).status is Status.OK


def test_missing_browser_is_a_warning_not_a_failure(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", _python_only_path(tmp_path))
    result = check.check_browser()
    assert result.status is Status.WARN and "chromium" in result.detail
    assert "mxflow.report.browser_setup" in result.fix
    assert check.exit_status([result]) == 0


def test_missing_cctbx_is_a_warning(monkeypatch):
    monkeypatch.setattr(check, "cctbx_pythons", lambda exe: [sys.executable])  # mxflow's venv
    result = check.check_cctbx(None)
    assert result.status is Status.WARN and sys.executable in result.detail
    assert result.fix == "apt-get install -y python3-cctbx"


def test_a_check_that_raises_becomes_a_fail_line():
    def broken() -> CheckResult:
        raise RuntimeError("boom")

    result = check._guarded("thing", broken)
    assert result == CheckResult(
        "thing", Status.FAIL, "the check itself failed: RuntimeError: boom"
    )


# --- formatting


def test_table_aligns_and_puts_each_fix_under_its_line():
    results = [
        CheckResult("DIALS", Status.FAIL, "dials.version is not on PATH", "make install"),
        CheckResult("memory", Status.OK, "8.0 GiB available of 16.0 GiB"),
        CheckResult("browser (optional)", Status.WARN, "no chromium", "apt-get install chromium"),
        CheckResult("DIALS reads CBF", Status.SKIP, "not run: DIALS is not usable"),
        CheckResult("CPU cores", Status.OK, "", "never shown for OK"),
    ]
    assert check.format_table(results).splitlines() == [
        "FAIL  DIALS               dials.version is not on PATH",
        "                          fix: make install",
        "OK    memory              8.0 GiB available of 16.0 GiB",
        "WARN  browser (optional)  no chromium",
        "                          fix: apt-get install chromium",
        "SKIP  DIALS reads CBF     not run: DIALS is not usable",
        "OK    CPU cores",
    ]
    assert check.format_table([]) == ""


def test_summary_and_exit_status():
    ok = CheckResult("a", Status.OK)
    warn = CheckResult("b", Status.WARN, fix="x")
    fail = CheckResult("c", Status.FAIL, fix="y")
    assert (
        check.format_summary([ok, warn], 12.34) == "1 OK, 1 WARN in 12.3 s: mxflow is ready to run"
    )
    assert check.exit_status([ok, warn]) == 0
    assert (
        check.format_summary([ok, fail, CheckResult("d", Status.SKIP)])
        == "1 OK, 1 FAIL, 1 SKIP: mxflow cannot run until the FAIL lines are fixed"
    )
    assert check.exit_status([ok, fail]) == 1
    assert check.format_summary([fail]).startswith("0 OK, 1 FAIL")


def test_registered_as_a_command():
    from mxflow import cli

    assert cli.COMMANDS["check"] == "mxflow.check"
    assert "check" in cli.SUMMARIES
    parser = cli.build_parser("check")
    args = parser.parse_args(["check", "--workdir", "/x", "--keep"])
    assert args._module is check and args.workdir == Path("/x") and args.keep
