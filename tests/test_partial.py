"""dc.partial and dc.State: any split of a block into epoch and example pieces, merged in any
valid order, gives dc.compute's statistics on the whole; states pickle, refuse bad merges and
say what they cost."""

from __future__ import annotations

import dataclasses
import pickle

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import datacarto as dc
from _helpers import assert_same_statistics as _assert_same


def assert_same_statistics(got: dc.Statistics, want: dc.Statistics) -> None:
    # a state under an argmax rule carries no threshold of its own
    _assert_same(got, want, compare_threshold=False)


@st.composite
def blocks(draw):
    task = draw(st.sampled_from(["multiclass", "binary", "multilabel"]))
    e = draw(st.integers(1, 6))
    n = draw(st.integers(1, 25))
    l = {"multiclass": draw(st.integers(2, 5)), "binary": 1, "multilabel": draw(st.integers(1, 4))}[task]
    dtype = draw(st.sampled_from([np.float32, np.float64, np.float16]))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    if task == "multiclass":
        probs = rng.dirichlet(np.ones(l), size=(e, n))
        labels = rng.integers(0, l, size=n)
    else:
        probs = rng.random((e, n, l))
        labels = rng.integers(0, 2, size=(n, l) if task == "multilabel" else n)
    # exact corners (ties, threshold hits) as well as arbitrary values
    corners = rng.random(probs.shape) < 0.2
    probs = np.where(corners, rng.choice([0.0, 0.5, 1.0], size=probs.shape), probs)
    correctness = draw(st.sampled_from([None, "argmax", "argmax_first_index", "threshold"]))
    threshold = draw(st.sampled_from([0.5, 0.3, 0.8]))
    return probs.astype(dtype), labels, dict(task=task, correctness=correctness, threshold=threshold)


def cuts(draw, length: int):
    points = draw(st.lists(st.integers(1, max(length - 1, 1)), max_size=4)) if length > 1 else []
    bounds = [0] + sorted(set(points)) + [length]
    return list(zip(bounds[:-1], bounds[1:]))


def merge_in_random_tree(states, draw):
    states = list(states)
    while len(states) > 1:
        j = draw(st.integers(0, len(states) - 2))
        states[j : j + 2] = [states[j].merge(states[j + 1])]
    return states[0]


@given(data=st.data(), block=blocks())
@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
def test_any_split_merged_in_any_tree_equals_compute(data, block):
    probs, labels, options = block
    e, n = probs.shape[:2]
    epoch_pieces, example_pieces = cuts(data.draw, e), cuts(data.draw, n)
    ddof = data.draw(st.integers(0, min(1, e - 1)))

    def piece(ea, eb, xa, xb):
        return dc.partial(probs[ea:eb, xa:xb], labels[xa:xb], epoch_offset=ea, example_offset=xa, **options)

    if data.draw(st.booleans()):
        columns = [merge_in_random_tree([piece(ea, eb, xa, xb) for ea, eb in epoch_pieces], data.draw) for xa, xb in example_pieces]
        whole = dc.State.concat(data.draw(st.permutations(columns)))
    else:
        rows = [dc.State.concat(data.draw(st.permutations([piece(ea, eb, xa, xb) for xa, xb in example_pieces]))) for ea, eb in epoch_pieces]
        whole = merge_in_random_tree(rows, data.draw)
    assert whole.epochs == (0, e) and whole.examples == (0, n)
    assert_same_statistics(whole.finish(ddof=ddof), dc.compute(probs, labels, ddof=ddof, **options))
    assert pickle.loads(pickle.dumps(whole)) == whole


@given(block=blocks())
@settings(max_examples=50)
def test_an_unmerged_state_finishes_exactly_like_compute(block):
    probs, labels, options = block
    got, want = dc.partial(probs, labels, **options).finish(), dc.compute(probs, labels, **options)
    if want.correctness_rule != "threshold":
        assert got.threshold == 0.5  # a state under an argmax rule has no threshold: the default
        want = dataclasses.replace(want, threshold=0.5)
    assert got == want


