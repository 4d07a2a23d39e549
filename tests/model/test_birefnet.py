"""Behaviour of the assembled model on the tiny variant: sizes, modes, forms, batch independence."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from birefnet_edge.errors import InputError
from birefnet_edge.model import TrainOutputs, create_model, deterministic_input, deterministic_weights
from birefnet_edge.model.layers.patches import image_to_patches


def test_eval_returns_logits_of_input_size(tiny_model, tiny_input) -> None:
    with torch.no_grad():
        out = tiny_model(tiny_input)
    assert out.shape == (2, 1, 64, 64) and out.dtype == torch.float32
    assert torch.isfinite(out).all() and out.std() > 0.05


def test_non_square_input_runs(tiny_model) -> None:
    x = torch.from_numpy(deterministic_input(1, 96, 160))
    with torch.no_grad():
        assert tiny_model(x).shape == (1, 1, 96, 160)


@pytest.mark.parametrize(("h", "w", "hint"), [(100, 64, "96 or 128"), (64, 70, "64 or 96"), (32, 64, "64 or 96")])
def test_illegal_size_names_nearest_legal_sizes(h: int, w: int, hint: str) -> None:
    model = create_model("BiRefNet_pvt_v2_b0") if h == 32 else create_model("birefnet_tiny")
    with pytest.raises(InputError, match=hint):
        model(torch.zeros(1, 3, h, w))


def test_wrong_channel_count_is_an_input_error(tiny_model) -> None:
    with pytest.raises(InputError, match=r"\(B, 3, H, W\)"):
        tiny_model(torch.zeros(1, 4, 64, 64))


def test_batch_independence(tiny_model, tiny_input) -> None:
    with torch.no_grad():
        pair = tiny_model(tiny_input)
        single = tiny_model(tiny_input[1:])
    assert torch.allclose(pair[1:], single, atol=1e-5, rtol=0)


def test_train_mode_returns_multiscale_outputs(tiny_input) -> None:
    model = deterministic_weights(create_model("birefnet_tiny")).train()
    out = model(tiny_input)
    assert isinstance(out, TrainOutputs)
    assert out.logits.shape == (2, 1, 64, 64)
    assert [tuple(m.shape[-2:]) for m in out.side_logits] == [(2, 2), (4, 4), (8, 8)]
    assert [tuple(m.shape[-2:]) for m in out.gate_logits] == [(2, 2), (4, 4), (8, 8)]
    assert all(t.shape == (2, 1, 64, 64) for t in out.gate_targets)
    out.logits.mean().backward()  # the graph is trainable end to end
    assert model.bb.patch_embed.proj.weight.grad is not None


def test_native_and_portable_forms_agree_without_touching_weights(tiny_input) -> None:
    model = deterministic_weights(create_model("birefnet_tiny"))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        portable = model(tiny_input)
        native = model.set_deform_form("native")(tiny_input)
    assert model.config.deform == "native"
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert torch.allclose(portable, native, atol=1e-5, rtol=0)


@pytest.mark.parametrize("form", ["gather", "gather_int"])
def test_gather_forms_agree_with_portable(tiny_input, form: str) -> None:
    model = deterministic_weights(create_model("birefnet_tiny"))
    with torch.no_grad():
        portable = model(tiny_input)
        gather = model.set_deform_form(form)(tiny_input)
    assert model.config.deform == form
    torch.testing.assert_close(gather, portable, atol=1e-5, rtol=0)


def test_a_band_budget_reaches_every_deformable_conv_and_changes_no_value(tiny_input) -> None:
    from birefnet_edge.model.layers.deform_conv import COLUMN_BUDGET, DeformableConv2d

    model = deterministic_weights(create_model("birefnet_tiny", deform="gather_int", deform_band=64))
    blocks = [m for m in model.modules() if isinstance(m, DeformableConv2d)]
    assert blocks and all(m.band == 64 for m in blocks)
    with torch.no_grad():
        banded = model(tiny_input)
        model.set_deform_form("gather_int", COLUMN_BUDGET)
        whole = model(tiny_input)
    assert model.config.deform_band == COLUMN_BUDGET and all(m.band == COLUMN_BUDGET for m in blocks)
    torch.testing.assert_close(banded, whole, atol=1e-6, rtol=0)
    model.set_deform_form("portable")  # no band given: the current one stays
    assert model.config.deform_band == COLUMN_BUDGET
    with pytest.raises(InputError, match="deform_band=0 must be a positive number"):
        create_model("birefnet_tiny", deform_band=0)


def test_patches_place_tiles_as_documented() -> None:
    """The graph's (current) order: channel c*g^2 + row*g + col."""
    g, tile = 2, 3
    x = torch.arange(2 * 3 * (g * tile) ** 2, dtype=torch.float32).reshape(2, 3, g * tile, g * tile)
    cur = image_to_patches(x, g, g)
    for c in range(3):
        for row in range(g):
            for col in range(g):
                ref = x[:, c, row * tile : (row + 1) * tile, col * tile : (col + 1) * tile]
                assert torch.equal(cur[:, c * g * g + row * g + col], ref)


