"""Lazy imports of optional heavy packages, with an error that names the extra to install."""

from __future__ import annotations

import importlib
from types import ModuleType

from birefnet_edge.errors import MissingDependencyError


def require(module: str, extra: str, purpose: str = "") -> ModuleType:
    """Import an optional module or raise an error naming the extra that installs it.

    Args:
        module: Dotted module name, e.g. ``"onnxruntime"``.
        extra: The birefnet-edge extra that provides it, e.g. ``"onnx"``.
        purpose: Short description of what needs it, shown in the message.

    Returns:
        The imported module.

    Raises:
        MissingDependencyError: The module cannot be imported.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(module.split(".")[0], extra, purpose) from exc


def is_available(module: str) -> bool:
    """Return True when ``module`` can be imported (without raising)."""
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True
