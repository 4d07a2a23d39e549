"""PVT-v2 backbone (b0, b1, b2, b5) with the official BiRefNet key layout.

Four stages, each an overlapping patch embedding (Conv2d + LayerNorm eps 1e-5), pre-norm transformer
blocks (LayerNorm eps 1e-6) and a closing LayerNorm (eps 1e-6). Attention uses separate ``q`` and ``kv``
projections; in stages with ``sr_ratio > 1`` keys and values come from tokens reduced by a
kernel = stride = sr convolution plus LayerNorm (eps 1e-5). The MLP has a depthwise 3x3 conv on the token
grid between fc1 and GELU. There is no positional embedding, class token or head. Layout and order of the
state_dict follow ``manifest_BiRefNet_pvt_v2_b*.json`` (under ``bb.`` in the full model).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from birefnet_edge.errors import InputError
from birefnet_edge.model._backbones import register_backbone

PVT_V2_CONFIGS: dict[str, dict] = {
    "pvt_v2_b0": {"embed_dims": (32, 64, 160, 256), "depths": (2, 2, 2, 2), "mlp_ratios": (8, 8, 4, 4)},
    "pvt_v2_b1": {"embed_dims": (64, 128, 320, 512), "depths": (2, 2, 2, 2), "mlp_ratios": (8, 8, 4, 4)},
    "pvt_v2_b2": {"embed_dims": (64, 128, 320, 512), "depths": (3, 4, 6, 3), "mlp_ratios": (8, 8, 4, 4)},
    "pvt_v2_b5": {"embed_dims": (64, 128, 320, 512), "depths": (3, 6, 40, 3), "mlp_ratios": (4, 4, 4, 4)},
}
_SR_RATIOS = (8, 4, 2, 1)
for _config in PVT_V2_CONFIGS.values():
    _config.update(num_heads=(1, 2, 5, 8), sr_ratios=_SR_RATIOS)

_PATCH_NORM_EPS = 1e-5
_SR_NORM_EPS = 1e-5
_BLOCK_NORM_EPS = 1e-6


def _tokens_to_map(x: Tensor, height: int, width: int) -> Tensor:
    """(B, H·W, C) tokens -> (B, C, H, W) map."""
    return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], height, width)


class OverlapPatchEmbed(nn.Module):
    """Strided conv (7/4/3 in stage 1, 3/2/1 later) then LayerNorm over the flattened tokens."""

    def __init__(self, in_chans: int, embed_dim: int, patch_size: int, stride: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, patch_size, stride=stride, padding=patch_size // 2)
        self.norm = nn.LayerNorm(embed_dim, eps=_PATCH_NORM_EPS)

    def forward(self, x: Tensor) -> tuple[Tensor, int, int]:
        x = self.proj(x)
        height, width = x.shape[2], x.shape[3]
        return self.norm(x.flatten(2).transpose(1, 2)), height, width


class Attention(nn.Module):
    """Multi-head attention whose keys/values come from a spatially reduced token grid when sr > 1."""

    def __init__(self, dim: int, num_heads: int, sr_ratio: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)
        self.sr_ratio = sr_ratio
        if sr_ratio > 1:
            self.sr = nn.Conv2d(dim, dim, sr_ratio, stride=sr_ratio)
            self.norm = nn.LayerNorm(dim, eps=_SR_NORM_EPS)

    def forward(self, x: Tensor, height: int, width: int) -> Tensor:
        batch, tokens, dim = x.shape
        q = self.q(x).reshape(batch, tokens, self.num_heads, self.head_dim).transpose(1, 2)
        if self.sr_ratio > 1:
            reduced = self.sr(_tokens_to_map(x, height, width)).flatten(2).transpose(1, 2)
            x = self.norm(reduced)
        # [k | v], each head-major: (B, N', 2, heads, head_dim) -> (2, B, heads, N', head_dim), rank 5.
        kv = self.kv(x).reshape(batch, -1, 2, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        # The ONNX exporter rejects SDPA on non-contiguous views, hence the explicit copies.
        out = F.scaled_dot_product_attention(q.contiguous(), kv[0].contiguous(), kv[1].contiguous())
        return self.proj(out.transpose(1, 2).reshape(batch, tokens, dim))


class DWConv(nn.Module):
    """Depthwise 3x3 conv applied to the token grid."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)

    def forward(self, x: Tensor, height: int, width: int) -> Tensor:
        return self.dwconv(_tokens_to_map(x, height, width)).flatten(2).transpose(1, 2)


