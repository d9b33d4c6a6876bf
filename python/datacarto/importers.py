"""Import training dynamics logged by other tools, and reproduce the original Cartography metrics.

:func:`import_cartography` reads the logs of the original Dataset Cartography code (Swayamdipta
et al. 2020, ``allenai/cartography``): a folder ``training_dynamics/`` holding one file
``dynamics_epoch_{e}.jsonl`` per epoch ``e = 0, 1, ...``, one JSON object per training example
and line::

    {"guid": 17, "logits_epoch_0": [1.25, -0.5, 0.1], "gold": 0}

The rows of each epoch come in that epoch's (shuffled) training order. The importer streams
one epoch at a time, matches rows by guid, applies softmax in float64 and writes a
``[E, N, K]`` probability file with :class:`datacarto.DynamicsWriter`.

:func:`cartography_metrics` computes, from the same logs, the table the original's
``train_dy_filtering.py`` writes (``td_metrics.jsonl``), with its conventions: ``np.argmax``
on the logits (the first largest logit wins a tie), ``burn_out`` keeping the FIRST epochs,
correctness as a count of epochs, forgetfulness 1000 for never-learned examples.
:func:`cartography_frame` turns any :class:`~datacarto.Statistics` into that table. The
porting guide is ``docs/porting.md``.

Example:
    >>> import json, os, tempfile, datacarto as dc
    >>> root = tempfile.mkdtemp(); os.mkdir(os.path.join(root, "training_dynamics"))
    >>> for e, order in enumerate([["a", "b"], ["b", "a"]]):
    ...     with open(os.path.join(root, "training_dynamics", f"dynamics_epoch_{e}.jsonl"), "w") as f:
    ...         for guid in order:
    ...             _ = f.write(json.dumps({"guid": guid, f"logits_epoch_{e}": [2.0, 0.0] if guid == "a" else [0.0, 0.0], "gold": 0}) + "\\n")
    >>> result = dc.importers.import_cartography(root, os.path.join(root, "dynamics.npy"))
    >>> result.guids, result.labels.tolist(), result.n_epochs
    (['a', 'b'], [0, 0], 2)
    >>> result.compute().confidence.round(3).tolist()
    [0.881, 0.5]
    >>> dc.importers.cartography_metrics(root)["correctness"].to_list()   # "b" ties: np.argmax gives class 0
    [2, 2]
"""

from __future__ import annotations

import json
import os
import re
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterator, List, Optional, Sequence, Set, Tuple, Union

import numpy as np

from datacarto._atomic import atomic_path
from datacarto._core import DatacartoError
from datacarto._stats import Statistics, compute
from datacarto.writer import DynamicsWriter

if TYPE_CHECKING:
    import polars as pl

__all__ = [
    "CartographyImport",
    "CartographyWarning",
    "cartography_frame",
    "cartography_metrics",
    "find_cartography_epochs",
    "import_cartography",
    "write_cartography_metrics",
]

PathLike = Union[str, "os.PathLike[str]"]
#: ``None``, ``"strip_last"`` (drop the last character of a string guid: the original's QNLI
#: option) or a function from the logged guid to the example's id (a string or an integer)
GuidTransform = Union[None, str, Callable[[Any], Any]]
_EPOCH_FILE = re.compile(r"^dynamics_epoch_(\d+)\.jsonl$")
#: the original's forgetfulness for an example never predicted right
NEVER_LEARNED_FORGETFULNESS = 1000
#: the columns of the original's ``td_metrics.jsonl``, in its order
CARTOGRAPHY_COLUMNS = ("guid", "index", "threshold_closeness", "confidence", "variability", "correctness", "forgetfulness")


class CartographyWarning(UserWarning):
    """A lenient case of the original's logs was accepted (counts in the message), or an output
    lands where the original code would misread it."""


