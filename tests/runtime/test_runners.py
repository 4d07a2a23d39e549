"""Runners on tiny artifacts: outputs match PyTorch, inputs are checked, unrunnable ones say why."""

from __future__ import annotations

import platform
import shutil

import numpy as np
import pytest
import torch
from format_marks import format_marks

from birefnet_edge.errors import ArtifactError, InputError, MissingDependencyError, WeightsError
from birefnet_edge.formats import FORMAT_OPTIONS
from birefnet_edge.manifest import read_manifest, verify_files
from birefnet_edge.model import deterministic_input
from birefnet_edge.profile import BatchRange, list_profiles
from birefnet_edge.runtime import RUNNERS, InputSpec, PytorchRunner, open_model, open_reference, open_runner
from birefnet_edge.runtime._base import artifact_kwargs

# Every registered runner except the PyTorch one reads artifacts: each gets the cases below, parametrised
# over the registry, on the real tiny artifact of its ``<format>-fp32`` profile.
ARTIFACT_FORMATS = [name for name in RUNNERS.names() if name != PytorchRunner.target]
FORMATS_UNDER_TEST = [pytest.param(f, marks=format_marks(f)) for f in ARTIFACT_FORMATS]


def test_every_runner_has_a_test_case():
    """Guard: a registered runner is tested through a shipped ``<format>-fp32`` profile, or is the PyTorch one."""
    shipped = set(list_profiles())
    untestable = [name for name in ARTIFACT_FORMATS if f"{name}-fp32" not in shipped]
    assert not untestable, f"runners without a shipped <format>-fp32 profile to test them on: {untestable}"
    assert PytorchRunner.target in RUNNERS and RUNNERS.get(PytorchRunner.target) is PytorchRunner


def test_every_profile_format_has_a_runner():
    missing = [f for f in FORMAT_OPTIONS.names() if f not in RUNNERS]
    assert not missing, f"formats without a runner: {missing}"


@pytest.fixture(scope="module")
def reference_logits(tiny_model) -> np.ndarray:
    """PyTorch logits of the weights every tiny artifact holds (``random:birefnet_tiny``).

    From the model, not from an artifact's reference: under pytest-xdist a worker would otherwise sit idle
    until the other one had built the ONNX artifact (measured: 2.7 min). The last test of
    this file (last: it needs the ONNX artifact) shows that an artifact's reference is this model.
    """
    with torch.no_grad():
        return tiny_model(torch.from_numpy(deterministic_input(3, 64, 64))).numpy()


@pytest.mark.parametrize("fmt", FORMATS_UNDER_TEST)
def test_artifact_runner_matches_pytorch_or_refuses_with_the_reason(fmt, tiny_artifact, unrunnable, reference_logits):
    artifact = tiny_artifact(fmt)
    why = unrunnable(fmt)
    if why is None:
        _assert_runs_like_pytorch(artifact, fmt, reference_logits)
    else:
        with pytest.raises((ArtifactError, MissingDependencyError), match=why):
            open_runner(artifact)


def _assert_runs_like_pytorch(artifact, fmt: str, reference_logits: np.ndarray) -> None:
    x = deterministic_input(3, 64, 64)
    with open_runner(artifact) as runner:
        assert runner.is_active and runner.target == fmt and type(runner) is RUNNERS.get(fmt)
        assert runner.load_time is not None and runner.load_time > 0
        out3 = runner.infer(x)
        assert runner.last_inference_time is not None and runner.last_inference_time > 0
        out1 = np.concatenate([runner.infer(x[i : i + 1]) for i in range(3)])  # another batch, same session
        assert runner.runtime_info()
    assert not runner.is_active
    assert out3.shape == (3, 1, 64, 64) and out3.dtype == np.float32
    atol = read_manifest(artifact).get_profile().tolerance.max_abs_logit
    np.testing.assert_allclose(out3, reference_logits, atol=atol)
    np.testing.assert_allclose(out1, out3, atol=atol)


@pytest.mark.parametrize("fmt", FORMATS_UNDER_TEST)
def test_what_is_checkable_before_execution(fmt, tiny_artifact):
    """Manifest, files and the input spec a runner enforces, on every artifact (runnable here or not)."""
    artifact = tiny_artifact(fmt)
    manifest = read_manifest(artifact)
    verify_files(artifact, manifest)  # every listed file is present with its recorded size and hash
    profile = manifest.get_profile()
    assert (profile.format, profile.precision, manifest.name) == (fmt, "fp32", artifact.name)
    assert manifest.contract["size"] == [64, 64]
    spec = artifact_kwargs(artifact, manifest)["spec"]
    assert spec == InputSpec((64, 64), BatchRange(1, 2, 4))
    with pytest.raises(InputError, match=r"batch size 5 is outside the artifact's range 1\.\.4"):
        spec.check(np.zeros((5, 3, 64, 64), np.float32), manifest.name)
    with pytest.raises(InputError, match=r"input shape is \(2, 3, 32, 64\), expected \(1\.\.4, 3, 64, 64\)"):
        spec.check(np.zeros((2, 3, 32, 64), np.float32), manifest.name)


