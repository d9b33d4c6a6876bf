"""Online statistics: record a run keeping only the mergeable state, never ``[E, N, L]``.

For runs whose dynamics would not fit on disk. :class:`StateRecorder` folds each epoch's
probabilities into a :class:`~datacarto.State` (a fixed ~53 bytes per example, whatever the
number of epochs and labels) and checkpoints it atomically at each epoch's end; ``resume=True``
continues from the checkpoint, so a killed run loses no committed epoch. The price: per-epoch
trajectories are gone (:meth:`StateRecorder.trajectories` says so), and one epoch's
probabilities ``[N, L]`` are held in memory while it is recorded.

Example:
    >>> import os, tempfile, numpy as np, datacarto as dc
    >>> from datacarto.online import StateRecorder
    >>> path = os.path.join(tempfile.mkdtemp(), "run.state")
    >>> probs = np.random.default_rng(0).dirichlet([1, 1], size=(3, 5))
    >>> recorder = StateRecorder(path, labels=[0, 1, 0, 1, 1], n_labels=2, inputs="probabilities")
    >>> for epoch in range(3):
    ...     recorder.record([4, 3, 2], probs[epoch, [4, 3, 2]])  # batches in any order
    ...     recorder.record([0, 1], probs[epoch, [0, 1]])
    ...     _ = recorder.end_epoch()                            # folded and checkpointed
    >>> resumed = StateRecorder(path, labels=[0, 1, 0, 1, 1], n_labels=2, resume=True)
    >>> resumed.n_epochs
    3
    >>> bool(np.allclose(resumed.compute().confidence, dc.compute(probs, [0, 1, 0, 1, 1]).confidence, rtol=0, atol=1e-12))
    True
"""

from __future__ import annotations

import os
from typing import Any, Optional, Tuple, Union

import numpy as np

from datacarto._args import LabelsLike, load_labels
from datacarto._core import DatacartoError
from datacarto._partial import State, partial
from datacarto._stats import Statistics

PathLike = Union[str, "os.PathLike[str]"]
_INPUTS = ("logits", "probabilities")

#: What :meth:`StateRecorder.trajectories` and ``Statistics.extra["trajectories"]`` say.
NO_TRAJECTORIES = (
    "trajectories are unavailable: this run kept only the mergeable state (datacarto.online.StateRecorder), "
    "not the per-epoch probabilities; record a dynamics file (datacarto.DynamicsWriter or a recorder) to plot them"
)


