"""The simulator: random crystals → rotation images on disk + the truth.

:func:`simulate` draws everything from one seeded numpy Generator tree, so the
same configuration and seed give byte-identical files.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mxflow.model import ImageSweep, UnitCell
from mxflow.simulate import crystal as xtal
from mxflow.simulate import geometry as geo
from mxflow.simulate import physics
from mxflow.simulate.config import SimulationConfig, SimulationResult
from mxflow.simulate.header import detector_name, header_distance, image_header
from mxflow.simulate.raster import simulate_raster


@dataclass
class Population:
    """One crystal form: name, cell, true intensities and their outer-shell mean, and its
    anomalous scatterers (None without)."""

    name: str
    cell: UnitCell
    truth: xtal.TrueIntensities
    normaliser: float
    heavy: xtal.AnomalousScatterers | None = None


@dataclass
class CrystalSpec:
    """One simulated crystal and where its images go.

    ``cell`` is the crystal's own cell (Å, degrees: its population's, changed by
    ``cell_spread``) and ``distance_mm`` its true crystal-to-detector distance.
    """

    name: str
    population: Population
    U: np.ndarray
    scale: float
    b_extra: float
    indexing_op: str
    osc_start: float
    directory: Path
    prefix: str
    cell: UnitCell
    distance_mm: float


def make_detector(cfg: SimulationConfig) -> geo.Detector:
    """The detector of a configuration (beam centre slightly off the middle by default)."""
    nf, ns = cfg.detector_size
    bx, by = cfg.beam_center if cfg.beam_center else (nf / 2 + 3.3, ns / 2 - 4.7)
    mu = geo.silicon_mu_per_mm(cfg.wavelength) if cfg.sensor_thickness > 0 else 0.0
    return geo.Detector(
        n_fast=nf,
        n_slow=ns,
        pixel_mm=cfg.pixel_size,
        distance_mm=cfg.distance,
        beam_fast_px=bx,
        beam_slow_px=by,
        thickness_mm=cfg.sensor_thickness,
        mu_per_mm=mu,
    )


def background_for(cfg: SimulationConfig, det: geo.Detector) -> np.ndarray:
    """Expected background counts (slow, fast) of a frame for this configuration."""
    return physics.background_map(
        det,
        cfg.wavelength,
        cfg.background,
        cfg.solvent_ring,
        halo_level=cfg.inelastic_halo,
        halo_width=cfg.inelastic_halo_width,
    )


def population_cell(cfg: SimulationConfig, k: int) -> UnitCell:
    """Cell of population k: population 0 has cfg.unit_cell, the others a longer a axis
    (by k·population_cell_change), and b too when the lattice needs a = b."""
    a, b, c, al, be, ga = cfg.unit_cell
    f = 1.0 + k * cfg.population_cell_change
    import gemmi

    system = gemmi.SpaceGroup(cfg.space_group).crystal_system_str()
    if system in ("tetragonal", "trigonal", "hexagonal", "cubic"):
        b = b * f
    if system == "cubic":
        c = c * f
    return (a * f, b, c, al, be, ga)


def make_populations(cfg: SimulationConfig, rng: np.random.Generator) -> list[Population]:
    """Random models: population A from scratch, the others perturbed copies in a changed cell.

    With ``cfg.heavy_atom``, every population has the same ``cfg.n_sites`` heavy-atom
    sites (fractional coordinates), added after the perturbation.
    """
    import gemmi

    pops = []
    base = xtal.random_structure(cfg.unit_cell, cfg.space_group, rng, b_atom=cfg.b_atom)
    sites = rng.random((cfg.n_sites, 3)) if cfg.heavy_atom else None
    for k in range(cfg.n_populations):
        if k == 0:
            st = base.clone() if sites is not None else base
        else:
            st = xtal.perturb_structure(base, rng, cfg.population_perturb)
            st.cell = gemmi.UnitCell(*population_cell(cfg, k))
            st.setup_cell_images()
        heavy = None
        if cfg.heavy_atom and sites is not None:
            heavy = xtal.add_heavy_atoms(st, cfg.heavy_atom, sites, cfg.wavelength, cfg.b_atom)
        truth = xtal.structure_intensities(st, cfg.d_min, heavy)
        norm = physics.wilson_normaliser(truth.d, truth.intensity, cfg.d_min)
        pops.append(Population(chr(ord("A") + k), truth.cell, truth, norm, heavy))
    return pops


def multi_pin(cfg: SimulationConfig, i: int) -> int:
    """The pin (1-based) of crystal i (0-based) in the zoo multi layout: ``cfg.pins`` pins
    filled in order with as equal a number of crystals as possible."""
    pins = max(1, min(cfg.pins, cfg.n_crystals))
    return i * pins // cfg.n_crystals + 1


def crystal_location(cfg: SimulationConfig, out: Path, i: int) -> tuple[Path, str]:
    """Directory and file prefix of crystal i (0-based) for the chosen layout.

    plain: OUT/<prefix>_<NN>_######.cbf;  zoo multi: OUT/<puck>-<PP>/data00/multi_<NN>_…
    (``cfg.pins`` pins, crystals filled in order, pin 01 when one);
    zoo single / helical: OUT/<puck>-<NN>/data00/<mode>_…  (one pin per crystal).
    """
    n = i + 1
    if cfg.layout == "plain":
        return out, f"{cfg.prefix}_{n:02d}"
    if cfg.layout == "folders":
        return out / str(n), ""
    if cfg.zoo_mode == "multi":
        return out / f"{cfg.zoo_puck}-{multi_pin(cfg, i):02d}" / "data00", f"multi_{n:02d}"
    return out / f"{cfg.zoo_puck}-{n:02d}" / "data00", f"{cfg.zoo_mode}_{1:03d}"


def spread_cell(
    cell: UnitCell, space_group: str, spread: float, rng: np.random.Generator
) -> UnitCell:
    """``cell`` with each edge scaled by 1 + U(−spread, spread), then made to obey the
    lattice again (b = a for tetragonal / trigonal / hexagonal, c = a for cubic);
    angles unchanged.  ``spread`` 0 returns the cell itself without drawing."""
    if spread <= 0:
        return cell
    import gemmi

    a, b, c = (x * (1.0 + rng.uniform(-spread, spread)) for x in cell[:3])
    system = gemmi.SpaceGroup(space_group).crystal_system_str()
    if system in ("tetragonal", "trigonal", "hexagonal", "cubic"):
        b = a
    if system == "cubic":
        c = a
    return (a, b, c, *cell[3:])


def spread_distance(distance_mm: float, spread: float, rng: np.random.Generator) -> float:
    """A crystal's true distance (mm): distance·(1 + U(−spread, spread)); no draw at 0."""
    if spread <= 0:
        return distance_mm
    return float(distance_mm * (1.0 + rng.uniform(-spread, spread)))


