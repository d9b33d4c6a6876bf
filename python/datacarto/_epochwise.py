"""Per-epoch gold-label probabilities and right/wrong verdicts, for trajectories and plots.

The statistics themselves come from the compiled core in one streaming pass; this module
serves the few callers that need the per-epoch values of a handful of examples
(:meth:`datacarto.DataMap.trajectories`). It is deliberately separate from
:mod:`datacarto.reference`, the test oracle, so that production code never depends on it.

Example:
    >>> import numpy as np
    >>> from datacarto._epochwise import gold_probabilities, right_epochs
    >>> block = np.array([[[0.6, 0.4]], [[0.5, 0.5]]])     # [epochs, examples, labels]
    >>> gold_probabilities(block, np.array([0]), "multiclass").tolist()
    [[0.6], [0.5]]
    >>> right_epochs(block, np.array([0]), "multiclass", "argmax", 0.5).tolist()   # a tie is wrong
    [[True], [False]]
"""

from __future__ import annotations

import numpy as np

__all__ = ["gold_probabilities", "right_epochs"]


def gold_probabilities(block: np.ndarray, labels: np.ndarray, task: str) -> np.ndarray:
    """The gold label's probability per epoch, in float64.

    Args:
        block: probabilities ``[E, k, L]``.
        labels: class indices ``[k]`` (multiclass, binary) or 0/1 targets ``[k, L]`` (multilabel).
        task: ``"multiclass"``, ``"binary"`` (one column holding P(class 1)) or ``"multilabel"``.

    Returns:
        ``[E, k]``, or ``[E, k, L]`` for multilabel.
    """
    block = np.asarray(block, dtype=np.float64)
    if task == "multiclass":
        return block[:, np.arange(block.shape[1]), labels]
    if task == "binary":
        positive = block[:, :, 0]
        return np.where(labels == 1, positive, 1.0 - positive)
    return np.where(labels == 1, block, 1.0 - block)


def right_epochs(block: np.ndarray, labels: np.ndarray, task: str, rule: str, threshold: float) -> np.ndarray:
    """Whether each epoch's prediction is right, with the same shape as :func:`gold_probabilities`.

    ``rule="argmax"``: multiclass rows are right when the gold probability is strictly above
    every other column (ties are wrong); a one-column binary or multilabel value is right when
    the gold label's probability is above 0.5. ``rule="argmax_first_index"``: ``np.argmax``
    (the first largest column wins a tie; a one-column x reads as ``(1 - x, x)``).
    ``rule="threshold"``: multiclass rows are right when the gold probability is
    ``>= threshold``; a one-column value x = P(class 1) predicts class 1 when
    ``x >= threshold``, and is right when that is the gold label.
    """
    block = np.asarray(block, dtype=np.float64)
    if task != "multiclass":
        # a one-column value x is P(class 1); read as the columns (1 - x, x) for argmax rules
        x = block[:, :, 0] if task == "binary" else block
        if rule == "threshold":
            return (x >= threshold) == (labels == 1)
        if rule == "argmax_first_index":
            return np.where(labels == 1, x > 0.5, x <= 0.5)
        return np.where(labels == 1, x, 1.0 - x) > 0.5
    gold = gold_probabilities(block, labels, task)
    if rule == "threshold":
        return gold >= threshold
    if rule == "argmax_first_index":
        return np.argmax(block, axis=2) == labels
    others = np.array(block, dtype=np.float64)
    others[:, np.arange(others.shape[1]), labels] = -np.inf
    return gold > others.max(axis=2)
