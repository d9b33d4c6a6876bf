"""Property tests: the Rust core (``dc.compute``) against the numpy reference, plus worked examples.

The reference (``datacarto.reference``) follows DESIGN.md line by line in float64. Both sides see
exactly the same input values (float16/float32 widen to float64 exactly), so one tolerance fits
every dtype: the only differences are summation order and the core's shifted-data variance.
"""

from __future__ import annotations

import math
import os
import tempfile
from typing import Any, Dict

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import datacarto as dc
from datacarto import reference

FLOAT_STATS = ("confidence", "variability", "threshold_closeness", "margin", "aleatoric", "el2n")
# correctness is a count divided by the window length on both sides: exactly equal
EXACT_STATS = ("correctness", "forgetting", "never_learned", "first_learned")
EXPECTED_DTYPES = {
    "confidence": np.float64,
    "variability": np.float64,
    "correctness": np.float64,
    "forgetting": np.int32,
    "never_learned": np.bool_,
    "first_learned": np.int32,
    "threshold_closeness": np.float64,
    "margin": np.float64,
    "aleatoric": np.float64,
    "el2n": np.float64,
}
RTOL, ATOL = 1e-9, 1e-12
DTYPES = (np.float32, np.float64, np.float16)
# label counts around the kernels' special cases: 1 (binary), 2 (two-column kernel), the
# 8-lane row buffer (7, 8, 9) and its 64-column limit (64 buffered, 65 scalar path)
MULTICLASS_L = (2, 3, 4, 5, 7, 8, 9, 28, 64, 65, 70)


# --- strategies --------------------------------------------------------------------------


@st.composite
def problems(draw: Any) -> Dict[str, Any]:
    """A random dynamics block, its gold labels and compute options."""
    kind = draw(st.sampled_from(["multiclass", "binary", "binary2", "multilabel"]))
    # more than 10 epochs: the tiled path walks float32 windows of them in parts (float16 beyond 20)
    n_epochs = draw(st.sampled_from([1, 2]) | st.integers(1, 8) | st.integers(11, 28))
    n_examples = draw(st.sampled_from([1, 2]) | st.integers(1, 40))
    if kind == "binary":
        n_labels = 1
    elif kind == "binary2":
        n_labels = 2
    elif kind == "multiclass":
        n_labels = draw(st.sampled_from(MULTICLASS_L))
    else:
        n_labels = draw(st.integers(1, 6))
    if n_labels > 8:
        n_examples = min(n_examples, 12)  # keep the wide cases cheap
    dtype = draw(st.sampled_from(DTYPES))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    shape = (n_epochs, n_examples, n_labels)

    # Values: random floats mixed with the exact corners 0, 0.5, 1, drawn from a coarse grid
    # that makes ties (equal maxima) frequent, or mostly tiny: float16 subnormals (below 2^-14)
    # and values it rounds to zero, and float32 subnormals (below 2^-126), which a uniform draw
    # in [0, 1] almost never gives.
    mode = draw(st.sampled_from(["mixed", "grid", "corners", "random", "tiny"]))
    values = rng.random(shape)
    if mode == "tiny":
        values = np.where(rng.random(shape) < 0.8, 10.0 ** rng.uniform(-45, -3, shape), values)
    if mode == "grid":
        values = rng.integers(0, 5, shape) / 4.0
    elif mode == "corners":
        values = rng.choice([0.0, 0.5, 1.0], shape)
    elif mode == "mixed":
        exact = rng.random(shape) < draw(st.sampled_from([0.1, 0.3, 0.6]))
        values = np.where(exact, rng.choice([0.0, 0.5, 1.0], shape), values)
    probs = values.astype(dtype)

    if kind == "multilabel":
        labels = rng.integers(0, 2, (n_examples, n_labels))
        labels = labels.astype(draw(st.sampled_from([np.uint8, np.int64, np.int32, np.bool_])))
    else:
        n_classes = 2 if kind == "binary" else n_labels
        labels = rng.integers(0, n_classes, n_examples)
        dtypes = [np.int64, np.int32, np.int16, np.uint8, np.uint16] + ([np.int8] if n_classes < 128 else [])
        labels = labels.astype(draw(st.sampled_from(dtypes)))
        if kind != "binary" and n_labels >= 2 and draw(st.booleans()):
            # an explicit tie between the gold column and another one at some epochs
            other = (labels.astype(np.int64) + 1) % n_labels
            rows = np.arange(n_examples)
            tie_epochs = rng.random(n_epochs) < 0.5
            for e in np.flatnonzero(tie_epochs):
                probs[e, rows, other] = probs[e, rows, labels.astype(np.int64)]

    options: Dict[str, Any] = {}
    if kind == "binary" and draw(st.booleans()):
        options["task"] = "binary"
    elif kind == "multilabel" and draw(st.booleans()):
        options["task"] = "multilabel"
    elif kind in ("multiclass", "binary2") and draw(st.booleans()):
        options["task"] = "multiclass"
    rule = draw(st.sampled_from([None, "argmax", "threshold"]))
    if rule is not None:
        options["correctness"] = rule
    if draw(st.booleans()):
        options["threshold"] = draw(st.sampled_from([0.0, 0.5, 1.0]) | st.floats(0.0, 1.0))

    # epoch windows: burn-in, (a, b) pairs (negative indices too), range and slice spellings
    window = draw(st.sampled_from(["all", "burn_in", "pair", "negative", "range", "slice"]))
    start = draw(st.integers(0, n_epochs - 1))
    stop = draw(st.integers(start + 1, n_epochs))
    if window == "burn_in":
        options["epochs"] = start
    elif window == "pair":
        options["epochs"] = (start, stop)
    elif window == "negative":
        options["epochs"] = (start - n_epochs, stop - n_epochs if stop < n_epochs else None)
    elif window == "range":
        options["epochs"] = range(start, stop)
    elif window == "slice":
        options["epochs"] = slice(start, stop)
    if window == "all":
        start, stop = 0, n_epochs
    elif window == "burn_in":
        stop = n_epochs
    if stop - start >= 2 and draw(st.booleans()):
        options["ddof"] = 1
    return {"probs": probs, "labels": labels, "options": options, "window": (start, stop), "kind": kind}


