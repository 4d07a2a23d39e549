"""Image files as users have them: 16-bit, float, palette, CMYK, EXIF-rotated, decompression bombs."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from birefnet_edge.errors import InputError
from birefnet_edge.model import load_image
from birefnet_edge.model.contract import to_rgb


def test_16_bit_grey_png_is_scaled_not_clipped(tmp_path: Path) -> None:
    ramp = np.linspace(0, 65535, 64 * 4).astype(np.uint16).reshape(4, 64)
    Image.fromarray(ramp).save(tmp_path / "grey16.png")
    assert Image.open(tmp_path / "grey16.png").mode == "I;16"  # the mode Pillow's own convert clips to white
    rgb = np.asarray(load_image(tmp_path / "grey16.png"), dtype=np.int32)
    np.testing.assert_allclose(rgb[..., 0], ramp / 257.0, atol=1)
    assert rgb.mean() == pytest.approx(127.5, abs=1.5)  # mid grey on average, not almost all white


def test_16_bit_rgb_png_keeps_its_colours(tmp_path: Path, write_png) -> None:
    pixel = struct.pack(">HHH", 0xFFFF, 0x8000, 0x0000)  # orange in 16 bits per channel
    path = write_png(tmp_path / "rgb16.png", 8, 4, 16, 2, pixel * 8)
    np.testing.assert_array_equal(np.asarray(load_image(path))[0, 0], [255, 128, 0])


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda: Image.fromarray(np.full((4, 6), 32768, np.int32)), 128),  # mode I holding 16-bit samples
        (lambda: Image.fromarray(np.full((4, 6), 0.5, np.float32)), 128),  # F on 0..1
        (lambda: Image.fromarray(np.full((4, 6), 200.0, np.float32)), 200),  # F on 0..255
        (lambda: Image.new("LA", (6, 4), (90, 10)), 90),  # alpha dropped, grey kept
        (lambda: Image.new("RGB", (6, 4), (51, 51, 51)).convert("P"), 51),  # a web-palette colour
        (lambda: Image.new("CMYK", (6, 4), (0, 0, 0, 0)), 255),  # no ink: white
        (lambda: Image.new("1", (6, 4), 1), 255),
    ],
)
def test_every_mode_becomes_8_bit_rgb(make, expected: int, tmp_path: Path) -> None:
    image = make()
    converted = to_rgb(image)
    assert converted.mode == "RGB" and converted.size == image.size
    assert np.asarray(converted)[0, 0].tolist() == [expected] * 3
    path = tmp_path / "image.tiff"
    image.save(path)  # and through a file, as predict reads it
    assert np.asarray(load_image(path))[0, 0].tolist() == [expected] * 3


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    stored = np.zeros((20, 40, 3), np.uint8)  # 40 wide, 20 tall as stored: left half red, right half blue
    stored[:, :20, 0] = 255
    stored[:, 20:, 2] = 255
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display": the camera was held upright
    Image.fromarray(stored).save(tmp_path / "portrait.jpg", exif=exif, quality=95)
    shown = load_image(tmp_path / "portrait.jpg")
    assert shown.size == (20, 40)  # portrait, as every viewer shows it
    top, bottom = np.asarray(shown)[5, 10], np.asarray(shown)[35, 10]
    assert top[0] > 200 > top[2] and bottom[2] > 200 > bottom[0]  # the left half is now on top


def test_decompression_bomb_is_an_input_error(tmp_path: Path, write_png) -> None:
    side = 20_000  # 400 megapixels: over twice Pillow's limit, in a 1-bit PNG of about 50 KB
    bomb = write_png(tmp_path / "bomb.png", side, side, 1, 0, bytes(side // 8))
    assert bomb.stat().st_size < 1_000_000
    with pytest.raises(InputError, match=r"refusing .*bomb.png: .*decompression bomb.*downscale it first"):
        load_image(bomb)


def test_mode_without_rgb_conversion_is_an_input_error() -> None:
    with pytest.raises(InputError, match="images in mode La cannot be converted to RGB.*save the image as RGB"):
        to_rgb(Image.new("La", (4, 4)))  # premultiplied grey + alpha: Pillow has no RGB conversion for it