class StateRecorder:
    """Fold each epoch's probabilities into a checkpointed :class:`~datacarto.State`.

    Args:
        path: the checkpoint file (written atomically at each epoch's end with
            :meth:`datacarto.State.save`).
        labels: the gold labels of every example (``[N]`` class indices, ``[N, L]`` 0/1 for
            multilabel), as an array or a ``.npy`` path.
        n_labels: columns ``L`` of the model's outputs (1 for a binary model with one logit).
        task, correctness, threshold: as :func:`datacarto.compute` (``task`` inferred the same way).
        inputs: ``"logits"`` (softmax or sigmoid in float64 by the task) or ``"probabilities"``.
        resume: continue from the checkpoint at ``path`` (a new run starts when there is none).
        overwrite: replace an existing checkpoint (otherwise an existing one without
            ``resume`` raises ``FileExistsError``).
    """

    def __init__(
        self,
        path: PathLike,
        labels: LabelsLike,
        n_labels: int,
        *,
        task: Optional[str] = None,
        correctness: Optional[str] = None,
        threshold: float = 0.5,
        inputs: str = "logits",
        resume: bool = False,
        overwrite: bool = False,
    ) -> None:
        from datacarto._atomic import check_writable_target, remove_abandoned

        if inputs not in _INPUTS:
            raise DatacartoError(f"inputs: expected 'logits' or 'probabilities', found {inputs!r}")
        if isinstance(n_labels, bool) or not isinstance(n_labels, (int, np.integer)):
            raise TypeError(f"n_labels: expected a positive int, found {type(n_labels).__name__} {n_labels!r}")
        if n_labels < 1:
            raise DatacartoError(f"n_labels: expected a positive int, found {n_labels}")
        self.path = check_writable_target(path, overwrite=overwrite or resume, what="state checkpoint")
        self.labels = load_labels(labels)
        self.n_examples = int(self.labels.shape[0]) if self.labels.ndim else 0
        self.n_labels = int(n_labels)
        self.inputs = inputs
        self._options = dict(task=task, correctness=correctness, threshold=threshold)
        self._state: Optional[State] = None
        if resume and os.path.exists(self.path):
            self._state = State.load(self.path)
            self._check_resumed(self._state)
        if resume:
            remove_abandoned(self.path)  # checkpoints a killed run was writing
        # one epoch's rows, filled batch by batch
        self._epoch = np.zeros((self.n_examples, self.n_labels), dtype=np.float64)
        self._seen = np.zeros(self.n_examples, dtype=bool)

    def _check_resumed(self, state: State) -> None:
        probe = partial(np.full((1, self.n_examples, self.n_labels), 0.5), self.labels, **self._options)  # type: ignore[arg-type]
        mine = (probe.task, probe.correctness_rule, probe.threshold, probe.n_labels, (0, self.n_examples))
        theirs = (state.task, state.correctness_rule, state.threshold, state.n_labels, state.examples)
        if mine != theirs or not np.array_equal(state.labels, probe.labels):
            raise DatacartoError(f"{self.path}: resume: the checkpoint was recorded with other settings or labels: {theirs[:4]} over examples {theirs[4]}, this recorder has {mine[:4]} over {mine[4]}")

    @property
    def n_epochs(self) -> int:
        """Epochs folded into the state (and checkpointed) so far."""
        return 0 if self._state is None else self._state.epochs[1]

    @property
    def state(self) -> Optional[State]:
        """The state of every committed epoch (``None`` before the first)."""
        return self._state

    def record(self, indices: Any, outputs: Any) -> None:
        """Record one batch of the current epoch: ``outputs[k]`` belongs to example ``indices[k]``.

        ``outputs`` is ``[B, L]`` (or ``[B]`` when ``n_labels == 1``): an array, or a tensor
        (moved to the CPU with ``.detach().cpu()`` when it has those methods).
        """
        index = np.asarray(_to_numpy(indices))
        if index.dtype.kind not in "iu" or index.ndim != 1:
            raise TypeError(f"indices: expected a 1-D integer array, found {index.dtype} of shape {index.shape}")
        values = np.asarray(_to_numpy(outputs), dtype=np.float64).reshape(len(index), -1) if len(index) else np.empty((0, self.n_labels))
        if values.shape[1] != self.n_labels:
            raise DatacartoError(f"outputs: expected [B, {self.n_labels}], found {np.shape(outputs)}")
        if len(index) and (index.min() < 0 or index.max() >= self.n_examples):
            raise DatacartoError(f"indices: expected examples in [0, {self.n_examples}), found {int(index.min())}..{int(index.max())}")
        if self._seen[index].any() or len(np.unique(index)) != len(index):
            raise DatacartoError(f"indices: example {int(index[self._seen[index]][0]) if self._seen[index].any() else int(index[0])} recorded twice in epoch {self.n_epochs}")
        if self.inputs == "logits":
            from datacarto.writer import to_probabilities

            task = self._task()
            values = to_probabilities(values if task != "binary" else values[:, 0], task).reshape(len(index), self.n_labels)
        self._epoch[index] = values
        self._seen[index] = True

    def _task(self) -> str:
        if self._options["task"] is not None:
            return str(self._options["task"])
        if self.labels.ndim == 2:
            return "multilabel"
        return "binary" if self.n_labels == 1 else "multiclass"

    def end_epoch(self) -> int:
        """Fold the epoch recorded since the last one into the state and checkpoint it atomically.

        Raises :class:`~datacarto.DatacartoError` when some example was not recorded (the epoch
        stays open). Returns the number of committed epochs.
        """
        if not self._seen.all():
            missing = np.flatnonzero(~self._seen)
            raise DatacartoError(f"epoch {self.n_epochs}: {len(missing)} example(s) not recorded, the first {int(missing[0])}")
        self.add_epoch(self._epoch)
        return self.n_epochs

    def add_epoch(self, probabilities: Any) -> None:
        """Fold a whole epoch ``[N, L]`` of probabilities at once and checkpoint the state."""
        epoch = np.asarray(_to_numpy(probabilities))
        if epoch.shape != (self.n_examples, self.n_labels):
            raise DatacartoError(f"probabilities: expected [{self.n_examples}, {self.n_labels}], found {epoch.shape}")
        piece = partial(epoch[None], self.labels, epoch_offset=self.n_epochs, **self._options)  # type: ignore[arg-type]
        state = piece if self._state is None else self._state.merge(piece)
        state.save(self.path)  # the committed epoch is on disk before the recorder says so
        self._state = state
        self._seen[:] = False

    def compute(self, ddof: int = 0) -> Statistics:
        """The statistics of every committed epoch; ``extra["trajectories"]`` says why there are none."""
        if self._state is None:
            raise DatacartoError(f"{self.path}: no epoch committed yet")
        stats = self._state.finish(ddof)
        stats.extra["trajectories"] = NO_TRAJECTORIES
        return stats

    def trajectories(self, *examples: Any) -> Tuple[()]:
        """Always raises: a state-only run keeps no per-epoch probabilities."""
        raise DatacartoError(NO_TRAJECTORIES)

    def __repr__(self) -> str:
        return f"StateRecorder({self.path!r}, {self.n_examples} examples, {self.n_epochs} epoch(s) committed)"


def _to_numpy(values: Any) -> Any:
    if hasattr(values, "detach") and hasattr(values, "cpu"):
        values = values.detach().cpu()
        if str(getattr(values, "dtype", "")) == "torch.bfloat16":
            values = values.float()
        return values.numpy()
    return values