def test_unknown_variant_and_bad_override_are_clear() -> None:
    with pytest.raises(InputError, match="known: .*BiRefNet_lite"):
        create_model("BiRefNet_huge")
    with pytest.raises(InputError, match="choose one of: portable, native"):
        create_model("birefnet_tiny", deform="cuda")


@pytest.fixture(scope="module")
def dynamic_program(tiny_model, tiny_input):
    """The tiny model traced by ``torch.export`` with a symbolic batch 1..8 (~20 s on 2 cores: traced once here)."""
    from torch.export import Dim, export

    return export(tiny_model, (tiny_input,), dynamic_shapes=({0: Dim("batch", min=1, max=8)},))


def test_every_tensor_in_the_graph_has_rank_at_most_5(dynamic_program) -> None:
    """CoreML refuses rank-6 tensors: trace the eval graph and check every intermediate value."""
    ranks = [
        len(node.meta["val"].shape)
        for node in dynamic_program.graph.nodes
        if isinstance(node.meta.get("val"), torch.Tensor)
    ]
    assert ranks and max(ranks) <= 5


def test_dynamic_batch_export_keeps_batch_symbolic(dynamic_program, tiny_model, tiny_input) -> None:
    out = dynamic_program.module()(tiny_input[:1].repeat(3, 1, 1, 1))
    assert out.shape == (3, 1, 64, 64)
    with torch.no_grad():
        np.testing.assert_allclose(out[:1].numpy(), tiny_model(tiny_input[:1]).numpy(), atol=1e-5)


@pytest.mark.parametrize("dec_att", ["ASPP", "none"])
def test_other_decoder_attentions_run(dec_att: str, tiny_input) -> None:
    model = deterministic_weights(create_model("birefnet_tiny", dec_att=dec_att))
    keys = model.state_dict().keys()
    assert not any("aspp_deforms" in k for k in keys)
    assert any("aspp4" in k for k in keys) == (dec_att == "ASPP")
    with torch.no_grad():
        assert model(tiny_input).shape == (2, 1, 64, 64)


@pytest.mark.parametrize("kind", ["ASPP", "ASPPDeformable"])
def test_aspp_fusion_equals_the_concat_definition(kind: str) -> None:
    """``_fuse`` sums one 1x1 conv per branch instead of concatenating; it must equal conv1(cat(...))."""
    import torch.nn.functional as F

    from birefnet_edge.model.layers.blocks import make_attention

    torch.manual_seed(0)
    aspp = make_attention(kind, 8, 16, "portable").eval()
    with torch.no_grad():
        for p in aspp.parameters():
            p.normal_(0.0, 0.3)
        x = torch.randn(2, 8, 12, 10)
        branches = [aspp.aspp1(x), *(m(x) for m in getattr(aspp, "aspp_deforms", []))]
        if kind == "ASPP":
            branches += [aspp.aspp2(x), aspp.aspp3(x), aspp.aspp4(x)]
        pooled = F.interpolate(aspp.global_avg_pool(x), size=x.shape[-2:], mode="bilinear", align_corners=True)
        expected = aspp.relu(aspp.bn1(aspp.conv1(torch.cat([*branches, pooled], dim=1))))
        torch.testing.assert_close(aspp(x), expected, atol=1e-5, rtol=1e-5)
