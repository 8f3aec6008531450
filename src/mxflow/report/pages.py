"""What each report shows: plain dicts built from the output directory.

The functions here decide content (rows, numbers, links, plain-word
explanations); :mod:`mxflow.report.render` turns them into HTML.  All links
are relative to the directory of the page that shows them, so a copy of
the output tree opens on any computer.
"""

from __future__ import annotations

import os
import re
import shlex
from collections import OrderedDict
from pathlib import Path, PurePosixPath
from typing import Any

from mxflow.merge.inputs import WAVELENGTH_TOLERANCE
from mxflow.report.load import (
    MergeRun,
    find_hitmaps,
    load_summary,
    merge_route,
    num,
    spot_counts_per_frame,
)

CELL_LABELS = ("a", "b", "c", "α", "β", "γ")


# ---------------------------------------------------------------- small helpers


def rel_link(target: str | None, page_dir: Path, out_dir: Path) -> str | None:
    """Relative URL from ``page_dir`` to ``target`` (a path relative to ``out_dir`` or absolute)."""
    if not target:
        return None
    p = Path(target)
    if not p.is_absolute():
        p = Path(out_dir) / p
    return PurePosixPath(Path(os.path.relpath(p, page_dir))).as_posix()


def pin_key(d: dict[str, Any]) -> str:
    """The pin (sample position) a dataset came from.

    Uses an explicit ``pin`` field, then the catalog key (``proc/<pin>/<name>``),
    otherwise the directory of the
    image files, with a trailing ``dataNN`` level (ZOO layout
    ``<puck>-<pin>/data00/...``) dropped.
    """
    if d.get("pin"):
        return str(d["pin"])
    key = PurePosixPath(str(d.get("key") or ""))
    if len(key.parts) >= 3 and key.parts[0].startswith("proc"):
        return key.parts[1]  # catalog key: proc/<pin>/<dataset>
    path = str(d.get("path") or "")
    parent = PurePosixPath(path.replace("\\", "/")).parent
    if re.fullmatch(r"data\d*", parent.name) and parent.parent.name:
        parent = parent.parent
    return parent.name or str(d.get("sample") or d.get("name") or "?")


