"""The images the parity gate feeds to every target: real photos plus synthetic images.

Real photos come from a folder the user names, or else from scikit-image's bundled sample photos
(the ``parity`` extra); when neither is available only synthetic images are used and the result
says so. The pictures themselves come from :mod:`birefnet_edge.images`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from birefnet_edge._deps import is_available
from birefnet_edge.errors import InputError
from birefnet_edge.images import (
    IMAGE_SUFFIXES,
    describe_skipped,
    find_images,
    readable_images,
    sample_photos,
    synthetic_images,
)
from birefnet_edge.model import Contract, load_image, preprocess


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


def load_inputs(folder: Path | None = None, synthetic: int = 3, limit: int | None = None) -> ParityInputs:
    """Assemble the parity image set.

    Args:
        folder: Folder of photos to use; None means scikit-image's sample photos when installed.
        synthetic: How many synthetic images to add (0..4).
        limit: Use at most this many photos (None: all).

    Returns:
        The image set.

    Raises:
        InputError: ``folder`` does not exist or holds no readable image (unreadable files are skipped, named in
            the note).
    """
    names: list[str] = []
    images: list[Image.Image] = []
    if folder is not None:
        files = find_images(folder)[:limit]
        if not files:
            raise InputError(
                f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}; point --images at a folder of photos"
            )
        files, bad = readable_images(files)  # one check for every command: a bad file is a note, not a failure
        if not files:
            raise InputError(f"no readable image in {folder} ({describe_skipped(bad)}); point --images at photos")
        names += [p.stem for p in files]
        images += [load_image(p).convert("RGB") for p in files]
        note = f"{len(files)} photo(s) from {folder}" + (f" ({describe_skipped(bad)})" if bad else "")
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


__all__ = ["IMAGE_SUFFIXES", "ParityInputs", "load_inputs", "sample_photos", "synthetic_images"]
