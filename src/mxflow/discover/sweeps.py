"""Finding image sweeps on disk.

One-file-per-frame images (CBF, SMV) are grouped into templates: the last
run of digits before the extension is the frame number, and the template
replaces it with as many ``#`` as it has digits (``/d/x_00001.cbf`` →
``/d/x_#####.cbf``, the :class:`mxflow.model.ImageSweep` convention).  An
Eiger master / NeXus file is one sweep of its own; its ``*_data_00000N.h5``
files are not sweeps.

Only a few headers per template are read: the first readable frame (the
sweep's geometry), the next one (to tell a rotation sweep from a scan whose
consecutive frames share one start angle: such a series, like one whose
header width is 0, is a raster or still scan with ``osc_width`` 0) and the last one
(consistency, and whether the last file is complete).  Files that cannot be
read become ``problems`` — discovery never stops on one bad file.
"""

from __future__ import annotations

import glob
import math
import os
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from mxflow.errors import BadInputError
from mxflow.images.read import FrameHeader, detect_format, is_eiger_data_file, read_header
from mxflow.model import ImageSweep

# prefix, frame number, extension (compressed CBF / SMV allowed)
_NUMBERED = re.compile(
    r"^(?P<prefix>.*?)(?P<num>\d+)(?P<ext>\.(?:cbf|img|smv)(?:\.bz2|\.gz)?)$", re.I
)
_ONE_PER_FRAME = re.compile(r"\.(?:cbf|img|smv)(?:\.bz2|\.gz)?$", re.I)
_HDF5 = re.compile(r"\.(?:h5|nxs|hdf5|nx5)$", re.I)
_EIGER_MASTER = re.compile(r"(_master\.h5|\.nxs)$", re.I)
#: electron-microscope image formats dxtbx reads that mxflow's image layer does not
#: (Thermo Fisher MRC stacks, TIA SER, Gatan DM4): found, and said, never skipped silently
_EM_FORMATS = {".mrc": "MRC", ".mrcs": "MRC", ".ser": "TIA SER", ".dm4": "Gatan DM4"}

ANGLE_TOL = 1e-3  # degrees: start angles closer than this are "the same"


@dataclass
class DiscoveryResult:
    """Sweeps found (sorted by template) and the files that could not be used.

    ``headers`` maps each sweep's template to the header of its first
    frame (for Eiger: of the master file, with ``n_frames_expected``);
    ``files`` maps it to the files the sweep is stored in (every frame file
    of the template found on disk, readable or not; an Eiger master and its
    data files).
    """

    sweeps: list[ImageSweep] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)
    headers: dict[str, FrameHeader] = field(default_factory=dict)
    files: dict[str, list[Path]] = field(default_factory=dict)


def is_image_name(path: str | Path) -> bool:
    """True when the file name looks like an image file mxflow can discover."""
    name = Path(path).name
    if name.startswith("."):
        return False
    if _ONE_PER_FRAME.search(name):
        return True
    return bool(_HDF5.search(name)) and not is_eiger_data_file(name)


def unsupported_em_format(name: str | Path) -> str | None:
    """Why an electron-microscope image file (MRC, SER, DM4) is not processed, or None
    for any other name.  Such files are read by dxtbx but not by mxflow's image layer
    (discovery reads the headers itself): the message says how to go on."""
    kind = _EM_FORMATS.get(Path(name).suffix.lower())
    if kind is None or Path(name).name.startswith("."):
        return None
    return (
        f"{kind} electron-microscope images are not read by mxflow (its discovery reads "
        "CBF, Eiger HDF5 / NeXus and SMV); convert the stack to SMV or CBF frames "
        "(e.g. with the instrument's export) to process it"
    )


