"""Static pictures of a data map (matplotlib), each returned as a :class:`~matplotlib.figure.Figure`.

- :func:`plot_map`: the paper's data map (Swayamdipta et al. 2020, Figure 1): variability on x,
  confidence on y, colour and marker by correctness (levels that group several values are
  named by their range), and histograms of confidence, variability and correctness beside
  it. With regions, the region rule's boundaries are drawn and each region's name and count
  sit on its points. Above ``max_scatter`` points it switches to a log-scaled
  density image so a 1,000,000-point map still draws in seconds.
- :func:`plot_label_grid`: one small map per label (multilabel) or per gold class.
- :func:`plot_trajectories`: the gold label's probability of chosen examples across epochs,
  correct and wrong epochs drawn with different markers, numbered as ``first_learned`` counts
  them (0-based within the statistics' epoch window).

The functions build :class:`~matplotlib.figure.Figure` objects directly and never touch
``matplotlib.pyplot`` (matplotlib itself loads on the first drawing, not at import), so they work under any backend (including headless Agg servers) and leave
no global figure state behind. Save with ``fig.savefig("map.png", dpi=150)``.

Every function takes a data map duck-typed like :class:`datacarto.DataMap`: ``dm.frame`` (a
polars DataFrame with ``example``, ``[label]``, ``gold``, the statistics and optionally
``region``), ``dm.task``, ``dm.n_labels``, ``dm.label_names``, ``dm.epochs``, ``dm.dynamics``,
``dm.labels`` and, for region boundaries, ``dm.region_rule`` and ``dm.ddof``.

Example:
    >>> import numpy as np, datacarto as dc
    >>> probs = np.random.default_rng(0).dirichlet(np.ones(3), size=(5, 200)).astype(np.float32)
    >>> dm = dc.DataMap(dc.compute(probs, np.zeros(200, dtype=int)))
    >>> fig = dc.plots.plot_map(dm)
    >>> [ax.get_xlabel() for ax in fig.axes][:1]
    ['variability']
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, List, Optional, Sequence, Tuple, Union

import numpy as np

from datacarto import _mapview
from datacarto._core import DatacartoError
from datacarto._mapview import REGION_COLOURS, REGION_TEXT, CorrectnessLevels, correctness_levels

if TYPE_CHECKING:  # matplotlib loads when a figure is drawn, not when this module is imported
    import polars as pl
    from matplotlib.axes import Axes
    from matplotlib.colors import LogNorm
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

__all__ = ["plot_map", "plot_label_grid", "plot_trajectories", "correctness_levels", "CorrectnessLevels"]

LabelLike = Union[int, str, None]

#: Markers per categorical level, as distinguishable as possible in the order used.
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
_DENSITY_BINS = 200
_MAX_CATEGORIES = 20
#: ``Artist.get_gid()`` of the drawn region boundaries and region labels: ``"<prefix><region>"``.
BOUNDARY_GID = "datacarto-boundary:"
REGION_LABEL_GID = "datacarto-region-label:"
RULE_LEGEND_GID = "datacarto-rule-legend"


# ----------------------------------------------------------------------------------------------
# shared helpers


def _require_columns(frame: "pl.DataFrame", columns: Sequence[str], what: str = "dm.frame") -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DatacartoError(f"{what}: columns: expected {', '.join(repr(c) for c in missing)}, found {frame.columns}")


def _n_epochs(dm: Any) -> Optional[int]:
    epochs = getattr(dm, "epochs", None)
    if epochs is None:
        return None
    start, stop = epochs
    return int(stop) - int(start)


def _label_names(dm: Any) -> Optional[List[str]]:
    names = getattr(dm, "label_names", None)
    return None if names is None else [str(n) for n in names]


def _resolve_label(dm: Any, label: LabelLike, argument: str = "label") -> int:
    """A label index from an index or a name in ``dm.label_names``."""
    n_labels = int(getattr(dm, "n_labels", 0) or 0)
    names = _label_names(dm)
    if isinstance(label, str):
        if names is None or label not in names:
            raise DatacartoError(f"{argument}: expected a label index or one of the label names {names}, found {label!r}")
        return names.index(label)
    if isinstance(label, (bool, np.bool_)) or not isinstance(label, (int, np.integer)):
        raise DatacartoError(f"{argument}: expected a label index (int) or name (str), found {label!r}")
    if not 0 <= int(label) < n_labels:
        raise DatacartoError(f"{argument}: expected a label index in [0, {n_labels}), found {label}")
    return int(label)


def _label_title(dm: Any, index: int) -> str:
    names = _label_names(dm)
    return names[index] if names is not None and index < len(names) else f"label {index}"


def _map_view(dm: Any, label: LabelLike) -> Tuple["pl.DataFrame", Optional[str], Optional[int]]:
    """The rows one map draws, a caption for them and the label index (``None``: every row).

    Multilabel: the rows of one label (``label`` is required unless there is only one).
    Multiclass / binary: every row, or the examples whose gold class is ``label``.
    """
    import polars as pl

    frame = dm.frame
    _require_columns(frame, ("confidence", "variability"))
    if dm.task == "multilabel":
        if label is None:
            if int(dm.n_labels) != 1:
                raise DatacartoError(
                    f"label: expected a label index or name for a multilabel map with {dm.n_labels} labels "
                    "(or draw every label with plot_label_grid), found None"
                )
            label = 0
        index = _resolve_label(dm, label)
        _require_columns(frame, ("label",))
        return frame.filter(pl.col("label") == index), _label_title(dm, index), index
    if label is None:
        return frame, None, None
    index = _resolve_label(dm, label)
    _require_columns(frame, ("gold",))
    return frame.filter(pl.col("gold") == index), f"gold = {_label_title(dm, index)}", index


class _Colouring:
    """How one map colours its points: discrete levels (with markers) or a continuous scale."""

    def __init__(self, name: str, codes: Optional[np.ndarray] = None, level_names: Sequence[str] = (),
                 colours: Sequence[Any] = (), markers: Sequence[str] = (), values: Optional[np.ndarray] = None) -> None:
        self.name = name
        self.codes = codes
        self.level_names = list(level_names)
        self.colours = list(colours)
        self.markers = list(markers)
        self.values = values

    @property
    def categorical(self) -> bool:
        return self.codes is not None


def _colouring(dm: Any, view: "pl.DataFrame", color: Optional[str]) -> _Colouring:
    import polars as pl

    if color is None:
        return _Colouring("", np.zeros(view.height, dtype=np.int64), [""], ["#2166ac"], ["o"])
    if color not in view.columns:
        raise DatacartoError(f"color: expected a statistic or a column of dm.frame {view.columns}, found {color!r}")
    series = view[color]
    if color == "correctness":
        levels = correctness_levels(series.to_numpy(), _n_epochs(dm))
        return _Colouring(color, levels.codes, levels.names, levels.colours, _markers(len(levels.names)))
    if color == "region":
        # rows outside the three regions (null: e.g. between the quantiles) are drawn too, in grey
        values = series.cast(pl.Utf8).fill_null("unassigned").to_list()
        present = set(values)
        order = [r for r in ("easy", "ambiguous", "hard") if r in present] + sorted(present - {"easy", "ambiguous", "hard"})
        lookup = {name: i for i, name in enumerate(order)}
        codes = np.array([lookup[v] for v in values], dtype=np.int64)
        colours = [REGION_COLOURS.get(name, f"C{i}") for i, name in enumerate(order)]
        return _Colouring(color, codes, order, colours, _markers(len(order)))
    values = series.to_numpy()
    numeric = values.dtype.kind in "iufb"
    if not numeric:
        series = series.cast(pl.Utf8).fill_null("none")
    distinct = np.unique(values[~_isnan(values)]) if numeric else np.array(sorted(set(series.to_list())))
    if numeric and (values.dtype.kind == "f" or len(distinct) > _MAX_CATEGORIES):
        # fractions and long-tailed counts read best on a continuous scale
        return _Colouring(color, values=values.astype(np.float64))
    if len(distinct) > _MAX_CATEGORIES:
        raise DatacartoError(f"color: expected a numeric column or one with at most {_MAX_CATEGORIES} distinct values, found {len(distinct)} in {color!r}")
    keys = distinct
    if values.dtype.kind in "iub":
        codes = np.searchsorted(keys, values)
    else:
        lookup = {k: i for i, k in enumerate(keys.tolist())}
        codes = np.array([lookup[v] for v in series.to_list()], dtype=np.int64)
    names = [str(k) for k in keys.tolist()]
    if color == "gold" and dm.task != "multilabel" and _label_names(dm) is not None:
        label_names = _label_names(dm)
        names = [label_names[int(k)] if 0 <= int(k) < len(label_names) else str(k) for k in keys.tolist()]
    colours = [f"C{i % 10}" for i in range(len(names))] if len(names) <= 10 else [_tab20(i) for i in range(len(names))]
    return _Colouring(color, codes, names, colours, _markers(len(names)))


def _isnan(values: np.ndarray) -> np.ndarray:
    return np.isnan(values) if values.dtype.kind == "f" else np.zeros(values.shape, dtype=bool)


def _tab20(i: int) -> Any:
    from matplotlib import colormaps

    return colormaps["tab20"](i % 20)


def _markers(n_levels: int) -> List[str]:
    # Distinct markers only for a handful of levels (the paper does the same below 8 hues);
    # more shapes than that stop being readable.
    return list(_MARKERS[:n_levels]) if n_levels <= len(_MARKERS) else ["o"] * n_levels


def _point_size(n: int) -> float:
    # shrink markers as the cloud grows so dense clusters keep their shape
    return float(np.clip(500.0 / np.sqrt(max(n, 1)), 1.5, 25.0))


def _draw_scatter(ax: "Axes", x: np.ndarray, y: np.ndarray, colouring: _Colouring, *, legend: bool = True) -> Any:
    from matplotlib.colors import Normalize
    from matplotlib.lines import Line2D

    size = _point_size(len(x))
    alpha = 0.75 if len(x) <= 5_000 else 0.5
    if not colouring.categorical:
        values = colouring.values
        finite = values[np.isfinite(values)] if values is not None else np.array([0.0])
        norm = Normalize(vmin=float(finite.min()) if finite.size else 0.0, vmax=float(finite.max()) if finite.size else 1.0)
        mappable = ax.scatter(x, y, c=values, cmap="viridis", norm=norm, s=size, alpha=alpha, linewidths=0, rasterized=len(x) > 2_000)
        return mappable
    handles = []
    assert colouring.codes is not None
    for code, (name, colour, marker) in enumerate(zip(colouring.level_names, colouring.colours, colouring.markers)):
        mask = colouring.codes == code
        if mask.any():
            ax.scatter(x[mask], y[mask], color=colour, marker=marker, s=size, alpha=alpha, linewidths=0, rasterized=len(x) > 2_000)
        handles.append(Line2D([], [], linestyle="", marker=marker, color=colour, markersize=7, label=f"{name} ({int(mask.sum()):,})"))
    if legend and colouring.name:
        ax.legend(handles=handles, title=colouring.name, loc="lower right", fontsize=8, title_fontsize=9, framealpha=0.85)
    return None


def _density(x: np.ndarray, y: np.ndarray, xmax: float) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    return np.histogram2d(x, y, bins=_DENSITY_BINS, range=[[0.0, xmax], [0.0, 1.0]])


def _draw_density(ax: "Axes", histogram: Tuple[np.ndarray, np.ndarray, np.ndarray], norm: Optional["LogNorm"] = None) -> Any:
    from matplotlib.colors import LogNorm

    counts, xedges, yedges = histogram
    if norm is None:
        norm = LogNorm(vmin=1.0, vmax=max(float(counts.max()), 1.0 + 1e-9))
    masked = np.ma.masked_equal(counts.T, 0)  # empty cells stay white
    return ax.pcolormesh(xedges, yedges, masked, norm=norm, cmap="viridis", rasterized=True)


def _boundaries(dm: Any, label_index: Optional[int], xmax: float) -> List[_mapview.Boundary]:
    """The region rule's edges for the view of ``label_index`` (none without a known rule)."""
    if "region" not in dm.frame.columns:
        return []
    rule = getattr(dm, "region_rule", None)
    group = _mapview.rule_group(dm, label_index)
    return _mapview.region_boundaries(rule, group, xmax, n_epochs=_n_epochs(dm), ddof=int(getattr(dm, "ddof", 0) or 0))


