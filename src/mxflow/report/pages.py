"""What each report shows: page contexts built from the typed results of an output directory.

The functions here decide content (rows, numbers, links, plain-word
explanations) from :class:`~mxflow.report.load.DatasetRow` and the merge
types (:class:`~mxflow.model.MergeSummary`, :class:`~mxflow.model.ClusterResult`,
:class:`~mxflow.model.Dendrogram` ...); :mod:`mxflow.report.render` and the
templates turn them into HTML.  All links are relative to the directory of
the page that shows them, so a copy of the output tree opens on any computer.
"""

from __future__ import annotations

import math
import os
import re
import shlex
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

from mxflow.merge.final import recommend
from mxflow.merge.inputs import WAVELENGTH_TOLERANCE
from mxflow.model import (
    AnomalousSignal,
    CCPair,
    ClusterDiagnostics,
    ClusterResult,
    DatasetResult,
    ElectronGeometry,
    HeavyAtom,
    MergeOptions,
    MergeSummary,
    MergingStats,
    ShellStats,
    to_dict,
)
from mxflow.report.load import (
    DatasetRow,
    MergeDir,
    find_hitmaps,
    read_json_file,
    spot_counts_per_frame,
)

CELL_LABELS = ("a", "b", "c", "α", "β", "γ")

#: one row of a per-shell table: the shell and whether it is the overall row
ShellRow = tuple[ShellStats, bool]


# ---------------------------------------------------------------- small helpers


def rel_link(target: str | None, page_dir: Path, out_dir: Path) -> str | None:
    """Relative URL from ``page_dir`` to ``target`` (a path relative to ``out_dir`` or absolute)."""
    if not target:
        return None
    p = Path(target)
    if not p.is_absolute():
        p = Path(out_dir) / p
    return PurePosixPath(Path(os.path.relpath(p, page_dir))).as_posix()


def dataset_pin(row: DatasetRow) -> str:
    """The pin (sample position) a dataset came from, as the report groups datasets.

    The catalog key's second level (``proc/<pin>/<dataset>``), otherwise the
    directory of the image files with a trailing ``dataNN`` level (ZOO layout
    ``<puck>-<pin>/data00/...``) dropped, otherwise the sample or dataset name.
    """
    key = PurePosixPath(row.key)
    if len(key.parts) >= 3 and key.parts[0].startswith("proc"):
        return key.parts[1]
    r = row.result
    parent = PurePosixPath(r.path.replace("\\", "/")).parent
    if re.fullmatch(r"data\d*", parent.name) and parent.parent.name:
        parent = parent.parent
    return parent.name or r.sample or r.name or "?"


def shell_rows(stats: MergingStats | None) -> list[ShellRow]:
    """Per-shell rows (low → high resolution) then the overall row."""
    if stats is None:
        return []
    return [(s, False) for s in stats.shells] + [(stats.overall, True)]


def stats_rows(stats: MergingStats | None) -> dict[str, Any]:
    """The overall / inner / outer rows and the shell table of a page entry (None when absent)."""
    return {
        "overall": stats.overall if stats else None,
        "inner": stats.inner if stats else None,
        "outer": stats.outer if stats else None,
        "shells": shell_rows(stats),
    }


def finite(v: float | None) -> float | None:
    """``v`` when it is a finite number, else None (NaN means 'not measured' in the types)."""
    return v if v is not None and math.isfinite(v) else None


def _pct(v: float | None) -> float | None:
    f = finite(v)
    return None if f is None else 100.0 * f


def resolution_series(stats: MergingStats | None) -> dict[str, list[float | None]]:
    """The per-shell numbers the charts against resolution draw (completeness in %)."""
    shells = stats.shells if stats else []
    return {
        "d": [finite(s.d_min) for s in shells],
        "cc_half": [finite(s.cc_half) for s in shells],
        "i_over_sigma": [finite(s.i_over_sigma) for s in shells],
        "completeness": [_pct(s.completeness) for s in shells],
        "multiplicity": [finite(s.multiplicity) for s in shells],
        "cc_ano": [finite(s.cc_ano) for s in shells],
        "sig_ano": [finite(s.sig_ano) for s in shells],
    }


def heavy_atom_text(ha: HeavyAtom | None) -> str:
    """The anomalous scatterer in words: element, nearest edge below the energy, energy."""
    if ha is None:
        return ""
    parts = [ha.element]
    if ha.edge and finite(ha.edge_ev) is not None:
        parts.append(f"{ha.edge} edge {ha.edge_ev:.0f} eV")
    if finite(ha.energy_ev) is not None:
        parts.append(f"at {ha.energy_ev:.0f} eV")
    return " ".join(parts[:1]) + (f" ({', '.join(parts[1:])})" if parts[1:] else "")


