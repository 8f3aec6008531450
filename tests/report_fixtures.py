"""A synthetic output directory written from mxflow's own types (tests, benchmarks).

Nothing here is a processing result: the numbers are drawn from simple
smooth models (I/σ falling with 1/d², a logistic CC½) with a fixed random
seed, so the 200-dataset load test and the fast report tests can build a
collection without running DIALS.  Every file is written the way mxflow
writes it: summary.json from :class:`~mxflow.model.DatasetResult` with
:func:`~mxflow.model.to_dict` (plus the catalog's key, kind and attempts),
the merge directories with :func:`mxflow.merge.outputs.write_method_outputs`
from :class:`~mxflow.model.MergeSummary`, :class:`~mxflow.model.Dendrogram`
and :class:`~mxflow.model.CCPair`.  Files written:

* ``summary.json`` — datasets of two samples in every mode (single,
  helical with 30° wedges, multi-crystal small wedges), some failed;
* ``proc/<pin>/<name>/strong.refl`` — a DIALS msgpack spot list per
  processed dataset (``xyzobs.px.value`` only), for the spots-per-frame plot;
* ``merge_<method>_2.2S_<sample>/`` — what a merge writes (no MTZ files);
* ``hitmap/<pin>/hitmap.json`` and a small PNG.

The report tests that check what a merge page shows use a real merge
instead (:mod:`merge_fixtures`).
"""

from __future__ import annotations

import math
import struct
import zlib
from pathlib import Path
from typing import Any

import msgpack
import numpy as np

from mxflow.merge.outputs import write_method_outputs
from mxflow.model import (
    CCPair,
    ClusterResult,
    DatasetResult,
    Dendrogram,
    DendrogramNode,
    MergeRun,
    MergeSummary,
    MergingStats,
    NodeStats,
    NotMerged,
    Rejection,
    ShellStats,
    StepRecord,
    to_dict,
)
from mxflow.util.files import atomic_write_bytes, write_json

SAMPLES = {
    # name: (space group, cell, typical d_min in Å)
    "Lys": ("P 43 21 2", (78.9, 78.9, 37.2, 90.0, 90.0, 90.0), 1.6),
    "Thau": ("P 41 21 2", (58.0, 58.0, 150.5, 90.0, 90.0, 90.0), 1.9),
}


def axial_note(sg: str) -> str:
    """The caveat mxflow.stats.absences writes when small wedges miss the axial reflections."""
    return (
        "screw axes along a, c cannot be decided (no h00 / 00l reflections that a screw would "
        f"extinguish were measured): {sg} is one of the space groups these data allow"
    )


def shells_model(
    rng: np.random.Generator, d_min: float, quality: float, n_shells: int = 10, **kw: Any
) -> MergingStats:
    """MergingStats (shells low → high resolution) from a smooth model."""
    d_max = 40.0
    s2 = np.linspace(1 / d_max**2, 1 / d_min**2, n_shells + 1)
    d = 1 / np.sqrt(s2)
    shells = []
    base_mult = rng.uniform(3.5, 7.0)
    for i in range(n_shells):
        s_mid = math.sqrt(0.5 * (s2[i] + s2[i + 1]))
        isig = max(
            0.3, 30 * quality * math.exp(-3.5 * (s_mid * d_min) ** 2) * rng.uniform(0.9, 1.1)
        )
        n_possible = int(800 + 2600 * i / n_shells * rng.uniform(0.95, 1.05))
        compl = min(1.0, rng.uniform(0.9, 1.0) * (1.0 if i < n_shells - 1 else 0.93))
        n_unique = int(n_possible * compl)
        n_obs = int(n_unique * base_mult * (1.0 - 0.25 * i / n_shells) * rng.uniform(0.97, 1.03))
        r_meas = min(2.5, 0.8 / (isig + 0.3))
        shells.append(
            ShellStats(
                float(d[i]),
                float(d[i + 1]),
                n_obs=n_obs,
                n_unique=n_unique,
                n_possible=n_possible,
                completeness=n_unique / n_possible,
                multiplicity=n_obs / max(1, n_unique),
                i_over_sigma=isig,
                r_merge=r_meas * 0.93,
                r_meas=r_meas,
                r_pim=r_meas * 0.45,
                cc_half=1 / (1 + math.exp(-(isig - 1.2) * 2.2)),
                cc_ano=max(
                    -0.1,
                    0.45 * min(quality, 1.0) * math.exp(-3 * i / n_shells) + rng.normal(0, 0.02),
                ),
                sig_ano=0.7 + 0.6 * math.exp(-3 * i / n_shells),
                n_ano=n_unique // 2,
            )
        )
    n_obs = sum(s.n_obs for s in shells)
    n_unique = sum(s.n_unique for s in shells)
    n_possible = sum(s.n_possible for s in shells)
    overall = ShellStats(
        float(d[0]),
        float(d[-1]),
        n_obs=n_obs,
        n_unique=n_unique,
        n_possible=n_possible,
        completeness=n_unique / n_possible,
        multiplicity=n_obs / n_unique,
        i_over_sigma=float(np.mean([s.i_over_sigma for s in shells])),
        r_merge=0.06 / quality,
        r_meas=0.065 / quality,
        r_pim=0.03 / quality,
        cc_half=float(min(0.999, 0.95 + 0.05 * quality * rng.uniform(0.8, 1.0))),
        cc_ano=0.2 * quality,
        sig_ano=0.9,
        n_ano=n_unique // 2,
    )
    return MergingStats(shells, overall, anomalous=True, **kw)


