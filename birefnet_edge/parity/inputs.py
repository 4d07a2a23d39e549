"""The images the parity gate feeds to every target: real photos plus synthetic images.

Real photos come from a folder the user names, or else from scikit-image's bundled sample photos
(the ``parity`` extra); when neither is available only synthetic images are used and the result
says so. Synthetic images cover cases photos rarely do: hard edges, pure noise, flat colour.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from birefnet_edge._deps import is_available
from birefnet_edge.errors import InputError
from birefnet_edge.model import Contract, load_image, preprocess

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
SAMPLE_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")


@dataclass(frozen=True)
class ParityInputs:
    """A named set of RGB images and a note on where they came from.

    Attributes:
        names: One name per image (file stem, ``skimage:<name>`` or ``synthetic:<kind>``).
        images: The images, RGB.
        note: Human-readable origin, shown in reports (e.g. "synthetic only: scikit-image missing").
    """

    names: tuple[str, ...]
    images: tuple[Image.Image, ...]
    note: str

    def __len__(self) -> int:
        return len(self.names)

    def batch(self, contract: Contract) -> np.ndarray:
        """Return every image preprocessed for ``contract``: (N, 3, H, W) float32."""
        return preprocess(list(self.images), contract)

    def resized(self, size: tuple[int, int]) -> np.ndarray:
        """Return the images resized to ``size`` (H, W) as uint8 (N, H, W, 3), for reports."""
        h, w = size
        return np.stack([np.asarray(img.resize((w, h), Image.BILINEAR)) for img in self.images])


def collect_image_files(folder: Path) -> list[Path]:
    """Return the image files directly inside ``folder``, sorted by name.

    Raises:
        InputError: ``folder`` is not a directory.
    """
    if not folder.is_dir():
        raise InputError(f"image folder not found: {folder}")
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def load_inputs(folder: Path | None = None, synthetic: int = 3, limit: int | None = None) -> ParityInputs:
    """Assemble the parity image set.

    Args:
        folder: Folder of photos to use; None means scikit-image's sample photos when installed.
        synthetic: How many synthetic images to add (0..4).
        limit: Use at most this many photos (None: all).

    Returns:
        The image set.

    Raises:
        InputError: ``folder`` does not exist, holds no readable image, or a file in it is unreadable.
    """
    names: list[str] = []
    images: list[Image.Image] = []
    if folder is not None:
        files = collect_image_files(Path(folder))[:limit]
        if not files:
            raise InputError(
                f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}; point --images at a folder of photos"
            )
        names += [p.stem for p in files]
        images += [load_image(p).convert("RGB") for p in files]
        note = f"{len(files)} photo(s) from {folder}"
    elif is_available("skimage"):
        photos = sample_photos()[:limit]
        names += [n for n, _ in photos]
        images += [img for _, img in photos]
        note = f"{len(photos)} scikit-image sample photo(s)"
    else:
        note = "synthetic images only (no --images, and scikit-image is missing: pip install 'birefnet-edge[parity]')"
    for name, img in synthetic_images()[:synthetic]:
        names.append(name)
        images.append(img)
    if folder is not None or is_available("skimage"):
        note += f" + {min(synthetic, 4)} synthetic"
    return ParityInputs(tuple(names), tuple(images), note)


def sample_photos() -> list[tuple[str, Image.Image]]:
    """Return scikit-image's bundled sample photos (no download), named ``skimage:<name>``."""
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
