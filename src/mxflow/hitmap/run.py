"""The hit map of a raster scan: spots on every frame, laid out on the scan grid.

:func:`hitmap` is the library entry point (the collection runner calls it on
``scan*/`` directories); ``mxflow hitmap`` is its command line.  Each frame
is decoded once and searched for spots (:mod:`mxflow.hitmap.spotfinder`);
frames are spread over worker threads (the decoder and the spot-finding
kernels release the GIL) or, on request, worker processes.  A frame that
cannot be read or judged becomes an error record, and the map is drawn
without it.
"""

from __future__ import annotations

import math
import os
import re
import threading
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path, PurePath
from typing import Literal

import numpy as np

from mxflow import images
from mxflow.errors import BadInputError, MxflowError
from mxflow.hitmap.frames import FrameRef, list_frames, read_pixels, release_readers, static_mask
from mxflow.hitmap.resolution import estimate_d_min, in_ice_ring, spot_resolution
from mxflow.hitmap.spotfinder import SpotFinderParams, UnusableFrame, Workspace, find_spots
from mxflow.util.files import safe_name, write_json

Backend = Literal["threads", "processes", "auto"]
#: with backend "auto", HDF5 scans of at least this many frames per worker use processes
AUTO_PROCESS_FRAMES_PER_WORKER = 8


def choose_backend(frames: Sequence[FrameRef], workers: int) -> str:
    """ "processes" for Eiger / HDF5 scans long enough to pay for starting them (h5py
    reads one frame at a time per process, whatever the threads), else "threads"
    (mxflow's CBF decoder and the spot finder run in parallel threads)."""
    hdf5 = any(not f.is_cbf for f in frames)
    if hdf5 and len(frames) >= AUTO_PROCESS_FRAMES_PER_WORKER * workers:
        return "processes"
    return "threads"


@dataclass(frozen=True)
class SpotFilter:
    """Which spots count for the hit map: resolution limits in Å (``d_max``
    drops spots at lower resolution, i.e. near the beam stop; None = no
    limit) and whether spots on ice rings are dropped."""

    d_max: float | None = 30.0
    d_min: float | None = None
    ice_rings: bool = False


@dataclass(frozen=True)
class Grid:
    """How frames lie on the raster: ``cols`` frames along the fast scan
    direction per row, ``rows`` rows; with ``snake`` every second row runs
    backwards (a serpentine scan).  ``source`` says where the shape came from."""

    cols: int
    rows: int
    snake: bool = False
    source: str = "given"

    def cell(self, k: int) -> tuple[int, int]:
        """(row, col) of the k-th frame (0-based) of the scan."""
        row, col = divmod(k, self.cols)
        if self.snake and row % 2 == 1:
            col = self.cols - 1 - col
        return row, col


def choose_grid(n_frames: int, grid: tuple[int, int] | None, snake: bool) -> Grid:
    """The scan grid: as given (cols, rows), or a near-square guess.

    miniCBF headers do not record the raster shape, so without ``grid`` the
    frames are laid out ``ceil(√n)`` per row and the grid is marked guessed.
    """
    if grid is not None:
        cols, rows = grid
        if cols * rows < n_frames:
            raise MxflowError(
                f"grid {cols}x{rows} holds {cols * rows} cells but there are {n_frames} frames"
            )
        return Grid(cols, rows, snake, "given")
    cols = max(1, math.ceil(math.sqrt(max(n_frames, 1))))
    rows = max(1, math.ceil(n_frames / cols))
    return Grid(cols, rows, snake, "guessed")


#: file endings a scan's name leaves out (compressed CBF, Eiger masters, ...)
_IMAGE_ENDING = re.compile(r"(_master)?\.(cbf|img|h5|nxs|mccd|osc)(\.(gz|bz2|xz))?$", re.IGNORECASE)


def scan_name(template: str) -> str:
    """The folder name of a raster scan's hit map: its image file template without the
    frame number and the extension, e.g. ``raster_####.cbf`` → ``raster``,
    ``grid_2_####.cbf.gz`` → ``grid_2``, ``scan_01_master.h5`` → ``scan_01``.

    Scans of different names in one directory keep different names; a template that is
    only a frame number (``####.cbf``) gives ``scan``.
    """
    name = _IMAGE_ENDING.sub("", PurePath(template.replace("\\", "/")).name)
    name = re.sub(r"[_.-]*#+", "", name)  # the frame number and the separator before it
    return safe_name(name.strip("_.- "), "scan")


