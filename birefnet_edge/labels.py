"""Labelled image folders: pairing images with ground-truth masks (distill supervision and ``eval``).

A mask belongs to an image when it has the image's path relative to the images folder, with any
image suffix (``photos/a/cat.jpg`` -> ``masks/a/cat.png``). DIS5K's layout, one folder holding
``im/`` and ``gt/``, is recognised: passing that folder as the images stands for ``im/`` + ``gt/``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from birefnet_edge.errors import InputError
from birefnet_edge.images import IMAGE_SUFFIXES, readable_images

DIS_IMAGES, DIS_MASKS = "im", "gt"


@dataclass
class Labelled:
    """Images paired with their masks, and the images that have none.

    Attributes:
        pairs: (image, mask) in the images' order.
        unmatched: Images without a mask.
        masks_root: The masks folder the pairs come from.
        unreadable: (mask, reason) of the masks that do not decode; their images are in neither list.
    """

    pairs: list[tuple[Path, Path]] = field(default_factory=list)
    unmatched: list[Path] = field(default_factory=list)
    masks_root: Path | None = None
    unreadable: list[tuple[Path, str]] = field(default_factory=list)

    def describe_unmatched(self) -> str:
        """One line about the images without a mask (empty when there is none)."""
        if not self.unmatched:
            return ""
        total = len(self.pairs) + len(self.unmatched)
        example = self.unmatched[0]
        return f"{len(self.unmatched)} of {total} image(s) have no mask under {self.masks_root}, e.g. {example}"


def split_layout(images: Path, masks: Path | None) -> tuple[Path, Path | None]:
    """(images folder, masks folder): a folder with ``im/`` and ``gt/`` (DIS5K) stands for ``im/``, with ``gt/``
    as the masks unless ``masks`` names others."""
    if (images / DIS_IMAGES).is_dir() and (images / DIS_MASKS).is_dir():
        return images / DIS_IMAGES, masks or images / DIS_MASKS
    return images, masks


def find_mask(image: Path, images_root: Path, masks_root: Path) -> Path | None:
    """The mask with the image's relative path and stem (any image suffix) under ``masks_root``, or None."""
    rel = image.relative_to(images_root).with_suffix("")
    for suffix in IMAGE_SUFFIXES:
        for candidate in (masks_root / rel.with_suffix(suffix), masks_root / rel.with_suffix(suffix.upper())):
            if candidate.is_file():
                return candidate
    return None


def pair_masks(files: list[Path], images_root: Path, masks_root: Path) -> Labelled:
    """Pair every image with its mask.

    Args:
        files: Image files under ``images_root``.
        images_root: The images folder.
        masks_root: The masks folder.

    Every matched mask is decoded once here, as images are (:func:`readable_images`): an unreadable one is
    listed in ``unreadable`` and its image left unpaired, up front, not found by a training step or a model run.

    Returns:
        The pairs, the images without a mask and the masks that do not decode.

    Raises:
        InputError: The masks folder is missing, or no image has a readable mask.
    """
    if not masks_root.is_dir():
        raise InputError(f"--masks {masks_root} is not a folder; pass the folder of ground-truth masks")
    if masks_root.resolve() == images_root.resolve():  # each image would be its own "mask", silently
        raise InputError(
            f"--masks {masks_root} is the images folder; pass the folder that holds the masks (same relative paths "
            "and names as the images)"
        )
    found = Labelled(masks_root=masks_root)
    matched = []
    for image in files:
        mask = find_mask(image, images_root, masks_root)
        if mask is None:
            found.unmatched.append(image)
        else:
            matched.append((image, mask))
    readable, found.unreadable = readable_images([mask for _, mask in matched])
    decoded = set(readable)
    found.pairs = [(image, mask) for image, mask in matched if mask in decoded]
    if matched and not found.pairs:
        raise InputError(
            f"none of the {len(matched)} mask(s) under {masks_root} that match an image can be read, e.g. "
            f"{found.unreadable[0][1]}; check the masks folder"
        )
    if not found.pairs:
        example = files[0].relative_to(images_root).with_suffix(".png") if files else Path("NAME.png")
        raise InputError(
            f"no mask under {masks_root} matches an image under {images_root}: a mask must have its image's "
            f"relative path and name with an image suffix, e.g. {masks_root / example}"
        )
    return found
