"""API behaviour of ``dc.compute`` and ``Statistics``: inputs, options, outputs, progress, threads, GIL."""

from __future__ import annotations

import doctest
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, List, Tuple

import numpy as np
import polars as pl
import pytest

import datacarto as dc
from datacarto import reference
from _helpers import SIGNAL_TEST_EPOCHS, SIGNAL_TEST_EXAMPLES, signal_mid_compute


def random_probs(shape: Tuple[int, int, int], dtype: Any = np.float32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random(shape).astype(dtype)


def assert_identical(a: dc.Statistics, b: dc.Statistics) -> None:
    for name in dc.STATISTICS:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


# --- results as tables ----------------------------------------------------------------------------


def test_to_polars_multiclass() -> None:
    probs = random_probs((3, 5, 4))
    labels = np.array([0, 3, 1, 2, 3], dtype=np.int16)
    stats = dc.compute(probs, labels)
    frame = stats.to_polars()
    assert isinstance(frame, pl.DataFrame)
    assert frame.columns == ["example", "gold", *dc.STATISTICS]
    assert frame.height == 5 == len(stats)
    assert frame["example"].to_list() == [0, 1, 2, 3, 4]
    assert frame["gold"].to_list() == labels.tolist()
    for name in dc.STATISTICS:
        np.testing.assert_array_equal(frame[name].to_numpy(), getattr(stats, name))
    assert frame.schema["forgetting"] == pl.Int32 and frame.schema["first_learned"] == pl.Int32
    assert frame.schema["never_learned"] == pl.Boolean and frame.schema["confidence"] == pl.Float64
    assert list(stats.as_dict()) == list(dc.STATISTICS)


def test_to_polars_multilabel_is_one_row_per_example_and_label() -> None:
    probs = random_probs((4, 3, 2), seed=1)
    labels = np.array([[1, 0], [0, 0], [1, 1]], dtype=np.uint8)
    stats = dc.compute(probs, labels)
    frame = stats.to_polars()
    assert frame.columns == ["example", "label", "gold", *dc.STATISTICS]
    assert frame.height == 6
    assert frame["example"].to_list() == [0, 0, 1, 1, 2, 2]
    assert frame["label"].to_list() == [0, 1, 0, 1, 0, 1]
    assert frame["gold"].to_list() == [1, 0, 0, 0, 1, 1]
    for row in frame.iter_rows(named=True):
        i, j = row["example"], row["label"]
        for name in dc.STATISTICS:
            assert row[name] == getattr(stats, name)[i, j], (name, i, j)


# --- task inference and labels --------------------------------------------------------------------


def test_task_inference_and_default_rules() -> None:
    multiclass = dc.compute(random_probs((2, 4, 3)), [0, 1, 2, 0])
    assert (multiclass.task, multiclass.correctness_rule, multiclass.n_labels) == ("multiclass", "argmax", 3)
    two_columns = dc.compute(random_probs((2, 4, 2)), [0, 1, 1, 0])
    assert (two_columns.task, two_columns.correctness_rule) == ("multiclass", "argmax")
    binary = dc.compute(random_probs((2, 4, 1)), [0, 1, 1, 0])
    assert (binary.task, binary.correctness_rule, binary.threshold) == ("binary", "threshold", 0.5)
    multilabel = dc.compute(random_probs((2, 4, 3)), np.zeros((4, 3), dtype=np.int64))
    assert (multilabel.task, multilabel.correctness_rule) == ("multilabel", "threshold")
    assert multilabel.confidence.shape == (4, 3) and multilabel.labels.dtype == np.uint8
    assert multiclass.labels.dtype == np.int64
    # explicit rules override the defaults
    assert dc.compute(random_probs((2, 4, 3)), [0, 1, 2, 0], correctness="threshold").correctness_rule == "threshold"
    assert dc.compute(random_probs((2, 4, 1)), [0, 1, 1, 0], correctness="argmax").correctness_rule == "argmax"


def test_multilabel_with_one_label_equals_one_column_binary() -> None:
    probs = random_probs((5, 7, 1), seed=3)
    probs[2, :3, 0] = 0.5
    targets = np.array([1, 0, 1, 1, 0, 0, 1])
    binary = dc.compute(probs, targets)
    multilabel = dc.compute(probs, targets[:, None])
    assert (binary.task, multilabel.task) == ("binary", "multilabel")
    for name in dc.STATISTICS:
        np.testing.assert_array_equal(getattr(multilabel, name)[:, 0], getattr(binary, name), err_msg=name)


def test_two_column_binary_is_the_two_class_problem() -> None:
    # P(class 1) in one column, or [1 - p, p] in two: the same gold probabilities. Values are
    # multiples of 1/8, so 1 - p is exact and both layouts give bit-identical numbers.
    p1 = np.random.default_rng(4).integers(0, 9, (4, 6, 1)) / 8.0
    labels = np.array([0, 1, 1, 0, 1, 0])
    one = dc.compute(p1, labels, correctness="threshold")
    two = dc.compute(np.concatenate([1.0 - p1, p1], axis=2), labels, correctness="threshold")
    for name in ("confidence", "variability", "aleatoric"):
        np.testing.assert_allclose(getattr(two, name), getattr(one, name), rtol=0, atol=1e-15, err_msg=name)
    # the verdicts differ only where the value sits on the threshold: one column predicts
    # class 1 at x >= 0.5 (so gold 0 is wrong at x = 0.5), two columns ask p_gold >= 0.5
    on_threshold = (p1[:, :, 0] == 0.5) & (labels == 0)
    right_one = (p1[:, :, 0] >= 0.5) == (labels == 1)
    right_two = np.where(labels == 1, p1[:, :, 0], 1.0 - p1[:, :, 0]) >= 0.5
    assert np.array_equal(right_one | on_threshold, right_two)
    np.testing.assert_array_equal(one.correctness, right_one.mean(axis=0))
    np.testing.assert_array_equal(two.correctness, right_two.mean(axis=0))


def test_task_binary_on_two_columns_behaves_like_the_inferred_task() -> None:
    probs = np.array([[[0.5, 0.5]], [[0.4, 0.6]]], dtype=np.float32)
    inferred = dc.compute(probs, [0])
    explicit = dc.compute(probs, [0], task="binary")
    assert explicit.task == inferred.task == "multiclass"
    assert explicit.correctness_rule == inferred.correctness_rule == "argmax"
    assert_identical(explicit, inferred)


@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32, np.int64, np.uint64])
def test_class_labels_of_any_integer_dtype(dtype: Any) -> None:
    probs = random_probs((3, 6, 3), seed=5)
    expected = dc.compute(probs, np.array([0, 1, 2, 2, 1, 0], dtype=np.int64))
    stats = dc.compute(probs, np.array([0, 1, 2, 2, 1, 0], dtype=dtype))
    assert stats.labels.dtype == np.int64
    assert_identical(stats, expected)


