"""Test helpers shared by several test files."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any, List

import numpy as np


def controlled_dynamics(confidence, variability, n_classes=3, n_epochs=4, seed=0):
    """Multiclass dynamics whose gold-label statistics are exactly ``confidence`` / ``variability``.

    p_e alternates confidence + variability and confidence - variability (an even number of
    epochs), so the mean is the confidence and the population std the variability; gold is
    class 0 and the other classes share the rest equally.
    """
    confidence, variability = np.asarray(confidence, float), np.asarray(variability, float)
    sign = np.where(np.arange(n_epochs) % 2 == 0, 1.0, -1.0)[:, None]
    p = confidence[None] + sign * variability[None]
    probs = np.empty((n_epochs, len(confidence), n_classes))
    probs[:, :, 0] = p
    probs[:, :, 1:] = ((1.0 - p) / (n_classes - 1))[:, :, None]
    return probs.astype(np.float32), np.zeros(len(confidence), dtype=np.int64)


# Logs in the original Cartography code's format (allenai/cartography's log_training_dynamics),
# rich in the cases that differ between conventions.

KINDS = ("random", "integer_ties", "near_tie", "never_learned", "forgotten")


def make_logits(rng: np.random.Generator, n: int, k: int, epochs: int) -> tuple:
    """Logits [E, n, k], gold [n] and each example's kind (see KINDS)."""
    gold = rng.integers(0, k, n)
    kind = np.arange(n) % len(KINDS)
    logits = np.round(rng.normal(0, 2, size=(epochs, n, k)), 4)
    for i in range(n):
        g, others = gold[i], [j for j in range(k) if j != gold[i]]
        for e in range(epochs):
            row = logits[e, i]
            if KINDS[kind[i]] == "integer_ties":  # exact ties at the top, often with gold in them
                row[:] = rng.integers(0, 2, k)
            elif KINDS[kind[i]] == "near_tie":  # gold within 1e-8 of the best other: apart in float64, tied in float32
                rival = others[rng.integers(len(others))]
                row[g] = row[rival] = np.round(rng.normal(), 4)
                row[g] += rng.choice([-1e-8, 0.0, 1e-8])
                for j in others:
                    if j != rival:
                        row[j] = row[rival] - 1 - abs(row[j])
            elif KINDS[kind[i]] == "never_learned":
                row[g] = row[others].min() - 0.5
            elif KINDS[kind[i]] == "forgotten":  # right / wrong at random: forgetting events
                row[g] = row[others].max() + (0.5 if rng.random() < 0.5 else -0.5)
    return logits, gold, kind


def write_logs(root: Path, logits: np.ndarray, gold: np.ndarray, guids: List[Any], rng: np.random.Generator) -> None:
    """One shuffled dynamics_epoch_{e}.jsonl per epoch, as log_training_dynamics writes them."""
    folder = root / "training_dynamics"
    folder.mkdir(parents=True, exist_ok=True)
    for e in range(logits.shape[0]):
        order = rng.permutation(len(guids))
        path = folder / f"dynamics_epoch_{e}.jsonl"
        if importlib.util.find_spec("pandas") is not None:
            import pandas as pd

            frame = pd.DataFrame({"guid": [guids[i] for i in order], f"logits_epoch_{e}": [logits[e, i].tolist() for i in order], "gold": gold[order]})
            frame.to_json(path, lines=True, orient="records")
        else:
            path.write_text("".join(json.dumps({"guid": guids[i], f"logits_epoch_{e}": logits[e, i].tolist(), "gold": int(gold[i])}) + "\n" for i in order))


def child_env(**extra: str) -> dict:
    """Environment for a child interpreter that imports the same datacarto as this process.

    CI runs the installed wheel (the source tree has no compiled module); a development run
    may use the source checkout: either way the child gets this process's package first.
    """
    import os

    import datacarto

    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(datacarto.__file__)))
    env = dict(os.environ, **extra)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_parent, os.environ.get("PYTHONPATH")) if p)
    return env


#: statistics compared within the merge tolerance, and those compared exactly
FLOAT_STATS = ("confidence", "variability", "threshold_closeness", "margin", "aleatoric", "el2n")
EXACT_STATS = ("correctness", "forgetting", "never_learned", "first_learned")
MERGE_TOLERANCE = 1e-12  # relative or absolute, the contract of docs/scale.md


