"""State-dict layout: keys, shapes, dtypes and order equal the official manifests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from birefnet_edge.model import create_model, list_models

# Parameter counts of the official modules (ARCHITECTURE.md §1, PVT_NOTES.md).
OFFICIAL_PARAMS = {
    "BiRefNet": 220_176_498,
    "BiRefNet_lite": 44_313_720,
    "BiRefNet_pvt_v2_b0": 15_774_310,
    "BiRefNet_pvt_v2_b1": 28_311_822,
}
MANIFEST_VARIANT = {
    "manifest_BiRefNet.json": "BiRefNet",
    "manifest_BiRefNet_lite.json": "BiRefNet_lite",
    "manifest_BiRefNet_pvt_v2_b0.json": "BiRefNet_pvt_v2_b0",
    "manifest_BiRefNet_pvt_v2_b1.json": "BiRefNet_pvt_v2_b1",
}


def meta_model(name: str) -> torch.nn.Module:
    """Build on the meta device: shapes without allocating 880 MB for Swin-L."""
    with torch.device("meta"):
        return create_model(name)


def layout(model: torch.nn.Module) -> list[list]:
    return [[k, list(v.shape), str(v.dtype).removeprefix("torch.")] for k, v in model.state_dict().items()]


@pytest.mark.parametrize("manifest", sorted(MANIFEST_VARIANT))
def test_state_dict_equals_official_manifest(manifest: str, goldens: Path) -> None:
    expected = json.loads((goldens / manifest).read_text())["state_dict"]
    ours = layout(meta_model(MANIFEST_VARIANT[manifest]))
    assert len(ours) == len(expected)
    mismatches = [(a, b) for a, b in zip(ours, expected) if a != b]
    assert not mismatches, f"{len(mismatches)} entries differ, first: {mismatches[:3]}"


@pytest.mark.parametrize("name", sorted(OFFICIAL_PARAMS))
def test_parameter_count_equals_official(name: str) -> None:
    assert sum(p.numel() for p in meta_model(name).parameters()) == OFFICIAL_PARAMS[name]


@pytest.mark.parametrize("name", list_models())
def test_every_registered_variant_builds(name: str) -> None:
    model = meta_model(name)
    assert model.config.name == name
    assert any(k.startswith("decoder.conv_out1") for k in model.state_dict())
