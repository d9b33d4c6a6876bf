"""A label-noise benchmark you can run on your own data: which suspicion score should you trust?

Flip some labels on purpose (:func:`flip_labels`, seeded), train and record a map on the noisy
labels, and measure how well each suspicion score (:data:`SCORE_NAMES`) finds the flipped ones
(:func:`evaluate`: AUROC, AUPRC and precision at k), and how close
:meth:`~datacarto.DataMap.label_issues` comes to the number of flips. :func:`benchmark` does
all of it for a scikit-learn estimator; for a PyTorch loop, flip with :func:`flip_labels`,
train on the noisy labels with :class:`datacarto.torch.Recorder` and call :func:`evaluate`.
The CLI has the same: ``datacarto flip-labels`` and ``datacarto noise-report``.

Example:
    >>> import numpy as np, datacarto as dc
    >>> from sklearn.datasets import make_classification
    >>> from sklearn.linear_model import SGDClassifier
    >>> X, y = make_classification(600, 20, n_informative=8, n_classes=3, random_state=0)
    >>> report = dc.noise.benchmark(SGDClassifier(loss="log_loss", alpha=1e-3, random_state=0), X, y, fraction=0.1, epochs=8, seed=0)
    >>> report.n_flipped, sorted(report.scores) == sorted(dc.noise.SCORE_NAMES)
    (60, True)
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional, Sequence, Union

import numpy as np

from datacarto._core import DatacartoError
from datacarto._scores import CV_DEFAULT_SCORE, DEFAULT_SCORE, SCORES, percentile_ranks

#: The suspicion scores every map has, by name (the default first): what
#: ``DataMap.suspects(score=...)`` takes. A cross-validated map from ``dc.sklearn.record(cv=K)``
#: also has ``"mixture"`` (its default).
SCORE_NAMES = tuple(name for name in SCORES if name != CV_DEFAULT_SCORE)
#: The kinds of label noise :func:`flip_labels` injects.
NOISE_KINDS = ("uniform", "pairs", "confusion")

__all__ = ["NOISE_KINDS", "SCORE_NAMES", "Flips", "NoiseReport", "auprc", "auroc", "benchmark", "evaluate", "flip_labels", "precision_at_k"]


@dataclass(frozen=True)
class Flips:
    """Labels with some flipped on purpose (:func:`flip_labels`)."""

    #: the noisy labels (same dtype and values as the input's)
    labels: np.ndarray
    #: sorted indices of the flipped examples
    flipped: np.ndarray
    #: the original labels
    clean: np.ndarray

    @property
    def mask(self) -> np.ndarray:
        """bool ``[N]``: True where the label was flipped."""
        mask = np.zeros(self.labels.shape[0], dtype=bool)
        mask[self.flipped] = True
        return mask


def flip_labels(
    labels: Any,
    fraction: float,
    *,
    kind: str = "uniform",
    classes: Optional[Sequence[Any]] = None,
    confusion: Optional[Any] = None,
    seed: Union[int, np.random.Generator, None] = 0,
) -> Flips:
    """Flip ``round(fraction · N)`` labels, chosen at random, to another class.

    Kinds of noise:

    - ``"uniform"``: each flipped label becomes one of the other classes, uniformly.
    - ``"pairs"``: class-dependent, every class always flips to the same partner class (a
      seeded random permutation without fixed points): systematic confusions of annotators.
    - ``"confusion"``: class-dependent, a flipped label of class ``i`` becomes ``j`` with
      probability proportional to ``confusion[i, j]`` (``j ≠ i``; e.g. a confusion matrix or
      mean predicted probabilities of a model trained on the clean labels, so labels flip to
      classes the model finds confusable).

    Args:
        labels: ``[N]`` class labels (any values).
        fraction: in ``[0, 1)``.
        classes: every class (default: the distinct values of ``labels``).
        confusion: ``[L, L]`` non-negative weights, rows and columns in ``classes`` order
            (only with ``kind="confusion"``).
        seed: an int or a ``numpy.random.Generator``.

    Example:
        >>> from datacarto.noise import flip_labels
        >>> flips = flip_labels([0, 1, 2, 0, 1, 2, 0, 1, 2, 0], 0.3, seed=1)
        >>> len(flips.flipped), bool((flips.labels[flips.flipped] != flips.clean[flips.flipped]).all())
        (3, True)
    """
    clean = np.asarray(labels)
    if clean.ndim != 1:
        raise DatacartoError(f"labels: expected a 1-D array of class labels, found shape {list(clean.shape)}")
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float, np.floating)) or not 0.0 <= float(fraction) < 1.0:
        raise DatacartoError(f"fraction: expected a fraction in [0, 1), found {fraction!r}")
    if kind not in NOISE_KINDS:
        raise DatacartoError(f"kind: expected one of {', '.join(NOISE_KINDS)}, found {kind!r}")
    values = np.unique(clean) if classes is None else np.asarray(classes)
    if np.unique(values).size != values.size:
        raise DatacartoError("classes: expected distinct class labels, found duplicates")
    if values.size < 2:
        raise DatacartoError(f"labels: expected at least 2 classes to flip between, found {values.tolist()}")
    index_of = {v.item() if isinstance(v, np.generic) else v: i for i, v in enumerate(values)}
    try:
        gold = np.array([index_of[v.item() if isinstance(v, np.generic) else v] for v in clean], dtype=np.int64)
    except KeyError as exc:
        raise DatacartoError(f"labels: found {exc.args[0]!r}, which is not among classes {values.tolist()}") from None
    n_classes = values.size
    if kind == "confusion":
        if confusion is None:
            raise DatacartoError("confusion: kind='confusion' needs an [L, L] matrix of weights")
        weights = np.array(confusion, dtype=np.float64)
        if weights.shape != (n_classes, n_classes) or not np.isfinite(weights).all() or (weights < 0).any():
            raise DatacartoError(f"confusion: expected non-negative finite weights of shape [{n_classes}, {n_classes}], found shape {list(weights.shape)}")
        np.fill_diagonal(weights, 0.0)
        if (weights.sum(axis=1) <= 0).any():
            raise DatacartoError("confusion: every row needs a positive weight off the diagonal (a class to flip to)")
    elif confusion is not None:
        raise DatacartoError(f"confusion: only applies to kind='confusion', found kind={kind!r}")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    n = gold.size
    count = int(round(float(fraction) * n))
    flipped = np.sort(rng.choice(n, size=count, replace=False)) if count else np.empty(0, dtype=np.int64)
    noisy = gold.copy()
    if kind == "uniform":
        noisy[flipped] = (gold[flipped] + rng.integers(1, n_classes, size=count)) % n_classes
    elif kind == "pairs":
        partner = _derangement(n_classes, rng)
        noisy[flipped] = partner[gold[flipped]]
    else:
        rows = weights / weights.sum(axis=1, keepdims=True)
        for i in flipped:
            noisy[i] = rng.choice(n_classes, p=rows[gold[i]])
    return Flips(values[noisy], flipped.astype(np.int64), clean.copy())


def _derangement(n: int, rng: np.random.Generator) -> np.ndarray:
    """A random permutation with no fixed point (a shifted random cycle)."""
    order = rng.permutation(n)
    partner = np.empty(n, dtype=np.int64)
    partner[order] = np.roll(order, -1)
    return partner


# ---------------------------------------------------------------------- metrics


def _check_pair(scores: Any, positives: Any) -> tuple:
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    y = np.asarray(positives, dtype=bool).reshape(-1)
    if s.shape != y.shape:
        raise DatacartoError(f"scores: expected one score per example ({y.size}), found {s.size}")
    if np.isnan(s).any():
        raise DatacartoError("scores: found NaN")
    return s, y


def auroc(scores: Any, positives: Any) -> float:
    """Area under the ROC curve (ties count half): the chance that a random positive scores
    above a random negative. NaN when either class is empty.

    Example:
        >>> auroc([0.9, 0.8, 0.1, 0.5], [True, False, False, True])
        0.75
    """
    s, y = _check_pair(scores, positives)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = percentile_ranks(s) * s.size
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def auprc(scores: Any, positives: Any) -> float:
    """Area under the precision-recall curve as average precision (scikit-learn's
    ``average_precision_score``: ``Σ (R_k − R_{k−1}) P_k`` over the distinct score thresholds).

    Example:
        >>> round(auprc([0.9, 0.8, 0.1, 0.5], [True, False, False, True]), 4)
        0.8333
    """
    s, y = _check_pair(scores, positives)
    n_pos = int(y.sum())
    if n_pos == 0:
        return float("nan")
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    last_of_tie = np.r_[s[1:] != s[:-1], True]
    true_pos = np.cumsum(y)[last_of_tie]
    seen = (np.flatnonzero(last_of_tie) + 1).astype(np.float64)
    precision = true_pos / seen
    recall = true_pos / n_pos
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def precision_at_k(scores: Any, positives: Any, k: int) -> float:
    """The fraction of positives among the ``k`` highest scores (ties: lower index first)."""
    s, y = _check_pair(scores, positives)
    if k <= 0:
        return float("nan")
    top = np.argsort(-s, kind="stable")[:k]
    return float(y[top].mean())


# ---------------------------------------------------------------------- reports


@dataclass
class NoiseReport:
    """How well each score finds flipped labels, and how well label_issues counts them."""

    n_examples: int
    n_flipped: int
    k: int
    #: ``{score name: {"auroc": x, "auprc": x, "precision_at_k": x}}``, default score first
    scores: Dict[str, Dict[str, float]]
    #: label_issues: estimate, flagged, precision and recall (empty without class means)
    label_issues: Dict[str, float] = field(default_factory=dict)
    #: what was run (kind, fraction, epochs, cv, seconds, ...)
    settings: Dict[str, Any] = field(default_factory=dict)
    #: the map's default score (marked in the printed report)
    default: str = DEFAULT_SCORE

    @property
    def best(self) -> str:
        """The score with the highest AUPRC."""
        return max(self.scores, key=lambda name: self.scores[name]["auprc"])

    def to_polars(self) -> Any:
        """One row per score: ``score``, ``auroc``, ``auprc``, ``precision_at_k``."""
        import polars as pl

        return pl.DataFrame([{"score": name, **values} for name, values in self.scores.items()])

    def __str__(self) -> str:
        lines = [f"{self.n_flipped} of {self.n_examples} labels flipped; precision at k = {self.k}"]
        lines.append(f"  {'score':<20} {'AUROC':>7} {'AUPRC':>7} {'P@k':>7}")
        for name, values in self.scores.items():
            mark = " (default)" if name == self.default else ""
            lines.append(f"  {name:<20} {values['auroc']:7.4f} {values['auprc']:7.4f} {values['precision_at_k']:7.4f}{mark}")
        if self.label_issues:
            li = self.label_issues
            lines.append(f"label_issues: estimated {li['estimated']:.0f} wrong labels (flipped: {self.n_flipped}), flagged {li['flagged']:.0f}, precision {li['precision']:.3f}, recall {li['recall']:.3f}")
        return "\n".join(lines)


def evaluate(source: Any, flipped: Any, *, k: Optional[int] = None) -> NoiseReport:
    """Score every suspicion score against the known flipped examples.

    Args:
        source: a :class:`~datacarto.DataMap` (multiclass or binary), or a mapping
            ``{name: scores [N]}``. For a map every score of :data:`SCORE_NAMES` is computed
            (and ``"mixture"``, first, on a cross-validated map),
            and :meth:`~datacarto.DataMap.label_issues` is checked too when the map has its
            dynamics (or class means).
        flipped: indices of the flipped examples, or a bool mask ``[N]``.
        k: for precision at k (default: the number of flipped examples).

    Example:
        >>> from datacarto.noise import evaluate
        >>> report = evaluate({"mine": [0.9, 0.1, 0.8, 0.2]}, [0, 2])
        >>> report.scores["mine"]["auprc"], report.k
        (1.0, 2)
    """
    from datacarto.datamap import DataMap

    if isinstance(source, DataMap):
        if source.task == "multilabel":
            raise DatacartoError("source: the noise benchmark flips class labels; a multilabel map has none")
        columns = {c: source.frame[c].to_numpy() for c in ("confidence", "margin", "el2n", "gold", "mixture_confidence") if c in source.frame.columns}
        from datacarto._scores import all_scores

        score_arrays = all_scores(columns)
        n = source.n_examples
    elif isinstance(source, Mapping):
        score_arrays = {str(name): np.asarray(values, dtype=np.float64) for name, values in source.items()}
        n = next(iter(score_arrays.values())).size if score_arrays else 0
    else:
        raise TypeError(f"source: expected a DataMap or a mapping of score arrays, found {type(source).__name__}")
    mask = _flip_mask(flipped, n)
    n_flipped = int(mask.sum())
    k = n_flipped if k is None else int(k)
    scores = {name: {"auroc": auroc(values, mask), "auprc": auprc(values, mask), "precision_at_k": precision_at_k(values, mask, k)} for name, values in score_arrays.items()}
    report = NoiseReport(n, n_flipped, k, scores, default=source.default_score if isinstance(source, DataMap) else DEFAULT_SCORE)
    if isinstance(source, DataMap) and (source.dynamics is not None or (source._stats is not None and source._stats.class_means is not None)):
        issues = source.label_issues()
        found = int((issues.flags & mask).sum())
        report.label_issues = {
            "estimated": float(issues.n_issues),
            "flagged": float(issues.n_flagged),
            "precision": found / issues.n_flagged if issues.n_flagged else float("nan"),
            "recall": found / n_flipped if n_flipped else float("nan"),
        }
    return report


def _flip_mask(flipped: Any, n: int) -> np.ndarray:
    values = np.asarray(flipped)
    if values.dtype == bool:
        if values.shape != (n,):
            raise DatacartoError(f"flipped: expected a bool mask of {n} examples or indices, found shape {list(values.shape)}")
        return values
    if values.ndim != 1 or (values.size and values.dtype.kind not in "iu"):
        raise DatacartoError(f"flipped: expected indices of flipped examples or a bool mask, found dtype {values.dtype}, shape {list(values.shape)}")
    if values.size and (values.min() < 0 or values.max() >= n):
        raise DatacartoError(f"flipped: expected indices in [0, {n}), found {values.min()}..{values.max()}")
    mask = np.zeros(n, dtype=bool)
    mask[values.astype(np.int64)] = True
    return mask


def benchmark(
    estimator: Any,
    X: Any,
    y: Any,
    *,
    fraction: float = 0.1,
    kind: str = "uniform",
    confusion: Optional[Any] = None,
    epochs: int = 10,
    cv: Optional[int] = None,
    seed: int = 0,
    k: Optional[int] = None,
    **record_kwargs: Any,
) -> NoiseReport:
    """Flip labels (:func:`flip_labels`), record a map of a copy of ``estimator`` trained on
    the noisy labels (:func:`datacarto.sklearn.record`, with ``cv`` folds if given) and
    :func:`evaluate` every score.

    ``record_kwargs`` go to :func:`datacarto.sklearn.record` (``batch_size``, ...).
    ``report.settings`` records what was run and the seconds spent recording.
    """
    from datacarto._optional import require

    require("sklearn", "sklearn", feature="datacarto.noise.benchmark")
    from sklearn.base import clone

    from datacarto import sklearn as dc_sklearn
    from datacarto.datamap import DataMap

    y = np.asarray(y)
    classes = np.unique(y)
    flips = flip_labels(y, fraction, kind=kind, classes=classes, confusion=confusion, seed=seed)
    started = time.perf_counter()
    stats = dc_sklearn.record(clone(estimator), X, flips.labels, epochs=epochs, classes=classes, random_state=seed, cv=cv, class_means=True, **record_kwargs)
    seconds = time.perf_counter() - started
    report = evaluate(DataMap(stats), flips.flipped, k=k)
    report.settings = {"kind": kind, "fraction": float(fraction), "epochs": int(epochs), "cv": cv, "seed": seed, "record_seconds": seconds}
    return report