def test_labels_as_bool_list_series_and_npy_path(tmp_path: Path) -> None:
    probs = random_probs((3, 4, 1), seed=6)
    gold = np.array([1, 0, 0, 1])
    expected = dc.compute(probs, gold)
    assert_identical(dc.compute(probs, gold.astype(bool)), expected)  # bool for binary
    assert_identical(dc.compute(probs, gold.tolist()), expected)
    assert_identical(dc.compute(probs, pl.Series(gold)), expected)
    for dtype in (np.int8, np.uint16, np.int64, np.bool_):
        path = tmp_path / f"labels_{np.dtype(dtype).name}.npy"
        np.save(path, gold.astype(dtype))
        assert_identical(dc.compute(probs, path), expected)
        assert_identical(dc.compute(probs, os.fspath(path)), expected)
    # multilabel targets from a file, as bool
    targets = np.array([[True, False], [False, False], [True, True], [False, True]])
    path = tmp_path / "targets.npy"
    np.save(path, targets)
    probs2 = random_probs((3, 4, 2), seed=7)
    from_file = dc.compute(probs2, path)
    assert from_file.task == "multilabel"
    assert_identical(from_file, dc.compute(probs2, targets.astype(np.uint8)))


# --- inputs ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_file_memmap_and_array_inputs_agree(tmp_path: Path, dtype: Any) -> None:
    probs = random_probs((4, 50, 3), dtype, seed=8)
    labels = np.random.default_rng(8).integers(0, 3, 50)
    path = tmp_path / "d.npy"
    np.save(path, probs)
    from_array = dc.compute(probs, labels)
    from_path = dc.compute(path, labels)
    mapped = np.load(path, mmap_mode="r")
    assert isinstance(mapped, np.memmap) and not mapped.flags.writeable
    from_memmap = dc.compute(mapped, labels)
    raw_map = np.memmap(path, dtype=dtype, mode="r", offset=dc.read_header(path)["data_offset"], shape=probs.shape)
    for stats in (from_path, from_memmap, dc.compute(raw_map, labels)):
        assert_identical(stats, from_array)
    assert from_path.source == os.fspath(path) and from_array.source is None and from_memmap.source is None
    np.testing.assert_allclose(from_path.variability, reference.compute(path, labels).variability, rtol=1e-9, atol=1e-12)