@dataclass(frozen=True)
class CartographyImport:
    """What :func:`import_cartography` produced.

    ``labels[i]`` and ``guids[i]`` belong to row ``i`` of every epoch of the dynamics file at
    ``path``; rows follow the order of ``dynamics_epoch_0.jsonl`` (the order in which the
    original code's ``read_training_dynamics`` lists examples). ``dropped`` lists the guids
    left out because they were missing from some epoch (``missing="drop"``), ``gold_changed``
    the guids whose gold label changed in a later epoch (``gold_changes="first"`` kept epoch
    0's).
    """

    path: str
    labels: np.ndarray  # int64 [N]: the gold class index of each example
    guids: List[Any]
    n_epochs: int
    n_classes: int
    dropped: List[Any] = field(default_factory=list)
    gold_changed: List[Any] = field(default_factory=list)

    def compute(self, **kwargs: Any) -> Statistics:
        """``datacarto.compute(path, labels, **kwargs)``."""
        return compute(self.path, self.labels, **kwargs)


def find_cartography_epochs(directory: PathLike) -> List[str]:
    """The epoch files ``dynamics_epoch_0.jsonl .. _{E-1}.jsonl``, in epoch order.

    ``directory`` is the ``training_dynamics`` folder itself or the folder holding it (the
    original code's model output directory). Other files are ignored. Raises
    :class:`~datacarto.DatacartoError` when there is no epoch file or an epoch is missing.
    """
    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"{directory}: expected a directory holding training_dynamics/dynamics_epoch_*.jsonl")
    nested = os.path.join(directory, "training_dynamics")
    folder = nested if os.path.isdir(nested) else directory
    epochs: Dict[int, str] = {}
    for name in os.listdir(folder):
        match = _EPOCH_FILE.match(name)
        if match:
            epoch = int(match.group(1))
            if epoch in epochs:  # dynamics_epoch_1 and dynamics_epoch_01
                raise DatacartoError(f"{folder}: epochs: expected one file per epoch, found {name} and {os.path.basename(epochs[epoch])} for epoch {epoch}")
            epochs[epoch] = os.path.join(folder, name)
    if not epochs:
        raise DatacartoError(f"{folder}: epochs: expected files named dynamics_epoch_<e>.jsonl (in it or in its training_dynamics/), found none")
    missing = sorted(set(range(max(epochs) + 1)) - set(epochs))
    if missing:
        raise DatacartoError(
            f"{folder}: epochs: expected consecutive epochs 0..{max(epochs)}, found epoch(s) {missing[:10]} missing "
            f"(present: {sorted(epochs)[:10]}{'...' if len(epochs) > 10 else ''})"
        )
    return [epochs[e] for e in range(len(epochs))]


def _records(path: str, epoch: int, id_field: str) -> Iterator[Tuple[int, Any, Any, Any]]:
    """(line number, guid, logits, gold) of every non-blank line of one epoch file."""
    key = f"logits_epoch_{epoch}"
    with open(path, "r", encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}: line {line_no}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DatacartoError(f"{where}: expected a JSON object, found invalid JSON ({exc.msg} at column {exc.colno})") from exc
            if not isinstance(record, dict):
                raise DatacartoError(f"{where}: expected a JSON object, found {type(record).__name__}")
            for field_name in (id_field, key, "gold"):
                if field_name not in record:
                    raise DatacartoError(f"{where}: {field_name}: expected the key, found only {sorted(record)[:6]}")
            yield line_no, record[id_field], record[key], record["gold"]


def _check_guid(guid: Any, where: str, id_field: str) -> None:
    if isinstance(guid, bool) or not isinstance(guid, (str, int)):
        raise DatacartoError(f"{where}: {id_field}: expected a string or an integer, found {guid!r}")


def _check_logits(logits: Any, n_classes: Optional[int], where: str, key: str) -> int:
    if not isinstance(logits, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in logits):
        raise DatacartoError(f"{where}: {key}: expected a list of numbers, found {str(logits)[:60]}")
    if n_classes is not None and len(logits) != n_classes:
        raise DatacartoError(f"{where}: {key}: expected {n_classes} logits (as in the first row of epoch 0), found {len(logits)}")
    if n_classes is None and len(logits) < 2:
        raise DatacartoError(f"{where}: {key}: expected at least 2 logits (one per class), found {len(logits)}")
    return len(logits)


def _check_gold(gold: Any, n_classes: int, where: str) -> int:
    if isinstance(gold, bool) or not isinstance(gold, int) or not 0 <= gold < n_classes:
        raise DatacartoError(f"{where}: gold: expected a class index in [0, {n_classes}), found {gold!r}")
    return gold


