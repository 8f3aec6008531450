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
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar, Union

from mxflow.util.files import json_ready

UnitCell = tuple[float, float, float, float, float, float]
#: wavelengths shorter than this (Å) are electrons (200–300 kV: 0.025–0.020 Å; X-rays > 0.3 Å)
ELECTRON_MAX_WAVELENGTH = 0.1
T = TypeVar("T")
Status = Literal["ok", "failed", "pending", "running", "skipped"]


def is_electron_wavelength(wavelength: float | None) -> bool:
    """True for electron diffraction: 0 < ``wavelength`` < ELECTRON_MAX_WAVELENGTH Å."""
    return wavelength is not None and 0 < wavelength < ELECTRON_MAX_WAVELENGTH


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
    def is_electron(self) -> bool:
        """True for electron diffraction (:func:`is_electron_wavelength`)."""
        return is_electron_wavelength(self.wavelength)

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
    free_flags_mtz: str | None = None  # MTZ whose FreeR_flag column the merged files take
    heavy_atom: str | None = None  # element symbol of the anomalous scatterer (sheet / CLI)
    n_sites: int | None = None  # expected number of heavy-atom sites per ASU

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
    heavy_atom: str | None = None  # element symbol (xia2's atom=): turns anomalous on
    # geometry overrides passed to dials.import (MyD88-style headers)
    distance: float | None = None  # mm
    beam_center: tuple[float, float] | None = None  # mm (fast, slow) as dials.import wants
    rotation_axis: tuple[float, float, float] | None = None
    # spot finding: ignore spots of lower resolution than this (Å; beam stop, inelastic
    # scatter around the direct beam); electron data default to ELECTRON_D_MAX
    d_max: float | None = None


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
    n_cc_ano: int = 0  # pairs CCano is computed from (both mates in both halves)
    # anomalous completeness / multiplicity (mxflow.stats.merging): acentric reflections with
    # both Bijvoet mates measured over the possible acentric ones; observations per mate
    anom_completeness: float = math.nan
    anom_multiplicity: float = math.nan
    # slope of the normal probability plot of ΔI/σ(ΔI) (1 for pure noise with right σ)
    anom_slope: float = math.nan


@dataclass
class MergingStats:
    """Per-shell table plus overall / inner / outer rows (the CORRECT.LP table)."""

    shells: list[ShellStats]
    overall: ShellStats
    space_group: str = ""
    unit_cell: UnitCell | None = None
    anomalous: bool = False

    @classmethod
    def one_shell(cls, shell: ShellStats, **kw: Any) -> MergingStats:
        """Statistics with a single shell (which is also the overall row)."""
        return cls([shell], shell, **kw)

    @property
    def inner(self) -> ShellStats:
        return self.shells[0]

    @property
    def outer(self) -> ShellStats:
        return self.shells[-1]


@dataclass
class AxisTrial:
    """One sense of the rotation axis tried by indexing (electron diffraction).

    ``axis``: lab-frame unit vector (DIALS convention); ``indexed_fraction``: of
    the strong spots; ``rmsd_x`` / ``rmsd_y`` in pixels and ``rmsd_z`` in images,
    of the reflections used in refinement; None when indexing failed (``note`` says why).
    """

    axis: tuple[float, float, float]
    indexed_fraction: float | None = None
    rmsd_x: float | None = None
    rmsd_y: float | None = None
    rmsd_z: float | None = None
    note: str = ""


