"""The exact GELU's halving is moved where ONNX Runtime fuses the erf chain, without changing a bit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from birefnet_edge.export._onnx_gelu import make_gelu_fusable  # noqa: E402


def _gelu_as_torch_writes_it(extra_reader: bool = False):
    """x -> MatMul -> x * (0.5 * (1 + erf(x / sqrt(2)))), the form torch's exporter gives at opset 18."""
    shape = [2, 16, 32]
    value = lambda name: helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)  # noqa: E731
    inits = [
        numpy_helper.from_array(np.eye(32, dtype=np.float32) * 3, "w"),
        numpy_helper.from_array(np.array(np.sqrt(2), np.float32), "root2"),
        numpy_helper.from_array(np.array(1.0, np.float32), "one"),
        numpy_helper.from_array(np.array(0.5, np.float32), "half"),
    ]
    nodes = [
        helper.make_node("MatMul", ["input", "w"], ["x"]),
        helper.make_node("Div", ["x", "root2"], ["d"]),
        helper.make_node("Erf", ["d"], ["e"]),
        helper.make_node("Add", ["e", "one"], ["a"]),
        helper.make_node("Mul", ["half", "a"], ["h"]),
        helper.make_node("Mul", ["x", "h"], ["y"]),
    ]
    outputs = [value("y")]
    if extra_reader:  # the halved factor is an output too: it must keep its value
        outputs.append(value("h"))
    graph = helper.make_graph(nodes, "gelu", [value("input")], outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def _run(model, level, x, tmp_path: Path | None = None):
    options = ort.SessionOptions()
    options.graph_optimization_level = level
    if tmp_path is not None:
        options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x})


def _optimized_ops(model, tmp_path: Path) -> set[str]:
    x = np.zeros((2, 16, 32), np.float32)
    _run(model, ort.GraphOptimizationLevel.ORT_ENABLE_ALL, x, tmp_path)
    return {node.op_type for node in onnx.load(str(tmp_path / "optimized.onnx")).graph.node}


def test_the_rewritten_gelu_fuses_and_gives_the_same_bits(tmp_path) -> None:
    original = _gelu_as_torch_writes_it()
    assert "Erf" in _optimized_ops(original, tmp_path)  # as exported, ONNX Runtime runs the chain op by op
    rewritten = _gelu_as_torch_writes_it()
    assert make_gelu_fusable(rewritten.graph) == 1
    ops = _optimized_ops(rewritten, tmp_path)
    assert "Erf" not in ops and ops & {"Gelu", "BiasGelu"}, ops
    # Unfused, op by op, the two forms agree to the bit (halving is exact), over a wide range of values.
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((2, 16, 32)) * np.logspace(-3, 3, 32)).astype(np.float32)
    plain = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    np.testing.assert_array_equal(_run(original, plain, x)[0], _run(rewritten, plain, x)[0])
    fused = _run(rewritten, ort.GraphOptimizationLevel.ORT_ENABLE_ALL, x)[0]
    np.testing.assert_allclose(fused, _run(original, plain, x)[0], rtol=1e-5, atol=1e-6)


def test_a_halved_factor_with_another_reader_is_left_alone() -> None:
    model = _gelu_as_torch_writes_it(extra_reader=True)
    before = model.SerializeToString()
    assert make_gelu_fusable(model.graph) == 0
    assert model.SerializeToString() == before


def test_the_exported_models_gelus_all_fuse(onnx_artifact, tmp_path) -> None:
    """Every GELU of the tiny model's ONNX runs fused in ONNX Runtime (one Erf left would be an unfused one)."""
    model = onnx.load(str(onnx_artifact / "model.onnx"))
    ops = [node.op_type for node in model.graph.node]
    assert "Erf" in ops  # the file keeps portable ops (opset 18 has no Gelu)
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(onnx_artifact / "model.onnx"), options, providers=["CPUExecutionProvider"])
    fused = [node.op_type for node in onnx.load(str(tmp_path / "optimized.onnx")).graph.node]
    assert "Erf" not in fused and fused.count("BiasGelu") + fused.count("Gelu") == ops.count("Erf")
