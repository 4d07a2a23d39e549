"""What one training step is made of, apart from the optimizer and the run's state (see ``trainer.py``).

The trained module (student plus feature projector), one micro-batch (teacher targets from the cache or
the teacher, masks, one augmentation for both) and the finite-loss check. Each augmentation seed is a pure
function of (seed, stream position), which is what lets a resumed run end bit-identical to an unbroken one.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from birefnet_edge.distill.config import Augment
from birefnet_edge.distill.data import Sample, augment_pair
from birefnet_edge.distill.losses import FeatureProjector
from birefnet_edge.distill.teacher import TargetCache, Teacher
from birefnet_edge.errors import TrainingError
from birefnet_edge.model import BiRefNet, TrainOutputs


class Trainable(nn.Module):
    """Student plus feature projector in one module, so DDP sees every trained parameter inside forward."""

    def __init__(self, student: BiRefNet, projector: FeatureProjector | None) -> None:
        super().__init__()
        self.student, self.projector = student, projector

    def forward(self, x: torch.Tensor, teacher_feats: list[torch.Tensor] | None) -> tuple[TrainOutputs, Any]:
        feats: list[Any] = []
        # A copy of the list: forward_enc replaces stage 4 in the returned list by the context-fused map.
        handle = self.student.bb.register_forward_hook(lambda _m, _i, out: feats.append(list(out)))
        try:
            outputs = self.student(x)
        finally:
            handle.remove()
        if self.projector is None or teacher_feats is None:
            return outputs, None
        return outputs, self.projector(feats[0], teacher_feats)


def aug_seed(seed: int, position: int) -> int:
    """The augmentation seed of the sample at stream ``position`` (the same on every rank and after a resume)."""
    return int(np.random.SeedSequence([seed, position]).generate_state(1)[0])


def teacher_targets(
    teacher: Teacher, cache: TargetCache | None, samples: list[Sample], images: Tensor, device: torch.device
) -> Tensor:
    """Teacher probabilities of the un-augmented images: from the cache, else computed (and cached)."""
    found = [s.target for s in samples]
    missing = [i for i, t in enumerate(found) if t is None]
    if missing:
        probs = teacher.probs(images[missing], device.type == "cuda").cpu()
        for i, prob in zip(missing, probs):
            found[i] = cache.quantise(prob) if cache else prob
            if cache is not None:
                cache.put(samples[i].image_sha256, prob)
    return torch.stack(found).to(device)  # type: ignore[arg-type]


def micro_batch(
    samples: list[Sample],
    first: int,
    *,
    teacher: Teacher | None,
    cache: TargetCache | None,
    with_masks: bool,
    augment: Augment,
    seed: int,
    device: torch.device,
) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """Augmented (images, teacher targets, masks) of one micro-batch whose first sample is stream position
    ``first``; targets are None without a teacher, masks None unless the masks supervise (``with_masks``)."""
    images = torch.stack([s.image for s in samples]).to(device).float() / 255.0
    maps = []
    if teacher is not None:
        maps.append(teacher_targets(teacher, cache, samples, images, device))
    if with_masks:
        maps.append(torch.stack([s.mask for s in samples]).to(device))  # type: ignore[misc]
    joined = torch.cat(maps, dim=1)  # augmented together: one flip and crop for targets and masks
    pairs = [
        augment_pair(img, tgt, augment, aug_seed(seed, first + j)) for j, (img, tgt) in enumerate(zip(images, joined))
    ]
    images, joined = torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])
    targets = joined[:, :1] if teacher is not None else None
    masks = joined[:, -1:] if with_masks else None
    return images, targets, masks


def check_finite(parts: dict[str, float], step: int, best_step: int | None) -> None:
    """Stop before the optimizer step when the loss is nan or inf: it would poison the weights for good."""
    if math.isfinite(parts["loss"]):
        return
    terms = ", ".join(f"{k} {v:.4g}" for k, v in parts.items() if k != "loss")
    kept = f"the step-{best_step} weights" if best_step is not None else "the last good weights"
    raise TrainingError(
        f"the loss is {parts['loss']} at step {step} ({terms}); the run stopped before updating the student, and "
        f"best.safetensors keeps {kept}. Lower --lr or check --loss and the images, then start again in a new --out"
    )