@dataclass
class ElectronGeometry:
    """What the electron-diffraction geometry stage decided for one dataset
    (:mod:`mxflow.process.electron`).

    Distances in mm along the detector normal; axes lab-frame unit vectors; cells in
    Å and degrees.  ``header_distance`` is the header's number as written, and
    ``header_distance_unit`` how mxflow read it ("mm" or "m").  ``distance_used``: the
    distance indexing ran with (the header's, in mm); ``refined_distance``: refined
    against ``target_cell`` (restraints, distance free), None without a known cell.
    ``format_axis``: the axis the image format assumes; ``rotation_axis``: the one
    processing used (found from the spots, sense chosen by indexing);
    ``axis_found``: False when the search failed and the format's axis was kept.
    """

    header_distance: float
    header_distance_unit: str = "mm"
    distance_used: float = 0.0
    refined_distance: float | None = None
    format_axis: tuple[float, float, float] | None = None
    rotation_axis: tuple[float, float, float] | None = None
    axis_found: bool = False
    axis_change_deg: float | None = None  # angle between the format's axis and the one used
    trials: list[AxisTrial] = field(default_factory=list)
    target_cell: UnitCell | None = None
    restrained_cell: UnitCell | None = None
    notes: list[str] = field(default_factory=list)


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
    stats: MergingStats | None = None
    unmerged_mtz: str | None = None
    merged_mtz: str | None = None
    integrated_expt: str | None = None
    integrated_refl: str | None = None
    workdir: str | None = None
    wavelength: float | None = None
    total_rotation: float | None = None
    osc_width: float | None = None
    indexed_fraction: float | None = None
    # the fallbacks a step needed (too few reflections for DIALS's defaults), in plain
    # words: "integration: too few strong spots to model spot profiles (38 < 50, ...);
    # summation integration used" (mxflow.process.pipeline)
    fallbacks: list[str] = field(default_factory=list)
    # what processing noticed about anomalous scattering at this wavelength (absorption
    # edge nearby, f′/f″ of the heavy atom), in plain words (mxflow.stats.scatterers)
    anomalous_note: str | None = None
    # electron diffraction (λ < 0.1 Å): distance units, rotation axis, refined distance
    electron: ElectronGeometry | None = None
    wall_s: float = 0.0
    steps: list[StepRecord] = field(default_factory=list)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DatasetResult:
        return from_dict(cls, d)


# ---------------------------------------------------------------- merging
#: version of the ``merge_summary.json`` layout (:class:`MergeSummary`); raised on every
#: change that a reader of an older file would misread
MERGE_SCHEMA = 2  # 2: space_group is the sample's decided group (was dials.cosym's), extended/ runs


@dataclass
class Thresholds:
    """Which dendrogram nodes (clusters) to merge.  Defaults from KAMO / ZOO.

    min_completeness in %, min_multiplicity as a ratio, max_lcv in %,
    max_alcv in Å, max_height in linkage units; None disables a test.
    """

    min_completeness: float = 90.0
    min_multiplicity: float = 2.0
    max_lcv: float | None = None
    max_alcv: float | None = None
    max_height: float | None = None
    max_clusters: int = 10
    min_datasets: int = 1
    # skip a node inside an already chosen one that lacks at most max(1, this × its size)
    # of its datasets: near-identical data, and run_03 drops single bad datasets anyway
    near_duplicate: float | None = 0.1
    # merge budget: the chosen clusters' datasets add up to at most this many times the
    # datasets clustered (the root's), so that the merge stage grows linearly with the
    # collection; None: no budget (KAMO's behaviour, up to max_clusters full merges)
    max_merged: float | None = 3.0
    # anomalous merges only (KAMO's min_acmpl / min_aredun): anomalous completeness in %,
    # observations per Bijvoet mate; None disables the test
    min_anom_completeness: float | None = None
    min_anom_multiplicity: float | None = None


