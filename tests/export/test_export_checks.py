"""The export-time check: the artifact's runner, judged by the parity gate's comparison, every failure named."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from birefnet_edge.errors import ArtifactError, ExportError
from birefnet_edge.export._base import check_with_runner
from birefnet_edge.profile import load_profile
from birefnet_edge.runtime import InputSpec, Runner


@pytest.fixture(scope="module")
def profile():
    return load_profile("onnx-fp32").with_overrides(input_size=(64, 64), batch={"min": 1, "opt": 2, "max": 4})


class _Shifted(Runner):
    """Runs the PyTorch model and adds ``shift`` to its logits: a stand-in for a wrong artifact."""

    def __init__(self, model: torch.nn.Module, shift: float, profile) -> None:
        super().__init__(name="shifted", spec=InputSpec.of(profile), contract={})
        self.model, self.shift, self.batches = model, shift, []

    @classmethod
    def from_artifact(cls, folder, manifest):  # pragma: no cover - never opened from a folder here
        raise NotImplementedError

    def _activate_impl(self) -> None:
        pass

    def _infer_impl(self, x: np.ndarray) -> np.ndarray:
        self.batches.append(len(x))
        with torch.no_grad():
            return self.model(torch.from_numpy(x)).numpy() + self.shift


def test_a_faithful_artifact_records_the_parity_figures_per_batch(tiny_model, profile) -> None:
    runner = _Shifted(tiny_model, 0.0, profile)
    record, reason = check_with_runner("fake", lambda: runner, tiny_model, profile)
    assert reason is None and set(record) == {"batch_1", "batch_3"}
    assert record["batch_3"]["iou"] >= 0.999 and record["batch_3"]["max_abs_logit"] < 1e-4
    assert record["batch_3"]["batch_consistency"] is not None  # batch 3 is compared with the batch-1 run too
    assert runner.batches == [1, 1, 1, 3] and runner.low_memory and not runner.is_active


def test_a_wrong_artifact_fails_with_every_check_named(tiny_model, profile) -> None:
    with pytest.raises(ExportError, match=r"fake differs from PyTorch: batch 1: max_abs_logit 0\.5 violates <= 0\.001"):
        check_with_runner("fake", lambda: _Shifted(tiny_model, 0.5, profile), tiny_model, profile)
    with pytest.raises(ExportError, match=r"batch 3: max_abs_logit .*; batch 3: mae .* violates"):
        check_with_runner("fake", lambda: _Shifted(tiny_model, 0.5, profile), tiny_model, profile)


def test_an_artifact_that_cannot_run_here_is_skipped_with_the_reason(tiny_model, profile) -> None:
    def refuse() -> Runner:
        raise ArtifactError("needs macOS")

    assert check_with_runner("fake", refuse, tiny_model, profile) == ({}, "fake cannot run here: needs macOS")


@pytest.mark.parametrize("name", ["onnx-fp32", "openvino-fp32"])
def test_exported_artifacts_record_the_runner_check(export_tiny, manifest_of, name) -> None:
    pytest.importorskip("openvino" if name.startswith("openvino") else "onnxruntime", reason="backend not installed")
    checks = manifest_of(export_tiny(name)).export["checks"]
    key = {"onnx-fp32": "onnxruntime", "openvino-fp32": "openvino"}[name]
    assert set(checks[key]) == {"batch_1", "batch_3"}
    assert {"max_abs_logit", "iou", "mae", "s_measure"} <= set(checks[key]["batch_3"])


def test_the_pytorch_reference_is_a_memory_phase_of_its_own() -> None:
    """The manifest's peak by phase names the eager reference (~1 GB above the process for BiRefNet_lite at
    1024 px), which ran unlabelled inside the int8 flows and the checks; outside it the label is restored."""
    from birefnet_edge.export._base import torch_reference
    from birefnet_edge.export._memory import PeakRSS, phase

    model = torch.nn.Conv2d(3, 1, 1).eval()
    with PeakRSS(first_phase="convert") as rss, phase("checks"):
        reference = torch_reference(model, torch.ones(2, 3, 8, 8))
        rss.sample()
    assert reference.shape == (2, 1, 8, 8)
    assert set(rss.by_phase) == {"convert", "pytorch reference", "checks"}
