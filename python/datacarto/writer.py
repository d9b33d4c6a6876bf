"""The growing dynamics file: :class:`DynamicsWriter` and :func:`to_probabilities`.

A training loop hands over the model's probabilities (or logits) for every training example,
one epoch at a time or in shuffled minibatches; the writer appends them to a standard ``.npy``
file of shape ``[E, N, L]`` whose epoch count ``E`` grows by one per committed epoch.

How the file stays valid whatever happens to the writing process:

* The header has a fixed size (a multiple of 64 bytes, numpy's alignment) and room for a
  20-digit epoch count, so it is rewritten in place and the data never moves.
* An epoch's bytes go *after* the committed epochs, are flushed (and ``fsync``-ed unless
  ``fsync=False``), and only then is the header's shape rewritten to count the epoch. A
  process killed at any moment (SIGKILL included) leaves a file whose header counts exactly
  the epochs that were complete; the bytes of an epoch in progress trail behind the promised
  data, where ``numpy.load`` and :func:`datacarto.compute` never look.
* ``resume=True`` reopens such a file, cuts the trailing partial epoch and continues.
* A reader running while training goes on sees only committed epochs: it reads the header
  first and never looks past what the header promises. The epoch count is written
  right-aligned in a fixed-width field, so even a read torn in the middle of a header
  rewrite yields either a smaller epoch count (still all committed data) or a count the file
  cannot hold (an error), never uncommitted bytes.
* A second writer on the same file is refused (an advisory ``flock`` on POSIX systems, which
  also keeps apart two writers in one process, in different threads). The lock belongs to the
  file (the inode), not to its name: after ``flock`` succeeds the writer checks that the path
  still names the inode it locked, and if another writer replaced it meanwhile it locks the
  new file instead (and is refused while that one is held).
* ``overwrite=True`` never truncates the old file: while holding the old file's lock it builds
  the new, empty file beside it (a temporary name in the same folder), locks it and renames it
  over the path. A reader that has the old file open or mapped keeps reading the old
  contents; a new reader sees a valid file with 0 committed epochs.
* A full disk raises :class:`OSError` (``ENOSPC``) from :meth:`~DynamicsWriter.write_epoch`,
  :meth:`~DynamicsWriter.write_batch` or :meth:`~DynamicsWriter.commit_epoch`, never kills
  the process: an epoch's space is reserved (``posix_fallocate``, or zeros written with
  ``pwrite`` where the filesystem cannot preallocate) before any row is written into it, in
  particular before the memory map that :meth:`~DynamicsWriter.write_batch` scatters rows
  through (a write through a map into space the disk cannot provide is a SIGBUS). After such
  an error the writer holds no epoch in progress and the file holds exactly the committed
  epochs: free some space and write the epoch again, or close. (On copy-on-write filesystems,
  btrfs or ZFS, a reservation cannot promise space for later overwrites; there the batch path
  can still fail at a page fault on a full disk.)

Example:
    >>> import os, tempfile, numpy as np, datacarto as dc
    >>> path = os.path.join(tempfile.mkdtemp(), "dynamics.npy")
    >>> with dc.DynamicsWriter(path, n_examples=3, n_labels=2) as writer:
    ...     writer.write_epoch([[0.9, 0.1], [0.2, 0.8], [0.5, 0.5]])
    ...     writer.write_batch([2, 0], [[0.4, 0.6], [0.7, 0.3]])   # shuffled minibatches
    ...     writer.write_batch([1], [[0.1, 0.9]])
    ...     writer.commit_epoch()
    >>> np.load(path).shape
    (2, 3, 2)
    >>> dc.compute(path, [0, 1, 1]).confidence.round(2).tolist()
    [0.8, 0.85, 0.55]
"""

from __future__ import annotations

import ast
import errno
import mmap
import os
from typing import Any, Iterator, Optional, Tuple, Union

import numpy as np

from datacarto._args import _first_bad
from datacarto._atomic import atomic_path
from datacarto._core import DatacartoError

try:  # POSIX advisory locks keep two writers off one file
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["DynamicsWriter", "to_probabilities"]

PathLike = Union[str, "os.PathLike[str]"]
Rows = Union[None, int, np.ndarray]

TASKS = ("multiclass", "binary", "multilabel")
INPUTS = ("probabilities", "logits")
_STORAGE = {"float32": np.dtype("<f4"), "float64": np.dtype("<f8"), "float16": np.dtype("<f2")}
_MAGIC = b"\x93NUMPY"
_ALIGN = 64  # numpy's header alignment: data starts on a 64-byte boundary
_EPOCH_WIDTH = 20  # digits reserved for the epoch count (any u64)
_MAX_WRITE = 1 << 30  # bytes per os.pwrite call (Linux caps one call just under 2 GiB)
# An epoch is checked, converted and written in blocks of about this many input bytes: each
# block is read from memory once and stays in the CPU cache for the check and the write.
_BLOCK_BYTES = 1 << 18


