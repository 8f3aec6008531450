"""Benchmark: mxflow's raster spot finder against dials.find_spots on real frames.

Frames: the six PILATUS3 6M raster frames of ../shared/data/thaumatin_grid,
decompressed once into a temporary directory (beamlines write plain CBF; the
.bz2 decompression rate is reported separately).  In one run it measures

* decode only (read file + byte-offset decode): the physical floor;
* mxflow: numba compile time (cold cache, in a fresh process) and warm
  first-call time; then steady state (frames per second) for spot finding
  alone, and read + decode + spot finding with 1 worker, 2 threads and
  2 processes;
* the same frames written as an Eiger master + bitshuffle/LZ4 data file:
  read rate and read + spot finding with 1 worker, 2 threads, 2 processes;
* dials.find_spots (default settings, nproc = 1 and 2) on 1 frame and on all
  6: the difference gives DIALS's per-frame rate without its process
  start-up, which is reported too (dials.import is timed separately).

Writes bench/out/hitmap.json and prints a table.  Usage:
``.venv/bin/python bench/bench_hitmap.py [--repeat N]``.
"""

from __future__ import annotations

import argparse
import bz2
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "thaumatin_grid"
OUT = REPO / "bench" / "out"


def timed(fn, *args, **kw) -> tuple[float, object]:
    t = time.perf_counter()
    result = fn(*args, **kw)
    return time.perf_counter() - t, result


def best_of(n: int, fn, *args, **kw) -> float:
    """Fastest of ``n`` runs (seconds): the least disturbed by other users of the machine."""
    return min(timed(fn, *args, **kw)[0] for _ in range(n))


def cold_compile_seconds(frame: Path) -> float:
    """First find_spots call in a fresh process with an empty numba cache (s)."""
    code = (
        "import time, numpy as np\n"
        "from mxflow.hitmap.frames import FrameRef, read_pixels\n"
        "from mxflow.hitmap.spotfinder import find_spots\n"
        f"img = read_pixels(FrameRef({str(frame)!r}))\n"
        "mask = np.ones(img.shape, bool)\n"
        "t = time.perf_counter(); find_spots(img, mask, 1e6); print(time.perf_counter() - t)\n"
    )
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True
        )
    return float(out.stdout.strip().splitlines()[-1])


def eiger_rates(tmp: Path, images: list, header, mask, spot_filter) -> dict:
    """Frames/s of mxflow on the frames written as an Eiger master + data file.

    Gaps (−1) become 2³²−1 and bit 0 of detectorSpecific/pixel_mask, as a
    DECTRIS writer does; reading goes through mxflow.images.EigerReader.
    """
    import h5py

    from mxflow.hitmap.frames import FrameRef, read_pixels, release_readers
    from mxflow.hitmap.run import summarise_frames
    from mxflow.images.write_nexus import to_eiger_counts, write_data_file

    stack = np.stack([to_eiger_counts(im) for im in images])
    write_data_file(tmp / "eiger_data_000001.h5", stack, 1)
    with h5py.File(tmp / "eiger_master.h5", "w") as fh:
        fh["entry/data/data_000001"] = h5py.ExternalLink("eiger_data_000001.h5", "/entry/data/data")
        gaps = np.stack(images)[0] == -1
        fh["entry/instrument/detector/detectorSpecific/pixel_mask"] = gaps.astype(np.uint32)
    frames = [FrameRef(str(tmp / "eiger_master.h5"), i) for i in range(len(images))]
    n = len(frames)
    read_pixels(frames[0])
    out = {"read_fps_1core": n / best_of(3, lambda: [read_pixels(f) for f in frames])}
    release_readers()
    for workers, backend in ((1, "threads"), (2, "threads"), (2, "processes")):
        t = best_of(
            2, summarise_frames, frames, header, spot_filter=spot_filter, workers=workers,
            backend=backend, mask=mask,
        )  # fmt: skip
        out[f"read_find_fps_{workers}_{backend}"] = n / t
    rows = summarise_frames(frames, header, spot_filter=spot_filter, workers=2, mask=mask)
    out["counts"] = [r["n_spots"] for r in rows]
    return out


