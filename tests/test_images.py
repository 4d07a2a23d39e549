"""One place for image files and stock pictures: suffixes, find_images, sample photos, synthetic images."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from birefnet_edge.errors import InputError
from birefnet_edge.images import IMAGE_SUFFIXES, find_images, synthetic_images


def test_find_images_flat_or_recursive_skips_hidden_folders_and_other_files(tmp_path) -> None:
    (tmp_path / "sub" / ".cache").mkdir(parents=True)
    top = [tmp_path / "b.PNG", tmp_path / "a.jpg"]
    nested = [tmp_path / "sub" / "c.webp"]
    for path in [*top, *nested, tmp_path / "sub" / ".cache" / "hidden.png"]:
        Image.new("RGB", (4, 4)).save(path, format="PNG" if path.suffix.lower() != ".jpg" else "JPEG")
    (tmp_path / "notes.txt").write_text("not an image")
    assert find_images(tmp_path) == sorted(top)
    assert find_images(tmp_path, recursive=True) == sorted(top + nested)
    assert find_images(tmp_path / "sub" / ".cache") == [tmp_path / "sub" / ".cache" / "hidden.png"]
    assert {p.suffix.lower() for p in top + nested} <= set(IMAGE_SUFFIXES)


def test_find_images_names_the_option_of_a_missing_folder(tmp_path) -> None:
    with pytest.raises(InputError, match=r"--calibration folder not found: .*nope; pass a folder of images"):
        find_images(tmp_path / "nope", recursive=True, option="--calibration")
    (tmp_path / "file.png").write_bytes(b"")
    with pytest.raises(InputError, match="image folder not found"):
        find_images(tmp_path / "file.png")


def test_synthetic_images_are_deterministic_and_distinct() -> None:
    first, second = synthetic_images((32, 48)), synthetic_images((32, 48))
    assert [n for n, _ in first] == ["synthetic:shapes", "synthetic:disk", "synthetic:noise", "synthetic:flat"]
    arrays = [np.asarray(img) for _, img in first]
    assert all(a.shape == (32, 48, 3) and a.dtype == np.uint8 for a in arrays)
    assert all(np.array_equal(a, np.asarray(b)) for a, (_, b) in zip(arrays, second))
    assert len({a.tobytes() for a in arrays}) == 4
