"""A .tgz of an output directory to take home: reports, summaries, final reflection files.

As SPring-8 ships ``YYMMDD_BL_USER.tgz``: what a user reads and refines
from, without the images or DIALS' working files.  Two steps:

* :func:`plan_archive` ``(out_dir) -> ArchivePlan`` decides which files go
  in (it reads, writes nothing);
* :func:`write_archive` ``(plan, target) -> ArchiveResult`` writes the
  ``.tgz`` (one top folder named like the archive), atomically.

What goes in (paths relative to OUT):

* every file under ``report/`` and every ``report.html`` (the merge pages);
* summaries: ``summary.json``, ``merge_summary*.json``, ``final.json``,
  ``resolution.json``, ``cluster_summary.dat``, ``stats*.txt`` /
  ``stats*.json``, ``merging_stats.txt`` / ``.json``, ``dendrogram_*.json``,
  ``cc_table.json``; hit maps (``hitmap.json``, ``.png``, ``.html``);
* reflection files: every ``merged.mtz``, ``merged_fullres.mtz``,
  ``unmerged.mtz``, ``scaled.mtz`` and ``unmerged.cif``, and all of each
  merge's ``final/`` folder;
* every file an archived HTML page links (logs, DIALS' own HTML reports up
  to ``max_dials_html`` bytes each), followed from page to page.

What never goes in, even when a page links it: detector images (``.cbf``,
``.h5``, ``.img`` ...), anything outside OUT (a symbolic link out of it) or
in a raw-data directory, DIALS intermediates (``.refl``, ``.expt``,
``.pickle``) and the catalog, hidden files and folders (``.mxflow/``).
Nor, unless a page links them, DIALS' twins of mxflow's files
(``dials_*.mtz``, ``scaled_unmerged.mtz``, ``unmerged_fullres.mtz``,
``unscaled*.mtz``) and every other log or working file.  A link of an archived page to a
file not in the archive (left out, or missing from OUT already) becomes
plain text in the archived copy of the page, with the reason as its
tooltip, so that no page of the archive has a dead link.
"""

from __future__ import annotations

import datetime
import fnmatch
import html
import io
import json
import os
import re
import tarfile
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

from mxflow.errors import BadInputError, MxflowError

#: detector image formats (also compressed): never archived
IMAGE_SUFFIXES = (
    ".cbf",
    ".h5",
    ".hdf5",
    ".nxs",
    ".img",
    ".mccd",
    ".osc",
    ".sfrm",
    ".tif",
    ".tiff",
    ".smv",
)
COMPRESSED_SUFFIXES = (".gz", ".bz2", ".xz", ".zst")

#: DIALS' working files and mxflow's catalog: never archived, even when a page links them
INTERMEDIATE_SUFFIXES = (
    ".refl",
    ".expt",
    ".pickle",
    "_experiments.json",  # DIALS experiment lists of old
    ".sqlite",
    ".sqlite-wal",
    ".sqlite-shm",
)
#: twins and working copies of the results: not archived unless a page links them
INTERMEDIATE_NAMES = (
    "scaled_unmerged.mtz",  # dials.scale's, the same as unmerged.mtz
    "unmerged_fullres.mtz",  # the uncut twin of a cut unmerged.mtz
    "unscaled*.mtz",  # cosym's exports, before scaling
    "dials_*.mtz",  # dials.merge's twins of mxflow's merged.mtz
    "dials_*.cif",  # dials.export's twin of unmerged.cif
    "bravais_summary.json",
    "dials.cosym.json",
)

#: summaries and reflection files, wherever they are under OUT
RESULT_NAMES = (
    "summary.json",
    "merge_summary*.json",
    "final.json",
    "resolution.json",
    "cluster_summary.dat",
    "stats.txt",
    "stats.json",
    "stats_fullres.txt",
    "stats_fullres.json",
    "merging_stats.txt",
    "merging_stats.json",
    "dendrogram_*.json",
    "cc_table.json",
    "hitmap.json",
    "hitmap.png",
    "hitmap.html",
    "report.html",
    "merged.mtz",
    "merged_fullres.mtz",
    "unmerged.mtz",
    "scaled.mtz",
    "unmerged.cif",
)
REPORT_DIR = "report"
FINAL_DIR = "final"  # merge/<sample>/final/: all of it (with its final.json)

