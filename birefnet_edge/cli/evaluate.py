"""``eval``: accuracy against ground truth for weights and artifacts side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from birefnet_edge.cli._app import fail
from birefnet_edge.cli._options import Junit, ReportDir, Size, check_junit, in_range, parse_size


def _gate(option: str, what: str) -> Any:
    return typer.Option(option, callback=in_range(0.0, 1.0, option), help=f"Gate: {what} (0..1).")


def eval_cmd(
    models: Annotated[
        list[str], typer.Argument(metavar="MODEL...", help="Artifact folders and/or weights: random:<variant>, file.")
    ],
    images: Annotated[Path, typer.Option("--images", help="Labelled images (or a folder with im/, gt/).")],
    masks: Annotated[Path | None, typer.Option("--masks", help="Masks: the images' relative paths and names.")] = None,
    size: Size = None,
    batch: Annotated[int, typer.Option("--batch", callback=in_range(1), help="Images per inference call.")] = 1,
    report: ReportDir = None,
    junit: Junit = None,
    min_smeasure: Annotated[float | None, _gate("--min-smeasure", "lowest S-measure")] = None,
    min_fmeasure: Annotated[float | None, _gate("--min-fmeasure", "lowest max F-measure")] = None,
    min_emeasure: Annotated[float | None, _gate("--min-emeasure", "lowest mean E-measure")] = None,
    min_wfmeasure: Annotated[float | None, _gate("--min-wfmeasure", "lowest weighted F-measure")] = None,
    max_mae: Annotated[float | None, _gate("--max-mae", "highest MAE")] = None,
) -> None:
    """Score models against ground-truth masks (S, F, E, weighted F, MAE); exit 1 when a gate fails."""
    from birefnet_edge.console import is_terminal
    from birefnet_edge.evaluate import Gates, evaluate_models, publish, render_text
    from birefnet_edge.parity import check_report_dir

    check_report_dir(report)
    check_junit(junit)
    gates = Gates(min_smeasure, min_fmeasure, min_emeasure, min_wfmeasure, max_mae)
    result = evaluate_models(
        models, images, masks, gates, parse_size(size), batch,
        on_result=lambda r: typer.echo(f"{r.name}: {r.status} ({r.images} images)", err=True),
    )  # fmt: skip
    typer.echo(render_text(result, plain=not is_terminal()))
    for kind, path in publish(result, report, junit).items():
        typer.echo(f"{kind:<9}{path}")
    if result.failed:
        fail(f"{len(result.failed)} model(s) failed: " + "; ".join(f"{r.name}: {r.reason}" for r in result.failed))
    if result.unreadable:  # as predict: the gate judged fewer files than the folder holds
        fail(f"{len(result.unreadable)} unreadable image(s) or mask(s) were skipped (listed above); fix or remove them")
