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
    with pytest.raises(InputError, match=r"image is a file, not a folder: .*file.png"):  # not "not found"
        find_images(tmp_path / "file.png")


def test_synthetic_images_are_deterministic_and_distinct() -> None:
    first, second = synthetic_images((32, 48)), synthetic_images((32, 48))
    assert [n for n, _ in first] == ["synthetic:shapes", "synthetic:disk", "synthetic:noise", "synthetic:flat"]
    arrays = [np.asarray(img) for _, img in first]
    assert all(a.shape == (32, 48, 3) and a.dtype == np.uint8 for a in arrays)
    assert all(np.array_equal(a, np.asarray(b)) for a, (_, b) in zip(arrays, second))
    assert len({a.tobytes() for a in arrays}) == 4


def _bad_files(folder):
    """A truncated JPEG, a text file named .png and a decompression bomb (issue 19, items 1 and 23)."""
    import io

    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    Image.new("RGB", (90, 80), (1, 2, 3)).save(buffer, format="JPEG")
    (folder / "cut.jpg").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    (folder / "text.png").write_text("not a png")
    Image.new("1", (200, 200)).save(folder / "bomb.png")
    return folder


def test_one_image_check_finds_truncated_fake_and_bomb_files(tmp_path, monkeypatch):
    from PIL import Image

    from birefnet_edge.images import describe_skipped, find_images, readable_images

    folder = _bad_files(tmp_path / "bad")
    Image.new("RGB", (30, 20)).save(folder / "ok.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000)  # 40,000 px: a bomb at this limit
    good, bad = readable_images(find_images(folder))
    assert [p.name for p in good] == ["ok.png"]
    assert sorted(p.name for p, _ in bad) == ["bomb.png", "cut.jpg", "text.png"]
    assert describe_skipped(bad).startswith("skipped 3 unreadable image(s): ")


def test_parity_inputs_skip_unreadable_files_with_a_note(tmp_path):
    from PIL import Image

    from birefnet_edge.parity import load_inputs

    folder = _bad_files(tmp_path / "photos")
    Image.new("RGB", (30, 20), (200, 10, 10)).save(folder / "ok.png")
    inputs = load_inputs(folder, synthetic=0)
    assert inputs.names == ("bomb", "ok") and "skipped 2 unreadable image(s)" in inputs.note  # 200 px: no bomb here


def test_calibration_skips_unreadable_files_before_the_model_loads(tmp_path):
    from PIL import Image

    from birefnet_edge.export.int8.calibration import load_calibration

    folder = _bad_files(tmp_path / "calib")
    (folder / "bomb.png").unlink()  # a bomb only at a lowered limit (see above); here a plain image
    for i in range(6):
        Image.new("RGB", (30, 20), (i * 40, 10, 10)).save(folder / f"ok{i}.png")
    chosen = load_calibration(folder, count=6, held_out=2)
    names = sorted(i.name for i in chosen.calibration + chosen.held_out)
    assert names == [f"ok{i}.png" for i in range(6)]
    assert "skipped 2 unreadable image(s)" in chosen.warning and chosen.record()["skipped"]
