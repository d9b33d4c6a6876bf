"""Faults of the environment while datacarto reads: files that change under a reader, special
files, Ctrl-C, threads that mutate inputs, and SIGBUS handlers of other libraries.

Each fault is provoked for real, mostly in a child process, so that a crash (SIGBUS) or a hang
fails the test instead of killing the test run. Subprocess time limits only guard against hangs;
no assertion depends on timing.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import polars as pl
import pytest

import datacarto as dc
from _helpers import MID_PASS_SHAPE, SIGNAL_TEST_EPOCHS, SIGNAL_TEST_EXAMPLES, signal_mid_compute

PACKAGE_ROOT = str(Path(dc.__file__).resolve().parent.parent)
#: generous: only a hang (the fault this file guards against) comes anywhere near it
HANG_LIMIT = 300

pytestmark = pytest.mark.skipif(sys.platform not in ("linux", "darwin"), reason="POSIX signals, FIFOs and mmap semantics")


def run_child(code: str, *args: str, timeout: float = HANG_LIMIT) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=PACKAGE_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], capture_output=True, text=True, timeout=timeout, env=env)


def assert_not_killed(child: subprocess.CompletedProcess) -> None:
    assert child.returncode >= 0, f"the child died by signal {-child.returncode} ({signal.Signals(-child.returncode).name}); stderr:\n{child.stderr[-3000:]}"


def last_json(child: subprocess.CompletedProcess) -> Dict[str, Any]:
    assert_not_killed(child)
    assert child.returncode == 0, child.stderr[-3000:]
    return json.loads(child.stdout.strip().splitlines()[-1])


# --- a dynamics file that changes while it is read ------------------------------------------------

# Each trial writes a fresh file, starts a computation and changes the file from the progress
# callback: the callback runs on the calling thread while the core reads (after ~50 ms), so the
# change lands mid-pass. Without the SIGBUS guard the child dies at the first truncation.
CHANGE_DURING_COMPUTE = """
import json, os, sys, threading
import numpy as np, datacarto as dc

