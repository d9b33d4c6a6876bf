"""Suspicion scores: how likely each example's label is wrong, higher = more suspicious.

Every score is a pure function of a map's statistic columns (numpy arrays, one value per row),
so it can be computed on a map read back from a file, without the dynamics. Each score's name
is spelled once, here, in :data:`SCORES`; :meth:`datacarto.DataMap.suspects`, the noise
benchmark (:mod:`datacarto.noise`) and the CLI all look names up in it.

The default, ``"confidence"`` (one minus the gold label's mean probability over epochs), was
chosen by ``benches/bench_noise.py``: over digits and GoEmotions, uniform and confusable flips,
a regularised and a memorising model, in-sample and cross-validated maps, it had the best mean
AUPRC (see ``docs/label-errors.md`` for the table). It is confident learning's own default
ranking (``self_confidence``), averaged over the epochs instead of read once.

Example:
    >>> import numpy as np
    >>> from datacarto._scores import score
    >>> columns = {"confidence": np.array([0.9, 0.2]), "gold": np.array([0, 1])}
    >>> score("confidence", columns).tolist()
    [0.09999999999999998, 0.8]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Iterable, Mapping, Tuple

import numpy as np

from datacarto._core import DatacartoError

Columns = Mapping[str, np.ndarray]


@dataclass(frozen=True)
class Score:
    """A named suspicion score: ``function(columns)`` over the ``needs`` columns."""

    name: str
    needs: Tuple[str, ...]
    function: Callable[[Columns], np.ndarray]
    summary: str


def _confidence(c: Columns) -> np.ndarray:
    return 1.0 - np.asarray(c["confidence"], dtype=np.float64)


def _mixture(c: Columns) -> np.ndarray:
    return 1.0 - np.asarray(c["mixture_confidence"], dtype=np.float64)


def _margin(c: Columns) -> np.ndarray:
    return -np.asarray(c["margin"], dtype=np.float64)


def _el2n(c: Columns) -> np.ndarray:
    return np.asarray(c["el2n"], dtype=np.float64)


def _class_means(values: np.ndarray, gold: np.ndarray) -> np.ndarray:
    """The mean of ``values`` over the rows of each row's own gold class, per row."""
    gold = np.asarray(gold, dtype=np.int64)
    classes, inverse = np.unique(gold, return_inverse=True)
    sums = np.bincount(inverse, weights=values, minlength=classes.size)
    counts = np.bincount(inverse, minlength=classes.size)
    return (sums / counts)[inverse]


def _relative_confidence(c: Columns) -> np.ndarray:
    """``1 − confidence / t_gold``: t_j is the mean confidence of the rows labelled j
    (confident learning's per-class threshold), so a class the model finds hard is not
    flagged wholesale."""
    confidence = np.asarray(c["confidence"], dtype=np.float64)
    threshold = _class_means(confidence, c["gold"])
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(threshold > 0, confidence / np.where(threshold > 0, threshold, 1.0), 0.0)
    return 1.0 - ratio


def percentile_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks scaled to (0, 1], ties sharing their average rank (like ``scipy.stats.rankdata / n``).

    Example:
        >>> percentile_ranks(np.array([3.0, 1.0, 3.0])).tolist()
        [0.8333333333333334, 0.3333333333333333, 0.8333333333333334]
    """
    values = np.asarray(values, dtype=np.float64)
    return _ranks(values) / values.size if values.size else values


def _ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, ties sharing their average (multiples of 0.5: sums of them are exact)."""
    n = values.size
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    # average rank of each run of equal values
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    ends = np.r_[starts[1:], n]
    average = (starts + ends + 1) / 2.0
    ranks = np.empty(n)
    ranks[order] = np.repeat(average, ends - starts)
    return ranks


def _rank_average(c: Columns) -> np.ndarray:
    # summed as exact half-integers, divided once: equal rank sums stay equal (true ties)
    total = _ranks(_confidence(c)) + _ranks(_margin(c)) + _ranks(_el2n(c))
    return total / (3.0 * max(total.size, 1))


#: Every suspicion score by name (higher = more likely mislabeled). The first is the default.
SCORES: Dict[str, Score] = {
    s.name: s
    for s in (
        Score("confidence", ("confidence",), _confidence, "1 − confidence: one minus the gold label's mean probability over epochs"),
        Score("mixture", ("mixture_confidence",), _mixture, "1 − the gold label's probability under the cross-validated map's maximum-likelihood mixture of epochs (cv maps only)"),
        Score("margin", ("margin",), _margin, "−margin: how far the strongest other label led the gold one, on average (AUM)"),
        Score("el2n", ("el2n",), _el2n, "EL2N: mean distance between the prediction and the one-hot gold label"),
        Score("relative_confidence", ("confidence", "gold"), _relative_confidence, "1 − confidence / t_gold, t_j the mean confidence of the examples labelled j (class-aware)"),
        Score("rank_average", ("confidence", "margin", "el2n"), _rank_average, "the mean of the percentile ranks of the confidence, margin and el2n scores"),
    )
}
#: The score :meth:`DataMap.suspects` and the ``suspicion`` column use unless told otherwise.
DEFAULT_SCORE = "confidence"
#: The default of a cross-validated map (one with a ``mixture_confidence`` column).
CV_DEFAULT_SCORE = "mixture"


def default_score(columns: Iterable[str]) -> str:
    """The default score of a map with these columns: ``"mixture"`` for a cross-validated map
    recorded with its epoch weights, else ``"confidence"``.

    Example:
        >>> default_score(["confidence", "margin"]), default_score(["confidence", "mixture_confidence"])
        ('confidence', 'mixture')
    """
    return CV_DEFAULT_SCORE if "mixture_confidence" in set(columns) else DEFAULT_SCORE


def available(columns: Iterable[str]) -> Tuple[str, ...]:
    """The scores computable from these columns, the map's default first."""
    present = set(columns)
    names = [name for name, s in SCORES.items() if all(c in present for c in s.needs)]
    first = default_score(present)
    return tuple([first] + [name for name in names if name != first]) if first in names else tuple(names)


def check_name(name: object, argument: str = "score") -> str:
    """``name`` if it is a known score, else a DatacartoError listing them."""
    if not isinstance(name, str) or name not in SCORES:
        raise DatacartoError(f"{argument}: expected one of {', '.join(SCORES)}, found {name!r}")
    return name


def score(name: str, columns: Columns) -> np.ndarray:
    """The score ``name`` over ``columns`` (float64, one value per row).

    For a multilabel map pass one label's rows at a time (``gold`` is then the 0/1 target).
    """
    entry = SCORES[check_name(name)]
    missing = [c for c in entry.needs if c not in columns]
    if missing:
        raise DatacartoError(f"score {name!r}: needs the column(s) {', '.join(missing)}")
    return entry.function(columns)


def all_scores(columns: Columns) -> Dict[str, np.ndarray]:
    """Every score of :data:`SCORES` computable from ``columns`` (``mixture`` needs a
    cross-validated map's ``mixture_confidence``), the map's default first."""
    return {name: score(name, columns) for name in available(columns)}


__all__ = ["CV_DEFAULT_SCORE", "DEFAULT_SCORE", "SCORES", "Score", "all_scores", "available", "check_name", "default_score", "percentile_ranks", "score"]
