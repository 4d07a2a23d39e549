"""onnx-int8: ONNX Runtime QDQ quantization of the tiny model, its float layers, its gate; both simplifiers."""

from __future__ import annotations

import platform
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="onnx is not installed (extra 'onnx')")
ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (extra 'onnx')")
pytest.importorskip("onnxscript", reason="onnxscript is not installed (extra 'onnx')")

from birefnet_edge.errors import ExportError  # noqa: E402
from birefnet_edge.formats._quantization import RULES  # noqa: E402

# Few images and a coarse search (3 groups, each ranked on one image): calibration and search stay quick at
# 64 px (the fallback set is used: no --calibration). The search's own behaviour is tested on the search module.
SMALL = {"calibration_images": 6, "held_out_images": 2, "search_groups": 3, "ranking_images": 1}


def _profile(target: str = "onnx-int8", **changes):
    from birefnet_edge.profile import load_profile

    return load_profile(target).with_overrides(input_size=(64, 64), batch={"min": 1, "opt": 2, "max": 4}, **changes)


def _export(model, profile, out: Path):
    from birefnet_edge.export import export_target
    from birefnet_edge.model import WeightsInfo

    weights = WeightsInfo(source="random:birefnet_tiny", variant="birefnet_tiny", deterministic=True)
    return export_target(model, profile, out, weights=weights, variant="birefnet_tiny")


@pytest.fixture(scope="module")
def int8_folder(tiny_model, tmp_path_factory) -> Path:
    result = _export(tiny_model, _profile(quantization=SMALL), tmp_path_factory.mktemp("int8"))
    assert result.ok, result.error
    return result.path


def _dequantized_inputs(proto) -> dict[str, list[str]]:
    """Node name -> its inputs made by a DequantizeLinear node."""
    dq = {out for n in proto.graph.node if n.op_type == "DequantizeLinear" for out in n.output}
    return {n.name: [i for i in n.input if i in dq] for n in proto.graph.node}


def test_int8_keeps_the_dynamic_batch_and_runs_int8_at_batch_1_and_3(
    int8_folder, manifest_of, check_input, reference
) -> None:
    from birefnet_edge import metrics as M
    from birefnet_edge.runtime import open_runner

    proto = onnx.load(str(int8_folder / "model.onnx"))
    assert [v.type.tensor_type.shape.dim[0].dim_param for v in [*proto.graph.input, *proto.graph.output]] == [
        "batch",
        "batch",
    ]
    assert sum(n.op_type == "DequantizeLinear" for n in proto.graph.node) > 0
    with open_runner(int8_folder) as runner:
        assert runner.runtime_info()["executed_precision"].startswith("int8")
        one, three = runner.infer(check_input[:1]), runner.infer(check_input)
    assert one.shape == (1, 1, 64, 64) and three.shape == (3, 1, 64, 64)
    np.testing.assert_allclose(three[:1], one, atol=1e-5)  # per-sample results do not depend on the batch
    assert M.logits_iou(three, reference) >= 0.97, "int8 masks far from PyTorch's"
    manifest = manifest_of(int8_folder)
    record = manifest.export["quantization"]
    assert record["tool"] == "onnxruntime" and 0 < record["quantized_layers"] < record["compute_layers"]
    # The export fixes glibc's mmap threshold for its ONNX Runtime runs (export peak at 1024 px: docs/export.md).
    assert record["fixed_mmap_threshold"] is (platform.libc_ver()[0] == "glibc")
    gate = record["accuracy_gate"]
    assert gate["iou"] >= gate["min_iou"] == pytest.approx(_profile(quantization=SMALL).quantization.min_iou)
    assert record["search"][0]["step"] == 0 and record["calibration"]["representative"] is False
    assert "NOT representative" in manifest.export["warnings"][0]
    assert "onnxruntime" in manifest.tools and manifest.export["checks"]["simplifier"] == "onnxslim"


