"""What a data map shows, computed once for the static figure and the HTML page alike.

No drawing here (no matplotlib, no plotly): the correctness levels a map colours by, the
boundaries of the region rule in the (variability, confidence) plane, where each region's label
goes, region counts and histogram counts. :mod:`datacarto.plots` and :mod:`datacarto.html` draw
these, so the PNG and the page tell the same story.

Example:
    >>> import numpy as np
    >>> levels = correctness_levels(np.array([0.0, 0.1, 0.2, 0.5, 1.0]), n_epochs=10)
    >>> levels.names
    ['0', '0.1–0.2', '0.3–0.4', '0.5–0.6', '0.7–0.8', '0.9', '1']
    >>> levels.codes.tolist()
    [0, 1, 1, 3, 6]
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

if TYPE_CHECKING:
    import polars as pl

__all__ = [
    "REGION_TEXT",
    "REGION_COLOURS",
    "Boundary",
    "CorrectnessLevels",
    "correctness_levels",
    "correctness_colour",
    "correctness_histogram",
    "region_boundaries",
    "region_anchors",
    "region_counts",
    "rule_caption",
    "variability_limit",
]

#: Region -> the words the map prints for it.
REGION_TEXT = {"easy": "easy-to-learn", "ambiguous": "ambiguous", "hard": "hard-to-learn"}
#: Region -> colour (boxes, boundaries, region colouring). Unassigned rows are grey.
REGION_COLOURS = {"easy": "#2166ac", "ambiguous": "#3f3f3f", "hard": "#d7301f", "unassigned": "#b0b0b0"}
#: The correctness scale: red (always wrong), dark grey, blue (always right). Dark in the middle
#: so every level stays visible on white (the paper's palette is centred dark too).
_CORRECTNESS_STOPS = ((0.0, (0xD7, 0x30, 0x1F)), (0.5, (0x3F, 0x3F, 0x3F)), (1.0, (0x21, 0x66, 0xAC)))
#: At most this many correctness levels get a marker each; more attainable values are grouped.
MAX_LEVELS = 8
#: Groups of equal width (0.2) that the values strictly between 0 and 1 fall into when there are
#: too many values for a level each.
_GROUPS = 5


def variability_limit(variability: np.ndarray) -> float:
    """The right edge of the map: a little past the largest variability, at most 0.55.

    The population std of a [0, 1] quantity never exceeds 0.5.
    """
    values = np.asarray(variability, dtype=np.float64)
    finite = values[np.isfinite(values)]
    top = float(finite.max()) if finite.size else 0.5
    return min(max(top * 1.05, 0.05), 0.55)


def format_value(value: float) -> str:
    """A correctness value as short text: ``0``, ``0.25``, ``0.333``, ``1``."""
    text = f"{value:.3f}".rstrip("0").rstrip(".")
    return text if text not in ("", "-0") else "0"


def correctness_colour(value: float) -> str:
    """The colour of a correctness value on the map's red-grey-blue scale, as ``#rrggbb``.

    Example:
        >>> correctness_colour(0.0), correctness_colour(1.0)
        ('#d7301f', '#2166ac')
    """
    value = min(max(float(value), 0.0), 1.0)
    for (x0, c0), (x1, c1) in zip(_CORRECTNESS_STOPS, _CORRECTNESS_STOPS[1:]):
        if value <= x1:
            t = (value - x0) / (x1 - x0)
            return "#" + "".join(f"{round(a + (b - a) * t):02x}" for a, b in zip(c0, c1))
    return "#2166ac"  # pragma: no cover - value <= 1.0 always hits a segment


def _attainable_values(correctness: np.ndarray, n_epochs: Optional[int]) -> Tuple[np.ndarray, np.ndarray]:
    """The values correctness can take and the index of each example's value among them.

    With ``E`` epochs in the window those are ``0, 1/E, ..., 1``; without a known window, the
    distinct values present (rounded to hundredths when there are more than 101 of them).
    """
    if n_epochs is not None and n_epochs > 0:
        values = np.arange(n_epochs + 1) / n_epochs
        index = np.clip(np.rint(correctness * n_epochs), 0, n_epochs).astype(np.int64)
        return values, index
    finite = np.where(np.isfinite(correctness), correctness, 0.0)
    rounded = np.round(finite, 6)
    if len(np.unique(rounded)) > 101:
        rounded = np.round(finite, 2)
    values, index = np.unique(rounded, return_inverse=True)
    return values, index.reshape(-1).astype(np.int64)


@dataclass(frozen=True)
class CorrectnessLevels:
    """Correctness binned into the levels a map colours by.

    ``low[k]`` and ``high[k]`` are the smallest and largest value correctness can take in level
    ``k`` (equal when the level is one value); ``codes`` holds every example's level.
    """

    codes: np.ndarray
    low: np.ndarray
    high: np.ndarray

    @property
    def names(self) -> List[str]:
        """Legend text per level: one value (``"0.25"``) or the range it covers (``"0.2–0.4"``)."""
        return [format_value(a) if a == b else f"{format_value(a)}–{format_value(b)}" for a, b in zip(self.low.tolist(), self.high.tolist())]

    @property
    def centres(self) -> np.ndarray:
        return (self.low + self.high) / 2.0

    @property
    def colours(self) -> List[str]:
        return [correctness_colour(v) for v in self.centres.tolist()]


def correctness_levels(correctness: np.ndarray, n_epochs: Optional[int]) -> CorrectnessLevels:
    """Group correctness into at most :data:`MAX_LEVELS` levels, naming the values each covers.

    With ``E`` epochs correctness takes the ``E + 1`` values ``0, 1/E, ..., 1``. Each is its own
    level while ``E + 1 <= 8`` (as in the paper). Otherwise ``0`` (never right) and ``1``
    (always right) stay levels of their own and the values between are grouped at 0.2, 0.4,
    0.6 and 0.8 into ranges, named by the first and last value they hold (``"0.05–0.2"``).
    """
    correctness = np.asarray(correctness, dtype=np.float64)
    values, index = _attainable_values(correctness, n_epochs)
    if len(values) <= MAX_LEVELS:
        group_of_value = np.arange(len(values))
    else:
        # 0 and 1 alone; an inner value v joins group i when 0.2 (i - 1) < v <= 0.2 i (the
        # tolerance keeps k / E that equals an edge, e.g. 3 / 15, on the edge's lower side)
        inner = np.clip(np.ceil(values * _GROUPS - 1e-9), 1, _GROUPS)
        group_of_value = np.where(values <= 0.0, 0, np.where(values >= 1.0, _GROUPS + 1, inner)).astype(np.int64)
        _, group_of_value = np.unique(group_of_value, return_inverse=True)  # drop empty groups
        group_of_value = group_of_value.reshape(-1)
    n_groups = int(group_of_value.max()) + 1
    low = np.array([values[group_of_value == g].min() for g in range(n_groups)])
    high = np.array([values[group_of_value == g].max() for g in range(n_groups)])
    return CorrectnessLevels(group_of_value[index], low, high)


def correctness_histogram(correctness: np.ndarray, n_epochs: Optional[int]) -> Tuple[np.ndarray, np.ndarray]:
    """Examples per attainable correctness value: ``(values, counts)`` (``0, 1/E, ..., 1``)."""
    values, index = _attainable_values(np.asarray(correctness, dtype=np.float64), n_epochs)
    return values, np.bincount(index, minlength=len(values))


# ------------------------------------------------------------------------------------- regions


@dataclass(frozen=True)
class Boundary:
    """One edge of a region rule: a polyline in (variability, confidence) and what it means.

    ``region`` is the region the line bounds (its colour); ``text`` says the rule in words.
    """

    region: str
    x: np.ndarray
    y: np.ndarray
    text: str


def _region_key(value: str) -> str:
    return "easy" if value.startswith("easy") else "hard" if value.startswith("hard") else value


def region_counts(view: "pl.DataFrame") -> Dict[str, int]:
    """Rows per region in ``view`` (empty without a ``region`` column), in display order:
    easy, ambiguous, hard, then ``unassigned`` (null: outside the quantile selections)."""
    if "region" not in view.columns:
        return {}
    values = view["region"].cast(str).to_list()
    counts = {name: 0 for name in REGION_TEXT}
    for value in values:
        key = "unassigned" if value is None else _region_key(value)
        counts[key] = counts.get(key, 0) + 1
    return counts


def region_anchors(view: "pl.DataFrame", xmax: float = 0.5) -> Dict[str, Tuple[float, float]]:
    """Where each region's label goes: the region's point nearest the median of its points.

    A real point of the region, so the label sits on the region's cloud even when the cloud
    has two lobes and its median falls in the gap between them. Distances are measured in
    plot units (variability scaled by ``xmax``, the map's right edge). Regions without rows in
    ``view`` (and unassigned rows) get no label.
    """
    if "region" not in view.columns or view.height == 0:
        return {}
    keys = np.array([None if v is None else _region_key(v) for v in view["region"].cast(str).to_list()], dtype=object)
    x = view["variability"].to_numpy().astype(np.float64, copy=False)
    y = view["confidence"].to_numpy().astype(np.float64, copy=False)
    anchors = {}
    for name in REGION_TEXT:
        rows = np.flatnonzero((keys == name) & np.isfinite(x) & np.isfinite(y))
        if rows.size:
            mx, my = np.median(x[rows]), np.median(y[rows])
            nearest = rows[np.argmin(((x[rows] - mx) / xmax) ** 2 + (y[rows] - my) ** 2)]
            anchors[name] = (float(x[nearest]), float(y[nearest]))
    return anchors


def rule_caption(rule: Optional[Mapping[str, Any]]) -> str:
    """The region rule in words, for a legend or a page header."""
    if not rule:
        return ""
    name = rule.get("rule")
    if name == "thresholds":
        return f"thresholds rule: easy confidence > {rule['easy']:g}, hard confidence < {rule['hard']:g}"
    if name == "data-iq":
        q = float(rule["aleatoric_quantile"])
        which = "median" if q == 0.5 else f"{q:g} quantile"
        return f"Data-IQ rule: easy confidence ≥ {rule['easy']:g}, hard confidence ≤ {rule['hard']:g}, both with aleatoric ≤ its {which}"
    if name == "quantiles":
        f = rule["fraction"]
        return f"quantiles rule: top {f['easy']:.0%} confidence easy, top {f['ambiguous']:.0%} variability ambiguous (wins overlaps), bottom {f['hard']:.0%} confidence hard"
    return f"{name} rule"


def _kth_largest(values: np.ndarray, fraction: float) -> Optional[float]:
    # the same count as DataMap.regions' selections: ceil(fraction * n)
    n = len(values)
    k = min(n, math.ceil(round(fraction * n, 9)))
    if k == 0:
        return None
    return float(np.partition(values, n - k)[n - k])


def region_boundaries(
    rule: Optional[Mapping[str, Any]],
    group: "pl.DataFrame",
    xmax: float,
    *,
    n_epochs: Optional[int] = None,
    ddof: int = 0,
) -> List[Boundary]:
    """The edges of the regions ``rule`` drew, as lines in the (variability, confidence) plane.

    Args:
        rule: ``DataMap.region_rule`` (``None``: no boundaries).
        group: the rows the rule was applied to together (a multilabel map: one label's rows;
            otherwise the whole frame), for the rules whose cut-offs come from the data.
        xmax: the map's right edge.
        n_epochs, ddof: the window length and the variability's divisor (``E - ddof``); the
            Data-IQ curve needs them when ``ddof != 0``.

    - thresholds: horizontal lines at ``easy`` and ``hard``.
    - quantiles: the variability cut-off of the ambiguous selection (vertical) and the
      confidence cut-offs of the easy and hard selections left of it.
    - data-iq: aleatoric = confidence·(1 − confidence) − variability² (population std), so
      "aleatoric ≤ cut" is the area right of the curve variability = sqrt(c(1 − c) − cut); the
      easy region lies above ``easy`` and right of it, the hard one below ``hard`` and right of it.

    Example:
        >>> import polars as pl
        >>> lines = region_boundaries({"rule": "thresholds", "easy": 0.6, "hard": 0.4}, pl.DataFrame(), 0.5)
        >>> [(b.region, b.y.tolist()) for b in lines]
        [('easy', [0.6, 0.6]), ('hard', [0.4, 0.4])]
    """
    if not rule:
        return []
    name = rule.get("rule")
    if name == "thresholds":
        easy, hard = float(rule["easy"]), float(rule["hard"])
        return [
            Boundary("easy", np.array([0.0, xmax]), np.array([easy, easy]), f"easy: confidence > {easy:g}"),
            Boundary("hard", np.array([0.0, xmax]), np.array([hard, hard]), f"hard: confidence < {hard:g}"),
        ]
    if name == "quantiles":
        if group.height == 0 or not {"confidence", "variability"} <= set(group.columns):
            return []
        fractions = rule["fraction"]
        confidence = group["confidence"].to_numpy().astype(np.float64)
        variability = group["variability"].to_numpy().astype(np.float64)
        v_cut = _kth_largest(variability, float(fractions["ambiguous"]))
        c_easy = _kth_largest(confidence, float(fractions["easy"]))
        c_hard = _kth_largest(-confidence, float(fractions["hard"]))
        lines = []
        right = xmax if v_cut is None else min(v_cut, xmax)
        if v_cut is not None:
            lines.append(Boundary("ambiguous", np.array([v_cut, v_cut]), np.array([0.0, 1.0]), f"ambiguous: top {fractions['ambiguous']:.0%} variability (≥ {v_cut:.3g})"))
        if c_easy is not None:
            lines.append(Boundary("easy", np.array([0.0, right]), np.array([c_easy, c_easy]), f"easy: top {fractions['easy']:.0%} confidence (≥ {c_easy:.3g})"))
        if c_hard is not None:
            lines.append(Boundary("hard", np.array([0.0, right]), np.array([-c_hard, -c_hard]), f"hard: bottom {fractions['hard']:.0%} confidence (≤ {-c_hard:.3g})"))
        return lines
    if name == "data-iq":
        if group.height == 0 or "aleatoric" not in group.columns:
            return []
        if ddof and not n_epochs:
            return []  # the curve needs E to undo the divisor; unknown window: no curve
        scale = n_epochs / (n_epochs - ddof) if ddof and n_epochs and n_epochs > ddof else 1.0
        cut = float(np.quantile(group["aleatoric"].to_numpy().astype(np.float64), float(rule["aleatoric_quantile"])))
        easy, hard = float(rule["easy"]), float(rule["hard"])

        def curve(c: np.ndarray) -> np.ndarray:
            return np.minimum(np.sqrt(np.maximum(c * (1.0 - c) - cut, 0.0) * scale), xmax)

        lines = []
        for region, start, stop, words in (("easy", easy, 1.0, f"confidence ≥ {easy:g}"), ("hard", hard, 0.0, f"confidence ≤ {hard:g}")):
            c = np.linspace(start, stop, 201)
            v = curve(c)
            # along the confidence cut from the right edge, then up (down) the aleatoric curve
            x = np.concatenate([[xmax], v])
            y = np.concatenate([[start], c])
            lines.append(Boundary(region, x, y, f"{region}: {words}, aleatoric ≤ {cut:.3g}"))
        return lines
    return []


def rule_group(dm: Any, label_index: Optional[int]) -> "pl.DataFrame":
    """The rows a region rule was applied to together for the view of ``label_index``.

    Multilabel maps apply their rules per label; others to the whole frame (a view filtered to
    one gold class keeps the whole frame's cut-offs).
    """
    import polars as pl

    frame = dm.frame
    if dm.task == "multilabel" and label_index is not None and "label" in frame.columns:
        return frame.filter(pl.col("label") == label_index)
    return frame


def window_caption(epochs: Sequence[int]) -> str:
    """The statistics' epoch window ``(a, b)`` (half-open) in the file's epochs, inclusive:
    ``"file epochs 2..9"``."""
    return f"file epochs {int(epochs[0])}..{int(epochs[1]) - 1}"
