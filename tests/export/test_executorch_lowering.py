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
    resize (the decoder); in BiRefNet_lite's Swin the layer norms over tokens and over an NHWC map, and the
    attention with an additive mask."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(6, 4, 1, bias=False)
        self.tokens = torch.nn.LayerNorm(16)
        self.pixels = torch.nn.LayerNorm(16, eps=1e-6)
        self.head = torch.nn.Conv2d(16, 1, 1)
        n = 32 * 32  # tokens at 64 px: the tiles are 32x32
        self.register_buffer("mask", (torch.arange(n).view(n, 1) % 3 != torch.arange(n) % 3) * -100.0)
        for norm in (self.tokens, self.pixels):  # not the identity affine of a fresh module
            torch.nn.init.normal_(norm.weight)
            torch.nn.init.normal_(norm.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.conv2d(x, self.conv.weight[:, :3]) + F.conv2d(x * 2, self.conv.weight[:, 3:])
        b, c, h, w = y.shape
        tiles = y.reshape(-1, 2, h // 2, 2, w // 2).permute(0, 1, 3, 2, 4).reshape(-1, c * 4, h // 2, w // 2)
        tokens = self.tokens(tiles.flatten(2).transpose(1, 2))
        n = tokens.shape[1]
        heads = tokens.reshape(-1, n, 2, c * 2).transpose(1, 2)  # (B, 2 heads, N, 8)
        attended = F.scaled_dot_product_attention(heads, heads * 0.5, heads, attn_mask=self.mask)
        tokens = tokens + attended.transpose(1, 2).reshape(-1, n, c * 4)
        nhwc = self.pixels(tokens.reshape(-1, h // 2, w // 2, c * 4))
        return F.interpolate(self.head(nhwc.permute(0, 3, 1, 2)), size=(h, w), mode="bilinear", align_corners=True)


def test_weight_slices_views_resizes_norms_and_attention_are_delegated_with_a_dynamic_batch(tmp_path) -> None:
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
    attention = {"aten.where", "aten.any", "aten.eq", "aten.logical_not", "aten._safe_softmax"}
    kept_out = set(delegation.fallback_ops) & (patterns | attention)
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


class _Portable(torch.nn.Module):
    """A small conv (XNNPACK) after a cumulative sum over a large map (no XNNPACK kernel: portable)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for dim in (2, 3) * 4:
            x = torch.cumsum(x, dim=dim)
        return self.conv(x)


class _Delegated(torch.nn.Module):
    """Convolutions only: everything in one XNNPACK partition."""

    def __init__(self) -> None:
        super().__init__()
        convs = [torch.nn.Conv2d(3, 32, 3, padding=1)] + [torch.nn.Conv2d(32, 32, 3, padding=1) for _ in range(3)]
        self.convs = torch.nn.Sequential(*convs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.convs(x)


def test_time_share_comes_from_the_runtime_profiler(tmp_path) -> None:
    from birefnet_edge.export._base import export_program
    from birefnet_edge.export.executorch import count_delegation, lower, measure_time_share
    from birefnet_edge.profile import load_profile

    profile = load_profile("executorch-fp32").with_overrides(
        input_size=(256, 256), batch={"min": 1, "opt": 1, "max": 2}
    )
    shares = {}
    for name, module in (("delegated", _Delegated()), ("portable", _Portable())):
        edge = lower(export_program(module.eval(), profile), profile)
        assert count_delegation(edge, "XNNPACK").partitions == 1
        path = tmp_path / f"{name}.pte"
        path.write_bytes(edge.to_executorch().buffer)
        shares[name] = measure_time_share(path, (1, 3, 256, 256), threads=1)
    # The conv stack's work is all in XNNPACK; the cumulative sums, hundreds of times the 1x1 conv's, are not.
    assert shares["delegated"] > 0.8, shares
    assert shares["portable"] < 0.5, shares


def test_layer_norm_over_several_dimensions_keeps_the_kernel() -> None:
    from birefnet_edge.export.executorch import decompose_for_xnnpack

    norm = torch.nn.LayerNorm((4, 7))
    program = decompose_for_xnnpack(torch.export.export(norm, (torch.randn(2, 3, 4, 7),)))
    x = torch.randn(2, 3, 4, 7)
    torch.testing.assert_close(program.module()(x), norm(x))


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("scale", [None, 0.3])
def test_attention_in_matmuls_equals_the_op(masked, scale) -> None:
    from birefnet_edge.export.executorch import attention_in_matmuls

    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, 5, 4, dtype=torch.float64) for _ in range(3))
    mask = torch.randn(5, 5, dtype=torch.float64) * 50 if masked else None
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)
    torch.testing.assert_close(attention_in_matmuls(q, k, v, mask, scale=scale), expected, rtol=1e-12, atol=1e-12)
    causal = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # not ours: the reference math
    torch.testing.assert_close(attention_in_matmuls(q, k, v, is_causal=True), causal, rtol=1e-12, atol=1e-12)


class _Head(torch.nn.Module):
    """Two convs to one logits channel: the output an artifact's contract asks for, all in XNNPACK."""

    def __init__(self) -> None:
        super().__init__()
        self.convs = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.Conv2d(8, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.convs(x)


@pytest.mark.parametrize("full_check", [False, True])
def test_the_time_share_is_profiled_on_the_checked_program_only(monkeypatch, tmp_path, full_check) -> None:
    """At the reduced check size by default (a full-size run of BiRefNet_lite at 1024 px holds ~6 GB), at the
    artifact's own size with full_check; the manifest, the notes and the report say which size."""
    import json

    import birefnet_edge.export.executorch as executorch
    from birefnet_edge.delegation import Delegation
    from birefnet_edge.export import export_target
    from birefnet_edge.model import WeightsInfo
    from birefnet_edge.profile import load_profile

    profiled = []
    measure = executorch.measure_time_share
    monkeypatch.setattr(
        executorch,
        "measure_time_share",
        lambda path, shape, threads: profiled.append(shape) or measure(path, shape, threads),
    )
    torch.manual_seed(0)
    profile = load_profile("executorch-fp32").with_overrides(
        input_size=(320, 320), batch={"min": 1, "opt": 1, "max": 2}
    )
    weights = WeightsInfo(source="random:head", variant="head", deterministic=True)
    result = export_target(_Head().eval(), profile, tmp_path, weights=weights, variant="head", full_check=full_check)
    assert result.ok, result.error
    side = 320 if full_check else 256
    assert profiled == [(1, 3, side, side)]
    manifest = json.loads((result.path / "manifest.json").read_text())
    record = manifest["export"]["delegation"]
    assert 0 < record["time_share"] <= 1 and record["time_share_input"] == [side, side]
    assert manifest["export"]["checks"]["check_size"] == [side, side]
    described = Delegation.from_dict(record).describe()
    assert described.endswith(f"of time at {side}x{side}") and f"delegation: {described}" in manifest["export"]["notes"]


def test_the_memory_plan_is_recorded_at_the_batch_upper_bound(tmp_path) -> None:
    """ExecuTorch plans every tensor for the largest batch: the record says how much, and a bound above 1 warns."""
    from birefnet_edge.export._base import export_program
    from birefnet_edge.export.executorch import lower, planned_memory_details, write_program
    from birefnet_edge.profile import load_profile

    planned, details = {}, {}
    for bound in (1, 4):
        profile = load_profile("executorch-fp32").with_overrides(
            input_size=(64, 64), batch={"min": 1, "opt": 1, "max": bound}
        )
        edge = lower(export_program(_Portable().eval(), profile), profile)
        size, planned[bound] = write_program(edge, tmp_path / f"m{bound}.pte", profile)
        assert size == (tmp_path / f"m{bound}.pte").stat().st_size
        details[bound] = planned_memory_details(planned[bound], bound)
    # The cumulative sums' (B, 3, 64, 64) float tensors live outside XNNPACK: planned, 4x for 4 images.
    assert planned[1] >= 3 * 64 * 64 * 4 and planned[4] == pytest.approx(4 * planned[1], rel=0.01)
    assert details[4]["memory"] == {"planned_bytes": planned[4], "batch_upper_bound": 4}
    assert "warnings" not in details[1] and "for batch 4 whatever batch runs" in details[4]["warnings"][0]


def test_a_program_too_large_to_load_names_its_memory_plan(monkeypatch, tmp_path) -> None:
    """BiRefNet_lite at 1024 px planned for 8 images could not be read back (std::bad_alloc): say why, what to lower."""
    from executorch.runtime import Runtime

    from birefnet_edge.errors import ExportError
    from birefnet_edge.export.executorch import check_program
    from birefnet_edge.profile import load_profile

    def load_program(self, *args, **kwargs):
        raise MemoryError("std::bad_alloc")

    monkeypatch.setattr(Runtime, "load_program", load_program)
    profile = load_profile("executorch-fp32").with_overrides(batch={"min": 1, "opt": 1, "max": 8})
    with pytest.raises(
        ExportError, match=r"plans 41\.2 GB of activations, sized for batch 8.*\[options\] program_batch"
    ):
        check_program(tmp_path / "model.pte", profile, planned=41_200_000_000)


@pytest.mark.parametrize("program_batch", [1, 0])
def test_the_program_takes_program_batch_images_and_the_runner_slices_larger_batches(tmp_path, program_batch) -> None:
    """program_batch = 1 (shipped): a batch-1 program, planned for one image, that still serves the profile's
    range in slices; 0: a dynamic batch up to batch.max, planned (and warned about) for all of it."""
    import json

    import numpy as np

    from birefnet_edge.export import export_target
    from birefnet_edge.model import WeightsInfo
    from birefnet_edge.profile import load_profile
    from birefnet_edge.runtime import open_runner

    torch.manual_seed(0)
    model = _Head().eval()
    profile = load_profile("executorch-fp32").with_overrides(
        input_size=(64, 64), batch={"min": 1, "opt": 2, "max": 4}, options={"program_batch": program_batch}
    )
    weights = WeightsInfo(source="random:head", variant="head", deterministic=True)
    result = export_target(model, profile, tmp_path, weights=weights, variant="head")
    assert result.ok, result.error
    export = json.loads((result.path / "manifest.json").read_text())["export"]
    bound = program_batch or 4
    assert export["checks"]["input_upper_bound"] == [bound, 3, 64, 64]
    assert export["memory"]["batch_upper_bound"] == bound
    if program_batch:
        assert export["batch"]["sizes"] == [1] and export["batch"]["program_max"] == 1
        assert not any("plans activations at the batch upper bound" in w for w in result.warnings)
    else:
        assert "batch" not in export and any("holds" in w and "for batch 4" in w for w in result.warnings)
    x = torch.randn(3, 3, 64, 64)
    # The bindings copy each output with a torch op; torch's OpenMP workers then spin and take the cores from
    # XNNPACK (student-s int8 at 512 px on 2 cores: 14.3 against 7.8 ms), so torch gets one thread per call.
    seen: list[int] = []
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with open_runner(result.path) as runner:
            method = runner._method

            class Recording:
                def execute(self, inputs):
                    seen.append(torch.get_num_threads())
                    return method.execute(inputs)

            runner._method = Recording()
            out = runner.infer(x.numpy())
            assert runner.runtime_info().get("program_batch", 0) == program_batch
            assert torch.get_num_threads() == 2  # the caller's count comes back
    finally:
        torch.set_num_threads(before)
    assert seen == [1] * (3 if program_batch else 1)  # one call per slice, torch on one thread in each
    with torch.no_grad():
        np.testing.assert_allclose(out, model(x).numpy(), rtol=1e-5, atol=1e-5)


def test_the_bands_of_a_deformable_conv_stay_ordered_through_the_lowering() -> None:
    """Each band's row reads (outside XNNPACK) come after the previous band's delegate call, not all first: the
    order edge survives ExecuTorch's passes, so the plan holds one band's reads (BiRefNet_lite 512 px: 207 MB,
    1040 MB with every read of the 7x7 conv alive together)."""
    from birefnet_edge.export.executorch import lower
    from birefnet_edge.model.layers.deform_conv import DeformableConv2d
    from birefnet_edge.profile import load_profile

    torch.manual_seed(0)
    conv = DeformableConv2d(8, 4, kernel_size=3, form="gather").eval()
    conv.band = 8 * 9 * 4 * 16  # 4 rows of the 16 x 16 map per band: 4 bands
    program = torch.export.export(conv, (torch.randn(1, 8, 16, 16),))
    edge = lower(program, load_profile("executorch-fp32"))
    steps = []
    for node in edge.exported_program().graph.nodes:
        if node.op == "call_function" and "executorch_call_delegate" in str(node.target):
            steps.append("call")
        elif node.op == "call_function" and "embedding" in str(node.target):
            steps.append("read")
    runs = [step for i, step in enumerate(steps) if i == 0 or steps[i - 1] != step]  # consecutive steps merged
    assert steps.count("read") == 4 * 4 and runs.count("read") == 4, steps  # each band's 4 reads together
    assert runs[-1] == "call" and runs.index("call") < len(runs) - 1, steps  # calls between the bands' reads
