"""The teacher: PyTorch weights or an exported artifact run without gradients, and the cache of its targets.

A teacher turns a batch of images into probability maps (:meth:`Teacher.probs`). A cached target is
the teacher's probability map of the un-augmented, resized image; the key joins the image's SHA-256,
the teacher's identity and the size, so a changed image or teacher never reuses a stale target. Files
are written atomically, so concurrent ranks or a crash never leave half a file.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from birefnet_edge._io import atomic_write_bytes
from birefnet_edge.errors import BirefnetEdgeError, WeightsError
from birefnet_edge.images import MEAN, STD
from birefnet_edge.manifest import MANIFEST_NAME
from birefnet_edge.model import BiRefNet, WeightsInfo, load_model

NO_TEACHER = "none"


@dataclass
class Teacher:
    """A teacher: computes target probabilities; ``model`` is set for PyTorch weights (feature distillation,
    backbone copy) and ``runner`` for an exported artifact.

    Attributes:
        spec: What ``--teacher`` said.
        identity: SHA-256 naming the teacher in cache keys and run.json (weights file, or artifact manifest).
        info: Provenance for run.json.
        model: The PyTorch teacher (eval mode, frozen), or None.
        runner: The activated artifact runner, or None.
    """

    spec: str
    identity: str
    info: dict[str, Any]
    model: BiRefNet | None = None
    runner: Any = None

    def probs(self, images: torch.Tensor, autocast: bool = False) -> torch.Tensor:
        """Probabilities (B, 1, H, W) float32, on the images' device, for (B, 3, H, W) images in [0, 1]."""
        if self.model is not None:
            return teacher_probs(self.model, images, autocast)
        return artifact_probs(self.runner, images)

    def close(self) -> None:
        """Release an artifact runner."""
        if self.runner is not None:
            self.runner.deactivate()


def open_teacher(spec: str, device: torch.device) -> Teacher | None:
    """The teacher ``--teacher`` names: ``none`` (None), an artifact folder, or anything ``load_model`` accepts.

    Raises:
        WeightsError: The weights do not load, the artifact is missing, or it cannot run here (one line each).
    """
    if spec == NO_TEACHER:
        return None
    folder = Path(spec)
    if folder.is_dir() or folder.name == MANIFEST_NAME or _names_missing_folder(folder):
        return _artifact_teacher(spec, folder.parent if folder.name == MANIFEST_NAME else folder)
    model, info, identity = load_teacher(spec, device)
    return Teacher(spec, identity, {"kind": "weights", **info.to_dict()}, model=model)


def _names_missing_folder(path: Path) -> bool:
    """True for a spec meant as a local folder that is not there (its parent exists, it has no weights suffix).

    ``dist/x`` could also be a hub id; a local ``dist/`` folder decides it is a path.
    """
    local = path.is_absolute() or str(path).startswith(".") or (path.parent != Path(".") and path.parent.is_dir())
    return local and not path.exists() and path.suffix.lower() not in (".safetensors", ".pth", ".pt", ".bin")


def _artifact_teacher(spec: str, folder: Path) -> Teacher:
    from birefnet_edge.runtime import open_runner

    if not folder.is_dir():
        raise WeightsError(
            f"--teacher {spec}: no artifact folder there; export one (birefnet-edge export --weights W -t TARGET) "
            "or pass weights (random:<variant>, a .safetensors/.pth file, owner/name)"
        )
    manifest = folder / MANIFEST_NAME
    if not manifest.is_file():
        raise WeightsError(f"--teacher {spec}: {folder} holds no {MANIFEST_NAME}; pass an exported artifact folder")
    try:
        runner = open_runner(folder).activate()
    except BirefnetEdgeError as exc:
        raise WeightsError(f"--teacher {spec}: the artifact cannot run here: {exc}") from exc
    identity = hashlib.sha256(manifest.read_bytes()).hexdigest()
    info = {"kind": "artifact", "artifact": str(folder.resolve()), "runner": type(runner).__name__}
    info.update(format=getattr(runner, "target", ""), precision=runner.precision, manifest_sha256=identity)
    return Teacher(spec, identity, info, runner=runner)


def artifact_probs(runner: Any, images: torch.Tensor) -> torch.Tensor:
    """Run an artifact on images in [0, 1]: resized to its size, normalised by its contract, in batches
    within its range, probabilities resized back to the images' size."""
    h, w = images.shape[-2:]
    size = tuple(runner.spec.size)
    x = images.float()
    if tuple(x.shape[-2:]) != size:
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    mean = torch.tensor(runner.contract.get("mean", MEAN), dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(runner.contract.get("std", STD), dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
    array = ((x - mean) / std).cpu().numpy().astype(np.float32)
    step = runner.spec.batch.max
    outs = [runner.infer_padded(array[i : i + step]) for i in range(0, len(array), step)]  # pads a short last batch
    prob = torch.sigmoid(torch.from_numpy(np.concatenate(outs)).float()).to(images.device)
    if tuple(prob.shape[-2:]) != (h, w):
        prob = F.interpolate(prob, size=(h, w), mode="bilinear", align_corners=False)
    return prob


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
