"""Reports of a synthetic collection written from mxflow's types: every page renders and shows
the numbers of the files it read.  What a merge page shows of a real merge is checked in
test_report_real_merge.py."""

from __future__ import annotations

import importlib.util
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from mxflow.errors import BadInputError
from mxflow.merge.outputs import read_dendrogram, read_summary, write_summary
from mxflow.model import DatasetResult
from mxflow.report import format_summary_table, write_reports
from mxflow.report.load import spot_counts_per_frame
from report_fixtures import write_sample_output


class Tables(HTMLParser):
    """Cell texts of every <table id=...>, and the text of <script id="mx-data">."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.data_json = ""
        self._table: str | None = None
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self._in_tbody = False
        self._in_data = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table" and a.get("id"):
            self._table = a["id"]
            self.tables[self._table] = []
        elif tag == "tbody":
            self._in_tbody = True
        elif tag == "tr" and self._table and self._in_tbody:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []
        elif tag == "script" and a.get("id") == "mx-data":
            self._in_data = True

    def handle_endtag(self, tag):
        if tag == "table":
            self._table = None
        elif tag == "tbody":
            self._in_tbody = False
        elif tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "tr" and self._row is not None and self._table:
            self.tables[self._table].append(self._row)
            self._row = None
        elif tag == "script":
            self._in_data = False

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)
        if self._in_data:
            self.data_json += data


def parse(path: Path) -> Tables:
    t = Tables()
    t.feed(path.read_text())
    return t


def f2(v: float | None, spec: str = ".2f") -> str:
    return "–" if v is None else format(v, spec)


@pytest.fixture(scope="module")
def collection(tmp_path_factory) -> tuple[Path, list[Path]]:
    out = write_sample_output(tmp_path_factory.mktemp("out") / "OUT", n_multi=4, seed=3)
    return out, write_reports(out)


def summary(out: Path) -> list[dict]:
    return json.loads((out / "summary.json").read_text())["datasets"]


def test_all_pages_written_with_one_static_bundle(collection):
    out, written = collection
    names = {p.relative_to(out).as_posix() for p in written}
    assert {"report/index.html", "report/datasets.html"} <= names
    assert {n for n in names if n.startswith("hitmap/")} == {
        f"hitmap/{pin}/hitmap.html" for pin in ("CPS101-04", "CPS102-04")
    }
    merges = sorted(p.parent.name for p in out.glob("merge_*/merge_summary.json"))
    assert merges == ["merge_blend_2.2S_Lys", "merge_cc_2.2S_Lys", "merge_cc_2.2S_Thau"]
    assert [n for n in sorted(names) if n.startswith("merge_")] == [
        f"{m}/report.html" for m in merges
    ]
    # one copy of each script per output tree (plotly.js is the installed plotly package's own
    # bundle), and every page's relative links reach them
    static = out / "report/static"
    for name in ("mxflow.js", "plotly.min.js"):
        assert [p.relative_to(out).as_posix() for p in out.rglob(name)] == [f"report/static/{name}"]
    plotly_pkg = Path(importlib.util.find_spec("plotly").origin).parent
    assert (static / "plotly.min.js").read_bytes() == (
        plotly_pkg / "package_data/plotly.min.js"
    ).read_bytes()
    for page in written:
        html = page.read_text()
        srcs = re.findall(r'(?:src|href)="([^"#]+)"', html)
        assert not [s for s in srcs if re.match(r"^[a-z]+://", s)], f"network reference in {page}"
        scripts = [(page.parent / s).resolve() for s in re.findall(r'<script src="([^"]+)"', html)]
        charts = page.name not in ("index.html", "hitmap.html")  # pages without charts
        expected = [static / "plotly.min.js"] * charts + [static / "mxflow.js"]
        assert scripts == [p.resolve() for p in expected], page
        for s in srcs:
            if s.startswith(("data:", "/data/")) or s.endswith(".mtz") or s.endswith(".log"):
                continue
            assert (page.parent / s).exists(), f"{page.name}: broken link {s}"


def test_dataset_table_matches_summary(collection):
    out, _ = collection
    ds = summary(out)
    t = parse(out / "report/datasets.html")
    rows = {r[0]: r for r in t.tables["ds-table"]}
    assert len(rows) == len(ds) == 2 * (1 + 1 + 4 + 3 * 4)
    for d in ds:
        r = rows[d["name"]]
        assert r[1] == d["sample"] and r[2] == d["mode"]
        if d["status"] == "ok":
            ov = d["stats"]["overall"]
            assert r[10] == f2(d["d_min"])
            assert r[11] == f2(100 * ov["completeness"], ".1f")
            assert r[14] == f2(ov["cc_half"], ".3f")
            assert r[15] == f2(d["stats"]["shells"][-1]["cc_half"], ".3f")
            # a space group the axial reflections cannot decide is marked, with the reason
            mark = " (?)" if d.get("space_group_note") else ""
            assert r[8] == d["space_group"] + mark
        else:
            assert "failed" in r[-1] and d["reason"] in r[-1]


def test_failed_datasets_explained_and_shell_tables(collection):
    out, _ = collection
    html = (out / "report/datasets.html").read_text()
    failed = [d for d in summary(out) if d["status"] == "failed"]
    assert len(failed) == 4
    section = html.split('id="failed"')[1].split("</section>")[0]
    for d in failed:
        assert d["name"] in section and d["reason"] in section
    # the per-shell table of one dataset: one row per shell plus overall, numbers as in the JSON
    d = next(x for x in summary(out) if x["status"] == "ok" and x["mode"] == "helical")
    block = html.split(f'id="ds-{d["name"]}"')[1].split("</section>")[0]
    t = Tables()
    t.feed(block.replace('<table class="num shells">', '<table id="shells" class="num shells">'))
    rows = t.tables["shells"]
    assert len(rows) == len(d["stats"]["shells"]) + 1
    for row, sh in zip(rows, d["stats"]["shells"], strict=False):
        assert row[1] == str(sh["n_obs"]) and row[6] == f2(sh["i_over_sigma"])
    assert rows[-1][0].startswith("overall") and rows[-1][1] == str(d["stats"]["overall"]["n_obs"])


def test_spots_per_frame_from_strong_refl(collection):
    out, _ = collection
    d = next(x for x in summary(out) if x["status"] == "ok" and x["mode"] == "multi")
    counts = spot_counts_per_frame(out / d["workdir"])
    assert counts is not None and len(counts) == 100 and counts[0][0] == 1
    from mxflow.engine.refl import count_rows

    assert sum(c for _, c in counts) == count_rows(out / d["workdir"] / "strong.refl")
    charts = json.loads(parse(out / "report/datasets.html").data_json)
    assert charts[f"ds-{d['name']}"]["spots"] == counts
    assert spot_counts_per_frame(out / "nowhere") is None


def test_collection_rows_per_pin(collection):
    out, _ = collection
    ds = summary(out)
    t = parse(out / "report/index.html")
    rows = t.tables["pin-table"]
    pins = {d["workdir"].split("/")[1] for d in ds}
    assert sorted(r[0] for r in rows) == sorted(pins)
    assert sum(int(r[6]) for r in rows) == len(ds)
    by_pin = {r[0]: r for r in rows}
    assert by_pin["CPS101-02"][7].startswith("failed")
    assert by_pin["CPS101-04"][7].startswith("partly failed")
    assert by_pin["CPS101-03"][4] == "120.0"  # four 30° wedges of one helical sweep
    assert "merge (blend)" in by_pin["CPS101-04"][10] and "merge (cc)" in by_pin["CPS101-04"][10]
    assert "12 hits" not in by_pin["CPS101-04"][11] and "hits" in by_pin["CPS101-04"][11]
    assert by_pin["CPS101-01"][11] == "–"


def test_merge_report_of_typed_merge(collection):
    """The synthetic blend merge: runs that removed a dataset, nodes not merged, the dendrogram."""
    out, _ = collection
    mdir = out / "merge_blend_2.2S_Lys"
    ms = read_summary(mdir / "merge_summary.json")
    t = parse(mdir / "report.html")
    crows = t.tables["cluster-table"]
    assert [r[0].split()[0] for r in crows] == [str(c.id) for c in ms.clusters]
    for r, c in zip(crows, ms.clusters, strict=True):
        assert r[1] == str(len(c.members)) and r[3] == f2(c.d_min) and r[8] == f2(c.cc_half, ".3f")
        assert r[2] == "".join(x for x in (c.space_group, c.space_group_note) if x)
    rej = t.tables["rejected-table"]
    assert rej and [(r[0], r[1], r[2]) for r in rej] == [
        (x.name, x.stage, x.reason) for x in ms.rejected
    ]
    # the run that removed a dataset says which and why
    c = next(c for c in ms.clusters if len(c.runs) > 1)
    runs = t.tables[f"runs-{c.id}"]
    assert [r[0] for r in runs] == ["run_01", "run_03 (final)"]
    assert runs[1][5] == f"{c.runs[1].removed[0].name}: {c.runs[1].removed[0].reason}"
    notm = t.tables["notmerged-table"]
    assert [(int(r[0]), r[2]) for r in notm] == [(n.id, n.why) for n in ms.not_merged]
    data = json.loads(t.data_json)
    dg = read_dendrogram(mdir / "dendrogram_blend.json")
    assert data["dendrograms"]["blend"]["leaves"] == dg.leaves
    assert [n["stats"]["lcv"] for n in data["dendrograms"]["blend"]["nodes"]] == [
        n.stats.lcv for n in dg.nodes
    ]
    kamo = t.tables["kamo-table"]
    assert [r[0] for r in kamo] == [f"{c.id:04d}" for c in ms.clusters]
    assert [r[6] for r in kamo] == [str(len(c.members)) for c in ms.clusters]
    assert "every dataset is accounted for" in (mdir / "report.html").read_text()


def test_empty_and_bad_output_dirs(tmp_path):
    pages = write_reports(tmp_path)  # nothing processed yet: pages still render
    assert (tmp_path / "report/index.html").is_file() and len(pages) == 2
    with pytest.raises(BadInputError, match="not a directory"):
        write_reports(tmp_path / "missing")
    (tmp_path / "summary.json").write_text("{not json")
    with pytest.raises(BadInputError, match="summary.json"):
        write_reports(tmp_path)
    (tmp_path / "summary.json").write_text('{"datasets": [{"status": "ok"}]}')
    with pytest.raises(BadInputError, match="not a dataset result"):
        write_reports(tmp_path)


def test_merge_summary_of_another_schema_is_refused(tmp_path):
    out = write_sample_output(tmp_path / "OUT", n_multi=2, seed=2, with_refl=False)
    p = out / "merge_cc_2.2S_Thau" / "merge_summary.json"
    ms = read_summary(p)
    ms.schema = 0
    write_summary(p, ms)
    with pytest.raises(BadInputError, match="schema 0"):
        write_reports(out)


def test_report_cli(tmp_path, capsys):
    from mxflow.cli import main

    out = write_sample_output(tmp_path / "OUT", n_multi=2, seed=2, with_refl=False)
    assert main(["report", str(out)]) == 0
    assert "report/index.html" in capsys.readouterr().out
    assert main(["report", str(tmp_path / "nope")]) == 1


def test_format_summary_table(tmp_path):
    out = write_sample_output(tmp_path / "OUT", n_multi=2, seed=2, with_refl=False)
    ds = summary(out)
    text = format_summary_table(ds)
    lines = text.splitlines()
    assert len(lines) == len(ds) + 3
    n_failed = sum(d["status"] == "failed" for d in ds)
    assert n_failed == 2
    assert lines[-1] == f"{len(ds)} datasets: {len(ds) - n_failed} ok, {n_failed} failed, 0 other"
    failed = next(d for d in ds if d["status"] == "failed")
    line = next(x for x in lines if x.startswith(failed["name"] + " "))
    assert "FAILED: " + failed["reason"][:40] in line
    ok = next(d for d in ds if d["status"] == "ok")
    assert f"{ok['d_min']:.2f}" in next(x for x in lines if x.startswith(ok["name"] + " "))
    objs = [DatasetResult.from_dict(d) for d in ds[:3]]
    assert format_summary_table(objs).splitlines()[2].startswith(ds[0]["name"])
    assert format_summary_table([]) == "No datasets."


def test_short_labels_tell_datasets_apart():
    from mxflow.report.pages import short_labels

    # the levels every name shares go (the dendrogram showed 'CPS0002-01/data00/helical_0…')
    assert short_labels(
        ["CPS0002-01/data00/helical_001_1-30", "CPS0002-01/data00/helical_001_31-40"]
    ) == {
        "CPS0002-01/data00/helical_001_1-30": "helical_001_1-30",
        "CPS0002-01/data00/helical_001_31-40": "helical_001_31-40",
    }
    assert list(
        short_labels(
            [
                "CPS0001-01/data00/multi_01",
                "CPS0002-01/data00/multi_01",
                "CPS0002-01/data00/multi_02",
            ]
        ).values()
    ) == ["CPS0001-01/multi_01", "CPS0002-01/multi_01", "CPS0002-01/multi_02"]
    # names of different depths: the shared leading levels go
    assert short_labels(["p/a", "p/a/b"]) == {"p/a": "a", "p/a/b": "a/b"}
    # long names lose the start they share, at a separator
    long = [f"a/very_long_common_beamline_prefix_sample_A_{i:03d}" for i in (1, 2)]
    assert list(short_labels(long).values()) == ["…001", "…002"]
    # one dataset: its last level; none: nothing
    assert short_labels(["x/y/z"]) == {"x/y/z": "z"} and short_labels([]) == {}
    # whatever the names, the labels are distinct and no longer than the names
    rng = __import__("random").Random(4)
    for _ in range(200):
        names = {
            "/".join(rng.choice(["CPS01-01", "data00", "helical_001", "x", "multi_0_1-30"])
                     for _ in range(rng.randint(1, 4)))
            for _ in range(rng.randint(2, 8))
        }  # fmt: skip
        labels = short_labels(sorted(names))
        assert set(labels) == names and len(set(labels.values())) == len(names), labels
        assert all(len(labels[n]) <= max(len(n), 1) for n in names), labels


def test_merge_page_gives_the_charts_short_names(collection):
    out, _ = collection
    data = json.loads(parse(out / "merge_cc_2.2S_Lys" / "report.html").data_json)
    named = {d["name"] for d in data["inputs"]} | set(data["dendrograms"]["cc"]["leaves"])
    named |= set(data["cc_table"]["names"])
    assert set(data["labels"]) == named
    assert len(set(data["labels"].values())) == len(named)


def test_cc_values_to_three_decimals(tmp_path):
    """CC½ 0.997 is '0.997' in the cluster table and in the cluster_summary.dat table, never '1.00'."""
    out = write_sample_output(tmp_path / "OUT", n_multi=2, seed=2, with_refl=False)
    mdir = out / "merge_cc_2.2S_Thau"
    ms = read_summary(mdir / "merge_summary.json")
    c = next(c for c in ms.clusters if c.ok)
    c.stats.overall.cc_half = 0.9971
    c.stats.outer.cc_half, c.stats.inner.cc_half, c.stats.inner.cc_ano = 0.9966, 0.9996, 0.9951
    write_summary(mdir / "merge_summary.json", ms)
    write_reports(out)
    t = parse(mdir / "report.html")
    row = next(r for r in t.tables["cluster-table"] if r[0].split()[0] == str(c.id))
    assert (row[8], row[13], row[18], row[20]) == ("0.997", "0.997", "1.000", "0.995")
    kamo = next(r for r in t.tables["kamo-table"] if r[0] == f"{c.id:04d}")
    assert (kamo[11], kamo[16], kamo[21], kamo[23]) == ("0.997", "0.997", "1.000", "0.995")


def test_hitmap_pages_have_the_reports_style_and_navigation(tmp_path):
    """In an output directory a hit map page links the reports' stylesheet and their pages
    (relative links that resolve, offline); written by ``mxflow hitmap`` alone it carries
    the stylesheet inline and no navigation."""
    from mxflow.hitmap.render import write_html
    from mxflow.report.render import static_text

    out = write_sample_output(tmp_path / "OUT", n_multi=2, seed=5, with_refl=False)
    write_reports(out)
    page = out / "hitmap/CPS101-04/hitmap.html"
    html = page.read_text()
    links = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert "../../report/static/mxflow.css" in links
    assert "../../report/index.html#hitmaps" in links and "../../report/index.html" in links
    assert "../../merge_cc_2.2S_Lys/report.html" in links
    for link in links:
        assert not re.match(r"^[a-z]+://", link)
        if not link.startswith("data:"):
            assert (page.parent / link.split("#")[0]).exists(), link
    css = static_text("mxflow.css")
    assert css.splitlines()[0] not in html  # the stylesheet is linked, not copied
    assert 'id="hitmaps"' in (out / "report/index.html").read_text()  # the back link's target
    frames = json.loads(parse(page).data_json)["frames"]
    assert len(frames) == 12 * 15 and frames[0]["color"].startswith("#")
    # on its own: the same page, the stylesheet inline, no links to reports that do not exist
    doc = json.loads((out / "hitmap/CPS101-04/hitmap.json").read_text())
    alone = write_html(doc, tmp_path / "alone" / "hitmap.html").read_text()
    assert css.strip() in alone and "<nav>" not in alone and "report/" not in alone
    assert "http" not in alone.lower()


def test_anomalous_cluster_and_dataset_note(tmp_path):
    """An anomalous cluster: its signal table (with the heavy atom), the CCano / SigAno charts'
    data, the per-shell anomalous columns and the cluster_summary.dat columns; a dataset's
    anomalous note on the dataset page.  A cluster without an anomalous signal is not listed."""
    from mxflow.merge.outputs import DAT_HEADER, format_cluster_summary
    from mxflow.model import HeavyAtom
    from mxflow.stats.anomalous import anomalous_signal

    out = write_sample_output(tmp_path / "OUT", n_multi=2, seed=2, with_refl=False)
    mdir = out / "merge_cc_2.2S_Thau"
    ms = read_summary(mdir / "merge_summary.json")
    ok = [c for c in ms.clusters if c.ok]
    c, plain = ok[0], ok[1:]
    assert plain, "the fixture merges more than one cluster"
    cc = [0.71, 0.52, 0.33, 0.18, 0.12, 0.4]  # the signal ends after the fourth shell
    for k, s in enumerate(c.stats.shells):
        s.cc_ano = cc[k] if k < len(cc) else 0.05
        s.sig_ano, s.anom_slope = 1.9 - 0.1 * k, 1.7 - 0.05 * k
        s.anom_completeness, s.anom_multiplicity = 0.95 - 0.01 * k, 3.2 + 0.1 * k
    o = c.stats.overall
    o.cc_ano, o.sig_ano, o.anom_completeness, o.anom_multiplicity, o.anom_slope = (
        0.437,
        1.38,
        0.912,
        3.45,
        1.29,
    )
    zn = HeavyAtom("Zn", 9672.0, -8.12, 3.87, "K", 9659.0, n_sites=2)
    c.anomalous = anomalous_signal(c.stats, heavy_atom=zn)
    assert c.anomalous.d_ano == c.stats.shells[3].d_min
    write_summary(mdir / "merge_summary.json", ms)
    data = json.loads((out / "summary.json").read_text())
    ds = next(d for d in data["datasets"] if d["status"] == "ok")
    note = "Zn K edge 9659 eV is 13 eV below the energy: anomalous data?"
    ds["anomalous_note"] = note
    (out / "summary.json").write_text(json.dumps(data))
    write_reports(out)

    html = (mdir / "report.html").read_text()
    t = parse(mdir / "report.html")
    rows = t.tables["anomalous-table"]
    assert [r[0] for r in rows] == [str(c.id)]
    r = rows[0]
    assert r[1:7] == ["0.437", "1.38", "91.2", "3.5", "1.29", f2(c.stats.shells[3].d_min)]
    assert r[7].startswith("Zn (K edge 9659 eV, at 9672 eV)")
    assert r[8:11] == ["-8.12", "3.87", "2"]
    assert f"{c.stats.shells[3].d_min:.2f} Å" in r[11] and "0.120" in r[11]
    # the charts of CCano and SigAno against resolution: the anomalous cluster only
    assert 'data-res="cc_ano"' in html and 'data-res="sig_ano"' in html
    js = json.loads(t.data_json)
    by_id = {x["id"]: x for x in js["clusters"]}
    assert by_id[c.id]["ano"] is True and not any(by_id[p.id]["ano"] for p in plain)
    assert by_id[c.id]["res"]["cc_ano"] == [s.cc_ano for s in c.stats.shells]
    assert by_id[c.id]["res"]["sig_ano"] == pytest.approx([s.sig_ano for s in c.stats.shells])
    assert js["cc_ano_target"] == 0.15
    # the per-shell table has the anomalous columns
    block = html.split(f'id="cl-{c.id}"')[1].split("</details>")[0]
    st = Tables()
    st.feed(block.replace('<table class="num shells">', '<table id="sh" class="num shells">'))
    shell_rows = st.tables["sh"]
    assert shell_rows[0][-3:] == ["95.0", "3.2", "1.70"]
    assert shell_rows[-1][-3:] == ["91.2", "3.5", "1.29"]  # overall
    # KAMO's table and cluster_summary.dat: the same anomalous columns, after KAMO's
    dat = format_cluster_summary(ms.clusters).splitlines()
    head = DAT_HEADER.split()
    assert head[-5:] == ["CCano", "SigAno", "ACmpl", "ARedun", "dmin.ano"]
    assert head[:4] == ["cluster", "ClH", "LCV", "aLCV"] and head[-6] == "dmin.est"
    line = next(x.split() for x in dat[1:] if x.startswith(f"{c.id:04d}"))
    assert len(line) == len(head)
    assert line[-5:] == ["0.437", "1.38", "91.2", "3.5", f2(c.stats.shells[3].d_min)]
    other = next(x.split() for x in dat[1:] if x.startswith(f"{plain[0].id:04d}"))
    assert other[-1] == "nan"  # no anomalous signal: no d_ano
    kamo = next(x for x in t.tables["kamo-table"] if x[0] == f"{c.id:04d}")
    assert kamo[-5:] == line[-5:]
    # the dataset page says what processing noticed at this wavelength
    dpage = (out / "report/datasets.html").read_text()
    section = dpage.split(f'id="ds-{ds["name"]}"')[1].split("</section>")[0]
    assert "Anomalous scattering" in section and note in section
    assert dpage.count(note) == 1
    # a merge without an anomalous cluster has no such section
    lys = (out / "merge_cc_2.2S_Lys" / "report.html").read_text()
    assert 'id="anomalous-table"' not in lys and 'data-res="cc_ano"' not in lys
