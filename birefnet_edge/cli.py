"""The ``birefnet-edge`` command line: export, parity, bench, predict, pipeline.

User errors (:class:`BirefnetEdgeError`) print one message and exit 1; ``--debug`` (before or after
the command name) shows the traceback. Heavy backends are imported inside the commands, so
``--help`` stays fast. Tables and progress bars go through ``rich`` on a terminal and are plain,
tab-separated text when piped (see :mod:`birefnet_edge._console`).
"""

from __future__ import annotations

import copy
import signal
import sys
import threading
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer
from typer.core import TyperGroup

from birefnet_edge._console import Progress, print_table
from birefnet_edge.errors import BirefnetEdgeError

if TYPE_CHECKING:  # the commands import these lazily; the names are only needed for type hints
    from birefnet_edge.export import ExportResult
    from birefnet_edge.parity import BenchResult, ParityResult, RunReport
    from birefnet_edge.predict import PredictSummary
    from birefnet_edge.predict_ray import RayOptions

_DEBUG_HELP = "Show full tracebacks for errors."


def _set_debug(ctx: Any, _param: Any, value: bool) -> None:
    if value:
        ctx.meta["debug"] = True  # one dict shared by the root and every sub-command context


class _App(TyperGroup):
    """Gives every command a ``--debug`` flag and turns user errors into one line (a traceback with ``--debug``)."""

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        root_flag = next((p for p in self.params if p.name == "debug"), None)
        if command is not None and root_flag is not None and all(p.name != "debug" for p in command.params):
            flag = copy.copy(root_flag)  # the root's own --debug, not passed to the command's function
            flag.expose_value = False
            command.params.append(flag)
        return command

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except BirefnetEdgeError as exc:
            if ctx.meta.get("debug"):
                raise
            typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
            raise typer.Exit(1) from None


app = typer.Typer(
    cls=_App,
    name="birefnet-edge",
    help="Take BiRefNet from PyTorch to ONNX, OpenVINO, CoreML and TensorRT, prove parity, measure speed.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    # Plain click help: the rich panels print a "<bool>" type beside every flag, which reads as if
    # "--overwrite true" were the way to pass it (the "true" then becomes an input path).
    rich_markup_mode=None,
)