def anomalous_entry(a: AnomalousSignal | None) -> dict[str, Any] | None:
    """What the merge page shows of a cluster's anomalous signal (None: not an anomalous merge).

    Completeness in % and the rest as computed (:mod:`mxflow.stats.anomalous`);
    the heavy atom's f′ / f″ (electrons) and expected sites when it was given.
    """
    if a is None:
        return None
    ha = a.heavy_atom
    return {
        "cc_ano": finite(a.cc_ano),
        "sig_ano": finite(a.sig_ano),
        "completeness": _pct(a.anom_completeness),
        "multiplicity": finite(a.anom_multiplicity),
        "slope": finite(a.anom_slope),
        "d_ano": finite(a.d_ano),
        "target": a.cc_ano_target,
        "note": a.note,
        "heavy_atom": heavy_atom_text(ha),
        "f_prime": finite(ha.f_prime) if ha else None,
        "f_double_prime": finite(ha.f_double_prime) if ha else None,
        "n_sites": ha.n_sites if ha else None,
        "heavy_atom_note": ha.note if ha else "",
    }


def explain_failure(r: DatasetResult) -> str:
    """The reason a dataset failed, in plain words (never empty for a failed dataset)."""
    reason = r.reason.strip()
    if reason:
        return reason
    bad = [s for s in r.steps if s.returncode not in (0, None) and not s.skipped]
    if bad:
        s = bad[-1]
        extra = f" ({s.note})" if s.note else ""
        return f"{s.name} stopped with exit status {s.returncode}{extra}; see its log."
    if r.status == "failed":
        return "Processing failed; no reason was recorded (see the step logs)."
    return ""


def dataset_identity(row: DatasetRow) -> dict[str, Any]:
    """What names a dataset in every table: name, page anchor, sample, pin, mode, wedge,
    status and the plain-words reason of a failure."""
    r = row.result
    name = r.name or "?"
    return {
        "name": name,
        "anchor": anchor(name),
        "sample": r.sample,
        "pin": dataset_pin(row),
        "mode": r.mode,
        "wedge": r.wedge or "full",
        "status": r.status,
        "problem": explain_failure(r) if r.status == "failed" else "",
    }


def anchor(name: str) -> str:
    """An HTML id derived from a dataset name."""
    return "ds-" + re.sub(r"[^A-Za-z0-9_.-]", "_", name)


#: labels longer than this are cut further (the part all names share, then the middle)
LABEL_MAX = 24
_SEPARATORS = "/_-. "


def short_labels(names: list[str], max_len: int = LABEL_MAX) -> dict[str, str]:
    """The shortest form of each name that still tells it from the others, for chart axes.

    Path levels (``/``) that every name shares are dropped (``CPS0002-01/data00/helical_001_1-30``
    and ``CPS0002-01/data00/helical_001_31-40`` become ``helical_001_1-30`` and
    ``helical_001_31-40``; ``CPS0001-01/data00/multi_01`` and ``CPS0002-01/data00/multi_01``
    become ``CPS0001-01/multi_01`` and ``CPS0002-01/multi_01``).  Labels still longer than
    ``max_len`` lose the start they all share (cut at a separator, marked ``…``), then
    their leading path levels or characters, as long as every label stays distinct.  A single name keeps its last level.
    Returns ``{name: label}``; distinct names always get distinct labels.
    """
    uniq = list(dict.fromkeys(names))
    if not uniq:
        return {}
    if len(uniq) == 1:
        return {uniq[0]: uniq[0].rstrip("/").rsplit("/", 1)[-1] or uniq[0]}
    parts = [n.split("/") for n in uniq]
    depth = {len(p) for p in parts}
    if len(depth) == 1:
        # the same levels: keep those where the names differ
        keep = [k for k in range(depth.pop()) if len({p[k] for p in parts}) > 1]
        labels = ["/".join(p[k] for k in keep) for p in parts]
    else:
        # different depths: drop the leading levels all share (at least one level stays)
        common = 0
        while common < min(map(len, parts)) - 1 and len({p[common] for p in parts}) == 1:
            common += 1
        labels = ["/".join(p[common:]) for p in parts]

    def distinct(xs: list[str]) -> bool:
        return len(set(xs)) == len(xs) and all(xs)

    if max(map(len, labels)) > max_len:
        prefix = os.path.commonprefix(labels)
        cut = max((prefix.rfind(c) for c in _SEPARATORS), default=-1) + 1
        if cut > 1:
            trimmed = ["…" + x[cut:] for x in labels]
            if distinct([x[cut:] for x in labels]):
                labels = trimmed
    if max(map(len, labels)) > max_len:
        tails = [_tail(x, max_len) for x in labels]
        if distinct(tails):
            labels = tails
    if not distinct(labels):  # cannot happen for distinct names; keep them whole then
        labels = uniq
    return dict(zip(uniq, labels, strict=True))


def _tail(label: str, max_len: int) -> str:
    """The end of a long label: whole leading path levels dropped first (``…/``), then
    characters (``…``)."""
    if len(label) <= max_len:
        return label
    levels = label.split("/")
    while len(levels) > 1 and len("…/" + "/".join(levels)) > max_len:
        levels.pop(0)
    short = "/".join(levels)
    if short != label:
        short = "…/" + short
    return short if len(short) <= max_len else "…" + label[-(max_len - 1) :]


