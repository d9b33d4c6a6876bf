"""Build the large dynamics files the benchmarks read (written once, reused).

Files go to ``benches/data/`` (git-ignored) or ``$DATACARTO_BENCH_DIR``. Each epoch is written
in slices so that building a 1 GiB file needs only a few MiB of memory.

    python benches/make_inputs.py            # the headline files
    python benches/make_inputs.py --scaling  # plus bench_core.py's N = 10k .. 10M, L = 2
    python benches/make_inputs.py --matrix   # every file of bench_speed.py's matrix
    python benches/make_inputs.py --clean    # delete every built input
"""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path
from typing import Iterable, Tuple

import numpy as np

DATA_DIR = Path(os.environ.get("DATACARTO_BENCH_DIR", Path(__file__).parent / "data"))
SLICE = 250_000

Shape = Tuple[int, int, int]


def dynamics_path(n_epochs: int, n_examples: int, n_labels: int, dtype: str = "float32", task: str = "multiclass") -> Path:
    suffix = "" if task == "multiclass" else f"_{task}"
    return DATA_DIR / f"dynamics_{n_epochs}x{n_examples}x{n_labels}_{dtype}{suffix}.npy"


def labels_path(n_examples: int, n_labels: int, task: str = "multiclass") -> Path:
    suffix = "" if task == "multiclass" else f"_{task}"
    return DATA_DIR / f"labels_{n_examples}x{n_labels}{suffix}.npy"


def _labels(n_examples: int, n_labels: int, task: str, rng: np.random.Generator) -> np.ndarray:
    """Class indices ``[N]`` (multiclass, binary) or a 0/1 matrix ``[N, L]`` (multilabel)."""
    path = labels_path(n_examples, n_labels, task)
    if path.exists():
        return np.load(path)
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    if task == "multilabel":
        labels = (rng.random((n_examples, n_labels)) < 0.15).astype(np.uint8)
    else:
        labels = rng.integers(0, max(n_labels, 2), size=n_examples, dtype=np.int64)
    np.save(path, labels)
    return labels


def build(n_epochs: int, n_examples: int, n_labels: int, dtype: str = "float32", task: str = "multiclass", seed: int = 0) -> Path:
    """Write rows drifting towards the gold label over the epochs.

    Multiclass: softmax rows; binary (one column): P(class 1); multilabel: independent sigmoids.
    """
    path = dynamics_path(n_epochs, n_examples, n_labels, dtype, task)
    rng = np.random.default_rng(seed)
    labels = _labels(n_examples, n_labels, task, rng)
    if path.exists():
        return path
    partial = path.with_suffix(".partial")
    out = np.lib.format.open_memmap(partial, mode="w+", dtype=dtype, shape=(n_epochs, n_examples, n_labels))
    for epoch in range(n_epochs):
        for start in range(0, n_examples, SLICE):
            stop = min(start + SLICE, n_examples)
            logits = rng.standard_normal((stop - start, n_labels)).astype(np.float32)
            if task == "multiclass":
                logits[np.arange(stop - start), labels[start:stop]] += 0.4 * epoch
                logits -= logits.max(axis=1, keepdims=True)
                probs = np.exp(logits)
                probs /= probs.sum(axis=1, keepdims=True)
            else:
                gold = labels[start:stop] if task == "multilabel" else labels[start:stop, None]
                logits += np.where(gold == 1, 0.4, -0.4) * epoch
                probs = 1.0 / (1.0 + np.exp(-logits))
            out[epoch, start:stop] = probs
    out.flush()
    del out
    partial.rename(path)
    return path


def labels_for(shape: Shape, task: str = "multiclass") -> np.ndarray:
    return np.load(labels_path(shape[1], shape[2], task))


def clean() -> None:
    if DATA_DIR.exists():
        shutil.rmtree(DATA_DIR)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scaling", action="store_true", help="also build bench_core.py's N = 10k .. 10M, L = 2 files")
    parser.add_argument("--matrix", action="store_true", help="every input of bench_speed.py")
    parser.add_argument("--clean", action="store_true", help="delete every built input")
    args = parser.parse_args()
    if args.clean:
        clean()
        return
    inputs: Iterable = [((10, 1_000_000, 28), "float32", "multiclass"), ((10, 1_000_000, 2), "float32", "multiclass")]
    if args.scaling:
        inputs = list(inputs) + [((10, n, 2), "float32", "multiclass") for n in (10_000, 100_000, 1_000_000, 10_000_000)]
    if args.matrix:
        from inputs import all_inputs

        inputs = all_inputs()
    for shape, dtype, task in inputs:
        print(build(*shape, dtype=dtype, task=task))


if __name__ == "__main__":
    main()
