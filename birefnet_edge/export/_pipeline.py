"""Export many targets: load the model once, then export (or reuse) each target in turn.

The profiles are resolved and the output folder and calibration images checked before the model
loads, so a bad argument fails in a second. One target's export is :mod:`birefnet_edge.export._build`,
whose names are re-exported here for the callers that import them from this module.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from birefnet_edge._io import removing_new_empty_dirs
from birefnet_edge.checks import check_output_dir
from birefnet_edge.errors import ExportError
from birefnet_edge.export import _cache
from birefnet_edge.export._build import ExportResult, Progress, artifact_name, export_target, model_overrides
from birefnet_edge.export._memory import release
from birefnet_edge.profile import Profile, load_profile

if TYPE_CHECKING:
    from birefnet_edge.model import WeightsInfo

__all__ = [
    "ExportResult",
    "Progress",
    "artifact_name",
    "calibration_hashes",
    "check_calibration",
    "export_target",
    "export_targets",
    "model_overrides",
    "raise_on_export_failure",
    "resolve_profiles",
]


def resolve_profiles(targets: Sequence[str | Profile], size: tuple[int, int] | None = None) -> list[Profile]:
    """Load profiles by shipped name or TOML path (profiles pass as they are), optionally overriding the input size.

    Raises:
        ProfileError: An unknown name, a bad file or an illegal size.
    """
    profiles = [t if isinstance(t, Profile) else load_profile(t) for t in targets]
    if size is not None:
        profiles = [p.with_overrides(input_size=tuple(size)) for p in profiles]
    return profiles


def export_targets(
    weights: str,
    targets: Sequence[str | Profile],
    out_dir: str | Path,
    *,
    size: tuple[int, int] | None = None,
    progress: Progress | None = None,
    reuse: bool = False,
    variant: str | None = None,
    patch_order: str | None = None,
    calibration: str | Path | None = None,
    full_check: bool = False,
) -> list[ExportResult]:
    """Load the model once and export every target, going on after a failure.

    Args:
        weights: ``random:<variant>``, a checkpoint path or a hub id (see ``load_model``).
        targets: Profiles, or shipped profile names or paths to TOML files (loaded here).
        out_dir: Parent folder of the artifacts.
        size: (H, W) overriding every profile's input size.
        progress: Called as ``progress(target, None)`` before and ``progress(target, result)`` after each export.
        reuse: Keep an existing artifact built from the same weights, profile, size and tools whose files
            all match its manifest (see :mod:`birefnet_edge.export._reuse`); rebuild the others.
        variant: Model variant of the weights (None: decided by ``load_model``).
        patch_order: Tile order the weights were trained with (None: decided by ``load_model``).
        calibration: Folder of calibration images for int8 targets (searched recursively); None uses the
            bundled sample photos and synthetic images, with a warning in the output and the manifest.
        full_check: Check every artifact at its own size (memory: several GB at 1024 px), not at the reduced size.

    Returns:
        One result per target, in order.

    Raises:
        ProfileError: A target cannot be loaded (raised before anything is exported).
        InputError: ``out_dir`` is a file or cannot be written, or the calibration folder is missing or
            holds too few images (both raised before the model loads).
        WeightsError: The weights cannot be loaded.
    """
    from birefnet_edge.model import load_model

    profiles = resolve_profiles(targets, size)
    check_output_dir(out_dir, "--out")  # before the model loads: a bad folder fails in a second
    calibration = check_calibration(calibration, profiles)
    results = []
    with removing_new_empty_dirs(out_dir):  # every target failed or interrupted: no empty folder left
        model, info = load_model(weights, variant=variant, patch_order=patch_order)
        for i, profile in enumerate(profiles):
            _cache.retain_programs(_programs_needed(model, profiles[i:], full_check))
            release()
            if progress is not None:
                progress(profile.name, None)
            if reuse:
                result = _export_or_reuse(model, profile, Path(out_dir), info, calibration, full_check)
            else:
                result = export_target(
                    model,
                    profile,
                    out_dir,
                    weights=info,
                    variant=info.variant,
                    calibration=calibration,
                    full_check=full_check,
                )
            results.append(result)
            if progress is not None:
                progress(profile.name, result)
    return results


def _programs_needed(
    model: torch.nn.Module, profiles: Sequence[Profile], full_check: bool
) -> set[tuple[str, tuple[int, int]]]:
    """(deformable-conv form, input size) of every program these targets and their checks can trace."""
    from birefnet_edge.export._check import check_profile

    config = getattr(model, "config", None)
    needed = set()
    for profile in profiles:
        # The export switches a model that can switch to the profile's form (see export_target).
        form = profile.deform if hasattr(model, "set_deform_form") else getattr(config, "deform", profile.deform)
        for traced in (profile, check_profile(profile, full_check)):
            needed.add((form, tuple(traced.input_size)))
    return needed


def raise_on_export_failure(results: Sequence[ExportResult]) -> None:
    """Raise :class:`ExportError` naming every target whose export failed (the results say why).

    Raises:
        ExportError: At least one result is not ok.
    """
    failed = [r.target for r in results if not r.ok]
    if failed:
        raise ExportError(f"{len(failed)} of {len(results)} target(s) failed: {', '.join(failed)}")


def _export_or_reuse(
    model: torch.nn.Module,
    profile: Profile,
    out_dir: Path,
    info: WeightsInfo,
    calibration: Path | None = None,
    full_check: bool = False,
) -> ExportResult:
    """Keep the existing artifact when it matches this export exactly, else export (replacing it only on success)."""
    from birefnet_edge.export._reuse import judge_reuse

    folder = out_dir / artifact_name(info.variant, profile)
    overrides = model_overrides(model, info.variant, profile)
    verdict = judge_reuse(folder, info.to_dict(), profile, overrides, calibration_hashes(profile, calibration))
    if verdict.reusable:
        return ExportResult(profile.name, "ok", folder, 0.0, 0, reuse=f"reused: {verdict.reason}")
    result = export_target(
        model, profile, out_dir, weights=info, variant=info.variant, calibration=calibration, full_check=full_check
    )
    return dataclasses.replace(result, reuse=f"rebuilt: {verdict.reason}")


def check_calibration(folder: str | Path | None, profiles: Sequence[Profile]) -> Path | None:
    """Check a calibration folder before any slow work: it must hold enough images for every int8 profile.

    Raises:
        InputError: The folder is missing or holds too few images for one of the int8 profiles.
    """
    if folder is None:
        return None
    for profile in profiles:
        calibration_hashes(profile, Path(folder))
    return Path(folder)


def calibration_hashes(profile: Profile, folder: Path | None) -> list[str] | None:
    """SHA-256 of every image an int8 export of ``profile`` would read (None for other precisions).

    Raises:
        InputError: The folder is missing or holds too few images.
    """
    q = profile.quantization
    if q is None:
        return None
    from birefnet_edge.export.int8.calibration import load_calibration

    chosen = load_calibration(folder, q.calibration_images, q.held_out_images)
    return [i.sha256 for i in chosen.calibration + chosen.held_out]
