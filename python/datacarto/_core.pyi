"""Type stubs for the compiled Rust core (``datacarto._core``). Private: use :mod:`datacarto`."""

from typing import Any, Callable, Dict, Optional

import numpy as np

__version__: str

class DatacartoError(ValueError):
    """Malformed dynamics or labels: the message names the file or argument, the field and what was expected."""

def read_header(path: str) -> Dict[str, Any]:
    """Parse and validate a dynamics ``.npy`` header: ``shape``, ``dtype``, ``data_offset``, ``version``, ``file_size``."""

def compute_file(
    path: str,
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
) -> Dict[str, np.ndarray]:
    """Memory-map ``path`` and compute every statistic (flat arrays, ``N`` or ``N * L`` long)."""

def compute_array(
    probs: np.ndarray,
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
) -> Dict[str, np.ndarray]:
    """Same as :func:`compute_file` over a C-contiguous float32/float64/float16 array ``[E, N, L]``."""
