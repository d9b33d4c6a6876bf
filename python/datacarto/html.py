"""An interactive data map as ONE self-contained HTML file (opens offline, from disk or email).

:func:`write_html` embeds plotly.js (from the ``plotly`` package, inline: no network is needed to
open the page), the statistics as base64-encoded typed arrays and the example texts as JSON,
plus a small script that draws a WebGL scatter (``scattergl``: variability on x, confidence on
y) and wires up:

- hover: a tooltip with the example's text and every statistic;
- lasso or box selection: fills a table (click a header to sort) that downloads as CSV;
- a "colour by" control (any statistic, the region, the gold label) and, for multilabel maps,
  a "label" control switching which label's map is shown.

Beside the scatter it carries what the static figure (:func:`datacarto.plots.plot_map`) has:
the title, the region counts, the region rule's boundaries, each region's name and count on
its cloud, and histograms of confidence, variability and correctness (over every example, also
on a sampled page). The CSV download guards against formula injection: a text cell starting
with ``=``, ``+``, ``-`` or ``@`` gets a leading apostrophe; numbers (negative margins too) stay
numbers.

The page is the package's template ``datacarto/templates/map.html`` (plus ``map.js``), filled in
one pass: every placeholder is replaced at once, so no user text (a title ``"__PLOTLY__"``)
is ever searched for placeholders. User text is HTML-escaped in the markup and JSON-escaped
(``<`` as ``\u003c``) inside ``<script>``, so ``</script>`` in a cell cannot end the block.

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
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Sequence, Union

import numpy as np

from datacarto import _mapview
from datacarto._atomic import atomic_write
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
    "threshold_closeness", "margin", "aleatoric", "el2n", "suspicion",
)
_INT_STATISTICS = {"forgetting": "i4", "first_learned": "i4", "never_learned": "u1"}
_SAMPLE_SEED = 0
_HISTOGRAM_BINS = 30
#: The template's placeholders, all replaced in one pass by :func:`_fill`.
_PLACEHOLDER = re.compile(r"__(TITLE|SUMMARY|REGIONS|NOTICE|PLOTLY|DATA|APP)__")


def _template(name: str) -> str:
    """A file of the page's template (package data under ``datacarto/templates``)."""
    return resources.files("datacarto").joinpath("templates").joinpath(name).read_text(encoding="utf-8")


def _fill(template: str, values: Mapping[str, str]) -> str:
    """Replace every ``__NAME__`` placeholder at once: inserted text is never searched again,
    so a title or a text cell that contains a placeholder name stays text."""
    return _PLACEHOLDER.sub(lambda match: values[match.group(1)], template)


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


def _rounded(values: np.ndarray, digits: int = 6) -> List[float]:
    return [float(v) for v in np.round(np.asarray(values, dtype=np.float64), digits)]


def _view_info(dm: Any, view: "pl.DataFrame", label_index: Optional[int], xmax: float, n_epochs: Optional[int]) -> Dict[str, Any]:
    """What the page draws around one view's scatter, from all its rows (not the sample):
    region counts, where the region labels go, the rule's boundaries and the histograms."""
    counts = _mapview.region_counts(view)
    boundaries: List[_mapview.Boundary] = []
    if counts:
        group = _mapview.rule_group(dm, label_index)
        boundaries = _mapview.region_boundaries(getattr(dm, "region_rule", None), group, xmax, n_epochs=n_epochs, ddof=int(getattr(dm, "ddof", 0) or 0))
    if counts and not counts.get("unassigned"):
        counts.pop("unassigned", None)
    confidence = _finite(view["confidence"].to_numpy())
    variability = _finite(view["variability"].to_numpy())
    histograms: Dict[str, Any] = {}
    for name, values, top in (("confidence", confidence, 1.0), ("variability", variability, xmax)):
        c, edges = np.histogram(values, bins=_HISTOGRAM_BINS, range=(0.0, top))
        histograms[name] = {"x": _rounded((edges[:-1] + edges[1:]) / 2), "counts": c.tolist(), "width": float(edges[1] - edges[0]), "range": [0.0, top]}
    if "correctness" in view.columns:
        values, c = _mapview.correctness_histogram(view["correctness"].to_numpy(), n_epochs)
        levels = _mapview.correctness_levels(values, n_epochs)
        gap = float(np.diff(values).min()) if len(values) > 1 else 1.0
        histograms["correctness"] = {"x": _rounded(values), "counts": c.tolist(), "width": 0.8 * gap, "range": [-0.6 * gap, 1.0 + 0.6 * gap],
                                     "colours": [levels.colours[k] for k in levels.codes]}
    else:
        histograms["correctness"] = {"x": [], "counts": [], "width": 0.0, "range": [0.0, 1.0]}
    return {
        "total": view.height,
        "counts": counts or None,
        "anchors": {k: _rounded(v) for k, v in _mapview.region_anchors(view, xmax).items()},
        "boundaries": [{"region": b.region, "x": _rounded(b.x), "y": _rounded(b.y), "text": b.text} for b in boundaries],
        "histograms": histograms,
    }


