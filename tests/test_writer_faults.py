"""DynamicsWriter under real faults: full disks, SIGKILL, a second writer, readers of a replaced file.

Every fault is provoked for real, in a child process whose exit status is checked (a SIGBUS
shows as a negative return code): a 4 MiB tmpfs filled up by each write path, SIGKILL at random
moments, ``overwrite=True`` racing other writers (processes and threads) and readers that hold
the old file mapped, an importer killed or starved of space.

This file is also the child: ``python test_writer_faults.py <mode> <path> <n> <n_labels> ...``.
"""

from __future__ import annotations

import errno
import functools
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest

import datacarto as dc
from datacarto import reference

THIS_FILE = os.path.abspath(__file__)
TMPFS_BYTES = 4 << 20
FAULT_COUNTS: Dict[str, List[int]] = {}  # kind -> [provoked, survived, epochs lost]


@functools.lru_cache(maxsize=256)
def epoch_probs(e: int, n: int, n_labels: int) -> np.ndarray:
    """Deterministic probabilities of epoch ``e``: the child writes them, the parent expects them (read-only)."""
    probs = np.random.default_rng(e).dirichlet(np.ones(n_labels), n).astype(np.float32)
    probs.setflags(write=False)
    return probs


def expected(n_epochs: int, n: int, n_labels: int) -> np.ndarray:
    if not n_epochs:
        return np.zeros((0, n, n_labels), np.float32)
    return np.stack([epoch_probs(e, n, n_labels) for e in range(n_epochs)])


def tally(kind: str, survived: bool, lost: int = 0) -> None:
    counts = FAULT_COUNTS.setdefault(kind, [0, 0, 0])
    counts[0] += 1
    counts[1] += int(survived)
    counts[2] += lost


@pytest.fixture(scope="module", autouse=True)
def report_counts():
    yield
    for kind, (provoked, survived, lost) in FAULT_COUNTS.items():
        print(f"\n{kind}: {provoked} provoked, {survived} survived, {lost} epoch(s) lost")


# --- the child process ------------------------------------------------------------------------------


def _child_main(argv: List[str]) -> None:
    """Write epochs until the disk is full (or forever), reporting each commit on stdout.

    argv: mode path n n_labels [ballast] [fsync] [pause between batches, seconds]. On a full disk the child reports the error and
    the writer's state, checks that a retry fails the same clean way, frees the ballast file,
    writes the epoch again and closes: exit status 0.
    """
    mode, path, n, n_labels = argv[0], argv[1], int(argv[2]), int(argv[3])
    ballast = argv[4] if len(argv) > 4 else "-"
    fsync = (argv[5] == "1") if len(argv) > 5 else True
    pause = float(argv[6]) if len(argv) > 6 else 0.0

    def say(*words: object) -> None:
        print(*words, flush=True)

    if mode == "sklearn":
        _child_sklearn(path, n, n_labels, ballast, say)
        return
    if mode in ("torch", "torch-evaluate"):
        import torch

        recorder = dc.torch.Recorder(path, n, n_labels, inputs="probabilities", resume=True, fsync=fsync)
        writer = recorder.writer
    else:
        recorder = None
        writer = dc.DynamicsWriter(path, n, n_labels, resume=True, fsync=fsync)

    def write(e: int) -> None:
        probs = epoch_probs(e, n, n_labels)
        order = np.random.default_rng(1000 + e).permutation(n)
        batches = np.array_split(order, max(1, n // 512))
        if mode == "epoch":
            writer.write_epoch(probs)
        elif mode == "batch":
            for chunk in batches:
                writer.write_batch(chunk, probs[chunk])
                time.sleep(pause)  # a training step between batches
            writer.commit_epoch()
        elif mode == "torch":
            for chunk in batches:
                recorder.record(torch.from_numpy(chunk), torch.from_numpy(probs[chunk]))
                time.sleep(pause)
            recorder.end_epoch()
        elif mode == "torch-evaluate":
            loader = [(torch.from_numpy(chunk), torch.from_numpy(probs[chunk])) for chunk in batches]
            recorder.evaluate(torch.nn.Linear(1, 1), loader, forward=lambda model, batch: batch)
        else:
            raise SystemExit(f"unknown mode {mode}")

    say("ready", writer.n_epochs)
    for _ in range(500):
        e = writer.n_epochs
        try:
            write(e)
        except OSError as exc:
            say("oserror", exc.errno, writer.n_epochs, writer.pending, os.path.getsize(path))
            try:  # still full: the same clean error, the same state
                write(e)
            except OSError as again:
                say("again", again.errno, writer.n_epochs, writer.pending)
            if ballast != "-":
                os.remove(ballast)  # the user frees some space and tries the epoch again
                write(e)
                say("retried", writer.n_epochs)
            (recorder or writer).close()
            say("closed")
            return
        say("committed", writer.n_epochs)
    say("idle")  # never reached a full disk: wait to be killed
    time.sleep(600)


def _child_sklearn(path: str, n: int, n_labels: int, ballast: str, say) -> None:
    """dc.sklearn.record with predict_batch_size: the write_batch + commit_epoch path."""
    from sklearn.linear_model import SGDClassifier

    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, 4))
    y = np.arange(n) % n_labels
    try:
        dc.sklearn.record(
            SGDClassifier(loss="log_loss", random_state=0), X, y, epochs=500, path=path, predict_batch_size=512,
            callback=lambda epoch, _: say("committed", epoch + 1),
        )  # fmt: skip
    except OSError as exc:
        say("oserror", exc.errno, dc.read_header(path)["shape"][0], 0, os.path.getsize(path))
        say("closed")
        return
    say("finished")