def _print_version(value: bool) -> None:
    if value:
        from birefnet_edge import __version__

        typer.echo(f"birefnet-edge {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", callback=_set_debug, help=_DEBUG_HELP)] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Take BiRefNet from PyTorch to ONNX, OpenVINO, CoreML and TensorRT, prove parity, measure speed."""


def _fail(message: str, code: int = 1) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


@app.command("models")
def models_cmd() -> None:
    """List the registered model variants."""
    from birefnet_edge.model import list_models

    for name in list_models():
        typer.echo(name)


def _parse_size(text: str | None) -> tuple[int, int] | None:
    """``1024`` or ``768x1024`` (H x W) -> (H, W); the profile validates the values."""
    if text is None:
        return None
    parts = text.lower().replace("*", "x").split("x")
    if len(parts) not in (1, 2) or not all(p.strip().isdigit() for p in parts):
        raise typer.BadParameter(f"size must look like 1024 or 768x1024 (H or HxW); got {text!r}", param_hint="--size")
    h, w = int(parts[0]), int(parts[-1])
    from birefnet_edge.model.contract import MAX_SIDE

    if max(h, w) > MAX_SIDE:  # before any slow work: such a run dies of memory after loading the model
        raise typer.BadParameter(
            f"{text} is larger than the {MAX_SIDE} px a side that a run can hold", param_hint="--size"
        )
    return h, w


def _exp_bytes(n: int) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def _exp_warn_unused_calibration(calibration: Path | None, targets: list[str]) -> None:
    """Say so when --calibration was given but no chosen target is int8 (likely a wrong --target)."""
    from birefnet_edge.profile import load_profile

    if calibration is not None and not any(load_profile(t).precision == "int8" for t in targets):
        typer.secho(
            "note: --calibration is used only by int8 targets, and none of the chosen targets is int8",
            fg=typer.colors.YELLOW,
            err=True,
        )


def _exp_warn_random(weights: str) -> None:
    if not weights.startswith("random:"):
        return
    bar = "!" * 78
    lines = [
        bar,
        f"!! {weights}: DETERMINISTIC TEST WEIGHTS, NOT A TRAINED MODEL.",
        "!! The artifacts compute real graphs but segment nothing useful; use them for offline demos",
        "!! and tests only. Every manifest records weights.deterministic = true.",
        bar,
    ]
    typer.secho("\n".join(lines), fg=typer.colors.YELLOW, bold=True, err=True)


class _ExportProgress:
    """A bar over the targets, with one line per finished target (and its skipped steps)."""

    def __init__(self, total: int) -> None:
        self.total, self.done = total, 0
        self.progress = Progress(total, "exporting")

    def __call__(self, target: str, result: ExportResult | None) -> None:
        if result is None:
            self.done += 1
            self.progress.say(f"[{self.done}/{self.total}] {target}: exporting ...")
            self.progress.advance(0, f"exporting {target}")
            return
        self.progress.advance()
        if result.ok:
            self.progress.say(
                f"[{self.done}/{self.total}] {target}: ok in {result.seconds:.1f} s, peak RSS "
                f"{_exp_bytes(result.peak_rss_bytes)} -> {result.path}",
                style="green",
            )
        else:
            self.progress.say(f"[{self.done}/{self.total}] {target}: FAILED: {result.error}", style="red")
        if result.reuse:
            self.progress.say(f"    {result.reuse}")
        for note in result.skipped:
            self.progress.say(f"    skipped {note}", style="yellow")
        for warning in result.warnings:
            self.progress.say(f"    WARNING: {warning}", style="bold yellow")


def _exp_summary(results: list[ExportResult]) -> None:
    rows = []
    for r in results:
        where = str(r.path) if r.ok else (r.error or "").splitlines()[0][:100]
        status = ("reused" if r.reuse.startswith("reused") else r.status) + (
            f" ({len(r.skipped)} skipped)" if r.skipped else ""
        )
        rows.append((r.target, status, f"{r.seconds:.1f}", _exp_bytes(r.peak_rss_bytes), where))
    typer.echo("")
    print_table(("target", "status", "seconds", "peak RSS", "artifact / error"), rows)


_ExpWeights = Annotated[str, typer.Option("--weights", help="random:<variant>, a checkpoint, or a hub id owner/name.")]


class _PatchOrder(str, Enum):
    """Tile order a checkpoint was trained with (see README, "Tile order")."""

    legacy = "legacy"
    current = "current"


_WPatchOrder = Annotated[
    _PatchOrder | None,
    typer.Option(
        "--patch-order",
        help="Tile order the weights were trained with (default: known checkpoints, file metadata, else legacy).",
    ),
]
_WVariant = Annotated[
    str | None,
    typer.Option("--variant", help="Model variant of the weights (see `models`; default: hub name, metadata, shapes)."),
]
_ExpTargets = Annotated[
    list[str] | None,
    typer.Option("--target", "-t", help="Profile name (see `targets`) or path to a TOML file; repeat for several."),
]
_ExpAll = Annotated[bool, typer.Option("--all", help="Export every shipped profile.")]
_ExpSize = Annotated[str | None, typer.Option("--size", help="Input size H or HxW for every target.")]
_ExpOut = Annotated[Path, typer.Option("--out", help="Folder that receives one sub-folder per artifact.")]
_ExpCalibration = Annotated[
    Path | None,
    typer.Option(
        "--calibration",
        help="Photos for int8 calibration and its held-out check (searched recursively; 64 recommended). "
        "Without it int8 uses the bundled samples, with a warning.",
    ),
]


@app.command("export")
def export_cmd(
    weights: _ExpWeights,
    target: _ExpTargets = None,
    all_targets: _ExpAll = False,
    size: _ExpSize = None,
    out: _ExpOut = Path("dist"),
    reuse: Annotated[
        bool, typer.Option("--reuse", help="Keep artifacts built from the same weights, profile, size and tools.")
    ] = False,
    patch_order: _WPatchOrder = None,
    variant: _WVariant = None,
    calibration: _ExpCalibration = None,
) -> None:
    """Export a model to target artifacts (model files + manifest.json); exit 1 if any target failed."""
    from birefnet_edge.export import export_targets

    hw = _parse_size(size)
    targets = _chosen_targets(target, all_targets, hw)
    _exp_warn_random(weights)
    _exp_warn_unused_calibration(calibration, targets)
    progress = _ExportProgress(len(targets))
    with progress.progress.running():
        results = export_targets(
            weights,
            targets,
            out,
            size=hw,
            progress=progress,
            reuse=reuse,
            calibration=calibration,
            **_weights_choice(variant, patch_order),
        )
    _exp_summary(results)
    failed = [r.target for r in results if not r.ok]
    if failed:
        _fail(f"{len(failed)} of {len(results)} target(s) failed: {', '.join(failed)}")


def _weights_choice(variant: str | None, patch_order: _PatchOrder | None) -> dict[str, str]:
    """``variant``/``patch_order`` keyword arguments for the loaders; only those given (the loaders decide the rest)."""
    choice = {"variant": variant, "patch_order": patch_order.value if patch_order else None}
    return {k: v for k, v in choice.items() if v is not None}


def _chosen_targets(target: list[str] | None, all_targets: bool, hw: tuple[int, int] | None) -> list[str]:
    """The --target names plus, with --all, every other shipped profile; all validated before slow work."""
    from birefnet_edge.export import resolve_profiles
    from birefnet_edge.profile import list_profiles

    targets = list(target or []) + ([p for p in list_profiles() if p not in (target or [])] if all_targets else [])
    if not targets:
        raise typer.BadParameter("name at least one --target, or pass --all", param_hint="--target")
    resolve_profiles(targets, hw)  # a bad name, file or size fails here, before any slow work
    return targets


@app.command("targets")
def targets_cmd() -> None:
    """List the shipped target profiles with their format, precision and description."""
    from birefnet_edge.profile import list_profiles, load_profile

    rows = []
    for name in list_profiles():
        p = load_profile(name)
        rows.append((name, p.format, p.precision, f"{p.batch.min}..{p.batch.max}", p.description))
    print_table(("profile", "format", "precision", "batch", "description"), rows)


_ExpOnnx = Annotated[Path, typer.Argument(metavar="ONNX", help="TensorRT-ready ONNX (from a tensorrt-* export).")]
_ExpProfile = Annotated[
    str | None, typer.Option("--profile", help="Profile name or TOML (default: the manifest next to the ONNX).")
]
_ExpEngine = Annotated[Path | None, typer.Option("--out", help="Engine file (default: model.engine beside the ONNX).")]


@app.command("build-engine")
def build_engine_cmd(onnx_path: _ExpOnnx, profile: _ExpProfile = None, out: _ExpEngine = None) -> None:
    """Build a TensorRT engine on this machine's GPU; records it in the artifact's manifest when there is one."""
    from birefnet_edge.errors import InputError
    from birefnet_edge.export.tensorrt import ENGINE_FILE, attach_engine, build_engine
    from birefnet_edge.formats.tensorrt import TensorrtOptions
    from birefnet_edge.manifest import MANIFEST_NAME, read_manifest
    from birefnet_edge.profile import Profile, load_profile

    if not onnx_path.is_file():
        raise InputError(
            f"ONNX file not found: {onnx_path}; pass the model.onnx of a tensorrt-* artifact "
            "(birefnet-edge export --target tensorrt-fp16 writes one)"
        )
    folder = onnx_path.resolve().parent
    has_manifest = (folder / MANIFEST_NAME).is_file()
    if profile is not None:
        prof = load_profile(profile)
    elif has_manifest:
        prof = Profile.from_dict(read_manifest(folder).profile)
    else:
        raise typer.BadParameter(f"no {MANIFEST_NAME} beside {onnx_path}; pass --profile", param_hint="--profile")
    engine = (out or folder / ENGINE_FILE).resolve()
    cache = engine.parent / TensorrtOptions.of(prof).timing_cache
    info = build_engine(onnx_path, prof, engine, timing_cache=cache)
    typer.echo(
        f"engine {engine}: TensorRT {info.tensorrt_version}, {info.gpu} (compute capability "
        f"{info.compute_capability}), {info.precision}, batch {info.batch}, built in {info.seconds:.1f} s"
    )
    if has_manifest and engine.parent == folder:
        attach_engine(folder, info)
        typer.echo(f"recorded in {folder / MANIFEST_NAME}")


_Engine = Literal["local", "ray"]


def _in_range(low: float, high: float | None = None, what: str = "the value") -> Callable[[Any], Any]:
    """An option callback that rejects numbers outside low..high naming the bad value.

    typer's own ``min=``/``max=`` check says "Input should be greater than or equal to 1" without
    saying which value was given, which matters most for repeated options such as ``--batch``.
    """

    def check(ctx: typer.Context, param: typer.CallbackParam, value: Any) -> Any:
        values = value if isinstance(value, list) else [] if value is None else [value]
        bad = [v for v in values if v < low or (high is not None and v > high)]
        if bad:
            limit = f"{low}..{high}" if high is not None else f"{low} or more"
            raise typer.BadParameter(f"{', '.join(map(str, bad))}: {what} must be {limit}", param_hint=param.opts[0])
        return value

    return check


_positive_batches = _in_range(1, what="a batch size")


_ArtifactDirs = Annotated[
    list[Path], typer.Argument(metavar="ARTIFACT", help="Artifact folders (each holds a manifest.json).")
]
_ParityBatches = Annotated[
    list[int] | None,
    typer.Option(
        "--batch", callback=_positive_batches, help="Batch size to validate at; repeat for several (default: 1 and 3)."
    ),
]
_BenchBatches = Annotated[
    list[int] | None,
    typer.Option(
        "--batch", callback=_positive_batches, help="Batch size to time; repeat for several (default: 1 and 4)."
    ),
]
_ReportDir = Annotated[Path | None, typer.Option("--report", help="Write results.json, summary.md, report.html.")]
_Junit = Annotated[
    Path | None, typer.Option("--junit", help="Write JUnit XML (one test case per artifact and check) for CI.")
]
_Images = Annotated[Path | None, typer.Option("--images", help="Folder of photos (default: sample photos).")]
_Size = Annotated[str | None, typer.Option("--size", help="Input size H or HxW (PyTorch weights / export).")]
_Runs = Annotated[int, typer.Option("--runs", callback=_in_range(1), help="Timed runs per batch size.")]
_Warmup = Annotated[int, typer.Option("--warmup", callback=_in_range(0), help="Untimed runs before timing.")]
_NoVerify = Annotated[
    bool,
    typer.Option("--no-verify", help="Skip the sha256 check of the artifact's files (sizes are still checked)."),
]
_ModelSpec = Annotated[
    str, typer.Argument(metavar="ARTIFACT", help="Artifact folder or weights: random:<variant>, checkpoint, hub id.")
]


def _echo_parity(result: ParityResult) -> None:
    colour = {"PASS": typer.colors.GREEN, "FAIL": typer.colors.RED}.get(result.status, typer.colors.YELLOW)
    typer.secho(f"{result.status:<8}{result.name} ({result.seconds:.1f} s)", fg=colour, err=True)


def _echo_bench(result: BenchResult) -> None:
    figures = ", ".join(f"b{s.batch} p50 {s.p50_ms:.1f} ms" for s in result.latency) or result.reason
    typer.echo(f"bench   {result.name}: {figures}", err=True)


def _check_report_dir(report: Path | None, option: str = "--report") -> None:
    """Fail before any slow work when the report folder cannot be written."""
    from birefnet_edge._io import check_output_dir

    if report is not None:
        check_output_dir(report, option)


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


@app.command("parity")
def parity_cmd(
    artifacts: _ArtifactDirs,
    images: _Images = None,
    batch: _ParityBatches = None,
    report: _ReportDir = None,
    synthetic: Annotated[
        int, typer.Option("--synthetic", callback=_in_range(0, 4), help="Synthetic images to add (0..4).")
    ] = 3,
    junit: _Junit = None,
    allow_skip: Annotated[
        bool,
        typer.Option("--allow-skip", help="Exit 0 when a target is skipped because its PyTorch reference is missing."),
    ] = False,
    no_verify: _NoVerify = False,
) -> None:
    """Compare artifacts with the PyTorch reference; exit 1 when a target fails or cannot be judged."""
    from birefnet_edge.parity import build_report, load_inputs, raise_on_failure, run_parity

    _check_report_dir(report)
    inputs = load_inputs(images, synthetic)
    typer.echo(f"parity inputs: {inputs.note}", err=True)
    samples = report / "samples" if report is not None else None
    results = run_parity(
        artifacts, inputs, batch or (1, 3), samples_dir=samples, on_result=_echo_parity, verify=not no_verify
    )
    _finish(build_report(parity=results), report, junit, fresh=True)
    raise_on_failure(results, allow_skip=allow_skip)


@app.command("bench")
def bench_cmd(
    artifacts: _ArtifactDirs,
    runs: _Runs = 5,
    warmup: _Warmup = 1,
    batch: _BenchBatches = None,
    report: _ReportDir = None,
    no_verify: _NoVerify = False,
) -> None:
    """Measure latency, throughput, load time and memory against PyTorch eager; exit 1 if an artifact failed."""
    from birefnet_edge.parity import bench_artifacts, build_report
    from birefnet_edge.parity.bench import FAILED

    _check_report_dir(report)
    results = bench_artifacts(artifacts, runs, warmup, batch or (1, 4), on_result=_echo_bench, verify=not no_verify)
    _finish(build_report(bench=results), report, fresh=True)
    failed = [r for r in results if r.status == FAILED]
    if failed:
        _fail(f"{len(failed)} benchmark(s) failed: " + "; ".join(f"{r.name}: {r.reason}" for r in failed))


@app.command("predict")
def predict_cmd(
    model: _ModelSpec,
    inputs: Annotated[list[Path], typer.Argument(metavar="INPUT", help="Image files and/or folders of images.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for <stem>_mask.png and <stem>_cutout.png.")],
    batch: Annotated[int, typer.Option("--batch", callback=_positive_batches, help="Images per inference call.")] = 1,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Rewrite outputs that already exist.")] = False,
    size: _Size = None,
    no_verify: _NoVerify = False,
    engine: Annotated[_Engine, typer.Option("--engine", help="local (this process) or ray (Ray Data).")] = "local",
    address: Annotated[
        str | None, typer.Option("--address", help="Ray cluster to join (default: a local Ray).")
    ] = None,
    workers: Annotated[int | None, typer.Option("--workers", min=1, help="Ray inference actors (default 2).")] = None,
    cpus_per_worker: Annotated[float, typer.Option("--cpus-per-worker", min=0.01, help="Ray CPUs per actor.")] = 1.0,
    gpus_per_worker: Annotated[
        float | None,
        typer.Option("--gpus-per-worker", min=0, help="Ray GPUs per actor (default: what the runner needs)."),
    ] = None,
    patch_order: _WPatchOrder = None,
    variant: _WVariant = None,
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
        runner = open_model(
            model, size=_parse_size(size), verify=not no_verify, **_weights_choice(variant, patch_order)
        )
        progress = Progress(len(files), f"segmenting with {runner.name}")
        with runner, progress.running():
            summary = predict_files(runner, files, out, batch, overwrite, progress.advance, _echo_unreadable)
    typer.echo(f"{summary.describe()} -> {out}")
    if not summary.ok:
        _fail(f"{len(summary.failed)} input(s) could not be read: {', '.join(str(p) for p, _ in summary.failed)}")


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


@app.command("verify")
def verify_cmd(artifacts: _ArtifactDirs) -> None:
    """Check every file of each artifact against its manifest's sha256; exit 1 naming each mismatch."""
    from birefnet_edge.pack import verify_artifact

    bad = []
    for folder in artifacts:
        problems = verify_artifact(folder)
        if problems:
            bad.append(folder)
            typer.secho(f"FAILED  {folder}: {'; '.join(problems)}", fg=typer.colors.RED, err=True)
        else:
            typer.secho(f"ok      {folder}", fg=typer.colors.GREEN)
    if bad:
        _fail(f"{len(bad)} of {len(artifacts)} artifact(s) do not match their manifest: {', '.join(map(str, bad))}")