def summary_entry(r: DatasetResult, key: str, kind: str = "sweep", attempts: int = 1) -> dict:
    """A summary.json row as mxflow.catalog.summary writes it: the result and the catalog's fields."""
    return to_dict(r) | {"key": key, "kind": kind, "attempts": attempts}


def write_summary_json(out: Path, entries: list[dict[str, Any]]) -> None:
    write_json(Path(out) / "summary.json", {"datasets": entries})


def _step(name: str, wall_s: float, returncode: int = 0, note: str = "") -> StepRecord:
    return StepRecord(name, [f"dials.{name}"], f"dials.{name}.log", returncode, wall_s, note=note)


def _dataset(
    rng, out, sample, pin, name, mode, wedge, n_frames, osc, failed_reason=None, with_refl=True
) -> tuple[DatasetResult, str]:
    """One dataset's result and its catalog key."""
    sg, cell0, dmin0 = SAMPLES[sample]
    workdir = f"proc/{pin}/{name}"
    first, last = (1, n_frames) if wedge == "full" else map(int, wedge.split("-"))
    r = DatasetResult(
        name=name,
        path=f"/data/collection/{pin}/data00/{name.split('_w')[0]}_######.cbf",
        status="failed" if failed_reason else "ok",
        reason=failed_reason or "",
        sample=sample,
        mode=mode,
        wedge=wedge,
        workdir=workdir,
        wavelength=1.0,
        total_rotation=(last - first + 1) * osc,
        osc_width=osc,
        wall_s=float(rng.uniform(40, 400)),
        steps=[_step("import", 2.0), _step("find_spots", 20.0)],
    )
    if failed_reason:
        r.steps.append(_step("index", 8.0, 1, "no lattice found"))
        r.indexed_fraction = 0.04
        return r, workdir
    cell = [c * (1 + rng.normal(0, 0.004)) if i < 3 else c for i, c in enumerate(cell0)]
    if mode == "multi" and rng.uniform() < 0.15:  # a second crystal form, for dendrogram structure
        cell[2] *= 1.03
    dmin = dmin0 * rng.uniform(0.95, 1.4) * (1.25 if mode == "multi" else 1.0)
    stats = shells_model(rng, dmin, rng.uniform(0.6, 1.2), space_group=sg, unit_cell=tuple(cell))
    r.space_group = sg
    r.space_group_note = axial_note(sg) if mode == "multi" else None
    r.unit_cell = cell
    r.d_min = stats.overall.d_min
    r.stats = stats
    r.integrated_expt = f"{workdir}/integrated.expt"
    r.integrated_refl = f"{workdir}/integrated.refl"
    r.unmerged_mtz = f"{workdir}/scaled_unmerged.mtz"
    r.merged_mtz = f"{workdir}/scaled.mtz"
    r.indexed_fraction = float(rng.uniform(0.7, 0.98))
    steps = ("index", "refine", "integrate", "symmetry", "scale", "export")
    r.steps += [_step(s, float(rng.uniform(5, 60))) for s in steps]
    if with_refl:
        nf = last - first + 1
        per_frame = rng.poisson(60 + 40 * np.sin(np.arange(nf) / max(nf, 1) * 6.28) ** 2)
        z = np.repeat(np.arange(nf) + 0.5, per_frame)
        write_strong_refl(Path(out) / workdir / "strong.refl", z)
    return r, workdir


