"""Collections: every dataset of a beamline session, with samples, modes and wedges.

Two layouts are understood:

* **ZOO** (SPring-8 automatic collection, seeds/000): ``ROOT/<PuckID>-<PinID>/``
  sample directories holding ``data00/``, ``data01/`` … with the rotation
  data and ``scan*/`` (raster scans) and ``lv00_00/`` / ``rv00_00/``
  (vertical edge scans).  File names tell the mode: ``…multi_NNN_#####.cbf``
  (multi: many small wedges, one per crystal), ``cry00_#####.cbf`` or
  ``helical_…`` (helical), ``single_NNN_#####.cbf`` (single).  Directories
  starting with ``_`` (``_kamoproc``, ``_kamo_30deg``, outputs) are ignored.
* **generic**: any other tree, walked recursively; each leaf directory is a
  sample unless a sample sheet or ``default_sample`` says otherwise, and
  numbered per-crystal folders (``814/1``, ``814/2`` …) are one sample, their
  parent.

Raster and vertical scans (and any still / zero-oscillation series) go to
``raster_scans`` and are never processed as rotation data.  Helical and
single sweeps, and other sweeps longer than ``wedge_deg`` (not electron
sweeps: one crystal each), are cut into
wedges of round(wedge_deg / osc_width) frames, the last wedge keeping what
remains (KAMO's ``split_data_by_deg``, the ZOO "buttagiri" 30° pass);
multi-mode small wedges are kept whole.  A dataset whose files are still
being written (modified within ``settle_s`` seconds, or an Eiger master
with fewer images than it announces) is put in ``incomplete`` and left for
a later pass.
"""

from __future__ import annotations

import csv
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mxflow.discover.sweeps import find_sweeps, is_image_name, used_files
from mxflow.errors import BadInputError
from mxflow.images.read import FrameHeader
from mxflow.model import Dataset, ImageSweep, UnitCell
from mxflow.util.args import canonical_space_group, parse_unit_cell
from mxflow.util.files import sample_name_problem

MODES = ("single", "helical", "multi", "other")
DEFAULT_SETTLE_S = 60.0

_PIN_DIR = re.compile(r"^(?P<puck>[A-Za-z0-9]+)-(?P<pin>\d+)$")
_DATA_DIR = re.compile(r"^data\d+$")
_SCAN_DIR = re.compile(r"^(scan.*|[lr]v\d+_\d+)$", re.I)
_TEMPLATE_TAIL = re.compile(r"[-_.]?#+(\.[A-Za-z0-9.]+)$")
_MASTER_TAIL = re.compile(r"(_master\.h5|\.nxs|\.h5|\.hdf5|\.nx5)$", re.I)


# --------------------------------------------------------------------------
# sample sheet


@dataclass
class SampleEntry:
    """One row of a sample sheet: which pins / directories hold which sample.

    ``pin`` is a ``PuckID-PinID`` key (matched with the pin number as an
    integer, so ``CPS1012-6`` matches the directory ``CPS1012-06``);
    ``directory`` a path (absolute, or relative to the collection root)
    whose datasets, at any depth, belong to this sample.  Exactly one of the
    two is set.
    """

    name: str
    pin: str | None = None
    directory: str | None = None
    mode: str | None = None
    anomalous: bool = False
    space_group: str | None = None
    unit_cell: UnitCell | None = None
    reference_mtz: str | None = None
    free_flags_mtz: str | None = None
    heavy_atom: str | None = None  # element symbol (canonical: "Zn"); implies anomalous
    n_sites: int | None = None  # expected heavy-atom sites per ASU
    line: int = 0
    pin_given: str | None = None  # the pin as the sheet spells it (``pin`` is its key)


