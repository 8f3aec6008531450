"""A real browser opens every report from disk and the dashboard from loopback, with no network.

Headless Debian chromium driven by Playwright (installed by
mxflow.report.browser_setup when missing).  Checks: no console or page
errors, no request leaves file:// or the loopback server, hovering a
dendrogram node shows its statistics and clicking it selects the cluster
and shows its ``mxflow merge`` command, the dashboard refreshes when a
dataset finishes.  Saves screenshots (copied to bench/out/screenshots/) and
the load times of a 200-dataset collection (bench/out/report_load_times.json).
"""

from __future__ import annotations

import json
import re
import shutil
import threading
import time
from pathlib import Path

import pytest

from mxflow.report import write_reports
from mxflow.report.browser_setup import CHROMIUM_ARGS, ensure_browser
from mxflow.report.dashboard import make_server
from report_fixtures import write_sample_output

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
BENCH_OUT = REPO / "bench" / "out"


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    chromium, what = ensure_browser()
    if chromium is None:
        pytest.skip(f"no chromium available ({what})")
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason=f"playwright not installed ({what})"
    )
    blocked: list[str] = []
    with sync_api.sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=chromium,
            headless=True,
            args=[*CHROMIUM_ARGS, "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"],
            viewport={"width": 1400, "height": 900},
        )

        def guard(route):
            url = route.request.url
            if url.startswith(("file://", "data:", "http://127.0.0.1:")):
                route.continue_()
            else:
                blocked.append(url)
                route.abort()

        context.route("**/*", guard)
        yield context, blocked
        context.close()


class Watched:
    """A page whose console errors and uncaught exceptions are recorded."""

    def __init__(self, context):
        self.page = context.new_page()
        self.errors: list[str] = []
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))

    def open(self, url: str) -> float:
        """Navigate and return the load time in seconds (navigation start → load event end)."""
        self.page.goto("about:blank")  # a new document even when only the #fragment changes
        self.page.goto(url, wait_until="load")
        ms = self.page.evaluate("() => performance.getEntriesByType('navigation')[0].loadEventEnd")
        return ms / 1000.0

    def ready(self) -> float:
        """Seconds from navigation start until every chart in the viewport is drawn (or shown
        empty with its reason); they are drawn lazily, after the load event."""
        ms = self.page.evaluate(
            """async () => {
                // sections first: measuring a figure inside a section skipped by
                // content-visibility would force its layout
                const inView = f => [f.closest("section") || f, f].every(e => {
                    const r = e.getBoundingClientRect();
                    return r.bottom > 0 && r.top < innerHeight && r.width > 0; });
                const waiting = () => [...document.querySelectorAll("figure.chart")].filter(
                    f => inView(f) && !f.dataset.drawn && !f.classList.contains("empty"));
                const t0 = performance.now();
                while (waiting().length && performance.now() - t0 < 20000)
                    await new Promise(r => setTimeout(r, 5));
                return performance.now();
            }"""
        )
        return ms / 1000.0


def shots_dir(tmp_path: Path) -> Path:
    d = tmp_path / "screenshots"
    d.mkdir(exist_ok=True)
    return d


def publish(shots: Path) -> None:
    """Copy the screenshots (and the printed PDF) to bench/out/screenshots (not committed)."""
    target = BENCH_OUT / "screenshots"
    target.mkdir(parents=True, exist_ok=True)
    for png in [*shots.glob("*.png"), *shots.glob("*.pdf")]:
        shutil.copy2(png, target / png.name)