class Mlp(nn.Module):
    """fc1 -> depthwise conv -> exact GELU -> fc2."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.dwconv = DWConv(hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor, height: int, width: int) -> Tensor:
        return self.fc2(self.act(self.dwconv(self.fc1(x), height, width)))


class Block(nn.Module):
    """Pre-norm transformer block without layer scale (drop path is the identity at inference)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: int, sr_ratio: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=_BLOCK_NORM_EPS)
        self.attn = Attention(dim, num_heads, sr_ratio)
        self.norm2 = nn.LayerNorm(dim, eps=_BLOCK_NORM_EPS)
        self.mlp = Mlp(dim, dim * mlp_ratio)

    def forward(self, x: Tensor, height: int, width: int) -> Tensor:
        x = x + self.attn(self.norm1(x), height, width)
        return x + self.mlp(self.norm2(x), height, width)


def _stage_sizes(height: int, width: int) -> list[tuple[int, int]]:
    """Token-grid sizes after each patch embedding: ceil(D/4), then halved (rounding up) per stage."""
    sizes = [((height - 1) // 4 + 1, (width - 1) // 4 + 1)]
    for _ in range(3):
        h, w = sizes[-1]
        sizes.append(((h - 1) // 2 + 1, (w - 1) // 2 + 1))
    return sizes


def smallest_side(sr_ratios: tuple[int, ...]) -> int:
    """Smallest input side (px) whose token grids fit every spatial-reduction kernel."""
    side = 1
    while any(sr > 1 and h < sr for (h, _), sr in zip(_stage_sizes(side, side), sr_ratios, strict=True)):
        side += 1
    return side


class PyramidVisionTransformerV2(nn.Module):
    """PVT-v2 feature extractor returning the four stage maps (strides 4, 8, 16, 32) as NCHW tensors.

    Args:
        embed_dims: Channels of the four stages.
        depths: Blocks per stage.
        num_heads: Attention heads per stage.
        mlp_ratios: MLP hidden width / embed dim per stage.
        sr_ratios: Spatial-reduction factor of keys/values per stage (1 = none).
    """

    def __init__(
        self,
        embed_dims: tuple[int, ...],
        depths: tuple[int, ...],
        num_heads: tuple[int, ...],
        mlp_ratios: tuple[int, ...],
        sr_ratios: tuple[int, ...],
    ) -> None:
        super().__init__()
        self.channels: tuple[int, int, int, int] = tuple(embed_dims)  # type: ignore[assignment]
        self.sr_ratios = tuple(sr_ratios)
        # Registration order = state_dict order of the official module: all patch embeddings, then
        # block{s} followed by norm{s} per stage.
        for s in range(4):
            patch, stride = (7, 4) if s == 0 else (3, 2)
            in_chans = 3 if s == 0 else embed_dims[s - 1]
            setattr(self, f"patch_embed{s + 1}", OverlapPatchEmbed(in_chans, embed_dims[s], patch, stride))
        for s in range(4):
            blocks = [Block(embed_dims[s], num_heads[s], mlp_ratios[s], sr_ratios[s]) for _ in range(depths[s])]
            setattr(self, f"block{s + 1}", nn.ModuleList(blocks))
            setattr(self, f"norm{s + 1}", nn.LayerNorm(embed_dims[s], eps=_BLOCK_NORM_EPS))

    def min_side(self) -> int:
        """Smallest input side (px) whose token grids fit every spatial-reduction kernel (29 for sr 8, 4, 2, 1)."""
        return smallest_side(self.sr_ratios)

    def check_size(self, height: int, width: int) -> None:
        """Raise InputError when a stage's token grid is smaller than its spatial-reduction kernel.

        Raises:
            InputError: The input is too small for this backbone.
        """
        for stage, ((h, w), sr) in enumerate(zip(_stage_sizes(height, width), self.sr_ratios, strict=True), 1):
            if sr > 1 and min(h, w) < sr:
                raise InputError(
                    f"input of {height}x{width} px is too small for the PVT-v2 backbone: stage {stage} has a "
                    f"{h}x{w} token grid but its spatial-reduction conv needs at least {sr}x{sr}. Use inputs of "
                    f"at least {self.min_side()} px per side (BiRefNet with PVT-v2, which also runs a half-size "
                    "pass, needs multiples of 32 and at least 64)."
                )

    def forward(self, x: Tensor) -> list[Tensor]:
        if not torch.jit.is_tracing():  # traced sizes are tensors; the check is for eager callers
            self.check_size(x.shape[2], x.shape[3])
        features = []
        for s in range(1, 5):
            x, height, width = getattr(self, f"patch_embed{s}")(x)
            for block in getattr(self, f"block{s}"):
                x = block(x, height, width)
            x = getattr(self, f"norm{s}")(x)
            x = _tokens_to_map(x, height, width).contiguous()
            features.append(x)
        return features


@register_backbone(*PVT_V2_CONFIGS, min_side=smallest_side(_SR_RATIOS))
def pvt_v2(name: str) -> PyramidVisionTransformerV2:
    """Build a named PVT-v2 backbone (see :data:`PVT_V2_CONFIGS`)."""
    return PyramidVisionTransformerV2(**PVT_V2_CONFIGS[name])
