"""Drawing a hit map: a heat-map PNG (matplotlib, Agg) and a self-contained
HTML page (inline CSS and JavaScript, no network) where hovering over a cell
shows the frame and its numbers.  Both take the document that
:func:`mxflow.hitmap.run.hitmap` writes to ``hitmap.json``.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np

from mxflow.util.files import atomic_write_bytes, atomic_write_text

CMAP = "viridis"


def spot_grid(doc: dict) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) arrays: spot counts (NaN where no result) and a
    bad-frame flag, from the frames' ``row`` / ``col``."""
    g = doc["grid"]
    counts = np.full((g["rows"], g["cols"]), np.nan)
    bad = np.zeros((g["rows"], g["cols"]), bool)
    for f in doc["frames"]:
        if f.get("n_spots") is None:
            bad[f["row"], f["col"]] = True
        else:
            counts[f["row"], f["col"]] = f["n_spots"]
    return counts, bad


def _best(doc: dict) -> dict | None:
    good = [f for f in doc["frames"] if f.get("n_spots") is not None]
    return max(good, key=lambda f: f["n_spots"]) if good else None


def write_png(doc: dict, path: str | Path) -> None:
    """Heat map of spots per frame on the scan grid (bad frames: red ×)."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    counts, bad = spot_grid(doc)
    rows, cols = counts.shape
    fig = Figure(
        figsize=(min(max(5.5, 2 + 0.5 * cols), 14), min(max(3.5, 1.5 + 0.5 * rows), 12)), dpi=100
    )
    ax = fig.add_subplot()
    cmap = matplotlib.colormaps[CMAP].with_extremes(bad="#d0d0d0")
    vmax = np.nanmax(counts) if np.isfinite(counts).any() else 1.0
    im = ax.imshow(
        np.ma.masked_invalid(counts), cmap=cmap, vmin=0, vmax=max(vmax, 1.0), origin="upper"
    )
    fig.colorbar(im, ax=ax, label="spots per frame")
    by, bx = np.nonzero(bad)
    if by.size:
        ax.scatter(bx, by, marker="x", c="red", s=60, label="unreadable frame")
        ax.legend(loc="upper right", fontsize=8, framealpha=0.8)
    if rows * cols <= 400:
        for (r, c), v in np.ndenumerate(counts):
            if np.isfinite(v):
                shade = cmap(v / max(vmax, 1.0))
                light = 0.299 * shade[0] + 0.587 * shade[1] + 0.114 * shade[2] > 0.5
                ax.text(
                    c,
                    r,
                    f"{int(v)}",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="black" if light else "white",
                )
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    g = doc["grid"]
    ax.set_xlabel("column (fast scan direction)")
    ax.set_ylabel("row")
    best = _best(doc)
    title = f"{len(doc['frames'])} frames, grid {g['cols']}x{g['rows']} ({g['source']})"
    if best:
        title += f"\nbest: {Path(best['file']).name} #{best['index']} ({best['n_spots']} spots)"
    ax.set_title(title, fontsize=9)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    atomic_write_bytes(path, buf.getvalue())


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>mxflow hit map</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; color: #222; }}
#grid {{ display: grid; grid-template-columns: repeat({cols}, {cell}px); gap: 1px;
        background: #888; width: max-content; border: 1px solid #888; }}
.cell {{ width: {cell}px; height: {cell}px; font-size: 10px; display: flex;
        align-items: center; justify-content: center; cursor: crosshair; }}
.cell:hover {{ outline: 2px solid #e33; z-index: 1; }}
.bad {{ background: repeating-linear-gradient(45deg, #fff, #fff 3px, #f99 3px, #f99 6px); }}
.empty {{ background: #eee; }}
#info {{ margin-top: 1em; min-height: 6em; font-family: monospace; white-space: pre; }}
table {{ border-collapse: collapse; margin-top: 1em; font-size: 90%; }}
td, th {{ border: 1px solid #ccc; padding: 2px 6px; text-align: right; }}
</style></head><body>
<h1>Hit map</h1>
<p>{summary}</p>
<div id="grid"></div>
<div id="info">Hover over a cell to see its frame.</div>
<h2>Unreadable frames</h2>
{errors}
<script>
const DATA = {data};
const grid = document.getElementById("grid");
const info = document.getElementById("info");
const cells = new Map();
for (const f of DATA.frames) cells.set(f.row + "," + f.col, f);
function fmt(v, d) {{ return v === null || v === undefined ? "-" : (typeof v === "number" ? v.toFixed(d) : v); }}
for (let r = 0; r < DATA.rows; r++) {{
  for (let c = 0; c < DATA.cols; c++) {{
    const f = cells.get(r + "," + c);
    const el = document.createElement("div");
    el.className = "cell";
    if (!f) {{ el.classList.add("empty"); }}
    else if (f.n_spots === null) {{ el.classList.add("bad"); el.textContent = "x"; }}
    else {{ el.style.background = f.color; el.style.color = f.text; if (DATA.cols <= 40) el.textContent = f.n_spots; }}
    el.addEventListener("mouseenter", () => {{
      if (!f) {{ info.textContent = "row " + r + ", column " + c + ": no frame"; return; }}
      info.textContent = "row " + r + ", column " + c + "\\n" + "frame " + f.file + " #" + f.index + "\\n" +
        (f.error ? "error: " + f.error :
         "spots " + f.n_spots + "   total intensity " + fmt(f.total_intensity, 0) +
         "   median " + fmt(f.median_intensity, 0) + "\\nestimated d_min " + fmt(f.d_min_est, 2) + " \\u00c5");
    }});
    grid.appendChild(el);
  }}
}}
</script>
</body></html>
"""


