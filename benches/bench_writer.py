"""Cost of recording one epoch with DynamicsWriter against numpy.save of the same block.

    pytest benches/bench_writer.py --benchmark-only -s

One epoch is ``[200_000, 28]`` float32 (22.4 MB: GoEmotions' 28 labels on a large training
set). Every variant runs in this process on the same block; the summary prints each one's
best round and the ratios. ``np.save`` does not fsync, so the fair pairs are
``write_epoch (fsync=False)`` vs ``np.save`` and ``write_epoch (fsync=True)`` (the default)
vs ``np.save + fsync``. Both also run in tmpfs (``/dev/shm``), where no disk writeback
interferes and the writer's own CPU cost (one validation pass over the values) shows.
Nothing here asserts a time.
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest

import datacarto as dc
from conftest import NOTES, RESULTS

N, L = 200_000, 28
ROUNDS = 12
BASELINE = "np.save"


def group(location: str) -> str:
    return f"writer ({location}): one epoch [{N}, {L}] float32"


@pytest.fixture(scope="module")
def block() -> np.ndarray:
    return np.random.default_rng(0).dirichlet(np.ones(L), N).astype(np.float32)


@pytest.fixture(params=["disk", "tmpfs"])
def location(request, tmp_path):
    if request.param == "disk":
        yield request.param, tmp_path
        return
    if not os.path.isdir("/dev/shm"):
        pytest.skip("no /dev/shm")
    folder = tempfile.mkdtemp(dir="/dev/shm", prefix="datacarto-bench-")
    yield request.param, Path(folder)
    shutil.rmtree(folder)


def _fresh_paths(folder: Path):
    # One new file per epoch, as a loop saving each epoch with np.save does: like the writer,
    # every round adds 22 MB of new dirty pages (overwriting one file would let the kernel drop
    # the previous round's pages unwritten).
    return (folder / f"epoch_{i}.npy" for i in itertools.count())


def _note(where: str, name: str) -> None:
    rows = {n: t for (g, n), t in RESULTS.items() if g == group(where)}
    if BASELINE in rows and name in rows:
        extra = f", {rows[name] / rows['np.save + fsync']:.2f}x np.save + fsync" if "fsync=True" in name and "np.save + fsync" in rows else ""
        NOTES[f"{where}: {name} vs np.save"] = f"{rows[name] / rows[BASELINE]:.2f}x{extra}"


def test_numpy_save(benchmark, remember, location, block) -> None:
    where, folder = location
    paths = _fresh_paths(folder)
    benchmark.pedantic(lambda: np.save(next(paths), block), rounds=ROUNDS, warmup_rounds=2)
    remember(benchmark, group(where), BASELINE)


def test_numpy_save_fsync(benchmark, remember, tmp_path, block) -> None:
    paths = _fresh_paths(tmp_path)

    def save_synced() -> None:
        with open(next(paths), "wb") as f:
            np.save(f, block)
            f.flush()
            os.fsync(f.fileno())

    benchmark.pedantic(save_synced, rounds=ROUNDS, warmup_rounds=2)
    remember(benchmark, group("disk"), "np.save + fsync")


@pytest.mark.parametrize("fsync", [False, True], ids=["no-fsync", "fsync"])
def test_write_epoch(benchmark, remember, location, block, fsync) -> None:
    where, folder = location
    if where == "tmpfs" and fsync:
        pytest.skip("fsync is a no-op in tmpfs")
    name = f"write_epoch (fsync={fsync})"
    with dc.DynamicsWriter(folder / "w.npy", N, L, fsync=fsync) as writer:
        benchmark.pedantic(lambda: writer.write_epoch(block), rounds=ROUNDS, warmup_rounds=2)
    remember(benchmark, group(where), name)
    _note(where, name)


def test_write_epoch_from_float64(benchmark, remember, tmp_path, block) -> None:
    wide = block.astype(np.float64)  # what predict_proba returns: converted on the way
    name = "write_epoch float64 input (fsync=False)"
    with dc.DynamicsWriter(tmp_path / "w64.npy", N, L, fsync=False) as writer:
        benchmark.pedantic(lambda: writer.write_epoch(wide), rounds=ROUNDS, warmup_rounds=2)
    remember(benchmark, group("disk"), name)
    _note("disk", name)


def test_write_shuffled_batches(benchmark, remember, tmp_path, block) -> None:
    order = np.random.default_rng(1).permutation(N)
    batches = [(idx, block[idx]) for idx in np.array_split(order, N // 256)]
    name = f"write_batch x{len(batches)} + commit (fsync=False)"

    def epoch(writer: dc.DynamicsWriter) -> None:
        for idx, rows in batches:
            writer.write_batch(idx, rows)
        writer.commit_epoch()

    with dc.DynamicsWriter(tmp_path / "b.npy", N, L, fsync=False) as writer:
        benchmark.pedantic(lambda: epoch(writer), rounds=5, warmup_rounds=1)
    remember(benchmark, group("disk"), name)
    _note("disk", name)
