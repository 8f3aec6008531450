"""The recommended result of a sample's merge, and the ``final/`` folder that holds it.

:func:`recommend` picks one merged cluster with KAMO's rule
(``choose_best_result``): of the merged clusters, the top half by
multiplicity, and of those the one with the highest CC½.  :func:`write_final`
copies that cluster's files into ``<merge folder>/final/``::

    merged.mtz           give this to refinement (FreeR_flag included)
    unmerged.mtz         the same reflections unmerged (deposition, other scaling)
    unmerged.cif         unmerged mmCIF for deposition (when the run wrote one)
    merged_hklf4.hkl     SHELX HKLF 4 of I(+) / I(−) (anomalous merges: SHELXC/D/E)
    merging_stats.txt    per-shell statistics of the cluster's final run
    final.json           cluster id, why it was chosen, datasets, SG, cell, d_min, CC½, ...
    README.txt           the same in words
"""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path
from typing import Any

from mxflow.catalog.merge_table import FINAL_DIR, FINAL_JSON
from mxflow.cluster.select import failed_anomalous_tests
from mxflow.model import ClusterResult, MergeSummary, to_dict
from mxflow.util.files import write_json

#: what final/ copies from the recommended cluster's final run folder (when present)
FINAL_FILES = (
    "merged.mtz",
    "unmerged.mtz",
    "unmerged.cif",
    "merged_hklf4.hkl",
    "merging_stats.txt",
)


def _cc(c: ClusterResult) -> float:
    return c.cc_half if math.isfinite(c.cc_half) else -math.inf


def _mult(c: ClusterResult) -> float:
    return c.multiplicity if math.isfinite(c.multiplicity) else -math.inf


def recommend(summary: MergeSummary) -> tuple[ClusterResult, str] | None:
    """The recommended merged cluster of ``summary`` and why, in one line; None if none merged.

    KAMO's rule: the merged clusters sorted by multiplicity, the top half
    (rounded up) kept, and of those the highest CC½ (overall, to the cut).
    An anomalous merge with KAMO's anomalous thresholds (min_acmpl,
    min_aredun) first keeps the clusters that pass them (all, when none does,
    and the reason says so).
    """
    merged = sorted((c for c in summary.clusters if c.ok), key=_mult, reverse=True)
    if not merged:
        return None
    prefix = ""
    t = summary.options.thresholds if summary.options else None
    if t is not None and summary.options and summary.options.anomalous:
        passing = [c for c in merged if not failed_anomalous_tests(c.anomalous, t)]
        if passing and len(passing) < len(merged):
            prefix = f"{len(merged) - len(passing)} cluster(s) below the anomalous thresholds; "
            merged = passing
        elif not passing and any(failed_anomalous_tests(c.anomalous, t) for c in merged):
            prefix = "no cluster reaches the anomalous thresholds; "
    choice = _kamo_rule(merged)
    return choice[0], prefix + choice[1]


