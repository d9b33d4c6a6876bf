"""Fuzzing the `.npy` header parser: random bytes, mutated numpy headers and random dict text.

Everything runs in-process on purpose: a panic that escaped PyO3 or a segfault in the memory
map would take pytest down, and a hang trips the faulthandler watchdog (which also aborts the
run), so "the session finished" is part of the assertion. Every outcome must be a success with
a self-consistent header, or a ``DatacartoError`` / ``OSError``.
"""

from __future__ import annotations

import ast
import faulthandler
import io
import os
import struct
import warnings
from pathlib import Path
from typing import Any, Iterator, Optional, Tuple

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import datacarto as dc

MAGIC = b"\x93NUMPY"
ACCEPTED_DESCR = {"<f2": 2, "<f4": 4, "<f8": 8, "f2": 2, "f4": 4, "f8": 8}
SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@pytest.fixture(autouse=True)
def watchdog() -> Iterator[None]:
    """Abort the whole run with a traceback if one test hangs (a hang in Rust cannot be interrupted)."""
    faulthandler.dump_traceback_later(120, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz") / "dynamics.npy"


def npy_bytes(header_text: str, data: bytes = b"", version: Tuple[int, int] = (1, 0), header_len: Optional[int] = None) -> bytes:
    """A .npy byte string with ``header_text`` as its header (optionally lying about its length)."""
    encoded = header_text.encode("utf-8" if version[0] == 3 else "latin-1", errors="replace")
    length = len(encoded) if header_len is None else header_len
    size = struct.pack("<H", length % 65536) if version[0] == 1 else struct.pack("<I", length % 2**32)
    return MAGIC + bytes(version) + size + encoded + data


def numpy_file_bytes(array: np.ndarray, version: Tuple[int, int] = (1, 0)) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, version=version)
    return buffer.getvalue()


def numpy_view(data: bytes) -> Optional[Tuple[Tuple[int, ...], np.dtype, int]]:
    """What numpy makes of ``data`` when it is a valid dynamics file by DESIGN.md, else None."""
    with warnings.catch_warnings():
        return _numpy_view(data)


def _numpy_view(data: bytes) -> Optional[Tuple[Tuple[int, ...], np.dtype, int]]:
    stream = io.BytesIO(data)
    try:
        warnings.simplefilter("ignore")  # numpy warns about Python 2 style headers it had to repair
        version = np.lib.format.read_magic(stream)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(stream)
        elif version in ((2, 0), (3, 0)):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(stream)
        else:
            return None
        offset = stream.tell()
        text = data[8 + (2 if version == (1, 0) else 4) : offset].decode("latin-1")
        descr = ast.literal_eval(text)["descr"]
    except Exception:  # numpy raises many kinds for garbage
        return None
    if descr not in ACCEPTED_DESCR or fortran or len(shape) != 3 or 0 in shape:
        return None
    size = ACCEPTED_DESCR[descr]
    if offset % size or offset + int(np.prod(shape, dtype=object)) * size > len(data):
        return None
    return tuple(int(s) for s in shape), dtype, offset


def check_file(path: Path, data: bytes) -> Optional[dict]:
    """Write ``data`` to ``path``; header and compute either work consistently or refuse cleanly."""
    path.write_bytes(data)
    name = os.fspath(path)
    try:
        header = dc.read_header(name)
    except (dc.DatacartoError, OSError) as error:
        assert name in str(error), error  # the message names the file
        header = None
    expected = numpy_view(data)
    if header is None:
        assert expected is None, f"numpy reads a valid dynamics header ({expected}) that datacarto refused"
        with pytest.raises((dc.DatacartoError, OSError)):
            dc.compute(name, [0])
        return None

    n_epochs, n_examples, n_labels = header["shape"]
    assert min(header["shape"]) >= 1
    assert header["dtype"] in ("float16", "float32", "float64")
    size = np.dtype(header["dtype"]).itemsize
    assert header["file_size"] == len(data)
    assert header["data_offset"] % size == 0
    assert header["data_offset"] + n_epochs * n_examples * n_labels * size <= len(data)
    assert header["version"][0] in (1, 2, 3)  # the minor version: see test_unknown_minor_version_is_refused
    if expected is not None:
        assert (header["shape"], header["data_offset"]) == (expected[0], expected[2])
        assert np.dtype(header["dtype"]) == expected[1].newbyteorder("=")
    labels = np.zeros(n_examples, dtype=np.int64)
    try:
        stats = dc.compute(name, labels)
    except dc.DatacartoError as error:  # garbage values are not probabilities
        assert "values" in str(error), error
    else:
        assert stats.confidence.shape == (n_examples,)
        assert np.all((stats.confidence >= 0) & (stats.confidence <= 1))
    return header


