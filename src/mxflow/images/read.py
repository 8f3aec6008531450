"""Reading detector frames and their headers: miniCBF, Eiger HDF5 / NeXus, SMV.

Conventions (as in :mod:`mxflow.model`): wavelength in Å, distance and pixel
size in mm, beam centre in pixels (fast, slow) from the corner of the first
pixel, angles in degrees, exposure in seconds.  Frames come back as
``int32`` arrays of shape (slow, fast); pixels that carry no measurement are
negative, as PILATUS detectors write them: ``-1`` for module gaps and ``-2``
for bad / masked pixels.  Eiger and SMV data are mapped to the same scheme.

Raw files are only ever opened for reading.  Anything that cannot be used
raises :class:`mxflow.errors.BadInputError` naming the file and the problem.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from mxflow.errors import BadInputError
from mxflow.images.cbf import (
    COMPRESSED,
    check_binary_size,
    mime_int,
    open_raw,
    read_cbf_head,
    read_cbf_pixels,
)
from mxflow.model import ImageSweep

Format = Literal["cbf", "eiger", "smv"]

GAP = -1  # pixel value of a module gap (PILATUS convention)
BAD = -2  # pixel value of a bad / masked pixel (PILATUS convention)

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
H_C_KEV_A = 12.398419843320026  # h·c in keV·Å: λ(Å) = 12.3984 / E(keV)

_EIGER_DATA_FILE = re.compile(r"_data_\d{6}\.h5$")


@dataclass
class FrameHeader:
    """What one image file's header says about the experiment.

    ``n_frames`` is the number of frames the file holds (1 for CBF / SMV,
    the number of images present for an Eiger master).  ``n_frames_expected``
    is what the header says the collection will contain when complete (Eiger
    ``nimages × ntrigger``; None where the format does not say).
    ``angles`` lists the start angle (degrees) of every frame when the file
    records them (Eiger / NXmx), otherwise it is empty.  ``overload`` is the
    count at which the detector saturates (None when unknown).
    """

    path: str
    format: Format
    wavelength: float  # Å
    distance: float  # mm
    beam_center: tuple[float, float]  # px (fast, slow)
    pixel_size: tuple[float, float]  # mm (fast, slow)
    image_size: tuple[int, int]  # px (fast, slow)
    osc_start: float  # degrees
    osc_width: float  # degrees per frame
    exposure: float = 0.0  # s
    detector: str = ""
    n_frames: int = 1
    n_frames_expected: int | None = None
    angles: list[float] = field(default_factory=list)  # degrees, per-frame start
    overload: float | None = None  # counts


# --------------------------------------------------------------------------
# format detection and raw byte access


def is_eiger_data_file(path: str | Path) -> bool:
    """True for an Eiger ``*_data_00000N.h5`` file (data only, not a sweep)."""
    return bool(_EIGER_DATA_FILE.search(Path(path).name))


def detect_format(path: str | Path) -> Format:
    """The image format of ``path`` from its name: ``cbf``, ``eiger`` or ``smv``.

    Raises BadInputError for names that are not images mxflow reads, and for
    Eiger ``*_data_00000N.h5`` files (only the master file describes a sweep).
    """
    name = Path(path).name.lower()
    for ext in COMPRESSED:
        if name.endswith(ext):
            name = name[: -len(ext)]
    if name.endswith(".cbf"):
        return "cbf"
    if name.endswith((".img", ".smv")):
        return "smv"
    if name.endswith((".h5", ".nxs", ".hdf5", ".nx5")):
        if is_eiger_data_file(path):
            raise BadInputError(path, "is an Eiger data file; open its master file instead")
        return "eiger"
    raise BadInputError(path, "not a recognised image file name (.cbf, .img, .h5, .nxs)")


def _read_bytes(path: str | Path, limit: int | None = None) -> bytes:
    """The (decompressed) bytes of ``path``, at most ``limit`` of them."""
    try:
        with open_raw(path) as fh:
            return fh.read() if limit is None else fh.read(limit)
    except (OSError, EOFError, ValueError) as exc:
        raise BadInputError(path, f"cannot be read or decompressed ({exc})") from exc


# --------------------------------------------------------------------------
# miniCBF (PILATUS_1.2 header)


def _num(pattern: str, text: str) -> float | None:
    m = re.search(pattern, text, re.MULTILINE)
    return float(m.group(1)) if m else None


_FLOAT = r"([-+]?\d*\.?\d+(?:[eE][-+]?\d+)?)"


def _parse_pilatus_header(text: str, path: str | Path) -> dict:
    """Experiment values from the '# Key value' lines of a PILATUS_1.2 header."""

    def need(name: str, pattern: str) -> float:
        v = _num(pattern, text)
        if v is None:
            raise BadInputError(path, f"CBF header has no {name} line")
        return v

    wavelength = need("Wavelength", rf"^#\s*Wavelength\s+{_FLOAT}")
    distance_m = need("Detector_distance", rf"^#\s*Detector_distance\s+{_FLOAT}")
    m = re.search(rf"^#\s*Pixel_size\s+{_FLOAT}\s*m\s*x\s*{_FLOAT}\s*m", text, re.MULTILINE)
    if not m:
        raise BadInputError(path, "CBF header has no Pixel_size line")
    px = (float(m.group(1)) * 1e3, float(m.group(2)) * 1e3)
    m = re.search(rf"^#\s*Beam_xy\s*\(\s*{_FLOAT}\s*,\s*{_FLOAT}\s*\)", text, re.MULTILINE)
    if not m:
        raise BadInputError(path, "CBF header has no Beam_xy line")
    beam = (float(m.group(1)), float(m.group(2)))
    det = re.search(r"^#\s*Detector:\s*([^,\r\n]+)", text, re.MULTILINE)
    cutoff = _num(r"^#\s*Count_cutoff\s+(\d+)", text)
    return dict(
        wavelength=wavelength,
        distance=distance_m * 1e3,
        pixel_size=px,
        beam_center=beam,
        osc_start=_num(rf"^#\s*Start_angle\s+{_FLOAT}", text) or 0.0,
        osc_width=_num(rf"^#\s*Angle_increment\s+{_FLOAT}", text) or 0.0,
        exposure=_num(rf"^#\s*Exposure_time\s+{_FLOAT}", text) or 0.0,
        detector=det.group(1).strip() if det else "",
        overload=cutoff,
    )


def read_cbf_header(path: str | Path) -> FrameHeader:
    """Header of a miniCBF file (PILATUS_1.2 convention; plain, .bz2 or .gz).

    For uncompressed files the file length is checked against X-Binary-Size,
    so a truncated frame (still being written) is reported here already;
    compressed files are checked when the frame is read.
    """
    text, data_start, _ = read_cbf_head(path)
    if "PILATUS" not in text and "# Wavelength" not in text:
        raise BadInputError(path, "CBF header is not in the PILATUS_1.2 (miniCBF) convention")
    values = _parse_pilatus_header(text, path)
    fast = mime_int(text, "X-Binary-Size-Fastest-Dimension", path)
    slow = mime_int(text, "X-Binary-Size-Second-Dimension", path)
    if not str(path).endswith(COMPRESSED):
        size = mime_int(text, "X-Binary-Size", path)
        check_binary_size(size, Path(path).stat().st_size - data_start, path)
    return FrameHeader(path=str(path), format="cbf", image_size=(fast, slow), n_frames=1, **values)


def read_cbf_frame(path: str | Path) -> np.ndarray:
    """The pixel values of a miniCBF frame, int32, shape (slow, fast) (see :mod:`mxflow.images.cbf`)."""
    return read_cbf_pixels(path)


# --------------------------------------------------------------------------
# SMV (ADSC-style header)


def _smv_header_dict(path: str | Path) -> dict[str, str]:
    head = _read_bytes(path, 512)
    if not head.startswith(b"{") or b"HEADER_BYTES" not in head:
        raise BadInputError(path, "is not an SMV image (no '{ HEADER_BYTES=' header)")
    m = re.search(rb"HEADER_BYTES\s*=\s*(\d+)", head)
    nbytes = int(m.group(1)) if m else 512
    text = _read_bytes(path, nbytes).decode("latin-1")
    return {k.strip(): v.strip() for k, v in re.findall(r"(\w+)\s*=\s*([^;]*);", text)}


def read_smv_header(path: str | Path) -> FrameHeader:
    """Header of an SMV (ADSC-style) image.

    SMV headers give the beam centre in mm with BEAM_CENTER_X along the slow
    axis (the ADSC convention dxtbx follows), so (fast, slow) in pixels is
    (BEAM_CENTER_Y, BEAM_CENTER_X) / PIXEL_SIZE.  The Stockholm Timepix
    (``BEAMLINE=TimePix_SU``, dxtbx's FormatSMVTimePix_SU) gives it in pixels,
    X along fast and Y along slow.
    """
    h = _smv_header_dict(path)

    def get(key: str, default: float | None = None) -> float:
        if key in h:
            try:
                return float(h[key])
            except ValueError:
                raise BadInputError(
                    path, f"SMV header value {key}={h[key]!r} is not a number"
                ) from None
        if default is None:
            raise BadInputError(path, f"SMV header has no {key}")
        return default

    pixel = get("PIXEL_SIZE")
    fast, slow = int(get("SIZE1")), int(get("SIZE2"))
    if h.get("BEAMLINE", "").upper() == "TIMEPIX_SU":  # dxtbx's FormatSMVTimePix_SU: px
        beam = (get("BEAM_CENTER_X", fast / 2), get("BEAM_CENTER_Y", slow / 2))
    else:
        beam = (
            get("BEAM_CENTER_Y", fast * pixel / 2) / pixel,
            get("BEAM_CENTER_X", slow * pixel / 2) / pixel,
        )
    return FrameHeader(
        path=str(path),
        format="smv",
        wavelength=get("WAVELENGTH"),
        distance=get("DISTANCE"),
        beam_center=beam,
        pixel_size=(pixel, pixel),
        image_size=(fast, slow),
        osc_start=get("OSC_START", get("PHI", 0.0)),
        osc_width=get("OSC_RANGE", 0.0),
        exposure=get("TIME", 0.0),
        detector=h.get("DETECTOR_SN", h.get("DETECTOR_NAME", "")),
        overload=get("SATURATED_VALUE", 65535.0),
    )


def read_smv_frame(path: str | Path) -> np.ndarray:
    """The pixel values of an SMV frame, int32, shape (slow, fast)."""
    import fabio

    hdr = read_smv_header(path)
    try:
        img = fabio.open(str(path))
        data = np.asarray(img.data)
    except Exception as exc:  # fabio raises many kinds of errors on bad files
        raise BadInputError(path, f"SMV image cannot be decoded ({exc})") from exc
    if data.shape != (hdr.image_size[1], hdr.image_size[0]):
        raise BadInputError(
            path,
            f"wrong image size: decoded {data.shape[1]} x {data.shape[0]} pixels, "
            f"header says {hdr.image_size[0]} x {hdr.image_size[1]}",
        )
    return data.astype(np.int32)


# --------------------------------------------------------------------------
# Eiger HDF5 master / NeXus (NXmx or DECTRIS layout)


def _h5_value(group, names: list[str]):
    """First of ``names`` present under ``group``: (value, units attribute) or (None, '')."""
    for name in names:
        try:
            obj = group.get(name)
        except (KeyError, OSError):
            obj = None
        if obj is None or not hasattr(obj, "shape"):
            continue
        value = obj[()]
        units = obj.attrs.get("units", b"")
        if isinstance(units, bytes):
            units = units.decode()
        if isinstance(value, bytes):
            value = value.decode()
        return value, str(units).strip()
    return None, ""


def _scalar(value) -> float:
    arr = np.asarray(value, dtype=float).ravel()
    return float(arr[0]) if arr.size else float("nan")


def _to_mm(value, units: str, default_units: str = "m") -> float:
    factor = {"m": 1e3, "mm": 1.0, "cm": 10.0, "um": 1e-3, "microns": 1e-3, "µm": 1e-3}
    return _scalar(value) * factor.get(units or default_units, 1e3)


def _to_angstrom(value, units: str) -> float:
    factor = {"angstrom": 1.0, "a": 1.0, "å": 1.0, "nm": 10.0, "m": 1e10, "": 1.0}
    return _scalar(value) * factor.get(units.lower(), 1.0)


def _eiger_blocks(h5, path: str | Path) -> list[tuple[str, int]]:
    """The image datasets of a master file in order, with their frame counts.

    A missing external data file raises BadInputError naming that file.
    """
    import h5py

    if "entry/data" not in h5:
        raise BadInputError(
            path, "HDF5 file has no /entry/data group (not an Eiger master / NeXus file)"
        )
    group = h5["entry/data"]
    blocks = []
    for key in sorted(group.keys()):
        link = group.get(key, getlink=True)
        if isinstance(link, h5py.ExternalLink):
            target = Path(path).parent / link.filename
            if not target.exists():
                raise BadInputError(path, f"missing external data file {link.filename}")
        try:
            obj = group[key]
        except (KeyError, OSError) as exc:
            raise BadInputError(
                path, f"data block /entry/data/{key} cannot be opened ({exc})"
            ) from exc
        if isinstance(obj, h5py.Dataset) and obj.ndim == 3:
            blocks.append((f"entry/data/{key}", int(obj.shape[0])))
    if not blocks:
        raise BadInputError(path, "HDF5 file holds no 3-D image data under /entry/data")
    return blocks


def _open_h5(path: str | Path):
    import h5py
    import hdf5plugin  # noqa: F401  (registers the bitshuffle / LZ4 filters Eiger data use)

    try:
        with open(path, "rb") as fh:
            if fh.read(8) != HDF5_SIGNATURE:
                raise BadInputError(path, "is not an HDF5 file (no HDF5 signature)")
        return h5py.File(path, "r")
    except BadInputError:
        raise
    except OSError as exc:
        raise BadInputError(path, f"unreadable HDF5 file ({exc})") from exc


_GONIO_AXES = ("omega", "phi", "chi", "kappa")


def _eiger_angles(h5) -> tuple[list[float], float | None]:
    """Per-frame start angles and the oscillation width of the rotating axis."""
    best: tuple[list[float], float | None] = ([], None)
    for base in ("entry/sample/goniometer", "entry/sample/transformations"):
        if base not in h5:
            continue
        group = h5[base]
        for axis in _GONIO_AXES:
            values, _ = _h5_value(group, [axis])
            if values is None:
                continue
            angles = [float(a) for a in np.atleast_1d(np.asarray(values, dtype=float))]
            width, _ = _h5_value(
                group, [f"{axis}_range_average", f"{axis}_increment_set", f"{axis}_increment"]
            )
            w = _scalar(width) if width is not None else None
            if w is None and len(angles) > 1:
                w = angles[1] - angles[0]
            moving = (w is not None and abs(w) > 1e-9) or (
                len(angles) > 1 and np.ptp(angles) > 1e-9
            )
            if moving:
                return angles, w
            if not best[0]:
                best = (angles, w)
    return best


def read_eiger_header(path: str | Path) -> FrameHeader:
    """Header of an Eiger master file or NXmx NeXus file.

    Reads the DECTRIS layout (``/entry/instrument/detector/detector_distance``,
    ``beam_center_x``, ``detectorSpecific/nimages`` …, ``/entry/sample/goniometer``)
    and the NXmx one (``distance``, ``/entry/sample/transformations``,
    ``incident_wavelength`` / ``incident_energy``).
    """
    with _open_h5(path) as h5:
        try:
            return _eiger_header_from(h5, path)
        except BadInputError:
            raise
        except (OSError, KeyError, ValueError, TypeError) as exc:
            raise BadInputError(path, f"unreadable HDF5 content ({exc})") from exc


def _eiger_header_from(h5, path: str | Path) -> FrameHeader:
    det_path = "entry/instrument/detector"
    if det_path not in h5:
        raise BadInputError(path, "HDF5 file has no /entry/instrument/detector group")
    det = h5[det_path]
    spec = det.get("detectorSpecific")

    value, units = _h5_value(
        h5,
        [
            "entry/instrument/beam/incident_wavelength",
            "entry/instrument/monochromator/wavelength",
            "entry/sample/beam/incident_wavelength",
        ],
    )
    if value is not None:
        wavelength = _to_angstrom(value, units)
    else:
        energy, units = _h5_value(
            h5, ["entry/instrument/beam/incident_energy", "entry/instrument/monochromator/energy"]
        )
        if energy is None and spec is not None:
            energy, units = _h5_value(spec, ["photon_energy"])
        if energy is None:
            raise BadInputError(path, "HDF5 header has no wavelength or photon energy")
        ev = _scalar(energy) * (1000.0 if units.lower() == "kev" else 1.0)
        wavelength = H_C_KEV_A / (ev / 1000.0)

    value, units = _h5_value(det, ["detector_distance", "distance"])
    if value is None:
        raise BadInputError(path, "HDF5 header has no detector distance")
    distance = _to_mm(value, units)

    bx, _ = _h5_value(det, ["beam_center_x"])
    by, _ = _h5_value(det, ["beam_center_y"])
    if bx is None or by is None:
        raise BadInputError(path, "HDF5 header has no beam_center_x / beam_center_y")
    px, ux = _h5_value(det, ["x_pixel_size"])
    py, uy = _h5_value(det, ["y_pixel_size"])
    if px is None or py is None:
        raise BadInputError(path, "HDF5 header has no x_pixel_size / y_pixel_size")

    blocks = _eiger_blocks(h5, path)
    n_frames = sum(n for _, n in blocks)
    shape = h5[blocks[0][0]].shape
    fast, slow = int(shape[2]), int(shape[1])
    if spec is not None:
        nx, _ = _h5_value(spec, ["x_pixels_in_detector"])
        ny, _ = _h5_value(spec, ["y_pixels_in_detector"])
        if (
            nx is not None
            and ny is not None
            and (int(_scalar(nx)), int(_scalar(ny))) != (fast, slow)
        ):
            raise BadInputError(
                path,
                f"wrong image size: header says {int(_scalar(nx))} x {int(_scalar(ny))} pixels, "
                f"data are {fast} x {slow}",
            )

    expected = None
    if spec is not None:
        nimages, _ = _h5_value(spec, ["nimages"])
        ntrigger, _ = _h5_value(spec, ["ntrigger"])
        if nimages is not None:
            expected = int(_scalar(nimages)) * (
                int(_scalar(ntrigger)) if ntrigger is not None else 1
            )

    angles, width = _eiger_angles(h5)
    exposure, _ = _h5_value(det, ["count_time", "frame_time"])
    name, _ = _h5_value(det, ["description"])
    overload, _ = _h5_value(det, ["saturation_value"])
    if overload is None and spec is not None:
        overload, _ = _h5_value(spec, ["countrate_correction_count_cutoff", "saturation_value"])
    return FrameHeader(
        path=str(path),
        format="eiger",
        wavelength=wavelength,
        distance=distance,
        beam_center=(_scalar(bx), _scalar(by)),
        pixel_size=(_to_mm(px, ux), _to_mm(py, uy)),
        image_size=(fast, slow),
        osc_start=angles[0] if angles else 0.0,
        osc_width=float(width) if width is not None else 0.0,
        exposure=_scalar(exposure) if exposure is not None else 0.0,
        detector=str(name) if name is not None else "",
        n_frames=n_frames,
        n_frames_expected=expected,
        angles=angles if len(angles) == n_frames else [],
        overload=_scalar(overload) if overload is not None else None,
    )


class EigerReader:
    """The frames of one Eiger master / NeXus file, with the file held open.

    The data blocks are found and the pixel mask is read once, so reading
    many frames (a raster scan) costs little more than decompressing them.
    Use as a context manager; :meth:`frame` gives what
    :func:`read_eiger_frame` gives.  Raises BadInputError naming the file
    for files that are not Eiger data or miss their external data files.
    """

    _MASK = "entry/instrument/detector/detectorSpecific/pixel_mask"

    def __init__(self, path: str | Path):
        self.path = str(path)
        self._h5 = _open_h5(path)
        try:
            blocks = _eiger_blocks(self._h5, path)
            self._datasets = [(self._h5[name], n) for name, n in blocks]
            self._gap = self._bad = None
            if self._MASK in self._h5:
                mask = np.asarray(self._h5[self._MASK][()])
                self._mask_shape = mask.shape
                self._bad = np.flatnonzero(mask != 0)  # any flag: bad ...
                self._gap = np.flatnonzero((mask & 1) != 0)  # ... bit 0: gap
        except BadInputError:
            self.close()
            raise
        except (OSError, KeyError, ValueError) as exc:
            self.close()
            raise BadInputError(path, f"image data cannot be read ({exc})") from exc
        self.n_frames = sum(n for _, n in blocks)

    def __len__(self) -> int:
        return self.n_frames

    def __enter__(self) -> EigerReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._h5.close()

    def frame(self, index: int) -> np.ndarray:
        """Frame ``index`` (0-based) as int32 (slow, fast).

        Pixels at the data type's maximum (what the Eiger writes for masked
        pixels) and pixels flagged in ``detectorSpecific/pixel_mask`` become
        -2 (BAD); mask bit 0 (module gap) becomes -1 (GAP); counts above the
        int32 range are clipped.
        """
        if not 0 <= index < self.n_frames:
            raise BadInputError(
                self.path, f"frame index {index} out of range (file holds {self.n_frames} frames)"
            )
        i = index
        try:
            for data, n in self._datasets:
                if i < n:
                    raw = data[i]
                    break
                i -= n
        except (OSError, KeyError, ValueError) as exc:
            raise BadInputError(self.path, f"frame {index} cannot be read ({exc})") from exc
        frame = _eiger_counts_to_int32(np.asarray(raw))
        if self._bad is not None and self._mask_shape == frame.shape:
            flat = frame.reshape(-1)
            flat[self._bad] = BAD
            flat[self._gap] = GAP
        return frame


def _eiger_counts_to_int32(raw: np.ndarray) -> np.ndarray:
    """Counts as int32: the type's maximum → BAD, the rest clipped to [BAD, 2³¹−1].

    Unsigned data (what the Eiger writes) are converted in place where
    possible; ``raw`` must not be used afterwards.
    """
    top = np.iinfo(np.int32).max
    if raw.dtype in (np.uint8, np.uint16, np.uint32):
        saturated = raw == np.iinfo(raw.dtype).max
        if raw.dtype == np.uint32:
            np.minimum(raw, top, out=raw)
            frame = raw.view(np.int32)
        else:
            frame = raw.astype(np.int32)
        frame[saturated] = BAD
        return frame
    frame = raw.astype(np.int64)
    if np.issubdtype(raw.dtype, np.integer):
        frame[raw == np.iinfo(raw.dtype).max] = BAD
    np.clip(frame, BAD, top, out=frame)
    return frame.astype(np.int32)


def read_eiger_frame(path: str | Path, index: int = 0) -> np.ndarray:
    """Frame ``index`` (0-based) of an Eiger master / NeXus file as int32
    (see :meth:`EigerReader.frame`; open an :class:`EigerReader` to read many)."""
    with EigerReader(path) as reader:
        return reader.frame(index)


# --------------------------------------------------------------------------
# public entry points


def read_header(path: str | Path) -> FrameHeader:
    """The header of any supported image file (format chosen by file name)."""
    p = Path(path)
    if not p.exists():
        raise BadInputError(path, "file does not exist")
    fmt = detect_format(p)
    if fmt == "cbf":
        return read_cbf_header(p)
    if fmt == "smv":
        return read_smv_header(p)
    return read_eiger_header(p)


def read_frame(path: str | Path, index: int = 0) -> np.ndarray:
    """Pixel values (int32, shape (slow, fast)) of frame ``index`` of ``path``.

    ``index`` is 0-based within the file; it must be 0 for one-frame-per-file
    formats.  Gaps are -1 and bad pixels -2 (PILATUS convention).
    """
    p = Path(path)
    if not p.exists():
        raise BadInputError(path, "file does not exist")
    fmt = detect_format(p)
    if fmt == "eiger":
        return read_eiger_frame(p, index)
    if index != 0:
        raise BadInputError(
            path, f"frame index {index} requested from a one-frame {fmt.upper()} file"
        )
    return read_cbf_frame(p) if fmt == "cbf" else read_smv_frame(p)


def iter_frames(
    source: ImageSweep | str | Path,
    first: int | None = None,
    last: int | None = None,
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(frame_number, pixels)`` for the frames of a sweep or a file.

    For an :class:`ImageSweep`, frame numbers are those of the sweep
    (``first``..``last`` inclusive, defaulting to the whole sweep; frames
    listed in ``sweep.missing`` are skipped).  For a single path, an Eiger
    master yields all its frames numbered from 1; a CBF / SMV file yields
    its one frame as number 1.
    """
    if isinstance(source, ImageSweep):
        lo = source.first if first is None else max(first, source.first)
        hi = source.last if last is None else min(last, source.last)
        missing = set(source.missing)
        numbers = [n for n in range(lo, hi + 1) if n not in missing]
        if source.format == "eiger":
            yield from _iter_eiger(source.template, numbers)
        else:
            for number in numbers:
                yield number, read_frame(source.frame_path(number))
        return
    header = read_header(source)
    lo = 1 if first is None else max(first, 1)
    hi = header.n_frames if last is None else min(last, header.n_frames)
    if header.format == "eiger":
        yield from _iter_eiger(source, range(lo, hi + 1))
    else:
        for number in range(lo, hi + 1):
            yield number, read_frame(source, number - 1)