@dataclass
class MergeOptions:
    """User choices for merging one sample (d in Å)."""

    sample: str | None = None
    label: str = ""  # what tells this merge apart from others of the sample, e.g. "λ 0.9790 Å"
    anomalous: bool = False  # scale I+ and I- apart (dials.scale anomalous=True)
    heavy_atom: str | None = None  # element of the anomalous scatterer; implies anomalous
    n_sites: int | None = None  # expected heavy-atom sites per ASU (MTZ history, report)
    space_group: str | None = None
    reference: str | None = None  # reference MTZ: indexing setting and cell group
    free_flags: str | None = None  # MTZ whose FreeR_flag column every merged MTZ takes
    method: Literal["cc", "blend", "both"] = "cc"
    d_min: float | None = None  # starting resolution; default: detector half-corner
    cc_half_target: float = 0.5  # 0.3 is the xia2 choice
    thresholds: Thresholds = field(default_factory=Thresholds)
    cell_rel_length: float = 0.10  # cell grouping: relative edge tolerance
    cell_angle: float = 5.0  # cell grouping: angle tolerance, degrees
    min_common: int = 3  # common reflections a pair needs for a defined CC
    cc_d_min: float | None = None  # resolution limit for CC clustering (default: d start)
    reject_frames: bool = True  # run_02
    reject_datasets: bool = True  # run_03
    image_group: int = 10  # images per group for frame rejection
    min_delta_cc_half: float = 0.001  # ΔCC½ must also be below −this to reject (noise floor)
    fallback_largest: bool = True  # merge the largest cluster when none passes thresholds
    nproc: int = 1
    timeout: float | None = 3600.0  # s, per DIALS program


@dataclass
class Rejection:
    """A dataset (or part of one) left out of a merge, by which stage and why.

    ``stage``: "input", "cell", "symmetry", "cc", or for the rejections of a
    cluster's runs "<method>/cluster_NNNN/run_02" (bad image groups) and
    ".../run_03" (bad datasets).
    """

    name: str
    stage: str
    reason: str


@dataclass
class CCPair:
    """Intensity correlation of two datasets over their common reflections."""

    i: int
    j: int
    name_i: str
    name_j: str
    cc: float
    n_common: int


@dataclass
class NodeStats:
    """What a cluster would be, estimated before merging from its members' reflections.

    completeness in %, multiplicity as a ratio, LCV in %, aLCV in Å
    (linear cell variation, KAMO); cc_mean / cc_min over member pairs.
    """

    completeness: float
    multiplicity: float
    lcv: float
    alcv: float
    cc_mean: float = math.nan
    cc_min: float = math.nan


@dataclass
class DendrogramNode:
    """One merge node of a cluster dendrogram (scipy numbering: leaves 0..n−1, nodes n..2n−2).

    ``member_index``: positions of the members among the dendrogram's leaves;
    ``why_not``: the thresholds it missed, when it was not merged.
    """

    id: int
    children: list[int]
    height: float
    members: list[str]
    member_index: list[int]
    stats: NodeStats
    merged: bool = False
    why_not: str = ""


@dataclass
class Dendrogram:
    """A clustering of one sample's datasets (``dendrogram_<method>.json``)."""

    method: str  # "cc" (intensity correlation, Ward) or "blend" (cell parameters)
    leaves: list[str]
    nodes: list[DendrogramNode]


@dataclass
class AxisEvidence:
    """The axial reflections along one rotation axis of the point group.

    ``fold``: order of the rotation along the axis (2, 3, 4 or 6);
    ``n_axial``: axial reflections measured (index ≠ 0); ``tests``: per
    extinction test m the number of reflections it looks at, their mean I/σ
    and "absent" / "present" / "unknown" (none measured); ``verdict``:
    "screw" (extinctions seen), "no screw" (the reflections a screw would
    extinguish are present) or "undetermined" (some test has no reflections);
    ``assigned``: the largest m such that the assigned space group
    extinguishes axial reflections with index ≠ m·n (1: none).
    """

    axis: str
    fold: int
    n_axial: int
    tests: list[dict[str, Any]]
    verdict: str
    assigned: int


@dataclass
class SpaceGroupCandidate:
    """One space group the point group allows, scored by the axial reflections.

    ``probability``: the likelihood of the measured axial reflections under
    this candidate's extinctions, normalised over all candidates (0–1);
    ``screws``: the axes (a, b, c of the data's setting) along which it has a screw.
    """

    space_group: str
    probability: float
    screws: str