def make_crystals(
    cfg: SimulationConfig,
    pops: list[Population],
    out: Path,
    rng: np.random.Generator,
    spread_rng: np.random.Generator | None = None,
) -> list[CrystalSpec]:
    """Draw orientation, scale, B, population and indexing setting of every crystal,
    and (from ``spread_rng``, so that the other draws do not change) its own cell and
    true distance."""
    ops = xtal.twin_operators(cfg.unit_cell, cfg.space_group)
    spread_rng = spread_rng or np.random.default_rng(0)
    specs = []
    lo, hi = np.log(cfg.crystal_scale_range[0]), np.log(cfg.crystal_scale_range[1])
    for i in range(cfg.n_crystals):
        pop = pops[i % len(pops)]
        U = geo.random_rotation(rng)
        scale = float(np.exp(rng.uniform(lo, hi)))
        b_extra = float(rng.uniform(*cfg.crystal_b_range))
        op = ops[int(rng.integers(len(ops)))] if cfg.random_indexing else ops[0]
        start = cfg.osc_start if cfg.osc_start is not None else float(rng.integers(0, 360))
        directory, prefix = crystal_location(cfg, out, i)
        name = prefix if directory == out else f"{directory.relative_to(out).parts[0]}_{prefix}"
        name = name.rstrip("_")
        cell = spread_cell(pop.cell, cfg.space_group, cfg.cell_spread, spread_rng)
        distance = spread_distance(cfg.distance, cfg.distance_spread, spread_rng)
        specs.append(
            CrystalSpec(name, pop, U, scale, b_extra, op, start, directory, prefix, cell, distance)
        )
    return specs