def _check_finite(logits: np.ndarray, lines: np.ndarray, path: str, key: str) -> None:
    bad = ~np.isfinite(logits)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise DatacartoError(f"{path}: line {int(lines[row])}: {key}: expected finite logits, found {logits[row, col]} (class {int(col)})")


def _check_choice(name: str, value: Any, choices: Sequence[str]) -> None:
    if value not in choices:
        raise DatacartoError(f"{name}: expected one of {', '.join(map(repr, choices))}, found {value!r}")


def _guid_reader(transform: GuidTransform, id_field: str) -> Callable[[Any, str], Any]:
    """A function (logged guid, where) -> the example's id, checked to be a string or an integer."""
    if transform is None:

        def plain(guid: Any, where: str) -> Any:
            _check_guid(guid, where, id_field)
            return guid

        return plain
    if transform == "strip_last":

        def strip_last(guid: Any, where: str) -> Any:
            if not isinstance(guid, str) or not guid:
                raise DatacartoError(f"{where}: {id_field}: guid_transform='strip_last' expects non-empty string ids, found {guid!r}")
            return guid[:-1]

        return strip_last
    if callable(transform):

        def custom(guid: Any, where: str) -> Any:
            try:
                result = transform(guid)
            except Exception as exc:
                raise DatacartoError(f"{where}: {id_field}: guid_transform failed on {guid!r} ({type(exc).__name__}: {exc})") from exc
            _check_guid(result, where + f" (guid_transform of {guid!r})", id_field)
            return result

        return custom
    raise TypeError(f"guid_transform: expected None, 'strip_last' or a function guid -> id, found {transform!r}")