def _kamo_rule(merged: list[ClusterResult]) -> tuple[ClusterResult, str]:
    if len(merged) == 1:
        return merged[0], "the only cluster merged"
    top = merged[: (len(merged) + 1) // 2]
    best = max(top, key=_cc)
    if len(top) == 1:
        return best, (
            f"highest multiplicity ({best.multiplicity:.1f}) of {len(merged)} merged clusters "
            "(KAMO's rule)"
        )
    return best, (
        f"highest CC½ ({best.cc_half:.3f}) of the {len(top)} most redundant of {len(merged)} "
        f"merged clusters (multiplicity ≥ {top[-1].multiplicity:.1f}; KAMO's rule)"
    )


def final_record(summary: MergeSummary, cluster: ClusterResult, reason: str) -> dict[str, Any]:
    """What ``final/final.json`` says (d in Å, completeness as a fraction, cell in Å / °)."""
    ov = cluster.stats.overall if cluster.stats else None
    return {
        "sample": summary.sample,
        "label": summary.label,
        "method": cluster.method,
        "cluster": cluster.id,
        "reason": reason,
        "source": str(Path(cluster.merged_mtz).parent),
        "final_run": cluster.final_run,
        "datasets": list(cluster.members),
        "space_group": cluster.space_group,
        "unit_cell": list(cluster.unit_cell) if cluster.unit_cell else None,
        "d_min": cluster.d_min,
        "cc_half": cluster.cc_half,
        "cc_half_outer": cluster.cc_half_outer,
        "completeness": cluster.completeness,
        "multiplicity": cluster.multiplicity,
        "i_over_sigma": ov.i_over_sigma if ov else None,
        "anomalous": to_dict(cluster.anomalous) if cluster.anomalous else None,
        "files": [],
    }


def readme_text(record: dict[str, Any]) -> str:
    """README.txt of ``final/`` from its :func:`final_record`."""

    def f(v: Any, spec: str, scale: float = 1.0) -> str:
        return "-" if v is None else format(v * scale, spec)

    cell = record["unit_cell"]
    what = record["sample"] + (f" ({record['label']})" if record["label"] else "")
    lines = [
        f"Recommended merge of sample {what}: {record['method']} cluster {record['cluster']}",
        f"Why: {record['reason']}",
        f"From: {record['source']}",
        "",
        f"space group   {record['space_group']}",
        "unit cell     " + (" ".join(f"{x:.3f}" for x in cell) if cell else "-"),
        f"d_min         {f(record['d_min'], '.2f')} Å",
        f"CC½           {f(record['cc_half'], '.3f')} (outer shell {f(record['cc_half_outer'], '.3f')})",
        f"completeness  {f(record['completeness'], '.1f', 100)} %",
        f"multiplicity  {f(record['multiplicity'], '.1f')}",
        f"I/σ           {f(record['i_over_sigma'], '.1f')}",
        f"datasets ({len(record['datasets'])}):",
        *(f"  {d}" for d in record["datasets"]),
        "",
        "merged.mtz: merged intensities with FreeR_flag (0 = test set); give this to refinement.",
    ]
    anom = record.get("anomalous")
    if anom:
        ha = anom.get("heavy_atom") or {}
        d_ano = anom.get("d_ano")
        lines[-1:-1] = [
            f"anomalous     CCano {f(anom.get('cc_ano'), '.3f')}, SigAno "
            f"{f(anom.get('sig_ano'), '.2f')}, signal to "
            + (f"{d_ano:.2f} Å" if d_ano else "no shell (CCano below target)")
            + (f"; heavy atom {ha['element']}" if ha.get("element") else ""),
        ]
        lines.append(
            "merged.mtz keeps I(+)/I(-), F(+)/F(-) and DANO/SIGDANO for phasing; "
            "merged_hklf4.hkl is the same for SHELXC/D/E."
        )
    if "unmerged.cif" in record["files"]:
        lines.append("unmerged.mtz, unmerged.cif: unmerged intensities (deposition).")
    else:
        lines.append("unmerged.mtz: unmerged intensities (deposition).")
    return "\n".join(lines) + "\n"


def write_final(
    summary: MergeSummary, merge_dir: str | Path, dest: str | Path | None = None
) -> Path | None:
    """Write ``merge_dir/final/`` (or ``dest``) for the recommended cluster, replacing an
    earlier one; returns its path, or None (and no folder) when no cluster merged.

    ``merge_dir`` is the folder the summary's MTZ paths are relative to.  The
    folder is built beside ``final/`` and renamed into place, so a reader sees
    the old folder or the new one, never a part of one.
    """
    root = Path(merge_dir)
    final = Path(dest) if dest is not None else root / FINAL_DIR
    choice = recommend(summary)
    source = root / Path(choice[0].merged_mtz).parent if choice else None
    if choice is None or not (source / "merged.mtz").is_file():
        shutil.rmtree(final, ignore_errors=True)
        return None
    cluster, reason = choice
    record = final_record(summary, cluster, reason)
    tmp, old = (final.with_name(f".{final.name}.{os.getpid()}.{x}") for x in ("part", "old"))
    for leftover in (tmp, old):
        shutil.rmtree(leftover, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        for name in FINAL_FILES:
            if (source / name).is_file():
                shutil.copyfile(source / name, tmp / name)
                record["files"].append(name)
        write_json(tmp / FINAL_JSON, record)
        (tmp / "README.txt").write_text(readme_text(record))
        if final.exists():
            os.replace(final, old)
        os.replace(tmp, final)
    except BaseException:
        if old.exists() and not final.exists():
            os.replace(old, final)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)
    return final