def _iter_eiger(path: str | Path, numbers: Iterable[int]) -> Iterator[tuple[int, np.ndarray]]:
    """(number, pixels) of frames ``numbers`` (1-based) of one Eiger file, opened once."""
    with EigerReader(path) as reader:
        for number in numbers:
            yield number, reader.frame(number - 1)


# module layouts: (module pixels, gap pixels) along fast and slow
_MODULES = {
    "pilatus": ((487, 7), (195, 17)),
    "eiger": ((1030, 10), (514, 37)),
}


def _axis_gaps(size: int, module: int, gap: int) -> np.ndarray | None:
    """Boolean gap mask along one axis, or None when ``size`` does not tile."""
    n = (size + gap) // (module + gap)
    if n < 1 or n * module + (n - 1) * gap != size:
        return None
    is_gap = np.zeros(size, bool)
    for k in range(1, n):
        start = k * module + (k - 1) * gap
        is_gap[start : start + gap] = True
    return is_gap


def module_gap_mask(header: FrameHeader) -> np.ndarray:
    """True where a pixel lies on a sensor module (not a gap); shape (slow, fast).

    Gaps are known for PILATUS (487 × 195 px modules, 7 / 17 px gaps) and
    EIGER (1030 × 514 px modules, 10 / 37 px gaps) detectors whose image
    size tiles into whole modules; other detectors are taken as gap-free.
    """
    fast, slow = header.image_size
    good = np.ones((slow, fast), bool)
    name = header.detector.lower()
    for key, ((mf, gf), (ms, gs)) in _MODULES.items():
        if key in name:
            gx, gy = _axis_gaps(fast, mf, gf), _axis_gaps(slow, ms, gs)
            if gx is not None and gy is not None:
                good[:, gx] = False
                good[gy, :] = False
    return good


def pixel_mask(source: np.ndarray | FrameHeader, header: FrameHeader | None = None) -> np.ndarray:
    """Boolean mask of usable pixels (True = good), shape (slow, fast).

    * ``pixel_mask(frame)``: pixels with negative values (gaps, bad pixels)
      are excluded.
    * ``pixel_mask(header)``: module gaps of the detector are excluded.
    * ``pixel_mask(frame, header)``: both, plus pixels at or above the
      header's overload (saturated) count.
    """
    if isinstance(source, FrameHeader):
        return module_gap_mask(source)
    frame = np.asarray(source)
    good = frame >= 0
    if header is not None:
        if frame.shape != (header.image_size[1], header.image_size[0]):
            raise BadInputError(
                header.path, f"frame shape {frame.shape} does not match the header image size"
            )
        good &= module_gap_mask(header)
        if header.overload is not None:
            good &= frame < header.overload
    return good
