"""What a merge writes besides the MTZ files: summaries, dendrograms, the CC table, KAMO's .dat.

Formatting only: every value comes from the typed results
(:class:`~mxflow.model.MergeSummary`, :class:`~mxflow.model.Dendrogram`,
:class:`~mxflow.model.CCPair`); nothing here computes a statistic.
"""

from __future__ import annotations

import math
from pathlib import Path

from mxflow.errors import BadInputError
from mxflow.model import (
    MERGE_SCHEMA,
    CCPair,
    ClusterResult,
    Dendrogram,
    MergeSummary,
    from_dict,
    to_dict,
)
from mxflow.util.files import atomic_write_text, read_json, write_json

SUMMARY_NAME = "merge_summary.json"

DAT_HEADER = (
    "cluster ClH LCV aLCV run ds.all ds.used Cmpl Redun I/sigI Rmeas CC1/2 "
    "Cmpl.ou Red.ou I/sig.ou Rmeas.ou CC1/2.ou Cmpl.in Red.in I/sig.in Rmeas.in CC1/2.in "
    "SigAno.in CCano.in WilsonB Aniso.bst Aniso.wst dmin.est "
    "CCano SigAno ACmpl ARedun dmin.ano"
)


def _f(v: float | None, spec: str) -> str:
    return format(v, spec) if v is not None and math.isfinite(v) else "nan"


def dat_row(c: ClusterResult) -> str:
    """One line of KAMO's ``cluster_summary.dat`` for a merged cluster (percentages as %).

    After KAMO's columns, mxflow's anomalous ones: overall CCano, SigAno,
    anomalous completeness (%) and multiplicity, and the resolution (Å) to
    which CCano stays above its target (``c.anomalous.d_ano``; nan when the
    merge is not anomalous or the signal does not reach the target).
    """
    st, ns = c.stats, c.node_stats
    assert st is not None and ns is not None, "only merged clusters have a row"
    cols = [
        f"{c.id:04d}",
        _f(c.height, ".3f"),
        _f(ns.lcv, ".2f"),
        _f(ns.alcv, ".2f"),
        c.final_run,
        str(len(c.node_members)),
        str(len(c.members)),
    ]
    for s in (st.overall, st.outer, st.inner):
        cols += [
            _f(100 * s.completeness, ".1f"),
            _f(s.multiplicity, ".1f"),
            _f(s.i_over_sigma, ".2f"),
            _f(100 * s.r_meas, ".1f"),
            _f(s.cc_half, ".3f"),
        ]
    cols += [
        _f(st.inner.sig_ano, ".2f"),
        _f(st.inner.cc_ano, ".3f"),
        _f(c.wilson_b, ".1f"),
        _f(c.aniso_best, ".2f"),
        _f(c.aniso_worst, ".2f"),
        _f(c.d_min_estimate or math.nan, ".2f"),
    ]
    o, ano = st.overall, c.anomalous
    cols += [
        _f(o.cc_ano, ".3f"),
        _f(o.sig_ano, ".2f"),
        _f(100 * o.anom_completeness, ".1f"),
        _f(o.anom_multiplicity, ".1f"),
        _f(ano.d_ano if ano else None, ".2f"),
    ]
    return " ".join(cols)


def format_cluster_summary(clusters: list[ClusterResult]) -> str:
    """KAMO's ``cluster_summary.dat``: a header and one row per merged cluster."""
    return "\n".join([DAT_HEADER] + [dat_row(c) for c in clusters if c.ok]) + "\n"


def write_method_outputs(
    mdir: Path, summary: MergeSummary, dendrogram: Dendrogram, pairs: list[CCPair]
) -> None:
    """``merge_<method>_<d>S_<sample>/``: cc_table.json, dendrogram_<method>.json,
    cluster_summary.dat and merge_summary.json (``summary`` of this method only)."""
    mdir.mkdir(parents=True, exist_ok=True)
    write_json(mdir / "cc_table.json", [to_dict(p) for p in pairs])
    write_json(mdir / f"dendrogram_{dendrogram.method}.json", to_dict(dendrogram))
    atomic_write_text(mdir / "cluster_summary.dat", format_cluster_summary(summary.clusters))
    write_summary(mdir / SUMMARY_NAME, summary)


def write_summary(path: Path, summary: MergeSummary) -> None:
    write_json(path, to_dict(summary))


def read_summary(path: str | Path) -> MergeSummary:
    """A ``merge_summary.json`` as the typed summary.

    Raises BadInputError naming the file when it is not valid JSON or was
    written with another schema (an older mxflow, or a newer one).
    """
    try:
        data = read_json(path)
    except (OSError, ValueError) as exc:
        raise BadInputError(path, f"cannot read the merge summary ({exc})") from exc
    schema = data.get("schema") if isinstance(data, dict) else None
    if schema != MERGE_SCHEMA:
        raise BadInputError(
            path,
            f"merge summary schema {schema} (this mxflow reads schema {MERGE_SCHEMA}); "
            "run the merge again with this version",
        )
    return from_dict(MergeSummary, data)


def read_dendrogram(path: str | Path) -> Dendrogram:
    return from_dict(Dendrogram, read_json(path))


def read_cc_table(path: str | Path) -> list[CCPair]:
    return [from_dict(CCPair, row) for row in read_json(path)]
