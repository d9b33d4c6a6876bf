"""Partial statistics: :func:`partial` and the mergeable :class:`State`.

A state holds, per unit (example, or example-label pair for multilabel), the raw sums every
statistic is made of, never the probabilities: its size does not grow with the number of
epochs or labels. States of consecutive epochs merge (:meth:`State.merge`), states of
adjacent example ranges concatenate (:meth:`State.concat`), and :meth:`State.finish` gives the
same :class:`~datacarto.Statistics` as :func:`~datacarto.compute` over the whole. The rules
are in ``docs/scale.md``.
"""

from __future__ import annotations

import io
import os
import struct
from typing import Any, Callable, Iterable, Optional, Tuple, Union

import numpy as np

from datacarto import _core
from datacarto._args import EpochWindow, LabelsLike
from datacarto._core import DatacartoError
from datacarto._stats import (
    DynamicsLike,
    Statistics,
    _check_argument_types,
    _core_arguments,
    _is_int,
    _prepare_pass,
    _progress_callback,
    _statistics_from_raw,
)

#: The first bytes of a state file (:meth:`State.save`); the 01 is the container's version.
_FILE_MAGIC = b"DCSTATE-FILE01\n"
#: Version of the pickled form of a :class:`State` (the core's bytes carry their own version).
PICKLE_VERSION = 1


