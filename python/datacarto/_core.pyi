"""Type stubs for the compiled Rust core (``datacarto._core``). Private: use :mod:`datacarto`."""

import os
from typing import Any, Callable, Dict, Optional, Union

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
) -> Dict[str, np.ndarray]:
    """Compute every statistic over a dynamics file (memory-mapped) or a C-contiguous
    float32/float64/float16 array ``[E, N, L]``; flat arrays ``N`` or ``N * L`` long."""
