"""Warnings about recorded dynamics that make a map misleading (used by the recorders).

- *memorised*: the model is right about nearly every training label at the last epoch, wrong
  ones included, so an in-sample map sees little difference between clean and flipped labels:
  record out-of-fold probabilities instead (``cv=``).
- *degenerate*: the gold probabilities barely move across epochs (``MultinomialNB``'s
  ``partial_fit`` on the same data only rescales its counts), so variability is ~0 and the
  ambiguous region means nothing.

Example:
    >>> import numpy as np, warnings
    >>> from datacarto._checks import check_dynamics
    >>> last = np.tile([0.9, 0.1], (100, 1))            # every example right at the last epoch
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     check_dynamics(last, np.zeros(100, dtype=np.int64), "multiclass", cv=None, variability=np.zeros(100), n_epochs=5)
    >>> [str(w.message).split(":")[0] for w in caught]
    ['memorised labels', 'degenerate dynamics']
"""

from __future__ import annotations

import warnings
from typing import Any, Optional

import numpy as np

#: last-epoch training accuracy at or above which the in-sample map is called memorised
MEMORISED_ACCURACY = 0.99
#: median variability (of the units not pinned at 0 or 1) at or below which the dynamics are
#: called degenerate: MultinomialNB gives ~1e-3, SGD or an MLP that learns 0.05 and more
DEGENERATE_VARIABILITY = 2e-3
#: units whose confidence lies outside this band are saturated: their variability is 0 for a
#: reason (a model sure of them at every epoch), so they do not count as degenerate
_UNSATURATED = (0.02, 0.98)


class RecordingWarning(UserWarning):
    """The recorded dynamics will give a misleading map (memorised labels, degenerate dynamics)."""


def last_epoch_accuracy(last: np.ndarray, labels: np.ndarray, task: str) -> float:
    """Fraction of units predicted right at one epoch ``[N, L]`` (argmax, or p >= 0.5 per label)."""
    last = np.asarray(last, dtype=np.float64)
    if task == "multilabel":
        return float(((last >= 0.5) == (np.asarray(labels) == 1)).mean())
    if last.shape[1] == 1:
        return float(((last[:, 0] >= 0.5) == (np.asarray(labels) == 1)).mean())
    gold = last[np.arange(last.shape[0]), labels]
    others = last.copy()
    others[np.arange(last.shape[0]), labels] = -np.inf
    return float((gold > others.max(axis=1)).mean())


def check_dynamics(last: Any, labels: Any, task: str, *, cv: Optional[int], variability: Optional[np.ndarray], confidence: Optional[np.ndarray] = None, n_epochs: int, stacklevel: int = 3) -> None:
    """Warn (:class:`RecordingWarning`) when the dynamics look memorised (in-sample maps only:
    ``cv`` is None; judged on the last epoch's probabilities ``[N, L]``) or degenerate (the
    median ``variability``, over at least 3 epochs, of the units whose ``confidence`` lies in
    (0.02, 0.98))."""
    if cv is None:
        accuracy = last_epoch_accuracy(last, labels, task)
        if accuracy >= MEMORISED_ACCURACY:
            warnings.warn(
                f"memorised labels: the model fits {accuracy:.1%} of the training labels at the last epoch, wrong ones included, "
                "so the in-sample map hides label errors; record out-of-fold probabilities with cv=5 (or regularise more, or train fewer epochs)",
                RecordingWarning,
                stacklevel=stacklevel,
            )
    if variability is None:  # left out with compute(..., statistics=[...])
        return
    variability = np.asarray(variability).reshape(-1)
    if confidence is not None:
        confidence = np.asarray(confidence).reshape(-1)
        variability = variability[(confidence > _UNSATURATED[0]) & (confidence < _UNSATURATED[1])]
    if n_epochs >= 3 and variability.size:
        median = float(np.median(variability))
        if median <= DEGENERATE_VARIABILITY:
            warnings.warn(
                f"degenerate dynamics: the median variability is {median:.2g}, the gold probabilities barely change across epochs "
                "(an estimator like MultinomialNB whose partial_fit on the same data only rescales its counts): variability and the ambiguous "
                "region mean nothing here; the confidence-based suspicion scores still rank examples",
                RecordingWarning,
                stacklevel=stacklevel,
            )


__all__ = ["DEGENERATE_VARIABILITY", "MEMORISED_ACCURACY", "RecordingWarning", "check_dynamics", "last_epoch_accuracy"]