def hover_node(page, key: str, kind: str, nth: int = 0) -> tuple[int, float, float, str]:
    """Move the mouse onto the nth node of a kind ("merged", "node", "leaf") of a plotly
    dendrogram and wait for that node's hover label; returns (node id, x, y, label text).

    The kinds and ids come from the plot's own data, the position from the drawn marker
    (plotly draws a trace's points in data order)."""
    fig = f"figure[data-dendro='{key}']"
    found = page.evaluate(
        """([fig, kind, nth]) => {
            const t = document.querySelector(fig + " div.plot").data.find(t => t.uid === "nodes");
            const i = t.customdata.map((c, i) => [c, i]).filter(([c]) => c[1] === kind)[nth][1];
            const title = t.text[i].split("<br>")[0].replace(/<[^>]*>/g, "").trim();
            return [t.customdata[i][0], i, title];
        }""",
        [fig, kind, nth],
    )
    node_id, i, title = found
    point = page.locator(f"{fig} g.tracenodes path.point").nth(i)
    point.scroll_into_view_if_needed()
    box = point.bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    label = f"{fig} .hoverlayer .hovertext"
    page.wait_for_function(
        "([sel, title]) => { const l = document.querySelector(sel);"
        " return l && l.textContent.startsWith(title); }",
        arg=[label, title],
        timeout=5000,
    )
    return int(node_id), x, y, page.locator(label).text_content()


def rename_datasets(out: Path, sample: str, prefix: str) -> None:
    """Give every dataset of ``sample`` a name as ``mxflow run`` makes them
    (``<pin>/data00/<dataset>``): in summary.json and in every merge file that names it."""
    for js in out.rglob("*.json"):
        text = js.read_text()
        new = text.replace(f'"{sample}_', f'"{prefix}{sample}_')
        if new != text:
            js.write_text(new)


def clipped_ticks(page, fig: str) -> list[str]:
    """Tick labels of the plotly chart in ``fig`` drawn (partly) outside its SVG."""
    return page.evaluate(
        """(fig) => { const svg = document.querySelector(fig + " svg.main-svg").getBoundingClientRect();
            return [...document.querySelectorAll(fig + " g.xtick text, " + fig + " g.ytick text")]
                .filter(t => { const r = t.getBoundingClientRect();
                    return r.left < svg.left - 1 || r.right > svg.right + 1 || r.bottom > svg.bottom + 1; })
                .map(t => t.textContent); }""",
        fig,
    )


def tick_texts(page, fig: str, axis: str = "x") -> list[str]:
    return page.evaluate(
        "([fig, a]) => [...document.querySelectorAll(fig + ' g.' + a + 'tick text')]"
        ".map(t => t.textContent)",
        [fig, axis],
    )


def mtz_links_in_view(page) -> list[tuple[str, bool]]:
    """(cluster, whether its merged-MTZ link lies within the window and its table's
    scroll box, horizontally) for each row of the merged-cluster table."""
    return [
        tuple(x)
        for x in page.evaluate(
            """() => [...document.querySelectorAll('#cluster-table tbody tr')].map(tr => {
                const a = [...tr.querySelectorAll('a')].find(a => a.textContent.trim() === 'merged');
                if (!a) return [tr.dataset.cluster, false];
                const r = a.getBoundingClientRect(), box = tr.closest('.scroll').getBoundingClientRect();
                return [tr.dataset.cluster, r.left >= Math.max(0, box.left) &&
                    r.right <= Math.min(document.documentElement.clientWidth, box.right)]; })"""
        )
    ]


def hover_heat_cell(page, i: int, j: int, n: int) -> str:
    """Hover the heat map's cell (row i, column j) of an n × n matrix; its hover label text."""
    box = page.locator("#cc-heat .nsewdrag").first.bounding_box()
    page.mouse.move(
        box["x"] + (j + 0.5) * box["width"] / n, box["y"] + (i + 0.5) * box["height"] / n
    )
    label = "#cc-heat .hoverlayer .hovertext"
    page.wait_for_selector(label, timeout=5000)
    return page.locator(label).text_content()


