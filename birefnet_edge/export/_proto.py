"""Editing protobuf messages (ONNX graphs) in place."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def replace_all(field: Any, items: Sequence[Any]) -> None:
    """Set the repeated message ``field`` (e.g. ``graph.node``) to ``items``, in their order.

    The items are copied first: they are usually the field's own elements, which clearing it would detach.
    """
    copies = [type(item)() for item in items]
    for copy, item in zip(copies, items, strict=True):
        copy.CopyFrom(item)
    del field[:]
    field.extend(copies)
