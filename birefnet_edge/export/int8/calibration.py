"""Calibration images for post-training quantization: the user's folder, or a loudly flagged fallback.

A quantizer sets its int8 ranges from the activations of a few hundred real inputs, and the
accuracy search judges each candidate on images it did not calibrate on. Both sets come from here:
``export --calibration DIR`` (searched recursively, any image size) is split into a calibration part
and a held-out part. Without a folder the bundled sample photos (with mirrored and cropped copies)
plus synthetic images are used, and the export says loudly, in its output and its manifest, that the
int8 accuracy measured on them does not represent the user's images. Every image's SHA-256 goes into
the manifest, so a quantized artifact can be traced to the exact pictures that shaped it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from birefnet_edge._io import sha256_file
from birefnet_edge.errors import InputError
from birefnet_edge.formats._quantization import MIN_CALIBRATION
from birefnet_edge.images import (
    IMAGE_SUFFIXES,
    describe_skipped,
    find_images,
    readable_images,
    sample_photos,
    synthetic_images,
)

DEFAULT_COUNT = 64
DEFAULT_HELD_OUT = 8
FALLBACK_WARNING = (
    "int8 calibration used only the bundled sample photos and synthetic images (no --calibration DIR): "
    "the int8 accuracy measured on them is NOT representative of your images; pass --calibration with "
    f"at least {DEFAULT_COUNT} photos like the ones you will segment"
)


@dataclass(frozen=True)
class CalibrationImage:
    """One image of the set, loaded only when used (a folder of large photos never sits in memory).

    Attributes:
        name: File path relative to the folder, or ``skimage:<name>[:variant]`` / ``synthetic:<kind>``.
        sha256: Hash of the file's bytes, or of the RGB pixels (with the size) for in-memory images.
        path: The file, when it came from a folder.
        image: The picture, when it is built in memory.
    """

    name: str
    sha256: str
    path: Path | None = None
    image: Image.Image | None = None

    def load(self) -> Image.Image:
        """Return the image as RGB.

        Raises:
            InputError: The file cannot be read as an image.
        """
        if self.image is not None:
            return self.image.convert("RGB")
        from birefnet_edge.model import load_image

        return load_image(self.path).convert("RGB")  # type: ignore[arg-type]


@dataclass(frozen=True)
class ImageStream:
    """Images at one input size, each read and preprocessed when an iteration reaches it; every pass reads again.

    Held as one array, BiRefNet_lite's 56 calibration images at 1024 px are 705 MB, and that array stayed
    alive beside the quantizer and through the whole accuracy search after it. Streamed, one image
    (12.6 MB) is alive at a time, for a second read of each image when a quantizer passes twice.
    """

    images: tuple[CalibrationImage, ...]
    size: tuple[int, int]

    def __len__(self) -> int:
        return len(self.images)

    def __iter__(self) -> Iterator[np.ndarray]:
        """Each image as a normalised (1, 3, H, W) float32 batch."""
        from birefnet_edge.model import Contract, preprocess

        contract = Contract(size=self.size)
        for item in self.images:
            yield preprocess(item.load(), contract)


@dataclass(frozen=True)
class CalibrationSet:
    """Calibration and held-out images, where they came from, and whether they represent real use.

    Attributes:
        calibration: Images the quantizer reads its ranges from.
        held_out: Images the accuracy check and search judge on (never calibrated on).
        source: The folder, or ``bundled sample photos + synthetic`` for the fallback.
        representative: False for the fallback set.
        found: How many images the folder held (before choosing ``count`` of them).
    """

    calibration: tuple[CalibrationImage, ...]
    held_out: tuple[CalibrationImage, ...]
    source: str
    representative: bool
    found: int
    skipped: tuple[tuple[str, str], ...] = ()

    @property
    def warning(self) -> str | None:
        """The loud warning of a fallback set, or the note on unreadable files left out (None when neither)."""
        if not self.representative:
            return FALLBACK_WARNING
        if self.skipped:
            return describe_skipped([(Path(p), why) for p, why in self.skipped])
        return None

    def arrays(self, which: str, size: tuple[int, int]) -> np.ndarray:
        """Preprocess ``calibration`` or ``held_out`` images to a normalised (N, 3, H, W) float32 batch.

        For the held-out images, which the accuracy search runs many times; the quantizers read the
        calibration images through :meth:`stream`.
        """
        stream = self.stream(which, size)
        # Filled in place: a list of the images and their concatenation would hold the set twice.
        batch = np.empty((len(stream), 3, *size), dtype=np.float32)
        for i, image in enumerate(stream):
            batch[i] = image[0]
        return batch

    def stream(self, which: str, size: tuple[int, int]) -> ImageStream:
        """``calibration`` or ``held_out`` images at ``size``, preprocessed one at a time as they are read."""
        return ImageStream(self.calibration if which == "calibration" else self.held_out, size)

    def record(self) -> dict[str, Any]:
        """The manifest record: source, counts, warning and every image's name and SHA-256."""
        out: dict[str, Any] = {
            "source": self.source,
            "representative": self.representative,
            "found": self.found,
            "calibration": [{"name": i.name, "sha256": i.sha256} for i in self.calibration],
            "held_out": [{"name": i.name, "sha256": i.sha256} for i in self.held_out],
        }
        if self.skipped:
            out["skipped"] = [{"name": Path(p).name, "reason": why} for p, why in self.skipped]
        if self.warning:
            out["warning"] = self.warning
        return out


