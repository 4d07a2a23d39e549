"""Lazy imports of optional heavy packages, with an error that names the extra to install."""

from __future__ import annotations

import importlib
import logging
from types import ModuleType

from birefnet_edge.errors import MissingDependencyError

# torchao (imported by executorch's exir, runtime and XNNPACK partitioner) calls torch's deprecated
# register_constant() on an Enum, and torch logs it as a raw "W... _pytree.py:...] <enum 'KernelPreference'>
# is an Enum subclass ..." line on the console: a note for torchao's authors, nothing a user can act on.
# This module is imported before any backend, so the filter is in place before that import; it drops only
# that one record of that one torch logger, every other record (ours included) passes.
_PYTREE_ENUM_NOTE = "is an Enum subclass and is now natively supported"


class _DropPytreeEnumNote(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return _PYTREE_ENUM_NOTE not in str(record.msg)


logging.getLogger("torch.utils._pytree").addFilter(_DropPytreeEnumNote())


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