def test_reports_from_disk(browser, tmp_path):
    context, blocked = browser
    out = write_sample_output(tmp_path / "OUT", n_multi=6, seed=7)
    write_reports(out)
    shots = shots_dir(tmp_path)
    w = Watched(context)
    page = w.page

    w.open((out / "report/index.html").as_uri())
    assert page.locator("#pin-table tbody tr").count() == 12
    page.screenshot(path=str(shots / "collection.png"))

    w.open((out / "report/datasets.html").as_uri())
    page.screenshot(path=str(shots / "datasets.png"))
    # charts are drawn only near the viewport: none of the sections below the table yet
    assert page.locator("figure[data-drawn]").count() < page.locator("figure[data-chart]").count()
    page.locator("#ds-Lys_helical_w1-300").scroll_into_view_if_needed()
    page.wait_for_function(
        "document.querySelectorAll('#ds-Lys_helical_w1-300 figure[data-drawn] .js-plotly-plot')"
        ".length >= 3"
    )
    page.wait_for_timeout(300)
    page.screenshot(path=str(shots / "dataset_detail.png"))
    # the plotted numbers are the page's (from the JSON summaries)
    charts = json.loads(page.locator("#mx-data").text_content())["ds-Lys_helical_w1-300"]
    plotted = page.evaluate(
        """() => Object.fromEntries([...document.querySelectorAll(
            '#ds-Lys_helical_w1-300 figure[data-chart]')].map(f => [f.dataset.chart,
            f.querySelector('div.plot').data.map(t => [t.x, t.y, t.customdata || null])]))"""
    )
    assert plotted["spots"] == [
        [[p[0] for p in charts["spots"]], [p[1] for p in charts["spots"]], None]
    ]
    (_, cc_y, cc_d), (s2, isig_y, _) = plotted["cc_isig"]
    assert cc_y == charts["cc_half"] and isig_y == charts["i_over_sigma"] and cc_d == charts["d"]
    assert s2 == pytest.approx([1 / d**2 for d in charts["d"]])  # x axis linear in 1/d²
    assert [t[1] for t in plotted["cmpl_mult"]] == [charts["completeness"], charts["multiplicity"]]
    page.fill("input.filter", "failed")
    assert page.locator("#ds-table tbody tr:visible").count() == 4

    w.open((out / "merge_blend_2.2S_Lys/report.html").as_uri())
    merged = json.loads((out / "merge_blend_2.2S_Lys/merge_summary.json").read_text())["clusters"]
    cid, x, y, tip = hover_node(page, "blend", "merged")
    assert f"Node {cid}" in tip and "datasets" in tip and "LCV" in tip, tip
    page.screenshot(path=str(shots / "merge_hover.png"))
    page.mouse.click(x, y)
    assert page.locator("#selection").is_visible()
    title = page.locator("#sel-title").inner_text()
    cluster = next(c for c in merged if c["id"] == cid)
    assert f"Cluster {cid} (merged)" in title
    assert (
        page.locator("#sel-cmd").inner_text()
        == next(
            c
            for c in json.loads(page.locator("#mx-data").text_content())["clusters"]
            if c["id"] == cid
        )["command"]
    )
    assert page.locator("#input-table tbody tr.member").count() == len(cluster["members"])
    page.locator("#selection").scroll_into_view_if_needed()
    page.screenshot(path=str(shots / "merge_selected.png"))
    # the selected cluster's members are outlined in the dendrogram
    outlined = page.evaluate(
        """() => { const t = document.querySelector("figure[data-dendro='blend'] div.plot")
            .data.find(t => t.uid === "nodes");
            return t.customdata.filter((c, i) => c[1] === "leaf" && t.marker.line.width[i] > 0).length; }"""
    )
    assert outlined == len(cluster["members"])
    page.locator("#plots").scroll_into_view_if_needed()
    page.wait_for_function(
        "document.querySelectorAll('#plots figure[data-drawn] .js-plotly-plot').length >= 6"
    )
    page.wait_for_timeout(300)
    page.screenshot(path=str(shots / "merge_plots.png"))
    # the per-resolution plots: one line per merged cluster, the selected one thick
    widths = page.evaluate(
        """() => document.querySelector("figure[data-res='cc_half'] div.plot").data
            .map(t => [t.name, t.line.width])"""
    )
    assert sorted(widths) == sorted(
        [f"cluster {c['id']}", 3.5 if c["id"] == cid else 1.5] for c in merged if not c.get("error")
    )
    # an unmerged node: its own statistics and a command naming its members
    nid, x, y, tip = hover_node(page, "blend", "node")
    assert f"Node {nid}" in tip and "datasets" in tip
    page.mouse.click(x, y)
    assert f"Node {nid} (not merged)" in page.locator("#sel-title").inner_text()
    assert page.locator("#sel-cmd").inner_text().startswith("mxflow merge ")
    # a leaf: its cell and resolution
    _, _, _, tip = hover_node(page, "blend", "leaf", nth=3)
    assert "cell " in tip and "Å" in tip, tip

    w.open((out / "merge_cc_2.2S_Lys/report.html").as_uri())
    cid, _, _, tip = hover_node(page, "cc", "merged")
    assert f"Node {cid}" in tip and "CC mean" in tip, tip
    page.locator("#cc-heat").scroll_into_view_if_needed()
    page.wait_for_selector("#cc-heat .js-plotly-plot")
    heat = page.evaluate("() => document.querySelector('#cc-heat div.plot').data[0]")
    n_cc = len(json.loads(page.locator("#mx-data").text_content())["cc_table"]["names"])
    assert heat["type"] == "heatmap" and [len(r) for r in heat["z"]] == [n_cc] * n_cc
    page.wait_for_timeout(300)
    page.screenshot(path=str(shots / "merge_cc.png"))

    # printing: every chart is drawn (also those never scrolled to), the print stylesheet hides
    # the navigation, the filter boxes and the plotly mode bars
    page.evaluate("() => window.dispatchEvent(new Event('beforeprint'))")
    assert page.locator("figure[data-res]:not([data-drawn])").count() == 0
    page.emulate_media(media="print")
    assert not page.locator("header.top nav").is_visible()
    assert not page.locator(".modebar-container").first.is_visible()
    assert page.locator("#clusters table").first.is_visible()
    page.pdf(path=str(shots / "merge_cc.pdf"))
    page.emulate_media(media="screen")

    assert w.errors == [], w.errors
    assert blocked == [], blocked
    publish(shots)


