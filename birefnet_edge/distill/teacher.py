"""The teacher: any ``load_model`` spec run without gradients, and the on-disk cache of its targets.

A cached target is the teacher's probability map of the un-augmented, resized image; the key joins the
image's SHA-256, the teacher's identity and the size, so a changed image or teacher never reuses a
stale target. Files are written atomically, so concurrent ranks or a crash never leave half a file.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from birefnet_edge._io import atomic_write_bytes
from birefnet_edge.errors import BirefnetEdgeError, WeightsError
from birefnet_edge.model import BiRefNet, WeightsInfo, load_model
from birefnet_edge.model.birefnet import MEAN, STD


def load_teacher(spec: str, device: torch.device) -> tuple[BiRefNet, WeightsInfo, str]:
    """Load the teacher frozen in eval mode; return it, its ``WeightsInfo`` and its identity for cache keys.

    On CUDA the deformable convs use torchvision's kernel when torchvision imports (several times faster
    there than the grid_sample form; the result is the same function).

    Raises:
        WeightsError: The spec does not load (the message says why).
    """
    try:
        model, info = load_model(spec)
    except BirefnetEdgeError as exc:
        raise WeightsError(f"--teacher {spec} does not load: {exc}") from exc
    if device.type == "cuda":
        from birefnet_edge.model.layers.deform_conv import torchvision_available

        if torchvision_available():
            model.set_deform_form("torchvision")
    model.requires_grad_(False)
    return model.eval().to(device), info, teacher_identity(info, model)


def teacher_identity(info: WeightsInfo, model: BiRefNet) -> str:
    """SHA-256 of the weights file, or for deterministic weights a hash of the spec and the config."""
    if info.sha256:
        return info.sha256
    described = json.dumps({"source": info.source, "config": repr(model.config)}, sort_keys=True)
    return hashlib.sha256(described.encode()).hexdigest()


def normalise(images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) floats in [0, 1] -> ImageNet-normalised input."""
    mean = torch.tensor(MEAN, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=images.device).view(1, 3, 1, 1)
    return (images - mean) / std


@torch.no_grad()
def teacher_probs(teacher: BiRefNet, images: torch.Tensor, autocast: bool) -> torch.Tensor:
    """Teacher probabilities (B, 1, H, W) float32 for images in [0, 1]."""
    with torch.autocast(images.device.type, dtype=torch.bfloat16, enabled=autocast):
        logits = teacher(normalise(images))
    return torch.sigmoid(logits.float())


class TargetCache:
    """Teacher probability maps on disk, one file per (image, teacher, size).

    Args:
        folder: Cache folder (created on first write).
        teacher_id: The teacher's identity (see :func:`teacher_identity`).
        size: Training side in px.
        fmt: ``png`` (8-bit, 1/255 steps) or ``npy`` (float16).
    """

    def __init__(self, folder: Path, teacher_id: str, size: int, fmt: str = "png") -> None:
        self.folder, self.teacher_id, self.size, self.fmt = Path(folder), teacher_id, size, fmt

    def path(self, image_sha256: str) -> Path:
        """Where the target of an image lives; the name changes with the image, teacher or size."""
        key = hashlib.sha256(f"{image_sha256}:{self.teacher_id}:{self.size}".encode()).hexdigest()
        return self.folder / key[:2] / f"{key}.{self.fmt}"

    def get(self, image_sha256: str) -> torch.Tensor | None:
        """The cached (1, size, size) float32 target, or None when absent or unreadable (recomputed then)."""
        path = self.path(image_sha256)
        if not path.is_file():
            return None
        try:
            if self.fmt == "npy":
                array = np.load(path).astype(np.float32)
            else:
                with Image.open(path) as img:
                    array = np.asarray(img, dtype=np.float32) / 255.0
        except (OSError, ValueError):
            return None
        return torch.from_numpy(array)[None] if array.shape == (self.size, self.size) else None

    def quantise(self, prob: torch.Tensor) -> torch.Tensor:
        """The values a stored copy of ``prob`` reads back as; fresh targets use them too, so a cache hit and
        a miss train identically."""
        if self.fmt == "npy":
            return prob.half().float()
        return torch.round(prob * 255.0).clamp(0, 255) / 255.0

    def put(self, image_sha256: str, prob: torch.Tensor) -> None:
        """Store a (1, size, size) probability map atomically."""
        array = prob.detach().float().cpu().numpy()[0]
        buffer = io.BytesIO()
        if self.fmt == "npy":
            np.save(buffer, array.astype(np.float16))
        else:
            Image.fromarray(np.round(array * 255.0).clip(0, 255).astype(np.uint8)).save(buffer, format="PNG")
        atomic_write_bytes(self.path(image_sha256), buffer.getvalue())
