"""Epoch weights for cross-validated maps: the checkpoint mixture that best predicts held-out labels.

In a cross-validated map every epoch's probabilities are out-of-fold predictions, so each epoch
is an honest held-out model, and the map's mean over epochs is an ensemble of checkpoints. An
equal-weight ensemble is the right default when every checkpoint is about as good (models that
converge quickly, or start to overfit later: the early checkpoints then add useful diversity),
but not when the early epochs are far from converged (SGD with tiny regularisation takes huge
first steps): their noisy predictions then drag the mean down.

The weights here are the *maximum-likelihood mixture* of the epochs: the simplex weights ``w``
maximising ``Σ_i log Σ_e w_e p[e, i]``, ``p[e, i]`` the out-of-fold probability of example
``i``'s (recorded) label at epoch ``e``. It is a convex problem, solved by the standard EM
fixed point for mixture weights (``w_e ← mean_i w_e p[e, i] / Σ_e' w_e' p[e', i]``, which
never decreases the likelihood). Nothing is tuned: no threshold, window or temperature, and no
knowledge of which labels are wrong (the recorded labels are used as they are, noise and all,
the way a held-out validation loss would be). Only meaningful on out-of-fold predictions: on an
in-sample map the likelihood rewards the epochs that memorised the labels, wrong ones included.

Example:
    >>> import numpy as np
    >>> from datacarto._mixture import checkpoint_weights
    >>> gold = np.array([[0.2, 0.3, 0.1, 0.25], [0.8, 0.9, 0.7, 0.2], [0.85, 0.9, 0.75, 0.2]])
    >>> checkpoint_weights(gold).round(2).tolist()   # the last epoch predicts every label best
    [0.0, 0.0, 1.0]
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Any, Iterator, Optional, Tuple

import numpy as np

from datacarto._core import DatacartoError

#: Probabilities are floored here inside the logarithm: a zero (float32 underflow) must not
#: make an epoch's likelihood -inf and strip it of all weight at once.
PROBABILITY_FLOOR = 1e-12


def checkpoint_weights(gold_probs: Any, *, max_iterations: int = 1000, tolerance: float = 1e-10) -> np.ndarray:
    """The maximum-likelihood mixture weights of the epochs, float64 ``[E]`` summing to 1.

    Args:
        gold_probs: ``[E, N]``: each epoch's probability of each example's label (out-of-fold).
        max_iterations, tolerance: EM stops when the mean log-likelihood gains less than
            ``tolerance`` in one step, or after ``max_iterations`` steps.
    """
    p = np.asarray(gold_probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] < 1 or p.shape[1] < 1:
        raise DatacartoError(f"gold_probs: expected [epochs, examples] with at least one of each, found shape {list(p.shape)}")
    if not np.isfinite(p).all():
        raise DatacartoError("gold_probs: found NaN or inf")
    p = np.clip(p, PROBABILITY_FLOOR, 1.0)
    weights = np.full(p.shape[0], 1.0 / p.shape[0])
    previous = -np.inf
    for _ in range(max_iterations):
        mixture = weights @ p
        likelihood = float(np.log(mixture).mean())
        if likelihood - previous < tolerance:
            break
        previous = likelihood
        weights = weights * (p / mixture).mean(axis=1)
        weights /= weights.sum()
    return weights


def add_mixture(stats: Any, gold_probs: np.ndarray, path: Any = None) -> None:
    """A cross-validated map's epoch weights, ``extra["epoch_weights"]`` (the maximum-likelihood
    mixture of its out-of-fold predictions over the statistics' epoch window), and the weighted
    probability of the recorded label, ``extra["mixture_confidence"]``: the default suspicion
    score's input on such a map. ``gold_probs`` is ``[E, N]`` over every recorded epoch. When the
    statistics hold class means (``class_means=True``) and ``path`` names the dynamics file,
    also ``extra["mixture_class_means"]`` (:func:`mixture_class_means`, one more read)."""
    start, stop = stats.epochs
    weights = checkpoint_weights(gold_probs[start:stop])
    stats.extra["epoch_weights"] = weights
    stats.extra["mixture_confidence"] = weights @ gold_probs[start:stop]
    if path is not None and getattr(stats, "class_means", None) is not None:
        stats.extra["mixture_class_means"] = mixture_class_means(path, weights, start, stats.labels, stats.task)


def _shape(source: Any) -> Tuple[int, ...]:
    """A dynamics file's ``(E, N, L)`` from its header (checked), or an array's."""
    if isinstance(source, (str, os.PathLike)):
        from datacarto._stats import read_header

        return tuple(read_header(source)["shape"])
    return tuple(np.shape(source))


@contextmanager
def _one_file(source: Any) -> Iterator[None]:
    """Several passes over a dynamics file (or an array): each pass opens the path anew, so
    another file put at the path meanwhile (an overwrite) is an error at the end, instead of
    results that mix the two files' epochs."""
    if not isinstance(source, (str, os.PathLike)):
        yield
        return
    from datacarto._stats import changed_while_read
    from datacarto.writer import _same_file

    # held open across the passes, so that the file's identity cannot pass to another file
    fd = os.open(source, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        yield
        if not _same_file(fd, os.fspath(source)):
            raise changed_while_read(os.fspath(source), "another file was put at its path between the passes over its epochs, or it was removed")
    finally:
        os.close(fd)


def gold_probabilities(path: Any, labels: Any, task: str = "multiclass") -> np.ndarray:
    """Each epoch's probability of each example's label, ``[E, N]`` float64, read from a
    multiclass or one-column binary dynamics file one epoch at a time (for recorders that did
    not keep it while recording): one full read of the file, by the core
    (:func:`datacarto._stats.window_pass`).

    Example:
        >>> import numpy as np, os, tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "d.npy")
        >>> np.save(path, np.array([[[0.2, 0.8], [0.6, 0.4]], [[0.5, 0.5], [0.1, 0.9]]], dtype=np.float32))
        >>> gold_probabilities(path, np.array([1, 0])).round(2).tolist()
        [[0.8, 0.6], [0.5, 0.1]]
    """
    from datacarto._stats import window_pass

    with _one_file(path):
        n_epochs = _shape(path)[0]
        return np.stack([window_pass(path, labels, (epoch, epoch + 1), task=task).confidence for epoch in range(n_epochs)])


def mixture_class_means(path: Any, weights: Any, start: int, labels: Any, task: str) -> np.ndarray:
    """Every class's probability under the epoch mixture, float64 ``[N, L]``: ``Σ_e w_e P[start + e]``.

    The cross-validated counterpart of the plain ``class_means`` (the unweighted mean over the
    window): what :meth:`datacarto.DataMap.label_issues` runs confident learning on when the map
    has epoch weights, so the count and the flags come from the same mixture as the default score.
    One read of the epochs with a nonzero weight, by the core (:func:`datacarto._stats.window_pass`:
    checked, clamped, safe against a file changed meanwhile); ``labels`` and ``task`` are the map's.

    Example:
        >>> import numpy as np, os, tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "d.npy")
        >>> np.save(path, np.array([[[0.2, 0.8]], [[0.6, 0.4]]], dtype=np.float32))
        >>> mixture_class_means(path, [0.25, 0.75], 0, np.array([0]), "multiclass").round(3).tolist()
        [[0.5, 0.5]]
    """
    return mixture_passes(path, weights, start, labels, task)[0]


def mixture_passes(path: Any, weights: Any, start: int, labels: Any, task: str, *, window_confidence: bool = False) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """:func:`mixture_class_means` and, with ``window_confidence``, each example's mean gold
    probability over every epoch of the window ``[start, start + len(weights))`` (what a map
    computed over that window holds as its ``confidence``), from the same passes: the epochs of
    weight 0 are then read too, for their gold probabilities alone. ``None`` without it.

    Example:
        >>> import numpy as np, os, tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "d.npy")
        >>> np.save(path, np.array([[[0.2, 0.8]], [[0.6, 0.4]]], dtype=np.float32))
        >>> means, confidence = mixture_passes(path, [0.0, 1.0], 0, np.array([0]), "multiclass", window_confidence=True)
        >>> means.round(3).tolist(), confidence.round(3).tolist()
        ([[0.6, 0.4]], [0.4])
    """
    from datacarto._stats import window_pass

    with _one_file(path):
        shape = _shape(path)
        w = np.asarray(weights, dtype=np.float64)
        if w.ndim != 1 or not 0 <= start <= shape[0] - w.size:
            raise DatacartoError(f"{path}: expected a [epochs, examples, labels] file with epochs {start}..{start + w.size}, found shape {list(shape)}")
        out = np.zeros(tuple(shape[1:]))
        gold_sum = np.zeros(shape[1]) if window_confidence else None
        for epoch in range(w.size) if window_confidence else np.flatnonzero(w):
            first = start + int(epoch)
            weighted = bool(w[epoch] != 0)
            stats = window_pass(path, labels, (first, first + 1), task=task, class_means=weighted)
            if weighted:
                out += w[epoch] * stats.class_means
            if gold_sum is not None:
                gold_sum += stats.confidence
    return out, None if gold_sum is None else gold_sum / w.size


__all__ = ["PROBABILITY_FLOOR", "add_mixture", "checkpoint_weights", "gold_probabilities", "mixture_class_means", "mixture_passes"]
