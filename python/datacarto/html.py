"""An interactive data map as ONE self-contained HTML file (opens offline, from disk or email).

:func:`write_html` embeds plotly.js (from the ``plotly`` package, inline: no network is needed to
open the page), the statistics as base64-encoded typed arrays and the example texts as JSON,
plus a small script that draws a WebGL scatter (``scattergl``: variability on x, confidence on
y) and wires up:

- hover: a tooltip with the example's text and every statistic;
- lasso or box selection: fills a table (click a header to sort) that downloads as CSV;
- a "colour by" control (any statistic, the region, the gold label) and, for multilabel maps,
  a "label" control switching which label's map is shown.

Size: plotly.js is about 4.8 MB; each point adds about 55 bytes of statistics plus its text
(capped at :data:`MAX_TEXT_CHARS` characters). 100,000 examples with ~80-character texts make
a file of about 20 MB. Above ``max_points`` points (rows of ``dm.frame``; examples times labels
for multilabel) a seeded random sample of examples is embedded and the page says so.

Example:
    >>> import numpy as np, datacarto as dc, tempfile, os
    >>> probs = np.random.default_rng(0).dirichlet(np.ones(3), size=(4, 100)).astype(np.float32)
    >>> dm = dc.DataMap(dc.compute(probs, np.zeros(100, dtype=int)))
    >>> path = dc.html.write_html(dm, os.path.join(tempfile.mkdtemp(), "map.html"))
    >>> path.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    True
"""

from __future__ import annotations

import base64
import html as _html
import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Union

import numpy as np

from datacarto._core import DatacartoError

if TYPE_CHECKING:
    import polars as pl

__all__ = ["write_html", "DEFAULT_MAX_POINTS", "MAX_TEXT_CHARS"]

#: Points embedded by default before subsampling (about 15-25 MB of HTML at this size).
DEFAULT_MAX_POINTS = 200_000
#: Longer texts are cut (with an ellipsis) so one huge document cannot bloat the page.
MAX_TEXT_CHARS = 1_000
#: Columns that get a categorical colouring when asked for (at most this many levels).
_MAX_CATEGORIES = 20
_STATISTICS = (
    "confidence", "variability", "correctness", "forgetting", "never_learned", "first_learned",
    "threshold_closeness", "margin", "aleatoric", "el2n",
)
_INT_STATISTICS = {"forgetting": "i4", "first_learned": "i4", "never_learned": "u1"}
_SAMPLE_SEED = 0


def _encode(values: np.ndarray, dtype: str) -> Dict[str, str]:
    """A column as little-endian bytes in base64: 4 bytes a float instead of ~10 as JSON text."""
    kind = {"f4": "<f4", "f8": "<f8", "i4": "<i4", "u1": "u1"}[dtype]
    raw = np.ascontiguousarray(values, dtype=kind).tobytes()
    return {"dtype": dtype, "b64": base64.b64encode(raw).decode("ascii")}


def _plotly_js() -> str:
    try:
        from plotly.offline import get_plotlyjs
    except ImportError as exc:  # pragma: no cover - plotly is a dependency
        raise ImportError("write_html needs the 'plotly' package (pip install plotly) for the plotly.js bundle it embeds") from exc
    # a literal "</script" would end the inline block early
    return re.sub(r"</(script)", r"<\\/\1", get_plotlyjs(), flags=re.IGNORECASE)


def _json_for_script(value: Any) -> str:
    # "<" escaped so no text can close the <script> element or open a comment
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).replace("<", "\\u003c")


def _cut(text: Optional[str]) -> str:
    if text is None:
        return ""
    return text if len(text) <= MAX_TEXT_CHARS else text[: MAX_TEXT_CHARS - 1] + "…"


def _json_value(value: Any) -> Any:
    """A metadata cell as JSON: numbers and booleans stay, NaN / inf become null, the rest text."""
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, float):
        return value if np.isfinite(value) else None
    return str(value)


def _label_names(dm: Any) -> Optional[List[str]]:
    names = getattr(dm, "label_names", None)
    return None if names is None else [str(n) for n in names]


def _scalar_metadata(frame: "pl.DataFrame", exclude: Sequence[str]) -> List[str]:
    import polars as pl

    keep = []
    for name, dtype in frame.schema.items():
        if name in exclude:
            continue
        # nested and binary columns (embeddings, images) have no place in a tooltip
        if dtype.is_numeric() or dtype in (pl.Utf8, pl.Boolean, pl.Categorical, pl.Date, pl.Datetime) or isinstance(dtype, (pl.Enum, pl.Datetime)):
            keep.append(name)
    return keep


