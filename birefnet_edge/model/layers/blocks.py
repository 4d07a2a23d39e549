"""Decoder building blocks: BasicDecBlk, the two ASPP heads, lateral and injection convs.

Channel widths that the official code fixes (64 inside decoder blocks, 256 per ASPP branch, 64 in
the injection convs) are arguments so the tiny test variant can shrink them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from birefnet_edge.model.layers.deform_conv import DeformableConv2d


def _bn_relu(ch: int) -> tuple[nn.Module, nn.Module]:
    return nn.BatchNorm2d(ch), nn.ReLU(inplace=True)


class ASPPBranch(nn.Module):
    """conv -> BN -> ReLU, where conv is deformable (k, pad k//2) or a plain dilated conv."""

    def __init__(self, cin: int, cout: int, kernel: int, deformable: bool, dilation: int = 1, form: str = "portable"):
        super().__init__()
        if deformable:
            self.atrous_conv: nn.Module = DeformableConv2d(cin, cout, kernel, form=form)
        else:
            pad = 0 if kernel == 1 else dilation
            self.atrous_conv = nn.Conv2d(cin, cout, kernel, padding=pad, dilation=dilation, bias=False)
        self.bn, self.relu = _bn_relu(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.atrous_conv(x)))


class _ASPPBase(nn.Module):
    """Shared tail: image-level pooling branch, 1x1 fusion conv, BN, ReLU (dropout is eval-identity)."""

    def _init_tail(self, cin: int, cout: int, width: int, n_branches: int) -> None:
        self.global_avg_pool = nn.Sequential(
            nn.AdaptiveAvgPool2d((1, 1)), nn.Conv2d(cin, width, 1, bias=False), *_bn_relu(width)
        )
        self.conv1 = nn.Conv2d(width * (n_branches + 1), cout, 1, bias=False)
        self.bn1, self.relu = _bn_relu(cout)
        self.dropout = nn.Dropout(0.5)

    def _fuse(self, x: torch.Tensor, branches: list[torch.Tensor]) -> torch.Tensor:
        """``conv1(cat[*branches, resize(pooled)])`` computed block by block, without the concat.

        conv1 is a bias-free 1x1 conv, so it is a sum of one conv per input block. The official code
        bilinearly resizes the 1x1 pooled map to HxW, a broadcast: its block is a per-sample bias
        computed at 1x1. At 1024 px this skips a full-size 5x256-channel concat (and the layout reorder
        OpenVINO adds after it): 25% less time in this conv eagerly.
        """
        weight, width = self.conv1.weight, branches[0].shape[1]
        out = F.conv2d(self.global_avg_pool(x), weight[:, len(branches) * width :])
        for i, branch in enumerate(branches):
            out = out + F.conv2d(branch, weight[:, i * width : (i + 1) * width])
        return self.dropout(self.relu(self.bn1(out)))


class ASPPDeformable(_ASPPBase):
    """Four deformable branches (k = 1, 1, 3, 7) plus image pooling; BiRefNet's default attention."""

    def __init__(self, cin: int, cout: int, width: int = 256, form: str = "portable") -> None:
        super().__init__()
        self.aspp1 = ASPPBranch(cin, width, 1, deformable=True, form=form)
        self.aspp_deforms = nn.ModuleList(ASPPBranch(cin, width, k, deformable=True, form=form) for k in (1, 3, 7))
        self._init_tail(cin, cout, width, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._fuse(x, [self.aspp1(x), *(m(x) for m in self.aspp_deforms)])


class ASPP(_ASPPBase):
    """Classic dilated ASPP (dilations 1, 6, 12, 18), selectable with ``dec_att='ASPP'``."""

    def __init__(self, cin: int, cout: int, width: int = 256) -> None:
        super().__init__()
        self.aspp1 = ASPPBranch(cin, width, 1, deformable=False)
        self.aspp2 = ASPPBranch(cin, width, 3, deformable=False, dilation=6)
        self.aspp3 = ASPPBranch(cin, width, 3, deformable=False, dilation=12)
        self.aspp4 = ASPPBranch(cin, width, 3, deformable=False, dilation=18)
        self._init_tail(cin, cout, width, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._fuse(x, [self.aspp1(x), self.aspp2(x), self.aspp3(x), self.aspp4(x)])


def make_attention(kind: str, ch: int, width: int, form: str) -> nn.Module:
    """Build the decoder-block attention module named by the config (``dec_att``)."""
    if kind == "ASPPDeformable":
        return ASPPDeformable(ch, ch, width, form=form)
    if kind == "ASPP":
        return ASPP(ch, ch, width)
    return nn.Identity()


class BasicDecBlk(nn.Module):
    """conv3x3 -> BN -> ReLU -> attention -> conv3x3 -> BN (no final activation, no residual)."""

    def __init__(
        self,
        cin: int,
        cout: int,
        inter: int = 64,
        att: str = "ASPPDeformable",
        width: int = 256,
        form: str = "portable",
    ) -> None:
        super().__init__()
        self.conv_in = nn.Conv2d(cin, inter, 3, padding=1)
        self.relu_in = nn.ReLU(inplace=True)
        self.dec_att = make_attention(att, inter, width, form)
        self.conv_out = nn.Conv2d(inter, cout, 3, padding=1)
        self.bn_in = nn.BatchNorm2d(inter)
        self.bn_out = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dec_att(self.relu_in(self.bn_in(self.conv_in(x))))
        return self.bn_out(self.conv_out(x))


class BasicLatBlk(nn.Module):
    """Lateral 1x1 conv with bias."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class SimpleConvs(nn.Module):
    """Two 3x3 convs with no activation between them (the image-patch injection branch)."""

    def __init__(self, cin: int, cout: int, inter: int = 64) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, inter, 3, padding=1)
        self.conv_out = nn.Conv2d(inter, cout, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_out(self.conv1(x))