@dataclass
class SpaceGroupChoice:
    """The space group of a sample's merged data and why (``MergeSummary.space_group_choice``).

    ``point_group``: the symmorphic group of the Laue class found by
    dials.cosym / dials.symmetry, in the data's setting; ``space_group``:
    the chosen one, in its standard setting, written to every merged file;
    ``reindex``: the change of basis (hkl triplet) applied to get there
    ("h,k,l": none); ``undetermined``: axes whose screw the data cannot
    decide (then the point group is written and ``label`` says so).
    """

    point_group: str
    space_group: str
    reindex: str = "h,k,l"
    source: str = ""
    label: str = ""
    undetermined: list[str] = field(default_factory=list)
    candidates: list[SpaceGroupCandidate] = field(default_factory=list)
    axial: list[AxisEvidence] = field(default_factory=list)


@dataclass
class ResolutionFit:
    """Where CC½ falls to ``target``: the tanh fit CC½(s²) = ½[1 − tanh((s² − d0)/r)].

    ``s2`` (Å⁻², bin centres) and ``cc_half`` are the binned σ-τ CC½ the fit
    used; ``d_min`` (Å) is where the fit crosses ``target`` (the data limit
    when it never does; None without a fit); ``data_limit`` the highest
    resolution observed; ``d0``, ``r`` the fit (Å⁻²).
    """

    target: float
    d_min: float | None
    data_limit: float | None
    s2: list[float] = field(default_factory=list)
    cc_half: list[float] = field(default_factory=list)
    d0: float | None = None
    r: float | None = None
    note: str = ""


@dataclass
class MergeRun:
    """One scaling run of a cluster: run_01 (all), run_02 (bad image groups out), run_03."""

    name: str
    datasets: list[str]
    removed: list[Rejection] = field(default_factory=list)
    stats: MergingStats | None = None


@dataclass
class HeavyAtom:
    """The anomalous scatterer at one wavelength (mxflow.stats.scatterers).

    ``f_prime`` / ``f_double_prime`` in electrons (Cromer–Liberman, gemmi);
    ``edge_ev`` / ``energy_ev`` in eV; ``edge`` the absorption edge nearest
    below the energy (e.g. "K"), from xraydb's tables.
    """

    element: str
    energy_ev: float
    f_prime: float
    f_double_prime: float
    edge: str = ""
    edge_ev: float = math.nan
    n_sites: int | None = None
    note: str = ""


@dataclass
class AnomalousSignal:
    """How far the anomalous signal of a merged cluster goes (mxflow.stats.anomalous).

    ``d_ano`` (Å): high-resolution end of the shells whose CCano is at least
    ``cc_ano_target``, counted from the inner shell (None: not even the inner
    shell); the overall figures are those of the cluster's statistics.
    """

    cc_ano: float = math.nan
    sig_ano: float = math.nan
    anom_completeness: float = math.nan
    anom_multiplicity: float = math.nan
    anom_slope: float = math.nan
    d_ano: float | None = None
    cc_ano_target: float = 0.15
    heavy_atom: HeavyAtom | None = None
    note: str = ""


