"""A synthetic labelled scene set: shapes over textured backgrounds, with exact masks.

Used where a labelled set with a known answer is needed without downloading one: the learning proof
of ``distill`` (tests), ``eval`` tests and the distillation benchmark. Each scene is a striped and
noisy low-saturation background with one or two saturated shapes (ellipses, rectangles, triangles)
on it; the mask is exactly the union of the shapes, drawn without anti-aliasing. Written in DIS5K's
layout: ``im/NAME.png`` and ``gt/NAME.png``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from birefnet_edge._io import atomic_write_bytes
from birefnet_edge.labels import DIS_IMAGES, DIS_MASKS


def make_scene(size: int, rng: np.random.Generator) -> tuple[Image.Image, Image.Image]:
    """One (RGB image, L mask) pair of side ``size``; the mask is 255 on the shapes and 0 elsewhere."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    angle, freq = rng.uniform(0, np.pi), rng.uniform(4, 12)
    stripes = 0.5 + 0.5 * np.sin(2 * np.pi * freq * (np.cos(angle) * xx + np.sin(angle) * yy))
    grey = rng.uniform(0.3, 0.7) + 0.25 * (stripes - 0.5) + rng.normal(0, 0.06, (size, size))
    tint = rng.uniform(-0.05, 0.05, 3)
    background = np.clip(grey[..., None] + tint, 0, 1)
    mask = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(mask)
    for _ in range(int(rng.integers(1, 3))):
        _draw_shape(draw, size, rng)
    colour = _saturated(rng)
    shade = 1.0 + 0.15 * (yy[..., None] - 0.5) + rng.normal(0, 0.03, (size, size, 1))
    foreground = np.clip(colour * shade, 0, 1)
    inside = (np.asarray(mask) > 127)[..., None]
    pixels = np.where(inside, foreground, background)
    return Image.fromarray((pixels * 255).round().astype(np.uint8), "RGB"), mask


def _saturated(rng: np.random.Generator) -> np.ndarray:
    """A saturated colour: one channel high, one low, one anywhere."""
    order = rng.permutation(3)
    colour = np.empty(3)
    colour[order[0]], colour[order[1]], colour[order[2]] = rng.uniform(0.8, 1), rng.uniform(0, 0.2), rng.uniform(0, 1)
    return colour


def _draw_shape(draw: ImageDraw.ImageDraw, size: int, rng: np.random.Generator) -> None:
    """An ellipse, rectangle or triangle of 40-70% of the side, anywhere inside the image."""
    w, h = (rng.uniform(0.4, 0.7, 2) * size).astype(int)
    x0, y0 = int(rng.integers(0, size - w)), int(rng.integers(0, size - h))
    kind = int(rng.integers(0, 3))
    if kind == 0:
        draw.ellipse((x0, y0, x0 + w, y0 + h), fill=255)
    elif kind == 1:
        draw.rectangle((x0, y0, x0 + w, y0 + h), fill=255)
    else:
        draw.polygon([(x0, y0 + h), (x0 + w, y0 + h), (x0 + int(rng.integers(0, w + 1)), y0)], fill=255)


def write_scene_set(folder: str | Path, count: int, size: int = 64, seed: int = 0) -> Path:
    """Write ``count`` scenes as ``folder/im/scene_NNNN.png`` and ``folder/gt/scene_NNNN.png``.

    Args:
        folder: Where the set goes (created).
        count: Number of scenes.
        size: Side of each image in px.
        seed: Seed of the whole set (the same seed writes the same files).

    Returns:
        ``folder``, usable as ``--images`` (its ``im/`` and ``gt/`` are found) by ``distill`` and ``eval``.
    """
    import io

    root = Path(folder)
    rng = np.random.default_rng(seed)
    for i in range(count):
        image, mask = make_scene(size, rng)
        for sub, picture in ((DIS_IMAGES, image), (DIS_MASKS, mask)):
            buffer = io.BytesIO()
            picture.save(buffer, format="PNG")
            atomic_write_bytes(root / sub / f"scene_{i:04d}.png", buffer.getvalue())
    return root
