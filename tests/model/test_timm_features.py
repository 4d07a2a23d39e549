"""``backbone="timm:<name>"``: any timm features_only model as BiRefNet's backbone, and loading timm's checkpoints."""

from __future__ import annotations

import sys

import pytest
import torch

from birefnet_edge.errors import InputError, MissingDependencyError, WeightsError
from birefnet_edge.model import BiRefNetConfig, create_model, get_config
from birefnet_edge.model._backbones import backbone_choices

timm = pytest.importorskip("timm", reason="timm (extra 'timm') is needed for timm backbones")

from birefnet_edge.model.timm_features import TimmBackbone, features_state_dict  # noqa: E402

TINY = "test_efficientnet"  # timm's own 0.08 M-parameter test model: levels at strides 2, 4, 8, 16, 32


@pytest.fixture(scope="module")
def timm_tiny():
    """birefnet_tiny on timm's test_efficientnet (random weights, eval mode)."""
    torch.manual_seed(0)
    return create_model("birefnet_tiny", backbone=f"timm:{TINY}")


def test_levels_are_the_strides_4_to_32_and_laterals_are_sized_from_feature_info(timm_tiny) -> None:
    info = timm.create_model(TINY, features_only=True).feature_info
    assert info.reduction() == [2, 4, 8, 16, 32]  # the stride-2 level is skipped
    assert timm_tiny.bb.channels == tuple(info.channels()[1:])
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        maps = timm_tiny.bb(x)
        logits = timm_tiny(x)
    expected = [(2, c, 64 // s, 64 // s) for c, s in zip(timm_tiny.bb.channels, (4, 8, 16, 32))]
    assert [tuple(m.shape) for m in maps] == expected
    # BiRefNet's decoder was sized from them: the half-size pass doubles each width, lateral blocks keep it.
    assert timm_tiny.decoder.lateral_block2.conv.in_channels == 2 * timm_tiny.bb.channels[0]
    assert logits.shape == (2, 1, 64, 64) and torch.isfinite(logits).all()


def test_deepest_level_per_stride_is_picked() -> None:
    """repvit has exactly four levels at 4..32; an out_indices rebuild must not be needed there."""
    backbone = TimmBackbone("repvit_m0_9")
    assert backbone.levels == (0, 1, 2, 3) and backbone.channels == (48, 96, 192, 384)


def test_min_side_is_the_family_s() -> None:
    assert get_config("birefnet_tiny", backbone=f"timm:{TINY}").min_side == 64  # 32, doubled for the half pass
    assert get_config("birefnet_tiny", backbone=f"timm:{TINY}", multi_scale_input=False).min_side == 32


def test_a_model_without_the_strides_is_refused_by_name() -> None:
    with pytest.raises(InputError, match=r"timm model 'test_vit' has no feature map at stride 4, 8, 32 .*16, 16, 16"):
        create_model("birefnet_tiny", backbone="timm:test_vit")


def test_an_unknown_timm_model_is_refused_by_name() -> None:
    with pytest.raises(InputError, match="timm has no model named 'mobilenet_v99'"):
        create_model("birefnet_tiny", backbone="timm:mobilenet_v99")


def test_an_unknown_family_lists_the_timm_pattern() -> None:
    assert "timm:<name>" in backbone_choices()
    with pytest.raises(InputError, match=r"backbone='tf:resnet50' is not allowed; choose one of: .*timm:<name>"):
        BiRefNetConfig(backbone="tf:resnet50")


def test_without_timm_a_config_works_and_building_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "timm", None)  # import timm now raises ImportError
    config = get_config("birefnet_tiny", backbone=f"timm:{TINY}")
    assert config.backbone == f"timm:{TINY}"
    with pytest.raises(MissingDependencyError, match=r"'timm' is not installed .*pip install 'birefnet-edge\[timm\]'"):
        create_model("birefnet_tiny", backbone=f"timm:{TINY}")


def test_nhwc_families_are_returned_as_nchw() -> None:
    """Some timm families (its Swin, MambaOut) return channels-last maps; the decoder reads NCHW."""
    backbone = TimmBackbone("test_mambaout")
    assert backbone.channels_last
    with torch.no_grad():
        maps = backbone(torch.randn(1, 3, 64, 64))
    expected = [(c, 64 // s, 64 // s) for c, s in zip(backbone.channels, (4, 8, 16, 32))]
    assert [tuple(m.shape[1:]) for m in maps] == expected


# --- timm checkpoints -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [TINY, "test_convnext"])  # same key names as the classifier / renamed ones
def test_a_classifier_checkpoint_gives_the_classifier_s_own_features(name: str) -> None:
    torch.manual_seed(1)
    classifier = timm.create_model(name, pretrained=False).eval()
    backbone = TimmBackbone(name).eval()
    backbone.body.load_state_dict(features_state_dict(backbone, classifier.state_dict(), "ckpt"), strict=True)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = [m for m in classifier.forward_intermediates(x, intermediates_only=True) if m.shape[-1] <= 16]
        got = backbone(x)
    assert len(got) == len(expected[-4:]) == 4
    for g, e in zip(got, expected[-4:]):
        torch.testing.assert_close(g, e, atol=0, rtol=0)


def test_the_head_is_ignored_even_with_another_class_count() -> None:
    state = timm.create_model(TINY, pretrained=False, num_classes=3).state_dict()
    backbone = TimmBackbone(TINY)
    loaded = features_state_dict(backbone, state, "ckpt")
    assert loaded.keys() == backbone.body.state_dict().keys()
    assert torch.equal(loaded["conv_stem.weight"], state["conv_stem.weight"])


def test_a_features_only_state_dict_loads_as_is() -> None:
    backbone = TimmBackbone(TINY)
    state = {k: v + 1 for k, v in TimmBackbone(TINY).body.state_dict().items()}
    loaded = features_state_dict(backbone, state, "ckpt")
    assert all(torch.equal(loaded[k], state[k]) for k in state)


def test_keys_that_fit_neither_form_are_named() -> None:
    backbone = TimmBackbone(TINY)
    state = dict(backbone.body.state_dict())
    state["blocks.9.conv.weight"] = torch.zeros(1)
    del state["conv_stem.weight"]
    state["bn1.weight"] = torch.zeros(3)
    with pytest.raises(WeightsError) as err:
        features_state_dict(backbone, state, "my.safetensors")
    text = str(err.value)
    assert "my.safetensors does not fit timm's 'test_efficientnet' features_only model" in text
    assert "1 missing: conv_stem.weight" in text and "1 unexpected: blocks.9.conv.weight" in text
    assert "1 wrong shape: bn1.weight (3,) != (24,)" in text and "out_indices=(0, 1, 2, 3, 4)" in text
