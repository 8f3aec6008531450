"""Turning page contexts into HTML files, and the shared static assets.

Layout written into an output directory ``OUT``::

    OUT/report/index.html        collection report (one row per pin)
    OUT/report/datasets.html     dataset report (every dataset, per-shell tables)
    OUT/report/static/           mxflow.css, mxflow.js, plotly.min.js (once per output tree)
    OUT/merge_*/report.html      merge report of each sample / method

Pages are complete without JavaScript (tables are rendered here); the
scripts add the charts and dendrograms (plotly.js, copied from the
installed ``plotly`` Python package), sorting and filtering.  Nothing is
loaded from the network.
"""

from __future__ import annotations

import datetime as _dt
import math
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2

from mxflow import __version__
from mxflow.errors import MxflowError
from mxflow.util.files import atomic_write_bytes, atomic_write_text
from mxflow.util.html import script_json

STATIC_FILES = ("mxflow.css", "mxflow.js")
PLOTLY_JS = "plotly.min.js"


def fmt(v: Any, spec: str = ".2f", missing: str = "–") -> str:
    """Format a number (None / NaN / undefined show as ``missing``; text passes through)."""
    if v is None or isinstance(v, bool | jinja2.Undefined):
        return missing
    try:
        f = float(v)
    except (TypeError, ValueError):
        return str(v)
    if not math.isfinite(f):
        return missing
    if spec.endswith("d"):
        return format(round(f), spec)
    return format(f, spec)


def pct(v: Any, spec: str = ".1f") -> str:
    """A fraction (0–1) shown as a percentage number (no % sign)."""
    if v is None or isinstance(v, bool | jinja2.Undefined):
        return "–"
    try:
        return fmt(100.0 * float(v), spec)
    except (TypeError, ValueError):
        return "–"


def cell_text(cell: Any) -> str:
    """``a b c α β γ`` with edges to 2 and angles to 1 decimal."""
    if not cell or len(cell) != 6:
        return "–"
    return (
        " ".join(fmt(x, ".2f") for x in cell[:3]) + "  " + " ".join(fmt(x, ".1f") for x in cell[3:])
    )


def _env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("mxflow.report", "templates"),
        autoescape=jinja2.select_autoescape(["html"]),
        undefined=jinja2.ChainableUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["fmt"] = fmt
    env.filters["pct"] = pct
    env.filters["cell"] = cell_text
    env.filters["script_json"] = script_json
    return env


_ENV: jinja2.Environment | None = None


def render(template: str, **context: Any) -> str:
    """Render one template with the shared filters and page furniture."""
    global _ENV
    if _ENV is None:
        _ENV = _env()
    context.setdefault("version", __version__)
    context.setdefault("generated", _dt.datetime.now().strftime("%Y-%m-%d %H:%M"))
    return _ENV.get_template(template).render(**context)


def static_text(name: str) -> str:
    """Contents of one of the packaged static assets."""
    return resources.files("mxflow.report").joinpath("static", name).read_text()


def plotly_js() -> bytes:
    """The minified plotly.js bundle shipped inside the installed ``plotly`` Python package."""
    try:
        bundled = resources.files("plotly").joinpath("package_data", PLOTLY_JS)
        if bundled.is_file():
            return bundled.read_bytes()
        from plotly.offline import get_plotlyjs

        return get_plotlyjs().encode()
    except (ImportError, OSError) as exc:
        raise MxflowError(
            f"plotly.js not found in the installed plotly package ({exc}); "
            "install the 'plotly' Python package to write reports with charts"
        ) from exc


def write_static(report_dir: Path) -> Path:
    """Copy the static assets into ``report_dir/static`` (only when changed); return that folder."""
    static = Path(report_dir) / "static"
    assets = [(name, static_text(name).encode()) for name in STATIC_FILES]
    assets.append((PLOTLY_JS, plotly_js()))
    for name, data in assets:
        target = static / name
        if target.is_file() and target.read_bytes() == data:
            continue
        atomic_write_bytes(target, data)
        target.chmod(0o644)
    return static


def write_page(path: Path, html: str) -> Path:
    """Write a page atomically, readable by everyone (reports are shared)."""
    atomic_write_text(path, html)
    path.chmod(0o644)
    return path