class _Examples:
    """The rows fixed by epoch 0 (order, guids, gold labels, class count) and the per-epoch reader.

    Rows may later be cut to those present in every epoch (:meth:`keep`); the guids cut away
    are skipped when read again.
    """

    def __init__(self, files: List[str], id_field: str, transform: GuidTransform, gold_changes: str) -> None:
        self.files = files
        self.id_field = id_field
        self.read_guid = _guid_reader(transform, id_field)
        self.keep_first_gold = gold_changes == "first"
        self.skipped: Set[Any] = set()
        guids: List[Any] = []
        row_of: Dict[Any, int] = {}
        gold_list: List[int] = []
        logits_list: List[List[float]] = []
        line_list: List[int] = []
        n_classes: Optional[int] = None
        for line_no, guid, logits, gold in _records(files[0], 0, id_field):
            where = f"{files[0]}: line {line_no}"
            guid = self.read_guid(guid, where)
            n_classes = _check_logits(logits, n_classes, where, "logits_epoch_0")
            if guid in row_of:
                raise DatacartoError(f"{where}: {id_field}: expected each example once per epoch, found {guid!r} again (first on line {line_list[row_of[guid]]})")
            row_of[guid] = len(guids)
            guids.append(guid)
            gold_list.append(_check_gold(gold, n_classes, where))
            logits_list.append(logits)
            line_list.append(line_no)
        if not guids or n_classes is None:
            raise DatacartoError(f"{files[0]}: expected at least one example, found an empty file")
        self.guids = guids
        self.row_of = row_of
        self.n_classes = n_classes
        self.labels = np.asarray(gold_list, dtype=np.int64)
        self.first_lines = np.asarray(line_list, dtype=np.int64)
        #: position of each row in epoch 0 (the original's ``index``)
        self.index = np.arange(len(guids), dtype=np.int64)
        self.gold_changed = np.zeros(len(guids), dtype=bool)
        self.epoch0 = np.asarray(logits_list, dtype=np.float64)
        _check_finite(self.epoch0, self.first_lines, files[0], "logits_epoch_0")

    def __len__(self) -> int:
        return len(self.guids)

    def _row(self, guid: Any, where: str) -> Optional[int]:
        row = self.row_of.get(guid)
        if row is None and guid not in self.skipped:
            raise DatacartoError(f"{where}: {self.id_field}: expected an example of epoch 0, found {guid!r}, absent from {os.path.basename(self.files[0])}")
        return row

    def presence(self, epochs: range) -> np.ndarray:
        """``[len(epochs), N]``: whether each example has a line in each epoch (a pass over guids only)."""
        present = np.zeros((len(epochs), len(self)), dtype=bool)
        for k, epoch in enumerate(epochs):
            for line_no, guid, _, _ in _records(self.files[epoch], epoch, self.id_field):
                row = self._row(self.read_guid(guid, f"{self.files[epoch]}: line {line_no}"), f"{self.files[epoch]}: line {line_no}")
                if row is not None:
                    present[k, row] = True
        return present

    def keep(self, rows: np.ndarray) -> None:
        """Cut every per-row array to ``rows`` (sorted positions); the others are skipped from now on."""
        kept = set(rows.tolist())
        self.skipped.update(g for i, g in enumerate(self.guids) if i not in kept)
        self.guids = [self.guids[i] for i in rows]
        self.row_of = {g: i for i, g in enumerate(self.guids)}
        for name in ("labels", "first_lines", "index", "gold_changed", "epoch0"):
            setattr(self, name, getattr(self, name)[rows])

    def read_epoch(self, epoch: int, logits: np.ndarray, lines: np.ndarray) -> None:
        """Fill ``logits[row]`` and ``lines[row]`` (its line number; 0: absent) from one epoch file."""
        path, key = self.files[epoch], f"logits_epoch_{epoch}"
        lines[:] = 0
        for line_no, guid, values, gold in _records(path, epoch, self.id_field):
            where = f"{path}: line {line_no}"
            row = self._row(self.read_guid(guid, where), where)
            if row is None:
                continue  # cut away by keep()
            if lines[row]:
                raise DatacartoError(f"{where}: {self.id_field}: expected each example once per epoch, found {self.guids[row]!r} again (first on line {int(lines[row])})")
            _check_logits(values, self.n_classes, where, key)
            if _check_gold(gold, self.n_classes, where) != self.labels[row]:
                if not self.keep_first_gold:
                    raise DatacartoError(
                        f"{where}: gold: expected {int(self.labels[row])} for {self.guids[row]!r} (as on line {int(self.first_lines[row])} of "
                        f"{os.path.basename(self.files[0])}), found {gold!r}; pass gold_changes='first' to keep epoch 0's, as the original code does"
                    )
                self.gold_changed[row] = True
            logits[row] = values
            lines[row] = line_no
        seen = lines > 0
        _check_finite(logits[seen], lines[seen], path, key)

    def missing_error(self, epoch: int, unseen: np.ndarray) -> DatacartoError:
        first = int(unseen[0])
        return DatacartoError(
            f"{self.files[epoch]}: {self.id_field}: expected all {len(self)} examples of epoch 0, found {unseen.size} missing "
            f"(first: {self.guids[first]!r}, line {int(self.first_lines[first])} of {os.path.basename(self.files[0])}); "
            f"pass missing='drop' to leave such examples out"
        )

    def report(self, folder: str) -> List[Any]:
        """Warn about examples whose gold label changed later (kept epoch 0's); return their guids."""
        changed = [self.guids[i] for i in np.flatnonzero(self.gold_changed)]
        if changed:
            warnings.warn(
                f"{folder}: gold: {len(changed)} of {len(self)} example(s) have a different gold label in a later epoch; "
                f"kept epoch 0's, as the original code does (first: {changed[0]!r})",
                CartographyWarning,
                stacklevel=3,
            )
        return changed


def _drop_missing(examples: _Examples, present: np.ndarray, folder: str) -> List[Any]:
    """Keep the examples present in every epoch; warn with the count; return the dropped guids."""
    everywhere = present.all(axis=0)
    dropped = [examples.guids[i] for i in np.flatnonzero(~everywhere)]
    if not dropped:
        return dropped
    if not everywhere.any():
        raise DatacartoError(f"{folder}: expected at least one example present in every epoch, found none (all {len(examples)} miss some epoch)")
    examples.keep(np.flatnonzero(everywhere))
    warnings.warn(
        f"{folder}: dropped {len(dropped)} of {len(dropped) + len(examples)} example(s) missing from some epoch (first: {dropped[0]!r}); "
        f"{len(examples)} kept",
        CartographyWarning,
        stacklevel=3,
    )
    return dropped


