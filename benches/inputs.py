"""The inputs of ``bench_speed.py``, apart from it so that ``make_inputs.py`` can list them
without importing datacarto: ``(shape, dtype, task)`` cases."""

from __future__ import annotations

from typing import List, Tuple

import numpy as np

Case = Tuple[Tuple[int, int, int], str, str]

# (shape, dtype, task): each file ~100 MB - 1 GB
MATRIX: List[Case] = [
    ((10, 4_000_000, 1), "float32", "binary"),
    ((10, 4_000_000, 2), "float32", "multiclass"),
    ((10, 1_000_000, 10), "float32", "multiclass"),
    ((10, 1_000_000, 28), "float32", "multiclass"),
    ((10, 200_000, 100), "float32", "multiclass"),
    ((5, 40_000, 1000), "float32", "multiclass"),
    ((10, 4_000_000, 1), "float16", "binary"),
    ((10, 4_000_000, 2), "float16", "multiclass"),
    ((10, 1_000_000, 10), "float16", "multiclass"),
    ((10, 1_000_000, 28), "float16", "multiclass"),
    ((10, 200_000, 100), "float16", "multiclass"),
    ((10, 2_000_000, 2), "float64", "multiclass"),
    ((10, 500_000, 28), "float64", "multiclass"),
    ((10, 100_000, 100), "float64", "multiclass"),
    ((10, 500_000, 28), "float32", "multilabel"),
    ((10, 500_000, 10), "float16", "multilabel"),
]
SCALING_N = [10_000, 100_000, 1_000_000, 10_000_000]
SCALING_E = [2, 10, 50]
#: narrow rows at 10 and 50 epochs: the tiled path walks each group of examples through every
#: epoch of the window (a stream per epoch), so its cost per GiB can move with the epoch count
#: where the epoch-major path's does not (the matrix has 10 epochs at every width)
SCALING_NARROW = [((e, 1_000_000, 10), dtype, "multiclass") for dtype in ("float32", "float16") for e in (10, 50)]


def scaling_inputs() -> List[Case]:
    """The scaling table's files: L = 28 over N and E, and the narrow rows at 10 and 50 epochs."""
    wide = [((10, n, 28), "float32", "multiclass") for n in SCALING_N] + [((e, 1_000_000, 28), "float32", "multiclass") for e in SCALING_E if e != 10]
    return wide + SCALING_NARROW


def all_inputs() -> List[Case]:
    """Every input of bench_speed.py (scaling files that would not fit the page cache left out)."""
    return MATRIX + [i for i in scaling_inputs() if i not in MATRIX and fits(i)]


def fits(case: Case) -> bool:
    """Whether a scaling file fits the page cache twice over (else it is skipped, and said so)."""
    (e, n, l), dtype, _ = case
    size = e * n * l * np.dtype(dtype).itemsize
    available = int(next(line for line in open("/proc/meminfo") if line.startswith("MemAvailable")).split()[1]) * 1024
    return 2 * size < available
