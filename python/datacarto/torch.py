"""Record training dynamics from any PyTorch training loop.

Two pieces:

* :class:`IndexedDataset` (or :func:`with_indices`) wraps a map-style dataset so every item carries
  its example index, which survives a shuffled ``DataLoader`` and its worker processes.
* :class:`FoldRecorder` records a *cross-validated* map: K fold models train in lockstep and
  each example's probabilities come from the model that did not train on it (see its example).
* :class:`Recorder` writes one ``[N, L]`` block of probabilities per epoch into a growing
  dynamics file (see :class:`datacarto.DynamicsWriter`), either

  - from the training forward pass (:meth:`Recorder.record` after each step, then
    :meth:`Recorder.end_epoch`): free, and what the original Cartography code does, but the
    probabilities come from a model that changes during the epoch and runs with dropout; or
  - from a separate evaluation pass at the end of each epoch (:meth:`Recorder.evaluate`):
    the paper's definition, one extra forward pass over the training set per epoch.

Tensors may live on any device and have any floating dtype (float16 and bfloat16 included):
they are detached, moved to the CPU and converted to float64 before softmax / sigmoid.

This module imports torch; ``import datacarto`` does not (``datacarto.torch`` loads on first use).

Example:
    >>> import torch, datacarto as dc
    >>> from torch.utils.data import DataLoader, TensorDataset
    >>> x, y = torch.randn(8, 3), torch.tensor([0, 1] * 4)
    >>> loader = DataLoader(dc.torch.IndexedDataset(TensorDataset(x, y)), batch_size=4, shuffle=True)
    >>> model = torch.nn.Linear(3, 2)
    >>> import tempfile, os; path = os.path.join(tempfile.mkdtemp(), "dynamics.npy")
    >>> with dc.torch.Recorder(path, n_examples=8, n_labels=2) as recorder:
    ...     for epoch in range(2):
    ...         for index, (xb, yb) in loader:
    ...             logits = model(xb)          # the training forward pass
    ...             recorder.record(index, logits)
    ...         _ = recorder.end_epoch()
    >>> dc.read_header(path)["shape"]
    (2, 8, 2)
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from typing import Any, Callable, Iterator, Optional, Tuple, Union

import numpy as np

from datacarto._optional import require

require("torch", "torch", feature="datacarto.torch")  # one clear error when torch is missing
import torch  # noqa: E402

from datacarto._core import DatacartoError  # noqa: E402
from datacarto.writer import DynamicsWriter  # noqa: E402

__all__ = ["FoldRecorder", "IndexedDataset", "Recorder", "default_forward", "to_numpy", "with_indices"]

PathLike = Union[str, "os.PathLike[str]"]
ForwardFn = Callable[[torch.nn.Module, Any], Tuple[Any, Any]]

_TASKS = ("multiclass", "binary", "multilabel")
_INPUTS = ("logits", "probabilities")
# Keys a dict batch may carry gold labels under; they are not model inputs for the eval pass.
_LABEL_KEYS = ("labels", "label", "label_ids", "y", "target", "targets")


class IndexedDataset(torch.utils.data.Dataset):
    """Wrap a map-style dataset so that item ``i`` becomes ``(i, item)``.

    When the wrapped items are dicts (as Hugging Face style datasets return), the index is added
    under ``key`` instead: ``{key: i, **item}``. Either way PyTorch's default collate turns the
    indices of a batch into an int64 tensor, so a shuffled ``DataLoader`` tells you which
    examples each batch holds. The wrapper is a plain picklable object: it works with
    ``num_workers > 0``.

    Example:
        >>> import torch, datacarto as dc
        >>> from torch.utils.data import DataLoader, TensorDataset
        >>> ds = dc.torch.IndexedDataset(TensorDataset(torch.arange(5.0)))
        >>> ds[3]
        (3, (tensor(3.),))
        >>> index, (x,) = next(iter(DataLoader(ds, batch_size=5, shuffle=True)))
        >>> bool((x == index.float()).all())
        True
    """

    def __init__(self, dataset: Any, key: str = "index") -> None:
        if not hasattr(dataset, "__getitem__") or not hasattr(dataset, "__len__"):
            raise DatacartoError(
                f"dataset: type: expected a map-style dataset (with __getitem__ and __len__), "
                f"found {type(dataset).__name__}"
            )
        self.dataset = dataset
        self.key = key

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        item = self.dataset[index]
        index = int(index)
        if isinstance(item, Mapping):
            if self.key in item:
                raise DatacartoError(
                    f"dataset: item {index}: expected no {self.key!r} key (it would be overwritten), "
                    f"found one; pass another key= to IndexedDataset"
                )
            return {self.key: index, **item}
        return index, item


def with_indices(dataset: Any, key: str = "index") -> IndexedDataset:
    """Same as ``IndexedDataset(dataset, key)``.

    Example:
        >>> import datacarto as dc
        >>> dc.torch.with_indices([{"x": 1.0}, {"x": 2.0}])[1]
        {'index': 1, 'x': 2.0}
    """
    return IndexedDataset(dataset, key)


def to_numpy(values: Any, name: str = "values") -> np.ndarray:
    """A tensor (any device, any dtype, with or without grad), array or list as a CPU numpy array.

    The tensor is detached and moved to the CPU; float16, float32 and float64 keep their dtype,
    bfloat16 (which numpy lacks) becomes float32, exactly; integer tensors become int64. The
    writer converts logits to float64 before the softmax / sigmoid.

    Example:
        >>> import torch, datacarto as dc
        >>> dc.torch.to_numpy(torch.tensor([1.5, -2.0], dtype=torch.bfloat16)).tolist()
        [1.5, -2.0]
    """
    if isinstance(values, torch.Tensor):
        t = values.detach().cpu()  # move before widening: half the bytes for fp16/bf16
        if t.dtype == torch.bfloat16:
            return t.to(torch.float32).numpy()
        if t.is_floating_point():
            return t.numpy()
        if t.dtype == torch.bool or t.is_complex():
            raise DatacartoError(f"{name}: dtype: expected a real number tensor, found {t.dtype}")
        return t.to(torch.int64).numpy()
    return np.asarray(values)


def _move(batch: Any, device: torch.device) -> Any:
    """Move every tensor inside a (nested) batch to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {k: _move(v, device) for k, v in batch.items()}
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # namedtuple
        return type(batch)(*(_move(v, device) for v in batch))
    if isinstance(batch, (list, tuple)):
        return type(batch)(_move(v, device) for v in batch)
    return batch