# --- helpers for the parent -------------------------------------------------------------------------


class Child:
    """A child process of this file whose stdout lines are read in a thread (waits can time out)."""

    def __init__(self, *args: object) -> None:
        env = dict(os.environ, PYTHONFAULTHANDLER="1")
        self.proc = subprocess.Popen(
            [sys.executable, THIS_FILE, *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.PIPE, text=True, env=env
        )
        self.lines: "queue.Queue[str]" = queue.Queue()
        self.seen: List[str] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.strip())
        self.lines.put("")

    def wait_for(self, prefix: str, timeout: float = 120.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            self.seen.append(line)
            if line.startswith(prefix):
                return line
            if line == "":
                raise AssertionError(f"child ended (status {self.proc.wait()}) before {prefix!r}: {self.proc.stderr.read()}")  # type: ignore[union-attr]

    def finish(self, timeout: float = 120.0) -> List[str]:
        """Wait for the exit; return every stdout line; fail on a death by signal or an error."""
        self.proc.wait(timeout=timeout)
        while True:
            line = self.lines.get(timeout=timeout)
            if line == "":
                break
            self.seen.append(line)
        stderr = self.proc.stderr.read()  # type: ignore[union-attr]
        assert self.proc.returncode >= 0, f"child killed by signal {-self.proc.returncode} ({signal.Signals(-self.proc.returncode).name}): {stderr}"
        assert self.proc.returncode == 0, f"child failed with status {self.proc.returncode}: {stderr}"
        return self.seen

    def kill(self) -> List[str]:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=60)
        assert self.proc.returncode == -signal.SIGKILL
        while True:
            line = self.lines.get(timeout=60)
            if line == "":
                return self.seen
            self.seen.append(line)


def committed_reports(lines: List[str]) -> int:
    """The last epoch count the child reported as committed (0 if none)."""
    counts = [int(line.split()[1]) for line in lines if line.startswith("committed ")]
    return max(counts, default=0)


def assert_file_holds(path: Path, n_epochs: int, n: int, n_labels: int) -> None:
    """The file is valid and holds exactly the first ``n_epochs`` epochs, for numpy, the core and resume."""
    header = dc.read_header(path)
    assert header["shape"] == (n_epochs, n, n_labels)
    want = expected(n_epochs, n, n_labels)
    np.testing.assert_array_equal(np.load(path), want)
    if n_epochs:
        labels = np.arange(n) % n_labels
        stats, ref = dc.compute(path, labels), reference.compute(want, labels)
        assert stats.n_epochs == n_epochs
        np.testing.assert_allclose(stats.confidence, ref.confidence, atol=1e-6)
        np.testing.assert_allclose(stats.variability, ref.variability, atol=1e-6)
    with dc.DynamicsWriter(path, n, n_labels, resume=True) as writer:
        assert writer.n_epochs == n_epochs


