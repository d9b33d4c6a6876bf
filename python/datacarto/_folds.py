"""Cross-validation folds for the cross-validated recorders (sklearn ``cv=``, torch ``FoldRecorder``).

Example:
    >>> import numpy as np
    >>> from datacarto._folds import fold_assignment
    >>> folds = fold_assignment(3, np.array([0, 0, 0, 1, 1, 1]), seed=0)
    >>> sorted(np.bincount(folds).tolist()), [sorted(set(folds[:3].tolist())), sorted(set(folds[3:].tolist()))]
    ([2, 2, 2], [[0, 1, 2], [0, 1, 2]])
"""

from __future__ import annotations

from typing import Any, Optional, Union

import numpy as np

from datacarto._core import DatacartoError


def fold_assignment(n_folds: Any, labels: Optional[np.ndarray] = None, *, n: Optional[int] = None, seed: Union[int, np.random.Generator, None] = 0) -> np.ndarray:
    """Each example's fold, int64 ``[N]`` in ``[0, n_folds)``.

    Stratified when 1-D class ``labels`` are given: each class's examples are shuffled and dealt
    round the folds, the deal continuing from class to class, so every fold holds a near-equal
    share of every class and fold sizes differ by at most one. Without labels (or with a 2-D
    multilabel matrix) a shuffled deal of ``n`` examples.
    """
    if isinstance(n_folds, (bool, np.bool_)) or not isinstance(n_folds, (int, np.integer)) or n_folds < 2:
        raise DatacartoError(f"cv: expected an int >= 2 (the number of folds), found {n_folds!r}")
    stratify = labels is not None and np.ndim(labels) == 1
    size = int(np.shape(labels)[0]) if labels is not None else n
    if size is None:
        raise DatacartoError("n: expected the number of examples when no labels are given")
    if n_folds > size:
        raise DatacartoError(f"cv: expected at most one fold per example ({size}), found {n_folds}")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    groups = [np.flatnonzero(labels == c) for c in np.unique(labels)] if stratify else [np.arange(size)]
    folds = np.empty(size, dtype=np.int64)
    offset = 0
    for rows in groups:
        rows = rng.permutation(rows)
        folds[rows] = (offset + np.arange(rows.size)) % n_folds
        offset += rows.size
    if stratify:
        n_classes = len(groups)
        for k in range(int(n_folds)):
            if np.unique(labels[folds != k]).size < n_classes:
                raise DatacartoError(f"cv: fold {k}'s training rows lack a class (a class has a single example); use fewer folds or drop it")
    return folds


__all__ = ["fold_assignment"]