def _warn_inside(output: str, folder: str) -> None:
    """The original counts every file of training_dynamics/ as an epoch: warn before writing there."""
    target = os.path.realpath(os.path.dirname(os.path.abspath(output)))
    folder = os.path.realpath(folder)
    if target == folder or target.startswith(folder + os.sep):
        warnings.warn(
            f"{output}: inside {folder}; the original code counts every file in that folder as an epoch "
            f"(its read_training_dynamics would then fail): write it elsewhere",
            CartographyWarning,
            stacklevel=3,
        )


def import_cartography(
    directory: PathLike,
    output_path: PathLike,
    *,
    dtype: str = "float32",
    id_field: str = "guid",
    overwrite: bool = False,
    progress: bool = False,
    guid_transform: GuidTransform = None,
    gold_changes: str = "error",
    missing: str = "error",
) -> CartographyImport:
    """Convert the original Cartography code's ``training_dynamics/`` logs into a dynamics file.

    Args:
        directory: the ``training_dynamics`` folder, or the folder holding it.
        output_path: the ``.npy`` to write (``[E, N, K]`` probabilities: softmax of the logged
            logits, computed in float64). Written to a temporary name beside it and renamed
            over it when complete, so a failed, interrupted or killed import leaves the old
            file (or none) at the path, never a partial one. A warning
            (:class:`CartographyWarning`) when it lands inside ``training_dynamics/``.
        dtype: storage dtype (``"float32"``, ``"float64"`` or ``"float16"``). Use
            ``"float64"`` to keep near-tied logits apart: float32 probabilities of logits
            within ~1e-7 of each other are equal, and a tie counts as wrong under
            ``correctness="argmax"`` (as the first column under ``compat="cartography"``).
        id_field: the key holding each example's id (the original code's ``id_field``).
        overwrite: replace an existing ``output_path``.
        progress: show a progress bar over epochs.
        guid_transform: ``None``; ``"strip_last"``, the original's QNLI option (each string
            guid loses its last character); or a function ``guid -> id`` (a string or an
            integer). Two lines of one epoch mapping to the same id is an error.
        gold_changes: ``"error"`` (default) when an example's gold label in a later epoch
            differs from epoch 0's; ``"first"`` keeps epoch 0's, as the original does, with a
            warning counting them (their guids in ``gold_changed``).
        missing: ``"error"`` (default) when an example of epoch 0 is absent from a later
            epoch (the original averages such an example over fewer epochs; a dense
            ``[E, N, K]`` file cannot); ``"drop"`` leaves those examples out of the file, with
            a warning counting them (their guids in ``dropped``; this reads the logs twice).

    Returns:
        :class:`CartographyImport`: the path, ``labels`` (gold class index per row), ``guids``
        (id per row, in the order of ``dynamics_epoch_0.jsonl``), ``n_epochs``, ``n_classes``,
        ``dropped``, ``gold_changed``.

    Raises:
        DatacartoError: naming the file and line: invalid JSON, a missing key, a logits list
            of the wrong length or with a non-finite value, a gold index out of range or
            (by default) different from epoch 0's, a guid repeated within an epoch, absent
            from epoch 0, or (by default) missing from a later epoch, or a gap in the epoch
            numbers.
        FileExistsError: ``output_path`` exists and ``overwrite`` is false.
    """
    _check_choice("gold_changes", gold_changes, ("error", "first"))
    _check_choice("missing", missing, ("error", "drop"))
    output = os.fspath(output_path)
    if os.path.exists(output) and not overwrite:
        raise FileExistsError(f"{output}: exists; pass overwrite=True to replace it")
    files = find_cartography_epochs(directory)
    folder = os.path.dirname(files[0])
    _warn_inside(output, folder)

    # Epoch 0 fixes the rows: its order, guids, gold labels and class count.
    examples = _Examples(files, id_field, guid_transform, gold_changes)
    dropped: List[Any] = []
    if missing == "drop" and len(files) > 1:
        present = np.vstack([np.ones((1, len(examples)), dtype=bool), examples.presence(range(1, len(files)))])
        dropped = _drop_missing(examples, present, folder)
    n, n_classes = len(examples), examples.n_classes
    epoch0, examples.epoch0 = examples.epoch0, np.empty((0, n_classes))

    epoch_iter: Any = range(1, len(files))
    if progress:
        from tqdm.auto import tqdm

        epoch_iter = tqdm(epoch_iter, desc="epochs", unit="epoch", initial=1, total=len(files))
    try:
        # Written beside the target and renamed over it once complete (after an fsync): a failed,
        # interrupted or killed import leaves the old file (or none), never a partial one.
        with atomic_path(output) as partial, DynamicsWriter(partial, n, n_classes, dtype, task="multiclass", inputs="logits", overwrite=True, fsync=False) as writer:
            writer.write_epoch(epoch0)
            del epoch0
            logits = np.empty((n, n_classes), dtype=np.float64)
            lines = np.zeros(n, dtype=np.int64)  # 0: not seen in this epoch yet
            for epoch in epoch_iter:
                examples.read_epoch(epoch, logits, lines)
                unseen = np.flatnonzero(lines == 0)
                if unseen.size:
                    raise examples.missing_error(epoch, unseen)
                writer.write_epoch(logits)
    finally:
        if progress:
            epoch_iter.close()
    gold_changed = examples.report(folder)
    return CartographyImport(
        path=output, labels=examples.labels, guids=examples.guids, n_epochs=len(files), n_classes=n_classes, dropped=dropped, gold_changed=gold_changed
    )


