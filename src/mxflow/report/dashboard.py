"""The live dashboard: a loopback web server over an output directory.

``GET /`` is a page that polls ``GET /api/status`` (a small JSON document:
counts and one short row per dataset) every few seconds; everything else
is served as a file from the output directory, so the written reports
(``/report/index.html``, ``/merge_*/report.html``) open from the dashboard.
The dashboard's own CSS/JS come from the package under ``/_mxflow/``.
Only files whose real path (links resolved) lies inside the output directory
are served: a link that leads out of it is refused (403).

State is read from the catalog (``OUT/mxflow.sqlite``, read-only, safe while
a run writes it) when there is one, else from ``OUT/summary.json``.  The
server writes nothing: the reports are written by the commands that write
the output directory (``mxflow run``, ``mxflow report``).
"""

from __future__ import annotations

import http.server
import ipaddress
import json
import socket
import time
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from mxflow.catalog.db import Catalog, catalog_path
from mxflow.catalog.summary import summary_dict
from mxflow.merge.live import all_live
from mxflow.model import MergingStats
from mxflow.report.load import DatasetRow, dataset_rows, find_merge_dirs, load_summary
from mxflow.report.pages import dataset_identity, finite
from mxflow.report.render import render, static_text
from mxflow.util.files import read_json
from mxflow.util.html import script_json

LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1", "[::1]"}


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback IP addresses (127.0.0.0/8, ::1)."""
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _read_datasets(out: Path) -> tuple[list[DatasetRow], str]:
    """Dataset rows and where they came from ("catalog", "summary.json" or "none")."""
    if catalog_path(out).is_file():
        try:
            cat = Catalog(out, readonly=True)
            try:
                return dataset_rows(
                    summary_dict(cat)["datasets"], str(catalog_path(out))
                ), "catalog"
            finally:
                cat.close()
        except Exception:  # a catalog being created or locked: fall back to the summary
            pass
    if (out / "summary.json").is_file():
        return load_summary(out), "summary.json"
    return [], "none"


def _figures(stats: MergingStats | None) -> dict[str, Any]:
    ov = stats.overall if stats else None
    return {
        "cc_half": finite(ov.cc_half) if ov else None,
        "cc_half_outer": finite(stats.outer.cc_half) if stats else None,
        "completeness": finite(ov.completeness) if ov else None,
        "multiplicity": finite(ov.multiplicity) if ov else None,
        "i_over_sigma": finite(ov.i_over_sigma) if ov else None,
    }


def merged_rows(out: Path) -> list[dict[str, Any]]:
    """The merged statistics to show: each sample's live merge (``mxflow watch``, provisional)
    and the recommended cluster of each batch merge (final/final.json), newest state first."""
    rows = []
    for live in all_live(out):
        rows.append(
            {
                "kind": "live",
                "sample": live.sample,
                "datasets": len(live.used),
                "left_out": len(live.datasets) - len(live.used),
                "space_group": live.space_group,
                "d_min": finite(live.d_min),
                **_figures(live.stats),
                "updated": time.strftime("%H:%M:%S", time.localtime(live.updated)),
                "href": f"/{live.merged_mtz}" if live.merged_mtz else None,
            }
        )
    for final in sorted(out.glob("merge*/*/final/final.json")) + sorted(
        out.glob("merge*/*/*/final/final.json")
    ):
        try:
            doc = read_json(final)
        except (OSError, ValueError):
            continue
        rows.append(
            {
                "kind": "final",
                "sample": " ".join(p for p in (doc.get("sample"), doc.get("label")) if p),
                "datasets": len(doc.get("datasets") or []),
                "left_out": None,
                "space_group": doc.get("space_group") or "",
                "d_min": finite(doc.get("d_min")),
                "cc_half": finite(doc.get("cc_half")),
                "cc_half_outer": finite(doc.get("cc_half_outer")),
                "completeness": finite(doc.get("completeness")),
                "multiplicity": finite(doc.get("multiplicity")),
                "i_over_sigma": finite(doc.get("i_over_sigma")),
                "updated": time.strftime("%H:%M:%S", time.localtime(final.stat().st_mtime)),
                "href": "/" + (final.parent / "merged.mtz").relative_to(out).as_posix(),
            }
        )
    return rows


def collect_status(out: str | Path) -> dict[str, Any]:
    """The dashboard's JSON: counts, one short row per dataset, links to the reports."""
    out = Path(out)
    datasets, source = _read_datasets(out)
    counts: dict[str, int] = {}
    rows = []
    for row in datasets:
        r = row.result
        counts[r.status] = counts.get(r.status, 0) + 1
        ov = r.stats.overall if r.stats else None
        rows.append(
            {
                **dataset_identity(row),
                "space_group": r.space_group or "",
                "d_min": finite(r.d_min),
                "completeness": finite(ov.completeness) if ov else None,
                "cc_half": finite(ov.cc_half) if ov else None,
                "wall_s": finite(r.wall_s),
            }
        )
    merges = []
    for mdir in find_merge_dirs(out):
        rel = mdir.relative_to(out).as_posix()
        merges.append(
            {
                "label": mdir.name,
                "href": f"/{rel}/report.html",
                "written": (mdir / "report.html").is_file(),
            }
        )
    return {
        "source": source,
        "time": time.strftime("%Y-%m-%d %H:%M:%S"),
        "counts": counts,
        "total": len(rows),
        "datasets": rows,
        "merges": merges,
        "merged": merged_rows(out),
        "reports_written": (out / "report" / "index.html").is_file(),
    }