def test_merge_page_names_scales_and_fit(browser, tmp_path):
    """Datasets named as ``mxflow run`` names them (``CPS0101-01/data00/...``, one prefix):
    the dendrogram, the CC heat map and the per-dataset charts label them with their short
    distinct names, drawn inside the chart; the full name is in the hover label.  The heat
    map's colour scale is fixed (CC 0 to 1, stated); the dataset axes have whole-number ticks
    only; at 1400 × 900 every cluster's merged-MTZ link is in view."""
    context, blocked = browser
    out = write_sample_output(tmp_path / "OUT", n_multi=10, seed=7, with_refl=False)
    rename_datasets(out, "Lys", "CPS0101-01/data00/")
    write_reports(out)
    w = Watched(context)
    page = w.page
    page.set_viewport_size({"width": 1400, "height": 900})
    w.open((out / "merge_cc_2.2S_Lys/report.html").as_uri())
    data = json.loads(page.locator("#mx-data").text_content())
    labels = data["labels"]
    leaves = data["dendrograms"]["cc"]["leaves"]
    assert all(n.startswith("CPS0101-01/data00/Lys_") for n in leaves)
    assert len(set(labels.values())) == len(labels) >= len(leaves)
    # the dendrogram: every leaf named by its short label, none cut off
    dendro = "figure[data-dendro='cc']"
    shown = tick_texts(page, dendro)
    assert sorted(shown) == sorted(labels[n] for n in leaves)
    assert all(not x.startswith("CPS0101-01") for x in shown), shown
    assert clipped_ticks(page, dendro) == []
    _, _, _, tip = hover_node(page, "cc", "leaf", nth=2)
    assert tip.startswith("CPS0101-01/data00/Lys_"), tip  # the full name on hover
    # the CC heat map: a fixed colour scale, stated; both axes name the datasets
    page.locator("#cc-heat").scroll_into_view_if_needed()
    page.wait_for_selector("#cc-heat .js-plotly-plot")
    heat = page.evaluate(
        """() => { const d = document.querySelector('#cc-heat div.plot');
            const t = d.data[0]; return {zmin: t.zmin, zmax: t.zmax, zauto: t.zauto,
            bar: d._fullData[0].colorbar.title.text, x: d._fullLayout.xaxis.type}; }"""
    )
    assert (heat["zmin"], heat["zmax"], heat["zauto"]) == (0, 1, False)
    assert "0 – 1" in heat["bar"] and heat["x"] == "category"
    caption = page.locator("#cc-heat figcaption").inner_text()
    assert "fixed from CC 0 (blue) to 1 (red)" in caption, caption
    names = data["cc_table"]["names"]
    for ax in ("x", "y"):
        ticks = tick_texts(page, "#cc-heat", ax)
        assert ticks and set(ticks) <= {labels[n] for n in names}, ticks
    assert clipped_ticks(page, "#cc-heat") == []
    order = page.evaluate("() => document.querySelector('#cc-heat div.plot').data[0].text")
    tip = hover_heat_cell(page, 1, 3, len(names))
    assert tip.startswith(order[1][3].replace("&amp;", "&")), (tip, order[1][3])
    assert all(x.startswith("CPS0101-01/data00/") for x in tip.split(": CC")[0].split(" × "))
    # "Against dataset": 36 datasets, whole-number ticks only
    page.locator("#plots").scroll_into_view_if_needed()
    page.wait_for_function(
        "document.querySelectorAll('#plots figure[data-perds][data-drawn] .js-plotly-plot')"
        ".length == 2"
    )
    for key in ("d_min", "cc_half"):
        ticks = tick_texts(page, f"figure[data-perds='{key}']")
        assert ticks and all(re.fullmatch(r"\d+", t) for t in ticks), ticks
    # the cluster table fits the window: every merged MTZ link in view
    page.locator("#clusters").scroll_into_view_if_needed()
    links = mtz_links_in_view(page)
    assert links and all(ok for _, ok in links), links
    page.screenshot(path=str(shots_dir(tmp_path) / "merge_names.png"), full_page=True)
    publish(shots_dir(tmp_path))
    assert w.errors == [], w.errors
    assert blocked == [], blocked