def test_input_array_is_not_modified() -> None:
    probs = random_probs((3, 20, 3), np.float64, seed=9)
    before = probs.copy()
    dc.compute(probs, np.zeros(20, dtype=np.int64))
    np.testing.assert_array_equal(probs, before)


def test_statistics_are_owned_read_only_arrays(tmp_path: Path) -> None:
    probs = random_probs((3, 10, 2), seed=10)
    labels = np.zeros(10, dtype=np.int64)
    path = tmp_path / "d.npy"
    np.save(path, probs)
    mapped = np.load(path, mmap_mode="r")
    for source in (path, probs, mapped):
        stats = dc.compute(source, labels)
        for name in dc.STATISTICS:
            value = getattr(stats, name)
            assert type(value) is np.ndarray, name
            assert not value.flags.writeable and value.flags.c_contiguous, name
            assert not np.shares_memory(value, probs) and not np.shares_memory(value, mapped), name
    stats = dc.compute(path, labels)
    confidence = stats.confidence.copy()
    confidence[0] = -1.0  # a copy is the caller's to change
    with pytest.raises(ValueError, match="read-only"):
        stats.confidence[0] = -1.0
    confidence = stats.confidence.copy()
    # rewrite and then delete the file: the statistics stay as they were
    np.save(path, np.ones_like(probs))
    del mapped
    os.remove(path)
    np.testing.assert_array_equal(stats.confidence, confidence)
    assert float(stats.variability.sum()) >= 0


def test_statistics_survive_their_arguments() -> None:
    stats = dc.compute(random_probs((3, 8, 2), seed=11), np.arange(8) % 2)
    import gc

    gc.collect()
    assert stats.confidence.shape == (8,) and np.isfinite(stats.el2n).all()


# --- threads --------------------------------------------------------------------------------------


def test_results_do_not_depend_on_the_thread_count_for_a_large_input() -> None:
    n = 200_000
    rng = np.random.default_rng(12)
    probs = rng.random((5, n, 3), dtype=np.float32)
    probs[rng.random(probs.shape) < 0.05] = 0.5
    labels = rng.integers(0, 3, n)
    one = dc.compute(probs, labels, threads=1)
    for threads in (2, 3, 4, None):
        assert_identical(dc.compute(probs, labels, threads=threads), one)
    np.testing.assert_allclose(one.confidence, reference.compute(probs, labels).confidence, rtol=1e-9, atol=1e-12)
    targets = rng.integers(0, 2, (n, 3))
    multilabel = dc.compute(probs, targets, threads=1)
    assert_identical(dc.compute(probs, targets, threads=2), multilabel)


def test_gil_is_released_while_computing() -> None:
    # With a switch interval far longer than the test, CPython never takes the GIL away from the
    # thread holding it: another thread runs only while the holder lets go on its own. The counter
    # thread below lets go at every step (sleep(0)). Between two progress callbacks only the core
    # runs on the calling thread, so the count moves between them exactly when the core releases
    # the GIL. No clock is read; a core holding the GIL would leave every mark equal.
    # The calling thread reports progress about every 50 ms, so the core must work for several
    # of those on one thread: the signal tests' input (float16 rows of three columns, the most
    # arithmetic per byte: ~0.3 s on one thread on the development host).
    probs = np.full((SIGNAL_TEST_EPOCHS[0], SIGNAL_TEST_EXAMPLES, 3), 0.25, dtype=np.float16)
    targets = np.random.default_rng(13).integers(0, 3, SIGNAL_TEST_EXAMPLES)
    state = {"stop": False, "count": 0}
    running = threading.Event()

    def count() -> None:
        running.set()
        while not state["stop"]:
            state["count"] += 1
            time.sleep(0)  # lets go of the GIL

    marks: List[int] = []
    previous = sys.getswitchinterval()
    counter = threading.Thread(target=count, daemon=True)
    sys.setswitchinterval(1000.0)
    try:
        counter.start()
        running.wait()
        for _ in range(3):  # the counter thread needs the OS to schedule it once in a call
            marks.clear()
            dc.compute(probs, targets, threads=1, progress=lambda done, total: marks.append(state["count"]))
            if marks[-1] > marks[0]:
                break
    finally:
        state["stop"] = True
        sys.setswitchinterval(previous)
        counter.join()
    assert len(marks) >= 2, "the core reported progress only once; the test needs a larger input"
    assert marks[-1] > marks[0], f"the counter thread never ran between progress reports: {marks}"


