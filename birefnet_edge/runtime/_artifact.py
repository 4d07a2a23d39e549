"""Opening an artifact folder: the one place that reads the manifest, checks the files and picks the runner."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from birefnet_edge.manifest import Manifest, read_manifest, verify_files
from birefnet_edge.profile import Profile
from birefnet_edge.runtime._base import RUNNERS, Runner
from birefnet_edge.runtime.pytorch import PytorchRunner


@dataclass(frozen=True)
class Artifact:
    """An artifact folder whose manifest was read and whose files were checked.

    Attributes:
        folder: The artifact folder.
        manifest: Its manifest.
    """

    folder: Path
    manifest: Manifest

    @property
    def profile(self) -> Profile:
        """The profile the artifact was built with."""
        return self.manifest.get_profile()

    def runner(self) -> Runner:
        """An inactive runner of the artifact: the one registered under its profile's format.

        Raises:
            ArtifactError: The artifact cannot run here (the runner says why).
            BirefnetEdgeError: No runner is registered for the format.
        """
        return RUNNERS.get(self.profile.format).from_artifact(self.folder, self.manifest)

    def reference(self) -> PytorchRunner:
        """An inactive PyTorch reference: same weights, variant, overrides and size.

        Raises:
            ArtifactError: The manifest records no weights source.
        """
        return PytorchRunner.from_artifact(self.folder, self.manifest)


def open_artifact(folder: str | Path, verify: bool = True) -> Artifact:
    """Read an artifact's manifest and check its files.

    Args:
        folder: A folder holding ``manifest.json`` and the files it lists.
        verify: Check every file's SHA-256 against the manifest (False: presence and size only).

    Raises:
        ArtifactError: Missing folder, missing or invalid manifest, or missing or changed files.
    """
    path = Path(folder)
    manifest = read_manifest(path)
    verify_files(path, manifest, hashes=verify)
    return Artifact(path, manifest)
