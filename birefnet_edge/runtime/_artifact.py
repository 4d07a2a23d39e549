"""Opening an artifact folder: the one place that reads the manifest, checks the files and picks the runner."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from birefnet_edge.errors import BrokenModelError
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
            BrokenModelError: The model file is not a file of the artifact's format.
            BirefnetEdgeError: No runner is registered for the format.
        """
        self._check_magic()
        return RUNNERS.get(self.profile.format).from_artifact(self.folder, self.manifest)

    def _check_magic(self) -> None:
        """Refuse a model file without its format's identifier before a backend reads it (ExecuTorch aborts)."""
        magic = self.profile.options.model_magic
        entry = next((f for f in self.manifest.files if f.role == "model"), None)
        if magic is None or entry is None or not (self.folder / entry.path).is_file():
            return
        offset, expected = magic
        with open(self.folder / entry.path, "rb") as fh:
            head = fh.read(offset + len(expected))
        if head[offset:] != expected:
            raise BrokenModelError(
                f"{self.folder / entry.path} is not a model file of format '{self.profile.format}': bytes "
                f"{offset}-{offset + len(expected) - 1} are {head[offset:]!r}, expected {expected!r}; the file is "
                "damaged or of another format: re-export the artifact (or download it again)"
            )

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
