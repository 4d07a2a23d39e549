"""``predict``: masks and cutouts for image files, here or on Ray."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from birefnet_edge.cli._options import (
    Engine,
    ModelSpec,
    NoVerify,
    Size,
    WPatchOrder,
    WVariant,
    in_range,
    order_name,
    parse_size,
    positive_batches,
)
from birefnet_edge.console import Progress


def predict_cmd(
    model: ModelSpec,
    inputs: Annotated[list[Path], typer.Argument(metavar="INPUT", help="Image files and/or folders of images.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for <stem>_mask.png and <stem>_cutout.png.")],
    batch: Annotated[int, typer.Option("--batch", callback=positive_batches, help="Images per inference call.")] = 1,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Rewrite outputs that already exist.")] = False,
    size: Size = None,
    no_verify: NoVerify = False,
    engine: Annotated[Engine, typer.Option("--engine", help="local (this process) or ray (Ray Data).")] = "local",
    address: Annotated[
        str | None, typer.Option("--address", help="Ray cluster to join (default: a local Ray).")
    ] = None,
    workers: Annotated[
        int | None, typer.Option("--workers", callback=in_range(1), help="Ray inference actors (default 2).")
    ] = None,
    cpus_per_worker: Annotated[
        float, typer.Option("--cpus-per-worker", callback=in_range(0.01), help="Ray CPUs per actor.")
    ] = 1.0,
    gpus_per_worker: Annotated[
        float | None,
        typer.Option(
            "--gpus-per-worker", callback=in_range(0), help="Ray GPUs per actor (default: what the runner needs)."
        ),
    ] = None,
    patch_order: WPatchOrder = None,
    variant: WVariant = None,
) -> None:
    """Write masks and RGBA cutouts at the original resolution; exit 1 if any input could not be read."""
    from birefnet_edge.predict import predict
    from birefnet_edge.predict_ray import RayOptions

    if engine == "ray" and (variant is not None or patch_order is not None):
        raise typer.BadParameter(
            "--variant/--patch-order work with --engine local; for ray, export the checkpoint with them "
            "(the manifest records both) and predict with the artifact",
            param_hint="--engine",
        )
    if engine == "local" and (address is not None or workers is not None):
        raise typer.BadParameter("--address and --workers need --engine ray", param_hint="--engine")
    progress = Progress(0, "segmenting")
    with progress.running():
        summary = predict(
            model,
            inputs,
            out,
            batch,
            overwrite,
            size=parse_size(size),
            on_progress=progress.advance,
            on_error=_echo_unreadable,
            verify=not no_verify,
            variant=variant,
            patch_order=order_name(patch_order),
            engine=engine,
            ray=RayOptions(address, workers or 2, cpus_per_worker=cpus_per_worker, gpus_per_worker=gpus_per_worker),
            on_start=progress.start,
        )
    typer.echo(f"{summary.describe()} -> {out}")
    summary.raise_on_failure()


def _echo_unreadable(path: Path, why: str) -> None:
    typer.secho(f"skipped {path}: {why}", fg=typer.colors.YELLOW, err=True)
