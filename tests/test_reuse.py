"""What one call leaves for the next: recycled output blocks and the kept file mapping.

``compute`` keeps freed output blocks of at least 1 MiB for the next call (``rust/recycle.rs``)
and the last file mapping for the next read of the same file (``rust/mapcache.rs``). Both must
be invisible in the results: a recycled block still holds the previous call's values, and a
kept mapping must show the file's current bytes. The background thread that lets go of a kept
mapping must let go (a deleted file's space comes back), and a forked child must be able to
compute (the parent's worker threads do not exist there).
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import datacarto as dc
from datacarto import _core, reference

from _helpers import child_env

#: Examples per file: each float64 output is 1.6 MB, above the 1 MiB recycling floor.
N = 200_000
#: Another size, also recycled, for a call in between.
OTHER_N = 150_000
LARGE = 1 << 20
#: Oracle tolerance (as in test_properties.py): floats within RTOL or ATOL, the rest exact.
RTOL, ATOL = 1e-9, 1e-12
#: How long a child process may take before the test calls it hung (a liveness bound only).
CHILD_TIMEOUT = 120


def write_dynamics(path: Path, n: int, seed: int, n_labels: int = 3) -> tuple:
    """A float32 dynamics file [3, n, n_labels] of random rows (with exact ties) and its labels."""
    rng = np.random.default_rng(seed)
    probs = rng.random((3, n, n_labels)).astype(np.float32)
    probs[rng.random(probs.shape) < 0.1] = 0.5
    np.save(path, probs)
    return probs, rng.integers(0, n_labels, n)


def assert_matches_oracle(got: dc.Statistics, probs: np.ndarray, labels: np.ndarray) -> None:
    """Every statistic equals the numpy reference's on the same values."""
    want = reference.compute(probs, labels)
    for name in dc.STATISTICS:
        a, b = getattr(got, name), getattr(want, name)
        assert a.dtype == b.dtype and a.shape == b.shape, name
        if a.dtype.kind == "f":
            np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL, err_msg=name)
        else:
            np.testing.assert_array_equal(a, b, err_msg=name)


def snapshot(stats: dc.Statistics) -> dict:
    """Copies of every output (numpy's memory, not the recycled blocks)."""
    return {name: np.array(getattr(stats, name), copy=True) for name in dc.STATISTICS}


def assert_identical(stats: dc.Statistics, saved: dict) -> None:
    for name in dc.STATISTICS:
        np.testing.assert_array_equal(getattr(stats, name), saved[name], err_msg=name)


def large_outputs(stats: dc.Statistics) -> int:
    return sum(getattr(stats, name).nbytes >= LARGE for name in dc.STATISTICS)


def hits() -> int:
    return _core._recycled_blocks()[1]


def test_recycled_blocks_are_overwritten_by_every_call(tmp_path: Path) -> None:
    """Calls of the same size reuse the previous outputs' blocks, and every output is written
    over: a call on other values returns its own values, not those left in the blocks."""
    probs_a, labels_a = write_dynamics(tmp_path / "a.npy", N, seed=1)
    probs_b, labels_b = write_dynamics(tmp_path / "b.npy", N, seed=2)
    probs_c, labels_c = write_dynamics(tmp_path / "c.npy", OTHER_N, seed=3)

    first = dc.compute(tmp_path / "a.npy", labels_a)
    assert large_outputs(first) == 7  # the float64 outputs; int32 and bool ones are smaller
    assert_matches_oracle(first, probs_a, labels_a)
    saved_a = snapshot(first)
    del first
    gc.collect()
    assert _core._recycled_blocks()[0] >= 7

    # other values, same size: served from blocks that hold the first call's results
    before = hits()
    other = dc.compute(tmp_path / "b.npy", labels_b)
    assert hits() - before >= large_outputs(other)
    assert_matches_oracle(other, probs_b, labels_b)
    assert not np.array_equal(other.confidence, saved_a["confidence"])
    saved_b = snapshot(other)
    del other
    gc.collect()

    # the first file again, from blocks holding the second's results: the same bits as before
    before = hits()
    again = dc.compute(tmp_path / "a.npy", labels_a)
    assert hits() - before >= large_outputs(again)
    assert_identical(again, saved_a)
    del again
    gc.collect()

    # another size in between (its own blocks), then back
    between = dc.compute(tmp_path / "c.npy", labels_c)
    assert_matches_oracle(between, probs_c, labels_c)
    del between
    gc.collect()
    before = hits()
    back = dc.compute(tmp_path / "b.npy", labels_b)
    assert hits() - before >= large_outputs(back)
    assert_identical(back, saved_b)
    before = hits()
    held = dc.compute(tmp_path / "a.npy", labels_a)  # `back` still held: its blocks are not free
    assert_identical(held, saved_a)
    assert_identical(back, saved_b)
    assert hits() - before <= large_outputs(held)


