"""Check that this installation can run mxflow: DIALS, the Python packages, the machine.

An installation self-test (like KAMO's kamo.test_installation).  It finds
DIALS on PATH and runs dials.import and dials.find_spots on a tiny simulated
CBF sweep and on a tiny Eiger HDF5 sweep (bitshuffle/LZ4, which Debian's
DIALS reads through the 'bitshuffle' package's HDF5 plugin), imports the
Python packages mxflow needs and compiles mxflow's spot finder (numba), and
looks at the work directory (write access, free disk), the CPU cores and
the memory.  The browser for report screenshots and cctbx (a second MTZ
reader, used by tests) are optional: missing, they are a WARN.  Every
FAIL or WARN line is followed by its fix.  The images and DIALS runs go
into a temporary folder under --workdir, removed afterwards.  Takes about
10-30 s.  Exit status 0 when nothing FAILed, 1 otherwise.

example:
  mxflow check
  mxflow check --workdir /data/processing
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path


class Status(StrEnum):
    """Outcome of one check; only FAIL makes ``mxflow check`` exit 1."""

    OK = "OK"
    WARN = "WARN"  # works, but something optional is missing or a resource is low
    FAIL = "FAIL"  # mxflow will not work until the fix is applied
    SKIP = "SKIP"  # not run, because an earlier check failed


@dataclass(frozen=True)
class CheckResult:
    """One line of the table: what was checked, how it went, what was seen, the fix."""

    name: str
    status: Status
    detail: str = ""
    fix: str = ""


@dataclass(frozen=True)
class Dependency:
    """A Python package of pyproject.toml's ``dependencies``: import name, distribution, minimum."""

    module: str
    dist: str
    minimum: str = ""


#: pyproject.toml's dependencies (tests/test_check.py keeps the two equal);
#: "dask[distributed]" is dask plus distributed
PYTHON_DEPENDENCIES: tuple[Dependency, ...] = (
    Dependency("numpy", "numpy", "1.26"),
    Dependency("scipy", "scipy", "1.11"),
    Dependency("gemmi", "gemmi", "0.6.5"),
    Dependency("h5py", "h5py", "3.9"),
    Dependency("hdf5plugin", "hdf5plugin", "4.2"),
    Dependency("fabio", "fabio", "2023.10"),
    Dependency("msgpack", "msgpack", "1.0"),
    Dependency("numba", "numba", "0.59"),
    Dependency("dask", "dask", "2024.1"),
    Dependency("distributed", "distributed"),
    Dependency("dask_jobqueue", "dask-jobqueue", "0.8"),
    Dependency("jinja2", "jinja2", "3.1"),
    Dependency("plotly", "plotly", "5.18"),
    Dependency("matplotlib", "matplotlib", "3.8"),
    Dependency("tqdm", "tqdm", "4.66"),
    Dependency("xraydb", "xraydb", "4.5"),
)

#: every DIALS program mxflow runs (tests/test_check.py checks the source names no other)
DIALS_PROGRAMS: tuple[str, ...] = (
    "dials.import",
    "dials.find_spots",
    "dials.index",
    "dials.refine_bravais_settings",
    "dials.reindex",
    "dials.refine",
    "dials.integrate",
    "dials.symmetry",
    "dials.cosym",
    "dials.scale",
    "dials.estimate_resolution",
    "dials.compute_delta_cchalf",
    "dials.merge",
    "dials.export",
    "dials.find_rotation_axis",  # electron diffraction
    "dials.modify_geometry",  # electron diffraction
)

#: the fewest spots dials.find_spots must find on a test sweep (it finds a few hundred)
MIN_SPOTS = 20
#: free disk below this (GiB) is a WARN
LOW_DISK_GIB = 5.0
#: available memory below this (GiB) is a WARN
LOW_MEMORY_GIB = 2.0
#: seconds any one external program may take
PROGRAM_TIMEOUT_S = 180.0