def fill(path: Path) -> int:
    """Write zeros to ``path`` until the filesystem is full; return the bytes written."""
    written = 0
    with open(path, "wb", buffering=0) as f:
        chunk = bytes(64 << 10)
        while True:
            try:
                written += f.write(chunk)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
                break
        for size in (4096, 512, 64, 8, 1):  # the last pieces
            try:
                while True:
                    written += f.write(bytes(size))
            except OSError:
                pass
    return written


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 4 MiB tmpfs, mounted for the test and unmounted after it."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (CI runs the suite as root)")
    mount_point = tmp_path / "small_tmpfs"
    mount_point.mkdir()
    try:
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_BYTES}", "tmpfs", str(mount_point)], capture_output=True, text=True)
    except FileNotFoundError:
        pytest.skip("no mount command: cannot provoke a full disk here")
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (a container without CAP_SYS_ADMIN?): {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        if subprocess.run(["umount", str(mount_point)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mount_point)], capture_output=True)


# --- full disks ---------------------------------------------------------------------------------------

N_FULL, L_FULL = 10_000, 10  # 400 kB per epoch: about 9 epochs fill the 4 MiB tmpfs


@pytest.mark.parametrize("mode", ["epoch", "batch", "resume-epoch", "resume-batch", "torch", "torch-evaluate"])
def test_a_full_disk_raises_enospc_and_keeps_every_committed_epoch(small_tmpfs, mode) -> None:
    n, n_labels = N_FULL, L_FULL
    path = small_tmpfs / "dynamics.npy"
    ballast = small_tmpfs / "ballast"
    ballast.write_bytes(bytes(600 << 10))  # freed by the child after the first failure
    if mode.startswith("torch"):
        pytest.importorskip("torch")
    started = 0
    if mode.startswith("resume"):  # a file from an earlier run, resumed by the child
        with dc.DynamicsWriter(path, n, n_labels) as writer:
            for e in range(2):
                writer.write_epoch(epoch_probs(e, n, n_labels))
        started = 2
        mode = mode.split("-", 1)[1]
    child = Child(mode, path, n, n_labels, ballast)
    assert child.wait_for("ready") == f"ready {started}"
    lines = child.finish()  # exit status 0: no SIGBUS, no traceback

    failure = next(line for line in lines if line.startswith("oserror")).split()
    errno_, committed, pending = int(failure[1]), int(failure[2]), int(failure[3])
    assert errno_ == errno.ENOSPC
    assert committed == committed_reports(lines) >= started and committed >= 3  # the disk filled up after some epochs
    assert pending == 0  # a clear state: no epoch in progress
    assert int(failure[4]) == dc.read_header(path)["data_offset"] + committed * n * n_labels * 4  # the failed epoch was cut
    again = next(line for line in lines if line.startswith("again")).split()
    assert (int(again[1]), int(again[2]), int(again[3])) == (errno.ENOSPC, committed, 0)
    assert f"retried {committed + 1}" in lines and "closed" in lines
    assert_file_holds(path, committed + 1, n, n_labels)
    tally("full disk (child writing until ENOSPC)", True)


def test_after_enospc_the_file_holds_exactly_the_committed_epochs(small_tmpfs) -> None:
    """No ballast to free: the child closes after the failure; resume sees every committed epoch."""
    n, n_labels = N_FULL, L_FULL
    path = small_tmpfs / "dynamics.npy"
    child = Child("batch", path, n, n_labels, "-")
    lines = child.finish()
    failure = next(line for line in lines if line.startswith("oserror")).split()
    committed = int(failure[2])
    assert int(failure[1]) == errno.ENOSPC and committed == committed_reports(lines) >= 3
    header = dc.read_header(path)
    assert header["file_size"] == header["data_offset"] + committed * n * n_labels * 4  # the failed epoch left nothing behind
    assert_file_holds(path, committed, n, n_labels)
    tally("full disk (child writing until ENOSPC)", True)


