"""BiRefNet assembly: backbone (run at full and half size), context fusion, squeeze, decoder.

Written from the block-by-block description of the official model (commit 25cb930); the state-dict
layout (names, shapes and registration order) equals the official one so checkpoints load as-is.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from birefnet_edge.errors import InputError
from birefnet_edge.model._backbones import backbone_info, build_backbone
from birefnet_edge.model.layers.anchors import wait_for
from birefnet_edge.model.layers.blocks import BasicDecBlk, BasicLatBlk, SimpleConvs
from birefnet_edge.model.layers.deform_conv import COLUMN_BUDGET, DEFORM_FORMS, DeformableConv2d
from birefnet_edge.model.layers.patches import image_to_patches

DEC_ATTENTIONS = ("ASPPDeformable", "ASPP", "none")


#: Config fields a state dict depends on (see :meth:`BiRefNetConfig.architecture`).
ARCHITECTURE_FIELDS = (
    "backbone",
    "multi_scale_input",
    "context",
    "dec_att",
    "dec_channels",
    "aspp_channels",
    "ipt_channels",
    "gdt_channels",
    "patch_injection",
)


@dataclass(frozen=True)
class BiRefNetConfig:
    """Architecture switches of one BiRefNet variant (the official config values are the defaults).

    Attributes:
        name: Registered variant name.
        backbone: A name registered in :data:`birefnet_edge.model._backbones.BACKBONES`, or ``timm:<name>`` for
            any timm model with feature levels at strides 4-32 (extra ``timm``).
        size: Default (H, W) input size; any multiple of 32 of at least :attr:`min_side` also works.
        multi_scale_input: Run the backbone on a half-size copy and concatenate ('cat' in the official config).
        context: Fuse stage 1-3 maps into stage 4 (cxt_num 3).
        dec_att: Attention inside every decoder block: 'ASPPDeformable', 'ASPP' or 'none'.
        deform: Deformable-conv form, one of :data:`DEFORM_FORMS` ('portable': grid_sample, 'native': ONNX
            DeformConv, 'gather'/'gather_int': row gathers, 'torchvision').
        deform_band: Largest sampled column block (elements per image) the banded forms build at once; it
            shapes the exported graph (more, smaller bands), never the values.
        dec_channels: Inner width of every BasicDecBlk (64 officially).
        aspp_channels: Width of every ASPP branch (256 officially).
        ipt_channels: Inner width of the injection convs (64 officially).
        gdt_channels: Width of the gradient-gate convs (16 officially).
        patch_injection: Feed image tiles into every decoder level (official); off in slim students, whose
            decoder then works on backbone features alone and the head upsamples the H/4 prediction.
    """

    name: str = "BiRefNet"
    backbone: str = "swin_v1_l"
    size: tuple[int, int] = (1024, 1024)
    multi_scale_input: bool = True
    context: bool = True
    dec_att: str = "ASPPDeformable"
    deform: str = "portable"
    deform_band: int = COLUMN_BUDGET
    dec_channels: int = 64
    aspp_channels: int = 256
    ipt_channels: int = 64
    gdt_channels: int = 16
    patch_injection: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        backbone_info(self.backbone)  # raises for an unknown name, listing the choices
        for key, allowed in (
            ("dec_att", DEC_ATTENTIONS),
            ("deform", DEFORM_FORMS),
        ):
            if getattr(self, key) not in allowed:
                raise InputError(f"{key}={getattr(self, key)!r} is not allowed; choose one of: {', '.join(allowed)}")
        if not isinstance(self.deform_band, int) or self.deform_band < 1:
            raise InputError(f"deform_band={self.deform_band!r} must be a positive number of elements")

    def replace(self, **changes: Any) -> BiRefNetConfig:
        """Return a validated copy with some fields changed."""
        return replace(self, **changes)

    def architecture(self) -> dict[str, Any]:
        """The fields that decide the state dict's keys and shapes (not the size or the deformable form).

        Written into checkpoints next to the variant's name, so that a checkpoint still loads after the
        registered variant is redefined (as ``student-m`` was, by a new latency sweep).
        """
        return {k: getattr(self, k) for k in ARCHITECTURE_FIELDS}

    @property
    def min_side(self) -> int:
        """Smallest legal side: a multiple of 32 at which the backbone also takes the half-size pass."""
        need = backbone_info(self.backbone).min_side * (2 if self.multi_scale_input else 1)
        return max(32, -(-need // 32) * 32)


def resize(x: torch.Tensor, size: tuple[int, int] | torch.Size) -> torch.Tensor:
    """Bilinear, align_corners=True, no antialias — every resize in BiRefNet; a no-op at equal size."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=True)


