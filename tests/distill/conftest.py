"""Distillation fixtures: a folder of synthetic photos (nested, mixed modes and sizes, one broken file)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from distill_helpers import tiny_distill_config
from PIL import Image, ImageDraw


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: on the shared 2-core machine two spinning OpenMP threads run ~50x slower under load."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def make_images(folder: Path, count: int = 12, seed: int = 0) -> Path:
    """Synthetic photos: an ellipse on a flat background, sizes 48-130 px, modes RGB/L/RGBA/P, in sub-folders."""
    rng = np.random.default_rng(seed)
    for i in range(count):
        w, h = (int(v) for v in rng.integers(48, 130, 2))
        img = Image.new("RGB", (w, h), tuple(int(c) for c in rng.integers(0, 255, 3)))
        x0, y0 = int(rng.integers(0, w // 2)), int(rng.integers(0, h // 2))
        ImageDraw.Draw(img).ellipse(
            (x0, y0, x0 + w // 2, y0 + h // 2), fill=tuple(int(c) for c in rng.integers(0, 255, 3))
        )
        mode = ("RGB", "L", "RGBA", "P")[i % 4]
        path = folder / f"set{i % 2}" / f"img{i}.{'jpg' if mode in ('RGB', 'L') else 'png'}"
        path.parent.mkdir(parents=True, exist_ok=True)
        img.convert(mode).save(path)
    (folder / "set0" / "broken.png").write_bytes(b"\x89PNG truncated")
    hidden = folder / ".thumbs"
    hidden.mkdir()
    Image.new("RGB", (8, 8)).save(hidden / "skip.png")
    return folder


@pytest.fixture(scope="session")
def images_dir(tmp_path_factory) -> Path:
    return make_images(tmp_path_factory.mktemp("photos"))


@pytest.fixture(scope="session")
def tiny_config():
    """Factory: ``tiny_config(images, out, **changes)`` -> DistillConfig."""
    return tiny_distill_config