class DashboardHandler(http.server.SimpleHTTPRequestHandler):
    """Serves the dashboard page, its JSON and the files of the output directory."""

    server_version = "mxflow-dashboard"
    state: DashboardState  # set by make_server

    def log_message(self, format: str, *args: Any) -> None:  # quiet by default
        if self.state.verbose:
            super().log_message(format, *args)

    def _host_ok(self) -> bool:
        """Refuse requests for another host name on a loopback server (DNS rebinding)."""
        if not self.state.loopback_only:
            return True
        host = (self.headers.get("Host") or "").strip()
        name = urlsplit(f"//{host}").hostname or ""
        return is_loopback(name)

    def _send(self, code: int, body: bytes, ctype: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        if not self._host_ok():
            self._send(403, b"forbidden host\n", "text/plain")
            return
        path = urlsplit(self.path).path
        if path in ("/", "/dashboard", "/dashboard.html"):
            self._send(200, self.state.page().encode(), "text/html; charset=utf-8")
        elif path == "/api/status":
            status = self.state.status()
            self._send(200, json.dumps(status).encode(), "application/json")
        elif path.startswith("/_mxflow/") and path[9:] in ("mxflow.css", "mxflow.js"):
            ctype = "text/css" if path.endswith(".css") else "text/javascript"
            self._send(200, static_text(path[9:]).encode(), f"{ctype}; charset=utf-8")
        elif self.command == "HEAD":
            super().do_HEAD()
        else:
            super().do_GET()

    def translate_path(self, path: str) -> str:
        """The file for a URL path: its real path (links resolved), or ``""`` when that
        lies outside the output directory (a link out of it, ``..``)."""
        mapped = Path(super().translate_path(path))
        try:
            real = mapped.resolve()
        except (OSError, RuntimeError):  # a link loop
            return ""
        if not real.is_relative_to(self.state.out):
            return ""
        return str(real)

    def send_head(self) -> Any:
        if not self.translate_path(self.path):
            self.send_error(403, "outside the output directory")
            return None
        return super().send_head()


class DashboardState:
    """Shared by the handler threads: the output directory (read, never written)."""

    def __init__(self, out: Path, loopback_only: bool, verbose: bool = False):
        self.out = Path(out).resolve()
        self.loopback_only = loopback_only
        self.verbose = verbose

    def page(self) -> str:
        return render(
            "dashboard.html",
            title="Live dashboard",
            out=str(self.out),
            nav={
                "index": "/report/index.html",
                "datasets": "/report/datasets.html",
                "merges": [],
                "static": "/_mxflow",
            },
            initial=script_json(collect_status(self.out)),
        )

    def status(self) -> dict[str, Any]:
        """:func:`collect_status` of the output directory (reads only)."""
        return collect_status(self.out)


def make_server(
    out: str | Path,
    host: str = "127.0.0.1",
    port: int = 8765,
    verbose: bool = False,
) -> http.server.ThreadingHTTPServer:
    """A threaded HTTP server for the dashboard of ``out`` (not started: call serve_forever).

    It answers GET and HEAD only, writes nothing, and serves only files whose real path
    lies inside ``out``.
    """
    out = Path(out).resolve()
    state = DashboardState(out, loopback_only=is_loopback(host), verbose=verbose)
    handler = type("Handler", (DashboardHandler,), {"state": state})
    server_cls = http.server.ThreadingHTTPServer
    if ":" in host:
        server_cls = type("Server6", (server_cls,), {"address_family": socket.AF_INET6})
    server = server_cls((host.strip("[]"), port), partial(handler, directory=str(out)))
    server.daemon_threads = True
    return server