class State:
    """The mergeable statistics of a piece of a dynamics block: some epochs of some examples.

    Made by :func:`datacarto.partial`. ``epochs`` and ``examples`` are the absolute half-open
    ranges the state covers. States pickle (a versioned byte format), so they travel between
    processes and machines; ``nbytes`` is what one costs in memory and on the wire.

    Example:
        >>> import numpy as np, datacarto as dc
        >>> probs = np.array([[[0.9, 0.1]], [[0.3, 0.7]], [[0.8, 0.2]]], dtype=np.float32)
        >>> early = dc.partial(probs[:2], [0])
        >>> late = dc.partial(probs[2:], [0], epoch_offset=2)
        >>> early
        State(multiclass, argmax, epochs [0, 2), examples [0, 1), 2 labels, 125 bytes)
        >>> merged = early.merge(late)
        >>> merged.finish().forgetting.tolist(), merged.finish().first_learned.tolist()
        ([1], [2])
    """

    __slots__ = ("_core", "_labels")

    def __init__(self, core: Any, labels: np.ndarray) -> None:
        if not isinstance(core, _core.PartialState):
            raise TypeError("State: make states with datacarto.partial, State.merge or State.concat")
        self._core = core
        labels = np.asarray(labels)
        if labels.flags.writeable:
            labels = labels.copy()
            labels.setflags(write=False)
        self._labels = labels

    # --- what the state covers -------------------------------------------------------------
    @property
    def task(self) -> str:
        return str(self._core.task)

    @property
    def correctness_rule(self) -> str:
        return str(self._core.correctness)

    @property
    def threshold(self) -> float:
        """The threshold of the ``"threshold"`` rule (0.5 under the argmax rules)."""
        return float(self._core.threshold)

    @property
    def n_labels(self) -> int:
        return int(self._core.n_labels)

    @property
    def epochs(self) -> Tuple[int, int]:
        """The absolute half-open epoch range the state covers."""
        return tuple(self._core.epochs)  # type: ignore[return-value]

    @property
    def examples(self) -> Tuple[int, int]:
        """The absolute half-open example range the state covers."""
        return tuple(self._core.examples)  # type: ignore[return-value]

    @property
    def n_epochs(self) -> int:
        return self.epochs[1] - self.epochs[0]

    @property
    def n_examples(self) -> int:
        return self.examples[1] - self.examples[0]

    @property
    def labels(self) -> np.ndarray:
        """The gold labels of the state's examples (int64 ``[n]`` or uint8 ``[n, L]``), read-only."""
        return self._labels

    @property
    def nbytes(self) -> int:
        """Bytes of the state: the core's per-unit sums plus the gold labels."""
        return int(self._core.nbytes) + int(self._labels.nbytes)

    @property
    def bytes_per_example(self) -> float:
        """What one example costs, whatever the number of epochs (labels count for multilabel)."""
        per_unit = int(self._core.bytes_per_unit) * (self.n_labels if self.task == "multilabel" else 1)
        return per_unit + self._labels.nbytes / max(self.n_examples, 1)

    def __repr__(self) -> str:
        (e0, e1), (x0, x1) = self.epochs, self.examples
        rule = f"threshold {self.threshold:g}" if self.correctness_rule == "threshold" else self.correctness_rule
        return f"State({self.task}, {rule}, epochs [{e0}, {e1}), examples [{x0}, {x1}), {self.n_labels} labels, {_size(self.nbytes)})"

    # --- combining ---------------------------------------------------------------------------
    def merge(self, later: "State") -> "State":
        """This state's epochs followed by ``later``'s, for the same examples.

        ``later`` must start at the epoch where this state ends (a forgetting event across the
        seam counts, so order matters); reversed, overlapping or non-adjacent epochs, different
        examples, labels or settings raise :class:`~datacarto.DatacartoError`.
        """
        if not isinstance(later, State):
            raise TypeError(f"later: expected a datacarto.State, found {type(later).__name__}")
        merged = self._core.merge(later._core)
        if not _same_labels(self._labels, later._labels):
            raise DatacartoError(f"state: labels: the states of examples [{self.examples[0]}, {self.examples[1]}) were computed with different gold labels")
        return State(merged, self._labels)

    @staticmethod
    def concat(states: Iterable["State"]) -> "State":
        """States of the same epochs over example ranges that tile one range, side by side.

        They are placed by their example ranges (the list's order does not matter); a gap, an
        overlap, different epochs or settings raise :class:`~datacarto.DatacartoError`.
        """
        states = list(states)
        if not states:
            raise DatacartoError("states: concat needs at least one state")
        for k, state in enumerate(states):
            if not isinstance(state, State):
                raise TypeError(f"states[{k}]: expected a datacarto.State, found {type(state).__name__}")
        core = _core.PartialState.concat([s._core for s in states])
        ordered = sorted(states, key=lambda s: s.examples[0])
        return State(core, np.concatenate([s._labels for s in ordered]))

    def finish(self, ddof: int = 0) -> Statistics:
        """The statistics over the state's epochs (``ddof``: the variability's, chosen here).

        ``epochs`` of the result is the state's absolute epoch range, and ``first_learned``
        counts from its first epoch, as :func:`~datacarto.compute` does with that window.
        """
        if not _is_int(ddof) or ddof < 0:
            raise TypeError(f"ddof: expected a non-negative int, found {type(ddof).__name__} {ddof!r}")
        raw = self._core.finish(int(ddof))
        class_labels = self._labels if self.task != "multilabel" else None
        multilabel_labels = self._labels if self.task == "multilabel" else None
        args = _FinishArgs(self.task, self.correctness_rule, self.threshold, self.epochs, int(ddof), class_labels, multilabel_labels)
        return _statistics_from_raw(raw, args, (self.n_epochs, self.n_examples, self.n_labels), None)

    # --- equality and pickling -----------------------------------------------------------------
    def to_bytes(self) -> bytes:
        """The core's versioned byte form (without the labels; pickle carries both)."""
        return bytes(self._core.to_bytes())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, State):
            return NotImplemented
        return self.to_bytes() == other.to_bytes() and _same_labels(self._labels, other._labels)

    __hash__ = None  # type: ignore[assignment]

    def __reduce__(self) -> Tuple[Callable[..., "State"], Tuple[Any, ...]]:
        return (_restore, (PICKLE_VERSION, self.to_bytes(), np.array(self._labels)))


    # --- files -------------------------------------------------------------------------------------
    def save(self, path: Union[str, "os.PathLike[str]"]) -> None:
        """Write the state to ``path`` atomically (beside it, fsynced, renamed into place).

        The file holds no pickle: a magic string, the core's versioned bytes and the labels as
        a ``.npy`` block, so :meth:`load` never runs code from the file.
        """
        from datacarto._atomic import atomic_write

        blob = self.to_bytes()
        labels = io.BytesIO()
        np.save(labels, np.asarray(self._labels), allow_pickle=False)
        with atomic_write(path, "wb") as handle:
            handle.write(_FILE_MAGIC)
            handle.write(struct.pack("<Q", len(blob)))
            handle.write(blob)
            handle.write(labels.getvalue())

    @staticmethod
    def load(path: Union[str, "os.PathLike[str]"]) -> "State":
        """Read a state written by :meth:`save`; a truncated or foreign file is a clean error."""
        name = os.fspath(path)
        with open(name, "rb") as handle:
            data = handle.read()
        head = len(_FILE_MAGIC) + 8
        if len(data) < head or data[: len(_FILE_MAGIC)] != _FILE_MAGIC:
            raise DatacartoError(f"{name}: header: expected a datacarto state file (starting with {_FILE_MAGIC!r}), found {data[:len(_FILE_MAGIC)]!r}")
        (length,) = struct.unpack("<Q", data[len(_FILE_MAGIC) : head])
        if len(data) < head + length:
            raise DatacartoError(f"{name}: state: truncated: expected {length} bytes of state, the file holds {len(data) - head}")
        try:
            labels = np.load(io.BytesIO(data[head + length :]), allow_pickle=False)
        except (ValueError, OSError, EOFError) as error:
            raise DatacartoError(f"{name}: labels: expected a .npy block after the state ({error})") from None
        try:
            return _restore(PICKLE_VERSION, data[head : head + length], labels)
        except DatacartoError as error:
            raise DatacartoError(f"{name}: {error}") from None