def load_calibration(
    folder: Path | None, count: int = DEFAULT_COUNT, held_out: int = DEFAULT_HELD_OUT
) -> CalibrationSet:
    """Choose the calibration and held-out images.

    Args:
        folder: The user's images (searched recursively); None selects the fallback set.
        count: How many images to use in all, spread evenly over the sorted folder when it holds more.
        held_out: How many of them are kept out of calibration for the accuracy check (the fallback
            keeps a quarter of its images).

    Returns:
        The split set.

    Raises:
        InputError: The folder is missing, holds no image, or fewer than ``held_out + 4`` images.
    """
    if folder is None:
        items = fallback_images()
        return _split(items, max(1, len(items) // 4), "bundled sample photos + synthetic", False, len(items))
    folder = Path(folder)
    files = find_images(folder, recursive=True, option="--calibration")

    needed = held_out + MIN_CALIBRATION
    if len(files) < needed:
        what = "no images" if not files else f"only {len(files)} image(s)"
        raise InputError(
            f"--calibration {folder}: found {what} ({', '.join(IMAGE_SUFFIXES)}, searched recursively); int8 "
            f"quantization needs at least {needed} ({held_out} held out + {MIN_CALIBRATION} to calibrate), "
            f"{count} recommended; add photos like the ones you will segment"
        )
    chosen, skipped = _choose_readable(files, count)
    if len(chosen) < needed:
        raise InputError(
            f"--calibration {folder}: only {len(chosen)} of its {len(files)} image(s) can be read "
            f"({describe_skipped(skipped)}); int8 quantization needs at least {needed}; add readable photos"
        )
    items = [CalibrationImage(p.relative_to(folder).as_posix(), sha256_file(p), path=p) for p in chosen]
    return _split(items, held_out, str(folder), True, len(files), tuple((str(p), why) for p, why in skipped))


def _choose_readable(files: list[Path], count: int) -> tuple[list[Path], list[tuple[Path, str]]]:
    """``count`` images spread over ``files`` that decode; an unreadable one is replaced by the next readable
    file not yet chosen, so bad files cost a note, not the export (checked before the model loads)."""
    order = _spread(len(files), min(count, len(files)))
    order += [i for i in range(len(files)) if i not in set(order)]
    chosen: list[int] = []
    skipped: list[tuple[Path, str]] = []
    for i in order:
        if len(chosen) == min(count, len(files)):
            break
        good, bad = readable_images([files[i]])
        chosen += [i] if good else []
        skipped += bad
    return [files[i] for i in sorted(chosen)], skipped


def _spread(n: int, k: int) -> list[int]:
    """``k`` indices spread evenly over ``range(n)`` (all of them when k >= n)."""
    return sorted({int(i) for i in np.linspace(0, n - 1, num=k).round()}) if k < n else list(range(n))


def _split(
    items: Sequence[CalibrationImage],
    held_out: int,
    source: str,
    representative: bool,
    found: int,
    skipped: tuple[tuple[str, str], ...] = (),
) -> CalibrationSet:
    """Hold out ``held_out`` images spread over the set (not just its end), calibrate on the rest."""
    keep = set(_spread(len(items), held_out))
    return CalibrationSet(
        calibration=tuple(item for i, item in enumerate(items) if i not in keep),
        held_out=tuple(item for i, item in enumerate(items) if i in keep),
        source=source,
        representative=representative,
        found=found,
        skipped=skipped,
    )


def fallback_images() -> list[CalibrationImage]:
    """Sample photos (with mirrored and centre-cropped copies) and the synthetic images, hashed by pixels."""
    from birefnet_edge._deps import is_available

    pictures: list[tuple[str, Image.Image]] = []
    for name, photo in sample_photos() if is_available("skimage") else []:
        w, h = photo.size
        crop = photo.crop((w // 5, h // 5, w - w // 5, h - h // 5))
        pictures += [(name, photo), (f"{name}:mirrored", ImageOps.mirror(photo)), (f"{name}:cropped", crop)]
    pictures += synthetic_images()
    return [CalibrationImage(name, pixel_hash(img), image=img) for name, img in pictures]


def pixel_hash(image: Image.Image) -> str:
    """SHA-256 of an in-memory image's RGB pixels and size."""
    rgb = image.convert("RGB")
    digest = hashlib.sha256(f"{rgb.width}x{rgb.height}:".encode())
    digest.update(rgb.tobytes())
    return digest.hexdigest()
