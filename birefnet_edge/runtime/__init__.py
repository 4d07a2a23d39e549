"""Runners: load an exported artifact (or PyTorch weights) and run it with one interface.

``open_runner(artifact_dir)`` reads the manifest and picks the runner registered under the
profile's format; ``open_model(spec)`` also accepts a PyTorch weights spec. Every public module of
this package is imported (so its runner registers) when the package is; backend packages are imported
only when a runner is built or activated.
"""

from __future__ import annotations

from pathlib import Path

from birefnet_edge._registry import import_submodules
from birefnet_edge.errors import InputError
from birefnet_edge.manifest import MANIFEST_NAME
from birefnet_edge.runtime._artifact import Artifact, open_artifact
from birefnet_edge.runtime._base import RUNNERS, InputSpec, Runner
from birefnet_edge.runtime.pytorch import PytorchRunner

__all__ = [
    "RUNNERS",
    "Artifact",
    "InputSpec",
    "PytorchRunner",
    "Runner",
    "open_artifact",
    "open_model",
    "open_reference",
    "open_runner",
]

import_submodules(__name__, __path__)


def open_runner(artifact: str | Path, verify: bool = True) -> Runner:
    """Return an inactive runner for an exported artifact folder.

    Args:
        artifact: A folder holding ``manifest.json`` and the files it lists.
        verify: Check every file's SHA-256 against the manifest (False: presence and size only).

    Returns:
        The runner registered under the manifest's ``profile.format``; use it as a context manager.

    Raises:
        ArtifactError: Missing or invalid manifest, missing or changed files, or the artifact cannot run here.
        MissingDependencyError: The backend's package is not installed.
    """
    return open_artifact(artifact, verify).runner()


def open_reference(artifact: str | Path, verify: bool = True) -> PytorchRunner:
    """Return the (inactive) PyTorch reference of an artifact: same weights, variant, overrides and size.

    Args:
        artifact: The artifact folder.
        verify: Check the artifact's files against the manifest first (False: presence and size only).

    Raises:
        ArtifactError: Invalid manifest, missing or changed files, or no weights source recorded.
    """
    return open_artifact(artifact, verify).reference()


def open_model(
    spec: str | Path,
    size: tuple[int, int] | None = None,
    verify: bool = True,
    variant: str | None = None,
    patch_order: str | None = None,
) -> Runner:
    """Return a runner for an artifact folder or for PyTorch weights.

    Args:
        spec: An artifact folder, or a weights spec (``random:<variant>``, a checkpoint file, a hub id).
        size: (H, W) for PyTorch weights (default: the variant's size); artifacts have their own size.
        verify: Check an artifact's file hashes against its manifest (see :func:`open_runner`).
        variant: Model variant of PyTorch weights (None: decided by ``load_model``).
        patch_order: Tile order PyTorch weights were trained with (None: decided by ``load_model``).

    Raises:
        ArtifactError: ``spec`` is a folder without a valid artifact.
        WeightsError: ``spec`` is not a folder and cannot be resolved as weights.
        InputError: ``size`` differs from an artifact's fixed size, or ``variant``/``patch_order`` given
            for an artifact (it records its own).
    """
    path = Path(spec)
    if path.name == MANIFEST_NAME and path.is_file():
        path = path.parent
    if not path.is_dir():
        return PytorchRunner.from_weights(str(spec), size=size, variant=variant, patch_order=patch_order)
    if variant is not None or patch_order is not None:
        raise InputError(
            f"--variant/--patch-order apply to weights, not to artifact {path}, whose manifest records the variant "
            "and tile order it was exported with; drop them, or export again with them"
        )
    runner = open_runner(path, verify=verify)
    if size is not None and tuple(size) != runner.spec.size:
        h, w = runner.spec.size
        raise InputError(
            f"--size {size[0]}x{size[1]} does not apply to artifact {runner.name}, which is built for {h}x{w}; "
            "drop --size (images are resized to the artifact's size) or export at the size you want"
        )
    return runner
