"""ExecuTorch lowering on a small module: what must reach XNNPACK with the dynamic batch (seconds, default run)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("executorch", reason="executorch is not installed (extra 'executorch')")

pytestmark = pytest.mark.executorch


class _Shapes(torch.nn.Module):
    """The patterns that stayed outside XNNPACK with a dynamic batch: in student-m a conv reading a slice of
    a weight (ASPP's fused 1x1), a permute + reshape(-1, ...) (the image-tile injection) and a bilinear
    resize (the decoder); in BiRefNet_lite's Swin the layer norms over tokens and over an NHWC map."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(6, 4, 1, bias=False)
        self.tokens = torch.nn.LayerNorm(16)
        self.pixels = torch.nn.LayerNorm(16, eps=1e-6)
        self.head = torch.nn.Conv2d(16, 1, 1)
        for norm in (self.tokens, self.pixels):  # not the identity affine of a fresh module
            torch.nn.init.normal_(norm.weight)
            torch.nn.init.normal_(norm.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.conv2d(x, self.conv.weight[:, :3]) + F.conv2d(x * 2, self.conv.weight[:, 3:])
        b, c, h, w = y.shape
        tiles = y.reshape(-1, 2, h // 2, 2, w // 2).permute(0, 1, 3, 2, 4).reshape(-1, c * 4, h // 2, w // 2)
        tokens = self.tokens(tiles.flatten(2).transpose(1, 2))
        nhwc = self.pixels(tokens.reshape(-1, h // 2, w // 2, c * 4))
        return F.interpolate(self.head(nhwc.permute(0, 3, 1, 2)), size=(h, w), mode="bilinear", align_corners=True)


def test_weight_slices_tile_views_resizes_and_layer_norms_are_delegated_with_a_dynamic_batch(tmp_path) -> None:
    from executorch.runtime import Runtime

    from birefnet_edge.export._base import export_program
    from birefnet_edge.export.executorch import count_delegation, lower
    from birefnet_edge.profile import load_profile

    torch.manual_seed(0)
    model = _Shapes().eval()
    profile = load_profile("executorch-fp32").with_overrides(input_size=(64, 64), batch={"min": 1, "opt": 1, "max": 4})
    program = export_program(model, profile)
    before = str(program.graph)
    edge = lower(program, profile)
    assert str(program.graph) == before, "lowering changed the traced program other formats share"
    delegation = count_delegation(edge, "XNNPACK")
    patterns = {"aten.convolution", "aten.view_copy", "aten.upsample_bilinear2d", "aten.native_layer_norm"}
    kept_out = set(delegation.fallback_ops) & patterns
    assert not kept_out, delegation.describe()
    path = tmp_path / "m.pte"
    path.write_bytes(edge.to_executorch().buffer)
    forward = Runtime.get().load_program(path).load_method("forward")
    for batch in (1, 3):
        x = torch.randn(batch, 3, 64, 64)
        with torch.no_grad():
            torch.testing.assert_close(forward.execute([x])[0], model(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape", [(3, 7), (2, 5, 7), (2, 3, 4, 7)])
def test_layer_norm_in_rows_equals_the_kernel(shape) -> None:
    from birefnet_edge.export.executorch import layer_norm_in_rows

    torch.manual_seed(0)
    x, weight, bias = torch.randn(shape, dtype=torch.float64) * 3 + 1, torch.randn(7, dtype=torch.float64), None
    for b in (bias, torch.randn(7, dtype=torch.float64)):
        expected = F.layer_norm(x, (7,), weight, b, 1e-6)
        torch.testing.assert_close(layer_norm_in_rows(x, [7], weight, b, 1e-6), expected, rtol=1e-12, atol=1e-12)
