"""Hostile names in the pages' embedded JSON (#12 item 12).

Every page that embeds data does so in ``<script type="application/json">``
through :func:`mxflow.util.html.script_json`.  A file or dataset name holding
``<!--<script>``, ``</script>``, ``&`` or U+2028 must come back from the page as
it went in, and must not appear raw inside the script element, where the
HTML tokenizer would end the element early (``</script``) or enter its
"double escaped" state (``<!--<script``) and swallow the rest of the page.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from mxflow.hitmap.render import write_html
from mxflow.report import write_reports
from mxflow.report.dashboard import DashboardState
from mxflow.util.html import script_json
from report_fixtures import write_sample_output

HOSTILE = "x<!--<script>alert(1)</script>&amp;\u2028\u2029-->end"
RAW_IN_SCRIPT = ("<!--", "<script", "</script", "<", ">", "&", "\u2028", "\u2029")
MX_DATA = re.compile(r'<script type="application/json" id="mx-data">(.*?)</script>', re.S)


def embedded(html: str) -> tuple[str, object]:
    """The text of the page's ``mx-data`` element (up to the first ``</script``, as the HTML
    tokenizer ends it) and that text parsed as JSON."""
    m = MX_DATA.search(html)
    assert m, "no mx-data script element"
    return m.group(1), json.loads(m.group(1))


def assert_clean(text: str) -> None:
    for bad in RAW_IN_SCRIPT:
        assert bad not in text, f"raw {bad!r} inside the script data"


def hitmap_doc(name: str) -> dict:
    frames = [
        {"file": f"{name}_{i}.cbf", "index": i, "row": i // 3, "col": i % 3, "n_spots": 10 * i}
        for i in range(6)
    ]
    frames[4] = {**frames[4], "n_spots": None, "error": f"unreadable {name}"}
    return {"grid": {"rows": 2, "cols": 3, "source": "header"}, "frames": frames, "errors": []}


@pytest.mark.parametrize(
    "value",
    [HOSTILE, {"k" + HOSTILE: [HOSTILE, 1.5, None]}, "\u2028", "</SCRIPT >", "<!-- -->"],
)
def test_script_json_round_trips_and_escapes(value):
    text = script_json(value)
    assert json.loads(text) == value
    assert_clean(text)


def test_hitmap_page_with_hostile_file_names(tmp_path):
    doc = hitmap_doc(HOSTILE)
    page = write_html(doc, tmp_path / "hitmap.html", scan=HOSTILE)
    html = page.read_text()
    text, data = embedded(html)
    assert_clean(text)
    assert [f["file"] for f in data["frames"]] == [f["file"] for f in doc["frames"]]
    assert data["frames"][4]["error"] == f"unreadable {HOSTILE}"
    # the only script elements are the data and the page's own script (nothing injected)
    assert html.count("<script") == 2 and html.count("</script>") == 2
    assert "<!--" not in html


def hostile_output(tmp_path: Path) -> tuple[Path, str]:
    """A sample output directory with one dataset and one raster frame named ``HOSTILE``."""
    out = write_sample_output(tmp_path / "OUT", n_multi=2, seed=3, with_refl=False)
    summary = json.loads((out / "summary.json").read_text())
    summary["datasets"][0]["name"] = HOSTILE
    summary["datasets"][1]["reason"] = f"failed on {HOSTILE}"
    (out / "summary.json").write_text(json.dumps(summary))
    hm = next(out.glob("hitmap/*/hitmap.json"))
    doc = json.loads(hm.read_text())
    doc["frames"][0]["file"] = HOSTILE
    hm.write_text(json.dumps(doc))
    return out, hm.parent.name


def test_report_pages_with_hostile_names(tmp_path):
    out, _ = hostile_output(tmp_path)
    pages = write_reports(out)
    with_data = {}
    for p in pages:
        html = Path(p).read_text()
        assert "<!--<script>" not in html and "</script>&" not in html, p  # never raw
        if 'id="mx-data"' in html:
            text, data = embedded(html)
            assert_clean(text)
            with_data[Path(p).relative_to(out).as_posix()] = json.dumps(data, ensure_ascii=False)
    assert "report/datasets.html" in with_data and any(k.endswith("hitmap.html") for k in with_data)
    assert any("report.html" in k for k in with_data)  # a merge page
    # the dataset's name is in the page's table, as escaped text
    assert (
        "x&lt;!--&lt;script&gt;alert(1)&lt;/script&gt;&amp;amp;"
        in (out / "report/datasets.html").read_text()
    )
    hitmap_page = next(v for k, v in with_data.items() if k.endswith("hitmap.html"))
    assert HOSTILE in hitmap_page


def test_dashboard_page_with_hostile_names(tmp_path):
    out, _ = hostile_output(tmp_path)
    html = DashboardState(out, loopback_only=True).page()
    text, data = embedded(html)
    assert_clean(text)
    assert HOSTILE in [d["name"] for d in data["datasets"]]


@pytest.mark.slow
def test_hitmap_page_in_chromium_with_hostile_names(tmp_path):
    from mxflow.report.browser_setup import CHROMIUM_ARGS, ensure_browser

    chromium, what = ensure_browser(install=False)
    if chromium is None:
        pytest.skip(f"no chromium available ({what})")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed")
    doc = hitmap_doc(HOSTILE)
    page_path = write_html(doc, tmp_path / "hitmap.html", scan=HOSTILE)
    errors: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.on("console", lambda m: m.type == "error" and errors.append(m.text))
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("dialog", lambda d: (errors.append("dialog: " + d.message), d.dismiss()))
            page.goto(page_path.as_uri(), wait_until="load")
            assert page.locator("#hm-grid .hm-cell").count() == 6
            assert page.locator("#hitmap-summary").is_visible()
            page.locator("#hm-grid .hm-cell").nth(1).hover()
            assert f"frame {HOSTILE}_1.cbf #1" in page.locator("#hm-info").inner_text()
            page.locator("#hm-grid .hm-cell").nth(4).hover()
            assert f"error: unreadable {HOSTILE}" in page.locator("#hm-info").inner_text()
            assert page.evaluate("document.querySelectorAll('script').length") == 2
        finally:
            browser.close()
    assert errors == [], errors