def write_html(doc: dict, path: str | Path) -> None:
    """Self-contained HTML hit map; hovering a cell shows its frame's numbers."""
    import matplotlib

    cmap = matplotlib.colormaps[CMAP]
    counts = [f["n_spots"] for f in doc["frames"] if f.get("n_spots") is not None]
    vmax = max(max(counts, default=1), 1)
    frames = []
    for f in doc["frames"]:
        item = {
            k: f.get(k)
            for k in (
                "file",
                "index",
                "n_spots",
                "total_intensity",
                "median_intensity",
                "d_min_est",
                "row",
                "col",
                "error",
            )
        }
        if f.get("n_spots") is not None:
            rgba = cmap(f["n_spots"] / vmax)
            item["color"] = matplotlib.colors.to_hex(rgba)
            light = 0.299 * rgba[0] + 0.587 * rgba[1] + 0.114 * rgba[2] > 0.5
            item["text"] = "#000" if light else "#fff"
        frames.append(item)
    g = doc["grid"]
    data = json.dumps({"rows": g["rows"], "cols": g["cols"], "frames": frames})
    data = data.replace("</", "<\\/")  # keep file names from closing the script element
    best = _best(doc)
    summary = (
        f"{len(doc['frames'])} frames on a {g['cols']} x {g['rows']} grid ({g['source']}"
        f"{', serpentine' if g.get('snake') else ''}); colour = spots per frame (0 to {vmax})."
    )
    if best:
        summary += f" Best frame: {best['file']} #{best['index']} with {best['n_spots']} spots."
    if doc["errors"]:
        rows = "".join(
            f"<tr><td>{html.escape(str(e['file']))}</td><td>{e['index']}</td>"
            f"<td style='text-align:left'>{html.escape(str(e['error']))}</td></tr>"
            for e in doc["errors"]
        )
        errors = f"<table><tr><th>file</th><th>index</th><th>error</th></tr>{rows}</table>"
    else:
        errors = "<p>none</p>"
    cell = 36 if g["cols"] <= 25 else 14
    page = _PAGE.format(
        cols=g["cols"], cell=cell, summary=html.escape(summary), errors=errors, data=data
    )
    atomic_write_text(path, page)