_COLUMNS = {
    "pin": ("pin", "puck_pin", "pinid", "puckid-pinid", "puck-pin"),
    "puck": ("puck", "puckid"),
    "directory": ("topdir", "directory", "dir", "path", "root_dir"),
    "name": ("name", "sample", "sample_name"),
    "mode": ("mode",),
    "anomalous": ("anomalous", "anom", "anomalous_flag"),
    "space_group": ("space_group", "spacegroup", "sg"),
    "unit_cell": ("unit_cell", "cell"),
    "reference_mtz": ("reference", "reference_mtz", "ref_mtz"),
    "free_flags_mtz": (
        "free_flags",
        "free_flags_mtz",
        "freer",
        "freer_flag",
        "freer_flags",
        "free_r_flags",
        "r_free_flags",
        "rfree",
    ),
    "heavy_atom": ("heavy_atom", "heavy-atom", "heavyatom", "atom", "ha"),
    "n_sites": ("sites", "n_sites", "nsites", "num_sites"),
}
_TRUE = {"true", "yes", "y", "1", "t", "anom", "anomalous", "on"}
_FALSE = {"false", "no", "n", "0", "f", "", "noanom", "off"}


#: pin numbers a sheet may give (positions in a puck: 1–16 in a uni-puck, 1–10 in a SPINE one)
MAX_PIN = 999
_PUCK_NAME = re.compile(r"^[A-Za-z0-9]+$")  # as in a ZOO pin directory name
_PIN_NUMBER = re.compile(r"^[0-9]{1,3}$")
#: column pairs a reference MTZ must have one of (what merge.observations.read_reference reads)
REFERENCE_COLUMNS = (("IMEAN", "SIGIMEAN"), ("I", "SIGI"), ("F", "SIGF"), ("FP", "SIGFP"))


def pin_key(puck: str, pin: str | int) -> str:
    """Normalised ``PUCK-PIN`` key: puck upper-cased, pin number without padding."""
    return f"{puck.strip().upper()}-{int(pin)}"


def pin_key_of_dir(name: str) -> str | None:
    """The pin key of a ZOO sample directory name (``CPS1012-06``), or None."""
    m = _PIN_DIR.match(name)
    return pin_key(m["puck"], m["pin"]) if m else None


def parse_pin(pin: str, puck: str | None = None) -> str:
    """The pin key of a sheet's ``PuckID-PinID`` (or of ``puck`` and a pin number);
    ValueError (starting ``puck`` when the puck is wrong) when it is not one.

    A puck is letters and digits (as the ZOO directory ``CPS1012-06``); a pin
    number is 1 to :data:`MAX_PIN`, in ASCII digits.
    """
    text = pin.strip()
    if puck is None:
        p, sep, n = text.partition("-")
        if not sep or not p.strip() or not n.strip():
            raise ValueError(
                f"pin {pin!r} is not PuckID-PinID (e.g. CPS1012-06) or a pin number with a "
                "puck column"
            )
    else:
        p, n = puck, text
    p, n = p.strip(), n.strip()
    if not _PUCK_NAME.match(p):
        raise ValueError(f"puck {p!r} must be letters and digits only (as in CPS1012-06)")
    if not _PIN_NUMBER.match(n) or not 1 <= int(n) <= MAX_PIN:
        raise ValueError(f"pin number {n!r} must be a whole number from 1 to {MAX_PIN}")
    return pin_key(p, n)


class _Sheet:
    """Errors of one sheet: ``error(line, key, problem)`` names the sheet, the line and
    the column (as the header spells it)."""

    def __init__(self, path: Path, header: list[str], col: dict[str, int]):
        self.path, self.header, self.col = path, header, col

    def column(self, key: str) -> str:
        i = self.col.get(key)
        return self.header[i].strip() if i is not None else key

    def error(self, line: int, key: str | None, problem: str) -> BadInputError:
        where = f"line {line}" + (f", column {self.column(key)}" if key else "")
        return BadInputError(self.path, f"{where}: {problem}")


