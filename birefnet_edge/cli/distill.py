"""``distill``: train a small student from a teacher."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer


def distill_cmd(
    teacher: Annotated[str, typer.Option("--teacher", help="Teacher: weights, an artifact folder, or none.")],
    student: Annotated[str, typer.Option("--student", help="Registered variant to train, e.g. student-s.")],
    images: Annotated[Path, typer.Option("--images", help="Folder of training images (searched recursively).")],
    out: Annotated[Path, typer.Option("--out", help="Run folder, e.g. runs/NAME.")],
    steps: Annotated[int, typer.Option("--steps", help="Optimizer steps in total.")],
    size: Annotated[int, typer.Option("--size", help="Training side in px (multiple of 32).")] = 1024,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Images per micro-batch per process.")] = 4,
    accum: Annotated[int, typer.Option("--accum", help="Micro-batches per optimizer step.")] = 1,
    lr: Annotated[float, typer.Option("--lr", help="Peak learning rate (AdamW, warm-up then cosine).")] = 3e-4,
    eval_every: Annotated[int, typer.Option("--eval-every", help="Steps between held-out evaluations.")] = 500,
    save_every: Annotated[int, typer.Option("--save-every", help="Steps between checkpoints.")] = 500,
    cache: Annotated[Path | None, typer.Option("--cache", help="Folder caching teacher targets.")] = None,
    masks: Annotated[Path | None, typer.Option("--masks", help="Ground-truth masks (train and evaluate).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run saved in --out.")] = False,
    device: Annotated[str | None, typer.Option("--device", help="cpu or cuda (default: cuda if present).")] = None,
    workers: Annotated[int, typer.Option("--workers", help="DataLoader worker processes.")] = 2,
    loss: Annotated[str | None, typer.Option("--loss", help="Loss weights, e.g. bce=30,feature=1,gt=1.")] = None,
    augment: Annotated[str | None, typer.Option("--augment", help="e.g. flip=0.5,max_scale=1.25,jitter=0.2.")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of split, order, augmentation and init.")] = 0,
    student_init: Annotated[
        str, typer.Option("--student-init", help="Student backbone: auto, imagenet[@commit], scratch or a file.")
    ] = "auto",
) -> None:
    """Distil a teacher into a small student on unlabeled images (torchrun --nproc-per-node N for DDP)."""
    from birefnet_edge.distill import Augment, DistillConfig, LossWeights, parse_fields, run_distill
    from birefnet_edge.distill.progress import ProgressPrinter
    from birefnet_edge.errors import UsageError
    from birefnet_edge.labels import split_layout

    named = {item.partition("=")[0].strip() for item in (loss or "").split(",")}
    if "gt" in named and split_layout(images, masks)[1] is None:  # it would weigh nothing, without a word
        raise UsageError(
            "--loss gt=... weights the loss against ground-truth masks, but there are none: pass --masks DIR "
            "(or --images a folder holding im/ and gt/), or drop gt"
        )

    config = DistillConfig(
        teacher=teacher,
        student=student,
        images=images,
        out=out,
        steps=steps,
        size=size,
        batch_size=batch_size,
        accum=accum,
        lr=lr,
        eval_every=eval_every,
        save_every=save_every,
        seed=seed,
        cache=cache,
        masks=masks,
        workers=workers,
        device=device,
        loss=parse_fields(loss, LossWeights, "--loss"),
        augment=parse_fields(augment, Augment, "--augment"),
        student_init=student_init,
    )
    with _echoing_log("birefnet_edge.distill"):
        result = run_distill(config, resume=resume, progress=ProgressPrinter(config.steps))
    if result.best_step is not None:
        ((metric, value),) = result.best.items()
        against = "teacher" if metric == "iou" else "ground truth"
        best = config.out / "best.safetensors"
        typer.echo(
            f"done: step {result.step}; best held-out IoU vs {against} {value:.4f} at step "
            f"{result.best_step} -> {best} (export it: birefnet-edge export --weights {best} -t openvino-fp32)",
            err=True,
        )


class _EchoHandler(logging.Handler):
    """Prints a logger's info lines on stderr as plain lines (warnings prefixed), like the rest of the CLI."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)

    def emit(self, record: logging.LogRecord) -> None:
        typer.echo(("warning: " if record.levelno >= logging.WARNING else "") + record.getMessage(), err=True)


@contextmanager
def _echoing_log(name: str) -> Iterator[None]:
    logger, handler = logging.getLogger(name), _EchoHandler()
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
