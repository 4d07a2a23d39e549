"""Image-to-patch injection: cut the image into a g x g grid of tiles stacked along channels.

The graph has one tile order, the current official one (ARCHITECTURE.md §5): channel
``c*g^2 + row*g + col``. Checkpoints trained before 2024-11-05 expect the legacy order
``(col*g + row)*3 + c``; since the stacked tiles only feed the first conv of each ``ipt_blk``, such a
checkpoint is converted exactly by permuting that conv's input-channel axis (:func:`legacy_to_current`).
"""

from __future__ import annotations

import math
import re

import torch

PATCH_ORDERS = ("current", "legacy")
# The first conv of every injection branch: the only weights that see the stacked tiles.
_PATCH_CONV = re.compile(r"(^|\.)ipt_blk\d+\.conv1\.weight$")


def image_to_patches(x: torch.Tensor, grid_h: int, grid_w: int) -> torch.Tensor:
    """(B, 3, H, W) -> (B, 3*gh*gw, H/gh, W/gw), channel ``c*gh*gw + row*gw + col``.

    Written with rank-5 tensors and a batch dimension that is never read into Python, so it exports
    with a dynamic batch.
    """
    c, height, width = x.shape[1:]
    h, w = height // grid_h, width // grid_w
    tiles = x.reshape(-1, grid_h, h, grid_w, w).permute(0, 1, 3, 2, 4)  # (B*3, gh, gw, h, w)
    return tiles.reshape(-1, c * grid_h * grid_w, h, w)


def legacy_channel_of(grid: int, channels: int = 3) -> torch.Tensor:
    """For each current-order channel ``k``, the legacy-order channel holding the same tile and colour."""
    c, row, col = torch.meshgrid(torch.arange(channels), torch.arange(grid), torch.arange(grid), indexing="ij")
    return ((col * grid + row) * channels + c).reshape(-1)  # laid out in current order: c, then row, then col


def patch_conv_keys(state: dict[str, torch.Tensor]) -> list[str]:
    """The state-dict keys whose input channels are stacked image tiles (``*.ipt_blkN.conv1.weight``)."""
    return [k for k in state if _PATCH_CONV.search(k)]


def legacy_to_current(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Return ``state`` with every patch conv's input axis reordered from the legacy to the current order.

    Exact (a pure gather): the current graph with the returned weights computes what the legacy graph
    computes with the original ones. Other entries are shared, not copied.

    Raises:
        ValueError: A patch conv whose input width is not ``3 * g * g``.
    """
    out = dict(state)
    for key in patch_conv_keys(state):
        cin = state[key].shape[1]
        grid = math.isqrt(cin // 3)
        if 3 * grid * grid != cin:
            raise ValueError(f"{key} has {cin} input channels, not 3*g*g for a g x g tile grid")
        out[key] = state[key].index_select(1, legacy_channel_of(grid))
    return out