def test_a_file_rewritten_in_place_or_replaced_gives_its_new_values(tmp_path: Path) -> None:
    """The kept mapping of a file shows its current bytes: after np.save over it (same inode)
    and after a rename over it (new inode), compute returns the new values' statistics."""
    path = tmp_path / "dynamics.npy"
    rng = np.random.default_rng(7)
    labels = rng.integers(0, 4, 5000)
    versions = [rng.random((3, 5000, 4)).astype(np.float32) for _ in range(4)]

    np.save(path, versions[0])
    inode = path.stat().st_ino
    assert_matches_oracle(dc.compute(path, labels), versions[0], labels)

    np.save(path, versions[1])  # truncated and written again: the same inode, the same length
    assert path.stat().st_ino == inode
    assert_matches_oracle(dc.compute(path, labels), versions[1], labels)

    # the same byte length and inode, another shape: the header is read again
    reshaped = versions[2].reshape(3, 4, 5000)
    np.save(path, reshaped)
    assert path.stat().st_ino == inode
    wide_labels = rng.integers(0, 5000, 4)
    assert_matches_oracle(dc.compute(path, wide_labels), reshaped, wide_labels)

    replacement = tmp_path / "replacement.npy"
    np.save(replacement, versions[3])
    os.replace(replacement, path)  # another inode at the path
    assert path.stat().st_ino != inode
    assert_matches_oracle(dc.compute(path, labels), versions[3], labels)