# ---------------------------------------------------------------- dataset report


def dataset_entries(
    rows: list[DatasetRow], out_dir: Path, page_dir: Path, with_spots: bool = True
) -> list[dict[str, Any]]:
    """One entry per dataset for the dataset report (table row + detail section)."""
    entries = []
    for row in rows:
        r = row.result
        stats = r.stats
        cell = r.unit_cell or (stats.unit_cell if stats else None)
        spots = None
        if with_spots and r.workdir:
            wd = Path(r.workdir)
            spots = spot_counts_per_frame(wd if wd.is_absolute() else Path(out_dir) / wd)
        steps = []
        for s in r.steps:
            log = s.log
            if log and r.workdir and not Path(log).is_absolute():
                log = str(PurePosixPath(r.workdir) / log)
            steps.append(
                {
                    "name": s.name,
                    "returncode": s.returncode,
                    "wall_s": s.wall_s,
                    "skipped": s.skipped,
                    "note": s.note,
                    "log": rel_link(log, page_dir, out_dir),
                    "command": " ".join(shlex.quote(str(c)) for c in s.command),
                }
            )
        entries.append(
            {
                **dataset_identity(row),
                "path": r.path,
                "space_group": r.space_group or (stats.space_group if stats else "") or "",
                "space_group_note": r.space_group_note or "",
                "fallbacks": list(r.fallbacks),
                "cell": [finite(x) for x in cell] if cell else None,
                "d_min": finite(r.d_min) or (finite(stats.overall.d_min) if stats else None),
                "wavelength": finite(r.wavelength),
                "total_rotation": finite(r.total_rotation),
                "osc_width": finite(r.osc_width),
                "indexed_fraction": finite(r.indexed_fraction),
                "wall_s": finite(r.wall_s),
                **stats_rows(stats),
                "stats": stats,
                "anomalous": bool(stats and stats.anomalous),
                "anomalous_note": r.anomalous_note or "",
                "electron": electron_facts(r.electron),
                "spots": spots,
                "steps": steps,
                "merged_mtz": rel_link(r.merged_mtz, page_dir, out_dir),
                "unmerged_mtz": rel_link(r.unmerged_mtz, page_dir, out_dir),
                "merged_mtz_name": PurePosixPath(r.merged_mtz or "").name,
                "unmerged_mtz_name": PurePosixPath(r.unmerged_mtz or "").name,
            }
        )
    return entries


def electron_facts(geo: ElectronGeometry | None) -> dict[str, Any] | None:
    """What a dataset page says of the electron-diffraction geometry (None for X-ray data):
    distances (mm) as read, used and refined, the axis and each sense tried."""
    if geo is None:
        return None
    return {
        "header": f"{geo.header_distance:g} {geo.header_distance_unit}",
        "used": finite(geo.distance_used),
        "refined": finite(geo.refined_distance),
        "axis": ", ".join(f"{x:.3f}" for x in geo.rotation_axis) if geo.rotation_axis else "",
        "axis_found": geo.axis_found,
        "axis_change": finite(geo.axis_change_deg),
        "trials": [
            {
                "axis": ", ".join(f"{x:.3f}" for x in t.axis),
                "indexed": finite(t.indexed_fraction),
                "rmsd_z": finite(t.rmsd_z),
                "note": t.note,
            }
            for t in geo.trials
        ],
        "target_cell": list(geo.target_cell) if geo.target_cell else None,
        "notes": list(geo.notes),
    }


def chart_data_for_dataset(e: dict[str, Any]) -> dict[str, Any]:
    """The numbers a dataset's charts need (kept small: embedded as JSON in the page)."""
    return {**resolution_series(e["stats"]), "spots": e["spots"]}


# ---------------------------------------------------------------- collection report


def pin_rows(
    entries: list[dict[str, Any]],
    hitmaps: list[dict[str, Any]],
    merges: dict[str, list[dict[str, Any]]],
    out_dir: Path,
    page_dir: Path,
) -> list[dict[str, Any]]:
    """One row per pin: what was collected, how processing went, and links."""
    groups: OrderedDict[tuple[str, str], list[dict[str, Any]]] = OrderedDict()
    for e in entries:
        groups.setdefault((e["pin"], e["sample"]), []).append(e)
    rows = []
    for (pin, sample), es in groups.items():
        first = es[0]
        ok = [e for e in es if e["status"] == "ok"]
        failed = [e for e in es if e["status"] == "failed"]
        others = len(es) - len(ok) - len(failed)
        dmins = [e["d_min"] for e in ok if e["d_min"]]
        # total φ collected on the pin: whole sweeps only (their 30° wedges repeat them)
        whole = [e for e in es if e["wedge"] == "full"] or es
        rots = [e["total_rotation"] for e in whole if e["total_rotation"]]
        if failed and not ok:
            status = "failed"
        elif failed:
            status = "partly failed"
        elif others:
            status = "running"
        else:
            status = "ok"
        hm = _match_hitmap(pin, hitmaps)
        rows.append(
            {
                "pin": pin,
                "sample": sample,
                "mode": first["mode"],
                "wavelength": first["wavelength"],
                "total_rotation": sum(rots) if rots else None,
                "osc_width": first["osc_width"],
                "n_datasets": len(es),
                "n_ok": len(ok),
                "n_failed": len(failed),
                "n_other": others,
                "status": status,
                "best_d_min": min(dmins) if dmins else None,
                "wall_min": sum(e["wall_s"] or 0.0 for e in es) / 60.0,
                "first_anchor": first["anchor"],
                "problems": [f"{e['name']}: {e['problem']}" for e in failed],
                "merge_links": merges.get(sample, []),
                "hitmap_png": rel_link(hm["png"], page_dir, out_dir) if hm and hm["png"] else None,
                "hitmap_json": rel_link(hm["json"], page_dir, out_dir) if hm else None,
                "hitmap_html": rel_link(hm["html"], page_dir, out_dir)
                if hm and hm.get("html")
                else None,
                "hitmap_hits": f"{hm['n_hits']}/{hm['n_frames']}" if hm else None,
            }
        )
    return rows


