"""datacarto: fast data maps (Dataset Cartography).

Record a model's per-epoch probabilities for every training example, then turn them into
per-example statistics, regions, ranked label-error suspects and pictures.

Example:
    >>> import numpy as np, datacarto as dc
    >>> probs = np.array([[[0.9, 0.1]], [[0.7, 0.3]]], dtype=np.float32)  # [epochs, examples, labels]
    >>> dc.compute(probs, np.array([0])).confidence.round(2).tolist()
    [0.8]
"""

from __future__ import annotations

import importlib
from typing import Any

from datacarto._core import DatacartoError, __version__
from datacarto._stats import STATISTICS, Statistics, compute, read_header
from datacarto.datamap import DataMap
from datacarto.writer import DynamicsWriter, to_probabilities

__all__ = [
    "STATISTICS",
    "DataMap",
    "DatacartoError",
    "DynamicsWriter",
    "Statistics",
    "__version__",
    "compute",
    "read_header",
    "to_probabilities",
]

# Submodules with heavy or optional dependencies load on first use: `import datacarto` never
# imports torch, transformers or scikit-learn.
_LAZY_SUBMODULES = frozenset({"reference", "sklearn", "torch", "transformers", "plots", "html", "importers", "cli", "demo"})


def __getattr__(name: str) -> Any:
    if name in _LAZY_SUBMODULES:
        return importlib.import_module(f"datacarto.{name}")
    raise AttributeError(f"module 'datacarto' has no attribute {name!r}")
