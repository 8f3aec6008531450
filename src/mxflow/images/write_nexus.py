"""Write Eiger-style HDF5 / NeXus (NXmx) data: ``<prefix>_master.h5`` + ``<prefix>_data_NNNNNN.h5``.

Data files hold ``/entry/data/data`` (frames × slow × fast, uint32, bitshuffle/LZ4
through hdf5plugin, 100 frames per file) and are linked from the master with
h5py ExternalLinks (``/entry/data/data_000001`` …), as DECTRIS file writers do.
The master carries the NXmx geometry that dxtbx reads (McStas frame: z along
the beam, y up; dxtbx turns it into the DIALS frame by a 180° rotation about y)
and the DECTRIS fields other readers use (incident_wavelength, detector_distance,
beam_center_x/y, x/y_pixel_size, count_time, detectorSpecific/nimages,
/entry/sample/goniometer/omega, omega_range_average …).

Gap pixels are written as 2³²−1 and flagged (bit 0) in detectorSpecific/pixel_mask.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import h5py
import hdf5plugin
import numpy as np

FRAMES_PER_FILE = 100
GAP_VALUE = np.uint32(2**32 - 1)


@dataclass
class NexusGeometry:
    """What the master file describes (Å, mm, pixels, degrees, seconds)."""

    wavelength: float
    distance_mm: float
    beam_fast_px: float
    beam_slow_px: float
    pixel_mm: float
    n_fast: int
    n_slow: int
    osc_start: float
    osc_width: float
    exposure: float
    thickness_mm: float = 0.45
    detector_name: str = "Dectris EIGER2 X 1M (mxflow simulation)"
    count_cutoff: int = 1048574


def _ds(group: h5py.Group, name: str, value, units: str | None = None, **attrs) -> h5py.Dataset:
    ds = group.create_dataset(name, data=value)
    if units:
        ds.attrs["units"] = np.bytes_(units)
    for k, v in attrs.items():
        ds.attrs[k] = np.bytes_(v) if isinstance(v, str) else v
    return ds


def _group(parent: h5py.Group, name: str, nx_class: str) -> h5py.Group:
    g = parent.require_group(name)
    g.attrs["NX_class"] = np.bytes_(nx_class)
    return g


def to_eiger_counts(frame: np.ndarray) -> np.ndarray:
    """int32 frame with −1 gaps → uint32 frame with 2³²−1 gaps."""
    out = frame.astype(np.uint32)
    out[frame < 0] = GAP_VALUE
    return out


def write_data_file(path: Path, frames: np.ndarray, first_number: int) -> None:
    """One data file: /entry/data/data (n, slow, fast) uint32, bitshuffle+LZ4, one chunk per frame."""
    tmp = path.with_name(f".{path.name}.part")
    with h5py.File(tmp, "w") as fh:
        entry = _group(fh, "entry", "NXentry")
        data = _group(entry, "data", "NXdata")
        ds = data.create_dataset(
            "data",
            data=frames,
            chunks=(1, *frames.shape[1:]),
            **hdf5plugin.Bitshuffle(nelems=0, cname="lz4"),
        )
        ds.attrs["image_nr_low"] = np.int32(first_number)
        ds.attrs["image_nr_high"] = np.int32(first_number + len(frames) - 1)
    os.replace(tmp, path)


def write_master(path: Path, geom: NexusGeometry, n_images: int, gap_mask: np.ndarray) -> None:
    """The NXmx master file; its /entry/data links to the data files of ``path``'s prefix."""
    prefix = path.name[: -len("_master.h5")]
    tmp = path.with_name(f".{path.name}.part")
    px_m = geom.pixel_mm / 1000.0
    with h5py.File(tmp, "w") as fh:
        entry = _group(fh, "entry", "NXentry")
        _ds(entry, "definition", np.bytes_("NXmx"))
        _ds(entry, "start_time", np.bytes_("2024-01-01T00:00:00Z"))
        _ds(entry, "end_time", np.bytes_("2024-01-01T00:01:00Z"))
        data = _group(entry, "data", "NXdata")
        n_files = (n_images + FRAMES_PER_FILE - 1) // FRAMES_PER_FILE
        for k in range(n_files):
            data[f"data_{k + 1:06d}"] = h5py.ExternalLink(
                f"{prefix}_data_{k + 1:06d}.h5", "/entry/data/data"
            )

        instrument = _group(entry, "instrument", "NXinstrument")
        _ds(instrument, "name", np.bytes_("mxflow simulated beamline"))
        beam = _group(instrument, "beam", "NXbeam")
        _ds(beam, "incident_wavelength", geom.wavelength, "angstrom")
        _ds(beam, "total_flux", 1.0e12, "Hz")
        source = _group(instrument, "source", "NXsource")
        _ds(source, "name", np.bytes_("mxflow"))

        det = _group(instrument, "detector", "NXdetector")
        _ds(det, "description", np.bytes_(geom.detector_name))
        _ds(det, "depends_on", np.bytes_("/entry/instrument/detector/transformations/translation"))
        _ds(det, "sensor_material", np.bytes_("Silicon"))
        _ds(det, "sensor_thickness", geom.thickness_mm / 1000.0, "m")
        _ds(det, "x_pixel_size", px_m, "m")
        _ds(det, "y_pixel_size", px_m, "m")
        _ds(det, "beam_center_x", geom.beam_fast_px, "pixel")
        _ds(det, "beam_center_y", geom.beam_slow_px, "pixel")
        _ds(det, "detector_distance", geom.distance_mm / 1000.0, "m")
        _ds(det, "count_time", geom.exposure, "s")
        _ds(det, "frame_time", geom.exposure, "s")
        _ds(det, "saturation_value", np.int32(geom.count_cutoff))
        _ds(det, "underload_value", np.int32(-1))
        _ds(det, "bit_depth_readout", np.int32(32))
        _ds(det, "bit_depth_image", np.int32(32))
        _ds(det, "pixel_mask_applied", np.int32(1))
        _ds(det, "type", np.bytes_("PIXEL"))
        det.create_dataset("pixel_mask", data=gap_mask.astype(np.uint32), compression="gzip")
        trans = _group(det, "transformations", "NXtransformations")
        _ds(
            trans,
            "translation",
            geom.distance_mm / 1000.0,
            "m",
            transformation_type="translation",
            vector=np.array([0.0, 0.0, 1.0]),
            depends_on=".",
        )
        spec = _group(det, "detectorSpecific", "NXcollection")
        _ds(spec, "nimages", np.int64(n_images))
        _ds(spec, "ntrigger", np.int64(1))
        _ds(spec, "x_pixels_in_detector", np.int32(geom.n_fast))
        _ds(spec, "y_pixels_in_detector", np.int32(geom.n_slow))
        _ds(spec, "countrate_correction_count_cutoff", np.int32(geom.count_cutoff))
        spec["pixel_mask"] = h5py.SoftLink("/entry/instrument/detector/pixel_mask")
        _ds(spec, "frame_count_time", geom.exposure, "s")
        module = _group(det, "module", "NXdetector_module")
        _ds(module, "data_origin", np.array([0, 0], dtype=np.int32))
        _ds(module, "data_size", np.array([geom.n_slow, geom.n_fast], dtype=np.int32))
        _ds(module, "data_stride", np.array([1, 1], dtype=np.int32))
        # corner of pixel (0, 0) relative to the beam, McStas frame (x_mcstas = -x_dials)
        corner = np.array([geom.beam_fast_px * px_m, geom.beam_slow_px * px_m, 0.0])
        _ds(
            module,
            "module_offset",
            float(np.linalg.norm(corner)),
            "m",
            transformation_type="translation",
            vector=corner / np.linalg.norm(corner),
            offset=np.zeros(3),
            depends_on="/entry/instrument/detector/transformations/translation",
        )
        for name, vec in (
            ("fast_pixel_direction", [-1.0, 0, 0]),
            ("slow_pixel_direction", [0, -1.0, 0]),
        ):
            _ds(
                module,
                name,
                px_m,
                "m",
                transformation_type="translation",
                vector=np.array(vec),
                offset=np.zeros(3),
                depends_on="/entry/instrument/detector/module/module_offset",
            )

        sample = _group(entry, "sample", "NXsample")
        _ds(sample, "name", np.bytes_("simulated crystal"))
        _ds(sample, "depends_on", np.bytes_("/entry/sample/transformations/omega"))
        angles = geom.osc_start + geom.osc_width * np.arange(n_images)
        strans = _group(sample, "transformations", "NXtransformations")
        _ds(
            strans,
            "omega",
            angles,
            "deg",
            transformation_type="rotation",
            vector=np.array([-1.0, 0.0, 0.0]),
            depends_on=".",
        )
        _ds(strans, "omega_end", angles + geom.osc_width, "deg")
        _ds(strans, "omega_increment_set", geom.osc_width, "deg")
        gonio = _group(sample, "goniometer", "NXtransformations")
        _ds(gonio, "omega", angles, "deg")
        _ds(gonio, "omega_end", angles + geom.osc_width, "deg")
        _ds(gonio, "omega_range_average", geom.osc_width, "deg")
        _ds(gonio, "omega_range_total", geom.osc_width * n_images, "deg")
        _ds(gonio, "omega_increment", geom.osc_width, "deg")
        beam_s = _group(sample, "beam", "NXbeam")
        _ds(beam_s, "incident_wavelength", geom.wavelength, "angstrom")
    os.replace(tmp, path)


