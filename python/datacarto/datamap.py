"""The data map: per-example statistics plus metadata, regions, suspects and IO.

A :class:`DataMap` holds a polars DataFrame (:attr:`DataMap.frame`) with one row per example
(one row per example and label for multilabel): the ids (``example``, ``label``), the gold
label (``gold``, and ``gold_name`` / ``label_name`` when label names are known), every
statistic of :data:`datacarto.STATISTICS`, an optional ``region`` column and the user's
metadata columns (text, ids, anything one row per example).

Example:
    >>> import numpy as np, datacarto as dc
    >>> rng = np.random.default_rng(0)
    >>> probs = rng.dirichlet(np.ones(3), size=(6, 40)).astype(np.float32)
    >>> dm = dc.DataMap.from_dynamics(probs, rng.integers(0, 3, 40), metadata=[f"text {i}" for i in range(40)])
    >>> dm.frame.columns[:3]
    ['example', 'gold', 'confidence']
    >>> sorted(dm.regions("quantiles").region_counts())
    ['ambiguous', 'easy', 'hard', 'unassigned']
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import polars as pl

from datacarto._core import DatacartoError
from datacarto._epochwise import gold_probabilities, right_epochs
from datacarto._scores import SCORES, check_name, default_score
from datacarto._scores import score as _score
from datacarto._stats import STATISTICS, Statistics, _dynamics_name, compute

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from datacarto._confident import LabelIssues

PathLike = Union[str, "os.PathLike[str]"]
MetadataLike = Union[pl.DataFrame, Mapping[str, Sequence[Any]], Sequence[Any], Any]

#: Region names, in display order.
REGIONS = ("easy", "ambiguous", "hard")
#: Region rules accepted by :meth:`DataMap.regions`.
RULES = ("thresholds", "quantiles", "data-iq", "class-quantiles")

_FORMAT_VERSION = 1
_METADATA_KEY = "datacarto"
_SIDECAR_SUFFIX = ".datacarto.json"
# Canonical dtypes of the columns datacarto itself writes (restored after CSV round trips).
_STAT_DTYPES: Dict[str, Any] = {
    "example": pl.Int64,
    "label": pl.Int64,
    "gold": pl.Int64,
    "confidence": pl.Float64,
    "variability": pl.Float64,
    "correctness": pl.Float64,
    "forgetting": pl.Int32,
    "never_learned": pl.Boolean,
    "first_learned": pl.Int32,
    "threshold_closeness": pl.Float64,
    "margin": pl.Float64,
    "aleatoric": pl.Float64,
    "el2n": pl.Float64,
    "mixture_confidence": pl.Float64,
    "suspicion": pl.Float64,
    "gold_name": pl.String,
    "label_name": pl.String,
    "region": pl.String,
}
_RESERVED = frozenset(_STAT_DTYPES) | {"rank"}
# Simple dtypes a CSV sidecar can restore by name.
_SIMPLE_DTYPES = ("Int8", "Int16", "Int32", "Int64", "UInt8", "UInt16", "UInt32", "UInt64", "Float32", "Float64", "Boolean", "String")
# The paper's selection order per region: (column, descending).
_REGION_ORDER = {"easy": ("confidence", True), "ambiguous": ("variability", True), "hard": ("confidence", False)}


@dataclass(frozen=True)
class Trajectories:
    """Per-epoch gold-label probabilities of chosen examples (see :meth:`DataMap.trajectories`).

    ``probability`` and ``correct`` are ``[k, E]`` over every epoch of the dynamics file;
    ``in_window`` marks the epochs the statistics were computed over.
    """

    examples: np.ndarray
    label: Optional[int]
    epochs: np.ndarray
    probability: np.ndarray
    correct: np.ndarray
    in_window: np.ndarray


@dataclass(frozen=True)
class _Info:
    task: str
    n_examples: int
    n_labels: int
    epochs: Optional[Tuple[int, int]]
    correctness_rule: str
    threshold: float
    ddof: int
    label_names: Optional[Tuple[str, ...]] = None
    source: Optional[str] = None
    region_rule: Optional[Dict[str, Any]] = None
    metadata_columns: Tuple[str, ...] = ()
    dynamics: Any = field(default=None, compare=False)
    #: a cross-validated map's epoch mixture over its window (datacarto._mixture), if any
    epoch_weights: Optional[Tuple[float, ...]] = None

    def to_json(self) -> Dict[str, Any]:
        return {
            "format": _FORMAT_VERSION,
            "task": self.task,
            "n_examples": self.n_examples,
            "n_labels": self.n_labels,
            "epochs": list(self.epochs) if self.epochs is not None else None,
            "correctness_rule": self.correctness_rule,
            "threshold": self.threshold,
            "ddof": self.ddof,
            "label_names": list(self.label_names) if self.label_names is not None else None,
            "source": self.source,
            # An in-memory array cannot be saved: only a path survives a round trip.
            "dynamics": self.dynamics if isinstance(self.dynamics, str) else None,
            "region_rule": self.region_rule,
            "metadata_columns": list(self.metadata_columns),
            "epoch_weights": list(self.epoch_weights) if self.epoch_weights is not None else None,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any], name: str) -> "_Info":
        try:
            epochs = data.get("epochs")
            info = cls(
                task=str(data["task"]),
                n_examples=int(data["n_examples"]),
                n_labels=int(data["n_labels"]),
                epochs=(int(epochs[0]), int(epochs[1])) if epochs is not None else None,
                correctness_rule=str(data["correctness_rule"]),
                threshold=float(data["threshold"]),
                ddof=int(data["ddof"]),
                label_names=tuple(str(x) for x in data["label_names"]) if data.get("label_names") is not None else None,
                source=data.get("source"),
                region_rule=data.get("region_rule"),
                metadata_columns=tuple(data.get("metadata_columns") or ()),
                dynamics=data.get("dynamics"),
                epoch_weights=tuple(float(w) for w in data["epoch_weights"]) if data.get("epoch_weights") is not None else None,
            )
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise DatacartoError(f"{name}: datacarto metadata: expected task, n_examples, n_labels, correctness_rule, threshold and ddof, found {dict(data)!r}") from exc
        weights = info.epoch_weights
        if weights is not None:
            window = None if info.epochs is None else info.epochs[1] - info.epochs[0]
            if (window is not None and len(weights) != window) or not all(math.isfinite(w) and w >= 0 for w in weights) or not math.isclose(sum(weights), 1.0, abs_tol=1e-6):
                raise DatacartoError(f"{name}: datacarto metadata: epoch_weights: expected {window if window is not None else 'one per epoch'} non-negative weights summing to 1, found {list(weights)!r}")
        return info


class DataMap:
    """Per-example statistics and metadata as a polars frame, with regions, suspects and IO.

    Args:
        stats: the :class:`~datacarto.Statistics` from :func:`datacarto.compute`.
        metadata: one row per example: a polars or pandas DataFrame, a dict of columns, a
            polars / pandas Series, or a sequence of texts (which becomes a ``text`` column).
            For multilabel maps each example's metadata repeats on its label rows.
        label_names: class names (multiclass: ``L`` names; one-column binary: 2 names) or
            label names (multilabel: ``L``). Adds a ``gold_name`` (or ``label_name``) column.
        dynamics: the dynamics file path or array the statistics came from (default:
            ``stats.source``). Kept so that :meth:`trajectories` and trajectory plots can read
            the per-epoch probabilities.

    Raises:
        TypeError: ``stats`` is not a Statistics, or ``metadata`` is of an unsupported kind.
        DatacartoError: ``metadata`` does not have one row per example, one of its columns
            clashes with a datacarto column, or ``label_names`` has the wrong length.

    Example:
        >>> import numpy as np, datacarto as dc
        >>> probs = np.array([[[0.9, 0.1], [0.3, 0.7]], [[0.8, 0.2], [0.6, 0.4]]], dtype=np.float32)
        >>> stats = dc.compute(probs, [0, 1])
        >>> dm = dc.DataMap(stats, {"id": ["a", "b"]}, label_names=["neg", "pos"])
        >>> dm.frame.select("example", "gold_name", "id").rows()
        [(0, 'neg', 'a'), (1, 'pos', 'b')]
    """

    def __init__(
        self,
        stats: Statistics,
        metadata: Optional[MetadataLike] = None,
        *,
        label_names: Optional[Sequence[str]] = None,
        dynamics: Any = None,
    ) -> None:
        if not isinstance(stats, Statistics):
            raise TypeError(f"stats: expected a datacarto.Statistics (from datacarto.compute), found {type(stats).__name__}")
        stats.require(STATISTICS, "a DataMap")
        names = _check_label_names(label_names, stats.task, stats.n_labels)
        if dynamics is None:
            dynamics = stats.source
        elif isinstance(dynamics, os.PathLike):
            dynamics = os.fspath(dynamics)
        frame = stats.to_polars()
        multilabel = stats.task == "multilabel"
        mixture = stats.extra.get("mixture_confidence")
        if mixture is not None and not multilabel:  # a cross-validated map's epoch mixture (datacarto._mixture)
            frame = frame.with_columns(pl.Series("mixture_confidence", np.asarray(mixture, dtype=np.float64)))
        frame = frame.with_columns(_suspicion_column(frame, multilabel))
        if names is not None:
            column = "label_name" if multilabel else "gold_name"
            index = frame["label" if multilabel else "gold"].to_numpy()
            frame = frame.insert_column(frame.columns.index("label" if multilabel else "gold") + 1, pl.Series(column, np.asarray(names, dtype=object)[index].tolist(), dtype=pl.String))
        meta = _metadata_frame(metadata, stats.n_examples)
        if meta is not None:
            if multilabel:
                meta = meta.select(pl.all().gather(np.repeat(np.arange(stats.n_examples), stats.n_labels)))
            frame = pl.concat([frame, meta], how="horizontal")
        info = _Info(
            task=stats.task,
            n_examples=stats.n_examples,
            n_labels=stats.n_labels,
            epochs=tuple(stats.epochs),  # type: ignore[arg-type]
            correctness_rule=stats.correctness_rule,
            threshold=float(stats.threshold),
            ddof=int(stats.ddof),
            label_names=names,
            source=stats.source,
            metadata_columns=tuple(meta.columns) if meta is not None else (),
            dynamics=dynamics,
            epoch_weights=_epoch_weights(stats),
        )
        self._init(frame, info, stats)

    def _init(self, frame: pl.DataFrame, info: _Info, stats: Optional[Statistics]) -> None:
        self._frame = frame
        self._info = info
        self._stats = stats

    @classmethod
    def _build(cls, frame: pl.DataFrame, info: _Info, stats: Optional[Statistics] = None) -> "DataMap":
        dm = cls.__new__(cls)
        dm._init(frame, info, stats)
        return dm

    @classmethod
    def from_dynamics(
        cls,
        source: Any,
        labels: Any,
        metadata: Optional[MetadataLike] = None,
        *,
        label_names: Optional[Sequence[str]] = None,
        **compute_kwargs: Any,
    ) -> "DataMap":
        """Compute the statistics of a dynamics file or array and wrap them in a DataMap.

        ``compute_kwargs`` go to :func:`datacarto.compute` (``task``, ``correctness``,
        ``threshold``, ``epochs``, ``ddof``, ``threads``, ``progress``).

        Example:
            >>> import numpy as np, datacarto as dc
            >>> probs = np.full((3, 4, 2), 0.5, dtype=np.float32)
            >>> dc.DataMap.from_dynamics(probs, [0, 1, 0, 1], epochs=1).epochs
            (1, 3)
        """
        stats = compute(source, labels, **compute_kwargs)
        return cls(stats, metadata, label_names=label_names, dynamics=source)

    # ------------------------------------------------------------------ properties

    @property
    def frame(self) -> pl.DataFrame:
        """The map as a polars DataFrame (one row per example, per example and label for multilabel)."""
        return self._frame

    @property
    def task(self) -> str:
        """``"multiclass"``, ``"binary"`` or ``"multilabel"``."""
        return self._info.task

    @property
    def n_examples(self) -> int:
        return self._info.n_examples

    @property
    def n_labels(self) -> int:
        """Label columns of the dynamics file (1 for a one-column binary file)."""
        return self._info.n_labels

    @property
    def label_names(self) -> Optional[List[str]]:
        return list(self._info.label_names) if self._info.label_names is not None else None

    @property
    def epochs(self) -> Optional[Tuple[int, int]]:
        """The half-open epoch window the statistics cover (``None`` if read from a file without it)."""
        return self._info.epochs

    @property
    def correctness_rule(self) -> str:
        return self._info.correctness_rule

    @property
    def threshold(self) -> float:
        return self._info.threshold

    @property
    def ddof(self) -> int:
        return self._info.ddof

    @property
    def dynamics(self) -> Any:
        """The dynamics file path (or array) the statistics came from, if known."""
        return self._info.dynamics

    @property
    def metadata_columns(self) -> List[str]:
        """The columns that came from the user's metadata."""
        return list(self._info.metadata_columns)

    @property
    def region_rule(self) -> Optional[Dict[str, Any]]:
        """The rule and parameters of the last :meth:`regions` call (``None`` without regions)."""
        return dict(self._info.region_rule) if self._info.region_rule is not None else None

    @property
    def labels(self) -> np.ndarray:
        """Gold labels: int64 ``[N]`` or uint8 ``[N, L]`` (multilabel)."""
        return self.statistics.labels

    @property
    def statistics(self) -> Statistics:
        """The :class:`~datacarto.Statistics` (rebuilt from the frame for a map read from a file)."""
        if self._stats is None:
            self._stats = self._rebuild_statistics()
        return self._stats

    def __len__(self) -> int:
        return self._frame.height

    def __repr__(self) -> str:
        regions = f", regions={self._info.region_rule['rule']!r}" if self._info.region_rule else ""
        return f"DataMap(task={self.task!r}, examples={self.n_examples}, labels={self.n_labels}, epochs={self.epochs}{regions}, rows={len(self)})"

    def with_dynamics(self, dynamics: Any) -> "DataMap":
        """A copy that reads per-epoch probabilities from ``dynamics`` (a path or an array)."""
        if isinstance(dynamics, os.PathLike):
            dynamics = os.fspath(dynamics)
        return self._build(self._frame, replace(self._info, dynamics=dynamics), self._stats)

    def _rebuild_statistics(self) -> Statistics:
        info = self._info
        frame = self._frame
        shape = (info.n_examples, info.n_labels) if info.task == "multilabel" else (info.n_examples,)
        arrays = {name: frame[name].to_numpy().reshape(shape) for name in STATISTICS}
        for name in ("forgetting", "first_learned"):
            arrays[name] = arrays[name].astype(np.int32)
        arrays["never_learned"] = arrays["never_learned"].astype(bool)
        gold = frame["gold"].to_numpy().reshape(shape)
        labels = gold.astype(np.uint8) if info.task == "multilabel" else gold.astype(np.int64)
        return Statistics(
            **arrays,
            labels=labels,
            task=info.task,
            correctness_rule=info.correctness_rule,
            threshold=info.threshold,
            epochs=info.epochs if info.epochs is not None else (0, 0),
            ddof=info.ddof,
            n_examples=info.n_examples,
            n_labels=info.n_labels,
            source=info.source,
            extra={} if info.epoch_weights is None else {"epoch_weights": np.asarray(info.epoch_weights, dtype=np.float64)},
        )

    def _label_index(self, label: Union[int, str, None], argument: str = "label") -> Optional[int]:
        if label is None:
            return None
        if self.task != "multilabel":
            raise DatacartoError(f"{argument}: only applies to a multilabel map, this one is {self.task}")
        if isinstance(label, str):
            if self._info.label_names is None or label not in self._info.label_names:
                known = ", ".join(self._info.label_names) if self._info.label_names else "none (the map has no label_names)"
                raise DatacartoError(f"{argument}: expected a label index or one of the label names, found {label!r}; names: {known}")
            return self._info.label_names.index(label)
        if isinstance(label, bool) or not isinstance(label, (int, np.integer)) or not 0 <= int(label) < self.n_labels:
            raise DatacartoError(f"{argument}: expected a label index in [0, {self.n_labels}) or a label name, found {label!r}")
        return int(label)

    def _rows_for_label(self, frame: pl.DataFrame, label: Union[int, str, None]) -> pl.DataFrame:
        index = self._label_index(label)
        return frame if index is None else frame.filter(pl.col("label") == index)

    # ------------------------------------------------------------------ regions

    def regions(
        self,
        rule: str = "thresholds",
        *,
        easy: Optional[float] = None,
        hard: Optional[float] = None,
        fraction: Union[float, Mapping[str, float], None] = None,
        aleatoric_quantile: Optional[float] = None,
    ) -> "DataMap":
        """A new DataMap with a ``region`` column: ``"easy"``, ``"ambiguous"`` or ``"hard"``.

        Rules:

        - ``"thresholds"`` (the Data Maps tutorial): confidence ``> easy`` (0.6) is easy,
          confidence ``< hard`` (0.4) is hard, everything else is ambiguous.
        - ``"quantiles"`` (the paper's selection): the top ``fraction`` (0.33) of rows by
          variability are ambiguous, the top fraction by confidence are easy and the bottom
          fraction by confidence are hard, each selection holding ``ceil(fraction * rows)`` rows
          (ties broken by example index). Where the selections overlap, **ambiguous wins**
          (high variability puts a row on the map's right side whatever its confidence); rows in
          none of the three selections get a null region (counted as ``"unassigned"``).
          ``fraction`` may be a mapping with ``easy``, ``ambiguous`` and ``hard`` keys; the easy
          and hard fractions must add up to at most 1.
        - ``"data-iq"`` (Seedat et al. 2022): confidence ``>= easy`` (0.75) and aleatoric
          ``<=`` its ``aleatoric_quantile`` (0.5, the median) is easy; confidence ``<= hard``
          (0.25) and aleatoric ``<=`` that quantile is hard; the rest is ambiguous.
        - ``"class-quantiles"`` (class-aware): the ``"quantiles"`` rule applied within each
          gold class, so every class has its own easy, ambiguous and hard examples. For
          many-class models whose probabilities run low, fixed thresholds put whole classes
          (or a quarter of the data) in "hard"; relative to its own class an example is hard
          only when the model believes it less than the class's other examples.

        For multilabel maps the quantiles and the aleatoric median are taken per label.

        Raises:
            DatacartoError: an unknown rule, an option that does not apply to the rule, or a
                threshold / fraction out of range.

        Example:
            >>> import numpy as np, datacarto as dc
            >>> probs = np.array([[[0.9, 0.1], [0.5, 0.5], [0.1, 0.9]]] * 2, dtype=np.float32)
            >>> dm = dc.DataMap.from_dynamics(probs, [0, 0, 0]).regions("thresholds")
            >>> dm.frame["region"].to_list()
            ['easy', 'ambiguous', 'hard']
        """
        rule_name = _normalize_rule(rule)
        given = {"easy": easy, "hard": hard, "fraction": fraction, "aleatoric_quantile": aleatoric_quantile}
        allowed = {"thresholds": ("easy", "hard"), "quantiles": ("fraction",), "class-quantiles": ("fraction",), "data-iq": ("easy", "hard", "aleatoric_quantile")}[rule_name]
        for key, value in given.items():
            if value is not None and key not in allowed:
                raise DatacartoError(f"{key}: does not apply to rule {rule_name!r} (its options: {', '.join(allowed)})")

        frame = self._frame
        confidence = frame["confidence"].to_numpy()
        variability = frame["variability"].to_numpy()
        region = np.full(frame.height, None, dtype=object)
        if rule_name == "thresholds":
            easy_t = _probability("easy", 0.6 if easy is None else easy)
            hard_t = _probability("hard", 0.4 if hard is None else hard)
            if hard_t > easy_t:
                raise DatacartoError(f"hard: expected a threshold <= easy ({easy_t}), found {hard_t}")
            region[:] = "ambiguous"
            region[confidence > easy_t] = "easy"
            region[confidence < hard_t] = "hard"
            params: Dict[str, Any] = {"rule": rule_name, "easy": easy_t, "hard": hard_t}
        elif rule_name == "data-iq":
            easy_t = _probability("easy", 0.75 if easy is None else easy)
            hard_t = _probability("hard", 0.25 if hard is None else hard)
            if hard_t >= easy_t:
                raise DatacartoError(f"hard: expected a threshold < easy ({easy_t}), found {hard_t}")
            q = _probability("aleatoric_quantile", 0.5 if aleatoric_quantile is None else aleatoric_quantile)
            aleatoric = frame["aleatoric"].to_numpy()
            region[:] = "ambiguous"
            for rows in self._groups():
                cut = np.quantile(aleatoric[rows], q)
                low = aleatoric[rows] <= cut
                sub = region[rows]
                sub[low & (confidence[rows] >= easy_t)] = "easy"
                sub[low & (confidence[rows] <= hard_t)] = "hard"
                region[rows] = sub
            params = {"rule": rule_name, "easy": easy_t, "hard": hard_t, "aleatoric_quantile": q}
        else:
            fractions = _fractions(0.33 if fraction is None else fraction)
            groups = self._groups() if rule_name == "quantiles" else self._class_groups()
            for rows in groups:
                sub = region[rows]
                conf, var = confidence[rows], variability[rows]
                # Stable selections (ties: lower example index first); ambiguous written last wins overlaps.
                sub[_top(-conf, fractions["hard"])] = "hard"
                sub[_top(conf, fractions["easy"])] = "easy"
                sub[_top(var, fractions["ambiguous"])] = "ambiguous"
                region[rows] = sub
            params = {"rule": rule_name, "fraction": fractions}
        frame = frame.drop("region") if "region" in frame.columns else frame
        position = frame.columns.index("suspicion" if "suspicion" in frame.columns else "el2n") + 1
        # insert_column works in place: clone (cheap, shares buffers) so this map keeps its frame.
        frame = frame.clone().insert_column(position, pl.Series("region", region.tolist(), dtype=pl.String))
        return self._build(frame, replace(self._info, region_rule=params), self._stats)

    def _class_groups(self) -> List[np.ndarray]:
        """Row indices per (problem, gold class): the rows labelled j, for every class j (for
        multilabel: per label, the rows with target 0 and those with target 1)."""
        gold = self._frame["gold"].to_numpy()
        return [rows[gold[rows] == value] for rows in self._groups() for value in np.unique(gold[rows])]

    def _groups(self) -> List[np.ndarray]:
        """Row indices per independent problem: one group, or one per label for multilabel."""
        if self.task != "multilabel":
            return [np.arange(self._frame.height)]
        label = self._frame["label"].to_numpy()
        return [np.flatnonzero(label == j) for j in range(self.n_labels)]

    def _require_regions(self, what: str) -> None:
        if "region" not in self._frame.columns:
            raise DatacartoError(f"{what}: the map has no region column; call .regions(rule=...) first")

    def region_counts(self, *, per_label: bool = False) -> Any:
        """Rows per region: ``{"easy": n, "ambiguous": n, "hard": n}`` (plus ``"unassigned"``
        when the quantile rule left rows out).

        With ``per_label=True`` (multilabel maps): a polars DataFrame with one row per label and
        one count column per region.

        Example:
            >>> import numpy as np, datacarto as dc
            >>> probs = np.array([[[0.9, 0.1], [0.5, 0.5], [0.1, 0.9]]] * 2, dtype=np.float32)
            >>> dc.DataMap.from_dynamics(probs, [0, 0, 0]).regions().region_counts()
            {'easy': 1, 'ambiguous': 1, 'hard': 1}
        """
        self._require_regions("region_counts")
        region = self._frame["region"]
        if per_label:
            if self.task != "multilabel":
                raise DatacartoError(f"per_label: only applies to a multilabel map, this one is {self.task}")
            keys = ["label"] + (["label_name"] if "label_name" in self._frame.columns else [])
            names = list(REGIONS) + (["unassigned"] if region.null_count() else [])
            return (
                self._frame.select(*keys, pl.col("region").fill_null("unassigned"))
                .group_by(keys)
                .agg([(pl.col("region") == name).sum().alias(name) for name in names])
                .sort("label")
            )
        counts = {name: int((region == name).sum()) for name in REGIONS}
        if region.null_count():
            counts["unassigned"] = int(region.null_count())
        return counts

    def select(
        self,
        region: str,
        n: Optional[int] = None,
        by: Union[str, Sequence[str], None] = None,
        *,
        descending: Optional[bool] = None,
        label: Union[int, str, None] = None,
    ) -> pl.DataFrame:
        """The rows of one region, sorted the way the paper's selection sorts.

        easy: confidence descending; hard: confidence ascending; ambiguous: variability
        descending (ties: example index ascending). ``by`` (a column or several) overrides the
        order, ascending unless ``descending=True``. ``n`` keeps the first ``n`` rows;
        ``label`` keeps one label of a multilabel map.

        Example:
            >>> import numpy as np, datacarto as dc
            >>> probs = np.array([[[0.9, 0.1], [0.7, 0.3], [0.1, 0.9]]] * 2, dtype=np.float32)
            >>> dc.DataMap.from_dynamics(probs, [0, 0, 0]).regions().select("easy")["example"].to_list()
            [0, 1]
        """
        self._require_regions("select")
        if region not in REGIONS:
            raise DatacartoError(f"region: expected one of {', '.join(REGIONS)}, found {region!r}")
        n = _count("n", n)
        rows = self._rows_for_label(self._frame.filter(pl.col("region") == region), label)
        if by is None:
            column, desc = _REGION_ORDER[region]
            columns = [column]
            if descending is not None:
                desc = bool(descending)
        else:
            columns = [by] if isinstance(by, str) else list(by)
            missing = [c for c in columns if c not in rows.columns]
            if missing:
                raise DatacartoError(f"by: expected columns of the map, found unknown {', '.join(map(repr, missing))}; columns: {', '.join(rows.columns)}")
            desc = bool(descending)
        ids = ["example"] + (["label"] if self.task == "multilabel" else [])
        ids = [c for c in ids if c not in columns]
        return _sorted_rows(rows, columns + ids, [desc] * len(columns) + [False] * len(ids), n)

    @property
    def default_score(self) -> str:
        """The score of the ``suspicion`` column: ``"mixture"`` on a cross-validated map
        recorded with its epoch weights (``dc.sklearn.record(..., cv=K)``), else ``"confidence"``."""
        return default_score(self._frame.columns)

    def suspects(self, n: Optional[int] = 50, *, label: Union[int, str, None] = None, score: Optional[str] = None) -> pl.DataFrame:
        """The rows most likely to carry a wrong label, for a person to re-check.

        Ranked by a suspicion score, highest first (ties: margin ascending, then example index). The default score,
        ``"confidence"``, is ``1 − confidence``: one minus the gold label's mean probability
        over the epochs, the map's ``suspicion`` column. On a cross-validated map from
        ``dc.sklearn.record(..., cv=K)`` it is ``"mixture"``: one minus the gold label's
        probability under the mixture of the epochs' out-of-fold predictions that best predicts
        the held-out labels (:attr:`default_score`). They had the best AUPRC at finding
        flipped labels in datacarto's noise benchmark (``docs/label-errors.md``); run
        :func:`datacarto.noise.benchmark` on your own data to see which score to trust there.
        ``score`` picks another one by name (:data:`datacarto.noise.SCORE_NAMES`):
        ``"margin"`` (−AUM), ``"el2n"``, ``"relative_confidence"`` (``1 − confidence / t``,
        ``t`` the mean confidence of the gold class: class-aware) or ``"rank_average"``.

        Returns the first ``n`` rows (all with ``n=None``) with a 1-based ``rank`` column first;
        their ``suspicion`` column holds the score they were ranked by. For multilabel maps each
        (example, label) row is ranked on its own (class-aware scores per label);
        ``label`` restricts to one label.

        Example:
            >>> import numpy as np, datacarto as dc
            >>> probs = np.array([[[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]]] * 3, dtype=np.float32)
            >>> dm = dc.DataMap.from_dynamics(probs, [0, 0, 0])
            >>> dm.suspects(2)["example"].to_list()
            [1, 2]
            >>> dm.suspects(1, score="margin")["suspicion"].round(2).to_list()
            [0.6]
        """
        n = _count("n", n)
        rows = self._frame
        if score is not None and check_name(score) != self.default_score:
            rows = rows.with_columns(_suspicion_column(rows, self.task == "multilabel", score))
        rows = self._rows_for_label(rows, label)
        ids = ["example"] + (["label"] if self.task == "multilabel" else [])
        rows = _sorted_rows(rows, ["suspicion", "margin"] + ids, [True, False] + [False] * len(ids), n)
        return rows.with_row_index("rank", offset=1).with_columns(pl.col("rank").cast(pl.Int64))

    def label_issues(self, *, class_means: Optional[np.ndarray] = None, threads: Optional[int] = None) -> "LabelIssues":
        """Which labels are probably wrong, and how many: confident learning on the map.

        Confident learning (Northcutt et al., JAIR 2021) applied to the mean probability of
        every class over the map's epochs. ``t_j``, the mean probability of class ``j`` over
        the examples labelled ``j``, is class ``j``'s threshold; an example *confidently
        belongs* to the most probable class whose mean probability reaches its threshold.
        Counting (given label, confident class) pairs gives the confident joint; calibrated so
        that each row sums to that label's count, its off-diagonal sum is the estimated number
        of wrong labels. Each off-diagonal cell (label ``i``, class ``j``) then flags that many
        examples labelled ``i``, those where ``j`` leads ``i`` by the most (prune by noise rate).

        The class means come from ``class_means`` (``[N, L]``) when given; on a
        cross-validated map (one with ``extra["epoch_weights"]``, from ``record(cv=K)`` or
        ``torch.FoldRecorder``) from the same maximum-likelihood mixture of epochs as its default
        score (``extra["mixture_class_means"]``, kept by the recorder when asked for
        ``class_means=True``, else one weighted read of the dynamics file); else from the
        statistics if they were computed with ``class_means=True``; else from one pass over the
        map's dynamics file (:attr:`dynamics`, over the map's epoch window). Multilabel maps:
        each label is its own binary problem (a flag per example and label).

        What the count measures: the examples whose label the model confidently disagrees
        with, which is the wrong labels *plus the model's own confident mistakes*. It is close
        to the number of wrong labels for an accurate model (within 25% in this project's tests
        on 10% flips), and above it for a weak one; on an in-sample map of a model that has
        memorised its labels it is far below it (the recorder warns: use ``cv=``).

        Raises:
            DatacartoError: no class means and no dynamics to compute them from,
                ``class_means`` of the wrong shape, or (class means read from the dynamics) the
                dynamics are not the recording the map was computed from (they give another
                confidence over the map's window: see :meth:`trajectories`).

        Example:
            >>> import numpy as np, datacarto as dc
            >>> probs = np.tile(np.array([[0.9, 0.1]] * 5 + [[0.1, 0.9]] * 5 + [[0.95, 0.05]], dtype=np.float32), (3, 1, 1))
            >>> issues = dc.DataMap.from_dynamics(probs, [0] * 5 + [1] * 6).label_issues()
            >>> issues.n_issues, np.flatnonzero(issues.flags).tolist(), issues.suggested[10].item()
            (1, [10], 0)
        """
        from datacarto._confident import LabelIssues, confident_learning

        means = self._class_means(class_means, threads)
        labels = self.labels
        if self.task == "multilabel":
            return LabelIssues.per_label([confident_learning(np.stack([1.0 - means[:, j], means[:, j]], axis=1), labels[:, j].astype(np.int64)) for j in range(self.n_labels)])
        if self.task == "binary":
            means = np.stack([1.0 - means[:, 0], means[:, 0]], axis=1)
        return confident_learning(means, labels)

    def _class_means(self, given: Optional[np.ndarray], threads: Optional[int]) -> np.ndarray:
        shape = (self.n_examples, self.n_labels)
        if given is not None:
            means = np.asarray(given, dtype=np.float64)
            if means.shape != shape:
                raise DatacartoError(f"class_means: expected shape {list(shape)} (examples, labels), found {list(means.shape)}")
            return means
        stats = self._stats
        weights = self._info.epoch_weights
        if weights is not None:  # a cross-validated map: the class means of its epoch mixture
            mixture = None if stats is None else stats.extra.get("mixture_class_means")
            if mixture is None and self.dynamics is not None:
                from datacarto._mixture import mixture_passes

                # the window's every epoch read once: the mixture's, and the check's confidence
                mixture, seen = mixture_passes(self.dynamics, weights, self.epochs[0], self.labels, self.task, window_confidence=True)
                self._refuse_another_recording(seen)
                self.statistics.extra["mixture_class_means"] = mixture
            if mixture is not None:
                return np.asarray(mixture, dtype=np.float64)
        if stats is not None and stats.class_means is not None:
            return np.asarray(stats.class_means, dtype=np.float64)
        if self.dynamics is None:
            raise DatacartoError("dynamics: label_issues needs each class's mean probability: give class_means=, compute with class_means=True, or a map that knows its dynamics file (dynamics= / .with_dynamics(path))")
        window = self.epochs
        again = compute(self.dynamics, self.labels, task=self.task, epochs=window, threads=threads, class_means=True)
        if window is not None:
            self._refuse_another_recording(again.confidence)
        return np.asarray(again.class_means, dtype=np.float64)

    def _refuse_another_recording(self, confidence: np.ndarray, examples: Optional[np.ndarray] = None) -> None:
        """Raise unless ``confidence``, recomputed from the dynamics over the map's window for
        ``examples`` (every example when ``None``), is the map's: dynamics rewritten since the
        map was computed (another run saved at the same path) would give trajectories and class
        means of another recording, silently. Epochs appended after the window do not count."""
        expected = np.asarray(self.statistics.confidence)
        if examples is not None:
            expected = expected[examples]
        found = np.asarray(confidence, dtype=np.float64)
        off = ~(np.abs(found - expected) <= _SAME_RECORDING_ATOL)
        if off.any():
            first = np.argwhere(off)[0]
            unit = int(first[0]) if examples is None else int(examples[first[0]])
            what = f"example {unit}" + (f", label {int(first[1])}," if found.ndim == 2 else "")
            start, stop = self.epochs or (0, 0)
            raise DatacartoError(f"{_dynamics_name(self.dynamics, 'dynamics')}: dynamics: epochs {start}..{stop - 1} give {what} a confidence of {found[tuple(first)]:.9g} where the map has {expected[tuple(first)]:.9g}: {_ANOTHER_RECORDING}")

    # ------------------------------------------------------------------ trajectories and pictures

    def trajectories(self, examples: Sequence[int], *, label: Union[int, str, None] = None) -> Trajectories:
        """Per-epoch gold-label probability and correctness of ``examples`` over every epoch.

        Reads only those examples from the dynamics file (memory-mapped). Correctness uses the
        map's rule (argmax: the gold label strictly largest; threshold: ``p >= threshold``).
        Multilabel maps need ``label`` (an index or a name).

        Raises:
            DatacartoError: the map has no dynamics (pass ``dynamics=`` or use
                :meth:`with_dynamics`), an example index is out of range, a multilabel map
                was given no label, or the dynamics are not the recording the map was computed
                from: fewer epochs than its window, or rows that give these examples another
                confidence over the window (by more than 1e-6; a file rewritten since by another
                run). Epochs appended after the window are read and shown.

        Example:
            >>> import numpy as np, datacarto as dc
            >>> probs = np.array([[[0.9, 0.1]], [[0.4, 0.6]]], dtype=np.float32)
            >>> t = dc.DataMap.from_dynamics(probs, [0]).trajectories([0])
            >>> t.probability.round(2).tolist(), t.correct.tolist()
            ([[0.9, 0.4]], [[True, False]])
        """
        if self.dynamics is None:
            raise DatacartoError("dynamics: this map does not know its dynamics file; pass dynamics= or call .with_dynamics(path)")
        idx = np.asarray(examples)
        if idx.ndim != 1 or (idx.size and idx.dtype.kind not in "iu"):
            raise DatacartoError(f"examples: expected a sequence of example indices, found {examples!r}")
        idx = idx.astype(np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= self.n_examples):
            raise DatacartoError(f"examples: expected indices in [0, {self.n_examples}), found {idx.tolist()}")
        label_index = self._label_index(label)
        if self.task == "multilabel" and label_index is None:
            raise DatacartoError("label: a multilabel map needs a label (index or name) for trajectories")
        dynamics = self.dynamics
        if isinstance(dynamics, str):
            if not os.path.exists(dynamics):
                raise FileNotFoundError(f"{dynamics}: dynamics file not found")
            from datacarto._stats import read_examples

            # positioned reads, not np.load(mmap_mode="r"): a file truncated meanwhile must not SIGBUS
            block = read_examples(dynamics, idx, (self.n_examples, self.n_labels))  # [E, k, L]
        else:
            probs = np.asarray(dynamics)
            if probs.ndim != 3 or probs.shape[1] != self.n_examples or probs.shape[2] != self.n_labels:
                raise DatacartoError(f"dynamics: expected shape [E, {self.n_examples}, {self.n_labels}] to match the map, found {probs.shape}")
            block = np.asarray(probs[:, idx, :], dtype=np.float64)  # [E, k, L]
        labels = self.labels[idx]
        p = gold_probabilities(block, labels, self.task)
        n_epochs = block.shape[0]
        if self.epochs is not None:
            start, stop = self.epochs
            if n_epochs < stop:
                raise DatacartoError(f"{_dynamics_name(dynamics, 'dynamics')}: epochs: the map covers epochs {start}..{stop - 1} but the dynamics hold {n_epochs} epoch(s): {_ANOTHER_RECORDING}")
            # the rows just read must give these examples the map's confidence (the core's
            # clamp to [0, 1] applied): a file rewritten since is another run's, not this map's
            self._refuse_another_recording(np.clip(p[start:stop], 0.0, 1.0).mean(axis=0), idx)
        correct = right_epochs(block, labels, self.task, self.correctness_rule, self.threshold)
        if self.task == "multilabel":
            p, correct = p[:, :, label_index], correct[:, :, label_index]
        window = self.epochs or (0, n_epochs)
        in_window = (np.arange(n_epochs) >= window[0]) & (np.arange(n_epochs) < window[1])
        return Trajectories(idx, label_index, np.arange(n_epochs), p.T.copy(), correct.T.copy(), in_window)

    def plot(self, *, label: Union[int, str, None] = None, color: str = "correctness", density: Optional[bool] = None, title: Optional[str] = None, **options: Any) -> "Figure":
        """The paper's data map figure; ``options`` go to :func:`datacarto.plots.plot_map`.

        Example:
            >>> import numpy as np, datacarto as dc
            >>> probs = np.random.default_rng(0).dirichlet(np.ones(3), size=(4, 50)).astype(np.float32)
            >>> figure = dc.DataMap.from_dynamics(probs, np.arange(50) % 3).regions().plot(title="demo")
            >>> type(figure).__name__
            'Figure'
        """
        from datacarto import plots

        return plots.plot_map(self, label=label, color=color, density=density, title=title, **options)

    def plot_trajectories(self, examples: Sequence[int], *, label: Union[int, str, None] = None, **options: Any) -> "Figure":
        """Gold-label probability across epochs for ``examples``; ``options`` go to
        :func:`datacarto.plots.plot_trajectories`. Needs the map's dynamics."""
        from datacarto import plots

        return plots.plot_trajectories(self, examples, label=label, **options)

    def to_html(self, path: PathLike, *, text_column: Optional[str] = None, **options: Any) -> Path:
        """Write the interactive, self-contained HTML map; ``options`` go to
        :func:`datacarto.html.write_html`."""
        from datacarto import html

        return html.write_html(self, path, text_column=text_column, **options)

    def to_pandas(self) -> Any:
        """The frame as a pandas DataFrame (needs pandas and pyarrow)."""
        return self._frame.to_pandas()

    # ------------------------------------------------------------------ IO

    def write_parquet(self, path: PathLike) -> Path:
        """Write the frame and the map's settings (task, label names, epoch window, correctness
        rule, regions rule, dynamics path) to one parquet file (settings as key-value metadata).

        Example:
            >>> import numpy as np, datacarto as dc, tempfile, os
            >>> dm = dc.DataMap.from_dynamics(np.full((2, 3, 2), 0.5, dtype=np.float32), [0, 1, 0])
            >>> path = dm.write_parquet(os.path.join(tempfile.mkdtemp(), "map.parquet"))
            >>> dc.DataMap.read_parquet(path).frame.equals(dm.frame)
            True
        """
        from datacarto._atomic import atomic_path

        path = Path(path)
        payload = {_METADATA_KEY: json.dumps(self._info.to_json())}
        # Written beside the target and renamed into place: a crash leaves the old file or the new.
        with atomic_path(path) as tmp:
            try:
                self._frame.write_parquet(tmp, metadata=payload)
            except TypeError:
                # polars before key-value metadata support: go through pyarrow.
                import pyarrow.parquet as pq

                table = self._frame.to_arrow()
                table = table.replace_schema_metadata({**(table.schema.metadata or {}), **{k.encode(): v.encode() for k, v in payload.items()}})
                pq.write_table(table, tmp)
        return path

    @classmethod
    def read_parquet(cls, path: PathLike, *, dynamics: Any = None) -> "DataMap":
        """Read a map written by :meth:`write_parquet` (``dynamics`` overrides the stored path).

        A parquet file without datacarto settings is accepted when it has the ``example``,
        ``gold`` and statistic columns; the settings are then inferred (task from a ``label``
        column, epoch window unknown). The rows and the settings come from one open file, so a
        file replaced while it is read cannot mix one version's rows with another's settings.
        """
        name = os.fspath(path)
        if not os.path.exists(name):
            raise FileNotFoundError(f"{name}: statistics file not found")
        with _read_failures_named(name, "a parquet file"), open(name, "rb") as handle:
            frame = pl.read_parquet(handle)
            handle.seek(0)
            raw = _read_parquet_kv(handle).get(_METADATA_KEY)
        try:
            settings = json.loads(raw) if raw else None
        except ValueError as exc:
            raise DatacartoError(f"{name}: datacarto metadata: expected JSON written by DataMap.write_parquet, could not parse it ({exc})") from exc
        if settings is not None and not isinstance(settings, dict):
            raise DatacartoError(f"{name}: datacarto metadata: expected a JSON object written by DataMap.write_parquet, found {type(settings).__name__}")
        info = _Info.from_json(settings, name) if settings is not None else None
        return cls._from_file_frame(frame, info, name, dynamics)

    def write_csv(self, path: PathLike) -> Path:
        """Write the frame as CSV and the map's settings and column types to a sidecar JSON file
        (``<path>.datacarto.json``), so that :meth:`read_csv` restores the same map.

        Example:
            >>> import numpy as np, datacarto as dc, tempfile, os
            >>> dm = dc.DataMap.from_dynamics(np.full((2, 3, 2), 0.5, dtype=np.float32), [0, 1, 0])
            >>> path = dm.write_csv(os.path.join(tempfile.mkdtemp(), "map.csv"))
            >>> dc.DataMap.read_csv(path).frame.equals(dm.frame)
            True
        """
        from datacarto._atomic import atomic_path, atomic_write

        path = Path(path)
        sidecar = {**self._info.to_json(), "schema": {name: str(dtype.base_type()) if hasattr(dtype, "base_type") else str(dtype) for name, dtype in self._frame.schema.items()}}
        # Each file is replaced atomically, the CSV first. The sidecar names the CSV it
        # describes (size and digest): a crash between the two renames leaves the new CSV with
        # the old sidecar, which read_csv then recognises as stale instead of applying it.
        with atomic_path(path) as tmp:
            self._frame.write_csv(tmp)
            sidecar["csv"] = _csv_identity(tmp)
        with atomic_write(_sidecar_path(path), "w", encoding="utf-8") as handle:
            handle.write(json.dumps(sidecar, indent=1) + "\n")
        return path

    @classmethod
    def read_csv(cls, path: PathLike, *, dynamics: Any = None, separator: str = ",") -> "DataMap":
        """Read a map written by :meth:`write_csv` (settings from the sidecar JSON if present;
        otherwise inferred as for :meth:`read_parquet`).

        A sidecar that describes another version of the CSV (a write interrupted between the
        two files, or a CSV replaced by hand) is not applied: a :class:`UserWarning` says so
        and the settings are inferred from the CSV. With a sidecar, the CSV is read once and
        the bytes compared with the sidecar are the bytes parsed, so a CSV rewritten while it
        is read cannot get the settings of the version it replaced."""
        name = os.fspath(path)
        if not os.path.exists(name):
            raise FileNotFoundError(f"{name}: statistics file not found")
        sidecar_path = _sidecar_path(Path(name))
        info = None
        schema: Dict[str, Any] = {}
        data: Any = None
        # what polars parses: the path, or (with a sidecar that names a CSV) the bytes hashed
        source: Union[str, bytes] = name
        if sidecar_path.exists():
            try:
                data = json.loads(sidecar_path.read_text())
            except ValueError as exc:
                raise DatacartoError(f"{sidecar_path}: expected JSON written by DataMap.write_csv ({exc})") from exc
            described = data.get("csv") if isinstance(data, dict) else None
            if described is not None:
                source = Path(name).read_bytes()
                if described != _csv_identity(source):
                    warnings.warn(f"{sidecar_path}: describes another version of {name} (a write interrupted between the two files?); not applied, the settings are inferred from the CSV", UserWarning, stacklevel=2)
                    data = None
        if data is not None:
            info = _Info.from_json(data, os.fspath(sidecar_path))
            schema = {col: getattr(pl, dt) for col, dt in (data.get("schema") or {}).items() if dt in _SIMPLE_DTYPES}
        with _read_failures_named(name, "a CSV file of map rows"):
            if schema:
                header = pl.read_csv(source, separator=separator, n_rows=0).columns
                schema = {col: dtype for col, dtype in schema.items() if col in header}
            frame = pl.read_csv(source, separator=separator, schema_overrides=schema or None, infer_schema_length=None)
        return cls._from_file_frame(frame, info, name, dynamics)

    @classmethod
    def read(cls, path: PathLike, *, dynamics: Any = None) -> "DataMap":
        """Read a map from ``.parquet``, ``.csv`` or ``.tsv`` by the file suffix."""
        suffix = Path(path).suffix.lower()
        if suffix in (".parquet", ".pq"):
            return cls.read_parquet(path, dynamics=dynamics)
        if suffix in (".csv", ".tsv"):
            return cls.read_csv(path, dynamics=dynamics, separator="\t" if suffix == ".tsv" else ",")
        raise DatacartoError(f"{os.fspath(path)}: expected a .parquet, .csv or .tsv statistics file, found suffix {suffix or '(none)'!r}")

    def write(self, path: PathLike) -> Path:
        """Write to ``.parquet`` or ``.csv`` by the file suffix."""
        suffix = Path(path).suffix.lower()
        if suffix in (".parquet", ".pq"):
            return self.write_parquet(path)
        if suffix == ".csv":
            return self.write_csv(path)
        raise DatacartoError(f"{os.fspath(path)}: expected a .parquet or .csv output file, found suffix {suffix or '(none)'!r}")

    @classmethod
    def _from_file_frame(cls, frame: pl.DataFrame, info: Optional[_Info], name: str, dynamics: Any) -> "DataMap":
        missing = [c for c in ("example", "gold", *STATISTICS) if c not in frame.columns]
        if missing:
            raise DatacartoError(f"{name}: columns: expected example, gold and every statistic, missing {', '.join(missing)}")
        casts = [pl.col(c).cast(dtype) for c, dtype in _STAT_DTYPES.items() if c in frame.columns and frame.schema[c] != dtype]
        try:
            frame = frame.with_columns(casts) if casts else frame
        except pl.exceptions.PolarsError as exc:
            raise DatacartoError(f"{name}: a statistic column has values of the wrong type ({exc})") from exc
        if info is None:
            info = _infer_info(frame, name)
        multilabel = info.task == "multilabel"
        if multilabel and "label" not in frame.columns:
            raise DatacartoError(f"{name}: columns: expected a label column for a multilabel map")
        keys = ["example", "label"] if multilabel else ["example"]
        frame = frame.sort(keys)
        if "suspicion" not in frame.columns:  # a file from before the column, or another tool
            frame = frame.insert_column(frame.columns.index("el2n") + 1, _suspicion_column(frame, multilabel, default_score(frame.columns)))
        rows = info.n_examples * (info.n_labels if multilabel else 1)
        expected_example = np.repeat(np.arange(info.n_examples), info.n_labels) if multilabel else np.arange(info.n_examples)
        if frame.height != rows or not np.array_equal(frame["example"].to_numpy(), expected_example) or (
            multilabel and not np.array_equal(frame["label"].to_numpy(), np.tile(np.arange(info.n_labels), info.n_examples))
        ):
            raise DatacartoError(f"{name}: rows: expected one row per example{' and label' if multilabel else ''} ({rows} rows, examples 0..{info.n_examples - 1}), found {frame.height} rows")
        if dynamics is not None:
            info = replace(info, dynamics=os.fspath(dynamics) if isinstance(dynamics, os.PathLike) else dynamics)
        return cls._build(frame, info)