def read_sample_sheet(path: str | Path) -> list[SampleEntry]:
    """Read a sample-sheet CSV (header row, then one row per pin or directory).

    Columns (case-insensitive; KAMO's ``topdir,name,anomalous,reference,
    space_group,unit_cell`` CSV is accepted as is):

    * ``pin`` (``PuckID-PinID``, the puck letters and digits, the pin number 1 to
      999), or ``puck`` + ``pin``, or ``topdir`` / ``directory`` (a path) — which
      data the row is about; one pin (or one directory) on one row only, however it
      is spelled (``CPS1-01`` and ``cps1-1`` are one pin);
    * ``name`` (or ``sample``) — the sample name, required;
    * optional ``mode`` (single / helical / multi / other), ``anomalous``
      (true/false, yes/no, 1/0), ``space_group`` (any name gemmi knows, with one
      symbol per axis when spaced: ``P 21 21 21``, ``P212121``),
      ``unit_cell`` (``a,b,c,al,be,ga``, Å and degrees, as on the command
      line: ``"78,78,37,90,90,90"`` quoted in the CSV, or unquoted when the
      row has the five extra fields that makes; KAMO's space-separated
      ``78 78 37 90 90 90`` is read too; finite, lengths above 0, angles that
      form a cell), ``reference`` (an MTZ file with merged intensities or
      amplitudes, relative paths taken from the sheet's directory), ``free_flags``
      (or ``free_flags_mtz``, ``freer``: an MTZ whose FreeR flags the
      sample's merged files take, relative as ``reference``; checked for a
      flag column when the sheet is read), ``heavy_atom`` (or ``atom``, ``ha``: the
      element of the anomalous scatterer, e.g. ``Zn``, as xia2's ``atom=``; it makes
      the sample anomalous) and ``sites`` (expected heavy-atom sites per asymmetric
      unit, a whole number above 0).

    Blank lines and lines starting with ``#`` are skipped.  Every field is
    checked here: an error is a BadInputError naming the file, the line and
    the column.  A row whose pin or directory matches no dataset is not an
    error (a sheet lists what was planned): :func:`discover_collection`
    warns about it.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInputError(path, f"sample sheet cannot be read ({exc})") from exc
    lines = [
        (i + 1, s)
        for i, s in enumerate(text.splitlines())
        if s.strip() and not s.lstrip().startswith("#")
    ]
    if not lines:
        raise BadInputError(path, "sample sheet is empty")
    rows = list(csv.reader([s for _, s in lines], skipinitialspace=True))
    header = [h.strip().lower() for h in rows[0]]
    col: dict[str, int] = {}
    for key, names in _COLUMNS.items():
        for i, h in enumerate(header):
            if h in names and key not in col:
                col[key] = i
    header_line = lines[0][0]
    if "name" not in col:
        raise BadInputError(
            path,
            f"line {header_line}: no sample name column (name or sample) in the header {rows[0]}",
        )
    if "pin" not in col and "directory" not in col:
        raise BadInputError(
            path,
            f"line {header_line}: no pin (PuckID-PinID, or puck + pin) or topdir/directory column in the header",
        )
    sheet = _Sheet(path, rows[0], col)
    entries = [
        _sheet_entry(sheet, line, row, len(header))
        for (line, _), row in zip(lines[1:], rows[1:], strict=True)
    ]
    _check_one_row_each(sheet, entries)
    return entries


def _sheet_entry(sheet: _Sheet, line: int, row: list[str], n_header: int) -> SampleEntry:
    """One checked row of a sample sheet (see :func:`read_sample_sheet`)."""
    col, err = sheet.col, sheet.error
    i_cell = col.get("unit_cell")
    if i_cell is not None and len(row) == n_header + 5:
        # an unquoted a,b,c,al,be,ga cell: its six numbers are six CSV fields
        row = row[:i_cell] + [",".join(row[i_cell : i_cell + 6])] + row[i_cell + 6 :]
    if len(row) > n_header and any(f.strip() for f in row[n_header:]):
        raise err(line, None, f"{len(row)} fields, but the header has {n_header}")

    def cell(key: str) -> str:
        i = col.get(key)
        return row[i].strip() if i is not None and i < len(row) else ""

    name = cell("name")
    if not name:
        raise err(line, "name", "no sample name")
    if sample_name_problem(name):  # it becomes part of file names: never a path
        raise err(line, "name", f"sample name {name!r} {sample_name_problem(name)}")
    entry = SampleEntry(name=name, line=line)
    pin, puck, directory = cell("pin"), cell("puck"), cell("directory")
    if pin:
        try:
            entry.pin = parse_pin(pin, puck if "puck" in col and puck else None)
            entry.pin_given = f"{puck}-{pin}" if "puck" in col and puck else pin
        except ValueError as exc:
            bad_puck = "puck" in col and puck and str(exc).startswith("puck ")
            raise err(line, "puck" if bad_puck else "pin", str(exc)) from None
    elif directory:
        entry.directory = directory
    else:
        raise err(
            line, "pin" if "pin" in col else "directory", "neither a pin nor a directory given"
        )
    mode = cell("mode").lower()
    if mode:
        if mode not in MODES:
            raise err(line, "mode", f"mode {mode!r} is not one of {', '.join(MODES)}")
        entry.mode = mode
    anom = cell("anomalous").lower()
    if anom not in _TRUE | _FALSE:
        raise err(line, "anomalous", f"anomalous flag {anom!r} is not true/false")
    entry.anomalous = anom in _TRUE
    from mxflow.stats.scatterers import check_element, parse_sites

    def parsed(key: str, parse: Callable[[str], Any]) -> Any:
        """The field ``key`` read by ``parse`` (None when empty); its ValueError names
        the line and column."""
        value = cell(key)
        try:
            return parse(value) if value else None
        except ValueError as exc:
            raise err(line, key, str(exc)) from None

    entry.space_group = parsed("space_group", canonical_space_group)
    entry.unit_cell = parsed("unit_cell", parse_unit_cell)
    entry.reference_mtz = parsed("reference_mtz", lambda v: _reference_file(sheet.path, v))
    entry.free_flags_mtz = parsed("free_flags_mtz", lambda v: _free_flags_file(sheet.path, v))
    entry.heavy_atom = parsed("heavy_atom", check_element)
    entry.n_sites = parsed("n_sites", parse_sites)
    return entry


def _check_one_row_each(sheet: _Sheet, entries: list[SampleEntry]) -> None:
    """One row per pin and per directory, however spelled; no directory row inside a
    pin a pin row names (the pin row would always win: the row would never be used)."""
    pins: dict[str, SampleEntry] = {}
    dirs: dict[str, SampleEntry] = {}
    for e in entries:
        if e.pin:
            seen = pins.get(e.pin)
            if seen is not None:
                raise sheet.error(
                    e.line,
                    "pin",
                    f"pin {e.pin_given!r} is the pin {seen.pin_given!r} of line "
                    f"{seen.line} (pins are compared without leading zeros, pucks without case)",
                )
            pins[e.pin] = e
        elif e.directory:
            norm = os.path.normpath(e.directory)
            seen = dirs.get(norm)
            if seen is not None:
                raise sheet.error(
                    e.line,
                    "directory",
                    f"directory {e.directory!r} is the directory {seen.directory!r} of line "
                    f"{seen.line}",
                )
            dirs[norm] = e
    for e in dirs.values():
        parts = Path(os.path.normpath(e.directory or "")).parts
        key = pin_key_of_dir(parts[0]) if parts and not Path(parts[0]).is_absolute() else None
        if key in pins:
            raise sheet.error(
                e.line,
                "directory",
                f"directory {e.directory!r} is inside pin {parts[0]} (line {pins[key].line}), "
                "whose row takes precedence: this row would never be used",
            )


def _sheet_file(sheet: Path, value: str) -> Path:
    """A file named in the sheet: absolute, or relative to the sheet's directory."""
    return Path(value) if Path(value).is_absolute() else sheet.parent / value


