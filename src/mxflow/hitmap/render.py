"""Drawing a hit map: a heat-map PNG (matplotlib, Agg) and an HTML page (no
network) where hovering over a cell shows the frame and its numbers.  Both take
the document that :func:`mxflow.hitmap.run.hitmap` writes to ``hitmap.json``.

The page is the report template ``hitmap.html``: in an output directory the
report writer gives it the reports' stylesheet and navigation
(:func:`mxflow.report.write.write_hitmap_pages`); on its own it inlines the
stylesheet.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mxflow.util.files import atomic_write_bytes

CMAP = "viridis"
#: what the page keeps of each frame
_FRAME_KEYS = (
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
    title = (
        f"{len(doc['frames'])} frames, grid {g['rows']} rows x {g['cols']} columns ({g['source']})"
    )
    if best:
        title += f"\nbest: {Path(best['file']).name} #{best['index']} ({best['n_spots']} spots)"
    ax.set_title(title, fontsize=9)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    atomic_write_bytes(path, buf.getvalue())


def page_context(doc: dict) -> dict[str, Any]:
    """What the hit-map page shows: the frames with their cell colours (viridis, 0 to the
    most spots), the grid, a one-line summary and the unreadable frames."""
    import matplotlib

    cmap = matplotlib.colormaps[CMAP]
    frames_in = [f for f in doc.get("frames", []) if isinstance(f, dict)]
    counts = [f["n_spots"] for f in frames_in if f.get("n_spots") is not None]
    vmax = max(max(counts, default=1), 1)
    frames = []
    for f in frames_in:
        item = {k: f.get(k) for k in _FRAME_KEYS}
        if f.get("n_spots") is not None:
            rgba = cmap(f["n_spots"] / vmax)
            item["color"] = matplotlib.colors.to_hex(rgba)
            light = 0.299 * rgba[0] + 0.587 * rgba[1] + 0.114 * rgba[2] > 0.5
            item["text"] = "#000" if light else "#fff"
        frames.append(item)
    g = doc["grid"]
    best = _best({"frames": frames_in})
    source = g.get("source")
    how = ", ".join(x for x in (source, "serpentine" if g.get("snake") else "") if x)
    summary = (
        f"{len(frames_in)} frames on a grid of {g['rows']} rows x {g['cols']} columns"
        f"{f' ({how})' if how else ''}; colour = spots per frame (0 to {vmax})."
    )
    if best:
        summary += f" Best frame: {best['file']} #{best['index']} with {best['n_spots']} spots."
    errors = [
        {"file": str(e.get("file", "")), "index": e.get("index"), "error": str(e.get("error", ""))}
        for e in doc.get("errors") or []
        if isinstance(e, dict)
    ]
    return {
        "summary": summary,
        "errors": errors,
        "cols": g["cols"],
        "cell": 36 if g["cols"] <= 25 else 14,
        "js": {"rows": g["rows"], "cols": g["cols"], "frames": frames},
    }


def write_html(
    doc: dict,
    path: str | Path,
    nav: dict[str, Any] | None = None,
    out: str = "",
    scan: str = "",
) -> Path:
    """The hit-map page: hovering a cell shows its frame's numbers.

    With ``nav`` (the report pages' links, relative to the page, as
    :mod:`mxflow.report.write` makes them) the page uses the reports' stylesheet
    and navigation and links back to the collection report; without it (``mxflow
    hitmap`` on its own) the stylesheet is inlined and the page stands alone.
    No network either way.  ``scan`` names the scan in the title.
    """
    from mxflow.report.render import render, static_text, write_page

    path = Path(path)
    ctx = page_context(doc)
    html = render(
        "hitmap.html",
        title=f"Hit map {scan}" if scan else "Hit map",
        out=out or str(path.parent),
        nav=nav,
        inline_css=None if nav else static_text("mxflow.css"),
        scan=scan,
        png="hitmap.png" if (path.parent / "hitmap.png").is_file() else None,
        json="hitmap.json" if (path.parent / "hitmap.json").is_file() else None,
        **ctx,
    )
    return write_page(path, html)
