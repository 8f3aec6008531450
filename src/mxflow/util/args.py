"""Parsing the values users type: unit cells, space groups and raster grids (command lines,
sample sheets).

One syntax for each, the same in every command and its ``--help``:

* a unit cell is six numbers separated by commas, ``a,b,c,al,be,ga`` (Å, degrees),
  e.g. ``78,78,37,90,90,90`` (:data:`UNIT_CELL_METAVAR`); the older space-separated
  form (``'78 78 37 90 90 90'``) is still read;
* a raster grid is ``ROWS,COLS`` (rows, then frames per row along the fast scan
  direction), e.g. ``10,20`` (:data:`GRID_METAVAR`), the order of
  ``SimulationConfig.raster_grid``; the older ``COLSxROWS`` form of ``mxflow hitmap``
  (``20x10``, with an ``x``) is still read, with its old meaning.

:func:`parse_unit_cell` and :func:`canonical_space_group` raise ValueError with a
message naming the value and the problem; :func:`unit_cell_arg` and
:func:`space_group_arg` are the same checks as argparse ``type=`` functions, so a
typo is one clear usage error before any work starts.
"""

from __future__ import annotations

import argparse
import math
import re
from typing import Any

#: a, b, c (Å), α, β, γ (degrees); the same type as mxflow.model.UnitCell
Cell = tuple[float, float, float, float, float, float]

#: how every command's --help writes a unit cell
UNIT_CELL_METAVAR = "a,b,c,al,be,ga"
#: the help text every unit-cell option ends with
UNIT_CELL_HELP = (
    "six numbers, Å and degrees, e.g. 78,78,37,90,90,90; "
    "the old form 'a b c al be ga' (quoted) is still read"
)
#: how every command's --help writes a raster grid
GRID_METAVAR = "ROWS,COLS"
#: the help text every raster-grid option ends with
GRID_HELP = (
    "rows, then frames per row (fast scan direction), e.g. 10,20; "
    "the old form COLSxROWS (20x10) is still read"
)


def parse_unit_cell(text: str) -> Cell:
    """``a b c alpha beta gamma`` (Å, degrees) from text such as ``"54,62,71,90,90,90"``.

    Numbers may be separated by commas, semicolons or spaces, and the whole
    may be in brackets.  Raises ValueError unless there are six numbers with
    a, b, c > 0, every angle strictly between 0 and 180 degrees, and angles that
    can form a cell (each less than the sum of the other two, all three less than
    360°: a volume above 0).
    """
    parts = [p for p in re.split(r"[\s,;]+", text.strip().strip("()[]")) if p]
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        raise ValueError(f"unit cell {text!r} is not six numbers") from None
    if len(values) != 6:
        raise ValueError(
            f"unit cell {text!r} must be six numbers, a b c (Å) alpha beta gamma (degrees); "
            f"got {len(values)}"
        )
    if not all(math.isfinite(v) and v > 0 for v in values[:3]) or not all(
        0 < a < 180 for a in values[3:]
    ):
        raise ValueError(
            f"unit cell {text!r} must be a b c (Å, above 0) alpha beta gamma "
            "(degrees, between 0 and 180)"
        )
    ca, cb, cg = (math.cos(math.radians(x)) for x in values[3:])
    if 1 - ca * ca - cb * cb - cg * cg + 2 * ca * cb * cg <= 1e-9:  # (V / abc)²
        raise ValueError(
            f"unit cell {text!r}: angles {values[3]:g}, {values[4]:g}, {values[5]:g} degrees "
            "cannot form a cell (each must be less than the sum of the other two, "
            "and the three together less than 360)"
        )
    return values  # type: ignore[return-value]


