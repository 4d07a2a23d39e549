"""Deformable convolution: portable, native and torchvision forms against the naive reference; ONNX exports."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from birefnet_edge.errors import InputError
from birefnet_edge.model.layers.deform_conv import (
    DEFORM_FORMS,
    DeformableConv2d,
    deform_conv2d_gather,
    deform_conv2d_gather_int,
    deform_conv2d_native,
    deform_conv2d_portable,
    deform_conv2d_reference,
    deform_conv2d_torchvision,
    torchvision_available,
)

# torchvision ships with the `timm` extra (timm imports it); it must be the build made for this torch.
needs_torchvision = pytest.mark.skipif(
    not torchvision_available(), reason="needs torchvision.ops built for this torch (extra 'timm')"
)

# (H, W, k): non-square maps, single rows/columns and 2-pixel sides, every kernel size BiRefNet uses.
SHAPES = [(5, 7, 3), (6, 4, 7), (7, 5, 1), (1, 6, 3), (6, 1, 7), (2, 3, 3), (3, 2, 1), (1, 1, 3), (2, 2, 7)]


def _inputs(height: int, width: int, k: int, dtype: torch.dtype, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Random x, offsets in [-2.5, 2.5) px (so many samples fall outside the image), mask in [0, 2), weight."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 3, height, width, generator=gen, dtype=dtype)
    offset = torch.rand(2, 2 * k * k, height, width, generator=gen, dtype=dtype) * 5 - 2.5
    mask = torch.rand(2, k * k, height, width, generator=gen, dtype=dtype) * 2
    weight = torch.randn(4, 3, k, k, generator=gen, dtype=dtype)
    return x, offset, mask, weight


def _random_block(k: int, form: str, seed: int = 0) -> DeformableConv2d:
    """A block with non-zero offset/modulator weights so the sampling really deforms."""
    torch.manual_seed(seed)
    block = DeformableConv2d(3, 4, k, form=form).eval()
    with torch.no_grad():
        for param in block.parameters():
            param.normal_(0.0, 0.5)
    return block


@pytest.mark.parametrize(("height", "width", "k"), SHAPES)
def test_portable_matches_reference_float64(height: int, width: int, k: int) -> None:
    x, offset, mask, weight = _inputs(height, width, k, torch.float64)
    expected = deform_conv2d_reference(x, offset, mask, weight, k // 2)
    got = deform_conv2d_portable(x, offset, mask, weight, k // 2)
    assert got.shape == (2, 4, height, width)
    torch.testing.assert_close(got, expected, atol=1e-10, rtol=0)


@pytest.mark.parametrize(("height", "width", "k"), SHAPES)
def test_portable_matches_reference_float32(height: int, width: int, k: int) -> None:
    x, offset, mask, weight = _inputs(height, width, k, torch.float64, seed=1)
    expected = deform_conv2d_reference(x, offset, mask, weight, k // 2)
    got = deform_conv2d_portable(*(t.float() for t in (x, offset, mask, weight)), k // 2)
    torch.testing.assert_close(got.double(), expected, atol=1e-5, rtol=1e-5)


GATHER_FORMS = [deform_conv2d_gather, deform_conv2d_gather_int]


@pytest.mark.parametrize("gather", GATHER_FORMS)
@pytest.mark.parametrize("spread", [5.0, 40.0])
@pytest.mark.parametrize(("height", "width", "k"), SHAPES)
def test_gather_matches_reference_float64(height: int, width: int, k: int, spread: float, gather) -> None:
    """Offsets of +-2.5 px and of +-20 px (most corners far outside the map, where clamping moves them)."""
    x, offset, mask, weight = _inputs(height, width, k, torch.float64, seed=2)
    offset = offset * (spread / 5.0)
    expected = deform_conv2d_reference(x, offset, mask, weight, k // 2)
    got = gather(x, offset, mask, weight, k // 2)
    assert got.shape == (2, 4, height, width)
    torch.testing.assert_close(got, expected, atol=1e-10, rtol=0)


@pytest.mark.parametrize("gather", GATHER_FORMS)
def test_gather_matches_portable_float32_on_integer_and_border_offsets(gather) -> None:
    """Whole-pixel offsets (corner weights exactly 0 and 1) and positions exactly on the last row/column."""
    x, _, mask, weight = _inputs(6, 5, 3, torch.float32, seed=4)
    offset = torch.randint(-3, 4, (2, 18, 6, 5)).float()
    offset[:, 0::2, -1] = 0.0  # the last row samples exactly on rows 4, 5, 6 (6 is outside)
    portable = deform_conv2d_portable(x, offset, mask, weight, 1)
    torch.testing.assert_close(gather(x, offset, mask, weight, 1), portable, atol=1e-5, rtol=1e-5)


def test_gather_int_in_bfloat16_samples_where_float64_does_far_from_the_origin() -> None:
    """Computed wholly in bf16 (as OpenVINO's bf16 hint runs it) on a 2x600 map: row + tap + offset is a
    float at 600 that bf16 rounds to a multiple of 4, so positions carried as floats land whole pixels off.
    Integer corners leave only the fraction in bf16: the result is as close as bf16 rounding allows."""
    x, offset, mask, weight = (t.bfloat16().double() for t in _inputs(2, 600, 3, torch.float64, seed=5))
    expected = deform_conv2d_reference(x, offset, mask, weight, 1)
    scale = expected.abs().max()

    def error(gather) -> torch.Tensor:
        return (gather(*(t.bfloat16() for t in (x, offset, mask, weight)), 1).double() - expected).abs()

    exact = error(deform_conv2d_gather_int)
    assert exact.max() < 0.05 * scale and exact.mean() < 0.005 * scale
    assert error(deform_conv2d_gather).max() > 1.0 * scale  # float positions, for contrast: whole pixels off


# A band budget that forces row bands on test-sized maps: 3 channels x 49 taps x 7 x 5 pixels is 5145 elements.
SMALL_BAND = 1200


@pytest.mark.parametrize(("height", "width", "k"), [(7, 5, 7), (6, 4, 3), (9, 2, 1)])
def test_banded_portable_matches_reference(height: int, width: int, k: int) -> None:
    """Uneven bands (the last one shorter), bands of one row, and taps reaching across band edges."""
    x, offset, mask, weight = _inputs(height, width, k, torch.float64, seed=3)
    expected = deform_conv2d_reference(x, offset, mask, weight, k // 2)
    got = deform_conv2d_portable(x, offset, mask, weight, k // 2, band=SMALL_BAND)
    torch.testing.assert_close(got, expected, atol=1e-10, rtol=0)


@pytest.mark.parametrize(("height", "width", "k"), [(7, 5, 7), (6, 4, 3), (9, 2, 1)])
@pytest.mark.parametrize("gather", GATHER_FORMS)
def test_banded_gather_matches_reference(height: int, width: int, k: int, gather) -> None:
    x, offset, mask, weight = _inputs(height, width, k, torch.float64, seed=3)
    expected = deform_conv2d_reference(x, offset, mask, weight, k // 2)
    torch.testing.assert_close(gather(x, offset, mask, weight, k // 2, band=SMALL_BAND), expected, atol=1e-10, rtol=0)


@pytest.mark.parametrize("form", ["gather", "gather_int"])
def test_each_band_adds_only_its_reads_to_the_graph(form: str) -> None:
    """The sampling plan is made once for the map; a band adds its four row reads, their weighted sum, the
    matmul and its NCHW layout: 43-52 aten ops. With a plan per band it added 116-118, most of the text of
    BiRefNet_lite's bf16 model.xml (87 bands at 1024 px)."""
    block = _random_block(7, form, seed=4)
    x = torch.randn(2, 3, 16, 5)

    def graph_ops(band: int) -> int:
        block.band = band
        program = torch.export.export(block, (x,))
        return sum(node.op == "call_function" for node in program.graph.nodes)

    one = graph_ops(1 << 30)
    sixteen = graph_ops(3 * 49 * 5)  # one row per band
    per_band = (sixteen - one) / 15
    assert 10 < per_band <= 55, f"{per_band:.1f} ops per extra band"


@pytest.mark.parametrize("form", ["gather", "gather_int"])
def test_each_band_reads_its_corners_after_the_previous_band_is_combined(form: str) -> None:
    """A data edge orders the bands: otherwise a runtime may read every band's corners before combining any
    (ExecuTorch's XNNPACK partition took all bands' sums in one call and planned all their reads alive at once)."""
    block = _random_block(7, form, seed=5)
    block.band = 3 * 49 * 5  # one row per band
    graph = torch.export.export(block, (torch.randn(2, 3, 4, 5),)).graph
    reads = [n for n in graph.nodes if n.target == torch.ops.aten.embedding.default]
    combines = [n for n in graph.nodes if n.target in (torch.ops.aten.matmul.default, torch.ops.aten.bmm.default)]
    assert len(reads) == 4 * 4 and len(combines) == 4, (len(reads), len(combines))

    def ancestors(node: torch.fx.Node) -> set[torch.fx.Node]:
        seen, todo = set(), [node]
        while todo:
            for parent in todo.pop().all_input_nodes:
                if parent not in seen:
                    seen.add(parent)
                    todo.append(parent)
        return seen

    for band in range(1, 4):
        assert all(combines[band - 1] in ancestors(read) for read in reads[4 * band : 4 * band + 4]), band
    assert not any(combines[0] in ancestors(read) for read in reads[:4])


def test_tracing_a_banded_block_gives_no_tracer_warning() -> None:
    """Converters that trace (coremltools' trace path, OpenVINO from a module) must see a clean trace."""
    import warnings

    block = _random_block(7, "portable", seed=12)
    block.band = SMALL_BAND
    x = torch.randn(2, 3, 7, 5)
    with warnings.catch_warnings():
        warnings.simplefilter("error", torch.jit.TracerWarning)
        traced = torch.jit.trace(block, x)
    torch.testing.assert_close(traced(x[:1]), block(x[:1]), atol=1e-5, rtol=1e-5)


def test_banded_portable_exports_with_dynamic_batch() -> None:
    onnx = pytest.importorskip("onnx", reason="onnx (extra 'onnx') is needed to inspect the graph")
    block = _random_block(7, "portable", seed=11)
    block.band = SMALL_BAND
    proto = _export(block, torch.randn(2, 3, 7, 5))
    assert sum(n.op_type == "GridSample" for n in proto.graph.node) > 1  # really banded
    ranks = onnx.shape_inference.infer_shapes(proto).graph.value_info
    assert max(len(v.type.tensor_type.shape.dim) for v in ranks) <= 5
    for batch in (1, 3):
        x = torch.randn(batch, 3, 7, 5, generator=torch.Generator().manual_seed(20 + batch))
        np.testing.assert_allclose(_ort_run(proto, x), _reference(block, x), atol=1e-4, rtol=1e-4)


def test_reference_samples_outside_image_as_zero() -> None:
    """A 1x1 kernel shifted by exactly one image size reads only zero padding; half a pixel out reads half."""
    x = torch.arange(1.0, 7.0, dtype=torch.float64).reshape(1, 1, 2, 3)
    weight = torch.ones(1, 1, 1, 1, dtype=torch.float64)
    mask = torch.ones(1, 1, 2, 3, dtype=torch.float64)
    far = torch.zeros(1, 2, 2, 3, dtype=torch.float64)
    far[:, 1] = 3.5  # dx = +3.5 moves every sample (and both of its column corners) past the right edge
    for fn in (deform_conv2d_reference, deform_conv2d_portable):
        assert fn(x, far, mask, weight, 0).abs().max().item() == 0.0
    # Exactly on the border x = W the weight of the last column is 0 up to the rounding of the normalisation.
    for fn in (deform_conv2d_reference, deform_conv2d_portable):
        assert fn(x, far - 0.5, mask, weight, 0).abs().max().item() < 1e-12
    half = torch.zeros(1, 2, 2, 3, dtype=torch.float64)
    half[:, 0] = -0.5  # dy = -0.5: row 0 mixes half of row 0 with half of zero padding
    for fn in (deform_conv2d_reference, deform_conv2d_portable):
        out = fn(x, half, mask, weight, 0)
        torch.testing.assert_close(out[0, 0, 0], x[0, 0, 0] / 2)
        torch.testing.assert_close(out[0, 0, 1], (x[0, 0, 0] + x[0, 0, 1]) / 2)


def test_offset_layout_is_dy_then_dx() -> None:
    """Channel 0 shifts rows and channel 1 columns (torchvision / ONNX DeformConv layout)."""
    x = torch.arange(20.0, dtype=torch.float64).reshape(1, 1, 4, 5)
    weight = torch.ones(1, 1, 1, 1, dtype=torch.float64)
    mask = torch.ones(1, 1, 4, 5, dtype=torch.float64)
    offset = torch.zeros(1, 2, 4, 5, dtype=torch.float64)
    offset[:, 0] = 1.0
    for fn in (deform_conv2d_reference, deform_conv2d_portable):
        out = fn(x, offset, mask, weight, 0)
        torch.testing.assert_close(out[0, 0, :3], x[0, 0, 1:])  # one row down
        assert out[0, 0, 3].abs().max().item() == 0.0


@pytest.mark.parametrize("k", [1, 3, 7])
def test_zero_offsets_unit_mask_is_plain_conv(k: int) -> None:
    x, offset, mask, weight = _inputs(6, 5, k, torch.float64)
    expected = F.conv2d(x, weight, padding=k // 2)
    for fn in (deform_conv2d_reference, deform_conv2d_portable):
        torch.testing.assert_close(fn(x, offset * 0, mask * 0 + 1, weight, k // 2), expected, atol=1e-10, rtol=0)


def test_fresh_block_acts_as_plain_conv() -> None:
    """Zero-initialised offset/modulator convs give offsets 0 and mask 2·sigmoid(0) = 1."""
    block = DeformableConv2d(3, 4, 3).eval()
    assert all(p.abs().max() == 0 for p in (*block.offset_conv.parameters(), *block.modulator_conv.parameters()))
    x = torch.randn(2, 3, 8, 6)
    with torch.no_grad():
        torch.testing.assert_close(block(x), F.conv2d(x, block.regular_conv.weight, padding=1), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("k", [1, 3, 7])
def test_native_eager_equals_portable(k: int) -> None:
    x, offset, mask, weight = _inputs(5, 6, k, torch.float32)
    native = deform_conv2d_native(x, offset, mask, weight, k // 2)
    torch.testing.assert_close(native, deform_conv2d_portable(x, offset, mask, weight, k // 2), atol=0, rtol=0)
    block = _random_block(k, "native")
    with torch.no_grad():
        y_native = block(x)
        block.form = "portable"
        torch.testing.assert_close(block(x), y_native, atol=0, rtol=0)


def test_switching_form_keeps_state_dict() -> None:
    block = _random_block(3, "portable")
    before = {k: v.clone() for k, v in block.state_dict().items()}
    block.form = "native"
    after = block.state_dict()
    assert list(after) == ["offset_conv.weight", "offset_conv.bias", "modulator_conv.weight", "modulator_conv.bias",
                           "regular_conv.weight"]  # fmt: skip
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert block.form == "native" and "native" in repr(block)


def test_unknown_form_raises() -> None:
    with pytest.raises(InputError, match=r"unknown deformable-convolution form 'fast'.*'portable', 'native'"):
        DeformableConv2d(3, 4, 3, form="fast")
    block = DeformableConv2d(3, 4, 3)
    with pytest.raises(InputError, match="expected one of"):
        block.form = "fast"
    assert block.form == "portable" and DEFORM_FORMS == ("portable", "native", "gather", "gather_int", "torchvision")


def test_torchvision_form_without_torchvision_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    from birefnet_edge.model.layers import deform_conv

    monkeypatch.setattr(deform_conv, "torchvision_available", lambda: False)  # as where it is not installed
    block = DeformableConv2d(3, 4, 3)
    with pytest.raises(InputError, match="form 'torchvision' needs torchvision"):
        block.form = "torchvision"
    assert block.form == "portable"


@needs_torchvision
@pytest.mark.parametrize(("height", "width", "k"), SHAPES)
def test_torchvision_matches_reference_float64(height: int, width: int, k: int) -> None:
    """torchvision's kernel, the official model's op, agrees with the naive reference on every edge case."""
    x, offset, mask, weight = _inputs(height, width, k, torch.float64, seed=4)
    expected = deform_conv2d_reference(x, offset, mask, weight, k // 2)
    torch.testing.assert_close(deform_conv2d_torchvision(x, offset, mask, weight, k // 2), expected, atol=1e-10, rtol=0)


@needs_torchvision
@pytest.mark.parametrize("k", [1, 3, 7])
def test_torchvision_form_equals_portable_and_native(k: int) -> None:
    """Switching a trained block between the three forms changes nothing beyond float32 rounding."""
    block = _random_block(k, "portable", seed=20 + k)
    x = torch.randn(2, 3, 9, 11, generator=torch.Generator().manual_seed(k))
    outs = {}
    with torch.no_grad():
        for form in DEFORM_FORMS:
            block.form = form
            outs[form] = block(x)
    torch.testing.assert_close(outs["portable"], outs["native"], atol=0, rtol=0)
    torch.testing.assert_close(outs["torchvision"], outs["portable"], atol=1e-5, rtol=1e-5)
    assert outs["torchvision"].abs().max() > 0.1  # a real signal, not two zero maps


@needs_torchvision
def test_torchvision_backward_matches_reference() -> None:
    """The distill teacher and a CUDA student train through torchvision's kernel: its gradients must agree."""
    tensors = [t.requires_grad_() for t in _inputs(4, 5, 3, torch.float64, seed=5)]
    grads_ref = torch.autograd.grad(deform_conv2d_reference(*tensors, 1).square().sum(), tensors)
    grads = torch.autograd.grad(deform_conv2d_torchvision(*tensors, 1).square().sum(), tensors)
    for got, expected in zip(grads, grads_ref, strict=True):
        torch.testing.assert_close(got, expected, atol=1e-8, rtol=1e-8)


def test_portable_backward_matches_reference() -> None:
    """The in-place mask multiply must not break gradients (the distillation trains this form)."""
    tensors = [t.requires_grad_() for t in _inputs(4, 5, 3, torch.float64)]
    grads_ref = torch.autograd.grad(deform_conv2d_reference(*tensors, 1).square().sum(), tensors)
    grads = torch.autograd.grad(deform_conv2d_portable(*tensors, 1).square().sum(), tensors)
    for got, expected in zip(grads, grads_ref, strict=True):
        torch.testing.assert_close(got, expected, atol=1e-8, rtol=1e-8)


# --- ONNX ---------------------------------------------------------------------------------------------------


def _export(block: DeformableConv2d, x: torch.Tensor, table: dict | None = None):
    pytest.importorskip("onnxscript", reason="onnxscript (extra 'onnx') is needed for the dynamo exporter")
    kwargs = {"custom_translation_table": table} if table else {}
    program = torch.onnx.export(
        block, (x,), dynamo=True, opset_version=19, dynamic_shapes=({0: "batch"},), verbose=False, **kwargs
    )
    return program.model_proto


def _ort_run(model_proto, x: torch.Tensor) -> np.ndarray:
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime (extra 'onnx') is needed to run the export")
    session = ort.InferenceSession(model_proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]


def _reference(block: DeformableConv2d, x: torch.Tensor) -> np.ndarray:
    block = block.double()
    with torch.no_grad():
        x64 = x.double()
        offset = block.offset_conv(x64)
        mask = 2 * torch.sigmoid(block.modulator_conv(x64))
        out = deform_conv2d_reference(x64, offset, mask, block.regular_conv.weight, block.padding).numpy()
    block.float()
    return out


@pytest.fixture(scope="module")
def native_onnx():
    """The k=3 native block and its ONNX export through the DeformConv translation table."""
    from birefnet_edge.export._deform_onnx import deform_conv_translation_table

    block = _random_block(3, "native", seed=3)
    return block, _export(block, torch.randn(2, 3, 6, 5), deform_conv_translation_table())


def test_native_export_emits_deform_conv_node(native_onnx) -> None:
    _, proto = native_onnx
    nodes = [n for n in proto.graph.node if n.op_type == "DeformConv"]
    assert len(nodes) == 1, [n.op_type for n in proto.graph.node]
    assert "GridSample" not in {n.op_type for n in proto.graph.node}
    from onnx import helper

    attrs = {a.name: helper.get_attribute_value(a) for a in nodes[0].attribute}
    assert attrs["pads"] == [1, 1, 1, 1] and attrs["strides"] == [1, 1] and attrs["dilations"] == [1, 1]
    assert attrs["group"] == 1 and attrs["offset_group"] == 1 and attrs["kernel_shape"] == [3, 3]
    assert len(nodes[0].input) == 5 and nodes[0].input[3] == "" and nodes[0].input[4]  # no bias, mask given
    opset = {o.domain: o.version for o in proto.opset_import}
    assert opset[""] >= 19


@pytest.mark.parametrize("batch", [1, 3])
def test_native_export_runs_in_onnxruntime(native_onnx, batch: int) -> None:
    # onnxruntime 1.32 has a CPU DeformConv kernel; an older one without it fails here with NOT_IMPLEMENTED.
    block, proto = native_onnx
    x = torch.randn(batch, 3, 6, 5, generator=torch.Generator().manual_seed(batch))
    np.testing.assert_allclose(_ort_run(proto, x), _reference(block, x), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("k", [1, 7])
def test_portable_export_dynamic_batch(k: int) -> None:
    block = _random_block(k, "portable", seed=k)
    proto = _export(block, torch.randn(2, 3, 5, 7))
    ops = {n.op_type for n in proto.graph.node}
    assert "GridSample" in ops and "DeformConv" not in ops
    for batch in (1, 3):
        x = torch.randn(batch, 3, 5, 7, generator=torch.Generator().manual_seed(10 + batch))
        np.testing.assert_allclose(_ort_run(proto, x), _reference(block, x), atol=1e-4, rtol=1e-4)


def test_onnx_tensors_stay_rank_5_or_less() -> None:
    """CoreML refuses rank-6 tensors; check every value the portable export produces."""
    onnx = pytest.importorskip("onnx", reason="onnx (extra 'onnx') is needed to inspect the graph")
    proto = onnx.shape_inference.infer_shapes(_export(_random_block(7, "portable"), torch.randn(1, 3, 4, 6)))
    ranks = {v.name: len(v.type.tensor_type.shape.dim) for v in proto.graph.value_info}
    assert ranks and max(ranks.values()) <= 5, ranks


# --- OpenVINO -------------------------------------------------------------------------------------------------


@pytest.mark.openvino
def test_openvino_graph_never_transposes_the_columns() -> None:
    """OpenVINO's PyTorch frontend reads ``(O, K) @ (B, K, N)`` as transpose + FullyConnected + transpose;
    at 512 px those transposes of the column matrix were 29% of the whole model's time."""
    ov = pytest.importorskip("openvino", reason="openvino (extra 'openvino') is needed for the conversion")
    block = _random_block(7, "portable", seed=5)
    batch = torch.export.Dim("batch", min=1, max=4)
    program = torch.export.export(block, (torch.randn(2, 3, 6, 5),), dynamic_shapes=({0: batch},))
    graph = ov.convert_model(program.run_decompositions({})).get_ops()
    ops = [op.get_type_name() for op in graph]
    assert "MatMul" in ops and "Transpose" not in ops, sorted(ops)
    # Nor broadcasts them: a (1, O, K) @ (B, K, N) matmul under a symbolic batch expanded the columns to their
    # own shape, a broadcast plus a multiply over the whole matrix (23% of a 7x7 layer's time at 256x256).
    columns = [3 * 49, 6 * 5]
    broadcast = [op for op in graph if op.get_type_name() == "Broadcast"]
    assert broadcast and not [op for op in broadcast if list(op.get_output_partial_shape(0))[1:] == columns]


@pytest.mark.openvino
def test_portable_runs_in_openvino_dynamic_batch() -> None:
    ov = pytest.importorskip("openvino", reason="openvino (extra 'openvino') is needed for the conversion")
    block = _random_block(7, "portable", seed=7)
    model = ov.convert_model(block, example_input=torch.randn(2, 3, 6, 5), input=[ov.PartialShape([-1, 3, 6, 5])])
    # f32 explicitly: on CPUs with AVX512-BF16 the CPU plugin otherwise infers in bf16 (errors ~0.1 here).
    compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    for batch in (1, 3):
        x = torch.randn(batch, 3, 6, 5, generator=torch.Generator().manual_seed(20 + batch))
        np.testing.assert_allclose(compiled(x.numpy())[0], _reference(block, x), atol=1e-4, rtol=1e-4)


# --- CoreML ---------------------------------------------------------------------------------------------------


def _to_coreml(block: DeformableConv2d, x: torch.Tensor, route: str):
    ct = pytest.importorskip("coremltools", reason="coremltools (extra 'coreml') is needed for the conversion")
    with torch.no_grad():
        source = torch.jit.trace(block, (x,)) if route == "trace" else torch.export.export(block, (x,))
    if route == "export":
        source = source.run_decompositions({})
    return ct.convert(source, inputs=[ct.TensorType(name="x", shape=x.shape)], convert_to="mlprogram",
                      minimum_deployment_target=ct.target.macOS13, compute_precision=ct.precision.FLOAT32)  # fmt: skip


@pytest.mark.coreml
@pytest.mark.parametrize("route", ["trace", "export"])
def test_portable_converts_to_coreml(route: str) -> None:
    """Both coremltools frontends convert the portable form (it once failed on an int32 size division)."""
    model = _to_coreml(_random_block(3, "portable", seed=5), torch.randn(1, 3, 6, 5), route)
    ops = {op.op_type for fn in model._mil_program.functions.values() for op in fn.operations}
    assert "resample" in ops  # grid_sample's Core ML counterpart


@pytest.mark.coreml
def test_portable_coreml_matches_reference() -> None:
    if sys.platform != "darwin":
        pytest.skip("Core ML execution needs macOS (conversion is checked by test_portable_converts_to_coreml)")
    block, x = _random_block(3, "portable", seed=5), torch.randn(1, 3, 6, 5)
    got = next(iter(_to_coreml(block, x, "export").predict({"x": x.numpy()}).values()))
    np.testing.assert_allclose(got, _reference(block, x), atol=1e-4, rtol=1e-4)
