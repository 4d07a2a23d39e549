"""``parity``, ``bench``, ``report`` and ``pipeline``: judge artifacts and write the reports."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from birefnet_edge.cli._options import (
    ArtifactDirs,
    BenchBatches,
    ExpAll,
    ExpCalibration,
    ExpTargets,
    Images,
    Junit,
    NoVerify,
    ParityBatches,
    ReportDir,
    Runs,
    Size,
    Warmup,
    WPatchOrder,
    WVariant,
    check_junit,
    chosen_profiles,
    in_range,
    parse_size,
)

if TYPE_CHECKING:
    from birefnet_edge.export import ExportResult
    from birefnet_edge.parity import BenchResult, ParityResult, RunReport


def _echo_parity(result: ParityResult) -> None:
    colour = {"PASS": typer.colors.GREEN, "FAIL": typer.colors.RED}.get(result.status, typer.colors.YELLOW)
    typer.secho(f"{result.status:<8}{result.name} ({result.seconds:.1f} s)", fg=colour, err=True)


def _echo_bench(result: BenchResult) -> None:
    figures = ", ".join(f"b{s.batch} p50 {s.p50_ms:.1f} ms" for s in result.latency) or result.reason
    typer.echo(f"bench   {result.name}: {figures}", err=True)


def _echo_note(line: str) -> None:
    typer.echo(line, err=True)


def _echo_export_step(name: str, result: ExportResult | None) -> None:
    if result is None:
        typer.echo(f"export  {name} ...", err=True)
    else:
        status = "ok" if result.ok else f"FAILED: {result.error}"
        typer.echo(f"export  {name}: {status} ({result.seconds:.1f} s)", err=True)
        for warning in result.warnings:
            typer.secho(f"        WARNING: {warning}", fg=typer.colors.YELLOW, bold=True, err=True)


def _show(report: RunReport, out: Path | None, junit: Path | None = None, fresh: bool = False) -> None:
    """Print the report's table, publish it and list what was written."""
    from birefnet_edge.console import is_terminal
    from birefnet_edge.parity import publish, render_text_table

    typer.echo(render_text_table(report, plain=not is_terminal()))
    for kind, path in publish(report, out, junit, fresh=fresh):
        typer.echo(f"{kind:<9}{path}")


def parity_cmd(
    artifacts: ArtifactDirs,
    images: Images = None,
    batch: ParityBatches = None,
    report: ReportDir = None,
    synthetic: Annotated[
        int, typer.Option("--synthetic", callback=in_range(0, 4), help="Synthetic images to add (0..4).")
    ] = 3,
    junit: Junit = None,
    allow_skip: Annotated[
        bool,
        typer.Option(
            "--allow-skip",
            help="Exit 0 when targets are skipped: a missing PyTorch reference, or no target runnable here.",
        ),
    ] = False,
    no_verify: NoVerify = False,
) -> None:
    """Compare artifacts with the PyTorch reference; exit 1 when a target fails or cannot be judged."""
    from birefnet_edge.parity import build_report, check_report_dir, load_inputs, raise_on_failure, run_parity
    from birefnet_edge.parity.batches import artifact_batch_ranges, check_batches

    check_report_dir(report)
    check_junit(junit)
    if batch:  # named by the user: a batch the artifact cannot take is refused, not quietly left out
        check_batches(batch, artifact_batch_ranges(artifacts))
    inputs = load_inputs(images, synthetic)
    _echo_note(f"parity inputs: {inputs.note}")
    samples = report / "samples" if report is not None else None
    results = run_parity(
        artifacts, inputs, batch or (1, 3), samples_dir=samples, on_result=_echo_parity, verify=not no_verify
    )
    _show(build_report(parity=results), report, junit, fresh=True)
    raise_on_failure(results, allow_skip=allow_skip)


def bench_cmd(
    artifacts: ArtifactDirs,
    runs: Runs = 5,
    warmup: Warmup = 1,
    batch: BenchBatches = None,
    report: ReportDir = None,
    no_verify: NoVerify = False,
) -> None:
    """Measure latency, throughput, load time and memory against PyTorch eager; exit 1 if an artifact failed."""
    from birefnet_edge.parity import bench_artifacts, build_report, check_report_dir, raise_on_bench_failure
    from birefnet_edge.parity.batches import artifact_batch_ranges, check_batches

    check_report_dir(report)
    if batch:  # as parity: a named batch the artifact cannot take would be timed at another one
        check_batches(batch, artifact_batch_ranges(artifacts))
    results = bench_artifacts(artifacts, runs, warmup, batch or (1, 4), on_result=_echo_bench, verify=not no_verify)
    _show(build_report(bench=results), report, fresh=True)
    raise_on_bench_failure(results)


def report_cmd(
    results: Annotated[Path, typer.Argument(metavar="RESULTS", help="A results.json (or the folder holding it).")],
    out: Annotated[Path | None, typer.Option("--out", help="Output folder (default: beside the JSON).")] = None,
) -> None:
    """Render saved results to the summary table, Markdown and HTML."""
    from birefnet_edge.parity import check_report_dir, load_report

    folder = results if results.is_dir() else results.parent
    loaded = load_report(results)
    check_report_dir(out or folder, "--out")
    _show(loaded, out or folder)


def pipeline_cmd(
    weights: Annotated[str, typer.Option("--weights", help="random:<variant>, a checkpoint file or a hub id.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for the artifacts and report/.")],
    target: ExpTargets = None,
    all_targets: ExpAll = False,
    size: Size = None,
    images: Images = None,
    batch: ParityBatches = None,
    runs: Runs = 3,
    warmup: Warmup = 1,
    junit: Junit = None,
    patch_order: WPatchOrder = None,
    variant: WVariant = None,
    calibration: ExpCalibration = None,
) -> None:
    """Export -> parity -> bench -> report in one go; exit 1 when an export or a runnable target fails."""
    from birefnet_edge.parity.batches import check_batches
    from birefnet_edge.pipeline import (
        PIPELINE_BATCHES,
        REPORT_DIR,
        PipelineHooks,
        raise_on_pipeline_failure,
        run_pipeline,
    )

    profiles = chosen_profiles(target, all_targets, parse_size(size))
    check_junit(junit)
    if batch:
        check_batches(batch, {p.name: p.batch for p in profiles})
    hooks = PipelineHooks(_echo_export_step, _echo_note, _echo_parity, _echo_bench)
    report = run_pipeline(
        weights,
        profiles,
        out,
        images=images,
        batches=batch or PIPELINE_BATCHES,
        runs=runs,
        warmup=warmup,
        calibration=calibration,
        variant=variant,
        patch_order=patch_order.value if patch_order else None,
        hooks=hooks,
    )
    _show(report, out / REPORT_DIR, junit, fresh=True)
    raise_on_pipeline_failure(report)