def test_hitmap_page_styled_with_navigation(browser, tmp_path):
    """A hit map page of an output directory has the reports' stylesheet and navigation:
    its links lead back to the collection report, from disk, and hovering a cell shows
    its frame."""
    context, blocked = browser
    out = write_sample_output(tmp_path / "OUT", n_multi=2, seed=8, with_refl=False)
    write_reports(out)
    w = Watched(context)
    page = w.page
    page.set_viewport_size({"width": 1400, "height": 900})
    w.open((out / "report/index.html").as_uri())
    page.click("#hitmaps a:text('interactive map')")
    page.wait_for_load_state("load")
    assert page.url.endswith("/hitmap.html")
    # the reports' stylesheet (a file beside the other pages', not a copy in the page)
    sheets = page.evaluate("() => [...document.styleSheets].map(s => s.href).filter(Boolean)")
    assert [s.rsplit("/", 3)[-3:] for s in sheets] == [["report", "static", "mxflow.css"]]
    assert (
        page.evaluate("() => getComputedStyle(document.querySelector('header.top')).position")
        == "sticky"
    )
    frames = json.loads(page.locator("#mx-data").text_content())["frames"]
    page.locator("#hm-grid .hm-cell").nth(16).hover()
    assert (
        f"frame {frames[16]['file']} #{frames[16]['index']}"
        in page.locator("#hm-info").inner_text()
    )
    page.screenshot(path=str(shots_dir(tmp_path) / "hitmap.png"))
    page.click("#hitmap-back a")
    page.wait_for_load_state("load")
    assert page.url.endswith("/report/index.html#hitmaps")
    assert page.locator("#pin-table").is_visible()
    page.go_back()
    page.click("header.top nav a:text('Datasets')")
    page.wait_for_load_state("load")
    assert page.url.endswith("/report/datasets.html")
    publish(shots_dir(tmp_path))
    assert w.errors == [], w.errors
    assert blocked == [], blocked