def children_cpu() -> float:
    """CPU seconds (user + system) used so far by finished child processes."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def cpu_per_frame(fn, n_frames: int, *args, **kw) -> float:
    """CPU seconds (all threads of this process) per frame for one call of ``fn``."""
    t = time.process_time()
    fn(*args, **kw)
    return (time.process_time() - t) / n_frames


def run_dials(work: Path, files: list[Path], nproc: int, repeat: int) -> dict:
    """Wall and CPU time (s) of dials.import and of dials.find_spots on ``files``."""
    work.mkdir(parents=True, exist_ok=True)
    t_import, _ = timed(
        subprocess.run,
        ["dials.import", *map(str, files)],
        cwd=work,
        check=True,
        capture_output=True,
    )
    times = []
    cpus = []
    for _ in range(repeat):
        c0 = children_cpu()
        t, _ = timed(
            subprocess.run,
            ["dials.find_spots", "imported.expt", f"nproc={nproc}"],
            cwd=work,
            check=True,
            capture_output=True,
        )
        times.append(t)
        cpus.append(children_cpu() - c0)
    return {
        "import_s": t_import,
        "find_spots_s": min(times),
        "all_runs_s": times,
        "cpu_s": min(cpus),
    }


def dials_counts(work: Path) -> list[int]:
    from mxflow.engine.refl import read_reflections

    ids = read_reflections(work / "strong.refl", columns=["id"]).columns["id"]
    return np.bincount(ids, minlength=6).tolist()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="passes over the 6 frames per timing")
    parser.add_argument(
        "--dials-repeat", type=int, default=2, help="runs of each dials.find_spots timing"
    )
    parser.add_argument("--no-dials", action="store_true")
    args = parser.parse_args()

    from mxflow.hitmap.frames import FrameRef, read_pixels, static_mask
    from mxflow.hitmap.run import SpotFilter, scan_header, summarise_frames
    from mxflow.hitmap.spotfinder import Workspace, find_spots
    from mxflow.images.cbf import decode_cbf, read_cbf_pixels, read_file_bytes

    sources = sorted(DATA.glob("thau_3_2_*.cbf.bz2"))
    if len(sources) != 6:
        print(f"thaumatin_grid frames not found under {DATA}", file=sys.stderr)
        return 1
    tmp = Path(tempfile.mkdtemp(prefix="bench_hitmap_"))
    result: dict = {"machine": {"cpus": os.cpu_count(), "loadavg_start": os.getloadavg()}}
    try:
        plain = []
        for f in sources:
            p = tmp / f.name[: -len(".bz2")]
            p.write_bytes(bz2.decompress(f.read_bytes()))
            plain.append(p)
        frames = [FrameRef(str(p)) for p in plain]
        work = frames * args.repeat
        n = len(work)

        # ---- decode only
        read_cbf_pixels(plain[0])  # compile the decoder
        raw = [read_file_bytes(p) for p in plain]
        t_bz2 = best_of(1, lambda: [read_cbf_pixels(s) for s in sources])
        t_dec_mem = best_of(3, lambda: [decode_cbf(r) for r in raw * args.repeat])
        t_dec_1 = best_of(3, lambda: [read_pixels(f) for f in work])
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(read_pixels, frames))
            t_dec_2 = best_of(3, lambda: list(pool.map(read_pixels, work)))
        result["decode"] = {
            "bz2_read_decompress_decode_fps_1core": len(sources) / t_bz2,
            "decode_from_memory_fps_1core": n / t_dec_mem,
            "read_decode_fps_1core": n / t_dec_1,
            "read_decode_fps_2threads": n / t_dec_2,
        }

        # ---- mxflow spot finder
        header, _ = scan_header(frames)
        mask = static_mask(header)
        cold = cold_compile_seconds(plain[0])
        ws = Workspace(mask.shape)
        images = [read_pixels(f) for f in frames]
        t_first, _ = timed(find_spots, images[0], mask, header.overload, None, ws)
        t_find = best_of(
            3,
            lambda: [
                find_spots(im, mask, header.overload, None, ws) for im in images * args.repeat
            ],
        )
        counts = [len(find_spots(im, mask, header.overload, None, ws)) for im in images]
        nofilter = SpotFilter(d_max=None)
        rates = {}
        for label, workers, backend in (
            ("1_worker", 1, "threads"),
            ("2_threads", 2, "threads"),
            ("2_processes", 2, "processes"),
        ):
            summarise_frames(
                frames[:2], header, spot_filter=nofilter, workers=workers, backend=backend
            )
            t = best_of(
                2,
                summarise_frames,
                work,
                header,
                spot_filter=nofilter,
                workers=workers,
                backend=backend,
                mask=mask,
            )
            rates[label] = n / t
        cpu_find = min(
            cpu_per_frame(
                lambda: [find_spots(im, mask, header.overload, None, ws) for im in images], 6
            )
            for _ in range(3)
        )
        cpu_decode = min(
            cpu_per_frame(lambda: [read_pixels(f) for f in frames], 6) for _ in range(3)
        )
        cpu_all = min(
            cpu_per_frame(
                summarise_frames, n, work, header, spot_filter=nofilter, workers=2, mask=mask
            )
            for _ in range(2)
        )
        result["mxflow"] = {
            "cpu_s_per_frame_find_spots_only": cpu_find,
            "cpu_s_per_frame_decode_only": cpu_decode,
            "cpu_s_per_frame_read_decode_find_2threads": cpu_all,
            "counts": counts,
            "numba_compile_cold_s": cold,
            "first_call_warm_cache_s": t_first,
            "find_spots_only_fps_1core": n / t_find,
            "ms_per_frame_find_spots_only": 1000 * t_find / n,
            "read_decode_find_fps": rates,
        }

        # ---- the same frames as Eiger HDF5 (bitshuffle/LZ4, one chunk per frame)
        result["eiger_hdf5"] = eiger_rates(tmp, images * args.repeat, header, mask, nofilter)
        result["eiger_hdf5"]["counts_equal_cbf"] = (
            result["eiger_hdf5"].pop("counts")[: len(counts)] == counts
        )

        # ---- DIALS
        if not args.no_dials and shutil.which("dials.find_spots"):
            d = {}
            for nproc in (1, 2):
                one = run_dials(tmp / f"dials1_n{nproc}", plain[:1], nproc, args.dials_repeat)
                six = run_dials(tmp / f"dials6_n{nproc}", plain, nproc, args.dials_repeat)
                per_frame_s = (six["find_spots_s"] - one["find_spots_s"]) / 5
                d[f"nproc{nproc}"] = {
                    "import_6_frames_s": six["import_s"],
                    "find_spots_1_frame_s": one["find_spots_s"],
                    "find_spots_6_frames_s": six["find_spots_s"],
                    "startup_s_est": one["find_spots_s"] - per_frame_s,
                    "fps_with_startup": 6 / six["find_spots_s"],
                    "fps_without_startup": 1 / per_frame_s if per_frame_s > 0 else None,
                    "cpu_s_1_frame": one["cpu_s"],
                    "cpu_s_6_frames": six["cpu_s"],
                    "cpu_s_per_frame_without_startup": (six["cpu_s"] - one["cpu_s"]) / 5,
                    "runs": {"1": one["all_runs_s"], "6": six["all_runs_s"]},
                }
            d["counts"] = dials_counts(tmp / "dials6_n2")
            result["dials"] = d
            best = max(rates.values())
            dn2 = d["nproc2"]
            result["ratio"] = {
                "mxflow_2core_vs_dials_nproc2_per_frame": best / dn2["fps_without_startup"]
                if dn2["fps_without_startup"]
                else None,
                "mxflow_2core_vs_dials_nproc2_with_startup": best / dn2["fps_with_startup"],
                "mxflow_1core_vs_dials_nproc1_per_frame": rates["1_worker"]
                / d["nproc1"]["fps_without_startup"]
                if d["nproc1"]["fps_without_startup"]
                else None,
                # CPU seconds per frame: robust when other jobs share the cores
                "cpu_per_frame_dials_nproc1_over_mxflow": d["nproc1"][
                    "cpu_s_per_frame_without_startup"
                ]
                / cpu_all,
            }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result["machine"]["loadavg_end"] = os.getloadavg()
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "hitmap.json").write_text(json.dumps(result, indent=1) + "\n")
    print_table(result)
    return 0


def print_table(r: dict) -> None:
    dec, mx = r["decode"], r["mxflow"]
    rows = [
        ("decode: .bz2 file -> pixels, 1 core", dec["bz2_read_decompress_decode_fps_1core"]),
        ("decode: bytes in memory -> pixels, 1 core", dec["decode_from_memory_fps_1core"]),
        ("decode: .cbf file -> pixels, 1 core", dec["read_decode_fps_1core"]),
        ("decode: .cbf file -> pixels, 2 threads", dec["read_decode_fps_2threads"]),
        ("mxflow: spot finding only, 1 core", mx["find_spots_only_fps_1core"]),
        *(
            (f"mxflow: read+decode+spots, {k.replace('_', ' ')}", v)
            for k, v in mx["read_decode_find_fps"].items()
        ),
    ]
    if "dials" in r:
        for key in ("nproc1", "nproc2"):
            d = r["dials"][key]
            rows.append(
                (
                    f"dials.find_spots {key}, per frame (no start-up)",
                    d["fps_without_startup"] or float("nan"),
                )
            )
            rows.append((f"dials.find_spots {key}, 6 frames incl. start-up", d["fps_with_startup"]))
    if "eiger_hdf5" in r:
        e = r["eiger_hdf5"]
        rows.append(("Eiger HDF5 (bitshuffle/LZ4): read, 1 core", e["read_fps_1core"]))
        for key, label in (
            ("read_find_fps_1_threads", "1 worker"),
            ("read_find_fps_2_threads", "2 threads"),
            ("read_find_fps_2_processes", "2 processes"),
        ):
            rows.append((f"Eiger HDF5: read+spots, {label}", e[key]))
    print(f"{'what':56s} {'frames/s':>10s}")
    for name, v in rows:
        print(f"{name:56s} {v:10.1f}")
    print(
        f"CPU s/frame: mxflow decode {mx['cpu_s_per_frame_decode_only']:.3f}, spots "
        f"{mx['cpu_s_per_frame_find_spots_only']:.3f}, read+decode+spots "
        f"{mx['cpu_s_per_frame_read_decode_find_2threads']:.3f}"
        + (
            f"; dials.find_spots (nproc=1, no start-up) "
            f"{r['dials']['nproc1']['cpu_s_per_frame_without_startup']:.3f}"
            if "dials" in r
            else ""
        )
    )
    print(
        f"mxflow numba compile (cold cache) {mx['numba_compile_cold_s']:.1f} s; first call with cache {mx['first_call_warm_cache_s']:.2f} s"
    )
    print(f"mxflow counts {mx['counts']}")
    if "eiger_hdf5" in r:
        print(f"Eiger HDF5 counts equal the CBF counts: {r['eiger_hdf5']['counts_equal_cbf']}")
    if "dials" in r:
        d2 = r["dials"]["nproc2"]
        print(f"dials counts  {r['dials']['counts']}")
        print(
            f"dials start-up ~{d2['startup_s_est']:.1f} s (nproc=2); dials.import {d2['import_6_frames_s']:.1f} s"
        )
        for k, v in r["ratio"].items():
            print(f"ratio {k}: {v:.1f}x" if v else f"ratio {k}: n/a")
    print(f"load average start {r['machine']['loadavg_start']}, end {r['machine']['loadavg_end']}")


if __name__ == "__main__":
    sys.exit(main())