def _reference_file(sheet: Path, value: str) -> str:
    """The sheet's reference MTZ ``value``, checked: an MTZ with merged intensities or
    amplitudes and their sigmas (:data:`REFERENCE_COLUMNS`).  Raises ValueError."""
    import gemmi  # only when a sheet names a reference

    mtz_path = _sheet_file(sheet, value)
    if not mtz_path.is_file():
        raise ValueError(f"reference MTZ {value!r} not found")
    try:
        mtz = gemmi.read_mtz_file(str(mtz_path), with_data=False)
    except (RuntimeError, ValueError, OSError) as exc:
        raise ValueError(f"reference MTZ {value!r} is not an MTZ file ({exc})") from None
    labels = {c.label for c in mtz.columns}
    if not any(i in labels and s in labels for i, s in REFERENCE_COLUMNS):
        pairs = ", ".join(f"{i}/{s}" for i, s in REFERENCE_COLUMNS)
        raise ValueError(
            f"reference MTZ {value!r} has no {pairs} columns (it has {', '.join(sorted(labels))})"
        )
    if mtz.nreflections == 0:
        raise ValueError(f"reference MTZ {value!r} has no reflections")
    return str(mtz_path)


def _free_flags_file(sheet: Path, value: str) -> str:
    """The sheet's free-flag MTZ ``value`` (relative to the sheet), checked for a flag
    column.  Raises ValueError."""
    from mxflow.stats.free_flags import load_free_flag_source  # numpy/gemmi: only when used

    mtz = _sheet_file(sheet, value)
    if not mtz.is_file():
        raise ValueError(f"free-flag MTZ {value!r} not found")
    try:
        load_free_flag_source(mtz)
    except BadInputError as exc:
        raise ValueError(f"free-flag MTZ {exc}") from None
    return str(mtz)


