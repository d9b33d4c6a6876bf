"""Type stubs for the compiled Rust core (``datacarto._core``). Private: use :mod:`datacarto`."""

import os
from typing import Any, Callable, Dict, Optional, Tuple, Union

import numpy as np

__version__: str

class DatacartoError(ValueError):
    """Malformed dynamics or labels: the message names the file or argument, the field and what was expected."""

def read_header(path: str) -> Dict[str, Any]:
    """Parse and validate a dynamics ``.npy`` header: ``shape``, ``dtype``, ``data_offset``, ``version``, ``file_size``."""

def compute(
    source: Union[str, "os.PathLike[str]", np.ndarray],
    *,
    class_labels: Optional[np.ndarray],
    multilabel_labels: Optional[np.ndarray],
    task: str,
    argmax: bool,
    threshold: float,
    epoch_start: int,
    epoch_stop: int,
    ddof: int,
    threads: Optional[int],
    progress: Optional[Callable[[int, int], Any]],
    labels_name: str = "labels",
    first_index: bool = False,
    class_means: bool = False,
    outputs: int = 1023,
    copy_labels: bool = False,
) -> Dict[str, np.ndarray]:
    """Compute every statistic over a dynamics file (memory-mapped) or a C-contiguous
    float32/float64/float16 array ``[E, N, L]``; flat arrays ``N`` or ``N * L`` long.
    ``class_means=True`` adds ``"class_means"``: every column's mean over the window, flat
    ``N * L`` float64, from the same pass. ``outputs`` is a bit mask over the ten statistics
    in ``datacarto.STATISTICS`` order: only those are written and returned (the others
    are absent from the dict). Values within 4 epsilon of the stored dtype outside
    [0, 1] are clamped; beyond that they are refused.

    The core runs without the GIL while the calling thread polls every 50 ms: it runs Python's
    signal handlers (Ctrl-C: ``KeyboardInterrupt``) and ``progress(done, total)`` there, and
    stops the core between blocks if either raises; ``progress(total, total)`` comes once at
    the end. The kernels read only private labels: the caller's own private copy, or with
    ``copy_labels=True`` the copy each block of the pass takes of its labels before checking
    and reading them, returned as ``"labels"`` (flat, ``N`` int64 or ``N * L`` uint8); either
    way the statistics agree with the labels the result keeps, whatever another thread writes
    to the caller's array meanwhile. Raises ``DatacartoError`` when the file changed while being
    read (truncated, rewritten shorter, replaced) and for an internal error (a panic)."""

class PartialState:
    """The mergeable per-unit sums of a piece of a dynamics block (public wrapper: ``datacarto.State``)."""

    task: str
    correctness: str
    threshold: float
    n_labels: int
    epochs: tuple[int, int]
    examples: tuple[int, int]
    units: int
    nbytes: int
    bytes_per_unit: int
    def merge(self, later: PartialState) -> PartialState: ...
    @staticmethod
    def concat(states: list[PartialState]) -> PartialState: ...
    def finish(self, ddof: int) -> Dict[str, np.ndarray]: ...
    def to_bytes(self) -> bytes: ...
    @staticmethod
    def from_bytes(data: bytes) -> PartialState: ...

def partial(
    source: Union[str, "os.PathLike[str]", np.ndarray],
    *,
    class_labels: Optional[np.ndarray],
    multilabel_labels: Optional[np.ndarray],
    task: str,
    argmax: bool,
    threshold: float,
    epoch_start: int,
    epoch_stop: int,
    threads: Optional[int] = None,
    progress: Optional[Callable[[int, int], Any]] = None,
    labels_name: str = "labels",
    first_index: bool = False,
    epoch_offset: int = 0,
    example_offset: int = 0,
) -> PartialState:
    """The partial state of a dynamics file or array over an epoch window (``compute``'s pass, unfinished)."""

def concat(arrays: list[np.ndarray]) -> np.ndarray:
    """Join 1-D float64, int32 or bool arrays of one dtype (allocated by the core, which reuses freed pages)."""

def _recycled_blocks() -> Tuple[int, int, int]:
    """(blocks kept for reuse, large allocations served from them, large allocations passed on
    to the allocator) since the module was loaded; for tests of the output-recycling layer."""
    ...

def _copy_labels(labels: np.ndarray) -> np.ndarray:
    """A private copy of resolved labels (int64 ``[N]`` or uint8 ``[N, L]``) in the core's
    recycled memory; anything else raises ``TypeError``."""
    ...