@dataclass
class ClusterResult:
    """One merged cluster: its runs, the final statistics and files.

    ``members``: datasets of the final run; ``node_members``: the dendrogram
    node's datasets (before run_02 / run_03); MTZ paths relative to the
    merge's working directory; d in Å; ``error`` non-empty when the cluster
    could not be merged (then the later fields are empty).
    """

    id: int
    method: str
    node_members: list[str]
    members: list[str] = field(default_factory=list)
    height: float = 0.0
    node_stats: NodeStats | None = None
    error: str = ""
    runs: list[MergeRun] = field(default_factory=list)
    final_run: str = ""
    space_group: str = ""
    space_group_note: str | None = None
    axial: list[AxisEvidence] = field(default_factory=list)
    unit_cell: UnitCell | None = None  # of the merged data (dials.merge's average cell)
    unit_cell_spread: UnitCell | None = None  # standard deviation over the members
    resolution: ResolutionFit | None = None
    d_cut: float | None = None  # where merged.mtz / unmerged.mtz were cut (None: not cut)
    resolution_case: str = (
        ""  # how the limit was reached: half-corner, extended to the corner, given
    )
    extended_to: float | None = None  # Å: the corner the final runs went to (None: not extended)
    aniso_best: float = math.nan  # Å, CC½ = 0.5 in the best of the a*, b*, c* cones
    aniso_worst: float = math.nan
    wilson_b: float = math.nan  # Å², dials.merge's maximum-likelihood Wilson B when it gave one
    wilson_b_source: str = ""  # "dials.merge", or why mxflow's own fall-off estimate is given
    stats: MergingStats | None = None  # of the final run, to its cut
    merged_mtz: str = ""
    unmerged_mtz: str = ""
    diagnostics: ClusterDiagnostics | None = None  # per image / per dataset, of the final run
    anomalous: AnomalousSignal | None = None  # anomalous merges only
    shelx_hkl: str = ""  # SHELX HKLF 4 file beside merged.mtz (anomalous merges)

    @property
    def ok(self) -> bool:
        return not self.error and self.stats is not None

    @property
    def d_min(self) -> float | None:
        """High-resolution limit (Å) of the merged data."""
        return self.stats.overall.d_min if self.stats else None

    @property
    def d_min_estimate(self) -> float | None:
        return self.resolution.d_min if self.resolution else None

    @property
    def cc_half(self) -> float:
        return self.stats.overall.cc_half if self.stats else math.nan

    @property
    def cc_half_outer(self) -> float:
        return self.stats.outer.cc_half if self.stats else math.nan

    @property
    def completeness(self) -> float:
        """Fraction (0–1) of the possible reflections to d_min."""
        return self.stats.overall.completeness if self.stats else math.nan

    @property
    def multiplicity(self) -> float:
        return self.stats.overall.multiplicity if self.stats else math.nan


@dataclass
class NotMerged:
    """A dendrogram node that was not merged, and why."""

    method: str
    id: int
    n_members: int
    why: str


@dataclass
class Ambiguity:
    """How the indexing ambiguity was resolved.

    ``operators``: the twin-law-like operators of the lattice (identity
    first); ``reference_op`` / ``reference_cc``: the operator that best
    matches the reference data; ``selective_breeding``: datasets whose best
    operator (Brehm & Diederichs) is not the identity, after dials.cosym.
    """

    operators: list[str]
    resolved_by: str = "dials.cosym"
    reference: str | None = None
    reference_op: str | None = None
    reference_cc: float | None = None
    selective_breeding_agrees: bool | None = None
    selective_breeding: dict[str, str] = field(default_factory=dict)


@dataclass
class MergeSummary:
    """Everything a merge of one sample decided (``merge_summary.json``, schema MERGE_SCHEMA).

    ``method`` is "cc", "blend" or "both"; a ``merge_<method>_...`` folder holds
    the summary of its own method.  ``steps``: every DIALS program of the
    merge, ``skipped`` when an earlier run's outputs were reused.  ``d_start``: starting resolution (Å);
    ``wavelength_range``: (min, max) λ of the inputs in Å.
    """

    sample: str
    method: str = "cc"
    label: str = ""
    schema: int = MERGE_SCHEMA
    n_inputs: int = 0
    d_start: float | None = None
    wavelength_range: tuple[float, float] | None = None
    space_group: str | None = None  # decided by dials.cosym / dials.symmetry on all datasets
    space_group_choice: SpaceGroupChoice | None = None  # from the axial reflections of all datasets
    ambiguity: Ambiguity | None = None
    options: MergeOptions | None = None  # what the merge was asked to do
    clusters: list[ClusterResult] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    not_merged: list[NotMerged] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    steps: list[StepRecord] = field(default_factory=list)  # engine steps, logs relative to workdir

    @property
    def ok(self) -> bool:
        """At least one cluster merged."""
        return any(c.ok for c in self.clusters)

    def failure_reason(self) -> str:
        """Why nothing merged, in words ("" when something did)."""
        if self.ok:
            return ""
        errors = [c.error for c in self.clusters if c.error]
        return "; ".join(errors + self.notes) or "no cluster could be merged"

    def for_method(self, method: str) -> MergeSummary:
        """The same summary with only the clusters and nodes of ``method``."""
        return dataclasses.replace(
            self,
            method=method,
            clusters=[c for c in self.clusters if c.method == method],
            not_merged=[n for n in self.not_merged if n.method == method],
        )