def canonical_space_group(text: str) -> str:
    """The Hermann–Mauguin name (gemmi's ``.hm``, e.g. ``P 21 21 21``) of a space group.

    Accepts what gemmi knows: H-M symbols with or without spaces (``P212121``,
    ``P 1 21 1``, ``P21``, ``H3``), space-group numbers 1–230 and Hall symbols
    (``P 2ac 2ab``).  A non-default setting that ``.hm`` alone would lose
    (``R 3:R``) keeps gemmi's extended name.  Raises ValueError
    ``unknown space group '...'`` otherwise, and for an H-M name whose spaces
    do not separate one symbol per axis (``P 21 21 2 1``, ``P 6 3``), which
    gemmi would read by running the symbols together (as ``P 21 21 21`` — or the
    user meant ``P 21 21 2``).
    """
    import gemmi

    name = text.strip()
    sg = None
    by_name = False
    if name.isdigit():
        if 1 <= int(name) <= 230:
            sg = gemmi.find_spacegroup_by_number(int(name))
    elif name:
        sg = gemmi.find_spacegroup_by_name(name)
        by_name = sg is not None
        if sg is None:
            try:
                sg = gemmi.find_spacegroup_by_ops(gemmi.symops_from_hall(name))
            except (RuntimeError, ValueError):
                sg = None
    if sg is None:
        raise ValueError(f"unknown space group {text!r}")
    if by_name:
        _check_axis_symbols(text, sg.hm)
    if gemmi.find_spacegroup_by_name(sg.hm).hall != sg.hall:
        return sg.xhm()
    return sg.hm


def _check_axis_symbols(text: str, hm: str) -> None:
    """Raise ValueError when the spaces of the H-M name ``text`` do not separate the
    axis symbols of ``hm`` (gemmi's reading of it); a name written without spaces
    between its axis symbols (``P212121``, ``P 212121``) is not checked."""
    base = text.strip().split(":")[0].lower()
    first, *rest = base.split() or [""]
    axes = ([first[1:]] if len(first) > 1 else []) + rest
    if len(axes) < 2:
        return
    want = hm.lower().split()[1:]
    short = [t for t in want if t != "1"]  # P 21, C 2 for P 1 21 1, C 1 2 1
    old = [t.lstrip("-") for t in want]  # F m 3 m for F m -3 m
    if axes in (want, short) or [t.lstrip("-") for t in axes] == old:
        return
    symbols = ", ".join(axes)
    what = (
        f"has {len(axes)} axis symbols ({symbols}), at most 3 in a name"
        if len(axes) > 3
        else f"does not have one symbol per axis ({symbols})"
    )
    raise ValueError(
        f"space group {text!r} {what}; gemmi would read it as {hm!r}: write that if it is meant"
    )