def write_html(
    dm: Any,
    path: Union[str, "os.PathLike[str]"],
    *,
    text_column: Optional[str] = None,
    color: str = "correctness",
    max_points: Optional[int] = None,
    title: Optional[str] = None,
) -> Path:
    """Write the interactive data map to ``path`` as one self-contained HTML file.

    Args:
        dm: a :class:`datacarto.DataMap`.
        path: the ``.html`` file to write (parent folders are created).
        text_column: the column shown as each example's text in tooltips, the table and the
            CSV (default: ``text`` when the frame has it).
        color: the colouring shown first: a statistic, ``"region"`` or ``"gold"``.
        max_points: the most points embedded (rows of ``dm.frame``, i.e. examples times
            labels for multilabel). Above it a seeded random sample of examples is kept and
            the page carries a notice. Default: :data:`DEFAULT_MAX_POINTS`.
        title: the page title (default: "datacarto data map").

    Returns:
        The path written.

    Raises:
        DatacartoError: an unknown ``text_column`` or ``color``, a bad ``max_points``, or a
            frame without the ``example``, ``confidence`` and ``variability`` columns.

    Example:
        >>> import numpy as np, polars as pl, datacarto as dc, tempfile, os
        >>> probs = np.random.default_rng(0).dirichlet(np.ones(2), size=(3, 50)).astype(np.float32)
        >>> dm = dc.DataMap(dc.compute(probs, np.ones(50, dtype=int)), {"text": [f"doc {i}" for i in range(50)]})
        >>> out = dc.html.write_html(dm, os.path.join(tempfile.mkdtemp(), "m.html"), color="margin")
        >>> "doc 7" in out.read_text(encoding="utf-8")
        True
    """
    import polars as pl

    if max_points is None:
        max_points = DEFAULT_MAX_POINTS
    if isinstance(max_points, bool) or not isinstance(max_points, (int, np.integer)) or max_points < 1:
        raise DatacartoError(f"max_points: expected a positive int or None, found {max_points!r}")
    frame: pl.DataFrame = dm.frame
    missing = [c for c in ("example", "confidence", "variability") if c not in frame.columns]
    if missing:
        raise DatacartoError(f"dm.frame: columns: expected {', '.join(map(repr, missing))}, found {frame.columns}")
    if text_column is None:
        text_column = "text" if "text" in frame.columns else None
    elif text_column not in frame.columns:
        raise DatacartoError(f"text_column: expected one of the columns of dm.frame {frame.columns}, found {text_column!r}")
    multilabel = dm.task == "multilabel"
    if multilabel and "label" not in frame.columns:
        raise DatacartoError(f"dm.frame: columns: expected 'label' in a multilabel map, found {frame.columns}")

    # -- which examples and label views go in --------------------------------------------------
    examples = np.unique(frame["example"].to_numpy())
    views = np.unique(frame["label"].to_numpy()) if multilabel else np.array([0])
    n_total = len(examples)
    per_view = max(1, int(max_points) // len(views))
    subsampled = n_total > per_view
    if subsampled:
        rng = np.random.default_rng(_SAMPLE_SEED)
        examples = np.sort(rng.choice(examples, size=per_view, replace=False))
        frame = frame.filter(pl.col("example").is_in(examples))
    n = len(examples)
    # label-major rows: view j is the contiguous block [j*n, (j+1)*n), a zero-copy subarray in JS
    frame = frame.sort(["label", "example"] if multilabel else ["example"])
    if frame.height != n * len(views) or not np.array_equal(frame["example"].to_numpy().reshape(len(views), n), np.broadcast_to(examples, (len(views), n))):
        raise DatacartoError("dm.frame: expected exactly one row per example" + (" and label" if multilabel else "") + f", found {frame.height} rows for {n} examples")
    first_view = frame.slice(0, n)

    # -- columns ------------------------------------------------------------------------------
    columns: Dict[str, Dict[str, str]] = {}
    per_row: List[str] = []
    categorical: Dict[str, List[str]] = {}
    columns["example"] = _encode(examples, "i4" if examples.max(initial=0) < 2**31 and examples.min(initial=0) >= -(2**31) else "f8")
    statistics = [s for s in _STATISTICS if s in frame.columns]
    for name in statistics:
        columns[name] = _encode(frame[name].to_numpy(), _INT_STATISTICS.get(name, "f4"))
        per_row.append(name)
        if name == "never_learned":
            categorical[name] = ["false", "true"]
    class_names = None if multilabel else _label_names(dm)
    if "gold" in frame.columns:
        gold = frame["gold"].to_numpy().astype(np.int64)
        columns["gold"] = _encode(gold, "i4")
        per_row.append("gold")
        if multilabel:
            categorical["gold"] = ["0", "1"]
        else:
            n_classes = max(int(gold.max(initial=0)) + 1, len(class_names or []))
            if n_classes <= _MAX_CATEGORIES:
                categorical["gold"] = [class_names[k] if class_names and k < len(class_names) else str(k) for k in range(n_classes)]
    if "region" in frame.columns:
        values = frame["region"].cast(pl.Utf8).fill_null("unassigned").to_list()
        levels = [r for r in ("easy", "ambiguous", "hard") if r in set(values)]
        levels += sorted(set(values) - set(levels))
        lookup = {name: k for k, name in enumerate(levels)}
        columns["region"] = _encode(np.array([lookup[v] for v in values]), "u1" if len(levels) < 256 else "i4")
        per_row.append("region")
        categorical["region"] = levels

    colour_options = statistics + [c for c in ("region", "gold") if c in columns]
    if color not in colour_options:
        raise DatacartoError(f"color: expected one of {colour_options}, found {color!r}")

    texts = [_cut(t) for t in first_view[text_column].cast(pl.Utf8).to_list()] if text_column else None
    # gold_name / label_name are shown through the gold and label controls already; rank comes from suspects()
    meta_names = _scalar_metadata(frame, ("example", "label", "gold", "gold_name", "label_name", "region", "rank", text_column or "", *_STATISTICS))
    # per-example metadata: from the first label's rows (a multilabel frame repeats it per label)
    meta = {name: [_json_value(v) for v in first_view[name].to_list()] for name in meta_names}

    names = _label_names(dm)
    view_names = [names[int(j)] if names is not None and int(j) < len(names) else f"label {int(j)}" for j in views] if multilabel else None
    epochs = getattr(dm, "epochs", None)
    variability = frame["variability"].to_numpy()
    data = {
        "n": n,
        "n_total": n_total,
        "subsampled": subsampled,
        "task": dm.task,
        "n_epochs": None if epochs is None else int(epochs[1]) - int(epochs[0]),
        "views": view_names,
        "columns": columns,
        "per_row": per_row,
        "categorical": categorical,
        "statistics": statistics,
        "colour_options": colour_options,
        "color": color,
        "text_column": text_column,
        "text": texts,
        "meta": meta,
        "xmax": float(min(max(np.nanmax(variability, initial=0.0) * 1.05, 0.05), 0.55)),
    }
    page_title = title if title is not None else "datacarto data map"
    notice = ""
    if subsampled:
        notice = (
            f'<div class="notice" id="dc-notice">Showing a random sample of {n:,} of {n_total:,} examples '
            f"(max_points={int(max_points):,}). The statistics of the examples shown are exact; "
            "the sample only thins the picture.</div>"
        )
    page = (
        _TEMPLATE.replace("__TITLE__", _html.escape(page_title))
        .replace("__NOTICE__", notice)
        .replace("__APP__", _APP_JS)
        .replace("__DATA__", _json_for_script(data))
    )
    # plotly.js last: its text must not be searched for placeholders
    page = page.replace("__PLOTLY__", _plotly_js(), 1)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    return out


_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="datacarto">
<title>__TITLE__</title>
<style>
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;padding:12px 18px;color:#222;background:#fff}
h1{font-size:20px;margin:0 0 4px}
.sub{color:#555;font-size:13px}
.notice{background:#fff3cd;border:1px solid #e0c36a;padding:6px 10px;border-radius:4px;font-size:13px;margin:6px 0}
.controls{display:flex;gap:16px;align-items:center;flex-wrap:wrap;margin:8px 0;font-size:14px}
#dc-plot{width:100%;height:66vh;min-height:420px}
#dc-tip{position:fixed;pointer-events:none;display:none;max-width:440px;background:rgba(255,255,255,.97);border:1px solid #999;border-radius:4px;padding:8px 10px;font-size:12px;box-shadow:0 2px 8px rgba(0,0,0,.2);z-index:10}
#dc-tip .text{margin:4px 0 6px;white-space:pre-wrap;word-break:break-word}
#dc-tip table{border-collapse:collapse}
#dc-tip td{padding:0 10px 0 0}
.swatch{display:inline-block;width:10px;height:10px;border-radius:50%;margin:0 4px 0 10px;vertical-align:middle}
#dc-table-wrap{max-height:45vh;overflow:auto;border:1px solid #ddd}
table.rows{border-collapse:collapse;font-size:12px;width:100%}
table.rows th{position:sticky;top:0;background:#f3f3f3;cursor:pointer;text-align:left;padding:3px 6px;border-bottom:1px solid #ccc;white-space:nowrap}
table.rows td{padding:2px 6px;border-bottom:1px solid #eee;vertical-align:top}
table.rows td.text{min-width:240px;max-width:480px}
</style>
</head>
<body>
<h1>__TITLE__</h1>
<div class="sub" id="dc-summary"></div>
__NOTICE__
<div class="controls">
<label>colour by <select id="dc-color"></select></label>
<label id="dc-label-wrap" hidden>label <select id="dc-label"></select></label>
<span id="dc-legend" class="sub"></span>
<span class="sub">Drag to lasso-select (box select, zoom and pan are in the toolbar); double-click to reset.</span>
</div>
<div id="dc-plot"></div>
<div id="dc-tip"></div>
<div class="controls">
<strong id="dc-count">No examples selected</strong>
<button id="dc-download" disabled>Download CSV</button>
<button id="dc-clear" disabled>Clear selection</button>
<span class="sub" id="dc-table-note"></span>
</div>
<div id="dc-table-wrap"><table class="rows" id="dc-table"></table></div>
<script>__PLOTLY__</script>
<script type="application/json" id="dc-data">__DATA__</script>
<script>__APP__</script>
</body>
</html>
"""

_APP_JS = r"""
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
// the table / CSV columns: [name, getter(i) -> display string]
function fields() {
  const f = [["example", i => String(cols.example[i])]];
  if (D.views) f.push(["label", () => D.views[view]]);
  if (cols.gold) f.push(["gold", i => fmt("gold", col("gold")[i])]);
  if (D.text) f.push([D.text_column, i => D.text[i]]);
  if (cols.region) f.push(["region", i => fmt("region", col("region")[i])]);
  for (const s of D.statistics) f.push([s, i => fmt(s, col(s)[i])]);
  for (const m in D.meta) f.push([m, i => D.meta[m][i] === null ? "" : String(D.meta[m][i])]);
  return f;
}

const gd = document.getElementById("dc-plot"), tip = document.getElementById("dc-tip");
const summary = [D.n_total.toLocaleString() + " examples", D.task];
if (D.n_epochs !== null) summary.push(D.n_epochs + " epochs");
if (D.views) summary.push(D.views.length + " labels");
document.getElementById("dc-summary").textContent = summary.join(" \u00b7 ");

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
function trace() {
  return {type: "scattergl", mode: "markers", x: col("variability"), y: col("confidence"), marker: marker(),
          hoverinfo: "none", selectedpoints: selection.length ? selection : null,
          selected: {marker: {opacity: 1}}, unselected: {marker: {opacity: 0.2}}};
}
function box(text, colour, x, y) {
  return {text: text, x: x, y: y, xref: "paper", yref: "paper", showarrow: false, font: {size: 14},
          bgcolor: "rgba(255,255,255,0.85)", bordercolor: colour, borderwidth: 2, borderpad: 4};
}
const layout = {
  dragmode: "lasso", hovermode: "closest", uirevision: "keep",
  margin: {l: 60, r: 20, t: 20, b: 50},
  xaxis: {title: {text: "variability"}, range: [0, D.xmax], zeroline: false},
  yaxis: {title: {text: "confidence"}, range: [-0.02, 1.02], zeroline: false},
  annotations: [box("easy-to-learn", "#2166ac", 0.22, 0.97), box("ambiguous", "#3f3f3f", 0.97, 0.5), box("hard-to-learn", "#d7301f", 0.22, 0.03)],
};
const config = {responsive: true, displaylogo: false, scrollZoom: true};

// gd.layout after the first draw: it carries the user's zoom and selection outline
function redraw() { return Plotly.react(gd, [trace()], gd.layout || layout, config); }

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
function csvCell(s) { return /[",\r\n]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s; }
function csv() {
  const f = fields();
  const lines = [f.map(c => csvCell(c[0])).join(",")];
  for (const i of sortedSelection()) lines.push(f.map(c => csvCell(c[1](i))).join(","));
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
  labelSelect.addEventListener("change", () => { view = +labelSelect.value; redraw(); renderTable(); });
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

redraw().then(() => {
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
"""
