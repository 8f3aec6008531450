"""A synthetic output directory in the formats the reports read (tests, benchmarks).

Nothing here is a processing result: the numbers are drawn from simple
smooth models (I/σ falling with 1/d², a logistic CC½) with a fixed random
seed, so tests can check that every number on a page is the one in the
JSON it was read from, and the benchmark can build a 200-dataset
collection without running DIALS.  Files written:

* ``summary.json`` — datasets of two samples in every mode (single,
  helical with 30° wedges, multi-crystal small wedges), some failed;
* ``proc/<pin>/<name>/strong.refl`` — a DIALS msgpack spot list per
  processed dataset (``xyzobs.px.value`` only), for the spots-per-frame plot;
* ``merge_<method>_<dstart>S_<sample>/`` — merge_summary.json, a KAMO-style
  cluster_summary.dat, per-cluster ``cluster_NNNN/run_03/stats.json``,
  dendrogram_<method>.json built with scipy's linkage, cc_table.json;
* ``hitmap/<pin>/hitmap.json`` and a small PNG.
"""

from __future__ import annotations

import math
import struct
import zlib
from pathlib import Path
from typing import Any

import msgpack
import numpy as np

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
    rng: np.random.Generator, d_min: float, quality: float, n_shells: int = 10
) -> dict[str, Any]:
    """A MergingStats dict (shells low → high resolution, overall last) from a smooth model."""
    d_max = 40.0
    s2 = np.linspace(1 / d_max**2, 1 / d_min**2, n_shells + 1)
    d = 1 / np.sqrt(s2)
    shells = []
    tot = {"n_obs": 0, "n_unique": 0, "n_possible": 0}
    base_mult = rng.uniform(3.5, 7.0)
    for i in range(n_shells):
        s_mid = math.sqrt(0.5 * (s2[i] + s2[i + 1]))
        isig = max(
            0.3, 30 * quality * math.exp(-3.5 * (s_mid * d_min) ** 2) * rng.uniform(0.9, 1.1)
        )
        cc = 1 / (1 + math.exp(-(isig - 1.2) * 2.2))
        n_possible = int(800 + 2600 * i / n_shells * rng.uniform(0.95, 1.05))
        compl = min(1.0, rng.uniform(0.9, 1.0) * (1.0 if i < n_shells - 1 else 0.93))
        n_unique = int(n_possible * compl)
        mult = base_mult * (1.0 - 0.25 * i / n_shells) * rng.uniform(0.97, 1.03)
        n_obs = int(n_unique * mult)
        r_meas = min(2.5, 0.8 / (isig + 0.3))
        shells.append(
            {
                "d_max": float(d[i]),
                "d_min": float(d[i + 1]),
                "n_obs": n_obs,
                "n_unique": n_unique,
                "n_possible": n_possible,
                "completeness": compl,
                "multiplicity": n_obs / max(1, n_unique),
                "i_over_sigma": isig,
                "r_merge": r_meas * 0.93,
                "r_meas": r_meas,
                "r_pim": r_meas * 0.45,
                "cc_half": cc,
                "cc_ano": max(
                    -0.1,
                    0.45 * min(quality, 1.0) * math.exp(-3 * i / n_shells) + rng.normal(0, 0.02),
                ),
                "sig_ano": 0.7 + 0.6 * math.exp(-3 * i / n_shells),
                "n_ano": n_unique // 2,
            }
        )
        for k in tot:
            tot[k] += shells[-1][k]
    overall = {
        "d_max": float(d[0]),
        "d_min": float(d[-1]),
        **tot,
        "completeness": tot["n_unique"] / tot["n_possible"],
        "multiplicity": tot["n_obs"] / tot["n_unique"],
        "i_over_sigma": float(np.mean([s["i_over_sigma"] for s in shells])),
        "r_merge": 0.06 / quality,
        "r_meas": 0.065 / quality,
        "r_pim": 0.03 / quality,
        "cc_half": float(min(0.999, 0.95 + 0.05 * quality * rng.uniform(0.8, 1.0))),
        "cc_ano": 0.2 * quality,
        "sig_ano": 0.9,
        "n_ano": tot["n_unique"] // 2,
    }
    return {"shells": shells, "overall": overall, "anomalous": True}


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


