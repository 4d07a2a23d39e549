"""Where the export check runs: on the artifact itself, or on the same export at a reduced size.

Running an artifact at its full size, at batches 1 and 3, next to the PyTorch reference, costs more
memory than converting it: BiRefNet_lite at 1024 px peaked at 8.9 GiB in an OpenVINO export, most
of it in the check. By default the float targets are therefore checked on a second export of the
same model, by the same exporter, at a reduced legal size (each side 256 or 288 px) that keeps the
parity of every side in 32-px units, so the half-size pass pads its odd grids exactly where the
full-size graph does. The full-size artifact still gets its exporter's structural checks (I/O
names, batch axis, weight precision); ``full_check=True`` runs the numbers on it too.

int8 targets are always checked at their own size: their accuracy was searched on the held-out
images at that size, and a second quantization would be a different artifact.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from birefnet_edge.export._memory import release
from birefnet_edge.profile import Profile

if TYPE_CHECKING:
    from birefnet_edge.export._base import CheckOutcome, Exporter, ExportOutput
    from birefnet_edge.manifest import Manifest

#: Sides up to this many pixels are checked as they are.
CHECK_SIDE = 256

ManifestFor = Callable[[Profile, Path, "ExportOutput"], "Manifest"]


def reduced_side(side: int) -> int:
    """The check side for ``side``: 256 (even in 32-px units) or 288 (odd), or ``side`` itself when not larger."""
    small = CHECK_SIDE if (side // 32) % 2 == 0 else CHECK_SIDE + 32
    return min(side, small)


def check_profile(profile: Profile, full_check: bool = False) -> Profile:
    """The profile the numeric check runs at: the reduced size, or ``profile`` itself (full_check, int8, small)."""
    if full_check or profile.quantization is not None:
        return profile
    h, w = profile.input_size
    size = (reduced_side(h), reduced_side(w))
    return profile if size == (h, w) else profile.with_overrides(input_size=size)


def run_check(
    exporter: Exporter,
    model: torch.nn.Module,
    profile: Profile,
    folder: Path,
    manifest_for: ManifestFor,
    out: ExportOutput,
    full_check: bool = False,
) -> CheckOutcome:
    """Run ``exporter.check`` on the artifact in ``folder`` or on a reduced-size export of the same model.

    Args:
        exporter: The exporter that wrote ``folder``.
        model: The PyTorch model (the reference).
        profile: The artifact's profile.
        folder: The artifact's staging folder.
        manifest_for: Builds the manifest of an artifact from (profile, folder, export output).
        out: What the exporter wrote into ``folder``.
        full_check: Check the artifact itself at its full size.

    Returns:
        ``(checks, skipped)``; ``checks["check_size"]`` names the size the numbers were taken at.
    """
    small = check_profile(profile, full_check)
    # The conversion's temporaries go before the check runs on top of them (graph modules hold reference cycles:
    # only a collection frees them, and the collector may not have run since).
    release()
    if small is profile:
        checks, skipped = exporter.check(model, profile, folder, manifest_for(profile, folder, out))
    else:
        with tempfile.TemporaryDirectory(prefix="birefnet-edge-check-") as tmp:
            check_out = exporter.export(model, small, Path(tmp))
            checks, skipped = exporter.check(model, small, Path(tmp), manifest_for(small, Path(tmp), check_out))
            del check_out
        release()
    return {**checks, "check_size": list(small.input_size)}, skipped
