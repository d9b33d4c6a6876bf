"""datacarto: fast data maps (Dataset Cartography).

Record a model's per-epoch probabilities for every training example, then turn them into
per-example statistics, regions, ranked label-error suspects and pictures.

``import datacarto`` loads only numpy and the compiled core: :func:`compute` needs nothing
else. :class:`DataMap` (polars), :class:`DynamicsWriter` and the submodules (``plots``,
``html``, ``sklearn``, ``torch``, ``transformers``, ...) load on first use.

Example:
    >>> import numpy as np, datacarto as dc
    >>> probs = np.array([[[0.9, 0.1]], [[0.7, 0.3]]], dtype=np.float32)  # [epochs, examples, labels]
    >>> dc.compute(probs, np.array([0])).confidence.round(2).tolist()
    [0.8]
"""

from __future__ import annotations

import importlib as _importlib
from typing import TYPE_CHECKING as _TYPE_CHECKING

from datacarto._core import DatacartoError, __version__
from datacarto._optional import MissingDependencyError
from datacarto._stats import STATISTICS, Statistics, compute, read_header

if _TYPE_CHECKING:
    from datacarto._partial import State, partial
    from datacarto.datamap import DataMap
    from datacarto.writer import DynamicsWriter, to_probabilities

__all__ = [
    "STATISTICS",
    "DataMap",
    "DatacartoError",
    "DynamicsWriter",
    "MissingDependencyError",
    "State",
    "Statistics",
    "__version__",
    "compute",
    "partial",
    "read_header",
    "to_probabilities",
]

# Public names whose module pulls in more than numpy (DataMap: polars) load on first access.
_LAZY_ATTRIBUTES = {
    "DataMap": "datacarto.datamap",
    "DynamicsWriter": "datacarto.writer",
    "State": "datacarto._partial",
    "partial": "datacarto._partial",
    "to_probabilities": "datacarto.writer",
}
# Public submodules, imported on first access: some need optional dependencies (torch,
# transformers, scikit-learn), others heavy ones (matplotlib, plotly, polars).
_LAZY_SUBMODULES = (
    "cli",
    "dask",
    "datamap",
    "demo",
    "distributed",
    "html",
    "importers",
    "noise",
    "online",
    "plots",
    "reference",
    "sklearn",
    "torch",
    "transformers",
    "writer",
)


def __getattr__(name: str) -> object:
    if name in _LAZY_ATTRIBUTES:
        value = getattr(_importlib.import_module(_LAZY_ATTRIBUTES[name]), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    if name in _LAZY_SUBMODULES:
        return _importlib.import_module(f"datacarto.{name}")
    raise AttributeError(f"module 'datacarto' has no attribute {name!r}")


# Submodules that cannot be imported without an optional dependency. dir() lists them only when
# it is installed: tools that walk dir() (help(), inspect.getmembers) import every name listed.
_SUBMODULE_NEEDS = {"dask": ("dask",), "distributed": ("torch",), "torch": ("torch",), "transformers": ("torch", "transformers")}


def _installed(module: str) -> bool:
    from importlib.util import find_spec

    try:
        return find_spec(module) is not None
    except (ImportError, ValueError):  # ValueError: a module without a spec, or None in sys.modules
        return False


def __dir__() -> list:
    usable = [name for name in _LAZY_SUBMODULES if all(_installed(need) for need in _SUBMODULE_NEEDS.get(name, ()))]
    return sorted(set(__all__) | set(usable))
