"""Reading what the pipeline wrote into an output directory, for the reports.

Every reader here is tolerant of work in progress: a file that is absent
gives ``None`` or an empty list, so that a report of a half-finished
collection still renders.  A file that exists but cannot be parsed raises
:class:`mxflow.errors.BadInputError` naming the file.

Layout read (all paths relative to the output directory ``OUT``):

* ``OUT/summary.json`` — ``{"datasets": [DatasetResult as dict, ...]}``;
* ``OUT/merge_<method>_<dstart>S_<sample>/`` — ``merge_summary.json``,
  ``cluster_summary.dat``, ``dendrogram_<method>.json``, ``cc_table.json`` and
  per-cluster statistics ``cluster_<id>/<run>/*.json`` (MergingStats dicts);
* ``OUT/**/hitmap.json`` — ``{"frames": [{"file", "index", "n_spots", ...}]}``
  with a PNG beside it;
* ``<workdir>/strong.refl`` — DIALS spot list, read through
  ``mxflow.engine.refl.read_reflections`` when that module is available.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mxflow.errors import BadInputError

TEXT_COLUMNS = ("cluster", "run")  # cluster_summary.dat columns kept as text (e.g. "0052")
MERGE_DIR_RE = re.compile(r"^merge_(?P<method>[A-Za-z0-9]+)_(?P<dstart>[0-9.]+)S_(?P<sample>.+)$")


def read_json_file(path: Path) -> Any:
    """Parse a JSON file; a parse error becomes a BadInputError naming the file."""
    try:
        with open(path) as fh:
            return json.load(fh)
    except json.JSONDecodeError as exc:
        raise BadInputError(str(path), f"not valid JSON ({exc})") from exc


def load_summary(out_dir: Path) -> list[dict[str, Any]]:
    """The dataset rows of ``OUT/summary.json`` (empty list if it is not there yet)."""
    path = Path(out_dir) / "summary.json"
    if not path.is_file():
        return []
    data = read_json_file(path)
    if isinstance(data, list):
        rows = data
    elif isinstance(data, dict) and isinstance(data.get("datasets"), list):
        rows = data["datasets"]
    else:
        raise BadInputError(str(path), 'expected {"datasets": [...]}')
    return [r for r in rows if isinstance(r, dict)]


def num(v: Any) -> float | None:
    """A finite float, or None for missing / null / NaN / non-numeric values."""
    if v is None or isinstance(v, bool):
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


# ---------------------------------------------------------------- spots per frame


def spot_counts_per_frame(workdir: Path) -> list[list[int]] | None:
    """``[[frame, n_spots], ...]`` from ``workdir/strong.refl``, or None.

    Frame numbers are 1-based image numbers: a spot with centroid z (in DIALS
    image coordinates, 0-based from the start of the scan) counts towards
    frame ``floor(z) + first``, where ``first`` is taken from the experiment's
    scan when the reader gives it, else 1.  Returns None when the file is
    absent or the engine's reader is not available, so callers can omit the
    plot.
    """
    path = Path(workdir) / "strong.refl"
    if not path.is_file():
        return None
    try:
        from mxflow.engine.refl import read_reflections  # type: ignore[import-not-found]
    except ImportError:
        return None
    import numpy as np

    try:
        table = read_reflections(path)
    except Exception:  # an unreadable spot list must not stop the report
        return None
    try:
        xyz = np.asarray(table["xyzobs.px.value"], dtype=float)
    except (KeyError, TypeError, ValueError, IndexError):
        return None
    if xyz.ndim != 2 or xyz.shape[0] == 0:
        return []
    z = np.floor(xyz[:, 2]).astype(int)
    z0 = int(z.min()) if z.min() < 0 else 0
    counts = np.bincount(z - z0)
    return [[int(i + z0 + 1), int(c)] for i, c in enumerate(counts)]


# ---------------------------------------------------------------- merge directories


@dataclass
class MergeRun:
    """Everything the merge report needs about one ``merge_*`` directory."""

    path: Path  # the merge directory
    method: str
    dstart: float | None
    sample: str
    summary: dict[str, Any]
    cluster_table: list[dict[str, Any]] = field(default_factory=list)
    cluster_columns: list[str] = field(default_factory=list)
    dendrograms: dict[str, dict[str, Any]] = field(default_factory=dict)
    cc_table: Any = None
    cluster_stats: dict[str, dict[str, Any]] = field(default_factory=dict)


def find_merge_dirs(out_dir: Path) -> list[Path]:
    """Merge directories holding a merge_summary.json, anywhere in the tree, sorted."""
    out_dir = Path(out_dir)
    found: set[Path] = set()
    # `mxflow merge OUT`: OUT/merge_*; `mxflow run OUT`: OUT/merge[_30deg]/<sample>/merge_*
    for pattern in ("merge_*", "*/merge_*", "*/*/merge_*"):
        found |= {p.parent for p in out_dir.glob(f"{pattern}/merge_summary.json")}
    return sorted(found)


def merge_route(merge_dir: Path) -> str:
    """Which data a merge of ``mxflow run`` used: "30° wedges" under merge_30deg/, else ""."""
    for parent in Path(merge_dir).parents:
        if parent.name.startswith("merge_") and parent.name.endswith("deg"):
            return parent.name.removeprefix("merge_").replace("deg", "° wedges")
    return ""


def parse_cluster_summary(path: Path) -> tuple[list[str], list[dict[str, Any]]]:
    """Columns and rows of a KAMO-style ``cluster_summary.dat``.

    The file is whitespace separated with one header line (``cluster ClH LCV
    aLCV run ds.all ...``); lines starting with ``#`` are comments.  Numeric
    fields become floats, ``nan``/``-``/``NA`` become None, others stay text.
    """
    columns: list[str] = []
    rows: list[dict[str, Any]] = []
    with open(path) as fh:
        for lineno, line in enumerate(fh, 1):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            fields = text.split()
            if not columns:
                columns = fields
                continue
            if len(fields) != len(columns):
                raise BadInputError(
                    str(path),
                    f"line {lineno} has {len(fields)} fields, the header has {len(columns)}",
                )
            row: dict[str, Any] = {}
            for name, value in zip(columns, fields, strict=True):
                if name in TEXT_COLUMNS:
                    row[name] = value
                    continue
                if value.lower() in ("nan", "na", "-", "none", "null"):
                    row[name] = None
                    continue
                try:
                    row[name] = float(value)
                except ValueError:
                    row[name] = value
            rows.append(row)
    return columns, rows


def _is_stats(d: Any) -> bool:
    return isinstance(d, dict) and isinstance(d.get("shells"), list) and "overall" in d


def load_cluster_stats(merge_dir: Path, cluster: dict[str, Any]) -> dict[str, Any] | None:
    """MergingStats dict of a cluster's final run, or None when none is found.

    Looks at, in order: a ``stats`` entry in the cluster record; JSON files in
    ``cluster_<id>/<final_run>/`` (id as given and zero-padded to 4 digits)
    whose content has ``shells`` and ``overall``.
    """
    if _is_stats(cluster.get("stats")):
        return cluster["stats"]
    cid = str(cluster.get("id", ""))
    names = [f"cluster_{cid}"]
    if cid.isdigit():
        names.append(f"cluster_{int(cid):04d}")
    run = str(cluster.get("final_run") or "")
    for name in names:
        cdir = merge_dir / name
        if not cdir.is_dir():
            continue
        rundirs = (
            [cdir / run] if run and (cdir / run).is_dir() else sorted(cdir.glob("run_*"))[::-1]
        )
        rundirs.append(cdir)
        for rd in rundirs:
            for js in sorted(rd.glob("*.json")):
                try:
                    data = read_json_file(js)
                except BadInputError:
                    continue
                if _is_stats(data):
                    return data
                if isinstance(data, dict) and _is_stats(data.get("stats")):
                    return data["stats"]
    return None


def load_merge_dir(merge_dir: Path) -> MergeRun:
    """Read one merge directory (merge_summary.json must exist)."""
    merge_dir = Path(merge_dir)
    summary = read_json_file(merge_dir / "merge_summary.json")
    if not isinstance(summary, dict):
        raise BadInputError(str(merge_dir / "merge_summary.json"), "expected a JSON object")
    m = MERGE_DIR_RE.match(merge_dir.name)
    method = str(summary.get("method") or (m.group("method") if m else "?"))
    sample = str(summary.get("sample") or (m.group("sample") if m else merge_dir.name))
    dstart = num(summary.get("d_start")) or (num(m.group("dstart")) if m else None)
    run = MergeRun(path=merge_dir, method=method, dstart=dstart, sample=sample, summary=summary)
    dat = merge_dir / "cluster_summary.dat"
    if dat.is_file():
        run.cluster_columns, run.cluster_table = parse_cluster_summary(dat)
    for js in sorted(merge_dir.glob("dendrogram_*.json")):
        data = read_json_file(js)
        if not isinstance(data, dict) or not isinstance(data.get("nodes"), list):
            raise BadInputError(str(js), 'expected {"method", "leaves", "nodes"}')
        key = str(data.get("method") or js.stem.removeprefix("dendrogram_"))
        run.dendrograms[key] = data
    cc = merge_dir / "cc_table.json"
    if cc.is_file():
        run.cc_table = read_json_file(cc)
    for cluster in summary.get("clusters") or []:
        stats = load_cluster_stats(merge_dir, cluster)
        if stats is not None:
            run.cluster_stats[str(cluster.get("id"))] = stats
    return run


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
