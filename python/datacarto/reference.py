"""A plain numpy reference implementation of :func:`datacarto.compute`.

It loads the whole window into memory as float64 and follows ``docs/statistics.md`` line by
line, trading speed for obviousness. The test suite cross-checks the Rust core against it; it
is also handy for reading what each statistic means. It is a test oracle: no other module of
datacarto imports it (the trajectories use :mod:`datacarto._epochwise`).

Example:
    >>> import numpy as np, datacarto as dc
    >>> from datacarto import reference
    >>> probs = np.random.default_rng(0).dirichlet(np.ones(3), size=(4, 5)).astype(np.float32)
    >>> labels = np.array([0, 1, 2, 0, 1])
    >>> fast, slow = dc.compute(probs, labels), reference.compute(probs, labels)
    >>> bool(np.allclose(fast.variability, slow.variability))
    True
"""

from __future__ import annotations

import os
from typing import Any, Optional

import numpy as np

from datacarto._args import EpochWindow, LabelsLike, resolve
from datacarto._core import DatacartoError
from datacarto._stats import DynamicsLike, Statistics, _compat_correctness

__all__ = ["clamp_rounding", "compute", "gold_probabilities", "right_epochs", "tolerance"]


def _load(source: DynamicsLike) -> np.ndarray:
    if isinstance(source, (str, os.PathLike)):
        return np.load(os.fspath(source), mmap_mode="r")
    return np.asarray(source)


def tolerance(dtype: Any) -> float:
    """How far outside [0, 1] a stored value may lie and still count (clamped) as a
    probability: four units in the last place of 1.0 (4 epsilon) of the stored dtype."""
    return 4.0 * float(np.finfo(dtype).eps)


def clamp_rounding(block: Any, name: str = "probs", first_epoch: int = 0) -> np.ndarray:
    """``block`` ``[E, N, L]`` as float64 with values within :func:`tolerance` outside [0, 1]
    clamped into it; NaN, inf or anything further out raises, naming the first in (epoch,
    example, label) order."""
    block = np.asarray(block)
    tol = tolerance(block.dtype) if block.dtype.kind == "f" else 0.0
    values = block.astype(np.float64)
    bad = ~((values >= -tol) & (values <= 1.0 + tol))  # NaN fails both
    if bad.any():
        e, i, j = (int(x) for x in np.argwhere(bad)[0])
        raise DatacartoError(f"{name}: values: expected probabilities in [0, 1], found {values[e, i, j]} at epoch {e + first_epoch}, example {i}, label {j}")
    return np.clip(values, 0.0, 1.0)


def gold_probabilities(probs: np.ndarray, labels: np.ndarray, task: str) -> np.ndarray:
    """The gold label's probability ``p_e`` for every epoch: ``[E, N]`` or ``[E, N, L]`` (multilabel)."""
    probs = np.asarray(probs, dtype=np.float64)
    if task == "multiclass":
        return np.take_along_axis(probs, labels[None, :, None], axis=2)[:, :, 0]
    if task == "binary":
        p1 = probs[:, :, 0]
        return np.where(labels[None, :] == 1, p1, 1.0 - p1)
    return np.where(labels[None, :, :] == 1, probs, 1.0 - probs)


