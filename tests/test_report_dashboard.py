"""The live dashboard server: status JSON from summary.json or the catalog, files, loopback rules."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from mxflow.model import Dataset, DatasetResult, ImageSweep
from mxflow.report.dashboard import collect_status, is_loopback, make_server
from report_fixtures import write_sample_output


@pytest.fixture
def served(tmp_path):
    out = write_sample_output(tmp_path / "OUT", n_multi=2, seed=4, with_refl=False)
    server = make_server(out, port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield out, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def get(url: str, host: str | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers={"Host": host} if host else {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_status_json_counts_match_summary(served):
    out, base = served
    ds = json.loads((out / "summary.json").read_text())["datasets"]
    code, body = get(base + "/api/status")
    assert code == 200
    status = json.loads(body)
    assert status["source"] == "summary.json" and status["total"] == len(ds)
    assert status["counts"] == {
        "ok": sum(d["status"] == "ok" for d in ds),
        "failed": sum(d["status"] == "failed" for d in ds),
    }
    failed = [r for r in status["datasets"] if r["status"] == "failed"]
    assert failed and all(r["problem"] for r in failed)
    assert len(status["merges"]) == 3


def test_dashboard_page_files_and_host_check(served):
    out, base = served
    code, body = get(base + "/")
    assert code == 200 and b"MX.dashboardPage" in body and b"/_mxflow/mxflow.js" in body
    assert get(base + "/_mxflow/mxflow.css")[0] == 200
    (out / "note.txt").write_text("hello")
    assert get(base + "/note.txt") == (200, b"hello")
    assert get(base + "/../../etc/passwd")[0] == 404
    # a page asked for under another host name (DNS rebinding) is refused on a loopback server
    assert get(base + "/api/status", host="evil.example:80")[0] == 403
    assert get(base + "/api/status", host="localhost")[0] == 200


def test_status_links_reports_once_written(served):
    # serve writes no report (that is mxflow run's and mxflow report's job); it links them
    from mxflow.report import write_reports

    out, base = served
    assert not json.loads(get(base + "/api/status")[1])["reports_written"]
    assert not (out / "report/index.html").exists()
    write_reports(out)
    status = json.loads(get(base + "/api/status")[1])
    assert status["reports_written"] and all(m["written"] for m in status["merges"])
    assert get(base + "/report/datasets.html")[0] == 200


def test_status_from_catalog_while_running(tmp_path):
    from mxflow.catalog.db import Catalog

    out = tmp_path / "OUT"
    sweep = ImageSweep(
        "/data/x_####.cbf",
        "cbf",
        1,
        100,
        1.0,
        200.0,
        (1000.0, 1000.0),
        (0.172, 0.172),
        (2463, 2527),
        0.0,
        0.1,
    )
    with Catalog(out) as cat:
        for i in range(3):
            cat.add_dataset(
                f"proc/pin{i}/d{i}", Dataset(f"d{i}", sweep, sample="S", mode="single"), "sweep"
            )
        cat.record_result(
            "proc/pin0/d0",
            DatasetResult(name="d0", path="/data/x_####.cbf", status="ok", d_min=1.9, sample="S"),
        )
        cat.set_status("proc/pin1/d1", "running")
    status = collect_status(out)
    assert status["source"] == "catalog"
    assert status["counts"] == {"ok": 1, "running": 1, "pending": 1}
    rows = {r["name"]: r for r in status["datasets"]}
    assert rows["d0"]["d_min"] == 1.9 and rows["d2"]["pin"] == "pin2"


def test_empty_directory_and_loopback_rules(tmp_path):
    assert collect_status(tmp_path)["source"] == "none"
    assert (
        is_loopback("127.0.0.1")
        and is_loopback("localhost")
        and is_loopback("::1")
        and is_loopback("127.1.2.3")
    )
    assert (
        not is_loopback("0.0.0.0")
        and not is_loopback("192.168.1.5")
        and not is_loopback("example.org")
    )


def test_serve_cli_defaults_to_loopback(tmp_path):
    from mxflow.cli import build_parser

    args = build_parser("serve").parse_args(["serve", str(tmp_path)])
    assert args.host is None and args.port == 8765
    from mxflow.errors import MxflowError
    from mxflow.report import serve_cli

    with pytest.raises(MxflowError, match="not a directory"):
        serve_cli.run(build_parser("serve").parse_args(["serve", str(tmp_path / "missing")]))


def test_module_paths(tmp_path):
    # the written files are readable by others (reports are shared)
    out = write_sample_output(tmp_path / "OUT", n_multi=2, seed=1, with_refl=False)
    from mxflow.report import write_reports

    for p in write_reports(out):
        assert Path(p).stat().st_mode & 0o044 == 0o044


def test_merged_rows_show_live_and_final_merges(tmp_path):
    from mxflow.merge.live import live_dir
    from mxflow.model import LiveDataset, LiveMerge, MergingStats, ShellStats, to_dict
    from mxflow.report.dashboard import merged_rows
    from mxflow.util.files import write_json

    out = tmp_path
    assert merged_rows(out) == []
    shell = ShellStats(40.0, 2.1, cc_half=0.98, completeness=0.9, multiplicity=4.0)
    live = LiveMerge(
        "lys",
        space_group="P 43 21 2",
        datasets=[LiveDataset("a", "a"), LiveDataset("b", "b", status="left out", reason="cell")],
        d_min=2.1,
        stats=MergingStats.one_shell(shell),
        merged_mtz="merge_live/lys/merged.mtz",
        updated=1.0,
    )
    write_json(live_dir(out, "lys") / "live.json", to_dict(live))
    final = out / "merge" / "lys" / "final"
    final.mkdir(parents=True)
    write_json(
        final / "final.json",
        {"sample": "lys", "datasets": ["a", "c"], "space_group": "P 43 21 2", "d_min": 1.95,
         "cc_half": 0.995, "completeness": 0.97},
    )  # fmt: skip
    rows = merged_rows(out)
    assert [r["kind"] for r in rows] == ["live", "final"]
    assert rows[0]["datasets"] == 1 and rows[0]["left_out"] == 1
    assert rows[0]["cc_half"] == 0.98 and rows[0]["href"] == "/merge_live/lys/merged.mtz"
    assert rows[1]["datasets"] == 2 and rows[1]["d_min"] == 1.95
    assert rows[1]["href"] == "/merge/lys/final/merged.mtz"
    assert collect_status(out)["merged"] == rows