def crystal_spots(
    spec: CrystalSpec, cfg: SimulationConfig, det: geo.Detector
) -> tuple[np.ndarray, physics.SpotList]:
    """The crystal's A matrix and its diffraction events during its sweep.

    The indices are those of the crystal's own setting (A = U·B); the physical
    intensity of h is the truth at indexing_op(h).
    """
    cell = spec.cell
    A = spec.U @ geo.b_matrix(cell)
    hkl = physics.miller_indices(cell, cfg.d_min)
    true_i = spec.population.truth.lookup(xtal.apply_hkl_op(spec.indexing_op, hkl))
    keep = np.isfinite(true_i)
    hkl, true_i = hkl[keep], true_i[keep] / spec.population.normaliser
    phi_range = (spec.osc_start, spec.osc_start + cfg.frames * cfg.osc_width)
    idx, phi, sig_phi, x, y, lp = physics.predict_rotation(
        A,
        hkl,
        cfg.wavelength,
        det,
        phi_range,
        cfg.mosaicity,
        cfg.divergence,
        axis=cfg.rotation_axis,
        polarization_fraction=cfg.polarization_fraction,
    )
    bmat = geo.b_matrix(cell)
    v = hkl[idx] @ bmat.T
    s2 = np.einsum("ij,ij->i", v, v)
    dose = np.clip(phi - spec.osc_start, 0.0, None)
    damage = np.exp(-0.5 * cfg.damage_b_per_deg * dose * s2) * np.clip(
        1.0 - cfg.damage_scale_per_deg * dose, 0.0, None
    )
    full = (
        cfg.counts_at_dmin
        * spec.scale
        * true_i[idx]
        * np.exp(-0.5 * spec.b_extra * s2)
        * lp
        * damage
    )
    d = 1.0 / np.sqrt(s2)
    if cfg.spot_size_model == "resolution":
        sigma_px = physics.spot_width_by_resolution_px(
            cfg.mosaicity, cfg.divergence, det, cfg.psf_px, cfg.wavelength, d
        )
    else:
        sigma_px = np.full(
            len(idx), physics.spot_width_px(cfg.mosaicity, cfg.divergence, det, cfg.psf_px)
        )
    spots = physics.SpotList(hkl[idx], phi, sig_phi, x, y, sigma_px, full, d)
    order = np.argsort(spots.phi, kind="stable")
    return A, spots.take(order)


def frame_expected(
    spots: physics.SpotList, start: float, width: float, background: np.ndarray
) -> np.ndarray:
    """Expected counts of one rotation frame covering [start, start + width] degrees."""
    reach = 5.0 * float(spots.sigma_phi.max()) if len(spots) else 0.0
    lo = np.searchsorted(spots.phi, start - reach)
    hi = np.searchsorted(spots.phi, start + width + reach)
    sub = spots.take(np.arange(lo, hi))
    frac = geo.frame_fraction(sub.phi, sub.sigma_phi, start, width)
    counts = sub.full * frac
    on = counts > 0.02
    spot_img = physics.render_spots(
        background.shape, sub.x[on], sub.y[on], sub.sigma_px[on], counts[on]
    )
    return background + spot_img


def crystal_detector(det: geo.Detector, spec: CrystalSpec) -> geo.Detector:
    """The detector at the crystal's own true distance (the same object when unchanged)."""
    if spec.distance_mm == det.distance_mm:
        return det
    return dataclasses.replace(det, distance_mm=spec.distance_mm)


def _sweep_record(
    cfg: SimulationConfig, det: geo.Detector, template: str, osc_start: float, width: float, n: int
) -> ImageSweep:
    """The sweep as its headers describe it: for SMV the header distance as a reader
    that takes it for millimetres sees it (the truth has the real one)."""
    distance = header_distance(cfg, det) if cfg.format == "smv" else det.distance_mm
    return ImageSweep(
        template=template,
        format=cfg.format,
        first=1,
        last=n,
        wavelength=cfg.wavelength,
        distance=distance,
        beam_center=(det.beam_fast_px, det.beam_slow_px),
        pixel_size=(det.pixel_mm, det.pixel_mm),
        image_size=(det.n_fast, det.n_slow),
        osc_start=osc_start,
        osc_width=width,
        exposure=cfg.exposure,
        detector=detector_name(cfg),
    )


