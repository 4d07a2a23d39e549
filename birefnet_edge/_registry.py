"""One registry mechanism shared by models, exporters and runners.

A :class:`Registry` maps a name to a class or factory. ``registry.register("onnx")`` returns a
decorator; registering a name twice raises instead of silently overwriting, because two exporters
claiming one target name is always a bug.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterable, Iterator
from typing import Generic, TypeVar

from birefnet_edge.errors import BirefnetEdgeError

T = TypeVar("T")


class Registry(Generic[T]):
    """A name -> object table with a registering decorator.

    Args:
        kind: What is registered ("model", "exporter", "runner"), used in messages.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Return a decorator that registers its argument under ``name``.

        Raises:
            ValueError: ``name`` is already registered (a programming error, not a user error).
        """

        def decorator(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} '{name}' is already registered by {self._items[name]!r}")
            self._items[name] = obj
            return obj

        return decorator

    def get(self, name: str) -> T:
        """Return the object registered under ``name``.

        Raises:
            BirefnetEdgeError: No such name; the message lists the registered names.
        """
        if name not in self._items:
            known = ", ".join(sorted(self._items)) or "(none)"
            raise BirefnetEdgeError(f"unknown {self.kind} '{name}'; known: {known}")
        return self._items[name]

    def names(self) -> list[str]:
        """Return the registered names, sorted."""
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


def import_submodules(package: str, path: Iterable[str]) -> list[str]:
    """Import every public (non-``_``) submodule of ``package`` found on ``path``, in name order.

    A format's ``formats/``, ``export/`` and ``runtime/`` modules register themselves when imported,
    so discovering them here is what makes a new format need no import line elsewhere. Modules already
    imported are skipped, so calling this again (after ``path`` gained a folder) imports only new ones.

    Args:
        package: The package's dotted name (its ``__name__``).
        path: The package's ``__path__``.

    Returns:
        The dotted names of the submodules found (imported now or before).
    """
    names = sorted(f"{package}.{m.name}" for m in pkgutil.iter_modules(list(path)) if not m.name.startswith("_"))
    for name in names:
        importlib.import_module(name)
    return names
