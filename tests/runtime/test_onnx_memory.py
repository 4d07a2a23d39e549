"""What ONNX Runtime holds alive at the peak of a call (``runtime.onnx.live_tensors_at_peak``)."""

from __future__ import annotations

import numpy as np
import pytest


def test_live_tensors_at_peak_finds_a_tensor_read_late_through_a_view(tmp_path) -> None:
    """Four matmuls of activations: ``a`` is read by ``b`` and, through a reshape (a view, not a tensor of
    its own), by the last step ``d``, so it lives through the peak beside two others of its size."""
    onnx = pytest.importorskip("onnx", reason="onnx is not installed (extra 'onnx')")
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (extra 'onnx')")
    from onnx import TensorProto, helper, numpy_helper

    from birefnet_edge.runtime.onnx import live_tensors_at_peak

    value = lambda name: helper.make_tensor_value_info(name, TensorProto.FLOAT, [256, 256])  # noqa: E731
    nodes = [
        helper.make_node("MatMul", ["x", "x"], ["a"], name="a"),
        helper.make_node("MatMul", ["a", "a"], ["b"], name="b"),
        helper.make_node("MatMul", ["b", "b"], ["c"], name="c"),
        helper.make_node("Reshape", ["a", "shape"], ["a_view"], name="a_view"),
        helper.make_node("MatMul", ["c", "a_view"], ["d"], name="d"),
    ]
    shape = numpy_helper.from_array(np.array([256, 256], np.int64), "shape")
    graph = helper.make_graph(nodes, "late", [value("x")], [value("d")], [shape])
    path = tmp_path / "late.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), path)
    x = np.random.default_rng(0).standard_normal((256, 256)).astype(np.float32) / 16
    one = 256 * 256 * 4
    peak, top = live_tensors_at_peak(path, x, top=5)
    assert peak == 3 * one
    assert [nbytes for nbytes, _ in top] == [one] * 3
    assert any(what.endswith(" a") for _, what in top), top
    assert live_tensors_at_peak(path, x, top=1)[1] == top[:1]