def _match_hitmap(pin: str, hitmaps: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The hit map of a pin: declared ``pin`` first, then a directory named after the pin."""
    for hm in hitmaps:
        if hm.get("pin") and str(hm["pin"]) == pin:
            return hm
    for hm in hitmaps:
        if pin and pin in PurePosixPath(hm["dir"]).parts:
            return hm
    return None


def merge_label(md: MergeDir) -> str:
    """How a merge is named in links: method, start resolution, wavelength label, route."""
    parts = [md.method + (f" from {md.d_start:.2f} Å" if md.d_start else "")]
    parts += [x for x in (md.summary.label, md.route) if x]
    return ", ".join(parts)


def cluster_brief(c: ClusterResult | None) -> dict[str, Any] | None:
    """The few numbers that sum up a merged cluster (in links and tables)."""
    if c is None:
        return None
    return {
        "id": c.id,
        "n": len(c.members),
        "d_min": c.d_min,
        "cc_half": finite(c.cc_half),
        "completeness": finite(c.completeness),
    }


def rejected_files(out_dir: Path) -> list[dict[str, str]]:
    """The files discovery rejected, from ``OUT/summary.json``'s ``rejected`` list
    (``path``, ``reason``; none when the file or the list is not there)."""
    path = Path(out_dir) / "summary.json"
    data = read_json_file(path) if path.is_file() else {}
    listed = data.get("rejected") if isinstance(data, dict) else None
    return [
        {"path": str(r.get("path", "")), "reason": str(r.get("reason", ""))}
        for r in listed or []
        if isinstance(r, dict)
    ]


def collection_context(
    rows: list[DatasetRow], out_dir: Path, page_dir: Path, merge_dirs: list[MergeDir]
) -> dict[str, Any]:
    """Everything the collection (index) page shows."""
    entries = dataset_entries(rows, out_dir, page_dir, with_spots=False)
    merges: dict[str, list[dict[str, Any]]] = {}
    samples: OrderedDict[str, dict[str, Any]] = OrderedDict()
    for e in entries:
        s = samples.setdefault(e["sample"], {"sample": e["sample"], "n": 0, "ok": 0, "failed": 0})
        s["n"] += 1
        s["ok"] += e["status"] == "ok"
        s["failed"] += e["status"] == "failed"
    for md in merge_dirs:
        best = recommend(md.summary)
        link = {
            "label": merge_label(md),
            "href": rel_link(str(md.path / "report.html"), page_dir, out_dir),
            "method": md.method,
            "n_clusters": sum(c.ok for c in md.summary.clusters),
            "n_rejected": len(md.summary.rejected),
            "best": cluster_brief(best[0] if best else None),
            "failure": md.summary.failure_reason(),
        }
        merges.setdefault(md.sample, []).append(link)
        samples.setdefault(md.sample, {"sample": md.sample, "n": 0, "ok": 0, "failed": 0})
    for s in samples.values():
        s["merges"] = merges.get(s["sample"], [])
    hitmaps = find_hitmaps(out_dir)
    for hm in hitmaps:
        hm["png_href"] = rel_link(hm["png"], page_dir, out_dir) if hm["png"] else None
        hm["json_href"] = rel_link(hm["json"], page_dir, out_dir)
        hm["html_href"] = rel_link(hm["html"], page_dir, out_dir) if hm.get("html") else None
    return {
        "pins": pin_rows(entries, hitmaps, merges, out_dir, page_dir),
        "samples": list(samples.values()),
        "hitmaps": hitmaps,
        "rejected": rejected_files(out_dir),
        "n_datasets": len(entries),
        "n_ok": sum(e["status"] == "ok" for e in entries),
        "n_failed": sum(e["status"] == "failed" for e in entries),
        "n_other": sum(e["status"] not in ("ok", "failed") for e in entries),
        "wall_h": sum(e["wall_s"] or 0.0 for e in entries) / 3600.0,
    }


# ---------------------------------------------------------------- merge report


def dataset_inputs(r: DatasetResult, out_dir: Path) -> list[str]:
    """What ``mxflow merge`` takes for one dataset: its integrated .expt and .refl, else its work directory.

    Paths are absolute (relative summary paths are taken from ``out_dir``).
    """

    def absolute(p: str) -> str:
        return str(Path(p) if Path(p).is_absolute() else Path(out_dir) / p)

    if r.integrated_expt and r.integrated_refl:
        return [absolute(r.integrated_expt), absolute(r.integrated_refl)]
    if r.workdir:
        return [absolute(r.workdir)]
    return [r.name or "?"]


def merge_command(
    inputs: list[str], workdir: str, sample: str, method: str, d_min: float | None
) -> str:
    """The ``mxflow merge`` command line that merges exactly the given inputs.

    ``inputs`` are the member datasets' integrated files (see
    :func:`dataset_inputs`), so the re-run starts from exactly this
    selection; ``--max-clusters 1`` asks for one merged result.
    """
    args = ["mxflow", "merge", *inputs, "--workdir", workdir, "--sample", sample]
    args += ["--method", method, "--max-clusters", "1"]
    if d_min:
        args += ["--d-min", f"{d_min:.2f}"]
    return " ".join(shlex.quote(a) for a in args)


def cc_matrix(pairs: list[CCPair]) -> dict[str, Any] | None:
    """The pairwise CCs as ``{"names": [...], "cc": [[...]]}`` (1 on the diagonal, None where
    a pair has no CC), datasets in the order of the CC table; None without pairs."""
    if not pairs:
        return None
    by_index = {p.i: p.name_i for p in pairs} | {p.j: p.name_j for p in pairs}
    order = sorted(by_index)
    pos = {k: n for n, k in enumerate(order)}
    mat: list[list[float | None]] = [[None] * len(order) for _ in order]
    for n in range(len(order)):
        mat[n][n] = 1.0
    for p in pairs:
        mat[pos[p.i]][pos[p.j]] = mat[pos[p.j]][pos[p.i]] = finite(p.cc)
    return {"names": [by_index[k] for k in order], "cc": mat}


def _run_tree(md: MergeDir, out_dir: Path | None) -> str | None:
    """Which datasets a merge of ``mxflow run`` takes: "sweeps" (OUT/merge/...: the whole
    sweeps), "wedges" (OUT/merge_<N>deg/...: the wedges, and the sweeps that were not cut),
    None for any other merge (``mxflow merge``: whatever it was given)."""
    if out_dir is None:
        return None
    try:
        top = md.path.resolve().relative_to(Path(out_dir).resolve()).parts[0]
    except (ValueError, IndexError):
        return None
    if top == "merge":
        return "sweeps"
    return "wedges" if re.fullmatch(r"merge_[0-9.]+deg", top) else None


def _is_wedge(row: DatasetRow) -> bool:
    return row.kind == "wedge" or (row.result.wedge or "full") != "full"


def _cut_sweeps(rows: list[DatasetRow]) -> tuple[set[str], set[str]]:
    """(image templates, catalog keys) of the whole sweeps that were cut into wedges: a wedge
    shares its sweep's template, and its key is the sweep's under proc_<N>deg/ plus _<a>-<b>."""
    templates, keys = set(), set()
    for row in rows:
        if not _is_wedge(row):
            continue
        if row.result.path:
            templates.add(row.result.path)
        tree, _, rest = row.key.partition("/")
        if re.fullmatch(r"proc_[0-9.]+deg", tree) and rest:
            keys.add("proc/" + re.sub(r"_\d+-\d+$", "", rest))
    return templates, keys


def _of_other_merge(row: DatasetRow, tree: str | None, cut: tuple[set[str], set[str]]) -> bool:
    """Whether ``mxflow run`` gives ``row`` to the other merge of its sample, not this one: a
    wedge to the 30° merge (not the full one), a sweep cut into wedges to the full merge."""
    if tree == "sweeps":
        return _is_wedge(row)
    if tree == "wedges":
        return not _is_wedge(row) and (row.result.path in cut[0] or row.key in cut[1])
    return False


def _sample_rows(
    md: MergeDir, rows: list[DatasetRow], out_dir: Path | None = None
) -> list[DatasetRow]:
    """The datasets of the merge's sample (of its wavelengths, when it is one of several).

    In ``mxflow run``'s merges (``out_dir`` given) the datasets of the sample's other merge
    are left out: the full sweeps cut into wedges from a 30° merge, the wedges from the full
    merge; any dataset the merge itself names (dendrogram leaf, cluster member, rejected)
    stays.
    """
    mine = [row for row in rows if row.result.sample == md.sample]
    tree = _run_tree(md, out_dir)
    if tree is not None:
        cut = _cut_sweeps(mine)
        named = {m for c in md.summary.clusters for m in c.members}
        named |= {r.name for r in md.summary.rejected}
        named |= set(md.dendrogram.leaves) if md.dendrogram else set()
        mine = [
            row for row in mine if row.result.name in named or not _of_other_merge(row, tree, cut)
        ]
    if md.summary.label and md.summary.wavelength_range:
        lo, hi = md.summary.wavelength_range
        tol = WAVELENGTH_TOLERANCE
        mine = [
            row
            for row in mine
            if row.result.wavelength is not None and lo - tol <= row.result.wavelength <= hi + tol
        ]
    return mine


#: the DIALS HTML reports a run folder may hold (dials.scale's only when the merge asked for it)
DIALS_REPORTS = ("dials.scale.html", "dials.merge.html")

#: the per-image panels of the "Against image" section: (key of the series, caption)
IMAGE_PANELS = (
    ("scale", "Scale k (dials.scale, at d = ∞)"),
    ("b", "Relative B (Å²)"),
    ("r_merge", "R<sub>merge</sub> (%) against the cluster's means"),
    ("i_over_sigma", "⟨I/σ(I)⟩ of the unmerged observations"),
    ("cc_rest", "CC of the image group with the rest of the cluster"),
)


def _sig(v: float | None, digits: int = 4) -> float | None:
    """``v`` rounded to ``digits`` significant digits (None when not finite): keeps page JSON small."""
    f = finite(v)
    if f is None or f == 0:
        return f
    return round(f, digits - 1 - int(math.floor(math.log10(abs(f)))))


def diagnostics_series(d: ClusterDiagnostics | None) -> dict[str, Any] | None:
    """The numbers the "Against image" charts of one cluster draw (None without diagnostics).

    Per dataset: the middle image of each group (``x``), the group's image
    range and observation count, and the series of ``IMAGE_PANELS``
    (Rmerge in %); ΔCC½ per dataset; the completeness curve (%)
    with the dataset added at each step.  ``panels``: the keys of the
    panels that have something to draw; ``missing``: why the others have not.
    """
    if d is None:
        return None
    datasets = []
    for x in d.datasets:
        s = x.images
        series: dict[str, list[float | None]] = {
            "scale": [_sig(v) for v in s.scale],
            "b": [_sig(v) for v in s.b],
            "r_merge": [_sig(100 * v) for v in s.r_merge],
            "i_over_sigma": [_sig(v) for v in s.i_over_sigma],
            "cc_rest": [_sig(v) for v in s.cc_rest],
        }
        datasets.append(
            {
                "name": x.name,
                "x": s.centre,
                "first": list(s.first),
                "last": list(s.last),
                "n_obs": list(s.n_obs),
                "width": x.group_width,
                "delta_cc_half": _sig(x.delta_cc_half),
                "completeness": _sig(x.completeness),
                **series,
            }
        )
    panels, missing = [], []
    for key, caption in IMAGE_PANELS:
        if any(v is not None for ds in datasets for v in ds[key]):
            panels.append({"key": key, "caption": caption})
        else:
            missing.append(f"{caption}: no image group has enough observations for it")
    if any(ds["delta_cc_half"] is not None for ds in datasets):
        panels.append({"key": "delta_cc_half", "caption": "ΔCC½ of each dataset"})
    else:
        missing.append("ΔCC½: not defined for any dataset (too few repeated reflections)")
    if d.completeness_curve:
        panels.append(
            {
                "key": "completeness",
                "caption": "Completeness (%) against the number of crystals merged",
            }
        )
    else:
        missing.append("completeness against crystals: no observations")
    widths = sorted({ds["width"] for ds in datasets if ds["width"]})
    return {
        "run": d.run,
        "d_min": finite(d.d_min),
        "d_max": finite(d.d_max),
        "cc_half": _sig(d.cc_half),
        "image_group": d.image_group,
        "min_obs": d.min_obs,
        "widths": widths,
        "datasets": datasets,
        "order": list(d.completeness_order),
        "curve": [_sig(v) for v in d.completeness_curve],
        "panels": panels,
        "missing": missing + ([d.note] if d.note else []),
    }


def dials_reports(c: ClusterResult, md: MergeDir) -> list[dict[str, str]]:
    """The DIALS HTML reports on disk in the cluster's run folders, as relative links."""
    if not c.merged_mtz or not c.final_run:
        return []
    final = md.files_base / Path(c.merged_mtz).parent
    cdir = final.parents[len(PurePosixPath(c.final_run).parts) - 1]
    out = []
    for run in c.runs:
        for name in DIALS_REPORTS:
            p = cdir / run.name / name
            if p.is_file():
                href = rel_link(str(p), md.path, md.path)
                out.append({"run": run.name, "label": name, "href": href or ""})
    return out


