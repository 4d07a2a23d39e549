"""Held-out evaluation: agreement with the teacher (IoU, MAE, S-measure) and, when given, with ground truth.

The metric functions are the parity gate's (``birefnet_edge.metrics``), not copies.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from birefnet_edge.distill.data import load_mask, load_resized
from birefnet_edge.distill.teacher import normalise, teacher_probs
from birefnet_edge.metrics import logits_iou, mask_iou, mean_s_measure, probability_mae, s_measure, sigmoid
from birefnet_edge.model import BiRefNet
from birefnet_edge.parity.inputs import IMAGE_SUFFIXES

log = logging.getLogger(__name__)


@dataclass
class HeldOut:
    """The held-out images (uint8, resized), the teacher's logits for them and ground-truth masks if any."""

    images: torch.Tensor
    teacher_logits: np.ndarray
    masks: torch.Tensor | None


def find_mask(image: Path, images_root: Path, masks_root: Path) -> Path | None:
    """The mask with the image's relative path and stem (any image suffix) under ``masks_root``."""
    rel = image.relative_to(images_root).with_suffix("")
    for suffix in IMAGE_SUFFIXES:
        for candidate in (masks_root / rel.with_suffix(suffix), masks_root / rel.with_suffix(suffix.upper())):
            if candidate.is_file():
                return candidate
    return None


def build_held_out(
    files: list[Path], size: int, teacher: BiRefNet, device: torch.device, batch: int, masks: tuple[Path, Path] | None
) -> HeldOut:
    """Load the held-out images once and run the teacher on them once (evaluation reuses both)."""
    images = torch.stack([load_resized(p, size) for p in files])
    logits = []
    for start in range(0, len(files), batch):
        x = images[start : start + batch].to(device).float() / 255.0
        prob = teacher_probs(teacher, x, autocast=False).clamp(1e-6, 1 - 1e-6)
        logits.append(torch.logit(prob).cpu().numpy())
    gt = None
    if masks is not None:
        images_root, masks_root = masks
        found = [find_mask(p, images_root, masks_root) for p in files]
        if all(found):
            gt = torch.stack([load_mask(p, size) for p in found])  # type: ignore[arg-type]
        else:
            missing = [str(p) for p, m in zip(files, found) if m is None]
            log.warning(
                "ground-truth evaluation off: no mask for %d held-out image(s), e.g. %s", len(missing), missing[0]
            )
    return HeldOut(images, np.concatenate(logits), gt)


@torch.no_grad()
def evaluate(student: BiRefNet, held: HeldOut, device: torch.device, batch: int) -> dict[str, float]:
    """Agreement metrics of the student (eval mode, float32) on the held-out set; restores train mode."""
    was_training = student.training
    student.eval()
    outs = []
    for start in range(0, len(held.images), batch):
        x = held.images[start : start + batch].to(device).float() / 255.0
        outs.append(student(normalise(x)).float().cpu().numpy())
    student.train(was_training)
    logits = np.concatenate(outs)
    metrics = {
        "iou": logits_iou(logits, held.teacher_logits),
        "mae": probability_mae(logits, held.teacher_logits),
        "s_measure": mean_s_measure(logits, held.teacher_logits),
    }
    if held.masks is not None:
        gt = held.masks.numpy()
        prob = sigmoid(logits)
        metrics["gt_iou"] = mask_iou(logits > 0, gt > 0.5)
        metrics["gt_mae"] = float(np.mean(np.abs(prob - gt)))
        metrics["gt_s_measure"] = float(np.mean([s_measure(p[0], g[0]) for p, g in zip(prob, gt)]))
    return metrics