# ---------------------------------------------------------------------- helpers


#: How far a confidence recomputed from a map's dynamics may lie from the map's own before the
#: dynamics count as another recording: far above the sums' rounding (1e-16 a unit), far
#: below what another training run changes.
_SAME_RECORDING_ATOL = 1e-6

_ANOTHER_RECORDING = "not the recording this map was computed from (rewritten since, or another run's); give the map its own with .with_dynamics(path)"


def _check_label_names(label_names: Optional[Sequence[str]], task: str, n_labels: int) -> Optional[Tuple[str, ...]]:
    if label_names is None:
        return None
    if isinstance(label_names, str) or not isinstance(label_names, (Sequence, np.ndarray)):
        raise TypeError(f"label_names: expected a sequence of names, found {type(label_names).__name__}")
    expected = 2 if task == "binary" else n_labels
    if len(label_names) != expected:
        per = "label" if task == "multilabel" else "class"
        raise DatacartoError(f"label_names: expected {expected} names (one per {per}), found {len(label_names)}")
    return tuple(str(x) for x in label_names)


def _epoch_weights(stats: Statistics) -> Optional[Tuple[float, ...]]:
    """A cross-validated map's epoch weights (``extra["epoch_weights"]``), kept in the map's
    settings so that they survive a round trip through a file."""
    weights = stats.extra.get("epoch_weights")
    if weights is None or stats.task == "multilabel":
        return None
    return tuple(float(w) for w in np.asarray(weights, dtype=np.float64).reshape(-1))


