"""Run exporters: one staging folder, one manifest, one result record per target.

This is the only place that times an export, measures its memory, names its folder and writes
its manifest, so every format's artifact looks the same to the runtime.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from birefnet_edge._io import removing_new_empty_dirs, staging_dir
from birefnet_edge.card import write_card
from birefnet_edge.checks import check_output_dir
from birefnet_edge.errors import BirefnetEdgeError, ExportError
from birefnet_edge.export._base import EXPORTERS, ArtifactInfo, ExportOutput, tool_versions
from birefnet_edge.export._check import run_check
from birefnet_edge.export._footprint import size_record, weights_bytes
from birefnet_edge.export._memory import PeakRSS
from birefnet_edge.manifest import FileEntry, Manifest
from birefnet_edge.profile import Profile, load_profile

if TYPE_CHECKING:
    from birefnet_edge.model import WeightsInfo

log = logging.getLogger(__name__)

Progress = Callable[[str, "ExportResult | None"], None]


@dataclass(frozen=True)
class ExportResult:
    """Outcome of exporting one target.

    Attributes:
        target: Profile name.
        status: ``"ok"`` or ``"failed"``.
        path: The finished artifact folder (None when failed).
        seconds: Wall time of the export, checks included.
        peak_rss_bytes: Peak resident memory of the process during the export.
        skipped: ``"<step>: <reason>"`` for every step not done here (e.g. the TensorRT engine).
        error: The failure message (None when ok).
        reuse: With ``reuse=True``: ``"reused: <why>"`` (the existing artifact was kept; no time spent)
            or ``"rebuilt: <first difference>"``; empty otherwise.
        warnings: What the user must know about an artifact that was built (e.g. unrepresentative calibration).
        notes: Facts worth a line in the export log (e.g. how much of the graph a delegate runs).
    """

    target: str
    status: str
    path: Path | None
    seconds: float
    peak_rss_bytes: int
    skipped: tuple[str, ...] = ()
    error: str | None = None
    reuse: str = ""
    warnings: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """True when the artifact was written."""
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record, as a report's ``exports`` list keeps it (``reuse`` is left out)."""
        return {
            "target": self.target,
            "status": self.status,
            "path": str(self.path) if self.path else None,
            "seconds": round(self.seconds, 2),
            "peak_rss_bytes": self.peak_rss_bytes,
            "skipped": list(self.skipped),
            "warnings": list(self.warnings),
            "error": self.error,
        }


def artifact_name(variant: str, profile: Profile) -> str:
    """Folder name of an artifact: ``<variant>-<profile>``."""
    return f"{variant}-{profile.name}"


def model_overrides(model: torch.nn.Module, variant: str, profile: Profile) -> dict[str, Any]:
    """Config fields that differ from the registered variant, so the runtime rebuilds the same model."""
    overrides: dict[str, Any] = {"deform": profile.deform}
    config = getattr(model, "config", None)
    try:
        from birefnet_edge.model import get_config

        default = get_config(variant)
    except (BirefnetEdgeError, ImportError, KeyError):
        return overrides
    if config is None or not dataclasses.is_dataclass(config):
        return overrides
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if f.name not in ("deform", "name") and value != getattr(default, f.name, value):
            overrides[f.name] = list(value) if isinstance(value, tuple) else value
    return overrides


def _contract(profile: Profile) -> dict[str, Any]:
    from birefnet_edge.model.contract import Contract

    return Contract(size=tuple(profile.input_size)).to_dict()


def _manifest(
    name: str, variant: str, weights: dict[str, Any], profile: Profile, stage: Path, out: ExportOutput, extra: dict
) -> Manifest:
    files = [FileEntry.of(stage, rel, role) for rel, role in out.files.items()]
    return Manifest(
        name=name,
        variant=variant,
        weights=weights,
        profile=profile.to_dict(),
        contract=extra["contract"],
        files=files,
        model_overrides=extra["overrides"],
        tools={**tool_versions("torch", "numpy", "birefnet_edge"), **out.tools},
        export=_export_section(weights, out, extra),
    )


def _export_section(weights: dict[str, Any], out: ExportOutput, extra: dict) -> dict[str, Any]:
    return {
        "seconds": round(extra.get("seconds", 0.0), 3),
        "peak_rss_bytes": extra.get("peak_rss_bytes", 0),
        "peak_rss_by_phase": extra.get("peak_rss_by_phase", {}),
        **({"size": extra["size"]} if "size" in extra else {}),
        "checks": out.checks,
        "skipped": dict(out.skipped),
        **({"warning": "deterministic test weights, not a trained model"} if weights.get("deterministic") else {}),
        **out.details,
    }


