"""Training data: a recursive image folder, a seeded held-out split, a resumable sharded order, augmentation.

Workers only decode and resize (and read cached teacher targets); everything random (data order and
augmentation) is a pure function of the seed and the position in the sample stream, so a resumed run
sees exactly the batches an uninterrupted one would, with any number of workers or processes.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from birefnet_edge.distill.config import Augment
from birefnet_edge.errors import InputError
from birefnet_edge.images import (
    IMAGE_SUFFIXES,
    readable_images,  # noqa: F401  (the shared image check, re-exported)
)
from birefnet_edge.images import find_images as _find
from birefnet_edge.model import load_image

log = logging.getLogger(__name__)


def find_images(folder: Path) -> list[Path]:
    """Every training image under ``folder`` (:func:`birefnet_edge.images.find_images`, recursive); none is an error.

    Raises:
        InputError: The folder is missing or holds no image.
    """
    files = _find(folder, recursive=True, option="--images")
    if not files:
        raise InputError(f"no images found under {folder} (looked recursively for {', '.join(IMAGE_SUFFIXES)})")
    return files


def split_held_out(files: list[Path], fraction: float, limit: int, seed: int) -> tuple[list[Path], list[Path]]:
    """(train, held-out): a seeded choice of ``min(limit, ceil(fraction * n))`` held-out files, at least one.

    Raises:
        InputError: Fewer than two images (nothing would be left to train or to evaluate on).
    """
    if len(files) < 2:
        raise InputError(f"need at least 2 readable images (one to train on, one held out); found {len(files)}")
    count = min(limit, max(1, math.ceil(fraction * len(files))), len(files) - 1)
    order = np.random.default_rng(seed).permutation(len(files))
    held = set(order[:count].tolist())
    return [f for i, f in enumerate(files) if i not in held], [f for i, f in enumerate(files) if i in held]


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes (the image part of a cache key)."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_resized(path: Path, size: int) -> torch.Tensor:
    """An image file as a (3, size, size) uint8 tensor (RGB, bilinear), the teacher's and student's input."""
    rgb = load_image(path).convert("RGB").resize((size, size), Image.BILINEAR)
    return torch.from_numpy(np.asarray(rgb).copy()).permute(2, 0, 1).contiguous()


def load_mask(path: Path, size: int) -> torch.Tensor:
    """A ground-truth mask as a (1, size, size) float tensor in [0, 1]."""
    gray = load_image(path).convert("L").resize((size, size), Image.BILINEAR)
    return torch.from_numpy(np.asarray(gray, dtype=np.float32) / 255.0)[None]


@dataclass(frozen=True)
class Sample:
    """One decoded training item: the resized image, its cache key part, a cached target if found, its mask if any."""

    index: int
    image: torch.Tensor
    image_sha256: str
    target: torch.Tensor | None
    mask: torch.Tensor | None = None


class ImageFolderDataset(torch.utils.data.Dataset):
    """Decodes and resizes images (and masks) in worker processes; reads cached teacher targets when a cache is given.

    Args:
        files: Image files.
        size: Side the images are resized to.
        cache: The teacher-target cache, or None.
        masks: Ground-truth mask of each file (same order), or None.
    """

    def __init__(
        self, files: list[Path], size: int, cache: object | None = None, masks: list[Path] | None = None
    ) -> None:
        self.files, self.size, self.cache, self.masks = files, size, cache, masks

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> Sample:
        path = self.files[index]
        digest = file_sha256(path)
        target = self.cache.get(digest) if self.cache is not None else None
        mask = load_mask(self.masks[index], self.size) if self.masks is not None else None
        return Sample(index, load_resized(path, self.size), digest, target, mask)


def collate(samples: list[Sample]) -> list[Sample]:
    """Keep samples as a list: targets may be missing for some of them (computed by the teacher later)."""
    return samples


class StreamSampler(torch.utils.data.Sampler):
    """Distributed batch sampler over an endless, seeded stream of epochs, starting at any position.

    Epoch ``e`` is a permutation drawn from ``seed + e``; each optimizer step consumes ``world * accum *
    batch`` consecutive samples of the stream, rank ``r`` taking its slice of each micro-batch. Unlike
    ``DistributedSampler`` (which fixes the shards per epoch) it resumes mid-epoch and with another
    number of processes: the position is a sample count, independent of the world size.

    Args:
        n: Dataset size.
        batch: Samples per micro-batch per process.
        world: Number of processes.
        rank: This process.
        seed: Seed of the order.
        start: Samples of the stream already consumed (all ranks together).
    """

    def __init__(self, n: int, batch: int, world: int, rank: int, seed: int, start: int = 0) -> None:
        self.n, self.batch, self.world, self.rank, self.seed, self.start = n, batch, world, rank, seed, start

    def stream(self, position: int, count: int) -> list[int]:
        """``count`` dataset indices of the global stream from ``position``."""
        out: list[int] = []
        while len(out) < count:
            epoch, offset = divmod(position + len(out), self.n)
            perm = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed + epoch)).tolist()
            out += perm[offset : offset + count - len(out)]
        return out

    def __iter__(self) -> Iterator[list[int]]:
        position = self.start
        while True:
            chunk = self.stream(position, self.batch * self.world)
            yield chunk[self.rank * self.batch : (self.rank + 1) * self.batch]
            position += self.batch * self.world

    def __len__(self) -> int:  # endless; DataLoader only needs a number for its length hint
        return 2**62


def augment_pair(
    image: torch.Tensor, target: torch.Tensor, settings: Augment, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Augment one (3, H, W) image in [0, 1] and its (1, H, W) target with an RNG seeded by ``seed``.

    Flip and scale-and-crop move both tensors the same way; colour jitter changes the image only.
    """
    gen = torch.Generator().manual_seed(seed)
    draw = torch.rand(7, generator=gen).tolist()
    if draw[0] < settings.flip:
        image, target = image.flip(-1), target.flip(-1)
    if settings.max_scale > 1.0:
        image, target = _scale_crop(image, target, 1.0 + draw[1] * (settings.max_scale - 1.0), draw[2], draw[3])
    if settings.jitter > 0:
        image = _jitter(image, [(2 * d - 1) * settings.jitter for d in draw[4:7]])
    return image, target


def _scale_crop(
    image: torch.Tensor, target: torch.Tensor, scale: float, fy: float, fx: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Zoom both by ``scale`` and crop back to the original size at the relative corner (fy, fx)."""
    h, w = image.shape[-2:]
    sh, sw = round(h * scale), round(w * scale)
    top, left = int(fy * (sh - h)), int(fx * (sw - w))

    def zoom(t: torch.Tensor) -> torch.Tensor:
        big = F.interpolate(t[None], size=(sh, sw), mode="bilinear", align_corners=False)[0]
        return big[:, top : top + h, left : left + w]

    return zoom(image), zoom(target)


def _jitter(image: torch.Tensor, amounts: list[float]) -> torch.Tensor:
    """Brightness, contrast and saturation changes by the given signed amounts, clamped to [0, 1]."""
    brightness, contrast, saturation = amounts
    image = image * (1 + brightness)
    image = (image - image.mean()) * (1 + contrast) + image.mean()
    gray = (0.299 * image[0] + 0.587 * image[1] + 0.114 * image[2])[None]
    return ((image - gray) * (1 + saturation) + gray).clamp(0, 1)
