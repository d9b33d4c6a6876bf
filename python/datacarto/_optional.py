"""Optional dependencies: imported on first use, with one clear error naming the extra.

Example:
    >>> from datacarto._optional import require
    >>> require("json", "sklearn").__name__
    'json'
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["MissingDependencyError", "require"]


class MissingDependencyError(ImportError):
    """An optional dependency is not installed; the message says which extra to install."""


def require(module: str, extra: str, *, feature: str = "") -> ModuleType:
    """Import ``module``, or raise :class:`MissingDependencyError` naming ``pip install "datacarto[extra]"``.

    ``feature`` names what needed it ("the torch recorder"); by default the module itself.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        if exc.name is not None and exc.name.split(".")[0] != top:
            raise  # the module is there but one of *its* imports failed: show the real cause
        needed_by = feature or module
        raise MissingDependencyError(
            f"{needed_by} needs {top}, which is not installed: pip install \"datacarto[{extra}]\""
        ) from exc