@dataclass
class MergeRecord:
    """A merge of ``mxflow run`` as the catalog keeps it.

    ``name``: route/sample[/λ]; ``inputs``: catalog keys of the datasets
    merged; ``workdir``: the merge's directory relative to OUT.
    """

    name: str
    status: Status
    reason: str = ""
    inputs: list[str] = field(default_factory=list)
    workdir: str = ""
    summary: MergeSummary | None = None


@dataclass
class LiveDataset:
    """One dataset of a live merge (:mod:`mxflow.merge.live`), as it was added.

    ``operator``: the reindexing applied (hkl triplet, ``h,k,l`` when none);
    ``operator_cc``: its CC to the running merge (None: the first dataset, or
    no choice to make); ``scale`` and ``relative_b`` (Å²) put its intensities on
    the running merge's: I·scale·exp(relative_b·s²/2), s = 1/d in Å⁻¹, so a
    positive ``relative_b`` means it fell off faster with resolution.
    ``status`` "used" or "left out" (``reason`` says why).  ``unmerged_mtz``
    relative to OUT; ``added``: Unix time it was added.
    """

    key: str
    name: str
    unmerged_mtz: str = ""
    status: Literal["used", "left out"] = "used"
    reason: str = ""
    operator: str = "h,k,l"
    operator_cc: float | None = None
    scale: float = 1.0
    relative_b: float = 0.0
    n_obs: int = 0
    unit_cell: list[float] | None = None  # as processed (Å, degrees)
    added: float = 0.0


@dataclass
class LiveMerge:
    """A sample's live merge: every processed dataset so far, updated one at a time.

    Provisional by construction (no cosym, DIALS scaling, clustering or
    rejection); the batch merge (:class:`MergeSummary`) is the result.
    ``d_min``: where CC½ falls to the target (Å); ``stats`` cut there;
    ``merged_mtz`` relative to OUT; ``updated``: Unix time of the last change;
    ``last_added``: the key of the dataset that changed it last.
    """

    sample: str
    route: str = "proc"
    space_group: str = ""
    unit_cell: list[float] | None = None
    datasets: list[LiveDataset] = field(default_factory=list)
    d_min: float | None = None
    cc_half_target: float = 0.5
    stats: MergingStats | None = None
    merged_mtz: str = ""
    updated: float = 0.0
    last_added: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def used(self) -> list[LiveDataset]:
        return [d for d in self.datasets if d.status == "used"]


# ---------------------------------------------------------------- serialisation
def to_dict(obj: Any) -> Any:
    """Plain JSON-ready dict of a dataclass (NaN becomes None)."""
    return json_ready(dataclasses.asdict(obj))


def from_dict(cls: type[T], data: Mapping[str, Any]) -> T:
    """The dataclass ``cls`` from what :func:`to_dict` wrote, nested types included.

    Unknown keys are ignored (files written by newer versions still read),
    missing keys take the field's default, and a null where the field is a
    plain ``float`` becomes NaN.
    """
    hints = typing.get_type_hints(cls)
    kwargs = {
        f.name: _convert(hints[f.name], data[f.name])
        for f in dataclasses.fields(cls)  # type: ignore[arg-type]
        if f.init and f.name in data
    }
    return cls(**kwargs)