def match_sample(
    entries: list[SampleEntry], root: Path, pin: str | None, directory: Path
) -> SampleEntry | None:
    """The sheet entry for a dataset in ``directory`` (pin key first, then the deepest path)."""
    if pin is not None:
        for e in entries:
            if e.pin == pin:
                return e
    best: tuple[int, SampleEntry] | None = None
    d = directory.resolve()
    for e in entries:
        if e.directory is None:
            continue
        top = Path(e.directory)
        top = (top if top.is_absolute() else root / top).resolve()
        if d == top or top in d.parents:
            depth = len(top.parts)
            if best is None or depth > best[0]:
                best = (depth, e)
    return best[1] if best else None


# --------------------------------------------------------------------------
# wedges and modes


def mode_from_name(prefix: str) -> str | None:
    """The ZOO collection mode told by a file prefix, or None when it does not say."""
    p = prefix.lower()
    if re.search(r"(^|[-_])multi([-_]|$)", p):
        return "multi"
    if re.match(r"^cry\d+", p) or "helical" in p:
        return "helical"
    if re.search(r"(^|[-_])single([-_]|$)", p):
        return "single"
    return None


def wedge_ranges(
    first: int, last: int, osc_width: float, wedge_deg: float
) -> list[tuple[int, int]]:
    """Inclusive frame ranges of wedges of ``wedge_deg`` degrees.

    Each wedge has round(wedge_deg / osc_width) frames (at least 1); the last
    wedge keeps the frames that remain, however few.
    """
    if osc_width <= 0 or wedge_deg <= 0:
        return [(first, last)]
    size = max(1, round(wedge_deg / osc_width))
    return [(a, min(a + size - 1, last)) for a in range(first, last + 1, size)]


def dataset_prefix(template: str) -> str:
    """The file prefix of a sweep: ``.../x_001_#####.cbf`` → ``x_001``, ``run_master.h5`` → ``run``."""
    name = Path(template).name
    if "#" in name:
        return _TEMPLATE_TAIL.sub("", name)
    if _MASTER_TAIL.search(name):
        return _MASTER_TAIL.sub("", name)
    return re.sub(r"(\.(cbf|img|smv))?(\.bz2|\.gz)?$", "", name, flags=re.I)


def generic_sample(rel_dir: Path, root: Path) -> str:
    """The sample of a sweep in directory ``rel_dir`` (relative to ``root``) of a generic
    tree: the directory itself, or its parent when the directory's name is a number
    (one folder per crystal, ``814/1``, ``814/2`` … as the MicroED seed is laid out);
    the root's name for sweeps at the top."""
    if rel_dir.name.isdigit():
        rel_dir = rel_dir.parent
    return str(rel_dir) if str(rel_dir) != "." else root.name


def _should_cut(mode: str, sweep: ImageSweep, wedge_deg: float | None) -> bool:
    """Whether a sweep is cut into wedges: never multi-mode wedges, nor electron
    sweeps (each is one crystal's wedge of a few tens of degrees, and a flat Ewald
    sphere needs all of it to index and to find the rotation axis)."""
    if wedge_deg is None or wedge_deg <= 0 or mode == "multi" or sweep.is_electron:
        return False
    if mode in ("helical", "single"):
        return True
    return sweep.total_rotation > wedge_deg + 1e-6