def _unexpected(name: str, exc: Exception) -> str:
    """One-line report of a bug (not a user error), with where it was raised."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" (raised at {Path(frames[-1].filename).name}:{frames[-1].lineno} in {frames[-1].name})" if frames else ""
    return f"unexpected {type(exc).__name__} while exporting {name}: {exc}{where}; please report this as a bug"


def _restore_form(model: torch.nn.Module, form: str | None) -> None:
    if form is not None and hasattr(model, "set_deform_form"):
        model.set_deform_form(form)


def export_target(
    model: torch.nn.Module,
    profile: Profile,
    out_dir: str | Path,
    *,
    weights: WeightsInfo,
    variant: str,
    calibration: Path | None = None,
    full_check: bool = False,
) -> ExportResult:
    """Export one target into ``out_dir/<variant>-<profile.name>/`` with its ``manifest.json``.

    The folder is built under a hidden ``.partial`` name and renamed only when every file and check
    succeeded, so a failed or interrupted export never leaves a folder that looks complete. The
    model is switched to the profile's deformable-conv form for the export and switched back after.

    Args:
        model: BiRefNet in eval mode.
        profile: The target profile.
        out_dir: Parent folder of the artifact.
        weights: The ``WeightsInfo`` of the model's weights (recorded in the manifest).
        variant: Model variant name (names the folder).
        calibration: Folder of calibration images for int8 profiles (None: the bundled fallback set).
        full_check: Run the numeric check on the artifact at its own size; by default float targets are
            checked on the same export at a reduced size (see :mod:`birefnet_edge.export._check`).

    Returns:
        The result; user errors give ``status="failed"`` with the message instead of raising.
    """
    name = artifact_name(variant, profile)
    start = time.perf_counter()
    previous_form = getattr(getattr(model, "config", None), "deform", None)
    with PeakRSS() as rss:
        try:
            path, out = _run_exporter(
                model,
                profile,
                Path(out_dir),
                weights=weights.to_dict(),
                variant=variant,
                rss=rss,
                start=start,
                calibration=calibration,
                full_check=full_check,
            )
        except BirefnetEdgeError as exc:
            error: str | None = str(exc)
        except Exception as exc:  # a converter bug must not stop the other targets
            log.debug("export of %s failed", name, exc_info=True)
            error = _unexpected(name, exc)
        else:
            error = None
        finally:
            _restore_form(model, previous_form)
    seconds = time.perf_counter() - start
    if error is not None:
        return ExportResult(profile.name, "failed", None, seconds, rss.peak_bytes, (), error)
    skipped = tuple(f"{step}: {why}" for step, why in out.skipped.items())
    warnings = tuple(out.details.get("warnings", ()))
    notes = tuple(out.details.get("notes", ()))
    return ExportResult(
        profile.name, "ok", path, seconds, rss.peak_bytes, skipped, None, warnings=warnings, notes=notes
    )


def _run_exporter(
    model: torch.nn.Module,
    profile: Profile,
    out_dir: Path,
    *,
    weights: dict,
    variant: str,
    rss: PeakRSS,
    start: float,
    calibration: Path | None = None,
    full_check: bool = False,
) -> tuple[Path, ExportOutput]:
    name = artifact_name(variant, profile)
    exporter_cls = EXPORTERS.get(profile.format)
    contract = _contract(profile)
    info = ArtifactInfo(name=name, variant=variant, weights=weights, contract=contract)
    if hasattr(model, "set_deform_form"):
        model.set_deform_form(profile.deform)
    model.eval()
    final = out_dir / name
    with staging_dir(final) as stage:
        exporter = exporter_cls(info, calibration=calibration)
        out = exporter.export(model, profile, stage)
        extra: dict[str, Any] = {"contract": contract, "overrides": model_overrides(model, variant, profile)}

        def manifest_for(checked: Profile, folder: Path, written: ExportOutput) -> Manifest:
            return _manifest(
                name, variant, weights, checked, folder, written, {**extra, "contract": _contract(checked)}
            )

        # The check opens the artifact as a user would, through the manifest it is about to carry (by default
        # on the same export at a reduced size: see export/_check.py).
        checks, skipped = run_check(exporter, model, profile, stage, manifest_for, out, full_check)
        out.checks.update(checks)
        out.skipped.update(skipped)
        extra.update(
            size=size_record(weights_bytes(model, profile.precision), profile.precision, stage, out.files),
            seconds=time.perf_counter() - start,
            peak_rss_bytes=max(rss.peak_bytes, rss.sample()),
            peak_rss_by_phase=dict(rss.by_phase),
        )
        _manifest(name, variant, weights, profile, stage, out, extra).write(stage)
        write_card(stage, name=name)  # not hashed in the manifest: reports rewrite it (see birefnet_edge.card)
    return final, out


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
        for profile in profiles:
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
