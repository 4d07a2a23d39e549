"""The deformable conv's ``MatMul(Expand(W), cols)`` turned into ``(colsᵀ · Wᵀ)ᵀ`` for ONNX Runtime's int8.

In the exported form ONNX Runtime's quantizer takes the expanded weight for an activation (one uint8 range for
the whole weight, quantized on every run); turned, the weight is an initializer it quantizes per output channel.
A turned matmul that ends in float is put back, so that it keeps no float transposes of its columns.
"""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="onnx is not installed (extra 'onnx')")
ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (extra 'onnx')")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

OUT, K, N = 8, 18, 40


def _banded(chain: bool = False) -> onnx.ModelProto:
    """Two bands of one deformable conv: each ``MatMul(Expand(W), cols_i)``, one shared (1, O, K) weight, as
    torch's exporter writes ``bmm(W.expand(B, O, K), cols)``; with ``chain``, ``W`` is ``Unsqueeze(Reshape(w))``
    of the conv's (O, C, k, k) weight, as the exporter leaves the 7x7 deformable convs' weights."""
    rng = np.random.default_rng(0)
    weight = (rng.standard_normal((1, OUT, K)) * (1 + np.arange(OUT)[None, :, None])).astype(np.float32)
    folded = [
        helper.make_node("Reshape", ["conv_weight", "o_by_k"], ["flat"], allowzero=1),
        helper.make_node("Unsqueeze", ["flat", "zero"], ["w"]),
    ]
    constants = [
        numpy_helper.from_array(weight.reshape(OUT, 2, 3, 3), "conv_weight"),
        numpy_helper.from_array(np.array([OUT, K], np.int64), "o_by_k"),
        numpy_helper.from_array(np.array([0], np.int64), "zero"),
    ]
    nodes = [
        *(folded if chain else []),
        helper.make_node("Shape", ["x"], ["batch"], end=1),
        helper.make_node("Concat", ["batch", "ok"], ["expanded_shape"], axis=0),
        helper.make_node("Expand", ["w", "expanded_shape"], ["expanded"]),
        helper.make_node("Split", ["x", "halves"], ["cols_0", "cols_1"], axis=2),
        helper.make_node("MatMul", ["expanded", "cols_0"], ["out_0"], name="bmm_0"),
        helper.make_node("MatMul", ["expanded", "cols_1"], ["out_1"], name="bmm_1"),
        helper.make_node("Concat", ["out_0", "out_1"], ["y"], axis=2),
    ]
    graph = helper.make_graph(
        nodes,
        "bands",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", K, 2 * N])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", OUT, 2 * N])],
        [
            *(constants if chain else [numpy_helper.from_array(weight, "w")]),
            numpy_helper.from_array(np.array([OUT, K], np.int64), "ok"),
            numpy_helper.from_array(np.array([N, N], np.int64), "halves"),
        ],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def _run(proto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def _inputs(count: int) -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    return [rng.standard_normal((2, K, 2 * N)).astype(np.float32) for _ in range(count)]


def _quantized(proto, tmp_path):
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter(_inputs(4))

        def get_next(self):
            x = next(self.items, None)
            return None if x is None else {"x": x}

    onnx.save(proto, str(tmp_path / "float.onnx"))
    quantize_static(  # the export's settings (export/int8/onnx.py)
        str(tmp_path / "float.onnx"),
        str(tmp_path / "int8.onnx"),
        Reader(),
        quant_format=QuantFormat.QDQ,
        op_types_to_quantize=["MatMul"],
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
    )
    return onnx.load(str(tmp_path / "int8.onnx"))


@pytest.mark.parametrize("chain", [False, True])
def test_turned_matmuls_give_the_same_output_and_read_a_k_by_o_weight(chain) -> None:
    from birefnet_edge.export.int8.onnx import _turn_weight_matmuls

    original, proto = _banded(chain), _banded(chain)
    turned, originals = _turn_weight_matmuls(proto)
    assert set(turned) == {"bmm_0", "bmm_1"} and set(originals) == {"w_folded" if chain else "w"}
    onnx.checker.check_model(proto)
    weights = {t.name: list(t.dims) for t in proto.graph.initializer}
    matmuls = [n for n in proto.graph.node if n.op_type == "MatMul"]
    assert [n.name for n in matmuls] == ["bmm_0", "bmm_1"]  # the names the rules and the search use
    assert all(weights[n.input[1]] == [K, OUT] for n in matmuls)
    assert not {"Expand", "Reshape", "Unsqueeze"} & {n.op_type for n in proto.graph.node}  # nothing reads them
    assert not {"w", "conv_weight"} & set(weights)
    for x in _inputs(2):
        np.testing.assert_allclose(_run(proto, x), _run(original, x), rtol=1e-5, atol=1e-4)


def test_int8_turned_matmuls_get_per_channel_weights_and_fuse(tmp_path) -> None:
    """The weight's DequantizeLinear carries O scales on its output-channel axis, and ONNX Runtime runs the
    matmul as QLinearMatMul; the exported form had one scale and dequantized the weight on every run."""
    from birefnet_edge.export.int8.onnx import _turn_weight_matmuls

    proto = _banded()
    _turn_weight_matmuls(proto)
    quantized = _quantized(proto, tmp_path)
    producer = {out: n for n in quantized.graph.node for out in n.output}
    inits = {t.name: t for t in quantized.graph.initializer}
    for node in (n for n in quantized.graph.node if n.op_type == "MatMul"):
        dequantize = producer[node.input[1]]
        assert dequantize.op_type == "DequantizeLinear"
        assert list(inits[dequantize.input[1]].dims) == [OUT]  # one scale per output channel
        assert inits[dequantize.input[0]].data_type == TensorProto.INT8
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "session.onnx")
    ort.InferenceSession(quantized.SerializeToString(), options, providers=["CPUExecutionProvider"])
    ops = [n.op_type for n in onnx.load(str(tmp_path / "session.onnx")).graph.node]
    assert ops.count("QLinearMatMul") == 2 and "MatMul" not in ops


@pytest.mark.parametrize("chain", [False, True])
def test_a_turned_matmul_restored_to_float_is_put_back(tmp_path, chain) -> None:
    """After the search restores ``bmm_1`` to float it reads the (1, O, K) weight and its columns again, with no
    transposes, and gives the float output; ``bmm_0`` stays turned and int8."""
    from birefnet_edge.export.int8.onnx import _drop_unread, _turn_weight_matmuls, restore_float
    from birefnet_edge.export.int8.weight_matmuls import unturn_float

    original, proto = _banded(chain), _banded(chain)
    turned, originals = _turn_weight_matmuls(proto)
    mixed = restore_float(_quantized(proto, tmp_path), proto, {"bmm_1"})
    assert unturn_float(mixed, turned, originals) == ["bmm_1"]
    _drop_unread(mixed.graph)
    onnx.checker.check_model(mixed)
    nodes = {n.name: n for n in mixed.graph.node}
    weight = "w_folded" if chain else "w"
    assert list(nodes["bmm_1"].input) == [weight, "cols_1"] and list(nodes["bmm_1"].output) == ["out_1"]
    assert "bmm_1_cols_t" not in nodes and "bmm_1_out_t" not in nodes and "bmm_0_cols_t" in nodes
    x = _inputs(1)[0]
    float_half, mixed_out = _run(original, x)[:, :, N:], _run(mixed, x)
    np.testing.assert_allclose(mixed_out[:, :, N:], float_half, rtol=1e-5, atol=1e-4)
    assert not np.allclose(mixed_out[:, :, :N], _run(original, x)[:, :, :N], rtol=1e-5, atol=1e-4)  # int8
