"""Argument resolution shared by :func:`datacarto.compute` and :mod:`datacarto.reference`.

Everything here turns what a user passed (labels as an array or a path, a task name or
``None``, an epoch window in one of several spellings) into one canonical form, raising
:class:`~datacarto.DatacartoError` (a ``ValueError``), ``TypeError`` or
``FileNotFoundError`` with a message that names the argument or file and what was expected.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from typing import Callable, Literal, Optional, Tuple, Union

import numpy as np

from datacarto._core import DatacartoError

Task = Literal["multiclass", "binary", "multilabel"]
CorrectnessRule = Literal["argmax", "argmax_first_index", "threshold"]
#: the correctness rules; ``argmax_first_index`` is ``np.argmax``'s (the first largest column wins a tie)
CORRECTNESS_RULES = ("argmax", "argmax_first_index", "threshold")
EpochWindow = Union[None, int, Tuple[int, int], range, slice]
LabelsLike = Union[np.ndarray, "os.PathLike[str]", str, list]

TASKS = ("multiclass", "binary", "multilabel")


#: said when a bad label seen by one scan is gone by the next: another thread wrote the array
_CHANGED = "(the array changed while it was read: another thread is writing it)"


def _first_bad(array: np.ndarray, bad: np.ndarray) -> Tuple[int, ...]:
    """The index in ``array`` of the first true value of ``bad`` (its shape; one at least)."""
    return tuple(int(i) for i in np.unravel_index(int(np.flatnonzero(bad)[0]), array.shape))


def _found(labels: np.ndarray, is_bad: Callable[[np.ndarray], np.ndarray], seen: object = None) -> str:
    """What an error says it found: the first bad label and where (``"7 at index 3"``,
    ``"2 at (3, 1)"``), found by a second scan; when that scan finds none (another thread
    rewrote the array), ``seen`` (the bad value the first scan saw, if known) and ``_CHANGED``.
    The scan reads a copy: ``np.isin`` reads its input twice and failed (an IndexError) when
    another thread wrote the array in between, and the bad value is then read where it was found."""
    labels = np.array(labels, copy=True)
    bad = is_bad(labels)
    if not bad.any():
        return f"{'a value out of range' if seen is None else seen} {_CHANGED}"
    where = _first_bad(labels, bad)
    place = f"index {where[0]}" if len(where) == 1 else str(where)
    return f"{labels[where].item()!r} at {place}"


@dataclass(frozen=True)
class Resolved:
    """Canonical arguments for one computation."""

    task: Task
    correctness: CorrectnessRule
    threshold: float
    epoch_start: int
    epoch_stop: int
    ddof: int
    class_labels: Optional[np.ndarray]  # int64 [N] for multiclass / binary
    multilabel_labels: Optional[np.ndarray]  # uint8 [N, L] for multilabel
    labels_name: str = "labels"  # how error messages name the labels ("path: labels" for a file)

    @property
    def labels(self) -> np.ndarray:
        return self.class_labels if self.class_labels is not None else self.multilabel_labels  # type: ignore[return-value]


_NPY_MAGIC = b"\x93NUMPY"


def load_labels(labels: LabelsLike) -> np.ndarray:
    """Return labels as an ndarray, loading them from a ``.npy`` file when given a path.

    A path is opened non-blocking and checked through the open file, so a FIFO, socket or
    device is refused at once instead of hanging; anything but a ``.npy`` file is named as such.

    Example:
        >>> import numpy as np, os, tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "labels.npy")
        >>> np.save(path, np.array([0, 1, 1]))
        >>> load_labels(path).tolist()
        [0, 1, 1]
    """
    if isinstance(labels, (str, os.PathLike)):
        return _load_labels_file(os.fspath(labels))
    if isinstance(labels, np.ndarray):
        return labels
    if isinstance(labels, (list, tuple)):
        return np.asarray(labels)
    # torch tensors, polars / pandas series: anything numpy can view
    if hasattr(labels, "__array__") or hasattr(labels, "to_numpy"):
        return np.asarray(labels.to_numpy() if hasattr(labels, "to_numpy") else labels)
    raise TypeError(f"labels: expected an integer array [N], a 0/1 array [N, L] or a path to a .npy file, found {type(labels).__name__}")


def _load_labels_file(path: str) -> np.ndarray:
    expected = "expected a .npy file holding an integer array [N] or a 0/1 array [N, L]"
    try:
        # O_NONBLOCK: opening a FIFO would otherwise wait for a writer forever
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: labels file not found") from None
    except OSError as exc:
        if exc.errno == errno.ENXIO:  # a socket
            raise DatacartoError(f"{path}: labels: is a socket; {expected}") from None
        raise
    with os.fdopen(fd, "rb") as file:
        mode = os.fstat(file.fileno()).st_mode
        if not stat.S_ISREG(mode):
            kind = "a directory" if stat.S_ISDIR(mode) else "a FIFO (named pipe)" if stat.S_ISFIFO(mode) else "a device or special file"
            raise DatacartoError(f"{path}: labels: is {kind}; {expected}")
        magic = file.read(len(_NPY_MAGIC))
        if magic.startswith(b"PK"):
            raise DatacartoError(f"{path}: labels: expected a single .npy array, found a .npz archive (np.savez); save the labels with np.save")
        if magic != _NPY_MAGIC:
            found = "an empty file" if not magic else "no .npy magic string at its start"
            raise DatacartoError(f"{path}: labels: {expected}; found {found}")
        file.seek(0)
        try:
            array = np.load(file, allow_pickle=False)
        except Exception as exc:  # numpy raises several kinds for a bad file
            # numpy's own words may advise allow_pickle=True, which datacarto never uses
            detail = "an object (pickled) array" if "pickle" in str(exc).lower() else str(exc)
            raise DatacartoError(f"{path}: labels: {expected}; found {detail}") from None
    if not isinstance(array, np.ndarray):
        raise DatacartoError(f"{path}: labels: expected a single .npy array, found {type(array).__name__}")
    return array


def infer_task(task: Optional[str], labels: np.ndarray, n_labels: int) -> Task:
    if task is not None:
        if task not in TASKS:
            raise DatacartoError(f"task: expected one of {', '.join(TASKS)}, found {task!r}")
        return task  # type: ignore[return-value]
    if labels.ndim == 2:
        return "multilabel"
    if n_labels == 1:
        return "binary"
    return "multiclass"


def _window_bound(value: object) -> Optional[int]:
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"epochs: expected integer epoch indices, found {value!r}")
    return int(value)


def resolve_window(epochs: EpochWindow, n_epochs: int) -> Tuple[int, int]:
    """Turn ``epochs`` into a half-open ``(start, stop)`` window over ``n_epochs``.

    ``None`` is every epoch, an int ``k`` skips the first ``k`` (burn-in), a pair
    ``(a, b)``, ``range(a, b)`` or ``slice(a, b)`` keeps epochs ``a .. b-1`` (negative
    values count from the end, as in Python slicing).
    """
    if epochs is None:
        return 0, n_epochs
    if isinstance(epochs, (bool, np.bool_)):
        raise TypeError(f"epochs: expected None, an int or a (start, stop) pair, found {epochs!r}")
    if isinstance(epochs, (int, np.integer)):
        start, stop = int(epochs), n_epochs
        if start < 0:
            raise DatacartoError(f"epochs: a burn-in skip must be >= 0, found {start}")
    elif isinstance(epochs, (range, slice)):
        if epochs.step not in (None, 1):
            raise DatacartoError(f"epochs: expected a contiguous window (step 1), found step {epochs.step}")
        start, stop = _window_bound(epochs.start), _window_bound(epochs.stop)
    elif isinstance(epochs, (tuple, list)) and len(epochs) == 2:
        start, stop = _window_bound(epochs[0]), _window_bound(epochs[1])
    else:
        raise TypeError(f"epochs: expected None, an int or a (start, stop) pair, found {epochs!r}")
    start = 0 if start is None else start
    stop = n_epochs if stop is None else stop
    if start < 0:
        start += n_epochs
    if stop < 0:
        stop += n_epochs
    if not 0 <= start < stop <= n_epochs:
        raise DatacartoError(f"epochs: expected a non-empty window inside [0, {n_epochs}), found {epochs!r} -> [{start}, {stop})")
    return start, stop


def resolve(
    labels: LabelsLike,
    shape: Tuple[int, int, int],
    *,
    task: Optional[str],
    correctness: Optional[str],
    threshold: float,
    epochs: EpochWindow,
    ddof: int,
    source_name: str,
    check_classes: bool = True,
) -> Resolved:
    """Validate every argument of a computation over a ``shape = (E, N, L)`` dynamics block.

    With ``check_classes=False`` the range of class indices that convert to int64 exactly is
    left to the caller: the Rust core checks it anyway, so scanning here too would read the
    labels twice. uint64 labels are always checked here, before a value >= 2**63 could wrap.
    """
    n_epochs, n_examples, n_labels = shape
    labels_array = load_labels(labels)
    label_name = os.fspath(labels) + ": labels" if isinstance(labels, (str, os.PathLike)) else "labels"
    resolved_task = infer_task(task, labels_array, n_labels)

    if resolved_task == "binary" and labels_array.ndim == 1 and n_labels == 2:
        resolved_task = "multiclass"  # a two-column binary file is a two-class problem
    if correctness is None:
        correctness = "argmax" if resolved_task == "multiclass" else "threshold"
    if correctness not in CORRECTNESS_RULES:
        raise DatacartoError(f"correctness: expected 'argmax' or 'threshold' (or 'argmax_first_index': ties go to the first largest column), found {correctness!r}")
    if isinstance(threshold, (bool, np.bool_)) or not isinstance(threshold, (int, float, np.integer, np.floating)):
        raise TypeError(f"threshold: expected a probability (a number in [0, 1]), found {threshold!r}")
    threshold = float(threshold)
    if not 0.0 <= threshold <= 1.0:
        raise DatacartoError(f"threshold: expected a probability in [0, 1], found {threshold}")
    if isinstance(ddof, bool) or not isinstance(ddof, (int, np.integer)) or ddof < 0:
        raise DatacartoError(f"ddof: expected a non-negative int, found {ddof!r}")
    start, stop = resolve_window(epochs, n_epochs)
    if stop - start - int(ddof) <= 0:
        raise DatacartoError(f"ddof: {ddof} leaves no degrees of freedom over a window of {stop - start} epoch(s)")

    if labels_array.dtype == object or labels_array.dtype.kind not in "biuf":
        raise TypeError(f"{label_name}: expected an integer array, found dtype {labels_array.dtype}")

    if resolved_task == "multilabel":
        if labels_array.shape != (n_examples, n_labels):
            raise DatacartoError(f"{label_name}: expected a 0/1 array of shape ({n_examples}, {n_labels}) to match {source_name}, found shape {labels_array.shape}")
        # integers: two vectorized reductions, no temporaries (np.isin allocates N * L booleans)
        exact = labels_array.dtype.kind in "biu"
        if labels_array.size and not (labels_array.min() >= 0 and labels_array.max() <= 1 if exact else np.isin(labels_array, (0, 1)).all()):
            raise DatacartoError(f"{label_name}: expected only 0 and 1 for multilabel, found {_found(labels_array, lambda a: ~np.isin(a, (0, 1)))}")
        return Resolved(resolved_task, correctness, threshold, start, stop, int(ddof), None, np.ascontiguousarray(labels_array, dtype=np.uint8), label_name)  # type: ignore[arg-type]

    if labels_array.ndim != 1 or labels_array.shape[0] != n_examples:
        raise DatacartoError(f"{label_name}: expected an integer array of shape ({n_examples},) to match {source_name}, found shape {labels_array.shape}")
    if labels_array.dtype.kind == "f":
        raise TypeError(f"{label_name}: expected an integer array of class indices, found dtype {labels_array.dtype}")
    if resolved_task == "binary" and n_labels != 1:
        raise DatacartoError(f"{source_name}: task 'binary' expects 1 (or 2) label columns, found {n_labels}")
    if resolved_task == "multiclass" and n_labels < 2:
        raise DatacartoError(f"{source_name}: task 'multiclass' expects at least 2 label columns, found {n_labels}; use task='binary' for a one-column file")
    n_classes = 2 if resolved_task == "binary" else n_labels
    if labels_array.size and (check_classes or labels_array.dtype == np.uint64):
        # checked before the cast to int64, so a huge uint64 is reported as itself
        low, high = int(labels_array.min()), int(labels_array.max())
        if low < 0 or high >= n_classes:
            found = _found(labels_array, lambda a: (a < 0) | (a >= n_classes), seen=low if low < 0 else high)
            raise DatacartoError(f"{label_name}: expected class indices in [0, {n_classes}), found {found}")
    class_labels = labels_array.astype(np.int64, copy=False)
    return Resolved(resolved_task, correctness, threshold, start, stop, int(ddof), np.ascontiguousarray(class_labels), None, label_name)  # type: ignore[arg-type]
