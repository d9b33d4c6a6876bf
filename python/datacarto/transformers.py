"""Record training dynamics from a Hugging Face ``transformers.Trainer``.

:class:`DataMapCallback` is a ``TrainerCallback``: at the end of every epoch it runs the model
over the whole training set, in dataset order and without dropout, and appends the
probabilities to a dynamics file (one ``[N, L]`` block per epoch, row ``i`` = training
example ``i``). That is the paper's definition of training dynamics.

Why an evaluation pass instead of the training forward pass? A callback never sees the
training outputs, and recovering them needs a ``compute_loss`` override plus an index column
that ``remove_unused_columns`` would strip, that gradient accumulation, ``dataloader_drop_last``,
``group_by_length`` or distributed sharding would split or drop, and that would mix weights
from the whole epoch. The evaluation pass costs one extra forward pass (no backward) per epoch
and is independent of all of those settings. For the cheaper training-pass recording in your
own loop, see :class:`datacarto.torch.Recorder`.

Example:
    >>> from datacarto.transformers import DataMapCallback   # doctest: +SKIP
    >>> callback = DataMapCallback("dynamics.npy")            # doctest: +SKIP
    >>> trainer = Trainer(model, args, train_dataset=train, callbacks=[callback])  # doctest: +SKIP
    >>> trainer.train()                                       # doctest: +SKIP
    >>> stats = callback.compute()   # gold labels were collected during the first pass  # doctest: +SKIP
"""

from __future__ import annotations

import os
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np

from datacarto._optional import require

# one clear error when either is missing (the transformers extra installs both)
require("torch", "transformers", feature="datacarto.transformers")
require("transformers", "transformers", feature="datacarto.transformers")
import torch  # noqa: E402
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments  # noqa: E402

from datacarto._core import DatacartoError  # noqa: E402
from datacarto.torch import Recorder, _evaluation_mode, _logits_of, _model_device, _move, to_numpy  # noqa: E402

__all__ = ["DataMapCallback"]

PathLike = Union[str, "os.PathLike[str]"]
# Where transformers datasets keep gold labels (``label``/``label_ids`` are renamed to
# ``labels`` by the standard collators, but a custom collator may keep them).
_DEFAULT_LABEL_NAMES = ("labels", "label", "label_ids")


def _task_of(model: torch.nn.Module) -> str:
    """The recording task implied by a transformers model's ``config.problem_type`` / ``num_labels``."""
    config = getattr(model, "config", None)
    problem = getattr(config, "problem_type", None)
    num_labels = getattr(config, "num_labels", None)
    if problem == "multi_label_classification":
        return "multilabel"
    if problem == "regression" or (problem is None and num_labels == 1):
        raise DatacartoError(
            f"model.config: problem_type: expected a classification model, found "
            f"{problem or 'num_labels=1 (regression)'}; pass task='binary' if the single output is "
            f"the logit of class 1"
        )
    return "multiclass"