def _check_burn_out(burn_out: Any) -> int:
    if isinstance(burn_out, bool) or not isinstance(burn_out, (int, np.integer)):
        raise TypeError(f"burn_out: expected an int (the number of first epochs to use), found {burn_out!r}")
    if burn_out < 1:
        raise DatacartoError(f"burn_out: expected at least 1 (the number of first epochs to use), found {burn_out}")
    return int(burn_out)


def _variability(variance: np.ndarray, counts: np.ndarray, include_ci: bool, name: str) -> np.ndarray:
    """The original's variability: ``np.std`` (ddof 0), or with ``include_ci`` ``sqrt(var + var^2 / (n - 1))``."""
    if not include_ci:
        return np.sqrt(variance)
    short = np.flatnonzero(counts < 2)
    if short.size:
        raise DatacartoError(
            f"{name}: include_ci: expected at least 2 epochs per example (the term var^2 / (n - 1)), found {short.size} example(s) with 1 "
            f"(the original code gives NaN there)"
        )
    return np.sqrt(variance + variance * variance / (counts - 1))


def _metrics_frame(
    guids: Sequence[Any],
    index: np.ndarray,
    confidence: np.ndarray,
    variability: np.ndarray,
    right_count: np.ndarray,
    forgetting: np.ndarray,
) -> "pl.DataFrame":
    """The original's metrics table, one row per example."""
    import polars as pl

    if all(isinstance(g, int) for g in guids):
        guid_column = pl.Series("guid", list(guids), dtype=pl.Int64)
    else:  # strings, or a mix the original would have kept as Python objects
        guid_column = pl.Series("guid", [g if isinstance(g, str) else str(g) for g in guids], dtype=pl.String)
    right_count = np.asarray(right_count, dtype=np.int64)
    return pl.DataFrame(
        [
            guid_column,
            pl.Series("index", np.asarray(index, dtype=np.int64)),
            pl.Series("threshold_closeness", confidence * (1.0 - confidence)),
            pl.Series("confidence", confidence),
            pl.Series("variability", variability),
            pl.Series("correctness", right_count),
            pl.Series("forgetfulness", np.where(right_count == 0, NEVER_LEARNED_FORGETFULNESS, np.asarray(forgetting, dtype=np.int64))),
        ]
    )


