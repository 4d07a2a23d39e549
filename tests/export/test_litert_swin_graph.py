"""A shifted Swin stage through litert-torch equals PyTorch: the masks and biases built in its graph convert right.

The full LiteRT suite exports a whole tiny model and runs under ``make test-slow``; this converts one stage
(seconds), so the default run sees a converter mishandling the in-graph masks. With the masks tied to the
image (``input_zero``), litert-torch 0.10 lowered the int64 labels of the shift mask wrongly: the last
window's mask differed by 100 and the tiny model's logits by 0.07.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("litert_torch", reason="litert-torch is not installed (extra 'litert')")
litert = pytest.importorskip("ai_edge_litert.interpreter", reason="ai-edge-litert is not installed (extra 'litert')")

from birefnet_edge.model.layers.anchors import input_zero  # noqa: E402
from birefnet_edge.model.swin import BasicLayer, build_shift_mask  # noqa: E402


class _Stage(torch.nn.Module):
    """One stage on an 8x8 token grid (window 4, shift 2), the mask also returned on its own."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.layer = BasicLayer(dim=16, depth=2, num_heads=2, window_size=4, downsample=False).eval()
        with torch.no_grad():  # a non-zero bias table, so a wrong gather shows too
            for blk in self.layer.blocks:
                blk.attn.relative_position_bias_table.normal_()

    def forward(self, input: torch.Tensor) -> dict[str, torch.Tensor]:  # noqa: A002  (the signature's name)
        tokens = input.flatten(2).transpose(1, 2)
        mask = build_shift_mask(8, 8, 4, 2, input_zero(input), input.dtype)
        return {"tokens": self.layer(tokens, 8, 8)[0], "mask": mask}


def test_a_shifted_swin_stage_converts_to_litert_with_its_masks_exact() -> None:
    import litert_torch

    stage = _Stage()
    x = torch.randn(1, 16, 8, 8)
    with torch.no_grad():
        ref = stage(x)
        edge = litert_torch.convert(stage, sample_kwargs={"input": x})
    out = litert.Interpreter(model_content=bytes(edge.model_content())).get_signature_runner()(input=x.numpy())
    np.testing.assert_array_equal(out["mask"], ref["mask"].numpy())
    np.testing.assert_allclose(out["tokens"], ref["tokens"].numpy(), atol=1e-5)