@pytest.mark.dials
def test_real_merge_page(browser, real_merge, tmp_path):
    """The merge page of a merge written by the pipeline: the dendrogram and the CC plots are
    drawn from its files, hovering and clicking the merged node selects its cluster."""
    import merge_fixtures
    from mxflow.merge.outputs import read_summary

    context, blocked = browser
    out = merge_fixtures.write_collection(real_merge, tmp_path / "OUT")
    write_reports(out)
    mdir = out / merge_fixtures.METHOD_DIR
    ms = read_summary(mdir / "merge_summary.json")
    w = Watched(context)
    page = w.page
    w.open((mdir / "report.html").as_uri())
    cid, x, y, tip = hover_node(page, "cc", "merged")
    tip = tip.replace("\u200b", "")  # plotly wraps <sub> in zero-width spaces
    cluster = next(c for c in ms.clusters if c.id == cid)
    ns = cluster.node_stats
    assert f"Node {cid}" in tip and f"{len(cluster.node_members)} datasets" in tip, tip
    assert f"CC mean {ns.cc_mean:.3f}" in tip and f"LCV {ns.lcv:.2f} %" in tip, tip
    assert f"completeness {ns.completeness:.1f} %" in tip, tip
    assert f"merged: dmin {cluster.d_min:.2f} Å · CC½ {cluster.cc_half:.3f}" in tip, tip
    page.mouse.click(x, y)
    assert f"Cluster {cid} (merged)" in page.locator("#sel-title").inner_text()
    assert page.locator("#input-table tbody tr.member").count() == len(cluster.members)
    # a node that was not merged says why
    nid, x, y, tip = hover_node(page, "cc", "node")
    why = next(n.why for n in ms.not_merged if n.id == nid)
    assert f"not merged: {why}" in tip, tip
    page.wait_for_timeout(400)  # not within plotly's double-click time of the first click
    page.mouse.click(x, y)
    assert f"Node {nid} (not merged)" in page.locator("#sel-title").inner_text()
    assert f"not merged: {why}" in page.locator("#sel-stats").inner_text()
    # the pairwise CC heat map and the per-resolution lines of the cluster
    page.locator("#cc-heat").scroll_into_view_if_needed()
    page.wait_for_selector("#cc-heat .js-plotly-plot")
    heat = page.evaluate("() => document.querySelector('#cc-heat div.plot').data[0]")
    assert heat["type"] == "heatmap" and [len(r) for r in heat["z"]] == [3, 3, 3]
    # its colours on the fixed scale CC 0 to 1 (these CCs are all above 0.9), its axes named
    assert (heat["zmin"], heat["zmax"]) == (0, 1)
    assert min(v for row in heat["z"] for v in row) > 0.9
    data = json.loads(page.locator("#mx-data").text_content())
    assert sorted(tick_texts(page, "#cc-heat", "y")) == sorted(
        data["labels"][n] for n in data["cc_table"]["names"]
    )
    page.locator("#plots").scroll_into_view_if_needed()
    page.wait_for_function(
        "document.querySelectorAll('#plots figure[data-drawn] .js-plotly-plot').length >= 6"
    )
    # "Against dataset": few datasets, so each tick is a dataset's name (no fractional ticks)
    for key in ("d_min", "cc_half"):
        assert tick_texts(page, f"figure[data-perds='{key}']") == [
            data["labels"][d["name"]] for d in data["inputs"]
        ]
    cc = page.evaluate(
        """() => document.querySelector("figure[data-res='cc_half'] div.plot").data
            .map(t => [t.name, t.y])"""
    )
    assert cc == [[f"cluster {cid}", pytest.approx([s.cc_half for s in cluster.stats.shells])]]
    # a row of the cluster table selects its node again
    page.click(f"#cluster-table tbody tr[data-cluster='{cid}']")
    assert f"Cluster {cid} (merged)" in page.locator("#sel-title").inner_text()
    # the table fits the 1400 px window: the merged MTZ link of each cluster is in view
    assert page.viewport_size == {"width": 1400, "height": 900}
    links = mtz_links_in_view(page)
    assert links and all(ok for _, ok in links), links
    assert page.locator("#sel-cmd").inner_text().startswith("mxflow merge ")
    page.screenshot(path=str(shots_dir(tmp_path) / "merge_real.png"), full_page=True)
    publish(shots_dir(tmp_path))
    assert w.errors == [], w.errors
    assert blocked == [], blocked


