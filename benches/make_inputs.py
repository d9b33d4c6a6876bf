"""Build the large dynamics files the benchmarks read (written once, reused).

Files go to ``benches/data/`` (git-ignored) or ``$DATACARTO_BENCH_DIR``. Each epoch is written
in slices so that building a 1 GiB file needs only a few MiB of memory.

    python benches/make_inputs.py            # the two headline files
    python benches/make_inputs.py --scaling  # plus N = 10k .. 10M, L = 2
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

DATA_DIR = Path(os.environ.get("DATACARTO_BENCH_DIR", Path(__file__).parent / "data"))
SLICE = 250_000


def dynamics_path(n_epochs: int, n_examples: int, n_labels: int, dtype: str = "float32") -> Path:
    return DATA_DIR / f"dynamics_{n_epochs}x{n_examples}x{n_labels}_{dtype}.npy"


def labels_path(n_examples: int, n_labels: int) -> Path:
    return DATA_DIR / f"labels_{n_examples}x{n_labels}.npy"


def build(n_epochs: int, n_examples: int, n_labels: int, dtype: str = "float32", seed: int = 0) -> Path:
    """Write random softmax rows drifting towards the gold label over the epochs."""
    path = dynamics_path(n_epochs, n_examples, n_labels, dtype)
    labels_file = labels_path(n_examples, n_labels)
    rng = np.random.default_rng(seed)
    if not labels_file.exists():
        DATA_DIR.mkdir(parents=True, exist_ok=True)
        np.save(labels_file, rng.integers(0, n_labels, size=n_examples, dtype=np.int64))
    if path.exists():
        return path
    labels = np.load(labels_file)
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    out = np.lib.format.open_memmap(partial, mode="w+", dtype=dtype, shape=(n_epochs, n_examples, n_labels))
    for epoch in range(n_epochs):
        for start in range(0, n_examples, SLICE):
            stop = min(start + SLICE, n_examples)
            logits = rng.standard_normal((stop - start, n_labels)).astype(np.float32)
            logits[np.arange(stop - start), labels[start:stop]] += 0.4 * epoch
            logits -= logits.max(axis=1, keepdims=True)
            probs = np.exp(logits)
            probs /= probs.sum(axis=1, keepdims=True)
            out[epoch, start:stop] = probs
    out.flush()
    del out
    partial.rename(path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scaling", action="store_true", help="also build the N = 10k .. 10M scaling files")
    args = parser.parse_args()
    for shape in [(10, 1_000_000, 28), (10, 1_000_000, 2)]:
        print(build(*shape))
    if args.scaling:
        for n in (10_000, 100_000, 1_000_000, 10_000_000):
            print(build(10, n, 2))


if __name__ == "__main__":
    main()
