"""The baselines datacarto is measured against; benchmark code only, never imported by the package.

- :class:`RawPass`: the memory limit. numpy ``A.sum()`` over an already-mapped float32 array
  of the input's byte size, plus ``fill`` of an already-touched buffer the size of the default
  outputs (65 bytes a unit), with 1 thread or with the input and the buffer split in halves
  over 2 threads (numpy releases the GIL in both).
- :func:`fast_numpy`: every default statistic in numpy, written for speed: per epoch and in
  chunks of examples, ``take_along_axis`` for the gold column, a masked max for the best other
  class, float32 per-epoch arithmetic into ``out=`` buffers, no one-hot, no float64 copy of
  the input. ``test_baselines.py`` checks it against ``datacarto.compute``.
- :func:`cartography_loop`: the original Cartography code's approach (``train_dy_filtering.py``):
  a Python loop over per-example records, each holding one logit list per epoch, softmax and
  argmax per epoch, the statistics from the per-example trends. Only its five statistics.
- :func:`interleave`: alternate several timed callables round by round, so that all of them
  meet the same host noise; the best round of each and the median of per-round ratios.
"""

from __future__ import annotations

import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Dict, List, Sequence

import numpy as np

#: bytes of the default outputs per unit: seven float64, two int32, one bool
OUTPUT_BYTES_PER_UNIT = 7 * 8 + 2 * 4 + 1