def _convert(tp: Any, v: Any) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return v
    if origin in (Union, types.UnionType):
        if v is None:
            return None
        return _convert(next(a for a in args if a is not type(None)), v)
    if v is None:
        return math.nan if tp is float else None
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, v)  # type: ignore[arg-type]
    if origin is list:
        return [_convert(args[0], x) for x in v]
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], x) for x in v)
        return tuple(_convert(a, x) for a, x in zip(args, v, strict=True))
    if origin is dict:
        return {k: _convert(args[1], x) for k, x in v.items()}
    if tp is float:
        return float(v)
    return v


# ---------------------------------------------------------------- merge diagnostics
@dataclass
class ImageSeries:
    """Values per image group of one dataset of a merged cluster (:mod:`mxflow.merge.diagnostics`).

    Group ``n`` holds images ``first[n]``..``last[n]`` (inclusive, image numbers
    of the dataset's scan) and ``n_obs[n]`` observations.  ``scale``: the
    relative scale k of the fit ln g = ln k + B·s²/2 to dials.scale's
    inverse scale factors g (SCALEUSED) of the group; ``b``: its B in Å²
    (relative; falls with radiation damage); ``r_merge``: Σ|I − ⟨I⟩| / ΣI
    against the cluster's mean intensities (a fraction); ``i_over_sigma``:
    mean I/σ(I) of the group's unmerged observations; ``cc_rest``: Pearson CC
    of the group's mean intensities with those of the rest of the cluster
    (the group and all other observations as the two halves).  NaN where a
    group has too few observations for the value.
    """

    first: list[int] = field(default_factory=list)
    last: list[int] = field(default_factory=list)
    n_obs: list[int] = field(default_factory=list)
    scale: list[float] = field(default_factory=list)
    b: list[float] = field(default_factory=list)
    r_merge: list[float] = field(default_factory=list)
    i_over_sigma: list[float] = field(default_factory=list)
    cc_rest: list[float] = field(default_factory=list)

    @property
    def centre(self) -> list[float]:
        """Middle image number of each group."""
        return [(a + b) / 2 for a, b in zip(self.first, self.last, strict=True)]


@dataclass
class DatasetDiagnostics:
    """One dataset of a merged cluster: its completeness, ΔCC½ and per-image series.

    ``completeness`` in % of the cluster's possible reflections (alone);
    ``delta_cc_half`` = CC½(cluster) − CC½(cluster without this dataset), σ-τ,
    averaged over resolution bins (negative: the cluster is better without
    it); ``group_width``: images per point of ``images``.
    """

    name: str
    n_obs: int = 0
    n_unique: int = 0
    completeness: float = math.nan
    delta_cc_half: float = math.nan
    cc_half_without: float = math.nan
    group_width: int = 0
    images: ImageSeries = field(default_factory=ImageSeries)


@dataclass
class ClusterDiagnostics:
    """Per-image and per-dataset diagnostics of a cluster's final run (``ClusterResult.diagnostics``).

    Computed from ``<run>/scaled_unmerged.mtz`` between ``d_max`` and
    ``d_min`` (Å); ``run``: that run's folder below the cluster's folder
    (as :class:`MergeRun` names it, e.g. ``run_02``); ``cc_half``: σ-τ CC½
    of all of it averaged over resolution bins (the reference of the ΔCC½
    values); ``image_group``: the merge's images per group, ``min_obs``:
    observations a point should have on average (groups are widened to
    reach it); ``note``: why there is nothing to show, when so.
    ``completeness_order``: the datasets in order of decreasing completeness
    alone, and ``completeness_curve[n]`` the completeness (%) of the first
    n + 1 of them merged, of ``n_possible`` reflections; the last value is
    the cluster's completeness.
    """

    run: str
    d_min: float | None = None
    d_max: float | None = None
    image_group: int = 0
    min_obs: int = 0
    cc_half: float = math.nan
    n_possible: int = 0
    completeness_order: list[str] = field(default_factory=list)
    completeness_curve: list[float] = field(default_factory=list)
    datasets: list[DatasetDiagnostics] = field(default_factory=list)
    note: str = ""