# --- progress -------------------------------------------------------------------------------------


def test_quiet_by_default(capfd: pytest.CaptureFixture, tmp_path: Path) -> None:
    probs = random_probs((3, 100, 2), seed=14)
    path = tmp_path / "d.npy"
    np.save(path, probs)
    capfd.readouterr()
    dc.compute(probs, np.zeros(100, dtype=np.int64))
    dc.compute(path, np.zeros(100, dtype=np.int64), progress=False)
    dc.read_header(path)
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_progress_bar(capfd: pytest.CaptureFixture) -> None:
    probs = random_probs((3, 5000, 2), seed=15)
    labels = np.zeros(5000, dtype=np.int64)
    with_bar = dc.compute(probs, labels, progress=True)
    out, err = capfd.readouterr()
    assert "statistics over 3 epochs" in err and out == ""
    assert_identical(with_bar, dc.compute(probs, labels))


@pytest.mark.parametrize("threads", [1, 2])
def test_progress_callback_ends_at_total(threads: int) -> None:
    n = 300_000
    probs = random_probs((4, n, 2), seed=16)
    calls: List[Tuple[int, int]] = []
    stats = dc.compute(probs, np.zeros(n, dtype=np.int64), threads=threads, progress=lambda done, total: calls.append((done, total)))
    assert calls, "the callback was never called"
    assert calls[-1] == (n, n)
    assert all(total == n and 0 <= done <= n for done, total in calls)
    if threads == 1:
        assert [done for done, _ in calls] == sorted(done for done, _ in calls)
    assert stats.n_examples == n
    # a tiny input still reports its end
    small: List[Tuple[int, int]] = []
    dc.compute(random_probs((2, 3, 2)), [0, 1, 0], progress=lambda *args: small.append(args))
    assert small[-1] == (3, 3)


def test_progress_callback_exception_propagates() -> None:
    class Stop(Exception):
        pass

    def callback(done: int, total: int) -> None:
        raise Stop(f"stopped at {done}/{total}")

    with pytest.raises(Stop, match="stopped at"):
        dc.compute(random_probs((2, 50_000, 3)), np.zeros(50_000, dtype=np.int64), progress=callback)
    with pytest.raises(Stop):
        dc.compute(random_probs((2, 10, 1)), np.zeros(10, dtype=np.int64), progress=callback)
    # the core is still usable afterwards
    assert dc.compute(random_probs((2, 10, 1)), np.zeros(10, dtype=np.int64)).n_examples == 10


def test_a_signal_interrupts_a_long_computation() -> None:
    # A signal reaches Python's handlers while the core runs (it polls every 50 ms); a handler's
    # exception stops the computation and propagates.
    class Interrupted(Exception):
        pass

    def handler(signum: int, frame: Any) -> None:
        raise Interrupted

    previous = signal.signal(signal.SIGINT, handler)
    try:
        outcome = signal_mid_compute(Interrupted)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert outcome["conclusive"], f"every run ended too soon after the signal to tell (the sender thread was slow to send it): {outcome}"
    assert outcome["interrupted"], f"the computation ran to completion despite the signal: {outcome}"
    assert outcome["after"] <= 2


# --- docs -----------------------------------------------------------------------------------------


def _package_modules() -> List[str]:
    """Every module of the package (the compiled one and the entry point aside)."""
    import pkgutil

    return ["datacarto"] + sorted(f"datacarto.{m.name}" for m in pkgutil.iter_modules(dc.__path__) if m.name not in ("_core", "__main__"))


#: the optional dependency a module's examples run
_EXAMPLES_NEED = {"datacarto.torch": "torch", "datacarto.sklearn": "sklearn", "datacarto.dask": "dask", "datacarto.distributed": "dask", "datacarto.transformers": "transformers"}


