"""Fuzzing the `.npy` header parser: random bytes, mutated numpy headers and random dict text.

Everything runs in-process on purpose: a panic that escaped PyO3 or a segfault in the memory
map would take pytest down, and a hang trips the faulthandler watchdog (which also aborts the
run), so "the session finished" is part of the assertion. Every outcome must be a success with
a self-consistent header, or a ``DatacartoError`` / ``OSError``.
"""

from __future__ import annotations

import ast
import faulthandler
import importlib
import io
import os
import struct
import unicodedata
import warnings
from pathlib import Path
from typing import Any, Iterator, Optional, Tuple

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import datacarto as dc

MAGIC = b"\x93NUMPY"
MAX_HEADER_LEN = 64 * 2**20  # rust/npy.rs: the longest header text datacarto reads
ACCEPTED_DESCR = {"<f2": 2, "<f4": 4, "<f8": 8, "f2": 2, "f4": 4, "f8": 8}
SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@pytest.fixture(autouse=True)
def watchdog() -> Iterator[None]:
    """Abort the whole run with a traceback if one test hangs (a hang in Rust cannot be interrupted).

    Generous on purpose: a test under the randomized profile runs ten times the examples."""
    faulthandler.dump_traceback_later(900, exit=True)
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


def _numpy_format_internals() -> Tuple[Any, Any]:
    """numpy's own header reader and its Python 2 repair (private; moved in numpy 2.0)."""
    for name in ("numpy.lib._format_impl", "numpy.lib.format"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        if hasattr(module, "_read_array_header") and hasattr(module, "_filter_header"):
            return module._read_array_header, module._filter_header
    raise RuntimeError("numpy.lib.format's header reader was not found")  # pragma: no cover


READ_ARRAY_HEADER, FILTER_HEADER = _numpy_format_internals()


def numpy_view(data: bytes) -> Optional[Tuple[Tuple[int, ...], np.dtype, int]]:
    """What numpy makes of ``data`` when it is a valid dynamics file by DESIGN.md, else None.

    numpy's reader is the oracle for the header text: ``ast.literal_eval``, retried for formats
    1.0 and 2.0 after dropping Python 2 ``L`` suffixes. Its size limit for untrusted headers
    (10 000 characters unless ``allow_pickle``) is a safety policy, not the format: datacarto
    reads up to MAX_HEADER_LEN bytes.
    """
    stream = io.BytesIO(data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numpy warns about Python 2 headers, Python about odd escapes
        try:
            version = np.lib.format.read_magic(stream)
            if version not in ((1, 0), (2, 0), (3, 0)):
                return None
            shape, fortran, dtype = READ_ARRAY_HEADER(stream, version, max_header_size=2**40)
            offset = stream.tell()
            # which spelling of the dtype: numpy hands back only the dtype, DESIGN.md names the descr
            text = data[8 + (2 if version == (1, 0) else 4) : offset].decode("utf-8" if version == (3, 0) else "latin-1")
            try:
                descr = ast.literal_eval(text.lstrip(" \t"))["descr"]
            except SyntaxError:
                descr = ast.literal_eval(FILTER_HEADER(text).lstrip(" \t"))["descr"]
        except Exception:  # numpy raises many kinds for garbage
            return None
    if len(text) > MAX_HEADER_LEN or not isinstance(descr, str) or descr not in ACCEPTED_DESCR or fortran or len(shape) != 3 or min(shape) < 1:
        return None
    size = ACCEPTED_DESCR[descr]
    if offset % size or offset + int(np.prod([int(s) for s in shape], dtype=object)) * size > len(data):
        return None
    return tuple(int(s) for s in shape), dtype, offset


def check_file(path: Path, data: bytes) -> Optional[dict]:
    """Write ``data`` to ``path``; header and compute either work consistently or refuse cleanly."""
    path.write_bytes(data)
    name = os.fspath(path)
    error: Optional[Exception] = None
    try:
        header = dc.read_header(name)
    except (dc.DatacartoError, OSError) as refusal:
        assert name in str(refusal), refusal  # the message names the file
        header, error = None, refusal
    expected = numpy_view(data)
    if header is None:
        assert expected is None, f"numpy reads a valid dynamics header ({expected}) that datacarto refused: {error}"
        with pytest.raises((dc.DatacartoError, OSError)):
            dc.compute(name, [0])
        return None
    assert expected is not None, f"datacarto read {header} from a header numpy refuses (or DESIGN.md does)"

    n_epochs, n_examples, n_labels = header["shape"]
    assert min(header["shape"]) >= 1
    assert header["dtype"] in ("float16", "float32", "float64")
    size = np.dtype(header["dtype"]).itemsize
    assert header["file_size"] == len(data)
    assert header["data_offset"] % size == 0
    assert header["data_offset"] + n_epochs * n_examples * n_labels * size <= len(data)
    assert header["version"][0] in (1, 2, 3)  # the minor version: see test_unknown_minor_version_is_refused
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


# --- every spelling numpy's reader accepts, differentially ---------------------------------------

# Header texts NumPy reads as a valid float32 file: each is an explicit example of the
# differential test below, and datacarto must read it with the same shape, dtype and data
# offset. rust/npy.rs has the same forms as unit tests.
NUMPY_SPELLINGS = {
    "numpy's own": "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3, 4), }",
    "comment right after the dict": "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3, 4), }#",
    "comment lines after": "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3, 4)} # note\n#more\n",
    "comments inside": "{'descr': '<f4', # dtype\n 'fortran_order': False, 'shape': (2, 3, 4 # labels\n)}",
    "comment and blank lines before": "# hand-written\n\n  # indented comment\n{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3, 4)}",
    "one key per line": "{\n  'descr': '<f4',\n  'fortran_order': False,\n  'shape': (\n    2,\n    3,\n    4,\n  ),\n}",
    "no spaces": "{'descr':'<f4','fortran_order':False,'shape':(2,3,4)}",
    "tabs and form feeds": "\t {\t'descr'\t:\x0c'<f4' , 'fortran_order' : False , 'shape' : ( 2 , 3 , 4 ) }",
    "CRLF and CR line ends": "{'descr': '<f4',\r\n 'fortran_order': False,\r 'shape': (2, 3, 4)}\r\n\r\n",
    "form feed lines": "\n\x0c{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3, 4)}\n\n   \n\t\n\x0c",
    "line continuations": "{'descr': '<f4', 'fortran_order': False, \\\n'shape': (2, 3, 4)} \\\n  ",
    "key order": "{'shape': (2, 3, 4), 'fortran_order': False, 'descr': '<f4'}",
    "repeated keys, last wins": "{'descr': '<f2', 'shape': (9, 9, 9), 'fortran_order': True, 'descr': '<f4', 'fortran_order': False, 'shape': (2, 3, 4)}",
    "trailing comma in the tuple": "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3, 4,)}",
    "nested parentheses": "{'descr': '<f4', 'fortran_order': (False), 'shape': (((2), (3), ((4)),))}",
    "the dict in parentheses": "({'descr': '<f4', 'fortran_order': False, 'shape': (2, 3, 4)})",
    "double quotes": '{"descr": "<f4", "fortran_order": False, "shape": (2, 3, 4)}',
    "string prefixes": "{u'descr': U'<f4', r'fortran_order': False, R'shape': (2, 3, 4)}",
    "triple quotes": "{'''descr''': \"\"\"<f4\"\"\", 'fortran_order': False, 'shape': (2, 3, 4)}",
    "implicit concatenation": "{'de' \"scr\": '<' 'f4', 'fortran_' # split\n 'order': False, 'shape': (2, 3, 4)}",
    "escapes": "{'\\x64escr': '\\x3cf\\64', 'fortran\\u005forder': False, 's\\U00000068ape': (2, 3, 4)}",
    "named escapes": "{'descr': '\\N{LESS-THAN SIGN}\\N{latin small letter f}\\N{DIGIT FOUR}', 'fortran_order': False, 'shape': (2, 3, 4)}",
    "line continuation in a string": "{'descr': '<f\\\n4', 'fortran_order': False, 'shape': (2, 3, 4)}",
    "other literals under a repeated key": "{'descr': [('a', 1.5e3, -2j, 1+2j, ..., None, b'x', {1, (2,)}, set(), {})], 'descr': '<f4', 'fortran_order': False, 'shape': (2, 3, 4)}",
    "hex, octal and binary": "{'descr': '<f4', 'fortran_order': False, 'shape': (0x2, 0o3, 0b100)}",
    "underscores and a plus sign": "{'descr': '<f4', 'fortran_order': False, 'shape': (1_0, 0b_1_1, + 4)}",
    "True as a size": "{'descr': '<f4', 'fortran_order': False, 'shape': (True, 3, 4)}",
    "Python 2 longs": "{'descr': '<f4', 'fortran_order': False, 'shape': (2L, 3 L, 0x4L)}",
}

# Header texts NumPy refuses (or DESIGN.md does) that look close to valid ones.
REFUSED_SPELLINGS = {
    "negative size": "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3, -4)}",
    "zero size": "{'descr': '<f4', 'fortran_order': False, 'shape': (2, False, 4)}",
    "leading zero": "{'descr': '<f4', 'fortran_order': False, 'shape': (02, 3, 4)}",
    "two signs": "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3, --4)}",
    "lowercase long": "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3, 4l)}",
    "an extra key": "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3, 4), 'extra': 1}",
    "text after the dict": "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3, 4)};",
    "vertical tab after the dict": "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3, 4)}\x0b",
    "indented dict": "\n  {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3, 4)}",
    "f-string": "{'descr': f'<f4', 'fortran_order': False, 'shape': (2, 3, 4)}",
    "bytes descr": "{'descr': b'<f4', 'fortran_order': False, 'shape': (2, 3, 4)}",
    "another spelling of float32": "{'descr': 'float32', 'fortran_order': False, 'shape': (2, 3, 4)}",
    "float size": "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3, 4.0)}",
    "integer fortran_order": "{'descr': '<f4', 'fortran_order': 0, 'shape': (2, 3, 4)}",
}


def header_file(text: str, version: Tuple[int, int], pad: bool = True) -> bytes:
    """A .npy file with ``text`` as its header (padded like numpy's) and the data numpy expects."""
    encoding = "utf-8" if version == (3, 0) else "latin-1"
    if pad:
        preamble = 10 if version == (1, 0) else 12
        text = text + " " * ((-(preamble + len(text.encode(encoding, "replace")) + 1)) % 64) + "\n"
    header = npy_bytes(text, version=version)
    data = b"\0" * 64
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            stream = io.BytesIO(header)
            np.lib.format.read_magic(stream)
            shape, _, dtype = READ_ARRAY_HEADER(stream, version, max_header_size=2**40)
            if all(isinstance(n, int) and 0 <= n <= 16 for n in shape) and dtype.kind == "f":
                data = np.full(tuple(int(n) for n in shape), 0.25, dtype=dtype).tobytes()
        except Exception:  # not a header numpy reads: any data will do
            pass
    return header + data


gaps = st.sampled_from(["", " ", "  ", "\t", "\n", "\x0c", " # note\n", "\\\n", "\r\n", "\n\n  "])
ESCAPES = ["plain"] * 4 + ["x", "octal", "u", "U", "N"]


def escaped(char: str, form: str) -> str:
    code = ord(char)
    if form == "x":
        return f"\\x{code:02x}"
    if form == "octal":
        return f"\\{code:o}"
    if form == "u":
        return f"\\u{code:04x}"
    if form == "U":
        return f"\\U{code:08X}"
    if form == "N":
        return "\\N{%s}" % unicodedata.name(char).lower()
    return char


@st.composite
def string_literals(draw: Any, value: str) -> str:
    """``value`` spelled as a Python string literal: quotes, prefixes, escapes, concatenation."""
    cut = draw(st.integers(0, len(value)))
    pieces = [value[:cut], value[cut:]] if draw(st.booleans()) else [value]
    spelled = []
    for piece in pieces:
        quote = draw(st.sampled_from(["'", '"', "'" * 3, '"' * 3]))
        prefix = draw(st.sampled_from(["", "", "u", "U", "r", "R"]))
        raw = prefix in ("r", "R")
        body = "".join(char if raw else escaped(char, draw(st.sampled_from(ESCAPES))) for char in piece)
        spelled.append(prefix + quote + body + quote)
    return draw(gaps).join(spelled)


@st.composite
def int_literals(draw: Any, value: int) -> str:
    """``value`` spelled as literal_eval takes it (and a few ways it does not)."""
    magnitude = abs(value)
    valid_forms = ["decimal", "decimal", "hex", "octal", "binary", "underscore", "plus", "paren", "bool"]
    form = draw(st.sampled_from(valid_forms * 3 + ["long", "zeros"]))
    if form == "hex":
        text = draw(st.sampled_from(["0x", "0X", "0x_"])) + f"{magnitude:x}"
    elif form == "octal":
        text = draw(st.sampled_from(["0o", "0O"])) + f"{magnitude:o}"
    elif form == "binary":
        text = draw(st.sampled_from(["0b", "0B"])) + f"{magnitude:b}"
    elif form == "underscore":
        text = "_".join(str(magnitude)) if magnitude else "0_0"
    elif form == "plus":
        text = "+" + draw(st.sampled_from(["", " ", "\t", "\\\n"])) + str(magnitude)
    elif form == "paren":
        text = "(" + str(magnitude) + ")"
    elif form == "bool" and magnitude in (0, 1):
        text = ["False", "True"][magnitude]
    elif form == "long":
        text = str(magnitude) + draw(st.sampled_from(["L", " L", "L", " L", "l", "LL", "L L"]))
    elif form == "zeros":
        text = "0" + str(magnitude)  # a leading zero: refused unless the value is 0
    else:
        text = str(magnitude)
    return "-" + text if value < 0 else text


@st.composite
def header_spellings(draw: Any) -> str:
    """A header dict text built from the spellings literal_eval accepts, with a few it refuses."""
    if draw(st.integers(0, 9)) == 0:
        dims = draw(st.lists(st.integers(-1, 4), max_size=4))
    else:
        dims = draw(st.lists(st.integers(1, 4), min_size=3, max_size=3))
    items = [draw(int_literals(d)) for d in dims]
    comma = "," if len(items) == 1 or (items and draw(st.booleans())) else ""
    shape = "(" + draw(gaps) + ("," + draw(gaps)).join(items) + comma + draw(gaps) + ")"
    if draw(st.booleans()):
        shape = "(" + draw(gaps) + shape + draw(gaps) + ")"
    descr = draw(st.sampled_from(["<f4", "<f8", "<f2", "f4", "f8", "f2"] * 3 + [">f4", "<i8", "float32"]))
    odd_descr = draw(st.integers(0, 9)) == 0
    values = {
        "descr": draw(st.sampled_from(["b'<f4'", "[('a', '<f4')]", "('<f4', (2,))"])) if odd_descr else draw(string_literals(descr)),
        "fortran_order": draw(st.sampled_from(["False"] * 12 + ["(False)", "(\nFalse # C order\n)", "True", "0", "(False,)"])),
        "shape": shape,
    }
    entries = [(draw(string_literals(key)), value) for key, value in values.items()]
    if draw(st.integers(0, 4)) == 0:  # a repeated key: the first value is overwritten
        overwritten = draw(st.sampled_from(["1.5", "None", "'<f8'", "(9, 9, 9)", "[1, {2: 3}]", "True", "-2j", "1+2j"]))
        entries.insert(0, (draw(string_literals(draw(st.sampled_from(list(values))))), overwritten))
    if draw(st.integers(0, 9)) == 0:
        entries.append((draw(string_literals("extra")), "1"))
    entries = draw(st.permutations(entries))
    body = ("," + draw(gaps)).join(f"{key}{draw(gaps)}:{draw(gaps)}{value}" for key, value in entries)
    text = "{" + draw(gaps) + body + draw(st.sampled_from(["", ",", ", ", ",\n"])) + draw(gaps) + "}"
    if draw(st.integers(0, 9)) == 0:
        text = "(" + text + ")"
    leading = draw(st.sampled_from(["", "", " ", "\t", "\n", "# c\n", "\x0c", "\n\n", "\n  "]))
    trailing = draw(st.sampled_from(["", "", "#", " # c", "\n", "\n\n", "\n\x0c", " \\\n ", "\r\n", "\n  # c", ";", "\n  x"]))
    return leading + text + trailing


def _with_every_spelling(test: Any) -> Any:
    """An explicit @example per spelling above, in format 1.0 and (without Python 2 longs) 3.0."""
    for text in {**NUMPY_SPELLINGS, **REFUSED_SPELLINGS}.values():
        versions = [(1, 0)] if "L)" in text or "L," in text else [(1, 0), (3, 0)]
        for version in versions:
            test = example(text=text, version=version, pad=True)(test)
    return test


@settings(max_examples=400, **SETTINGS)
@_with_every_spelling
@given(text=header_spellings(), version=st.sampled_from([(1, 0), (2, 0), (3, 0)]), pad=st.integers(0, 9).map(bool))
def test_header_spellings_match_numpy(scratch: Path, text: str, version: Tuple[int, int], pad: bool) -> None:
    """datacarto reads a header exactly when numpy does (and DESIGN.md allows), with the same result."""
    check_file(scratch, header_file(text, version, pad))


@pytest.mark.parametrize("name", list(NUMPY_SPELLINGS))
def test_numpy_spellings_are_read(tmp_path: Path, name: str) -> None:
    """Each spelling is one numpy accepts, so the examples above test acceptance, not just agreement."""
    data = header_file(NUMPY_SPELLINGS[name], (1, 0))
    assert numpy_view(data) is not None, name
    header = check_file(tmp_path / "d.npy", data)
    assert header is not None and header["dtype"] == "float32" and header["shape"][1:] == (3, 4)


@pytest.mark.parametrize("name", list(REFUSED_SPELLINGS))
def test_refused_spellings_are_refused(tmp_path: Path, name: str) -> None:
    data = header_file(REFUSED_SPELLINGS[name], (1, 0))
    assert numpy_view(data) is None, name
    assert check_file(tmp_path / "d.npy", data) is None


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