mode, path, trials = sys.argv[1], sys.argv[2], int(sys.argv[3])
n_epochs, n, n_labels = map(int, sys.argv[4:7])  # MID_PASS_SHAPE
rng = np.random.default_rng(0)
probs = np.tile(rng.dirichlet(np.ones(n_labels), size=(10, n)).astype(np.float16), (n_epochs // 10, 1, 1))
labels = rng.integers(0, n_labels, n)
expected = dc.compute(probs, labels)
counts = {"changed": 0, "correct": 0, "provoked": 0}
for trial in range(4 * trials):  # a trial may be half done by its first progress call
    if counts["provoked"] >= trials:
        break
    np.save(path, probs)
    fired = []

    def change(done, total):
        if fired or 2 * done >= total:  # the first half of the pass (see MID_PASS_SHAPE)
            return
        fired.append(done)
        if mode in ("truncate", "thread"):
            os.truncate(path, 4096 * (trial % 3))
        elif mode == "npsave":
            np.save(path, probs[: 1 + trial % 3])  # the same inode, rewritten shorter
        elif mode == "overwrite":
            dc.DynamicsWriter(path, n, n_labels, "float16", overwrite=True, fsync=False).close()

    try:
        if mode == "thread":  # compute off the main thread, as a Dask worker calls it
            outcome = []
            def work():
                try:
                    outcome.append(dc.compute(path, labels, threads=1, progress=change))
                except Exception as error:
                    outcome.append(error)
            worker = threading.Thread(target=work)
            worker.start()
            worker.join()
            if isinstance(outcome[0], Exception):
                raise outcome[0]
            stats = outcome[0]
        else:
            stats = dc.compute(path, labels, threads=1, progress=change)
    except dc.DatacartoError as error:
        message = str(error)
        assert path in message and "changed while being read" in message, message
        counts["changed"] += 1
    else:
        assert np.array_equal(stats.confidence, expected.confidence) and np.array_equal(stats.margin, expected.margin)
        counts["correct"] += 1
    counts["provoked"] += bool(fired)
print(json.dumps(counts))
"""


@pytest.mark.parametrize("mode", ["truncate", "npsave", "overwrite", "thread"])
def test_a_file_changed_during_compute_is_a_clean_error_not_a_crash(tmp_path: Path, mode: str) -> None:
    trials = 4
    counts = last_json(run_child(CHANGE_DURING_COMPUTE, mode, str(tmp_path / "d.npy"), str(trials), *map(str, MID_PASS_SHAPE)))
    print(f"{mode}: {counts}")
    assert counts["provoked"] >= 1, "no change landed during a computation"
    # a change that lands mid-pass is reported; only one after the last read could pass
    assert counts["changed"] >= counts["provoked"] - 1


def test_datamap_from_dynamics_survives_a_truncation(tmp_path: Path) -> None:
    code = """
    import os, sys, numpy as np, datacarto as dc
    path = sys.argv[1]
    shape = tuple(map(int, sys.argv[2:5]))  # MID_PASS_SHAPE
    n = shape[1]
    probs = np.full(shape, 0.25, dtype=np.float16)
    def truncate(done, total):
        if 2 * done < total and os.path.getsize(path) > 0:  # the first half of the pass
            os.truncate(path, 0)
    for attempt in range(10):  # until the truncation lands before the pass ends
        np.save(path, probs)
        try:
            dc.DataMap.from_dynamics(path, np.zeros(n, dtype=np.int64), threads=1, progress=truncate)
        except dc.DatacartoError as error:
            print("changed" if "changed while being read" in str(error) else "other: " + str(error))
            break
        if os.path.getsize(path) == 0:
            print("ANSWERED FROM A TRUNCATED FILE")
            break
    else:
        print("the truncation never landed")
    """
    child = run_child(code, str(tmp_path / "d.npy"), *map(str, MID_PASS_SHAPE))
    assert_not_killed(child)
    assert child.returncode == 0, child.stderr
    assert child.stdout.strip() == "changed", child.stdout


def test_the_cli_survives_a_truncation(tmp_path: Path) -> None:
    """`datacarto compute` while another process truncates its input: never killed by SIGBUS."""
    path, labels = tmp_path / "d.npy", tmp_path / "labels.npy"
    n = 1_000_000
    probs = np.random.default_rng(2).random((10, n, 2), dtype=np.float32)
    np.save(labels, np.zeros(n, dtype=np.int64))
    outcomes: List[str] = []
    for trial in range(4):
        np.save(path, probs)
        env = dict(os.environ, PYTHONPATH=PACKAGE_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
        cli = subprocess.Popen([sys.executable, "-m", "datacarto", "compute", str(path), str(labels), "--threads", "1", "-o", str(tmp_path / "s.parquet")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        # truncate at a spread of moments: before the read, during it, after it
        try:
            cli.wait(timeout=0.2 * trial)
        except subprocess.TimeoutExpired:
            pass
        os.truncate(path, 0)
        out, err = cli.communicate(timeout=HANG_LIMIT)
        assert cli.returncode >= 0, f"datacarto compute died by signal {-cli.returncode}: {err[-2000:]}"
        if cli.returncode != 0:
            assert "changed while being read" in err or "empty" in err or "truncated" in err, err
            assert "Traceback" not in err, err
        outcomes.append("error" if cli.returncode else "ok")
    print(f"cli outcomes: {outcomes}")


def test_a_file_replaced_during_compute_is_reported(tmp_path: Path) -> None:
    """Another file renamed over the path mid-pass: the reader's pages stay valid (no fault),
    but the result no longer describes the file at the path, so it is an error."""
    path, replacement = tmp_path / "d.npy", tmp_path / "new.npy"
    n = MID_PASS_SHAPE[1]
    probs = np.full(MID_PASS_SHAPE, 0.25, dtype=np.float16)
    labels = np.zeros(n, dtype=np.int64)
    replaced: List[int] = []

    def replace(done: int, total: int) -> None:
        if 2 * done < total and not replaced:  # the first half of the pass (see MID_PASS_SHAPE)
            os.replace(replacement, path)
            replaced.append(done)

    for _ in range(10):  # until the replacement lands before the pass ends
        np.save(path, probs)
        np.save(replacement, probs)
        try:
            dc.compute(path, labels, threads=1, progress=replace)
        except dc.DatacartoError as error:
            assert replaced and str(path) in str(error) and "another file was put at its path" in str(error), error
            break
        assert not replaced, "the result of a file replaced mid-read was returned"
    assert replaced, "the replacement never landed during a computation"
    assert dc.compute(path, labels).n_examples == n  # the new file reads fine


def replaced_after_the_header(monkeypatch: pytest.MonkeyPatch, path: Path, replacement: Path) -> None:
    """Make the core of `datacarto._stats` rename `replacement` over `path` right after it reads
    a header (while `replacement` exists): a reader's next step meets another file."""
    from datacarto import _stats

    core = _stats._core

    class ReplacedAfterTheHeader:
        def __getattr__(self, name: str) -> Any:
            return getattr(core, name)

        def read_header(self, name: str) -> Dict[str, Any]:
            header = core.read_header(name)
            if replacement.exists():
                os.replace(replacement, path)
            return header

    monkeypatch.setattr(_stats, "_core", ReplacedAfterTheHeader())


def test_a_file_replaced_by_a_shorter_one_after_its_header_was_read_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """compute reads the file's header (to resolve the epoch window) before the core opens the
    file: another file renamed over the path in between, of fewer epochs, once gave the shorter
    file's statistics reported over the longer window (CI saw two epochs' confidence in a result
    of three while a writer overwrote the file). The replacement really lands between the two
    reads here; the core must refuse the window, naming the file, and read the new file fine
    once asked again."""
    path, replacement = tmp_path / "d.npy", tmp_path / "new.npy"
    probs = np.random.default_rng(3).dirichlet(np.ones(4), size=(3, 50)).astype(np.float32)
    labels = np.arange(50) % 4
    replaced_after_the_header(monkeypatch, path, replacement)
    for window in [None, (1, 3)]:  # the whole file, and a window that starts inside the shorter one
        np.save(path, probs)
        np.save(replacement, probs[:2])
        with pytest.raises(dc.DatacartoError) as refused:
            dc.compute(path, labels, epochs=window)
        assert not replacement.exists(), "the file was not replaced between the two reads"
        assert f"{path}: epochs: expected a window inside the file's 2 epoch(s)" in str(refused.value), refused.value
    stats = dc.compute(path, labels)  # the new file, its header read afresh
    assert stats.n_epochs == 2
    np.testing.assert_allclose(stats.confidence, dc.reference.compute(probs[:2], labels).confidence, atol=1e-6)


# --- a writer committing epochs while readers read -------------------------------------------------


WRITER = """
import sys, numpy as np, datacarto as dc
path, n, n_labels, epochs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
epoch = np.random.default_rng(4).dirichlet(np.ones(n_labels), size=n).astype(np.float32)
with dc.DynamicsWriter(path, n, n_labels, fsync=False) as writer:
    writer.write_epoch(epoch)  # a file of zero epochs is refused: not what this test is about
    print("started", flush=True)
    for _ in range(epochs - 1):
        writer.write_epoch(epoch)
"""


def test_readers_racing_a_writer_see_no_spurious_errors(tmp_path: Path) -> None:
    """A reader calling read_header / compute while another process commits epochs."""
    path = str(tmp_path / "growing.npy")
    n, n_labels, epochs = 2_000, 3, 3000
    labels = np.random.default_rng(4).integers(0, n_labels, n)
    env = dict(os.environ, PYTHONPATH=PACKAGE_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    writer = subprocess.Popen([sys.executable, "-c", textwrap.dedent(WRITER), path, str(n), str(n_labels), str(epochs)], stdout=subprocess.PIPE, text=True, env=env)
    assert writer.stdout is not None and writer.stdout.readline().strip() == "started"
    reads, errors, seen = 0, [], set()
    try:
        while reads < 2000 or writer.poll() is None:
            try:
                shape = dc.read_header(path)["shape"]
                seen.add(shape[0])
                if shape[0] >= 1 and reads % 10 == 0:
                    assert dc.compute(path, labels, epochs=(0, 1)).n_epochs == 1
            except dc.DatacartoError as error:
                errors.append(str(error))
            reads += 1
    finally:
        writer.wait(timeout=HANG_LIMIT)
    print(f"{reads} reads while a writer committed {epochs} epochs: {len(errors)} errors, {len(seen)} distinct epoch counts seen")
    assert writer.returncode == 0
    assert errors == [], sorted(set(errors))[:3]
    assert len(seen) > 2, "the reader never saw the file grow: the race was not exercised"


# --- special files ---------------------------------------------------------------------------------


def test_fifos_and_devices_are_refused_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.npy"
    os.mkfifo(fifo)
    good = tmp_path / "good.npy"
    np.save(good, np.full((2, 3, 2), 0.5, dtype=np.float32))
    code = """
    import sys, numpy as np, datacarto as dc
    fifo, good = sys.argv[1], sys.argv[2]
    for call in (lambda: dc.read_header(fifo), lambda: dc.compute(fifo, [0, 1, 0]), lambda: dc.compute(good, fifo),
                 lambda: dc.compute("/dev/zero", [0]), lambda: dc.compute(good, "/dev/zero")):
        try:
            call()
        except dc.DatacartoError as error:
            print(error)
        else:
            print("ACCEPTED")
    """
    child = run_child(code, str(fifo), str(good), timeout=120)
    assert_not_killed(child)
    assert child.returncode == 0, child.stderr
    lines = child.stdout.strip().splitlines()
    assert len(lines) == 5 and "ACCEPTED" not in lines, lines
    assert all("FIFO" in line and str(fifo) in line for line in lines[:3]), lines
    assert all("/dev/zero" in line and "device" in line for line in lines[3:]), lines


def test_a_labels_file_that_is_not_npy_is_named_as_such(tmp_path: Path) -> None:
    good = tmp_path / "good.npy"
    np.save(good, np.full((2, 3, 2), 0.5, dtype=np.float32))
    text = tmp_path / "labels.txt"
    text.write_text("0\n1\n0\n")
    pickled = tmp_path / "pickled.npy"
    np.save(pickled, np.array([0, 1, None], dtype=object), allow_pickle=True)
    for path in (text, pickled):
        with pytest.raises(dc.DatacartoError) as caught:
            dc.compute(good, path)
        message = str(caught.value)
        assert str(path) in message and "expected a .npy file" in message, message
        assert "allow_pickle" not in message, message
    with pytest.raises(FileNotFoundError, match="labels file not found"):
        dc.compute(good, tmp_path / "missing.npy")


# --- Ctrl-C ----------------------------------------------------------------------------------------


def test_ctrl_c_stops_a_long_compute_within_a_few_polls() -> None:
    """SIGINT (Python's default handler: KeyboardInterrupt) mid-compute stops it at once.

    The progress callback runs about every 50 ms on this thread while the core works. Once it
    has been called, another thread sends SIGINT to this one. If the signal were ignored until
    the end, the callback would keep being called up to (total, total); it must stop instead.
    """
    # Python's default handler for the test's length: a test run started with SIGINT ignored
    # (a background job of a non-interactive shell) has none, and Ctrl-C then reaches nothing,
    # the core's poll included (it runs Python's handlers)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        outcome = signal_mid_compute(KeyboardInterrupt)
    finally:
        signal.signal(signal.SIGINT, previous)
    print(f"progress after the signal: {outcome['after']} call(s), last done {outcome['last']} of {outcome['total']} ({outcome['epochs']} epochs)")
    assert outcome["conclusive"], f"every run ended too soon after the signal to tell (the sender thread was slow to send it): {outcome}"
    assert outcome["interrupted"], f"the computation ran to the end despite Ctrl-C: {outcome}"
    assert outcome["after"] <= 2, f"{outcome['after']} progress calls after the signal"


def signal_child(code: str, epochs: int) -> subprocess.Popen:
    """A child running `code` (indented Python; argv: examples, epochs) on this package, its
    output piped as text, started with SIGINT's default disposition, as a terminal starts a
    foreground command: an ignored SIGINT (this test run started as a background job of a
    non-interactive shell) is inherited, and Python then installs no handler of its own."""
    env = dict(os.environ, PYTHONPATH=PACKAGE_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    command = [sys.executable, "-c", textwrap.dedent(code), str(SIGNAL_TEST_EXAMPLES), str(epochs)]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, preexec_fn=_default_sigint)


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_stops_compute_in_a_child_process(tmp_path: Path) -> None:
    code = """
    import signal, sys, time, numpy as np, datacarto as dc
    n, epochs = int(sys.argv[1]), int(sys.argv[2])
    probs = np.full((epochs, n, 3), 0.25, dtype=np.float16)
    print("sigint", signal.getsignal(signal.SIGINT) is signal.default_int_handler, flush=True)
    def progress(done, total):
        print("progress", done, total, time.monotonic_ns(), flush=True)
    try:
        dc.compute(probs, np.zeros(n, dtype=np.int64), threads=1, progress=progress)
    except KeyboardInterrupt:
        print("interrupted", flush=True)
        sys.exit(130)
    print("finished", flush=True)
    """
    # a run that ends right after the signal was too quick to tell (see signal_mid_compute):
    # the next one is longer
    for epochs in SIGNAL_TEST_EPOCHS:
        child = signal_child(code, epochs)
        assert child.stdout is not None
        # the child runs Python's default handler (signal_child undoes an inherited ignored SIGINT)
        assert child.stdout.readline().split() == ["sigint", "True"], child.stderr.read()
        lines = [child.stdout.readline()]  # the first progress report: the core is working
        assert lines[0].startswith("progress"), lines[0] + child.stderr.read()
        # the reports made after the signal was sent (the child stamps them with the system's
        # monotonic clock), not merely read after it: this process may be slow to send it
        child.send_signal(signal.SIGINT)
        sent = time.monotonic_ns()
        rest, err = child.communicate(timeout=HANG_LIMIT)
        lines += rest.strip().splitlines()
        after = [line for line in lines[1:] if line.startswith("progress") and int(line.split()[3]) > sent]
        print(f"child ({epochs} epochs): {len(lines)} lines, progress reports after SIGINT: {len(after)}")
        interrupted = lines[-1] == "interrupted" and child.returncode == 130
        # not interrupted with fewer than two reports after the signal: it came too late to tell
        # (after the pass, it may even have stopped the child's last lines)
        if interrupted or len(after) >= 2:
            break
    assert interrupted or len(after) >= 2, f"every run ended too soon after the signal to tell (this process was slow to send it): {lines[-3:]}"
    assert interrupted, (lines[-3:], child.returncode, err[-2000:])
    assert len(after) <= 2, after


def test_ctrl_c_is_seen_by_the_core_not_only_by_python_code_in_the_callback(tmp_path: Path) -> None:
    """A library call is quiet by default (no progress callback), so the core's own poll of the
    signals must stop it. Here the callback is C code that never runs a signal handler
    (`dict.__setitem__`; `print` would: its flush polls the signals), there only so that a
    watcher thread can tell the parent that the pass has begun (a thread other than the main one
    never runs signal handlers). So only the core can see the signal before the pass ends. A
    pass that ran to the end made its final report (total, total); one stopped did not. A pass
    that ended before the watcher ran (a busy host) is too quick to tell: a longer one is tried."""
    code = """
    import sys, threading, time, numpy as np, datacarto as dc
    n, epochs = int(sys.argv[1]), int(sys.argv[2])
    probs = np.full((epochs, n, 3), 0.25, dtype=np.float16)
    reports = {}

    def say(line):
        # one write a line: the watcher thread's and this thread's lines never interleave
        sys.stdout.write(line + "\\n")
        sys.stdout.flush()

    def watch():
        while not reports:
            time.sleep(0.001)
        say("started")

    threading.Thread(target=watch, daemon=True).start()
    try:
        dc.compute(probs, np.zeros(n, dtype=np.int64), threads=1, progress=reports.__setitem__)
    except KeyboardInterrupt:
        say("interrupted " + ("ended" if n in reports else "mid-pass"))
        sys.exit(130)
    say("finished")
    """
    for epochs in SIGNAL_TEST_EPOCHS:
        child = signal_child(code, epochs)
        assert child.stdout is not None
        first = child.stdout.readline().strip()
        if first == "finished":
            # the pass ended before the watcher thread ran (a busy host): too quick to tell
            last, err = first, child.communicate(timeout=HANG_LIMIT)[1]
            print(f"child ({epochs} epochs): ended before it was seen to start")
            continue
        assert first == "started", first + child.stderr.read()
        child.send_signal(signal.SIGINT)
        rest, err = child.communicate(timeout=HANG_LIMIT)
        last = rest.strip().splitlines()[-1] if rest.strip() else ""
        print(f"child ({epochs} epochs): {last!r}")
        # a pass that ended is inconclusive (the signal may have come after it): a longer one
        if last not in ("finished", "interrupted ended"):
            break
    assert last != "interrupted ended", "every pass ran to the end despite SIGINT: the core did not poll the signals"
    assert last != "finished", "every pass ended before this process could send SIGINT"
    assert last == "interrupted mid-pass" and child.returncode == 130, (last, child.returncode, err[-2000:])


# --- another thread mutating the labels ------------------------------------------------------------


def test_a_bad_label_is_reported_from_one_reading_of_labels_another_thread_writes() -> None:
    """The error's second scan for the bad label reads one copy of the labels: another thread
    writing the caller's array during the scan (here, the moment it starts) cannot make the scan
    itself fail (numpy's isin read its input twice: an IndexError once in a CI-like run of the
    test below) nor report a value from another moment than where it was found."""
    from datacarto._args import _found

    labels = np.array([0, 2, 0, 1], dtype=np.uint8)

    def rewritten_while_scanned(array: np.ndarray) -> np.ndarray:
        labels[:] = 0  # another thread's write, after the scan began
        return ~np.isin(array, (0, 1))

    assert _found(labels, rewritten_while_scanned) == "2 at index 1"


@pytest.mark.parametrize("task", ["multiclass", "multilabel"])
def test_labels_mutated_by_another_thread_do_not_break_compute(task: str) -> None:
    """Another thread writes the caller's labels while `compute` runs: now one of two valid
    arrays, now (rarely) a bad one (class indices out of range, targets not 0 or 1). Each block
    of the pass copies its labels and checks and reads only that copy, so every run either
    fails on a bad label or returns statistics that are, unit by unit, those of the label the
    result keeps (the copy can mix the two arrays)."""
    rng = np.random.default_rng(7)
    n, n_labels = (100_000, 3) if task == "multiclass" else (60_000, 4)
    if task == "multiclass":
        probs = rng.dirichlet(np.ones(n_labels), size=(6, n)).astype(np.float32)
        first = rng.integers(0, n_labels, n)
        second = (first + 1) % n_labels
        bad = np.full(n, 7, dtype=np.int64)
        # from the block that found it, or (the core's whole-array rescan) the same message
        messages = ("expected class indices in [0, 3)",)
    else:
        probs = rng.random((5, n, n_labels)).astype(np.float32)
        first = (rng.random((n, n_labels)) < 0.4).astype(np.uint8)
        second = 1 - first
        bad = np.full((n, n_labels), 2, dtype=np.uint8)
        # from the arguments' check (GIL held), or from a block's check of its copy
        messages = ("expected only 0 and 1", "expected 0 or 1")
    expected = [dc.compute(probs, first, task=task), dc.compute(probs, second, task=task)]
    labels = first.copy()
    stop = threading.Event()

    def mutate() -> None:
        writes = 0
        while not stop.is_set():
            labels[:] = bad if writes % 256 == 255 else (first, second)[writes % 2]
            writes += 1

    mutator = threading.Thread(target=mutate)
    mutator.start()
    outcomes = {"results": 0, "bad-label errors": 0}
    try:
        for _ in range(60):
            try:
                stats = dc.compute(probs, labels, task=task, threads=2)
            except dc.DatacartoError as error:
                assert any(message in str(error) for message in messages), error
                outcomes["bad-label errors"] += 1
                continue
            used_first = stats.labels == first
            assert np.all(used_first | (stats.labels == second))
            for name in ("confidence", "margin", "forgetting", "first_learned", "el2n"):
                want = np.where(used_first, getattr(expected[0], name), getattr(expected[1], name))
                assert np.array_equal(getattr(stats, name), want), name
            outcomes["results"] += 1
    finally:
        stop.set()
        mutator.join()
    print(f"{task} labels mutated during compute: {outcomes}")
    assert outcomes["results"] + outcomes["bad-label errors"] == 60
    assert outcomes["results"] > 0, "every run saw the bad labels: the mixed results were never checked"


@pytest.mark.parametrize("task", ["multiclass", "multilabel"])
def test_a_bad_label_gone_by_the_rescan_still_gets_a_clear_error(task: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The argument check scans the labels once to see that one is bad and again to say where.
    Another thread can fix the array in between (CI saw the second scan find nothing and an
    IndexError escape). Here the array really is rewritten between the two scans."""
    from datacarto import _args

    if task == "multiclass":
        labels, valid, shape = np.array([0, 2, 7, 1], dtype=np.uint64), np.array([0, 2, 1, 1], dtype=np.uint64), (2, 4, 3)
        expected = ("expected class indices in [0, 3)", "found 7 (the array changed while it was read")
    else:
        labels, valid, shape = np.array([[0, 1], [2, 0]], dtype=np.uint8), np.array([[0, 1], [1, 0]], dtype=np.uint8), (2, 2, 2)
        expected = ("expected only 0 and 1 for multilabel", "(the array changed while it was read")
    locate = _args._found

    def rewritten_first(array: np.ndarray, is_bad: Any, **seen: Any) -> Any:
        array[...] = valid  # what the other thread does between the two scans
        return locate(array, is_bad, **seen)

    monkeypatch.setattr(_args, "_found", rewritten_first)
    with pytest.raises(dc.DatacartoError) as caught:
        _args.resolve(labels, shape, task=task, correctness=None, threshold=0.5, epochs=None, ddof=0, source_name="probs")
    assert all(fragment in str(caught.value) for fragment in expected), caught.value
    monkeypatch.undo()  # the same check, the array left alone: the place is named
    labels[...] = valid
    labels[(1, 0) if task == "multilabel" else 2] = 5
    with pytest.raises(dc.DatacartoError, match=r"found 5 at (\(1, 0\)|index 2)$"):
        _args.resolve(labels, shape, task=task, correctness=None, threshold=0.5, epochs=None, ddof=0, source_name="probs")


# --- other SIGBUS handlers -------------------------------------------------------------------------

FOREIGN_SIGBUS = """
import faulthandler, mmap, os, sys, tempfile
import numpy as np, datacarto as dc

when = sys.argv[1]
shape = tuple(map(int, sys.argv[2:5]))  # MID_PASS_SHAPE
if when == "faulthandler-first":
    faulthandler.enable()
directory = tempfile.mkdtemp()
path = os.path.join(directory, "d.npy")
n = shape[1]
probs = np.full(shape, 0.25, dtype=np.float16)
np.save(path, probs)
dc.compute(path, np.zeros(n, dtype=np.int64))  # installs datacarto's guard
if when == "faulthandler-after":
    faulthandler.enable()
# datacarto's own mapping truncated mid-read: still caught, whoever installed last
def truncate(done, total):
    if 2 * done < total and os.path.getsize(path):  # the first half of the pass
        os.truncate(path, 0)
for attempt in range(20):  # until a truncation lands before the pass ends
    np.save(path, probs)
    try:
        dc.compute(path, np.zeros(n, dtype=np.int64), threads=1, progress=truncate)
    except dc.DatacartoError as error:
        print("datacarto fault caught" if "changed while being read" in str(error) else error, flush=True)
        break
else:
    print("no fault landed", flush=True)
# a fault that is not datacarto's: a mapping of the child's own, truncated
foreign = os.path.join(directory, "foreign.bin")
with open(foreign, "wb") as file:
    file.write(b"x" * 65536)
with open(foreign, "r+b") as file:
    view = mmap.mmap(file.fileno(), 65536)
    os.truncate(foreign, 0)
    print("reading past the end", flush=True)
    view[60000]
print("FOREIGN FAULT SWALLOWED", flush=True)
"""


@pytest.mark.parametrize("when", ["no-faulthandler", "faulthandler-first", "faulthandler-after"])
def test_a_foreign_sigbus_still_reaches_earlier_handlers(when: str) -> None:
    child = run_child(FOREIGN_SIGBUS, when, *map(str, MID_PASS_SHAPE), timeout=120)
    assert child.returncode == -signal.SIGBUS, (child.returncode, child.stdout, child.stderr[-2000:])
    assert "FOREIGN FAULT SWALLOWED" not in child.stdout
    assert "reading past the end" in child.stdout
    assert child.stdout.splitlines()[0] == "datacarto fault caught", child.stdout
    if when != "no-faulthandler":
        assert "Fatal Python error: Bus error" in child.stderr, child.stderr[-2000:]


def test_trajectories_of_a_truncated_file_are_a_clean_error(tmp_path: Path) -> None:
    """trajectories() reads rows with positioned reads (no mapping): a shrunk file is an error."""
    path = tmp_path / "d.npy"
    probs = np.random.default_rng(8).dirichlet(np.ones(3), size=(4, 100)).astype(np.float32)
    np.save(path, probs)
    dm = dc.DataMap.from_dynamics(path, np.arange(100) % 3)
    assert np.allclose(dm.trajectories([5]).probability[0], probs[:, 5, 5 % 3])
    os.truncate(path, os.path.getsize(path) - 100)
    with pytest.raises(dc.DatacartoError, match="truncated"):
        dm.trajectories([99])


def test_trajectories_of_a_file_replaced_while_they_read_it_are_a_clean_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """trajectories() reads the file's header by path and its rows through a descriptor: another
    file renamed over the path between the two (here a float64 file of the same shape: its bytes
    read with the float32 header were numbers, and wrong ones) is an error, never one file's
    bytes read with the other's layout; with nothing in between the rows read are the file's."""
    path, replacement = tmp_path / "d.npy", tmp_path / "new.npy"
    probs = np.random.default_rng(8).dirichlet(np.ones(3), size=(4, 100)).astype(np.float32)
    np.save(path, probs)
    dm = dc.DataMap.from_dynamics(path, np.arange(100) % 3)
    np.save(replacement, probs.astype(np.float64))
    replaced_after_the_header(monkeypatch, path, replacement)
    with pytest.raises(dc.DatacartoError, match="another file was put at its path"):
        dm.trajectories([5])
    assert not replacement.exists(), "the file was not replaced after the header's read"
    assert np.array_equal(dm.trajectories([5]).probability[0], probs[:, 5, 5 % 3].astype(np.float64))  # the new file


def test_passes_over_epochs_of_a_file_replaced_between_them_are_a_clean_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The cross-validated map's mixture reads a file one epoch a pass, each pass opening the
    path anew: another file put at the path after the first pass (same shape, other values)
    must be an error, not epochs of two files stacked as one; with no replacement, the passes
    give each epoch's gold probabilities."""
    from datacarto import _mixture, _stats

    path, replacement = tmp_path / "d.npy", tmp_path / "new.npy"
    rng = np.random.default_rng(9)
    probs = rng.dirichlet(np.ones(3), size=(3, 40)).astype(np.float32)
    labels = np.arange(40) % 3
    np.save(path, probs)
    gold = probs[:, np.arange(40), labels]
    np.testing.assert_allclose(_mixture.gold_probabilities(str(path), labels), gold, atol=1e-7)
    np.testing.assert_allclose(_mixture.mixture_class_means(str(path), [0.5, 0.5], 1, labels, "multiclass"), probs[1:].mean(axis=0), atol=1e-7)
    window_pass = _stats.window_pass

    def replaced_after_the_first_pass(*args: Any, **kwargs: Any) -> Any:
        stats = window_pass(*args, **kwargs)
        if replacement.exists():
            os.replace(replacement, path)
        return stats

    monkeypatch.setattr(_stats, "window_pass", replaced_after_the_first_pass)
    for passes in (lambda: _mixture.gold_probabilities(str(path), labels), lambda: _mixture.mixture_class_means(str(path), [0.5, 0.5], 1, labels, "multiclass")):
        np.save(replacement, rng.dirichlet(np.ones(3), size=(3, 40)).astype(np.float32))
        with pytest.raises(dc.DatacartoError, match="another file was put at its path between the passes"):
            passes()
        assert not replacement.exists(), "the file was not replaced between the passes"


# --- a map written as CSV + sidecar, killed between the two files -----------------------------------

CSV_KILLED_BETWEEN = """
import os, signal, sys
import numpy as np
import polars as pl
import datacarto as dc

path = sys.argv[1]
rng = np.random.default_rng(0)
first = dc.DataMap.from_dynamics(rng.dirichlet(np.ones(2), size=(3, 8)).astype(np.float32), rng.integers(0, 2, 8), label_names=["cat", "dog"])
first.write_csv(path)
second = dc.DataMap.from_dynamics(rng.dirichlet(np.ones(2), size=(4, 8)).astype(np.float32), rng.integers(0, 2, 8))
second.frame.write_parquet(path + ".expected.parquet")
replace = os.replace

def replace_then_die(src, dst):
    replace(src, dst)
    if os.fspath(dst).endswith(".csv"):  # the new CSV is in place, its sidecar not yet
        os.kill(os.getpid(), signal.SIGKILL)

os.replace = replace_then_die
second.write_csv(path)
"""


def test_a_csv_map_killed_between_its_two_files_is_not_read_with_the_old_settings(tmp_path):
    """SIGKILL after the new CSV is renamed into place and before its sidecar is: the old
    sidecar (another map's settings: label names, epoch window) is recognised as stale, a
    warning says so, and the new rows are read with settings inferred from the CSV."""
    path = tmp_path / "map.csv"
    child = run_child(CSV_KILLED_BETWEEN, str(path))
    assert child.returncode == -signal.SIGKILL, child.stderr[-3000:]
    sidecar = json.loads((tmp_path / "map.csv.datacarto.json").read_text())
    assert sidecar["label_names"] == ["cat", "dog"] and sidecar["epochs"] == [0, 3]  # the first map's, as the fault left it
    with pytest.warns(UserWarning, match=r"map\.csv\.datacarto\.json: describes another version of .*map\.csv.*inferred from the CSV"):
        back = dc.DataMap.read_csv(path)
    assert back.label_names is None and back.epochs != (0, 3)
    expected = pl.read_parquet(tmp_path / "map.csv.expected.parquet")
    assert back.frame.select(expected.columns).equals(expected)
    # written again without a fault, the pair agrees and reads back silently
    back.write_csv(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert dc.DataMap.read_csv(path).frame.equals(back.frame)


def test_a_csv_map_rewritten_while_it_is_read_keeps_its_own_settings(tmp_path, monkeypatch):
    """Another writer replaces the CSV after read_csv has compared it with its sidecar and before
    polars parses it: the rows parsed are the ones the sidecar describes (read once), so the
    settings are never applied to another map's rows."""
    rng = np.random.default_rng(1)
    path = tmp_path / "map.csv"
    first = dc.DataMap.from_dynamics(rng.dirichlet(np.ones(2), size=(3, 8)).astype(np.float32), rng.integers(0, 2, 8), label_names=["cat", "dog"])
    first.write_csv(path)
    second = dc.DataMap.from_dynamics(rng.dirichlet(np.ones(2), size=(4, 8)).astype(np.float32), rng.integers(0, 2, 8))
    real_read_csv = pl.read_csv
    rewrites: List[str] = []

    def rewritten_first(*args: Any, **kwargs: Any) -> pl.DataFrame:
        if not rewrites:  # the first parse: another writer's CSV lands now, whole, by rename
            second.frame.write_csv(tmp_path / "other.csv")
            os.replace(tmp_path / "other.csv", path)
            rewrites.append(str(path))
        return real_read_csv(*args, **kwargs)

    monkeypatch.setattr(pl, "read_csv", rewritten_first)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        back = dc.DataMap.read_csv(path)
    assert rewrites, "the fault was not provoked"
    assert path.read_text() == second.frame.write_csv()  # the file on disk is the other map's now
    assert back.frame.equals(first.frame)
    assert back.label_names == ["cat", "dog"] and back.epochs == (0, 3)


def test_a_parquet_map_replaced_while_it_is_read_keeps_its_own_settings(tmp_path, monkeypatch):
    """Another writer renames its parquet map into place after the rows are read and before the
    settings are: both come from the file that was opened, never one map's rows with another's
    settings."""
    rng = np.random.default_rng(2)
    path = tmp_path / "map.parquet"
    first = dc.DataMap.from_dynamics(rng.dirichlet(np.ones(3), size=(3, 8)).astype(np.float32), rng.integers(0, 3, 8), label_names=["cat", "dog", "eel"])
    first.write_parquet(path)
    second = dc.DataMap.from_dynamics(rng.dirichlet(np.ones(3), size=(5, 8)).astype(np.float32), rng.integers(0, 3, 8), epochs=(1, 4))
    real_read_parquet = pl.read_parquet
    replaced: List[bool] = []

    def replaced_after_the_rows(*args: Any, **kwargs: Any) -> pl.DataFrame:
        frame = real_read_parquet(*args, **kwargs)
        if not replaced:
            second.write_parquet(tmp_path / "other.parquet")
            os.replace(tmp_path / "other.parquet", path)
            replaced.append(True)
        return frame

    monkeypatch.setattr(pl, "read_parquet", replaced_after_the_rows)
    back = dc.DataMap.read_parquet(path)
    assert replaced, "the fault was not provoked"
    assert dc.DataMap.read_parquet(path).epochs == (1, 4)  # the file on disk is the other map now
    assert back.frame.equals(first.frame)
    assert back.label_names == ["cat", "dog", "eel"] and back.epochs == (0, 3)


MIXTURE_TRUNCATED_BETWEEN_EPOCHS = """
import os, sys
import numpy as np
import datacarto as dc
import datacarto._stats as stats_module

path = sys.argv[1]
rng = np.random.default_rng(4)
np.save(path, rng.dirichlet(np.ones(3), size=(4, 2000)).astype(np.float32))
stats = dc.compute(path, rng.integers(0, 3, 2000), epochs=(1, 4))
stats.extra["epoch_weights"] = np.array([0.5, 0.0, 0.5])
real_pass, passes = stats_module.window_pass, []

def truncating_after_the_first_epoch(*args, **kwargs):
    result = real_pass(*args, **kwargs)
    passes.append(args[2])
    if len(passes) == 1:
        with open(path, "r+b") as handle:
            handle.truncate(os.path.getsize(path) // 2)
    return result

stats_module.window_pass = truncating_after_the_first_epoch
try:
    dc.DataMap(stats, dynamics=path).label_issues()
    print("no error")
except dc.DatacartoError as error:
    print(f"DatacartoError: {error}")
"""


def test_a_cv_map_file_truncated_between_the_mixture_epochs_is_an_error_not_a_crash(tmp_path):
    """A cross-validated map's label_issues reads the weighted epochs one at a time; the file is
    cut in half after the first: the child survives and reports one clear line naming the file
    (a memory map kept across the epochs would have died of SIGBUS)."""
    child = run_child(MIXTURE_TRUNCATED_BETWEEN_EPOCHS, str(tmp_path / "d.npy"))
    assert_not_killed(child)
    assert child.returncode == 0, child.stderr[-3000:]
    lines = child.stdout.strip().splitlines()
    assert len(lines) == 1 and re.match(r"DatacartoError: .*d\.npy.*(truncated|shorter)", lines[0]), child.stdout


# --- temporary files a killed writer leaves -----------------------------------------------------------

HOLD_A_TEMPORARY = """
import sys, time
from datacarto._atomic import atomic_write

with atomic_write(sys.argv[1], "wb") as handle:
    handle.write(b"x" * (1 << 20))
    handle.flush()
    print("writing", flush=True)
    time.sleep(300)
"""


def test_a_killed_writers_temporary_file_is_removed_by_the_next_write(tmp_path):
    """A writer SIGKILLed mid-write leaves its temporary file beside the target; the next write
    to that target removes it, and leaves alone the temporary file of a writer still running."""
    target = tmp_path / "map.parquet"
    target.write_bytes(b"old")
    env = dict(os.environ, PYTHONPATH=PACKAGE_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))

    def start_writer() -> subprocess.Popen:
        child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(HOLD_A_TEMPORARY), str(target)], stdout=subprocess.PIPE, text=True, env=env)
        assert child.stdout is not None and child.stdout.readline().strip() == "writing"
        return child

    def temporaries() -> List[Path]:
        return sorted(tmp_path.glob(".map.parquet.*.tmp"))

    live = start_writer()
    try:
        killed = start_writer()
        killed.send_signal(signal.SIGKILL)
        killed.wait(timeout=60)
        abandoned = [p for p in temporaries() if f"-{killed.pid}." in p.name]
        assert len(abandoned) == 1 and abandoned[0].stat().st_size == 1 << 20 and len(temporaries()) == 2
        from datacarto._atomic import atomic_write

        with atomic_write(target, "wb") as handle:
            handle.write(b"new")
        assert target.read_bytes() == b"new"
        left = temporaries()
        assert len(left) == 1 and f"-{live.pid}." in left[0].name  # the running writer's is kept
    finally:
        live.kill()
        live.wait(timeout=60)
    # the map writers go through the same helper: the second writer's leftover goes with the next map
    dm = dc.DataMap.from_dynamics(np.full((2, 3, 2), 0.5, dtype=np.float32), [0, 1, 0])
    dm.write(target)
    assert temporaries() == [] and dc.DataMap.read(target).frame.equals(dm.frame)
