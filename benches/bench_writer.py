"""Cost of recording one epoch with DynamicsWriter against numpy.save of the same block.

    pytest benches/bench_writer.py --benchmark-only -s

One epoch is ``[200_000, 28]`` float32 (22.4 MB, GoEmotions-sized label count on a large
training set). Every variant runs in this process on the same block; the summary prints each
one's best round and its ratio to ``numpy.save``. ``np.save`` does not fsync, so the fair pair
is ``write_epoch (fsync=False)`` vs ``np.save``, and ``write_epoch (fsync=True)`` (the default)
vs ``np.save + fsync``. Nothing here asserts a time.
"""

from __future__ import annotations

import itertools
import os

import numpy as np
import pytest

import datacarto as dc
from conftest import NOTES, RESULTS

N, L = 200_000, 28
GROUP = f"writer: one epoch [{N}, {L}] float32"
BASELINE = "np.save"
ROUNDS = 12


@pytest.fixture(scope="module")
def block() -> np.ndarray:
    return np.random.default_rng(0).dirichlet(np.ones(L), N).astype(np.float32)


def _note(name: str) -> None:
    base = RESULTS.get((GROUP, BASELINE))
    synced = RESULTS.get((GROUP, "np.save + fsync"))
    mine = RESULTS.get((GROUP, name))
    if base and mine:
        extra = f", {mine / synced:.2f}x np.save + fsync" if synced and "fsync=True" in name else ""
        NOTES[f"{name} vs np.save"] = f"{mine / base:.2f}x{extra}"


def _fresh_paths(tmp_path):
    # One new file per epoch, as a loop saving each epoch with np.save does: like the writer,
    # every round adds 22 MB of new dirty pages (overwriting one file would let the kernel drop
    # the previous round's pages unwritten).
    return (tmp_path / f"epoch_{i}.npy" for i in itertools.count())


def test_numpy_save(benchmark, remember, tmp_path, block) -> None:
    paths = _fresh_paths(tmp_path)
    benchmark.pedantic(lambda: np.save(next(paths), block), rounds=ROUNDS, warmup_rounds=2)
    remember(benchmark, GROUP, BASELINE)


def test_numpy_save_fsync(benchmark, remember, tmp_path, block) -> None:
    paths = _fresh_paths(tmp_path)

    def save_synced() -> None:
        with open(next(paths), "wb") as f:
            np.save(f, block)
            f.flush()
            os.fsync(f.fileno())

    benchmark.pedantic(save_synced, rounds=ROUNDS, warmup_rounds=2)
    remember(benchmark, GROUP, "np.save + fsync")


@pytest.mark.parametrize("fsync", [False, True], ids=["no-fsync", "fsync"])
def test_write_epoch(benchmark, remember, tmp_path, block, fsync) -> None:
    name = f"write_epoch (fsync={fsync})"
    with dc.DynamicsWriter(tmp_path / "w.npy", N, L, fsync=fsync) as writer:
        benchmark.pedantic(lambda: writer.write_epoch(block), rounds=ROUNDS, warmup_rounds=2)
    remember(benchmark, GROUP, name)
    _note(name)


def test_write_epoch_from_float64(benchmark, remember, tmp_path, block) -> None:
    wide = block.astype(np.float64)  # what predict_proba returns: converted on the way
    name = "write_epoch float64 input (fsync=False)"
    with dc.DynamicsWriter(tmp_path / "w64.npy", N, L, fsync=False) as writer:
        benchmark.pedantic(lambda: writer.write_epoch(wide), rounds=ROUNDS, warmup_rounds=2)
    remember(benchmark, GROUP, name)
    _note(name)


def test_write_shuffled_batches(benchmark, remember, tmp_path, block) -> None:
    order = np.random.default_rng(1).permutation(N)
    batches = [(idx, block[idx]) for idx in np.array_split(order, N // 256)]
    name = "write_batch x782 + commit (fsync=False)"

    def epoch(writer: dc.DynamicsWriter) -> None:
        for idx, rows in batches:
            writer.write_batch(idx, rows)
        writer.commit_epoch()

    with dc.DynamicsWriter(tmp_path / "b.npy", N, L, fsync=False) as writer:
        benchmark.pedantic(lambda: epoch(writer), rounds=5, warmup_rounds=1)
    remember(benchmark, GROUP, name)
    _note(name)
