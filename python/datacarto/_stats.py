"""Per-example statistics: the :class:`Statistics` result and :func:`compute`."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from datacarto import _core
from datacarto._args import EpochWindow, LabelsLike, resolve
from datacarto._core import DatacartoError

if TYPE_CHECKING:
    import polars as pl

DynamicsLike = Union[str, "os.PathLike[str]", np.ndarray, Sequence[Union[str, "os.PathLike[str]"]]]

#: The statistic columns, in the order :meth:`Statistics.to_polars` writes them.
STATISTICS = (
    "confidence",
    "variability",
    "correctness",
    "forgetting",
    "never_learned",
    "first_learned",
    "threshold_closeness",
    "margin",
    "aleatoric",
    "el2n",
)


@dataclass(frozen=True, eq=False)  # __eq__ below: arrays compare by value
class Statistics:
    """Per-example training-dynamics statistics (``docs/statistics.md`` defines each one).

    Every statistic is a read-only numpy array of shape ``[N]`` (multiclass and binary) or
    ``[N, L]`` (multilabel: one value per example and label). Two results are ``==`` when
    their arrays hold the same values (NaN equal to NaN) and their settings (task, rule,
    threshold, epoch window, ddof, sizes, source) agree; ``extra`` is not compared.

    Example:
        >>> import numpy as np, datacarto as dc
        >>> probs = np.array([[[0.9, 0.1], [0.4, 0.6]], [[0.8, 0.2], [0.7, 0.3]]], dtype=np.float32)
        >>> stats = dc.compute(probs, np.array([0, 1]))
        >>> stats.confidence.round(2).tolist()
        [0.85, 0.45]
        >>> stats.forgetting.tolist()
        [0, 1]
        >>> stats == dc.compute(probs, np.array([0, 1]))
        True
    """

    # ``None`` only for a statistic left out with ``compute(..., statistics=[...])``
    confidence: Optional[np.ndarray]
    variability: Optional[np.ndarray]
    correctness: Optional[np.ndarray]
    forgetting: Optional[np.ndarray]
    never_learned: Optional[np.ndarray]
    first_learned: Optional[np.ndarray]
    threshold_closeness: Optional[np.ndarray]
    margin: Optional[np.ndarray]
    aleatoric: Optional[np.ndarray]
    el2n: Optional[np.ndarray]
    #: gold labels: int64 [N] (class index) or uint8 [N, L] (multilabel 0/1)
    labels: np.ndarray
    task: str
    correctness_rule: str
    threshold: float
    #: the half-open epoch window the statistics were computed over
    epochs: Tuple[int, int]
    ddof: int
    n_examples: int
    n_labels: int
    source: Optional[str] = None
    extra: Dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    #: float64 [N, L]: each class's mean probability over the window (only with
    #: ``compute(..., class_means=True)``; ``None`` otherwise). Used by ``DataMap.label_issues``.
    class_means: Optional[np.ndarray] = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        # Read-only: a result can be shared (a DataMap keeps one) without being changed behind
        # its back. The statistics are fresh outputs of the core, made read-only through views
        # (no copy); the labels usually are the caller's own array, so they are copied once.
        for name in STATISTICS:
            if getattr(self, name) is not None:
                object.__setattr__(self, name, _read_only(getattr(self, name)))
        if self.class_means is not None:
            object.__setattr__(self, "class_means", _read_only(self.class_means))
        labels = np.asarray(self.labels)
        # kept as it is when read-only and owning its memory, or when the core made it (the
        # private copy `compute` takes): a view of someone else's memory could change under it
        if labels.flags.writeable or not (labels.flags.owndata or _owned_by_core(labels)):
            labels = labels.copy()
            labels.setflags(write=False)
        object.__setattr__(self, "labels", labels)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Statistics):
            return NotImplemented
        if any(getattr(self, name) != getattr(other, name) for name in _SETTING_FIELDS):
            return False
        return all(_same_values(getattr(self, name), getattr(other, name)) for name in _ARRAY_FIELDS)

    @property
    def computed(self) -> Tuple[str, ...]:
        """The statistics this result holds, in :data:`STATISTICS` order (all of them unless
        computed with ``statistics=[...]``)."""
        return tuple(name for name in STATISTICS if getattr(self, name) is not None)

    def require(self, names: Sequence[str], purpose: str) -> None:
        """Raise :class:`DatacartoError` when a statistic in ``names`` was left out.

        Example:
            >>> import numpy as np, datacarto as dc
            >>> stats = dc.compute(np.full((2, 1, 2), 0.5, dtype=np.float32), [0], statistics=["confidence"])
            >>> stats.require(["confidence", "margin"], "a data map")
            Traceback (most recent call last):
            ...
            datacarto.DatacartoError: statistics: a data map needs margin, left out of this result (computed: confidence); compute without statistics= (every statistic)
        """
        missing = [name for name in names if getattr(self, name) is None]
        if missing:
            raise DatacartoError(f"statistics: {purpose} needs {', '.join(missing)}, left out of this result (computed: {', '.join(self.computed)}); compute without statistics= (every statistic)")

    # equal results must hash alike, and the arrays cannot be hashed: unhashable, like an array
    __hash__ = None  # type: ignore[assignment]

    @property
    def n_epochs(self) -> int:
        """Number of epochs inside the window."""
        return self.epochs[1] - self.epochs[0]

    def as_dict(self) -> Dict[str, np.ndarray]:
        """The statistics as a ``{name: array}`` dict, in :data:`STATISTICS` order (those
        computed: see :attr:`computed`)."""
        return {name: getattr(self, name) for name in self.computed}

    def to_polars(self) -> "pl.DataFrame":
        """One row per example (per example and label for multilabel).

        Columns: ``example`` (and ``label`` for multilabel), ``gold`` (the class index, or the
        0/1 target for multilabel), then every statistic computed.
        """
        import polars as pl

        columns: Dict[str, Any] = {}
        if self.task == "multilabel":
            n, n_labels = self.labels.shape
            columns["example"] = np.repeat(np.arange(n, dtype=np.int64), n_labels)
            columns["label"] = np.tile(np.arange(n_labels, dtype=np.int64), n)
            columns["gold"] = self.labels.reshape(-1).astype(np.int64)
        else:
            columns["example"] = np.arange(self.n_examples, dtype=np.int64)
            columns["gold"] = self.labels.astype(np.int64, copy=False)
        for name in self.computed:
            columns[name] = getattr(self, name).reshape(-1)
        return pl.DataFrame(columns)

    def __len__(self) -> int:
        return self.n_examples


#: The array fields of :class:`Statistics` (the statistics and the gold labels).
_ARRAY_FIELDS = STATISTICS + ("labels",)
#: The settings :meth:`Statistics.__eq__` compares besides the arrays.
_SETTING_FIELDS = ("task", "correctness_rule", "threshold", "epochs", "ddof", "n_examples", "n_labels", "source")


def _read_only(values: Any) -> np.ndarray:
    view = np.asarray(values).view()
    view.setflags(write=False)
    return view


def _same_values(a: Optional[np.ndarray], b: Optional[np.ndarray]) -> bool:
    """Same shape and values; NaN equals NaN for float and complex arrays; both left out."""
    if a is None or b is None:
        return a is None and b is None
    nan_aware = a.dtype.kind in "fc" and b.dtype.kind in "fc"
    return bool(np.array_equal(a, b, equal_nan=nan_aware))


def _dynamics_name(source: DynamicsLike, array: str = "probs") -> str:
    """A dynamics source as errors name it: the path, or ``array`` (the argument's name) for an array."""
    return os.fspath(source) if isinstance(source, (str, os.PathLike)) else array


def read_header(path: Union[str, "os.PathLike[str]"]) -> Dict[str, Any]:
    """Read and validate a dynamics file's header without touching its data.

    Returns ``{"shape": (E, N, L), "dtype": "float32", "data_offset": int, "version": (1, 0),
    "file_size": int}``. Raises the same errors as :func:`compute` for a malformed header.

    Example:
        >>> import numpy as np, datacarto as dc, tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "d.npy")
        >>> np.save(path, np.full((2, 3, 4), 0.25, dtype=np.float32))
        >>> dc.read_header(path)["shape"]
        (2, 3, 4)
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path: expected a path to a .npy dynamics file (str or os.PathLike), found {type(path).__name__}")
    return _core.read_header(os.fspath(path))


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
    progress: Union[bool, Callable[[int, int], Any]] = False,
    compat: Optional[str] = None,
    class_means: bool = False,
    shards: Optional[str] = None,
    statistics: Optional[Sequence[str]] = None,
) -> Statistics:
    """Compute every per-example statistic in one streaming, parallel pass.

    Args:
        source: a dynamics ``.npy`` file ``[E, N, L]`` (memory-mapped, never loaded whole) or a
            numpy array of that shape (float32, float64 or float16; C-contiguous arrays are
            used without a copy).
        labels: gold labels: an integer array ``[N]`` of class indices (any integer dtype), a
            0/1 array ``[N, L]`` for multilabel, or a path to a ``.npy`` holding either.
        task: ``"multiclass"``, ``"binary"`` (a one-column file holding P(class 1)) or
            ``"multilabel"``. Inferred when ``None``: 2-D labels mean multilabel, one column
            means binary, otherwise multiclass.
        correctness: ``"argmax"`` (right when the gold label's probability is strictly the
            largest; ties count as wrong), ``"argmax_first_index"`` (``np.argmax``'s rule: the
            first largest column wins a tie; a one-column file reads as ``(1 - p, p)``) or
            ``"threshold"`` (right when it is >= ``threshold``).
            Default: argmax for multiclass, threshold for binary and multilabel.
        threshold: the threshold of the ``"threshold"`` rule.
        epochs: a window: ``None`` (all), ``k`` (skip the first k epochs as burn-in) or
            ``(a, b)`` / ``range(a, b)`` / ``slice(a, b)`` for epochs a..b-1.
        ddof: the variability's delta degrees of freedom (0: the paper's population std).
        threads: worker threads (default: all cores; at most 65536). Results are identical for
            any count. The workers of a count asked for are kept for later calls (up to four
            counts per process; the threads sleep when idle).
        progress: ``True`` for a progress bar, or a ``callback(done, total)``. It is called on
            the calling thread about every 50 ms while the core works; an exception it raises
            (or a Ctrl-C, ``KeyboardInterrupt``) stops the computation within a block.
        compat: ``"cartography"`` applies the original Cartography code's conventions
            (``allenai/cartography``): its ``np.argmax`` tie rule (``"argmax_first_index"``,
            for multiclass and binary files) and population std (``ddof=0``). ``epochs`` keeps
            its meaning: the original's ``burn_out=b`` (keep the FIRST b epochs) is
            ``epochs=(0, b)``. Its correctness count and forgetfulness 1000 are a change of
            units: :func:`datacarto.importers.cartography_frame` turns the result into its
            metrics table. See ``docs/porting.md``.
        class_means: also compute every class's mean probability over the window,
            ``Statistics.class_means`` (float64 ``[N, L]``), in the same pass (what
            :meth:`DataMap.label_issues` needs). Off by default: it costs an ``[N, L]`` output.
        shards: ``"examples"`` or ``"epochs"`` when ``source`` is a list of ``.npy`` files or a
            glob pattern (``"shards/*.npy"``, expanded in sorted order): each file holds every
            epoch of consecutive examples, or consecutive epochs of every example, in the
            list's order. ``labels`` covers every example; ``epochs`` counts absolute epochs
            across epoch shards. Each shard is validated like a single file and named in
            errors (a shard replaced at its path while the shards are read too); the
            result's ``source`` is ``None`` and ``extra["shards"]`` lists the files. See
            ``docs/scale.md``.
        statistics: write only these statistics (names from :data:`STATISTICS`); the others
            are ``None`` in the result. ``None`` (the default) writes all ten. For very large
            inputs with few labels the outputs (65 bytes per example) outweigh the input, and
            writing only what you need saves that memory; a :class:`DataMap` needs every
            statistic. Example shards write only those; epoch shards compute all and keep those.

    Raises:
        FileNotFoundError: ``source`` or ``labels`` names a missing file.
        TypeError: an argument of the wrong kind (float class labels, a list of probabilities,
            ``threads="2"``).
        KeyboardInterrupt: Ctrl-C while the core works (it stops within a fraction of a second).
        DatacartoError: the file changed while being read (truncated, overwritten or replaced:
            no statistics are returned; epochs committed by datacarto's writer meanwhile are not
            a change), a FIFO, socket or device given as a file, a malformed file or array (not a ``.npy``, truncated, unsupported dtype,
            Fortran order, big-endian, ndim != 3, zero epochs/examples/labels, NaN, inf or a
            value outside [0, 1]) or labels that do not fit (wrong shape, out of range, not 0/1).

    Example:
        >>> import numpy as np, datacarto as dc
        >>> probs = np.full((3, 2, 2), 0.5, dtype=np.float32)
        >>> dc.compute(probs, [0, 1]).correctness.tolist()   # ties are wrong under argmax
        [0.0, 0.0]
    """
    _check_argument_types(task=task, correctness=correctness, ddof=ddof, threads=threads, progress=progress)
    outputs = output_mask(statistics)
    if shards is not None or _is_path_list(source) or _is_pattern(source):
        from datacarto._shards import compute_shards

        correctness = _compat_correctness(compat, correctness, ddof)
        return compute_shards(source, labels, shards=shards, task=task, correctness=correctness, threshold=threshold, epochs=epochs, ddof=ddof, threads=threads, progress=progress, class_means=bool(class_means), outputs=outputs)  # type: ignore[arg-type]
    correctness = _compat_correctness(compat, correctness, ddof)
    name, array, shape, args = _prepare_pass(source, labels, task=task, correctness=correctness, threshold=threshold, epochs=epochs, ddof=ddof, core_copies_labels=True)
    if compat is not None and args.task == "multilabel":
        raise DatacartoError("compat: 'cartography' reproduces a softmax classifier (multiclass or binary), found task 'multilabel'")
    callback, close = _progress_callback(progress, shape, args.epoch_stop - args.epoch_start)
    try:
        raw = _core.compute(name if array is None else array, **_core_arguments(args, threads, callback), ddof=args.ddof, class_means=bool(class_means), outputs=outputs, copy_labels=True)
    finally:
        close()
    # the copy the pass took block by block, and read: the result's own labels
    copy = raw.pop("labels")
    copy.setflags(write=False)
    if copy.shape != args.labels.shape:
        copy = copy.reshape(args.labels.shape)  # multilabel [N, L]: a read-only view
    args = replace(args, class_labels=copy if args.class_labels is not None else None, multilabel_labels=copy if args.multilabel_labels is not None else None)
    return _statistics_from_raw(raw, args, shape, None if array is not None else name)


def window_pass(source: DynamicsLike, labels: LabelsLike, window: Tuple[int, int], *, class_means: bool = False, **options: Any) -> Statistics:
    """The lightest pass of the core over the epochs ``window``: ``confidence`` alone (over one
    epoch, each unit's probability of its label) and, when asked for, ``class_means`` (over
    one epoch, its probabilities, float64 ``[N, L]``), for code that reads probabilities back
    from a dynamics file. The core checks the values and clamps them as the statistics see
    them, and a file truncated or rewritten meanwhile is a DatacartoError, never a SIGBUS
    (which a numpy memory map of the file would risk). ``options``: :func:`compute`'s
    ``task``, ``correctness``, ``threshold``, ``threads``.

    Example:
        >>> import numpy as np
        >>> probs = np.array([[[0.2, 0.8]], [[0.6, 0.4]]], dtype=np.float32)
        >>> window_pass(probs, [1], (1, 2), class_means=True).class_means.round(2).tolist()
        [[0.6, 0.4]]
    """
    return compute(source, labels, epochs=window, statistics=["confidence"], class_means=class_means, **options)


def _prepare_pass(source: Any, labels: LabelsLike, *, task: Optional[str], correctness: Optional[str], threshold: float, epochs: EpochWindow, ddof: int, core_copies_labels: bool = False) -> Tuple[str, Optional[np.ndarray], Tuple[int, ...], Any]:
    """What one pass of the core needs: the source's name, its array (``None`` for a file),
    its shape, and the resolved arguments with a private copy of the labels; or, with
    ``core_copies_labels``, labels the core can copy itself as its pass reads them (the
    caller's own array when it is C-contiguous, aligned and typed; a private copy otherwise)."""
    name = _dynamics_name(source)
    if isinstance(source, (str, os.PathLike)):
        shape: Tuple[int, ...] = tuple(_core.read_header(name)["shape"])
        array = None
    elif isinstance(source, np.ndarray):
        array = _as_probability_array(source)
        shape = array.shape
    else:
        raise TypeError(f"source: expected a path to a .npy dynamics file or a numpy array [E, N, L] (or a list or glob of .npy shards with shards=), found {type(source).__name__}")
    # the core checks the class indices' range itself (its errors name `labels_name`)
    args = resolve(labels, shape, task=task, correctness=correctness, threshold=threshold, epochs=epochs, ddof=ddof, source_name=name, check_classes=False)  # type: ignore[arg-type]
    # The core reads the labels without the GIL, when another thread could write to the
    # caller's array: it reads a private, read-only copy taken here while the GIL is held, or
    # (`core_copies_labels`, for an array it can read in place) the copy each block of its pass
    # takes before reading them. Either copy becomes `Statistics.labels`: it costs nothing extra.
    prepare = _core_readable if core_copies_labels else _private_copy
    args = replace(args, class_labels=prepare(args.class_labels), multilabel_labels=prepare(args.multilabel_labels))
    return name, array, shape, args


def _core_arguments(args: Any, threads: Optional[int], progress: Optional[Callable[[int, int], Any]]) -> Dict[str, Any]:
    """The keyword arguments every pass of the core takes, from the resolved arguments."""
    return dict(
        class_labels=args.class_labels,
        multilabel_labels=args.multilabel_labels,
        labels_name=args.labels_name,
        task=args.task,
        argmax=args.correctness in ("argmax", "argmax_first_index"),
        first_index=args.correctness == "argmax_first_index",
        threshold=args.threshold,
        epoch_start=args.epoch_start,
        epoch_stop=args.epoch_stop,
        threads=None if threads is None else int(threads),
        progress=progress,
    )


def _is_pattern(source: object) -> bool:
    """A glob pattern naming shards (a string with ``*?[`` that is not an existing file)."""
    return isinstance(source, str) and any(c in source for c in "*?[") and not os.path.exists(source)


def _is_path_list(source: object) -> bool:
    """A non-empty list or tuple of paths (shards); a nested list of numbers is not one."""
    return isinstance(source, (list, tuple)) and len(source) > 0 and all(isinstance(item, (str, os.PathLike)) for item in source)


#: The type of the base object of an array the core made in memory of its own (the labels'
#: private copy): nobody else holds a writable view of that memory.
_CORE_OWNED = type(_core._copy_labels(np.zeros(1, dtype=np.int64)).base)


def _private_copy(labels: Optional[np.ndarray]) -> Optional[np.ndarray]:
    if labels is None:
        return None
    labels = np.ascontiguousarray(labels)
    if _in_place(labels):
        # in the core's memory: a freed result's labels block is reused, no fresh pages
        copy = _core._copy_labels(labels)
        if isinstance(copy.base, np.ndarray):
            copy.base.setflags(write=False)  # multilabel: the flat array under the [N, L] view
    else:
        copy = np.array(labels, copy=True, order="C")
    copy.setflags(write=False)
    return copy


def _owned_by_core(array: np.ndarray) -> bool:
    """A read-only array, or a read-only view of one, over memory the core made (a labels'
    copy): nobody holds a writable view of it."""
    base: object = array
    while isinstance(base, np.ndarray):
        if base.flags.writeable:
            return False
        base = base.base
    return type(base) is _CORE_OWNED


def _in_place(labels: np.ndarray) -> bool:
    """Labels the core reads in place: C-contiguous, typed (int64 ``[N]``, uint8 ``[N, L]``)
    and aligned (an unaligned buffer, a view into bytes, is numpy's to copy)."""
    typed = (labels.dtype == np.int64 and labels.ndim == 1) or (labels.dtype == np.uint8 and labels.ndim == 2)
    return typed and labels.flags.c_contiguous and labels.flags.aligned


def _core_readable(labels: Optional[np.ndarray]) -> Optional[np.ndarray]:
    """``labels`` as they are when the core can read them in place (to copy them as its pass
    reads them), else a private copy (which the core then copies again: rare, an unaligned
    buffer)."""
    if labels is None:
        return None
    contiguous = np.ascontiguousarray(labels)
    return contiguous if _in_place(contiguous) else _private_copy(contiguous)


def _compat_correctness(compat: Optional[str], correctness: Optional[str], ddof: int) -> Optional[str]:
    """The correctness rule under ``compat`` (checking that nothing asked for contradicts it)."""
    if compat is None:
        return correctness
    if not isinstance(compat, str):
        raise TypeError(f"compat: expected None or 'cartography', found {type(compat).__name__} {compat!r}")
    if compat != "cartography":
        raise DatacartoError(f"compat: expected None or 'cartography', found {compat!r}")
    if correctness not in (None, "argmax_first_index"):
        raise DatacartoError(f"correctness: compat='cartography' uses the original's np.argmax rule ('argmax_first_index'), found {correctness!r}")
    if not isinstance(ddof, bool) and isinstance(ddof, (int, np.integer)) and ddof != 0:
        raise DatacartoError(f"ddof: compat='cartography' uses the original's population std (ddof=0), found {ddof}")
    return "argmax_first_index"


#: The largest ``threads`` accepted (the core never starts more than 8 per core anyway).
MAX_THREADS = 65536


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


#: Every statistic: the core's output mask with all bits set (bit i is ``STATISTICS[i]``).
ALL_OUTPUTS = (1 << len(STATISTICS)) - 1


def output_mask(statistics: Optional[Sequence[str]]) -> int:
    """The core's output mask for ``compute(..., statistics=...)``: bit ``i`` writes
    ``STATISTICS[i]``.

    Example:
        >>> output_mask(["confidence", "correctness"]), output_mask(None) == ALL_OUTPUTS
        (5, True)
    """
    if statistics is None:
        return ALL_OUTPUTS
    if isinstance(statistics, (str, bytes)) or not isinstance(statistics, (list, tuple, set, frozenset)):
        raise TypeError(f"statistics: expected a list of statistic names or None, found {type(statistics).__name__} {statistics!r}")
    mask = 0
    for name in statistics:
        if not isinstance(name, str):
            raise TypeError(f"statistics: expected statistic names (str), found {type(name).__name__} {name!r}")
        if name not in STATISTICS:
            raise DatacartoError(f"statistics: expected names from {', '.join(STATISTICS)}, found {name!r}")
        mask |= 1 << STATISTICS.index(name)
    if mask == 0:
        raise DatacartoError("statistics: expected at least one statistic name, found an empty list")
    return mask


def output_names(mask: int) -> Tuple[str, ...]:
    """The statistics an output mask (:func:`output_mask`) names, in :data:`STATISTICS` order.

    Example:
        >>> output_names(5)
        ('confidence', 'correctness')
    """
    return tuple(name for k, name in enumerate(STATISTICS) if mask >> k & 1)


def _check_argument_types(*, task: object, correctness: object, ddof: object, threads: object, progress: object) -> None:
    """A wrong kind of argument is a TypeError naming it (and ``threads`` out of range a
    DatacartoError); the other values are checked when the arguments are resolved."""
    for name, value in (("task", task), ("correctness", correctness)):
        if value is not None and not isinstance(value, str):
            raise TypeError(f"{name}: expected a str or None, found {type(value).__name__} {value!r}")
    if not _is_int(ddof):
        raise TypeError(f"ddof: expected a non-negative int, found {type(ddof).__name__} {ddof!r}")
    if threads is not None and not _is_int(threads):
        raise TypeError(f"threads: expected a positive int or None, found {type(threads).__name__} {threads!r}")
    if threads is not None and not 1 <= threads <= MAX_THREADS:
        raise DatacartoError(f"threads: expected a positive int up to {MAX_THREADS} or None, found {threads!r}")
    if not (progress is None or isinstance(progress, bool) or callable(progress)):
        raise TypeError(f"progress: expected True, False or a callback(done, total), found {type(progress).__name__}")


def changed_while_read(path: str, what: str) -> DatacartoError:
    """The error of a file that changed under a reader that takes it in several steps (the
    core words its own alike), naming the file and what changed.

    Example:
        >>> print(changed_while_read("d.npy", "it was removed"))
        d.npy: file: the file changed while being read (it was removed); read it again once the writer is done
    """
    return DatacartoError(f"{path}: file: the file changed while being read ({what}); read it again once the writer is done")


def read_examples(path: str, examples: np.ndarray, shape: Tuple[int, int]) -> np.ndarray:
    """The rows of ``examples`` at every epoch of a dynamics file: float64 ``[E, k, L]``.

    Read with positioned reads, not a memory map, so a file truncated meanwhile is a clean
    error instead of a SIGBUS. ``shape`` is the ``(N, L)`` the caller expects.

    Example:
        >>> import numpy as np, os, tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "d.npy")
        >>> np.save(path, np.arange(12, dtype=np.float32).reshape(2, 3, 2) / 16)
        >>> (read_examples(path, np.array([2]), (3, 2)) * 16).tolist()
        [[[4.0, 5.0]], [[10.0, 11.0]]]
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        from datacarto.writer import _same_file

        header = _core.read_header(path)  # refuses FIFOs and malformed files
        # the header must be the open file's: another file renamed over the path in between (an
        # overwrite) has its own layout, and its bytes read with this header would be garbage
        if not _same_file(fd, path):
            raise changed_while_read(path, "another file was put at its path, or it was removed")
        n_epochs, n_examples, n_labels = header["shape"]
        if (n_examples, n_labels) != tuple(shape):
            raise DatacartoError(f"dynamics: expected shape [E, {shape[0]}, {shape[1]}] to match the map, found {tuple(header['shape'])}")
        dtype = np.dtype({"float16": "<f2", "float32": "<f4", "float64": "<f8"}[header["dtype"]])
        row = n_labels * dtype.itemsize
        out = np.empty((n_epochs, len(examples), n_labels), dtype=np.float64)
        runs = _row_runs(np.asarray(examples, dtype=np.int64), row)
        for epoch in range(n_epochs):
            start = header["data_offset"] + epoch * n_examples * row
            for first, count, positions, offsets in runs:
                data = os.pread(fd, count * row, start + first * row)
                if len(data) != count * row:
                    raise changed_while_read(path, "it is now shorter than the data its header promised")
                out[epoch, positions] = np.frombuffer(data, dtype=dtype).reshape(count, n_labels)[offsets]
    finally:
        os.close(fd)
    return out


#: examples closer than this in the file are read in one positioned read, gap included
_READ_THROUGH_BYTES = 64 * 1024


def _row_runs(examples: np.ndarray, row: int) -> List[Tuple[int, int, np.ndarray, np.ndarray]]:
    """The reads :func:`read_examples` makes per epoch: ``(first row, row count, positions in
    the result, rows within the read)``, one per run of examples close together in the file.

    Example:
        >>> [(first, count, positions.tolist(), offsets.tolist()) for first, count, positions, offsets in _row_runs(np.array([9, 2, 3, 500000]), 8)]
        [(2, 8, [1, 2, 0], [0, 1, 7]), (500000, 1, [3], [0])]
    """
    if examples.size == 0:
        return []
    order = np.argsort(examples, kind="stable")
    ordered = examples[order]
    # a new run where the gap to the previous example costs more than a read of its own
    breaks = np.flatnonzero(np.diff(ordered) * row > _READ_THROUGH_BYTES) + 1
    runs = []
    for part in np.split(np.arange(ordered.size), breaks):
        first, last = int(ordered[part[0]]), int(ordered[part[-1]])
        runs.append((first, last - first + 1, order[part], ordered[part] - first))
    return runs


def _as_probability_array(source: np.ndarray) -> np.ndarray:
    if source.ndim != 3:
        raise DatacartoError(f"probs: expected 3 dimensions [epochs, examples, labels], found shape {source.shape}")
    if source.dtype.kind != "f" or source.dtype.itemsize not in (2, 4, 8):
        raise DatacartoError(f"probs: dtype: expected float32, float64 or float16, found {source.dtype}")
    if not source.dtype.isnative:
        # a big-endian array in memory is swapped once (a file must be little-endian)
        source = source.astype(source.dtype.newbyteorder("="))
    if 0 in source.shape:
        raise DatacartoError(f"probs: expected at least one epoch, example and label, found shape {source.shape}")
    # A strided view (a slice over examples, a transposed block) is copied once here, and so
    # is a misaligned one (an array unpickled from an odd offset of a buffer, as Dask's
    # deserialization can produce): the core reads typed elements in place.
    contiguous = np.ascontiguousarray(source)
    return contiguous if contiguous.flags.aligned else contiguous.copy()


def _statistics_from_raw(raw: Dict[str, np.ndarray], args: Any, shape: Tuple[int, ...], source: Optional[str]) -> Statistics:
    n_examples, n_labels = int(shape[1]), int(shape[2])
    class_means = raw.pop("class_means", None)
    if args.task == "multilabel":
        raw = {key: value.reshape(n_examples, n_labels) for key, value in raw.items()}
    return Statistics(
        **{name: raw.get(name) for name in STATISTICS},
        labels=args.labels,
        task=args.task,
        correctness_rule=args.correctness,
        threshold=args.threshold,
        epochs=(args.epoch_start, args.epoch_stop),
        ddof=args.ddof,
        n_examples=n_examples,
        n_labels=n_labels,
        source=source,
        class_means=class_means.reshape(n_examples, n_labels) if class_means is not None else None,
    )


def _progress_callback(progress: Union[bool, Callable[[int, int], Any]], shape: Tuple[int, ...], window: int) -> Tuple[Optional[Callable[[int, int], Any]], Callable[[], None]]:
    if progress is False or progress is None:
        return None, lambda: None
    if callable(progress):
        return progress, lambda: None
    from tqdm.auto import tqdm

    bar = tqdm(total=int(shape[1]), unit="ex", unit_scale=True, desc=f"statistics over {window} epochs", leave=False)

    def update(done: int, total: int) -> None:
        bar.update(done - bar.n)

    return update, bar.close
