"""Pairing images with masks: every matched mask is decoded up front, an unreadable one is listed once."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from birefnet_edge.errors import InputError
from birefnet_edge.labels import pair_masks


def _folders(tmp_path: Path, count: int) -> tuple[list[Path], Path, Path]:
    images, masks = tmp_path / "im", tmp_path / "gt"
    images.mkdir()
    masks.mkdir()
    files = []
    for i in range(count):
        Image.new("RGB", (8, 8)).save(images / f"a{i}.jpg")
        Image.new("L", (8, 8), 255).save(masks / f"a{i}.png")
        files.append(images / f"a{i}.jpg")
    return files, images, masks


def test_an_unreadable_mask_leaves_its_image_unpaired_with_the_reason(tmp_path: Path) -> None:
    files, images, masks = _folders(tmp_path, 3)
    (masks / "a1.png").write_bytes(b"<html>not found</html>")
    found = pair_masks(files, images, masks)
    assert found.pairs == [(files[0], masks / "a0.png"), (files[2], masks / "a2.png")]
    assert found.unmatched == [] and [p for p, _ in found.unreadable] == [masks / "a1.png"]
    assert "cannot identify image file" in found.unreadable[0][1]


def test_masks_that_all_fail_to_decode_are_one_error(tmp_path: Path) -> None:
    files, images, masks = _folders(tmp_path, 2)
    for mask in masks.iterdir():
        mask.write_bytes(mask.read_bytes()[:20])
    with pytest.raises(InputError, match=r"none of the 2 mask\(s\) under .* that match an image can be read"):
        pair_masks(files, images, masks)


def test_the_images_folder_as_masks_is_refused(tmp_path: Path) -> None:
    # Found by hand (issue 19, round 2): `--masks` = `--images` scored (and trained) each photo against itself.
    files, images, _ = _folders(tmp_path, 2)
    with pytest.raises(InputError, match=r"--masks .*im is the images folder; pass the folder that holds the masks"):
        pair_masks(files, images, images)