def assert_same_statistics(got: Any, want: Any, *, compare_threshold: bool = True) -> None:
    """Statistics from pieces (merged states, shards, Dask) against ``compute`` on the whole:
    integers exactly (and of the same dtype), floats within :data:`MERGE_TOLERANCE`, the same
    labels and settings. ``compare_threshold=False`` where an argmax state carries no threshold."""
    for name in EXACT_STATS:
        np.testing.assert_array_equal(getattr(got, name), getattr(want, name), err_msg=name)
        assert getattr(got, name).dtype == getattr(want, name).dtype, name
    for name in FLOAT_STATS:
        a, b = getattr(got, name), getattr(want, name)
        assert a.shape == b.shape, name
        diff = np.abs(a - b)
        assert np.all((diff <= MERGE_TOLERANCE) | (diff <= MERGE_TOLERANCE * np.abs(b))), (name, float(diff.max()))
    np.testing.assert_array_equal(got.labels, want.labels)
    settings = ("task", "correctness_rule", "epochs", "ddof", "n_examples", "n_labels") + (("threshold",) if compare_threshold else ())
    assert [getattr(got, s) for s in settings] == [getattr(want, s) for s in settings]


#: inputs for the signal tests: float16 rows of three columns, the most arithmetic per byte
#: (~0.3 s on one thread at 40 epochs on the development host); more epochs when a run ended
#: before the signal could have been seen, and the longest tried twice (a host busy enough to
#: delay the sender past one whole run)
SIGNAL_TEST_EXAMPLES = 1_000_000
SIGNAL_TEST_EPOCHS = (40, 80, 160, 160)

#: the fault tests' input (float16, as above): a pass of several progress polls (~0.4 s on one
#: thread on the development host; 120 epochs since the float16 column path made rows of three
#: columns faster). Their changes to the file are made from a progress call in
#: the first half of the pass: the worker checks the file as soon as its pass ends, possibly
#: while the callback is still changing it, and a change that lands after that check rightly
#: goes unreported (the values read were all the old file's).
MID_PASS_SHAPE = (120, SIGNAL_TEST_EXAMPLES, 3)


def signal_mid_compute(expected: type) -> dict:
    """Send SIGINT to this (main) thread while ``dc.compute`` runs, and report what happened.

    Handshake, no clock: the progress callback runs about every 50 ms on this thread while the
    core works; after its first call with work left, another thread sends SIGINT. A computation
    that ends with ``expected`` raised was interrupted; one that ends normally ignored the
    signal if progress was reported twice or more after it (the signal had time to be seen),
    and was merely too quick otherwise: then the input grows (``SIGNAL_TEST_EPOCHS``) and the
    trial is run again. Returns ``{"interrupted", "conclusive", "sent", "after", "last", "total",
    "epochs"}`` (``conclusive``: interrupted, or run on for two progress calls or more after the
    signal; ``sent``: the signal was sent before the end).
    """
    import signal
    import threading

    import datacarto as dc

    labels = np.zeros(SIGNAL_TEST_EXAMPLES, dtype=np.int64)
    main = threading.main_thread().ident
    assert main == threading.get_ident(), "signals are delivered to the main thread"
    outcome: dict = {}
    for epochs in SIGNAL_TEST_EPOCHS:
        probs = np.full((epochs, SIGNAL_TEST_EXAMPLES, 3), 0.25, dtype=np.float16)
        calls: List[int] = []
        signalled: List[int] = []
        ready, finished = threading.Event(), threading.Event()

        def send() -> None:
            ready.wait()
            if not finished.is_set():
                signal.pthread_kill(main, signal.SIGINT)  # type: ignore[arg-type]
                # counted once the signal is pending (this thread holds the GIL between the two
                # lines, so no progress call runs in between): a call counted after it ran
                # after the signal, even when this thread was slow to get here
                signalled.append(len(calls))

        def progress(done: int, total: int) -> None:
            calls.append(done)
            if done < total:
                ready.set()

        sender = threading.Thread(target=send)
        sender.start()
        interrupted = False
        try:
            dc.compute(probs, labels, threads=1, progress=progress)
        except expected:
            interrupted = True
        finally:
            finished.set()
            ready.set()
            sender.join()
        after = len(calls) - signalled[0] if signalled else 0
        conclusive = interrupted or (bool(signalled) and after >= 2)
        outcome = {"interrupted": interrupted, "conclusive": conclusive, "sent": bool(signalled), "after": after, "last": calls[-1] if calls else 0, "total": SIGNAL_TEST_EXAMPLES, "epochs": epochs}
        if conclusive:
            return outcome
        if not signalled:  # no progress report before the end: certainly too quick
            continue
        # ended right after the signal: too quick to tell, try a longer input
    return outcome