@contextlib.contextmanager
def _evaluation_mode(model: torch.nn.Module) -> Iterator[None]:
    """``model.eval()`` under ``torch.no_grad()``; the model's mode is restored on the way out."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


def _forward_batches(model: torch.nn.Module, dataloader: Any, device: Optional[Union[str, torch.device]], forward: Optional[ForwardFn]) -> Iterator[Tuple[Any, Any]]:
    """``(indices, outputs)`` of every batch of ``dataloader``, moved to ``device`` (default:
    the model's) and passed through ``forward`` (default: :func:`default_forward`)."""
    forward = forward or default_forward
    target = torch.device(device) if device is not None else _model_device(model)
    for batch in dataloader:
        yield forward(model, _move(batch, target))


def _logits_of(output: Any) -> Any:
    """The logits inside a model output: a tensor, ``.logits`` (transformers), ``["logits"]`` or ``[0]``."""
    if isinstance(output, torch.Tensor):
        return output
    logits = getattr(output, "logits", None)
    if logits is not None:
        return logits
    if isinstance(output, Mapping) and "logits" in output:
        return output["logits"]
    if isinstance(output, (list, tuple)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise DatacartoError(
        f"model output: type: expected a tensor, an object with .logits or a (logits, ...) tuple, "
        f"found {type(output).__name__}; pass forward=... to Recorder.evaluate"
    )


def default_forward(model: torch.nn.Module, batch: Any, *, key: str = "index") -> Tuple[Any, Any]:
    """The forward pass :meth:`Recorder.evaluate` uses when none is given.

    Understands the batches an :class:`IndexedDataset` produces:

    * ``(index, (x, y, ...))``: ``model(x)``;
    * ``(index, x)`` with ``x`` a tensor: ``model(x)``;
    * ``{"index": ..., **inputs}``: ``model(**inputs)`` without the index and label keys
      (``labels``, ``label``, ``label_ids``, ``y``, ``target``, ``targets``).

    The output may be a tensor of logits, an object with ``.logits`` (transformers models),
    a dict with ``"logits"`` or a tuple whose first element is the logits.

    Example:
        >>> import torch, datacarto as dc
        >>> model = torch.nn.Linear(3, 2)
        >>> index, logits = dc.torch.default_forward(model, (torch.tensor([4, 7]), (torch.zeros(2, 3), None)))
        >>> index.tolist(), tuple(logits.shape)
        ([4, 7], (2, 2))
    """
    if isinstance(batch, Mapping):
        if key not in batch:
            raise DatacartoError(
                f"batch: {key!r}: expected the example index in every dict batch (wrap the dataset in "
                f"datacarto.torch.IndexedDataset), found keys {sorted(map(str, batch))}"
            )
        inputs = {k: v for k, v in batch.items() if k != key and k not in _LABEL_KEYS}
        return batch[key], _logits_of(model(**inputs))
    if isinstance(batch, (list, tuple)) and len(batch) == 2:
        index, item = batch
        if isinstance(item, (list, tuple)):
            if not item:
                raise DatacartoError("batch: item: expected (x, ...) after the index, found an empty tuple")
            item = item[0]
        return index, _logits_of(model(item))
    raise DatacartoError(
        f"batch: structure: expected (index, (x, y)), (index, x) or a dict with {key!r} "
        f"(from datacarto.torch.IndexedDataset), found {type(batch).__name__}; pass forward=... "
        f"to Recorder.evaluate"
    )


def _model_device(model: torch.nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    for b in model.buffers():
        return b.device
    return torch.device("cpu")


class Recorder:
    """Record per-epoch probabilities of every training example from a PyTorch training loop.

    Args:
        path: the dynamics file (``.npy``) to create, or to continue with ``resume=True``.
        n_examples: number of training examples ``N``.
        n_labels: number of columns ``L``: classes (multiclass; a two-class model with two
            logits is multiclass too), 1 (binary with a single logit: the probability of class 1
            is stored) or labels (multilabel).
        task: ``"multiclass"`` (softmax), ``"binary"`` (one column, sigmoid) or
            ``"multilabel"`` (sigmoid per label). Default: binary when ``n_labels == 1``, else
            multiclass.
        inputs: what :meth:`record` receives and the model returns in :meth:`evaluate`:
            ``"logits"`` (converted in float64) or ``"probabilities"`` (stored as given).
        dtype: storage dtype of the file (``"float32"``, ``"float64"`` or ``"float16"``).
        resume: continue an existing file after its last committed epoch (a new file is started
            when there is none, so a training script can always pass ``resume=True``).
        overwrite: replace an existing file (without it or ``resume``, an existing file raises
            ``FileExistsError``).
        fsync: force each committed epoch to the disk (see :class:`datacarto.DynamicsWriter`).

    Every epoch must cover every example exactly once; :meth:`end_epoch` raises
    :class:`datacarto.DatacartoError` otherwise (so a ``DataLoader`` with ``drop_last=True``
    cannot feed :meth:`record`). NaN or inf logits raise at once. Epochs already committed
    stay in the file whatever happens later.

    Example (the paper's definition: an evaluation pass at each epoch's end):
        >>> import os, tempfile, torch, datacarto as dc
        >>> from torch.utils.data import DataLoader, TensorDataset
        >>> x, y = torch.randn(16, 4), torch.randint(0, 3, (16,))
        >>> dataset = dc.torch.IndexedDataset(TensorDataset(x, y))
        >>> train = DataLoader(dataset, batch_size=4, shuffle=True)
        >>> model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
        >>> opt = torch.optim.SGD(model.parameters(), lr=0.1)
        >>> path = os.path.join(tempfile.mkdtemp(), "dynamics.npy")
        >>> with dc.torch.Recorder(path, n_examples=16, n_labels=3) as recorder:
        ...     for epoch in range(3):
        ...         for _, (xb, yb) in train:
        ...             opt.zero_grad(); torch.nn.functional.cross_entropy(model(xb), yb).backward(); opt.step()
        ...         _ = recorder.evaluate(model, train)  # any order: indices travel with the batches
        ...     stats = recorder.compute(y.numpy())
        >>> stats.n_epochs, stats.confidence.shape
        (3, (16,))
    """

    def __init__(
        self,
        path: PathLike,
        n_examples: int,
        n_labels: int,
        *,
        task: Optional[str] = None,
        inputs: str = "logits",
        dtype: str = "float32",
        resume: bool = False,
        overwrite: bool = False,
        fsync: bool = True,
    ) -> None:
        if task is not None and task not in _TASKS:
            raise DatacartoError(f"task: value: expected one of {', '.join(_TASKS)}, found {task!r}")
        if inputs not in _INPUTS:
            raise DatacartoError(f"inputs: value: expected 'logits' or 'probabilities', found {inputs!r}")
        self.path = os.fspath(path)
        # The writer validates the rest (counts, dtype, task vs n_labels) and converts logits
        # in float64, naming the epoch and example of a NaN or inf.
        self._writer: Optional[DynamicsWriter] = DynamicsWriter(
            self.path, n_examples, n_labels, dtype,
            task=task, inputs=inputs, resume=resume, overwrite=overwrite, fsync=fsync,
        )  # fmt: skip
        self.task: str = self._writer.task
        self.inputs = inputs
        self.n_examples: int = self._writer.n_examples
        self.n_labels: int = self._writer.n_labels

    # -- recording -------------------------------------------------------------------------

    @property
    def writer(self) -> DynamicsWriter:
        """The underlying :class:`datacarto.DynamicsWriter` (raises once the recorder is closed)."""
        if self._writer is None:
            raise DatacartoError(f"{self.path}: recorder: expected an open recorder, found it closed")
        return self._writer

    @property
    def n_epochs(self) -> int:
        """Number of epochs committed to the file so far."""
        if self._writer is None:
            from datacarto import read_header

            return int(read_header(self.path)["shape"][0])
        return int(self._writer.n_epochs)

    def record(self, indices: Any, outputs: Any) -> None:
        """Record one batch: ``outputs[k]`` belongs to example ``indices[k]``.

        ``indices`` is an int tensor, array or list (``[B]``); ``outputs`` is ``[B, L]`` (or
        ``[B]`` when ``n_labels == 1``) logits or probabilities, per ``inputs``: a tensor on any
        device, of any floating dtype, with or without grad (it is detached, so recording never
        touches the autograd graph), or an array.

        Example:
            >>> import os, tempfile, torch, datacarto as dc
            >>> path = os.path.join(tempfile.mkdtemp(), "d.npy")
            >>> with dc.torch.Recorder(path, 3, 2) as rec:
            ...     rec.record(torch.tensor([2, 0]), torch.zeros(2, 2, dtype=torch.float16))
            ...     rec.record([1], torch.tensor([[0.0, 0.0]], requires_grad=True))
            ...     _ = rec.end_epoch()
            >>> float(dc.compute(path, [0, 1, 0]).confidence[0])
            0.5
        """
        self.writer.write_batch(to_numpy(indices, "indices"), to_numpy(outputs, self.inputs))

    def end_epoch(self) -> int:
        """Commit the epoch recorded since the last commit; return the number of committed epochs.

        Raises :class:`datacarto.DatacartoError` (from the writer) when some example was not
        recorded in this epoch or was recorded twice; the epoch then stays open (record the
        missing rows and call again, or :meth:`discard_epoch`).
        """
        self.writer.commit_epoch()
        return self.n_epochs

    def discard_epoch(self) -> None:
        """Drop the examples recorded since the last commit (e.g. after :meth:`end_epoch` refused an incomplete epoch)."""
        self.writer.discard_epoch()

    def evaluate(
        self,
        model: torch.nn.Module,
        dataloader: Any,
        *,
        device: Optional[Union[str, torch.device]] = None,
        forward: Optional[ForwardFn] = None,
    ) -> int:
        """Run an evaluation pass over ``dataloader``, record it as one epoch and commit it.

        The model is put in ``eval()`` mode under ``torch.no_grad()`` and its previous mode is
        restored afterwards (also on error). Batches are moved to ``device`` (default: the
        device of the model's first parameter). ``forward(model, batch) -> (indices, outputs)``
        computes one batch; the default (:func:`default_forward`) handles the batches of an
        :class:`IndexedDataset`. The loader may be the shuffled training loader: indices travel
        with the batches. It must not drop examples (``drop_last=False``).

        Returns the number of committed epochs. When the pass fails (also when the epoch misses
        examples) its rows are discarded and the exception propagates.
        """
        pending = self.writer.pending
        if pending:
            raise DatacartoError(
                f"{self.path}: epoch {self.n_epochs}: expected no examples recorded with record() before "
                f"evaluate(), found {pending}; call end_epoch() first or record only one way"
            )
        try:
            with _evaluation_mode(model):
                for indices, outputs in _forward_batches(model, dataloader, device, forward):
                    self.record(indices, outputs)
            return self.end_epoch()
        except BaseException:
            # A failed pass leaves no half epoch behind: the recorder stays usable.
            if self._writer is not None and not self._writer.closed:
                self._writer.discard_epoch()
            raise

    # -- results and lifetime --------------------------------------------------------------

    def compute(self, labels: Any, *, warn: bool = True, **kwargs: Any) -> Any:
        """Statistics over the committed epochs: ``datacarto.compute(path, labels, task=..., **kwargs)``.

        ``labels`` may be a tensor (any device). Returns :class:`datacarto.Statistics`.
        With ``warn`` (the default), a :class:`datacarto.sklearn.RecordingWarning` says when an
        in-sample map looks memorised (right about >= 99% of the labels at the last epoch:
        record with :class:`FoldRecorder` instead) or the dynamics are degenerate.
        """
        from datacarto import compute
        from datacarto._checks import check_dynamics

        kwargs.setdefault("task", self.task)
        gold = to_numpy(labels, "labels")
        stats = compute(self.path, gold, **kwargs)
        if warn:
            from datacarto._stats import window_pass

            final = stats.epochs[1]
            last = window_pass(self.path, stats.labels, (final - 1, final), task=stats.task, class_means=True).class_means
            check_dynamics(last, stats.labels, stats.task, cv=self._folds_for_checks(), variability=stats.variability, confidence=stats.confidence, n_epochs=stats.n_epochs)
        return stats

    def _folds_for_checks(self) -> Optional[int]:
        """None: an in-sample recording (the memorisation check applies)."""
        return None

    def close(self) -> None:
        """Close the file. An epoch recorded but not committed is discarded (the file keeps every committed epoch)."""
        if self._writer is not None:
            writer, self._writer = self._writer, None
            writer.close()

    def __enter__(self) -> "Recorder":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._writer is None else f"{self.n_epochs} epochs"
        return (
            f"Recorder({self.path!r}, n_examples={self.n_examples}, n_labels={self.n_labels}, "
            f"task={self.task!r}, inputs={self.inputs!r}, {state})"
        )


class FoldRecorder(Recorder):
    """Record a cross-validated map: out-of-fold probabilities of K models trained in lockstep.

    A model that memorises its training labels is right about the wrong ones too, so an
    in-sample map hides them. Split the examples into ``n_folds`` folds (stratified by
    ``labels`` when given, seeded); train one model per fold on :meth:`train_indices` and,
    after each epoch, evaluate it on :meth:`held_out_indices` with :meth:`evaluate` (or
    :meth:`record`). :meth:`end_epoch` commits the epoch once every fold was recorded: each
    example exactly once, from the one model that never trained on it (rows from another
    fold's model are refused). The training compute is that of K-fold cross-validation.

    Args:
        path, n_examples, n_labels: as for :class:`Recorder` (``**kwargs`` too: ``task``,
            ``inputs``, ``dtype``, ``overwrite``, ``fsync``, ``resume``).
        n_folds: K >= 2.
        labels: gold class labels ``[N]`` to stratify the folds by (optional).
        seed: the folds' random seed.
        folds: an explicit fold per example (int ``[N]`` in ``[0, K)``) instead.

    Example:
        >>> import os, tempfile, torch, datacarto as dc
        >>> from torch.utils.data import DataLoader, Subset, TensorDataset
        >>> _ = torch.manual_seed(0); x = torch.randn(60, 4); y = (x[:, 0] > 0).long()
        >>> data = dc.torch.IndexedDataset(TensorDataset(x, y))
        >>> path = os.path.join(tempfile.mkdtemp(), "cv.npy")
        >>> with dc.torch.FoldRecorder(path, 60, 2, n_folds=3, labels=y.numpy(), seed=0) as recorder:
        ...     models = [torch.nn.Linear(4, 2) for _ in range(3)]
        ...     optimisers = [torch.optim.SGD(m.parameters(), lr=0.5) for m in models]
        ...     for epoch in range(4):
        ...         for k, (model, opt) in enumerate(zip(models, optimisers)):
        ...             for _, (xb, yb) in DataLoader(Subset(data, recorder.train_indices(k)), batch_size=10, shuffle=True):
        ...                 opt.zero_grad(); torch.nn.functional.cross_entropy(model(xb), yb).backward(); opt.step()
        ...             recorder.evaluate(k, model, DataLoader(Subset(data, recorder.held_out_indices(k)), batch_size=32))
        ...         _ = recorder.end_epoch()
        ...     stats = recorder.compute(y)
        >>> stats.n_epochs, bool(stats.confidence.mean() > 0.6)
        (4, True)
    """

    def __init__(
        self,
        path: PathLike,
        n_examples: int,
        n_labels: int,
        *,
        n_folds: int = 5,
        labels: Any = None,
        seed: Union[int, np.random.Generator, None] = 0,
        folds: Any = None,
        **kwargs: Any,
    ) -> None:
        from datacarto._folds import fold_assignment

        if folds is not None:
            assignment = to_numpy(folds, "folds")
            if assignment.shape != (int(n_examples),) or assignment.dtype.kind not in "iu":
                raise DatacartoError(f"folds: expected an int array of shape [{n_examples}] (one fold per example), found {assignment.dtype} {list(assignment.shape)}")
            assignment = assignment.astype(np.int64)
            n_folds = int(assignment.max()) + 1 if assignment.size else 0
            if assignment.min() < 0 or n_folds < 2 or np.unique(assignment).size != n_folds:
                raise DatacartoError(f"folds: expected every fold 0..K-1 (K >= 2) to hold examples, found folds {np.unique(assignment).tolist()}")
        else:
            gold = None if labels is None else to_numpy(labels, "labels")
            if gold is not None and gold.shape[0] != int(n_examples):
                raise DatacartoError(f"labels: expected {n_examples} labels (one per example), found {gold.shape[0]}")
            assignment = fold_assignment(n_folds, gold, n=int(n_examples), seed=seed)
        super().__init__(path, n_examples, n_labels, **kwargs)
        self.n_folds = int(n_folds)
        #: int64 [N]: each example's fold
        self.folds = assignment

    def _fold(self, fold: Any) -> int:
        if isinstance(fold, bool) or not isinstance(fold, (int, np.integer)) or not 0 <= int(fold) < self.n_folds:
            raise DatacartoError(f"fold: expected an int in [0, {self.n_folds}), found {fold!r}")
        return int(fold)

    def train_indices(self, fold: int) -> np.ndarray:
        """The examples fold ``fold``'s model trains on (every other fold's)."""
        return np.flatnonzero(self.folds != self._fold(fold))

    def held_out_indices(self, fold: int) -> np.ndarray:
        """The examples fold ``fold``'s model is evaluated on (its own fold)."""
        return np.flatnonzero(self.folds == self._fold(fold))

    def record(self, fold: int, indices: Any, outputs: Any) -> None:  # type: ignore[override]
        """Record fold ``fold``'s model's outputs for ``indices``, which must all be held out of it."""
        k = self._fold(fold)
        index = to_numpy(indices, "indices").reshape(-1)
        if index.size and index.dtype.kind in "iu":
            inside = (index >= 0) & (index < self.n_examples)
            wrong = index[inside][self.folds[index[inside]] != k]
            if wrong.size:
                raise DatacartoError(f"{self.path}: indices: fold {k}'s model trained on example {int(wrong[0])} (fold {int(self.folds[wrong[0]])}); record only its held-out examples")
        super().record(index, outputs)

    def evaluate(  # type: ignore[override]
        self,
        fold: int,
        model: torch.nn.Module,
        dataloader: Any,
        *,
        device: Optional[Union[str, torch.device]] = None,
        forward: Optional[ForwardFn] = None,
    ) -> None:
        """Evaluate fold ``fold``'s model on its held-out examples (``dataloader``) into the epoch
        in progress, in ``eval()`` mode under ``torch.no_grad()`` (the mode is restored). Commit
        with :meth:`end_epoch` after every fold. On failure the epoch in progress is discarded
        (every fold must be evaluated again)."""
        k = self._fold(fold)
        try:
            with _evaluation_mode(model):
                for indices, outputs in _forward_batches(model, dataloader, device, forward):
                    self.record(k, indices, outputs)
        except BaseException:
            if self._writer is not None and not self._writer.closed and self._writer.pending:
                self._writer.discard_epoch()
            raise

    def _folds_for_checks(self) -> Optional[int]:
        return self.n_folds  # out-of-fold probabilities: nothing to memorise

    def compute(self, labels: Any, *, warn: bool = True, **kwargs: Any) -> Any:
        """As :meth:`Recorder.compute`; for class labels (not multilabel) the result also keeps
        ``extra["epoch_weights"]`` and ``extra["mixture_confidence"]``, the mixture of the
        epochs' out-of-fold predictions that best predicts the held-out labels (as
        ``datacarto.sklearn.record(cv=K)`` does; one more read of the file), which a
        :class:`~datacarto.DataMap` ranks suspects by by default (score ``"mixture"``)."""
        stats = super().compute(labels, warn=warn, **kwargs)
        if stats.task != "multilabel":
            from datacarto._mixture import add_mixture, gold_probabilities

            # the core's confidence over one epoch: the gold label's probability (x or 1 - x on
            # a one-column binary file)
            add_mixture(stats, gold_probabilities(self.path, stats.labels, stats.task), self.path)
        return stats

    def __repr__(self) -> str:
        return super().__repr__().replace("Recorder(", "FoldRecorder(", 1)[:-1] + f", n_folds={self.n_folds})"
