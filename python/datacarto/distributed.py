"""Recording under ``torch.distributed``: every rank records its own batches, rank 0 writes.

With a ``DistributedSampler`` each rank sees a different, reshuffled part of the examples every
epoch, so no rank can keep a fixed range of examples: at each epoch's end the ranks gather
their rows to rank 0 (``torch.distributed.gather_object``, any backend, gloo included), which
keeps every example once (the sampler pads the last round with repeated examples: the first
row recorded for an example wins) and commits the epoch to one sink: a dynamics file
(``keep="dynamics"``, a :class:`~datacarto.DynamicsWriter`) or only the mergeable state
(``keep="state"``, a :class:`~datacarto.online.StateRecorder`). The other ranks hold one
epoch of their own rows at most. The result equals a single-process run over the same
probabilities.

Example (inside each rank's training loop)::

    recorder = DistributedRecorder("dynamics.npy", n_examples=len(train), n_labels=10)
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        for index, (x, y) in loader:          # DataLoader(IndexedDataset(train), sampler=sampler)
            logits = model(x)                 # ... loss, backward, step
            recorder.record(index, logits)
        recorder.end_epoch()                  # collective: every rank calls it
    stats = recorder.compute(labels)          # rank 0: Statistics; other ranks: None
"""

from __future__ import annotations

import os
from typing import Any, List, Optional, Tuple, Union

import numpy as np

from datacarto._core import DatacartoError
from datacarto._optional import require

PathLike = Union[str, "os.PathLike[str]"]
_KEEP = ("dynamics", "state")


class DistributedRecorder:
    """Record per-epoch outputs from every rank of a ``torch.distributed`` job into one sink on rank 0.

    Args:
        path: the dynamics file (``keep="dynamics"``) or state checkpoint (``keep="state"``),
            written by rank 0 only.
        n_examples, n_labels, task, inputs: as :class:`datacarto.torch.Recorder`.
        keep: ``"dynamics"`` (an ``[E, N, L]`` file) or ``"state"`` (only the mergeable state;
            needs ``labels``).
        labels: the gold labels (``keep="state"`` only; ``compute`` takes them otherwise).
        group: the process group (default: the default group).
        resume, overwrite: passed to the sink.
    """

    def __init__(
        self,
        path: PathLike,
        n_examples: int,
        n_labels: int,
        *,
        keep: str = "dynamics",
        labels: Any = None,
        task: Optional[str] = None,
        inputs: str = "logits",
        group: Any = None,
        resume: bool = False,
        overwrite: bool = False,
    ) -> None:
        torch = require("torch", "torch", feature="datacarto.distributed")
        self._dist = torch.distributed
        if not self._dist.is_available() or not self._dist.is_initialized():
            raise DatacartoError("torch.distributed: expected an initialized process group (torch.distributed.init_process_group) before DistributedRecorder")
        if keep not in _KEEP:
            raise DatacartoError(f"keep: expected 'dynamics' or 'state', found {keep!r}")
        if keep == "state" and labels is None:
            raise DatacartoError("labels: keep='state' folds verdicts as it goes, so it needs the gold labels now")
        self.path, self.keep, self.group = os.fspath(path), keep, group
        self.rank = self._dist.get_rank(group)
        self.n_examples, self.n_labels = int(n_examples), int(n_labels)
        self._indices: List[np.ndarray] = []
        self._outputs: List[np.ndarray] = []
        self._sink: Any = None
        if self.rank == 0:
            if keep == "dynamics":
                from datacarto.writer import DynamicsWriter

                self._sink = DynamicsWriter(self.path, self.n_examples, self.n_labels, "float32", task=task, inputs=inputs, resume=resume, overwrite=overwrite)
            else:
                from datacarto.online import StateRecorder

                self._sink = StateRecorder(self.path, _numpy(labels), self.n_labels, task=task, inputs=inputs, resume=resume, overwrite=overwrite)

    def record(self, indices: Any, outputs: Any) -> None:
        """Keep this rank's batch until :meth:`end_epoch` (``outputs[k]`` belongs to ``indices[k]``)."""
        index = _numpy(indices).astype(np.int64, copy=False).reshape(-1)
        values = _numpy(outputs).astype(np.float64, copy=False).reshape(len(index), -1)
        self._indices.append(index)
        self._outputs.append(values)

    def end_epoch(self) -> int:
        """Collective: gather every rank's rows to rank 0, which commits the epoch once per example.

        Returns the committed epoch count on rank 0, -1 on the other ranks. An error on rank 0
        (an example no rank recorded) is raised there after the gather, so no rank waits forever.
        """
        mine: Tuple[np.ndarray, np.ndarray] = (
            np.concatenate(self._indices) if self._indices else np.empty(0, np.int64),
            np.concatenate(self._outputs) if self._outputs else np.empty((0, self.n_labels)),
        )
        self._indices, self._outputs = [], []
        gathered: Optional[List[Any]] = [None] * self._dist.get_world_size(self.group) if self.rank == 0 else None
        self._dist.gather_object(mine, gathered, dst=0, group=self.group)
        if self.rank != 0:
            return -1
        assert gathered is not None
        index = np.concatenate([part[0] for part in gathered])
        values = np.concatenate([part[1] for part in gathered])
        # padding repeats examples: keep the first row of each (rank order, then batch order)
        _, first = np.unique(index, return_index=True)
        first.sort()
        if self.keep == "dynamics":
            self._sink.write_batch(index[first], values[first])
            self._sink.commit_epoch()
            return int(self._sink.n_epochs)
        self._sink.record(index[first], values[first])
        return int(self._sink.end_epoch())

    def compute(self, labels: Any = None, **kwargs: Any) -> Any:
        """Rank 0: the statistics of every committed epoch; other ranks: ``None``."""
        if self.rank != 0:
            return None
        if self.keep == "state":
            return self._sink.compute(kwargs.pop("ddof", 0))
        from datacarto import compute

        kwargs.setdefault("task", self._sink.task)
        return compute(self.path, _numpy(labels), **kwargs)

    def close(self) -> None:
        if self.rank == 0 and self.keep == "dynamics" and self._sink is not None:
            self._sink.close()


def _numpy(values: Any) -> np.ndarray:
    if hasattr(values, "detach") and hasattr(values, "cpu"):
        values = values.detach().cpu()
        if str(values.dtype) == "torch.bfloat16":
            values = values.float()
        return values.numpy()
    return np.asarray(values)
