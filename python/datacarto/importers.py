"""Import training dynamics logged by other tools into a datacarto dynamics file.

:func:`import_cartography` reads the logs of the original Dataset Cartography code (Swayamdipta
et al. 2020, ``allenai/cartography``): a folder ``training_dynamics/`` holding one file
``dynamics_epoch_{e}.jsonl`` per epoch ``e = 0, 1, ...``, one JSON object per training example
and line::

    {"guid": 17, "logits_epoch_0": [1.25, -0.5, 0.1], "gold": 0}

The rows of each epoch come in that epoch's (shuffled) training order. The importer streams
one epoch at a time, matches rows by guid, applies softmax in float64 and writes a
``[E, N, K]`` probability file with :class:`datacarto.DynamicsWriter`.

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
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Optional, Tuple, Union

import numpy as np

from datacarto._atomic import atomic_path
from datacarto._core import DatacartoError
from datacarto._stats import Statistics, compute
from datacarto.writer import DynamicsWriter

__all__ = ["CartographyImport", "import_cartography", "find_cartography_epochs"]

PathLike = Union[str, "os.PathLike[str]"]
_EPOCH_FILE = re.compile(r"^dynamics_epoch_(\d+)\.jsonl$")


@dataclass(frozen=True)
class CartographyImport:
    """What :func:`import_cartography` produced.

    ``labels[i]`` and ``guids[i]`` belong to row ``i`` of every epoch of the dynamics file at
    ``path``; rows follow the order of ``dynamics_epoch_0.jsonl`` (the order in which the
    original code's ``read_training_dynamics`` lists examples).
    """

    path: str
    labels: np.ndarray  # int64 [N]: the gold class index of each example
    guids: List[Any]
    n_epochs: int
    n_classes: int

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
            for field in (id_field, key, "gold"):
                if field not in record:
                    raise DatacartoError(f"{where}: {field}: expected the key, found only {sorted(record)[:6]}")
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


def import_cartography(
    directory: PathLike,
    output_path: PathLike,
    *,
    dtype: str = "float32",
    id_field: str = "guid",
    overwrite: bool = False,
    progress: bool = False,
) -> CartographyImport:
    """Convert the original Cartography code's ``training_dynamics/`` logs into a dynamics file.

    Args:
        directory: the ``training_dynamics`` folder, or the folder holding it.
        output_path: the ``.npy`` to write (``[E, N, K]`` probabilities: softmax of the logged
            logits, computed in float64). Written to a temporary name beside it and renamed
            over it when complete, so a failed, interrupted or killed import leaves the old
            file (or none) at the path, never a partial one.
        dtype: storage dtype (``"float32"``, ``"float64"`` or ``"float16"``).
        id_field: the key holding each example's id (the original code's ``id_field``).
        overwrite: replace an existing ``output_path``.
        progress: show a progress bar over epochs.

    Returns:
        :class:`CartographyImport`: the path, ``labels`` (gold class index per row), ``guids``
        (id per row, in the order of ``dynamics_epoch_0.jsonl``), ``n_epochs``, ``n_classes``.

    Raises:
        DatacartoError: naming the file and line: invalid JSON, a missing key, a logits list
            of the wrong length or with a non-finite value, a gold index out of range or
            different from epoch 0's, a guid repeated within an epoch, absent from epoch 0, or
            missing from a later epoch, or a gap in the epoch numbers.
        FileExistsError: ``output_path`` exists and ``overwrite`` is false.
    """
    output = os.fspath(output_path)
    if os.path.exists(output) and not overwrite:
        raise FileExistsError(f"{output}: exists; pass overwrite=True to replace it")
    files = find_cartography_epochs(directory)

    # Epoch 0 fixes the rows: its order, guids, gold labels and class count.
    guids: List[Any] = []
    row_of: Dict[Any, int] = {}
    gold_list: List[int] = []
    logits_list: List[List[float]] = []
    line_list: List[int] = []
    n_classes: Optional[int] = None
    for line_no, guid, logits, gold in _records(files[0], 0, id_field):
        where = f"{files[0]}: line {line_no}"
        _check_guid(guid, where, id_field)
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
    n = len(guids)
    labels = np.asarray(gold_list, dtype=np.int64)
    first_lines = np.asarray(line_list, dtype=np.int64)
    epoch0 = np.asarray(logits_list, dtype=np.float64)
    del logits_list, gold_list, line_list
    _check_finite(epoch0, first_lines, files[0], "logits_epoch_0")

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
                path, key = files[epoch], f"logits_epoch_{epoch}"
                lines[:] = 0
                for line_no, guid, values, gold in _records(path, epoch, id_field):
                    where = f"{path}: line {line_no}"
                    _check_guid(guid, where, id_field)
                    row = row_of.get(guid)
                    if row is None:
                        raise DatacartoError(f"{where}: {id_field}: expected an example of epoch 0, found {guid!r}, absent from {os.path.basename(files[0])}")
                    if lines[row]:
                        raise DatacartoError(f"{where}: {id_field}: expected each example once per epoch, found {guid!r} again (first on line {int(lines[row])})")
                    _check_logits(values, n_classes, where, key)
                    if _check_gold(gold, n_classes, where) != labels[row]:
                        raise DatacartoError(
                            f"{where}: gold: expected {int(labels[row])} for {guid!r} (as on line {int(first_lines[row])} of "
                            f"{os.path.basename(files[0])}), found {gold!r}"
                        )
                    logits[row] = values
                    lines[row] = line_no
                unseen = np.flatnonzero(lines == 0)
                if unseen.size:
                    first = int(unseen[0])
                    raise DatacartoError(
                        f"{path}: {id_field}: expected all {n} examples of epoch 0, found {unseen.size} missing "
                        f"(first: {guids[first]!r}, line {int(first_lines[first])} of {os.path.basename(files[0])})"
                    )
                _check_finite(logits, lines, path, key)
                writer.write_epoch(logits)
    finally:
        if progress:
            epoch_iter.close()
    return CartographyImport(path=output, labels=labels, guids=guids, n_epochs=len(files), n_classes=n_classes)