def cluster_entry(
    c: ClusterResult,
    md: MergeDir,
    member_files: dict[str, list[str]],
    out_display: str,
) -> dict[str, Any]:
    """One merged (or failed) cluster: its statistics, runs, files and re-run command."""
    page_dir, base = md.path, md.files_base
    st, ns = c.stats, c.node_stats
    return {
        "id": c.id,
        "members": list(c.members),
        "node_members": list(c.node_members),
        "n": len(c.members),
        "n_node": len(c.node_members),
        "height": c.height,
        "lcv": ns.lcv if ns else None,
        "alcv": ns.alcv if ns else None,
        "final_run": c.final_run,
        "space_group": c.space_group,
        "space_group_note": c.space_group_note or "",
        "cell": [finite(x) for x in c.unit_cell] if c.unit_cell else None,
        "d_min": c.d_min,
        "d_min_estimate": c.d_min_estimate,
        "d_cut": c.d_cut,
        "resolution_case": c.resolution_case,
        "cc_half": finite(c.cc_half),
        "completeness": finite(c.completeness),
        "multiplicity": finite(c.multiplicity),
        "wilson_b": finite(c.wilson_b),
        "aniso_best": finite(c.aniso_best),
        "aniso_worst": finite(c.aniso_worst),
        **stats_rows(st),
        "res": resolution_series(st),
        "anomalous": anomalous_entry(c.anomalous),
        "ano": c.anomalous is not None,
        "runs": [
            {
                "name": run.name,
                "n": len(run.datasets),
                "removed": [{"name": x.name, "reason": x.reason} for x in run.removed],
                "d_min": run.stats.overall.d_min if run.stats else None,
                "cc_half": finite(run.stats.overall.cc_half) if run.stats else None,
                "completeness": finite(run.stats.overall.completeness) if run.stats else None,
                "final": run.name == c.final_run,
            }
            for run in c.runs
        ],
        "axial": [
            {"axis": a.axis, "fold": a.fold, "n_axial": a.n_axial, "verdict": a.verdict}
            for a in c.axial
        ],
        "merged_mtz": rel_link(c.merged_mtz, page_dir, base),
        "unmerged_mtz": rel_link(c.unmerged_mtz, page_dir, base),
        "command": merge_command(
            [f for m in c.members for f in member_files.get(m, [m])],
            str(Path(out_display) / f"selection_{md.method}_{c.id}"),
            md.sample,
            md.method,
            c.d_min,
        ),
        "error": c.error,
        "ok": c.ok,
        "diag": diagnostics_series(c.diagnostics) if c.ok else None,
        "dials_reports": dials_reports(c, md),
    }


