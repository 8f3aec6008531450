/* mxflow reports: plotly charts, the interactive dendrograms, sortable tables, the dashboard.
 *
 * No network: plotly.min.js is copied once per output tree next to this file
 * (OUT/report/static/).  Every page embeds its numbers as JSON in
 * <script id="mx-data" type="application/json"> and calls one MX.*Page().
 * Resolution axes are linear in s² = 1/d² (Å⁻²) and labelled in d (Å).
 * Charts are drawn lazily, when their figure comes near the viewport (or
 * before printing), so a page of 200 datasets does not build 600 plots at load.
 */
(function () {
  "use strict";
  var MX = {};
  var PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22"];
  var FONT = '-apple-system, "Segoe UI", "Helvetica Neue", Arial, "Noto Sans", sans-serif';
  var SEL = "#1f77b4", MERGED = "#d62728", GREY = "#667085";

  function isNum(v) { return typeof v === "number" && isFinite(v); }
  function fmt(v, d) { return isNum(v) ? v.toFixed(d === undefined ? 2 : d) : "–"; }
  function esc(s) {
    return String(s).replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c];
    });
  }
  MX.fmt = fmt;
  MX.esc = esc;

  /* A whole-number step for a dataset-number axis: about `ticks` ticks over n datasets (1, 2, 5, 10, 20, ...). */
  function intStep(n, ticks) {
    var raw = n / (ticks || 8), step = 1;
    while (step < raw) step = String(step).charAt(0) === "2" ? step * 2.5 : step * 2;
    return step;
  }
  /* Pixels a tick label of `chars` characters takes across its axis, drawn at `angle` degrees. */
  function labelExtent(chars, size, angle) {
    return Math.ceil(chars * size * 0.58 * Math.sin(Math.abs(angle || 90) * Math.PI / 180)) + 8;
  }
  function longest(labels) { return labels.reduce(function (m, s) { return Math.max(m, String(s).length); }, 0); }

  function pageData() {
    var node = document.getElementById("mx-data");
    return node ? JSON.parse(node.textContent) : {};
  }

  /* ---------------------------------------------------------------- plotly furniture */
  var CONFIG = {
    displaylogo: false, responsive: true,
    modeBarButtonsToRemove: ["select2d", "lasso2d", "autoScale2d", "zoomIn2d", "zoomOut2d"],
    toImageButtonOptions: { format: "svg" }
  };

  function axis(title, extra) {
    var a = {
      title: { text: title || "", font: { size: 11 }, standoff: 4 }, automargin: false,
      showline: true, mirror: true, linecolor: "#c5ccd8", gridcolor: "#e7ebf1", zeroline: false,
      ticks: "outside", ticklen: 3, tickcolor: "#c5ccd8", nticks: 7
    };
    for (var k in extra) a[k] = extra[k];
    return a;
  }

  function layout(extra) {
    var l = {
      font: { family: FONT, size: 10.5, color: "#3b4252" },
      height: 240, margin: { l: 48, r: 14, t: 10, b: 36 },
      paper_bgcolor: "#ffffff", plot_bgcolor: "#fcfdff",
      hovermode: "closest", hoverdistance: 30, showlegend: false,
      hoverlabel: { bgcolor: "rgba(20,27,45,0.94)", bordercolor: "rgba(20,27,45,0.94)", align: "left",
        font: { family: FONT, size: 12, color: "#f1f4f9" } },
      legend: { orientation: "h", x: 0, xanchor: "left", y: 1.0, yanchor: "bottom", font: { size: 10 }, bgcolor: "rgba(0,0,0,0)" }
    };
    for (var k in extra) l[k] = extra[k];
    return l;
  }

  /* Draw (or redraw) a plot into a figure, before its caption.  Returns the plot div or null. */
  function plot(fig, traces, lay, config) {
    if (!window.Plotly) {
      fig.classList.add("empty");
      fig.querySelector("figcaption").textContent = "Chart not drawn: static/plotly.min.js was not found next to mxflow.js";
      return null;
    }
    var div = fig.querySelector("div.plot");
    if (!div) {
      div = document.createElement("div");
      div.className = "plot";
      fig.insertBefore(div, fig.firstChild);
    }
    fig.classList.remove("empty");
    window.Plotly.react(div, traces, lay, config || CONFIG);
    fig.dataset.drawn = "1";
    return div;
  }

  /* Remove a figure's plot; the caption says why (when given). */
  function clear(fig, caption) {
    var div = fig.querySelector("div.plot");
    if (div) { if (window.Plotly) window.Plotly.purge(div); div.remove(); }
    fig.classList.add("empty");
    if (caption !== undefined) fig.querySelector("figcaption").textContent = caption;
    return null;
  }

  /* Draw `draw(fig)` for each figure when it comes within 400 px of the viewport, and all before printing. */
  var drawBeforePrint = [];
  function lazy(nodes, draw) {
    var pending = new Set(nodes);
    function run(n) { if (pending.has(n)) { pending.delete(n); draw(n); } }
    if ("IntersectionObserver" in window) {
      var io = new IntersectionObserver(function (ents) {
        ents.forEach(function (e) { if (e.isIntersecting) { io.unobserve(e.target); run(e.target); } });
      }, { rootMargin: "400px" });
      nodes.forEach(function (n) { io.observe(n); });
    } else nodes.forEach(run);
    drawBeforePrint.push(function () { Array.from(pending).forEach(run); });
  }

  /* Printing: every chart is drawn, then each plot's SVG layers get a viewBox so that the print
   * stylesheet can scale them to the width of their figure on paper (whatever the page scale). */
  window.addEventListener("beforeprint", function () {
    drawBeforePrint.forEach(function (f) { f(); });
    document.querySelectorAll("figure div.plot .svg-container").forEach(function (box) {
      var w = 0, h = 0;
      box.querySelectorAll("svg.main-svg").forEach(function (svg) {
        w = +svg.getAttribute("width"); h = +svg.getAttribute("height");
        if (w > 0 && h > 0) svg.setAttribute("viewBox", "0 0 " + w + " " + h);
      });
      if (w > 0 && h > 0) { box.style.setProperty("--mx-aspect", w + " / " + h); box.style.setProperty("--mx-width", w + "px"); }
    });
  });
  window.addEventListener("afterprint", function () {
    document.querySelectorAll("figure div.plot .svg-container").forEach(function (box) {
      box.style.removeProperty("--mx-aspect");
      box.style.removeProperty("--mx-width");
      box.querySelectorAll("svg.main-svg").forEach(function (svg) { svg.removeAttribute("viewBox"); });
    });
  });

  /* ---------------------------------------------------------------- resolution axis */
  var NICE_D = [50, 30, 20, 15, 10, 8, 7, 6, 5, 4.5, 4, 3.5, 3.2, 3, 2.8, 2.6, 2.5, 2.4, 2.3, 2.2, 2.1, 2, 1.9,
    1.8, 1.7, 1.6, 1.5, 1.45, 1.4, 1.35, 1.3, 1.25, 1.2, 1.15, 1.1, 1.05, 1, 0.95, 0.9, 0.85, 0.8, 0.75, 0.7, 0.65, 0.6];
  function s2(d) { return isNum(d) && d > 0 ? 1 / (d * d) : null; }

  /* An x axis linear in s² = 1/d² (Å⁻²) with ticks at round d values (Å). ds: d values in Å. */
  function resolutionAxis(ds) {
    var v = ds.map(s2).filter(isNum);
    var lo = Math.min.apply(null, v), hi = Math.max.apply(null, v);
    var pad = (hi - lo) * 0.03 || hi * 0.05 || 0.01;
    lo = Math.max(0, lo - pad); hi += pad;
    var vals = [], text = [], last = -Infinity, gap = (hi - lo) / 7;
    NICE_D.forEach(function (d) {
      var t = s2(d);
      if (t >= lo && t <= hi && t - last >= gap) { vals.push(t); text.push(String(d)); last = t; }
    });
    return axis("resolution d (Å)", { range: [lo, hi], tickmode: "array", tickvals: vals, ticktext: text });
  }

  /* Lines against resolution.  o: {series: [{name, d, y, color, width, dim, axis: "y"|"y2", digits}],
   * ylabel, y2label, yrange, y2range, legend, hlines: [y values drawn dotted across the chart]} */
  function resolutionChart(fig, o) {
    var series = o.series.filter(function (s) { return s.y.some(isNum); });
    if (!series.length) return clear(fig);
    var right = series.some(function (s) { return s.axis === "y2"; });
    var traces = series.map(function (s, i) {
      var c = s.color || PALETTE[i % PALETTE.length];
      return {
        type: "scatter", mode: s.d.length <= 60 ? "lines+markers" : "lines", name: s.name,
        x: s.d.map(s2), y: s.y, customdata: s.d, yaxis: s.axis === "y2" ? "y2" : "y",
        line: { color: c, width: s.width || 1.8 }, marker: { color: c, size: s.dim ? 4 : 5.5 },
        opacity: s.dim ? 0.35 : 1,
        hovertemplate: esc(s.name) + ": <b>%{y:." + (s.digits === undefined ? 3 : s.digits) + "f}</b><br>d = %{customdata:.2f} Å<extra></extra>"
      };
    });
    var legend = series.length > 1 && o.legend !== false;
    var first = series.filter(function (s) { return s.axis !== "y2"; })[0];
    var lay = layout({
      showlegend: legend, margin: { l: 48, r: right ? 48 : 14, t: legend ? 26 : 10, b: 36 },
      xaxis: resolutionAxis([].concat.apply([], series.map(function (s) { return s.d; }))),
      yaxis: axis(o.ylabel, { range: o.yrange || undefined, title: { text: o.ylabel || "", font: { size: 11, color: right && first ? first.color : undefined }, standoff: 4 } })
    });
    if (o.hlines && o.hlines.length) {
      lay.shapes = o.hlines.filter(isNum).map(function (v) {
        return { type: "line", xref: "paper", x0: 0, x1: 1, yref: "y", y0: v, y1: v, line: { color: GREY, width: 1, dash: "dot" } };
      });
    }
    if (right) {
      var r = series.filter(function (s) { return s.axis === "y2"; })[0];
      lay.yaxis2 = axis(o.y2label, {
        overlaying: "y", side: "right", tickmode: "auto", showgrid: false, mirror: false, range: o.y2range || undefined, rangemode: "tozero",
        title: { text: o.y2label || "", font: { size: 11, color: r.color }, standoff: 4 }
      });
    }
    return plot(fig, traces, lay);
  }

  /* A value per frame as a filled step outline (one path, fast for thousands of frames). */
  function framesChart(fig, xs, ys, o) {
    if (!xs.length) return clear(fig);
    var lay = layout({
      hovermode: "x", hoverdistance: -1, bargap: 0,
      xaxis: axis(o.xlabel || "frame", { showspikes: true, spikemode: "across", spikethickness: 1, spikedash: "dot", spikecolor: "#98a2b3", spikesnap: "data" }),
      yaxis: axis(o.ylabel || "spots", { rangemode: "tozero" })
    });
    return plot(fig, [{
      type: "scatter", mode: "lines", x: xs, y: ys, line: { shape: "hvh", width: 0.8, color: "#3a7dbf" },
      fill: "tozeroy", fillcolor: "rgba(158,197,232,0.85)",
      hovertemplate: "frame %{x}: <b>%{y}</b> " + esc(o.ylabel || "spots") + "<extra></extra>"
    }], lay);
  }

  /* Histogram of values (nulls ignored): the number of datasets per bin. */
  function histogram(fig, values, o) {
    var v = values.filter(isNum);
    if (!v.length) return clear(fig);
    var lo = Math.min.apply(null, v), hi = Math.max.apply(null, v), nb = Math.max(5, Math.min(30, Math.ceil(Math.sqrt(v.length) * 1.5)));
    var size = (hi - lo) / nb;
    if (size < 1e-6) { size = 0.1; lo -= 0.05; hi = lo + 0.1; }  // all equal (e.g. 90° angles): one thin bar
    return plot(fig, [{
      type: "histogram", x: v, xbins: { start: lo, end: hi + size * 1e-3, size: size }, autobinx: false,
      marker: { color: "#8fb4de", line: { color: "#3a7dbf", width: 0.6 } },
      hovertemplate: "%{x}: <b>%{y}</b> datasets<extra></extra>"
    }], layout({
      height: 150, margin: { l: 40, r: 8, t: 6, b: 26 }, bargap: 0.06,
      xaxis: axis("", { nticks: 5, range: [Math.min(lo, (lo + hi) / 2 - 0.5), Math.max(hi, (lo + hi) / 2 + 0.5)] }),
      yaxis: axis("datasets", { rangemode: "tozero", nticks: 4 })
    }), { displayModeBar: false, responsive: true });
  }

  /* The x axis of a chart with one point per dataset at x = 0, 1, ...: the datasets' short names
   * (o.label) when few enough to read, else whole dataset numbers (never fractional ticks). */
  function datasetAxis(names, label, extra) {
    var idx = names.map(function (_, i) { return i; }), n = names.length;
    var a = extra || {};
    a.range = a.range || [-0.5, n - 0.5];
    if (n <= 30) {
      var text = names.map(function (nm) { return esc(label ? label(nm) : nm); });
      a.tickmode = "array"; a.tickvals = idx; a.ticktext = text; a.tickangle = 45; a.tickfont = { size: 9 };
      return { axis: axis("", a), bottom: Math.min(170, labelExtent(longest(text), 9, 45) + 12) };
    }
    a.tickmode = "linear"; a.tick0 = 0; a.dtick = intStep(n);
    return { axis: axis("dataset # (input table)", a), bottom: 36 };
  }

  /* One value per dataset (x = its number in the input table); members of the selection filled. */
  function perDatasetChart(fig, names, values, selected, o) {
    if (!values.some(isNum)) return clear(fig);
    var sel = new Set(selected || []);
    var xa = datasetAxis(names, o.label);
    return plot(fig, [{
      type: "scatter", mode: "markers", x: names.map(function (_, i) { return i; }), y: values,
      text: names.map(function (n) { return esc(n) + (sel.has(n) ? " (in selection)" : ""); }),
      marker: {
        size: 7, color: names.map(function (n) { return sel.has(n) ? SEL : "#ffffff"; }),
        line: { width: 1.2, color: names.map(function (n) { return sel.has(n) ? SEL : GREY; }) }
      },
      hovertemplate: "#%{x} %{text}: <b>%{y:." + (o.digits || 3) + "f}</b><extra></extra>"
    }], layout({
      margin: { l: 48, r: 14, t: 10, b: xa.bottom },
      xaxis: xa.axis,
      yaxis: axis(o.ylabel, { range: o.yrange || undefined })
    }));
  }

  /* One line per dataset against image number (a point per image group).  datasets: [{name, x (middle
   * image of each group), first, last, n_obs, <key>: values}] as mxflow.report.pages.diagnostics_series
   * writes them; datasets without a finite value are left out, no trace at all clears the figure. */
  function imageChart(fig, datasets, key, o) {
    var shown = datasets.filter(function (ds) { return (ds[key] || []).some(isNum); });
    if (!shown.length) return clear(fig, o.label + ": no image group has a value");
    var traces = shown.map(function (ds, i) {
      var c = PALETTE[i % PALETTE.length];
      return {
        type: "scatter", mode: ds.x.length <= 60 ? "lines+markers" : "lines", name: ds.name,
        x: ds.x, y: ds[key], customdata: ds.first.map(function (f, j) { return [f, ds.last[j], ds.n_obs[j]]; }),
        line: { color: c, width: 1.5 }, marker: { color: c, size: 4.5 },
        hovertemplate: esc(ds.name) + ", images %{customdata[0]}–%{customdata[1]} (%{customdata[2]} obs): <b>%{y:." + o.digits + "f}</b><extra></extra>"
      };
    });
    var legend = shown.length > 1 && shown.length <= 10;
    return plot(fig, traces, layout({
      showlegend: legend, margin: { l: 52, r: 14, t: legend ? 26 : 10, b: 36 },
      xaxis: axis("image"), yaxis: axis(o.label, { range: o.range || undefined })
    }));
  }

  /* ΔCC½ of each dataset as bars (negative: the cluster is better without it, drawn red). */
  function deltaCcChart(fig, datasets, label) {
    var v = datasets.map(function (ds) { return ds.delta_cc_half; });
    if (!v.some(isNum)) return clear(fig, "ΔCC½: not defined for any dataset");
    var names = datasets.map(function (ds) { return ds.name; }), idx = names.map(function (_, i) { return i; });
    var xa = datasetAxis(names, label);
    return plot(fig, [{
      type: "bar", x: idx, y: v, text: names.map(esc), textposition: "none",
      marker: { color: v.map(function (x) { return isNum(x) && x < 0 ? MERGED : "#8fb4de"; }), line: { color: GREY, width: 0.5 } },
      hovertemplate: "%{text}: ΔCC½ <b>%{y:.4f}</b><extra></extra>"
    }], layout({
      margin: { l: 56, r: 14, t: 10, b: xa.bottom },
      xaxis: xa.axis,
      yaxis: axis("ΔCC½", { zeroline: true, zerolinecolor: "#98a2b3" })
    }));
  }

  /* Completeness (%) of the first n crystals merged against n; order: the name added at each step. */
  function completenessChart(fig, curve, order) {
    if (!curve.some(isNum)) return clear(fig, "Completeness: no observations");
    return plot(fig, [{
      type: "scatter", mode: curve.length <= 80 ? "lines+markers" : "lines",
      x: curve.map(function (_, i) { return i + 1; }), y: curve, text: order.map(esc),
      line: { color: PALETTE[2], width: 1.8, shape: "hv" }, marker: { color: PALETTE[2], size: 5 },
      hovertemplate: "%{x} crystals (+ %{text}): <b>%{y:.1f} %</b><extra></extra>"
    }], layout({
      xaxis: axis("crystals merged", { rangemode: "tozero", dtick: curve.length <= 10 ? 1 : undefined }),
      yaxis: axis("completeness (%)", { range: [0, 105] })
    }));
  }

  /* The fixed colour range of the CC heat map: the same colour is the same CC on every page. */
  var CC_RANGE = [0, 1];
  MX.CC_RANGE = CC_RANGE;

  /* Pairwise CC matrix as a heat map on a fixed scale, CC 0 (blue) to 1 (red), lower CCs drawn as 0;
   * grey where no common reflections.  Both axes name the datasets by their short labels (label(name)),
   * every k-th when too many to read; the hover label gives the full names. */
  function ccHeatmap(fig, cc, sorted, label) {
    var n = cc.cc.length, names = cc.names;
    var short = names.map(function (nm) { return label ? label(nm) : nm; });
    var text = cc.cc.map(function (row, i) { return row.map(function (_, j) { return esc(names[i]) + " × " + esc(names[j]); }); });
    var side = Math.min(520, Math.max(280, (fig.parentNode.clientWidth || 700) - 260));
    var size = n <= 40 ? 9 : 8, every = Math.max(1, Math.ceil(n * (size + 3) / side));
    var shown = short.filter(function (_, i) { return i % every === 0; });
    var title = every > 1 ? "dataset (" + (sorted ? "dendrogram" : "input") + " order; every " + every + (every === 2 ? "nd" : every === 3 ? "rd" : "th") + " named)" : "";
    var ext = longest(shown.map(esc));
    var m = { l: Math.min(220, labelExtent(ext, size, 90) + 6), r: 10, t: 10, b: Math.min(220, labelExtent(ext, size, 60) + (title ? 24 : 8)) };
    var tickAxis = function (angle) {
      return axis(title, { type: "category", showgrid: false, ticks: "", tickmode: "array", tickvals: shown,
        ticktext: shown.map(esc), tickfont: { size: size }, tickangle: angle });
    };
    var yax = tickAxis(0);
    yax.autorange = "reversed";
    yax.scaleanchor = "x";
    var div = plot(fig, [{
      type: "heatmap", z: cc.cc, x: short, y: short, text: text, zmin: CC_RANGE[0], zmax: CC_RANGE[1], zauto: false, hoverongaps: false,
      colorscale: "RdBu", colorbar: { title: { text: "CC (fixed scale 0 – 1)", side: "right" }, thickness: 12, len: 0.9,
        tickmode: "array", tickvals: [0, 0.2, 0.4, 0.6, 0.8, 1], ticktext: ["≤ 0", "0.2", "0.4", "0.6", "0.8", "1"] },
      hovertemplate: "%{text}: CC <b>%{z:.3f}</b><extra></extra>"
    }], layout({
      height: side + m.t + m.b, width: side + m.l + m.r + 80, plot_bgcolor: "#e4e7ec", margin: m,
      xaxis: tickAxis(60), yaxis: yax
    }), { displaylogo: false, responsive: false, toImageButtonOptions: { format: "svg" },
      modeBarButtonsToRemove: CONFIG.modeBarButtonsToRemove });
    return div;
  }

  /* ---------------------------------------------------------------- tables */
  function cellValue(td) {
    var t = td.textContent.trim();
    if (t === "" || t === "–") return null;
    var n = parseFloat(t.replace(/,/g, ""));
    return isNaN(n) || !/^[-+]?[\d.]/.test(t) ? t.toLowerCase() : n;
  }
  MX.tablesInit = function () {
    document.querySelectorAll("table.sortable").forEach(function (table) {
      var heads = table.tHead.rows[table.tHead.rows.length - 1].cells;
      Array.prototype.forEach.call(heads, function (th, col) {
        th.classList.add("sorth");
        th.title = (th.title ? th.title + " · " : "") + "click to sort";
        th.addEventListener("click", function () {
          var dir = th.dataset.dir === "asc" ? "desc" : "asc";
          Array.prototype.forEach.call(heads, function (h) { delete h.dataset.dir; });
          th.dataset.dir = dir;
          var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
          rows.sort(function (a, b) {
            var va = cellValue(a.cells[col]), vb = cellValue(b.cells[col]);
            if (va === null) return 1; if (vb === null) return -1;
            var c = typeof va === typeof vb ? (va < vb ? -1 : va > vb ? 1 : 0) : (typeof va === "number" ? -1 : 1);
            return dir === "asc" ? c : -c;
          });
          rows.forEach(function (r) { body.appendChild(r); });
        });
      });
    });
    document.querySelectorAll("input.filter").forEach(function (inp) {
      var table = document.getElementById(inp.dataset.table);
      if (!table) return;
      inp.addEventListener("input", function () {
        var q = inp.value.trim().toLowerCase().split(/\s+/).filter(Boolean);
        Array.prototype.forEach.call(table.tBodies[0].rows, function (r) {
          var t = r.textContent.toLowerCase();
          r.hidden = !q.every(function (w) { return t.indexOf(w) >= 0; });
        });
      });
    });
    window.addEventListener("beforeprint", function () {
      document.querySelectorAll("details").forEach(function (d) { d.open = true; });
    });
  };

  /* ---------------------------------------------------------------- dataset page */
  MX.datasetsPage = function () {
    var data = pageData();
    MX.tablesInit();
    lazy(Array.prototype.slice.call(document.querySelectorAll("figure[data-chart]")), function (fig) {
      var c = data[fig.dataset.key];
      if (!c) return;
      var kind = fig.dataset.chart;
      if (kind === "spots") framesChart(fig, c.spots.map(function (p) { return p[0]; }), c.spots.map(function (p) { return p[1]; }), {});
      else if (kind === "cc_isig") resolutionChart(fig, {
        ylabel: "CC½", y2label: "⟨I/σ(I)⟩", yrange: [Math.min(0, Math.min.apply(null, c.cc_half.filter(isNum).concat([0]))), 1.02],
        series: [{ name: "CC½", d: c.d, y: c.cc_half, color: PALETTE[0] }, { name: "⟨I/σ⟩", d: c.d, y: c.i_over_sigma, color: PALETTE[1], axis: "y2", digits: 2 }]
      });
      else if (kind === "cmpl_mult") resolutionChart(fig, {
        ylabel: "completeness (%)", y2label: "multiplicity", yrange: [0, 105], y2range: [0, 1.08 * Math.max.apply(null, c.multiplicity.filter(isNum).concat([1]))],
        series: [{ name: "completeness", d: c.d, y: c.completeness, color: PALETTE[2], digits: 1 }, { name: "multiplicity", d: c.d, y: c.multiplicity, color: PALETTE[3], axis: "y2", digits: 2 }]
      });
    });
  };

  /* ---------------------------------------------------------------- dendrogram */
  /* dg: a Dendrogram as mxflow.model.to_dict writes it: {method, leaves: [name, ...], nodes: [{id,
   * children: [a, b], height, members, stats: {completeness (%), multiplicity, lcv (%), alcv (Å),
   * cc_mean, cc_min}, merged, why_not}]} (scipy numbering: leaf i is leaves[i], merges n..2n-2),
   * drawn with plotly: one line trace for the
   * links, one for the links of the selected subtree, one marker trace ("nodes") for every node.
   * Returns {select(id, notify), byId, order, plot, current()}. */
  var MAX_LABELS = 60;
  MX.dendrogram = function (fig, dg, opts) {
    opts = opts || {};
    var leaves = dg.leaves || [], nodes = dg.nodes || [];
    var byId = {}, isChild = {};
    leaves.forEach(function (name, i) { byId[i] = { id: i, leaf: true, name: name, height: 0, members: [name] }; });
    nodes.forEach(function (n) { byId[n.id] = n; (n.children || []).forEach(function (c) { isChild[c] = true; }); });
    var roots = nodes.filter(function (n) { return !isChild[n.id]; });
    if (!roots.length) { fig.classList.add("empty"); return null; }
    roots.sort(function (a, b) { return b.height - a.height; });
    // leaf order by depth-first traversal (iterative: trees of hundreds of leaves)
    var order = [], stack = roots.slice().reverse();
    while (stack.length) {
      var n = stack.pop();
      if (!n) continue;
      if (n.leaf) { order.push(n.id); continue; }
      var ch = (n.children || []).map(function (c) { return byId[c]; });
      for (var i = ch.length - 1; i >= 0; i--) stack.push(ch[i]);
    }
    var pos = {};
    order.forEach(function (id, i) { pos[id] = i; });
    function place(n) {  // x of an internal node: mean of its children's
      if (pos[n.id] !== undefined) return pos[n.id];
      var xs = (n.children || []).map(function (c) { return place(byId[c]); });
      pos[n.id] = xs.reduce(function (a, b) { return a + b; }, 0) / Math.max(1, xs.length);
      return pos[n.id];
    }
    var inner = nodes.slice().sort(function (a, b) { return a.height - b.height; });
    inner.forEach(place);
    // the link from each child up to its parent: vertical, then horizontal to the parent's x
    var linkOf = {};
    nodes.forEach(function (p) {
      (p.children || []).forEach(function (c) {
        if (byId[c]) linkOf[c] = { x: [pos[c], pos[c], pos[p.id], null], y: [byId[c].height || 0, p.height, p.height, null] };
      });
    });
    function links(ids) {
      var x = [], y = [];
      ids.forEach(function (k) { var l = linkOf[k]; if (l) { x.push.apply(x, l.x); y.push.apply(y, l.y); } });
      return { x: x, y: y };
    }
    function statsHtml(n) {
      var s = n.stats || {}, rows = [];
      rows.push("<b>" + (n.leaf ? esc(n.name) : "Node " + n.id) + "</b>" + (n.merged ? ' <span style="color:#ff8a80"><b>merged</b></span>' : ""));
      if (!n.leaf) {
        rows.push((n.members || []).length + " datasets · height " + fmt(n.height, 3));
        if (isNum(s.lcv)) rows.push("LCV " + fmt(s.lcv, 2) + " % · aLCV " + fmt(s.alcv, 2) + " Å");
        if (isNum(s.cc_mean)) rows.push("CC mean " + fmt(s.cc_mean, 3) + " · CC min " + fmt(s.cc_min, 3));
        if (isNum(s.completeness)) rows.push("completeness " + fmt(s.completeness, 1) + " %");
        if (isNum(s.multiplicity)) rows.push("multiplicity " + fmt(s.multiplicity, 1));
        var cl = opts.clusterFor ? opts.clusterFor(n) : null;
        if (cl && cl.error) rows.push('<span style="color:#ff8a80">merging failed: ' + esc(cl.error) + "</span>");
        else if (cl) rows.push("merged: d<sub>min</sub> " + fmt(cl.d_min, 2) + " Å · CC½ " + fmt(cl.cc_half, 3));
        else if (n.why_not || (opts.whyNot && opts.whyNot[n.id])) rows.push("not merged: " + esc(n.why_not || opts.whyNot[n.id]));
        rows.push('<span style="color:#aab4c8">click to select</span>');
      } else if (opts.leafInfo) rows.push(opts.leafInfo(n.name));
      return rows.join("<br>");
    }
    // marker trace: leaves in dendrogram order, then internal nodes from the bottom up
    var ids = order.concat(inner.map(function (n) { return n.id; }));
    var nl = order.length;
    var kind = ids.map(function (k) { var n = byId[k]; return n.leaf ? "leaf" : n.merged ? "merged" : "node"; });
    var fill = kind.map(function (k) { return k === "leaf" ? GREY : k === "merged" ? MERGED : "#ffffff"; });
    var edge = kind.map(function (k) { return k === "merged" ? "#8f1d1d" : GREY; });
    var small = nl > MAX_LABELS;
    var size = kind.map(function (k) { return k === "leaf" ? (small ? 4 : 6) : k === "merged" ? 13 : small ? 7 : 9; });
    var maxH = Math.max.apply(null, nodes.map(function (n) { return n.height || 0; }).concat([1e-9]));
    var all = links(Object.keys(linkOf));
    // axis labels: the leaves' short names (opts.label; the hover label has the full name)
    var names = order.map(function (k) { return esc(opts.label ? opts.label(byId[k].name) : byId[k].name); });
    var labelled = Math.min(170, labelExtent(longest(names), 9, 60) + 10);
    var bottom = nl <= MAX_LABELS ? labelled : 44;
    var lay = layout({
      height: nl <= MAX_LABELS ? 380 : 330, margin: { l: 56, r: 16, t: 12, b: bottom }, plot_bgcolor: "#ffffff",
      hoverdistance: 12, dragmode: "zoom",
      xaxis: axis("", { range: [-0.7, nl - 0.3], showgrid: false, showline: false, ticks: "", automargin: false,
        tickmode: "array", tickvals: order.map(function (_, i) { return i; }), ticktext: names,
        tickangle: 60, tickfont: { size: 9 }, showticklabels: nl <= MAX_LABELS }),
      yaxis: axis(dg.method === "cc" ? "1 − CC" : "height (ClH)", { range: [-0.04 * maxH, 1.06 * maxH], fixedrange: true, showline: false }),
      annotations: nl <= MAX_LABELS ? [] : [{ xref: "paper", yref: "paper", x: 0.5, y: 0, yshift: -26, showarrow: false,
        text: nl + " datasets: drag across the tree to zoom in and see their names (double-click to zoom out)",
        font: { size: 10.5, color: GREY } }]
    });
    var traces = [
      { type: "scatter", mode: "lines", x: all.x, y: all.y, line: { color: "#98a2b3", width: 1.3 }, hoverinfo: "skip" },
      { type: "scatter", mode: "lines", x: [], y: [], line: { color: SEL, width: 2.8 }, hoverinfo: "skip" },
      {
        type: "scatter", mode: "markers", uid: "nodes", x: ids.map(function (k) { return pos[k]; }),
        y: ids.map(function (k) { return byId[k].height || 0; }), customdata: ids.map(function (k, i) { return [k, kind[i]]; }),
        text: ids.map(function (k) { return statsHtml(byId[k]); }), hovertemplate: "%{text}<extra></extra>",
        marker: { size: size, color: fill, opacity: 1, line: { color: edge.slice(), width: kind.map(function (k) { return k === "leaf" ? 0 : 1.4; }) } }
      }
    ];
    var div = plot(fig, traces, lay);
    if (!div) return null;
    var current = null;
    function subtree(id) {
      var out = [], st = [id];
      while (st.length) { var k = st.pop(); out.push(String(k)); var m = byId[k]; if (m && m.children) m.children.forEach(function (c) { st.push(c); }); }
      return out;
    }
    function select(id, notify) {
      current = id;
      var sub = id === null || id === undefined || byId[id] === undefined ? [] : subtree(id), inSub = new Set(sub);
      var sl = links(sub.filter(function (k) { return String(k) !== String(id); }));
      window.Plotly.restyle(div, { x: [sl.x], y: [sl.y] }, [1]);
      window.Plotly.restyle(div, {
        "marker.line.color": [ids.map(function (k, i) { return inSub.has(String(k)) ? SEL : edge[i]; })],
        "marker.line.width": [ids.map(function (k, i) { return inSub.has(String(k)) ? (kind[i] === "leaf" ? 2 : 3) : kind[i] === "leaf" ? 0 : 1.4; })]
      }, [2]);
      if (notify && sub.length && opts.onSelect) opts.onSelect(byId[id], dg);
    }
    div.on("plotly_click", function (ev) {
      var p = (ev.points || []).filter(function (q) { return q.curveNumber === 2; })[0];
      if (p) select(p.customdata[0], true);
    });
    div.on("plotly_hover", function () { fig.classList.add("pointing"); });
    div.on("plotly_unhover", function () { fig.classList.remove("pointing"); });
    if (nl > MAX_LABELS) {
      // names appear once few enough leaves are in view
      div.on("plotly_relayout", function () {
        var r = div._fullLayout.xaxis.range, show = r[1] - r[0] <= MAX_LABELS;
        if (show !== div._fullLayout.xaxis.showticklabels) {
          window.Plotly.relayout(div, { "xaxis.showticklabels": show, "margin.b": show ? labelled : 44, "annotations[0].visible": !show });
        }
      });
    }
    return { select: select, byId: byId, order: order, plot: div, current: function () { return current; }, statsHtml: statsHtml };
  };

  /* shell quoting like Python's shlex.quote */
  function shq(s) { s = String(s); return /^[A-Za-z0-9_@%+=:,.\/-]+$/.test(s) ? s : "'" + s.replace(/'/g, "'\"'\"'") + "'"; }
  /* mirrors mxflow.report.pages.merge_command */
  MX.mergeCommand = function (inputs, workdir, sample, method, dmin) {
    var a = ["mxflow", "merge"].concat(inputs, ["--workdir", workdir, "--sample", sample, "--method", method, "--max-clusters", "1"]);
    if (isNum(dmin)) a.push("--d-min", dmin.toFixed(2));
    return a.map(shq).join(" ");
  };

  /* ---------------------------------------------------------------- merge page */
  MX.mergePage = function () {
    var data = pageData();
    MX.tablesInit();
    var inputs = data.inputs || [], names = inputs.map(function (d) { return d.name; });
    var labels = data.labels || {};
    function label(name) { return labels[name] || name; }  // short name on axes (mxflow.report.pages.short_labels)
    var byName = {};
    inputs.forEach(function (d) { byName[d.name] = d; });
    var clusters = data.clusters || [];
    function sameSet(a, b) { if (a.length !== b.length) return false; var s = new Set(a); return b.every(function (x) { return s.has(x); }); }
    function clusterFor(node) {
      // a cluster keeps its dendrogram node's id (its members may be fewer after run_02 / run_03,
      // none when merging it failed)
      if (node.leaf) return null;
      for (var i = 0; i < clusters.length; i++) if (String(clusters[i].id) === String(node.id)) return clusters[i];
      return null;
    }
    var selected = null;
    function selCluster(c) { return !!(selected && selected.cluster && String(selected.cluster.id) === String(c.id)); }

    /* each chart is drawn from the page data and the current selection */
    function drawHist(fig) {
      var k = +fig.dataset.hist;
      histogram(fig, inputs.map(function (d) { return d.cell ? d.cell[k] : null; }), {});
    }
    var RES = {
      cc_half: { label: "CC½", digits: 3 }, i_over_sigma: { label: "⟨I/σ(I)⟩", digits: 2 },
      completeness: { label: "completeness (%)", digits: 1, range: [0, 105] }, multiplicity: { label: "multiplicity", digits: 2 },
      // anomalous merges only: drawn for the clusters with an anomalous signal (mxflow.stats.anomalous)
      cc_ano: { label: "CCano", digits: 3, ano: true, hlines: [data.cc_ano_target] },
      sig_ano: { label: "SigAno", digits: 2, ano: true, hlines: [0.8], rangemode: "tozero" }
    };
    function drawRes(fig) {
      var key = fig.dataset.res, spec = RES[key] || { label: key, digits: 3 };
      var any = selected && selected.cluster;
      var series = [];
      clusters.forEach(function (c, i) {  // a cluster keeps its colour in every chart
        if (spec.ano && !c.ano) return;
        var isSel = selCluster(c);
        series.push({ name: "cluster " + c.id, d: c.res.d, y: c.res[key] || [], color: PALETTE[i % PALETTE.length], width: isSel ? 3.5 : 1.5, dim: any && !isSel, digits: spec.digits });
      });
      var lo = 0, hi = 0;
      series.forEach(function (s) { s.y.forEach(function (v) { if (isNum(v) && v < lo) lo = v; if (isNum(v) && v > hi) hi = v; }); });
      var yrange = spec.range;
      if (key === "cc_half" || key === "cc_ano") yrange = [lo, 1.02];
      else if (spec.rangemode === "tozero") yrange = [0, Math.max(hi, 1) * 1.05];
      resolutionChart(fig, { series: series, ylabel: spec.label, yrange: yrange, legend: series.length <= 10, hlines: spec.hlines });
    }
    function drawPerDataset(fig) {
      var key = fig.dataset.perds, members = selected ? selected.members : [];
      perDatasetChart(fig, names, inputs.map(function (d) { return d[key]; }), members, { ylabel: key === "d_min" ? "d_min (Å)" : "CC½", label: label });
    }
    var IMG = {
      scale: { label: "scale k", digits: 3 }, b: { label: "B (Å²)", digits: 2 }, r_merge: { label: "Rmerge (%)", digits: 1 },
      i_over_sigma: { label: "⟨I/σ(I)⟩", digits: 1 }, cc_rest: { label: "CC with the rest", digits: 3 }
    };
    function drawImage(fig) {  // the "Against image" charts of one cluster (its diagnostics)
      var key = fig.dataset.img, c = clusters.find(function (x) { return String(x.id) === fig.dataset.cluster; });
      var d = c && c.diag;
      if (!d) return clear(fig, "No per-image diagnostics for this cluster");
      if (key === "delta_cc_half") return deltaCcChart(fig, d.datasets, label);
      if (key === "completeness") return completenessChart(fig, d.curve, d.order);
      return imageChart(fig, d.datasets, key, IMG[key] || { label: key, digits: 3 });
    }
    function drawAny(fig) {
      if (fig.dataset.hist !== undefined) drawHist(fig);
      else if (fig.dataset.res !== undefined) drawRes(fig);
      else if (fig.dataset.perds !== undefined) drawPerDataset(fig);
      else if (fig.dataset.img !== undefined) drawImage(fig);
      fig.dataset.seen = "1";
    }
    lazy(Array.prototype.slice.call(document.querySelectorAll("figure[data-hist], figure[data-res], figure[data-perds], figure[data-img]")), drawAny);
    function redrawSeen() {  // after a selection: charts already shown follow it; the others will when shown
      document.querySelectorAll("figure[data-res][data-seen], figure[data-perds][data-seen]").forEach(drawAny);
    }

    var dendros = {};
    function onSelect(node, dg) {
      var cl = clusterFor(node);
      selected = { node: node, members: node.members || [], cluster: cl, method: dg.method };
      Object.keys(dendros).forEach(function (k) {
        var dd = dendros[k];
        if (dd && k !== dg.method) {
          var match = null;
          Object.keys(dd.byId).forEach(function (id) { if (match === null && sameSet(dd.byId[id].members || [], selected.members)) match = id; });
          dd.select(match, false);
        }
      });
      showSelection(node, cl, dg);
      redrawSeen();
    }
    function showSelection(node, cl, dg) {
      var box = document.getElementById("selection");
      if (!box) return;
      box.hidden = false;
      var members = node.members || [];
      document.getElementById("sel-title").innerHTML = (cl ? "Cluster " + esc(cl.id) + " (merged)" : node.leaf ? "Dataset " + esc(node.name) : "Node " + esc(node.id) + " (not merged)") + " · " + members.length + " datasets";
      var s = node.stats || {}, parts = [];
      if (!node.leaf && isNum(node.height)) parts.push("height " + fmt(node.height, 3));
      if (isNum(s.lcv)) parts.push("LCV " + fmt(s.lcv, 2) + " %", "aLCV " + fmt(s.alcv, 2) + " Å");
      if (isNum(s.cc_mean)) parts.push("CC mean " + fmt(s.cc_mean, 3), "CC min " + fmt(s.cc_min, 3));
      if (isNum(s.completeness)) parts.push("completeness " + fmt(s.completeness, 1) + " %");
      if (isNum(s.multiplicity)) parts.push("multiplicity " + fmt(s.multiplicity, 1));
      var whyNot = node.why_not || (data.not_merged && data.not_merged[node.id]);
      if (!cl && !node.leaf && whyNot) parts.push("not merged: " + esc(whyNot));
      if (cl && cl.error) parts.push('<b class="bad">merging failed: ' + esc(cl.error) + "</b>");
      else if (cl) parts.push("<b>merged: d<sub>min</sub> " + fmt(cl.d_min, 2) + " Å, CC½ " + fmt(cl.cc_half, 3) + ", completeness " + fmt(100 * cl.completeness, 1) + " %, multiplicity " + fmt(cl.multiplicity, 1) + "</b>");
      document.getElementById("sel-stats").innerHTML = "<p>" + parts.join(" · ") + "</p><p class='small members'>" + members.map(esc).join(", ") + "</p>";
      var files = [];
      members.forEach(function (m) { files = files.concat(byName[m] && byName[m].files && byName[m].files.length ? byName[m].files : [m]); });
      var cmd = cl ? cl.command : MX.mergeCommand(files, data.selection_dir + "_" + node.id, data.sample, dg.method, null);
      document.getElementById("sel-cmd").textContent = cmd;
      document.querySelectorAll("#input-table tbody tr").forEach(function (tr) { tr.classList.toggle("member", members.indexOf(tr.dataset.name) >= 0); });
      document.querySelectorAll("#cluster-table tbody tr").forEach(function (tr) { tr.classList.toggle("selrow", !!cl && tr.dataset.cluster === String(cl.id)); });
    }
    var copy = document.getElementById("sel-copy");
    if (copy) copy.addEventListener("click", function () {
      var t = document.getElementById("sel-cmd").textContent;
      if (navigator.clipboard) navigator.clipboard.writeText(t).then(function () { copy.textContent = "Copied"; }, function () { copy.textContent = "Select the text to copy"; });
    });
    document.querySelectorAll("figure[data-dendro]").forEach(function (fig) {
      var dg = (data.dendrograms || {})[fig.dataset.dendro];
      if (!dg) return;
      dendros[dg.method || fig.dataset.dendro] = MX.dendrogram(fig, dg, {
        onSelect: onSelect, clusterFor: clusterFor, whyNot: data.not_merged || {}, label: label,
        leafInfo: function (name) { var d = byName[name]; return d ? "cell " + (d.cell || []).map(function (v, i) { return fmt(v, i < 3 ? 2 : 1); }).join(" ") + "<br>d<sub>min</sub> " + fmt(d.d_min, 2) + " Å" : ""; }
      });
    });
    function selectCluster(tr) {
      var cl = clusters.find(function (c) { return String(c.id) === tr.dataset.cluster; });
      if (!cl) return;
      for (var k in dendros) {
        var dd = dendros[k];
        if (!dd) continue;
        var id = Object.keys(dd.byId).find(function (i) { return !dd.byId[i].leaf && String(i) === String(cl.id); });
        if (id !== undefined) { dd.select(id, true); return; }
      }
      onSelect({ id: cl.id, members: cl.members, stats: {} }, { method: data.method });
    }
    document.querySelectorAll("#cluster-table tbody tr").forEach(function (tr) {
      tr.tabIndex = 0;  // keyboard: Tab to a cluster row, Enter selects it
      tr.addEventListener("click", function () { selectCluster(tr); });
      tr.addEventListener("keydown", function (evt) { if (evt.key === "Enter") selectCluster(tr); });
    });
    var heat = document.getElementById("cc-heat"), cc0 = data.cc_table;
    if (heat && cc0 && cc0.cc && cc0.cc.length) {
      heat.hidden = false;
      var ccd = dendros.cc, order = ccd ? ccd.order.map(function (id) { return ccd.byId[id].name; }) : null;
      var cc = cc0, sorted = false;
      if (order && order.length === cc0.names.length) {
        var idx = order.map(function (nm) { return cc0.names.indexOf(nm); });
        if (idx.every(function (i) { return i >= 0; })) {
          cc = { names: idx.map(function (i) { return cc0.names[i]; }), cc: idx.map(function (i) { return idx.map(function (j) { return cc0.cc[i][j]; }); }) };
          sorted = true;
        }
      }
      lazy([heat], function (fig) {
        ccHeatmap(fig, cc, sorted, label);
        fig.querySelector("figcaption").textContent = "Pairwise CC between datasets: " + cc.cc.length + " datasets in " + (sorted ? "dendrogram" : "input") +
          " order. Colour scale fixed from CC " + CC_RANGE[0] + " (blue) to " + CC_RANGE[1] + " (red), the same on every merge page; a CC below " +
          CC_RANGE[0] + " is drawn as " + CC_RANGE[0] + "; grey = no common reflections. Hover a cell for the full names and the CC.";
      });
    }
  };

  window.MX = MX;
})();