# --- random bytes --------------------------------------------------------------------------------


preambles = st.sampled_from([b"", MAGIC, MAGIC + b"\x01\x00", MAGIC + b"\x02\x00", MAGIC + b"\x03\x00", MAGIC + b"\x04\x00", b"PK\x03\x04"])


@settings(max_examples=300, **SETTINGS)
@given(prefix=preambles, body=st.binary(max_size=400))
def test_random_bytes_never_crash(scratch: Path, prefix: bytes, body: bytes) -> None:
    check_file(scratch, prefix + body)


# --- mutations of valid numpy headers -------------------------------------------------------------


@st.composite
def valid_files(draw: Any) -> bytes:
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=3, max_size=3)))
    dtype = draw(st.sampled_from([np.float16, np.float32, np.float64]))
    version = draw(st.sampled_from([(1, 0), (2, 0), (3, 0)]))
    values = np.random.default_rng(draw(st.integers(0, 2**16))).random(shape).astype(dtype)
    return numpy_file_bytes(values, version)


@st.composite
def mutated_files(draw: Any) -> bytes:
    data = bytearray(draw(valid_files()))
    header_end = data.index(b"\n") + 1
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate", "length", "append"]))
        position = draw(st.integers(0, max(min(header_end, len(data)) - 1, 0)))
        if not data:
            break
        if kind == "flip":
            data[position] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set":
            data[position] = draw(st.sampled_from(list(b"0123456789(),:'\"{} \n\x00\xffTFL-<>")))
        elif kind == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete":
            del data[position : position + draw(st.integers(1, 8))]
        elif kind == "truncate":
            del data[draw(st.integers(0, len(data))) :]
        elif kind == "length" and len(data) >= 12:
            # lie about the header length (u16 in format 1.0, u32 in 2.0 / 3.0)
            if data[6] == 1:
                data[8:10] = struct.pack("<H", draw(st.integers(0, 2**16 - 1)))
            else:
                data[8:12] = struct.pack("<I", draw(st.integers(0, 2**32 - 1)))
        elif kind == "append":
            data.extend(draw(st.binary(max_size=64)))
    return bytes(data)


@settings(max_examples=300, **SETTINGS)
@given(data=mutated_files())
def test_mutated_numpy_headers_never_crash(scratch: Path, data: bytes) -> None:
    check_file(scratch, data)


@settings(max_examples=60, **SETTINGS)
@given(data=valid_files(), extra=st.binary(max_size=40))
def test_valid_numpy_files_are_read_like_numpy(scratch: Path, data: bytes, extra: bytes) -> None:
    header = check_file(scratch, data + extra)  # trailing bytes: an uncommitted partial epoch
    assert header is not None
    array = np.load(io.BytesIO(data))
    assert header["shape"] == array.shape and header["dtype"] == array.dtype.name


# --- random dict text -----------------------------------------------------------------------------

space = st.sampled_from(["", " ", "  ", "\t", "\n"])
integers = st.one_of(st.integers(0, 6), st.integers(0, 2**70).map(str), st.sampled_from(["-1", "1L", "0x3", "1.5", "", "1e3", "٣"]))
values = st.one_of(
    st.sampled_from(["'<f4'", "'<f8'", "'<f2'", "'>f4'", "'|u1'", "\"<f4\"", "'<f4", "<f4", "[('a', '<f4')]", "True", "False", "None", "true", "1", "{}", "''"]),
    st.lists(integers, max_size=5).map(lambda items: "(" + ", ".join(str(i) for i in items) + (",)" if len(items) == 1 else ")")),
    st.text(max_size=12).map(repr),
    st.text(alphabet="(),'\"{}: 0123456789TFLa<>f", max_size=16),
)
keys = st.one_of(st.sampled_from(["'descr'", "'fortran_order'", "'shape'", "\"shape\"", "'descr", "descr", "'extra'"]), st.text(max_size=8).map(repr))


