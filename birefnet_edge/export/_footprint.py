"""Artifact size against the size of the weights it was built from (the manifest's ``export.size``).

An app downloads the artifact, so its size should be the weights' and little more: anything the
converters store beyond the weights (folded per-size constants, duplicated transposes) shows up
here as a ratio above 1.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

# Bytes per floating weight as the artifact stores it; int8 artifacts keep some layers float (the
# accuracy search), so they are measured against fp32 weights and show how much they saved.
_FLOAT_BYTES = {"fp32": 4, "bf16": 4, "int8": 4, "fp16": 2}


def weights_bytes(model: torch.nn.Module, precision: str) -> int:
    """Bytes of the model's state dict with its floating tensors stored at ``precision``.

    bf16 artifacts carry fp32 weights (bf16 is a compile hint), so they count 4 bytes; integer buffers
    count as stored. Training-only tensors of the state dict are included: they are part of the
    weights a user has, and an artifact that drops them comes out below 1.
    """
    width = _FLOAT_BYTES.get(precision, 4)
    return sum(t.numel() * (width if t.is_floating_point() else t.element_size()) for t in model.state_dict().values())


def file_bytes(path: Path) -> int:
    """Size of a file, or of every file under a folder (a Core ML .mlpackage)."""
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def size_record(weights: int, precision: str, folder: Path, files: Mapping[str, str]) -> dict[str, Any]:
    """The manifest's ``export.size``: artifact bytes by role and in all, the weights' bytes, and their ratio.

    Args:
        weights: :func:`weights_bytes` of the exported model.
        precision: The profile's precision (names what ``weights`` was counted at).
        folder: The artifact folder.
        files: Its files (relative path -> role), as the exporter listed them.

    Returns:
        ``{"artifact_bytes", "weights_bytes", "weights_precision", "ratio", "by_role"}``; ``ratio`` is
        artifact over weights.
    """
    by_role: dict[str, int] = {}
    for rel, role in files.items():
        by_role[role] = by_role.get(role, 0) + file_bytes(folder / rel)
    total = sum(by_role.values())
    return {
        "artifact_bytes": total,
        "weights_bytes": weights,
        "weights_precision": "fp16" if _FLOAT_BYTES.get(precision) == 2 else "fp32",
        "ratio": round(total / weights, 4) if weights else None,
        "by_role": by_role,
    }