def _draw_boundaries(ax: "Axes", boundaries: Sequence[_mapview.Boundary], *, legend_title: Optional[str], lw: float = 1.6) -> Optional[Any]:
    """Dashed lines in the region's colour; with ``legend_title`` a legend that says the rule."""
    from matplotlib.patheffects import withStroke

    handles = []
    for boundary in boundaries:
        # a white edge keeps a line visible where it crosses a cloud of its own colour
        (line,) = ax.plot(boundary.x, boundary.y, color=REGION_COLOURS[boundary.region], lw=lw, ls="--", label=boundary.text, zorder=3,
                          path_effects=[withStroke(linewidth=lw + 2, foreground="white", alpha=0.8)])
        line.set_gid(BOUNDARY_GID + boundary.region)
        handles.append(line)
    if not handles or legend_title is None:
        return None
    return ax.legend(handles=handles, title=legend_title, loc="upper right", fontsize=8, title_fontsize=8, framealpha=0.85)


def _rule_title(dm: Any) -> str:
    rule = getattr(dm, "region_rule", None) or {}
    return f"regions: {rule.get('rule', 'unknown')} rule"


def _annotate_regions(ax: "Axes", view: "pl.DataFrame", xmax: float, fontsize: float = 11) -> None:
    """Each region's name and count on its cloud (none without a region column)."""
    counts = _mapview.region_counts(view)
    total = max(view.height, 1)
    for key, (x, y) in _mapview.region_anchors(view, xmax).items():
        text = f"{REGION_TEXT[key]}\n{counts[key]:,} ({100.0 * counts[key] / total:.0f}%)"
        # a box centred on a cloud at the map's edge would stick out of the axes: anchor it by its side
        ha = "left" if x < 0.15 * xmax else "right" if x > 0.85 * xmax else "center"
        va = "top" if y > 0.9 else "bottom" if y < 0.1 else "center"
        note = ax.annotate(text, xy=(x, y), xycoords="data", ha=ha, va=va, fontsize=fontsize, zorder=4,
                           bbox=dict(boxstyle="round,pad=0.3", ec=REGION_COLOURS[key], lw=2, fc="white", alpha=0.8))
        note.set_gid(REGION_LABEL_GID + key)


