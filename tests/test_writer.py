"""DynamicsWriter: the growing, crash-safe dynamics file, and logits conversion."""

from __future__ import annotations

import ast
import os
import queue
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest
import scipy.special

import datacarto as dc
from datacarto import reference
from datacarto.writer import _header_bytes, _header_text

N, L = 50, 3


def epoch_probs(e: int, n: int = N, n_labels: int = L, dtype=np.float32) -> np.ndarray:
    """Deterministic probabilities of epoch ``e`` (the crash tests' child regenerates the same)."""
    return np.random.default_rng(e).dirichlet(np.ones(n_labels), n).astype(dtype)


# --- round trips ----------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16"])
def test_write_epoch_round_trips_through_numpy_and_the_core(tmp_path, dtype) -> None:
    path = tmp_path / "d.npy"
    want = np.stack([epoch_probs(e, dtype=np.float64) for e in range(4)]).astype(dtype)
    with dc.DynamicsWriter(path, N, L, dtype) as writer:
        assert writer.n_epochs == 0
        for e in range(4):
            writer.write_epoch(want[e].astype(np.float64))  # cast to the storage dtype on the way
            assert writer.n_epochs == e + 1
            np.testing.assert_array_equal(np.load(path), want[: e + 1])  # a reader sees committed epochs
    got = np.load(path)
    assert got.dtype == np.dtype(dtype).newbyteorder("<") and got.flags.c_contiguous
    np.testing.assert_array_equal(got, want)
    header = dc.read_header(path)
    assert header["shape"] == (4, N, L) and header["dtype"] == dtype
    assert header["data_offset"] % 64 == 0
    assert header["file_size"] == header["data_offset"] + want.nbytes  # no trailing bytes after close
    labels = np.random.default_rng(9).integers(0, L, N)
    fast, slow = dc.compute(path, labels), reference.compute(want, labels)
    np.testing.assert_allclose(fast.confidence, slow.confidence, atol=1e-6)
    np.testing.assert_allclose(fast.variability, slow.variability, atol=1e-6)


def test_shuffled_batches_give_the_same_file_as_whole_epochs(tmp_path) -> None:
    rng = np.random.default_rng(1)
    probs = np.stack([epoch_probs(e) for e in range(3)])
    with dc.DynamicsWriter(tmp_path / "b.npy", N, L) as writer:
        for e in range(3):
            order = rng.permutation(N)
            for chunk in np.array_split(order, 7):
                writer.write_batch(chunk, probs[e, chunk])
            assert writer.pending == N and writer.n_epochs == e
            writer.commit_epoch()
            assert writer.pending == 0
    np.testing.assert_array_equal(np.load(tmp_path / "b.npy"), probs)


def test_accepts_lists_tensors_ints_and_one_dimensional_binary(tmp_path) -> None:
    with dc.DynamicsWriter(tmp_path / "bin.npy", 3, 1) as writer:
        assert writer.task == "binary"
        writer.write_epoch([0.1, 0.5, 0.9])  # [N] for one column
        writer.write_epoch(np.array([[1], [0], [1]]))  # ints 0/1
        writer.write_batch(np.array([2, 0, 1], dtype=np.int32), [0.3, 0.2, 0.1])
        writer.commit_epoch()
    np.testing.assert_array_equal(np.load(tmp_path / "bin.npy")[..., 0], np.array([[0.1, 0.5, 0.9], [1, 0, 1], [0.2, 0.1, 0.3]], dtype=np.float32))

    torch = pytest.importorskip("torch")
    t = torch.tensor(epoch_probs(0), requires_grad=True)  # grad-carrying tensors are detached
    with dc.DynamicsWriter(tmp_path / "t.npy", N, L) as writer:
        writer.write_epoch(t)
        writer.write_batch(torch.arange(N), t.to(torch.bfloat16))  # bfloat16: numpy has none
        writer.commit_epoch()
    got = np.load(tmp_path / "t.npy")
    np.testing.assert_array_equal(got[0], epoch_probs(0))
    np.testing.assert_allclose(got[1], epoch_probs(0), atol=4e-3)


# --- coverage of an epoch filled by batches ---------------------------------------------------------


