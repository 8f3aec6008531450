"""What `mxflow merge` accepts: mxflow output directories and plain DIALS integrated files.

* a directory holding ``summary.json`` (written by ``mxflow process``): every
  dataset with status ``ok`` and integrated ``.expt`` / ``.refl`` files;
  failed ones are listed as rejected with their recorded reason;
* ``.expt`` + ``.refl`` pairs (also the old ``*_experiments.json`` +
  ``*.pickle`` names), as xia2.multiplex accepts them;
* directories holding such pairs, searched recursively: one dataset per
  dataset folder, never a DIALS intermediate.  Inside an mxflow output
  directory (``OUT/proc``, ``OUT/proc_30deg/<pin>``, a dataset folder ...)
  the datasets recorded in ``OUT/summary.json`` (or a folder's
  ``mxflow_result.json``) under it; otherwise each folder's final pairs:
  ``integrated.expt`` / ``.refl`` (``NN_integrated_experiments.json`` /
  ``NN_integrated.pickle`` of the DIALS tutorials), else ``scaled`` ones,
  else pairs with names of their own; ``imported``, ``indexed``,
  ``refined``, ``bravais_setting_N``, ``reindexed`` and ``symmetrized``
  files never count.

An experiment identifier met twice (the same data given under two names)
is an error naming both files: dials.cosym cannot merge them.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from mxflow.engine.expt import Experiment, read_experiments
from mxflow.errors import BadInputError, MxflowError
from mxflow.model import DatasetResult, Rejection
from mxflow.stats.resolution import d_at_radius
from mxflow.util.files import read_json

#: what ``mxflow process`` / ``mxflow run`` write (OUT/summary.json, OUT/<dataset>/mxflow_result.json)
SUMMARY_FILE = "summary.json"
RESULT_FILE = "mxflow_result.json"

EXPT_SUFFIXES = (".expt", "_experiments.json")
REFL_SUFFIXES = (".refl", ".pickle")


@dataclass
class MergeInput:
    """One integrated dataset to merge (one experiment of one crystal).

    Cell in Å / degrees; half_corner_d in Å (ZOO starting resolution) when
    the detector geometry is known.
    """

    name: str
    expt: str
    refl: str
    unit_cell: tuple[float, ...]
    space_group: str
    wavelength: float = math.nan
    osc_width: float = math.nan  # degrees per image
    n_images: int = 0
    half_corner_d: float | None = None
    corner_d: float | None = None  # Å, the detector corner farthest from the beam
    sample: str = ""
    identifier: str = ""  # the DIALS experiment identifier ("" in files too old to have one)

    @property
    def total_rotation(self) -> float:
        """Wedge width in degrees."""
        return self.osc_width * self.n_images


#: wavelengths (Å) closer than this belong to one group (a monochromator's reproducibility)
WAVELENGTH_TOLERANCE = 0.0005


def wavelength_groups(
    wavelengths: list[float], tol: float = WAVELENGTH_TOLERANCE
) -> list[list[int]]:
    """Indices of ``wavelengths`` (Å) grouped into runs no wider than gaps of ``tol``, by λ.

    Unknown (NaN / None) wavelengths join the largest group.  One group
    means one wavelength; data of several wavelengths (MAD, or peak and
    remote of a SAD experiment) are merged separately.
    """
    known = sorted(
        (float(w), i) for i, w in enumerate(wavelengths) if w is not None and math.isfinite(w)
    )
    groups: list[list[int]] = []
    last = None
    for w, i in known:
        if last is None or w - last > tol:
            groups.append([])
        groups[-1].append(i)
        last = w
    unknown = [i for i, w in enumerate(wavelengths) if w is None or not math.isfinite(w)]
    if unknown:
        if groups:
            max(groups, key=len).extend(unknown)
        else:
            groups.append(unknown)
    return [sorted(g) for g in groups]


def half_corner_d(exp: Experiment) -> float | None:
    """ZOO's half-corner resolution (Å) from an experiment's detector geometry."""
    if not (exp.image_size and exp.pixel_size and exp.distance and exp.wavelength):
        return None
    min_dim = min(exp.image_size[0] * exp.pixel_size[0], exp.image_size[1] * exp.pixel_size[1])
    return d_at_radius(math.sqrt(5) / 2 * (min_dim / 2), exp.distance, exp.wavelength)


def corner_d(exp: Experiment) -> float | None:
    """Resolution (Å) at the detector corner farthest from the beam (flat detector, normal
    to the beam; the beam at the image centre when its position is unknown)."""
    if not (exp.image_size and exp.pixel_size and exp.distance and exp.wavelength):
        return None
    w, h = exp.image_size
    bx, by = exp.beam_center or (w / 2, h / 2)
    dx = max(bx, w - bx) * exp.pixel_size[0]
    dy = max(by, h - by) * exp.pixel_size[1]
    return d_at_radius(math.hypot(dx, dy), exp.distance, exp.wavelength)


def _stem(path: Path) -> str:
    name = path.name
    for suf in (*EXPT_SUFFIXES, *REFL_SUFFIXES):
        if name.endswith(suf):
            name = name[: -len(suf)]
            break
    return str(path.parent / name)


def _partner_refl(expt: Path) -> Path | None:
    stem = _stem(expt)
    candidates = [Path(stem + s) for s in REFL_SUFFIXES]
    # DIALS' usual pairs: integrated.expt / integrated.refl, NN_integrated_experiments.json / NN_integrated.pickle
    return next((c for c in candidates if c.exists()), None)


def _from_pair(name: str, expt: Path, refl: Path, sample: str = "") -> list[MergeInput]:
    exps = read_experiments(expt)
    out = []
    for k, e in enumerate(exps):
        if e.unit_cell is None:
            raise BadInputError(expt, f"experiment {k} has no crystal model (not integrated?)")
        label = name if len(exps) == 1 else f"{name}#{k}"
        osc = e.oscillation[1] if e.oscillation else math.nan
        out.append(
            MergeInput(
                name=label,
                expt=str(expt),
                refl=str(refl),
                unit_cell=tuple(e.unit_cell),
                space_group=e.space_group or "P 1",
                wavelength=e.wavelength or math.nan,
                osc_width=osc,
                n_images=e.n_images,
                half_corner_d=half_corner_d(e),
                corner_d=corner_d(e),
                sample=sample,
                identifier=e.identifier,
            )
        )
    return out


def _unique_name(name: str, used: set[str]) -> str:
    base, k = name, 2
    while name in used:
        name = f"{base}_{k}"
        k += 1
    used.add(name)
    return name


@dataclass
class _Found:
    """What :func:`collect_inputs` has found so far (names made unique as they come)."""

    sample: str | None
    inputs: list[MergeInput] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    used: set[str] = field(default_factory=set)
    seen: set[Path] = field(default_factory=set)

    def add_pair(self, expt: Path, refl: Path | None, name: str, sample: str = "") -> None:
        """Every experiment of one .expt/.refl pair (each file once), by absolute path: the
        DIALS steps run in folders of their own."""
        expt = expt.resolve()
        refl = refl.resolve() if refl is not None else None
        if expt in self.seen:
            return
        self.seen.add(expt)
        if refl is None:
            self.rejected.append(Rejection(name, "input", f"{expt}: no matching reflection file"))
            return
        try:
            found = _from_pair(name, expt, refl, sample)
        except BadInputError as exc:
            self.rejected.append(Rejection(name, "input", str(exc)))
            return
        for item in found:
            item.name = _unique_name(item.name, self.used)
            self.inputs.append(item)

    def add_result(self, res: DatasetResult, root: Path | None) -> None:
        """One processed dataset (paths relative to ``root`` unless absolute), by its own name."""
        if self.sample and res.sample and res.sample != self.sample:
            return
        if res.status != "ok":
            why = res.reason or f"status {res.status}"
            self.rejected.append(Rejection(res.name, "input", f"processing: {why}"))
            return
        if not res.integrated_expt or not res.integrated_refl:
            self.rejected.append(Rejection(res.name, "input", "no integrated .expt/.refl recorded"))
            return
        expt, refl = Path(res.integrated_expt), Path(res.integrated_refl)
        if not expt.is_absolute() and root is not None:
            expt, refl = root / expt, root / refl
        if not expt.exists() or not refl.exists():
            self.rejected.append(Rejection(res.name, "input", f"missing file {expt} or {refl}"))
            return
        self.add_pair(expt, refl, res.name, res.sample)

    def add_summary(self, root: Path, under: Path | None = None) -> None:
        """Every dataset of an mxflow output directory's summary.json (only those whose work
        directory lies in ``under``, when given)."""
        results = [
            r for r in _summary_results(root) if under is None or _workdir_under(r, root, under)
        ]
        whole = {r.path for r in results if r.wedge == "full"}
        for res in results:
            if res.wedge != "full" and res.path in whole:
                # the whole output directory: a wedge cut from a sweep that is also there
                # would merge the same images twice
                self.rejected.append(
                    Rejection(
                        res.name,
                        "input",
                        f"wedge {res.wedge} of a sweep also given whole (its images are merged "
                        "through the sweep; give the wedges' folder, e.g. OUT/proc_30deg, to "
                        "merge the wedges instead)",
                    )
                )
                continue
            self.add_result(res, root)

    def add_tree(self, root: Path) -> None:
        """One dataset per dataset folder below ``root`` (merge outputs left out): the
        datasets an enclosing mxflow output directory recorded there, else each folder's
        own result or final pairs (see the module docstring)."""
        out = _enclosing_output(root)
        if out is not None:
            self.add_summary(out, under=root)
            return
        folders: dict[Path, list[Path]] = {}
        for suf in EXPT_SUFFIXES:
            for q in root.rglob(f"*{suf}"):
                if not _in_merge_output(q, root):
                    folders.setdefault(q.parent, []).append(q)
        if not folders:
            raise BadInputError(root, "no summary.json and no .expt / *_experiments.json files")
        for folder in sorted(folders):
            self.add_folder(folder, sorted(folders[folder]), root)

    def add_folder(self, folder: Path, expts: list[Path], root: Path) -> None:
        """The dataset(s) of one folder: its mxflow result, else its final pairs."""
        res = _folder_result(folder)
        if res is not None:
            self.add_result(res, _output_of(folder, res))
            return
        ranked = [(_rank(q), q) for q in expts]
        best = min((r for r, _ in ranked if r is not None), default=None)
        if best is None:
            name = _folder_name(folder, root)
            files = ", ".join(q.name for q in expts)
            self.rejected.append(
                Rejection(
                    name,
                    "input",
                    f"{folder}: no integrated .expt/.refl, only DIALS intermediates ({files}): "
                    "not processed to the end?",
                )
            )
            return
        for rank, q in ranked:
            if rank == best:
                self.add_pair(q, _partner_refl(q), _name_for(q, root))

    def check_identifiers(self) -> None:
        """Raise BadInputError when two inputs hold an experiment of the same identifier."""
        first: dict[str, MergeInput] = {}
        for item in self.inputs:
            if not item.identifier:
                continue
            seen = first.setdefault(item.identifier, item)
            if seen is not item:
                raise BadInputError(
                    item.expt,
                    f"experiment identifier {item.identifier} is also in {seen.expt} "
                    f"({seen.name} and {item.name} are the same data given twice; "
                    "give each dataset once)",
                )


def collect_inputs(
    paths: list[str | Path | DatasetResult], sample: str | None = None
) -> tuple[list[MergeInput], list[Rejection]]:
    """Datasets found in ``paths`` and the ones that cannot be used, with reasons.

    Returns (inputs, rejections of stage "input").  ``sample`` keeps only datasets
    of that sample when an mxflow summary says which sample each belongs to.
    ``paths`` may also hold DatasetResult objects with absolute file paths
    (what ``mxflow run`` passes): they keep their dataset names.  An .expt
    followed by a .refl is one pair.  Raises BadInputError for a path that is
    none of the accepted kinds, and when two inputs hold the same experiment
    (by its DIALS identifier), naming both files.
    """
    found = _Found(sample)
    pending = [p if isinstance(p, DatasetResult) else Path(p) for p in paths]
    i = 0
    while i < len(pending):
        p = pending[i]
        i += 1
        if isinstance(p, DatasetResult):  # from the collection runner: keeps its full name
            found.add_result(p, None)
        elif p.is_dir() and (p / SUMMARY_FILE).exists():
            found.add_summary(p)
        elif p.is_dir():
            found.add_tree(p)
        elif p.name.endswith(EXPT_SUFFIXES):
            nxt = pending[i] if i < len(pending) else None
            if isinstance(nxt, Path) and nxt.name.endswith(REFL_SUFFIXES):
                i += 1
                found.add_pair(p, nxt, _name_for(p, p.parent))
            else:
                found.add_pair(p, _partner_refl(p), _name_for(p, p.parent))
        elif p.name.endswith(REFL_SUFFIXES):
            expt = next(
                (Path(_stem(p) + s) for s in EXPT_SUFFIXES if Path(_stem(p) + s).exists()), None
            )
            if expt is None:
                raise BadInputError(p, "reflection file without a matching experiment list")
            found.add_pair(expt, p, _name_for(expt, expt.parent))
        elif not p.exists():
            raise BadInputError(p, "no such file or directory")
        else:
            raise BadInputError(p, "not an mxflow output directory, .expt or .refl file")
    found.check_identifiers()
    return found.inputs, found.rejected


def _in_merge_output(path: Path, root: Path) -> bool:
    """Whether ``path`` lies in a merge output folder (merge_*) below ``root``.

    Only folders below the searched directory count: a user's own
    ``/data/merge_tests/`` above it must not hide every file.
    """
    return any(part.startswith("merge_") for part in path.relative_to(root).parts[:-1])


def _name_for(expt: Path, root: Path) -> str:
    """A readable dataset name: the file stem, with its parent folders when generic."""
    stem = Path(_stem(expt)).name
    if stem in ("integrated", "scaled", "indexed", "refined", "symmetrized"):
        rel = expt.parent.relative_to(root) if expt.parent != root else Path(expt.parent.name)
        return str(rel).replace("/", "_") or stem
    return stem


#: DIALS steps' outputs that are never a dataset to merge (``bravais_setting_N`` too)
INTERMEDIATES = ("imported", "indexed", "refined", "reindexed", "symmetrized", "combined")


def _rank(expt: Path) -> int | None:
    """How final a DIALS file is: 0 integrated, 1 scaled, 2 a name of its own, None an
    intermediate."""
    stem = Path(_stem(expt)).name
    last = stem.rsplit("_", 1)[-1]
    if stem == "integrated" or stem.endswith("_integrated"):
        return 0
    if stem == "scaled" or stem.endswith("_scaled"):
        return 1
    if last in INTERMEDIATES or re.search(r"(^|_)bravais_setting_\d+$", stem):
        return None
    return 2


def _folder_name(folder: Path, root: Path) -> str:
    rel = folder.relative_to(root) if folder != root else Path(folder.name)
    return str(rel).replace("/", "_") or folder.name


def _summary_results(out: Path) -> list[DatasetResult]:
    """The datasets of ``out/summary.json`` (an mxflow summary: a list of rows, or a dict
    with ``datasets``)."""
    rows = read_json(out / SUMMARY_FILE)
    if isinstance(rows, dict):
        rows = rows.get("datasets", [])
    if not isinstance(rows, list):
        raise BadInputError(out / SUMMARY_FILE, "not an mxflow summary (no list of datasets)")
    return [DatasetResult.from_dict(row) for row in rows]


def _enclosing_output(folder: Path) -> Path | None:
    """The nearest directory above ``folder`` holding an mxflow summary.json that records
    datasets in ``folder`` (None when there is none)."""
    folder = folder.resolve()
    for parent in folder.parents:
        if not (parent / SUMMARY_FILE).is_file():
            continue
        try:
            results = _summary_results(parent)
        except (MxflowError, OSError, ValueError, TypeError, KeyError, AttributeError):
            continue  # someone else's summary.json
        if any(_workdir_under(res, parent, folder) for res in results):
            return parent
    return None


def _workdir_under(res: DatasetResult, out: Path, folder: Path) -> bool:
    """Whether a dataset recorded in ``out``'s summary was processed in ``folder`` or below."""
    where = res.workdir or (str(Path(res.integrated_expt).parent) if res.integrated_expt else "")
    if not where:
        return False
    wd = Path(where)
    wd = (wd if wd.is_absolute() else out / wd).resolve()
    return wd == folder.resolve() or folder.resolve() in wd.parents


def _folder_result(folder: Path) -> DatasetResult | None:
    """The result ``mxflow run`` left in a dataset folder (None when absent or unreadable)."""
    path = folder / RESULT_FILE
    if not path.is_file():
        return None
    try:
        return DatasetResult.from_dict(read_json(path))
    except (MxflowError, OSError, ValueError, TypeError, KeyError, AttributeError):
        return None


def _output_of(folder: Path, res: DatasetResult) -> Path:
    """The directory ``res``'s paths are relative to: OUT (``res.workdir`` is the folder
    relative to OUT), else the folder itself."""
    rel = Path(res.workdir or "")
    parts = rel.parts
    if parts and not rel.is_absolute() and folder.resolve().parts[-len(parts) :] == parts:
        return folder.resolve().parents[len(parts) - 1]
    return folder