# --------------------------------------------------------------------------
# one frame


def frame_summary(
    frame: FrameRef,
    header: images.FrameHeader,
    mask: np.ndarray,
    params: SpotFinderParams,
    spot_filter: SpotFilter,
    workspace: Workspace | None = None,
) -> dict:
    """Spot statistics of one frame (raises BadInputError when it is unusable).

    Returns ``n_spots`` (after the resolution and ice-ring filters),
    ``total_intensity`` and ``median_intensity`` (summed counts per spot,
    no background subtraction, as DIALS's strong spots), ``d_min_est`` (Å,
    None when too few spots) and ``n_strong_pixels``.
    """
    pixels = read_pixels(frame)
    fast, slow = header.image_size
    if pixels.shape != (slow, fast):
        raise BadInputError(
            frame.file,
            f"wrong image size: {pixels.shape[1]} x {pixels.shape[0]} pixels, "
            f"the scan's frames are {fast} x {slow}",
        )
    try:
        spots = find_spots(pixels, mask, header.overload, params, workspace)
    except UnusableFrame as exc:
        raise BadInputError(frame.file, str(exc)) from exc
    d = spot_resolution(
        spots.x, spots.y, header.wavelength, header.distance, header.beam_center, header.pixel_size
    )
    keep = np.ones(len(spots), bool)
    if spot_filter.d_max is not None:
        keep &= d <= spot_filter.d_max
    if spot_filter.d_min is not None:
        keep &= d >= spot_filter.d_min
    if spot_filter.ice_rings:
        keep &= ~in_ice_ring(d)
    intensity = spots.intensity[keep]
    return {
        "file": frame.file,
        "index": frame.index,
        "n_spots": int(keep.sum()),
        "total_intensity": float(intensity.sum()),
        "median_intensity": float(np.median(intensity)) if intensity.size else 0.0,
        "d_min_est": estimate_d_min(d[keep]),
        "n_strong_pixels": spots.n_strong,
    }


# --------------------------------------------------------------------------
# many frames: threads (default) or processes

_local = threading.local()
_proc_state: dict = {}


def _thread_workspace(shape: tuple[int, int]) -> Workspace:
    ws = getattr(_local, "workspace", None)
    if ws is None or ws.shape != shape:
        ws = _local.workspace = Workspace(shape)
    return ws


def _safe_summary(frame, header, mask, params, spot_filter) -> dict:
    """frame_summary, with any failure turned into an error record."""
    try:
        ws = _thread_workspace(mask.shape)
        return frame_summary(frame, header, mask, params, spot_filter, ws)
    except BadInputError as exc:
        return {"file": frame.file, "index": frame.index, "error": exc.problem}
    except Exception as exc:  # a broken frame must never stop the scan
        return {"file": frame.file, "index": frame.index, "error": f"{type(exc).__name__}: {exc}"}


def _proc_init(header, mask, params, spot_filter) -> None:
    _proc_state.update(header=header, mask=mask, params=params, spot_filter=spot_filter)


def _proc_summary(frame: FrameRef) -> dict:
    s = _proc_state
    return _safe_summary(frame, s["header"], s["mask"], s["params"], s["spot_filter"])


