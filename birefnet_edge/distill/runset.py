"""What a run trains and evaluates on: the images (and masks), the held-out split, and the checks that tie
them to the teacher (ground truth alone needs masks; feature distillation needs a PyTorch teacher)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from birefnet_edge.distill.config import DistillConfig
from birefnet_edge.distill.data import find_images, readable_images, split_held_out
from birefnet_edge.distill.teacher import NO_TEACHER, Teacher
from birefnet_edge.errors import InputError
from birefnet_edge.images import describe_skipped
from birefnet_edge.labels import pair_masks, split_layout


@dataclass
class RunData:
    """The files of a run.

    Attributes:
        train_files: Training images.
        held_files: Held-out images.
        train_masks: Masks of the training images when the masks supervise, else None.
        held_masks: Masks of the held-out images when every one has one, else None.
        unreadable: (file, reason) of the images that do not decode.
        notes: Warnings to print once (images without a mask, ground-truth evaluation off).
    """

    train_files: list[Path]
    held_files: list[Path]
    train_masks: list[Path] | None = None
    held_masks: list[Path] | None = None
    unreadable: list[tuple[Path, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def supervises(config: DistillConfig) -> bool:
    """True when ground-truth masks are part of the loss (given, and ``loss.gt`` > 0)."""
    return config.masks is not None and config.loss.gt > 0


def prepare_data(config: DistillConfig) -> RunData:
    """Find the images (and masks), pair them and split off the held-out set (fixed by the seed).

    With supervising masks, images without a mask are left out of the run, and said so once; with masks
    that only evaluate, they train, and ground-truth evaluation needs a mask for every held-out image.

    Raises:
        InputError: No images, no mask matching an image, ``--teacher none`` without masks or with
            ``--loss gt=0``.
    """
    images, masks = split_layout(config.images, config.masks)
    config = dataclasses.replace(config, images=images, masks=masks)
    if config.teacher == NO_TEACHER and (config.masks is None or config.loss.gt <= 0):
        why = "--loss gt=0 leaves nothing to learn" if config.masks else "pass --masks DIR"
        raise InputError(f"--teacher none trains on ground-truth masks alone: {why} (or name a teacher)")
    files, unreadable = readable_images(find_images(images))
    if masks is None:
        train, held = split_held_out(files, config.val_fraction, config.val_max, config.seed)
        return RunData(train, held, unreadable=unreadable)
    labelled = pair_masks(files, images, masks)
    notes = [labelled.describe_unmatched()] if labelled.unmatched else []
    if supervises(config):
        if notes:
            notes[0] += ": left out of this run"
        if labelled.unreadable:
            notes.append(f"{describe_skipped(labelled.unreadable, what='mask')}: their images are left out of this run")
        files = [image for image, _ in labelled.pairs]
    elif labelled.unreadable:
        notes.append(f"{describe_skipped(labelled.unreadable, what='mask')}: their images train without one")
    train, held = split_held_out(files, config.val_fraction, config.val_max, config.seed)
    mask_of = dict(labelled.pairs)
    train_masks = [mask_of[p] for p in train] if supervises(config) else None
    held_masks = [mask_of[p] for p in held] if all(p in mask_of for p in held) else None
    if held_masks is None:
        lacking = sum(p not in mask_of for p in held)
        notes.append(f"ground-truth evaluation off: {lacking} held-out image(s) lack a mask")
    return RunData(train, held, train_masks, held_masks, unreadable, notes)


def check_teacher(config: DistillConfig, teacher: Teacher | None) -> None:
    """Raise a one-line error for settings the teacher cannot serve.

    Raises:
        InputError: Feature distillation without a PyTorch teacher.
    """
    if config.loss.feature > 0 and (teacher is None or teacher.model is None):
        raise InputError(
            f"--loss feature={config.loss.feature:g} needs the teacher's backbone features, which --teacher "
            f"{config.teacher} does not give (an exported artifact or none); use PyTorch weights or feature=0"
        )
