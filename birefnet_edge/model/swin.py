"""Swin Transformer v1 backbone as BiRefNet uses it (swin_v1_t/s/b/l).

It differs from the classifier versions in timm and Microsoft's repo in two ways that change the
numbers: padded tokens are not masked out of attention (they attend as keys/values carrying only the
qkv bias), and the cyclic shift is applied even when a stage's grid is smaller than the window.

Export notes: every tensor stays at rank <= 5 (CoreML refuses rank 6), the batch dimension is never
read into Python (views use -1), and the shifted-window mask and the relative-position bias are built
in the graph from the window geometry and the (2w-1)^2 table, tied to one value of the input by
:func:`~birefnet_edge.model.layers.anchors.input_zero` so that converters do not fold them into per-size
constants (see there).
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from birefnet_edge.model._backbones import register_backbone
from birefnet_edge.model.layers.anchors import input_zero

# A large finite negative instead of -inf: identical after softmax in fp32, and safe in fp16.
_MASK_VALUE = -100.0

SWIN_CONFIGS: dict[str, dict] = {
    "swin_v1_t": dict(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24), window_size=7),
    "swin_v1_s": dict(embed_dim=96, depths=(2, 2, 18, 2), num_heads=(3, 6, 12, 24), window_size=7),
    "swin_v1_b": dict(embed_dim=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32), window_size=12),
    "swin_v1_l": dict(embed_dim=192, depths=(2, 2, 18, 2), num_heads=(6, 12, 24, 48), window_size=12),
    # Distillation-student backbones (not official BiRefNet ones): Swin-T's layout with a third / half of its
    # width and two blocks per stage. Window attention keeps the cost linear in pixels, which PVT-v2's
    # spatial-reduction attention is not (at 1024 px pvt_v2_b0 takes about as long as swin_v1_t on CPU).
    "swin_v1_atto": dict(embed_dim=32, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8), window_size=7),
    "swin_v1_femto": dict(embed_dim=48, depths=(2, 2, 2, 2), num_heads=(2, 4, 8, 16), window_size=7),
    # Test-only: few channels, a 4-token window so 64 px inputs still exercise padding and shifting.
    "swin_test_tiny": dict(embed_dim=32, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8), window_size=4),
}


def relative_position_index(window: int) -> torch.Tensor:
    """Index into the (2w-1)^2 bias table for every (query, key) token pair of one window."""
    ys, xs = np.meshgrid(np.arange(window), np.arange(window), indexing="ij")
    coords = np.stack([ys.ravel(), xs.ravel()])  # (2, w*w), row-major inside the window
    rel = coords[:, :, None] - coords[:, None, :] + (window - 1)
    return torch.from_numpy((rel[0] * (2 * window - 1) + rel[1]).astype(np.int64))


@functools.lru_cache(maxsize=64)
def _shift_mask_np(hp: int, wp: int, window: int, shift: int) -> np.ndarray:
    labels = np.zeros((hp, wp), dtype=np.int64)
    bounds = ((0, hp - window), (hp - window, hp - shift), (hp - shift, hp))
    col_bounds = ((0, wp - window), (wp - window, wp - shift), (wp - shift, wp))
    for r, (r0, r1) in enumerate(bounds):
        for c, (c0, c1) in enumerate(col_bounds):
            labels[r0:r1, c0:c1] = 3 * r + c
    win = labels.reshape(hp // window, window, wp // window, window).transpose(0, 2, 1, 3).reshape(-1, window * window)
    return np.where(win[:, :, None] == win[:, None, :], 0.0, _MASK_VALUE).astype(np.float32)


def shift_mask(hp: int, wp: int, window: int, shift: int) -> torch.Tensor:
    """Additive attention mask (nW, w*w, w*w) for the shifted windows of a padded hp x wp grid.

    Built in numpy, outside any graph: the reference that :func:`build_shift_mask` is tested against.
    """
    return torch.from_numpy(_shift_mask_np(hp, wp, window, shift))


def _region_labels(n: int, window: int, shift: int, zero: torch.Tensor) -> torch.Tensor:
    """Per row (or column) of a padded side n: 0 before the last window, 1 in it before the shift, 2 after."""
    pos = torch.arange(n, device=zero.device) + zero
    # Float labels (small integers, exact): litert-torch 0.10 lowered the int64 form of
    # ``rows.view(n, 1) * 3 + cols`` as ``3 * rows + 3 * cols`` once rows and cols (the same subgraph) merged,
    # and the mask came out wrong in the last window.
    return (pos >= n - window).to(torch.float32) + (pos >= n - shift).to(torch.float32)


def build_shift_mask(hp: int, wp: int, window: int, shift: int, zero: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """:func:`shift_mask` computed by tensor ops from the grid geometry (equal values; -0.0 for 0.0).

    Args:
        hp: Padded grid height (a multiple of ``window``).
        wp: Padded grid width (a multiple of ``window``).
        window: Window side.
        shift: Cyclic shift (0 < shift < window).
        zero: :func:`input_zero` of the input, which keeps converters from storing the result.
        dtype: Float dtype of the mask.

    Returns:
        (nW, w*w, w*w): 0 where query and key tokens lie in the same region, -100 elsewhere.
    """
    labels = _region_labels(hp, window, shift, zero).view(hp, 1) * 3 + _region_labels(wp, window, shift, zero)
    labels = labels.view(hp // window, window, wp // window, window).permute(0, 2, 1, 3).reshape(-1, window**2)
    # A product, not torch.where: Core ML's converter broadcasts where's two scalars to the full mask shape
    # and stores both as constants.
    return (labels.unsqueeze(2) != labels.unsqueeze(1)).to(dtype) * _MASK_VALUE


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class WindowAttention(nn.Module):
    """Multi-head self-attention inside windows with a learned relative-position bias."""

    def __init__(self, dim: int, window_size: int, num_heads: int) -> None:
        super().__init__()
        self.window_size = window_size
        self.num_heads = num_heads
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window_size - 1) ** 2, num_heads))
        self.register_buffer("relative_position_index", relative_position_index(window_size))
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)

    def position_bias(self, zero: torch.Tensor | None = None) -> torch.Tensor:
        """(heads, N, N) bias gathered from the table; ``zero`` (:func:`input_zero`) keeps it out of exported files."""
        n = self.window_size**2
        index = self.relative_position_index.view(-1)
        bias = self.relative_position_bias_table[index if zero is None else index + zero]
        return bias.view(n, n, self.num_heads).permute(2, 0, 1)

    def forward(
        self, x: torch.Tensor, n_windows: int, mask: torch.Tensor | None, zero: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Attend within windows.

        Args:
            x: (B*nW, N, C) window tokens, batch-major.
            n_windows: nW, windows per image (the shift mask repeats every nW windows).
            mask: (nW, N, N) additive shift mask or None.
            zero: :func:`input_zero` of the backbone's input (default: of ``x``).
        """
        _, n, c = x.shape
        heads = self.num_heads
        qkv = self.qkv(x).reshape(-1, n, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
        # 4-D, contiguous q/k/v: the ONNX exporter handles neither 5-D nor strided SDPA inputs, and the
        # 4-D CPU kernel is ~3x faster than the 5-D fallback.
        q, k, v = (t.contiguous() for t in qkv.unbind(0))
        bias = self.position_bias(input_zero(x) if zero is None else zero).to(x.dtype)
        if mask is not None:
            bias = bias.unsqueeze(0) + mask.to(x.dtype).unsqueeze(1)  # (nW, heads, N, N)
            batch = x.shape[0] // n_windows
            bias = bias.unsqueeze(0).expand(batch, -1, -1, -1, -1).reshape(-1, heads, n, n)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)  # (B*nW, heads, N, hd)
        return self.proj(out.transpose(1, 2).reshape(-1, n, c))