class TrainOutputs(NamedTuple):
    """Train-mode outputs: final logits, side outputs (H/32, H/16, H/8) and gate predictions/targets."""

    logits: torch.Tensor
    side_logits: list[torch.Tensor]
    gate_logits: list[torch.Tensor]
    gate_targets: list[torch.Tensor]


class Decoder(nn.Module):
    """Top-down decoder with lateral connections, image-patch injection and gradient gating."""

    def __init__(self, cfg: BiRefNetConfig, fused: tuple[int, int, int, int]) -> None:
        super().__init__()
        self.cfg = cfg
        ch = fused[::-1]  # [16C, 8C, 4C, 2C] for Swin
        ipt_in = (3 * 32**2, 3 * 16**2, 3 * 8**2, 3 * 4**2, 3)
        ipt_out = (ch[0] // 8, ch[0] // 8, ch[1] // 8, ch[2] // 8, ch[3] // 8) if cfg.patch_injection else (0,) * 5
        for i, (cin, cout) in enumerate(zip(ipt_in, ipt_out)):
            if cout:
                self.add_module(f"ipt_blk{5 - i}", SimpleConvs(cin, cout, cfg.ipt_channels))
        dec_io = (
            (ch[0] + ipt_out[0], ch[1]),
            (ch[1] + ipt_out[1], ch[2]),
            (ch[2] + ipt_out[2], ch[3]),
            (ch[3] + ipt_out[3], ch[3] // 2),
        )
        for i, (cin, cout) in enumerate(dec_io):
            blk = BasicDecBlk(cin, cout, cfg.dec_channels, cfg.dec_att, cfg.aspp_channels, cfg.deform)
            self.add_module(f"decoder_block{4 - i}", blk)
        self.conv_out1 = nn.Sequential(nn.Conv2d(ch[3] // 2 + ipt_out[4], 1, 1))
        for lvl, c in zip((4, 3, 2), ch[1:]):
            self.add_module(f"lateral_block{lvl}", BasicLatBlk(c, c))
        for lvl, c in zip((4, 3, 2), ch[1:]):
            self.add_module(f"conv_ms_spvn_{lvl}", nn.Conv2d(c, 1, 1))
        g = cfg.gdt_channels
        for lvl, c in zip((4, 3, 2), ch[1:]):
            self.add_module(
                f"gdt_convs_{lvl}",
                nn.Sequential(nn.Conv2d(c, g, 3, padding=1), nn.BatchNorm2d(g), nn.ReLU(inplace=True)),
            )
        for lvl in (4, 3, 2):
            self.add_module(f"gdt_convs_pred_{lvl}", nn.Sequential(nn.Conv2d(g, 1, 1)))
        for lvl in (4, 3, 2):
            self.add_module(f"gdt_convs_attn_{lvl}", nn.Sequential(nn.Conv2d(g, 1, 1)))

    def _inject(self, x: torch.Tensor, ref: torch.Tensor, level: int) -> torch.Tensor:
        """Concatenate ``ref`` with the injection branch fed by image tiles matching ref's grid."""
        if not self.cfg.patch_injection:
            return ref
        gh, gw = x.shape[-2] // ref.shape[-2], x.shape[-1] // ref.shape[-1]
        patches = image_to_patches(x, gh, gw) if gh * gw > 1 else x
        ipt = getattr(self, f"ipt_blk{level}")(resize(patches, ref.shape[-2:]))
        return torch.cat([ref, ipt], dim=1)

    def _gate(self, p: torch.Tensor, level: int, side: dict[str, list[torch.Tensor]] | None) -> torch.Tensor:
        g = getattr(self, f"gdt_convs_{level}")(p)
        if side is not None:
            side["side"].append(getattr(self, f"conv_ms_spvn_{level}")(p))
            side["gate"].append(getattr(self, f"gdt_convs_pred_{level}")(g))
        return p * torch.sigmoid(getattr(self, f"gdt_convs_attn_{level}")(g))

    def forward(self, x: torch.Tensor, feats: list[torch.Tensor], side: dict | None = None) -> torch.Tensor:
        """Decode; ``feats`` = [e1, e2, e3, s4]. When ``side`` is a dict, train-mode maps are appended to it."""
        e1, e2, e3, s4 = feats
        p = self._gate(self.decoder_block4(self._inject(x, s4, 5)), 4, side)
        for level, lateral in ((3, e3), (2, e2)):
            u = resize(p, lateral.shape[-2:]) + getattr(self, f"lateral_block{level + 1}")(lateral)
            p = self._gate(getattr(self, f"decoder_block{level}")(self._inject(x, u, level + 1)), level, side)
        u = resize(p, e1.shape[-2:]) + self.lateral_block2(e1)
        return self._head(x, self.decoder_block1(self._inject(x, u, 2)))

    def _head(self, x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        """``conv_out1(cat[resize(p -> H, W), ipt_blk1(x)])``, rearranged to skip full-size wide tensors.

        conv_out1 is a 1x1 conv with one output and nothing non-linear sits between it and its inputs, so
        (a) its decoder part commutes with the bilinear resize: apply it at H/4 and resize one channel
        instead of C; (b) its injection part folds into ipt_blk1's last 3x3 conv. Same function, same
        weights; at 1024 px this avoids a 120-channel full-size concat and a C-channel full-size resize.
        """
        head = self.conv_out1[0]
        if not self.cfg.patch_injection:
            return resize(head(p), x.shape[-2:])
        w_dec, w_ipt = head.weight[:, : p.shape[1]], head.weight[:, p.shape[1] :, 0, 0]
        ipt = self.ipt_blk1
        folded_w = torch.einsum("oc,cikl->oikl", w_ipt, ipt.conv_out.weight)
        # A 2-D product: coremltools' frontend has no matrix-vector matmul.
        folded_b = (w_ipt @ ipt.conv_out.bias[:, None])[:, 0] + head.bias
        low = F.conv2d(p, w_dec)
        # The injection conv reads only the image, so runtimes may run it first and hold its full-size output
        # (64 channels: 256 MB at 1024 px) through the whole call; OpenVINO did. Reading it after the decoder
        # keeps it to the head's own few steps.
        x = wait_for(x, low)
        return resize(low, x.shape[-2:]) + F.conv2d(ipt.conv1(x), folded_w, folded_b, padding=1)


def nearest_legal_sizes(n: int, minimum: int = 32) -> tuple[int, int]:
    """The legal sides (multiples of 32, >= minimum) just below and above ``n``."""
    low = max(minimum, n // 32 * 32)
    high = max(minimum, -(-n // 32) * 32)
    return low, high if high != low else low + 32


def check_input_size(height: int, width: int, minimum: int = 32) -> None:
    """Raise :class:`InputError` unless H and W are multiples of 32 and at least ``minimum``.

    The image-patch injection cuts the input into a 32x32 grid of tiles at the deepest level, so
    other sizes either fail inside the official code or feed the wrong number of channels.
    """
    bad = [(name, n) for name, n in (("height", height), ("width", width)) if n % 32 or n < minimum]
    if bad:
        hints = ", ".join(f"{name} {n} -> {' or '.join(map(str, nearest_legal_sizes(n, minimum)))}" for name, n in bad)
        raise InputError(
            f"input size {height}x{width} is not legal for BiRefNet: both sides must be multiples of 32 and "
            f">= {minimum}; nearest legal: {hints}. Resize the image first (the contract's preprocess does)."
        )


def laplacian5(x: torch.Tensor) -> torch.Tensor:
    """Normalised 5x5 Laplacian with reflect borders (training targets for the gradient gate only)."""
    kernel = torch.ones(1, 1, 5, 5, dtype=x.dtype, device=x.device)
    kernel[0, 0, 2, 2] = -24.0
    return F.conv2d(F.pad(x, (2, 2, 2, 2), mode="reflect"), kernel / 48.0)


class BiRefNet(nn.Module):
    """BiRefNet for dichotomous image segmentation.

    In eval mode ``model(x)`` maps a normalised (B, 3, H, W) float batch to pre-sigmoid logits
    (B, 1, H, W). In train mode it returns :class:`TrainOutputs` with the multi-scale maps the
    training losses need.

    Args:
        config: The architecture switches.
    """

    def __init__(self, config: BiRefNetConfig) -> None:
        super().__init__()
        self.config = config
        self.bb = build_backbone(config.backbone)
        scale = 2 if config.multi_scale_input else 1
        fused = tuple(c * scale for c in self.bb.channels)
        squeeze_in = sum(fused) if config.context else fused[3]
        self.squeeze_module = nn.Sequential(
            BasicDecBlk(squeeze_in, fused[3], config.dec_channels, config.dec_att, config.aspp_channels, config.deform)
        )
        self.decoder = Decoder(config, fused)
        self.set_deform_form(config.deform, config.deform_band)

    def set_deform_form(self, form: str, band: int | None = None) -> BiRefNet:
        """Switch every deformable conv to another form of :data:`DEFORM_FORMS` (weights are untouched).

        Args:
            form: The form.
            band: Its band budget (see :attr:`BiRefNetConfig.deform_band`); None keeps the current one.
        """
        self.config = self.config.replace(deform=form, deform_band=self.config.deform_band if band is None else band)
        for module in self.modules():
            if isinstance(module, DeformableConv2d):
                module.form = form
                module.band = self.config.deform_band
        return self

    def forward_enc(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Backbone at full (and half) size, concatenated per stage, plus context fusion into stage 4."""
        feats = self.bb(x)
        if self.config.multi_scale_input:
            half = self.bb(resize(x, (x.shape[-2] // 2, x.shape[-1] // 2)))
            feats = [torch.cat([f, resize(h, f.shape[-2:])], dim=1) for f, h in zip(feats, half)]
        if self.config.context:
            s4 = feats[3].shape[-2:]
            feats[3] = torch.cat([resize(feats[0], s4), resize(feats[1], s4), resize(feats[2], s4), feats[3]], dim=1)
        return feats

    def forward(self, x: torch.Tensor) -> torch.Tensor | TrainOutputs:
        if x.dim() != 4 or x.shape[1] != 3:
            raise InputError(f"expected a (B, 3, H, W) batch, got shape {tuple(x.shape)}")
        check_input_size(int(x.shape[-2]), int(x.shape[-1]), self.config.min_side)
        e1, e2, e3, e4 = self.forward_enc(x)
        s4 = self.squeeze_module(e4)
        if not self.training:
            return self.decoder(x, [e1, e2, e3, s4])
        side: dict[str, list[torch.Tensor]] = {"side": [], "gate": []}
        logits = self.decoder(x, [e1, e2, e3, s4], side)
        lap = laplacian5(x.mean(dim=1, keepdim=True))
        targets = [lap * resize(m, x.shape[-2:]) for m in side["side"]]
        return TrainOutputs(logits, side["side"], side["gate"], targets)