FIX_DIALS = "make install (runs apt-get install -y dials bitshuffle), or put a conda DIALS on PATH"
FIX_BITSHUFFLE = (
    "apt-get install -y bitshuffle (the HDF5 bitshuffle/LZ4 plugin DIALS reads Eiger data with)"
)
FIX_BROWSER = (
    f"{sys.executable} -m mxflow.report.browser_setup "
    "(apt-get install chromium; pip install playwright)"
)
FIX_CCTBX = "apt-get install -y python3-cctbx"


# ---------------------------------------------------------------------------
# the checks: each returns CheckResult(s) and prints nothing


def _gib(n_bytes: float) -> str:
    return f"{n_bytes / 2**30:.1f} GiB"


def _clean_env() -> dict[str, str]:
    """The environment for external Pythons: without mxflow's venv (as the runner does)."""
    env = dict(os.environ)
    for var in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"):
        env.pop(var, None)
    return env


def check_mxflow() -> CheckResult:
    """mxflow's version and the Python running it."""
    from mxflow import __version__

    py = ".".join(map(str, sys.version_info[:3]))
    return CheckResult("mxflow", Status.OK, f"mxflow {__version__}, Python {py} ({sys.executable})")


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", text)[:3])


def check_dependency(dep: Dependency) -> CheckResult:
    """``dep`` imports, at the version pyproject.toml asks for."""
    from importlib import metadata

    name = f"python: {dep.module}"
    spec = f"{dep.dist}>={dep.minimum}" if dep.minimum else dep.dist
    fix = f"make install, or: {sys.executable} -m pip install '{spec}'"
    try:
        module = importlib.import_module(dep.module)
    except Exception as exc:  # an ImportError, or a broken build raising anything
        return CheckResult(name, Status.FAIL, f"does not import: {type(exc).__name__}: {exc}", fix)
    try:
        version = metadata.version(dep.dist)
    except metadata.PackageNotFoundError:
        version = str(getattr(module, "__version__", "?"))
    if dep.minimum and _version_tuple(version) < _version_tuple(dep.minimum):
        return CheckResult(name, Status.FAIL, f"{version} is older than {dep.minimum}", fix)
    return CheckResult(name, Status.OK, version)


def check_spotfinder() -> CheckResult:
    """numba compiles mxflow's spot finder, which then finds the one spot of a small test image."""
    name = "numba spot finder"
    fix = "make install (numba, llvmlite and numpy must be versions that fit together)"
    t0 = time.perf_counter()
    try:
        import numpy as np

        from mxflow.hitmap.spotfinder import find_spots

        rng = np.random.default_rng(0)
        image = rng.poisson(2.0, (64, 64)).astype(np.int32)
        yy, xx = np.mgrid[:64, :64]
        image += (200 * np.exp(-((xx - 20.5) ** 2 + (yy - 30.5) ** 2) / 2)).astype(np.int32)
        spots = find_spots(image, np.ones(image.shape, bool))
    except Exception as exc:
        return CheckResult(name, Status.FAIL, f"{type(exc).__name__}: {exc}", fix)
    found = [(float(x), float(y)) for x, y in zip(spots.x, spots.y, strict=True)]
    if len(found) != 1 or abs(found[0][0] - 21.0) > 1 or abs(found[0][1] - 31.0) > 1:
        return CheckResult(
            name, Status.FAIL, f"expected one spot near (21, 31), found {found[:5]}", fix
        )
    return CheckResult(
        name, Status.OK, f"compiled, found the test spot ({time.perf_counter() - t0:.1f} s)"
    )


def check_workdir(workdir: Path) -> CheckResult:
    """``workdir`` exists (or can be made) and a file can be written in it."""
    name = "workdir"
    fix = f"use a --workdir you can write in (or fix the permissions of {workdir})"
    try:
        workdir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=workdir, prefix=".mxflow-check-") as fh:
            fh.write(b"mxflow")
            fh.flush()
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
        return CheckResult(name, Status.FAIL, f"cannot write in {workdir}: {why}", fix)
    return CheckResult(name, Status.OK, f"{workdir} is writable")


