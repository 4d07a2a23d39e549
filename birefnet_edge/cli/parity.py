"""``parity``, ``bench``, ``report`` and ``pipeline``: judge artifacts and write the reports."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from birefnet_edge.cli._app import fail
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
    check_report_dir,
    chosen_targets,
    in_range,
    parse_size,
    weights_choice,
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


def _finish(report: RunReport, out: Path | None, junit: Path | None = None, fresh: bool = False) -> None:
    """Print and save a report; a ``fresh`` run (not a re-render) also updates model cards and CI summaries."""
    from birefnet_edge._console import is_terminal
    from birefnet_edge.parity import render_text_table, write_reports

    typer.echo(render_text_table(report, plain=not is_terminal()))
    if out is not None:
        for kind, path in write_reports(report, out).items():
            typer.echo(f"{kind:<9}{path}")
    if out is not None and fresh:
        from birefnet_edge.parity.cards import update_cards

        for card in update_cards(report):
            typer.echo(f"{'card':<9}{card}")
    if junit is not None or fresh:
        _finish_ci(report, junit)


def _finish_ci(report: RunReport, junit: Path | None) -> None:
    """JUnit XML when asked for, and the Markdown summary into ``$GITHUB_STEP_SUMMARY`` when set."""
    from birefnet_edge.parity import render_markdown
    from birefnet_edge.parity.ci import append_step_summary, write_junit

    if junit is not None:
        typer.echo(f"{'junit':<9}{write_junit(report, junit)}")
    summary = append_step_summary(render_markdown(report))
    if summary is not None:
        typer.echo(f"{'summary':<9}{summary}")


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
        typer.Option("--allow-skip", help="Exit 0 when a target is skipped because its PyTorch reference is missing."),
    ] = False,
    no_verify: NoVerify = False,
) -> None:
    """Compare artifacts with the PyTorch reference; exit 1 when a target fails or cannot be judged."""
    from birefnet_edge.parity import build_report, load_inputs, raise_on_failure, run_parity
    from birefnet_edge.parity.batches import artifact_batch_ranges, check_batches

    check_report_dir(report)
    check_junit(junit)
    if batch:  # named by the user: a batch the artifact cannot take is refused, not quietly left out
        check_batches(batch, artifact_batch_ranges(artifacts))
    inputs = load_inputs(images, synthetic)
    typer.echo(f"parity inputs: {inputs.note}", err=True)
    samples = report / "samples" if report is not None else None
    results = run_parity(
        artifacts, inputs, batch or (1, 3), samples_dir=samples, on_result=_echo_parity, verify=not no_verify
    )
    _finish(build_report(parity=results), report, junit, fresh=True)
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
    from birefnet_edge.parity import bench_artifacts, build_report
    from birefnet_edge.parity.bench import FAILED

    check_report_dir(report)
    results = bench_artifacts(artifacts, runs, warmup, batch or (1, 4), on_result=_echo_bench, verify=not no_verify)
    _finish(build_report(bench=results), report, fresh=True)
    failed = [r for r in results if r.status == FAILED]
    if failed:
        fail(f"{len(failed)} benchmark(s) failed: " + "; ".join(f"{r.name}: {r.reason}" for r in failed))


def report_cmd(
    results: Annotated[Path, typer.Argument(metavar="RESULTS", help="A results.json (or the folder holding it).")],
    out: Annotated[Path | None, typer.Option("--out", help="Output folder (default: beside the JSON).")] = None,
) -> None:
    """Render saved results to the summary table, Markdown and HTML."""
    from birefnet_edge.parity import load_report

    folder = results if results.is_dir() else results.parent
    loaded = load_report(results)
    check_report_dir(out or folder, "--out")
    _finish(loaded, out or folder)


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
    from birefnet_edge.export import export_targets
    from birefnet_edge.parity import bench_artifacts, build_report, load_inputs, raise_on_failure, run_parity

    hw = parse_size(size)
    targets = chosen_targets(target, all_targets, hw)
    check_report_dir(out, "--out")
    check_report_dir(out / "report", "--out")  # a file named report in --out would fail after the export
    check_junit(junit)
    if batch:
        from birefnet_edge.export import resolve_profiles
        from birefnet_edge.parity.batches import check_batches

        check_batches(batch, {p.name: p.batch for p in resolve_profiles(targets, hw)})
    inputs = load_inputs(images)  # before exporting: a bad --images folder should fail in seconds
    exports = export_targets(
        weights,
        targets,
        out,
        size=hw,
        progress=_echo_export_step,
        calibration=calibration,
        **weights_choice(variant, patch_order),
    )
    artifacts = [r.path for r in exports if r.ok]
    report_dir = out / "report"
    typer.echo(f"parity inputs: {inputs.note}", err=True)
    parity = run_parity(artifacts, inputs, batch or (1, 3), samples_dir=report_dir / "samples", on_result=_echo_parity)
    bench = bench_artifacts(artifacts, runs, warmup, on_result=_echo_bench)
    records = [_export_record(r) for r in exports]
    run_report = build_report(parity, bench, records, title=f"birefnet-edge pipeline: {weights}")
    _finish(run_report, report_dir, junit, fresh=True)
    failed = [r.target for r in exports if not r.ok]
    if failed:
        fail(f"export failed for {', '.join(failed)} (see the notes above)")
    raise_on_failure(parity)


def _echo_export_step(name: str, result: ExportResult | None) -> None:
    if result is None:
        typer.echo(f"export  {name} ...", err=True)
    else:
        status = "ok" if result.ok else f"FAILED: {result.error}"
        typer.echo(f"export  {name}: {status} ({result.seconds:.1f} s)", err=True)
        for warning in result.warnings:
            typer.secho(f"        WARNING: {warning}", fg=typer.colors.YELLOW, bold=True, err=True)


def _export_record(result: ExportResult) -> dict:
    return {
        "target": result.target,
        "status": result.status,
        "path": str(result.path) if result.path else None,
        "seconds": round(result.seconds, 2),
        "peak_rss_bytes": result.peak_rss_bytes,
        "skipped": list(result.skipped),
        "warnings": list(result.warnings),
        "error": result.error,
    }