def test_commit_refuses_missing_and_duplicated_examples(tmp_path) -> None:
    path = tmp_path / "c.npy"
    p = epoch_probs(0)
    with dc.DynamicsWriter(path, N, L) as writer:
        writer.write_batch(np.arange(10, N), p[10:])
        with pytest.raises(dc.DatacartoError, match=r"epoch 0: .*10 example\(s\) never written \(first: 0\)"):
            writer.commit_epoch()
        assert writer.n_epochs == 0
        writer.write_batch(np.arange(0, 10), p[:10])  # fill the hole: the same epoch now commits
        writer.commit_epoch()

        writer.write_batch(np.arange(N), p)
        writer.write_batch([7, 7, 3], p[[7, 7, 3]])  # 7 three times, 3 twice
        with pytest.raises(dc.DatacartoError, match=r"2 written more than once \(first: 3, 2 times"):
            writer.commit_epoch()
        writer.discard_epoch()
        assert writer.pending == 0 and writer.n_epochs == 1
        with pytest.raises(dc.DatacartoError, match="never written"):  # mixing both kinds in one message
            writer.write_batch([1, 1], p[[1, 1]])
            writer.commit_epoch()
        with pytest.raises(dc.DatacartoError, match="write_batch"):
            writer.write_epoch(p)  # an epoch is in progress
        writer.discard_epoch()
        with pytest.raises(dc.DatacartoError, match="before commit_epoch"):
            writer.commit_epoch()
    np.testing.assert_array_equal(np.load(path), p[None])


def test_bad_indices_and_shapes(tmp_path) -> None:
    with dc.DynamicsWriter(tmp_path / "i.npy", N, L) as writer:
        with pytest.raises(dc.DatacartoError, match=r"indices: expected example indices in \[0, 50\), found 50"):
            writer.write_batch([0, 50], epoch_probs(0)[:2])
        with pytest.raises(dc.DatacartoError, match="found -1"):
            writer.write_batch([-1], epoch_probs(0)[:1])
        with pytest.raises(TypeError, match="indices: dtype"):
            writer.write_batch([0.0, 1.0], epoch_probs(0)[:2])
        with pytest.raises(dc.DatacartoError, match=r"shape: expected \[2, 3\], found \[3, 3\]"):
            writer.write_batch([0, 1], epoch_probs(0)[:3])
        with pytest.raises(dc.DatacartoError, match=r"shape: expected \[50, 3\], found \[50, 2\]"):
            writer.write_epoch(np.full((N, 2), 0.5))
        with pytest.raises(TypeError, match="dtype"):
            writer.write_epoch(np.full((N, L), "a"))
        assert writer.n_epochs == 0 and writer.pending == 0


# --- values: NaN, range, logits ----------------------------------------------------------------------


def test_nan_and_inf_raise_at_once_naming_epoch_example_and_label(tmp_path) -> None:
    with dc.DynamicsWriter(tmp_path / "n.npy", N, L) as writer:
        writer.write_epoch(epoch_probs(0))
        bad = epoch_probs(1)
        bad[17, 2] = np.nan
        with pytest.raises(dc.DatacartoError, match=r"epoch 1, example 17, label 2: expected finite values, found nan"):
            writer.write_epoch(bad)
        batch = epoch_probs(1)[:4]
        batch[3, 1] = np.inf
        # in a batch the message names the example index, not the row of the batch
        with pytest.raises(dc.DatacartoError, match=r"epoch 1, example 42, label 1: expected finite values, found inf"):
            writer.write_batch([5, 6, 7, 42], batch)
        assert writer.n_epochs == 1 and writer.pending == 0
    with dc.DynamicsWriter(tmp_path / "l.npy", N, L, inputs="logits") as writer:
        logits = np.zeros((2, L))
        logits[1, 0] = -np.inf
        with pytest.raises(dc.DatacartoError, match=r"logits: epoch 0, example 9, label 0: expected finite values, found -inf"):
            writer.write_batch([3, 9], logits)


def test_probabilities_outside_the_unit_interval(tmp_path) -> None:
    path = tmp_path / "r.npy"
    with dc.DynamicsWriter(path, 4, 2) as writer:
        with pytest.raises(dc.DatacartoError, match=r"example 2, label 1: expected a probability in \[0, 1\], found 1.5; pass inputs='logits'"):
            writer.write_epoch([[0.5, 0.5], [0.5, 0.5], [0.5, 1.5], [0.5, 0.5]])
        with pytest.raises(dc.DatacartoError, match=r"found -0.001"):
            writer.write_epoch([[0.5, 0.5], [-0.001, 1.0], [0.5, 0.5], [0.5, 0.5]])
        with pytest.raises(dc.DatacartoError, match=r"found 2"):
            writer.write_epoch([[0, 1], [1, 0], [2, 0], [0, 1]])
        # float rounding just outside [0, 1] is clipped into it
        writer.write_epoch(np.array([[1 + 1e-7, -1e-9], [0.3, 0.7], [0.5, 0.5], [0.0, 1.0]]))
    got = np.load(path)
    assert got[0, 0, 0] == 1.0 and got[0, 0, 1] == 0.0
    assert got.min() >= 0 and got.max() <= 1


