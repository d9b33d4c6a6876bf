"""Atomic output files: the one way datacarto writes a file a user may already have.

Every output (statistics, maps, plots, pages, imported dynamics, checkpoints) is written to a
temporary file beside its target, flushed to disk with ``fsync``, then renamed over the target
with :func:`os.replace`. A crash, SIGKILL, Ctrl-C or full disk at any moment leaves either the
old file or the new one at the path, never a truncated mix; the temporary file is removed on
any error that Python sees. A SIGKILL can leave one behind (``.<name>.<host>-<pid>.*.tmp``,
next to the target): the next write to the same target removes it once no process of that
pid runs on this host (:func:`remove_abandoned`), and never touches another live writer's.

Example:
    >>> import os, tempfile
    >>> from datacarto._atomic import atomic_path, atomic_write
    >>> target = os.path.join(tempfile.mkdtemp(), "out.txt")
    >>> with atomic_write(target, "w") as handle:
    ...     _ = handle.write("hello")
    >>> open(target).read()
    'hello'
    >>> with atomic_path(target) as tmp:       # for writers that want a path (polars, matplotlib)
    ...     with open(tmp, "w") as handle:
    ...         _ = handle.write("bye")
    >>> open(target).read()
    'bye'
"""

from __future__ import annotations

import contextlib
import os
import socket
import tempfile
from typing import IO, Any, Iterator, List, Union

PathLike = Union[str, "os.PathLike[str]"]

__all__ = ["atomic_path", "atomic_write", "check_writable_target", "fsync_directory", "remove_abandoned"]

#: this host in temporary names (a folder may be shared between hosts: a pid means something
#: only on the host that wrote it)
_HOST = "".join(c if c.isalnum() or c in "-_" else "_" for c in socket.gethostname()) or "host"


def fsync_directory(directory: PathLike) -> None:
    """Flush a directory entry (a rename) to disk; a no-op where directories cannot be opened."""
    try:
        fd = os.open(os.fspath(directory) or ".", os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _temporary_beside(target: str) -> str:
    directory, name = os.path.split(os.path.abspath(target))
    remove_abandoned(target)
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.{_HOST}-{os.getpid()}.", suffix=".tmp", dir=directory)
    os.close(fd)
    return tmp


def remove_abandoned(target: PathLike) -> List[str]:
    """Delete the temporary files beside ``target`` that a killed writer left: those named for
    this host whose process no longer runs. Returns their paths. A live writer's (any process
    that still runs, this one included) and other hosts' are kept; off POSIX nothing is removed.

    Example:
        >>> import os, tempfile
        >>> target = os.path.join(tempfile.mkdtemp(), "out.txt")
        >>> remove_abandoned(target)
        []
    """
    if os.name != "posix":  # os.kill(pid, 0) is no liveness probe there
        return []
    directory, name = os.path.split(os.path.abspath(os.fspath(target)))
    prefix = f".{name}.{_HOST}-"
    removed = []
    try:
        entries = [e.name for e in os.scandir(directory) if e.name.startswith(prefix) and e.name.endswith(".tmp")]
    except OSError:
        return []
    for entry in entries:
        pid_text = entry[len(prefix) :].split(".", 1)[0]
        if not pid_text.isdigit() or _running(int(pid_text)):
            continue
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(directory, entry))
            removed.append(os.path.join(directory, entry))
    return removed


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process (EPERM): it runs
        return True
    return True


def _commit(tmp: str, target: str) -> None:
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    _keep_mode(target, tmp)
    os.replace(tmp, target)
    fsync_directory(os.path.dirname(os.path.abspath(target)))


def _keep_mode(target: str, tmp: str) -> None:
    """Give the new file the old one's permissions (mkstemp creates 0600), or the umask's."""
    try:
        mode = os.stat(target).st_mode & 0o7777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    os.chmod(tmp, mode)


@contextlib.contextmanager
def atomic_path(target: PathLike) -> Iterator[str]:
    """Yield a temporary path beside ``target``; on success it replaces ``target`` atomically.

    For writers that take a path (``polars.DataFrame.write_parquet``, ``Figure.savefig``,
    ``numpy.save``). If the body raises (including ``KeyboardInterrupt``), the temporary file is
    removed and ``target`` is left as it was.
    """
    target = os.fspath(target)
    tmp = _temporary_beside(target)
    try:
        yield tmp
        _commit(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_write(target: PathLike, mode: str = "wb", **open_kwargs: Any) -> Iterator[IO[Any]]:
    """Open a temporary file beside ``target`` for writing; on success it replaces ``target``.

    ``mode`` is ``"w"`` (text) or ``"wb"`` (binary); ``open_kwargs`` go to :func:`open`
    (``encoding``, ``newline``). The data is flushed and fsynced before the rename.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"mode: expected 'w' or 'wb', found {mode!r}")
    with atomic_path(target) as tmp:
        with open(tmp, mode, **open_kwargs) as handle:
            yield handle
            handle.flush()


def check_writable_target(target: PathLike, *, overwrite: bool = True, what: str = "output") -> str:
    """Check before any work starts that ``target`` can be written; return it as a ``str``.

    Raises ``FileNotFoundError`` when its folder does not exist, ``PermissionError`` when the
    folder is not writable, ``IsADirectoryError`` when it is a folder and ``FileExistsError``
    when it exists and ``overwrite`` is false.
    """
    target = os.fspath(target)
    directory = os.path.dirname(os.path.abspath(target))
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"{target}: {what}: the folder {directory} does not exist")
    if os.path.isdir(target):
        raise IsADirectoryError(f"{target}: {what}: is a folder, expected a file path")
    if not overwrite and os.path.exists(target):
        raise FileExistsError(f"{target}: {what}: exists (pass overwrite=True to replace it)")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise PermissionError(f"{target}: {what}: the folder {directory} is not writable")
    return target