def _metadata_frame(metadata: Any, n_examples: int) -> Optional[pl.DataFrame]:
    if metadata is None:
        return None
    if isinstance(metadata, pl.DataFrame):
        frame = metadata
    elif type(metadata).__module__.split(".")[0] == "pandas" and hasattr(metadata, "columns"):
        frame = pl.from_pandas(metadata, include_index=False)
        frame = frame.rename({c: str(c) for c in frame.columns})
    elif isinstance(metadata, pl.Series):
        frame = metadata.rename(metadata.name or "text").to_frame()
    elif type(metadata).__module__.split(".")[0] == "pandas" and hasattr(metadata, "to_numpy"):
        frame = pl.from_pandas(metadata).to_frame()
        if not metadata.name:
            frame = frame.rename({frame.columns[0]: "text"})
    elif isinstance(metadata, Mapping):
        try:
            lengths = {str(k): len(v) for k, v in metadata.items()}
        except TypeError as exc:
            raise TypeError(f"metadata: expected a dict of equal-length columns, found a value without a length ({exc})") from exc
        wrong = {k: v for k, v in lengths.items() if v != n_examples}
        if wrong:
            raise DatacartoError(f"metadata: expected {n_examples} rows (one per example), found column lengths {wrong}")
        try:
            frame = pl.DataFrame({str(k): (np.asarray(v) if isinstance(v, np.ndarray) else v) for k, v in metadata.items()}, strict=False)
        except (TypeError, ValueError, pl.exceptions.PolarsError) as exc:
            raise TypeError(f"metadata: could not turn the dict into columns ({exc})") from exc
    elif isinstance(metadata, (str, bytes)):
        raise TypeError("metadata: expected a DataFrame, a dict of columns or a sequence of texts, found a single string")
    elif isinstance(metadata, (Sequence, np.ndarray)):
        values = np.asarray(metadata)
        if values.ndim != 1:
            raise DatacartoError(f"metadata: expected a 1-D sequence of texts, found shape {values.shape}")
        frame = pl.DataFrame({"text": list(metadata) if not isinstance(metadata, np.ndarray) else values}, strict=False)
    else:
        raise TypeError(f"metadata: expected a polars or pandas DataFrame, a dict of columns or a sequence of texts, found {type(metadata).__name__}")
    if frame.height != n_examples:
        raise DatacartoError(f"metadata: expected {n_examples} rows (one per example), found {frame.height}")
    clash = [c for c in frame.columns if c in _RESERVED]
    if clash:
        raise DatacartoError(f"metadata: column {', '.join(map(repr, clash))} clashes with a datacarto column; rename it")
    return frame