_JS_CLUSTER_KEYS = (
    "id",
    "members",
    "n",
    "d_min",
    "cc_half",
    "completeness",
    "multiplicity",
    "command",
    "space_group",
    "error",
    "res",
    "ano",
    "diag",
)


def option_facts(o: MergeOptions | None) -> list[tuple[str, Any]]:
    """What the merge was asked to do, as (label, value) rows (none for an older summary)."""
    if o is None:
        return []
    t = o.thresholds
    on = {True: "on", False: "off"}
    return [
        ("Space group given", o.space_group or "– (decided from the data)"),
        ("Reference MTZ", o.reference or "–"),
        ("Anomalous (I+ and I− scaled apart)", "yes" if o.anomalous else "no"),
        ("CC½ target of the resolution cut", o.cc_half_target),
        (
            "Cluster thresholds",
            f"completeness ≥ {t.min_completeness:g} %, multiplicity ≥ "
            f"{t.min_multiplicity:g}, at most {t.max_clusters} clusters"
            + (
                f" holding at most {t.max_merged:g} × the datasets clustered"
                if t.max_merged is not None
                else ""
            ),
        ),
        (
            "Rejection",
            f"bad image groups (run_02) {on[o.reject_frames]}, bad datasets "
            f"(run_03) {on[o.reject_datasets]}",
        ),
    ]