def default_workers() -> int:
    """Worker count: the CPUs this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def summarise_frames(
    frames: Sequence[FrameRef],
    header: images.FrameHeader,
    params: SpotFinderParams | None = None,
    spot_filter: SpotFilter | None = None,
    workers: int | None = None,
    backend: Backend = "threads",
    mask: np.ndarray | None = None,
) -> list[dict]:
    """frame_summary of every frame, in order; failures become ``{"error": ...}``."""
    params = params or SpotFinderParams()
    spot_filter = spot_filter or SpotFilter()
    mask = static_mask(header) if mask is None else mask
    workers = workers or default_workers()
    if backend == "auto":
        backend = choose_backend(frames, workers)
    if workers == 1 or len(frames) <= 1:
        try:
            return [_safe_summary(f, header, mask, params, spot_filter) for f in frames]
        finally:
            release_readers()  # this thread lives on: do not keep the file open
    if backend == "processes":
        with ProcessPoolExecutor(
            workers, initializer=_proc_init, initargs=(header, mask, params, spot_filter)
        ) as pool:
            return list(
                pool.map(_proc_summary, frames, chunksize=max(1, len(frames) // (4 * workers)))
            )
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(lambda f: _safe_summary(f, header, mask, params, spot_filter), frames))


def scan_header(frames: Iterable[FrameRef]) -> tuple[images.FrameHeader | None, list[dict]]:
    """The header of the first frame whose header reads, and errors met on the way.

    One raster scan shares its geometry, so this header describes all frames.
    """
    errors = []
    for f in frames:
        try:
            return images.read_header(f.file), errors
        except BadInputError as exc:
            errors.append({"file": f.file, "index": f.index, "error": exc.problem})
    return None, errors


def hitmap(
    paths: Sequence[str | Path],
    workdir: str | Path,
    grid: tuple[int, int] | None = None,
    snake: bool = False,
    params: SpotFinderParams | None = None,
    spot_filter: SpotFilter | None = None,
    workers: int | None = None,
    backend: Backend = "threads",
    render: bool = True,
) -> dict:
    """Spot-find every frame of a raster scan and draw its hit map.

    ``paths``: image files and/or directories (CBF, Eiger master).
    ``grid``: (cols, rows) of the raster, frames in acquisition order; None
    = near-square guess.  ``snake``: serpentine scan.  Writes
    ``workdir/hitmap.json`` (``{"frames": [...], "errors": [...], "grid": ...}``),
    and with ``render`` also ``hitmap.png`` and ``hitmap.html``.  Returns the
    JSON document.  Frames that fail appear in ``frames`` with ``n_spots``
    None and an ``error``, and again in ``errors``.  ``backend``: "threads"
    (the default, safe in a process that runs other threads, as ``mxflow
    run`` does), "processes" (forked workers), or "auto"
    (:func:`choose_backend`, what ``mxflow hitmap`` uses).
    """
    params = params or SpotFinderParams()
    spot_filter = spot_filter or SpotFilter()
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    frames, errors = list_frames(list(paths))
    header, header_errors = scan_header(frames)
    if header is None:
        rows = [
            {"file": f.file, "index": f.index, "error": "no readable header in this scan"}
            for f in frames
        ]
        rows = [next((e for e in header_errors if e["file"] == r["file"]), r) for r in rows]
    else:
        if backend == "auto":
            backend = choose_backend(frames, workers or default_workers())
        rows = summarise_frames(frames, header, params, spot_filter, workers, backend)
    wall = time.perf_counter() - t0
    layout = choose_grid(len(rows), grid, snake)
    out_frames = []
    for k, r in enumerate(rows):
        row, col = layout.cell(k)
        rec = {
            "file": r["file"],
            "index": r["index"],
            "n_spots": r.get("n_spots"),
            "total_intensity": r.get("total_intensity"),
            "median_intensity": r.get("median_intensity"),
            "d_min_est": r.get("d_min_est"),
            "n_strong_pixels": r.get("n_strong_pixels"),
            "row": row,
            "col": col,
        }
        if "error" in r:
            rec["error"] = r["error"]
            errors.append({"file": r["file"], "index": r["index"], "error": r["error"]})
        out_frames.append(rec)
    doc = {
        "frames": out_frames,
        "errors": errors,
        "grid": asdict(layout),
        "geometry": None
        if header is None
        else {
            "wavelength": header.wavelength,
            "distance": header.distance,
            "beam_center": list(header.beam_center),
            "pixel_size": list(header.pixel_size),
            "image_size": list(header.image_size),
            "detector": header.detector,
        },
        "spot_finder": {"algorithm": "dispersion_extended", **asdict(params)},
        "spot_filter": asdict(spot_filter),
        "timing": {
            "wall_s": wall,
            "frames_per_s": len(rows) / wall if wall > 0 else None,
            "workers": workers or default_workers(),
            "backend": backend,
        },
    }
    if render:
        from mxflow.hitmap.render import write_html, write_png

        doc["outputs"] = {"png": "hitmap.png", "html": "hitmap.html"}
        write_png(doc, workdir / "hitmap.png")
        write_html(doc, workdir / "hitmap.html")
    write_json(workdir / "hitmap.json", doc)
    return doc
