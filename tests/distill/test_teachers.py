"""Where targets come from: an exported artifact as the teacher, ground truth alone (--teacher none), or both
a teacher and masks; the one-line errors of each."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import pytest
import torch

from birefnet_edge.distill import LossWeights, run_distill
from birefnet_edge.distill.checkpoint import read_metrics
from birefnet_edge.distill.data import load_resized
from birefnet_edge.distill.teacher import load_teacher, open_teacher, teacher_probs
from birefnet_edge.errors import InputError, WeightsError
from birefnet_edge.scenes import write_scene_set


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Path:
    """Eight 64 px scenes in DIS5K's layout (im/ + gt/)."""
    return write_scene_set(tmp_path_factory.mktemp("scenes"), 8, 64, seed=1)


def test_an_artifact_teacher_gives_its_weights_targets_keyed_by_its_manifest(scenes: Path, onnx_artifact: Path) -> None:
    teacher = open_teacher(str(onnx_artifact), torch.device("cpu"))
    try:
        assert teacher.model is None and teacher.info["kind"] == "artifact" and teacher.info["format"] == "onnx"
        assert teacher.identity == hashlib.sha256((onnx_artifact / "manifest.json").read_bytes()).hexdigest()
        images = torch.stack([load_resized(p, 64) for p in sorted((scenes / "im").glob("*.png"))[:5]]).float() / 255
        model, _, _ = load_teacher("random:birefnet_tiny", torch.device("cpu"))
        got, expected = teacher.probs(images), teacher_probs(model, images, autocast=False)
        assert got.shape == expected.shape == (5, 1, 64, 64)  # 5 images: one full batch of 4, then one
        assert (got - expected).abs().max() < 1e-3
    finally:
        teacher.close()


def test_distill_from_an_artifact_records_it(scenes: Path, onnx_artifact: Path, tmp_path: Path, tiny_config) -> None:
    run_distill(tiny_config(scenes / "im", tmp_path / "run", teacher=str(onnx_artifact), steps=2))
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["teacher"]["kind"] == "artifact" and run["teacher"]["format"] == "onnx"
    assert run["teacher_sha256"] == hashlib.sha256((onnx_artifact / "manifest.json").read_bytes()).hexdigest()
    assert "iou" in read_metrics(tmp_path / "run")[-1]


def test_artifact_teacher_errors_are_one_line(tmp_path: Path, tensorrt_artifact: Path, unrunnable) -> None:
    (tmp_path / "dist").mkdir()
    with pytest.raises(WeightsError, match=r"--teacher .*dist/missing: no artifact folder there; export one"):
        open_teacher(str(tmp_path / "dist" / "missing"), torch.device("cpu"))
    (tmp_path / "dist" / "empty").mkdir()
    with pytest.raises(WeightsError, match=r"holds no manifest.json; pass an exported artifact folder"):
        open_teacher(str(tmp_path / "dist" / "empty"), torch.device("cpu"))
    reason = unrunnable("tensorrt")
    if reason is None:
        pytest.skip("TensorRT runs on this machine, so its artifact is no example of one that cannot")
    with pytest.raises(WeightsError, match=r"--teacher .*: the artifact cannot run here: ") as info:
        open_teacher(str(tensorrt_artifact), torch.device("cpu"))
    assert "\n" not in str(info.value)


def test_ground_truth_alone_trains_and_selects_by_the_masks(scenes: Path, tmp_path: Path, tiny_config, caplog) -> None:
    (scenes / "im" / "unlabelled.png").write_bytes((scenes / "im" / "scene_0000.png").read_bytes())
    try:
        with caplog.at_level(logging.WARNING, logger="birefnet_edge.distill"):
            result = run_distill(tiny_config(scenes, tmp_path / "run", teacher="none", student="birefnet_tiny"))
    finally:
        (scenes / "im" / "unlabelled.png").unlink()
    notes = [r.getMessage() for r in caplog.records if "have no mask" in r.getMessage()]
    assert notes == [
        f"1 of 9 image(s) have no mask under {scenes / 'gt'}, e.g. {scenes / 'im' / 'unlabelled.png'}: "
        "left out of this run"
    ]
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["teacher"] == {"kind": "none"} and list(result.best) == ["gt_iou"]
    evals = [r for r in read_metrics(tmp_path / "run") if r["kind"] == "eval"]
    assert evals and all("gt_iou" in r and "iou" not in r for r in evals)
    trains = [r for r in read_metrics(tmp_path / "run") if r["kind"] == "train"]
    assert all(r["gt"] == pytest.approx(r["loss"]) for r in trains)


def test_a_teacher_and_masks_train_together(scenes: Path, tmp_path: Path, tiny_config) -> None:
    run_distill(tiny_config(scenes / "im", tmp_path / "run", masks=scenes / "gt", loss=LossWeights(gt=2.0)))
    trains = [r for r in read_metrics(tmp_path / "run") if r["kind"] == "train"]
    assert trains and all(0 < r["gt"] < r["loss"] for r in trains)
    assert all({"iou", "gt_iou"} <= r.keys() for r in read_metrics(tmp_path / "run") if r["kind"] == "eval")


def test_label_errors_are_one_line(scenes: Path, tmp_path: Path, tiny_config, onnx_artifact: Path) -> None:
    with pytest.raises(InputError, match=r"--teacher none trains on ground-truth masks alone: pass --masks DIR"):
        run_distill(tiny_config(scenes / "im", tmp_path / "a", teacher="none"))
    with pytest.raises(InputError, match=r"--loss gt=0 leaves nothing to learn"):
        run_distill(tiny_config(scenes, tmp_path / "a", teacher="none", loss=LossWeights(gt=0.0)))
    (tmp_path / "other").mkdir()
    with pytest.raises(InputError, match=r"no mask under .*other matches an image under .*im: a mask must have"):
        run_distill(tiny_config(scenes / "im", tmp_path / "a", masks=tmp_path / "other"))
    with pytest.raises(InputError, match=r"--loss feature=1 needs the teacher's backbone features"):
        run_distill(tiny_config(scenes, tmp_path / "a", teacher=str(onnx_artifact), loss=LossWeights(feature=1.0)))
