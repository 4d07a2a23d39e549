"""Image-to-patch injection: cut the image into a g x g grid of tiles stacked along channels.

Two channel orders exist (ARCHITECTURE.md §5): the current one, c*g^2 + row*g + col, and the
legacy one used before 2024-11-05, (col*g + row)*3 + c. Both are written with rank-5 tensors and a
batch dimension that is never read into Python, so they export with a dynamic batch.
"""

from __future__ import annotations

import torch

PATCH_ORDERS = ("current", "legacy")


def image_to_patches(x: torch.Tensor, grid_h: int, grid_w: int, order: str = "current") -> torch.Tensor:
    """(B, 3, H, W) -> (B, 3*gh*gw, H/gh, W/gw) in the given tile order."""
    c, height, width = x.shape[1:]
    h, w = height // grid_h, width // grid_w
    tiles = x.reshape(-1, grid_h, h, grid_w, w)  # (B*3, gh, h, gw, w)
    if order == "current":
        tiles = tiles.permute(0, 1, 3, 2, 4)  # (B*3, gh, gw, h, w): c outer, then row, then col
        return tiles.reshape(-1, c * grid_h * grid_w, h, w)
    tiles = tiles.permute(0, 3, 1, 2, 4)  # (B*3, gw, gh, h, w)
    tiles = tiles.reshape(-1, c, grid_w * grid_h, h, w).transpose(1, 2)  # (B, gw*gh, 3, h, w)
    return tiles.reshape(-1, c * grid_h * grid_w, h, w)
