"""``export --reuse``: keep an existing artifact when it would be rebuilt identically.

An artifact is reused only when its manifest proves it was built from the same weights (their
sha256; deterministic test weights by their spec), the same profile content (every field, the input
size and batch range included), the same model configuration, the same tool versions and, for int8,
the same calibration images (their sha256), and when
every file still matches the manifest's sha256. Anything else is rebuilt, and the reason is said.
The rebuild goes through the usual staging folder, so the old artifact stays until the new one is
complete.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from birefnet_edge.errors import ArtifactError
from birefnet_edge.export._base import tool_versions
from birefnet_edge.manifest import Manifest, file_problems, manifest_problems, read_manifest
from birefnet_edge.profile import Profile


@dataclass(frozen=True)
class ReuseVerdict:
    """Whether an existing artifact can stand in for a new export, and why (one line)."""

    reusable: bool
    reason: str


def _same_weights(old: dict[str, Any], new: dict[str, Any]) -> str | None:
    if new.get("sha256"):
        if old.get("sha256") != new["sha256"]:
            return f"weights differ (sha256 {str(old.get('sha256'))[:12]} -> {new['sha256'][:12]})"
    elif not (new.get("deterministic") and old.get("deterministic") and old.get("source") == new.get("source")):
        return f"weights {new.get('source')} have no sha256 to compare with {old.get('source')}"
    for key in ("patch_order",):  # how the weights were converted at load
        if old.get(key) != new.get(key):
            return f"weights {key} differs ({old.get(key)} -> {new.get(key)})"
    return None


# What a profile was read from, not what it says: a comment or a reordered key changes the file's
# sha256 but not the artifact, so reuse compares the parsed, normalised profile without these.
_PROVENANCE = ("sha256", "source")


def _profile_change(old: dict[str, Any], new: dict[str, Any]) -> str | None:
    old, new = ({k: v for k, v in d.items() if k not in _PROVENANCE} for d in (old, new))
    if old.get("input_size") != new.get("input_size"):
        return f"size differs ({old.get('input_size')} -> {new.get('input_size')})"
    changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    return f"profile content differs ({', '.join(changed)})" if changed else None


def _tools_change(old: dict[str, str]) -> str | None:
    now = tool_versions(*old)
    changed = [f"{k} {v} -> {now.get(k, 'not installed')}" for k, v in old.items() if now.get(k) != v]
    return f"tool versions differ ({'; '.join(changed)})" if changed else None


def _calibration_change(manifest: Manifest, hashes: list[str] | None) -> str | None:
    if hashes is None:
        return None
    record = manifest.export.get("quantization", {}).get("calibration", {})
    old = [i.get("sha256") for i in record.get("calibration", []) + record.get("held_out", [])]
    return None if old == hashes else f"calibration images differ ({len(old)} -> {len(hashes)} images or their content)"


def _first_difference(
    manifest: Manifest,
    weights: dict[str, Any],
    profile: Profile,
    overrides: dict[str, Any],
    calibration: list[str] | None = None,
) -> str | None:
    return (
        _same_weights(manifest.weights, weights)
        or _profile_change(manifest.profile, profile.to_dict())
        or (
            f"model configuration differs ({manifest.model_overrides} -> {overrides})"
            if manifest.model_overrides != overrides
            else None
        )
        or _tools_change(manifest.tools)
        or _calibration_change(manifest, calibration)
    )


def judge_reuse(
    folder: Path,
    weights: dict[str, Any],
    profile: Profile,
    overrides: dict[str, Any],
    calibration: list[str] | None = None,
) -> ReuseVerdict:
    """Decide whether the artifact in ``folder`` matches a new export of ``profile`` from ``weights``.

    Args:
        folder: Where the export would write the artifact.
        weights: ``WeightsInfo.to_dict()`` of the weights loaded for this export.
        profile: The resolved profile (size overrides applied).
        overrides: The model config overrides the new manifest would record.
        calibration: SHA-256 of the calibration + held-out images an int8 export would read (None otherwise).

    Returns:
        The verdict; its reason names the first difference found, or what was checked.
    """
    if not folder.exists():
        return ReuseVerdict(False, "no artifact yet")
    try:
        manifest = read_manifest(folder)
    except ArtifactError as exc:
        return ReuseVerdict(False, f"existing artifact unreadable ({exc})")
    difference = _first_difference(manifest, weights, profile, overrides, calibration)
    if difference:
        return ReuseVerdict(False, difference)
    problems = manifest_problems(manifest) + file_problems(folder, manifest, hashes=True)
    if problems:
        return ReuseVerdict(False, f"files do not match the manifest ({'; '.join(problems)})")
    reason = "same weights, profile, size, tools" + (", calibration images" if calibration is not None else "")
    return ReuseVerdict(True, f"{reason}; every file matches its sha256")
