"""Reading what the pipeline wrote into an output directory, for the reports.

Every reader here is tolerant of work in progress: a file that is absent
gives ``None`` or an empty list, so that a report of a half-finished
collection still renders.  A file that exists but cannot be read as the
type it holds raises :class:`mxflow.errors.BadInputError` naming the file.

Layout read (all paths relative to the output directory ``OUT``):

* ``OUT/summary.json`` — ``{"datasets": [...]}``, each a
  :class:`~mxflow.model.DatasetResult` plus the catalog's ``key``, ``kind``
  and ``attempts`` (read as :class:`DatasetRow`);
* ``merge_<method>_<d>S_<sample>/`` anywhere up to three levels down
  (``mxflow merge``: ``OUT/merge_*``; ``mxflow run``:
  ``OUT/merge[_30deg]/<sample>[/<λ>]/merge_*``) — ``merge_summary.json``
  (:class:`~mxflow.model.MergeSummary`), ``dendrogram_<method>.json``,
  ``cc_table.json`` and ``cluster_summary.dat`` (linked, not read), read
  through :mod:`mxflow.merge.outputs` as :class:`MergeDir`;
* ``OUT/**/hitmap.json`` — ``{"frames": [{"file", "index", "n_spots", ...}]}``
  with a PNG beside it;
* ``<workdir>/strong.refl`` — DIALS spot list, read through
  :func:`mxflow.engine.refl.read_reflections`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from mxflow.engine.refl import read_reflections
from mxflow.errors import BadInputError
from mxflow.merge.outputs import SUMMARY_NAME, read_cc_table, read_dendrogram, read_summary
from mxflow.model import CCPair, DatasetResult, Dendrogram, MergeSummary

T = TypeVar("T")


def read_json_file(path: Path) -> Any:
    """Parse a JSON file; a parse error becomes a BadInputError naming the file."""
    try:
        with open(path) as fh:
            return json.load(fh)
    except json.JSONDecodeError as exc:
        raise BadInputError(str(path), f"not valid JSON ({exc})") from exc


def _typed(read: Callable[[Path], T], path: Path, what: str) -> T:
    """``read(path)``; a file that is not valid JSON or not ``what`` becomes a BadInputError."""
    try:
        return read(path)
    except BadInputError:
        raise
    except (OSError, ValueError, KeyError, TypeError, StopIteration) as exc:
        raise BadInputError(str(path), f"cannot read it as {what} ({exc})") from exc


# ---------------------------------------------------------------- datasets


@dataclass
class DatasetRow:
    """One dataset of ``summary.json``: its result and what the catalog adds.

    ``key``: the catalog key (work directory relative to OUT, e.g.
    ``proc/<pin>/<dataset>``; "" for ``mxflow process`` output); ``kind``:
    "sweep" or "wedge"; ``attempts``: how many times it was processed.
    """

    result: DatasetResult
    key: str = ""
    kind: str = ""
    attempts: int = 0

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DatasetRow:
        """A summary.json entry (DatasetResult fields plus the catalog's; others ignored)."""
        return cls(
            DatasetResult.from_dict(dict(d)),
            str(d.get("key") or ""),
            str(d.get("kind") or ""),
            int(d.get("attempts") or 0),
        )


def dataset_rows(entries: list[Any], source: str) -> list[DatasetRow]:
    """Typed rows of summary.json's ``datasets`` (``source`` names the file in errors)."""
    rows = []
    for i, d in enumerate(entries):
        if not isinstance(d, Mapping):
            raise BadInputError(source, f"dataset {i} is not a JSON object")
        try:
            rows.append(DatasetRow.from_dict(d))
        except (KeyError, TypeError, ValueError, StopIteration) as exc:
            name = d.get("name", i)
            raise BadInputError(source, f"dataset {name} is not a dataset result ({exc})") from exc
    return rows


def load_summary(out_dir: Path) -> list[DatasetRow]:
    """The datasets of ``OUT/summary.json`` (empty list if it is not there yet)."""
    path = Path(out_dir) / "summary.json"
    if not path.is_file():
        return []
    data = read_json_file(path)
    if not (isinstance(data, dict) and isinstance(data.get("datasets"), list)):
        raise BadInputError(str(path), 'expected {"datasets": [...]}')
    return dataset_rows(data["datasets"], str(path))


# ---------------------------------------------------------------- spots per frame


def spot_counts_per_frame(workdir: Path) -> list[list[int]] | None:
    """``[[frame, n_spots], ...]`` from ``workdir/strong.refl``, or None.

    Frame numbers are 1-based image numbers: a spot with centroid z (in DIALS
    image coordinates, 0-based from the start of the scan) counts towards
    frame ``floor(z) + 1``.  Returns None when the file is absent or cannot
    be read, so callers can omit the plot.
    """
    path = Path(workdir) / "strong.refl"
    if not path.is_file():
        return None
    try:
        xyz = np.asarray(read_reflections(path, columns=["xyzobs.px.value"])["xyzobs.px.value"])
    except BadInputError:  # an unreadable spot list must not stop the report
        return None
    if xyz.ndim != 2 or xyz.shape[0] == 0:
        return []
    z = np.floor(xyz[:, 2]).astype(int)
    z0 = int(z.min()) if z.min() < 0 else 0
    counts = np.bincount(z - z0)
    return [[int(i + z0 + 1), int(c)] for i, c in enumerate(counts)]


# ---------------------------------------------------------------- merge directories


@dataclass
class MergeDir:
    """One ``merge_<method>_<d>S_<sample>/`` directory, read as the types the merge wrote."""

    path: Path
    summary: MergeSummary
    dendrogram: Dendrogram | None = None
    cc_pairs: list[CCPair] = field(default_factory=list)

    @property
    def method(self) -> str:
        return self.summary.method

    @property
    def sample(self) -> str:
        return self.summary.sample

    @property
    def d_start(self) -> float | None:
        return self.summary.d_start

    @property
    def route(self) -> str:
        return merge_route(self.path)

    @property
    def files_base(self) -> Path:
        """The merge's working directory: the cluster MTZ paths are relative to it."""
        return self.path.parent

    def file(self, name: str) -> Path | None:
        """``path/name`` when that file exists."""
        p = self.path / name
        return p if p.is_file() else None


def find_merge_dirs(out_dir: Path) -> list[Path]:
    """Merge directories holding a merge_summary.json, up to three levels down, sorted."""
    out_dir = Path(out_dir)
    found: set[Path] = set()
    # `mxflow merge OUT`: OUT/merge_*; `mxflow run OUT`: OUT/merge[_30deg]/<sample>[/<λ>]/merge_*
    for pattern in ("merge_*", "*/merge_*", "*/*/merge_*", "*/*/*/merge_*"):
        found |= {p.parent for p in out_dir.glob(f"{pattern}/{SUMMARY_NAME}")}
    return sorted(found)


def merge_route(merge_dir: Path) -> str:
    """Which data a merge of ``mxflow run`` used: "30° wedges" under merge_30deg/, else ""."""
    for parent in Path(merge_dir).parents:
        if parent.name.startswith("merge_") and parent.name.endswith("deg"):
            return parent.name.removeprefix("merge_").replace("deg", "° wedges")
    return ""


def load_merge_dir(merge_dir: Path) -> MergeDir:
    """Read one merge directory (its merge_summary.json must exist)."""
    merge_dir = Path(merge_dir)
    summary = read_summary(merge_dir / SUMMARY_NAME)
    md = MergeDir(merge_dir, summary)
    dendro = merge_dir / f"dendrogram_{summary.method}.json"
    if dendro.is_file():
        md.dendrogram = _typed(read_dendrogram, dendro, "a dendrogram")
    cc = merge_dir / "cc_table.json"
    if cc.is_file():
        md.cc_pairs = _typed(read_cc_table, cc, "a table of CC pairs")
    return md


# ---------------------------------------------------------------- hit maps


def find_hitmaps(out_dir: Path) -> list[dict[str, Any]]:
    """Every ``hitmap.json`` below ``out_dir``: path, PNG beside it, frame count, best frame.

    Paths in the result are relative to ``out_dir`` (POSIX style).
    """
    out_dir = Path(out_dir)
    result = []
    for js in sorted(out_dir.rglob("hitmap.json")):
        try:
            data = read_json_file(js)
        except BadInputError:
            continue
        frames = data.get("frames", []) if isinstance(data, dict) else []
        pngs = sorted(js.parent.glob("*.png"))
        counts = [int(f.get("n_spots") or 0) for f in frames if isinstance(f, dict)]
        best = max(range(len(counts)), key=counts.__getitem__) if counts else None
        result.append(
            {
                "json": js.relative_to(out_dir).as_posix(),
                "dir": js.parent.relative_to(out_dir).as_posix(),
                "png": pngs[0].relative_to(out_dir).as_posix() if pngs else None,
                "html": (js.parent / "hitmap.html").relative_to(out_dir).as_posix()
                if (js.parent / "hitmap.html").is_file()
                else None,
                "n_frames": len(counts),
                "n_hits": sum(1 for c in counts if c > 0),
                "max_spots": counts[best] if best is not None else None,
                "best_file": frames[best].get("file") if best is not None else None,
                "sample": data.get("sample") if isinstance(data, dict) else None,
                "pin": data.get("pin") if isinstance(data, dict) else None,
            }
        )
    return result