def test_tensorrt_artifact_without_an_engine_keeps_the_onnx_and_says_how_to_build(tensorrt_artifact, unrunnable):
    manifest = read_manifest(tensorrt_artifact)
    roles = {e.path: e.role for e in manifest.files}
    if unrunnable("tensorrt") is not None and "engine" in manifest.export.get("skipped", {}):
        assert roles == {"model.onnx": "aux"}
        with pytest.raises(ArtifactError, match=r"build-engine birefnet_tiny-tensorrt-fp32/model\.onnx"):
            open_runner(tensorrt_artifact)
    else:
        assert roles.get("model.engine") == "model" and roles.get("model.onnx") == "aux"


def test_onnx_runner_reports_its_providers_and_runs_without_the_arena_unless_asked(onnx_artifact):
    with open_runner(onnx_artifact) as runner:
        info = runner.runtime_info()
        assert "CPUExecutionProvider" in info["providers"] and info["memory_arena"] is False
        assert info["fixed_mmap_threshold"] is (platform.libc_ver()[0] == "glibc")
        # The session itself, not only the report: no buffer reuse plan (OnnxOptions.memory_reuse).
        assert info["memory_reuse"] is False and not runner._session.get_session_options().enable_mem_reuse
    runner = RUNNERS.get("onnx").from_artifact(onnx_artifact, read_manifest(onnx_artifact))
    runner.memory_arena, runner.fixed_mmap_threshold, runner.memory_reuse = True, False, True
    with runner:
        info = runner.runtime_info()
        assert info["memory_arena"] is True and info["fixed_mmap_threshold"] is False
        assert info["memory_reuse"] is True and runner._session.get_session_options().enable_mem_reuse
        assert runner.infer(deterministic_input(1, 64, 64)).shape == (1, 1, 64, 64)


@pytest.mark.openvino
def test_openvino_runner_keeps_fp32_precision(openvino_artifact):
    with open_runner(openvino_artifact) as runner:
        assert runner.runtime_info()["config"]["INFERENCE_PRECISION_HINT"] == "f32"  # fp32 parity must not run in bf16


@pytest.mark.openvino
def test_openvino_runner_compiles_for_each_batch_size_or_once_for_the_range(openvino_artifact):
    """per_batch (default): static shapes, so OpenVINO plans the memory ahead; the outputs are range's."""
    x = deterministic_input(3, 64, 64)
    with open_runner(openvino_artifact) as runner:
        assert runner.batch_compile == "per_batch" and runner.compiled_batch == 1  # the range's smallest
        assert runner._compiled.inputs[0].get_partial_shape().to_string() == "[1,3,64,64]"
        per_batch = [runner.infer(x), runner.infer(x[:1])]
        assert runner.compiled_batch == 1 and runner.runtime_info()["batch_compile"] == "per_batch"
        kept = runner._compiled
        runner.infer(x[:2])
        assert runner._compiled.inputs[0].get_partial_shape().to_string() == "[2,3,64,64]"
        assert sorted(runner._by_batch) == [1, 2]  # the two sizes used last; batch 3's compile was released
        runner.infer(x[:1])
        assert runner._compiled is kept and runner.compiled_batch == 1  # kept, not compiled again
    assert runner.compiled_batch is None
    manifest = read_manifest(openvino_artifact)
    ranged = RUNNERS.get("openvino").from_artifact(openvino_artifact, manifest)
    ranged.batch_compile = "range"
    with ranged:
        assert ranged.compiled_batch is None
        assert ranged._compiled.inputs[0].get_partial_shape().to_string() == "[1..4,3,64,64]"
        whole = [ranged.infer(x), ranged.infer(x[:1])]
    atol = manifest.get_profile().tolerance.max_abs_logit
    for a, b in zip(per_batch, whole):
        np.testing.assert_allclose(a, b, atol=atol)


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
    with pytest.raises(WeightsError, match="weights 'definitely-not-weights'"):
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


def test_an_artifacts_reference_is_the_model_its_manifest_names(onnx_artifact, reference_logits):
    with open_reference(onnx_artifact) as ref:
        np.testing.assert_allclose(ref.infer(deterministic_input(3, 64, 64)), reference_logits, atol=1e-6)