def make_wedges(ds: Dataset, wedge_deg: float | None) -> list[Dataset]:
    """The processing units of one dataset: itself, or its wedges (see module docs)."""
    if not _should_cut(ds.mode, ds.sweep, wedge_deg):
        return [ds]
    ranges = wedge_ranges(ds.sweep.first, ds.sweep.last, ds.sweep.osc_width, wedge_deg or 0.0)
    return [
        Dataset(
            name=f"{ds.name}_{a}-{b}",
            sweep=ds.sweep,
            sample=ds.sample,
            mode=ds.mode,
            wedge=(a, b),
            anomalous=ds.anomalous,
            space_group=ds.space_group,
            unit_cell=ds.unit_cell,
            reference_mtz=ds.reference_mtz,
            free_flags_mtz=ds.free_flags_mtz,
            heavy_atom=ds.heavy_atom,
            n_sites=ds.n_sites,
        )
        for a, b in ranges
    ]


# --------------------------------------------------------------------------
# collection


@dataclass
class Collection:
    """Everything found under one collection root.

    ``datasets``: complete rotation sweeps, one per sweep; ``wedges``: the
    units to process (multi-mode datasets whole, helical / single / long
    sweeps cut); ``raster_scans``: stills and scans, never processed as
    rotation data; ``incomplete``: datasets still being written (not in
    ``datasets`` / ``wedges``; ``waiting`` says why, by dataset name); ``problems``: (path, reason) for files that
    could not be used (rejected: no sweep reads them); ``warnings``: (path, reason) for
    files a sweep reads although something about them is odd (a last frame whose
    geometry or start angle does not fit the first).
    """

    root: str
    layout: str  # "zoo" | "generic"
    datasets: list[Dataset] = field(default_factory=list)
    wedges: list[Dataset] = field(default_factory=list)
    raster_scans: list[ImageSweep] = field(default_factory=list)
    incomplete: list[Dataset] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)
    waiting: dict[str, str] = field(default_factory=dict)  # incomplete dataset name -> why
    warnings: list[tuple[str, str]] = field(default_factory=list)

    def samples(self) -> dict[str, list[Dataset]]:
        """Complete datasets grouped by sample name (sorted)."""
        out: dict[str, list[Dataset]] = {}
        for ds in self.datasets:
            out.setdefault(ds.sample, []).append(ds)
        return dict(sorted(out.items()))


def is_zoo_layout(root: Path) -> bool:
    """True when some ``root/<PuckID>-<PinID>/`` holds a ``dataNN`` or ``scan*`` directory."""
    for d in root.iterdir() if root.is_dir() else []:
        if (
            d.is_dir()
            and _PIN_DIR.match(d.name)
            and any(
                c.is_dir() and (_DATA_DIR.match(c.name) or _SCAN_DIR.match(c.name))
                for c in d.iterdir()
            )
        ):
            return True
    return False


def _in_scan_dir(path: Path, root: Path) -> bool:
    try:
        rel = path.relative_to(root)
    except ValueError:
        return False
    return any(_SCAN_DIR.match(part) for part in rel.parts[:-1])


def _still_written(
    files: list[Path], header: FrameHeader, sweep: ImageSweep, now: float, settle_s: float
) -> str:
    """Why a sweep looks unfinished (empty string when it looks complete)."""
    if header.n_frames_expected is not None and sweep.n_frames < header.n_frames_expected:
        return f"{sweep.n_frames} of {header.n_frames_expected} frames written"
    newest = 0.0
    for f in files:
        try:
            newest = max(newest, f.stat().st_mtime)
        except OSError:
            continue
    age = now - newest
    if age < settle_s:
        return f"files modified {age:.0f} s ago (less than {settle_s:g} s)"
    return ""


