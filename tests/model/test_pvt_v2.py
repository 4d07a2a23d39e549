"""PVT-v2 backbone: official key layout, stage shapes, size errors and ONNX export with a dynamic batch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from birefnet_edge.errors import InputError
from birefnet_edge.model.pvt_v2 import PVT_V2_CONFIGS, PyramidVisionTransformerV2


@pytest.fixture(scope="module")
def b0() -> PyramidVisionTransformerV2:
    torch.manual_seed(0)
    return PyramidVisionTransformerV2(**PVT_V2_CONFIGS["pvt_v2_b0"]).eval()


@pytest.mark.parametrize("variant", ["b0", "b1"])
def test_state_dict_matches_manifest(goldens: Path, variant: str) -> None:
    manifest = json.loads((goldens / f"manifest_BiRefNet_pvt_v2_{variant}.json").read_text())
    expected = [(key[len("bb.") :], shape) for key, shape, _ in manifest["state_dict"] if key.startswith("bb.")]
    model = PyramidVisionTransformerV2(**PVT_V2_CONFIGS[f"pvt_v2_{variant}"])
    got = [(key, list(t.shape)) for key, t in model.state_dict().items()]
    assert len(got) == len(expected) == 176
    assert got == expected  # keys, shapes and registration order
    assert all(t.dtype == torch.float32 for t in model.state_dict().values())


@pytest.mark.parametrize("name", sorted(PVT_V2_CONFIGS))
def test_configs_build_the_documented_stages(name: str) -> None:
    config = PVT_V2_CONFIGS[name]
    with torch.device("meta"):  # b5 has 82M parameters; the structure is all this test needs
        model = PyramidVisionTransformerV2(**config)
    assert model.channels == config["embed_dims"]
    assert [len(getattr(model, f"block{s}")) for s in range(1, 5)] == list(config["depths"])
    assert config["num_heads"] == (1, 2, 5, 8) and config["sr_ratios"] == (8, 4, 2, 1)
    assert not hasattr(model.block4[0].attn, "sr") and model.block3[0].attn.sr.kernel_size == (2, 2)
    hidden = model.block1[0].mlp.fc1.out_features
    assert hidden == config["embed_dims"][0] * config["mlp_ratios"][0]


def test_layer_norm_eps(b0: PyramidVisionTransformerV2) -> None:
    assert b0.patch_embed1.norm.eps == 1e-5 and b0.block1[0].attn.norm.eps == 1e-5
    assert b0.block1[0].norm1.eps == b0.block1[0].norm2.eps == b0.norm4.eps == 1e-6


@pytest.mark.parametrize(("height", "width"), [(64, 64), (544, 736)])
def test_stage_shapes(b0: PyramidVisionTransformerV2, height: int, width: int) -> None:
    with torch.no_grad():
        features = b0(torch.randn(1, 3, height, width))
    expected = [(1, c, -(-height // s), -(-width // s)) for c, s in zip(b0.channels, (4, 8, 16, 32), strict=True)]
    assert [tuple(f.shape) for f in features] == expected
    assert all(f.is_contiguous() and torch.isfinite(f).all() for f in features)


def test_batch_elements_are_independent(b0: PyramidVisionTransformerV2) -> None:
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        both, first = b0(x), b0(x[:1])
    for a, b in zip(both, first, strict=True):
        torch.testing.assert_close(a[:1], b, atol=1e-5, rtol=1e-5)


def test_smallest_legal_input(b0: PyramidVisionTransformerV2) -> None:
    """The half-size pass of a 64 px BiRefNet gives the backbone 32 px; 29 is the true backbone minimum."""
    assert b0.min_side() == 29
    with torch.no_grad():
        assert b0(torch.randn(1, 3, 29, 32))[3].shape == (1, 256, 1, 1)


@pytest.mark.parametrize(("height", "width", "stage"), [(28, 64, 1), (64, 16, 1), (8, 8, 1)])
def test_too_small_input_raises(b0: PyramidVisionTransformerV2, height: int, width: int, stage: int) -> None:
    with pytest.raises(InputError, match=rf"{height}x{width} px is too small.*stage {stage}.*at least 29 px"):
        b0(torch.randn(1, 3, height, width))


def test_onnx_export_dynamic_batch(b0: PyramidVisionTransformerV2) -> None:
    """Exports with dynamo (SDPA needs contiguous q/k/v there) and runs at batch 1 and 3 in onnxruntime."""
    pytest.importorskip("onnxscript", reason="onnxscript (extra 'onnx') is needed for the dynamo exporter")
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime (extra 'onnx') is needed to run the export")
    program = torch.onnx.export(
        b0, (torch.randn(2, 3, 64, 64),), dynamo=True, opset_version=19, dynamic_shapes=({0: "batch"},), verbose=False
    )
    session = ort.InferenceSession(program.model_proto.SerializeToString(), providers=["CPUExecutionProvider"])
    for batch in (1, 3):
        x = torch.randn(batch, 3, 64, 64, generator=torch.Generator().manual_seed(batch))
        got = session.run(None, {session.get_inputs()[0].name: x.numpy()})
        with torch.no_grad():
            expected = b0(x)
        assert len(got) == 4
        for g, e in zip(got, expected, strict=True):
            np.testing.assert_allclose(g, e.numpy(), atol=1e-4, rtol=1e-4)