def test_an_epoch_window_of_a_file_is_placed_by_its_offset(tmp_path):
    rng = np.random.default_rng(1)
    probs = rng.dirichlet(np.ones(3), size=(6, 50)).astype(np.float32)
    labels = rng.integers(0, 3, 50)
    path = tmp_path / "late.npy"
    np.save(path, probs[3:])
    early = dc.partial(probs[:3], labels, epochs=1)  # burn-in: epochs [1, 3)
    late = dc.partial(path, labels, epoch_offset=3)
    assert early.epochs == (1, 3) and late.epochs == (3, 6)
    assert_same_statistics(early.merge(late).finish(), dc.compute(probs, labels, epochs=1))


def test_forgetting_across_the_seam_counts():
    right_then_wrong = np.array([[[0.9, 0.1]], [[0.2, 0.8]]], dtype=np.float32)
    a, b = dc.partial(right_then_wrong[:1], [0]), dc.partial(right_then_wrong[1:], [0], epoch_offset=1)
    assert a.finish().forgetting.tolist() == [0] and b.finish().forgetting.tolist() == [0]
    merged = a.merge(b).finish()
    assert merged.forgetting.tolist() == [1] and merged.first_learned.tolist() == [-1]


@pytest.fixture
def pieces():
    rng = np.random.default_rng(2)
    probs = rng.dirichlet(np.ones(4), size=(4, 10)).astype(np.float32)
    labels = rng.integers(0, 4, 10)

    def piece(ea, eb, xa, xb, **options):
        return dc.partial(probs[ea:eb, xa:xb], labels[xa:xb], epoch_offset=ea, example_offset=xa, **options)

    return piece


def test_bad_merges_are_refused_with_the_reason(pieces):
    with pytest.raises(dc.DatacartoError, match="reversed"):
        pieces(2, 4, 0, 10).merge(pieces(0, 2, 0, 10))
    with pytest.raises(dc.DatacartoError, match=r"epochs \[1, 2\) are missing"):
        pieces(0, 1, 0, 10).merge(pieces(2, 4, 0, 10))
    with pytest.raises(dc.DatacartoError, match="overlap"):
        pieces(0, 3, 0, 10).merge(pieces(2, 4, 0, 10))
    with pytest.raises(dc.DatacartoError, match="use concat"):
        pieces(0, 2, 0, 5).merge(pieces(2, 4, 5, 10))
    with pytest.raises(dc.DatacartoError, match="correctness"):
        pieces(0, 2, 0, 10).merge(pieces(2, 4, 0, 10, correctness="threshold"))
    with pytest.raises(dc.DatacartoError, match=r"examples \[4, 5\) are missing"):
        dc.State.concat([pieces(0, 4, 0, 4), pieces(0, 4, 5, 10)])
    with pytest.raises(dc.DatacartoError, match="use merge"):
        dc.State.concat([pieces(0, 2, 0, 5), pieces(2, 4, 5, 10)])
    with pytest.raises(dc.DatacartoError, match="at least one"):
        dc.State.concat([])
    with pytest.raises(TypeError, match="later"):
        pieces(0, 2, 0, 10).merge("not a state")


def test_states_of_different_labels_do_not_merge():
    probs = np.full((2, 3, 2), 0.5, dtype=np.float32)
    a = dc.partial(probs[:1], [0, 1, 0])
    b = dc.partial(probs[1:], [0, 1, 1], epoch_offset=1)
    with pytest.raises(dc.DatacartoError, match="different gold labels"):
        a.merge(b)


def test_size_is_fixed_per_example_and_reported(pieces):
    short, long_ = pieces(0, 1, 0, 10), pieces(0, 4, 0, 10)
    assert short.nbytes == long_.nbytes  # O(1) in epochs
    assert short.bytes_per_example == 53 + 8  # the core's sums plus an int64 label
    assert len(pickle.dumps(long_)) < long_.nbytes + 400
    assert repr(long_).startswith("State(multiclass, argmax, epochs [0, 4), examples [0, 10), 4 labels,")
    wide = dc.partial(np.full((3, 5, 40), 0.025, dtype=np.float32), np.zeros(5, dtype=np.int64))
    assert wide.bytes_per_example == short.bytes_per_example  # O(1) in labels
    multilabel = dc.partial(np.full((2, 5, 3), 0.5, dtype=np.float32), np.zeros((5, 3), dtype=np.uint8))
    assert multilabel.bytes_per_example == 3 * 37 + 3  # one unit per label, uint8 targets