def write_sample_output(
    out_dir: str | Path, n_multi: int = 8, seed: int = 1, with_refl: bool = True
) -> Path:
    """Write a synthetic output directory; ``n_multi`` small wedges per multi pin (3 multi pins per sample).

    Returns ``out_dir``.  Total datasets = 2 × (1 single + 1 failed single +
    4 helical wedges + 3 × n_multi multi wedges).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    made: list[tuple[DatasetResult, str]] = []
    for si, sample in enumerate(SAMPLES):
        pre = f"CPS10{si + 1}"
        made.append(
            _dataset(rng, out, sample, f"{pre}-01", f"{sample}_single_01", "single", "full",
                     1800, 0.1, with_refl=with_refl)
        )  # fmt: skip
        made.append(
            _dataset(rng, out, sample, f"{pre}-02", f"{sample}_single_02", "single", "full",
                     1800, 0.1, failed_reason="Indexing failed: only 4% of the 2210 spots could be "
                     "indexed with any lattice (too few spots or split crystal).")
        )  # fmt: skip
        for w in range(4):
            a, b = 300 * w + 1, 300 * (w + 1)
            made.append(
                _dataset(rng, out, sample, f"{pre}-03", f"{sample}_helical_w{a}-{b}", "helical",
                         f"{a}-{b}", 1200, 0.1, with_refl=with_refl)
            )  # fmt: skip
        for p in range(3):
            pin = f"{pre}-{4 + p:02d}"
            for k in range(n_multi):
                failed = (
                    "Too few spots (12) were found to index: probably no crystal in the beam."
                    if (k == 3 and p == 0)
                    else None
                )
                made.append(
                    _dataset(rng, out, sample, pin, f"{sample}_multi_{p + 4:02d}_{k + 1:03d}",
                             "multi", "1-100", 100, 0.1, failed_reason=failed, with_refl=with_refl)
                )  # fmt: skip
    write_summary_json(
        out,
        [summary_entry(r, key, "sweep" if r.wedge == "full" else "wedge") for r, key in made],
    )
    for sample in SAMPLES:
        members = [r for r, _ in made if r.sample == sample and r.status == "ok"]
        methods = ("blend", "cc") if sample == "Lys" else ("cc",)
        for method in methods:
            _write_merge(out / f"merge_{method}_2.2S_{sample}", rng, sample, method, members)
    for si, sample in enumerate(SAMPLES):
        pin = f"CPS10{si + 1}-04"
        _write_hitmap(out / "hitmap" / pin, rng, pin, sample)
    return out


def _write_merge(
    mdir: Path, rng, sample: str, method: str, members: list[DatasetResult]
) -> MergeSummary:
    """A merge directory as merge_sample writes it, from a scipy linkage of the members."""
    from scipy.cluster.hierarchy import linkage

    names = [r.name for r in members]
    n = len(names)
    cells = np.array([r.unit_cell for r in members])
    pairs: list[CCPair] = []
    if method == "blend":
        Z = linkage(cells[:, :3], method="ward")
    else:
        # intensity correlation from cell similarity plus noise: 1 - CC as distance
        dist = np.abs(cells[:, None, 2] - cells[None, :, 2]) / cells[:, 2].mean() * 10
        cc = np.clip(0.95 - dist + rng.normal(0, 0.02, dist.shape), -0.2, 1.0)
        cc = (cc + cc.T) / 2
        iu = np.triu_indices(n, 1)
        Z = linkage(1 - cc[iu], method="average")
        pairs = [
            CCPair(int(i), int(j), names[i], names[j], float(cc[i, j]), 200)
            for i, j in zip(*iu, strict=True)
        ]
    index: dict[int, list[int]] = {i: [i] for i in range(n)}
    nodes = []
    for k, (a, b, h, _cnt) in enumerate(Z):
        nid = n + k
        index[nid] = index[int(a)] + index[int(b)]
        m = len(index[nid])
        stats = NodeStats(
            completeness=min(99.5, 30.0 + 10.0 * m),
            multiplicity=1.2 * m,
            lcv=float(h * 0.3),
            alcv=float(h * 0.2),
            cc_mean=float(1 - h * 0.7) if method == "cc" else math.nan,
            cc_min=float(1 - h) if method == "cc" else math.nan,
        )
        nodes.append(
            DendrogramNode(
                nid, [int(a), int(b)], float(h), [names[i] for i in index[nid]], index[nid], stats
            )
        )
    dendrogram = Dendrogram(method, names, nodes)
    summary = MergeSummary(sample, method, n_inputs=n, d_start=2.2, space_group=SAMPLES[sample][0])
    summary.wavelength_range = (1.0, 1.0)
    # merge the top three nodes with enough datasets, like KAMO's "top clusters"
    chosen = [nd for nd in nodes[::-1] if len(nd.members) >= 3][:3]
    for nd in nodes:
        if nd not in chosen:
            why = "completeness below 90 %" if nd.stats.completeness < 90 else "not in the top 3"
            nd.why_not = why
            summary.not_merged.append(NotMerged(method, nd.id, len(nd.members), why))
    taken: set[str] = set()
    for nd in chosen:
        nd.merged = True
        used = list(nd.members)
        runs = [MergeRun("run_01", list(used))]
        if len(used) > 4 and used[-1] not in taken:  # run_03 drops the worst dataset
            bad = used.pop()
            taken.add(bad)
            why = "CC½ of this dataset against the rest 0.12 < 0.5 (bad_pwcc)"
            runs.append(MergeRun("run_03", list(used), [Rejection(bad, "run_03", why)]))
            summary.rejected.append(Rejection(bad, f"{method}/cluster_{nd.id:04d}/run_03", why))
        dmin = 1.6 + 2.0 / math.sqrt(len(used)) + rng.uniform(0, 0.2)
        stats = shells_model(rng, dmin, 1.0 + 0.05 * len(used), space_group=SAMPLES[sample][0])
        runs[-1].stats = stats
        run = runs[-1].name
        cdir = f"{mdir.name}/cluster_{nd.id:04d}/{run}"
        summary.clusters.append(
            ClusterResult(
                nd.id,
                method,
                list(nd.members),
                used,
                height=nd.height,
                node_stats=nd.stats,
                runs=runs,
                final_run=run,
                space_group=SAMPLES[sample][0],
                space_group_note=axial_note(SAMPLES[sample][0]) if nd.id % 2 else None,
                unit_cell=tuple(cells[[names.index(u) for u in used]].mean(axis=0).tolist()),
                wilson_b=float(rng.uniform(15, 30)),
                aniso_best=dmin * 0.95,
                aniso_worst=dmin * 1.1,
                stats=stats,
                merged_mtz=f"{cdir}/merged.mtz",
                unmerged_mtz=f"{cdir}/unmerged.mtz",
            )
        )
    write_method_outputs(mdir, summary, dendrogram, pairs)
    return summary


def write_strong_refl(path: Path, z: np.ndarray) -> None:
    """A minimal DIALS msgpack reflection table with ``xyzobs.px.value`` (z in images from 0)."""
    n = len(z)
    xyz = np.zeros((n, 3), "<f8")
    xyz[:, 0] = 1000.0
    xyz[:, 1] = 1000.0
    xyz[:, 2] = z
    body = {
        "identifiers": {},
        "nrows": n,
        "data": {"xyzobs.px.value": ["vec3<double>", [n, xyz.tobytes()]]},
    }
    atomic_write_bytes(
        path, msgpack.packb(["dials::af::reflection_table", 1, body], use_bin_type=True)
    )


def write_png_gray(path: Path, grid: np.ndarray, scale: int = 8) -> None:
    """A tiny greyscale PNG of a 2-D array (zlib only, no plotting library)."""
    g = np.asarray(grid, float)
    g = (255 * (g - g.min()) / (np.ptp(g) or 1)).astype(np.uint8)
    g = np.kron(g, np.ones((scale, scale), np.uint8))
    h, w = g.shape
    raw = b"".join(b"\x00" + g[r].tobytes() for r in range(h))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")
    atomic_write_bytes(path, png)


def _write_hitmap(hdir: Path, rng, pin: str, sample: str) -> None:
    rows, cols = 12, 15
    yy, xx = np.mgrid[0:rows, 0:cols]
    grid = 300 * np.exp(-((yy - 6) ** 2 + (xx - 7) ** 2) / 10) + rng.poisson(3, (rows, cols))
    frames = [
        {
            "file": f"{pin}_raster_{i + 1:05d}.cbf",
            "index": i,
            "row": int(i // cols),
            "col": int(i % cols),
            "n_spots": int(grid.flat[i]),
            "total_intensity": float(grid.flat[i] * 50),
            "d_min_est": 3.0,
        }
        for i in range(rows * cols)
    ]
    write_json(
        hdir / "hitmap.json",
        {"pin": pin, "sample": sample, "grid": {"rows": rows, "cols": cols}, "frames": frames},
    )
    write_png_gray(hdir / "hitmap.png", grid)