class EigerWriter:
    """Collects frames and writes ``<prefix>_data_NNNNNN.h5`` every 100 frames, then the master.

    ``add(image, header)`` takes int32 frames (−1 = gap) and the per-frame header
    of the CBF writer (only the first frame's geometry is used).
    """

    def __init__(self, directory: Path, prefix: str, cfg=None, det=None):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.prefix = prefix
        self.buffer: list[np.ndarray] = []
        self.n_written = 0
        self.n_files = 0
        self.first_header: dict | None = None
        self.gap_mask: np.ndarray | None = None

    def add(self, image: np.ndarray, header: dict) -> None:
        if self.first_header is None:
            self.first_header = dict(header)
            self.gap_mask = (image < 0).astype(np.uint32)
        self.buffer.append(to_eiger_counts(image))
        if len(self.buffer) == FRAMES_PER_FILE:
            self._flush()

    def _flush(self) -> None:
        if not self.buffer:
            return
        self.n_files += 1
        path = self.directory / f"{self.prefix}_data_{self.n_files:06d}.h5"
        write_data_file(path, np.stack(self.buffer), self.n_written + 1)
        self.n_written += len(self.buffer)
        self.buffer = []

    def close(self) -> str:
        self._flush()
        h = self.first_header or {}
        assert self.gap_mask is not None, "no frames were added"
        bx, by = h["beam_xy_px"]
        geom = NexusGeometry(
            wavelength=h["wavelength_A"],
            distance_mm=h["distance_mm"],
            beam_fast_px=bx,
            beam_slow_px=by,
            pixel_mm=h["pixel_size_mm"],
            n_fast=self.gap_mask.shape[1],
            n_slow=self.gap_mask.shape[0],
            osc_start=h["start_angle_deg"],
            osc_width=h["angle_increment_deg"],
            exposure=h["exposure_s"],
            thickness_mm=h.get("thickness_mm", 0.45),
        )
        master = self.directory / f"{self.prefix}_master.h5"
        write_master(master, geom, self.n_written, self.gap_mask)
        return str(master)
