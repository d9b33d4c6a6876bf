"""Record training dynamics from scikit-learn estimators trained with ``partial_fit``.

:func:`record` trains any classifier that has ``partial_fit`` and ``predict_proba`` for a number
of epochs, writes the predicted probabilities of every training example after each epoch to
a dynamics file (:class:`datacarto.DynamicsWriter`) and returns the statistics
(:func:`datacarto.compute`). Works with ``SGDClassifier(loss="log_loss")``,
``MLPClassifier``, ``MultinomialNB`` / ``BernoulliNB``, and ``OneVsRestClassifier`` for
multilabel 0/1 targets; dense or scipy sparse ``X``.

``import datacarto`` does not import scikit-learn; this module loads on first use of
``datacarto.sklearn``.

Example:
    >>> import datacarto as dc
    >>> from sklearn.datasets import make_classification
    >>> from sklearn.linear_model import SGDClassifier
    >>> X, y = make_classification(300, 10, n_informative=5, n_classes=3, random_state=0)
    >>> stats = dc.sklearn.record(SGDClassifier(loss="log_loss", random_state=0), X, y, epochs=5)
    >>> stats.n_epochs, stats.confidence.shape, stats.task
    (5, (300,), 'multiclass')
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from datacarto._checks import RecordingWarning, check_dynamics
from datacarto._core import DatacartoError
from datacarto._folds import fold_assignment
from datacarto._optional import require
from datacarto._stats import Statistics, compute
from datacarto.writer import DynamicsWriter

__all__ = ["RecordingWarning", "balanced_class_weight", "record"]

PathLike = Union[str, "os.PathLike[str]"]


def balanced_class_weight(y: Any, classes: Sequence[Any]) -> Dict[Any, float]:
    """``class_weight="balanced"`` as an explicit dict: ``n_samples / (n_classes * count(c))``.

    scikit-learn computes "balanced" weights inside ``fit`` but refuses them in
    ``partial_fit`` (it sees one batch at a time). Computed once over the whole training set
    they give ``partial_fit`` the same weighting as ``fit``. A class absent from ``y`` gets 1.

    Example:
        >>> from datacarto.sklearn import balanced_class_weight
        >>> balanced_class_weight([0, 0, 0, 1], [0, 1])
        {0: 0.6666666666666666, 1: 2.0}
    """
    y = np.asarray(y)
    weights = {}
    for c in classes:
        count = int(np.count_nonzero(y == c))
        weights[c.item() if isinstance(c, np.generic) else c] = y.size / (len(classes) * count) if count else 1.0
    return weights


def _is_sparse(x: Any) -> bool:
    return hasattr(x, "tocsr") and hasattr(x, "nnz")


def _rows(x: Any, index: np.ndarray) -> Any:
    """Rows ``index`` of a numpy array, scipy sparse matrix, pandas / polars frame or list."""
    if hasattr(x, "iloc"):
        return x.iloc[index]
    if isinstance(x, list):
        return [x[i] for i in index]
    return x[index]


def _n_rows(x: Any) -> int:
    shape = getattr(x, "shape", None)
    return int(shape[0]) if shape is not None else len(x)


def _targets(y: Any, classes: Optional[Sequence[Any]], n: int) -> Tuple[str, np.ndarray, np.ndarray]:
    """(task, targets as passed to partial_fit, class values): 1-D labels or a 0/1 indicator matrix."""
    if _is_sparse(y):
        y = y.toarray()
    y = np.asarray(y.to_numpy() if hasattr(y, "to_numpy") else y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.shape[0] != n:
        raise DatacartoError(f"y: shape: expected {n} rows (one per row of X), found {y.shape[0]}")
    if y.ndim == 2:
        if not np.isin(y, (0, 1)).all():
            raise DatacartoError("y: expected a 0/1 indicator matrix [N, L] for multilabel targets, found other values")
        if classes is not None and len(classes) != y.shape[1]:
            raise DatacartoError(f"classes: expected {y.shape[1]} label ids (one per column of y), found {len(classes)}")
        return "multilabel", y.astype(np.int64), np.arange(y.shape[1])
    if y.ndim != 1:
        raise DatacartoError(f"y: shape: expected [N] class labels or an [N, L] 0/1 matrix, found {list(y.shape)}")
    values = np.unique(y) if classes is None else np.unique(np.asarray(classes))
    if classes is not None and len(values) != len(classes):
        raise DatacartoError("classes: expected distinct class labels, found duplicates")
    missing = np.setdiff1d(np.unique(y), values)
    if missing.size:
        raise DatacartoError(f"y: expected labels among classes {values.tolist()}, found {missing[:5].tolist()}")
    if values.size < 2:
        raise DatacartoError(f"y: expected at least 2 classes, found {values.tolist()}; pass classes= when a batch lacks some")
    return "multiclass", y, values


def _columns(proba: Any, n_rows: int, n_labels: int) -> np.ndarray:
    """predict_proba output as ``[n, L]``: a list of per-output ``[n, 2]`` arrays becomes P(1) columns."""
    if isinstance(proba, list):  # MultiOutputClassifier and other multi-output estimators
        if any(np.shape(p)[1:] != (2,) for p in proba):
            raise DatacartoError("predict_proba: expected one [N, 2] array per label (both classes seen), found another shape")
        proba = np.column_stack([np.asarray(p)[:, 1] for p in proba])
    proba = np.asarray(proba)
    if proba.shape != (n_rows, n_labels):
        raise DatacartoError(f"predict_proba: shape: expected [{n_rows}, {n_labels}], found {list(proba.shape)}")
    return proba


def _init_one_vs_rest(estimator: Any, task: str, targets: np.ndarray, classes: np.ndarray) -> bool:
    """Prepare an unfitted ``OneVsRestClassifier`` for ``partial_fit`` the way ``fit`` would.

    Its ``partial_fit`` cannot start a multilabel problem (it fits its label binarizer on the
    class list only), and a wrapped ``class_weight="balanced"`` estimator refuses
    ``partial_fit``. Both are solved by building the per-label estimators up front, with
    each label's balanced weights made explicit. Returns whether it did anything.
    """
    require("sklearn", "sklearn", feature="datacarto.sklearn.record")
    from sklearn.base import clone
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.preprocessing import LabelBinarizer

    if not isinstance(estimator, OneVsRestClassifier) or getattr(estimator, "estimators_", None) is not None:
        return False
    balanced = getattr(estimator.estimator, "class_weight", None) == "balanced"
    if task != "multilabel" and not balanced:
        return False  # its own partial_fit handles this
    binarizer = LabelBinarizer(sparse_output=True).fit(targets if task == "multilabel" else classes)
    columns = targets if task == "multilabel" else binarizer.transform(targets).toarray()
    if columns.shape[1] == 1:  # a binary problem: one estimator for class 1
        columns = columns[:, :1]
    estimators = []
    for k in range(columns.shape[1]):
        sub = clone(estimator.estimator)
        if balanced:
            sub.set_params(class_weight=balanced_class_weight(columns[:, k], [0, 1]))
        estimators.append(sub)
    estimator.classes_ = classes
    estimator.label_binarizer_ = binarizer
    estimator.estimators_ = estimators
    return True


def record(
    estimator: Any,
    X: Any,
    y: Any,
    *,
    epochs: int,
    path: Optional[PathLike] = None,
    classes: Optional[Sequence[Any]] = None,
    batch_size: Optional[int] = None,
    shuffle: bool = True,
    random_state: Union[None, int, np.random.Generator] = None,
    sample_weight: Optional[Any] = None,
    predict_batch_size: Optional[int] = None,
    dtype: str = "float32",
    overwrite: bool = False,
    window: Any = None,
    progress: bool = False,
    callback: Optional[Callable[[int, Any], Any]] = None,
    cv: Optional[int] = None,
    warn: bool = True,
    **compute_kwargs: Any,
) -> Statistics:
    """Train ``estimator`` with ``partial_fit`` for ``epochs`` epochs, recording its training dynamics.

    After each epoch, ``predict_proba(X)`` on the training set is written as one epoch of a
    dynamics file; at the end the statistics are computed from it.

    Args:
        estimator: a classifier with ``partial_fit`` and ``predict_proba``, trained in place
            (it may already be fitted: training continues). ``class_weight="balanced"``, which
            scikit-learn refuses in ``partial_fit``, is replaced by the equivalent explicit
            weights over the whole ``y`` while training (see :func:`balanced_class_weight`),
            and restored afterwards; inside a ``OneVsRestClassifier`` each label gets its own.
        X: training features ``[N, F]``: numpy, scipy sparse, or a pandas frame.
        y: class labels ``[N]`` (any values; binary problems are stored as two columns,
            task ``"multiclass"``) or a 0/1 indicator matrix ``[N, L]`` (multilabel, e.g.
            with ``OneVsRestClassifier`` or ``MLPClassifier``).
        epochs: number of training epochs (passes over ``X``).
        path: where to keep the dynamics ``.npy`` (``[epochs, N, L]`` float32); ``None``
            uses a temporary file, deleted before returning.
        classes: every class label (default: those in ``y``). Probability columns, and the
            class indices of ``Statistics.labels``, follow ``estimator.classes_`` (sorted).
        batch_size: ``None`` (default): one ``partial_fit`` call on the whole training set
            per epoch (SGD still shuffles inside it); else minibatches of this size.
        shuffle: shuffle the minibatches' order each epoch (only with ``batch_size``).
        random_state: seed or ``numpy.random.Generator`` for that shuffling.
        sample_weight: per-example weights ``[N]`` passed to ``partial_fit``.
        predict_batch_size: predict the training set in chunks of this many rows (bounds
            memory for large ``N``); default all at once.
        dtype: storage dtype of the dynamics file.
        overwrite: replace an existing file at ``path`` (otherwise it is refused).
        window: epoch window of the statistics (``datacarto.compute``'s ``epochs``).
        progress: show a progress bar over epochs.
        callback: ``callback(epoch, estimator)`` after each recorded epoch (0-based), e.g.
            to log a validation score (with ``cv``: ``callback(epoch, fold_models)``).
        cv: ``K >= 2`` records a *cross-validated* map: ``K`` copies of ``estimator``
            (``sklearn.base.clone``), one per fold of a stratified split seeded by
            ``random_state``, train in lockstep, and after each epoch every example's
            probabilities come from the fold model that did not train on it. Each fold's
            predictions go straight to the file (nothing ``[E, N, L]`` is held in memory).
            Training costs the same as ``K``-fold cross-validation; ``estimator`` itself is
            a template and stays untrained. Use it when the model memorises its training
            labels (an in-sample map then hides wrong ones; :func:`record` warns when it sees
            that). ``stats.extra["folds"]`` holds each example's fold and
            ``stats.extra["fold_models"]`` the trained fold models. For class labels it also
            keeps ``stats.extra["epoch_weights"]``, the mixture of the epochs' out-of-fold
            predictions that best predicts the held-out labels (:mod:`datacarto._mixture`),
            and ``stats.extra["mixture_confidence"]``, the label's probability under it: a
            :class:`~datacarto.DataMap` of these statistics ranks suspects by it by default
            (score ``"mixture"``).
        warn: warn (:class:`datacarto.sklearn.RecordingWarning`) when the in-sample map looks
            memorised (right about at least 99% of the training labels at the last epoch:
            pass ``cv=``) or the dynamics degenerate (median variability <= 2e-3 over 3 or more
            epochs among the examples not pinned at 0 or 1, e.g. ``MultinomialNB``).
        **compute_kwargs: passed to :func:`datacarto.compute` (``correctness``,
            ``threshold``, ``ddof``, ``threads``, ``class_means``).

    Returns:
        :class:`datacarto.Statistics`; ``stats.extra["classes"]`` holds the class label of
        each column (multilabel: column indices), ``stats.extra["path"]`` the dynamics file
        (``None`` for a temporary one).

    Example (multilabel, sparse input, balanced one-vs-rest):
        >>> import datacarto as dc, scipy.sparse as sp
        >>> from sklearn.datasets import make_multilabel_classification
        >>> from sklearn.linear_model import SGDClassifier
        >>> from sklearn.multiclass import OneVsRestClassifier
        >>> X, Y = make_multilabel_classification(200, 20, n_classes=4, random_state=0)
        >>> model = OneVsRestClassifier(SGDClassifier(loss="log_loss", class_weight="balanced", random_state=0))
        >>> stats = dc.sklearn.record(model, sp.csr_matrix(X), Y, epochs=3)
        >>> stats.task, stats.confidence.shape
        ('multilabel', (200, 4))
    """
    for method in ("partial_fit", "predict_proba"):
        if not callable(getattr(estimator, method, None)):
            raise TypeError(f"estimator: expected a classifier with partial_fit and predict_proba, {type(estimator).__name__} has no {method}")
    if isinstance(epochs, (bool, np.bool_)) or not isinstance(epochs, (int, np.integer)) or epochs < 1:
        raise DatacartoError(f"epochs: expected a positive int, found {epochs!r}")
    for name, value in (("batch_size", batch_size), ("predict_batch_size", predict_batch_size)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1):
            raise DatacartoError(f"{name}: expected a positive int or None, found {value!r}")
    if _is_sparse(X) and X.format not in ("csr", "csc"):
        X = X.tocsr()  # COO and friends cannot be indexed by rows
    n = _n_rows(X)
    if n < 1:
        raise DatacartoError("X: expected at least one example, found 0 rows")
    task, targets, class_values = _targets(y, classes, n)
    n_labels = int(class_values.size)
    weights = None if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    if weights is not None and weights.shape != (n,):
        raise DatacartoError(f"sample_weight: shape: expected [{n}], found {list(weights.shape)}")
    rng = random_state if isinstance(random_state, np.random.Generator) else np.random.default_rng(random_state)

    folds = None if cv is None else fold_assignment(cv, None if task == "multilabel" else targets, n=n, seed=rng)
    n_folds = 1 if folds is None else int(cv)  # type: ignore[arg-type]
    # In-sample: the estimator itself trains on every row. Cross-validated: one clone per fold.
    if folds is None:
        models = [estimator]
        train_rows: List[Optional[np.ndarray]] = [None]
        held_out: List[Optional[np.ndarray]] = [None]
    else:
        require("sklearn", "sklearn", feature="datacarto.sklearn.record(cv=...)")
        from sklearn.base import clone

        models = [clone(estimator) for _ in range(n_folds)]
        train_rows = [np.flatnonzero(folds != k) for k in range(n_folds)]
        held_out = [np.flatnonzero(folds == k) for k in range(n_folds)]

    # `class_weight="balanced"` -> explicit weights (over each model's training rows) while training
    restore: List[Callable[[], None]] = []
    for model, rows in zip(models, train_rows):
        if getattr(model, "class_weight", None) == "balanced" and "class_weight" in model.get_params():
            if task == "multilabel":
                raise DatacartoError("estimator: class_weight='balanced' on a multilabel estimator: wrap a balanced binary estimator in OneVsRestClassifier")
            model.set_params(class_weight=balanced_class_weight(targets if rows is None else targets[rows], class_values))
            restore.append(lambda model=model: model.set_params(class_weight="balanced"))
        _init_one_vs_rest(model, task, targets if rows is None else targets[rows], class_values)
    fit_classes = class_values  # multilabel: the label ids, as MLPClassifier expects

    temporary = tempfile.TemporaryDirectory(prefix="datacarto-") if path is None else None
    file = os.path.join(temporary.name, "dynamics.npy") if temporary is not None else os.fspath(path)  # type: ignore[arg-type]
    last_epoch: Optional[np.ndarray] = None
    # cross-validated multiclass maps: each epoch's out-of-fold probability of the recorded
    # label ([E, N] float64, an L-th of the file), for the epoch weights (datacarto._mixture)
    gold_index = None if folds is None or task == "multilabel" else np.searchsorted(class_values, targets)
    gold_probs = None if gold_index is None else np.empty((int(epochs), n))
    try:
        epoch_iter: Any = range(int(epochs))
        if progress:
            from tqdm.auto import tqdm

            epoch_iter = tqdm(epoch_iter, desc="epochs", unit="epoch")
        writer_task = "multilabel" if task == "multilabel" else "multiclass"
        # a temporary file needs no protection against power cuts
        with DynamicsWriter(file, n, n_labels, dtype, task=writer_task, overwrite=overwrite, fsync=temporary is None) as writer:
            for epoch in epoch_iter:
                for model, rows, test in zip(models, train_rows, held_out):
                    _train_epoch(model, X, targets, weights, rows, batch_size, shuffle, rng, first=epoch == 0, fit_classes=fit_classes)
                    if epoch == 0:
                        _check_classes(model, task, class_values)
                    if test is None:
                        last_epoch = _predict_epoch(model, X, writer, n, n_labels, predict_batch_size, keep=warn and epoch == epochs - 1)
                    else:
                        _predict_rows(model, X, test, writer, n_labels, predict_batch_size, gold_index, None if gold_probs is None else gold_probs[epoch])
                if folds is not None:
                    writer.commit_epoch()
                if callback is not None:
                    callback(epoch, estimator if folds is None else models)
            if progress:
                epoch_iter.close()
        if task == "multilabel":
            labels: np.ndarray = targets.astype(np.uint8)
        else:
            labels = np.searchsorted(class_values, targets).astype(np.int64)
        compute_kwargs.setdefault("task", "multilabel" if task == "multilabel" else "multiclass")
        stats = compute(file, labels, epochs=window, **compute_kwargs)
        if gold_probs is not None:
            from datacarto._mixture import add_mixture

            add_mixture(stats, gold_probs, file)
    finally:
        for undo in restore:
            undo()
        if temporary is not None:
            temporary.cleanup()
    if warn:
        check_dynamics(last_epoch, labels, task, cv=None if folds is None else n_folds, variability=stats.variability, confidence=stats.confidence, n_epochs=stats.n_epochs)
    if temporary is not None:
        stats = dataclasses.replace(stats, source=None, extra=stats.extra)
    stats.extra["classes"] = class_values
    stats.extra["path"] = None if temporary is not None else file
    if folds is not None:
        stats.extra["folds"] = folds
        stats.extra["fold_models"] = models
    return stats


def _train_epoch(model: Any, X: Any, targets: np.ndarray, weights: Optional[np.ndarray], rows: Optional[np.ndarray], batch_size: Optional[int], shuffle: bool, rng: np.random.Generator, *, first: bool, fit_classes: np.ndarray) -> None:
    """One pass of ``partial_fit`` over ``rows`` (every row when None)."""
    n = targets.shape[0] if rows is None else rows.size
    if batch_size is None:
        batches: Any = [rows]
    else:
        order = rng.permutation(n) if shuffle else np.arange(n)
        if rows is not None:
            order = rows[order]
        batches = [order[i:i + batch_size] for i in range(0, n, batch_size)]
    for index in batches:
        xb = X if index is None else _rows(X, index)
        yb = targets if index is None else targets[index]
        kwargs: Dict[str, Any] = {}
        if weights is not None:
            kwargs["sample_weight"] = weights if index is None else weights[index]
        if first:  # required on an estimator's first call, checked on later ones
            kwargs["classes"] = fit_classes
            first = False
        model.partial_fit(xb, yb, **kwargs)


def _check_classes(estimator: Any, task: str, class_values: np.ndarray) -> None:
    """predict_proba's columns must be the classes in our order, or the map is garbage."""
    if task == "multilabel":
        return
    fitted = getattr(estimator, "classes_", None)
    if fitted is not None and not np.array_equal(np.asarray(fitted), class_values):
        raise DatacartoError(f"estimator: classes_: expected {class_values.tolist()} (the probability columns), found {np.asarray(fitted).tolist()}")


def _predict_epoch(estimator: Any, X: Any, writer: DynamicsWriter, n: int, n_labels: int, chunk: Optional[int], keep: bool = False) -> Optional[np.ndarray]:
    """Write one epoch of in-sample predictions; return them when ``keep`` (for the checks)."""
    if chunk is None or chunk >= n:
        proba = _columns(estimator.predict_proba(X), n, n_labels)
        writer.write_epoch(proba)
        return proba if keep else None
    kept = np.empty((n, n_labels)) if keep else None
    for start in range(0, n, chunk):
        index = np.arange(start, min(n, start + chunk))
        proba = _columns(estimator.predict_proba(_rows(X, index)), index.size, n_labels)
        writer.write_batch(index, proba)
        if kept is not None:
            kept[index] = proba
    writer.commit_epoch()
    return kept


def _predict_rows(estimator: Any, X: Any, rows: np.ndarray, writer: DynamicsWriter, n_labels: int, chunk: Optional[int], gold_index: Optional[np.ndarray] = None, gold_out: Optional[np.ndarray] = None) -> None:
    """Write the predictions of ``rows`` (a fold's held-out examples) into the open epoch;
    with ``gold_out``, also keep their probability of class ``gold_index`` there."""
    step = rows.size if chunk is None else chunk
    for start in range(0, rows.size, step):
        index = rows[start:start + step]
        proba = _columns(estimator.predict_proba(_rows(X, index)), index.size, n_labels)
        writer.write_batch(index, proba)
        if gold_out is not None and gold_index is not None:
            gold_out[index] = proba[np.arange(index.size), gold_index[index]]
