"""Option types and argument checks shared by several commands."""

from __future__ import annotations

import math
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer

if TYPE_CHECKING:
    from birefnet_edge.profile import Profile


def parse_size(text: str | None) -> tuple[int, int] | None:
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
    # 64: the smallest side a profile takes (the model halves the image for its second backbone pass).
    odd = [side for side in (h, w) if side % 32 or side < 64]
    if odd:  # a malformed value, as distill's --size: a usage error (exit 2), not found by a profile or model later
        near = " or ".join(str(n) for n in sorted({max(64, odd[0] // 32 * 32), max(64, -(-odd[0] // 32) * 32)}))
        raise typer.BadParameter(
            f"{text}: each side must be a multiple of 32, at least 64 (e.g. {near})", param_hint="--size"
        )
    return h, w


ExpWeights = Annotated[str, typer.Option("--weights", help="random:<variant>, a checkpoint, or a hub id owner/name.")]


class PatchOrder(str, Enum):
    """Tile order a checkpoint was trained with (see README, "Tile order")."""

    legacy = "legacy"
    current = "current"


WPatchOrder = Annotated[
    PatchOrder | None,
    typer.Option(
        "--patch-order",
        help="Tile order the weights were trained with (default: known checkpoints, file metadata, else legacy).",
    ),
]
WVariant = Annotated[
    str | None,
    typer.Option("--variant", help="Model variant of the weights (see `models`; default: hub name, metadata, shapes)."),
]
ExpTargets = Annotated[
    list[str] | None,
    typer.Option("--target", "-t", help="Profile name (see `targets`) or path to a TOML file; repeat for several."),
]
ExpAll = Annotated[bool, typer.Option("--all", help="Export every shipped profile.")]
ExpSize = Annotated[str | None, typer.Option("--size", help="Input size H or HxW for every target.")]
ExpOut = Annotated[Path, typer.Option("--out", help="Folder that receives one sub-folder per artifact.")]
ExpCalibration = Annotated[
    Path | None,
    typer.Option(
        "--calibration",
        help="Photos for int8 calibration and its held-out check (searched recursively; 64 recommended). "
        "Without it int8 uses the bundled samples, with a warning.",
    ),
]


def order_name(patch_order: PatchOrder | None) -> str | None:
    """The ``patch_order`` argument of the loaders (None: they decide)."""
    return patch_order.value if patch_order else None


def chosen_profiles(target: list[str] | None, all_targets: bool, hw: tuple[int, int] | None) -> list[Profile]:
    """The --target profiles plus, with --all, every other shipped one, loaded once, before any slow work."""
    from birefnet_edge.export import resolve_profiles
    from birefnet_edge.profile import list_profiles

    targets = list(target or []) + ([p for p in list_profiles() if p not in (target or [])] if all_targets else [])
    if not targets:
        raise typer.BadParameter("name at least one --target, or pass --all", param_hint="--target")
    return resolve_profiles(targets, hw)  # a bad name, file or size fails here


Engine = Literal["local", "ray"]


def in_range(low: float, high: float | None = None, what: str = "the value") -> Callable[[Any], Any]:
    """An option callback that rejects numbers outside low..high naming the bad value.

    typer's own ``min=``/``max=`` check says "Input should be greater than or equal to 1" without
    saying which value was given, which matters most for repeated options such as ``--batch``.
    """

    def check(ctx: typer.Context, param: typer.CallbackParam, value: Any) -> Any:
        values = value if isinstance(value, list) else [] if value is None else [value]
        bad = [v for v in values if not math.isfinite(v) or v < low or (high is not None and v > high)]
        if bad:
            limit = f"{low}..{high}" if high is not None else f"{low} or more"
            raise typer.BadParameter(f"{', '.join(map(str, bad))}: {what} must be {limit}", param_hint=param.opts[0])
        return value

    return check


positive_batches = in_range(1, what="a batch size")


ArtifactDirs = Annotated[
    list[Path], typer.Argument(metavar="ARTIFACT", help="Artifact folders (each holds a manifest.json).")
]
ParityBatches = Annotated[
    list[int] | None,
    typer.Option(
        "--batch", callback=positive_batches, help="Batch size to validate at; repeat for several (default: 1 and 3)."
    ),
]
BenchBatches = Annotated[
    list[int] | None,
    typer.Option(
        "--batch", callback=positive_batches, help="Batch size to time; repeat for several (default: 1 and 4)."
    ),
]
ReportDir = Annotated[Path | None, typer.Option("--report", help="Write results.json, summary.md, report.html.")]
Junit = Annotated[
    Path | None, typer.Option("--junit", help="Write JUnit XML (one test case per artifact and check) for CI.")
]
Images = Annotated[Path | None, typer.Option("--images", help="Folder of photos (default: sample photos).")]
Size = Annotated[str | None, typer.Option("--size", help="Input size H or HxW (PyTorch weights / export).")]
Runs = Annotated[int, typer.Option("--runs", callback=in_range(1), help="Timed runs per batch size.")]
Warmup = Annotated[int, typer.Option("--warmup", callback=in_range(0), help="Untimed runs before timing.")]
NoVerify = Annotated[
    bool,
    typer.Option("--no-verify", help="Skip the sha256 check of the artifact's files (sizes are still checked)."),
]
ModelSpec = Annotated[
    str, typer.Argument(metavar="ARTIFACT", help="Artifact folder or weights: random:<variant>, checkpoint, hub id.")
]


def check_junit(junit: Path | None) -> None:
    """Fail before any slow work when the JUnit file cannot be written (a folder, /proc, below a file)."""
    from birefnet_edge.checks import check_output_file

    if junit is not None:
        check_output_file(junit, "--junit")