# --- helpers -----------------------------------------------------------------------------


def assert_matches(fast: dc.Statistics, slow: dc.Statistics, context: str = "") -> None:
    """Every statistic of ``fast`` equals the reference ``slow``: exactly or within RTOL/ATOL."""
    for name in dc.STATISTICS:
        a, b = getattr(fast, name), getattr(slow, name)
        assert isinstance(a, np.ndarray), name
        assert a.dtype == EXPECTED_DTYPES[name], f"{name}: dtype {a.dtype}"
        assert b.dtype == a.dtype, f"{name}: reference dtype {b.dtype} vs core {a.dtype}"
        assert a.shape == b.shape, f"{name}: shape {a.shape} vs reference {b.shape}"
        if name in EXACT_STATS:
            np.testing.assert_array_equal(a, b, err_msg=f"{name} {context}")
        else:
            np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL, err_msg=f"{name} {context}")
    for meta in ("task", "correctness_rule", "threshold", "epochs", "ddof", "n_examples", "n_labels"):
        assert getattr(fast, meta) == getattr(slow, meta), meta
    np.testing.assert_array_equal(fast.labels, slow.labels)
    assert fast.labels.dtype == slow.labels.dtype


def assert_identical(a: dc.Statistics, b: dc.Statistics, context: str = "") -> None:
    """Bit-identical statistics (NaN-free, so array_equal is exact)."""
    for name in dc.STATISTICS:
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and x.shape == y.shape, name
        np.testing.assert_array_equal(x, y, err_msg=f"{name} {context}")


SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# --- cross-checks ------------------------------------------------------------------------


