"""``mxflow serve`` serves only what is inside OUT and writes nothing (#12 item 14)."""

from __future__ import annotations

import hashlib
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from mxflow.model import Dataset, DatasetResult, ImageSweep
from mxflow.report import dashboard
from mxflow.report.dashboard import make_server
from report_fixtures import write_sample_output

SECRET = b"top secret outside OUT\n"


@pytest.fixture
def serve():
    servers = []

    def start(out: Path) -> str:
        server = make_server(out, port=0)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def request(url: str, method: str = "GET") -> tuple[int, bytes]:
    req = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def snapshot(root: Path) -> dict[str, tuple[int, str]]:
    """Every file under ``root`` (links not followed): mtime in ns and SHA-256."""
    return {
        p.relative_to(root).as_posix(): (
            p.stat().st_mtime_ns,
            hashlib.sha256(p.read_bytes()).hexdigest(),
        )
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def test_links_out_of_out_are_refused(tmp_path, serve):
    outside = tmp_path / "outside"
    (outside / "sub").mkdir(parents=True)
    (outside / "secret.txt").write_bytes(SECRET)
    (outside / "sub" / "deep.txt").write_bytes(SECRET)
    out = tmp_path / "OUT"
    (out / "inner").mkdir(parents=True)
    (out / "inner" / "ok.txt").write_text("inside")
    (out / "dirlink").symlink_to(outside, target_is_directory=True)
    (out / "filelink").symlink_to(outside / "secret.txt")
    (out / "inner" / "uplink").symlink_to("../../outside/secret.txt")
    (out / "etc").symlink_to("/etc", target_is_directory=True)
    (out / "innerlink").symlink_to("inner", target_is_directory=True)  # stays inside: served
    base = serve(out)
    for path in (
        "/filelink",
        "/dirlink/secret.txt",
        "/dirlink/sub/deep.txt",
        "/dirlink/",
        "/dirlink/sub/",
        "/inner/uplink",
        "/etc/passwd",
        "/etc/hostname",
        "/etc/",
    ):
        for method in ("GET", "HEAD"):
            code, body = request(base + path, method)
            assert code in (403, 404), (path, method, code)
            assert SECRET not in body and b"root:" not in body, (path, method)
    assert request(base + "/inner/ok.txt") == (200, b"inside")
    assert request(base + "/innerlink/ok.txt") == (200, b"inside")
    assert request(base + "/inner/ok.txt", "HEAD") == (200, b"")
    # the listing of OUT itself still works (and the links in it lead nowhere)
    code, body = request(base + "/inner/")
    assert code == 200 and b"ok.txt" in body


def test_out_given_through_a_link_still_serves_its_files(tmp_path, serve):
    real = tmp_path / "real_out"
    real.mkdir()
    (real / "a.txt").write_text("a")
    (tmp_path / "out_link").symlink_to(real, target_is_directory=True)
    base = serve(tmp_path / "out_link")
    assert request(base + "/a.txt") == (200, b"a")


def test_status_writes_nothing_summary_json(tmp_path, serve):
    out = write_sample_output(tmp_path / "OUT", n_multi=2, seed=4, with_refl=False)
    before = snapshot(out)
    base = serve(out)
    for _ in range(3):
        for path in ("/api/status", "/", "/summary.json", "/report/"):
            request(base + path)
    threading.Event().wait(0.5)  # room for any background writer to have started
    assert request(base + "/api/status")[0] == 200
    assert snapshot(out) == before
    assert not (out / "report").exists()  # the reports are the writing commands' job


def test_status_from_catalog_read_only_writes_nothing(tmp_path, serve, monkeypatch):
    from mxflow.catalog.db import Catalog

    out = tmp_path / "OUT"
    sweep = ImageSweep(
        "/data/x_####.cbf", "cbf", 1, 100, 1.0, 200.0, (1000.0, 1000.0), (0.172, 0.172),
        (2463, 2527), 0.0, 0.1,
    )  # fmt: skip
    writer = Catalog(out)  # a run holds the catalog open while the dashboard reads it
    try:
        for i in range(3):
            writer.add_dataset(
                f"proc/pin{i}/d{i}", Dataset(f"d{i}", sweep, sample="S", mode="single"), "sweep"
            )
        writer.record_result(
            "proc/pin0/d0",
            DatasetResult(name="d0", path="/data/x_####.cbf", status="ok", d_min=1.9, sample="S"),
        )
        opened: list[bool] = []

        class Spy(Catalog):
            def __init__(self, where, readonly: bool = False):
                opened.append(readonly)
                super().__init__(where, readonly=readonly)

        monkeypatch.setattr(dashboard, "Catalog", Spy)
        # SQLite's shared-memory index (-shm) and write-ahead log (-wal) belong to the open
        # catalog, not to OUT's content: a reader touches them; the database itself must not change
        sidecars = {"mxflow.sqlite-shm", "mxflow.sqlite-wal"}
        before = {k: v for k, v in snapshot(out).items() if k not in sidecars}
        base = serve(out)
        for _ in range(3):
            code, body = request(base + "/api/status")
            assert code == 200 and b'"source": "catalog"' in body
            assert request(base + "/")[0] == 200
        threading.Event().wait(0.5)
        after = {k: v for k, v in snapshot(out).items() if k not in sidecars}
        assert after == before
        assert opened and all(opened)  # every open read-only
        assert not (out / "report").exists()
    finally:
        writer.close()


def test_serve_has_no_regenerate_option(tmp_path):
    from mxflow.cli import build_parser

    with pytest.raises(SystemExit) as exc:
        build_parser("serve").parse_args(["serve", str(tmp_path), "--regenerate", "5"])
    assert exc.value.code == 2


def raw_head(base: str, path: str) -> bytes:
    """The whole reply to ``HEAD path`` as bytes (urllib would not read a body after HEAD)."""
    import socket

    port = int(base.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
        c.sendall(f"HEAD {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".encode())
        data = b""
        while chunk := c.recv(4096):
            data += chunk
    return data


def test_head_sends_headers_only(tmp_path, serve):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_bytes(SECRET)
    out = tmp_path / "OUT"
    out.mkdir()
    (out / "a.txt").write_text("hello")
    (out / "link").symlink_to(outside / "secret.txt")
    base = serve(out)
    reply = raw_head(base, "/a.txt")
    assert reply.startswith(b"HTTP/1.0 200") and reply.endswith(b"\r\n\r\n")
    assert b"hello" not in reply
    reply = raw_head(base, "/link")
    assert reply.startswith(b"HTTP/1.0 403") and SECRET not in reply
