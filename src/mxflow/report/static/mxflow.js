/* mxflow reports: small self-contained SVG charts, dendrograms, sortable tables.
 *
 * No network, no dependencies: every page embeds its numbers as JSON in
 * <script id="mx-data" type="application/json"> and calls one MX.*Page().
 * Resolution axes are linear in 1/d² and labelled in d (Å).
 */
(function () {
  "use strict";
  var NS = "http://www.w3.org/2000/svg";
  var MX = {};
  var PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22"];

  function svgEl(tag, attrs, parent) {
    var e = document.createElementNS(NS, tag);
    for (var k in attrs) if (attrs[k] !== undefined && attrs[k] !== null) e.setAttribute(k, attrs[k]);
    if (parent) parent.appendChild(e);
    return e;
  }
  function isNum(v) { return typeof v === "number" && isFinite(v); }
  function fmt(v, d) { return isNum(v) ? v.toFixed(d === undefined ? 2 : d) : "–"; }
  function esc(s) {
    return String(s).replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c];
    });
  }
  MX.fmt = fmt;
  MX.esc = esc;

  function pageData() {
    var node = document.getElementById("mx-data");
    return node ? JSON.parse(node.textContent) : {};
  }

  /* ---------------------------------------------------------------- tooltip */
  var tipNode = null;
  function tip(evt, html) {
    if (!tipNode) tipNode = document.getElementById("mx-tip");
    if (!tipNode) return;
    tipNode.innerHTML = html;
    tipNode.hidden = false;
    var x = evt.clientX + 14, y = evt.clientY + 14;
    var w = tipNode.offsetWidth, h = tipNode.offsetHeight;
    if (x + w > window.innerWidth - 8) x = evt.clientX - w - 14;
    if (y + h > window.innerHeight - 8) y = evt.clientY - h - 14;
    tipNode.style.left = Math.max(4, x) + "px";
    tipNode.style.top = Math.max(4, y) + "px";
  }
  function untip() { if (tipNode) tipNode.hidden = true; }
  MX.tip = tip;
  MX.untip = untip;

  /* ---------------------------------------------------------------- scales and axes */
  function niceStep(span, n) {
    var raw = span / Math.max(1, n), mag = Math.pow(10, Math.floor(Math.log10(raw)));
    var r = raw / mag;
    return (r < 1.5 ? 1 : r < 3 ? 2 : r < 7 ? 5 : 10) * mag;
  }
  function ticks(lo, hi, n) {
    if (!(hi > lo)) { hi = lo + 1; }
    var step = niceStep(hi - lo, n), out = [];
    for (var t = Math.ceil(lo / step - 1e-9) * step; t <= hi + step * 1e-9; t += step) out.push(+t.toPrecision(12));
    return out;
  }
  function extent(arrays, pad) {
    var lo = Infinity, hi = -Infinity;
    arrays.forEach(function (a) { (a || []).forEach(function (v) { if (isNum(v)) { lo = Math.min(lo, v); hi = Math.max(hi, v); } }); });
    if (lo === Infinity) return [0, 1];
    if (lo === hi) { lo -= 0.5; hi += 0.5; }
    var p = (hi - lo) * (pad || 0);
    return [lo - p, hi + p];
  }
  function linear(d0, d1, r0, r1) {
    var f = function (v) { return r0 + (v - d0) / (d1 - d0) * (r1 - r0); };
    f.inv = function (p) { return d0 + (p - r0) / (r1 - r0) * (d1 - d0); };
    return f;
  }

  /* A chart frame: svg with margins, x axis and one or two y axes. */
  function frame(fig, o) {
    var W = o.width || 380, H = o.height || 230;
    var m = { l: 48, r: o.y2 ? 48 : 14, t: o.legend ? 20 : 10, b: 36 };
    var svg = svgEl("svg", { viewBox: "0 0 " + W + " " + H, class: "mxsvg", role: "img" });
    fig.insertBefore(svg, fig.firstChild);
    var g = svgEl("g", {}, svg);
    var x = linear(o.x[0], o.x[1], m.l, W - m.r);
    var y = linear(o.y[0], o.y[1], H - m.b, m.t);
    var y2 = o.y2 ? linear(o.y2[0], o.y2[1], H - m.b, m.t) : null;
    svgEl("rect", { x: m.l, y: m.t, width: W - m.l - m.r, height: H - m.t - m.b, class: "plotbg" }, g);
    var xt = o.xticks || ticks(o.x[0], o.x[1], 6).map(function (t) { return [t, o.xfmt ? o.xfmt(t) : +t.toPrecision(6)]; });
    xt.forEach(function (t) {
      var px = x(t[0]);
      if (px < m.l - 0.5 || px > W - m.r + 0.5) return;
      svgEl("line", { x1: px, x2: px, y1: m.t, y2: H - m.b, class: "grid" }, g);
      svgEl("text", { x: px, y: H - m.b + 13, class: "tick", "text-anchor": "middle" }, g).textContent = t[1];
    });
    ticks(o.y[0], o.y[1], 5).forEach(function (t) {
      var py = y(t);
      if (py < m.t - 0.5 || py > H - m.b + 0.5) return;
      svgEl("line", { x1: m.l, x2: W - m.r, y1: py, y2: py, class: "grid" }, g);
      svgEl("text", { x: m.l - 4, y: py + 3, class: "tick", "text-anchor": "end" }, g).textContent = +t.toPrecision(6);
    });
    if (y2) ticks(o.y2[0], o.y2[1], 5).forEach(function (t) {
      var py = y2(t);
      if (py < m.t - 0.5 || py > H - m.b + 0.5) return;
      svgEl("text", { x: W - m.r + 4, y: py + 3, class: "tick t2", "text-anchor": "start" }, g).textContent = +t.toPrecision(6);
    });
    if (o.xlabel) svgEl("text", { x: (m.l + W - m.r) / 2, y: H - 4, class: "axlabel", "text-anchor": "middle" }, g).textContent = o.xlabel;
    if (o.ylabel) svgEl("text", { x: 11, y: (m.t + H - m.b) / 2, class: "axlabel", "text-anchor": "middle", transform: "rotate(-90 11 " + (m.t + H - m.b) / 2 + ")", fill: o.ycolor }, g).textContent = o.ylabel;
    if (o.y2label) svgEl("text", { x: W - 8, y: (m.t + H - m.b) / 2, class: "axlabel", "text-anchor": "middle", transform: "rotate(-90 " + (W - 8) + " " + (m.t + H - m.b) / 2 + ")", fill: o.y2color }, g).textContent = o.y2label;
    return { svg: svg, g: g, x: x, y: y, y2: y2, m: m, W: W, H: H };
  }

  function pathFor(xs, ys, x, y) {
    var d = "", pen = false;
    for (var i = 0; i < xs.length; i++) {
      if (!isNum(xs[i]) || !isNum(ys[i])) { pen = false; continue; }
      d += (pen ? "L" : "M") + x(xs[i]).toFixed(1) + "," + y(ys[i]).toFixed(1);
      pen = true;
    }
    return d;
  }

  /* Line chart.  opts: {series: [{name, x, y, color, width, axis: 'y'|'y2', markers}],
   * resolution: true when x values are d (Å), xlabel, ylabel, y2label, yrange, y2range} */
  MX.lineChart = function (fig, opts) {
    var series = opts.series.filter(function (s) { return s.y.some(isNum); });
    if (!series.length) { fig.classList.add("empty"); return null; }
    var tx = opts.resolution ? function (d) { return isNum(d) && d > 0 ? 1 / (d * d) : null; } : function (v) { return v; };
    series.forEach(function (s) { s.px = s.x.map(tx); });
    var xr = extent(series.map(function (s) { return s.px; }), 0.02);
    if (opts.resolution) xr[0] = Math.max(0, xr[0]);
    var left = series.filter(function (s) { return s.axis !== "y2"; }), right = series.filter(function (s) { return s.axis === "y2"; });
    var yr = opts.yrange || extent(left.map(function (s) { return s.y; }), 0.05);
    var y2r = right.length ? (opts.y2range || extent(right.map(function (s) { return s.y; }), 0.05)) : null;
    var xticks = null;
    if (opts.resolution) {
      xticks = ticks(xr[0], xr[1], 5).filter(function (t) { return t > 0; }).map(function (t) { return [t, (1 / Math.sqrt(t)).toFixed(2)]; });
    }
    var f = frame(fig, {
      x: xr, y: yr, y2: y2r, xticks: xticks, xlabel: opts.xlabel || (opts.resolution ? "resolution d (Å)" : ""),
      ylabel: opts.ylabel, y2label: opts.y2label, ycolor: left[0] && left[0].color, y2color: right[0] && right[0].color,
      width: opts.width, height: opts.height, legend: series.length > 1 && opts.legend !== false
    });
    series.forEach(function (s, i) {
      var yy = s.axis === "y2" ? f.y2 : f.y;
      var color = s.color || PALETTE[i % PALETTE.length];
      svgEl("path", { d: pathFor(s.px, s.y, f.x, yy), class: "line" + (s.dim ? " dim" : ""), stroke: color, "stroke-width": s.width || 1.8, "stroke-dasharray": s.dash }, f.g);
      if (s.markers !== false && s.px.length <= 60) s.px.forEach(function (px, j) {
        if (isNum(px) && isNum(s.y[j])) svgEl("circle", { cx: f.x(px), cy: yy(s.y[j]), r: s.dim ? 1.6 : 2.4, fill: color, class: s.dim ? "dim" : "" }, f.g);
      });
    });
    if (series.length > 1 && opts.legend !== false) {
      var lg = svgEl("g", { class: "legend" }, f.g), lx = f.m.l;
      series.forEach(function (s, i) {
        var c = s.color || PALETTE[i % PALETTE.length];
        svgEl("line", { x1: lx, x2: lx + 14, y1: 8, y2: 8, stroke: c, "stroke-width": 2.5 }, lg);
        var t = svgEl("text", { x: lx + 18, y: 11, class: "tick" }, lg);
        t.textContent = s.name;
        lx += 26 + 5.6 * s.name.length;
      });
    }
    hoverGuide(f, series, function (i) {
      var rows = series.map(function (s, k) {
        return '<span style="color:' + (s.color || PALETTE[k % PALETTE.length]) + '">■</span> ' + esc(s.name) + ": <b>" + fmt(s.y[i], opts.digits || 3) + "</b>";
      });
      var xv = series[0].x[i];
      return (opts.resolution ? "d = " + fmt(xv, 2) + " Å" : (opts.xname || "x") + " = " + xv) + "<br>" + rows.join("<br>");
    });
    return f;
  };

  /* A vertical guide line following the mouse, snapping to the nearest x of the first series. */
  function hoverGuide(f, series, html) {
    var px = series[0].px;
    var guide = svgEl("line", { y1: f.m.t, y2: f.H - f.m.b, class: "guide", visibility: "hidden" }, f.g);
    var hit = svgEl("rect", { x: f.m.l, y: f.m.t, width: f.W - f.m.l - f.m.r, height: f.H - f.m.t - f.m.b, class: "hit" }, f.g);
    hit.addEventListener("mousemove", function (evt) {
      var pt = f.svg.createSVGPoint(); pt.x = evt.clientX; pt.y = evt.clientY;
      var loc = pt.matrixTransform(f.svg.getScreenCTM().inverse());
      var xv = f.x.inv(loc.x), best = -1, bd = Infinity;
      for (var i = 0; i < px.length; i++) if (isNum(px[i]) && Math.abs(px[i] - xv) < bd) { bd = Math.abs(px[i] - xv); best = i; }
      if (best < 0) return;
      guide.setAttribute("x1", f.x(px[best])); guide.setAttribute("x2", f.x(px[best]));
      guide.setAttribute("visibility", "visible");
      tip(evt, html(best));
    });
    hit.addEventListener("mouseleave", function () { guide.setAttribute("visibility", "hidden"); untip(); });
  }

  /* Spots per frame: a filled step outline (one path, fast for thousands of frames). */
  MX.framesChart = function (fig, pairs, opts) {
    opts = opts || {};
    if (!pairs || !pairs.length) return null;
    var xs = pairs.map(function (p) { return p[0]; }), ys = pairs.map(function (p) { return p[1]; });
    var ymax = Math.max.apply(null, ys.concat([1]));
    var f = frame(fig, { x: [xs[0] - 0.5, xs[xs.length - 1] + 0.5], y: [0, ymax * 1.08], xlabel: opts.xlabel || "frame", ylabel: opts.ylabel || "spots", width: opts.width, height: opts.height });
    var base = f.y(0), d = "M" + f.x(xs[0] - 0.5).toFixed(1) + "," + base;
    for (var i = 0; i < xs.length; i++) d += "V" + f.y(ys[i]).toFixed(1) + "H" + f.x(xs[i] + 0.5).toFixed(1);
    d += "V" + base + "Z";
    svgEl("path", { d: d, class: "area" }, f.g);
    hoverGuide(f, [{ px: xs }], function (i) { return "frame " + xs[i] + ": <b>" + ys[i] + "</b> " + (opts.ylabel || "spots"); });
    return f;
  };

  /* Histogram of values (nulls ignored). */
  MX.histogram = function (fig, values, opts) {
    opts = opts || {};
    var v = values.filter(isNum);
    if (!v.length) { fig.classList.add("empty"); return null; }
    var lo = Math.min.apply(null, v), hi = Math.max.apply(null, v);
    if (hi - lo < 1e-6) { lo -= 0.5; hi += 0.5; }
    var nb = Math.max(5, Math.min(30, Math.ceil(Math.sqrt(v.length) * 1.5)));
    var w = (hi - lo) / nb, counts = new Array(nb).fill(0);
    v.forEach(function (x) { counts[Math.min(nb - 1, Math.floor((x - lo) / w))]++; });
    var f = frame(fig, { x: [lo, hi], y: [0, Math.max.apply(null, counts) * 1.1], ylabel: "datasets", width: opts.width || 260, height: opts.height || 150 });
    counts.forEach(function (c, i) {
      if (!c) return;
      var r = svgEl("rect", { x: f.x(lo + i * w) + 0.5, width: Math.max(1, f.x(lo + (i + 1) * w) - f.x(lo + i * w) - 1), y: f.y(c), height: f.y(0) - f.y(c), class: "bar" }, f.g);
      r.addEventListener("mousemove", function (evt) { tip(evt, (lo + i * w).toFixed(2) + " – " + (lo + (i + 1) * w).toFixed(2) + ": <b>" + c + "</b>"); });
      r.addEventListener("mouseleave", untip);
    });
    return f;
  };

  /* Scatter of one value per dataset: filled markers for `selected` names. */
  MX.perDatasetChart = function (fig, names, values, selected, opts) {
    opts = opts || {};
    fig.querySelectorAll("svg").forEach(function (s) { s.remove(); });
    var xs = names.map(function (_, i) { return i; });
    if (!values.some(isNum)) { fig.classList.add("empty"); return null; }
    fig.classList.remove("empty");
    var f = frame(fig, { x: [-0.5, names.length - 0.5], y: opts.yrange || extent([values], 0.08), xlabel: opts.xlabel || "dataset #", ylabel: opts.ylabel, width: opts.width, height: opts.height });
    var sel = new Set(selected || []);
    xs.forEach(function (i) {
      if (!isNum(values[i])) return;
      svgEl("circle", { cx: f.x(i), cy: f.y(values[i]), r: 3.2, class: sel.has(names[i]) ? "pt sel" : "pt" }, f.g);
    });
    hoverGuide(f, [{ px: xs }], function (i) { return "#" + i + " " + esc(names[i]) + ": <b>" + fmt(values[i], opts.digits || 3) + "</b>" + (sel.has(names[i]) ? " (in selection)" : ""); });
    return f;
  };

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

  /* ---------------------------------------------------------------- lazy drawing */
  function lazy(nodes, draw) {
    var pending = new Set(nodes);
    function run(n) { if (pending.has(n)) { pending.delete(n); draw(n); } }
    if ("IntersectionObserver" in window) {
      var io = new IntersectionObserver(function (ents) {
        ents.forEach(function (e) { if (e.isIntersecting) { io.unobserve(e.target); run(e.target); } });
      }, { rootMargin: "400px" });
      nodes.forEach(function (n) { io.observe(n); });
    } else nodes.forEach(run);
    window.addEventListener("beforeprint", function () { Array.from(pending).forEach(run); });
  }

  /* ---------------------------------------------------------------- dataset page */
  MX.datasetsPage = function () {
    var data = pageData();
    MX.tablesInit();
    lazy(Array.prototype.slice.call(document.querySelectorAll("figure[data-chart]")), function (fig) {
      var c = data[fig.dataset.key];
      if (!c) return;
      var kind = fig.dataset.chart;
      if (kind === "spots") MX.framesChart(fig, c.spots);
      else if (kind === "cc_isig") MX.lineChart(fig, {
        resolution: true, ylabel: "CC½", y2label: "⟨I/σ(I)⟩", yrange: [Math.min(0, Math.min.apply(null, c.cc_half.filter(isNum).concat([0]))), 1.0],
        series: [{ name: "CC½", x: c.d, y: c.cc_half, color: PALETTE[0] }, { name: "⟨I/σ⟩", x: c.d, y: c.i_over_sigma, color: PALETTE[1], axis: "y2" }]
      });
      else if (kind === "cmpl_mult") MX.lineChart(fig, {
        resolution: true, ylabel: "completeness (%)", y2label: "multiplicity", yrange: [0, 105],
        series: [{ name: "completeness", x: c.d, y: c.completeness, color: PALETTE[2] }, { name: "multiplicity", x: c.d, y: c.multiplicity, color: PALETTE[3], axis: "y2" }]
      });
      fig.dataset.drawn = "1";
    });
  };

  /* ---------------------------------------------------------------- dendrogram */
  /* dg: {method, leaves: [{id, name}], nodes: [{id, children: [a, b], height, members, stats, merged}]}
   * (scipy numbering: leaves 0..n-1, merges n..2n-2).  Returns {select(id), svg}. */
  MX.dendrogram = function (fig, dg, opts) {
    opts = opts || {};
    var leaves = dg.leaves || [], nodes = dg.nodes || [];
    var byId = {}, isChild = {};
    leaves.forEach(function (l) { byId[l.id] = { id: l.id, leaf: true, name: l.name, height: 0, members: [l.name] }; });
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
    var nl = order.length, showLabels = nl <= 60;
    var W = Math.max(fig.clientWidth || 900, 600), H = showLabels ? 360 : 300;
    var m = { l: 56, r: 16, t: 14, b: showLabels ? 96 : 28 };
    var maxH = Math.max.apply(null, nodes.map(function (n) { return n.height || 0; }).concat([1e-9]));
    var svg = svgEl("svg", { viewBox: "0 0 " + W + " " + H, class: "mxsvg dendro-svg", role: "img" });
    fig.insertBefore(svg, fig.firstChild);
    var g = svgEl("g", {}, svg);
    var x = linear(-0.5, nl - 0.5, m.l, W - m.r), y = linear(0, maxH * 1.05, H - m.b, m.t);
    ticks(0, maxH * 1.05, 5).forEach(function (t) {
      svgEl("line", { x1: m.l, x2: W - m.r, y1: y(t), y2: y(t), class: "grid" }, g);
      svgEl("text", { x: m.l - 4, y: y(t) + 3, class: "tick", "text-anchor": "end" }, g).textContent = +t.toPrecision(4);
    });
    svgEl("text", { x: 12, y: (m.t + H - m.b) / 2, class: "axlabel", "text-anchor": "middle", transform: "rotate(-90 12 " + (m.t + H - m.b) / 2 + ")" }, g).textContent = dg.method === "cc" ? "1 − CC" : "height (ClH)";
    var pos = {};
    order.forEach(function (id, i) { pos[id] = x(i); });
    // post-order positions of internal nodes
    function place(n) {
      if (pos[n.id] !== undefined) return pos[n.id];
      var xs = (n.children || []).map(function (c) { return place(byId[c]); });
      pos[n.id] = xs.reduce(function (a, b) { return a + b; }, 0) / Math.max(1, xs.length);
      return pos[n.id];
    }
    nodes.slice().sort(function (a, b) { return a.height - b.height; }).forEach(place);
    var linkLayer = svgEl("g", { class: "links" }, g), nodeLayer = svgEl("g", { class: "nodes" }, g);
    var linkOf = {};
    nodes.forEach(function (n) {
      (n.children || []).forEach(function (c) {
        var ch = byId[c];
        if (!ch) return;
        var p = svgEl("path", { d: "M" + pos[c].toFixed(1) + "," + y(ch.height || 0).toFixed(1) + "V" + y(n.height).toFixed(1) + "H" + pos[n.id].toFixed(1), class: "link" }, linkLayer);
        linkOf[c] = p;
      });
    });
    var circles = {};
    function statsHtml(n) {
      var s = n.stats || {}, rows = [];
      rows.push("<b>" + (n.leaf ? esc(n.name) : "Node " + n.id) + "</b>" + (n.merged ? ' <span class="tag merged">merged</span>' : ""));
      if (!n.leaf) {
        rows.push((n.members || []).length + " datasets · height " + fmt(n.height, 3));
        if (isNum(s.LCV)) rows.push("LCV " + fmt(s.LCV, 2) + " % · aLCV " + fmt(s.aLCV, 2) + " Å");
        if (isNum(s.cc_mean)) rows.push("CC mean " + fmt(s.cc_mean, 3) + " · CC min " + fmt(s.cc_min, 3));
        if (isNum(s.completeness)) rows.push("completeness " + fmt(s.completeness > 1.001 ? s.completeness : 100 * s.completeness, 1) + " %");
        if (isNum(s.multiplicity)) rows.push("multiplicity " + fmt(s.multiplicity, 1));
        var cl = opts.clusterFor ? opts.clusterFor(n) : null;
        if (cl && cl.error) rows.push('<span class="bad">merging failed: ' + esc(cl.error) + "</span>");
        else if (cl) rows.push("merged: d<sub>min</sub> " + fmt(cl.d_min, 2) + " Å · CC½ " + fmt(cl.cc_half, 3));
        else if (opts.whyNot && opts.whyNot[n.id]) rows.push("not merged: " + esc(opts.whyNot[n.id]));
      } else if (opts.leafInfo) rows.push(opts.leafInfo(n.name));
      return rows.join("<br>");
    }
    Object.keys(byId).forEach(function (k) {
      var n = byId[k];
      if (n.leaf) {
        var lx = pos[n.id];
        var c = svgEl("circle", { cx: lx, cy: y(0), r: showLabels ? 3 : 2, class: "leaf", "data-node": n.id }, nodeLayer);
        circles[n.id] = c;
        if (showLabels) svgEl("text", { x: lx, y: y(0) + 8, class: "leaflabel", transform: "rotate(60 " + lx + " " + (y(0) + 8) + ")" }, g).textContent = n.name;
      } else {
        circles[n.id] = svgEl("circle", { cx: pos[n.id], cy: y(n.height), r: n.merged ? 6 : 4, class: "node" + (n.merged ? " merged" : ""), "data-node": n.id, tabindex: 0 }, nodeLayer);
      }
      var el = circles[n.id];
      el.addEventListener("mousemove", function (evt) { tip(evt, statsHtml(n)); });
      el.addEventListener("mouseleave", untip);
      el.addEventListener("click", function () { select(n.id, true); });
      el.addEventListener("keydown", function (evt) { if (evt.key === "Enter") select(n.id, true); });
    });
    function subtree(id) {
      var out = [], st = [id];
      while (st.length) { var k = st.pop(); out.push(k); var n = byId[k]; if (n && n.children) n.children.forEach(function (c) { st.push(c); }); }
      return out;
    }
    var current = null;
    function select(id, notify) {
      Object.keys(linkOf).forEach(function (k) { linkOf[k].classList.remove("sel"); });
      Object.keys(circles).forEach(function (k) { circles[k].classList.remove("sel"); });
      current = id;
      if (id === null || byId[id] === undefined) return;
      subtree(id).forEach(function (k) { if (linkOf[k]) linkOf[k].classList.add("sel"); if (circles[k]) circles[k].classList.add("sel"); });
      if (notify && opts.onSelect) opts.onSelect(byId[id], dg);
    }
    return { select: select, byId: byId, svg: svg, order: order, current: function () { return current; }, statsHtml: statsHtml };
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
    var byName = {};
    inputs.forEach(function (d) { byName[d.name] = d; });
    var clusters = data.clusters || [];
    var dendroCount = Object.keys(data.dendrograms || {}).length;
    function sameSet(a, b) { if (a.length !== b.length) return false; var s = new Set(a); return b.every(function (x) { return s.has(x); }); }
    function clusterFor(node) {
      // a merged cluster keeps its dendrogram node id (its members may be fewer after run_03 rejections)
      if (node.merged || !dendroCount) for (var i = 0; i < clusters.length; i++) if (String(clusters[i].id) === String(node.id)) return clusters[i];
      for (var j = 0; j < clusters.length; j++) if (sameSet(clusters[j].members, node.members || [])) return clusters[j];
      return null;
    }
    // cell histograms
    document.querySelectorAll("figure[data-hist]").forEach(function (fig) {
      var k = +fig.dataset.hist;
      MX.histogram(fig, inputs.map(function (d) { return d.cell ? d.cell[k] : null; }));
    });
    // resolution plots: all clusters, selected thick
    var selected = null;
    function drawRes() {
      document.querySelectorAll("figure[data-res]").forEach(function (fig) {
        fig.querySelectorAll("svg").forEach(function (s) { s.remove(); });
        var key = fig.dataset.res;
        var series = clusters.map(function (c, i) {
          var isSel = selected && selected.cluster && String(selected.cluster.id) === String(c.id);
          return { name: "cluster " + c.id, x: c.res.d, y: c.res[key], color: PALETTE[i % PALETTE.length], width: isSel ? 3.5 : 1.5, dim: selected && selected.cluster && !isSel };
        });
        MX.lineChart(fig, { resolution: true, series: series, ylabel: fig.querySelector("figcaption").textContent, yrange: key === "completeness" ? [0, 105] : key === "cc_half" ? [Math.min(0, extent(series.map(function (s) { return s.y; }))[0]), 1] : null, legend: clusters.length <= 10 });
      });
    }
    function drawPerDataset() {
      var members = selected ? selected.members : [];
      document.querySelectorAll("figure[data-perds]").forEach(function (fig) {
        var key = fig.dataset.perds;
        if (key === "cluster_cc") {
          var pd = selected && selected.cluster && selected.cluster.per_dataset;
          fig.querySelectorAll("svg").forEach(function (s) { s.remove(); });
          if (pd && pd.length) {
            var stat = Object.keys(pd[0]).filter(function (k) { return k !== "name" && isNum(pd[0][k]); })[0];
            var vals = names.map(function (n) { var r = pd.find(function (p) { return p.name === n; }); return r ? r[stat] : null; });
            fig.querySelector("figcaption").textContent = stat + " of each dataset in cluster " + selected.cluster.id;
            MX.perDatasetChart(fig, names, vals, members, { ylabel: stat });
          } else {
            fig.classList.add("empty");
            fig.querySelector("figcaption").textContent = selected ? "No per-dataset statistics were recorded for this selection" : "Select a merged cluster to see its per-dataset statistics";
          }
          return;
        }
        MX.perDatasetChart(fig, names, inputs.map(function (d) { return d[key]; }), members, { ylabel: key === "d_min" ? "d_min (Å)" : "CC½" });
      });
      document.querySelectorAll("figure[data-perframe]").forEach(function (fig) {
        fig.querySelectorAll("svg").forEach(function (s) { s.remove(); });
        var pf = selected && selected.cluster && selected.cluster.per_frame;
        if (pf && pf.length) {
          var stat = Object.keys(pf[0]).filter(function (k) { return k !== "frame" && k !== "name" && isNum(pf[0][k]); })[0];
          fig.classList.remove("empty");
          fig.querySelector("figcaption").textContent = stat + " by frame (cluster " + selected.cluster.id + ")";
          MX.framesChart(fig, pf.map(function (p, i) { return [isNum(p.frame) ? p.frame : i + 1, p[stat]]; }), { ylabel: stat, xlabel: "frame (in merging order)" });
        } else {
          fig.classList.add("empty");
          fig.querySelector("figcaption").textContent = selected ? "No per-frame statistics were recorded for this selection" : "Select a merged cluster to see its per-frame statistics";
        }
      });
    }
    var dendros = {};
    function onSelect(node, dg) {
      var cl = clusterFor(node);
      selected = { node: node, members: node.members || [], cluster: cl, method: dg.method };
      Object.keys(dendros).forEach(function (k) {
        var dd = dendros[k];
        if (dd && k !== dg.method) {
          var match = null;
          Object.keys(dd.byId).forEach(function (id) { if (!match && sameSet(dd.byId[id].members || [], selected.members)) match = id; });
          dd.select(match, false);
        }
      });
      showSelection(node, cl, dg);
      drawRes();
      drawPerDataset();
    }
    function showSelection(node, cl, dg) {
      var box = document.getElementById("selection");
      if (!box) return;
      box.hidden = false;
      var members = node.members || [];
      document.getElementById("sel-title").innerHTML = (cl ? "Cluster " + esc(cl.id) + " (merged)" : node.leaf ? "Dataset " + esc(node.name) : "Node " + esc(node.id) + " (not merged)") + " · " + members.length + " datasets";
      var s = node.stats || {}, parts = [];
      if (!node.leaf) parts.push("height " + fmt(node.height, 3));
      if (isNum(s.LCV)) parts.push("LCV " + fmt(s.LCV, 2) + " %", "aLCV " + fmt(s.aLCV, 2) + " Å");
      if (isNum(s.cc_mean)) parts.push("CC mean " + fmt(s.cc_mean, 3), "CC min " + fmt(s.cc_min, 3));
      if (isNum(s.completeness)) parts.push("completeness " + fmt(s.completeness > 1.001 ? s.completeness : 100 * s.completeness, 1) + " %");
      if (isNum(s.multiplicity)) parts.push("multiplicity " + fmt(s.multiplicity, 1));
      if (!cl && !node.leaf && data.not_merged && data.not_merged[node.id]) parts.push("not merged: " + esc(data.not_merged[node.id]));
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
        onSelect: onSelect, clusterFor: clusterFor, whyNot: data.not_merged || {},
        leafInfo: function (name) { var d = byName[name]; return d ? "cell " + (d.cell || []).map(function (v, i) { return fmt(v, i < 3 ? 2 : 1); }).join(" ") + "<br>d<sub>min</sub> " + fmt(d.d_min, 2) + " Å" : ""; }
      });
    });
    document.querySelectorAll("#cluster-table tbody tr").forEach(function (tr) {
      tr.addEventListener("click", function () {
        var cl = clusters.find(function (c) { return String(c.id) === tr.dataset.cluster; });
        if (!cl) return;
        for (var k in dendros) {
          var dd = dendros[k];
          if (!dd) continue;
          var id = Object.keys(dd.byId).find(function (i) { return dd.byId[i].merged && String(i) === String(cl.id); });
          if (id === undefined) id = Object.keys(dd.byId).find(function (i) { return sameSet(dd.byId[i].members || [], cl.members); });
          if (id !== undefined) { dd.select(id, true); return; }
        }
        onSelect({ id: cl.id, members: cl.members, stats: {} }, { method: data.method });
      });
    });
    var ccd = dendros.cc;
    drawCcHeat(data.cc_table, ccd ? ccd.order.map(function (id) { return ccd.byId[id].name; }) : null);
    drawRes();
    drawPerDataset();
  };

  function drawCcHeat(cc0, order) {
    var canvas = document.getElementById("cc-heat");
    if (!canvas || !cc0 || !cc0.cc || !cc0.cc.length) return;
    canvas.parentNode.hidden = false;
    var cc = cc0, sorted = false;
    if (order && order.length === cc0.names.length) {
      var idx = order.map(function (nm) { return cc0.names.indexOf(nm); });
      if (idx.every(function (i) { return i >= 0; })) {
        cc = { names: idx.map(function (i) { return cc0.names[i]; }), cc: idx.map(function (i) { return idx.map(function (j) { return cc0.cc[i][j]; }); }) };
        sorted = true;
      }
    }
    var n = cc.cc.length, cell = Math.max(2, Math.min(12, Math.floor(480 / n)));
    canvas.width = canvas.height = n * cell;
    var ctx = canvas.getContext("2d");
    for (var i = 0; i < n; i++) for (var j = 0; j < n; j++) {
      var v = cc.cc[i][j];
      ctx.fillStyle = isNum(v) ? "hsl(" + (220 - 220 * Math.max(0, Math.min(1, v))) + ",70%," + (88 - 40 * Math.max(0, v)) + "%)" : "#eee";
      ctx.fillRect(j * cell, i * cell, cell, cell);
    }
    canvas.addEventListener("mousemove", function (evt) {
      var r = canvas.getBoundingClientRect(), j = Math.floor((evt.clientX - r.left) / r.width * n), i = Math.floor((evt.clientY - r.top) / r.height * n);
      if (i >= 0 && j >= 0 && i < n && j < n) tip(evt, esc(cc.names[i]) + " × " + esc(cc.names[j]) + ": CC <b>" + fmt(cc.cc[i][j], 3) + "</b>");
    });
    canvas.addEventListener("mouseleave", untip);
    var note = document.getElementById("cc-heat-note");
    if (note) note.textContent = n + " datasets, " + (sorted ? "in dendrogram order" : "in input order") + "; blue = low CC, red = high CC, grey = no common reflections.";
  }

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
    document.getElementById("links").innerHTML = links.length ? "Reports: " + links.join(" · ") + (s.regenerating ? ' <span class="muted">(rewriting…)</span>' : "") : '<span class="muted">Reports not written yet.</span>';
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