class DataMapCallback(TrainerCallback):
    """A ``transformers.TrainerCallback`` recording per-epoch probabilities of every training example.

    At each ``on_epoch_end`` the model (in ``eval()`` mode, under ``torch.no_grad()``, its mode
    restored afterwards) runs over the training set with a non-shuffled ``DataLoader``, so row
    ``i`` of every epoch block is example ``i`` of the dataset, and the probabilities are
    committed to ``path`` as one epoch (see :class:`datacarto.DynamicsWriter`: a crash leaves
    every completed epoch readable).

    Args:
        path: the dynamics file (``.npy``) to write.
        n_examples: expected number of training examples; checked against the dataset when given.
        dataset: the examples to record. Default: the trainer's training dataset, taken from
            the ``train_dataloader`` the trainer hands to callbacks (after
            ``remove_unused_columns`` has trimmed a ``datasets.Dataset``).
        collate_fn: how to batch ``dataset``. Default: the training loader's collator, which
            is the trainer's ``data_collator`` wrapped to drop columns the model does not accept
            (``remove_unused_columns=True``); so extra columns such as ``text`` or ``idx`` are fine.
        batch_size: default ``args.per_device_eval_batch_size``.
        task: ``"multiclass"`` (softmax), ``"multilabel"`` (sigmoid per label) or ``"binary"``.
            Default: from ``model.config.problem_type``: ``"multi_label_classification"`` gives
            multilabel, otherwise multiclass; regression models are refused.
        label_names: batch keys holding the gold labels, removed from the model inputs and
            collected into :attr:`labels` during the first pass. Default: ``args.label_names``,
            else ``labels``, ``label``, ``label_ids``.
        forward: ``forward(model, batch) -> logits`` for models whose outputs are not
            ``.logits``; ``batch`` is already on the model's device and still holds the labels.
        dtype: storage dtype of the file.
        resume: continue an existing file after its last committed epoch (for
            ``trainer.train(resume_from_checkpoint=...)``; see the caveat below).
        overwrite: replace an existing file.

    Attributes:
        labels: gold labels in dataset order (int64 ``[N]``, or uint8 ``[N, L]`` for
            multilabel), or ``None`` when the batches carry none.
        task, n_labels: resolved at the first epoch end.

    Caveats:
        * Distributed training (DDP): only the world-process-zero process runs the pass and
          writes the file; the model it uses is the unwrapped one, so no collective operation is
          involved. FSDP and DeepSpeed ZeRO-3 shard the parameters, so a single-process pass is
          impossible: the callback refuses them at ``on_train_begin``.
        * Gradient accumulation, ``dataloader_drop_last`` and ``group_by_length`` do not matter:
          the pass is separate from training and covers every example.
        * Resuming from a checkpoint: the epoch is committed before the trainer saves its
          end-of-epoch checkpoint, so a crash between the two leaves one epoch more in the file
          than the checkpoint knows about.
        * The dataset must be map-style (with ``__len__``); an ``IterableDataset`` has no
          stable example index.

    Example:
        >>> import os, tempfile, torch                                   # doctest: +SKIP
        >>> from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments  # doctest: +SKIP
        >>> model = BertForSequenceClassification(BertConfig(vocab_size=100, hidden_size=16,
        ...     num_hidden_layers=1, num_attention_heads=2, intermediate_size=32))  # doctest: +SKIP
        >>> callback = DataMapCallback(os.path.join(tempfile.mkdtemp(), "dynamics.npy"))  # doctest: +SKIP
        >>> args = TrainingArguments(output_dir=tempfile.mkdtemp(), num_train_epochs=3,
        ...     report_to=[], use_cpu=True, save_strategy="no")       # doctest: +SKIP
        >>> Trainer(model, args, train_dataset=train, callbacks=[callback]).train()  # doctest: +SKIP
        >>> callback.compute().confidence.shape                       # doctest: +SKIP
        (64,)
    """

    def __init__(
        self,
        path: PathLike,
        n_examples: Optional[int] = None,
        *,
        dataset: Any = None,
        collate_fn: Optional[Callable[[list], Any]] = None,
        batch_size: Optional[int] = None,
        task: Optional[str] = None,
        label_names: Optional[Sequence[str]] = None,
        forward: Optional[Callable[[torch.nn.Module, Any], Any]] = None,
        dtype: str = "float32",
        resume: bool = False,
        overwrite: bool = False,
    ) -> None:
        self.path = os.fspath(path)
        self.n_examples = n_examples
        self.dataset = dataset
        self.collate_fn = collate_fn
        self.batch_size = batch_size
        self.task = task
        self.label_names = tuple(label_names) if label_names is not None else None
        self.forward = forward
        self.dtype = dtype
        self.resume = resume
        self.overwrite = overwrite
        self.labels: Optional[np.ndarray] = None
        self.n_labels: Optional[int] = None
        self._recorder: Optional[Recorder] = None
        self._started = False  # a file was opened once: later train() calls continue it

    # -- trainer events ---------------------------------------------------------------------

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if getattr(args, "fsdp", None):
            raise DatacartoError(
                "TrainingArguments: fsdp: expected no parameter sharding (DataMapCallback runs its "
                "pass on one process), found FSDP enabled"
            )
        try:
            from transformers.integrations import is_deepspeed_zero3_enabled
        except ImportError:  # pragma: no cover - very old or trimmed transformers
            return
        if is_deepspeed_zero3_enabled():
            raise DatacartoError(
                "TrainingArguments: deepspeed: expected no ZeRO-3 parameter sharding (DataMapCallback "
                "runs its pass on one process), found ZeRO stage 3"
            )

    def on_epoch_end(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        model: Optional[torch.nn.Module] = None,
        train_dataloader: Any = None,
        **kwargs: Any,
    ) -> None:
        if not state.is_world_process_zero:
            return
        if model is None:
            raise DatacartoError("on_epoch_end: model: expected the trainer's model, found None")
        self.record_epoch(model, self._loader(args, train_dataloader), args=args)

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self.close()

    # -- the pass -----------------------------------------------------------------------------

    def _loader(self, args: TrainingArguments, train_dataloader: Any) -> torch.utils.data.DataLoader:
        dataset = self.dataset if self.dataset is not None else getattr(train_dataloader, "dataset", None)
        if dataset is None:
            raise DatacartoError(
                "DataMapCallback: dataset: expected a dataset argument or the trainer's train_dataloader, found neither"
            )
        if isinstance(dataset, torch.utils.data.IterableDataset) or not hasattr(dataset, "__len__"):
            raise DatacartoError(
                f"DataMapCallback: dataset: expected a map-style dataset with a length (example i = row i), "
                f"found {type(dataset).__name__}"
            )
        if self.n_examples is not None and len(dataset) != self.n_examples:
            raise DatacartoError(
                f"DataMapCallback: n_examples: expected the dataset's length {len(dataset)}, found {self.n_examples}"
            )
        collate = self.collate_fn or getattr(train_dataloader, "collate_fn", None)
        if collate is None:
            from transformers import default_data_collator

            collate = default_data_collator
        return torch.utils.data.DataLoader(
            dataset,
            batch_size=self.batch_size or args.per_device_eval_batch_size,
            shuffle=False,  # row i of the epoch block is example i
            drop_last=False,
            collate_fn=collate,
            num_workers=args.dataloader_num_workers,
        )

    def record_epoch(
        self, model: torch.nn.Module, loader: Any, *, args: Optional[TrainingArguments] = None
    ) -> int:
        """Run the pass over ``loader`` (in dataset order: batch rows are examples 0, 1, 2, ...) and commit one epoch.

        Called by ``on_epoch_end``; public so that the same recording can run outside a
        ``Trainer``. Returns the number of committed epochs.
        """
        names = self.label_names or (tuple(args.label_names) if args and args.label_names else _DEFAULT_LABEL_NAMES)
        collect = self.labels is None
        gold: list = []
        device = _model_device(model)
        n_examples = self.n_examples if self.n_examples is not None else len(loader.dataset)
        start = 0
        try:
            with _evaluation_mode(model):
                for batch in loader:
                    batch = _move(batch, device)
                    if not isinstance(batch, dict) and not hasattr(batch, "keys"):
                        raise DatacartoError(
                            f"DataMapCallback: batch: expected a dict of model inputs, found {type(batch).__name__}"
                        )
                    label_key = next((k for k in names if k in batch), None)
                    if self.forward is not None:
                        logits = _logits_of(self.forward(model, batch))
                    else:
                        inputs = {k: v for k, v in batch.items() if k not in names}
                        logits = _logits_of(model(**inputs))
                    recorder = self._open(model, logits, n_examples)
                    size = int(logits.shape[0])
                    recorder.record(np.arange(start, start + size), logits)
                    start += size
                    if collect and label_key is not None:
                        gold.append(to_numpy(batch[label_key], f"batch[{label_key!r}]"))
            if self._recorder is None:
                raise DatacartoError("DataMapCallback: dataset: expected at least one example, found none")
            committed = self._recorder.end_epoch()
        except BaseException:
            if self._recorder is not None and not self._recorder.writer.closed:
                self._recorder.discard_epoch()  # no half epoch left behind
            raise
        if collect and gold:
            labels = np.concatenate(gold)
            self.labels = labels.astype(np.uint8) if self.task == "multilabel" else labels.astype(np.int64)
        return committed

    def _open(self, model: torch.nn.Module, logits: Any, n_examples: int) -> Recorder:
        if self._recorder is not None:
            return self._recorder
        if self.task is None:
            self.task = _task_of(model)
        n_labels = 1 if logits.ndim == 1 else int(logits.shape[-1])
        self.n_labels = n_labels
        self._recorder = Recorder(
            self.path,
            n_examples,
            n_labels,
            task=self.task,
            inputs="logits",
            dtype=self.dtype,
            resume=self.resume or self._started,
            overwrite=self.overwrite and not self._started,
        )
        self._started = True
        return self._recorder

    # -- results ------------------------------------------------------------------------------

    @property
    def n_epochs(self) -> int:
        """Number of epochs committed to the file."""
        if self._recorder is not None:
            return self._recorder.n_epochs
        from datacarto import read_header

        return int(read_header(self.path)["shape"][0]) if os.path.exists(self.path) else 0

    def compute(self, labels: Any = None, **kwargs: Any) -> Any:
        """Statistics over the recorded epochs (``datacarto.compute``); ``labels`` default to the collected ones."""
        from datacarto import compute

        if labels is None:
            labels = self.labels
        if labels is None:
            raise DatacartoError(
                "DataMapCallback.compute: labels: expected labels (the batches carried none to collect), found None"
            )
        if self.task is not None:
            kwargs.setdefault("task", self.task)
        return compute(self.path, to_numpy(labels, "labels"), **kwargs)

    def close(self) -> None:
        """Close the file (``on_train_end`` does it); a later ``trainer.train()`` continues the same file."""
        if self._recorder is not None:
            recorder, self._recorder = self._recorder, None
            recorder.close()