def walk_images(paths: Iterable[str | Path]) -> tuple[list[Path], list[tuple[str, str]]]:
    """All image files under ``paths`` (directories walked recursively, sorted).

    Hidden files and directories (names starting with '.') are skipped.  A
    path given explicitly that does not exist or is not an image becomes a
    problem.
    """
    files: set[Path] = set()
    problems: list[tuple[str, str]] = []
    for p in map(Path, paths):
        if p.is_dir():
            for root, dirs, names in os.walk(p):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                files.update(Path(root) / n for n in names if is_image_name(n))
                problems.extend(
                    (str(Path(root) / n), unsupported_em_format(n))
                    for n in names
                    if unsupported_em_format(n)
                )
        elif p.is_file():
            if is_image_name(p):
                files.add(p)
            elif is_eiger_data_file(p):
                problems.append((str(p), "is an Eiger data file; give its master file instead"))
            else:
                problems.append(
                    (str(p), "not a recognised image file name (.cbf, .img, .h5, .nxs)")
                )
        else:
            problems.append((str(p), "does not exist"))
    return sorted(files), problems


def group_templates(files: Iterable[Path]) -> tuple[dict[str, dict[int, Path]], list[Path]]:
    """Group one-file-per-frame images by template; return (templates, single files).

    ``templates`` maps a template (``#`` for the frame-number digits) to
    {frame number: path}.  HDF5 masters and unnumbered images come back as
    single files.
    """
    templates: dict[str, dict[int, Path]] = defaultdict(dict)
    singles: list[Path] = []
    for f in files:
        m = _NUMBERED.match(f.name)
        if m is None:
            singles.append(f)
            continue
        template = str(f.parent / f"{m['prefix']}{'#' * len(m['num'])}{m['ext']}")
        templates[template][int(m["num"])] = f
    return dict(templates), singles


def _same_geometry(a: FrameHeader, b: FrameHeader) -> str:
    """Empty string when two headers describe one experiment, else what differs."""
    if a.image_size != b.image_size:
        return f"image size {a.image_size} vs {b.image_size}"
    if not math.isclose(a.wavelength, b.wavelength, rel_tol=1e-4):
        return f"wavelength {a.wavelength:.5f} vs {b.wavelength:.5f} Å"
    if not math.isclose(a.distance, b.distance, abs_tol=0.05):
        return f"distance {a.distance:.2f} vs {b.distance:.2f} mm"
    return ""


def _sweep_from(
    template: str,
    fmt: str,
    first: int,
    last: int,
    h: FrameHeader,
    osc_width: float,
    missing: list[int],
) -> ImageSweep:
    return ImageSweep(
        template=template,
        format=fmt,  # type: ignore[arg-type]
        first=first,
        last=last,
        wavelength=h.wavelength,
        distance=h.distance,
        beam_center=tuple(h.beam_center),  # type: ignore[arg-type]
        pixel_size=tuple(h.pixel_size),  # type: ignore[arg-type]
        image_size=tuple(h.image_size),  # type: ignore[arg-type]
        osc_start=h.osc_start,
        osc_width=osc_width,
        exposure=h.exposure,
        detector=h.detector,
        missing=missing,
    )


def sweep_from_template(
    template: str, frames: dict[int, Path]
) -> tuple[ImageSweep | None, FrameHeader | None, list[tuple[str, str]]]:
    """One sweep from the frames of one template (headers of first, second and last).

    Unreadable frames at either end shrink the range; unreadable frames
    inside it are listed in ``missing``.  A scan whose first two frames
    share a start angle, or whose header width is 0, gets ``osc_width`` 0.
    """
    problems: list[tuple[str, str]] = []
    numbers = sorted(frames)
    headers: dict[int, FrameHeader] = {}
    bad: set[int] = set()

    def header(n: int) -> FrameHeader | None:
        if n in headers:
            return headers[n]
        if n in bad:
            return None
        try:
            headers[n] = read_header(frames[n])
            return headers[n]
        except BadInputError as exc:
            bad.add(n)
            problems.append((str(frames[n]), exc.problem))
            return None

    first_h = None
    while numbers and (first_h := header(numbers[0])) is None:
        numbers.pop(0)
    if first_h is None:
        return None, None, problems
    last_h = None
    while numbers and (last_h := header(numbers[-1])) is None:
        numbers.pop()
    first, last = numbers[0], numbers[-1]
    fmt = first_h.format

    width = first_h.osc_width
    if len(numbers) > 1:
        second_h = header(numbers[1])
        if second_h is not None and abs(second_h.osc_start - first_h.osc_start) < ANGLE_TOL:
            width = 0.0  # consecutive frames at one angle: a scan, not a rotation
    if abs(width) < 1e-6:
        width = 0.0
    if last_h is not None and last != first:
        differs = _same_geometry(first_h, last_h)
        if differs:
            problems.append(
                (
                    str(frames[last]),
                    f"frame {last} does not match frame {first} of {template}: {differs}",
                )
            )
        elif width:
            expected = first_h.osc_start + (last - first) * width
            if abs(last_h.osc_start - expected) > max(ANGLE_TOL, 0.05 * abs(width)):
                problems.append(
                    (
                        str(frames[last]),
                        f"start angle of frame {last} is {last_h.osc_start:.3f}°, expected {expected:.3f}° "
                        f"from frame {first} ({first_h.osc_start:.3f}° + {last - first} × {width:g}°)",
                    )
                )
    present = set(numbers)
    missing = sorted((set(range(first, last + 1)) - present) | {n for n in bad if first < n < last})
    return _sweep_from(template, fmt, first, last, first_h, width, missing), first_h, problems


