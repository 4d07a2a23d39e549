"""Image files and stock pictures shared by export (calibration), parity, predict and distill.

One place says what counts as an image file (:data:`IMAGE_SUFFIXES`), finds the images of a folder
(:func:`find_images`), and provides the two stock sets used when the user names no folder: the
sample photos bundled with scikit-image (the ``parity`` extra; no download) and deterministic
synthetic images that cover cases photos rarely do (hard edges, pure noise, flat colour).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from birefnet_edge.errors import InputError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
SAMPLE_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")
# The ImageNet statistics the checkpoints were trained with: the deployment contract's normalisation.
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def deterministic_input(batch: int, height: int, width: int) -> np.ndarray:
    """The golden input rule: ``default_rng(0).random`` in float64 -> float32, normalised with MEAN/STD.

    Here rather than beside the model so that timing an artifact (``bench``) needs no torch: an app
    running the artifact does not load it, and its ~0.45 GB would show in the measured peak RSS.
    """
    x = np.random.default_rng(0).random((batch, 3, height, width)).astype(np.float32)
    mean = np.asarray(MEAN, dtype=np.float32)[None, :, None, None]
    std = np.asarray(STD, dtype=np.float32)[None, :, None, None]
    return ((x - mean) / std).astype(np.float32)


def is_image_file(path: Path) -> bool:
    """True for a file whose suffix (any case) is one of :data:`IMAGE_SUFFIXES`."""
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES


def find_images(folder: str | Path, recursive: bool = False, option: str = "image") -> list[Path]:
    """Return the image files of ``folder``, sorted by relative path (possibly none).

    Args:
        folder: The folder to search.
        recursive: Search sub-folders too (hidden ones, whose name starts with ``.``, are skipped).
        option: What the folder is to the user (``--calibration``, ``--images``), named in the error.

    Raises:
        InputError: ``folder`` is not a directory.
    """
    folder = Path(folder)
    if not folder.is_dir():
        how = "searched recursively" if recursive else "its images are used, not those of sub-folders"
        what = "is a file, not a folder" if folder.exists() else "folder not found"
        raise InputError(f"{option} {what}: {folder}; pass a folder of images ({how})")
    if not recursive:
        return sorted(p for p in folder.iterdir() if is_image_file(p))
    files = (p for p in folder.rglob("*") if is_image_file(p))
    return sorted(p for p in files if not any(part.startswith(".") for part in p.relative_to(folder).parts))


def readable_images(files: list[Path]) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Split ``files`` into the images that decode and (file, reason) for those that do not.

    The one image check of predict, parity, calibration and distill: every file is decoded in full with
    :func:`birefnet_edge.model.load_image` (a truncated JPEG passes Pillow's ``verify()``; a text file named
    ``.png``, or a decompression bomb, fails here too), so a bad file is found once, up front, and skipped
    with its reason instead of failing a worker or a target after minutes of work.
    """
    from birefnet_edge.model import load_image  # torch is behind it; this module stays light

    good, bad = [], []
    for path in files:
        try:
            load_image(path)
        except InputError as exc:
            bad.append((path, str(exc)))
        else:
            good.append(path)
    return good, bad


def describe_skipped(bad: list[tuple[Path, str]], limit: int = 3, what: str = "image") -> str:
    """One line naming the skipped files (the first ``limit``) with their reasons; ``what`` they are."""
    shown = "; ".join(f"{path.name} ({why.split(': ', 1)[-1][:80]})" for path, why in bad[:limit])
    more = f" and {len(bad) - limit} more" if len(bad) > limit else ""
    return f"skipped {len(bad)} unreadable {what}(s): {shown}{more}"


def sample_photos() -> list[tuple[str, Image.Image]]:
    """Return scikit-image's bundled sample photos (no download), named ``skimage:<name>``.

    Raises:
        ImportError: scikit-image is not installed (callers check ``is_available("skimage")`` first).
    """
    from skimage import data

    return [(f"skimage:{name}", Image.fromarray(getattr(data, name)()).convert("RGB")) for name in SAMPLE_PHOTOS]


def synthetic_images(size: tuple[int, int] = (256, 256)) -> list[tuple[str, Image.Image]]:
    """Return four deterministic synthetic images: shapes, a disk on a gradient, noise, flat grey."""
    h, w = size
    rng = np.random.default_rng(1234)
    ramp = np.linspace(0, 255, w, dtype=np.float64)[None, :].repeat(h, 0)
    gradient = np.stack([ramp, ramp[::-1, ::-1] * 0.5, np.full((h, w), 90.0)], axis=-1).astype(np.uint8)

    disk = Image.fromarray(gradient)
    ImageDraw.Draw(disk).ellipse((w * 0.3, h * 0.25, w * 0.7, h * 0.75), fill=(240, 220, 40))

    shapes = Image.fromarray((rng.random((h, w, 3)) * 60 + 30).astype(np.uint8))
    draw = ImageDraw.Draw(shapes)
    draw.rectangle((w * 0.1, h * 0.15, w * 0.45, h * 0.8), fill=(200, 30, 30))
    draw.polygon([(w * 0.55, h * 0.85), (w * 0.75, h * 0.2), (w * 0.95, h * 0.85)], fill=(30, 120, 220))

    noise = Image.fromarray((rng.random((h, w, 3)) * 255).astype(np.uint8))
    flat = Image.new("RGB", (w, h), (128, 128, 128))
    return [
        ("synthetic:shapes", shapes),
        ("synthetic:disk", disk),
        ("synthetic:noise", noise),
        ("synthetic:flat", flat),
    ]