class RawPass:
    """Sum the input's bytes (as float32) and fill an output-sized buffer, with ``threads`` threads.

    Example:
        >>> raw = RawPass("benches/data/x.npy", units=1_000_000, threads=2)  # doctest: +SKIP
        >>> raw()  # doctest: +SKIP
    """

    def __init__(self, path: str, units: int, threads: int = 1) -> None:
        mapped = np.load(path, mmap_mode="r")
        offset = mapped.offset
        nbytes = mapped.nbytes
        self.data = np.memmap(path, dtype=np.float32, mode="r", offset=offset, shape=(nbytes // 4,))
        self.data.sum()  # mapped and in the page cache
        self.out = np.empty(units * OUTPUT_BYTES_PER_UNIT // 8, dtype=np.float64)
        self.out.fill(1.0)  # touched: the pages exist
        self.threads = threads
        self.pool = ThreadPoolExecutor(threads) if threads > 1 else None
        self.nbytes = nbytes + self.out.nbytes

    def _part(self, index: int) -> None:
        n, m = len(self.data), len(self.out)
        self.data[n * index // self.threads : n * (index + 1) // self.threads].sum()
        self.out[m * index // self.threads : m * (index + 1) // self.threads].fill(0.5)

    def __call__(self) -> None:
        if self.pool is None:
            self.data.sum()
            self.out.fill(0.5)
        else:
            list(self.pool.map(self._part, range(self.threads)))


def fast_numpy(path: str, labels: np.ndarray, task: str = "multiclass", chunk: int = 32_768) -> Dict[str, np.ndarray]:
    """The ten default statistics (argmax for multiclass, threshold 0.5 otherwise), ddof 0."""
    probs = np.load(path, mmap_mode="r")
    n_epochs, n_examples, n_labels = probs.shape
    units_shape = (n_examples, n_labels) if task == "multilabel" else (n_examples,)
    # shifted sums (d = p - p at the first epoch): the variance does not cancel away
    shift = np.zeros(units_shape, np.float32)
    sum_d = np.zeros(units_shape)
    sum_d2 = np.zeros(units_shape)
    margin = np.zeros(units_shape)
    el2n = np.zeros(units_shape)
    right_count = np.zeros(units_shape, np.int32)
    forgetting = np.zeros(units_shape, np.int32)
    last_wrong = np.full(units_shape, -1, np.int32)
    last_right = np.zeros(units_shape, bool)
    for start in range(0, n_examples, chunk):
        stop = min(start + chunk, n_examples)
        part = slice(start, stop)
        gold = labels[part]
        width = (stop - start, n_labels) if task == "multilabel" else (stop - start,)
        p = np.empty(width, np.float32)
        right = np.empty(width, bool)
        work = np.empty(width, np.float32)
        if task == "multiclass":
            others = np.empty((stop - start, n_labels), np.float32)
            gold_index = gold[:, None]
        for e in range(n_epochs):
            rows = probs[e, part]  # a view of the mapping, in its stored dtype
            if task == "multiclass":
                p[:] = np.take_along_axis(rows, gold_index, axis=1)[:, 0]
                np.copyto(others, rows, casting="unsafe")
                np.put_along_axis(others, gold_index, -1.0, axis=1)
                other = others.max(axis=1)
                np.greater(p, other, out=right)
                np.subtract(p, other, out=work)
                margin[part] += work
                # sum of squares of the others, then the gold column's (p - 1)^2
                np.maximum(others, 0.0, out=others)
                np.square(others, out=others)
                squares = others.sum(axis=1)
                np.subtract(1.0, p, out=work)
                np.square(work, out=work)
                squares += work
                np.sqrt(squares, out=squares)
                el2n[part] += squares
            else:
                x = rows if task == "multilabel" else rows[:, 0]
                g = gold == 1
                np.subtract(1.0, x, out=work)
                np.copyto(p, x, where=g, casting="unsafe")
                np.copyto(p, work, where=~g)
                np.greater_equal(p, 0.5, out=right)
            if e == 0:
                shift[part] = p
            np.subtract(p, shift[part], out=work)
            sum_d[part] += work
            np.square(work, out=work)
            sum_d2[part] += work
            right_count[part] += right
            forgetting[part] += last_right[part] & ~right
            np.copyto(last_wrong[part], e, where=~right)
            last_right[part] = right
    mean_d = sum_d / n_epochs
    confidence = shift + mean_d
    variance = np.maximum(sum_d2 / n_epochs - mean_d**2, 0.0)
    closeness = confidence * (1.0 - confidence)
    if task != "multiclass":
        margin = (2.0 * confidence - 1.0) * n_epochs
        el2n = (1.0 - confidence) * np.sqrt(2.0) * n_epochs
    return {
        "confidence": confidence,
        "variability": np.sqrt(variance),
        "correctness": right_count / n_epochs,
        "forgetting": forgetting,
        "never_learned": right_count == 0,
        "first_learned": np.where(last_right, last_wrong + 1, -1).astype(np.int32),
        "threshold_closeness": closeness,
        "margin": margin / n_epochs,
        "aleatoric": np.maximum(closeness - variance, 0.0),
        "el2n": el2n / n_epochs,
    }


def cartography_records(path: str, labels: np.ndarray, n_examples: int) -> Dict[int, dict]:
    """The original code's input for the first ``n_examples``: per example its gold label and
    one logit list per epoch (it logs logits; log-probabilities are logits of the same softmax)."""
    probs = np.asarray(np.load(path, mmap_mode="r")[:, :n_examples], dtype=np.float64)
    logits = np.log(np.maximum(probs, 1e-30))
    return {i: {"gold": int(labels[i]), "logits": logits[:, i].tolist()} for i in range(n_examples)}


def cartography_loop(records: Dict[int, dict]) -> Dict[str, Dict[int, float]]:
    """Per example, per epoch: softmax, the gold probability, argmax == gold; then the trends'
    mean, std, sum and forgetting count, the way ``train_dy_filtering.py`` goes about it."""
    metrics: Dict[str, Dict[int, float]] = {k: {} for k in ("confidence", "variability", "correctness", "forgetfulness", "threshold_closeness")}
    for guid, record in records.items():
        gold = record["gold"]
        gold_probs: List[float] = []
        verdicts: List[bool] = []
        for epoch_logits in record["logits"]:
            z = np.asarray(epoch_logits)
            e = np.exp(z - z.max())
            gold_probs.append(float(e[gold] / e.sum()))
            verdicts.append(bool(np.argmax(epoch_logits) == gold))
        forgotten, learnt = 0, False
        for right in verdicts:
            forgotten += learnt and not right
            learnt = right
        confidence = float(np.mean(gold_probs))
        metrics["confidence"][guid] = confidence
        metrics["variability"][guid] = float(np.std(gold_probs))
        metrics["correctness"][guid] = sum(verdicts)
        metrics["forgetfulness"][guid] = forgotten if any(verdicts) else 1000
        metrics["threshold_closeness"][guid] = confidence * (1 - confidence)
    return metrics


def interleave(runs: Dict[str, Callable[[], object]], rounds: int) -> Dict[str, List[float]]:
    """Seconds of each run per round, the runs alternating within every round (after one warm-up round)."""
    for run in runs.values():
        run()
    times: Dict[str, List[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return times


def median_ratio(ours: Sequence[float], base: Sequence[float]) -> float:
    """The median over rounds of ``ours / base`` (rounds paired in time)."""
    return statistics.median(o / b for o, b in zip(ours, base))
