"""Backbones register where they are defined; the assembly reads their registered facts, not their names."""

from __future__ import annotations

import pytest
from torch import nn

from birefnet_edge.errors import InputError
from birefnet_edge.model import BiRefNetConfig, get_config
from birefnet_edge.model._backbones import BACKBONES, register_backbone
from birefnet_edge.model.pvt_v2 import PVT_V2_CONFIGS, PyramidVisionTransformerV2
from birefnet_edge.model.swin import SWIN_CONFIGS


def test_each_family_registers_every_name_it_defines() -> None:
    assert set(BACKBONES.names()) == set(SWIN_CONFIGS) | set(PVT_V2_CONFIGS)


def test_min_side_comes_from_the_backbone_and_the_half_size_pass() -> None:
    pvt = BACKBONES.get("pvt_v2_b0")
    assert pvt.min_side == PyramidVisionTransformerV2(**PVT_V2_CONFIGS["pvt_v2_b0"]).min_side() == 29
    assert get_config("BiRefNet_pvt_v2_b0").min_side == 64  # the half-size pass needs 2 * 29, rounded up to 32s
    assert get_config("BiRefNet_pvt_v2_b0", multi_scale_input=False).min_side == 32
    assert get_config("BiRefNet_lite").min_side == 32


def test_registered_factory_builds_the_named_backbone() -> None:
    model = BACKBONES.get("swin_test_tiny").build()
    assert list(model.channels) == [32 * 2**i for i in range(4)]


def test_a_duplicate_backbone_name_raises() -> None:
    with pytest.raises(ValueError, match="backbone 'swin_v1_t' is already registered"):
        register_backbone("swin_v1_t")(lambda name: nn.Identity())


def test_an_unknown_backbone_lists_the_registered_ones() -> None:
    with pytest.raises(InputError, match=r"backbone='resnet50' is not allowed; choose one of: pvt_v2_b0, .*swin_v1_t"):
        BiRefNetConfig(backbone="resnet50")