def unit_cell_arg(text: str) -> Cell:
    """argparse ``type=`` for a unit cell (see :func:`parse_unit_cell`)."""
    try:
        return parse_unit_cell(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parse_grid(text: str) -> tuple[int, int]:
    """(rows, cols) of a raster grid from ``ROWS,COLS`` (``"10,20"``: 10 rows of 20 frames).

    The older ``COLSxROWS`` form (``"20x10"``, ``x`` or ``×``) is still read with its
    meaning: the separator tells the two apart.  Raises ValueError unless there are
    two whole numbers of at least 1.
    """
    t = text.strip().lower().replace("×", "x")
    legacy = "x" in t
    parts = [p for p in re.split(r"x" if legacy else r"[\s,;]+", t) if p.strip()]
    try:
        a, b = (int(p) for p in parts)
    except ValueError:
        raise ValueError(
            f"raster grid {text!r} is not ROWS,COLS (two whole numbers, e.g. 10,20)"
        ) from None
    rows, cols = (b, a) if legacy else (a, b)
    if rows < 1 or cols < 1:
        raise ValueError(f"raster grid {text!r}: rows and columns must be at least 1")
    return rows, cols


def grid_arg(text: str) -> tuple[int, int]:
    """argparse ``type=`` for a raster grid: (rows, cols) (see :func:`parse_grid`)."""
    try:
        return parse_grid(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def space_group_arg(text: str) -> str:
    """argparse ``type=`` for a space group: its H-M name (see :func:`canonical_space_group`)."""
    try:
        return canonical_space_group(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def sample_name_arg(text: str) -> str:
    """argparse ``type=`` for a sample name (see :func:`mxflow.util.files.check_sample_name`):
    a name that reads as a path (``../x``, ``a/b``, a leading ``.``, empty) is a usage error."""
    from mxflow.util.files import check_sample_name

    try:
        return check_sample_name(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def workdir_arg(text: str) -> str:
    """argparse ``type=`` for ``--workdir``: the folder as an absolute path, resolved once
    here (so a relative one means the same in every sub-folder a program runs in).

    Usage errors: an empty value (never the current folder by accident) and a path that
    exists but is not a folder.
    """
    import os

    if not text.strip():
        raise argparse.ArgumentTypeError("is empty: give the output folder, e.g. --workdir OUT")
    path = os.path.abspath(os.path.expanduser(text))
    if os.path.exists(path) and not os.path.isdir(path):
        raise argparse.ArgumentTypeError(f"{text!r} is a file, not a folder")
    return path


def workdir_in_inputs(workdir: str, inputs: list[str]) -> str | None:
    """The first of ``inputs`` whose tree holds ``workdir`` or is it (links resolved), or
    None.  An input folder's tree is the folder and all below it (a run's next look would
    find its own outputs there); an input file's is its folder itself (the image folder,
    whose files the outputs could replace), not the folders beside the file.  The raw data
    are read-only to mxflow."""
    from pathlib import Path

    wd = Path(workdir).resolve()
    for given in inputs:
        p = Path(given).expanduser().resolve()
        if p.is_dir() or (not p.exists() and not p.suffix):
            if wd == p or wd.is_relative_to(p):
                return given
        elif wd == p.parent or wd == p:
            return given
    return None


# -- numbers on the command line ------------------------------------------------------
#
# argparse ``type=`` functions for the counts, lengths and times the commands take: a
# value out of range is one usage error (exit 2) before any work starts, which argparse
# writes as ``argument --workers: 500: at most 4 on this machine (2 cores)``.

#: --workers and --nproc may ask for at most this many times the cores of the machine
OVERSUBSCRIBE = 2
#: the help text of every option bounded by :func:`count_problem`
CORES_BOUND_HELP = f"at most {OVERSUBSCRIBE} × the cores this machine gives mxflow"


def available_cores() -> int:
    """CPU cores this process may use (the affinity mask, where the system has one)."""
    import os

    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def count_problem(value: int, cores: int | None = None) -> str | None:
    """Why ``value`` is not a usable count of processes (workers, nproc) on a machine of
    ``cores`` cores (default: :func:`available_cores`), or None when it is: a count is a
    whole number from 1 to :data:`OVERSUBSCRIBE` × cores."""
    cores = available_cores() if cores is None else cores
    if value < 1:
        return "must be at least 1"
    if value > OVERSUBSCRIBE * cores:
        return f"at most {OVERSUBSCRIBE * cores} on this machine ({cores} cores)"
    return None


def _number(text: str, kind: type, what: str) -> Any:
    """``kind(text)`` (int or float), or the usage error '``text``: not a ``what``'."""
    try:
        value = kind(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: not {what}") from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text}: not {what}")
    return value


def positive_float(text: str) -> float:
    """argparse ``type=``: a finite number above 0 (a resolution in Å, a length)."""
    value = _number(text, float, "a number")
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text}: must be above 0")
    return value


def nonnegative_float(text: str) -> float:
    """argparse ``type=``: a finite number of at least 0 (seconds to wait)."""
    value = _number(text, float, "a number")
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text}: must be 0 or more")
    return value


def nonnegative_int(text: str) -> int:
    """argparse ``type=``: a whole number of at least 0 (how many times to retry)."""
    value = _number(text, int, "a whole number")
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text}: must be 0 or more")
    return value


def core_count_arg(text: str) -> int:
    """argparse ``type=`` for ``--workers`` / ``--nproc`` / ``--jobs``: a whole number from 1
    to :data:`OVERSUBSCRIBE` × the cores (:func:`count_problem`: ``500: at most 4 on this
    machine (2 cores)``)."""
    value = _number(text, int, "a whole number")
    problem = count_problem(value)
    if problem:
        raise argparse.ArgumentTypeError(f"{text}: {problem}")
    return value


def wedge_deg_arg(text: str) -> float:
    """argparse ``type=`` for ``--wedge-deg``: degrees above 0 and at most 360."""
    value = _number(text, float, "a number of degrees")
    if not 0 < value <= 360:
        raise argparse.ArgumentTypeError(f"{text}: must be above 0 and at most 360 degrees")
    return value
