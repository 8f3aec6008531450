"""Small synthetic image files for the images / discover tests (not a test module).

CBF frames come from the simulator's writer (mxflow.images.write_cbf); Eiger
master + data files and SMV images are written here directly with h5py /
plain bytes, in the layouts real detectors use.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from mxflow.images.write_cbf import write_minicbf


def cbf_frame(
    path: Path,
    *,
    start: float = 0.0,
    width: float = 0.1,
    shape: tuple[int, int] = (12, 10),
    wavelength: float = 1.0,
    distance: float = 200.0,
    beam: tuple[float, float] = (5.5, 6.5),
    detector: str = "PILATUS3 6M, S/N 60-0000",
    value: int = 7,
) -> Path:
    """Write a tiny miniCBF frame (shape is (slow, fast)); returns its path."""
    data = np.full(shape, value, dtype=np.int32)
    data[0, 0] = -1
    data[1, 1] = -2
    path.parent.mkdir(parents=True, exist_ok=True)
    write_minicbf(
        path,
        data,
        {
            "detector": detector,
            "wavelength_A": wavelength,
            "distance_mm": distance,
            "beam_xy_px": beam,
            "start_angle_deg": start,
            "angle_increment_deg": width,
            "exposure_s": 0.05,
            "count_cutoff": 1000,
        },
    )
    return path


def cbf_sweep(
    directory: Path,
    prefix: str,
    numbers,
    *,
    start: float = 0.0,
    width: float = 0.1,
    digits: int = 5,
    **kw,
) -> list[Path]:
    """Write frames ``prefix_NNNNN.cbf`` with start angles start + (n-1)·width."""
    paths = []
    for n in numbers:
        p = directory / f"{prefix}_{n:0{digits}d}.cbf"
        paths.append(cbf_frame(p, start=start + (n - 1) * width, width=width, **kw))
    return paths


def eiger_master(
    directory: Path,
    prefix: str = "x",
    *,
    n_frames: int = 6,
    per_file: int = 4,
    shape: tuple[int, int] = (8, 6),
    start: float = 10.0,
    width: float = 0.2,
    nimages: int | None = None,
    write_data: bool = True,
) -> Path:
    """Write a DECTRIS-style Eiger master file plus its external data files."""
    directory.mkdir(parents=True, exist_ok=True)
    master = directory / f"{prefix}_master.h5"
    slow, fast = shape
    with h5py.File(master, "w") as f:
        det = f.create_group("entry/instrument/detector")
        det["detector_distance"] = 0.150
        det["detector_distance"].attrs["units"] = "m"
        det["beam_center_x"] = 3.25
        det["beam_center_y"] = 4.5
        det["x_pixel_size"] = 75e-6
        det["y_pixel_size"] = 75e-6
        det["x_pixel_size"].attrs["units"] = "m"
        det["y_pixel_size"].attrs["units"] = "m"
        det["count_time"] = 0.01
        det["description"] = b"Dectris EIGER X 16M"
        spec = det.create_group("detectorSpecific")
        spec["nimages"] = nimages if nimages is not None else n_frames
        spec["ntrigger"] = 1
        spec["x_pixels_in_detector"] = fast
        spec["y_pixels_in_detector"] = slow
        spec["countrate_correction_count_cutoff"] = 50000
        mask = np.zeros(shape, np.uint32)
        mask[0, :] = 1  # a gap row
        mask[2, 2] = 8  # a hot pixel
        spec["pixel_mask"] = mask
        beam = f.create_group("entry/instrument/beam")
        beam["incident_wavelength"] = 0.9793
        beam["incident_wavelength"].attrs["units"] = "angstrom"
        gon = f.create_group("entry/sample/goniometer")
        gon["omega"] = start + width * np.arange(n_frames)
        gon["omega_range_average"] = width
        gon["phi"] = np.zeros(n_frames)
        data = f.create_group("entry/data")
        for k, lo in enumerate(range(0, n_frames, per_file)):
            n = min(per_file, n_frames - lo)
            name = f"{prefix}_data_{k + 1:06d}.h5"
            if write_data:
                with h5py.File(directory / name, "w") as d:
                    block = np.zeros((n, slow, fast), np.uint32)
                    for i in range(n):
                        block[i] = lo + i + 1  # frame number as pixel value
                    block[:, 0, :] = 2**32 - 1
                    d["entry/data/data"] = block
            data[f"data_{k + 1:06d}"] = h5py.ExternalLink(name, "/entry/data/data")
    return master


def smv_frame(
    path: Path, *, shape: tuple[int, int] = (6, 4), start: float = 5.0, width: float = 1.0
) -> Path:
    """Write an ADSC-style SMV image (unsigned 16-bit, little endian)."""
    slow, fast = shape
    fields = {
        "HEADER_BYTES": "512",
        "DIM": "2",
        "BYTE_ORDER": "little_endian",
        "TYPE": "unsigned_short",
        "SIZE1": str(fast),
        "SIZE2": str(slow),
        "PIXEL_SIZE": "0.1",
        "TIME": "1.5",
        "DISTANCE": "250.0",
        "OSC_START": str(start),
        "OSC_RANGE": str(width),
        "WAVELENGTH": "1.5418",
        "BEAM_CENTER_X": "0.3",
        "BEAM_CENTER_Y": "0.2",
        "DETECTOR_SN": "926",
    }
    text = "{\n" + "".join(f"{k}={v};\n" for k, v in fields.items()) + "}\n"
    head = text.encode().ljust(512, b" ")
    data = np.arange(slow * fast, dtype="<u2").reshape(slow, fast)
    data[0, 0] = 65535
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(head + data.tobytes())
    return path
