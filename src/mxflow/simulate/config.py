"""The simulator's knobs (:class:`SimulationConfig`) and results."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from mxflow.model import ImageSweep, UnitCell


@dataclass
class SimulationConfig:
    """Every knob of :func:`mxflow.simulate.simulate`, with defaults for a fast, realistic demo.

    Units: Å, degrees, mm; detector sizes in pixels (fast, slow).
    """

    # --- what to write
    format: Literal["cbf", "eiger", "smv"] = "cbf"
    # plain: OUT/<prefix>_<NN>_######.cbf; zoo: ZOO pins; folders: OUT/<n>/00001.img (n = 1, 2, …)
    layout: Literal["plain", "zoo", "folders"] = "plain"
    prefix: str = "sim"  # plain layout: <prefix>_<NN>_######.cbf
    zoo_mode: Literal["multi", "single", "helical"] = "multi"
    zoo_puck: str = "CPS0001"
    pins: int = (
        1  # zoo multi: crystals spread in order over pins <puck>-01 … -NN (a raster on each)
    )
    n_crystals: int = 1
    frames: int = 60  # frames per crystal (sweep or wedge)
    osc_width: float = 0.5  # degrees per frame
    osc_start: float | None = None  # degrees; None: a random start per crystal
    exposure: float = 0.1  # s per frame
    seed: int = 0
    # --- crystal
    space_group: str = "P 21 21 21"
    unit_cell: UnitCell = (54.0, 62.0, 71.0, 90.0, 90.0, 90.0)
    d_min: float = 1.8  # Å, highest resolution of simulated reflections
    b_atom: float = 20.0  # Å², mean atomic B of the random model
    mosaicity: float = 0.05  # degrees, Gaussian σ of the rocking curve
    divergence: float = 0.02  # degrees, σ of beam divergence
    crystal_scale_range: tuple[float, float] = (0.5, 2.0)  # log-uniform per crystal
    crystal_b_range: tuple[float, float] = (0.0, 8.0)  # Å², extra B per crystal
    # anomalous scatterers (None: Friedel's law holds); f′/f″ at `wavelength` from gemmi
    heavy_atom: str | None = None  # element symbol, e.g. "Zn"
    n_sites: int = 2  # heavy-atom sites per asymmetric unit
    counts_at_dmin: float = 7.0  # mean full-reflection counts at d_min (scale 1, before LP)
    # --- radiation damage (per degree of rotation from the start of the sweep)
    damage_b_per_deg: float = 0.0  # Å² per degree
    damage_scale_per_deg: float = 0.0  # fractional intensity loss per degree
    # --- heterogeneity
    n_populations: int = 1  # non-isomorphous populations (A, B, ...)
    population_cell_change: float = (
        0.02  # fractional change of a (and b if tetragonal ...) per population
    )
    population_perturb: float = 0.3  # fraction of atoms moved in each further population
    random_indexing: bool = (
        True  # when the lattice allows alternative indexings, pick one at random
    )
    # --- beam and detector
    wavelength: float = 1.0  # Å
    distance: float = 150.0  # mm
    detector_size: tuple[int, int] = (981, 1043)  # pixels (fast, slow): PILATUS 1M
    pixel_size: float = 0.172  # mm
    beam_center: tuple[float, float] | None = None  # px (fast, slow); None: near the centre
    sensor_thickness: float = 0.45  # mm of silicon (parallax)
    psf_px: float = 0.5  # detector point-spread σ, pixels
    background: float = 3.0  # counts per pixel per frame (low angle)
    solvent_ring: float = 2.0  # extra counts per pixel at the peak of the 3.2 Å ring
    module_gaps: bool = True
    inelastic_halo: float = 0.0  # counts per pixel at the beam (electrons: inelastic scatter)
    inelastic_halo_width: float = 0.025  # Å⁻¹, Gaussian σ of the halo in s = 1/d
    # --- raster scans (ZOO scan00/; plain layout: OUT/scan00/)
    raster_grid: tuple[int, int] | None = None  # (rows, columns) of stills; None: no raster scan
    raster_hit_fraction: float = 0.3
    # --- geometry the headers do not tell (defaults: X-ray, headers tell the truth)
    rotation_axis: tuple[float, float, float] = (1.0, 0.0, 0.0)  # true axis, DIALS lab frame
    # the axis the image format implies (what dxtbx assumes), recorded in the truth; None: true one
    format_rotation_axis: tuple[float, float, float] | None = None
    polarization_fraction: float = 0.999  # of the beam, in the plane normal to +y; 0.5 unpolarised
    distance_spread: float = 0.0  # per-crystal true distance: distance·(1 + U(−x, x))
    cell_spread: float = 0.0  # per-crystal cell edges: each ·(1 + U(−x, x)), lattice kept
    header_distance: float | None = None  # written to the headers; None: the true distance
    header_distance_unit: Literal["mm", "m"] = "mm"  # unit header_distance is meant in
    # spot size on the detector: "xray" one σ for all spots (divergence + mosaicity at
    # the distance); "resolution" σ grows with 1/d as the diffracted ray's rocking does
    spot_size_model: Literal["xray", "resolution"] = "xray"
    detector_name: str | None = None  # None: the simulated PILATUS 1M
    smv_beamline: str = ""  # SMV BEAMLINE= header value (TimePix_SU selects dxtbx's class)

    def __post_init__(self) -> None:
        if self.frames < 1 or self.n_crystals < 1:
            raise ValueError("frames and n_crystals must be at least 1")
        if self.osc_width <= 0:
            raise ValueError("osc_width must be positive for rotation sweeps")
        if len(self.unit_cell) != 6:
            raise ValueError("unit_cell needs 6 numbers a,b,c,alpha,beta,gamma")
        if self.heavy_atom is not None:
            import gemmi

            if gemmi.Element(self.heavy_atom).atomic_number == 0:
                raise ValueError(f"heavy atom {self.heavy_atom!r} is not an element symbol")
            if self.n_sites < 1:
                raise ValueError("n_sites must be at least 1 with a heavy atom")
        if not 0.0 <= self.distance_spread < 1.0 or not 0.0 <= self.cell_spread < 1.0:
            raise ValueError("distance_spread and cell_spread are fractions in [0, 1)")
        if len(self.rotation_axis) != 3 or not any(self.rotation_axis):
            raise ValueError("rotation_axis needs 3 numbers, not all zero")
        if self.format == "smv" and self.module_gaps:
            raise ValueError("SMV frames are unsigned: simulate them with module_gaps=False")
        self.unit_cell = tuple(float(x) for x in self.unit_cell)  # type: ignore[assignment]
        self.rotation_axis = tuple(float(x) for x in self.rotation_axis)  # type: ignore[assignment]


@dataclass
class SimulationResult:
    """What :func:`simulate` wrote: the sweeps (as mxflow ImageSweep) and the truth directory."""

    out_dir: Path
    sweeps: list[ImageSweep]
    truth_dir: Path
    truth_json: Path
    raster_dir: Path | None = None  # the first pin's raster scan
    raster_dirs: list[Path] = field(default_factory=list)  # every pin's
    wall_s: float = 0.0
    n_frames: int = 0
    crystals: list[dict] = field(default_factory=list)


# The DIALS "MyD88 small wedges" MicroED data (Stockholm Timepix, SMV files converted
# by RED): what its headers say and what the refined geometry turned out to be.
TIMEPIX_FORMAT_AXIS = (0.7826, -0.6226, 0.0)  # dxtbx FormatSMVTimePix_SU_516x516's fixed axis
MYD88_TRUE_AXIS = (-0.628, -0.778, 0.0)  # refined axis of dataset 1, DIALS lab frame
MYD88_HEADER_DISTANCE_M = 2.193  # DISTANCE= in the headers, in metres (dxtbx reads mm)
MYD88_DISTANCE_MM = 1772.5  # refined distance of dataset 1 (the 18 sets: 1740-1810 mm)


def electron_config(**overrides) -> SimulationConfig:
    """A MicroED preset modelled on the MyD88 small wedges (DIALS tutorial).

    λ = 0.0251 Å with an unpolarised beam; a 516 × 516 Timepix of 0.055 mm pixels
    written as SMV that dxtbx reads as FormatSMVTimePix_SU_516x516; the true
    rotation axis (−0.628, −0.778, 0) differs from the format's (0.7826, −0.6226, 0);
    the header distance is 2.193 (metres, read by dxtbx as mm) while each crystal's
    true distance is 1772.5 mm ± 1 % (uniform); C 2, cell 99.06 31.01 54.30 90 107.7 90
    ± 0.3 % per edge per crystal, d_min 2.5 Å; 72 frames of 0.9149° and 2 s; rocking
    width σ 0.5°, beam divergence 0.0005°.  Layout OUT/<n>/00001.img … .
    ``overrides`` are any other :class:`SimulationConfig` fields.
    """
    values: dict = dict(
        format="smv",
        layout="folders",
        frames=72,
        osc_width=0.9149,
        exposure=2.0,
        space_group="C 1 2 1",
        unit_cell=(99.06, 31.01, 54.30, 90.0, 107.7, 90.0),
        d_min=2.5,
        mosaicity=0.5,
        divergence=0.0005,
        counts_at_dmin=0.4,  # the Lorentz factor of a flat Ewald sphere is ~100
        wavelength=0.0251,
        distance=MYD88_DISTANCE_MM,
        distance_spread=0.01,
        cell_spread=0.003,
        header_distance=MYD88_HEADER_DISTANCE_M,
        header_distance_unit="m",
        rotation_axis=MYD88_TRUE_AXIS,
        format_rotation_axis=TIMEPIX_FORMAT_AXIS,
        polarization_fraction=0.5,
        detector_size=(516, 516),
        pixel_size=0.055,
        beam_center=(228.875, 235.78),
        sensor_thickness=0.0,
        psf_px=0.6,
        background=2.0,
        solvent_ring=0.5,
        inelastic_halo=20.0,
        module_gaps=False,
        spot_size_model="resolution",
        detector_name="TimePix_SU 516x516 (mxflow simulation)",
        smv_beamline="TimePix_SU",
    )
    values.update(overrides)
    return SimulationConfig(**values)
