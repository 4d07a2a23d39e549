"""What distill refuses or repairs before and during a run (issue 19, items 1-12 and the resume note)."""

from __future__ import annotations

import io
import logging
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image

from birefnet_edge.distill import Augment, LossWeights, run_distill
from birefnet_edge.distill import trainer as trainer_module
from birefnet_edge.distill.checkpoint import BEST, CHECKPOINT, LOCK, run_lock
from birefnet_edge.distill.config import parse_fields
from birefnet_edge.distill.data import readable_images
from birefnet_edge.errors import InputError, TrainingError, UsageError


def _truncated_jpeg(path: Path) -> Path:
    buffer = io.BytesIO()
    Image.new("RGB", (96, 80), (10, 200, 30)).save(buffer, format="JPEG")
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    return path


def test_a_truncated_jpeg_is_found_by_the_scan_not_by_a_worker(tmp_path: Path) -> None:
    bad = _truncated_jpeg(tmp_path / "cut.jpg")
    good = tmp_path / "ok.png"
    Image.new("RGB", (40, 30)).save(good)
    files, unreadable = readable_images([bad, good])
    assert files == [good] and [p for p, _ in unreadable] == [bad]
    assert "truncated" in unreadable[0][1]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"size": 99968}, r"--size 99968 is out of range: it must be 64..4096"),
        ({"steps": 0}, r"--steps 0 is out of range: it must be 1 or more"),
        ({"batch_size": 0}, r"--batch-size 0 is out of range"),
        ({"lr": float("nan")}, r"--lr nan is out of range"),
    ],
)
def test_bad_numbers_are_usage_errors_before_anything_runs(
    changes: dict, message: str, images_dir: Path, tmp_path: Path, tiny_config
) -> None:
    with pytest.raises(UsageError, match=message):
        tiny_config(images_dir, tmp_path / "run", **changes)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("option", "text", "cls", "message"),
    [
        ("--loss", "bce=nan", LossWeights, r"--loss bce nan is out of range: it must be 0..10000"),
        ("--loss", "bce=-5", LossWeights, r"--loss bce -5 is out of range"),
        ("--loss", "bce=0,iou=0,ssim=0,mae=0", LossWeights, r"are all 0, so nothing would be learned"),
        ("--augment", "flip=2", Augment, r"--augment flip 2 is out of range: it must be 0..1 \(a probability\)"),
        ("--augment", "max_scale=0.5", Augment, r"--augment max_scale 0.5 is out of range: it must be 1..4"),
        ("--augment", "max_scale=1e9", Augment, r"--augment max_scale 1000000000 is out of range"),
        ("--augment", "jitter=-1", Augment, r"--augment jitter -1 is out of range: it must be 0..1"),
    ],
)
def test_loss_weights_and_augmentation_are_range_checked(option: str, text: str, cls: type, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_fields(text, cls, option)


@pytest.mark.parametrize("which", ["out-file", "out-below-file", "cache-file", "masks-missing"])
def test_paths_are_checked_before_the_teacher_loads(
    which: str, images_dir: Path, tmp_path: Path, tiny_config, monkeypatch
) -> None:
    monkeypatch.setattr(trainer_module, "open_teacher", lambda *a, **k: pytest.fail("the teacher was loaded"))
    a_file = tmp_path / "a-file"
    a_file.write_text("keep")
    changes = {
        "out-file": {"out": a_file},
        "out-below-file": {"out": a_file / "run"},
        "cache-file": {"out": tmp_path / "run", "cache": a_file},
        "masks-missing": {"out": tmp_path / "run", "masks": tmp_path / "nomasks"},
    }[which]
    config = tiny_config(images_dir, **changes)
    message = {"masks-missing": r"--masks .*nomasks is not a folder", "cache-file": r"--cache .*a-file is a file"}
    with pytest.raises(InputError, match=message.get(which, r"--out .*a-file")):
        run_distill(config)
    assert a_file.read_text() == "keep" and not (tmp_path / "run").exists()


def test_a_second_run_on_the_same_folder_is_refused_and_a_dead_runs_lock_is_not(
    images_dir: Path, tmp_path: Path, tiny_config
) -> None:
    out = tmp_path / "run"
    in_use = r"--out .*run is in use by another distill run \(pid \d+ on "
    with run_lock(out), pytest.raises(InputError, match=in_use):  # a live run holds the folder
        run_distill(tiny_config(images_dir, out, steps=1), resume=True)
    assert not (out / LOCK).exists() and not out.exists()  # released; the empty new folder removed
    out.mkdir()
    (out / LOCK).write_text("pid 999999 on a-dead-host\n")  # what kill -9 leaves: a file nobody locks
    result = run_distill(tiny_config(images_dir, out, steps=1, eval_every=1, save_every=1))
    assert result.step == 1 and not (out / LOCK).exists()


def test_resume_works_on_a_moved_folder_and_removes_stale_temporaries(
    images_dir: Path, tmp_path: Path, tiny_config, caplog
) -> None:
    first = tmp_path / "cluster" / "run"
    run_distill(tiny_config(images_dir, first, steps=1, eval_every=1, save_every=1))
    moved = tmp_path / "laptop" / "run"
    shutil.move(str(first.parent), str(moved.parent))
    stale = moved / f".{CHECKPOINT}.abc123.tmp"
    stale.write_bytes(b"half a checkpoint")
    with caplog.at_level(logging.INFO, logger="birefnet_edge.distill"):
        result = run_distill(tiny_config(images_dir, moved, steps=2, eval_every=1, save_every=1), resume=True)
    assert result.step == 2 and not stale.exists() and not list(moved.glob(".*.tmp"))
    assert "removed 1 temporary file(s)" in caplog.text and "resumed" in caplog.text


def test_resume_without_a_checkpoint_says_it_starts_at_step_0(
    images_dir: Path, tmp_path: Path, tiny_config, caplog
) -> None:
    out = tmp_path / "run"
    run_distill(tiny_config(images_dir, out, steps=1, eval_every=1, save_every=1))
    (out / CHECKPOINT).unlink()
    with caplog.at_level(logging.INFO, logger="birefnet_edge.distill"):
        run_distill(tiny_config(images_dir, out, steps=1, eval_every=1, save_every=1), resume=True)
    assert "holds no checkpoint yet" in caplog.text and "starting at step 0" in caplog.text


def test_a_non_finite_loss_stops_the_run_and_keeps_best(
    images_dir: Path, tmp_path: Path, tiny_config, monkeypatch
) -> None:
    real = trainer_module.training_loss
    calls = {"n": 0}

    def poisoned(*args, **kwargs):
        parts = real(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] >= 2:  # the second step goes bad
            parts["loss"] = parts["loss"] * float("nan")
        return parts

    monkeypatch.setattr(trainer_module, "training_loss", poisoned)
    out = tmp_path / "run"
    config = tiny_config(images_dir, out, steps=4, eval_every=1, save_every=1)
    best_after_step_1 = {}

    def remember(step: int) -> None:
        if step == 1:
            best_after_step_1["bytes"] = (out / BEST).read_bytes()

    with pytest.raises(TrainingError, match=r"the loss is nan at step 2 .*best.safetensors keeps the step-\d weights"):
        run_distill(config, on_step=remember)
    assert (out / BEST).read_bytes() == best_after_step_1["bytes"]
    assert torch.load(out / CHECKPOINT, weights_only=False)["step"] == 1


def test_a_gt_loss_weight_without_masks_is_a_usage_error(images_dir: Path, tmp_path: Path, capsys) -> None:
    # Found by hand (issue 19, round 2): `--loss gt=1` without --masks trained on the teacher alone, exit 0.
    from birefnet_edge.cli import main

    base = ["distill", "--teacher", "random:birefnet_tiny", "--student", "student_tiny", "--images", str(images_dir)]
    with pytest.raises(SystemExit) as stop:
        main([*base, "--out", str(tmp_path / "run"), "--steps", "1", "--size", "64", "--loss", "bce=30,gt=1"])
    err = capsys.readouterr().err.strip()
    assert stop.value.code == 2 and err.count("\n") == 0
    assert err.startswith("error: --loss gt=... weights the loss against ground-truth masks, but there are none")
    assert not (tmp_path / "run").exists()