def test_onnxruntime_runs_the_int8_layers_in_integer_kernels(int8_folder, tmp_path) -> None:
    """With int8 activations ONNX Runtime's x86 CPU provider left quantized convs as float convs that
    dequantize their int8 weights on every run (student-s at 512 px: 26 of 65, no faster than fp32); uint8
    activations with int8 weights are the pairing its kernels fuse. In the session's graph no conv reads a
    DequantizeLinear output, and a matmul does only where its output also feeds a float op (ONNX Runtime fuses
    a layer whose output goes to its QuantizeLinear alone; the tiny Swin has two, before a layer norm)."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(tmp_path / "session.onnx")
    ort.InferenceSession(str(int8_folder / "model.onnx"), options, providers=["CPUExecutionProvider"])
    graph = onnx.load(str(tmp_path / "session.onnx"), load_external_data=False).graph
    dequantized = {out for n in graph.node if n.op_type == "DequantizeLinear" for out in n.output}
    readers: dict[str, list[str]] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node.op_type)
    float_on_int8 = [n for n in graph.node if n.op_type in ("Conv", "MatMul", "Gemm") and set(n.input) & dequantized]
    assert not [n.name for n in float_on_int8 if n.op_type == "Conv"]
    assert all("QuantizeLinear" in readers[n.output[0]] and len(readers[n.output[0]]) > 1 for n in float_on_int8)
    assert sum(n.op_type == "QLinearConv" for n in graph.node) > 10


def test_the_deformable_convs_matmuls_are_int8_per_channel_or_float_as_exported(int8_folder, manifest_of) -> None:
    """Each deformable conv's matmul was turned so that its weight is a per-output-channel int8 initializer
    (export/int8/weight_matmuls.py); one that ended in float reads its (1, O, K) weight as exported, with no
    transposes; the manifest counts both."""
    proto = onnx.load(str(int8_folder / "model.onnx"))
    producer = {out: n for n in proto.graph.node for out in n.output}
    inits = {t.name: t for t in proto.graph.initializer}
    names = {n.name for n in proto.graph.node}
    int8, back = [], []
    for node in (n for n in proto.graph.node if n.op_type == "MatMul"):
        if f"{node.name}_cols_t" in names:
            weight = producer[node.input[1]]
            assert weight.op_type == "DequantizeLinear" and inits[weight.input[0]].data_type == onnx.TensorProto.INT8
            out_channels = inits[weight.input[0]].dims[1]
            assert list(inits[weight.input[1]].dims) == [out_channels] > [1]  # one scale per output channel
            int8.append(node.name)
        elif node.input[0] in inits and len(inits[node.input[0]].dims) == 3:
            assert f"{node.name}_out_t" not in names
            back.append(node.name)
    matmuls = [n for n in proto.graph.node if n.op_type == "MatMul"]
    assert not [n.name for n in matmuls if getattr(producer.get(n.input[0]), "op_type", "") == "Expand"]
    record = manifest_of(int8_folder).export["quantization"]["turned_matmuls"]
    assert record == {"int8": len(int8), "float": len(back)} and len(int8) > 0


def test_layers_the_rules_exclude_read_no_int8_input(int8_folder, manifest_of) -> None:
    proto = onnx.load(str(int8_folder / "model.onnx"))
    dequantized = _dequantized_inputs(proto)
    rows = manifest_of(int8_folder).export["quantization"]["float_layers"]
    by_rule = {rule: [r["name"] for r in rows if r["rule"] == rule] for rule in RULES}
    assert all(by_rule.values()), f"every rule should keep a layer of the tiny model in float: {by_rule}"
    rounded = {name: dequantized[name] for names in by_rule.values() for name in names if dequantized[name]}
    assert not rounded, f"layers kept in float read int8 data: {rounded}"
    convs = [n.name for n in proto.graph.node if n.op_type in ("Conv", "MatMul")]
    assert any(dequantized[name] for name in convs), "no conv/matmul reads int8 data"


def _exporter():
    from birefnet_edge.export import EXPORTERS
    from birefnet_edge.export._base import ArtifactInfo

    return EXPORTERS.get("onnx")(ArtifactInfo("birefnet_tiny-onnx-int8", "birefnet_tiny", {}, {}))


@pytest.fixture(scope="module")
def profile_model():
    """The tiny model in the onnx profiles' graph settings (deformable-conv form and band), as ``export_target``
    hands it to the exporter: the exporter called directly then reads the conversion the other tests made."""
    from birefnet_edge.model import load_model

    profile = _profile()
    return load_model("random:birefnet_tiny", deform=profile.deform, deform_band=profile.deform_band)[0]


def test_gate_fails_when_no_drop_is_allowed_and_no_search(profile_model, tmp_path) -> None:
    profile = _profile(quantization={**SMALL, "max_iou_drop": 0.0, "max_restore_steps": 0})
    with pytest.raises(
        ExportError,
        match=r"int8 accuracy gate failed on \d+ held-out image\(s\).*iou [\d.]+ violates >= 1 \(1 - quantization",
    ):
        _exporter().export(profile_model, profile, tmp_path)


def test_keep_float_nodes_must_name_nodes_of_the_graph(profile_model, tmp_path) -> None:
    profile = _profile(quantization={**SMALL, "keep_float_nodes": ["no_such_node"]})
    with pytest.raises(ExportError, match=r"keep_float_nodes names \['no_such_node'\], which are not nodes"):
        _exporter().export(profile_model, profile, tmp_path)


def test_keep_float_nodes_keeps_a_named_int8_layer_float(int8_folder, tiny_model, tmp_path, manifest_of) -> None:
    dequantized = _dequantized_inputs(onnx.load(str(int8_folder / "model.onnx")))
    name = next(n for n, ins in dequantized.items() if ins and n.startswith("node_conv2d"))
    result = _export(tiny_model, _profile(quantization={**SMALL, "keep_float_nodes": [name]}), tmp_path)
    assert result.ok, result.error
    rows = {r["name"]: r["rule"] for r in manifest_of(result.path).export["quantization"]["float_layers"]}
    assert rows[name] == "keep_float_nodes"
    assert not _dequantized_inputs(onnx.load(str(result.path / "model.onnx")))[name]


def _conv_graph():
    """x -> conv a -> (conv b, conv c, + a) -> sum: a's output feeds a quantized conv, an excluded one and an Add."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weights = [
        numpy_helper.from_array(rng.normal(size=shape).astype(np.float32), name)
        for name, shape in [("wa", (4, 3, 3, 3)), ("ba", (4,)), ("wb", (4, 4, 3, 3)), ("bb", (4,))]
    ]
    nodes = [
        helper.make_node("Conv", ["x", "wa", "ba"], ["a"], name="a", pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["a", "wb", "bb"], ["b"], name="b", pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["a", "wb", "bb"], ["c"], name="c", pads=[1, 1, 1, 1]),  # shares b's weights
        helper.make_node("Sum", ["a", "b", "c"], ["y"], name="sum"),
    ]
    io = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["batch", k, 8, 8]) for n, k in (("x", 3), ("y", 4))]
    graph = helper.make_graph(nodes, "g", [io[0]], [io[1]], initializer=weights)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def test_restoring_layers_gives_back_the_float_model_exactly(tmp_path) -> None:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    from birefnet_edge.export.int8.onnx import restore_float

    float_model, x = _conv_graph(), np.random.default_rng(1).normal(size=(2, 3, 8, 8)).astype(np.float32)
    onnx.save(float_model, str(tmp_path / "f.onnx"))

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter([{"x": x}])

        def get_next(self):
            return next(self.items, None)

    quantize_static(
        str(tmp_path / "f.onnx"), str(tmp_path / "q.onnx"), Reader(), quant_format=QuantFormat.QDQ,
        per_channel=True, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, nodes_to_exclude=["c"],
        op_types_to_quantize=["Conv"],
    )  # fmt: skip
    quantized = onnx.load(str(tmp_path / "q.onnx"))
    readers = _dequantized_inputs(quantized)
    assert readers["c"] and readers["sum"], "ONNX Runtime rewires every reader of a quantized tensor"
    fixed = restore_float(quantized, float_model, {"c"})
    readers = _dequantized_inputs(fixed)
    assert not readers["c"], "the excluded conv still reads int8 data"
    assert readers["sum"], "a reader between int8 convs keeps the rounded value (their fused int8 kernels need it)"

    def run(model) -> np.ndarray:
        return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[
            0
        ]

    expected = run(float_model)
    assert np.abs(run(fixed) - expected).max() > 1e-4, "b should still run in int8"
    # Restoring a and b: the float biases' names are DequantizeLinear outputs in the QDQ graph (the old duplicate).
    np.testing.assert_allclose(run(restore_float(fixed, float_model, {"a", "b"})), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("tool", ["onnxslim", "onnxsim"])
def test_both_simplifiers_keep_the_batch_axis(tiny_model, tmp_path, manifest_of, tool: str) -> None:
    if tool == "onnxsim":
        pytest.importorskip("onnxsim", reason="onnxsim is not installed (extra 'onnxsim')")
    result = _export(tiny_model, _profile("onnx-fp32", name=f"onnx-{tool}", simplifier=tool), tmp_path)
    assert result.ok, result.error
    manifest = manifest_of(result.path)
    assert manifest.export["checks"]["simplifier"] == tool and manifest.export["checks"]["batch_axis"] == "batch"
    other = {"onnxslim": "onnxsim", "onnxsim": "onnxslim"}[tool]
    assert tool in manifest.tools and other not in manifest.tools
    proto = onnx.load(str(result.path / "model.onnx"))
    assert [v.type.tensor_type.shape.dim[0].dim_param for v in [*proto.graph.input, *proto.graph.output]] == [
        "batch",
        "batch",
    ]


def test_lean_calibration_puts_onnxruntime_back_even_after_an_error() -> None:
    from onnxruntime.quantization import calibrate

    from birefnet_edge.export.int8.onnx import _lean_calibration

    original = calibrate.CalibraterBase.create_inference_session
    with pytest.raises(RuntimeError, match="boom"), _lean_calibration():
        assert calibrate.CalibraterBase.create_inference_session is not original
        raise RuntimeError("boom")
    assert calibrate.CalibraterBase.create_inference_session is original


# 24 elementwise steps on an 8 MiB tensor, every step's output tapped by ONNX Runtime's MinMax calibrator.
_CALIBRATION_CHILD = """
import json, sys, tempfile
from pathlib import Path
import numpy as np, onnx, onnxruntime
from onnx import TensorProto, helper
from onnxruntime.quantization import calibrate
from birefnet_edge._rss import peak_rss_bytes
from birefnet_edge.export.int8.onnx import _lean_calibration
if sys.argv[1] == "no_order":
    del onnxruntime.ExecutionOrder  # what an ONNX Runtime without execution orders would give
steps, shape = 24, [1, 2, 1024, 1024]
nodes = [helper.make_node("Relu" if i % 2 else "Neg", [f"t{i}"], [f"t{i + 1}"]) for i in range(steps)]
value = lambda name: helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)
graph = helper.make_graph(nodes, "chain", [value("t0")], [value(f"t{steps}")])
work = Path(tempfile.mkdtemp())
onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), work / "m.onnx")
class Reader(calibrate.CalibrationDataReader):
    def __init__(self):
        self.items = iter([np.ones(shape, np.float32)])
    def get_next(self):
        x = next(self.items, None)
        return None if x is None else {"t0": x}
Path("/proc/self/clear_refs").write_text("5")  # restart the peak here: the imports' own peak is not measured
with _lean_calibration():
    calibrator = calibrate.create_calibrator(work / "m.onnx", augmented_model_path=str(work / "aug.onnx"))
    calibrator.collect_data(Reader())
print(json.dumps(peak_rss_bytes()))
"""


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="measures the peak through Linux's /proc")
def test_lean_calibration_reduces_each_tapped_tensor_as_soon_as_it_exists() -> None:
    """Priority order: the tapped activations are not all alive at once (BiRefNet_lite 1024 px: 8.4 -> 3.7 GB)."""
    import json
    import subprocess
    import sys

    def peak(mode: str) -> int:
        done = subprocess.run([sys.executable, "-c", _CALIBRATION_CHILD, mode], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-2000:]
        return json.loads(done.stdout.strip().splitlines()[-1])

    saved = peak("no_order") - peak("priority")
    assert saved > 100 << 20, f"priority order saved only {saved >> 20} MiB of the 24 x 8 MiB tapped tensors"


def test_onnxruntime_preprocessing_advice_is_not_shown(caplog) -> None:
    import logging

    from birefnet_edge.export.int8.onnx import _no_advice

    with caplog.at_level(logging.WARNING), _no_advice():
        logging.warning("Please consider to run pre-processing before quantization. Refer to example: ...")
        logging.warning("a real warning")
    assert [r.getMessage() for r in caplog.records] == ["a real warning"]
