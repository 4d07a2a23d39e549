"""Training runs on the tiny teacher and student: learning, exact resume, the run folder, user errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors import safe_open

from birefnet_edge.distill import LossWeights, run_distill
from birefnet_edge.distill.checkpoint import read_metrics
from birefnet_edge.distill.data import file_sha256, find_images, load_resized
from birefnet_edge.distill.teacher import TargetCache, load_teacher, teacher_probs
from birefnet_edge.errors import InputError, WeightsError
from birefnet_edge.model import get_config


@pytest.fixture(scope="module")
def trained(images_dir: Path, tmp_path_factory, tiny_config) -> Path:
    """A 12-step run (lr 2e-3) evaluated every 4 steps: long enough for the student to move."""
    out = tmp_path_factory.mktemp("runs") / "tiny"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # module scope runs before the per-test one_thread fixture
    try:
        config = tiny_config(images_dir, out, steps=12, lr=2e-3, eval_every=4, save_every=8, log_every=1)
        result = run_distill(config)
    finally:
        torch.set_num_threads(threads)
    assert result.step == 12 and "loaded from the teacher" in result.backbone_note
    return out


def test_loss_falls_and_held_out_agreement_rises(trained: Path) -> None:
    records = read_metrics(trained)
    losses = [r["loss"] for r in records if r["kind"] == "train"]
    evals = [r for r in records if r["kind"] == "eval"]
    assert [r["step"] for r in evals] == [0, 4, 8, 12]
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3
    assert max(r["iou"] for r in evals[1:]) > evals[0]["iou"]
    assert min(r["mae"] for r in evals[1:]) < evals[0]["mae"]


def test_run_folder_holds_best_weights_with_metadata_and_curves(trained: Path) -> None:
    evals = [r for r in read_metrics(trained) if r["kind"] == "eval"]
    best = max(evals, key=lambda r: r["iou"])
    with safe_open(str(trained / "best.safetensors"), "pt") as fh:
        meta = fh.metadata()
        keys = list(fh.keys())
    assert meta["birefnet_edge.variant"] == "student_tiny"
    assert json.loads(meta["birefnet_edge.config"]) == get_config("student_tiny").architecture()
    assert meta["birefnet_edge.patch_order"] == "current" and meta["birefnet_edge.teacher"] == "random:birefnet_tiny"
    assert int(meta["birefnet_edge.steps"]) == best["step"]
    assert json.loads(meta["birefnet_edge.agreement"])["iou"] == pytest.approx(best["iou"], abs=1e-6)
    assert len(meta["birefnet_edge.teacher_sha256"]) == 64 and any(k.startswith("bb.") for k in keys)
    with Image.open(trained / "curves.png") as img:
        assert img.size == (720, 440)


def _stop_at(step: int):
    def hook(current: int) -> None:
        if current == step:
            raise KeyboardInterrupt  # a kill after step 3: the step-2 checkpoint is the last one on disk

    return hook


def test_stopped_and_resumed_run_ends_bit_identical(images_dir: Path, tmp_path: Path, tiny_config) -> None:
    whole = tiny_config(images_dir, tmp_path / "whole", steps=5, save_every=2, eval_every=2)
    run_distill(whole)
    parts = tiny_config(images_dir, tmp_path / "parts", steps=5, save_every=2, eval_every=2)
    with pytest.raises(KeyboardInterrupt):
        run_distill(parts, on_step=_stop_at(3))
    run_distill(tiny_config(images_dir, tmp_path / "parts", steps=5, save_every=2, eval_every=2, workers=1), True)
    a = torch.load(tmp_path / "whole" / "checkpoint.pt", weights_only=False)
    b = torch.load(tmp_path / "parts" / "checkpoint.pt", weights_only=False)
    assert a["step"] == b["step"] == 5 and a["position"] == b["position"]
    assert a["model"].keys() == b["model"].keys()
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert read_metrics(tmp_path / "whole") == [
        {**r, "images_per_s": a_r["images_per_s"], "eta_s": a_r["eta_s"]} if "images_per_s" in r else r
        for r, a_r in zip(read_metrics(tmp_path / "parts"), read_metrics(tmp_path / "whole"))
    ]


def test_resume_with_other_settings_names_them(trained: Path, images_dir: Path, tiny_config) -> None:
    changed = tiny_config(images_dir, trained, steps=12, lr=1e-3, batch_size=4, eval_every=4, save_every=8)
    with pytest.raises(InputError, match=r"other settings \(batch_size: 2 -> 4; lr: 0.002 -> 0.001\)"):
        run_distill(changed, resume=True)


def test_output_folder_with_another_run_or_files_is_refused(
    trained: Path, images_dir: Path, tmp_path: Path, tiny_config
) -> None:
    with pytest.raises(InputError, match="already holds another distillation run; pass --resume"):
        run_distill(tiny_config(images_dir, trained))
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="already holds other files"):
        run_distill(tiny_config(images_dir, tmp_path))
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_user_errors_are_one_clear_line(images_dir: Path, tmp_path: Path, tiny_config) -> None:
    with pytest.raises(InputError, match=r"unknown student 'student-x'; known students: student-m, student-s"):
        run_distill(tiny_config(images_dir, tmp_path / "a", student="student-x"))
    with pytest.raises(InputError, match="--size 100 is not a multiple of 32 of at least 64; use e.g. 96 or 128"):
        tiny_config(images_dir, tmp_path / "a", size=100)
    with pytest.raises(WeightsError, match="--teacher .*missing.safetensors does not load: weights file not found"):
        run_distill(tiny_config(images_dir, tmp_path / "a", teacher=str(tmp_path / "missing.safetensors")))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no images found under"):
        run_distill(tiny_config(tmp_path / "empty", tmp_path / "a"))
    assert not (tmp_path / "a").exists()


def test_cached_targets_are_keyed_by_teacher(images_dir: Path, tmp_path: Path, tiny_config) -> None:
    cache = tmp_path / "cache"
    run_distill(tiny_config(images_dir, tmp_path / "a", steps=2, cache=cache))
    first = set(cache.rglob("*.png"))
    run_distill(tiny_config(images_dir, tmp_path / "b", steps=2, cache=cache, teacher="random:student_tiny"))
    second = set(cache.rglob("*.png")) - first
    assert len(first) == len(second) == 4  # 2 steps x batch 2, once per teacher: nothing reused across teachers
    teacher, info, identity = load_teacher("random:student_tiny", torch.device("cpu"))
    for path in find_images(images_dir)[:6]:
        cached = TargetCache(cache, identity, 64).get(file_sha256(path))
        if cached is not None:
            fresh = teacher_probs(teacher, load_resized(path, 64)[None].float() / 255.0, autocast=False)[0]
            assert (cached - fresh).abs().max() <= 0.5 / 255 + 1e-6
            break
    else:
        pytest.fail("no image of the second teacher's run was found in the cache")


def test_feature_distillation_and_ground_truth_evaluation(images_dir: Path, tmp_path: Path, tiny_config) -> None:
    masks = tmp_path / "masks"
    for path in find_images(images_dir):
        target = masks / path.relative_to(images_dir).with_suffix(".png")
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.new("L", (40, 30), 255 * (len(path.stem) % 2)).save(target)
    config = tiny_config(images_dir, tmp_path / "run", steps=2, masks=masks, loss=LossWeights(feature=1.0))
    run_distill(config)
    records = read_metrics(tmp_path / "run")
    assert all(r["feature"] > 0 for r in records if r["kind"] == "train")
    evals = [r for r in records if r["kind"] == "eval"]
    assert evals and all({"gt_iou", "gt_mae", "gt_s_measure"} <= r.keys() for r in evals)
    projector = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)["model"]
    assert any(k.startswith("projector.proj.") for k in projector)


def test_cli_prints_one_line_errors(images_dir: Path, tmp_path: Path, capsys) -> None:
    from birefnet_edge.cli import main

    base = ["distill", "--teacher", "random:birefnet_tiny", "--images", str(images_dir), "--steps", "1"]
    with pytest.raises(SystemExit) as exit_info:
        main([*base, "--student", "student-x", "--out", str(tmp_path / "a"), "--size", "64"])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 1 and err.count("\n") == 0
    assert err.startswith("error: unknown student 'student-x'; known students:")
    with pytest.raises(SystemExit) as exit_info:
        main([*base, "--student", "student_tiny", "--out", str(tmp_path / "a"), "--size", "65"])
    assert exit_info.value.code == 2 and "--size 65 is not a multiple of 32" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main([*base, "--student", "student_tiny", "--out", str(tmp_path / "a"), "--size", "64", "--loss", "bce=x"])
    assert exit_info.value.code == 2 and "--loss 'bce=x': cannot read 'bce=x'" in capsys.readouterr().err