@pytest.mark.dials
def test_real_merge_against_image(browser, real_merge, tmp_path):
    """The "Against image" panels of a real merge's clusters: every panel the page lists is
    drawn, each with data (one line per dataset, the ΔCC½ bars, the completeness curve), and
    none is left empty."""
    import merge_fixtures
    from test_report_real_merge import add_diagnostics

    context, blocked = browser
    out = merge_fixtures.write_collection(real_merge, tmp_path / "OUT")
    ms = add_diagnostics(real_merge, out)
    write_reports(out)
    mdir = out / merge_fixtures.METHOD_DIR
    w = Watched(context)
    page = w.page
    w.open((mdir / "report.html").as_uri())
    figs = page.locator("#against-image figure.chart")
    n_figs = figs.count()
    merged = [c for c in ms.clusters if c.ok]
    assert n_figs == 7 * len(merged)  # every panel has data in this merge
    page.locator("#against-image").scroll_into_view_if_needed()
    for k in range(n_figs):  # drawn lazily: bring each into view
        figs.nth(k).scroll_into_view_if_needed()
    page.wait_for_function(
        "[...document.querySelectorAll('#against-image figure.chart')].every("
        "f => f.dataset.drawn || f.classList.contains('empty'))",
        timeout=20000,
    )
    assert page.locator("#against-image figure.chart.empty").count() == 0
    drawn = page.evaluate(
        """() => [...document.querySelectorAll('#against-image figure.chart')].map(f => [
            f.dataset.cluster, f.dataset.img,
            f.querySelector('div.plot').data.map(t => [t.name || '', t.type,
                t.y.filter(v => typeof v === 'number' && isFinite(v)).length, t.y])])"""
    )
    for cid, key, traces in drawn:
        c = next(x for x in merged if str(x.id) == cid)
        d = c.diagnostics
        assert traces and all(n > 0 for _, _, n, _ in traces), (cid, key)
        if key == "delta_cc_half":
            ((_, kind, _, y),) = traces
            assert kind == "bar"
            assert y == pytest.approx([x.delta_cc_half for x in d.datasets], rel=1e-3)
        elif key == "completeness":
            ((_, _, n, y),) = traces
            assert n == len(c.members) and y[-1] == pytest.approx(100 * c.completeness, abs=0.01)
        else:  # one line per dataset of the cluster
            assert [t[0] for t in traces] == c.members, (key, traces)
            for (_, _, n, _), x in zip(traces, d.datasets, strict=True):
                assert n == len(x.images.first)
    # a DIALS report link of the cluster opens the file (relative, offline)
    href = page.locator("#against-image .dials-reports a").first.get_attribute("href")
    assert (mdir / href).is_file()
    page.locator("#against-image").screenshot(path=str(shots_dir(tmp_path) / "merge_images.png"))
    publish(shots_dir(tmp_path))
    assert w.errors == [], w.errors
    assert blocked == [], blocked


def write_live_merge(out: Path, sample: str, n_used: int) -> None:
    """A live.json as mxflow watch writes it (only what the dashboard reads)."""
    from mxflow.merge.live import live_dir
    from mxflow.model import LiveDataset, LiveMerge, MergingStats, ShellStats, to_dict
    from mxflow.util.files import write_json

    shell = ShellStats(40.0, 1.9, cc_half=0.99, completeness=0.8, multiplicity=3.0)
    live = LiveMerge(
        sample,
        space_group="P 43 21 2",
        datasets=[LiveDataset(f"proc/{i}", f"d{i}") for i in range(n_used)],
        d_min=1.9,
        stats=MergingStats.one_shell(shell),
        updated=time.time(),
    )
    write_json(live_dir(out, sample) / "live.json", to_dict(live))


