"""Confident learning on a data map: which labels are probably wrong, and how many.

Northcutt, Jiang and Chuang, "Confident Learning: Estimating Uncertainty in Dataset Labels"
(JAIR 2021), applied to the mean probability of every class over a map's epochs (``[N, L]``,
from :func:`datacarto.compute` with ``class_means=True``) instead of one set of out-of-sample
predictions. The steps, for gold labels ``y`` and mean probabilities ``m``:

1. per-class thresholds ``t_j = mean(m[i, j] for i with y_i = j)``: how sure the model
   typically is about an example of class ``j`` that is labelled ``j``;
2. an example *confidently belongs* to class ``ĵ = argmax { m[i, j] : m[i, j] >= t_j }``
   (none when no class reaches its threshold);
3. the confident joint ``C[i, j]`` counts examples labelled ``i`` confidently in ``j``;
   calibrated so that row ``i`` sums to the number of examples labelled ``i``
   (``C̃[i, j] = C[i, j] / Σ_k C[i, k] · n_i``), its off-diagonal sum estimates the number of
   wrong labels;
4. prune by noise rate: for each off-diagonal cell, flag the ``round(C̃[i, j])`` examples
   labelled ``i`` where class ``j`` leads the gold class by the most (``m[·, j] − m[·, i]``),
   largest cells first, each example flagged once.

Example:
    >>> import numpy as np
    >>> from datacarto._confident import confident_learning
    >>> means = np.array([[0.9, 0.1], [0.8, 0.2], [0.2, 0.8], [0.1, 0.9], [0.95, 0.05]])
    >>> issues = confident_learning(means, np.array([0, 0, 1, 1, 1]))
    >>> issues.n_issues, issues.flags.tolist()
    (1, [False, False, False, False, True])
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, List, Sequence

import numpy as np

from datacarto._core import DatacartoError


@dataclass(frozen=True)
class LabelIssues:
    """The result of :meth:`datacarto.DataMap.label_issues`.

    Attributes:
        flags: bool ``[N]`` (``[N, L]`` multilabel): the label is probably wrong.
        n_issues: the estimated number of wrong labels (the calibrated confident joint's
            off-diagonal sum, rounded); close to ``flags.sum()`` by construction.
        suggested: int64 ``[N]`` (``[N, L]``): the class the example confidently belongs to,
            ``-1`` when no class reaches its threshold (multilabel: the 0/1 target).
        thresholds: float64 ``[L]`` (``[L, 2]`` multilabel): the per-class thresholds ``t_j``.
        confident_joint: int64 ``[L, L]`` (``[L, 2, 2]``): examples labelled ``i`` confidently
            in ``j``.
        calibrated_joint: float64, the same shape: rows rescaled to the label counts.
    """

    flags: np.ndarray
    n_issues: int
    suggested: np.ndarray
    thresholds: np.ndarray
    confident_joint: np.ndarray
    calibrated_joint: np.ndarray
    method: str = field(default="confident learning (prune by noise rate) on the mean class probabilities over epochs")

    @property
    def n_flagged(self) -> int:
        return int(np.count_nonzero(self.flags))

    @classmethod
    def per_label(cls, parts: Sequence["LabelIssues"]) -> "LabelIssues":
        """One multilabel result from one binary result per label."""
        return cls(
            flags=np.stack([p.flags for p in parts], axis=1),
            n_issues=int(sum(p.n_issues for p in parts)),
            suggested=np.stack([p.suggested for p in parts], axis=1),
            thresholds=np.stack([p.thresholds for p in parts]),
            confident_joint=np.stack([p.confident_joint for p in parts]),
            calibrated_joint=np.stack([p.calibrated_joint for p in parts]),
        )

    def __repr__(self) -> str:
        return f"LabelIssues(n_issues={self.n_issues}, n_flagged={self.n_flagged}, examples={self.flags.shape[0]})"


def per_class_thresholds(means: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``t_j``: the mean of ``means[:, j]`` over the examples labelled ``j`` (1.0, i.e. out of
    reach, for a class no example carries)."""
    n_classes = means.shape[1]
    counts = np.bincount(labels, minlength=n_classes)
    sums = np.bincount(labels, weights=means[np.arange(labels.size), labels], minlength=n_classes)
    return np.where(counts > 0, sums / np.maximum(counts, 1), 1.0)


def confident_classes(means: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Per example, the most probable class at or above its threshold; -1 when there is none."""
    above = means >= thresholds[None, :]
    masked = np.where(above, means, -np.inf)
    best = np.argmax(masked, axis=1)
    return np.where(above.any(axis=1), best, -1).astype(np.int64)


def confident_learning(means: Any, labels: Any) -> LabelIssues:
    """Flag probably-wrong labels from the mean class probabilities ``[N, L]`` and the gold
    class indices ``[N]`` (see the module docstring for the steps)."""
    means = np.asarray(means, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if means.ndim != 2 or labels.shape != (means.shape[0],):
        raise DatacartoError(f"class_means: expected [N, L] with labels [N], found {list(means.shape)} and {list(labels.shape)}")
    n, n_classes = means.shape
    thresholds = per_class_thresholds(means, labels)
    suggested = confident_classes(means, thresholds)
    counted = suggested >= 0
    joint = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(joint, (labels[counted], suggested[counted]), 1)
    label_counts = np.bincount(labels, minlength=n_classes)
    row_sums = joint.sum(axis=1, keepdims=True)
    calibrated = np.where(row_sums > 0, joint / np.maximum(row_sums, 1) * label_counts[:, None], 0.0)
    off_diagonal = calibrated.copy()
    np.fill_diagonal(off_diagonal, 0.0)
    n_issues = int(round(off_diagonal.sum()))

    flags = np.zeros(n, dtype=bool)
    gold_mean = means[np.arange(n), labels]
    cells = [(off_diagonal[i, j], i, j) for i in range(n_classes) for j in range(n_classes) if i != j and round(off_diagonal[i, j]) > 0]
    # largest cells first; ties by (label, class) so the result does not depend on dict order
    for size, i, j in sorted(cells, key=lambda cell: (-cell[0], cell[1], cell[2])):
        rows = np.flatnonzero((labels == i) & ~flags)
        take = min(int(round(size)), rows.size)
        if take == 0:
            continue
        lead = means[rows, j] - gold_mean[rows]
        # the `take` largest leads; ties by example index (a stable sort of the negated lead)
        flags[rows[np.argsort(-lead, kind="stable")[:take]]] = True
    return LabelIssues(flags, n_issues, suggested, thresholds, joint, calibrated)


__all__: List[str] = ["LabelIssues", "confident_classes", "confident_learning", "per_class_thresholds"]
