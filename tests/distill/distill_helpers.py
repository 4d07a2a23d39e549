"""Plain helpers of the distillation tests, in a module with a unique name.

Spawned DDP children unpickle test functions by importing their module, and with it this one; a
``conftest`` import there would pick whichever of the suite's several conftest.py files comes first
on sys.path in a full run.
"""

from __future__ import annotations

from pathlib import Path

from birefnet_edge.distill import DistillConfig


def tiny_distill_config(images: Path, out: Path, **changes) -> DistillConfig:
    """The tiny teacher and student at 64 px, batch 2, no workers, frequent evaluation and checkpoints."""
    settings = dict(
        teacher="random:birefnet_tiny",
        student="student_tiny",
        images=images,
        out=out,
        steps=4,
        size=64,
        batch_size=2,
        workers=0,
        warmup=2,
        eval_every=2,
        save_every=2,
        log_every=1,
        val_fraction=0.2,
    )
    settings.update(changes)
    return DistillConfig(**settings)