class _FinishArgs:
    """The settings :func:`datacarto._stats._statistics_from_raw` reads, from a state."""

    def __init__(self, task: str, correctness: str, threshold: float, epochs: Tuple[int, int], ddof: int, class_labels: Optional[np.ndarray], multilabel_labels: Optional[np.ndarray]) -> None:
        self.task, self.correctness, self.threshold, self.ddof = task, correctness, threshold, ddof
        self.epoch_start, self.epoch_stop = epochs
        self.labels = class_labels if class_labels is not None else multilabel_labels


def _restore(version: int, data: bytes, labels: np.ndarray) -> State:
    if version != PICKLE_VERSION:
        raise DatacartoError(f"state: pickle: expected format version {PICKLE_VERSION}, found {version} (written by another datacarto version)")
    state = State(_core.PartialState.from_bytes(data), labels)
    expected = (state.n_examples, state.n_labels) if state.task == "multilabel" else (state.n_examples,)
    if state.labels.shape != expected:
        raise DatacartoError(f"state: pickle: expected labels of shape {expected}, found {state.labels.shape}")
    return state


def _same_labels(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and bool(np.array_equal(a, b))


def _size(nbytes: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if nbytes >= scale:
            return f"{nbytes / scale:.1f} {unit}"
    return f"{nbytes} bytes"


def partial(
    source: DynamicsLike,
    labels: LabelsLike,
    *,
    task: Optional[str] = None,
    correctness: Optional[str] = None,
    threshold: float = 0.5,
    epochs: EpochWindow = None,
    epoch_offset: int = 0,
    example_offset: int = 0,
    threads: Optional[int] = None,
    progress: Union[bool, Callable[[int, int], Any]] = False,
) -> State:
    """The mergeable :class:`State` of a dynamics file or array, in one streaming pass.

    The arguments are :func:`~datacarto.compute`'s (``ddof`` is chosen later, at
    :meth:`State.finish`), plus where the piece sits in the whole: ``epoch_offset`` is the
    absolute index of the source's first epoch, ``example_offset`` of its first example.
    ``labels`` are the gold labels of the source's own examples. ``epochs`` selects a window
    of the source (relative to it); the state covers ``epoch_offset + window``.

    Example:
        >>> import numpy as np, datacarto as dc
        >>> probs = np.random.default_rng(0).dirichlet([1, 1, 1], size=(4, 6)).astype(np.float32)
        >>> labels = np.array([0, 1, 2, 0, 1, 2])
        >>> left = dc.partial(probs[:, :4], labels[:4])
        >>> right = dc.partial(probs[:, 4:], labels[4:], example_offset=4)
        >>> whole = dc.State.concat([left, right]).finish()
        >>> bool(np.allclose(whole.variability, dc.compute(probs, labels).variability, rtol=0, atol=1e-12))
        True
    """
    _check_argument_types(task=task, correctness=correctness, ddof=0, threads=threads, progress=progress)
    for name, value in (("epoch_offset", epoch_offset), ("example_offset", example_offset)):
        if not _is_int(value):
            raise TypeError(f"{name}: expected a non-negative int, found {type(value).__name__} {value!r}")
        if value < 0:
            raise DatacartoError(f"{name}: expected a non-negative int, found {value}")
    name, array, shape, args = _prepare_pass(source, labels, task=task, correctness=correctness, threshold=threshold, epochs=epochs, ddof=0)
    callback, close = _progress_callback(progress, shape, args.epoch_stop - args.epoch_start)
    try:
        core = _core.partial(name if array is None else array, **_core_arguments(args, threads, callback), epoch_offset=int(epoch_offset), example_offset=int(example_offset))
    finally:
        close()
    return State(core, args.labels)
