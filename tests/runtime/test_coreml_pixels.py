"""The CoreML image-input path, as far as Linux can check it: the pixels the runner feeds, and their error.

An image-input mlpackage takes 8-bit RGB pixels and applies the contract's normalisation itself;
the runner turns the normalised batch every runner receives back into pixels (``to_pixels``).
Executing the package needs macOS; everything here runs anywhere.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from birefnet_edge.model import Contract, deterministic_input, preprocess
from birefnet_edge.parity import load_inputs
from birefnet_edge.profile import load_profile
from birefnet_edge.runtime.coreml import to_pixels

CONTRACT = Contract(size=(64, 64)).to_dict()
MEAN, STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])  # ImageNet's, as published


def _normalise(pixels: np.ndarray) -> np.ndarray:
    """(B, H, W, 3) uint8 -> (B, 3, H, W) normalised, written out independently of the package (float64)."""
    return ((pixels.astype(np.float64) / 255.0 - MEAN) / STD).transpose(0, 3, 1, 2)


def test_pixels_of_a_preprocessed_image_are_the_image_itself():
    """preprocess (resize of the 8-bit image, then normalise) followed by to_pixels is lossless."""
    rng = np.random.default_rng(3)
    images = [Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)) for _ in range(2)]
    x = preprocess(images, Contract(size=(64, 64)))
    np.testing.assert_array_equal(to_pixels(x, CONTRACT), np.stack([np.asarray(i) for i in images]))


def test_the_parity_gate_inputs_survive_the_round_trip_exactly():
    """What the gate feeds (photos and synthetic images at the model size) reaches an image model unchanged."""
    inputs = load_inputs(None, synthetic=4, limit=2)
    x = inputs.batch(Contract(size=(64, 64)))
    pixels = to_pixels(x, CONTRACT)
    np.testing.assert_array_equal(pixels, inputs.resized((64, 64)))
    assert np.abs(_normalise(pixels) - x).max() < 1e-5  # what the model rebuilds from them: float32 rounding only


def test_channel_order_is_rgb_and_layout_is_nhwc():
    image = np.zeros((1, 2, 3, 3), np.uint8)
    image[0, 0, 0] = (255, 0, 0)  # red
    image[0, 0, 1] = (0, 255, 0)  # green
    image[0, 1, 2] = (0, 0, 255)  # blue
    x = _normalise(image).astype(np.float32)
    assert x.shape == (1, 3, 2, 3)
    assert x[0, 0, 0, 0] == pytest.approx((1 - 0.485) / 0.229, rel=1e-6)  # red pixel, R channel
    np.testing.assert_array_equal(to_pixels(x, CONTRACT), image)


@pytest.mark.parametrize(("pixel", "expected"), [(100.4, 100), (100.6, 101), (-30.0, 0), (300.0, 255), (254.5, 254)])
def test_values_off_the_pixel_grid_are_rounded_and_clipped(pixel: float, expected: int):
    x = np.full((1, 3, 1, 1), 0.0, np.float32)
    for c in range(3):
        x[0, c] = (pixel / 255.0 - MEAN[c]) / STD[c]
    assert to_pixels(x, CONTRACT).tolist() == [[[[expected] * 3]]]  # 254.5: half to even, as np.rint


def test_rounding_error_of_float_inputs_is_half_a_pixel_level():
    """Arbitrary float inputs lose up to 0.5 / (255 * std) per value (about 0.0088 in normalised units)."""
    x = deterministic_input(2, 64, 64)  # uniform pixels in [0, 255), normalised: not on the grid
    error = np.abs(_normalise(to_pixels(x, CONTRACT)) - x)
    bound = 0.5 / (255.0 * STD)  # 0.00856, 0.00875, 0.00871
    for c in range(3):
        assert error[:, c].max() <= bound[c] + 1e-6
        assert error[:, c].max() > 0.9 * bound[c]  # the bound is reached, not just respected


def test_only_pixel_grid_inputs_can_be_judged_at_the_fp32_tolerance(tiny_model):
    """On float inputs the rounding alone moves the tiny model's logits past the coreml-fp32 tolerance
    (9e-3 against 1e-3 when measured); on 8-bit inputs it moves them by float32 rounding only. Hence
    the exporter checks image models on a pixel-grid input and the gate feeds 8-bit images: the
    tolerance then measures the conversion, and needs no widening for image inputs.
    """
    tolerance = load_profile("coreml-fp32").tolerance.max_abs_logit
    x = deterministic_input(3, 64, 64)
    on_grid = preprocess([Image.fromarray(p) for p in to_pixels(x, CONTRACT)], Contract(size=(64, 64)))
    with torch.no_grad():
        logits = [tiny_model(torch.from_numpy(v)).numpy() for v in (x, on_grid)]
        again = tiny_model(torch.from_numpy(_normalise(to_pixels(on_grid, CONTRACT)).astype(np.float32))).numpy()
    assert np.abs(logits[0] - logits[1]).max() > tolerance
    assert np.abs(again - logits[1]).max() < tolerance / 100


def test_the_exporters_check_input_is_on_the_pixel_grid():
    from birefnet_edge.export.coreml import pixel_check_input

    profile = load_profile("coreml-fp32").with_overrides(input_size=(64, 64), batch={"min": 1, "opt": 2, "max": 4})
    x = pixel_check_input(profile, CONTRACT)
    assert isinstance(x, torch.Tensor) and tuple(x.shape) == (3, 3, 64, 64) and x.dtype == torch.float32
    snapped = _normalise(to_pixels(x.numpy(), CONTRACT))
    assert np.abs(snapped - x.numpy()).max() < 1e-5  # an image model sees exactly what PyTorch sees
    assert np.abs(x.numpy() - deterministic_input(3, 64, 64)).max() <= 0.5 / (255.0 * STD.min()) + 1e-6
