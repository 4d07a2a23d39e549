"""A timm backbone (``backbone="timm:<name>"``) through every target, with the batch axis kept dynamic.

The tiny model is birefnet_tiny on timm's own 0.08 M-parameter ``test_efficientnet`` (random weights,
``pretrained=False``); the exports run the same shipped profiles and checks as the plain tiny model.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("timm", reason="timm (extra 'timm') is needed for timm backbones")

BACKBONE = "timm:test_efficientnet"
# Formats whose artifact runs here (CoreML executes only on macOS; TensorRT's engine needs a GPU, its ONNX does not).
RUNNABLE = ("onnx-fp32", "openvino-fp32")


@pytest.fixture(scope="module")
def timm_reference(check_input) -> np.ndarray:
    """PyTorch logits of the exported model, rebuilt the way parity rebuilds it (random weights + overrides)."""
    from birefnet_edge.model import load_model

    model, _ = load_model("random:birefnet_tiny", backbone=BACKBONE)
    with torch.no_grad():
        return model(torch.from_numpy(check_input)).numpy()


# ONNX in the default run; the OpenVINO conversion of the same graph (~35 s on 2 cores) joins the slow run.
@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=[pytest.mark.slow] if n != "onnx-fp32" else []) for n in RUNNABLE]
)
def test_artifact_matches_pytorch_at_batch_1_and_3(
    export_tiny, manifest_of, check_input, timm_reference, assert_close, name: str
) -> None:
    from birefnet_edge.runtime import open_runner

    folder = export_tiny(name, backbone=BACKBONE)
    manifest = manifest_of(folder)
    assert manifest.model_overrides["backbone"] == BACKBONE  # so parity and the PyTorch runner rebuild it
    assert manifest.export["checks"], "exported without checks"
    tol = manifest.get_profile().tolerance.max_abs_logit
    with open_runner(folder) as runner:
        for batch in (1, 3):
            assert_close(runner.infer(check_input[:batch]), timm_reference[:batch], tol, f"{name} batch {batch}")


def test_pytorch_runner_rebuilds_the_timm_model(export_tiny, check_input, timm_reference, assert_close) -> None:
    from birefnet_edge.manifest import read_manifest
    from birefnet_edge.runtime.pytorch import PytorchRunner

    folder = export_tiny("onnx-fp32", backbone=BACKBONE)
    with PytorchRunner.from_artifact(folder, read_manifest(folder)) as runner:
        assert_close(runner.infer(check_input[:2]), timm_reference[:2], 1e-6, "PyTorch reference")


@pytest.mark.openvino
@pytest.mark.slow  # shares the slow OpenVINO export above
def test_openvino_batch_is_dynamic(export_tiny) -> None:
    ov = pytest.importorskip("openvino", reason="openvino is not installed (extra 'openvino')")
    model = ov.Core().read_model(str(export_tiny("openvino-fp32", backbone=BACKBONE) / "model.xml"))
    assert model.inputs[0].get_partial_shape() == ov.PartialShape([ov.Dimension(1, 4), 3, 64, 64])


# The native-DeformConv ONNX of a timm model (~40 s on 2 cores): the plain model's is tested by
# test_export_tensorrt.py and the timm graph's by the onnx-fp32 case above, so this pairing runs in the slow run.
@pytest.mark.slow
def test_tensorrt_ready_onnx_keeps_the_batch_and_matches_in_onnxruntime(
    export_tiny, check_input, timm_reference, assert_close
) -> None:
    onnx = pytest.importorskip("onnx", reason="onnx is not installed (extra 'onnx')")
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (extra 'onnx')")
    path = export_tiny("tensorrt-fp32", backbone=BACKBONE) / "model.onnx"
    proto = onnx.load(str(path))
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch in (1, 3):
        got = session.run(["logits"], {"input": check_input[:batch]})[0]
        assert_close(got, timm_reference[:batch], 1e-3, f"TensorRT-ready ONNX at batch {batch}")


@pytest.mark.coreml
# A second CoreML conversion (~25 s); CoreML cannot run here, and the plain model's conversion is tested.
@pytest.mark.slow
def test_coreml_conversion_keeps_a_batch_range(export_tiny, manifest_of) -> None:
    ct = pytest.importorskip("coremltools", reason="coremltools is not installed (extra 'coreml')")
    folder = export_tiny("coreml-fp32", backbone=BACKBONE)
    spec = ct.models.MLModel(str(folder / "model.mlpackage"), skip_model_load=True).get_spec()
    ranges = spec.description.input[0].type.multiArrayType.shapeRange.sizeRanges
    assert [(r.lowerBound, r.upperBound) for r in ranges] == [(1, 4), (3, 3), (64, 64), (64, 64)]
    assert manifest_of(folder).model_overrides["backbone"] == BACKBONE