def check_disk(workdir: Path) -> CheckResult:
    """Free space on the file system of ``workdir`` (its nearest existing parent)."""
    path = workdir
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        usage = shutil.disk_usage(path)
    except OSError as exc:
        return CheckResult("disk space", Status.WARN, f"cannot tell for {path}: {exc}")
    detail = f"{_gib(usage.free)} free of {_gib(usage.total)} ({path})"
    if usage.free < LOW_DISK_GIB * 2**30:
        return CheckResult(
            "disk space",
            Status.WARN,
            f"{detail}; one dataset's processing needs about 1 GiB",
            "free some space, or use a --workdir on a larger disk",
        )
    return CheckResult("disk space", Status.OK, detail)


def check_cores() -> CheckResult:
    """CPU cores of the machine and those this process may use."""
    total = os.cpu_count() or 1
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = total
    detail = f"{usable} usable" + (f" of {total}" if usable != total else "")
    return CheckResult("CPU cores", Status.OK, detail)


def read_meminfo(path: str | Path = "/proc/meminfo") -> dict[str, int]:
    """/proc/meminfo as {field: bytes} (``MemTotal``, ``MemAvailable``, ...)."""
    out: dict[str, int] = {}
    for line in Path(path).read_text().splitlines():
        key, _, value = line.partition(":")
        words = value.split()
        if words and words[0].isdigit():
            scale = 1024 if len(words) > 1 and words[1].lower() == "kb" else 1
            out[key.strip()] = int(words[0]) * scale
    return out


def check_memory(meminfo: str | Path = "/proc/meminfo") -> CheckResult:
    """Total and available memory."""
    try:
        info = read_meminfo(meminfo)
        total, available = info["MemTotal"], info.get("MemAvailable", info.get("MemFree", 0))
    except (OSError, KeyError, ValueError):
        try:
            total = available = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):
            return CheckResult("memory", Status.WARN, "cannot tell (no /proc/meminfo)")
    detail = f"{_gib(available)} available of {_gib(total)}"
    if available < LOW_MEMORY_GIB * 2**30:
        return CheckResult(
            "memory",
            Status.WARN,
            f"{detail}; DIALS integration needs 1-2 GiB per dataset",
            "close other programs, or run fewer datasets at a time",
        )
    return CheckResult("memory", Status.OK, detail)