def _input_rows(
    entries: list[dict[str, Any]],
    member_files: dict[str, list[str]],
    href: Callable[[str], str | None],
) -> list[dict[str, Any]]:
    """The merge page's table of input datasets (index = position in the dendrogram data)."""
    return [
        {
            "idx": i,
            "name": e["name"],
            "files": member_files.get(e["name"], []),
            "href": href(e["name"]),
            "status": e["status"],
            "space_group": e["space_group"],
            "cell": e["cell"],
            "d_min": e["d_min"],
            "cc_half": finite(e["overall"].cc_half) if e["overall"] else None,
            "i_over_sigma": finite(e["overall"].i_over_sigma) if e["overall"] else None,
            "completeness": finite(e["overall"].completeness) if e["overall"] else None,
        }
        for i, e in enumerate(entries)
    ]


def _step_rows(summary: MergeSummary, page_dir: Path, files_base: Path) -> list[dict[str, Any]]:
    """The DIALS programs of a merge, with links to their logs."""
    return [
        {
            "name": s.name,
            "returncode": s.returncode,
            "wall_s": s.wall_s,
            "skipped": s.skipped,
            "note": s.note,
            "log": rel_link(s.log, page_dir, files_base) if s.log else None,
            "command": " ".join(shlex.quote(str(c)) for c in s.command),
        }
        for s in summary.steps
    ]


