"""Tile order per checkpoint: the exact legacy -> current conversion and how the order is decided."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from birefnet_edge.errors import InputError, WeightsError
from birefnet_edge.model import MODELS, create_model, deterministic_input, load_model
from birefnet_edge.model import birefnet as birefnet_module
from birefnet_edge.model.layers.patches import image_to_patches, legacy_channel_of, legacy_to_current

IPT_GRIDS = {"decoder.ipt_blk5.conv1.weight": 32, "decoder.ipt_blk4.conv1.weight": 16}
IPT_GRIDS.update({"decoder.ipt_blk3.conv1.weight": 8, "decoder.ipt_blk2.conv1.weight": 4})
IPT_GRIDS["decoder.ipt_blk1.conv1.weight"] = 1


def legacy_patches(x: torch.Tensor, grid_h: int, grid_w: int) -> torch.Tensor:
    """Oracle: the pre-2024-11-05 stacking, tile (c, row, col) at channel (col*gh + row)*3 + c, by loops."""
    h, w = x.shape[-2] // grid_h, x.shape[-1] // grid_w
    channels: list[torch.Tensor | None] = [None] * (3 * grid_h * grid_w)
    for c in range(3):
        for row in range(grid_h):
            for col in range(grid_w):
                tile = x[:, c, row * h : (row + 1) * h, col * w : (col + 1) * w]
                channels[(col * grid_h + row) * 3 + c] = tile
    return torch.stack(channels, dim=1)  # type: ignore[arg-type]


def _logits(model: torch.nn.Module, size: int = 64) -> torch.Tensor:
    with torch.no_grad():
        return model(torch.from_numpy(deterministic_input(1, size, size)))


@pytest.fixture(scope="module")
def tiny_state(tiny_model) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in tiny_model.state_dict().items()}


@pytest.mark.parametrize("grid", [1, 2, 4])
def test_legacy_channel_of_maps_each_tile_to_its_legacy_channel(grid: int) -> None:
    x = torch.randn(2, 3, grid * 3, grid * 3)
    legacy = legacy_patches(x, grid, grid)
    assert torch.equal(legacy[:, legacy_channel_of(grid)], image_to_patches(x, grid, grid))
    assert sorted(legacy_channel_of(grid).tolist()) == list(range(3 * grid * grid))  # a permutation


def test_tiny_legacy_graph_equals_current_graph_with_converted_weights(tiny_model, tiny_state, monkeypatch) -> None:
    """The exactness claim on a whole model: every ipt_blk of the tiny variant sees stacked tiles."""
    assert {k: tiny_state[k].shape[1] for k in IPT_GRIDS} == {k: 3 * g * g for k, g in IPT_GRIDS.items()}
    current_with_legacy_weights = _logits(tiny_model)
    converted = create_model("birefnet_tiny")
    converted.load_state_dict(legacy_to_current(tiny_state))
    monkeypatch.setattr(birefnet_module, "image_to_patches", legacy_patches)
    legacy_graph = _logits(tiny_model)
    monkeypatch.undo()
    converted_out = _logits(converted)
    assert (legacy_graph - converted_out).abs().max() <= 1e-5
    assert (legacy_graph - current_with_legacy_weights).abs().max() > 1e-2  # the order matters on this model


def test_lite_state_dict_conversion_moves_only_the_patch_convs() -> None:
    """BiRefNet_lite shapes, state-dict level: each tile's column lands where the formula says."""
    state = create_model("BiRefNet_lite").state_dict()
    out = legacy_to_current(state)
    changed = sorted(k for k in state if out[k] is not state[k])
    assert changed == sorted(IPT_GRIDS)
    for key, g in IPT_GRIDS.items():
        for c, row, col in ((0, 0, 0), (2, g - 1, 0), (1, 0, g - 1), (2, g // 2, g // 3)):
            current, legacy = c * g * g + row * g + col, (col * g + row) * 3 + c
            assert torch.equal(out[key][:, current], state[key][:, legacy])
    assert torch.equal(out["decoder.ipt_blk1.conv1.weight"], state["decoder.ipt_blk1.conv1.weight"])


def test_conversion_refuses_a_patch_conv_that_is_not_a_tile_grid() -> None:
    with pytest.raises(ValueError, match=r"ipt_blk5.conv1.weight has 10 input channels, not 3\*g\*g"):
        legacy_to_current({"decoder.ipt_blk5.conv1.weight": torch.zeros(4, 10, 3, 3)})


def test_plain_file_defaults_to_legacy_with_a_warning(tmp_path: Path, tiny_state, caplog) -> None:
    path = tmp_path / "model.safetensors"
    save_file(tiny_state, str(path))
    with caplog.at_level(logging.WARNING):
        model, info = load_model(str(path))
    assert (info.patch_order, info.patch_order_source) == ("legacy", "default")
    assert "assuming legacy" in caplog.text and "--patch-order current" in caplog.text
    key = "decoder.ipt_blk5.conv1.weight"
    assert torch.equal(model.state_dict()[key], tiny_state[key][:, legacy_channel_of(32)])
    assert info.to_dict()["patch_order"] == "legacy" and info.to_dict()["patch_order_source"] == "default"


def test_user_choice_wins_and_is_checked(tmp_path: Path, tiny_model, tiny_state, caplog) -> None:
    path = tmp_path / "BiRefNet-general-epoch_244.pth"  # a known legacy file name: the user still wins
    torch.save(tiny_state, path)
    with caplog.at_level(logging.WARNING):
        model, info = load_model(str(path), patch_order="current")
    assert (info.patch_order, info.patch_order_source) == ("current", "user")
    assert "assuming legacy" not in caplog.text
    assert torch.equal(_logits(model), _logits(tiny_model))
    with pytest.raises(InputError, match="patch_order='sideways' is not a tile order; choose one of: current, legacy"):
        load_model(str(path), patch_order="sideways")


def test_known_release_file_name_is_legacy(tmp_path: Path, tiny_state) -> None:
    path = tmp_path / "BiRefNet-general-epoch_244.pth"
    torch.save(tiny_state, path)
    _, info = load_model(str(path), variant="birefnet_tiny")
    assert (info.patch_order, info.patch_order_source) == ("legacy", "file name")


@pytest.mark.parametrize(
    ("repo", "order"),
    [("ZhengPeng7/BiRefNet_lite", "legacy"), ("briaai/RMBG-2.0", "legacy"), ("ZhengPeng7/BiRefNet_HR", "current")],
)
def test_hub_table_decides_for_a_hub_id_and_its_cache_path(
    tmp_path: Path, tiny_state, monkeypatch, repo: str, order: str
) -> None:
    huggingface_hub = pytest.importorskip("huggingface_hub")
    snap = tmp_path / f"models--{repo.replace('/', '--')}" / "snapshots" / ("b" * 40)
    snap.mkdir(parents=True)
    save_file(tiny_state, str(snap / "model.safetensors"), metadata={"birefnet_edge.patch_order": "current"})
    monkeypatch.setattr("birefnet_edge.model.hub.hub_reachable", lambda endpoint: True)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", lambda **kw: str(snap / kw["filename"]))
    _, from_hub = load_model(f"{repo}@v1", variant="birefnet_tiny")
    _, from_cache = load_model(str(snap / "model.safetensors"), variant="birefnet_tiny")
    for info in (from_hub, from_cache):
        assert (info.patch_order, info.patch_order_source) == (order, "hub table")  # the table beats metadata


def test_file_metadata_gives_order_variant_and_config(tmp_path: Path, monkeypatch) -> None:
    """A distilled student's file loads with nothing else: variant, overrides and order from its metadata."""
    wide = MODELS.get("birefnet_tiny").replace(name="tiny_student", ipt_channels=8)
    monkeypatch.setitem(MODELS._items, "tiny_student", wide)  # same backbone as birefnet_tiny: shapes cannot tell
    student = create_model("tiny_student", gdt_channels=4)
    torch.manual_seed(3)
    for p in student.parameters():
        torch.nn.init.normal_(p, std=0.05)
    metadata = {
        "birefnet_edge.patch_order": "current",
        "birefnet_edge.variant": "tiny_student",
        "birefnet_edge.config": json.dumps({"gdt_channels": 4, "size": [96, 96]}),
    }
    path = tmp_path / "best.safetensors"
    save_file(student.state_dict(), str(path), metadata=metadata)
    model, info = load_model(str(path))
    assert info.variant == "tiny_student" and (info.patch_order, info.patch_order_source) == (
        "current",
        "file metadata",
    )
    assert (model.config.gdt_channels, model.config.ipt_channels, model.config.size) == (4, 8, (96, 96))
    assert torch.equal(_logits(model), _logits(student.eval()))


@pytest.mark.parametrize(
    ("metadata", "match"),
    [
        ({"birefnet_edge.patch_order": "diagonal"}, r"birefnet_edge.patch_order='diagonal' is not a tile order"),
        ({"birefnet_edge.config": "[1, 2]"}, r"birefnet_edge.config must be a JSON object .* got list"),
        ({"birefnet_edge.config": "{oops"}, r"birefnet_edge.config is not valid JSON"),
    ],
)
def test_bad_metadata_is_a_clear_error(tmp_path: Path, tiny_state, metadata: dict, match: str) -> None:
    path = tmp_path / "odd.safetensors"
    save_file(tiny_state, str(path), metadata=metadata)
    with pytest.raises(WeightsError, match=match):
        load_model(str(path))


def test_deterministic_weights_are_current_unless_declared(tiny_model) -> None:
    model, info = load_model("random:birefnet_tiny")
    assert (info.patch_order, info.patch_order_source) == ("current", "deterministic")
    declared, legacy = load_model("random:birefnet_tiny", patch_order="legacy")
    assert (legacy.patch_order, legacy.patch_order_source) == ("legacy", "user")
    key = "decoder.ipt_blk4.conv1.weight"
    assert torch.equal(declared.state_dict()[key], tiny_model.state_dict()[key][:, legacy_channel_of(16)])