# --- conversion of what the training loop hands over ------------------------------------------


def _as_array(values: Any, name: str) -> np.ndarray:
    """Numpy view of a list, an array or a tensor (torch tensors are detached and moved to the CPU)."""
    if isinstance(values, np.ndarray):
        return values
    # Duck typing keeps torch out of `import datacarto`: tensors with grad, on a GPU or in
    # bfloat16 (which numpy lacks) are made numpy-compatible first.
    if hasattr(values, "detach") and hasattr(values, "cpu"):
        values = values.detach().cpu()
        if str(getattr(values, "dtype", "")) == "torch.bfloat16":
            values = values.float()
    try:
        array = np.asarray(values)
    except Exception as exc:  # ragged lists, objects numpy cannot view
        raise TypeError(f"{name}: expected an array, a list or a tensor of numbers, found {type(values).__name__} ({exc})") from exc
    return array


# Bit patterns of IEEE floats in [+0, 1] are exactly the unsigned integers up to that of 1.0:
# negative values (sign bit), values above 1, infinities and NaNs all compare larger. One
# integer max() checks a block, where min() and max() over the floats would take two passes.
_ONE_BITS = {
    np.dtype(np.float16): (np.uint16, 0x3C00),
    np.dtype(np.float32): (np.uint32, 0x3F800000),
    np.dtype(np.float64): (np.uint64, 0x3FF0000000000000),
}


def _in_unit_interval(array: np.ndarray) -> bool:
    """Whether every value is a probability (False also for NaN and -0.0, which the slow path sorts out)."""
    bits = _ONE_BITS.get(array.dtype)
    if bits is not None and array.flags.c_contiguous:
        return int(array.view(bits[0]).max()) <= bits[1]
    low, high = array.min(), array.max()  # ints, bools, strided or non-native floats; NaN fails both
    return bool(low >= 0 and high <= 1)


def _check_numeric(array: np.ndarray, name: str) -> None:
    if array.dtype.kind not in "fiub":
        raise TypeError(f"{name}: dtype: expected real numbers, found {array.dtype}")


def _where(index: Tuple[int, ...], rows: Rows, epoch: Optional[int]) -> str:
    """'epoch 3, example 17, label 2' for the element at ``index`` of a block of rows.

    ``rows`` maps a row of the block to its example: an array of example indices (a batch),
    an int (the block starts at that example) or ``None`` (row = example).
    """
    parts = []
    if epoch is not None:
        parts.append(f"epoch {epoch}")
    if len(index) >= 1:
        row = int(index[0])
        example = int(rows[row]) if isinstance(rows, np.ndarray) else row + (rows or 0)
        parts.append(f"example {example}")
    if len(index) >= 2:
        parts.append(f"label {int(index[-1])}")
    return ", ".join(parts)


def _raise_non_finite(array: np.ndarray, name: str, rows: Rows = None, epoch: Optional[int] = None) -> None:
    bad = ~np.isfinite(array)
    if bad.any():
        where = _first_bad(array, bad)
        raise DatacartoError(
            f"{name}: {_where(where, rows, epoch)}: expected finite values, found {array[where].item()!r} "
            f"({int(bad.sum())} non-finite value(s) in this call)"
        )


def to_probabilities(logits: Any, task: str = "multiclass") -> np.ndarray:
    """Turn raw logits into probabilities, in float64.

    ``"multiclass"``: softmax over the last axis (which must hold at least two classes).
    ``"binary"`` (one logit per example, ``[N]`` or ``[N, 1]``) and ``"multilabel"``
    (``[N, L]``, one independent logit per label): the logistic sigmoid, computed stably as
    ``exp(-log(1 + exp(-x)))``. The shape is kept.

    Raises :class:`~datacarto.DatacartoError` for a NaN or infinite logit, naming the example
    (row) and label (column).

    Example:
        >>> import datacarto as dc
        >>> dc.to_probabilities([[0.0, 0.0], [2.0, 0.0]]).round(3).tolist()
        [[0.5, 0.5], [0.881, 0.119]]
        >>> dc.to_probabilities([0.0, 40.0], "binary").tolist()
        [0.5, 1.0]
    """
    if task not in TASKS:
        raise DatacartoError(f"task: expected one of {', '.join(TASKS)}, found {task!r}")
    array = _as_array(logits, "logits")
    _check_numeric(array, "logits")
    x = np.asarray(array, dtype=np.float64)
    _raise_non_finite(x, "logits")
    if task == "multiclass":
        if x.ndim == 0 or x.shape[-1] < 2:
            raise DatacartoError(
                f"logits: shape: expected [..., K] with K >= 2 classes for a softmax, found {x.shape}; "
                "one logit per example is task='binary'"
            )
        z = np.exp(x - x.max(axis=-1, keepdims=True))
        z /= z.sum(axis=-1, keepdims=True)
        return z
    if task == "binary" and x.ndim >= 2 and x.shape[-1] != 1:
        raise DatacartoError(
            f"logits: shape: expected one logit per example ([N] or [N, 1]) for task='binary', found {x.shape}; "
            "two or more columns are task='multiclass'"
        )
    return np.exp(-np.logaddexp(0.0, -x))


