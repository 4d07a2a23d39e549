"""Distillation losses on soft teacher targets: BCE + IoU + SSIM + MAE on the final and side outputs,
and optional feature distillation on backbone stages through 1x1 projections."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from birefnet_edge.distill.config import LossWeights
from birefnet_edge.model import TrainOutputs


def soft_iou_loss(prob: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - soft IoU per image, averaged over the batch."""
    inter = (prob * target).sum(dim=(1, 2, 3))
    union = (prob + target - prob * target).sum(dim=(1, 2, 3))
    return (1 - (inter + 1e-6) / (union + 1e-6)).mean()


def _gaussian_window(size: int, sigma: float, like: torch.Tensor) -> torch.Tensor:
    coords = torch.arange(size, dtype=like.dtype, device=like.device) - size // 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).view(1, 1, size, size)


def ssim(a: torch.Tensor, b: torch.Tensor, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Mean SSIM of two (B, 1, H, W) maps in [0, 1] with a Gaussian window (zero padding)."""
    w = _gaussian_window(window, sigma, a)
    pad = window // 2
    mu_a, mu_b = F.conv2d(a, w, padding=pad), F.conv2d(b, w, padding=pad)
    var_a = F.conv2d(a * a, w, padding=pad) - mu_a**2
    var_b = F.conv2d(b * b, w, padding=pad) - mu_b**2
    cov = F.conv2d(a * b, w, padding=pad) - mu_a * mu_b
    c1, c2 = 0.01**2, 0.03**2
    value = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return value.mean()


def map_loss(logits: torch.Tensor, target: torch.Tensor, weights: LossWeights) -> dict[str, torch.Tensor]:
    """The weighted terms for one output against a target of any size (resized bilinearly to the output)."""
    if target.shape[-2:] != logits.shape[-2:]:
        target = F.interpolate(target, size=logits.shape[-2:], mode="bilinear", align_corners=False)
    logits = logits.float()
    prob = torch.sigmoid(logits)
    return {
        "bce": weights.bce * F.binary_cross_entropy_with_logits(logits, target),
        "iou": weights.iou * soft_iou_loss(prob, target),
        "ssim": weights.ssim * (1 - ssim(prob, target)),
        "mae": weights.mae * (prob - target).abs().mean(),
    }


def distill_loss(outputs: TrainOutputs, target: torch.Tensor, weights: LossWeights) -> dict[str, torch.Tensor]:
    """Total loss (key ``loss``) and its parts: final output plus ``weights.side`` times each side output."""
    parts = map_loss(outputs.logits, target, weights)
    if weights.side > 0:
        for side in outputs.side_logits:
            for key, value in map_loss(side, target, weights).items():
                parts[key] = parts[key] + weights.side * value
    parts["loss"] = sum(parts.values())
    return parts


def training_loss(
    outputs: TrainOutputs, targets: torch.Tensor | None, masks: torch.Tensor | None, weights: LossWeights
) -> dict[str, torch.Tensor]:
    """The loss of one batch: :func:`distill_loss` against the teacher's targets (when given) plus ``weights.gt``
    times the same loss against the ground-truth masks (when given, key ``gt``). Without targets the other
    parts are the mask loss's terms, times ``weights.gt``.

    Raises:
        ValueError: Neither targets nor masks (nothing to learn from; the run's set-up prevents it).
    """
    if targets is None and masks is None:
        raise ValueError("training_loss needs teacher targets, masks or both")
    if masks is None:
        return distill_loss(outputs, targets, weights)  # type: ignore[arg-type]
    gt = {k: weights.gt * v for k, v in distill_loss(outputs, masks, weights).items()}
    if targets is None:
        return {**gt, "gt": gt["loss"]}
    parts = distill_loss(outputs, targets, weights)
    parts["gt"] = gt["loss"]
    parts["loss"] = parts["loss"] + gt["loss"]
    return parts


class FeatureProjector(nn.Module):
    """1x1 convs mapping the student's four backbone stages to the teacher's widths (trained, not exported).

    Args:
        student_channels: Widths of the student's stages.
        teacher_channels: Widths of the teacher's stages.
    """

    def __init__(self, student_channels: tuple[int, ...], teacher_channels: tuple[int, ...]) -> None:
        super().__init__()
        self.proj = nn.ModuleList(nn.Conv2d(s, t, 1) for s, t in zip(student_channels, teacher_channels))

    def forward(self, student: list[torch.Tensor], teacher: list[torch.Tensor]) -> torch.Tensor:
        """Mean over stages of the MSE between projected student maps and teacher maps (resized to match)."""
        total = student[0].new_zeros(())
        for proj, s, t in zip(self.proj, student, teacher):
            p = proj(s)
            if t.shape[-2:] != p.shape[-2:]:
                t = F.interpolate(t.float(), size=p.shape[-2:], mode="bilinear", align_corners=False)
            total = total + F.mse_loss(p.float(), t.float())
        return total / len(self.proj)