@st.composite
def dict_texts(draw: Any) -> str:
    items = draw(st.lists(st.tuples(keys, space, values, space), max_size=5))
    if draw(st.booleans()):  # mostly-valid dicts reach deeper into the validation
        items = [("'descr'", " ", draw(st.sampled_from(["'<f4'", "'<f8'", "'<f2'", "'<i8'"])), ""),
                 ("'fortran_order'", " ", draw(st.sampled_from(["False", "True"])), ""),
                 ("'shape'", " ", draw(values), "")] + items[:1]
        items = draw(st.permutations(items))
    body = ", ".join(f"{k}:{a}{v}{b}" for k, a, v, b in items)
    opening, closing = draw(st.sampled_from([("{", "}"), ("{", ", }"), ("", "}"), ("{", ""), ("(", ")"), ("{{", "}}")]))
    return draw(space) + opening + body + closing + draw(st.sampled_from(["", " " * 7, "\n", " \x00", " junk"]))


@settings(max_examples=250, **SETTINGS)
@given(text=dict_texts(), version=st.sampled_from([(1, 0), (2, 0), (3, 0)]), data=st.binary(max_size=256), pad=st.booleans())
def test_random_header_dicts_never_crash(scratch: Path, text: str, version: Tuple[int, int], data: bytes, pad: bool) -> None:
    if pad:  # pad to a 64-byte boundary like numpy, so the data can be aligned
        preamble = 10 if version == (1, 0) else 12
        text = text + " " * ((-(preamble + len(text.encode("utf-8" if version[0] == 3 else "latin-1", "replace")) + 1)) % 64) + "\n"
    check_file(scratch, npy_bytes(text, data, version))


# --- valid headers of every format ----------------------------------------------------------------


@pytest.mark.parametrize("version", [(1, 0), (2, 0), (3, 0)])
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_every_format_version_parses(tmp_path: Path, version: Tuple[int, int], dtype: Any) -> None:
    probs = np.random.default_rng(1).random((3, 5, 2)).astype(dtype)
    path = tmp_path / "d.npy"
    with open(path, "wb") as handle:
        np.lib.format.write_array(handle, probs, version=version)
    header = dc.read_header(path)
    assert header["shape"] == (3, 5, 2)
    assert header["dtype"] == np.dtype(dtype).name
    assert header["version"] == version
    assert header["file_size"] == os.path.getsize(path)
    assert header["data_offset"] == os.path.getsize(path) - probs.nbytes
    labels = np.array([0, 1, 0, 1, 1])
    from_file, from_array = dc.compute(path, labels), dc.compute(probs, labels)
    for name in dc.STATISTICS:
        np.testing.assert_array_equal(getattr(from_file, name), getattr(from_array, name))


def test_hand_written_headers_numpy_also_accepts(tmp_path: Path) -> None:
    data = np.full((2, 3, 2), 0.25, dtype=np.float32).tobytes()
    path = tmp_path / "d.npy"
    texts = [
        "{'shape': (2, 3, 2), 'fortran_order': False, 'descr': '<f4'}",  # another key order, no trailing comma
        '{"descr": "<f4", "fortran_order": False, "shape": (2,3,2)}',  # double quotes, tight tuple
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3, 2,), }",  # trailing comma in the tuple
        "{'descr':'<f4','fortran_order':False,'shape':(2L, 3L, 2L)}",  # Python 2 longs
    ]
    for text in texts:
        text = text + " " * ((-(10 + len(text) + 1)) % 64) + "\n"
        header = check_file(path, npy_bytes(text, data))
        assert header is not None and header["shape"] == (2, 3, 2), text
    # format 2.0 with a header longer than a u16 can count (numpy switches to 2.0 for those)
    text = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3, 2), }"
    text = text + " " * (70_000 - len(text)) + " " * ((-(12 + 70_000 + 1)) % 64) + "\n"
    header = check_file(path, npy_bytes(text, data, (2, 0)))
    assert header is not None and header["data_offset"] > 65_535


def test_header_length_pointing_past_the_end(tmp_path: Path) -> None:
    text = "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1, 1), }\n"
    for version, length in [((1, 0), 65_535), ((2, 0), 2**32 - 1), ((3, 0), 2**31)]:
        path = tmp_path / "d.npy"
        path.write_bytes(npy_bytes(text, b"\0" * 4, version, header_len=length))
        with pytest.raises(dc.DatacartoError, match="truncated"):
            dc.read_header(path)


@pytest.mark.parametrize("version", [(1, 1), (2, 7), (3, 255)])
def test_unknown_minor_version_is_refused(tmp_path: Path, version: Tuple[int, int]) -> None:
    data = bytearray(numpy_file_bytes(np.full((1, 2, 2), 0.5, dtype=np.float32), (version[0], 0)))
    data[7] = version[1]
    path = tmp_path / "d.npy"
    path.write_bytes(bytes(data))
    with pytest.raises(dc.DatacartoError, match="version"):
        dc.read_header(path)