def test_sklearn_record_on_a_full_disk_raises_enospc(small_tmpfs) -> None:
    pytest.importorskip("sklearn")
    n, n_labels = N_FULL, L_FULL
    path = small_tmpfs / "dynamics.npy"
    lines = Child("sklearn", path, n, n_labels).finish()
    failure = next(line for line in lines if line.startswith("oserror")).split()
    committed = int(failure[2])
    assert int(failure[1]) == errno.ENOSPC and committed == committed_reports(lines) >= 3
    data = np.load(path)
    assert data.shape == (committed, n, n_labels)
    np.testing.assert_allclose(data.sum(axis=2), 1.0, atol=1e-5)  # every committed epoch is whole
    assert dc.compute(path, np.arange(n) % n_labels).n_epochs == committed
    tally("full disk (child writing until ENOSPC)", True)


def test_overwrite_on_a_full_disk_raises_and_keeps_the_old_file(small_tmpfs) -> None:
    n, n_labels = 1000, 4
    path = small_tmpfs / "dynamics.npy"
    with dc.DynamicsWriter(path, n, n_labels) as writer:
        writer.write_epoch(epoch_probs(0, n, n_labels))
    before = path.read_bytes()
    fill(small_tmpfs / "ballast")
    with pytest.raises(OSError) as caught:
        dc.DynamicsWriter(path, n, n_labels, overwrite=True)
    assert caught.value.errno == errno.ENOSPC
    assert path.read_bytes() == before
    assert sorted(p.name for p in small_tmpfs.iterdir()) == ["ballast", "dynamics.npy"]  # no temporary file left
    with dc.DynamicsWriter(path, n, n_labels, resume=True) as writer:  # the old writer's epochs are intact and resumable
        assert writer.n_epochs == 1
        with pytest.raises(OSError) as caught:
            writer.write_epoch(epoch_probs(1, n, n_labels))
        assert caught.value.errno == errno.ENOSPC and writer.n_epochs == 1
    assert_file_holds(path, 1, n, n_labels)
    tally("full disk (overwrite=True, in process)", True)


# --- SIGKILL -----------------------------------------------------------------------------------------


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="POSIX signals")
def test_sigkill_at_random_moments_never_loses_a_committed_epoch(tmp_path) -> None:
    """24 kills of a writing child at random moments; each new child resumes the file.

    Each child writes epochs whole, or in batches a few milliseconds apart (as a training loop
    does), with and without fsync, until it is killed.
    """
    n, n_labels = 8_000, 10  # 320 kB per epoch, in 15 batches with a pause between them
    path = tmp_path / "killed.npy"
    epoch_bytes = n * n_labels * 4
    rng = np.random.default_rng(2024)
    in_progress = 0
    previous = 0
    for trial in range(24):
        mode = ("batch", "epoch")[trial % 2]
        if trial in (5, 17) and _has_torch():  # two through the torch recorder (slow to start)
            mode = "torch"
        child = Child(mode, path, n, n_labels, "-", trial % 2, 0.002)
        child.wait_for("ready")
        time.sleep(rng.uniform(0.0, 0.4))
        lines = child.kill()
        header = dc.read_header(path)
        on_disk = header["shape"][0]
        reported = max(committed_reports(lines), int(next(line for line in lines if line.startswith("ready")).split()[1]))
        lost = max(0, reported - on_disk) + max(0, previous - on_disk)
        assert lost == 0, (trial, reported, previous, on_disk)
        in_progress += header["file_size"] > header["data_offset"] + on_disk * epoch_bytes
        np.testing.assert_array_equal(np.load(path), expected(on_disk, n, n_labels))
        tally("SIGKILL of a writing child", True, lost)
        previous = on_disk
    assert_file_holds(path, previous, n, n_labels)
    print(f"\n24 kills: {in_progress} landed with an epoch in progress; {previous} epochs committed in the end")
    assert in_progress >= 5 and previous >= 10


def _has_torch() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


# --- overwrite=True: other writers, readers of the old file ------------------------------------------