def run_child(script: str) -> subprocess.CompletedProcess:
    """Run `script` in a fresh interpreter (its own mappings and threads) with this datacarto."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(script)], env=child_env(), capture_output=True, text=True, timeout=CHILD_TIMEOUT)


def test_a_deleted_file_is_unmapped_soon_after_its_last_read(tmp_path: Path) -> None:
    """The kept mapping is let go once unused, so a deleted file's space comes back: polled in
    a child process (up to 30 s, a liveness bound, not a speed requirement)."""
    script = f"""
        import os, time
        import numpy as np
        import datacarto as dc

        path = {str(tmp_path / "deleted.npy")!r}
        np.save(path, np.full((2, 50_000, 3), 1 / 3, dtype=np.float32))
        start = time.monotonic()
        dc.compute(path, np.zeros(50_000, dtype=np.int64))

        def mapped():
            with open("/proc/self/maps") as maps:
                return any(path in line for line in maps)

        # kept for KEEP (2 s) after its last use: still mapped unless this process stalled
        if time.monotonic() - start < 1.5:
            assert mapped(), "the mapping was not kept"
        os.remove(path)
        deadline = time.monotonic() + 30
        while mapped():
            assert time.monotonic() < deadline, "the deleted file is still mapped after 30 s"
            time.sleep(0.05)
        print("released")
    """
    result = run_child(script)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "released"


def test_a_forked_child_computes_without_hanging(tmp_path: Path) -> None:
    """After fork the child has none of the parent's worker threads (those of rayon's global
    pool, and of the pool kept for ``threads=2``): it computes on the parent's kept file (the
    mapping reused, and let go once unused, by a thread of the child's), on another file and on
    an array; the parent computes on after it. Without the child's own pools (rust/pools.rs)
    the child's first call waited forever for the parent's rayon workers."""
    script = f"""
        import os, time
        import numpy as np
        import datacarto as dc
        from datacarto import reference

        first, second = {str(tmp_path / "first.npy")!r}, {str(tmp_path / "second.npy")!r}
        rng = np.random.default_rng(3)
        probs = [rng.random((3, 20_000, 4)).astype(np.float32) for _ in range(2)]
        labels = rng.integers(0, 4, 20_000)
        np.save(first, probs[0])
        np.save(second, probs[1])
        parent = dc.compute(first, labels)

        def same(a, b):
            return all(np.array_equal(getattr(a, s), getattr(b, s)) for s in dc.STATISTICS)

        def close(got, values):
            want = reference.compute(values, labels)
            return all(np.allclose(getattr(got, s), getattr(want, s), rtol=1e-9, atol=1e-12) for s in dc.STATISTICS)

        # a kept pool of two workers, whose threads the child will not have
        assert same(dc.compute(probs[0], labels, threads=2), parent)
        pid = os.fork()
        if pid == 0:
            status = 1
            try:
                # the parent's kept mapping, reused: no thread of the parent's runs here to let
                # go of it, the child's own must
                ok = same(dc.compute(first, labels), parent)
                deadline = time.monotonic() + 30
                while any(first in line for line in open("/proc/self/maps")):
                    if time.monotonic() > deadline:
                        print("child: the kept mapping was never let go", flush=True)
                        ok = False
                        break
                    time.sleep(0.05)
                ok &= close(dc.compute(second, labels), probs[1])
                ok &= same(dc.compute(probs[0], labels, threads=2), parent)
                ok &= same(dc.compute(first, labels), parent)
                status = 0 if ok else 3
            finally:
                os._exit(status)
        assert same(dc.compute(first, labels), parent)
        deadline = time.monotonic() + {CHILD_TIMEOUT - 30}
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
                raise SystemExit("the forked child hung")
            time.sleep(0.05)
        assert os.waitstatus_to_exitcode(status) == 0, os.waitstatus_to_exitcode(status)
        assert close(dc.compute(second, labels), probs[1])
        print("ok")
    """
    result = run_child(script)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "ok"


def test_labels_are_copied_whatever_their_memory(tmp_path):
    """The labels' private copy (made by the core when it can) is exact, read-only and not the
    caller's memory, for aligned, unaligned, strided and multilabel labels alike."""
    rng = np.random.default_rng(3)
    probs = rng.dirichlet(np.ones(4), size=(3, 50)).astype(np.float32)
    np.save(tmp_path / "d.npy", probs)
    classes = rng.integers(0, 4, 50)
    unaligned = np.frombuffer(b"\x00" + classes.astype(np.int64).tobytes(), dtype=np.int64, offset=1)
    assert not unaligned.flags.aligned
    strided = np.repeat(classes, 2)[::2]
    expected = dc.compute(tmp_path / "d.npy", classes.copy())
    for labels in (classes, unaligned, strided, classes.astype(np.int32)):
        stats = dc.compute(tmp_path / "d.npy", labels)
        assert np.array_equal(stats.labels, classes) and not stats.labels.flags.writeable
        assert not np.shares_memory(stats.labels, labels)
        if labels is classes:  # aligned int64: the core's private copy, kept as it is (no second copy)
            assert not stats.labels.flags.owndata
        assert_identical(stats, snapshot(expected))
    targets = (rng.random((50, 4)) < 0.3).astype(np.uint8)
    multilabel = dc.compute(tmp_path / "d.npy", targets, task="multilabel")
    assert np.array_equal(multilabel.labels, targets) and not multilabel.labels.flags.writeable
    assert not np.shares_memory(multilabel.labels, targets)
    assert not multilabel.labels.flags.owndata  # the core's copy, kept as it is (a read-only [N, L] view)


@pytest.mark.parametrize("n", [131_071, 131_072, 131_073, 1_000_003])
def test_large_labels_are_copied_exactly_by_the_pool(n):
    """Labels of more than 1 MiB are copied by the worker threads in 1 MiB pieces: the copy is
    exact at every piece boundary (and a partial last piece), for class indices and 0/1
    targets, and the statistics computed from it are the ones computed from the original."""
    rng = np.random.default_rng(n)
    classes = rng.integers(-(2**62), 2**62, n)
    copy = _core._copy_labels(classes)
    assert copy.dtype == np.int64 and np.array_equal(copy, classes) and not np.shares_memory(copy, classes)
    targets = (rng.random((n // 7 + 1, 9)) < 0.5).astype(np.uint8)
    copy = _core._copy_labels(targets)
    assert copy.shape == targets.shape and np.array_equal(copy, targets)
    probs = rng.random((2, n, 1)).astype(np.float32)
    gold = rng.integers(0, 2, n)
    stats = dc.compute(probs, gold, task="binary")
    assert np.array_equal(stats.labels, gold)
    assert_identical(stats, snapshot(dc.compute(probs, gold.astype(np.int32), task="binary")))
