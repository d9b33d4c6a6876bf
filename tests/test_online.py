"""datacarto.online.StateRecorder: a run keeping only the state, checkpointed atomically at
each epoch's end and resumed after a real SIGKILL; State.save / State.load."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import datacarto as dc
from _helpers import child_env
from datacarto.online import NO_TRAJECTORIES, StateRecorder

E, N, L = 6, 50, 4


@pytest.fixture
def run():
    rng = np.random.default_rng(9)
    logits = rng.normal(size=(E, N, L)) * 3
    labels = rng.integers(0, L, N)
    return logits, labels


def assert_matches(stats, probs, labels):
    want = dc.compute(probs, labels)
    for name in ("correctness", "forgetting", "never_learned", "first_learned"):
        np.testing.assert_array_equal(getattr(stats, name), getattr(want, name), err_msg=name)
    for name in ("confidence", "variability", "margin", "aleatoric", "el2n"):
        np.testing.assert_allclose(getattr(stats, name), getattr(want, name), rtol=1e-12, atol=1e-12, err_msg=name)


def record_epochs(recorder, logits, epochs, rng):
    for epoch in epochs:
        order = rng.permutation(N)
        for batch in np.array_split(order, 4):
            recorder.record(batch, logits[epoch, batch])
        recorder.end_epoch()


def test_a_state_only_run_gives_the_statistics_of_the_dynamics(tmp_path, run):
    logits, labels = run
    recorder = StateRecorder(tmp_path / "run.state", labels, n_labels=L)
    record_epochs(recorder, logits, range(E), np.random.default_rng(0))
    assert recorder.n_epochs == E
    assert not any(p.suffix == ".npy" for p in tmp_path.iterdir())  # no [E, N, L] anywhere
    assert os.path.getsize(tmp_path / "run.state") < 100 * N  # about 61 bytes an example
    stats = recorder.compute()
    assert_matches(stats, dc.to_probabilities(logits), labels)
    assert stats.extra["trajectories"] == NO_TRAJECTORIES
    with pytest.raises(dc.DatacartoError, match="trajectories are unavailable"):
        recorder.trajectories(0)


CHILD = textwrap.dedent(
    """
    import os, signal, sys
    import numpy as np
    from datacarto import _atomic
    from datacarto.online import StateRecorder
    path, kill_at = sys.argv[1], int(sys.argv[2])
    rng = np.random.default_rng(9)
    logits = rng.normal(size=({E}, {N}, {L})) * 3
    labels = rng.integers(0, {L}, {N})
    recorder = StateRecorder(path, labels, n_labels={L}, resume=True)
    real_replace = os.replace
    def replace(src, dst):
        # killed between writing the new checkpoint and renaming it into place
        if recorder.n_epochs == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        real_replace(src, dst)
    _atomic.os.replace = replace
    for epoch in range(recorder.n_epochs, {E}):
        for batch in np.array_split(np.arange({N}), 3):
            recorder.record(batch, logits[epoch, batch])
            if epoch == kill_at + 1:
                os.kill(os.getpid(), signal.SIGKILL)  # killed in the middle of an epoch
        recorder.end_epoch()
    print(recorder.n_epochs)
    """
).format(E=E, N=N, L=L)


def test_a_killed_run_resumes_without_losing_a_committed_epoch(tmp_path, run):
    logits, labels = run
    path = tmp_path / "run.state"
    env = child_env()

    def child(kill_at):
        return subprocess.run([sys.executable, "-c", CHILD, str(path), str(kill_at)], env=env, capture_output=True, text=True, timeout=120)

    # killed while committing epoch 3: epochs 0..2 are on disk, the temporary file is not the checkpoint
    first = child(kill_at=3)
    assert first.returncode == -signal.SIGKILL, first.stderr
    assert dc.State.load(path).epochs == (0, 3)
    # resumed, then killed in the middle of epoch 3 (kill_at + 1 with kill_at = 2 never matches a commit)
    second = child(kill_at=2)
    assert second.returncode == -signal.SIGKILL, second.stderr
    assert dc.State.load(path).epochs == (0, 3)
    third = child(kill_at=-1)
    assert third.returncode == 0, third.stderr
    assert third.stdout.strip() == str(E)
    stats = StateRecorder(path, labels, n_labels=L, resume=True).compute()
    assert_matches(stats, dc.to_probabilities(logits), labels)
    assert not [p for p in tmp_path.iterdir() if p.name != "run.state"]  # no temporary left behind


def test_resume_refuses_other_labels_and_settings(tmp_path, run):
    logits, labels = run
    path = tmp_path / "run.state"
    recorder = StateRecorder(path, labels, n_labels=L, inputs="logits")
    record_epochs(recorder, logits, range(2), np.random.default_rng(1))
    with pytest.raises(FileExistsError):
        StateRecorder(path, labels, n_labels=L)
    with pytest.raises(dc.DatacartoError, match="other settings or labels"):
        StateRecorder(path, (labels + 1) % L, n_labels=L, resume=True)
    with pytest.raises(dc.DatacartoError, match="other settings or labels"):
        StateRecorder(path, labels, n_labels=L, correctness="threshold", resume=True)
    assert StateRecorder(path, labels, n_labels=L, overwrite=True).n_epochs == 0


def test_incomplete_and_duplicate_batches_are_refused(tmp_path, run):
    logits, labels = run
    recorder = StateRecorder(tmp_path / "run.state", labels, n_labels=L)
    recorder.record(np.arange(10), logits[0, :10])
    with pytest.raises(dc.DatacartoError, match="recorded twice"):
        recorder.record([3], logits[0, 3:4])
    with pytest.raises(dc.DatacartoError, match="40 example.s. not recorded, the first 10"):
        recorder.end_epoch()
    with pytest.raises(dc.DatacartoError, match="indices: expected examples"):
        recorder.record([N], logits[0, :1])
    with pytest.raises(dc.DatacartoError, match="logits"):
        recorder.record([10], np.full((1, L), np.nan))
    assert recorder.n_epochs == 0 and not (tmp_path / "run.state").exists()


def test_state_files_are_checked(tmp_path, run):
    logits, labels = run
    state = dc.partial(dc.to_probabilities(logits), labels)
    path = tmp_path / "s.state"
    state.save(path)
    assert dc.State.load(path) == state
    data = path.read_bytes()
    for name, content, message in (
        ("trunc.state", data[:100], "truncated"),
        ("other.state", b"hello" * 10, "expected a datacarto state file"),
        ("nolabels.state", data[: len(data) - 200], "labels"),
    ):
        (tmp_path / name).write_bytes(content)
        with pytest.raises(dc.DatacartoError, match=message):
            dc.State.load(tmp_path / name)