def _suspicion_column(frame: pl.DataFrame, multilabel: bool, name: Optional[str] = None) -> pl.Series:
    """The score ``name`` (default: the map's default, :func:`datacarto._scores.default_score`) of every row (per label for multilabel: class-aware scores compare
    a label's rows with each other) as the ``suspicion`` column."""
    if name is None:
        name = default_score(frame.columns)
    needs = SCORES[name].needs
    missing = [c for c in needs if c not in frame.columns]
    if missing:
        raise DatacartoError(f"score {name!r}: needs the column(s) {', '.join(missing)} (mixture: a cross-validated map from dc.sklearn.record(..., cv=K))")
    if not multilabel:
        values = _score(name, {c: frame[c].to_numpy() for c in needs})
    else:
        values = np.empty(frame.height)
        label = frame["label"].to_numpy()
        for j in np.unique(label):
            rows = np.flatnonzero(label == j)
            values[rows] = _score(name, {c: frame[c].to_numpy()[rows] for c in needs})
    return pl.Series("suspicion", values, dtype=pl.Float64)


def _normalize_rule(rule: str) -> str:
    if not isinstance(rule, str):
        raise DatacartoError(f"rule: expected one of {', '.join(RULES)}, found {rule!r}")
    name = rule.lower().replace("_", "-")
    name = {"threshold": "thresholds", "quantile": "quantiles", "dataiq": "data-iq"}.get(name, name)
    if name not in RULES:
        raise DatacartoError(f"rule: expected one of {', '.join(RULES)}, found {rule!r}")
    return name