def _finite(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    return values[np.isfinite(values)]


def _style_histogram(ax: "Axes", name: str) -> None:
    from matplotlib.ticker import EngFormatter

    ax.set_xlabel(name, fontsize=9)
    ax.set_ylabel("examples", fontsize=9)
    ax.yaxis.set_major_formatter(EngFormatter(sep=""))
    ax.tick_params(labelsize=8)


def _histogram(ax: "Axes", values: np.ndarray, lo: float, hi: float, name: str, colour: str = "#4d4d4d") -> None:
    counts, edges = np.histogram(_finite(values), bins=30, range=(lo, hi))
    ax.stairs(counts, edges, fill=True, color=colour, alpha=0.8)
    _style_histogram(ax, name)
    ax.set_xlim(lo, hi)


def _correctness_bars(ax: "Axes", correctness: np.ndarray, n_epochs: Optional[int]) -> None:
    """One bar per value correctness can take (0, 1/E, ..., 1), coloured by its map level."""
    values, counts = _mapview.correctness_histogram(correctness, n_epochs)
    levels = correctness_levels(values, n_epochs)
    colours = levels.colours
    gap = float(np.diff(values).min()) if len(values) > 1 else 1.0
    ax.bar(values, counts, width=0.8 * gap, color=[colours[k] for k in levels.codes], alpha=0.85)
    ax.set_xlim(-0.6 * gap, 1.0 + 0.6 * gap)
    ax.set_xticks(np.linspace(0.0, 1.0, 6))
    _style_histogram(ax, "correctness")


# ----------------------------------------------------------------------------------------------
# the data map


def plot_map(
    dm: Any,
    *,
    label: LabelLike = None,
    color: Optional[str] = "correctness",
    density: Optional[bool] = None,
    title: Optional[str] = None,
    annotate_regions: bool = True,
    max_scatter: int = 100_000,
) -> "Figure":
    """The paper's data map with histograms of confidence, variability and correctness beside it.

    Args:
        dm: a :class:`datacarto.DataMap`.
        label: multilabel: the label to draw (index or name; required unless there is one
            label; :func:`plot_label_grid` draws them all). Multiclass / binary: ``None`` for
            every example, or a class to draw only the examples whose gold label it is.
        color: the column that colours the points. ``"correctness"`` (default) bins it into
            levels (:func:`correctness_levels`) with one colour and marker each, as the paper
            does; ``"region"`` and integer, boolean or text columns with at most 20 distinct
            values are categorical; float columns use a continuous colour scale. ``None``: one colour.
        density: draw a log-scaled 2-D histogram instead of points. ``None`` (default): when
            there are more than ``max_scatter`` points. The density view ignores ``color``.
        title: the figure title (default: "Data map", the label and the example count).
        annotate_regions: when the map has regions (:meth:`datacarto.DataMap.regions`): draw
            the rule's boundaries (dashed, with a legend that states the rule) and put each
            region's name and count on its cloud (at the region's point nearest its median).
        max_scatter: the largest number of points drawn one by one.

    Returns:
        A :class:`~matplotlib.figure.Figure`; the map is ``fig.axes[0]``.

    Raises:
        DatacartoError: an unknown ``label`` or ``color``, or a multilabel map without ``label``.

    Example:
        >>> import numpy as np, datacarto as dc
        >>> probs = np.random.default_rng(1).dirichlet(np.ones(2), size=(4, 300)).astype(np.float32)
        >>> dm = dc.DataMap(dc.compute(probs, np.ones(300, dtype=int)))
        >>> fig = dc.plots.plot_map(dm, title="random")
        >>> fig.axes[0].get_title()
        'random'
        >>> dense = dc.plots.plot_map(dm, density=True)   # the rendering used above max_scatter
    """
    from matplotlib.figure import Figure

    view, caption, label_index = _map_view(dm, label)
    x = view["variability"].to_numpy().astype(np.float64, copy=False)
    y = view["confidence"].to_numpy().astype(np.float64, copy=False)
    n = len(x)
    dense = n > max_scatter if density is None else bool(density)
    xmax = _mapview.variability_limit(x)

    fig = Figure(figsize=(12, 8), layout="constrained")
    grid = fig.add_gridspec(3, 2, width_ratios=[4, 1.3])
    ax = fig.add_subplot(grid[:, 0])
    if annotate_regions:
        # drawn first and kept as an artist: the colour legend below then becomes ax.get_legend()
        rule_legend = _draw_boundaries(ax, _boundaries(dm, label_index, xmax), legend_title=_rule_title(dm))
        if rule_legend is not None:
            rule_legend.set_gid(RULE_LEGEND_GID)
            ax.add_artist(rule_legend)
    if dense:
        mesh = _draw_density(ax, _density(x, y, xmax))
        fig.colorbar(mesh, ax=ax, label="examples per cell (log scale)", shrink=0.6, pad=0.01)
    else:
        colouring = _colouring(dm, view, color)
        mappable = _draw_scatter(ax, x, y, colouring)
        if mappable is not None:
            fig.colorbar(mappable, ax=ax, label=colouring.name, shrink=0.6, pad=0.01)
    ax.set_xlim(0.0, xmax)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("variability")
    ax.set_ylabel("confidence")
    ax.grid(True, alpha=0.25)
    if annotate_regions:
        _annotate_regions(ax, view, xmax)
    if title is None:
        title = "Data map" + (f": {caption}" if caption else "") + f" ({n:,} examples" + (", density" if dense else "") + ")"
    ax.set_title(title)

    _histogram(fig.add_subplot(grid[0, 1]), y, 0.0, 1.0, "confidence")
    _histogram(fig.add_subplot(grid[1, 1]), x, 0.0, xmax, "variability")
    if "correctness" in view.columns:
        _correctness_bars(fig.add_subplot(grid[2, 1]), view["correctness"].to_numpy(), _n_epochs(dm))
    return fig


def plot_label_grid(
    dm: Any,
    labels: Optional[Sequence[Union[int, str]]] = None,
    *,
    ncols: int = 4,
    color: Optional[str] = "correctness",
    density: Optional[bool] = None,
    max_scatter: int = 100_000,
    title: Optional[str] = None,
) -> "Figure":
    """One small data map per label (multilabel) or per gold class (multiclass / binary).

    Args:
        dm: a :class:`datacarto.DataMap`.
        labels: the labels to draw (indices or names); default: all of them.
        ncols: panels per row.
        color: as in :func:`plot_map`.
        density: log-scaled density images instead of points; ``None`` (default): when the
            panels together hold more than ``max_scatter`` points.
        max_scatter: the largest total number of points drawn one by one.
        title: the figure title.

    With regions (:meth:`datacarto.DataMap.regions`) every panel shows the rule's boundaries
    as dashed lines (for multilabel maps the data-driven cut-offs are the panel's label's own).

    Example:
        >>> import numpy as np, datacarto as dc
        >>> rng = np.random.default_rng(0)
        >>> probs = rng.uniform(size=(4, 100, 3)).astype(np.float32)
        >>> dm = dc.DataMap(dc.compute(probs, rng.integers(0, 2, size=(100, 3))))
        >>> fig = dc.plots.plot_label_grid(dm, ncols=3)
        >>> len([ax for ax in fig.axes if ax.get_title()])
        3
    """
    from matplotlib.colors import LogNorm
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    if isinstance(ncols, bool) or not isinstance(ncols, (int, np.integer)) or ncols < 1:
        raise DatacartoError(f"ncols: expected a positive int, found {ncols!r}")
    n_labels = int(dm.n_labels) if dm.task == "multilabel" else _n_classes(dm)
    indices = list(range(n_labels)) if labels is None else [_resolve_label(dm, lab, "labels") for lab in labels]
    if not indices:
        raise DatacartoError("labels: expected at least one label, found none")
    frame = dm.frame
    _require_columns(frame, ("confidence", "variability"))
    key = "label" if dm.task == "multilabel" else "gold"
    _require_columns(frame, (key,))
    views = {int(k[0]): part for k, part in zip(*_partition(frame, key))}
    empty = frame.clear()
    panels = [(i, views.get(i, empty)) for i in indices]
    total = sum(p.height for _, p in panels)
    dense = total > max_scatter if density is None else bool(density)

    ncols = min(int(ncols), len(panels))
    nrows = -(-len(panels) // ncols)
    fig = Figure(figsize=(3.2 * ncols, 3.0 * nrows + 0.6), layout="constrained")
    axes = fig.subplots(nrows, ncols, sharex=True, sharey=True, squeeze=False)
    xmax = _mapview.variability_limit(frame["variability"].to_numpy())
    legend_handles: List[Line2D] = []
    histograms = [_density(p["variability"].to_numpy(), p["confidence"].to_numpy(), xmax) for _, p in panels] if dense else []
    # one colour scale for every panel, so that panels compare
    norm = LogNorm(vmin=1.0, vmax=max([float(h[0].max()) for h in histograms] + [1.0 + 1e-9])) if dense else None
    mesh = None
    for k, (ax, (index, view)) in enumerate(zip(axes.flat, panels)):
        x = view["variability"].to_numpy().astype(np.float64, copy=False)
        y = view["confidence"].to_numpy().astype(np.float64, copy=False)
        if dense:
            mesh = _draw_density(ax, histograms[k], norm)
        else:
            colouring = _colouring(dm, view, color)
            _draw_scatter(ax, x, y, colouring, legend=False)
            if colouring.categorical and not legend_handles and colouring.name:
                legend_handles = [Line2D([], [], linestyle="", marker=m, color=c, markersize=6, label=name)
                                  for name, c, m in zip(colouring.level_names, colouring.colours, colouring.markers)]
        _draw_boundaries(ax, _boundaries(dm, index if key == "label" else None, xmax), legend_title=None, lw=1.0)
        ax.set_title(f"{_label_title(dm, index)} ({view.height:,})", fontsize=9)
        ax.set_xlim(0.0, xmax)
        ax.set_ylim(-0.02, 1.02)
        ax.tick_params(labelsize=7)
        ax.grid(True, alpha=0.25)
    for ax in axes[-1]:
        ax.set_xlabel("variability", fontsize=8)
    for k in range(len(panels), nrows * ncols):
        axes.flat[k].set_visible(False)
        # the panel above an empty slot is the bottom of its column: it carries the x axis
        above = axes.flat[k - ncols]
        above.xaxis.set_tick_params(labelbottom=True)
        above.set_xlabel("variability", fontsize=8)
    for ax in axes[:, 0]:
        ax.set_ylabel("confidence", fontsize=8)
    if mesh is not None:
        fig.colorbar(mesh, ax=axes, label="examples per cell (log scale)", shrink=0.8, pad=0.01)
    if legend_handles:
        fig.legend(handles=legend_handles, title=color, loc="outside lower center", ncols=min(len(legend_handles), 8), fontsize=8, title_fontsize=8)
    fig.suptitle(title if title is not None else f"Data maps per {'label' if key == 'label' else 'gold class'}" + (" (density, log scale)" if dense else ""))
    return fig


def _n_classes(dm: Any) -> int:
    names = _label_names(dm)
    if names is not None:
        return len(names)
    n_labels = int(getattr(dm, "n_labels", 0) or 0)
    if dm.task == "binary" or n_labels < 2:
        return 2
    return n_labels


def _partition(frame: "pl.DataFrame", key: str) -> Tuple[List[Tuple[Any, ...]], List["pl.DataFrame"]]:
    parts = frame.partition_by(key, as_dict=True, maintain_order=True)
    return list(parts.keys()), list(parts.values())


# ----------------------------------------------------------------------------------------------
# trajectories


def _example_ids(examples: Any) -> np.ndarray:
    try:
        import polars as pl

        if isinstance(examples, pl.DataFrame):
            _require_columns(examples, ("example",), "examples")
            examples = examples["example"]
        if isinstance(examples, pl.Series):
            examples = examples.to_numpy()
    except ImportError:  # pragma: no cover - polars is a dependency
        pass
    if isinstance(examples, (int, np.integer)) and not isinstance(examples, (bool, np.bool_)):
        examples = [examples]
    array = np.asarray(examples)
    if array.ndim != 1 or array.size == 0:
        raise DatacartoError(f"examples: expected a non-empty list of example ids, found shape {array.shape}")
    if array.dtype.kind not in "iu":
        raise DatacartoError(f"examples: expected integer example ids, found dtype {array.dtype}")
    # keep the caller's order, drop repeats (a multilabel selection lists an example per label)
    _, first = np.unique(array, return_index=True)
    return array[np.sort(first)].astype(np.int64)


def _snippet(text: Any, width: int = 48) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 1] + "…"


def plot_trajectories(
    dm: Any,
    examples: Any,
    *,
    label: LabelLike = None,
    ax: Optional["Axes"] = None,
    text_column: Optional[str] = None,
) -> "Figure":
    """The gold label's probability of chosen examples across epochs (the tutorial's per-example plot).

    Epochs where the model was right (by the map's correctness rule: argmax with ties wrong for
    multiclass, ``p >= threshold`` otherwise) are drawn as filled circles, wrong epochs as
    crosses. Epochs are numbered as ``first_learned`` numbers them: 0 is the first epoch of
    the window the statistics were computed over, and the axis names that window in the file's
    epochs (``"epoch (0-based in the window: file epochs 2..9)"``). Every epoch of the dynamics is drawn;
    epochs outside the window (a burn-in: negative numbers) are shaded grey.

    Args:
        dm: a :class:`datacarto.DataMap` that knows its dynamics (the ``.npy`` path, read with
            a memory map so that only the chosen examples are loaded, or the array); the
            probabilities come from :meth:`datacarto.DataMap.trajectories`.
        examples: example ids (ints), or a polars frame / series with an ``example`` column
            (e.g. ``dm.suspects(5)``). Repeated ids are drawn once.
        label: multilabel: the label whose probability to draw (index or name).
        ax: draw into this axes instead of a new figure.
        text_column: the column whose text the legend shows (default: ``text`` if present).

    Returns:
        The figure holding the axes.

    Raises:
        DatacartoError: the map has no dynamics, an id is out of range, or a bad ``label``.

    Example:
        >>> import numpy as np, datacarto as dc
        >>> probs = np.random.default_rng(2).dirichlet(np.ones(3), size=(6, 50)).astype(np.float32)
        >>> dm = dc.DataMap.from_dynamics(probs, np.zeros(50, dtype=int))
        >>> fig = dc.plots.plot_trajectories(dm, [0, 7])
        >>> fig.axes[0].get_xlabel()
        'epoch (0-based in the window: file epochs 0..5)'
    """
    from matplotlib.figure import Figure

    ids = _example_ids(examples)
    if dm.task == "multilabel" and label is None and int(dm.n_labels) == 1:
        label = 0
    traj = dm.trajectories(ids, label=label)
    p, right = np.asarray(traj.probability), np.asarray(traj.correct)  # [k, E]
    in_window = np.asarray(traj.in_window, dtype=bool)
    file_epochs = np.asarray(traj.epochs)
    window = getattr(dm, "epochs", None) or (0, len(file_epochs))
    epochs = file_epochs - int(window[0])  # as first_learned counts: 0 = the window's first epoch
    gold = np.asarray(dm.labels)[ids]
    names = _label_names(dm)
    caption = ""
    if traj.label is not None:
        gold = gold[:, traj.label]
        caption = f" of {_label_title(dm, traj.label)}"

    if ax is None:
        fig = Figure(figsize=(9, 5), layout="constrained")
        ax = fig.add_subplot()
    else:
        fig = ax.figure  # type: ignore[assignment]
    if not in_window.all():
        # shade the epochs the statistics ignore (burn-in or a window's tail)
        for e in epochs[~in_window]:
            ax.axvspan(e - 0.5, e + 0.5, color="#000000", alpha=0.06, lw=0)
        ax.fill_between([], [], color="#000000", alpha=0.06, label="outside the statistics window")
    texts = _texts(dm, ids, text_column)
    for j, example in enumerate(ids.tolist()):
        colour = f"C{j % 10}"
        ok = right[j]
        ax.plot(epochs, p[j], color=colour, lw=1.5, alpha=0.8)
        ax.plot(epochs[ok], p[j, ok], linestyle="", marker="o", color=colour, markersize=7)
        ax.plot(epochs[~ok], p[j, ~ok], linestyle="", marker="x", color=colour, markersize=8, markeredgewidth=2)
        gold_text = str(int(gold[j]))
        if traj.label is None and names is not None and 0 <= int(gold[j]) < len(names):
            gold_text = names[int(gold[j])]
        entry = f"#{example} (gold {gold_text})"
        if texts is not None:
            entry += f": {_snippet(texts[j])}"
        ax.plot([], [], color=colour, lw=1.5, label=entry)
    ax.plot([], [], linestyle="", marker="o", color="#555555", label="right at this epoch")
    ax.plot([], [], linestyle="", marker="x", color="#555555", markeredgewidth=2, label="wrong at this epoch")
    rule = getattr(dm, "correctness_rule", None) or ("argmax" if dm.task == "multiclass" else "threshold")
    if rule == "threshold" or dm.task != "multiclass":
        threshold = float(getattr(dm, "threshold", None) or 0.5)
        ax.axhline(threshold, color="#999999", lw=0.8, ls="--", label=f"threshold {threshold:g}")
    ax.set_ylim(-0.03, 1.03)
    ax.set_xlim(epochs[0] - 0.5, epochs[-1] + 0.5)
    ax.set_xlabel(f"epoch (0-based in the window: {_mapview.window_caption(window)})")
    ax.set_ylabel(f"probability of the gold label{caption}")
    ax.set_xticks(epochs if len(epochs) <= 20 else np.unique(np.linspace(epochs[0], epochs[-1], 10).round().astype(int)))
    ax.grid(True, alpha=0.25)
    if len(ids) <= 20:
        # below the axes: inside it would hide the very lines it explains
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncols=2 if len(ids) > 6 else 1, frameon=False)
    ax.set_title(f"Training dynamics of {len(ids)} example{'s' if len(ids) != 1 else ''}{caption}")
    return fig  # type: ignore[return-value]


def _texts(dm: Any, ids: np.ndarray, text_column: Optional[str]) -> Optional[List[str]]:
    import polars as pl

    frame = dm.frame
    column = text_column if text_column is not None else ("text" if "text" in frame.columns else None)
    if column is None:
        return None
    _require_columns(frame, (column,))
    _require_columns(frame, ("example",))
    rows = frame.select("example", column).unique(subset="example", keep="first", maintain_order=True)
    lookup = dict(zip(rows["example"].to_list(), rows[column].cast(pl.Utf8).to_list()))
    return [lookup.get(int(i)) or "" for i in ids]