def _dataset(
    rng, out, sample, pin, name, mode, wedge, n_frames, osc, failed_reason=None, with_refl=True
):
    sg, cell0, dmin0 = SAMPLES[sample]
    workdir = f"proc/{pin}/{name}"
    first, last = (1, n_frames) if wedge == "full" else map(int, wedge.split("-"))
    d: dict[str, Any] = {
        "name": name,
        "path": f"/data/collection/{pin}/data00/{name.split('_w')[0]}_######.cbf",
        "status": "failed" if failed_reason else "ok",
        "reason": failed_reason or "",
        "sample": sample,
        "mode": mode,
        "wedge": wedge,
        "workdir": workdir,
        "key": workdir,
        "wavelength": 1.0,
        "total_rotation": (last - first + 1) * osc,
        "osc_width": osc,
        "wall_s": float(rng.uniform(40, 400)),
        "steps": [
            {
                "name": "import",
                "command": ["dials.import", "template=x"],
                "log": "dials.import.log",
                "returncode": 0,
                "wall_s": 2.0,
                "skipped": False,
                "note": "",
            },
            {
                "name": "find_spots",
                "command": ["dials.find_spots", "imported.expt"],
                "log": "dials.find_spots.log",
                "returncode": 0,
                "wall_s": 20.0,
                "skipped": False,
                "note": "",
            },
        ],
    }
    if failed_reason:
        d["steps"].append(
            {
                "name": "index",
                "command": ["dials.index", "imported.expt", "strong.refl"],
                "log": "dials.index.log",
                "returncode": 1,
                "wall_s": 8.0,
                "skipped": False,
                "note": "no lattice found",
            }
        )
        d["indexed_fraction"] = 0.04
        return d
    cell = [c * (1 + rng.normal(0, 0.004)) if i < 3 else c for i, c in enumerate(cell0)]
    if (
        mode == "multi" and rng.uniform() < 0.15
    ):  # a second crystal form, to give the dendrogram structure
        cell[2] *= 1.03
    dmin = dmin0 * rng.uniform(0.95, 1.4) * (1.25 if mode == "multi" else 1.0)
    stats = shells_model(rng, dmin, rng.uniform(0.6, 1.2))
    stats.update(space_group=sg, unit_cell=cell)
    d.update(
        space_group=sg,
        space_group_note=axial_note(sg) if mode == "multi" else None,
        unit_cell=cell,
        d_min=stats["overall"]["d_min"],
        stats=stats,
        integrated_expt=f"{workdir}/integrated.expt",
        integrated_refl=f"{workdir}/integrated.refl",
        unmerged_mtz=f"{workdir}/scaled_unmerged.mtz",
        merged_mtz=f"{workdir}/scaled.mtz",
        indexed_fraction=float(rng.uniform(0.7, 0.98)),
    )
    d["steps"] += [
        {
            "name": s,
            "command": [f"dials.{s}"],
            "log": f"dials.{s}.log",
            "returncode": 0,
            "wall_s": float(rng.uniform(5, 60)),
            "skipped": False,
            "note": "",
        }
        for s in ("index", "refine", "integrate", "symmetry", "scale", "export")
    ]
    if with_refl:
        nf = last - first + 1
        per_frame = rng.poisson(60 + 40 * np.sin(np.arange(nf) / max(nf, 1) * 6.28) ** 2)
        z = np.repeat(np.arange(nf) + 0.5, per_frame)
        write_strong_refl(Path(out) / workdir / "strong.refl", z)
    return d


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
    datasets: list[dict[str, Any]] = []
    for si, sample in enumerate(SAMPLES):
        pre = f"CPS10{si + 1}"
        datasets.append(
            _dataset(
                rng,
                out,
                sample,
                f"{pre}-01",
                f"{sample}_single_01",
                "single",
                "full",
                1800,
                0.1,
                with_refl=with_refl,
            )
        )
        datasets.append(
            _dataset(
                rng,
                out,
                sample,
                f"{pre}-02",
                f"{sample}_single_02",
                "single",
                "full",
                1800,
                0.1,
                failed_reason="Indexing failed: only 4% of the 2210 spots could be indexed with any lattice (too few spots or split crystal).",
            )
        )
        for w in range(4):
            a, b = 300 * w + 1, 300 * (w + 1)
            datasets.append(
                _dataset(
                    rng,
                    out,
                    sample,
                    f"{pre}-03",
                    f"{sample}_helical_w{a}-{b}",
                    "helical",
                    f"{a}-{b}",
                    1200,
                    0.1,
                    with_refl=with_refl,
                )
            )
        for p in range(3):
            pin = f"{pre}-{4 + p:02d}"
            for k in range(n_multi):
                failed = (
                    "Too few spots (12) were found to index: probably no crystal in the beam."
                    if (k == 3 and p == 0)
                    else None
                )
                datasets.append(
                    _dataset(
                        rng,
                        out,
                        sample,
                        pin,
                        f"{sample}_multi_{p + 4:02d}_{k + 1:03d}",
                        "multi",
                        "1-100",
                        100,
                        0.1,
                        failed_reason=failed,
                        with_refl=with_refl,
                    )
                )
    write_json(out / "summary.json", {"datasets": datasets})
    for sample in SAMPLES:
        members = [d for d in datasets if d["sample"] == sample and d["status"] == "ok"]
        methods = ("blend", "cc") if sample == "Lys" else ("cc",)
        for method in methods:
            _write_merge(out / f"merge_{method}_2.20S_{sample}", rng, sample, method, members)
    for si, sample in enumerate(SAMPLES):
        pin = f"CPS10{si + 1}-04"
        _write_hitmap(out / "hitmap" / pin, rng, pin, sample)
    return out


