"""``predict``: masks and cutouts for image files, here or on Ray."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from birefnet_edge._console import Progress
from birefnet_edge.cli._app import fail
from birefnet_edge.cli._options import (
    Engine,
    ModelSpec,
    NoVerify,
    Size,
    WPatchOrder,
    WVariant,
    in_range,
    parse_size,
    positive_batches,
    weights_choice,
)

if TYPE_CHECKING:
    from birefnet_edge.predict import PredictSummary
    from birefnet_edge.predict_ray import RayOptions


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
    from birefnet_edge.predict import collect_inputs, plan_outputs, predict_files
    from birefnet_edge.runtime import open_model

    files = collect_inputs(inputs)
    plan_outputs(files, out, overwrite)  # a bad --out fails before the model (or Ray) starts
    if engine == "ray":
        from birefnet_edge.predict_ray import RayOptions

        if variant is not None or patch_order is not None:
            raise typer.BadParameter(
                "--variant/--patch-order work with --engine local; for ray, export the checkpoint with them "
                "(the manifest records both) and predict with the artifact",
                param_hint="--engine",
            )
        options = RayOptions(address, workers or 2, batch, cpus_per_worker, gpus_per_worker, verify=not no_verify)
        summary = _predict_ray(model, files, out, overwrite, options)
    elif address is not None or workers is not None:
        raise typer.BadParameter("--address and --workers need --engine ray", param_hint="--engine")
    else:
        runner = open_model(model, size=parse_size(size), verify=not no_verify, **weights_choice(variant, patch_order))
        progress = Progress(len(files), f"segmenting with {runner.name}")
        with runner, progress.running():
            summary = predict_files(runner, files, out, batch, overwrite, progress.advance, _echo_unreadable)
    typer.echo(f"{summary.describe()} -> {out}")
    if not summary.ok:
        fail(f"{len(summary.failed)} input(s) could not be read: {', '.join(str(p) for p, _ in summary.failed)}")


def _predict_ray(model: str, files: list[Path], out: Path, overwrite: bool, options: RayOptions) -> PredictSummary:
    from birefnet_edge.errors import InputError
    from birefnet_edge.predict_ray import predict_ray

    if not Path(model).is_dir():
        raise InputError(f"--engine ray runs exported artifacts; {model} is not an artifact folder (export it first)")
    progress = Progress(len(files), "segmenting on Ray")
    with progress.running():
        return predict_ray(model, files, out, options, overwrite, progress.advance, _echo_unreadable)


def _echo_unreadable(path: Path, why: str) -> None:
    typer.secho(f"skipped {path}: {why}", fg=typer.colors.YELLOW, err=True)