@pytest.mark.parametrize("module_name", _package_modules())
def test_module_doctests(module_name: str) -> None:
    """Every docstring example of every module runs and prints what it says."""
    import importlib

    if module_name in _EXAMPLES_NEED:
        pytest.importorskip(_EXAMPLES_NEED[module_name])
    module = importlib.import_module(module_name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0


# --- the threshold rule on one-column values --------------------------------------------------------


@pytest.mark.parametrize("threshold", [0.5, 0.7, 0.3])
def test_threshold_rule_on_one_column_predicts_class_1_at_or_above_the_threshold(threshold: float) -> None:
    # A one-column value x is P(class 1): the rule predicts 1 when x >= threshold, and the
    # verdict is right when that prediction is the gold label (not "1 - x >= threshold").
    x = np.array([0.0, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.9, 1.0], dtype=np.float32)
    probs = np.stack([x, x])[:, :, None]  # [2 epochs, 9 examples, 1 column]
    for gold in (0, 1):
        labels = np.full(x.size, gold)
        predicted_one = x.astype(np.float64) >= threshold
        expected = (predicted_one == (gold == 1)).astype(np.float64)
        stats = dc.compute(probs, labels, task="binary", correctness="threshold", threshold=threshold)
        np.testing.assert_array_equal(stats.correctness, expected)
        # multilabel: each label is the same one-column problem
        multi = dc.compute(probs, labels[:, None].astype(np.uint8), task="multilabel", threshold=threshold)
        np.testing.assert_array_equal(multi.correctness[:, 0], expected)


# ---------------------------------------------------------------------- statistics=[...]


@pytest.mark.parametrize("task, n_labels", [("multiclass", 5), ("multiclass", 2), ("binary", 1), ("multilabel", 3)])
@pytest.mark.parametrize("names", [["confidence"], ["confidence", "variability", "correctness"], ["never_learned", "el2n", "forgetting"], list(dc.STATISTICS)])
def test_a_subset_of_statistics_is_the_full_result_cut(tmp_path, task, n_labels, names):
    """statistics=[...] returns exactly those arrays, equal to the full computation's (from a
    file and from an array, 1 and 2 threads), and None for the rest; the rest are absent from
    as_dict() and to_polars()."""
    rng = np.random.default_rng(len(names) * 10 + n_labels)
    n = 700
    if task == "multilabel":
        probs = rng.random((4, n, n_labels)).astype(np.float32)
        labels = (rng.random((n, n_labels)) < 0.5).astype(np.uint8)
    elif task == "binary":
        probs = rng.random((4, n, 1)).astype(np.float32)
        labels = rng.integers(0, 2, n)
    else:
        probs = rng.dirichlet(np.ones(n_labels), size=(4, n)).astype(np.float32)
        labels = rng.integers(0, n_labels, n)
    path = tmp_path / "d.npy"
    np.save(path, probs)
    full = dc.compute(path, labels, task=task)
    for source in (path, probs):
        for threads in (1, 2):
            part = dc.compute(source, labels, task=task, threads=threads, statistics=names)
            assert part.computed == tuple(s for s in dc.STATISTICS if s in names)
            for name in dc.STATISTICS:
                if name in names:
                    np.testing.assert_array_equal(getattr(part, name), getattr(full, name), err_msg=name)
                    assert getattr(part, name).shape == getattr(full, name).shape
                else:
                    assert getattr(part, name) is None
            assert list(part.as_dict()) == list(part.computed)
            assert [c for c in part.to_polars().columns if c in dc.STATISTICS] == list(part.computed)
    assert (dc.compute(path, labels, task=task, statistics=names) == full) == (len(names) == len(dc.STATISTICS))


def test_a_subset_of_statistics_refuses_what_it_cannot_do(tmp_path):
    probs = np.full((2, 4, 2), 0.5, dtype=np.float32)
    labels = np.zeros(4, dtype=np.int64)
    with pytest.raises(TypeError, match="statistics: expected a list of statistic names or None, found str"):
        dc.compute(probs, labels, statistics="confidence")
    with pytest.raises(TypeError, match="statistics: expected statistic names"):
        dc.compute(probs, labels, statistics=["confidence", 3])
    with pytest.raises(dc.DatacartoError, match="statistics: expected names from confidence, variability.*found 'confidance'"):
        dc.compute(probs, labels, statistics=["confidance"])
    with pytest.raises(dc.DatacartoError, match="statistics: expected at least one statistic name"):
        dc.compute(probs, labels, statistics=[])
    part = dc.compute(probs, labels, statistics=["confidence", "correctness"])
    with pytest.raises(dc.DatacartoError, match="statistics: a DataMap needs variability, forgetting.*computed: confidence, correctness"):
        dc.DataMap(part)
    # the core checks the mask it is given too
    from datacarto import _core

    with pytest.raises(dc.DatacartoError, match="statistics: expected a non-empty bit mask"):
        _core.compute(probs, class_labels=labels, multilabel_labels=None, task="multiclass", argmax=True, threshold=0.5, epoch_start=0, epoch_stop=2, ddof=0, outputs=1 << 10)