def _other_max(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """max over the non-gold columns of each multiclass row: ``[E, N]``."""
    others = np.array(probs, dtype=np.float64)
    np.put_along_axis(others, labels[None, :, None], -np.inf, axis=2)
    return others.max(axis=2)


def right_epochs(probs: np.ndarray, labels: np.ndarray, task: str, rule: str, threshold: float) -> np.ndarray:
    """Whether each epoch's prediction is right: ``[E, N]`` or ``[E, N, L]`` (multilabel).

    Multiclass argmax: the gold probability strictly above every other (ties are wrong);
    multiclass threshold: ``p_e >= threshold``; one-column binary and multilabel, threshold:
    the value x = P(class 1) predicts class 1 when ``x >= threshold``, right when that is the
    gold label; argmax: ``p_e > 0.5`` (the two-column argmax with ties wrong). ``argmax_first_index``: ``np.argmax``
    (the first largest column wins a tie) equals gold.
    """
    if rule == "argmax_first_index":
        return _first_index_verdicts(np.asarray(probs, dtype=np.float64), labels, task)
    if rule == "threshold" and task != "multiclass":
        # a one-column value x is P(class 1): predicted 1 when x >= threshold
        x = np.asarray(probs, dtype=np.float64)
        x = x[:, :, 0] if task == "binary" else x
        return (x >= threshold) == (labels[None] == 1)
    p = gold_probabilities(probs, labels, task)
    other_max = _other_max(probs, labels) if task == "multiclass" and rule == "argmax" else None
    return _verdicts(p, other_max, rule, threshold)


def _first_index_verdicts(probs: np.ndarray, labels: np.ndarray, task: str) -> np.ndarray:
    """``np.argmax`` (first index on ties) == gold; a one-column value x reads as columns (1 - x, x)."""
    if task == "multiclass":
        return np.argmax(probs, axis=2) == labels[None, :]
    x = probs[:, :, 0] if task == "binary" else probs
    return np.argmax(np.stack([1.0 - x, x], axis=-1), axis=-1) == labels[None]


def _verdicts(p: np.ndarray, other_max: Optional[np.ndarray], rule: str, threshold: float) -> np.ndarray:
    """The rule applied to gold probabilities (``other_max``: multiclass only, else ``None``)."""
    if rule == "argmax":
        return p > other_max if other_max is not None else p > 0.5
    return p >= threshold


def compute(
    source: DynamicsLike,
    labels: LabelsLike,
    *,
    task: Optional[str] = None,
    correctness: Optional[str] = None,
    threshold: float = 0.5,
    epochs: EpochWindow = None,
    ddof: int = 0,
    threads: Optional[int] = None,
    progress: Any = False,
    compat: Optional[str] = None,
    class_means: bool = False,
) -> Statistics:
    """Same signature and result as :func:`datacarto.compute` (``threads`` and ``progress`` are ignored).

    ``class_means=True`` adds every column's mean over the window, ``[N, L]`` float64.
    """
    probs = _load(source)
    name = os.fspath(source) if isinstance(source, (str, os.PathLike)) else "probs"
    correctness = _compat_correctness(compat, correctness, ddof)
    args = resolve(labels, probs.shape, task=task, correctness=correctness, threshold=threshold, epochs=epochs, ddof=ddof, source_name=name)
    if compat is not None and args.task == "multilabel":
        raise DatacartoError("compat: 'cartography' reproduces a softmax classifier (multiclass or binary), found task 'multilabel'")
    window = clamp_rounding(probs[args.epoch_start : args.epoch_stop], name, args.epoch_start)
    n_epochs, n_examples, n_labels = window.shape
    gold = args.labels
    p = gold_probabilities(window, gold, args.task)

    # p and the others' max are computed once and shared by the verdicts and the margin
    other_max = _other_max(window, gold) if args.task == "multiclass" else None
    if args.correctness == "argmax_first_index" or (args.correctness == "threshold" and args.task != "multiclass"):
        right = right_epochs(window, gold, args.task, args.correctness, args.threshold)
    else:
        right = _verdicts(p, other_max, args.correctness, args.threshold)
    if other_max is not None:
        margin = (p - other_max).mean(axis=0)
        onehot = np.eye(n_labels)[gold]
        el2n = np.sqrt(((window - onehot[None]) ** 2).sum(axis=2)).mean(axis=0)
    else:
        # one-column binary and multilabel: each (example, label) is its own binary problem
        margin = (p - (1.0 - p)).mean(axis=0)
        el2n = (np.abs(1.0 - p) * np.sqrt(2.0)).mean(axis=0)

    confidence = p.mean(axis=0)
    variability = p.std(axis=0, ddof=args.ddof)
    forgetting = (right[:-1] & ~right[1:]).sum(axis=0).astype(np.int32)
    never_learned = ~right.any(axis=0)
    wrong = ~right
    # index of the last wrong epoch (-1 when never wrong)
    last_wrong = np.where(wrong.any(axis=0), n_epochs - 1 - np.argmax(wrong[::-1], axis=0), -1)
    first_learned = np.where(right[-1], last_wrong + 1, -1).astype(np.int32)

    return Statistics(
        confidence=confidence,
        variability=variability,
        correctness=right.mean(axis=0),
        forgetting=forgetting,
        never_learned=never_learned,
        first_learned=first_learned,
        threshold_closeness=confidence * (1.0 - confidence),
        margin=margin,
        aleatoric=(p * (1.0 - p)).mean(axis=0),
        el2n=el2n,
        labels=gold,
        task=args.task,
        correctness_rule=args.correctness,
        threshold=args.threshold,
        epochs=(args.epoch_start, args.epoch_stop),
        ddof=args.ddof,
        n_examples=n_examples,
        n_labels=n_labels,
        source=name if isinstance(source, (str, os.PathLike)) else None,
        class_means=window.mean(axis=0) if class_means else None,
    )
