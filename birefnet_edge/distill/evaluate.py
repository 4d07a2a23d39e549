"""Held-out evaluation: agreement with the teacher (IoU, MAE, S-measure) and, when given, with ground truth.

The metric functions are the parity gate's (``birefnet_edge.metrics``), not copies.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from birefnet_edge.distill.data import load_mask, load_resized
from birefnet_edge.distill.teacher import Teacher, normalise
from birefnet_edge.metrics import logits_iou, mask_iou, mean_s_measure, probability_mae, s_measure, sigmoid
from birefnet_edge.model import BiRefNet


@dataclass
class HeldOut:
    """The held-out images (uint8, resized), the teacher's logits for them (None without a teacher) and
    ground-truth masks (None without masks)."""

    images: torch.Tensor
    teacher_logits: np.ndarray | None
    masks: torch.Tensor | None


def build_held_out(
    files: list[Path],
    size: int,
    teacher: Teacher | None,
    device: torch.device,
    batch: int,
    masks: list[Path] | None = None,
) -> HeldOut:
    """Load the held-out images (and masks) once and run the teacher on them once (evaluation reuses both).

    Args:
        files: Held-out image files.
        size: Side they are resized to.
        teacher: The teacher, or None (ground truth only).
        device: Where the teacher runs.
        batch: Images per teacher call.
        masks: Each file's mask (same order), or None.
    """
    images = torch.stack([load_resized(p, size) for p in files])
    logits = None
    if teacher is not None:
        chunks = []
        for start in range(0, len(files), batch):
            x = images[start : start + batch].to(device).float() / 255.0
            prob = teacher.probs(x).clamp(1e-6, 1 - 1e-6)
            chunks.append(torch.logit(prob).cpu().numpy())
        logits = np.concatenate(chunks)
    gt = torch.stack([load_mask(p, size) for p in masks]) if masks else None
    return HeldOut(images, logits, gt)


@torch.no_grad()
def evaluate(student: BiRefNet, held: HeldOut, device: torch.device, batch: int) -> dict[str, float]:
    """Agreement metrics of the student (eval mode, float32) on the held-out set; restores train mode.

    Keys ``iou``, ``mae``, ``s_measure`` compare with the teacher; ``gt_iou``, ``gt_mae``, ``gt_s_measure``
    with the ground truth.
    """
    was_training = student.training
    student.eval()
    outs = []
    for start in range(0, len(held.images), batch):
        x = held.images[start : start + batch].to(device).float() / 255.0
        outs.append(student(normalise(x)).float().cpu().numpy())
    student.train(was_training)
    logits = np.concatenate(outs)
    metrics: dict[str, float] = {}
    if held.teacher_logits is not None:
        metrics["iou"] = logits_iou(logits, held.teacher_logits)
        metrics["mae"] = probability_mae(logits, held.teacher_logits)
        metrics["s_measure"] = mean_s_measure(logits, held.teacher_logits)
    if held.masks is not None:
        gt = held.masks.numpy()
        prob = sigmoid(logits)
        metrics["gt_iou"] = mask_iou(logits > 0, gt > 0.5)
        metrics["gt_mae"] = float(np.mean(np.abs(prob - gt)))
        metrics["gt_s_measure"] = float(np.mean([s_measure(p[0], g[0]) for p, g in zip(prob, gt)]))
    return metrics