def test_corrupted_pickles_are_clean_errors(pieces):
    state = pieces(0, 4, 0, 10)
    data = state.to_bytes()
    func, (version, blob, labels) = state.__reduce__()
    with pytest.raises(dc.DatacartoError, match="version"):
        func(99, blob, labels)
    with pytest.raises(dc.DatacartoError, match="expected"):
        func(version, blob[:-3], labels)
    with pytest.raises(dc.DatacartoError, match="labels of shape"):
        func(version, blob, labels[:3])
    assert func(version, data, labels) == state


def test_bad_arguments():
    probs = np.full((2, 3, 2), 0.5, dtype=np.float32)
    with pytest.raises(TypeError, match="epoch_offset"):
        dc.partial(probs, [0, 1, 0], epoch_offset=1.5)
    with pytest.raises(dc.DatacartoError, match="example_offset"):
        dc.partial(probs, [0, 1, 0], example_offset=-1)
    with pytest.raises(dc.DatacartoError, match="labels"):
        dc.partial(probs, [0, 1])
    with pytest.raises(dc.DatacartoError, match="values"):
        dc.partial(np.full((2, 3, 2), 1.5, dtype=np.float32), [0, 1, 0])
    with pytest.raises(dc.DatacartoError, match="ddof"):
        dc.partial(probs[:1], [0, 1, 0]).finish(ddof=1)
    with pytest.raises(TypeError):
        dc.State(object(), np.zeros(3))


def test_a_misaligned_array_is_read_like_any_other():
    # Dask's deserialization can hand over arrays at an odd offset of a buffer
    probs = np.random.default_rng(3).dirichlet(np.ones(3), size=(2, 5)).astype(np.float32)
    raw = np.zeros(probs.nbytes + 1, dtype=np.uint8)
    misaligned = raw[1:].view(np.float32).reshape(probs.shape)
    misaligned[...] = probs
    assert not misaligned.flags.aligned
    labels = np.array([0, 1, 2, 0, 1])
    assert dc.partial(misaligned, labels) == dc.partial(probs, labels)
    assert dc.compute(misaligned, labels) == dc.compute(probs, labels)


@pytest.mark.parametrize("module_name", ["datacarto._partial", "datacarto._shards"])
def test_module_doctests(module_name):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module_name), optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0 and result.attempted > 0


@pytest.mark.parametrize("dtype, outside", [(np.float32, 1e-7), (np.float64, 2e-16), (np.float16, 1e-3)])
def test_rounding_just_outside_the_unit_interval_is_clamped_like_compute(dtype, outside):
    # softmax rounding (1 + a few ulps, -a few ulps) is clamped by compute; a piece's state
    # must fold the same repaired values, not refuse them or fold them raw
    rng = np.random.default_rng(5)
    probs = rng.dirichlet(np.ones(3), size=(4, 300)).astype(dtype)
    probs[1, 7, 0] = np.nextafter(dtype(1.0), dtype(2.0))
    probs[2, 150, 2] = -dtype(outside)
    labels = rng.integers(0, 3, 300)
    whole = dc.compute(probs, labels)
    assert dc.partial(probs, labels).finish() == whole  # one piece: bit for bit
    pieces = dc.partial(probs[:2], labels).merge(dc.partial(probs[2:], labels, epoch_offset=2))
    assert_same_statistics(pieces.finish(), whole)
    with pytest.raises(dc.DatacartoError, match="expected probabilities in"):
        bad = probs.copy()
        bad[3, 9, 1] = dtype(1.5)
        dc.partial(bad, labels)


def test_threads_out_of_range_is_a_value_error_naming_it():
    probs = np.full((2, 3, 2), 0.5, dtype=np.float32)
    with pytest.raises(dc.DatacartoError, match="threads: expected a positive int up to"):
        dc.partial(probs, [0, 1, 0], threads=2**70)
    with pytest.raises(TypeError, match="threads"):
        dc.partial(probs, [0, 1, 0], threads="2")