@settings(max_examples=400, **SETTINGS)
@given(problems())
def test_core_matches_the_numpy_reference(problem: Dict[str, Any]) -> None:
    probs, labels, options = problem["probs"], problem["labels"], problem["options"]
    fast = dc.compute(probs, labels, **options)
    slow = reference.compute(probs, labels, **options)
    assert_matches(fast, slow, repr(options))

    n_examples, n_labels = probs.shape[1:]
    expected_shape = (n_examples, n_labels) if fast.task == "multilabel" else (n_examples,)
    assert fast.confidence.shape == expected_shape
    assert fast.epochs == problem["window"]
    assert fast.n_epochs == problem["window"][1] - problem["window"][0]
    assert fast.source is None
    # every statistic stays in its range
    assert np.all((fast.confidence >= 0) & (fast.confidence <= 1))
    assert np.all((fast.correctness >= 0) & (fast.correctness <= 1))
    assert np.all((fast.forgetting >= 0) & (fast.forgetting <= max(fast.n_epochs // 2, 0)))
    assert np.all((fast.first_learned >= -1) & (fast.first_learned < fast.n_epochs))
    np.testing.assert_array_equal(fast.never_learned, fast.correctness == 0)
    assert np.all(fast.aleatoric >= 0) and np.all(fast.variability >= 0)

    if fast.ddof == 0:
        # Data-IQ identity: mean p(1 - p) = confidence (1 - confidence) - population variance
        identity = fast.confidence * (1.0 - fast.confidence) - fast.variability**2
        np.testing.assert_allclose(fast.aleatoric, identity, rtol=0, atol=1e-12)
        np.testing.assert_allclose(slow.aleatoric, identity, rtol=0, atol=1e-12)


@settings(max_examples=120, **SETTINGS)
@given(problems())
def test_results_do_not_depend_on_threads_or_input_form(problem: Dict[str, Any]) -> None:
    probs, labels, options = problem["probs"], problem["labels"], problem["options"]
    one = dc.compute(probs, labels, threads=1, **options)
    for threads in (2, 3):
        assert_identical(one, dc.compute(probs, labels, threads=threads, **options), f"threads={threads}")

    # float16 values widen exactly: the same values held as float32 give the same bits
    if probs.dtype == np.float16:
        assert_identical(one, dc.compute(probs.astype(np.float32), labels, threads=1, **options), "float16 as float32")

    # a non-contiguous view over examples is copied once, then computed identically
    padded = np.zeros((probs.shape[0], probs.shape[1], 2 * probs.shape[2]), dtype=probs.dtype)
    padded[:, :, ::2] = probs
    view = padded[:, :, ::2]
    assert not view.flags.c_contiguous or probs.size == 1
    assert_identical(one, dc.compute(view, labels, **options), "strided view")
    assert_identical(one, dc.compute(np.asfortranarray(probs), labels, **options), "Fortran-ordered array")

    # the same block saved as a .npy file (memory-mapped by the core) gives the same numbers
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "dynamics.npy")
        np.save(path, probs)
        from_file = dc.compute(path, labels, threads=2, **options)
        assert_identical(one, from_file, "file input")
        assert from_file.source == path
        assert dc.read_header(path)["dtype"] == np.dtype(probs.dtype).name
        # the reference reads files too and agrees
        assert_matches(from_file, reference.compute(path, labels, **options), "file input, reference")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    ("shape", "kind"),
    [((3, 6000, 2), "multiclass"), ((2, 5000, 3), "multiclass"), ((23, 3000, 10), "multiclass"), ((3, 700, 70), "multiclass"), ((2, 9000, 1), "binary"), ((2, 1500, 5), "multilabel")],
)
def test_many_blocks_match_the_reference_for_any_thread_count(shape: tuple, kind: str, dtype: type) -> None:
    """Inputs spanning many work blocks (the core splits at <= 2048 units / 32 KiB per epoch)."""
    rng = np.random.default_rng(sum(shape))
    values = rng.random(shape)
    values[rng.random(shape) < 0.2] = 0.5  # plenty of exact ties and threshold hits
    probs = values.astype(dtype)
    if kind == "multilabel":
        labels = rng.integers(0, 2, shape[1:])
    else:
        labels = rng.integers(0, 2 if kind == "binary" else shape[2], shape[1])
    one = dc.compute(probs, labels, threads=1)
    assert_matches(one, reference.compute(probs, labels))
    for threads in (2, 3, None):
        assert_identical(one, dc.compute(probs, labels, threads=threads), f"threads={threads}")


@pytest.mark.parametrize("n_labels", [1, 2, 3, 10, 16, 28, 100])
def test_float16_subnormals_give_the_float32_results_bit_for_bit(n_labels: int) -> None:
    """Float16 files whose values are mostly below 2^-14 (subnormal in float16) or round to zero
    in it, over many blocks (every float16 path: the one- and two-column tiles, the column path
    of 3 to 16 columns, the wide rows): the same bits as the same values held as float32, and
    the reference's numbers."""
    shape = (3, 4096 + 24, n_labels)
    rng = np.random.default_rng(n_labels)
    values = np.where(rng.random(shape) < 0.9, 10.0 ** rng.uniform(-9, -4.3, shape), rng.random(shape))
    half = values.astype(np.float16)
    bits = half.view(np.uint16)
    assert np.mean((bits > 0) & (bits < 0x400)) > 0.5  # subnormal in float16, most of them
    assert np.mean(bits == 0) > 0.05  # rounded to zero
    labels = rng.integers(0, 2 if n_labels == 1 else n_labels, shape[1])
    for options in ({}, {"correctness": "threshold", "threshold": 1e-6}):
        ours = dc.compute(half, labels, **options)
        assert_identical(ours, dc.compute(half.astype(np.float32), labels, **options), f"float16 and float32, {options}")
        assert_matches(ours, reference.compute(half, labels, **options), f"reference, {options}")


def test_variability_stays_accurate_for_nearly_constant_probabilities() -> None:
    """Tiny spreads around a large mean: a naive sum-of-squares variance would lose them."""
    base = np.full((6, 4, 2), 0.5)
    base[:, :, 0] = 0.9 + np.arange(6)[:, None] * np.array([0.0, 1e-7, 1e-5, 1e-3])[None, :]
    base[:, :, 1] = 1.0 - base[:, :, 0]
    labels = np.zeros(4, dtype=np.int64)
    fast, slow = dc.compute(base, labels), reference.compute(base, labels)
    assert_matches(fast, slow)
    assert fast.variability[0] == 0.0
    np.testing.assert_allclose(fast.variability[1:], slow.variability[1:], rtol=1e-9)


# --- worked examples -------------------------------------------------------------------------


def test_worked_multiclass_example() -> None:
    # Four examples, three classes, four epochs. "right" = the gold column is strictly the max.
    #
    # ex 0, gold 0: e0 [.25 .5 .25] wrong   e1 [.75 .25 0] right   e2 [.5 .5 0] tie: wrong   e3 [1 0 0] right
    #   p = [.25, .75, .5, 1]: confidence 2.5/4 = .625; deviations -.375 .125 -.125 .375
    #   -> variance (.140625 + .015625 + .015625 + .140625)/4 = .078125
    #   correctness 2/4; forgetting 1 (right at e1, wrong at e2); first_learned 3; never_learned no
    #   margin: (.25-.5) + (.75-.25) + (.5-.5) + (1-0) = 1.25 -> .3125
    #   el2n: sqrt(.75²+.5²+.25²) = sqrt(.875), sqrt(.125), sqrt(.5), 0 -> mean of those
    #   aleatoric: p(1-p) = .1875 .1875 .25 0 -> .15625  (= .625*.375 - .078125)
    # ex 1, gold 2: [.5 .25 .25] [.25 .5 .25] [.5 0 .5] (tie) [.75 0 .25]: wrong at every epoch
    #   -> never_learned, first_learned -1, forgetting 0, p = [.25 .25 .5 .25], confidence .3125
    #   margin (-.25 -.25 + 0 -.5)/4 = -.25
    # ex 2, gold 1: [0 1 0] right, [.5 .25 .25] wrong, [.25 .75 0] right, [.5 .5 0] tie: wrong
    #   -> forgetting 2, first_learned -1 (wrong at the last epoch), correctness .5
    # ex 3, gold 1: [.5 .5 0] tie: wrong, then [0 1 0] right three times -> first_learned 1
    probs = np.array(
        [
            [[0.25, 0.5, 0.25], [0.5, 0.25, 0.25], [0.0, 1.0, 0.0], [0.5, 0.5, 0.0]],
            [[0.75, 0.25, 0.0], [0.25, 0.5, 0.25], [0.5, 0.25, 0.25], [0.0, 1.0, 0.0]],
            [[0.5, 0.5, 0.0], [0.5, 0.0, 0.5], [0.25, 0.75, 0.0], [0.0, 1.0, 0.0]],
            [[1.0, 0.0, 0.0], [0.75, 0.0, 0.25], [0.5, 0.5, 0.0], [0.0, 1.0, 0.0]],
        ],
        dtype=np.float32,
    )
    labels = np.array([0, 2, 1, 1])
    stats = dc.compute(probs, labels)
    assert stats.task == "multiclass" and stats.correctness_rule == "argmax"
    assert stats.correctness.tolist() == [0.5, 0.0, 0.5, 0.75]
    assert stats.forgetting.tolist() == [1, 0, 2, 0]
    assert stats.first_learned.tolist() == [3, -1, -1, 1]
    assert stats.never_learned.tolist() == [False, True, False, False]
    assert stats.confidence[0] == pytest.approx(0.625, abs=1e-15)
    assert stats.confidence[1] == pytest.approx(0.3125, abs=1e-15)
    assert stats.variability[0] == pytest.approx(math.sqrt(0.078125), abs=1e-15)
    assert stats.threshold_closeness[0] == pytest.approx(0.234375, abs=1e-15)
    assert stats.margin[0] == pytest.approx(0.3125, abs=1e-15)
    assert stats.margin[1] == pytest.approx(-0.25, abs=1e-15)
    assert stats.el2n[0] == pytest.approx((math.sqrt(0.875) + math.sqrt(0.125) + math.sqrt(0.5)) / 4, abs=1e-15)
    assert stats.aleatoric[0] == pytest.approx(0.15625, abs=1e-15)

    # ddof 1: the sample std, sum of squares .3125 / 3
    assert dc.compute(probs, labels, ddof=1).variability[0] == pytest.approx(math.sqrt(0.3125 / 3), abs=1e-15)
    # burn-in of one epoch: ex 0 is right, wrong, right over the window -> forgetting 1, first
    # learned at window epoch 2; ex 3 is right throughout -> first_learned 0
    window = dc.compute(probs, labels, epochs=1)
    assert window.epochs == (1, 4)
    assert window.forgetting.tolist() == [1, 0, 1, 0]
    assert window.first_learned.tolist() == [2, -1, -1, 0]
    assert window.confidence[0] == pytest.approx(2.25 / 3, abs=1e-15)
    # epochs (1, 3): ex 2 is wrong, right -> first learned at window epoch 1, no forgetting
    pair = dc.compute(probs, labels, epochs=(1, 3))
    assert pair.forgetting.tolist() == [1, 0, 0, 0]
    assert pair.first_learned.tolist() == [-1, -1, 1, 0]
    # threshold rule (>= .5): ex 0 right at e1, e2, e3; ex 1 right at e2 only (p = .5)
    threshold = dc.compute(probs, labels, correctness="threshold")
    assert threshold.correctness.tolist() == [0.75, 0.25, 0.75, 1.0]
    assert threshold.first_learned.tolist() == [1, -1, 2, 0]


def test_worked_binary_and_multilabel_examples() -> None:
    # One-column binary, P(class 1) over three epochs.
    # ex 0, gold 1: p = x = [.25, .75, .5]; with p >= .5: wrong, right, right
    #   -> correctness 2/3, first_learned 1, forgetting 0; margin = mean(2p - 1) = 0;
    #      el2n = mean((1 - p) * sqrt 2) = .5 sqrt 2
    # ex 1, gold 0: x = [.5, .5, 0] -> p = 1 - x = [.5, .5, 1]: the threshold rule predicts
    #   class 1 at x >= .5, so only the last epoch is right (first_learned 2); so under argmax
    #   (p > .5)
    probs = np.array([[[0.25], [0.5]], [[0.75], [0.5]], [[0.5], [0.0]]])
    stats = dc.compute(probs, np.array([1, 0]))
    assert stats.task == "binary" and stats.correctness_rule == "threshold"
    assert stats.correctness.tolist() == pytest.approx([2 / 3, 1 / 3], abs=1e-15)
    assert stats.first_learned.tolist() == [1, 2]
    assert stats.forgetting.tolist() == [0, 0]
    assert stats.margin.tolist() == pytest.approx([0.0, 1 / 3], abs=1e-15)
    assert stats.el2n.tolist() == pytest.approx([0.5 * math.sqrt(2), (0.5 + 0.5 + 0) / 3 * math.sqrt(2)], abs=1e-15)
    argmax = dc.compute(probs, np.array([1, 0]), correctness="argmax")
    assert argmax.correctness.tolist() == pytest.approx([1 / 3, 1 / 3], abs=1e-15)
    assert argmax.first_learned.tolist() == [-1, 2]  # ex 0 is at .5 (not > .5) at the last epoch

    # Multilabel, one example, two labels, targets [1, 0]:
    #   label 0: x = [1, .75] -> p = [1, .75]; label 1: x = [.25, .75] -> p = 1 - x = [.75, .25]
    #   threshold .6 (x >= .6 predicts the label): label 0 right, right; label 1 right
    #   (.25 < .6 predicts 0), wrong (.75 predicts 1): forgotten once
    probs = np.array([[[1.0, 0.25]], [[0.75, 0.75]]], dtype=np.float16)
    stats = dc.compute(probs, np.array([[1, 0]]), threshold=0.6)
    assert stats.task == "multilabel" and stats.confidence.shape == (1, 2)
    assert stats.confidence.tolist() == [[0.875, 0.5]]
    assert stats.forgetting.tolist() == [[0, 1]]
    assert stats.first_learned.tolist() == [[0, -1]]
    assert stats.correctness.tolist() == [[1.0, 0.5]]
    assert stats.variability.tolist() == [[0.125, 0.25]]
    assert stats.margin.tolist() == [[0.75, 0.0]]
    # x = .5 sits between the rules: 1 - x = .5 < .6 but x = .5 < .6 predicts 0, which is gold
    edge = dc.compute(np.array([[[0.5]]], dtype=np.float32), np.array([[0]]), threshold=0.6)
    assert edge.correctness.tolist() == [[1.0]]