def window_partition(x: torch.Tensor, window: int) -> torch.Tensor:
    """(B, Hp, Wp, C) -> (B*nW, w*w, C), windows batch-major then row-major; rank <= 5."""
    _, hp, wp, c = x.shape
    x = x.reshape(-1, window, wp // window, window, c).permute(0, 2, 1, 3, 4)
    return x.reshape(-1, window * window, c)


def window_reverse(windows: torch.Tensor, window: int, hp: int, wp: int) -> torch.Tensor:
    """Inverse of :func:`window_partition`: (B*nW, w*w, C) -> (B, Hp, Wp, C)."""
    c = windows.shape[-1]
    x = windows.reshape(-1, wp // window, window, window, c).permute(0, 2, 1, 3, 4)
    return x.reshape(-1, hp, wp, c)


class SwinTransformerBlock(nn.Module):
    def __init__(self, dim: int, num_heads: int, window_size: int, shifted: bool, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.window_size = window_size
        self.shift = window_size // 2 if shifted else 0
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window_size, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def padded_grid(self, h: int, w: int) -> tuple[int, int]:
        """The token grid padded up to whole windows."""
        ws = self.window_size
        return math.ceil(h / ws) * ws, math.ceil(w / ws) * ws

    def forward(
        self, x: torch.Tensor, h: int, w: int, mask: torch.Tensor | None = None, zero: torch.Tensor | None = None
    ) -> torch.Tensor:
        """One block on (B, h*w, C) tokens.

        ``mask``: the stage's shift mask (built here when None and shifted); ``zero``: :func:`input_zero` of
        the backbone's input (default: of ``x``).
        """
        zero = input_zero(x) if zero is None else zero
        ws, s = self.window_size, self.shift
        hp, wp = self.padded_grid(h, w)
        c = x.shape[-1]
        y = self.norm1(x).reshape(-1, h, w, c)
        if hp != h or wp != w:  # pad after the norm: padded tokens are exact zeros
            y = F.pad(y, (0, 0, 0, wp - w, 0, hp - h))
        if s:
            y = torch.roll(y, shifts=(-s, -s), dims=(1, 2))
        if s and mask is None:
            mask = build_shift_mask(hp, wp, ws, s, zero, x.dtype)
        n_windows = (hp // ws) * (wp // ws)
        y = window_reverse(self.attn(window_partition(y, ws), n_windows, mask if s else None, zero), ws, hp, wp)
        if s:
            y = torch.roll(y, shifts=(s, s), dims=(1, 2))
        if hp != h or wp != w:
            y = y[:, :h, :w, :]
        x = x + y.reshape(-1, h * w, c)
        return x + self.mlp(self.norm2(x))


class PatchMerging(nn.Module):
    """2x2 neighbourhood concat (phases ee, oe, eo, oo) -> LayerNorm -> Linear 4C -> 2C."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        c = x.shape[-1]
        x = x.reshape(-1, h, w, c)
        if h % 2 or w % 2:
            x = F.pad(x, (0, 0, 0, w % 2, 0, h % 2))
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
        return self.reduction(self.norm(x.reshape(-1, ((h + 1) // 2) * ((w + 1) // 2), 4 * c)))


class BasicLayer(nn.Module):
    def __init__(self, dim: int, depth: int, num_heads: int, window_size: int, downsample: bool) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            SwinTransformerBlock(dim, num_heads, window_size, shifted=bool(j % 2)) for j in range(depth)
        )
        self.downsample = PatchMerging(dim) if downsample else None

    def forward(
        self, x: torch.Tensor, h: int, w: int, zero: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Return (stage tokens before down-sampling, down-sampled tokens or None).

        ``zero``: :func:`input_zero` of the backbone's input (default: of ``x``), shared by every block.
        """
        zero = input_zero(x) if zero is None else zero
        mask = None
        shifted = [blk for blk in self.blocks if blk.shift]
        if shifted:  # one mask for the stage's shifted blocks: one copy in memory and in the graph
            blk = shifted[0]
            mask = build_shift_mask(*blk.padded_grid(h, w), blk.window_size, blk.shift, zero, x.dtype)
        for blk in self.blocks:
            x = blk(x, h, w, mask, zero)
        return x, (self.downsample(x, h, w) if self.downsample is not None else None)


class PatchEmbed(nn.Module):
    def __init__(self, embed_dim: int, patch_size: int = 4) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(3, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        p = self.patch_size
        h, w = x.shape[-2:]
        if h % p or w % p:
            x = F.pad(x, (0, (p - w % p) % p, 0, (p - h % p) % p))
        x = self.proj(x)
        gh, gw = x.shape[-2:]
        return self.norm(x.flatten(2).transpose(1, 2)), int(gh), int(gw)


class SwinTransformer(nn.Module):
    """Four-stage Swin encoder returning the LayerNorm-ed NCHW map of every stage."""

    def __init__(self, embed_dim: int, depths: tuple[int, ...], num_heads: tuple[int, ...], window_size: int) -> None:
        super().__init__()
        self.channels = tuple(embed_dim * 2**i for i in range(4))
        self.patch_embed = PatchEmbed(embed_dim)
        self.layers = nn.ModuleList(
            BasicLayer(self.channels[i], depths[i], num_heads[i], window_size, downsample=i < 3) for i in range(4)
        )
        for i, ch in enumerate(self.channels):
            self.add_module(f"norm{i}", nn.LayerNorm(ch))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        # One zero read from the image for every mask and bias: they then depend on the input alone, so a
        # runtime can build them before the first layer instead of between delegated parts of the graph.
        zero = input_zero(x)
        tokens, h, w = self.patch_embed(x)
        outs = []
        for i, layer in enumerate(self.layers):
            stage, tokens = layer(tokens, h, w, zero)
            norm = getattr(self, f"norm{i}")
            outs.append(norm(stage).reshape(-1, h, w, self.channels[i]).permute(0, 3, 1, 2).contiguous())
            h, w = (h + 1) // 2, (w + 1) // 2
        return outs


@register_backbone(*SWIN_CONFIGS)
def swin(name: str) -> SwinTransformer:
    """Build a named Swin backbone (see :data:`SWIN_CONFIGS`); windows pad, so any size works."""
    return SwinTransformer(**SWIN_CONFIGS[name])