def simulate(out_dir: str | Path, config: SimulationConfig | None = None) -> SimulationResult:
    """Simulate ``config.n_crystals`` rotation sweeps (and an optional raster scan) under ``out_dir``.

    Writes the images (miniCBF or Eiger HDF5) and ``out_dir/truth/`` (truth.json and
    truth_<population>.mtz).  Deterministic for a given config (seed included).
    """
    from mxflow.simulate import truth as truth_io
    from mxflow.simulate.writers import make_writer

    t0 = time.perf_counter()
    cfg = config or SimulationConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # spawn(5)[:4] are the streams spawn(4) gave before the fifth (cell/distance spread)
    seeds = np.random.SeedSequence(cfg.seed).spawn(5)
    model_rng, crystal_rng, noise_seed, raster_seed = (
        np.random.default_rng(seeds[0]),
        np.random.default_rng(seeds[1]),
        seeds[2],
        seeds[3],
    )
    det = make_detector(cfg)
    pops = make_populations(cfg, model_rng)
    specs = make_crystals(cfg, pops, out, crystal_rng, np.random.default_rng(seeds[4]))
    background = background_for(cfg, det)
    gaps = (
        physics.pilatus_gap_mask(det.n_fast, det.n_slow)
        if cfg.module_gaps
        else np.zeros(background.shape, bool)
    )
    sweeps, records = [], []
    n_frames = 0
    for spec, child in zip(specs, noise_seed.spawn(len(specs)), strict=True):
        rng = np.random.default_rng(child)
        det_c = crystal_detector(det, spec)
        bg = background
        if det_c is not det:
            bg = background_for(cfg, det_c)
        A, spots = crystal_spots(spec, cfg, det_c)
        writer = make_writer(cfg.format, spec.directory, spec.prefix, cfg, det_c)
        for j in range(cfg.frames):
            start = spec.osc_start + j * cfg.osc_width
            expected = frame_expected(spots, start, cfg.osc_width, bg)
            img = physics.noisy_frame(expected, gaps, rng)
            writer.add(img, image_header(cfg, det_c, start, cfg.osc_width))
        template = writer.close()
        n_frames += cfg.frames
        sweep = _sweep_record(cfg, det_c, template, spec.osc_start, cfg.osc_width, cfg.frames)
        sweeps.append(sweep)
        geometry = truth_io.CrystalGeometry(
            rotation_axis=tuple(np.asarray(cfg.rotation_axis) / np.linalg.norm(cfg.rotation_axis)),
            format_rotation_axis=cfg.format_rotation_axis,
            distance_mm=det_c.distance_mm,
            header_distance=header_distance(cfg, det_c),
            header_distance_unit=cfg.header_distance_unit,
            wavelength=cfg.wavelength,
            beam_center_px=(det_c.beam_fast_px, det_c.beam_slow_px),
        )
        records.append(truth_io.crystal_record(spec, A, sweep, out, len(spots), geometry))
    raster_dirs, raster_records = [], []
    if cfg.raster_grid:
        n_pins = max(1, min(cfg.pins, cfg.n_crystals)) if cfg.zoo_mode == "multi" else 1
        pin_seeds = [raster_seed] if n_pins == 1 else raster_seed.spawn(n_pins)
        for pin, pin_seed in enumerate(pin_seeds, 1):
            raster_dir, raster_record = simulate_raster(
                out, cfg, det, pops, background, gaps, np.random.default_rng(pin_seed), pin
            )
            raster_dirs.append(raster_dir)
            raster_records.append(raster_record)
            n_frames += raster_record["n_frames"]
    truth_dir = out / "truth"
    truth_json = truth_io.write_truth(truth_dir, cfg, det, pops, records, raster_records, out)
    return SimulationResult(
        out_dir=out,
        sweeps=sweeps,
        truth_dir=truth_dir,
        truth_json=truth_json,
        raster_dir=raster_dirs[0] if raster_dirs else None,
        raster_dirs=raster_dirs,
        wall_s=time.perf_counter() - t0,
        n_frames=n_frames,
        crystals=records,
    )