# --- the .npy header ---------------------------------------------------------------------------


def _header_text(shape: Tuple[int, int, int], dtype: np.dtype, fixed_width: bool) -> str:
    epochs = str(shape[0]).rjust(_EPOCH_WIDTH) if fixed_width else str(shape[0])
    return f"{{'descr': '{dtype.str}', 'fortran_order': False, 'shape': ({epochs}, {shape[1]}, {shape[2]}), }}"


def _header_bytes(shape: Tuple[int, int, int], dtype: np.dtype, data_offset: Optional[int] = None) -> bytes:
    """A version-1.0 header (magic, version, length, dict, space padding, newline).

    Without ``data_offset`` the smallest 64-byte multiple that holds a 20-digit epoch count;
    with it, exactly that many bytes (a file being rewritten in place), or ``b""`` if the
    shape no longer fits.
    """
    for fixed_width in (True, False):
        text = _header_text(shape, dtype, fixed_width)
        needed = len(_MAGIC) + 2 + 2 + len(text) + 1
        total = data_offset if data_offset is not None else -(-needed // _ALIGN) * _ALIGN
        if needed <= total and total - 10 <= 0xFFFF:
            body = text + " " * (total - needed) + "\n"
            return _MAGIC + b"\x01\x00" + (total - 10).to_bytes(2, "little") + body.encode("latin-1")
    return b""


def _read_header(fd: int, path: str) -> Tuple[Tuple[int, ...], np.dtype, bool, int]:
    """(shape, dtype, fortran_order, data_offset) of the .npy file open at ``fd``."""
    preamble = os.pread(fd, 12, 0)
    if preamble[:6] != _MAGIC or len(preamble) < 10:
        raise DatacartoError(f"{path}: header: expected a .npy file starting with \\x93NUMPY, found {preamble[:10]!r}")
    major = preamble[6]
    if major == 1:
        length, start = int.from_bytes(preamble[8:10], "little"), 10
    elif major in (2, 3):
        length, start = int.from_bytes(preamble[8:12], "little"), 12
    else:
        raise DatacartoError(f"{path}: header: expected .npy format version 1.0, 2.0 or 3.0, found {major}.{preamble[7]}")
    raw = os.pread(fd, length, start)
    if len(raw) < length:
        raise DatacartoError(f"{path}: header: truncated: the header declares {length} bytes, the file holds {len(raw)}")
    try:
        header = ast.literal_eval(raw.decode("utf-8" if major == 3 else "latin-1"))
        shape, descr, fortran = tuple(int(n) for n in header["shape"]), header["descr"], bool(header["fortran_order"])
        dtype = np.dtype(descr)
    except Exception as exc:
        raise DatacartoError(f"{path}: header: expected a dict with 'descr', 'fortran_order' and 'shape', found {raw[:120]!r}") from exc
    return shape, dtype, fortran, start + length


def _pwrite_all(fd: int, data: memoryview, offset: int) -> None:
    done = 0
    while done < len(data):
        done += os.pwrite(fd, data[done:done + _MAX_WRITE], offset + done)


_sync = getattr(os, "fdatasync", os.fsync)

# What posix_fallocate raises on filesystems that cannot preallocate (NFSv3, some FUSE mounts;
# musl libc does not emulate it): reserve by writing zeros instead.
_NO_FALLOCATE = {errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL, getattr(errno, "ENOSYS", -1)}
_ZEROS = bytes(1 << 20)


def _reserve(fd: int, offset: int, length: int) -> None:
    """Allocate the bytes ``[offset, offset + length)`` of the file, growing it if needed.

    Raises ``OSError`` (``ENOSPC``) now, when the disk cannot hold them, rather than later at a
    write through a memory map (a SIGBUS).
    """
    if length <= 0:
        return
    fallocate = getattr(os, "posix_fallocate", None)
    if fallocate is not None:
        try:
            fallocate(fd, offset, length)
            return
        except OSError as exc:
            if exc.errno not in _NO_FALLOCATE:
                raise
    zeros = memoryview(_ZEROS)
    done = 0
    while done < length:  # a short write is followed by a call that raises ENOSPC
        done += os.pwrite(fd, zeros[: min(len(zeros), length - done)], offset + done)


def _same_file(fd: int, path: str) -> bool:
    """Whether ``path`` still names the file open at ``fd`` (not removed, not replaced)."""
    try:
        at_path = os.stat(path)
    except FileNotFoundError:
        return False
    opened = os.fstat(fd)
    return (opened.st_dev, opened.st_ino) == (at_path.st_dev, at_path.st_ino)


def _sync_directory(path: str) -> None:
    try:
        fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory descriptors
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _storage_dtype(dtype: Any) -> np.dtype:
    try:
        resolved = np.dtype(dtype)
    except TypeError as exc:
        raise DatacartoError(f"dtype: expected 'float32', 'float64' or 'float16', found {dtype!r}") from exc
    name = resolved.name if resolved.kind == "f" else ""
    if name not in _STORAGE:
        raise DatacartoError(f"dtype: expected 'float32', 'float64' or 'float16', found {dtype!r}")
    return _STORAGE[name]


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 1:
        raise DatacartoError(f"{name}: expected a positive int, found {value!r}")
    return int(value)


# --- the writer ----------------------------------------------------------------------------------


class DynamicsWriter:
    """Append per-epoch probabilities ``[N, L]`` to a growing, crash-safe ``[E, N, L]`` ``.npy`` file.

    Args:
        path: the ``.npy`` file to write.
        n_examples: ``N``, the number of training examples (rows of every epoch).
        n_labels: ``L``: the number of classes (multiclass), 1 (binary: P(class 1)) or the
            number of labels (multilabel).
        dtype: storage dtype: ``"float32"`` (default), ``"float64"`` or ``"float16"``
            (little-endian).
        task: ``"multiclass"``, ``"binary"`` (one column) or ``"multilabel"``; decides how
            logits become probabilities (softmax vs sigmoid). Default: binary when
            ``n_labels == 1``, else multiclass.
        inputs: ``"probabilities"`` (default) or ``"logits"``: what :meth:`write_epoch` and
            :meth:`write_batch` receive. Logits are converted by :func:`to_probabilities` in
            float64, then cast to ``dtype``.
        resume: open an existing file (checking that ``n_examples``, ``n_labels`` and
            ``dtype`` match), drop any partially written epoch behind the committed ones and
            continue after them. When ``path`` does not exist a new file is started, so a
            training script can always pass ``resume=True``.
        overwrite: replace an existing file: a new, empty file (0 epochs) is built beside it
            and renamed over the path at construction, so readers that have the old file open
            keep its contents. Refused (:class:`~datacarto.DatacartoError`) while another
            writer holds the file. Without ``overwrite`` or ``resume`` an existing file is
            never touched (:class:`FileExistsError`).
        fsync: ``True`` (default) forces each epoch's data, then the updated header, to the
            disk, so that even a power cut or an OS crash keeps every committed epoch.
            ``False`` skips that (faster on slow disks) and keeps the guarantee for a crash or
            kill of the writing process, which the kernel's page cache survives.

    Accepted values: numpy arrays, nested lists, and anything with ``__array__`` (torch
    tensors on any device, with or without grad, any float dtype); ``[N]`` for ``n_labels ==
    1``. NaN or infinity raises :class:`~datacarto.DatacartoError` at once, naming the epoch,
    the example and the label. Probabilities must lie in ``[0, 1]``; values within float
    rounding of it (``1e-6``, or one unit in the last place for float16 input) are clipped
    into it, anything further raises.

    An epoch is committed by :meth:`write_epoch` (all rows at once) or by
    :meth:`commit_epoch` after :meth:`write_batch` calls. An epoch in progress that is never
    committed (an exception inside ``with``, :meth:`close`, :meth:`discard_epoch`, or a crash)
    leaves the committed epochs intact. A full disk raises :class:`OSError` (``ENOSPC``) from
    :meth:`write_epoch`, from the first :meth:`write_batch` of an epoch (which reserves the
    epoch's space) or from :meth:`commit_epoch`; the epoch in progress is then dropped and the
    writer stays usable: free some space and write the epoch again, or close.

    Example:
        >>> import os, tempfile, numpy as np, datacarto as dc
        >>> path = os.path.join(tempfile.mkdtemp(), "dynamics.npy")
        >>> logits = np.array([[2.0, 0.0], [0.0, 1.0]])
        >>> with dc.DynamicsWriter(path, 2, 2, inputs="logits") as writer:
        ...     writer.write_epoch(logits)
        >>> np.load(path)[0].astype(float).round(3).tolist()
        [[0.881, 0.119], [0.269, 0.731]]
        >>> with dc.DynamicsWriter(path, 2, 2, inputs="logits", resume=True) as writer:
        ...     writer.n_epochs
        1
    """

    def __init__(
        self,
        path: PathLike,
        n_examples: int,
        n_labels: int,
        dtype: Any = "float32",
        *,
        task: Optional[str] = None,
        inputs: str = "probabilities",
        resume: bool = False,
        overwrite: bool = False,
        fsync: bool = True,
    ) -> None:
        self.path = os.fspath(path)
        self.n_examples = _positive_int(n_examples, "n_examples")
        self.n_labels = _positive_int(n_labels, "n_labels")
        self.dtype = _storage_dtype(dtype)
        if task is None:
            task = "binary" if self.n_labels == 1 else "multiclass"
        if task not in TASKS:
            raise DatacartoError(f"task: expected one of {', '.join(TASKS)}, found {task!r}")
        if task == "binary" and self.n_labels != 1:
            raise DatacartoError(f"task: 'binary' stores one column (P(class 1)), found n_labels={self.n_labels}; two columns are task='multiclass'")
        if task == "multiclass" and self.n_labels < 2:
            raise DatacartoError("task: 'multiclass' needs n_labels >= 2, found 1; one column (P(class 1)) is task='binary'")
        if inputs not in INPUTS:
            raise DatacartoError(f"inputs: expected 'probabilities' or 'logits', found {inputs!r}")
        self.task = task
        self.inputs = inputs
        self.fsync = bool(fsync)
        self._row_bytes = self.n_labels * self.dtype.itemsize
        self._epoch_bytes = self.n_examples * self._row_bytes
        self._fd: Optional[int] = None
        self._map: Optional[mmap.mmap] = None
        self._view: Optional[np.ndarray] = None
        self._counts: Optional[np.ndarray] = None  # writes per example in the open batch epoch
        self._pid = os.getpid()  # a forked child (a DataLoader worker) must never touch the file

        fd = None
        if resume:
            try:
                fd = self._open_locked(os.O_RDWR)
            except FileNotFoundError:
                fd = None  # nothing to resume: start the file
        if fd is not None:
            self._open_existing(fd)
        else:
            self._create(overwrite)

    # -- opening --------------------------------------------------------------------------

    def _lock(self, fd: int) -> None:
        """Take the writer's lock on the open file ``fd``; refuse when another writer holds it."""
        if fcntl is None:  # pragma: no cover
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            raise DatacartoError(
                f"{self.path}: lock: expected no other writer, found the file locked by another DynamicsWriter "
                "(in this or another process); close it first (overwrite=True does not take a file from a running writer)"
            ) from exc

    def _open_locked(self, flags: int) -> int:
        """Open the file at the path and lock it, making sure the locked file is the one at the path.

        An ``overwrite=True`` writer may rename a new file over the path between our ``open`` and
        our ``flock``: the lock would then guard a file nobody sees any more, so check after
        locking and start again on the new file. Raises ``FileNotFoundError`` when there is none.
        """
        for _ in range(1000):
            fd = os.open(self.path, flags | getattr(os, "O_BINARY", 0))
            try:
                self._lock(fd)
                if _same_file(fd, self.path):
                    return fd
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)  # replaced (or removed) meanwhile: lock what is there now
            if not os.path.exists(self.path):
                raise FileNotFoundError(errno.ENOENT, "removed while being opened", self.path)
        raise DatacartoError(f"{self.path}: lock: expected the file to hold still, found it replaced 1000 times while being locked")

    def _exists_error(self) -> FileExistsError:
        return FileExistsError(
            f"{self.path}: exists; pass resume=True to continue it or overwrite=True to replace it "
            "(recorded epochs are never overwritten silently)"
        )

    def _create(self, overwrite: bool) -> None:
        if os.path.exists(self.path) and not overwrite:
            raise self._exists_error()
        header = _header_bytes((0, self.n_examples, self.n_labels), self.dtype)
        while True:
            try:
                # A new file: no reader can hold it yet, it is filled in place.
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
            except FileExistsError:
                if not overwrite:
                    raise self._exists_error() from None
                try:
                    old = self._open_locked(os.O_RDONLY)
                except FileNotFoundError:
                    continue  # removed meanwhile: create it
                try:
                    fd = self._replace(header)
                finally:
                    os.close(old)  # the path now names the new file, locked by us
                break
            try:
                self._lock(fd)
                fresh = _same_file(fd, self.path)
                if fresh:
                    _pwrite_all(fd, memoryview(header), 0)
                    if self.fsync:
                        os.fsync(fd)
                        _sync_directory(self.path)  # the new file's name survives a power cut too
            except BaseException:
                os.close(fd)
                raise
            if fresh:
                break
            os.close(fd)  # another writer replaced our brand-new file: it exists now
            if not overwrite:
                raise self._exists_error()
        self._fd = fd
        self._data_offset = len(header)
        self._n_epochs = 0

    def _replace(self, header: bytes) -> int:
        """Build the new empty file beside the path, lock it, rename it over the path; return its descriptor.

        The caller holds the old file's lock, so no other writer is filling it; readers that
        have it open keep its contents (the rename only moves the name).
        """
        fd: Optional[int] = None
        try:
            with atomic_path(self.path) as tmp:  # fsyncs the file and the folder, keeps the old mode
                fd = os.open(tmp, os.O_RDWR | getattr(os, "O_BINARY", 0))
                self._lock(fd)  # locked before its name is the path: no moment unguarded
                _pwrite_all(fd, memoryview(header), 0)
        except BaseException:
            if fd is not None:
                os.close(fd)
            raise
        assert fd is not None
        return fd

    def _open_existing(self, fd: int) -> None:
        try:
            shape, dtype, fortran, offset = _read_header(fd, self.path)
            want = f"[E, {self.n_examples}, {self.n_labels}] {self.dtype.name}"
            if fortran:
                raise DatacartoError(f"{self.path}: fortran_order: expected C order, found Fortran order")
            if len(shape) != 3 or shape[1:] != (self.n_examples, self.n_labels):
                raise DatacartoError(f"{self.path}: shape: expected {want} to resume, found {list(shape)}")
            if dtype != self.dtype:
                raise DatacartoError(f"{self.path}: descr: expected {self.dtype.str} ({self.dtype.name}) to resume, found {dtype.str}")
            committed_end = offset + shape[0] * self._epoch_bytes
            size = os.fstat(fd).st_size
            if size < committed_end:
                raise DatacartoError(
                    f"{self.path}: shape: truncated: the header promises {shape[0]} epochs ({committed_end - offset} bytes of data), "
                    f"the file holds {size - offset}; refusing to resume over missing data"
                )
            if not _header_bytes((shape[0] + 1, *shape[1:]), dtype, offset):
                raise DatacartoError(f"{self.path}: header: expected room to count more epochs in place, found a full {offset}-byte header")
            # Cut a partial epoch left by a crash: the file now holds exactly what its header says.
            os.ftruncate(fd, committed_end)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        self._data_offset = offset
        self._n_epochs = shape[0]

    # -- state ----------------------------------------------------------------------------

    @property
    def n_epochs(self) -> int:
        """Number of committed epochs (what a reader of the file sees)."""
        return self._n_epochs

    @property
    def closed(self) -> bool:
        return self._fd is None

    @property
    def pending(self) -> int:
        """Examples written by :meth:`write_batch` into the epoch in progress (0 when none is open)."""
        return 0 if self._counts is None else int(np.count_nonzero(self._counts))

    def _require_open(self) -> int:
        if self._fd is None:
            raise DatacartoError(f"{self.path}: writer: expected an open writer, found it closed")
        if os.getpid() != self._pid:
            raise DatacartoError(
                f"{self.path}: writer: expected calls from the process that opened it ({self._pid}), found process {os.getpid()} "
                "(a forked worker); send the values to the main process and write there"
            )
        return self._fd

    def _epoch_offset(self) -> int:
        return self._data_offset + self._n_epochs * self._epoch_bytes

    # -- validating and converting values --------------------------------------------------

    def _array(self, values: Any, n_rows: int) -> np.ndarray:
        """The values as an ``[n_rows, L]`` array of real numbers (not yet checked or converted)."""
        name = f"{self.path}: {self.inputs}"
        array = _as_array(values, name)
        _check_numeric(array, name)
        if array.ndim == 1 and self.n_labels == 1:
            array = array[:, None]
        if array.shape != (n_rows, self.n_labels):
            raise DatacartoError(f"{name}: shape: expected [{n_rows}, {self.n_labels}], found {list(array.shape)}")
        return array

    def _convert(self, array: np.ndarray, rows: Rows) -> np.ndarray:
        """Check one block of rows and return it C-contiguous in the storage dtype."""
        name = f"{self.path}: {self.inputs}"
        epoch = self._n_epochs
        if self.inputs == "logits":
            x = np.asarray(array, dtype=np.float64)
            _raise_non_finite(x, name, rows, epoch)
            return np.ascontiguousarray(to_probabilities(x, self.task), dtype=self.dtype)
        if array.size and not _in_unit_interval(array):
            array = self._repair_range(array, name, rows, epoch)
        return np.ascontiguousarray(array, dtype=self.dtype)

    def _blocks(self, array: np.ndarray) -> Iterator[Tuple[int, np.ndarray]]:
        """(first row, converted block) over an ``[N, L]`` epoch, in cache-sized blocks of rows."""
        step = max(1, _BLOCK_BYTES // max(1, array.shape[1] * array.itemsize))
        for start in range(0, array.shape[0], step):
            yield start, self._convert(array[start:start + step], start)

    @staticmethod
    def _repair_range(array: np.ndarray, name: str, rows: Rows, epoch: int) -> np.ndarray:
        if array.dtype.kind == "f":
            _raise_non_finite(array, name, rows, epoch)
            tolerance = max(1e-6, float(np.finfo(array.dtype).eps))
        else:
            tolerance = 0.0
        bad = (array < -tolerance) | (array > 1 + tolerance)
        if bad.any():
            where = _first_bad(array, bad)
            raise DatacartoError(
                f"{name}: {_where(where, rows, epoch)}: expected a probability in [0, 1], found {array[where].item()!r}"
                + ("; pass inputs='logits' for raw scores" if array.dtype.kind == "f" else "")
            )
        return np.clip(array, 0, 1)  # float rounding just outside [0, 1]

    # -- writing --------------------------------------------------------------------------

    def write_epoch(self, values: Any) -> None:
        """Write and commit one whole epoch: ``values[i]`` belongs to example ``i`` (``[N, L]``).

        Example:
            >>> import os, tempfile, numpy as np, datacarto as dc
            >>> path = os.path.join(tempfile.mkdtemp(), "d.npy")
            >>> with dc.DynamicsWriter(path, 2, 1) as writer:     # binary, one column
            ...     writer.write_epoch(np.array([0.25, 0.75]))
            >>> np.load(path).tolist()
            [[[0.25], [0.75]]]
        """
        fd = self._require_open()
        if self._counts is not None:
            raise DatacartoError(
                f"{self.path}: epoch {self._n_epochs}: expected no epoch in progress for write_epoch, found {self.pending} "
                "example(s) written by write_batch; call commit_epoch() or discard_epoch() first"
            )
        array = self._array(values, self.n_examples)
        offset = self._epoch_offset()
        try:
            # Reserved too, although pwrite reports ENOSPC itself: a full disk then fails before
            # any conversion work, and no filesystem can fail it later at writeback (fsync=False).
            _reserve(fd, offset, self._epoch_bytes)
            # Blocks are written as soon as they pass the checks: if a later block fails, the
            # bytes written so far lie after the committed epochs, where no reader looks.
            for start, block in self._blocks(array):
                _pwrite_all(fd, memoryview(block.reshape(-1)).cast("B"), offset + start * self._row_bytes)
            self._commit()
        except BaseException:
            self._abandon_epoch()
            raise

    def write_batch(self, indices: Any, values: Any) -> None:
        """Write the rows of some examples into the epoch in progress: ``values[k]`` belongs to ``indices[k]``.

        Minibatches may come in any order (a shuffled loader). Call :meth:`commit_epoch` once
        every example was written exactly once. Indices are checked at once (integers in
        ``[0, N)``); coverage is checked by :meth:`commit_epoch`.

        Example:
            >>> import os, tempfile, datacarto as dc
            >>> path = os.path.join(tempfile.mkdtemp(), "d.npy")
            >>> writer = dc.DynamicsWriter(path, 3, 2)
            >>> writer.write_batch([2, 0], [[0.5, 0.5], [1.0, 0.0]])
            >>> writer.pending
            2
            >>> writer.write_batch([1], [[0.0, 1.0]]); writer.commit_epoch(); writer.close()
            >>> dc.read_header(path)["shape"]
            (1, 3, 2)
        """
        fd = self._require_open()
        index = _as_array(indices, f"{self.path}: indices")
        if index.ndim == 0:
            index = index.reshape(1)
        if index.ndim != 1:
            raise DatacartoError(f"{self.path}: indices: shape: expected one dimension [B], found {list(index.shape)}")
        if index.size and index.dtype.kind not in "iu":
            raise TypeError(f"{self.path}: indices: dtype: expected integers, found {index.dtype}")
        index = index.astype(np.int64, copy=False)
        if index.size and (index.min() < 0 or index.max() >= self.n_examples):
            bad = int(index[(index < 0) | (index >= self.n_examples)][0])
            raise DatacartoError(f"{self.path}: indices: expected example indices in [0, {self.n_examples}), found {bad}")
        block = self._convert(self._array(values, index.size), index)
        if self._counts is None:
            try:
                self._open_epoch_map(fd)
            except BaseException:  # a full disk: nothing of this epoch was written
                self._abandon_epoch()
                raise
        assert self._view is not None and self._counts is not None
        self._view[index] = block
        np.add.at(self._counts, index, 1)

    def _open_epoch_map(self, fd: int) -> None:
        """Map the region of the next epoch (after the committed ones) for scattered row writes."""
        start = self._epoch_offset()
        end = start + self._epoch_bytes
        # Allocate the whole epoch now: a full disk raises ENOSPC here, whereas a row stored
        # through the map into a hole the disk cannot fill kills the process with SIGBUS.
        _reserve(fd, start, self._epoch_bytes)
        aligned = start - start % mmap.ALLOCATIONGRANULARITY
        self._map = mmap.mmap(fd, end - aligned, offset=aligned, access=mmap.ACCESS_WRITE)
        self._view = np.frombuffer(self._map, dtype=self.dtype, count=self.n_examples * self.n_labels, offset=start - aligned).reshape(
            self.n_examples, self.n_labels
        )
        self._counts = np.zeros(self.n_examples, dtype=np.int32)

    def _close_epoch_map(self, flush: bool) -> None:
        if self._map is not None:
            if flush:
                self._map.flush()
            self._view = None  # release numpy's buffer export before closing the map
            self._map.close()
        self._map = self._view = self._counts = None

    def commit_epoch(self) -> None:
        """Commit the epoch filled by :meth:`write_batch`; the file then counts it.

        Raises :class:`~datacarto.DatacartoError` when some example was never written or
        written more than once in this epoch (the message says how many and which first). The
        epoch then stays open: write the missing rows and commit again, or
        :meth:`discard_epoch`.
        """
        self._require_open()
        if self._counts is None:
            raise DatacartoError(f"{self.path}: epoch {self._n_epochs}: expected rows written by write_batch before commit_epoch, found none")
        never = np.flatnonzero(self._counts == 0)
        twice = np.flatnonzero(self._counts > 1)
        if never.size or twice.size:
            problems = []
            if never.size:
                problems.append(f"{never.size} example(s) never written (first: {int(never[0])})")
            if twice.size:
                problems.append(
                    f"{twice.size} written more than once (first: {int(twice[0])}, {int(self._counts[twice[0]])} times; "
                    "a sampler that pads or repeats examples, e.g. DistributedSampler, does this)"
                )
            raise DatacartoError(f"{self.path}: epoch {self._n_epochs}: expected every one of {self.n_examples} examples written exactly once, found " + " and ".join(problems))
        try:
            self._close_epoch_map(flush=self.fsync)
            self._commit()
        except BaseException:
            # A disk error while flushing: the epoch's bytes may not all be on the disk (and a
            # second fsync would not say so), so the epoch is dropped, to be written again.
            self._abandon_epoch()
            raise

    def _commit(self) -> None:
        """Data first, then the header: the epoch count never promises unwritten bytes."""
        fd = self._require_open()
        if self.fsync:
            _sync(fd)
        shape = (self._n_epochs + 1, self.n_examples, self.n_labels)
        header = _header_bytes(shape, self.dtype, self._data_offset)
        if not header:
            raise DatacartoError(f"{self.path}: header: expected room for {shape} in the {self._data_offset}-byte header, found none")
        _pwrite_all(fd, memoryview(header), 0)
        # Readers count the epoch from here on, whether or not the last fsync succeeds.
        self._n_epochs += 1
        if self.fsync:
            _sync(fd)

    def _abandon_epoch(self) -> None:
        """After an error: no epoch in progress, the file cut back to the committed epochs.

        Best effort, so that the error the caller sees is the one that happened.
        """
        try:
            self._close_epoch_map(flush=False)
        except (OSError, ValueError, BufferError):  # pragma: no cover - a map that cannot close
            self._map = self._view = self._counts = None
        if self._fd is not None:
            try:
                os.ftruncate(self._fd, self._epoch_offset())
            except OSError:  # pragma: no cover - the next write, resume or close cuts it again
                pass

    def discard_epoch(self) -> None:
        """Drop the epoch in progress (rows written by :meth:`write_batch` since the last commit)."""
        fd = self._require_open()
        self._close_epoch_map(flush=False)
        os.ftruncate(fd, self._epoch_offset())

    def close(self) -> None:
        """Close the file, dropping an uncommitted epoch; every committed epoch stays. Idempotent."""
        if self._fd is None:
            return
        fd = self._fd
        try:
            if os.getpid() == self._pid:  # a forked copy only lets go of its descriptor
                self._close_epoch_map(flush=False)
                os.ftruncate(fd, self._epoch_offset())
        finally:
            self._fd = None
            os.close(fd)  # the last descriptor closed releases the lock

    def __enter__(self) -> "DynamicsWriter":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_fd", None) is not None:
            try:
                self.close()
            except Exception:  # pragma: no cover - interpreter shutdown
                pass

    def __repr__(self) -> str:
        state = "closed" if self._fd is None else f"{self._n_epochs} epoch(s)"
        return f"DynamicsWriter({self.path!r}, n_examples={self.n_examples}, n_labels={self.n_labels}, dtype={self.dtype.name!r}, task={self.task!r}, {state})"
