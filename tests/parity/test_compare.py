"""The parity gate: honest artifacts pass, a changed weight fails, unrunnable targets are SKIPPED (not passed)."""

from __future__ import annotations

import dataclasses
import re
import shutil

import numpy as np
import pytest

from birefnet_edge.comparison import run_in_batches
from birefnet_edge.errors import ParityError
from birefnet_edge.parity import FAIL, PASS, SKIPPED, check_artifact, raise_on_failure, run_parity
from birefnet_edge.parity.compare import ReferenceCache
from birefnet_edge.profile import BatchRange
from birefnet_edge.runtime import InputSpec, Runner


@pytest.fixture(scope="module")
def references() -> ReferenceCache:
    return ReferenceCache()


@pytest.fixture(scope="module")
def honest(onnx_artifact, parity_inputs, references, tmp_path_factory):
    samples = tmp_path_factory.mktemp("samples")
    return check_artifact(onnx_artifact, parity_inputs, (1, 3), references, samples_dir=samples)


def test_honest_onnx_artifact_passes(honest, parity_inputs):
    assert honest.status == PASS, honest.reason
    assert honest.batches == [1, 3]  # exported at batch 2, validated at 1 and 3
    assert [m.batch for m in honest.metrics] == [1, 3]
    assert honest.failures() == []
    names = {c.name for c in honest.checks}
    assert {"finite", "max_abs_logit", "iou", "mae", "batch_consistency"} <= names
    for m in honest.metrics:
        assert m.max_abs_logit <= honest.tolerance["max_abs_logit"]
        assert m.iou == pytest.approx(1.0) and m.s_measure == pytest.approx(1.0, abs=1e-6)
    assert honest.metrics[0].batch_consistency is None
    assert honest.metrics[1].batch_consistency < 1e-4  # a batch of 3 equals 3 single runs
    assert honest.input_names == list(parity_inputs.names) and honest.inputs == parity_inputs.note
    assert honest.samples and honest.size_bytes > 0


def test_perturbed_weight_fails_with_every_reason(perturbed_artifact, parity_inputs, references, honest):
    result = check_artifact(perturbed_artifact, parity_inputs, (1, 3), references)
    assert result.status == FAIL
    failed = {(c.name, c.batch) for c in result.failures()}
    assert {("max_abs_logit", 1), ("max_abs_logit", 3)} <= failed  # collected for every batch, not the first only
    assert "max_abs_logit" in result.reason and "batch 3" in result.reason
    assert result.worst("max_abs_logit") > 1e-3
    with pytest.raises(ParityError, match="1 of 2 target.*birefnet_tiny-onnx-perturbed: batch 1: max_abs_logit"):
        raise_on_failure([honest, result])


@pytest.mark.parametrize("fmt", ["coreml", "tensorrt"])
def test_real_artifact_passes_where_it_runs_and_is_skipped_with_the_reason_elsewhere(
    request, parity_inputs, references, unrunnable, fmt
):
    """The real tiny artifacts: SKIPPED off their platform with the reason, PASS where they execute."""
    artifact = request.getfixturevalue(f"{fmt}_artifact")
    result = check_artifact(artifact, parity_inputs, (1, 3), references)
    why = unrunnable(fmt)
    if why is None:  # this machine executes the format: the gate must run it and pass
        assert result.status == PASS, result.reason
        assert [m.batch for m in result.metrics] == [1, 3]
    else:
        _assert_skipped_with_reason(result, why, artifact, parity_inputs)


def _assert_skipped_with_reason(result, why: str, artifact, parity_inputs) -> None:
    assert result.status == SKIPPED, result.reason
    assert re.search(why, result.reason), result.reason
    # Nothing was measured, and what was read before the runner refused is still reported.
    assert (result.metrics, result.checks, result.batches) == ([], [], [])
    assert result.name == artifact.name and result.size_bytes > 0
    assert result.input_names == list(parity_inputs.names)
    raise_on_failure([result, dataclasses.replace(result, status=PASS)])  # a SKIPPED target beside a judged one ...
    with pytest.raises(ParityError, match=r"none of the 1 target\(s\) could be checked on this machine"):
        raise_on_failure([result])  # ... but a gate that judged nothing could not check
    raise_on_failure([result], allow_skip=True)
    with pytest.raises(ParityError, match=rf"1 of 2 target\(s\) failed parity: {result.name}: boom"):
        raise_on_failure([result, dataclasses.replace(result, status=FAIL, reason="boom")])  # ... nor count as one