def _probability(name: str, value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise DatacartoError(f"{name}: expected a number in [0, 1], found {value!r}") from None
    if not 0.0 <= number <= 1.0:
        raise DatacartoError(f"{name}: expected a number in [0, 1], found {number}")
    return number


def _fractions(fraction: Union[float, Mapping[str, float]]) -> Dict[str, float]:
    if isinstance(fraction, Mapping):
        unknown = set(fraction) - set(REGIONS)
        if unknown or set(fraction) != set(REGIONS):
            raise DatacartoError(f"fraction: expected a number or a mapping with keys easy, ambiguous, hard, found keys {sorted(map(str, fraction))}")
        fractions = {k: _probability(f"fraction[{k!r}]", fraction[k]) for k in REGIONS}
    else:
        value = _probability("fraction", fraction)
        fractions = {k: value for k in REGIONS}
    if any(v <= 0 for v in fractions.values()):
        raise DatacartoError(f"fraction: expected fractions in (0, 1], found {fractions}")
    if fractions["easy"] + fractions["hard"] > 1.0 + 1e-12:
        raise DatacartoError(f"fraction: the easy and hard fractions must add up to at most 1 so they cannot overlap, found {fractions['easy']} + {fractions['hard']}")
    return fractions


def _top(value: np.ndarray, fraction: float) -> np.ndarray:
    """Indices of the ``ceil(fraction * n)`` largest values; ties go to the earlier row (the
    rows of a group are in example order, and a stable sort keeps that order among ties)."""
    n = len(value)
    k = min(n, math.ceil(round(fraction * n, 9)))
    if k == 0:
        return np.empty(0, dtype=np.int64)
    # linear time: everything above the k-th largest value, then the earliest of its ties
    kth = np.partition(value, n - k)[n - k]
    above = np.flatnonzero(value > kth)
    ties = np.flatnonzero(value == kth)[: k - len(above)]
    return np.concatenate([above, ties])


def _sorted_rows(frame: pl.DataFrame, by: List[str], descending: List[bool], n: Optional[int]) -> pl.DataFrame:
    """``frame`` sorted by ``by``, first ``n`` rows. For a few rows out of many a partial
    selection (``bottom_k``) beats a full sort by an order of magnitude."""
    if n is not None and n < frame.height:
        frame = frame.bottom_k(n, by=by, reverse=descending)
    return frame.sort(by, descending=descending, nulls_last=True, maintain_order=True)


def _count(name: str, n: Optional[int]) -> Optional[int]:
    if n is None:
        return None
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise DatacartoError(f"{name}: expected a non-negative int or None, found {n!r}")
    return int(n)


def _csv_identity(source: Union[PathLike, bytes]) -> Dict[str, Any]:
    """What a CSV's sidecar records of it: its size and BLAKE2b digest (of a file, read in
    pieces, or of its bytes already read)."""
    import hashlib

    digest = hashlib.blake2b(digest_size=16)
    if isinstance(source, bytes):
        digest.update(source)
        return {"bytes": len(source), "blake2b": digest.hexdigest()}
    size = 0
    with open(source, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
            size += len(chunk)
    return {"bytes": size, "blake2b": digest.hexdigest()}


def _sidecar_path(path: Path) -> Path:
    return path.with_name(path.name + _SIDECAR_SUFFIX)


@contextlib.contextmanager
def _read_failures_named(name: str, expected: str) -> Iterator[None]:
    """Turn a reader's failure on a bad file into a DatacartoError naming the file.

    polars panics on some corrupted files (a PanicException, which derives from
    BaseException): the caller gets one clean error instead. A missing file stays
    FileNotFoundError; anything else (KeyboardInterrupt, a bug) propagates unchanged.
    """
    try:
        yield
    except FileNotFoundError:
        raise
    except BaseException as exc:
        if not _is_read_failure(exc):
            raise
        raise DatacartoError(f"{name}: expected {expected}, could not read it ({_first_line(exc)})") from exc


def _is_read_failure(exc: BaseException) -> bool:
    """True for what a reader raises on a bad file: polars errors and panics, OSError, ValueError."""
    if isinstance(exc, (pl.exceptions.PolarsError, OSError, ValueError)):
        return True
    panic = getattr(pl.exceptions, "PanicException", None)
    return (panic is not None and isinstance(exc, panic)) or type(exc).__name__ == "PanicException"


def _first_line(exc: BaseException) -> str:
    if not isinstance(exc, Exception):  # a panic: its text is a nest of Rust unwraps
        return "the reader failed on its contents, the file looks corrupted"
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _read_parquet_kv(source: Any) -> Dict[str, str]:
    """A parquet file's key-value metadata (``source``: a path or a binary file open at 0)."""
    reader = getattr(pl, "read_parquet_metadata", None)
    if reader is not None:
        return dict(reader(source))
    import pyarrow.parquet as pq

    meta = pq.read_schema(source).metadata or {}
    return {k.decode(): v.decode() for k, v in meta.items()}


def _infer_info(frame: pl.DataFrame, name: str) -> _Info:
    """Settings for a statistics file written by another tool (no datacarto metadata)."""
    gold = frame["gold"]
    if "label" in frame.columns:
        n_labels = int(frame["label"].max()) + 1  # type: ignore[arg-type]
        return _Info(task="multilabel", n_examples=frame.height // max(n_labels, 1), n_labels=n_labels, epochs=None, correctness_rule="threshold", threshold=0.5, ddof=0)
    n_classes = max(2, int(gold.max()) + 1) if frame.height else 2  # type: ignore[arg-type]
    return _Info(task="multiclass", n_examples=frame.height, n_labels=n_classes, epochs=None, correctness_rule="argmax", threshold=0.5, ddof=0)