def _finite(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    return values[np.isfinite(values)]


def _regions_line(info: Mapping[str, Any], rule: Optional[Mapping[str, Any]]) -> str:
    """The first view's region counts as escaped HTML (the page's script redraws it per view)."""
    counts = info["counts"]
    if not counts:
        return ""
    total = max(int(info["total"]), 1)
    head = f"regions ({_mapview.rule_caption(rule)}): " if rule else "regions: "
    parts = [
        f'<span class="count"><span class="swatch" style="background:{_mapview.REGION_COLOURS.get(k, "#999999")}"></span>'
        f"{_html.escape(_mapview.REGION_TEXT.get(k, k))} {v:,} ({100.0 * v / total:.0f}%)</span>"
        for k, v in counts.items()
    ]
    return _html.escape(head) + "".join(parts)


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
        title: the page title (default: as the static figure's, "Data map (N examples)").

    Returns:
        The path written. The file is written beside its target and renamed into place, so an
        interrupted write leaves the old page (or none), never half a page.

    Raises:
        TypeError: ``title`` is not a string.
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

    if title is not None and not isinstance(title, str):
        raise TypeError(f"title: expected a str or None, found {type(title).__name__}")
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
    full = frame
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
    n_epochs = None if epochs is None else int(epochs[1]) - int(epochs[0])
    xmax = _mapview.variability_limit(full["variability"].to_numpy())
    rule = getattr(dm, "region_rule", None) if "region" in full.columns else None
    if multilabel:
        view_info = [_view_info(dm, full.filter(pl.col("label") == int(j)), int(j), xmax, n_epochs) for j in views]
    else:
        view_info = [_view_info(dm, full, None, xmax, n_epochs)]
    data = {
        "n": n,
        "n_total": n_total,
        "subsampled": subsampled,
        "task": dm.task,
        "n_epochs": n_epochs,
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
        "xmax": xmax,
        "view_info": view_info,
        "rule": None if not rule else rule.get("rule"),
        "rule_caption": _mapview.rule_caption(rule),
    }
    if title is None:
        title = f"Data map ({n_total:,} examples" + (f", {len(views)} labels" if multilabel else "") + ")"
    summary = [f"{n_total:,} examples", str(dm.task)]
    if n_epochs is not None:
        summary.append(f"{n_epochs} epochs ({_mapview.window_caption(epochs)})")
    if multilabel:
        summary.append(f"{len(views)} labels")
    notice = ""
    if subsampled:
        notice = (
            f'<div class="notice" id="dc-notice">Showing a random sample of {n:,} of {n_total:,} examples '
            f"(max_points={int(max_points):,}). The statistics of the examples shown are exact, and the "
            "region counts and histograms cover every example; the sample only thins the scatter.</div>"
        )
    page = _fill(_template("map.html"), {
        "TITLE": _html.escape(title),
        "SUMMARY": _html.escape(" · ".join(summary)),
        "REGIONS": _regions_line(view_info[0], rule),
        "NOTICE": notice,
        "PLOTLY": _plotly_js(),
        "DATA": _json_for_script(data),
        "APP": _template("map.js"),
    })
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(out, "w", encoding="utf-8") as handle:
        handle.write(page)
    return out