def cartography_frame(stats: Statistics, guids: Optional[Sequence[Any]] = None, *, include_ci: bool = False) -> "pl.DataFrame":
    """The original Cartography metrics table from :func:`datacarto.compute`'s statistics.

    Columns ``guid, index, threshold_closeness, confidence, variability, correctness,
    forgetfulness`` as in its ``td_metrics.jsonl``: correctness the number of right epochs
    (an int), forgetfulness 1000 for an example never right, variability with ``include_ci``
    ``sqrt(var + var^2 / (E - 1))``. For its numbers, compute with ``compat="cartography"``
    (its tie rule) and ``epochs=(0, burn_out)``.

    Example:
        >>> import numpy as np, datacarto as dc
        >>> probs = np.array([[[0.5, 0.5], [0.9, 0.1]], [[0.8, 0.2], [0.6, 0.4]]], dtype=np.float32)
        >>> stats = dc.compute(probs, [0, 1], compat="cartography")
        >>> frame = dc.importers.cartography_frame(stats, ["a", "b"])
        >>> frame["correctness"].to_list(), frame["forgetfulness"].to_list()
        ([2, 0], [0, 1000])
    """
    if stats.task == "multilabel":
        raise DatacartoError("stats: the original's metrics describe a softmax classifier (multiclass or binary), found task 'multilabel'")
    if stats.ddof != 0:
        raise DatacartoError(f"stats: the original's variability is the population std (ddof=0), found ddof={stats.ddof}")
    n = stats.n_examples
    if guids is None:
        guids = list(range(n))
    elif len(guids) != n:
        raise DatacartoError(f"guids: expected {n} ids (one per example of stats), found {len(guids)}")
    counts = np.full(n, stats.n_epochs, dtype=np.int64)
    variability = _variability(np.square(stats.variability), counts, include_ci, "stats")
    right_count = np.rint(stats.correctness * stats.n_epochs)
    return _metrics_frame(guids, np.arange(n), stats.confidence, variability, right_count, stats.forgetting)