def check_dials() -> tuple[CheckResult, str | None]:
    """DIALS on PATH: dials.version's answer, and every program mxflow runs.

    Returns the result and the path of dials.version (None when DIALS is not usable).
    """
    name = "DIALS"
    exe = shutil.which("dials.version")
    if exe is None:
        return CheckResult(name, Status.FAIL, "dials.version is not on PATH", FIX_DIALS), None
    try:
        proc = subprocess.run(
            [exe],
            capture_output=True,
            text=True,
            env=_clean_env(),
            stdin=subprocess.DEVNULL,
            timeout=PROGRAM_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return CheckResult(name, Status.FAIL, f"{exe} did not run: {exc}", FIX_DIALS), None
    text = (proc.stdout + proc.stderr).strip()
    match = re.search(r"DIALS\s+(\S+)", text)
    if proc.returncode != 0 or match is None:
        last = text.splitlines()[-1] if text else f"exit status {proc.returncode}"
        return CheckResult(name, Status.FAIL, f"{exe} failed: {last[:200]}", FIX_DIALS), None
    missing = [p for p in DIALS_PROGRAMS if shutil.which(p) is None]
    if missing:
        return CheckResult(
            name,
            Status.FAIL,
            f"DIALS {match.group(1)} ({exe}) lacks {', '.join(missing)}",
            FIX_DIALS,
        ), None
    return CheckResult(name, Status.OK, f"DIALS {match.group(1)} ({exe})"), exe


def write_test_sweep(directory: Path, fmt: str) -> str:
    """A tiny simulated sweep (3 frames of a 487 x 195 PILATUS module); what dials.import takes.

    ``fmt`` "cbf" gives ``template=...``, "eiger" the master file's path
    (bitshuffle/LZ4-compressed data).
    """
    from mxflow.simulate import SimulationConfig, simulate

    cfg = SimulationConfig(
        format=fmt,  # type: ignore[arg-type]
        frames=3,
        osc_width=1.0,
        osc_start=0.0,
        seed=1,
        detector_size=(487, 195),
        distance=80.0,
        d_min=2.5,
        module_gaps=False,
        prefix="check",
    )
    sweep = simulate(directory, cfg).sweeps[0]
    return f"template={sweep.template}" if fmt == "cbf" else str(sweep.template)


_DIALS_REPORT_NOISE = "Please report this error to dials-support@lists.sourceforge.net: "


def eiger_fix() -> str:
    """How to make DIALS read bitshuffle/LZ4 Eiger data: Debian's plugin package for
    Debian's DIALS, the conda package otherwise; and HDF5_PLUGIN_PATH when it is set."""
    importer = shutil.which("dials.import") or ""
    if importer.startswith("/usr/"):
        fix = FIX_BITSHUFFLE
    else:
        fix = (
            "conda install -c conda-forge bitshuffle "
            "(in DIALS's environment: the HDF5 bitshuffle/LZ4 plugin)"
        )
    plugin_path = os.environ.get("HDF5_PLUGIN_PATH")
    if plugin_path:
        fix += f"; check HDF5_PLUGIN_PATH={plugin_path} (HDF5 looks for plugins only there)"
    return fix


def check_dials_images(scratch: Path, fmt: str) -> CheckResult:
    """dials.import and dials.find_spots (mxflow's runner) find spots on a tiny ``fmt`` sweep."""
    from mxflow.engine.refl import count_rows
    from mxflow.engine.runner import run_program
    from mxflow.engine.steps import dials_error_line

    label = {"cbf": "CBF", "eiger": "Eiger HDF5"}[fmt]
    name = f"DIALS reads {label}"
    fix = eiger_fix() if fmt == "eiger" else FIX_DIALS
    t0 = time.perf_counter()
    try:
        image_arg = write_test_sweep(scratch / fmt / "images", fmt)
    except Exception as exc:
        return CheckResult(
            name,
            Status.FAIL,
            f"could not write the test images: {type(exc).__name__}: {exc}",
            "make install",
        )
    work = scratch / fmt / "dials"
    for program, args in (
        ("dials.import", [image_arg]),
        ("dials.find_spots", ["imported.expt", "nproc=1"]),
    ):
        record = run_program(program, args, work, timeout=PROGRAM_TIMEOUT_S)
        if record.returncode != 0:
            why = dials_error_line(work, record) or f"exit status {record.returncode}"
            why = why.replace(_DIALS_REPORT_NOISE, "")
            return CheckResult(name, Status.FAIL, f"{program} failed: {why}", fix)
    try:
        n_spots = count_rows(work / "strong.refl")
    except Exception as exc:
        return CheckResult(name, Status.FAIL, f"cannot read strong.refl: {exc}", fix)
    if n_spots < MIN_SPOTS:
        return CheckResult(
            name,
            Status.FAIL,
            f"dials.find_spots found {n_spots} spots on 3 simulated frames "
            f"(expected >= {MIN_SPOTS})",
            fix,
        )
    return CheckResult(
        name,
        Status.OK,
        f"dials.import + dials.find_spots: {n_spots} spots on 3 frames "
        f"({time.perf_counter() - t0:.1f} s)",
    )


def check_browser() -> CheckResult:
    """Chromium and Playwright, which the report tests and screenshots use (optional)."""
    from mxflow.report.browser_setup import find_chromium, have_playwright

    name = "browser (optional)"
    chromium = find_chromium()
    missing = [
        what for what, ok in (("chromium", chromium), ("playwright", have_playwright())) if not ok
    ]
    if missing:
        return CheckResult(
            name,
            Status.WARN,
            f"no {' or '.join(missing)}: the reports work, "
            "their browser checks and screenshots do not",
            FIX_BROWSER,
        )
    version = ""
    try:
        proc = subprocess.run(
            [chromium, "--version"], capture_output=True, text=True, timeout=20, check=False
        )
        version = " ".join(proc.stdout.split()[:2])  # "Chromium 120.0.6099.224"
    except (OSError, subprocess.TimeoutExpired):
        pass
    from importlib import metadata

    try:
        playwright = f"playwright {metadata.version('playwright')}"
    except metadata.PackageNotFoundError:
        playwright = "playwright"
    return CheckResult(name, Status.OK, f"{version or 'chromium'} ({chromium}), {playwright}")


_CCTBX_PROBE = "import os, iotbx.mtz; print(os.path.dirname(iotbx.__file__))"


def cctbx_pythons(dials_exe: str | None) -> list[str]:
    """Pythons that may hold cctbx: DIALS's own (its launcher's shebang), then Debian's."""
    from mxflow.engine.server_client import launcher_python

    found = []
    for candidate in (
        launcher_python(dials_exe) if dials_exe else None,
        shutil.which("dials.python"),
        "/usr/bin/python3",
    ):
        if candidate and Path(candidate).exists() and candidate not in found:
            found.append(candidate)
    return found


def check_cctbx(dials_exe: str | None) -> CheckResult:
    """cctbx/iotbx in DIALS's Python: a second MTZ reader for the tests (optional)."""
    name = "cctbx/iotbx (optional)"
    tried = []
    for python in cctbx_pythons(dials_exe):
        tried.append(python)
        try:
            proc = subprocess.run(
                [python, "-c", _CCTBX_PROBE],
                capture_output=True,
                text=True,
                env=_clean_env(),
                timeout=PROGRAM_TIMEOUT_S,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            continue
        if proc.returncode == 0:
            return CheckResult(
                name, Status.OK, f"iotbx.mtz imports in {python} ({proc.stdout.strip()})"
            )
    where = ", ".join(tried) or "no Python found"
    return CheckResult(
        name,
        Status.WARN,
        f"iotbx.mtz does not import ({where}); tests skip the second MTZ reader",
        FIX_CCTBX,
    )


# ---------------------------------------------------------------------------
# running them all


def run_checks(workdir: Path, keep: bool = False) -> tuple[list[CheckResult], Path | None]:
    """Every check, in the order of the table, and the folder kept (with ``keep``).

    The DIALS checks run in a thread (DIALS works in child processes) while
    this one imports the packages and compiles the spot finder, which keeps
    the whole check within ~30 s on two cores.  Their images and logs go into
    a temporary folder under ``workdir``, removed afterwards unless ``keep``.
    """
    workdir = Path(workdir).absolute()
    wd = check_workdir(workdir)
    dials: list[CheckResult] = []
    scratch: Path | None = None
    if wd.status is Status.OK:
        with contextlib.suppress(OSError):  # then the DIALS image checks say SKIP
            scratch = Path(tempfile.mkdtemp(prefix="mxflow-check-", dir=workdir))

    def dials_checks() -> None:
        try:
            result, exe = check_dials()
        except Exception as exc:  # a bug in the check must not lose the DIALS lines
            result, exe = (
                CheckResult("DIALS", Status.FAIL, f"the check itself failed: {exc!r}"),
                None,
            )
        dials.append(result)
        for fmt in ("cbf", "eiger"):
            name = f"DIALS reads {'CBF' if fmt == 'cbf' else 'Eiger HDF5'}"
            if exe is None:
                dials.append(CheckResult(name, Status.SKIP, "not run: DIALS is not usable"))
            elif scratch is None:
                dials.append(CheckResult(name, Status.SKIP, "not run: the workdir is not writable"))
            else:
                dials.append(_guarded(name, lambda fmt=fmt: check_dials_images(scratch, fmt)))

    thread = threading.Thread(target=dials_checks, name="mxflow-check-dials", daemon=True)
    thread.start()
    try:
        rest = [_guarded("mxflow", check_mxflow)]
        rest += [
            _guarded(f"python: {d.module}", lambda d=d: check_dependency(d))
            for d in PYTHON_DEPENDENCIES
        ]
        rest.append(_guarded("numba spot finder", check_spotfinder))
        machine = [
            wd,
            _guarded("disk space", lambda: check_disk(workdir)),
            _guarded("CPU cores", check_cores),
            _guarded("memory", check_memory),
        ]
        optional = [
            _guarded("browser (optional)", check_browser),
            _guarded("cctbx/iotbx (optional)", lambda: check_cctbx(shutil.which("dials.version"))),
        ]
    finally:
        thread.join()
        if scratch is not None and not keep:
            shutil.rmtree(scratch, ignore_errors=True)
    return [rest[0], *dials, *rest[1:], *machine, *optional], scratch if keep else None


def _guarded(name: str, check: Callable[[], CheckResult]) -> CheckResult:
    """``check()``, with an unexpected exception turned into a FAIL (a bug in a check
    must not hide the other lines)."""
    try:
        return check()
    except Exception as exc:
        return CheckResult(
            name, Status.FAIL, f"the check itself failed: {type(exc).__name__}: {exc}"
        )


# ---------------------------------------------------------------------------
# formatting


def format_table(results: Sequence[CheckResult]) -> str:
    """The table: one line per check (status, name, detail), then ``fix:`` under each
    FAIL or WARN that has one."""
    width = max((len(r.name) for r in results), default=0)
    lines = []
    for r in results:
        lines.append(f"{r.status.value:<4}  {r.name:<{width}}  {r.detail}".rstrip())
        if r.fix and r.status in (Status.FAIL, Status.WARN):
            lines.append(f"{'':<4}  {'':<{width}}  fix: {r.fix}")
    return "\n".join(lines)


def count_statuses(results: Iterable[CheckResult]) -> dict[Status, int]:
    counts = dict.fromkeys(Status, 0)
    for r in results:
        counts[r.status] += 1
    return counts


def format_summary(results: Sequence[CheckResult], wall_s: float | None = None) -> str:
    """One closing line: the counts per status and the verdict."""
    counts = count_statuses(results)
    parts = [f"{counts[s]} {s.value}" for s in Status if counts[s] or s is Status.OK]
    verdict = (
        "mxflow cannot run until the FAIL lines are fixed"
        if counts[Status.FAIL]
        else "mxflow is ready to run"
    )
    took = f" in {wall_s:.1f} s" if wall_s is not None else ""
    return f"{', '.join(parts)}{took}: {verdict}"


def exit_status(results: Iterable[CheckResult]) -> int:
    """0 when no check FAILed, 1 otherwise."""
    return 1 if any(r.status is Status.FAIL for r in results) else 0


# ---------------------------------------------------------------------------
# the command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="directory to test (write access, free space) and to run DIALS in, in a "
        "temporary folder removed afterwards (default: the system's temporary directory)",
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the temporary folder (test images, DIALS logs) and print where it is",
    )


def run(args: argparse.Namespace) -> int:
    workdir = args.workdir if args.workdir is not None else Path(tempfile.gettempdir())
    print(f"mxflow check: installation self-test (workdir {Path(workdir).absolute()})", flush=True)
    t0 = time.perf_counter()
    results, kept = run_checks(workdir, keep=args.keep)
    print(format_table(results))
    if kept is not None:
        print(f"test images and DIALS logs kept in {kept}")
    print(format_summary(results, time.perf_counter() - t0))
    return exit_status(results)
