"""The Swin shift mask and relative-position bias built in the graph equal the stored (numpy-built) ones."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from birefnet_edge.model.layers.anchors import input_zero, wait_for
from birefnet_edge.model.swin import (
    SwinTransformerBlock,
    WindowAttention,
    build_shift_mask,
    shift_mask,
    window_partition,
    window_reverse,
)

# (padded h, padded w, window, shift): one window, non-square, the 7/3 and 12/6 windows of the real variants,
# the tiny test window, and BiRefNet_lite's stage-1 grid at 1024 px (259 = 37 windows of 7).
GEOMETRIES = [(4, 4, 4, 2), (8, 12, 4, 2), (14, 21, 7, 3), (24, 36, 12, 6), (259, 259, 7, 3), (7, 7, 7, 3)]


@pytest.mark.parametrize(("hp", "wp", "window", "shift"), GEOMETRIES)
def test_built_mask_equals_the_stored_mask(hp: int, wp: int, window: int, shift: int) -> None:
    stored = shift_mask(hp, wp, window, shift)
    built = build_shift_mask(hp, wp, window, shift, input_zero(torch.zeros(2, 5)), torch.float32)
    assert built.shape == stored.shape == ((hp // window) * (wp // window), window**2, window**2)
    assert built.dtype == torch.float32
    np.testing.assert_array_equal(built.numpy(), stored.numpy())
    assert set(np.unique(built.numpy())) <= {0.0, -100.0}


def test_built_mask_masks_something_only_in_the_last_window_row_and_column() -> None:
    """Sanity of the reference itself: interior windows are unmasked, boundary windows are not."""
    mask = build_shift_mask(21, 21, 7, 3, input_zero(torch.zeros(1)), torch.float32).view(3, 3, 49, 49)
    masked = (mask != 0).flatten(2).any(-1)
    assert masked.tolist() == [[False, False, True], [False, False, True], [True, True, True]]


@pytest.mark.parametrize("first", [0.0, -3.5, float("nan"), float("inf"), float("-inf")])
def test_input_zero_is_zero_whatever_the_input(first: float) -> None:
    for shape in ((1, 3, 8, 8), (3, 4, 4), (8, 5)):
        x = torch.randn(shape)
        x.view(-1)[0] = first
        zero = input_zero(x)
        assert zero.dtype == torch.int64 and zero.shape == (1,) and zero.item() == 0


def test_wait_for_returns_its_input_exactly_and_passes_its_gradient() -> None:
    x = torch.tensor([[1.5, -0.0, float("inf")], [float("nan"), -2.25, 3e-38]], requires_grad=True)
    after = torch.tensor([float("nan"), 1.0])
    y = wait_for(x, after)
    torch.testing.assert_close(y, x, rtol=0, atol=0, equal_nan=True)
    y.sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))


def test_position_bias_with_the_input_zero_equals_the_plain_gather() -> None:
    attn = WindowAttention(dim=32, window_size=7, num_heads=2)
    plain = attn.position_bias()
    assert plain.shape == (2, 49, 49)
    torch.testing.assert_close(attn.position_bias(input_zero(torch.zeros(3, 1))), plain, rtol=0, atol=0)
    # The table really is indexed by the relative position: token pairs with the same offset share a value.
    assert torch.equal(plain[:, 0, 1], plain[:, 1, 2])


def _block_with_stored_mask(block: SwinTransformerBlock, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """The block's forward written with the numpy mask and the un-anchored bias (the previous graph)."""
    ws, s = block.window_size, block.shift
    hp, wp = block.padded_grid(h, w)
    c = x.shape[-1]
    y = torch.nn.functional.pad(block.norm1(x).reshape(-1, h, w, c), (0, 0, 0, wp - w, 0, hp - h))
    y = torch.roll(y, shifts=(-s, -s), dims=(1, 2))
    windows = window_partition(y, ws)
    attn = block.attn
    n, heads = ws * ws, attn.num_heads
    q, k, v = attn.qkv(windows).reshape(-1, n, 3, heads, c // heads).permute(2, 0, 3, 1, 4).unbind(0)
    bias = attn.position_bias().unsqueeze(0) + shift_mask(hp, wp, ws, s).unsqueeze(1)
    bias = bias.unsqueeze(0).expand(x.shape[0], -1, -1, -1, -1).reshape(-1, heads, n, n)
    out = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=bias)
    y = window_reverse(attn.proj(out.transpose(1, 2).reshape(-1, n, c)), ws, hp, wp)
    y = torch.roll(y, shifts=(s, s), dims=(1, 2))[:, :h, :w, :]
    x = x + y.reshape(-1, h * w, c)
    return x + block.mlp(block.norm2(x))


def test_shifted_block_equals_the_stored_mask_computation() -> None:
    torch.manual_seed(0)
    block = SwinTransformerBlock(dim=32, num_heads=2, window_size=4, shifted=True).eval()
    h, w = 10, 7  # padded to 12 x 8: exercises padding, shift and a non-square grid
    x = torch.randn(3, h * w, 32)
    with torch.no_grad():
        torch.testing.assert_close(block(x, h, w), _block_with_stored_mask(block, x, h, w), rtol=0, atol=1e-6)