def test_to_probabilities_matches_scipy() -> None:
    rng = np.random.default_rng(3)
    logits = rng.normal(0, 5, size=(40, 6))
    logits[0] = [1000.0, -1000.0, 0, 0, 0, 0]  # overflow-prone rows stay exact
    np.testing.assert_allclose(dc.to_probabilities(logits, "multiclass"), scipy.special.softmax(logits, axis=1), rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(dc.to_probabilities(logits, "multilabel"), scipy.special.expit(logits), rtol=1e-12, atol=1e-300)
    column = rng.normal(0, 30, size=(40, 1))
    np.testing.assert_allclose(dc.to_probabilities(column, "binary"), scipy.special.expit(column), rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(dc.to_probabilities(column[:, 0].astype(np.float16), "binary"), scipy.special.expit(column[:, 0].astype(np.float16).astype(float)), rtol=1e-12)
    assert dc.to_probabilities(logits).dtype == np.float64
    with pytest.raises(dc.DatacartoError, match="example 2, label 4"):
        bad = logits.copy()
        bad[2, 4] = np.nan
        dc.to_probabilities(bad)
    with pytest.raises(dc.DatacartoError, match="task='binary'"):
        dc.to_probabilities(column, "multiclass")
    with pytest.raises(dc.DatacartoError, match="task='multiclass'"):
        dc.to_probabilities(logits, "binary")
    with pytest.raises(dc.DatacartoError, match="task"):
        dc.to_probabilities(logits, "regression")


@pytest.mark.parametrize("task,n_labels", [("multiclass", 4), ("binary", 1), ("multilabel", 5)])
def test_logits_are_converted_in_float64_by_task(tmp_path, task, n_labels) -> None:
    rng = np.random.default_rng(4)
    logits = rng.normal(0, 4, size=(2, N, n_labels)).astype(np.float32)
    path = tmp_path / f"{task}.npy"
    with dc.DynamicsWriter(path, N, n_labels, "float64", task=task, inputs="logits") as writer:
        writer.write_epoch(logits[0])
        order = rng.permutation(N)
        for chunk in np.array_split(order, 3):
            writer.write_batch(chunk, logits[1, chunk])
        writer.commit_epoch()
    x = logits.astype(np.float64)
    want = scipy.special.softmax(x, axis=2) if task == "multiclass" else scipy.special.expit(x)
    np.testing.assert_allclose(np.load(path), want, rtol=1e-12)


def test_constructor_arguments_are_checked(tmp_path) -> None:
    with pytest.raises(dc.DatacartoError, match="n_examples"):
        dc.DynamicsWriter(tmp_path / "a.npy", 0, 2)
    with pytest.raises(dc.DatacartoError, match="n_labels"):
        dc.DynamicsWriter(tmp_path / "a.npy", 3, 2.0)
    with pytest.raises(dc.DatacartoError, match="dtype"):
        dc.DynamicsWriter(tmp_path / "a.npy", 3, 2, "int32")
    with pytest.raises(dc.DatacartoError, match="task"):
        dc.DynamicsWriter(tmp_path / "a.npy", 3, 2, task="binary")
    with pytest.raises(dc.DatacartoError, match="task"):
        dc.DynamicsWriter(tmp_path / "a.npy", 3, 1, task="multiclass")
    with pytest.raises(dc.DatacartoError, match="inputs"):
        dc.DynamicsWriter(tmp_path / "a.npy", 3, 2, inputs="scores")
    assert not (tmp_path / "a.npy").exists()  # nothing is created for a bad call


# --- never lose data: existing files, resume, locks, context manager ----------------------------------


def test_existing_files_are_never_overwritten_silently(tmp_path) -> None:
    path = tmp_path / "x.npy"
    with dc.DynamicsWriter(path, N, L) as writer:
        writer.write_epoch(epoch_probs(0))
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match="resume=True"):
        dc.DynamicsWriter(path, N, L)
    assert path.read_bytes() == before
    with dc.DynamicsWriter(path, N, L, overwrite=True) as writer:
        assert writer.n_epochs == 0
        writer.write_epoch(epoch_probs(5))
    np.testing.assert_array_equal(np.load(path), epoch_probs(5)[None])


def test_resume_checks_the_file_and_continues(tmp_path) -> None:
    path = tmp_path / "r.npy"
    with dc.DynamicsWriter(path, N, L, resume=True) as writer:  # no file yet: starts one
        writer.write_epoch(epoch_probs(0))
    for kwargs, field in [(dict(n_examples=N + 1, n_labels=L), "shape"), (dict(n_examples=N, n_labels=2), "shape"), (dict(n_examples=N, n_labels=L, dtype="float64"), "descr")]:
        with pytest.raises(dc.DatacartoError, match=f"{field}: expected"):
            dc.DynamicsWriter(path, resume=True, **kwargs)
    with dc.DynamicsWriter(path, N, L, resume=True) as writer:
        assert writer.n_epochs == 1
        writer.write_epoch(epoch_probs(1))
    np.testing.assert_array_equal(np.load(path), np.stack([epoch_probs(0), epoch_probs(1)]))

    empty = tmp_path / "empty.npy"
    dc.DynamicsWriter(empty, N, L).close()  # zero epochs: numpy reads it, the core refuses it
    assert np.load(empty).shape == (0, N, L)
    with pytest.raises(dc.DatacartoError, match="epochs"):
        dc.compute(empty, np.zeros(N, dtype=int))
    with dc.DynamicsWriter(empty, N, L, resume=True) as writer:
        assert writer.n_epochs == 0
        writer.write_epoch(epoch_probs(0))
    assert dc.compute(empty, np.zeros(N, dtype=int)).n_epochs == 1


def test_resume_cuts_a_partial_epoch_and_refuses_missing_data(tmp_path) -> None:
    path = tmp_path / "p.npy"
    with dc.DynamicsWriter(path, N, L) as writer:
        writer.write_epoch(epoch_probs(0))
    committed = path.stat().st_size
    with open(path, "ab") as f:  # what a crash mid-epoch leaves behind
        f.write(epoch_probs(9).tobytes()[:100])
    assert dc.compute(path, np.zeros(N, dtype=int)).n_epochs == 1  # trailing bytes are ignored
    with dc.DynamicsWriter(path, N, L, resume=True) as writer:
        assert path.stat().st_size == committed
        writer.write_epoch(epoch_probs(1))
    np.testing.assert_array_equal(np.load(path), np.stack([epoch_probs(0), epoch_probs(1)]))

    with open(path, "r+b") as f:
        f.truncate(committed - 8)  # the header promises more than the file holds
    with pytest.raises(dc.DatacartoError, match="truncated"):
        dc.DynamicsWriter(path, N, L, resume=True)
    with pytest.raises(dc.DatacartoError, match="header"):
        (tmp_path / "junk.npy").write_bytes(b"not a numpy file at all")
        dc.DynamicsWriter(tmp_path / "junk.npy", N, L, resume=True)


def test_resume_a_file_saved_by_numpy(tmp_path) -> None:
    path = tmp_path / "np.npy"
    np.save(path, np.stack([epoch_probs(0), epoch_probs(1)]))
    with dc.DynamicsWriter(path, N, L, resume=True) as writer:
        assert writer.n_epochs == 2
        writer.write_epoch(epoch_probs(2))
    np.testing.assert_array_equal(np.load(path), np.stack([epoch_probs(e) for e in range(3)]))
    np.save(path, np.asfortranarray(np.zeros((2, N, L), dtype=np.float32)))
    with pytest.raises(dc.DatacartoError, match="fortran_order"):
        dc.DynamicsWriter(path, N, L, resume=True)


def test_exception_inside_with_keeps_committed_epochs_only(tmp_path) -> None:
    path = tmp_path / "w.npy"
    with pytest.raises(RuntimeError):
        with dc.DynamicsWriter(path, N, L) as writer:
            writer.write_epoch(epoch_probs(0))
            writer.write_batch(np.arange(N), epoch_probs(1))  # complete, but never committed
            raise RuntimeError("training crashed")
    assert writer.closed
    np.testing.assert_array_equal(np.load(path), epoch_probs(0)[None])
    assert path.stat().st_size == dc.read_header(path)["data_offset"] + epoch_probs(0).nbytes
    with pytest.raises(dc.DatacartoError, match="closed"):
        writer.write_epoch(epoch_probs(0))
    writer.close()  # idempotent


def test_a_second_writer_on_the_same_file_is_refused(tmp_path) -> None:
    path = tmp_path / "lock.npy"
    with dc.DynamicsWriter(path, N, L) as writer:
        writer.write_epoch(epoch_probs(0))
        with pytest.raises(dc.DatacartoError, match="locked"):
            dc.DynamicsWriter(path, N, L, resume=True)
        with pytest.raises(dc.DatacartoError, match="locked"):
            dc.DynamicsWriter(path, N, L, overwrite=True)
        writer.write_epoch(epoch_probs(1))  # the refused writers touched nothing
    np.testing.assert_array_equal(np.load(path), np.stack([epoch_probs(0), epoch_probs(1)]))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX fork")
def test_a_forked_copy_of_the_writer_neither_writes_nor_truncates(tmp_path) -> None:
    path = tmp_path / "fork.npy"
    with dc.DynamicsWriter(path, N, L) as writer:
        writer.write_epoch(epoch_probs(0))
        writer.write_batch(np.arange(N // 2), epoch_probs(1)[: N // 2])  # an epoch in progress
        pid = os.fork()
        if pid == 0:  # the child: what a DataLoader worker inheriting the writer could do
            code = 1
            try:
                try:
                    writer.write_batch([N - 1], epoch_probs(1)[-1:])
                except dc.DatacartoError as exc:
                    code = 0 if "forked" in str(exc) else 2
                writer.close()  # lets go of its descriptor only
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.WEXITSTATUS(status) == 0
        writer.write_batch(np.arange(N // 2, N), epoch_probs(1)[N // 2:])  # the parent's epoch is intact
        writer.commit_epoch()
    np.testing.assert_array_equal(np.load(path), np.stack([epoch_probs(0), epoch_probs(1)]))


def test_docstring_examples() -> None:
    import doctest

    import datacarto.writer

    assert doctest.testmod(datacarto.writer).failed == 0


def test_a_torn_header_read_never_promises_uncommitted_epochs() -> None:
    """A reader that catches the header half-rewritten (old bytes mixed with new) gets a count
    of committed epochs, a count the file cannot hold (> E + 2), zero (refused), or a parse error."""
    dtype = np.dtype("<f4")
    for old in list(range(0, 25)) + [99, 109, 199, 999, 9999, 10**6 - 1, 123456789]:
        before = _header_bytes((old, 1000, 28), dtype)
        after = _header_bytes((old + 1, 1000, 28), dtype, len(before))
        assert len(after) == len(before)
        for cut in range(len(before) + 1):
            for torn in (after[:cut] + before[cut:], before[:cut] + after[cut:]):
                try:
                    shape = ast.literal_eval(torn[10:].decode("latin-1"))["shape"]
                except (SyntaxError, ValueError):
                    continue
                assert shape[1:] == (1000, 28)
                assert shape[0] <= old + 1 or shape[0] > old + 2, (old, cut, shape)
    assert "(                   7, 3, 2)" in _header_text((7, 3, 2), dtype, True)


# --- real crashes: a child process killed with SIGKILL ----------------------------------------------

CHILD = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    import datacarto as dc

    path, n, n_labels, mode, pause = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], float(sys.argv[5])
    writer = dc.DynamicsWriter(path, n, n_labels, resume=True)
    e = writer.n_epochs
    while True:
        probs = np.random.default_rng(e).dirichlet(np.ones(n_labels), n).astype(np.float32)
        if mode == "epoch":
            writer.write_epoch(probs)
        else:
            order = np.random.default_rng(1000 + e).permutation(n)
            for k, chunk in enumerate(np.array_split(order, 4)):
                writer.write_batch(chunk, probs[chunk])
                print(f"batch {e} {k}", flush=True)
                time.sleep(pause)
            writer.commit_epoch()
        print(f"committed {writer.n_epochs}", flush=True)
        e += 1
    """
)


class Child:
    """A writer process whose stdout lines are read in a thread (so waiting can time out)."""

    def __init__(self, path, n, n_labels, mode="batch", pause=0.0) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(path), str(n), str(n_labels), mode, str(pause)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        self.lines: "queue.Queue[str]" = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line.strip())
        self.lines.put("")

    def wait_for(self, text: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            if line == text:
                return
            if line == "":
                raise AssertionError(f"writer process ended: {self.proc.stderr.read()}")

    def wait_for_any(self, timeout: float = 60.0) -> str:
        line = self.lines.get(timeout=timeout)
        if line == "":
            raise AssertionError(f"writer process ended: {self.proc.stderr.read()}")
        return line

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)
        assert self.proc.returncode == -signal.SIGKILL


def expected(n_epochs: int, n: int, n_labels: int) -> np.ndarray:
    return np.stack([epoch_probs(e, n, n_labels) for e in range(n_epochs)]) if n_epochs else np.zeros((0, n, n_labels), np.float32)


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="POSIX signals")
def test_sigkill_mid_epoch_keeps_every_committed_epoch_and_resume_continues(tmp_path) -> None:
    n, n_labels = 4000, 5
    path = tmp_path / "crash.npy"
    child = Child(path, n, n_labels, "batch", pause=0.2)
    child.wait_for("committed 2")
    child.wait_for("batch 2 1")  # half of epoch 2 written, the rest to come after a pause
    child.kill()

    header = dc.read_header(path)
    assert header["shape"] == (2, n, n_labels)
    epoch_bytes = n * n_labels * 4
    assert header["file_size"] > header["data_offset"] + 2 * epoch_bytes  # the partial epoch is there...
    want = expected(2, n, n_labels)
    np.testing.assert_array_equal(np.load(path), want)  # ...and invisible
    labels = np.random.default_rng(5).integers(0, n_labels, n)
    stats, ref = dc.compute(path, labels), reference.compute(want, labels)
    assert stats.n_epochs == 2
    for name in ("confidence", "variability", "correctness", "margin"):
        np.testing.assert_allclose(getattr(stats, name), getattr(ref, name), atol=1e-6)

    with dc.DynamicsWriter(path, n, n_labels, resume=True) as writer:
        assert writer.n_epochs == 2
        assert os.path.getsize(path) == header["data_offset"] + 2 * epoch_bytes  # partial epoch cut
        writer.write_epoch(epoch_probs(2, n, n_labels))
    np.testing.assert_array_equal(np.load(path), expected(3, n, n_labels))
    assert dc.compute(path, labels).n_epochs == 3


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="POSIX signals")
def test_sigkill_at_random_moments_always_leaves_a_valid_file(tmp_path) -> None:
    """Kill, check, resume in a new process, kill again: at no moment is the file invalid."""
    n, n_labels = 3000, 4
    path = tmp_path / "random.npy"
    rng = np.random.default_rng(11)
    seen = []
    for round_ in range(4):
        child = Child(path, n, n_labels, "epoch" if round_ % 2 else "batch")
        # kill after a seeded number of progress lines (a batch, or a committed epoch): the moment
        # follows the child's work, not a clock, and an "epoch" round always commits one
        for _ in range(int(rng.integers(1, 6))):
            child.wait_for_any()
        child.kill()
        n_epochs = int(np.load(path, mmap_mode="r").shape[0])
        np.testing.assert_array_equal(np.load(path), expected(n_epochs, n, n_labels))
        if n_epochs:
            assert dc.compute(path, np.zeros(n, dtype=int)).n_epochs == n_epochs
        assert not seen or n_epochs >= seen[-1]  # resume never loses epochs
        seen.append(n_epochs)
    print('epochs after each kill:', seen)
    assert seen[-1] > seen[0], seen


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="POSIX signals")
def test_a_reader_during_training_sees_only_committed_epochs(tmp_path) -> None:
    n, n_labels = 20000, 4
    path = tmp_path / "live.npy"
    labels = np.random.default_rng(2).integers(0, n_labels, n)
    child = Child(path, n, n_labels, "batch", pause=0.01)
    child.wait_for("committed 1")
    counts = set()
    try:
        while len(counts) < 3:  # the child commits an epoch every few batches until it is killed
            assert child.proc.poll() is None, f"writer process ended: {child.proc.stderr.read()}"
            data = np.load(path)
            e = data.shape[0]
            counts.add(e)
            np.testing.assert_array_equal(data, expected(e, n, n_labels))
            stats = dc.compute(path, labels)  # memory-mapped by the core while the file grows
            assert stats.n_epochs >= e
            ref = reference.compute(expected(stats.n_epochs, n, n_labels), labels)
            np.testing.assert_allclose(stats.confidence, ref.confidence, atol=1e-6)
    finally:
        child.kill()
    print('epoch counts seen by the reader:', sorted(counts))
