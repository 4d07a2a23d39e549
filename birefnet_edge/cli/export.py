"""``export``, ``targets`` and ``build-engine``: make artifacts."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from birefnet_edge.cli._options import (
    ExpAll,
    ExpCalibration,
    ExpOut,
    ExpSize,
    ExpTargets,
    ExpWeights,
    WPatchOrder,
    WVariant,
    chosen_profiles,
    order_name,
    parse_size,
)
from birefnet_edge.console import Progress, print_table

if TYPE_CHECKING:
    from birefnet_edge.export import ExportResult
    from birefnet_edge.profile import Profile


def _exp_bytes(n: int) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def _exp_warn_unused_calibration(calibration: Path | None, profiles: list[Profile]) -> None:
    """Say so when --calibration was given but no chosen target is int8 (likely a wrong --target)."""
    if calibration is not None and not any(p.precision == "int8" for p in profiles):
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
        for note in result.notes:
            self.progress.say(f"    {note}")


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


def export_cmd(
    weights: ExpWeights,
    target: ExpTargets = None,
    all_targets: ExpAll = False,
    size: ExpSize = None,
    out: ExpOut = Path("dist"),
    reuse: Annotated[
        bool, typer.Option("--reuse", help="Keep artifacts built from the same weights, profile, size and tools.")
    ] = False,
    patch_order: WPatchOrder = None,
    variant: WVariant = None,
    calibration: ExpCalibration = None,
    full_check: Annotated[
        bool,
        typer.Option(
            "--full-check",
            help="Check float artifacts at their own size (GBs at 1024 px), not on a 256/288 px export of them.",
        ),
    ] = False,
) -> None:
    """Export a model to target artifacts (model files + manifest.json); exit 1 if any target failed."""
    from birefnet_edge.export import export_targets, raise_on_export_failure

    profiles = chosen_profiles(target, all_targets, parse_size(size))
    _exp_warn_random(weights)
    _exp_warn_unused_calibration(calibration, profiles)
    progress = _ExportProgress(len(profiles))
    with progress.progress.running():
        results = export_targets(
            weights,
            profiles,
            out,
            progress=progress,
            reuse=reuse,
            calibration=calibration,
            full_check=full_check,
            variant=variant,
            patch_order=order_name(patch_order),
        )
    _exp_summary(results)
    raise_on_export_failure(results)


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


def build_engine_cmd(onnx_path: _ExpOnnx, profile: _ExpProfile = None, out: _ExpEngine = None) -> None:
    """Build a TensorRT engine on this machine's GPU; records it in the artifact's manifest when there is one."""
    from birefnet_edge.export.tensorrt import build_artifact_engine

    info, manifest = build_artifact_engine(onnx_path, profile, out)
    typer.echo(
        f"engine {info.path}: TensorRT {info.tensorrt_version}, {info.gpu} (compute capability "
        f"{info.compute_capability}), {info.precision}, batch {info.batch}, built in {info.seconds:.1f} s"
    )
    if manifest is not None:
        typer.echo(f"recorded in {manifest}")
