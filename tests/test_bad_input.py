"""Every malformed input gets a clear exception naming the file or argument and what was expected.

``dc.DatacartoError`` (a ``ValueError``) for bad content, ``FileNotFoundError`` for missing files
and ``TypeError`` for arguments of the wrong kind. Messages are "<file or argument>: <field>:
expected ..., found ...", so the tests match on the origin, the field and the expectation.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import datacarto as dc

DTYPES = (np.float16, np.float32, np.float64)


def good_probs(dtype: Any = np.float32, shape: tuple = (3, 4, 2)) -> np.ndarray:
    return np.full(shape, 0.5, dtype=dtype)


LABELS = np.array([0, 1, 1, 0])


def save(path: Path, array: np.ndarray) -> str:
    np.save(path, array)
    return os.fspath(path)


def raises(exception: type, *fragments: str):
    """pytest.raises that also requires every fragment (escaped) in the message."""
    return pytest.raises(exception, match="(?s)" + "".join(f"(?=.*{re.escape(f)})" for f in fragments))


def test_error_class_is_a_value_error() -> None:
    assert issubclass(dc.DatacartoError, ValueError)
    assert dc.DatacartoError.__module__.startswith("datacarto")


# --- files that are not usable .npy dynamics -----------------------------------------------------


def both(path: str, exception: type, *fragments: str) -> None:
    """The header reader and compute both refuse ``path`` the same way."""
    with raises(exception, path, *fragments):
        dc.read_header(path)
    with raises(exception, path, *fragments):
        dc.compute(path, LABELS)


def test_text_file(tmp_path: Path) -> None:
    path = tmp_path / "dynamics.npy"
    path.write_text("epoch,example,p\n0,0,0.5\n" * 20)
    both(os.fspath(path), dc.DatacartoError, "not a .npy file")


def test_zip_file(tmp_path: Path) -> None:
    path = tmp_path / "dynamics.npz"
    np.savez(path, probs=good_probs())
    both(os.fspath(path), dc.DatacartoError, "not a .npy file")
    other = tmp_path / "archive.zip"
    with zipfile.ZipFile(other, "w") as archive:
        archive.writestr("readme.txt", "hello")
    both(os.fspath(other), dc.DatacartoError, "not a .npy file")


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.npy"
    path.touch()
    both(os.fspath(path), dc.DatacartoError, "empty")


def test_directory(tmp_path: Path) -> None:
    path = tmp_path / "folder.npy"
    path.mkdir()
    both(os.fspath(path), dc.DatacartoError, "directory")


def test_missing_file(tmp_path: Path) -> None:
    path = os.fspath(tmp_path / "nope" / "dynamics.npy")
    both(path, FileNotFoundError)
    with raises(FileNotFoundError, path):
        dc.compute(Path(path), LABELS)


def test_truncated_data(tmp_path: Path) -> None:
    path = save(tmp_path / "d.npy", good_probs())
    data = Path(path).read_bytes()
    header_len = dc.read_header(path)["data_offset"]
    # 3 * 4 * 2 float32 = 96 bytes promised
    Path(path).write_bytes(data[:-5])
    both(path, dc.DatacartoError, "truncated", "96 bytes", "holds 91")
    Path(path).write_bytes(data[:header_len])  # a valid header, no data at all
    both(path, dc.DatacartoError, "truncated", "96 bytes", "holds 0")
    Path(path).write_bytes(data[: header_len - 7])  # the header itself cut short
    both(path, dc.DatacartoError, "truncated")
    Path(path).write_bytes(data[:9])  # inside the preamble
    both(path, dc.DatacartoError, "truncated")


def test_header_promising_more_than_the_file_holds(tmp_path: Path) -> None:
    path = save(tmp_path / "d.npy", good_probs())
    data = Path(path).read_bytes()
    bigger = data.replace(b"(3, 4, 2)", b"(9, 4, 2)")  # same header length, three times the data
    assert bigger != data
    Path(path).write_bytes(bigger)
    both(path, dc.DatacartoError, "truncated data: the header promises (9, 4, 2) float32 = 288 bytes of data, the file holds 96")
    huge = data.replace(b"(3, 4, 2)", b"(99999999999999, 4, 2)")
    Path(path).write_bytes(huge)
    with raises(dc.DatacartoError, path, "shape"):
        dc.read_header(path)


@pytest.mark.parametrize(
    ("dtype", "found"),
    [("<i8", "'<i8'"), ("<i4", "'<i4'"), ("|u1", "'|u1'"), ("<c8", "'<c8'"), ("<c16", "'<c16'"), ("|b1", "'|b1'")]
    + ([("<f16", "'<f16'")] if hasattr(np, "float128") else []),
)
def test_unsupported_dtype_in_a_file(tmp_path: Path, dtype: str, found: str) -> None:
    path = save(tmp_path / "d.npy", np.zeros((1, 2, 2), dtype=dtype))
    both(path, dc.DatacartoError, "descr", "expected", "'<f4'", found)


def test_structured_dtype_in_a_file_is_refused(tmp_path: Path) -> None:
    path = save(tmp_path / "d.npy", np.zeros((1, 2, 2), dtype=[("p", "<f4")]))
    both(path, dc.DatacartoError, "descr", "structured")


def test_structured_dtype_message_names_the_dtype(tmp_path: Path) -> None:
    path = save(tmp_path / "d.npy", np.zeros((1, 2, 2), dtype=[("p", "<f4")]))
    with pytest.raises(dc.DatacartoError, match=r"structured dtype|: descr: "):
        dc.read_header(path)


def test_fortran_order(tmp_path: Path) -> None:
    array = np.asfortranarray(np.full((2, 3, 2), 0.5, dtype=np.float32))
    path = save(tmp_path / "d.npy", array)
    assert b"'fortran_order': True" in Path(path).read_bytes()[:128]
    both(path, dc.DatacartoError, "fortran_order", "C order")


@pytest.mark.parametrize("dtype", [">f4", ">f8", ">f2"])
def test_big_endian_file(tmp_path: Path, dtype: str) -> None:
    path = save(tmp_path / "d.npy", np.full((1, 2, 2), 0.5, dtype=dtype))
    both(path, dc.DatacartoError, "descr", "big-endian", f"'{dtype}'")


@pytest.mark.parametrize("dtype", [">f4", ">f8", ">f2"])
def test_big_endian_array_in_memory_is_read_correctly(dtype: str) -> None:
    # a file must be little-endian, but an in-memory array is byte-swapped once
    native = good_probs().astype(dtype.replace(">", "<"))
    stats = dc.compute(native.astype(dtype), LABELS)
    for name in dc.STATISTICS:
        np.testing.assert_array_equal(getattr(stats, name), getattr(dc.compute(native, LABELS), name))


@pytest.mark.parametrize("shape", [(2, 4), (4,), (1, 4, 2, 1), ()])
def test_wrong_number_of_dimensions(tmp_path: Path, shape: tuple) -> None:
    array = np.full(shape, 0.5, dtype=np.float32)
    path = save(tmp_path / "d.npy", array)
    both(path, dc.DatacartoError, "shape", "expected 3 dimensions")
    with raises(dc.DatacartoError, "probs", "3 dimensions"):
        dc.compute(array, LABELS)


@pytest.mark.parametrize(("shape", "axis"), [((0, 4, 2), "epochs"), ((3, 0, 2), "examples"), ((3, 4, 0), "labels")])
def test_zero_epochs_examples_or_labels(tmp_path: Path, shape: tuple, axis: str) -> None:
    array = np.zeros(shape, dtype=np.float32)
    path = save(tmp_path / "d.npy", array)
    both(path, dc.DatacartoError, "shape", axis)
    with raises(dc.DatacartoError, "probs", "at least one epoch, example and label"):
        dc.compute(array, LABELS[: shape[1]])


SAVED_BY_NUMPY = {
    "two dimensions": (np.zeros((2, 4), np.float32), "shape: expected 3 dimensions [epochs, examples, labels], found shape (2, 4)"),
    "no dimensions": (np.zeros((), np.float32), "shape: expected 3 dimensions [epochs, examples, labels], found shape ()"),
    "one dimension": (np.zeros((5,), np.float32), "shape: expected 3 dimensions [epochs, examples, labels], found shape (5,)"),
    "no epochs": (np.zeros((0, 4, 2), np.float32), "shape: expected at least one of epochs, found 0 in shape (0, 4, 2)"),
    "no labels": (np.zeros((3, 4, 0), np.float32), "shape: expected at least one of labels, found 0 in shape (3, 4, 0)"),
    "int64": (np.zeros((1, 2, 2), np.int64), "descr: expected dtype '<f4' (float32), '<f8' (float64) or '<f2' (float16), found '<i8'"),
    "big-endian": (np.zeros((1, 2, 2), ">f8"), "descr: expected little-endian '<f4', '<f8' or '<f2', found big-endian '>f8'"),
    "Fortran order": (np.asfortranarray(np.zeros((2, 3, 2), np.float32)), "fortran_order: expected C order (False), found Fortran order; re-save with np.ascontiguousarray"),
    "structured": (
        np.zeros((1, 2, 2), [("p", "<f4")]),
        "descr: expected a float dtype such as '<f4', found a structured dtype (a list of fields); structured dtypes are not supported",
    ),
}


@pytest.mark.parametrize("case", list(SAVED_BY_NUMPY))
def test_file_errors_say_exactly_what_was_found(tmp_path: Path, case: str) -> None:
    array, detail = SAVED_BY_NUMPY[case]
    path = save(tmp_path / "d.npy", array)
    with pytest.raises(dc.DatacartoError) as error:
        dc.read_header(path)
    assert str(error.value) == f"{path}: {detail}"


DICT = "{'descr': '<f4', 'fortran_order': False, 'shape': %s}"
PARSE = "header: expected a Python dict literal with 'descr', 'fortran_order' and 'shape'"
WRITTEN_BY_HAND = {
    "negative size": (DICT % "(1, 1, -1)", "shape: expected at least one of labels, found -1 in shape (1, 1, -1)"),
    "negative hex size": (DICT % "(-0x2, 1, 1)", "shape: expected at least one of epochs, found -2 in shape (-2, 1, 1)"),
    "False as a size": (DICT % "(1, False, 1)", "shape: expected at least one of examples, found 0 in shape (1, 0, 1)"),
    "float size": (DICT % "(2, 3, 4.0)", "shape: expected a tuple of integers, found (2, 3, 4.0)"),
    "list shape": (DICT % "[2, 3, 4]", "shape: expected a tuple of integers such as (10, 1000, 3), found [2, 3, 4]"),
    "a power": (DICT % "(1, 1, 10**40)", f"{PARSE}: expected ',' or ')', found '*' at line 1, column 60"),
    "size beyond 128 bits": (DICT % f"(1, 1, {10**40})", f"shape: {10**40} in (1, 1, {10**40}) is too large to address"),
    "size beyond memory": (DICT % f"(1, 1, {2**62})", f"shape: (1, 1, {2**62}) is too large to address"),
    "integer fortran_order": ("{'descr': '<f4', 'fortran_order': 0, 'shape': (1, 1, 1)}", "fortran_order: expected True or False, found 0"),
    "bytes descr": ("{'descr': b'<f4', 'fortran_order': False, 'shape': (1, 1, 1)}", "descr: expected a dtype string such as '<f4', found b'<f4'"),
    "missing shape": ("{'descr': '<f4', 'fortran_order': False}", "shape: missing from the header"),
    "extra key": (DICT[:-1] % "(1, 1, 1)" + ", 'extra': 1}", f"{PARSE} and no other key, found the key 'extra'"),
    "text after the dict": (DICT % "(1, 1, 1)" + ";", f"{PARSE}: expected only spacing or a comment after the dict, found ';' at line 1, column 61"),
    "leading zero": (DICT % "(01, 1, 1)", f"{PARSE}: leading zeros in a decimal integer are not allowed (use 0o for octal) at line 1, column 52"),
    "unterminated string": ("{'descr': '<f4, 'fortran_order': False, 'shape': (1, 1, 1)}", f"{PARSE}: expected ',' or '}}', found 'f' at line 1, column 18"),
}


@pytest.mark.parametrize("case", list(WRITTEN_BY_HAND))
def test_header_errors_say_exactly_what_was_found(tmp_path: Path, case: str) -> None:
    text, detail = WRITTEN_BY_HAND[case]
    text += " " * ((-(10 + len(text) + 1)) % 64) + "\n"
    path = tmp_path / "d.npy"
    path.write_bytes(b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text.encode("latin-1") + bytes(64))
    with pytest.raises(dc.DatacartoError) as error:
        dc.read_header(path)
    assert str(error.value) == f"{path}: {detail}"


@pytest.mark.parametrize("dtype", [np.int64, np.complex64, np.bool_, object, [("p", "<f4")]])
def test_unsupported_array_dtype(dtype: Any) -> None:
    with raises(dc.DatacartoError, "probs", "dtype", "float32"):
        dc.compute(np.zeros((1, 4, 2), dtype=dtype), LABELS)


def test_source_of_the_wrong_kind() -> None:
    with raises(TypeError, "source", "numpy array"):
        dc.compute([[[0.5, 0.5]]], [0])  # type: ignore[arg-type]
    with raises(TypeError, "source"):
        dc.compute(3, [0])  # type: ignore[arg-type]


# --- values that are not probabilities -----------------------------------------------------------

# 1 + 1e-2 lies beyond the rounding tolerance (4 epsilon of the stored dtype) of every dtype
BAD_VALUES = [np.nan, np.inf, -np.inf, -0.25, 1.5, 1.0 + 1e-2]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("task", ["multiclass", "binary", "multilabel"])
def test_rounding_within_the_tolerance_is_clamped_beyond_it_refused(tmp_path: Path, dtype: Any, task: str) -> None:
    """Softmax rounding a hair outside [0, 1] (1 + 2 ulp, -1 ulp of the stored dtype, -1e-9 for
    float32) is clamped: every statistic equals that of the clamped values, in the core and the
    numpy oracle. Past 4 epsilon of the dtype it is refused, naming the place."""
    from datacarto import reference

    eps = float(np.finfo(dtype).eps)
    columns = 1 if task == "binary" else 2
    labels = np.ones((4, 2), dtype=np.uint8) if task == "multilabel" else LABELS
    clean = np.tile(np.array([[1.0, 0.0], [0.0, 1.0], [0.3, 0.7], [1.0, 0.0]]), (3, 1, 1))[:, :, :columns].astype(dtype)
    noisy = clean.copy()
    noisy[0, 0, 0] = np.asarray(1.0 + 2 * eps, dtype=dtype)
    noisy[1, 1, 0] = np.asarray(-eps, dtype=dtype)
    if dtype == np.float32:
        noisy[2, 1, 0] = np.float32(-1e-9)
    assert (noisy != clean).sum() >= 2  # the hairs really are outside [0, 1] in the stored dtype
    expected = dc.compute(clean, labels, task=task, class_means=True)
    for source in (noisy, save(tmp_path / "noisy.npy", noisy)):
        got = dc.compute(source, labels, task=task, class_means=True)
        assert dataclass_equal(got, expected)
        np.testing.assert_array_equal(got.class_means, expected.class_means)
    oracle = reference.compute(noisy, labels, task=task, class_means=True)
    np.testing.assert_allclose(oracle.confidence, expected.confidence, rtol=1e-12)
    np.testing.assert_allclose(oracle.class_means, expected.class_means, rtol=1e-12)
    beyond = clean.copy()
    beyond[1, 2, 0] = np.asarray(1.0 + 8 * eps, dtype=dtype)
    for run in (dc.compute, reference.compute):
        with raises(dc.DatacartoError, "probs", "values", "expected probabilities in [0, 1]", "epoch 1, example 2, label 0"):
            run(beyond, labels, task=task)


def dataclass_equal(a: Any, b: Any) -> bool:
    """Equal statistics, ignoring where they came from (an array or a file)."""
    from dataclasses import replace

    return replace(a, source=None) == replace(b, source=None)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bad", BAD_VALUES, ids=["nan", "inf", "-inf", "negative", "above1", "just_above1"])
def test_values_outside_zero_one_are_located(tmp_path: Path, dtype: Any, bad: float) -> None:
    probs = good_probs(dtype, (3, 4, 2))
    probs[1, 2, 1] = bad
    where = "epoch 1, example 2, label 1"
    with raises(dc.DatacartoError, "probs", "values", "expected probabilities in [0, 1]", where):
        dc.compute(probs, LABELS)
    path = save(tmp_path / "d.npy", probs)
    with raises(dc.DatacartoError, path, "values", where):
        dc.compute(path, LABELS)
    # multilabel: (example, label) pairs are the units, the message still names both
    with raises(dc.DatacartoError, "probs", where):
        dc.compute(probs, np.ones((4, 2), dtype=np.uint8))
    # one-column binary
    with raises(dc.DatacartoError, "probs", "epoch 1, example 2, label 0"):
        dc.compute(np.ascontiguousarray(probs[:, :, 1:]), LABELS)


def test_bad_value_in_a_wide_row_and_a_late_block() -> None:
    # 70 columns take the kernel's scalar path; example 5000 sits in a later work block
    probs = np.full((2, 40, 70), 0.01, dtype=np.float64)
    probs[1, 33, 68] = -1e-9
    with raises(dc.DatacartoError, "epoch 1, example 33, label 68", "-0.000000001"):
        dc.compute(probs, np.zeros(40, dtype=np.int64))
    probs = np.full((2, 6000, 2), 0.5, dtype=np.float32)
    probs[0, 5000, 0] = np.nan
    with raises(dc.DatacartoError, "epoch 0, example 5000, label 0"):
        dc.compute(probs, np.zeros(6000, dtype=np.int64), threads=2)


def test_negative_zero_is_a_probability() -> None:
    probs = good_probs()
    probs[0, 0, 0] = -0.0
    assert dc.compute(probs, LABELS).confidence[0] == pytest.approx(1 / 3)


def test_only_the_epoch_window_is_read(tmp_path: Path) -> None:
    # A NaN outside the window is never looked at: a burn-in epoch of garbage is fine.
    probs = good_probs(np.float32, (4, 4, 2))
    probs[0, 1, 0] = np.nan
    probs[3, 2, 1] = 7.0
    path = save(tmp_path / "d.npy", probs)
    for source in (probs, path):
        stats = dc.compute(source, LABELS, epochs=(1, 3))
        assert stats.epochs == (1, 3)
        np.testing.assert_array_equal(stats.confidence, np.full(4, 0.5))
        with raises(dc.DatacartoError, "epoch 0, example 1, label 0"):
            dc.compute(source, LABELS, epochs=(0, 2))
        with raises(dc.DatacartoError, "epoch 3, example 2, label 1"):
            dc.compute(source, LABELS, epochs=2)


def test_trailing_partial_epoch_is_ignored(tmp_path: Path) -> None:
    # a writer killed mid-epoch leaves bytes after the last committed epoch
    probs = np.random.default_rng(0).random((2, 4, 2)).astype(np.float32)
    path = save(tmp_path / "d.npy", probs)
    expected = dc.compute(path, LABELS)
    with open(path, "ab") as handle:
        handle.write(np.full(5, np.nan, dtype=np.float32).tobytes() + b"\x01\x02\x03")
    header = dc.read_header(path)
    assert header["shape"] == (2, 4, 2)
    assert header["file_size"] == os.path.getsize(path)
    stats = dc.compute(path, LABELS)
    for name in dc.STATISTICS:
        np.testing.assert_array_equal(getattr(stats, name), getattr(expected, name))


# --- labels -------------------------------------------------------------------------------------


def test_labels_of_the_wrong_length() -> None:
    with raises(dc.DatacartoError, "labels", "shape (4,)", "found shape (3,)"):
        dc.compute(good_probs(), [0, 1, 1])
    with raises(dc.DatacartoError, "labels", "shape (4,)", "found shape (5,)"):
        dc.compute(good_probs(), np.zeros(5, dtype=np.int64))
    with raises(dc.DatacartoError, "labels", "shape (4,)"):
        dc.compute(good_probs(), np.zeros((4, 1, 1), dtype=np.int64))


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int64])
def test_negative_labels(dtype: Any) -> None:
    with raises(dc.DatacartoError, "labels", "class indices in [0, 2)", "found -1 at index 2"):
        dc.compute(good_probs(), np.array([0, 1, -1, 0], dtype=dtype))


def test_labels_out_of_range() -> None:
    with raises(dc.DatacartoError, "labels", "[0, 2)", "found 2 at index 3"):
        dc.compute(good_probs(), [0, 1, 1, 2])
    with raises(dc.DatacartoError, "labels", "[0, 5)", "found 5 at index 0"):
        dc.compute(good_probs(shape=(1, 4, 5)), [5, 0, 0, 0])
    # one-column binary: classes 0 and 1
    with raises(dc.DatacartoError, "labels", "[0, 2)", "found 2"):
        dc.compute(good_probs(shape=(1, 4, 1)), [0, 2, 1, 0])


@pytest.mark.parametrize("labels", [np.array([0.0, 1.0, 1.0, 0.0]), np.array([0.0, 1.0, 1.0, 0.0], dtype=np.float32), [0.0, 1.0, 1.0, 0.0]])
def test_float_class_labels_are_a_type_error(labels: Any) -> None:
    with raises(TypeError, "labels", "integer"):
        dc.compute(good_probs(), labels)


@pytest.mark.parametrize("labels", [np.array(["a", "b", "a", "b"]), np.array([0, 1, None, 0], dtype=object), {"a": 1}, 3.5])
def test_labels_of_the_wrong_kind(labels: Any) -> None:
    with raises(TypeError, "labels"):
        dc.compute(good_probs(), labels)


def test_multilabel_labels_must_be_zero_one() -> None:
    with raises(dc.DatacartoError, "labels", "only 0 and 1", "at (1, 0)"):
        dc.compute(good_probs(), np.array([[0, 1], [2, 0], [1, 1], [0, 0]]))
    with raises(dc.DatacartoError, "labels", "only 0 and 1", "(2, 1)"):
        dc.compute(good_probs(), np.array([[0, 1], [1, 0], [1, -1], [0, 0]]))
    with raises(dc.DatacartoError, "labels", "only 0 and 1"):
        dc.compute(good_probs(), np.array([[0, 1], [0.5, 0], [1, 1], [0, 0]]))
    with raises(dc.DatacartoError, "labels", "0/1 array of shape (4, 2)", "found shape (4, 3)"):
        dc.compute(good_probs(), np.zeros((4, 3), dtype=np.uint8))
    with raises(dc.DatacartoError, "labels", "0/1 array of shape (4, 2)", "found shape (4,)"):
        dc.compute(good_probs(), LABELS, task="multilabel")


def test_labels_that_do_not_fit_the_task() -> None:
    with raises(dc.DatacartoError, "labels", "integer array of shape (4,)"):
        dc.compute(good_probs(), np.zeros((4, 2), dtype=np.int64), task="multiclass")
    with raises(dc.DatacartoError, "probs", "task 'binary'", "found 3"):
        dc.compute(good_probs(shape=(1, 4, 3)), LABELS, task="binary")
    with raises(dc.DatacartoError, "probs", "task 'multiclass'", "at least 2", "found 1"):
        dc.compute(good_probs(shape=(1, 4, 1)), LABELS, task="multiclass")


def test_labels_npy_path_missing_or_bad(tmp_path: Path) -> None:
    missing = os.fspath(tmp_path / "labels.npy")
    with raises(FileNotFoundError, missing, "labels"):
        dc.compute(good_probs(), missing)
    text = tmp_path / "labels.txt"
    text.write_text("0\n1\n1\n0\n")
    with raises(dc.DatacartoError, os.fspath(text), "labels", "expected a .npy file"):
        dc.compute(good_probs(), text)
    archive = tmp_path / "labels.npz"
    np.savez(archive, labels=LABELS)
    with raises(dc.DatacartoError, os.fspath(archive), "labels", "single .npy array"):
        dc.compute(good_probs(), archive)
    pickled = tmp_path / "pickled.npy"
    np.save(pickled, np.array([0, 1, None, 0], dtype=object), allow_pickle=True)
    with raises(dc.DatacartoError, os.fspath(pickled), "labels"):
        dc.compute(good_probs(), pickled)
    short = save(tmp_path / "short.npy", np.array([0, 1]))
    with raises(dc.DatacartoError, short, "labels", "shape (4,)", "found shape (2,)"):
        dc.compute(good_probs(), short)
    floats = save(tmp_path / "floats.npy", LABELS.astype(np.float64))
    with raises(TypeError, floats, "labels", "integer"):
        dc.compute(good_probs(), floats)
    out_of_range = save(tmp_path / "range.npy", np.array([0, 1, 9, 0]))
    with raises(dc.DatacartoError, out_of_range, "labels", "found 9 at index 2"):
        dc.compute(good_probs(), out_of_range)


# --- options ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "exception", "fragments"),
    [
        ({"task": "classification"}, dc.DatacartoError, ("task", "multiclass, binary, multilabel", "'classification'")),
        ({"task": "Multiclass"}, dc.DatacartoError, ("task", "'Multiclass'")),
        ({"task": 1}, TypeError, ("task",)),
        ({"correctness": "max"}, dc.DatacartoError, ("correctness", "'argmax' or 'threshold'", "'max'")),
        ({"correctness": True}, TypeError, ("correctness",)),
        ({"threshold": 1.5}, dc.DatacartoError, ("threshold", "[0, 1]", "1.5")),
        ({"threshold": -0.01}, dc.DatacartoError, ("threshold", "[0, 1]")),
        ({"threshold": float("nan")}, dc.DatacartoError, ("threshold", "nan")),
        ({"epochs": -1}, dc.DatacartoError, ("epochs", "burn-in", ">= 0")),
        ({"epochs": 3}, dc.DatacartoError, ("epochs", "non-empty window inside [0, 3)")),
        ({"epochs": 7}, dc.DatacartoError, ("epochs", "non-empty window")),
        ({"epochs": (1, 1)}, dc.DatacartoError, ("epochs", "non-empty window")),
        ({"epochs": (2, 1)}, dc.DatacartoError, ("epochs", "[2, 1)")),
        ({"epochs": (0, 4)}, dc.DatacartoError, ("epochs", "[0, 4)")),
        ({"epochs": (-4, 2)}, dc.DatacartoError, ("epochs",)),
        ({"epochs": range(0, 3, 2)}, dc.DatacartoError, ("epochs", "step 1", "step 2")),
        ({"epochs": slice(0, 3, -1)}, dc.DatacartoError, ("epochs", "step")),
        ({"epochs": 1.5}, TypeError, ("epochs", "an int or a (start, stop) pair")),
        ({"epochs": True}, TypeError, ("epochs",)),
        ({"epochs": (0, 1, 2)}, TypeError, ("epochs",)),
        ({"epochs": "1"}, TypeError, ("epochs",)),
        ({"ddof": -1}, dc.DatacartoError, ("ddof", "non-negative int", "-1")),
        ({"ddof": 1.0}, TypeError, ("ddof", "non-negative int")),
        ({"ddof": True}, TypeError, ("ddof",)),
        ({"ddof": "1"}, TypeError, ("ddof",)),
        ({"ddof": 3}, dc.DatacartoError, ("ddof", "no degrees of freedom", "3 epoch(s)")),
        ({"ddof": 1, "epochs": 2}, dc.DatacartoError, ("ddof", "1 epoch(s)")),
        ({"threads": 0}, dc.DatacartoError, ("threads", "positive int", "0")),
        ({"threads": -2}, dc.DatacartoError, ("threads", "-2")),
        ({"threads": 1.5}, TypeError, ("threads", "1.5")),
        ({"threads": True}, TypeError, ("threads",)),
        ({"threads": "2"}, TypeError, ("threads",)),
    ],
)
def test_bad_options(options: dict, exception: type, fragments: tuple) -> None:
    with raises(exception, *fragments):
        dc.compute(good_probs(), LABELS, **options)


@pytest.mark.parametrize(
    "options",
    [{"threshold": "high"}, {"threshold": None}, {"epochs": ("a", "b")}, {"epochs": (0.5, 2)}],
    ids=["threshold-str", "threshold-None", "epochs-str-pair", "epochs-float-pair"],
)
def test_non_numeric_threshold_and_window_name_the_argument(options: dict) -> None:
    name = next(iter(options))
    with pytest.raises((dc.DatacartoError, TypeError), match=name):
        dc.compute(good_probs(), LABELS, **options)


def test_absurd_thread_count_is_refused_or_capped() -> None:
    script = textwrap.dedent(
        """
        import numpy as np, datacarto as dc
        try:
            stats = dc.compute(np.full((2, 4, 2), 0.5, dtype=np.float32), [0, 1, 1, 0], threads=10**6)
        except dc.DatacartoError as error:
            assert "threads" in str(error), error
        else:
            assert stats.n_examples == 4
        """
    )
    # A subprocess, so a runaway thread pool cannot take the test session down with it. A million
    # OS threads would fail to start (the kernel's limit is far lower) or exhaust memory, so a
    # clean exit shows the count was capped; the timeout only guards against a hang.
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