def test_overwrite_is_refused_while_another_process_writes(tmp_path) -> None:
    n, n_labels = 500, 3
    path = tmp_path / "held.npy"
    child = Child("hold", path, n, n_labels)
    child.wait_for("holding")
    for kwargs in (dict(overwrite=True), dict(resume=True)):
        with pytest.raises(dc.DatacartoError, match=r"held\.npy: lock: .*locked by another DynamicsWriter"):
            dc.DynamicsWriter(path, n, n_labels, **kwargs)
    assert dc.read_header(path)["shape"] == (1, n, n_labels)  # the refused writers touched nothing
    child.proc.stdin.write("go\n")  # type: ignore[union-attr]
    child.proc.stdin.flush()  # type: ignore[union-attr]
    child.finish()
    assert_file_holds(path, 2, n, n_labels)
    tally("overwrite=True while another process writes", True)


def test_overwrite_is_refused_while_another_thread_writes(tmp_path) -> None:
    n, n_labels = 200, 3
    path = tmp_path / "threads.npy"
    outcomes: "queue.Queue[str]" = queue.Queue()
    barrier = threading.Barrier(6)

    def contender() -> None:
        for _ in range(20):
            barrier.wait()
            try:
                writer = dc.DynamicsWriter(path, n, n_labels, overwrite=True)
            except dc.DatacartoError as exc:
                outcomes.put("refused" if "locked by another DynamicsWriter" in str(exc) else f"error {exc}")
                barrier.wait()
                continue
            try:  # hold it until every contender has tried
                writer.write_epoch(epoch_probs(0, n, n_labels))
                barrier.wait()
            finally:
                writer.close()
            outcomes.put("won")

    threads = [threading.Thread(target=contender) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    results = [outcomes.get_nowait() for _ in range(outcomes.qsize())]
    assert len(results) == 6 * 20
    assert set(results) <= {"won", "refused"}, [r for r in results if r not in ("won", "refused")][:3]
    assert results.count("won") == 20  # exactly one writer per round: the others were refused while it held the file
    assert_file_holds(path, 1, n, n_labels)
    tally("overwrite=True races between threads (rounds)", True)


def test_the_lock_follows_the_file_not_the_name(tmp_path, monkeypatch) -> None:
    """A writer that opened the old file just before an overwrite renamed a new one in place
    locks the old inode (free now) and must notice that the path names another file."""
    n, n_labels = 100, 2
    path = tmp_path / "renamed.npy"
    with dc.DynamicsWriter(path, n, n_labels) as writer:
        writer.write_epoch(epoch_probs(0, n, n_labels))
    stale = os.open(path, os.O_RDWR)  # what a slow writer opened before the overwrite
    try:
        holder = dc.DynamicsWriter(path, n, n_labels, overwrite=True)
        assert os.fstat(stale).st_ino != os.stat(path).st_ino
        real_open = os.open
        opened = []

        def open_stale_first(file, flags, *args):
            if os.fspath(file) == str(path) and not opened:
                opened.append(file)
                return os.dup(stale)
            return real_open(file, flags, *args)

        monkeypatch.setattr(os, "open", open_stale_first)
        with pytest.raises(dc.DatacartoError, match="locked by another DynamicsWriter"):
            dc.DynamicsWriter(path, n, n_labels, resume=True)
        assert opened  # the stale file was handed out and its (free) lock taken, then rejected
        monkeypatch.undo()
        holder.write_epoch(epoch_probs(0, n, n_labels))
        holder.close()
    finally:
        os.close(stale)
    assert_file_holds(path, 1, n, n_labels)


def test_overwrite_keeps_the_old_contents_for_readers_that_have_it_open(tmp_path) -> None:
    """In a child: maps of the old file stay valid (no SIGBUS); new readers see 0 epochs; a
    thread computing over and over while the file is overwritten gets, each time, the statistics
    of as many epochs as its result reports, or a clean error (a window resolved from the header
    of a file replaced before the core read it was once clamped to the shorter file: two epochs'
    statistics reported as three)."""
    n, n_labels = 3000, 5
    path = tmp_path / "replaced.npy"
    lines = Child("replace-under-reader", path, n, n_labels).finish()
    assert "old map intact" in lines and "new file: 0 epochs" in lines
    computes = next(line for line in lines if line.startswith("computes")).split()
    good, refused = int(computes[1]), int(computes[2])
    print(f"\nconcurrent computes during the overwrites: {good} correct results, {refused} clean errors")
    assert good >= 1
    tally("overwrite=True under a reader (rounds)", True)
    assert_file_holds(path, 3, n, n_labels)


def _child_hold(path: str, n: int, n_labels: int) -> None:
    with dc.DynamicsWriter(path, n, n_labels) as writer:
        writer.write_epoch(epoch_probs(0, n, n_labels))
        print("holding", flush=True)
        sys.stdin.readline()
        writer.write_epoch(epoch_probs(1, n, n_labels))


def _child_replace_under_reader(path: str, n: int, n_labels: int) -> None:
    labels = np.arange(n) % n_labels
    with dc.DynamicsWriter(path, n, n_labels) as writer:
        for e in range(3):
            writer.write_epoch(epoch_probs(e, n, n_labels))
    old = np.load(path, mmap_mode="r")  # a reader holding the old file mapped
    old_stats = dc.compute(path, labels)
    with dc.DynamicsWriter(path, n, n_labels, overwrite=True) as writer:
        assert np.load(path).shape == (0, n, n_labels)  # a valid .npy, counting no epoch yet
        try:
            dc.read_header(path)
        except dc.DatacartoError as exc:  # the core refuses an empty file cleanly, naming the epochs
            assert "replaced.npy: shape: expected at least one of epochs" in str(exc), exc
        else:
            raise AssertionError("read_header accepted a file with no epochs")
        print("new file: 0 epochs", flush=True)
        np.testing.assert_array_equal(old, expected(3, n, n_labels))  # every page of the old map, read after the replace
        print("old map intact", flush=True)
        for e in range(3):
            writer.write_epoch(epoch_probs(e, n, n_labels))
    references = {k: reference.compute(expected(k, n, n_labels), labels).confidence for k in (1, 2, 3)}
    stop = threading.Event()
    counts = [0, 0]
    failures: List[BaseException] = []

    def read_again_and_again() -> None:
        try:
            while not stop.is_set():
                try:
                    stats = dc.compute(path, labels)
                except dc.DatacartoError:
                    counts[1] += 1  # 0 epochs just after an overwrite, or a change noticed while reading
                    continue
                np.testing.assert_allclose(stats.confidence, references[stats.n_epochs], atol=1e-6, err_msg=f"a result over {stats.n_epochs} epochs")
                counts[0] += 1
        except BaseException as exc:  # a wrong result fails the child, not only this thread
            failures.append(exc)

    reader = threading.Thread(target=read_again_and_again)
    reader.start()
    try:
        # 30 overwrites, then more until the reader has finished a compute (a slow host may
        # not have scheduled it yet), for a minute at most
        deadline = time.monotonic() + 60
        overwrites = 0
        while overwrites < 30 or (counts[0] == 0 and not failures and time.monotonic() < deadline):
            with dc.DynamicsWriter(path, n, n_labels, overwrite=True, fsync=False) as writer:
                for e in range(3):
                    writer.write_epoch(epoch_probs(e, n, n_labels))
            overwrites += 1
            time.sleep(0.002)
    finally:
        stop.set()
        reader.join()
    if failures:
        raise failures[0]
    np.testing.assert_allclose(old_stats.confidence, references[3], atol=1e-6)
    print("computes", counts[0], counts[1], flush=True)


# --- the importer's output -----------------------------------------------------------------------------


def _build_logs(root: Path, n: int, k: int, epochs: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    folder = root / "training_dynamics"
    folder.mkdir(parents=True, exist_ok=True)
    gold = rng.integers(0, k, n)
    for e in range(epochs):
        logits = rng.normal(0, 3, size=(n, k))
        with open(folder / f"dynamics_epoch_{e}.jsonl", "w") as f:
            for i in rng.permutation(n):
                f.write(json.dumps({"guid": int(i), f"logits_epoch_{e}": logits[i].tolist(), "gold": int(gold[i])}) + "\n")


def _leftovers(folder: Path, keep: set) -> List[str]:
    return sorted(p.name for p in folder.iterdir() if p.name not in keep)


def test_a_failed_import_keeps_the_existing_output(tmp_path) -> None:
    from datacarto.importers import import_cartography

    logs, out_dir = tmp_path / "logs", tmp_path / "out"
    out_dir.mkdir()
    _build_logs(logs, 300, 3, 4)
    out = out_dir / "dynamics.npy"
    old = import_cartography(logs, out)
    before = out.read_bytes()
    epoch2 = logs / "training_dynamics" / "dynamics_epoch_2.jsonl"
    epoch2.write_text(epoch2.read_text()[:-40] + "\n")  # a broken last line: found after two epochs are written
    with pytest.raises(dc.DatacartoError, match="dynamics_epoch_2.jsonl: line 300"):
        import_cartography(logs, out, overwrite=True)
    assert out.read_bytes() == before
    assert _leftovers(out_dir, {"dynamics.npy"}) == []
    assert old.compute().n_epochs == 4


def test_an_import_on_a_full_disk_raises_and_keeps_the_existing_output(tmp_path, small_tmpfs) -> None:
    from datacarto.importers import import_cartography

    _build_logs(tmp_path / "small", 100, 3, 2)
    out = small_tmpfs / "dynamics.npy"
    import_cartography(tmp_path / "small", out)
    before = out.read_bytes()
    _build_logs(tmp_path / "big", 4000, 3, 8, seed=1)  # 384 kB of probabilities...
    ballast = small_tmpfs / "ballast"
    fill(ballast)
    os.truncate(ballast, os.path.getsize(ballast) - (200 << 10))  # ...where 200 kB are free
    with pytest.raises(OSError) as caught:
        import_cartography(tmp_path / "big", out, overwrite=True)
    assert caught.value.errno == errno.ENOSPC
    assert out.read_bytes() == before
    assert _leftovers(small_tmpfs, {"dynamics.npy", "ballast"}) == []
    tally("full disk (import_cartography)", True)


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="POSIX signals")
def test_sigkill_of_an_import_leaves_the_old_or_the_new_file(tmp_path) -> None:
    from datacarto.importers import import_cartography

    logs_old, logs_new = tmp_path / "old", tmp_path / "new"
    _build_logs(logs_old, 200, 3, 2)
    _build_logs(logs_new, 6000, 3, 6, seed=7)
    out = tmp_path / "out" / "dynamics.npy"
    out.parent.mkdir()
    import_cartography(logs_old, out)
    old_bytes = out.read_bytes()
    # One import run to the end, timed from the child's start signal, gives the window to kill in.
    child = Child("import", logs_new, out, 0, 0)
    child.wait_for("importing")
    started = time.monotonic()
    child.finish()
    duration = time.monotonic() - started
    new_bytes = out.read_bytes()
    assert new_bytes != old_bytes and np.load(out).shape == (6, 6000, 3)
    rng = np.random.default_rng(99)
    survived = {"old": 0, "new": 0}
    for trial in range(10):
        out.write_bytes(old_bytes)
        child = Child("import", logs_new, out, 0, 0)
        child.wait_for("importing")
        if trial % 2 == 0:
            # half the kills land while the new file is being written: as soon as its temporary
            # file exists beside the target (a handshake, not a clock: the host may be slow)
            while not any(out.parent.glob(".dynamics.npy.*.tmp")) and child.proc.poll() is None:
                time.sleep(0.001)
        else:
            time.sleep(rng.uniform(0.0, duration * 1.3))
        child.proc.send_signal(signal.SIGKILL)
        child.proc.wait(timeout=60)
        data = out.read_bytes()
        assert data in (old_bytes, new_bytes), f"trial {trial}: a broken file of {len(data)} bytes"
        survived["old" if data == old_bytes else "new"] += 1
        for leftover in out.parent.glob(".dynamics.npy.*.tmp"):  # what a SIGKILL may leave beside it
            leftover.unlink()
        tally("SIGKILL of import_cartography", True)
    print(f"\n10 kills of an import: old file kept {survived['old']}, new file complete {survived['new']}")
    assert survived["old"] >= 3  # most kills land while the new file is being written


if __name__ == "__main__":
    _mode = sys.argv[1]
    if _mode == "hold":
        _child_hold(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    elif _mode == "replace-under-reader":
        _child_replace_under_reader(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    elif _mode == "import":
        from datacarto.importers import import_cartography

        print("importing", flush=True)
        import_cartography(sys.argv[2], sys.argv[3], overwrite=True)
        print("imported", flush=True)
    else:
        _child_main(sys.argv[1:])
