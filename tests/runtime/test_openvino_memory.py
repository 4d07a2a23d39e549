"""What OpenVINO holds in memory for the tiny model compiled as the runner compiles it (static batch 1)."""

from __future__ import annotations

import pytest


def _compiled_ops(folder):
    ov = pytest.importorskip("openvino", reason="openvino is not installed (extra 'openvino')")
    model = ov.Core().read_model(folder / "model.xml")
    model.reshape({0: [1, 3, 64, 64]})
    compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    return list(compiled.get_runtime_model().get_ops())


def _order(op) -> int:
    return int(op.get_rt_info()["execOrder"].astype(str))


def test_the_full_size_injection_conv_runs_at_the_end(export_tiny) -> None:
    """The head's injection conv reads only the image, so OpenVINO ran it first and held its full-size output
    through the whole call (256 MB at 1024 px for BiRefNet_lite). It must now run after the decoder."""
    ops = _compiled_ops(export_tiny("openvino-fp32"))
    full = [
        op
        for op in ops
        if op.get_rt_info()["layerType"].astype(str) == "Convolution"
        and list(op.get_output_partial_shape(0).to_shape())[-2:] == [64, 64]
    ]
    assert full, "no full-size convolution found in the compiled tiny model"
    last = max(_order(op) for op in ops)
    early = [(op.get_friendly_name(), _order(op)) for op in full if _order(op) < 0.9 * last]
    assert not early, f"full-size convs run early (exec order of {last}): {early}"


def test_live_tensors_at_peak_finds_a_tensor_read_late() -> None:
    """Four matmuls of activations (nothing for the plugin to fuse): ``a`` is read by ``b`` and again by the
    last step ``d``, so it lives through the peak beside two others of the same size (``b`` and ``c``)."""
    ov = pytest.importorskip("openvino", reason="openvino is not installed (extra 'openvino')")
    from openvino import opset13 as ops

    from birefnet_edge.runtime.openvino import live_tensors_at_peak

    x = ops.parameter([256, 256], ov.Type.f32, name="x")
    a = ops.matmul(x, x, False, False, name="a")
    b = ops.matmul(a, a, False, False, name="b")
    c = ops.matmul(b, b, False, False, name="c")
    d = ops.matmul(c, a, False, False, name="d")
    model = ov.Model([d], [x])
    compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    one = 256 * 256 * 4
    peak, top = live_tensors_at_peak(compiled, top=5)
    assert peak == 3 * one
    assert [nbytes for nbytes, _ in top] == [one] * 3
    assert any(what.endswith(" a") for _, what in top), top
    assert live_tensors_at_peak(compiled, top=1)[1] == top[:1]
