"""The deployment contract: image in any mode/size -> model input; logits -> mask and cutout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from birefnet_edge.errors import InputError
from birefnet_edge.model import Contract, cutout, load_image, postprocess, preprocess
from birefnet_edge.model.contract import sigmoid

CONTRACT = Contract(size=(64, 96))


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L"])
def test_preprocess_accepts_pil_modes(mode: str) -> None:
    img = Image.new(mode, (37, 53), color=128 if mode == "L" else (128,) * len(mode))
    batch = preprocess(img, CONTRACT)
    assert batch.shape == (1, 3, 64, 96) and batch.dtype == np.float32 and batch.flags["C_CONTIGUOUS"]
    expected = (128 / 255 - np.array(CONTRACT.mean)) / np.array(CONTRACT.std)
    np.testing.assert_allclose(batch[0, :, 10, 10], expected, atol=1e-5)


@pytest.mark.parametrize("shape", [(20, 30), (20, 30, 3), (20, 30, 4)])
def test_preprocess_accepts_arrays_and_batches(shape: tuple[int, ...]) -> None:
    arr = np.full(shape, 255, dtype=np.uint8)
    batch = preprocess([arr, arr.astype(np.float32) / 255.0], CONTRACT)
    assert batch.shape == (2, 3, 64, 96)
    np.testing.assert_allclose(batch[0], batch[1], atol=1e-5)


def test_preprocess_rejects_odd_arrays() -> None:
    with pytest.raises(InputError, match=r"HxW, HxWx3 or HxWx4; got \(2, 3, 4, 5\)"):
        preprocess(np.zeros((2, 3, 4, 5)), CONTRACT)


def test_postprocess_resizes_back_to_original_size() -> None:
    logits = np.full((1, 64, 96), -20.0, dtype=np.float32)
    logits[:, :, 48:] = 20.0
    mask = postprocess(logits, (30, 200))
    assert mask.shape == (30, 200) and mask.dtype == np.uint8
    assert mask[:, :90].max() == 0 and mask[:, 110:].min() == 255


def test_sigmoid_is_stable() -> None:
    out = sigmoid(np.array([-1000.0, 0.0, 1000.0]))
    np.testing.assert_allclose(out, [0.0, 0.5, 1.0])


def test_cutout_uses_mask_as_alpha() -> None:
    img = Image.new("RGB", (4, 3), (10, 20, 30))
    mask = np.arange(12, dtype=np.uint8).reshape(3, 4)
    rgba = cutout(img, mask)
    assert rgba.mode == "RGBA" and np.array_equal(np.asarray(rgba)[..., 3], mask)
    with pytest.raises(InputError, match="does not match the image size"):
        cutout(img, mask[:2])


def test_load_image_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="image not found"):
        load_image(tmp_path / "missing.png")
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image at all")
    with pytest.raises(InputError, match="cannot read image"):
        load_image(bad)
    good = tmp_path / "ok.png"
    Image.new("RGB", (5, 5)).save(good)
    truncated = tmp_path / "cut.png"
    truncated.write_bytes(good.read_bytes()[:40])
    with pytest.raises(InputError, match="cannot read image"):
        load_image(truncated)


def test_a_large_image_loads_without_pillows_raw_warning_and_a_bomb_is_one_line(tmp_path: Path, monkeypatch) -> None:
    """Issue 19: Pillow's DecompressionBombWarning is printed raw (several lines) for images over 89 MP."""
    import warnings

    path = tmp_path / "big.png"
    Image.new("RGB", (40, 30)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 1200 px: over the warning limit, under twice it
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_image(path).size == (40, 30)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)  # over twice the limit: Pillow refuses it
    with pytest.raises(InputError, match=r"refusing .*big.png: .*downscale it first"):
        load_image(path)


def test_contract_round_trips_through_dict() -> None:
    data = CONTRACT.to_dict()
    assert data["output"].startswith("logits") and data["layout"] == "NCHW"
    assert Contract.from_dict(data) == CONTRACT