def _merge_facts(md: MergeDir) -> list[tuple[str, Any]]:
    """The merge page's summary table: what was merged, where, and with which options."""
    summary = md.summary
    return [
        ("Sample", summary.sample),
        ("Clustering", md.method),
        ("Start resolution (Å)", summary.d_start),
        ("Datasets given", summary.n_inputs),
        (
            "Space group (all datasets)",
            summary.space_group_choice.label
            if summary.space_group_choice
            else summary.space_group or "–",
        ),
        (
            "Wavelength (Å)",
            " – ".join(f"{x:.4f}" for x in sorted(set(summary.wavelength_range)))
            if summary.wavelength_range
            else "–",
        ),
        ("Directory", str(md.path)),
        *option_facts(summary.options),
    ]


def _chart_names(
    inputs: list[dict[str, Any]], md: MergeDir, clusters: list[dict[str, Any]]
) -> list[str]:
    """Every dataset name the merge page's charts draw (inputs, dendrogram leaves, CC table,
    cluster members), for their short axis labels."""
    names = [d["name"] for d in inputs]
    names += list(md.dendrogram.leaves) if md.dendrogram else []
    names += [n for p in md.cc_pairs for n in (p.name_i, p.name_j)]
    names += [m for c in clusters for m in c["members"]]
    return names


def merge_context(
    md: MergeDir, rows: list[DatasetRow], out_dir: Path, out_display: str
) -> dict[str, Any]:
    """Everything one merge report shows, and the JSON its scripts read."""
    summary = md.summary
    page_dir = md.path
    sample_rows = _sample_rows(md, rows, out_dir)
    entries = dataset_entries(sample_rows, out_dir, page_dir, with_spots=False)
    by_name = {e["name"]: e for e in entries}
    member_files = {row.result.name: dataset_inputs(row.result, out_dir) for row in sample_rows}
    datasets_href = rel_link("report/datasets.html", page_dir, out_dir)

    def href(name: str) -> str | None:
        return f"{datasets_href}#{by_name[name]['anchor']}" if name in by_name else None

    inputs = _input_rows(entries, member_files, href)
    clusters = [cluster_entry(c, md, member_files, out_display) for c in summary.clusters]
    used = {m for c in summary.clusters if c.ok for m in c.members}
    rejected = [
        {"name": r.name, "stage": r.stage, "reason": r.reason or "no reason recorded"}
        | {"href": href(r.name)}
        for r in summary.rejected
    ]
    rejected_names = {r.name for r in summary.rejected}
    not_processed = [
        {"name": e["name"], "reason": e["problem"] or e["status"], "href": href(e["name"])}
        for e in entries
        if e["status"] != "ok" and e["name"] not in rejected_names
    ]
    unaccounted = [
        e["name"]
        for e in entries
        if e["status"] == "ok" and e["name"] not in used and e["name"] not in rejected_names
    ]
    not_merged = [{"id": n.id, "n": n.n_members, "why": n.why} for n in summary.not_merged]
    amb = summary.ambiguity
    downloads = [
        {"label": name, "href": name}
        for name in (
            "merge_summary.json",
            "cluster_summary.dat",
            f"dendrogram_{md.method}.json",
            "cc_table.json",
        )
        if md.file(name)
    ]
    steps = _step_rows(summary, page_dir, md.files_base)
    facts = _merge_facts(md)
    anomalous_clusters = [c for c in clusters if c["anomalous"]]
    js = {
        "method": md.method,
        "sample": md.sample,
        "out": out_display,
        "d_start": md.d_start,
        "dendrograms": {md.dendrogram.method: to_dict(md.dendrogram)} if md.dendrogram else {},
        "clusters": [{k: c[k] for k in _JS_CLUSTER_KEYS} for c in clusters],
        "inputs": inputs,
        "cc_table": cc_matrix(md.cc_pairs),
        "selection_dir": str(Path(out_display) / f"selection_{md.method}"),
        "not_merged": {str(n["id"]): n["why"] for n in not_merged},
        "labels": short_labels(_chart_names(inputs, md, clusters)),
        # the CCano target of the anomalous resolution, drawn on the CCano chart
        "cc_ano_target": anomalous_clusters[0]["anomalous"]["target"]
        if anomalous_clusters
        else None,
    }
    return {
        "merge": md,
        "title_label": summary.label,
        "facts": facts,
        "notes": list(summary.notes),
        "failure": summary.failure_reason(),
        "ambiguity": amb,
        "sg_choice": summary.space_group_choice,
        "downloads": downloads,
        "steps": steps,
        "inputs": inputs,
        "clusters": clusters,
        "anomalous_clusters": anomalous_clusters,
        "has_dendrogram": md.dendrogram is not None,
        "rejected": rejected,
        "not_merged": not_merged,
        "not_processed": not_processed,
        "unaccounted": unaccounted,
        "n_inputs": len(entries),
        "n_used": len(used & set(by_name)) if by_name else len(used),
        "datasets_href": datasets_href,
        "index_href": rel_link("report/index.html", page_dir, out_dir),
        "js": js,
    }