def cartography_metrics(
    directory: PathLike,
    burn_out: int = 100,
    include_ci: bool = False,
    *,
    id_field: str = "guid",
    guid_transform: GuidTransform = None,
    gold_changes: str = "first",
    missing: str = "average",
    progress: bool = False,
) -> "pl.DataFrame":
    """The metrics the original ``train_dy_filtering.py`` computes from its ``training_dynamics/`` logs.

    A polars frame with its ``td_metrics.jsonl`` columns ``guid, index, threshold_closeness,
    confidence, variability, correctness, forgetfulness``, one row per example in the order of
    ``dynamics_epoch_0.jsonl`` (``index`` is that position), computed with its conventions:

    - correctness: the number of epochs where ``np.argmax`` of the logged logits (float64;
      the first largest wins a tie) is the gold label, so near-tied logits count as they did;
    - confidence / variability: mean and population std (``np.std``) of the gold label's
      softmax probability (computed here in float64; the original's torch softmax runs in
      float32, so they differ at float32 rounding, ~1e-7);
    - ``burn_out=b`` keeps the FIRST ``b`` epochs (the original's default 100: all, up to 100);
    - ``include_ci``: variability ``sqrt(var + var^2 / (n - 1))``;
    - forgetfulness: right-to-wrong transitions between consecutive epochs, 1000 when never right.

    Args:
        directory: the ``training_dynamics`` folder, or the folder holding it.
        burn_out: use epochs ``0 .. burn_out - 1`` (all when larger than the epoch count).
        include_ci: the original's ``--include_ci`` variability.
        id_field, guid_transform: as for :func:`import_cartography`.
        gold_changes: ``"first"`` (default, the original's): keep epoch 0's gold label, with a
            warning counting the examples whose label changed; ``"error"`` refuses.
        missing: for an example absent from some epochs: ``"average"`` (default, the
            original's) over the epochs it has, with a warning counting them; ``"drop"`` leaves
            it out (warned); ``"error"`` refuses.
        progress: show a progress bar over epochs.

    Example:
        >>> import json, os, tempfile, datacarto as dc
        >>> root = tempfile.mkdtemp(); os.mkdir(os.path.join(root, "training_dynamics"))
        >>> logits = [[[1.0, 1.0], [0.0, 3.0]], [[2.0, 0.0], [0.0, 1.0]], [[0.0, 2.0], [3.0, 0.0]]]
        >>> for e, rows in enumerate(logits):
        ...     with open(os.path.join(root, "training_dynamics", f"dynamics_epoch_{e}.jsonl"), "w") as f:
        ...         for guid, row in zip(["x", "y"], rows):
        ...             _ = f.write(json.dumps({"guid": guid, f"logits_epoch_{e}": row, "gold": 0}) + "\\n")
        >>> frame = dc.importers.cartography_metrics(root, burn_out=2)
        >>> frame.select("guid", "correctness", "forgetfulness").rows()
        [('x', 2, 0), ('y', 0, 1000)]
    """
    burn_out = _check_burn_out(burn_out)
    _check_choice("gold_changes", gold_changes, ("error", "first"))
    _check_choice("missing", missing, ("error", "drop", "average"))
    files = find_cartography_epochs(directory)[:burn_out]
    folder = os.path.dirname(files[0])
    examples = _Examples(files, id_field, guid_transform, gold_changes)
    n_epochs = len(files)
    if missing == "drop" and n_epochs > 1:
        present = np.vstack([np.ones((1, len(examples)), dtype=bool), examples.presence(range(1, n_epochs))])
        _drop_missing(examples, present, folder)
    n = len(examples)
    labels = examples.labels
    p_gold = np.zeros((n_epochs, n))
    right = np.zeros((n_epochs, n), dtype=bool)
    present = np.zeros((n_epochs, n), dtype=bool)
    logits = np.zeros((n, examples.n_classes))
    lines = np.zeros(n, dtype=np.int64)
    epoch_iter: Any = range(n_epochs)
    if progress:
        from tqdm.auto import tqdm

        epoch_iter = tqdm(epoch_iter, desc="epochs", unit="epoch", total=n_epochs)
    try:
        for epoch in epoch_iter:
            if epoch == 0:
                logits[:] = examples.epoch0
                lines[:] = 1
            else:
                examples.read_epoch(epoch, logits, lines)
            present[epoch] = lines > 0
            unseen = np.flatnonzero(~present[epoch])
            if unseen.size and missing != "average":
                raise examples.missing_error(epoch, unseen)
            # np.argmax on the float64 logits: the first largest wins a tie, as in the original
            right[epoch] = (np.argmax(logits, axis=1) == labels) & present[epoch]
            shifted = logits - logits.max(axis=1, keepdims=True)
            exp = np.exp(shifted)
            p_gold[epoch] = np.where(present[epoch], exp[np.arange(n), labels] / exp.sum(axis=1), 0.0)
    finally:
        if progress:
            epoch_iter.close()
    examples.report(folder)
    counts = present.sum(axis=0)
    partial = np.flatnonzero(counts < n_epochs)
    if partial.size:
        warnings.warn(
            f"{folder}: {partial.size} of {n} example(s) are missing from some of the {n_epochs} epoch(s) (first: {examples.guids[int(partial[0])]!r}); "
            f"their metrics are over the epochs they have, as in the original code",
            CartographyWarning,
            stacklevel=2,
        )
    confidence = p_gold.sum(axis=0) / counts
    variance = np.where(present, np.square(p_gold - confidence), 0.0).sum(axis=0) / counts
    variability = _variability(variance, counts, include_ci, folder)
    # forgetting over the epochs each example has: right at its previous present epoch, wrong now
    forgetting = np.zeros(n, dtype=np.int64)
    last_right = np.zeros(n, dtype=bool)
    for epoch in range(n_epochs):
        forgetting += present[epoch] & last_right & ~right[epoch]
        last_right = np.where(present[epoch], right[epoch], last_right)
    return _metrics_frame(examples.guids, examples.index, confidence, variability, right.sum(axis=0), forgetting)


def write_cartography_metrics(
    directory: PathLike,
    metrics_path: PathLike,
    *,
    burn_out: int = 100,
    include_ci: bool = False,
    overwrite: bool = False,
    **options: Any,
) -> "pl.DataFrame":
    """:func:`cartography_metrics` written as JSON lines (one object per example, like the
    original's ``td_metrics.jsonl`` but at full float precision), atomically; returns the frame.

    ``options`` go to :func:`cartography_metrics` (``id_field``, ``guid_transform``,
    ``gold_changes``, ``missing``, ``progress``). A warning when ``metrics_path`` lands
    inside ``training_dynamics/``.
    """
    from datacarto._atomic import atomic_write

    target = os.fspath(metrics_path)
    if os.path.exists(target) and not overwrite:
        raise FileExistsError(f"{target}: exists; pass overwrite=True to replace it")
    folder = os.path.dirname(find_cartography_epochs(directory)[0])
    _warn_inside(target, folder)
    frame = cartography_metrics(directory, burn_out, include_ci, **options)
    with atomic_write(target, "w", encoding="utf-8") as handle:
        for row in frame.iter_rows(named=True):
            handle.write(json.dumps(row) + "\n")
    return frame
