"""One training step, tested alone: a Distiller built from its parts (no files, no run folder, no process group)."""

from __future__ import annotations

from pathlib import Path

import torch

from birefnet_edge.distill import Distiller
from birefnet_edge.distill.data import Sample
from birefnet_edge.distill.teacher import Teacher, load_teacher
from birefnet_edge.model import create_model


def _samples(seed: int, count: int = 2, masks: bool = False) -> list[Sample]:
    gen = torch.Generator().manual_seed(seed)
    out = []
    for i in range(count):
        image = torch.randint(0, 256, (3, 64, 64), generator=gen, dtype=torch.uint8)
        mask = (torch.rand(1, 64, 64, generator=gen) > 0.5).float() if masks else None
        out.append(Sample(i, image, f"{seed}-{i}", None, mask))
    return out


def _distiller(tiny_config, tmp_path: Path, with_teacher: bool = True, **changes) -> Distiller:
    config = tiny_config(tmp_path, tmp_path / "never-written", **changes)
    torch.manual_seed(0)
    student = create_model("student_tiny").train()
    found = None
    if with_teacher:
        model, info, identity = load_teacher("random:birefnet_tiny", torch.device("cpu"))
        found = Teacher("random:birefnet_tiny", identity, info.to_dict(), model=model)
    masks = None if with_teacher else [Path("unused")]  # the masks ride in the samples; the list only turns them on
    return Distiller(config, student, found, train_masks=masks)


def _params(distiller: Distiller) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in distiller.student.state_dict().items()}


def test_train_step_updates_the_student_and_the_counters(tiny_config, tmp_path: Path) -> None:
    distiller = _distiller(tiny_config, tmp_path, accum=2)
    before = _params(distiller)
    parts = distiller.train_step(iter([_samples(1), _samples(2)]))
    after = _params(distiller)
    assert distiller.step == 1 and distiller.position == 4  # batch 2 x accum 2
    assert {"loss", "bce", "iou", "ssim", "mae", "lr", "grad_norm"} <= parts.keys()
    assert parts["loss"] > 0 and parts["grad_norm"] > 0
    changed = [k for k in before if k.startswith(("bb.", "decoder.")) and not torch.equal(before[k], after[k])]
    assert changed, "no student weight moved"
    assert not (tmp_path / "never-written").exists()


def test_repeated_steps_on_one_batch_lower_its_loss(tiny_config, tmp_path: Path) -> None:
    distiller = _distiller(tiny_config, tmp_path, lr=3e-3, warmup=1, steps=12, augment=_no_augment())
    batch = _samples(3)
    losses = [distiller.train_step(iter([batch]))["loss"] for _ in range(12)]
    assert min(losses[-3:]) < 0.7 * losses[0], losses


def test_ground_truth_alone_trains_without_a_teacher(tiny_config, tmp_path: Path) -> None:
    distiller = _distiller(tiny_config, tmp_path, with_teacher=False, teacher="none", lr=3e-3, augment=_no_augment())
    batch = _samples(4, masks=True)
    first = distiller.train_step(iter([batch]))
    for _ in range(8):
        last = distiller.train_step(iter([batch]))
    assert first["gt"] == first["loss"] and last["loss"] < first["loss"]


def test_the_same_step_from_the_same_state_is_bit_identical(tiny_config, tmp_path: Path) -> None:
    a, b = _distiller(tiny_config, tmp_path), _distiller(tiny_config, tmp_path)
    a.train_step(iter([_samples(5)]))
    b.train_step(iter([_samples(5)]))
    pa, pb = _params(a), _params(b)
    assert all(torch.equal(pa[k], pb[k]) for k in pa)


def _no_augment():
    from birefnet_edge.distill import Augment

    return Augment(flip=0.0, max_scale=1.0, jitter=0.0)