@app.command("pack")
def pack_cmd(
    artifact: Annotated[Path, typer.Argument(metavar="ARTIFACT", help="Artifact folder to archive.")],
    out: Annotated[Path, typer.Option("--out", help="Archive to write, e.g. model.tar.gz.")],
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace --out if it exists.")] = False,
) -> None:
    """Verify an artifact and write a reproducible .tar.gz of it (sorted entries, fixed times); print its sha256."""
    from birefnet_edge.pack import pack_artifact

    path, digest = pack_artifact(artifact, out, overwrite)
    typer.echo(f"{digest}  {path}")


@app.command("report")
def report_cmd(
    results: Annotated[Path, typer.Argument(metavar="RESULTS", help="A results.json (or the folder holding it).")],
    out: Annotated[Path | None, typer.Option("--out", help="Output folder (default: beside the JSON).")] = None,
) -> None:
    """Render saved results to the summary table, Markdown and HTML."""
    from birefnet_edge.parity import load_report

    folder = results if results.is_dir() else results.parent
    loaded = load_report(results)
    _check_report_dir(out or folder, "--out")
    _finish(loaded, out or folder)


@app.command("pipeline")
def pipeline_cmd(
    weights: Annotated[str, typer.Option("--weights", help="random:<variant>, a checkpoint file or a hub id.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for the artifacts and report/.")],
    target: _ExpTargets = None,
    all_targets: _ExpAll = False,
    size: _Size = None,
    images: _Images = None,
    batch: _ParityBatches = None,
    runs: _Runs = 3,
    warmup: _Warmup = 1,
    junit: _Junit = None,
    patch_order: _WPatchOrder = None,
    variant: _WVariant = None,
    calibration: _ExpCalibration = None,
) -> None:
    """Export -> parity -> bench -> report in one go; exit 1 when an export or a runnable target fails."""
    from birefnet_edge.export import export_targets
    from birefnet_edge.parity import bench_artifacts, build_report, load_inputs, raise_on_failure, run_parity

    hw = _parse_size(size)
    targets = _chosen_targets(target, all_targets, hw)
    _check_report_dir(out, "--out")
    _check_report_dir(out / "report", "--out")  # a file named report in --out would fail after the export
    inputs = load_inputs(images)  # before exporting: a bad --images folder should fail in seconds
    exports = export_targets(
        weights,
        targets,
        out,
        size=hw,
        progress=_echo_export_step,
        calibration=calibration,
        **_weights_choice(variant, patch_order),
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
        _fail(f"export failed for {', '.join(failed)} (see the notes above)")
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


@app.command("distill")
def distill_cmd(
    teacher: Annotated[str, typer.Option("--teacher", help="Teacher weights: random:<variant>, a file or a hub id.")],
    student: Annotated[str, typer.Option("--student", help="Registered student variant, e.g. student-s.")],
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
    masks: Annotated[Path | None, typer.Option("--masks", help="Ground-truth masks (evaluation only).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run saved in --out.")] = False,
    device: Annotated[str | None, typer.Option("--device", help="cpu or cuda (default: cuda if present).")] = None,
    workers: Annotated[int, typer.Option("--workers", help="DataLoader worker processes.")] = 2,
    loss: Annotated[str | None, typer.Option("--loss", help="Loss weights, e.g. bce=30,iou=0.5,feature=1.")] = None,
    augment: Annotated[str | None, typer.Option("--augment", help="e.g. flip=0.5,max_scale=1.25,jitter=0.2.")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of split, order, augmentation and init.")] = 0,
) -> None:
    """Distil a teacher into a small student on unlabeled images (torchrun --nproc-per-node N for DDP)."""
    options = dict(locals())  # first statement: exactly the command's options
    from birefnet_edge.distill import cli_run

    cli_run(options, echo=lambda line: typer.echo(line, err=True))


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: run the app, turning user errors into one-line messages.

    Exit codes: 0 success, 1 a user error or a failed gate, 2 a usage error (bad option or argument),
    130 interrupted (Ctrl-C), 143 terminated (SIGTERM; cleans up like Ctrl-C). User errors are printed by the
    command group (``_App``), which re-raises them with their traceback under ``--debug``.
    """
    args = sys.argv[1:] if argv is None else argv
    in_main_thread = threading.current_thread() is threading.main_thread()  # signal() works only there
    previous = signal.signal(signal.SIGTERM, _raise_terminated) if in_main_thread else None
    try:
        code = app(args=args, standalone_mode=False)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        _exit_interrupted()
    except Exception as exc:
        if not _is_usage_error(exc):
            raise
        exc.show()  # type: ignore[attr-defined]  (click's usage line and one-line message)
        sys.exit(exc.exit_code)  # type: ignore[attr-defined]
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)
    # Without standalone mode a `raise typer.Exit(n)` inside a command is returned, not raised; typer
    # turns Ctrl-C (and so our SIGTERM exception) into a returned 130.
    if code == 130 or _Terminated.received:
        _exit_interrupted()
    sys.exit(code if isinstance(code, int) else 0)


def _exit_interrupted() -> None:
    """Say why the run stopped; exit 143 after SIGTERM, 130 after Ctrl-C (the shells' convention)."""
    typer.secho("terminated" if _Terminated.received else "interrupted", err=True)
    sys.exit(143 if _Terminated.received else 130)


class _Terminated(KeyboardInterrupt):
    """SIGTERM turned into an exception, so every ``with`` block and ``atexit`` cleanup runs as on Ctrl-C."""

    received = False


def _raise_terminated(signum: int, frame: object) -> None:
    _Terminated.received = True
    raise _Terminated()


def _is_usage_error(exc: BaseException) -> bool:
    """True for click's usage errors (typer vendors its own click, so match by shape, not by class)."""
    return callable(getattr(exc, "show", None)) and isinstance(getattr(exc, "exit_code", None), int)


if __name__ == "__main__":
    main()
