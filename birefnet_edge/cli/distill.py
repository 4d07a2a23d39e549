"""``distill``: train a small student from a teacher."""

from __future__ import annotations

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
    options = dict(locals())  # first statement: exactly the command's options
    from birefnet_edge.distill import cli_run

    cli_run(options, echo=lambda line: typer.echo(line, err=True))
