"""The live dashboard: a loopback web server over an output directory.

``GET /`` is a page that polls ``GET /api/status`` (a small JSON document:
counts and one short row per dataset) every few seconds; everything else
is served as a file from the output directory, so the written reports
(``/report/index.html``, ``/merge_*/report.html``) open from the dashboard.
The dashboard's own CSS/JS come from the package under ``/_mxflow/``.

State is read from the catalog (``OUT/mxflow.sqlite``, read-only, safe while
a run writes it) when there is one, else from ``OUT/summary.json``.  When
the state changes the reports are rewritten in the background, at most
once per ``regenerate_s`` seconds.
"""

from __future__ import annotations

import hashlib
import http.server
import ipaddress
import json
import socket
import threading
import time
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from mxflow.catalog.db import Catalog, catalog_path
from mxflow.catalog.summary import summary_dict
from mxflow.report.load import DatasetRow, dataset_rows, find_merge_dirs, load_summary
from mxflow.report.pages import dataset_identity, finite
from mxflow.report.render import render, static_text
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
        else:
            super().do_GET()


class DashboardState:
    """Shared by the handler threads: the output directory and report regeneration."""

    def __init__(
        self, out: Path, loopback_only: bool, regenerate_s: float = 20.0, verbose: bool = False
    ):
        self.out = out
        self.loopback_only = loopback_only
        self.regenerate_s = regenerate_s
        self.verbose = verbose
        self._lock = threading.Lock()
        self._last_fingerprint = ""
        self._last_written = 0.0
        self._writing = False

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
        status = collect_status(self.out)
        key = json.dumps([(d["name"], d["status"]) for d in status["datasets"]]) + str(
            len(status["merges"])
        )
        fp = hashlib.sha1(key.encode()).hexdigest()
        self._maybe_regenerate(fp, status["total"] > 0)
        status["regenerating"] = self._writing
        return status

    def _maybe_regenerate(self, fingerprint: str, have_data: bool) -> None:
        if self.regenerate_s < 0 or not have_data:
            return
        with self._lock:
            due = time.monotonic() - self._last_written >= self.regenerate_s
            if self._writing or fingerprint == self._last_fingerprint or not due:
                return
            self._writing = True
            self._last_fingerprint = fingerprint
        threading.Thread(target=self._regenerate, daemon=True).start()

    def _regenerate(self) -> None:
        from mxflow.report.write import write_reports

        try:
            write_reports(self.out)
        except Exception as exc:  # keep serving; the page shows the last good reports
            if self.verbose:
                print(f"mxflow serve: could not rewrite the reports: {exc}")
        finally:
            with self._lock:
                self._writing = False
                self._last_written = time.monotonic()


def make_server(
    out: str | Path,
    host: str = "127.0.0.1",
    port: int = 8765,
    regenerate_s: float = 20.0,
    verbose: bool = False,
) -> http.server.ThreadingHTTPServer:
    """A threaded HTTP server for the dashboard of ``out`` (not started: call serve_forever)."""
    out = Path(out).resolve()
    state = DashboardState(
        out, loopback_only=is_loopback(host), regenerate_s=regenerate_s, verbose=verbose
    )
    handler = type("Handler", (DashboardHandler,), {"state": state})
    server_cls = http.server.ThreadingHTTPServer
    if ":" in host:
        server_cls = type("Server6", (server_cls,), {"address_family": socket.AF_INET6})
    server = server_cls((host.strip("[]"), port), partial(handler, directory=str(out)))
    server.daemon_threads = True
    return server