def shell_rows(stats: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Per-shell rows (low → high resolution) plus an ``overall`` row flagged ``total``."""
    if not stats:
        return []
    rows = [dict(s, total=False) for s in stats.get("shells") or [] if isinstance(s, dict)]
    if isinstance(stats.get("overall"), dict):
        rows.append(dict(stats["overall"], total=True))
    return rows


def overall(stats: dict[str, Any] | None, which: str = "overall") -> dict[str, Any]:
    """``overall``, ``inner`` (first shell) or ``outer`` (last shell) of a MergingStats dict."""
    if not stats:
        return {}
    if which == "overall":
        return stats.get("overall") or {}
    shells = stats.get("shells") or []
    if not shells:
        return {}
    return shells[0] if which == "inner" else shells[-1]


def explain_failure(d: dict[str, Any]) -> str:
    """The reason a dataset failed, in plain words (never empty for a failed dataset)."""
    reason = str(d.get("reason") or "").strip()
    steps = d.get("steps") or []
    bad = [s for s in steps if s.get("returncode") not in (0, None) and not s.get("skipped")]
    if reason:
        return reason
    if bad:
        s = bad[-1]
        extra = f" ({s['note']})" if s.get("note") else ""
        return f"{s.get('name', 'a step')} stopped with exit status {s.get('returncode')}{extra}; see its log."
    if d.get("status") == "failed":
        return "Processing failed; no reason was recorded (see the step logs)."
    return ""


def dataset_label(d: dict[str, Any]) -> str:
    w = d.get("wedge") or "full"
    return str(d.get("name")) if w == "full" else f"{d.get('name')}"


def dataset_identity(d: dict[str, Any]) -> dict[str, Any]:
    """What names a dataset in every table: name, page anchor, sample, pin, mode, wedge,
    status and the plain-words reason of a failure (``d``: a summary.json entry)."""
    name = str(d.get("name") or "?")
    status = str(d.get("status") or "pending")
    return {
        "name": name,
        "anchor": anchor(name),
        "sample": d.get("sample") or "",
        "pin": pin_key(d),
        "mode": d.get("mode") or "",
        "wedge": d.get("wedge") or "full",
        "status": status,
        "problem": explain_failure(d) if status == "failed" else "",
    }


def anchor(name: str) -> str:
    """An HTML id derived from a dataset name."""
    return "ds-" + re.sub(r"[^A-Za-z0-9_.-]", "_", name)


# ---------------------------------------------------------------- dataset report


def dataset_entries(
    datasets: list[dict[str, Any]], out_dir: Path, page_dir: Path, with_spots: bool = True
) -> list[dict[str, Any]]:
    """One entry per dataset for the dataset report (table row + detail section)."""
    entries = []
    for d in datasets:
        stats = d.get("stats") if isinstance(d.get("stats"), dict) else None
        ov, inner, outer = overall(stats), overall(stats, "inner"), overall(stats, "outer")
        cell = d.get("unit_cell") or (stats or {}).get("unit_cell")
        spots = None
        if with_spots and d.get("workdir"):
            wd = Path(d["workdir"])
            spots = spot_counts_per_frame(wd if wd.is_absolute() else Path(out_dir) / wd)
        steps = []
        for s in d.get("steps") or []:
            log = s.get("log")
            if log and d.get("workdir") and not Path(log).is_absolute():
                log = str(PurePosixPath(d["workdir"]) / log)
            steps.append(
                {
                    "name": s.get("name"),
                    "returncode": s.get("returncode"),
                    "wall_s": num(s.get("wall_s")),
                    "skipped": bool(s.get("skipped")),
                    "note": s.get("note") or "",
                    "log": rel_link(log, page_dir, out_dir),
                    "command": " ".join(shlex.quote(str(c)) for c in s.get("command") or []),
                }
            )
        entries.append(
            {
                **dataset_identity(d),
                "path": d.get("path") or "",
                "space_group": d.get("space_group") or (stats or {}).get("space_group") or "",
                "space_group_note": d.get("space_group_note") or "",
                "cell": [num(x) for x in cell] if cell else None,
                "d_min": num(d.get("d_min")) or num(ov.get("d_min")),
                "wavelength": num(d.get("wavelength")),
                "total_rotation": num(d.get("total_rotation")),
                "osc_width": num(d.get("osc_width")),
                "indexed_fraction": num(d.get("indexed_fraction")),
                "wall_s": num(d.get("wall_s")),
                "overall": ov,
                "inner": inner,
                "outer": outer,
                "shells": shell_rows(stats),
                "anomalous": bool((stats or {}).get("anomalous")),
                "spots": spots,
                "steps": steps,
                "merged_mtz": rel_link(d.get("merged_mtz"), page_dir, out_dir),
                "unmerged_mtz": rel_link(d.get("unmerged_mtz"), page_dir, out_dir),
                "merged_mtz_name": PurePosixPath(str(d.get("merged_mtz") or "")).name,
                "unmerged_mtz_name": PurePosixPath(str(d.get("unmerged_mtz") or "")).name,
            }
        )
    return entries


def chart_data_for_dataset(e: dict[str, Any]) -> dict[str, Any]:
    """The numbers a dataset's charts need (kept small: embedded as JSON in the page)."""
    shells = [s for s in e["shells"] if not s.get("total")]
    return {
        "d": [num(s.get("d_min")) for s in shells],
        "cc_half": [num(s.get("cc_half")) for s in shells],
        "i_over_sigma": [num(s.get("i_over_sigma")) for s in shells],
        "completeness": [_pct(s.get("completeness")) for s in shells],
        "multiplicity": [num(s.get("multiplicity")) for s in shells],
        "spots": e["spots"],
    }


def _pct(v: Any) -> float | None:
    f = num(v)
    return None if f is None else 100.0 * f


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
        whole = [e for e in es if (e.get("wedge") or "full") == "full"] or es
        rots = [e["total_rotation"] for e in whole if e["total_rotation"]]
        if failed and not ok:
            status = "failed"
        elif failed:
            status = "partly failed"
        elif others:
            status = "running"
        else:
            status = "ok"
        hm = _match_hitmap(pin, sample, hitmaps)
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


def _match_hitmap(pin: str, sample: str, hitmaps: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The hit map of a pin: declared ``pin`` first, then a directory named after the pin."""
    for hm in hitmaps:
        if hm.get("pin") and str(hm["pin"]) == pin:
            return hm
    for hm in hitmaps:
        if pin and pin in PurePosixPath(hm["dir"]).parts:
            return hm
    return None


def collection_context(out_dir: Path, page_dir: Path, merge_runs: list[MergeRun]) -> dict[str, Any]:
    """Everything the collection (index) page shows."""
    datasets = load_summary(out_dir)
    entries = dataset_entries(datasets, out_dir, page_dir, with_spots=False)
    merges: dict[str, list[dict[str, Any]]] = {}
    samples: OrderedDict[str, dict[str, Any]] = OrderedDict()
    for e in entries:
        s = samples.setdefault(e["sample"], {"sample": e["sample"], "n": 0, "ok": 0, "failed": 0})
        s["n"] += 1
        s["ok"] += e["status"] == "ok"
        s["failed"] += e["status"] == "failed"
    for mr in merge_runs:
        best = _best_cluster(mr)
        link = {
            "label": f"{mr.method}"
            + (f" from {mr.dstart:.2f} Å" if mr.dstart else "")
            + (f", {mr.summary['label']}" if mr.summary.get("label") else "")
            + (f", {route}" if (route := merge_route(mr.path)) else ""),
            "href": rel_link(str(mr.path / "report.html"), page_dir, out_dir),
            "method": mr.method,
            "n_clusters": len(mr.summary.get("clusters") or []),
            "n_rejected": len(mr.summary.get("rejected") or []),
            "best": best,
        }
        merges.setdefault(mr.sample, []).append(link)
        samples.setdefault(mr.sample, {"sample": mr.sample, "n": 0, "ok": 0, "failed": 0})
    for s in samples.values():
        s["merges"] = merges.get(s["sample"], [])
    hitmaps = find_hitmaps(out_dir)
    for hm in hitmaps:
        hm["png_href"] = rel_link(hm["png"], page_dir, out_dir) if hm["png"] else None
        hm["json_href"] = rel_link(hm["json"], page_dir, out_dir)
        hm["html_href"] = rel_link(hm["html"], page_dir, out_dir) if hm.get("html") else None
    rows = pin_rows(entries, hitmaps, merges, out_dir, page_dir)
    return {
        "pins": rows,
        "samples": list(samples.values()),
        "hitmaps": hitmaps,
        "n_datasets": len(entries),
        "n_ok": sum(e["status"] == "ok" for e in entries),
        "n_failed": sum(e["status"] == "failed" for e in entries),
        "n_other": sum(e["status"] not in ("ok", "failed") for e in entries),
        "wall_h": sum(e["wall_s"] or 0.0 for e in entries) / 3600.0,
    }


def _best_cluster(mr: MergeRun) -> dict[str, Any] | None:
    """The merged cluster with the best (smallest) d_min, ties broken by more members."""
    clusters = [c for c in mr.summary.get("clusters") or [] if num(c.get("d_min"))]
    if not clusters:
        return None
    c = min(clusters, key=lambda c: (num(c.get("d_min")), -len(c.get("members") or [])))
    return {
        "id": c.get("id"),
        "d_min": num(c.get("d_min")),
        "n": len(c.get("members") or []),
        "cc_half": num(c.get("cc_half")),
        "completeness": num(c.get("completeness")),
    }


# ---------------------------------------------------------------- merge report

# KAMO's cluster_summary.dat column groups: suffix -> group title
_GROUPS = ((".ou", "Outer shell"), (".in", "Inner shell"))
_OVERALL_COLS = ("Cmpl", "Redun", "I/sigI", "Rmeas", "CC1/2", "SigAno", "CCano")


def cluster_table_groups(columns: list[str]) -> list[tuple[str, list[str]]]:
    """Group cluster_summary.dat columns under header spans (Cluster / Overall / Outer / Inner / Other)."""
    groups: list[tuple[str, list[str]]] = []

    def add(title: str, col: str) -> None:
        if groups and groups[-1][0] == title:
            groups[-1][1].append(col)
        else:
            groups.append((title, [col]))

    for col in columns:
        title = next((t for suf, t in _GROUPS if col.endswith(suf)), None)
        if title is None:
            title = "Overall" if col in _OVERALL_COLS else ("" if col in _ID_COLS else "Other")
        add(title, col)
    return groups


_ID_COLS = ("cluster", "ClH", "LCV", "aLCV", "run", "ds.all", "ds.used")

_COLUMN_TITLES = {
    "ClH": "ClH",
    "ds.all": "#DS all",
    "ds.used": "#DS used",
    "Redun": "Redun",
    "I/sigI": "I/σ(I)",
    "CC1/2": "CC½",
    "WilsonB": "Wilson B (Å²)",
    "Aniso.bst": "Aniso best (Å)",
    "Aniso.wst": "Aniso worst (Å)",
    "dmin.est": "d_min est. (Å)",
    "CCano": "CCano",
}


def column_title(col: str) -> str:
    """Readable header for a cluster_summary.dat column (suffix stripped)."""
    base = col.removesuffix(".ou").removesuffix(".in")
    return _COLUMN_TITLES.get(base, base.replace("sig", "σ").replace("CC1/2", "CC½"))


def dataset_inputs(d: dict[str, Any], out_dir: Path) -> list[str]:
    """What ``mxflow merge`` takes for one dataset: its integrated .expt and .refl, else its work directory.

    Paths are absolute (relative summary paths are taken from ``out_dir``).
    """

    def absolute(p: str) -> str:
        return str(Path(p) if Path(p).is_absolute() else Path(out_dir) / p)

    if d.get("integrated_expt") and d.get("integrated_refl"):
        return [absolute(d["integrated_expt"]), absolute(d["integrated_refl"])]
    if d.get("workdir"):
        return [absolute(d["workdir"])]
    return [str(d.get("name") or "?")]


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


def merge_context(mr: MergeRun, out_dir: Path, out_display: str) -> dict[str, Any]:
    """Everything one merge report shows, and the JSON its scripts read."""
    page_dir = mr.path
    all_ds = load_summary(out_dir)
    sample_ds = [d for d in all_ds if (d.get("sample") or "") == mr.sample]
    if mr.summary.get("label") and mr.summary.get("wavelength_range"):
        # one of several wavelengths of the sample: its datasets only
        lo, hi = mr.summary["wavelength_range"]
        tol = WAVELENGTH_TOLERANCE
        sample_ds = [d for d in sample_ds if lo - tol <= (d.get("wavelength") or -1) <= hi + tol]
    entries = dataset_entries(sample_ds, out_dir, page_dir, with_spots=False)
    by_name = {e["name"]: e for e in entries}
    member_files = {str(d.get("name")): dataset_inputs(d, out_dir) for d in sample_ds}
    files_base = mr.path.parent  # merge outputs are relative to the merge work directory
    datasets_href = rel_link("report/datasets.html", page_dir, out_dir)

    inputs = []
    for i, e in enumerate(entries):
        inputs.append(
            {
                "idx": i,
                "name": e["name"],
                "files": member_files.get(e["name"], []),
                "href": f"{datasets_href}#{e['anchor']}",
                "status": e["status"],
                "space_group": e["space_group"],
                "cell": e["cell"],
                "d_min": e["d_min"],
                "cc_half": num(e["overall"].get("cc_half")),
                "i_over_sigma": num(e["overall"].get("i_over_sigma")),
                "completeness": num(e["overall"].get("completeness")),
            }
        )

    clusters = []
    used: set[str] = set()
    for c in mr.summary.get("clusters") or []:
        members = [str(m) for m in c.get("members") or []]
        used.update(members)
        stats = mr.cluster_stats.get(str(c.get("id")))
        clusters.append(
            {
                "id": c.get("id"),
                "members": members,
                "n": len(members),
                "final_run": c.get("final_run") or "",
                "space_group": c.get("space_group") or "",
                "space_group_note": c.get("space_group_note") or "",
                "cell": [num(x) for x in c.get("unit_cell") or []] or None,
                "d_min": num(c.get("d_min")),
                "cc_half": num(c.get("cc_half")),
                "completeness": num(c.get("completeness")),
                "multiplicity": num(c.get("multiplicity")),
                "merged_mtz": rel_link(c.get("merged_mtz"), page_dir, files_base),
                "unmerged_mtz": rel_link(c.get("unmerged_mtz"), page_dir, files_base),
                "command": merge_command(
                    [f for m in members for f in member_files.get(m, [m])],
                    str(Path(out_display) / f"selection_{mr.method}_{c.get('id')}"),
                    mr.sample,
                    mr.method,
                    num(c.get("d_min")),
                ),
                "error": str(c.get("error") or ""),
                "shells": shell_rows(stats),
                "overall": overall(stats),
                "inner": overall(stats, "inner"),
                "outer": overall(stats, "outer"),
                "per_dataset": (stats or {}).get("per_dataset"),
                "per_frame": (stats or {}).get("per_frame"),
            }
        )

    rejected = []
    for r in mr.summary.get("rejected") or []:
        rejected.append(
            {
                "name": str(r.get("name") or "?"),
                "stage": str(r.get("stage") or ""),
                "reason": str(r.get("reason") or "no reason recorded"),
                "frames": r.get("frames"),
                "href": f"{datasets_href}#{by_name[r['name']]['anchor']}"
                if r.get("name") in by_name
                else None,
            }
        )
    rejected_names = {r["name"] for r in rejected}
    not_processed = [
        {
            "name": e["name"],
            "stage": "processing",
            "reason": e["problem"] or e["status"],
            "href": f"{datasets_href}#{e['anchor']}",
        }
        for e in entries
        if e["status"] != "ok" and e["name"] not in rejected_names
    ]
    unaccounted = [
        e["name"]
        for e in entries
        if e["status"] == "ok" and e["name"] not in used and e["name"] not in rejected_names
    ]

    js = {
        "method": mr.method,
        "sample": mr.sample,
        "out": out_display,
        "d_start": mr.dstart,
        "dendrograms": mr.dendrograms,
        "clusters": [
            {
                k: c[k]
                for k in (
                    "id",
                    "members",
                    "n",
                    "d_min",
                    "cc_half",
                    "completeness",
                    "multiplicity",
                    "command",
                    "space_group",
                )
            }
            | {
                "res": _res_series(c["shells"]),
                "per_dataset": c["per_dataset"],
                "per_frame": c["per_frame"],
            }
            for c in clusters
        ],
        "inputs": inputs,
        "cc_table": _cc_matrix(mr.cc_table),
        "selection_dir": str(Path(out_display) / f"selection_{mr.method}"),
        "not_merged": {
            str(n.get("id")): str(n.get("why") or "")
            for n in mr.summary.get("not_merged") or []
            if isinstance(n, dict) and n.get("method", mr.method) == mr.method
        },
    }
    params = dict(mr.summary.get("parameters") or {})
    return {
        "notes": [str(n) for n in mr.summary.get("notes") or []],
        "merge": mr,
        "params": params,
        "inputs": inputs,
        "clusters": clusters,
        "cluster_columns": mr.cluster_columns,
        "cluster_groups": cluster_table_groups(mr.cluster_columns) if mr.cluster_columns else [],
        "cluster_table": mr.cluster_table,
        "rejected": rejected,
        "not_processed": not_processed,
        "unaccounted": unaccounted,
        "n_inputs": len(entries),
        "n_used": len(used & set(by_name)) if by_name else len(used),
        "datasets_href": datasets_href,
        "index_href": rel_link("report/index.html", page_dir, out_dir),
        "js": js,
    }


def _res_series(shells: list[dict[str, Any]]) -> dict[str, list[Any]]:
    sh = [s for s in shells if not s.get("total")]
    return {
        "d": [num(s.get("d_min")) for s in sh],
        "cc_half": [num(s.get("cc_half")) for s in sh],
        "i_over_sigma": [num(s.get("i_over_sigma")) for s in sh],
        "completeness": [_pct(s.get("completeness")) for s in sh],
        "multiplicity": [num(s.get("multiplicity")) for s in sh],
    }


def _cc_matrix(cc: Any) -> dict[str, Any] | None:
    """Normalise cc_table.json to ``{"names": [...], "cc": [[...]]}`` (None if unrecognised).

    Accepted shapes: ``{"names", "cc"|"matrix"}``, or pair lists
    ``[{"i", "j", "cc"}, ...]`` (optionally under ``"pairs"``, with ``"names"``).
    """
    if not cc:
        return None
    if isinstance(cc, dict) and isinstance(cc.get("names"), list):
        mat = cc.get("cc") or cc.get("matrix")
        if isinstance(mat, list) and mat and isinstance(mat[0], list):
            return {"names": cc["names"], "cc": mat}
    pairs = cc.get("pairs") if isinstance(cc, dict) else cc
    if isinstance(pairs, list) and pairs and isinstance(pairs[0], dict) and "cc" in pairs[0]:
        n = 1 + max(max(int(p["i"]), int(p["j"])) for p in pairs)
        names = cc.get("names") if isinstance(cc, dict) else None
        mat: list[list[float | None]] = [[None] * n for _ in range(n)]
        for i in range(n):
            mat[i][i] = 1.0
        for p in pairs:
            i, j = int(p["i"]), int(p["j"])
            mat[i][j] = mat[j][i] = num(p.get("cc"))
        return {"names": names or [str(i) for i in range(n)], "cc": mat}
    return None
