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
    format: Literal["cbf", "eiger"] = "cbf"
    layout: Literal["plain", "zoo"] = "plain"
    prefix: str = "sim"  # plain layout: <prefix>_<NN>_######.cbf
    zoo_mode: Literal["multi", "single", "helical"] = "multi"
    zoo_puck: str = "CPS0001"
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
    # --- raster scans (ZOO scan00/; plain layout: OUT/scan00/)
    raster_grid: tuple[int, int] | None = None  # (rows, columns) of stills; None: no raster scan
    raster_hit_fraction: float = 0.3

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
        self.unit_cell = tuple(float(x) for x in self.unit_cell)  # type: ignore[assignment]


@dataclass
class SimulationResult:
    """What :func:`simulate` wrote: the sweeps (as mxflow ImageSweep) and the truth directory."""

    out_dir: Path
    sweeps: list[ImageSweep]
    truth_dir: Path
    truth_json: Path
    raster_dir: Path | None = None
    wall_s: float = 0.0
    n_frames: int = 0
    crystals: list[dict] = field(default_factory=list)
