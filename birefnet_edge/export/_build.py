"""Export one target: one staging folder, one manifest, one result record.

This is the only place that times an export, measures its memory, names its folder and writes
its manifest, so every format's artifact looks the same to the runtime. The loop over many targets
(profiles, calibration, reuse) is :mod:`birefnet_edge.export._pipeline`.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from birefnet_edge._io import staging_dir
from birefnet_edge.card import write_card
from birefnet_edge.errors import BirefnetEdgeError
from birefnet_edge.export._base import EXPORTERS, ArtifactInfo, ExportOutput, tool_versions
from birefnet_edge.export._check import run_check
from birefnet_edge.export._footprint import size_record, weights_bytes
from birefnet_edge.export._memory import PeakRSS
from birefnet_edge.manifest import FileEntry, Manifest
from birefnet_edge.profile import Profile

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
    if profile.deform_band is not None:  # like the form, the profile's to choose, whatever the model holds now
        overrides["deform_band"] = profile.deform_band
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
        if f.name not in ("deform", "deform_band", "name") and value != getattr(default, f.name, value):
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


def _restore_form(model: torch.nn.Module, form: tuple[str, int] | None) -> None:
    if form is not None and hasattr(model, "set_deform_form"):
        model.set_deform_form(*form)


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
    config = getattr(model, "config", None)
    previous_form = (config.deform, config.deform_band) if hasattr(config, "deform_band") else None
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
        except Exception as exc:  # a converter bug must not stop the other targets
            # Shown under --debug; a converter's own exception arrives wrapped (converting()), in the chain.
            log.debug("export of %s failed", name, exc_info=True)
            error: str | None = str(exc) if isinstance(exc, BirefnetEdgeError) else _unexpected(name, exc)
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
        from birefnet_edge.model.layers.deform_conv import COLUMN_BUDGET

        model.set_deform_form(profile.deform, profile.deform_band or COLUMN_BUDGET)
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
        exporter.complete(out)
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
