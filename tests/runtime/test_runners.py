"""Runners on tiny artifacts: outputs match PyTorch, inputs are checked, unrunnable ones say why."""

from __future__ import annotations

import shutil
import sys

import numpy as np
import pytest
import torch

from birefnet_edge.errors import ArtifactError, InputError, WeightsError
from birefnet_edge.formats import FORMAT_OPTIONS
from birefnet_edge.manifest import read_manifest
from birefnet_edge.model import deterministic_input
from birefnet_edge.runtime import RUNNERS, PytorchRunner, open_model, open_reference, open_runner

# One test case per registered runner; test_every_runner_is_tested fails when a new one has none.
RUNNER_TESTS = {
    "pytorch": "test_pytorch_runner_from_weights",
    "onnx": "test_artifact_runner_matches_pytorch[onnx]",
    "openvino": "test_artifact_runner_matches_pytorch[openvino]",
    "coreml": "test_coreml_refuses_off_macos / test_coreml_runner_on_macos",
    "tensorrt": "test_tensorrt_without_engine / test_tensorrt_engine_matches_pytorch",
}


def test_every_runner_is_tested():
    assert set(RUNNERS.names()) == set(RUNNER_TESTS), "add a test case for every registered runner"


def test_every_profile_format_has_a_runner():
    missing = [f for f in FORMAT_OPTIONS.names() if f not in RUNNERS]
    assert not missing, f"formats without a runner: {missing}"


@pytest.fixture(scope="module")
def reference_logits(onnx_artifact) -> np.ndarray:
    with open_reference(onnx_artifact) as ref:
        return ref.infer(deterministic_input(3, 64, 64))


@pytest.mark.parametrize("kind", ["onnx", pytest.param("openvino", marks=pytest.mark.openvino)])
def test_artifact_runner_matches_pytorch(kind, request, reference_logits):
    artifact = request.getfixturevalue(f"{kind}_artifact")
    x = deterministic_input(3, 64, 64)
    with open_runner(artifact) as runner:
        assert runner.is_active and runner.target == kind
        assert runner.load_time is not None and runner.load_time > 0
        out3 = runner.infer(x)
        assert runner.last_inference_time is not None and runner.last_inference_time > 0
        out1 = np.concatenate([runner.infer(x[i : i + 1]) for i in range(3)])
        info = runner.runtime_info()
    assert not runner.is_active
    assert out3.shape == (3, 1, 64, 64) and out3.dtype == np.float32
    np.testing.assert_allclose(out3, reference_logits, atol=1e-4)
    np.testing.assert_allclose(out1, out3, atol=1e-4)
    if kind == "onnx":
        assert "CPUExecutionProvider" in info["providers"]
    else:
        assert info["config"]["INFERENCE_PRECISION_HINT"] == "f32"  # fp32 parity must not run in bf16


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: np.zeros((1, 3, 64, 64), np.float64), r"dtype is float64, expected float32 \(1\.\.4, 3, 64, 64\)"),
        (
            lambda: np.zeros((1, 3, 32, 64), np.float32),
            r"input shape is \(1, 3, 32, 64\), expected \(1\.\.4, 3, 64, 64\)",
        ),
        (lambda: np.zeros((3, 64, 64), np.float32), r"input shape is \(3, 64, 64\)"),
        (lambda: np.zeros((1, 4, 64, 64), np.float32), r"expected \(1\.\.4, 3, 64, 64\)"),
        (lambda: np.zeros((5, 3, 64, 64), np.float32), r"batch size 5 is outside the artifact's range 1\.\.4"),
        (lambda: [[0.0]], r"must be a numpy array .* got list"),
    ],
)
def test_input_is_checked_against_the_manifest(onnx_artifact, make, match):
    with open_runner(onnx_artifact) as runner, pytest.raises(InputError, match=match):
        runner.infer(make())


def test_infer_needs_activation(onnx_artifact):
    runner = open_runner(onnx_artifact)
    with pytest.raises(RuntimeError, match="not active"):
        runner.infer(deterministic_input(1, 64, 64))


def test_open_runner_errors(onnx_artifact, tmp_path):
    with pytest.raises(ArtifactError, match="artifact folder not found"):
        open_runner(tmp_path / "nope")
    with pytest.raises(ArtifactError, match="has no manifest.json"):
        open_runner(tmp_path)
    broken = shutil.copytree(onnx_artifact, tmp_path / "broken")
    (broken / read_manifest(broken).file("model")).unlink()
    with pytest.raises(ArtifactError, match="incomplete or corrupted: missing"):
        open_runner(broken)


@pytest.mark.skipif(sys.platform == "darwin", reason="this checks the refusal off macOS")
def test_coreml_refuses_off_macos(relabelled):
    with pytest.raises(ArtifactError, match="Core ML models execute only on macOS"):
        open_runner(relabelled("coreml"))


@pytest.mark.coreml
def test_coreml_runner_on_macos(export_tiny, reference_logits):
    if sys.platform != "darwin":
        pytest.skip("CoreML models execute only on macOS")
    pytest.importorskip("coremltools", reason="coremltools is not installed (extra 'coreml')")
    with open_runner(export_tiny("coreml-fp32")) as runner:
        out = runner.infer(deterministic_input(3, 64, 64))
    np.testing.assert_allclose(out, reference_logits, atol=1e-2)


def test_tensorrt_without_engine(relabelled):
    with pytest.raises(ArtifactError, match="holds no TensorRT engine .*tensorrt is not installed.*build-engine"):
        open_runner(relabelled("tensorrt"))


@pytest.mark.gpu
@pytest.mark.tensorrt
def test_tensorrt_engine_matches_pytorch(export_tiny, reference_logits):
    pytest.importorskip("tensorrt", reason="tensorrt is not installed (NVIDIA's package index)")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU visible")
    with open_runner(export_tiny("tensorrt-fp32")) as runner:
        x = deterministic_input(3, 64, 64)
        out3 = runner.infer(x)
        out1 = runner.infer(x[:1])  # a different batch in the same context: set_input_shape per call
    np.testing.assert_allclose(out3, reference_logits, atol=1e-3)
    np.testing.assert_allclose(out1, out3[:1], atol=1e-3)


def test_pytorch_runner_from_weights():
    runner = open_model("random:birefnet_tiny")
    assert isinstance(runner, PytorchRunner)
    assert runner.spec.size == (64, 64) and runner.spec.batch.max >= 8
    with runner:
        out = runner.infer(deterministic_input(2, 64, 64))
    assert out.shape == (2, 1, 64, 64)
    assert runner.weights_info["deterministic"] is True
    with pytest.raises(InputError, match="multiples of 32"):
        open_model("random:birefnet_tiny", size=(100, 96))


def test_open_model_rejects_size_for_artifact(onnx_artifact):
    with pytest.raises(InputError, match="built for 64x64"):
        open_model(onnx_artifact, size=(96, 96))
    with pytest.raises(WeightsError):
        open_model("definitely-not-weights")


def test_reference_refuses_other_weights(onnx_artifact, tmp_path, tiny_model):
    """The reference loads the manifest's weights; a checkpoint whose hash differs is refused."""
    from safetensors.torch import save_file

    checkpoint = tmp_path / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in tiny_model.state_dict().items()}, str(checkpoint))
    manifest = read_manifest(onnx_artifact)
    manifest.weights.update(source=str(checkpoint), sha256="0" * 64)
    runner = PytorchRunner.from_artifact(onnx_artifact, manifest)
    with pytest.raises(ArtifactError, match="exported from 000000000000"):
        runner.activate()
