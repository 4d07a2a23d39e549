"""The settings of one distillation run, checked once, and the rules for resuming a run with them."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from birefnet_edge.checks import MAX_SIDE, bounded
from birefnet_edge.distill.students import check_student_init
from birefnet_edge.errors import UsageError

# Settings a resumed run may change: they do not alter what a step computes (only how long the run is,
# how often it reports and saves, where it runs and how fast it loads).
RESUMABLE_CHANGES = ("steps", "eval_every", "save_every", "workers", "device", "cache", "log_every")
CACHE_FORMATS = ("png", "npy")


@dataclass(frozen=True)
class LossWeights:
    """Weights of the loss terms on soft teacher targets (BiRefNet's own values by default).

    With ground-truth masks the same terms are computed against the masks too, times ``gt``.

    Attributes:
        bce: Binary cross-entropy against the teacher's probabilities.
        iou: Soft IoU loss.
        ssim: 1 - SSIM (11x11 Gaussian window).
        mae: Mean absolute error of the probabilities.
        side: Factor on the same loss applied to each side output (H/32, H/16, H/8).
        feature: Feature distillation on the backbone stages through 1x1 projections (0 = off).
        gt: Factor on the loss against ground-truth masks, with ``--masks`` (0 = masks only evaluate).
    """

    bce: float = 30.0
    iou: float = 0.5
    ssim: float = 10.0
    mae: float = 100.0
    side: float = 1.0
    feature: float = 0.0
    gt: float = 1.0

    def __post_init__(self) -> None:
        # Weights far above BiRefNet's own (100 for mae) only scale the loss; 1e4 catches a typo such as 1e9.
        for f in dataclasses.fields(self):
            bounded(getattr(self, f.name), f"--loss {f.name}", 0, 1e4)
        if not any(getattr(self, name) > 0 for name in ("bce", "iou", "ssim", "mae", "feature")):
            raise UsageError(
                "--loss: bce, iou, ssim, mae and feature are all 0, so nothing would be learned; give one a weight > 0"
            )


@dataclass(frozen=True)
class Augment:
    """Training augmentation, applied identically to image and target (colour jitter to the image only).

    Attributes:
        flip: Probability of a horizontal flip.
        max_scale: Largest zoom of the random scale-and-crop (1.0 = off).
        jitter: Strength of brightness, contrast and saturation jitter (0 = off).
    """

    flip: float = 0.5
    max_scale: float = 1.25
    jitter: float = 0.2

    def __post_init__(self) -> None:
        bounded(self.flip, "--augment flip", 0, 1, why="a probability")
        # max_scale 4 zooms a 1024 px crop to 4096 px, the largest side any run may hold.
        bounded(self.max_scale, "--augment max_scale", 1, 4, why="1 = off; the zoom of the scale-and-crop")
        bounded(self.jitter, "--augment jitter", 0, 1, why="0 = off; 1 may double or zero brightness")


@dataclass(frozen=True)
class DistillConfig:
    """Everything that defines a distillation run (the ``distill`` command's options).

    Attributes:
        teacher: Weights spec of the teacher (anything ``load_model`` accepts), an exported artifact folder,
            or ``none`` (train on the ground-truth masks alone).
        student: Registered variant to train, e.g. ``student-s`` (or ``BiRefNet_lite`` to fine-tune it).
        student_init: Where the student's backbone starts: ``auto``, ``imagenet[@commit]``, ``scratch`` or a
            weights file (see :mod:`birefnet_edge.distill.students`).
        images: Folder of training images (searched recursively; a folder holding DIS5K's ``im/`` and ``gt/``
            stands for ``im/`` with ``gt/`` as the masks).
        out: Run folder (checkpoints, best.safetensors, metrics.jsonl, curves.png).
        steps: Optimizer steps in total.
        size: Training side in px (multiple of 32); the exported student may use another size.
        batch_size: Images per micro-batch per process.
        accum: Micro-batches accumulated per optimizer step.
        lr: Peak learning rate of AdamW.
        weight_decay: AdamW weight decay.
        warmup: Warm-up steps (linear), then cosine decay to ``min_lr_ratio * lr``.
        min_lr_ratio: Final learning rate as a fraction of ``lr``.
        clip: Gradient-norm clipping threshold (0 = off).
        eval_every: Steps between held-out evaluations (the last step is always evaluated).
        save_every: Steps between checkpoints (the last step is always saved).
        log_every: Steps between metrics.jsonl training records.
        val_fraction: Share of the images held out for evaluation.
        val_max: Most images held out.
        seed: Seed of the split, data order, augmentation and student initialisation.
        cache: Folder of cached teacher probabilities (None: computed on the fly).
        cache_format: ``png`` (8-bit) or ``npy`` (float16).
        masks: Folder of ground-truth masks (same relative paths as the images): they supervise (``loss.gt``)
            and evaluate.
        workers: DataLoader worker processes.
        device: ``cpu`` or ``cuda`` (None: cuda when available).
        loss: Loss weights.
        augment: Augmentation settings.
    """

    teacher: str
    student: str
    images: Path
    out: Path
    steps: int
    student_init: str = "auto"
    size: int = 1024
    batch_size: int = 4
    accum: int = 1
    lr: float = 3e-4
    weight_decay: float = 0.01
    warmup: int = 100
    min_lr_ratio: float = 0.01
    clip: float = 1.0
    eval_every: int = 500
    save_every: int = 500
    log_every: int = 10
    val_fraction: float = 0.05
    val_max: int = 64
    seed: int = 0
    cache: Path | None = None
    cache_format: str = "png"
    masks: Path | None = None
    workers: int = 2
    device: str | None = None
    loss: LossWeights = field(default_factory=LossWeights)
    augment: Augment = field(default_factory=Augment)

    def __post_init__(self) -> None:
        bounded(self.size, "--size", 64, MAX_SIDE, why="memory grows with the pixel count")
        if self.size % 32:
            raise UsageError(
                f"--size {self.size} is not a multiple of 32 of at least 64; use e.g. "
                f"{max(64, self.size // 32 * 32)} or {max(64, -(-self.size // 32) * 32)}"
            )
        for name in ("steps", "batch_size", "accum", "eval_every", "save_every", "log_every"):
            bounded(getattr(self, name), f"--{name.replace('_', '-')}", 1)
        bounded(self.lr, "--lr", 1e-12, 1.0)
        bounded(self.workers, "--workers", 0, 256)
        bounded(self.val_fraction, "--val-fraction", 0, 1)
        bounded(self.val_max, "--val-max", 1)
        if self.cache_format not in CACHE_FORMATS:
            raise UsageError(f"cache format {self.cache_format!r} is not one of {', '.join(CACHE_FORMATS)}")
        check_student_init(self.student_init)
        if self.device not in (None, "cpu", "cuda"):
            raise UsageError(f"--device {self.device!r} is not cpu or cuda")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready settings (paths as strings), as stored in run.json and the checkpoints.

        ``out`` is left out: the run folder is where these files are, so a moved or copied run (fetched
        from a cluster, say) still resumes.
        """
        data = dataclasses.asdict(self)
        del data["out"]
        return {k: str(v.resolve()) if isinstance(v, Path) else v for k, v in data.items()}


def differing_settings(saved: dict[str, Any], current: DistillConfig) -> list[str]:
    """Names (with old -> new values) of settings that differ from a saved run and may not change on resume."""
    now = current.to_dict()
    saved = {k: v for k, v in saved.items() if k != "out"}  # run.json of older runs held the absolute --out
    keys = sorted(set(saved) | set(now))
    return [
        f"{k}: {saved.get(k)!r} -> {now.get(k)!r}"
        for k in keys
        if k not in RESUMABLE_CHANGES and saved.get(k) != now.get(k)
    ]


def parse_fields(text: str | None, cls: type, option: str) -> Any:
    """``"bce=30,ssim=5"`` -> ``cls(bce=30.0, ssim=5.0)`` (other fields keep their defaults).

    Raises:
        InputError: An unknown name or a value that is not a number (the message lists the names).
    """
    if not text:
        return cls()
    names = [f.name for f in dataclasses.fields(cls)]
    values: dict[str, float] = {}
    for item in text.split(","):
        key, _, value = item.partition("=")
        key = key.strip()
        try:
            if key not in names:
                raise ValueError(key)
            values[key] = float(value)
        except ValueError:
            raise UsageError(
                f"{option} {text!r}: cannot read {item.strip()!r}; expected name=number pairs with names from "
                f"{', '.join(names)}"
            ) from None
    return cls(**values)
