"""ONNX artifacts: symbolic ``batch`` axis, float32 I/O for fp16, metadata, and ONNX Runtime == PyTorch."""

from __future__ import annotations

import json

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="onnx is not installed (extra 'onnx')")
ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (extra 'onnx')")
pytest.importorskip("onnxscript", reason="onnxscript is not installed (extra 'onnx')")

PROFILES = ("onnx-fp32", "onnx-fp16")


def _model(folder):
    return onnx.load(str(folder / "model.onnx"))


@pytest.mark.parametrize("name", PROFILES)
def test_batch_axis_is_the_symbol_batch(export_tiny, name: str) -> None:
    proto = _model(export_tiny(name))
    for value in [*proto.graph.input, *proto.graph.output]:
        dims = value.type.tensor_type.shape.dim
        assert dims[0].dim_param == "batch", f"{value.name} batch axis is {dims[0]}"
        assert [d.dim_value for d in dims[1:]] == ([3, 64, 64] if value.name == "input" else [1, 64, 64])
    assert [v.name for v in proto.graph.input] == ["input"] and [v.name for v in proto.graph.output] == ["logits"]


@pytest.mark.parametrize("name", PROFILES)
def test_onnxruntime_matches_pytorch_at_batch_1_and_3(
    export_tiny, manifest_of, check_input, reference, assert_close, name
) -> None:
    folder = export_tiny(name)
    tol = manifest_of(folder).get_profile().tolerance.max_abs_logit
    session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    for batch in (1, 3):
        got = session.run(["logits"], {"input": check_input[:batch]})[0]
        assert_close(got, reference[:batch], tol, f"{name} at batch {batch}")
    recorded = manifest_of(folder).export["checks"]["onnxruntime"]
    assert set(recorded) == {"batch_1", "batch_3"} and recorded["batch_3"]["max_abs_logit"] <= tol


def test_fp16_keeps_float32_io_and_stores_float16_weights(export_tiny) -> None:
    proto = _model(export_tiny("onnx-fp16"))
    float32, float16 = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16
    assert all(v.type.tensor_type.elem_type == float32 for v in [*proto.graph.input, *proto.graph.output])
    kinds = [init.data_type for init in proto.graph.initializer if init.data_type in (float32, float16)]
    assert kinds.count(float16) > kinds.count(float32), "most weights should be float16"
    fp32 = _model(export_tiny("onnx-fp32"))
    assert all(init.data_type != float16 for init in fp32.graph.initializer)


def test_fp16_is_half_the_size_and_less_exact_than_fp32(export_tiny, check_input, reference) -> None:
    sizes, errors = {}, {}
    for name in PROFILES:
        path = export_tiny(name) / "model.onnx"
        sizes[name] = path.stat().st_size
        got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input": check_input})[0]
        errors[name] = float(np.abs(got - reference).max())
    assert sizes["onnx-fp16"] < 0.6 * sizes["onnx-fp32"]
    assert errors["onnx-fp32"] < 1e-4 < errors["onnx-fp16"], errors


def test_metadata_props_carry_the_contract(export_tiny) -> None:
    props = {p.key: p.value for p in _model(export_tiny("onnx-fp32")).metadata_props}
    assert props["birefnet_edge.variant"] == "birefnet_tiny"
    assert props["birefnet_edge.weights.source"] == "random:birefnet_tiny"
    assert props["birefnet_edge.weights.deterministic"] == "true"
    assert {"birefnet_edge.weights.revision", "birefnet_edge.weights.sha256"} <= set(props)
    assert json.loads(props["birefnet_edge.mean"]) == pytest.approx([0.485, 0.456, 0.406])
    assert json.loads(props["birefnet_edge.std"]) == pytest.approx([0.229, 0.224, 0.225])
    assert json.loads(props["birefnet_edge.size"]) == [64, 64]
    assert props["birefnet_edge.output"].startswith("logits")
    assert json.loads(props["birefnet_edge.contract"])["output_name"] == "logits"


def test_checker_opset_and_simplification(export_tiny, manifest_of) -> None:
    folder = export_tiny("onnx-fp32")
    onnx.checker.check_model(str(folder / "model.onnx"), full_check=True)
    proto = _model(folder)
    assert next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) == 18
    checks = manifest_of(folder).export["checks"]
    assert checks["simplified"] is True and checks["batch_axis"] == "batch" and checks["onnx_checker"] == "passed"
    assert "GridSample" in checks["ops"] and "DeformConv" not in checks["ops"]  # portable form


def test_simplification_that_fixes_the_batch_is_refused() -> None:
    from birefnet_edge.errors import ExportError
    from birefnet_edge.export.onnx import check_batch_axis
    from birefnet_edge.profile import load_profile

    profile = load_profile("onnx-fp32")
    x = onnx.helper.make_tensor_value_info("input", onnx.TensorProto.FLOAT, [1, 3, 64, 64])
    y = onnx.helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, ["batch", 1, 64, 64])
    graph = onnx.helper.make_graph([onnx.helper.make_node("Identity", ["input"], ["logits"])], "g", [x], [y])
    with pytest.raises(ExportError, match=r"after simplification .*input batch axis is 1, expected the symbol 'batch'"):
        check_batch_axis(onnx.helper.make_model(graph), profile, "simplification")


# Swin's patch embedding of the tiny model: a 4x4 stride-4 conv from 3 to 32 channels, 16x16 outputs at 64 px
# and 8x8 on the half-size pass of the multi-scale input. The int8 search weighs restore costs with these.
PATCH_EMBED_MACS = {16 * 16 * 32 * (3 * 4 * 4), 8 * 8 * 32 * (3 * 4 * 4)}


def test_the_int8_search_counts_every_conv_and_matmul_of_the_graph(export_tiny) -> None:
    from birefnet_edge.export.int8.onnx import QUANTIZED_OPS, model_macs

    proto = _model(export_tiny("onnx-fp32"))
    macs = model_macs(proto)
    assert sorted(macs) == sorted(n.name for n in proto.graph.node if n.op_type in QUANTIZED_OPS)
    assert min(macs.values()) > 0 and set(macs.values()) >= PATCH_EMBED_MACS