def _write_merge(mdir: Path, rng, sample: str, method: str, members: list[dict[str, Any]]) -> None:
    from scipy.cluster.hierarchy import linkage

    names = [d["name"] for d in members]
    n = len(names)
    cells = np.array([d["unit_cell"] for d in members])
    if method == "blend":
        Z = linkage(cells[:, :3], method="ward")
    else:
        # intensity correlation from cell similarity plus noise: 1 - CC as distance
        dist = np.abs(cells[:, None, 2] - cells[None, :, 2]) / cells[:, 2].mean() * 10
        cc = np.clip(0.95 - dist + rng.normal(0, 0.02, dist.shape), -0.2, 1.0)
        cc = (cc + cc.T) / 2
        np.fill_diagonal(cc, 1.0)
        iu = np.triu_indices(n, 1)
        Z = linkage(1 - cc[iu], method="average")
        write_json(mdir / "cc_table.json", {"names": names, "cc": cc.tolist()})
    member_sets: dict[int, list[str]] = {i: [names[i]] for i in range(n)}
    nodes = []
    for k, (a, b, h, _cnt) in enumerate(Z):
        nid = n + k
        member_sets[nid] = member_sets[int(a)] + member_sets[int(b)]
        m = len(member_sets[nid])
        stats = {"completeness": min(0.995, 0.3 + 0.1 * m), "multiplicity": 1.2 * m}
        if method == "blend":
            stats.update(LCV=float(h * 0.3), aLCV=float(h * 0.2))
        else:
            stats.update(cc_mean=float(1 - h * 0.7), cc_min=float(1 - h))
        nodes.append(
            {
                "id": nid,
                "children": [int(a), int(b)],
                "height": float(h),
                "members": member_sets[nid],
                "stats": stats,
                "merged": False,
            }
        )
    # merge the top three nodes with enough datasets, like KAMO's "top clusters"
    chosen = [nd for nd in nodes[::-1] if len(nd["members"]) >= 3][:3]
    clusters, rows = [], []
    rejected = []
    for nd in chosen:
        nd["merged"] = True
        cid = nd["id"]
        used = list(nd["members"])
        if len(used) > 4 and used[-1] not in {
            r["name"] for r in rejected
        }:  # run_03 drops the worst dataset
            bad = used.pop()
            rejected.append(
                {
                    "name": bad,
                    "reason": f"cluster {cid}: CC½ of this dataset against the rest 0.12 < 0.5 (bad_pwcc)",
                    "stage": "run_03",
                }
            )
        dmin = 1.6 + 2.0 / math.sqrt(len(used)) + rng.uniform(0, 0.2)
        stats = shells_model(rng, dmin, 1.0 + 0.05 * len(used))
        stats["per_dataset"] = [
            {"name": u, "delta_cc_half": float(rng.normal(0, 0.01))} for u in used
        ]
        stats["per_frame"] = [
            {"frame": i + 1, "scale": float(1 + 0.1 * math.sin(i / 10))}
            for i in range(len(used) * 20)
        ]
        write_json(mdir / f"cluster_{cid:04d}" / "run_03" / "stats.json", stats)
        ov, out_, inn = stats["overall"], stats["shells"][-1], stats["shells"][0]
        cl = {
            "id": cid,
            "members": used,
            "final_run": "run_03",
            "space_group": SAMPLES[sample][0],
            "space_group_note": axial_note(SAMPLES[sample][0]) if cid % 2 else None,
            "unit_cell": cells[[names.index(u) for u in used]].mean(axis=0).tolist(),
            "d_min": ov["d_min"],
            "cc_half": ov["cc_half"],
            "completeness": ov["completeness"],
            "multiplicity": ov["multiplicity"],
            "merged_mtz": f"{mdir.name}/cluster_{cid:04d}/run_03/merged.mtz",
            "unmerged_mtz": f"{mdir.name}/cluster_{cid:04d}/run_03/unmerged.mtz",
        }
        clusters.append(cl)
        rows.append(
            [
                f"{cid:04d}",
                nd["height"],
                nd["stats"].get("LCV", float("nan")),
                nd["stats"].get("aLCV", float("nan")),
                "run_03",
                len(nd["members"]),
                len(used),
            ]
            + [
                100 * ov["completeness"],
                ov["multiplicity"],
                ov["i_over_sigma"],
                100 * ov["r_meas"],
                100 * ov["cc_half"],
            ]
            + [
                100 * out_["completeness"],
                out_["multiplicity"],
                out_["i_over_sigma"],
                100 * out_["r_meas"],
                100 * out_["cc_half"],
            ]
            + [
                100 * inn["completeness"],
                inn["multiplicity"],
                inn["i_over_sigma"],
                100 * inn["r_meas"],
                100 * inn["cc_half"],
                inn["sig_ano"],
                100 * inn["cc_ano"],
            ]
            + [rng.uniform(15, 30), dmin * 0.95, dmin * 1.1, dmin]
        )
    rejected.append(
        {
            "name": names[0],
            "reason": "frames 81-100 rejected: radiation damage (CC½ per frame below 0.3)",
            "stage": "run_02",
            "frames": "81-100",
        }
    )
    header = "cluster ClH LCV aLCV run ds.all ds.used Cmpl Redun I/sigI Rmeas CC1/2 Cmpl.ou Red.ou I/sig.ou Rmeas.ou CC1/2.ou Cmpl.in Red.in I/sig.in Rmeas.in CC1/2.in SigAno.in CCano.in WilsonB Aniso.bst Aniso.wst dmin.est"
    lines = [header] + [
        " ".join(
            v if isinstance(v, str) else (f"{v:.2f}" if isinstance(v, float) else str(v)) for v in r
        )
        for r in rows
    ]
    mdir.mkdir(parents=True, exist_ok=True)
    (mdir / "cluster_summary.dat").write_text("\n".join(lines) + "\n")
    write_json(
        mdir / f"dendrogram_{method}.json",
        {
            "method": method,
            "leaves": [{"id": i, "name": nm} for i, nm in enumerate(names)],
            "nodes": nodes,
        },
    )
    write_json(
        mdir / "merge_summary.json",
        {
            "sample": sample,
            "method": method,
            "d_start": 2.2,
            "parameters": {
                "min_completeness": 0.1,
                "min_multiplicity": 2.0,
                "cc_half_cutoff": 0.5,
                "max_clusters": 3,
            },
            "clusters": clusters,
            "rejected": rejected,
        },
    )


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