#: DIALS' own HTML reports (dials.scale.html is several MiB per run)
DIALS_HTML = "dials*.html"
DEFAULT_MAX_DIALS_HTML = 1 << 20

#: kinds of archived files, for the printed summary
KINDS = {
    "reports": (".html", ".css", ".js"),
    "summaries": (".json", ".dat", ".txt"),
    "reflection files": (".mtz", ".cif"),
    "logs": (".log", ".out"),
}

LEFT_OUT_IMAGE = "detector image"
LEFT_OUT_INTERMEDIATE = "DIALS intermediate"
LEFT_OUT_OUTSIDE = "outside the output directory"
LEFT_OUT_RAW = "in the raw data tree"
LEFT_OUT_HIDDEN = "hidden"
LEFT_OUT_LARGE = "DIALS report larger than the limit"
LEFT_OUT_OTHER = "not a result and not linked by a report"
MISSING = "not in the output directory"


# ---------------------------------------------------------------- classification


def _match(name: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def is_image(name: str) -> bool:
    """A detector image file name (``x_0001.cbf``, ``x_master.h5``, ``x.img.gz`` ...)."""
    n = name.lower()
    for c in COMPRESSED_SUFFIXES:
        if n.endswith(c):
            n = n[: -len(c)]
            break
    return n.endswith(IMAGE_SUFFIXES)


def is_intermediate(name: str) -> bool:
    """A DIALS working file (``.refl``, ``.expt`` ...) or the catalog: never archived."""
    return name.endswith(INTERMEDIATE_SUFFIXES)


def file_kind(rel: str) -> str:
    """``reports``, ``summaries``, ``reflection files``, ``logs`` or ``other``."""
    suffix = PurePosixPath(rel).suffix.lower()
    return next((k for k, sfx in KINDS.items() if suffix in sfx), "other")


def _inside(path: Path, top: Path) -> bool:
    return path == top or top in path.parents


# ---------------------------------------------------------------- links of a page


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.values: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for k, v in attrs:
            if k in ("href", "src") and v:
                self.values.append(v)


def local_path(value: str) -> str | None:
    """The file path of a link relative to its page (``x/y.html`` of ``x/y.html#a``), or
    None for what is not a relative link to a file: another scheme (``http:``, ``data:``),
    a path from the root of a server (DIALS' ``/javascript/...``) or a bare ``#fragment``."""
    parts = urlsplit(value.strip())
    if parts.scheme or parts.netloc or not parts.path or parts.path.startswith("/"):
        return None
    return unquote(parts.path)


def page_links(text: str) -> list[str]:
    """Every href/src value of an HTML document (in order, with repeats)."""
    p = _Links()
    p.feed(text)
    p.close()
    return p.values


def resolve_link(page_rel: str, value: str) -> str | None:
    """The OUT-relative path a relative link of page ``page_rel`` points to (``../x`` when it
    leaves OUT), or None when it is not a relative link to a file (see :func:`local_path`)."""
    path = local_path(value)
    if path is None:
        return None
    joined = os.path.normpath(os.path.join(os.path.dirname(page_rel), path))
    return PurePosixPath(Path(joined)).as_posix()


# ---------------------------------------------------------------- the plan


@dataclass
class ArchivePlan:
    """What :func:`plan_archive` decided for ``out_dir``.

    ``files``: OUT-relative paths to archive (sorted); ``left_out``: every other file under
    OUT and why; ``unlinked``: per archived page, its links to files not in the archive and
    why (they become plain text in the archived copy); ``raw_dirs``: the raw-data
    directories, which nothing is taken from and no archive is written into.
    """

    out_dir: Path
    files: list[str] = field(default_factory=list)
    left_out: dict[str, str] = field(default_factory=dict)
    unlinked: dict[str, dict[str, str]] = field(default_factory=dict)
    raw_dirs: list[Path] = field(default_factory=list)
    sizes: dict[str, int] = field(default_factory=dict)

    def kinds(self) -> Counter[str]:
        return Counter(file_kind(f) for f in self.files)

    def size(self) -> int:
        return sum(self.sizes.get(f, 0) for f in self.files)

    def left_out_reasons(self) -> Counter[str]:
        return Counter(self.left_out.values())

    def left_out_size(self) -> int:
        return sum(self.sizes.get(f, 0) for f in self.left_out)


def raw_data_dirs(out_dir: str | Path) -> list[Path]:
    """The raw-data directories of an output directory, from its ``summary.json``: each
    dataset's image directory and, where the dataset's key repeats the image directory's
    path below ROOT (``proc/<pin>/data00/<name>`` for ``ROOT/<pin>/data00/``), that ROOT.
    Empty when summary.json is absent or unreadable."""
    try:
        doc = json.loads((Path(out_dir) / "summary.json").read_text())
        rows = [d for d in doc.get("datasets", []) if isinstance(d, dict)]
    except (OSError, ValueError, AttributeError):
        return []
    found: set[Path] = set()
    for d in rows:
        path = d.get("path")
        if not isinstance(path, str) or not os.path.isabs(path):
            continue
        images = Path(os.path.normpath(Path(path).parent))
        found.add(images)
        key = d.get("key") or d.get("workdir") or ""
        rel = PurePosixPath(str(key)).parts[1:-1]  # less the tree (proc/) and the dataset
        if rel and images.parts[-len(rel) :] == rel:
            root = images.parents[len(rel) - 1]
            if len(root.parts) > 1:  # never the file system root
                found.add(root)
    return sorted(found)


def plan_archive(
    out_dir: str | Path,
    raw_dirs: Iterable[str | Path] = (),
    max_dials_html: int = DEFAULT_MAX_DIALS_HTML,
) -> ArchivePlan:
    """Decide which files of ``out_dir`` go into its archive (see the module's docstring).

    ``raw_dirs`` adds raw-data directories to those of :func:`raw_data_dirs`.  Reads only.
    Raises BadInputError when ``out_dir`` is not an mxflow output directory.
    """
    given = Path(out_dir)
    if not given.is_dir():
        raise BadInputError(str(given), "no such output directory")
    out = given.resolve()
    if not (out / "summary.json").is_file() and not (out / REPORT_DIR).is_dir():
        raise BadInputError(
            str(given), "not an mxflow output directory (no summary.json, no report/)"
        )
    raws = sorted({Path(p).resolve() for p in raw_dirs} | set(raw_data_dirs(out)))
    # raw data kept inside OUT is left out; OUT inside the raw tree is the user's choice
    raw_inside = [r for r in raws if r != out and out in r.parents]
    plan = ArchivePlan(out, raw_dirs=raws)

    why: dict[str, str | None] = {}  # rel -> reason to leave out, None when it may go in
    wanted: list[str] = []
    for dirpath, dirnames, filenames in os.walk(out):
        dirnames.sort()
        d = Path(dirpath)
        for name in sorted(filenames):
            p = d / name
            rel = p.relative_to(out).as_posix()
            reason = _exclusion(p, rel, out, raw_inside, max_dials_html)
            why[rel] = reason
            try:
                plan.sizes[rel] = p.stat().st_size
            except OSError:
                plan.sizes[rel] = 0
            if reason is None and _wanted(rel):
                wanted.append(rel)

    chosen: set[str] = set()
    todo = list(wanted)
    while todo:
        rel = todo.pop()
        if rel in chosen:
            continue
        chosen.add(rel)
        if not rel.endswith((".html", ".htm")):
            continue
        try:
            text = (out / rel).read_text(errors="replace")
        except OSError:
            continue
        dead: dict[str, str] = {}
        for value in page_links(text):
            target = resolve_link(rel, value)
            if target is None:
                continue
            if target == ".." or target.startswith("../"):
                dead[value] = LEFT_OUT_OUTSIDE
                continue
            if target not in why:  # not walked: missing, a folder, or behind a linked folder
                p = out / target
                if p.is_dir():
                    continue
                why[target] = (
                    _exclusion(p, target, out, raw_inside, max_dials_html)
                    if p.is_file()
                    else MISSING
                )
                plan.sizes[target] = p.stat().st_size if p.is_file() else 0
            if why[target] is not None:
                dead[value] = str(why[target])
            elif target not in chosen:
                todo.append(target)
        if dead:
            plan.unlinked[rel] = dead
    plan.files = sorted(chosen)
    plan.left_out = {
        rel: reason or _left_out_why(rel)
        for rel, reason in sorted(why.items())
        if rel not in chosen and reason != MISSING
    }
    return plan


def _left_out_why(rel: str) -> str:
    """Why a file that could go in did not (no page links it)."""
    name = PurePosixPath(rel).name
    return LEFT_OUT_INTERMEDIATE if _match(name, INTERMEDIATE_NAMES) else LEFT_OUT_OTHER


def _wanted(rel: str) -> bool:
    parts = PurePosixPath(rel).parts
    if parts[0] == REPORT_DIR and len(parts) > 1:
        return True
    if _match(parts[-1], RESULT_NAMES):
        return True
    return len(parts) > 1 and parts[-2] == FINAL_DIR


def _exclusion(
    p: Path, rel: str, out: Path, raw_inside: list[Path], max_dials_html: int
) -> str | None:
    """Why the file at ``p`` may never be archived, or None."""
    name = p.name
    if any(part.startswith(".") for part in PurePosixPath(rel).parts):
        return LEFT_OUT_HIDDEN
    if is_image(name):
        return LEFT_OUT_IMAGE
    real = p.resolve()
    if not _inside(real, out):
        return LEFT_OUT_OUTSIDE
    if any(_inside(real, r) for r in raw_inside):
        return LEFT_OUT_RAW
    if is_intermediate(name):
        return LEFT_OUT_INTERMEDIATE
    if not real.is_file():
        return LEFT_OUT_OTHER
    if fnmatch.fnmatchcase(name, DIALS_HTML) and real.stat().st_size > max_dials_html:
        return LEFT_OUT_LARGE
    return None


# ---------------------------------------------------------------- pages without dead links

_A = re.compile(r"<a\b([^>]*)>(.*?)</a\s*>", re.IGNORECASE | re.DOTALL)
_IMG = re.compile(r"<img\b([^>]*)>", re.IGNORECASE)
_ATTR = re.compile(r"""\b(href|src)\s*=\s*("([^"]*)"|'([^']*)')""", re.IGNORECASE)
_ALT = re.compile(r"""\balt\s*=\s*("([^"]*)"|'([^']*)')""", re.IGNORECASE)


def _attr_value(attrs: str) -> str | None:
    m = _ATTR.search(attrs)
    if not m:
        return None
    return html.unescape(m.group(3) if m.group(3) is not None else m.group(4))


def unlink_page(text: str, dead: dict[str, str]) -> str:
    """``text`` with each link (``<a href>``) to a key of ``dead`` made plain text and each
    such ``<img>`` replaced by its alt text, the reason as tooltip."""

    def note(value: str) -> str:
        return html.escape(f"not in this archive ({dead[value]}): {value}")

    def image(m: re.Match[str]) -> str:
        value = _attr_value(m.group(1))
        if value not in dead:
            return m.group(0)
        alt = _ALT.search(m.group(1))
        label = (alt.group(2) if alt and alt.group(2) is not None else "") or "image"
        return f'<span class="left-out" title="{note(value)}">[{label}]</span>'

    def anchor(m: re.Match[str]) -> str:
        value = _attr_value(m.group(1))
        if value not in dead:
            return m.group(0)
        return f'<span class="left-out" title="{note(value)}">{m.group(2)}</span>'

    return _A.sub(anchor, _IMG.sub(image, text))


# ---------------------------------------------------------------- writing


@dataclass
class ArchiveResult:
    """The written archive: its path, size in bytes and the plan it was written from."""

    path: Path
    size: int
    plan: ArchivePlan


def default_archive_path(out_dir: str | Path, today: datetime.date | None = None) -> Path:
    """``<parent of OUT>/<YYMMDD>_<name of OUT>.tgz`` (today's date), SPring-8's naming."""
    out = Path(out_dir).resolve()
    day = (today or datetime.date.today()).strftime("%y%m%d")
    return out.parent / f"{day}_{out.name}.tgz"


def archive_folder(target: Path) -> str:
    """The archive's top folder: its file name less ``.tgz`` / ``.tar.gz``."""
    name = target.name
    for ext in (".tar.gz", ".tgz"):
        if name.endswith(ext) and len(name) > len(ext):
            return name[: -len(ext)]
    return name


def check_target(target: Path, plan: ArchivePlan, force: bool = False) -> Path:
    """The absolute path to write, after refusing an existing file (unless ``force``), a
    missing folder and any place inside the raw data tree."""
    target = Path(os.path.abspath(target))
    if target.is_dir():
        raise MxflowError(f"{target} is a directory; give the archive's file name")
    if target.exists() and not force:
        raise MxflowError(f"{target} exists; give --force to replace it")
    if not target.parent.is_dir():
        raise MxflowError(f"{target.parent}: no such directory for the archive")
    real = target.parent.resolve() / target.name
    for r in plan.raw_dirs:
        if _inside(real, r) and not _inside(real, plan.out_dir):
            raise MxflowError(
                f"{target} is inside the raw data tree {r}; the archive is never written "
                "there: give --output elsewhere"
            )
    return target


def write_archive(
    plan: ArchivePlan, target: str | Path, force: bool = False, compresslevel: int = 6
) -> ArchiveResult:
    """Write ``plan``'s files into the gzipped tar ``target`` under one top folder (named as
    the archive), pages with links to files not archived rewritten (:func:`unlink_page`).
    Written beside ``target`` and renamed into place; see :func:`check_target` for what is
    refused."""
    target = check_target(Path(target), plan, force)
    top = archive_folder(target)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.part")
    try:
        with tarfile.open(tmp, "w:gz", compresslevel=compresslevel, dereference=True) as tar:
            for rel in plan.files:
                src = plan.out_dir / rel
                name = f"{top}/{rel}"
                dead = plan.unlinked.get(rel)
                if not dead:
                    tar.add(src, arcname=name, recursive=False)
                    continue
                data = unlink_page(src.read_text(errors="replace"), dead).encode()
                info = tar.gettarinfo(src, arcname=name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return ArchiveResult(target, target.stat().st_size, plan)


def make_archive(
    out_dir: str | Path,
    output: str | Path | None = None,
    force: bool = False,
    raw_dirs: Iterable[str | Path] = (),
    max_dials_html: int = DEFAULT_MAX_DIALS_HTML,
) -> ArchiveResult:
    """Plan and write the archive of ``out_dir`` (to :func:`default_archive_path` unless
    ``output`` is given)."""
    plan = plan_archive(out_dir, raw_dirs, max_dials_html)
    target = Path(output) if output else default_archive_path(plan.out_dir)
    return write_archive(plan, target, force)


# ---------------------------------------------------------------- what to print

MIB = 1024 * 1024


def _counts(c: Counter[str], order: Iterable[str] = ()) -> str:
    keys = [k for k in order if c.get(k)] + sorted(k for k in c if k not in order)
    return ", ".join(f"{c[k]} {k}" for k in keys)


def describe(result: ArchiveResult) -> list[str]:
    """Lines for the terminal: the path and size, files by kind, what was left out."""
    plan = result.plan
    lines = [
        f"archive: {result.path} ({result.size / MIB:.1f} MiB)",
        f"  {len(plan.files)} files ({plan.size() / MIB:.1f} MiB unpacked): "
        + _counts(plan.kinds(), [*KINDS, "other"]),
    ]
    if plan.left_out:
        reasons = plan.left_out_reasons().most_common()
        lines.append(
            f"  left out: {len(plan.left_out)} files ({plan.left_out_size() / MIB:.1f} MiB): "
            + "; ".join(f"{why}: {n}" for why, n in reasons)
        )
    n_dead = sum(len(d) for d in plan.unlinked.values())
    if n_dead:
        lines.append(
            f"  {n_dead} link(s) of {len(plan.unlinked)} page(s) point to files not in the "
            "archive; they are plain text in the archived pages:"
        )
        for page, dead in sorted(plan.unlinked.items()):
            for value, why in sorted(dead.items()):
                lines.append(f"    {page}: {value} ({why})")
    if not (plan.out_dir / REPORT_DIR / "index.html").is_file():
        lines.append(f"  note: {plan.out_dir} has no report/index.html; 'mxflow report' writes it")
    return lines