/* Live dashboard: re-draws the counts and the table from /api/status every `ms` milliseconds. */
(function (MX) {
  "use strict";
  var ORDER = { running: 0, failed: 1, pending: 2, ok: 3, skipped: 4 };
  function draw(s) {
    var esc = MX.esc, fmt = MX.fmt, c = s.counts || {}, total = s.total || 0;
    document.getElementById("updated").textContent = "updated " + s.time + " from " + s.source;
    var cards = [["datasets", total, ""], ["processed", c.ok || 0, "ok"], ["failed", c.failed || 0, c.failed ? "bad" : ""],
      ["running", c.running || 0, "run"], ["pending", c.pending || 0, ""]];
    document.getElementById("cards").innerHTML = cards.map(function (k) {
      return '<div class="card ' + k[2] + '"><b data-count="' + k[0] + '">' + k[1] + "</b><span>" + k[0] + "</span></div>";
    }).join("");
    var bar = ["ok", "failed", "running"].map(function (k) {
      return '<div class="' + k + '" style="width:' + (total ? 100 * (c[k] || 0) / total : 0) + '%"></div>';
    }).join("");
    document.getElementById("progress").innerHTML = bar;
    var links = [];
    if (s.reports_written) links.push('<a href="/report/index.html">Collection report</a>', '<a href="/report/datasets.html">Dataset report</a>');
    (s.merges || []).forEach(function (m) { if (m.written) links.push('<a href="' + esc(m.href) + '">' + esc(m.label) + "</a>"); });
    document.getElementById("links").innerHTML = links.length ? "Reports: " + links.join(" · ") : '<span class="muted">Reports not written yet (mxflow run writes them when it ends; mxflow report OUT writes them now).</span>';
    var merged = s.merged || [];
    document.getElementById("merged-section").hidden = !merged.length;
    document.querySelector("#merged-table tbody").innerHTML = merged.map(function (m) {
      var n = m.datasets + (m.left_out ? " (" + m.left_out + " left out)" : "");
      return '<tr class="merged-' + esc(m.kind) + '"><td class="txt">' + esc(m.sample) + '</td><td class="txt"><span class="badge">' + esc(m.kind) + "</span></td><td>" + esc(n) +
        '</td><td class="txt">' + esc(m.space_group || "–") + "</td><td>" + fmt(m.d_min, 2) + "</td><td>" + fmt(m.cc_half, 3) + "</td><td>" + fmt(m.cc_half_outer, 3) +
        "</td><td>" + (m.completeness === null ? "–" : fmt(100 * m.completeness, 1)) + "</td><td>" + fmt(m.multiplicity, 1) + "</td><td>" + fmt(m.i_over_sigma, 1) +
        '</td><td class="txt">' + esc(m.updated) + '</td><td class="txt">' + (m.href ? '<a href="' + esc(m.href) + '">merged.mtz</a>' : "–") + "</td></tr>";
    }).join("");
    var rows = (s.datasets || []).slice().sort(function (a, b) { return (ORDER[a.status] === undefined ? 9 : ORDER[a.status]) - (ORDER[b.status] === undefined ? 9 : ORDER[b.status]); });
    var href = s.reports_written ? "/report/datasets.html#" : null;
    document.querySelector("#dash-table tbody").innerHTML = rows.map(function (d) {
      var name = href && d.status !== "pending" && d.status !== "running" ? '<a href="' + href + esc(d.anchor) + '">' + esc(d.name) + "</a>" : esc(d.name);
      return '<tr class="row-' + esc(d.status) + '"><td class="txt">' + name + '</td><td class="txt">' + esc(d.sample) + '</td><td class="txt">' + esc(d.pin) +
        '</td><td class="txt">' + esc(d.mode) + '</td><td class="txt">' + esc(d.wedge) + '</td><td class="txt"><span class="badge st-' + esc(d.status) + '">' + esc(d.status) + "</span>" +
        (d.problem ? ' <span class="problem">' + esc(d.problem) + "</span>" : "") + '</td><td class="txt">' + esc(d.space_group || "–") + "</td><td>" + fmt(d.d_min, 2) +
        "</td><td>" + (d.completeness === null ? "–" : fmt(100 * d.completeness, 1)) + "</td><td>" + fmt(d.cc_half, 3) + "</td><td>" + (d.wall_s === null ? "–" : fmt(d.wall_s / 60, 1)) + "</td></tr>";
    }).join("");
    document.getElementById("empty").hidden = total > 0;
    applyFilter();
  }
  function applyFilter() {
    var inp = document.getElementById("dash-filter");
    var q = inp.value.trim().toLowerCase().split(/\s+/).filter(Boolean);
    document.querySelectorAll("#dash-table tbody tr").forEach(function (r) {
      var t = r.textContent.toLowerCase();
      r.hidden = !q.every(function (w) { return t.indexOf(w) >= 0; });
    });
  }
  MX.dashboardPage = function (ms) {
    var node = document.getElementById("mx-data");
    draw(JSON.parse(node.textContent));
    document.getElementById("dash-filter").addEventListener("input", applyFilter);
    var live = document.getElementById("live");
    function poll() {
      fetch("/api/status", { cache: "no-store" }).then(function (r) {
        if (!r.ok) throw new Error("HTTP " + r.status);
        return r.json();
      }).then(function (s) { live.classList.remove("stale"); live.title = "updating"; draw(s); }, function () {
        live.classList.add("stale"); live.title = "server not reachable: showing the last state";
      }).then(function () { setTimeout(poll, ms); });
    }
    setTimeout(poll, ms);
  };
})(window.MX);
