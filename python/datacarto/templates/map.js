(function () {
"use strict";
const D = JSON.parse(document.getElementById("dc-data").textContent);
const TYPES = {f4: Float32Array, f8: Float64Array, i4: Int32Array, u1: Uint8Array};
function decode(c) {
  const s = atob(c.b64), bytes = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) bytes[i] = s.charCodeAt(i);
  return new TYPES[c.dtype](bytes.buffer);
}
const n = D.n, cols = {};
for (const k in D.columns) cols[k] = decode(D.columns[k]);
const perRow = new Set(D.per_row);
const TABLE_ROWS = 1000;
const CORRECTNESS_SCALE = [[0, "#d7301f"], [0.5, "#3f3f3f"], [1, "#2166ac"]];
const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
  "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2", "#c7c7c7", "#dbdb8d", "#9edae5"];
const NAMED = {easy: "#2166ac", ambiguous: "#3f3f3f", hard: "#d7301f", unassigned: "#b0b0b0", "false": "#9e9e9e", "true": "#d7301f"};
let view = 0, colour = D.color, selection = [], sortKey = null, sortDir = 1;

function col(name) { const a = cols[name]; return perRow.has(name) ? a.subarray(view * n, (view + 1) * n) : a; }
function esc(s) { return String(s).replace(/[&<>"']/g, c => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"})[c]); }
function fmt(name, v) {
  if (D.categorical[name]) return D.categorical[name][v] !== undefined ? D.categorical[name][v] : String(v);
  if (cols[name] instanceof Float32Array || cols[name] instanceof Float64Array) return Number.isFinite(v) ? String(+v.toPrecision(6)) : "";
  return String(v);
}
// the table / CSV columns: [name, getter(i) -> display string, isNumber(i)]
const NUMBER = () => true, TEXT = () => false;
function fields() {
  const f = [["example", i => String(cols.example[i]), NUMBER]];
  if (D.views) f.push(["label", () => D.views[view], TEXT]);
  if (cols.gold) f.push(["gold", i => fmt("gold", col("gold")[i]), TEXT]);
  if (D.text) f.push([D.text_column, i => D.text[i], TEXT]);
  if (cols.region) f.push(["region", i => fmt("region", col("region")[i]), TEXT]);
  for (const s of D.statistics) f.push([s, i => fmt(s, col(s)[i]), i => !D.categorical[s]]);
  for (const m in D.meta) f.push([m, i => D.meta[m][i] === null ? "" : String(D.meta[m][i]), i => typeof D.meta[m][i] === "number"]);
  return f;
}
function plotText(s) { return String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;"); }
function pct(k, total) { return total ? " (" + (100 * k / total).toFixed(0) + "%)" : ""; }

const gd = document.getElementById("dc-plot"), tip = document.getElementById("dc-tip");

function marker() {
  const v = col(colour), size = n <= 1000 ? 7 : n <= 10000 ? 5 : n <= 100000 ? 3 : 2;
  const legend = document.getElementById("dc-legend");
  if (D.categorical[colour]) {
    const levels = D.categorical[colour], palette = levels.map((l, k) => NAMED[l] || PALETTE[k % PALETTE.length]);
    const c = new Array(n);
    for (let i = 0; i < n; i++) c[i] = palette[v[i]] || "#999999";
    legend.innerHTML = levels.map((l, k) => '<span class="swatch" style="background:' + palette[k] + '"></span>' + esc(l)).join("");
    return {color: c, size: size, opacity: 0.75, showscale: false};
  }
  legend.textContent = "";
  let lo = Infinity, hi = -Infinity;
  for (let i = 0; i < n; i++) { const x = v[i]; if (Number.isFinite(x)) { if (x < lo) lo = x; if (x > hi) hi = x; } }
  if (!Number.isFinite(lo)) { lo = 0; hi = 1; }
  if (hi === lo) hi = lo + 1;
  return {color: v, colorscale: colour === "correctness" ? CORRECTNESS_SCALE : "Viridis", cmin: lo, cmax: hi,
          showscale: true, colorbar: {title: {text: colour}, thickness: 14}, size: size, opacity: 0.75};
}
// trace 0 is always the examples; the region rule's boundaries follow as line traces
function trace() {
  return {type: "scattergl", mode: "markers", x: col("variability"), y: col("confidence"), marker: marker(),
          hoverinfo: "none", showlegend: false, selectedpoints: selection.length ? selection : null,
          selected: {marker: {opacity: 1}}, unselected: {marker: {opacity: 0.2}}};
}
function boundaryTraces() {
  return D.view_info[view].boundaries.map(b => ({
    type: "scatter", mode: "lines", x: b.x, y: b.y, name: plotText(b.text), hoverinfo: "skip",
    line: {color: NAMED[b.region], width: 2, dash: "dash"}, showlegend: true}));
}
// each region's name and count on its cloud (the region's point nearest its median), as in the PNG
function regionLabels() {
  const info = D.view_info[view], out = [];
  for (const region in info.anchors) {
    const [x, y] = info.anchors[region];
    out.push({text: REGION_TEXT[region] + "<br>" + info.counts[region].toLocaleString() + pct(info.counts[region], info.total),
              x: x, y: y, xref: "x", yref: "y", showarrow: false, font: {size: 13},
              xanchor: x < 0.15 * D.xmax ? "left" : x > 0.85 * D.xmax ? "right" : "center",
              yanchor: y > 0.9 ? "top" : y < 0.1 ? "bottom" : "middle",
              bgcolor: "rgba(255,255,255,0.8)", bordercolor: NAMED[region], borderwidth: 2, borderpad: 4});
  }
  return out;
}
const REGION_TEXT = {easy: "easy-to-learn", ambiguous: "ambiguous", hard: "hard-to-learn"};
const layout = {
  dragmode: "lasso", hovermode: "closest", uirevision: "keep",
  margin: {l: 60, r: 20, t: 20, b: 50},
  xaxis: {title: {text: "variability"}, range: [0, D.xmax], zeroline: false},
  yaxis: {title: {text: "confidence"}, range: [-0.02, 1.02], zeroline: false},
  legend: {x: 0.995, y: 0.995, xanchor: "right", yanchor: "top", bgcolor: "rgba(255,255,255,0.85)", font: {size: 11},
           title: {text: D.rule ? plotText("regions: " + D.rule + " rule") : ""}},
};
const config = {responsive: true, displaylogo: false, scrollZoom: true};

// gd.layout after the first draw: it carries the user's zoom and selection outline
function redraw() {
  const l = gd.layout || layout;
  l.annotations = regionLabels();
  return Plotly.react(gd, [trace()].concat(boundaryTraces()), l, config);
}

// the three histograms beside the map, over every example of the view (a sampled page included)
function histogram(div, h, name) {
  const bars = {type: "bar", x: h.x, y: h.counts, width: h.width, marker: {color: h.colours || "#4d4d4d"},
                hovertemplate: name + " %{x}: %{y} examples<extra></extra>"};
  const l = {margin: {l: 48, r: 8, t: 6, b: 36}, bargap: 0, showlegend: false,
             xaxis: {title: {text: name, standoff: 4}, range: h.range, fixedrange: true},
             yaxis: {title: {text: "examples"}, fixedrange: true, rangemode: "tozero"}};
  return Plotly.react(document.getElementById(div), [bars], l, {displayModeBar: false, responsive: true});
}
function drawHistograms() {
  const h = D.view_info[view].histograms;
  return Promise.all([histogram("dc-hist-confidence", h.confidence, "confidence"),
                      histogram("dc-hist-variability", h.variability, "variability"),
                      histogram("dc-hist-correctness", h.correctness, "correctness")]);
}
// the region counts line for the view shown (a multilabel page switches it with the label)
function renderRegions() {
  const info = D.view_info[view], el = document.getElementById("dc-regions");
  if (!info.counts) { el.textContent = ""; return; }
  let h = D.rule ? esc("regions (" + D.rule_caption + "): ") : "regions: ";
  for (const region in info.counts)
    h += '<span class="count"><span class="swatch" style="background:' + NAMED[region] + '"></span>' +
         esc((REGION_TEXT[region] || region) + " " + info.counts[region].toLocaleString() + pct(info.counts[region], info.total)) + "</span>";
  el.innerHTML = h;
}

function tipHtml(i) {
  let h = "<div><b>example " + esc(cols.example[i]) + "</b>";
  if (D.views) h += " \u00b7 label <b>" + esc(D.views[view]) + "</b>";
  if (cols.gold) h += " \u00b7 gold <b>" + esc(fmt("gold", col("gold")[i])) + "</b>";
  if (cols.region) h += " \u00b7 " + esc(fmt("region", col("region")[i]));
  h += "</div>";
  if (D.text) h += '<div class="text">' + esc(D.text[i]) + "</div>";
  h += "<table>";
  for (const s of D.statistics) h += "<tr><td>" + esc(s) + "</td><td>" + esc(fmt(s, col(s)[i])) + "</td></tr>";
  for (const m in D.meta) h += "<tr><td>" + esc(m) + "</td><td>" + esc(D.meta[m][i] === null ? "" : D.meta[m][i]) + "</td></tr>";
  return h + "</table>";
}
function showTip(ev) {
  const p = ev.points && ev.points[0];
  if (!p) return;
  tip.innerHTML = tipHtml(p.pointIndex);
  let x, y;
  if (ev.event && ev.event.clientX !== undefined) { x = ev.event.clientX; y = ev.event.clientY; }
  else {  // a programmatic hover (Plotly.Fx.hover) has no mouse event
    const r = gd.getBoundingClientRect(), m = gd._fullLayout._size;
    x = r.left + m.l + p.xaxis.l2p(p.x); y = r.top + m.t + p.yaxis.l2p(p.y);
  }
  tip.style.display = "block";
  const w = tip.offsetWidth, h = tip.offsetHeight;
  tip.style.left = Math.max(4, x + 14 + w > window.innerWidth ? x - 14 - w : x + 14) + "px";
  tip.style.top = Math.max(4, y + 14 + h > window.innerHeight ? y - 14 - h : y + 14) + "px";
}

function sortedSelection() {
  if (sortKey === null) return selection;
  const get = fields().find(f => f[0] === sortKey)[1];
  const numeric = sortKey === "example" || D.statistics.includes(sortKey);
  const key = i => numeric ? (sortKey === "example" ? cols.example[i] : col(sortKey)[i]) : get(i);
  return selection.slice().sort((a, b) => { const x = key(a), y = key(b); return (x < y ? -1 : x > y ? 1 : 0) * sortDir; });
}
function renderTable() {
  const f = fields(), table = document.getElementById("dc-table"), rows = sortedSelection();
  document.getElementById("dc-count").textContent = selection.length ? selection.length.toLocaleString() + " example" + (selection.length === 1 ? "" : "s") + " selected" : "No examples selected";
  document.getElementById("dc-download").disabled = !selection.length;
  document.getElementById("dc-clear").disabled = !selection.length;
  document.getElementById("dc-table-note").textContent = rows.length > TABLE_ROWS ? "the table shows the first " + TABLE_ROWS.toLocaleString() + "; the CSV holds all" : "";
  if (!rows.length) { table.innerHTML = ""; return; }
  let h = "<thead><tr>" + f.map(c => "<th data-key=\"" + esc(c[0]) + "\">" + esc(c[0]) + (sortKey === c[0] ? (sortDir > 0 ? " \u25b2" : " \u25bc") : "") + "</th>").join("") + "</tr></thead><tbody>";
  for (const i of rows.slice(0, TABLE_ROWS))
    h += "<tr>" + f.map(c => "<td" + (c[0] === D.text_column ? ' class="text"' : "") + ">" + esc(c[1](i)) + "</td>").join("") + "</tr>";
  table.innerHTML = h + "</tbody>";
}
// A spreadsheet runs a cell that starts with = + - @ (or a tab / carriage return) as a formula:
// text cells that do get a leading apostrophe; numbers (negative margins) stay numbers.
function neutral(s) { return /^[=+\-@\t\r]/.test(s) ? "'" + s : s; }
function csvCell(s) { return /[",\r\n]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s; }
function csv() {
  const f = fields();
  const lines = [f.map(c => csvCell(neutral(c[0]))).join(",")];
  for (const i of sortedSelection()) lines.push(f.map(c => { const s = c[1](i); return csvCell(c[2](i) ? s : neutral(s)); }).join(","));
  return lines.join("\r\n") + "\r\n";
}
function download() {
  const url = URL.createObjectURL(new Blob([csv()], {type: "text/csv;charset=utf-8"}));
  const a = document.createElement("a");
  a.href = url; a.download = "datacarto-selection.csv";
  document.body.appendChild(a); a.click(); a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}
function clearSelection() { selection = []; if (gd.layout) gd.layout.selections = []; redraw(); renderTable(); }

const colourSelect = document.getElementById("dc-color");
for (const c of D.colour_options) colourSelect.add(new Option(c, c, c === colour, c === colour));
colourSelect.addEventListener("change", () => { colour = colourSelect.value; redraw(); });
if (D.views) {
  document.getElementById("dc-label-wrap").hidden = false;
  const labelSelect = document.getElementById("dc-label");
  D.views.forEach((name, j) => labelSelect.add(new Option(name, String(j))));
  // the selection is kept (same examples); the table shows the new label's statistics
  labelSelect.addEventListener("change", () => { view = +labelSelect.value; redraw(); renderTable(); renderRegions(); drawHistograms(); });
}
document.getElementById("dc-download").addEventListener("click", download);
document.getElementById("dc-clear").addEventListener("click", clearSelection);
document.getElementById("dc-table").addEventListener("click", ev => {
  const th = ev.target.closest("th");
  if (!th) return;
  const key = th.dataset.key;
  sortDir = sortKey === key ? -sortDir : 1; sortKey = key;
  renderTable();
});

renderRegions();
Promise.all([redraw(), drawHistograms()]).then(() => {
  gd.on("plotly_hover", showTip);
  gd.on("plotly_unhover", () => { tip.style.display = "none"; });
  gd.on("plotly_selected", ev => {
    if (!ev) return;  // a click without a drag
    selection = ev.points.filter(p => p.curveNumber === 0).map(p => p.pointIndex);
    renderTable();
  });
  gd.on("plotly_deselect", () => { selection = []; renderTable(); });
  document.body.dataset.ready = "1";
});
// for scripts and tests: the decoded data and the page's actions
window.datacarto = {data: D, columns: cols, gd: gd, csv: csv, selection: () => selection.slice(),
  select: indices => { selection = Array.from(indices); redraw(); renderTable(); }};
})();
