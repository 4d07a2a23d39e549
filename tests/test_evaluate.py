"""Accuracy against ground truth: the measures agree with pysodmetrics; eval runs weights and artifacts side by
side on a labelled folder, gates them and writes parity's report formats."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from birefnet_edge.errors import InputError
from birefnet_edge.evaluate import Gates, Scores, evaluate_models, load_eval_report, write_reports
from birefnet_edge.scenes import write_scene_set


def _maps(seed: int, count: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Ground truths (shapes, one empty, one full) and noisy, blurred predictions of them, uint8."""
    rng = np.random.default_rng(seed)
    pairs = []
    for i in range(count):
        h, w = (int(v) for v in rng.integers(30, 70, 2))
        gt = np.zeros((h, w), np.uint8)
        if i == count - 1:
            gt[:] = 255
        elif i != count - 2:
            top, left = int(rng.integers(0, h // 2)), int(rng.integers(0, w // 2))
            gt[top : top + h // 2, left : left + w // 3] = 255
        pred = np.clip(0.8 * gt + rng.normal(0, 50, gt.shape) + 20, 0, 255).astype(np.uint8)
        pairs.append((pred, gt))
    return pairs


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_measures_match_pysodmetrics(seed: int) -> None:
    sod = pytest.importorskip("py_sod_metrics", reason="pysodmetrics is not installed (extra 'test')")
    pytest.importorskip("scipy", reason="scipy (extra 'eval') computes the weighted F-measure")
    theirs = {
        "f": sod.FmeasureV2(
            metric_handlers={"f": sod.FmeasureHandler(with_dynamic=True, with_adaptive=False, beta=0.3)}
        )
    }
    theirs.update(e=sod.Emeasure(), w=sod.WeightedFmeasure(), s=sod.Smeasure(), m=sod.MAE())
    ours = Scores()
    for pred, gt in _maps(seed, 6):
        ours.add(pred, gt)
        for metric in theirs.values():
            metric.step(pred=pred, gt=gt)
    f_curve = theirs["f"].get_results()["f"]["dynamic"]
    e_curve = theirs["e"].get_results()["em"]["curve"]
    expected = {
        "s_measure": theirs["s"].get_results()["sm"],
        "max_f": f_curve.max(),
        "mean_f": f_curve.mean(),
        "max_e": e_curve.max(),
        "mean_e": e_curve.mean(),
        "weighted_f": theirs["w"].get_results()["wfm"],
        "mae": theirs["m"].get_results()["mae"],
    }
    got = ours.result()
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key] == pytest.approx(float(value), abs=1e-9), key


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Path:
    return write_scene_set(tmp_path_factory.mktemp("scenes"), 6, 64, seed=3)


def test_eval_gates_and_report_formats(scenes: Path, tmp_path: Path) -> None:
    gates = Gates(min_smeasure=0.99, max_mae=0.9)
    report = evaluate_models(["random:birefnet_tiny", "random:student_tiny"], scenes, gates=gates)
    assert report.count == 6 and report.images.endswith("im") and report.masks.endswith("gt")
    assert [r.status for r in report.results] == ["FAIL", "FAIL"]  # random weights: S-measure far below 0.99
    for result in report.results:
        assert result.images == 6 and 0 <= result.metrics["s_measure"] < 0.99
        assert [(c.name, c.passed) for c in result.checks] == [("s_measure", False), ("mae", True)]
        assert "S-measure" in result.reason and "violates >= 0.99" in result.reason
    paths = write_reports(report, tmp_path / "report", junit=tmp_path / "junit.xml")
    assert load_eval_report(paths["json"]).to_dict() == report.to_dict()
    markdown = paths["markdown"].read_text()
    assert "| random:birefnet_tiny |" in markdown and "S-measure" in markdown and "gates: S-measure >= 0.99" in markdown
    assert "<table>" in paths["html"].read_text()
    root = ET.parse(paths["junit"]).getroot()
    assert (root.get("tests"), root.get("failures")) == ("4", "2")


def test_artifact_and_its_weights_score_alike(scenes: Path, onnx_artifact: Path) -> None:
    report = evaluate_models([onnx_artifact, "random:birefnet_tiny"], scenes, batch=4)
    artifact, weights = report.results
    assert artifact.format == "onnx" and weights.format == "pytorch" and artifact.status == "PASS"
    for key, value in weights.metrics.items():
        assert artifact.metrics[key] == pytest.approx(value, abs=0.02), key


def test_unmatched_images_are_reported_and_a_set_without_masks_is_refused(scenes: Path, tmp_path: Path) -> None:
    Image.new("RGB", (64, 64)).save(scenes / "im" / "extra.png")
    try:
        report = evaluate_models(["random:student_tiny"], scenes)
    finally:
        (scenes / "im" / "extra.png").unlink()
    assert report.count == 6 and report.unmatched == [str(scenes / "im" / "extra.png")]
    from birefnet_edge.evaluate.report import notes

    assert any("1 image(s) without a mask were left out" in line for line in notes(report))
    (tmp_path / "masks").mkdir()
    with pytest.raises(InputError, match=r"no mask under .*masks matches an image under .*im: a mask must have"):
        evaluate_models(["random:student_tiny"], scenes / "im", tmp_path / "masks")
    with pytest.raises(InputError, match="--masks is missing and .* has no im/ and gt/ sub-folders"):
        evaluate_models(["random:student_tiny"], scenes / "im")