def discover_collection(
    root: str | Path,
    sample_sheet: str | Path | None = None,
    default_sample: str | None = None,
    wedge_deg: float | None = 30.0,
    settle_s: float = DEFAULT_SETTLE_S,
    now: float | None = None,
) -> Collection:
    """Find every dataset of a collection under ``root`` (ZOO layout or any tree).

    ``sample_sheet``: CSV read by :func:`read_sample_sheet` (a bad sheet
    raises BadInputError naming the file and line).  ``default_sample``:
    the sample of datasets the sheet does not cover (otherwise the ZOO pin
    directory, or the dataset's directory relative to ``root``).
    ``wedge_deg``: wedge size in degrees for helical / single / long sweeps
    (None or 0: never cut).  ``settle_s``: datasets with files modified less than
    this many seconds before ``now`` (default: the current time) are
    ``incomplete``.

    Dataset names are the sweep's directory relative to ``root`` plus its
    file prefix (``CPS1012-06/data00/single_001``); wedges add
    ``_<first>-<last>``.
    """
    root = Path(root)
    if not root.is_dir():
        raise BadInputError(root, "collection root is not a directory")
    entries = read_sample_sheet(sample_sheet) if sample_sheet is not None else []
    now = time.time() if now is None else now
    zoo = is_zoo_layout(root)
    if zoo:
        tops = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith((".", "_")))
        # images at the top (a sheet, notes or other files there are no data, not problems)
        files_at_top = sorted(f for f in root.iterdir() if f.is_file() and is_image_name(f))
        tops += files_at_top
    else:
        tops = [root]
    coll = Collection(root=str(root), layout="zoo" if zoo else "generic")
    found = find_sweeps(tops)
    used = used_files(found)
    coll.problems = [p for p in found.problems if p[0] not in used]
    coll.warnings = [p for p in found.problems if p[0] in used]
    reasons: dict[int, str] = {}

    matched: set[int] = set()  # lines of the sheet rows some sweep matched
    for sweep in found.sweeps:
        directory = Path(sweep.template).parent
        rel_dir = directory.relative_to(root) if directory.is_relative_to(root) else directory
        pin = pin_key_of_dir(rel_dir.parts[0]) if zoo and rel_dir.parts else None
        entry = match_sample(entries, root, pin, directory)
        if entry is not None:
            matched.add(entry.line)
        if not sweep.is_rotation or _in_scan_dir(Path(sweep.template), root):
            coll.raster_scans.append(sweep)
            continue
        prefix = dataset_prefix(sweep.template)
        mode = mode_from_name(prefix) or (entry.mode if entry and entry.mode else None) or "other"
        if entry is not None:
            sample = entry.name
        elif default_sample:
            sample = default_sample
        elif zoo and rel_dir.parts:
            sample = rel_dir.parts[0]
        else:
            sample = generic_sample(rel_dir, root)
        ds = Dataset(
            name=str(rel_dir / prefix) if str(rel_dir) != "." else prefix,
            sweep=sweep,
            sample=sample,
            mode=mode,
            anomalous=entry.anomalous if entry else False,
            space_group=entry.space_group if entry else None,
            unit_cell=entry.unit_cell if entry else None,
            reference_mtz=entry.reference_mtz if entry else None,
            free_flags_mtz=entry.free_flags_mtz if entry else None,
            heavy_atom=entry.heavy_atom if entry else None,
            n_sites=entry.n_sites if entry else None,
        )
        header = found.headers[sweep.template]
        why = _still_written(found.files[sweep.template], header, sweep, now, settle_s)
        if why:
            coll.incomplete.append(ds)
            reasons[id(ds)] = why
        else:
            coll.datasets.append(ds)
    # a row no data match: a pin not collected, or a typo (CPS1243 for CPS1234) — said,
    # not fatal (a sheet lists what was planned, and watch starts before the data come)
    for e in entries:
        if e.line not in matched:
            what = f"pin {e.pin_given}" if e.pin else f"directory {e.directory}"
            coll.warnings.append(
                (
                    str(sample_sheet),
                    f"line {e.line}: {what} (sample {e.name}) matches no dataset under {root}",
                )
            )
    _unique_names(coll.datasets + coll.incomplete)
    coll.waiting = {ds.name: reasons[id(ds)] for ds in coll.incomplete}
    for ds in coll.datasets:
        coll.wedges.extend(make_wedges(ds, wedge_deg))
    return coll


def _unique_names(datasets: list[Dataset]) -> None:
    """Make dataset names unique (they name output directories)."""
    seen: set[str] = set()
    for ds in datasets:
        if ds.name in seen:
            # two sweeps with one prefix in one directory (different digit counts / extensions)
            ds.name = f"{ds.name}_{Path(ds.sweep.template).name.replace('#', 'N')}"
        seen.add(ds.name)
