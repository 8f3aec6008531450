"""The one data model every mxflow stage shares.

Stages talk to each other through these dataclasses and through files on
disk (each dataclass round-trips through plain JSON with :func:`to_dict` /
``from_dict``).  Conventions used throughout mxflow:

* lengths in Å (cell edges, wavelength, d-spacings), angles in degrees;
* detector distance and pixel size in mm, beam centre in pixels
  (fast, slow) measured from the corner of the first pixel, as in the
  PILATUS / dxtbx convention;
* rotation angles in degrees, ``osc_start`` is the start of the first frame;
* frame numbers are the image numbers on disk (1-based for CBF templates);
* s = 1/d (Å⁻¹); resolution-shell tables run from low to high resolution;
* paths stored in summaries are relative to the output directory.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

UnitCell = tuple[float, float, float, float, float, float]
Status = Literal["ok", "failed", "pending", "running", "skipped"]


@dataclass
class ImageSweep:
    """A run of detector frames on disk, as read from the image headers.

    ``template`` is a path with the frame number replaced by ``#`` characters
    (``/data/x_######.cbf``) for one-file-per-frame formats, or the path of the
    master / NeXus file for Eiger HDF5 data.  ``first``..``last`` is the
    inclusive frame range present; ``missing`` lists frame numbers in that
    range that are absent or unreadable.
    """

    template: str
    format: Literal["cbf", "eiger", "smv"]
    first: int
    last: int
    wavelength: float  # Å
    distance: float  # mm
    beam_center: tuple[float, float]  # px (fast, slow)
    pixel_size: tuple[float, float]  # mm (fast, slow)
    image_size: tuple[int, int]  # pixels (fast, slow)
    osc_start: float  # degrees, start of frame `first`
    osc_width: float  # degrees per frame (0 for a still / raster scan)
    exposure: float = 0.0  # s per frame
    detector: str = ""
    missing: list[int] = field(default_factory=list)

    @property
    def n_frames(self) -> int:
        return self.last - self.first + 1

    @property
    def total_rotation(self) -> float:
        """Total rotation in degrees covered by the frame range."""
        return self.n_frames * self.osc_width

    @property
    def is_rotation(self) -> bool:
        """True for a rotation sweep, False for stills / raster / zero-oscillation scans."""
        return self.osc_width > 1e-6 and self.n_frames > 1

    def frame_path(self, number: int) -> str:
        """The file holding frame ``number`` (the master file for HDF5 data)."""
        if self.format == "eiger":
            return self.template
        n = self.template.count("#")
        if n == 0:
            return self.template
        return self.template.replace("#" * n, f"{number:0{n}d}")

    def half_corner_resolution(self) -> float:
        """d (Å) at half the distance from the beam centre to the detector corner.

        The ZOO convention for the starting resolution of merging: radius
        = (√5/2)·(min_dim/2) for the smaller detector dimension, 2θ =
        atan(radius / distance), d = λ / (2 sin θ).
        """
        min_dim = min(
            self.image_size[0] * self.pixel_size[0], self.image_size[1] * self.pixel_size[1]
        )
        radius = math.sqrt(5) / 2 * (min_dim / 2)
        two_theta = math.atan2(radius, self.distance)
        return self.wavelength / (2 * math.sin(two_theta / 2))


@dataclass
class Dataset:
    """One unit of processing: a sweep, or a wedge (frame sub-range) of a sweep."""

    name: str
    sweep: ImageSweep
    sample: str = ""
    mode: str = "single"  # "single" | "helical" | "multi" | "other"
    wedge: tuple[int, int] | None = None  # inclusive frame range when this is a wedge
    anomalous: bool = False
    space_group: str | None = None
    unit_cell: UnitCell | None = None
    reference_mtz: str | None = None

    @property
    def frames(self) -> tuple[int, int]:
        """Inclusive frame range processed for this dataset."""
        return self.wedge if self.wedge else (self.sweep.first, self.sweep.last)

    @property
    def wedge_label(self) -> str:
        return "full" if self.wedge is None else f"{self.wedge[0]}-{self.wedge[1]}"


@dataclass
class ProcessingOptions:
    """User choices for per-dataset processing (all optional)."""

    nproc: int = 1
    space_group: str | None = None
    unit_cell: UnitCell | None = None
    d_min: float | None = None  # Å
    anomalous: bool = False
    # geometry overrides passed to dials.import (MyD88-style headers)
    distance: float | None = None  # mm
    beam_center: tuple[float, float] | None = None  # mm (fast, slow) as dials.import wants
    rotation_axis: tuple[float, float, float] | None = None


@dataclass
class StepRecord:
    """What one engine program did: command line, log, exit status, wall time."""

    name: str
    command: list[str]
    log: str  # path of the log file, relative to the dataset working directory
    returncode: int | None = None
    wall_s: float = 0.0
    skipped: bool = False  # outputs were already complete from an earlier run
    note: str = ""


@dataclass
class ShellStats:
    """Merging statistics of one resolution shell (or overall).

    d_max / d_min in Å; completeness and R values as fractions (0–1);
    cc_half and cc_ano as Pearson correlations; i_over_sigma is ⟨I/σ(I)⟩ of
    merged reflections; sig_ano is ⟨|ΔI|/σ(ΔI)⟩ over acentric pairs.
    """

    d_max: float
    d_min: float
    n_obs: int = 0
    n_unique: int = 0
    n_possible: int = 0
    completeness: float = 0.0
    multiplicity: float = 0.0
    i_over_sigma: float = 0.0
    r_merge: float = math.nan
    r_meas: float = math.nan
    r_pim: float = math.nan
    cc_half: float = math.nan
    cc_ano: float = math.nan
    sig_ano: float = math.nan
    n_ano: int = 0


@dataclass
class MergingStats:
    """Per-shell table plus overall / inner / outer rows (the CORRECT.LP table)."""

    shells: list[ShellStats]
    overall: ShellStats
    space_group: str = ""
    unit_cell: UnitCell | None = None
    anomalous: bool = False

    @property
    def inner(self) -> ShellStats:
        return self.shells[0]

    @property
    def outer(self) -> ShellStats:
        return self.shells[-1]


@dataclass
class DatasetResult:
    """Outcome of processing one dataset; the rows of OUT/summary.json."""

    name: str
    path: str
    status: Status = "pending"
    reason: str = ""
    sample: str = ""
    mode: str = ""
    wedge: str = "full"
    space_group: str | None = None
    # what the axial reflections cannot decide about the space group (mxflow.stats.absences),
    # and why a given space group was not used
    space_group_note: str | None = None
    # the space group given for this dataset, when processing found it did not fit
    given_space_group_rejected: str | None = None
    unit_cell: list[float] | None = None
    d_min: float | None = None
    stats: dict[str, Any] | None = None
    unmerged_mtz: str | None = None
    merged_mtz: str | None = None
    integrated_expt: str | None = None
    integrated_refl: str | None = None
    workdir: str | None = None
    wavelength: float | None = None
    total_rotation: float | None = None
    osc_width: float | None = None
    indexed_fraction: float | None = None
    wall_s: float = 0.0
    steps: list[StepRecord] = field(default_factory=list)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DatasetResult:
        d = dict(d)
        d["steps"] = [StepRecord(**s) for s in d.get("steps", [])]
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


def to_dict(obj: Any) -> Any:
    """Plain JSON-ready dict of a dataclass (NaN becomes None)."""

    def clean(v: Any) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [clean(x) for x in v]
        if isinstance(v, Path):
            return str(v)
        return v

    return clean(dataclasses.asdict(obj))