def sweep_from_master(path: Path) -> tuple[ImageSweep, FrameHeader]:
    """One sweep from an Eiger master / NeXus file (frames numbered from 1).

    Raises BadInputError when the file cannot be used.
    """
    h = read_header(path)
    width = h.osc_width
    if len(h.angles) > 1 and abs(h.angles[1] - h.angles[0]) < ANGLE_TOL:
        width = 0.0
    if abs(width) < 1e-6:
        width = 0.0
    return _sweep_from(str(path), "eiger", 1, h.n_frames, h, width, []), h


def eiger_files(master: Path) -> list[Path]:
    """An Eiger master file and the ``<prefix>_data_NNNNNN.h5`` files beside it."""
    stem = re.sub(r"(_master)?\.(h5|nxs|hdf5|nx5)$", "", master.name, flags=re.I)
    return [master, *sorted(master.parent.glob(f"{glob.escape(stem)}_data_[0-9]*.h5"))]


def used_files(result: DiscoveryResult) -> set[str]:
    """Paths of the files the sweeps of ``result`` read.

    A template's frames in its range and not ``missing``; an Eiger master and
    its data files; a single image.  A file of ``result.problems`` in this set
    was used all the same (a warning, such as a last frame that does not match
    the first); one not in it was rejected.
    """
    used: set[str] = set()
    for s in result.sweeps:
        files = result.files.get(s.template, [])
        if "#" not in Path(s.template).name:
            used.update(str(f) for f in files)
            continue
        skip = set(s.missing)
        for f in files:
            m = _NUMBERED.match(f.name)
            if m and s.first <= int(m["num"]) <= s.last and int(m["num"]) not in skip:
                used.add(str(f))
    return used


def find_sweeps(paths: Iterable[str | Path]) -> DiscoveryResult:
    """All sweeps under ``paths`` (files or directories, walked recursively).

    Sweeps come back sorted by template; every file that could not be used
    is listed in ``problems`` as (path, reason) and discovery goes on.
    """
    files, problems = walk_images(paths)
    result = DiscoveryResult(problems=problems)
    templates, singles = group_templates(files)
    for template, frames in templates.items():
        sweep, h, probs = sweep_from_template(template, frames)
        result.problems.extend(probs)
        if sweep is not None and h is not None:
            result.sweeps.append(sweep)
            result.headers[template] = h
            result.files[template] = [frames[n] for n in sorted(frames)]
    for f in singles:
        fmt = ""
        try:
            fmt = detect_format(f)
            if fmt == "eiger":
                sweep, h = sweep_from_master(f)
            else:
                h = read_header(f)
                sweep = _sweep_from(str(f), fmt, 1, 1, h, h.osc_width, [])
        except BadInputError as exc:
            if (
                fmt == "eiger"
                and not _EIGER_MASTER.search(f.name)
                and "no /entry/data" in exc.problem
            ):
                continue  # an HDF5 file that is not image data (e.g. a SHIKA result): not a problem
            result.problems.append((str(f), exc.problem))
            continue
        result.sweeps.append(sweep)
        result.headers[sweep.template] = h
        result.files[sweep.template] = eiger_files(f) if fmt == "eiger" else [f]
    result.sweeps.sort(key=lambda s: s.template)
    result.problems.sort()
    return result