def test_broken_artifact_fails(onnx_artifact, parity_inputs, tmp_path):
    broken = shutil.copytree(onnx_artifact, tmp_path / "broken")
    (broken / "model.onnx").write_bytes(b"")
    result = check_artifact(broken, parity_inputs)
    assert result.status == FAIL and "unusable artifact" in result.reason and "incomplete" in result.reason


def test_batches_outside_the_profile_are_clamped_and_noted(onnx_artifact, parity_inputs, references):
    result = check_artifact(onnx_artifact, parity_inputs, (2, 9), references)
    assert result.status == PASS and result.batches == [2, 4]
    assert "batch 9 outside the batch range 1..4: checked at batch 4 instead" in result.reason
    assert result.warnings[-1] == "batch 9 outside the batch range 1..4: checked at batch 4 instead"


def test_run_parity_reports_every_artifact_in_order(onnx_artifact, tensorrt_artifact, parity_inputs, unrunnable):
    seen = []
    results = run_parity([onnx_artifact, tensorrt_artifact], parity_inputs, (3,), on_result=seen.append)
    expected = PASS if unrunnable("tensorrt") is None else SKIPPED
    assert [r.status for r in results] == [PASS, expected] and seen == results
    assert [r.name for r in results] == [onnx_artifact.name, tensorrt_artifact.name]


def test_two_builds_of_one_target_keep_a_row_and_samples_each(onnx_artifact, parity_inputs, tmp_path):
    """before/X and after/X share the manifest name: each result is named with its folder, so the table
    (rows merged by name) shows both and neither's samples overwrite the other's."""
    from birefnet_edge.parity import build_report
    from birefnet_edge.parity.table import summary_rows

    copies = [shutil.copytree(onnx_artifact, tmp_path / side / onnx_artifact.name) for side in ("before", "after")]
    results = run_parity(copies, parity_inputs, (1,), samples_dir=tmp_path / "samples")
    names = [r.name for r in results]
    assert names == [f"{onnx_artifact.name} (before)", f"{onnx_artifact.name} (after)"]
    assert [r.status for r in results] == [PASS, PASS]
    assert [row["target"] for row in summary_rows(build_report(parity=results))] == names
    assert len({r.samples for r in results}) == 2
    # A folder given twice still gets a row each; a name that occurs once stays plain.
    twice = run_parity([copies[0], copies[0], tmp_path / "missing"], parity_inputs, (1,))
    assert [r.name for r in twice] == [
        f"{onnx_artifact.name} (before)",
        f"{onnx_artifact.name} ({copies[0]})",
        "missing",
    ]


class _WrongShape(Runner):
    """Returns half-size outputs: the gate must report the shape and skip value checks."""

    target = "stub"

    @classmethod
    def from_artifact(cls, folder, manifest):  # pragma: no cover - not used
        raise NotImplementedError

    def _activate_impl(self) -> None:
        pass

    def _infer_impl(self, x: np.ndarray) -> np.ndarray:
        with self._timed():
            return np.zeros((x.shape[0], 1, 32, 32), np.float32)


def test_shapes_are_checked_before_values():
    runner = _WrongShape("stub", InputSpec((64, 64), BatchRange(2, 2, 4)), {}).activate()
    out, problems = run_in_batches(runner, np.zeros((3, 3, 64, 64), np.float32), 2)
    assert out is None
    assert [p.name for p in problems] == ["shape", "shape"]
    assert "output shape (1, 1, 32, 32), expected (1, 1, 64, 64)" in problems[1].detail  # padded to 2, then cut