def test_dashboard_refreshes_over_loopback(browser, tmp_path):
    context, blocked = browser
    out = write_sample_output(tmp_path / "OUT", n_multi=2, seed=8, with_refl=False)
    write_reports(out)  # as mxflow run does (serve itself writes nothing)
    server = make_server(out, port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        w = Watched(context)
        page = w.page
        base = f"http://127.0.0.1:{server.server_address[1]}"
        w.open(base + "/")
        summary = json.loads((out / "summary.json").read_text())
        n = len(summary["datasets"])
        assert page.locator("b[data-count='datasets']").inner_text() == str(n)
        # a new dataset finishes: the page shows it without a reload
        extra = dict(summary["datasets"][0], name="Lys_late_arrival", status="running")
        summary["datasets"].append(extra)
        (out / "summary.json").write_text(json.dumps(summary))
        page.wait_for_function(
            f"document.querySelector(\"b[data-count='datasets']\").textContent === '{n + 1}'",
            timeout=15000,
        )
        assert page.locator("b[data-count='running']").inner_text() == "1"
        # mxflow watch updates a sample's live merge: the merged-data table follows it
        assert page.locator("#merged-section").is_hidden()
        for n_used in (3, 4):
            write_live_merge(out, "Lys", n_used)
            page.wait_for_function(
                "(() => { const r = document.querySelector('#merged-table tbody tr');"
                f" return r && r.cells[2].textContent === '{n_used}'; }})()",
                timeout=15000,
            )
        row = page.locator("#merged-table tbody tr").first
        assert "live" in row.inner_text() and "0.990" in row.inner_text()
        page.wait_for_selector("#links a[href='/report/index.html']", timeout=15000)
        page.screenshot(path=str(shots_dir(tmp_path) / "dashboard.png"))
        page.click("#links a[href='/report/index.html']")
        page.wait_for_load_state("load")
        assert page.locator("#pin-table").is_visible()
        assert w.errors == [], w.errors
        assert blocked == [], blocked
        publish(shots_dir(tmp_path))
    finally:
        server.shutdown()
        server.server_close()


def test_load_time_200_datasets(browser, tmp_path):
    context, blocked = browser
    out = write_sample_output(
        tmp_path / "OUT", n_multi=32, seed=9
    )  # 2 × (6 + 3 × 32) = 204 datasets
    t0 = time.perf_counter()
    write_reports(out)
    write_s = time.perf_counter() - t0
    n = len(json.loads((out / "summary.json").read_text())["datasets"])
    assert n >= 200
    w = Watched(context)
    times, ready = {}, {}
    pages = {
        "collection": out / "report/index.html",
        "datasets": out / "report/datasets.html",
        "merge_blend_Lys": out / "merge_blend_2.2S_Lys/report.html",
        "merge_cc_Lys": out / "merge_cc_2.2S_Lys/report.html",
    }
    # the dataset page opened at a dataset half-way down (a link from the collection page)
    summary = json.loads((out / "summary.json").read_text())["datasets"]
    middle = [d["name"] for d in summary if d["status"] == "ok"]
    anchor = f"ds-{middle[len(middle) // 2]}"
    urls = {k: p.as_uri() for k, p in pages.items()}
    urls["datasets_at_dataset"] = urls["datasets"] + "#" + anchor
    for key, url in urls.items():
        w.open(url)  # warm the file cache once, then measure
        times[key] = round(w.open(url), 3)
        ready[key] = round(w.ready(), 3)
        if key == "datasets_at_dataset":  # charts are built lazily: few of the ~600 at load
            drawn = w.page.evaluate(
                "() => [document.querySelectorAll('figure[data-drawn]').length,"
                " document.querySelectorAll('figure[data-chart]').length]"
            )
            shown = w.page.locator(f"#{anchor} figure[data-drawn] .js-plotly-plot").count()
    w.page.screenshot(path=str(shots_dir(tmp_path) / "merge_cc_200.png"))
    publish(shots_dir(tmp_path))
    record = {
        "n_datasets": n,
        "write_reports_s": round(write_s, 2),
        "load_s": times,
        "charts_in_view_drawn_s": ready,
        "datasets_charts_drawn_at_load": drawn,
        "sizes_kb": {k: round(p.stat().st_size / 1024) for k, p in pages.items()},
    }
    BENCH_OUT.mkdir(parents=True, exist_ok=True)
    (BENCH_OUT / "report_load_times.json").write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps(record))
    assert w.errors == [] and blocked == []
    assert shown == len(w.page.locator(f"#{anchor} figure[data-chart]").all()) > 0
    assert drawn[1] >= 3 * 150 and drawn[0] <= 15, drawn
    # the target is < 2 s on a desktop; a shared 2-core CI runner gets slack
    assert max(times.values()) < 6.0, times
    assert max(ready.values()) < 6.0, ready
