"""The artifact manifest: what an exported folder holds and how to feed it.

Exporters write ``manifest.json`` next to the model files; runners and the parity gate read it
back. It is the only coupling between ``export/`` and ``runtime/``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from birefnet_edge._io import atomic_write_json, sha256_file
from birefnet_edge.errors import ArtifactError
from birefnet_edge.profile import Profile

MANIFEST_NAME = "manifest.json"
SCHEMA_VERSION = 1


@dataclass(frozen=True)
class FileEntry:
    """One file of an artifact, with its role (``model``, ``weights``, ``engine``, ``aux``)."""

    path: str
    sha256: str
    bytes: int
    role: str = "model"

    @classmethod
    def of(cls, root: Path, relpath: str, role: str = "model") -> FileEntry:
        """Hash and measure ``root / relpath`` (a file or, for .mlpackage, a folder)."""
        target = root / relpath
        if target.is_dir():
            files = sorted(p for p in target.rglob("*") if p.is_file())
            size = sum(p.stat().st_size for p in files)
            digest = _hash_tree(target, files)
        else:
            size, digest = target.stat().st_size, sha256_file(target)
        return cls(path=relpath, sha256=digest, bytes=size, role=role)


def _hash_tree(root: Path, files: list[Path]) -> str:
    import hashlib

    h = hashlib.sha256()
    for p in files:
        h.update(str(p.relative_to(root)).encode())
        h.update(sha256_file(p).encode())
    return h.hexdigest()


@dataclass(frozen=True)
class Manifest:
    """Everything needed to run, verify and trace an artifact back to its source.

    Attributes:
        name: Artifact name, ``<model>-<profile>``.
        variant: Model variant name from the model registry (e.g. ``BiRefNet_lite``).
        model_overrides: Config overrides passed to ``create_model`` (e.g. ``deform``).
        weights: Source record: ``source``, ``revision``, ``sha256``, ``deterministic``.
        profile: The profile as a dict (see :meth:`Profile.to_dict`).
        contract: Pre/post-processing contract: mean, std, size, input/output names, output kind.
        files: The artifact's files with hashes.
        tools: Versions of the packages that produced it.
        export: Timings, peak memory, checks run and anything skipped (with reasons).
    """

    name: str
    variant: str
    weights: dict[str, Any]
    profile: dict[str, Any]
    contract: dict[str, Any]
    files: list[FileEntry] = field(default_factory=list)
    model_overrides: dict[str, Any] = field(default_factory=dict)
    tools: dict[str, str] = field(default_factory=dict)
    export: dict[str, Any] = field(default_factory=dict)
    schema: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-ready dict."""
        return asdict(self)

    def get_profile(self) -> Profile:
        """Return the profile this artifact was built with."""
        return Profile.from_dict(self.profile)

    def file(self, role: str) -> Path:
        """Return the relative path of the first file with ``role``.

        Raises:
            ArtifactError: No file has that role.
        """
        for entry in self.files:
            if entry.role == role:
                return Path(entry.path)
        raise ArtifactError(f"artifact '{self.name}' lists no '{role}' file; re-export it")

    def write(self, folder: str | Path) -> Path:
        """Write ``manifest.json`` into ``folder`` atomically."""
        return atomic_write_json(Path(folder) / MANIFEST_NAME, self.to_dict())

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        """Rebuild from a parsed manifest, checking the schema version."""
        if data.get("schema") != SCHEMA_VERSION:
            raise ArtifactError(f"manifest schema {data.get('schema')!r} is not supported (expected {SCHEMA_VERSION})")
        data = dict(data)
        data["files"] = [FileEntry(**f) for f in data.get("files", [])]
        return cls(**data)


def read_manifest(folder: str | Path) -> Manifest:
    """Read and validate ``folder/manifest.json``.

    Raises:
        ArtifactError: Missing folder or manifest, invalid JSON or wrong schema.
    """
    folder = Path(folder)
    path = folder / MANIFEST_NAME
    if not folder.is_dir():
        raise ArtifactError(f"artifact folder not found: {folder}")
    if not path.is_file():
        raise ArtifactError(
            f"{folder} has no {MANIFEST_NAME}: it is not a finished birefnet-edge artifact (re-export it)"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return Manifest.from_dict(data)
    except (json.JSONDecodeError, TypeError, KeyError) as exc:
        raise ArtifactError(f"{path} is not a valid manifest: {exc}") from exc


def verify_files(folder: str | Path, manifest: Manifest) -> None:
    """Check that every listed file exists with the recorded size (cheap; hashes are not recomputed).

    Raises:
        ArtifactError: Lists every missing or resized file.
    """
    folder = Path(folder)
    problems = []
    for entry in manifest.files:
        target = folder / entry.path
        if not target.exists():
            problems.append(f"missing {entry.path}")
        elif target.is_file() and target.stat().st_size != entry.bytes:
            problems.append(f"{entry.path} has {target.stat().st_size} bytes, manifest says {entry.bytes}")
    if problems:
        raise ArtifactError(f"artifact {folder} is incomplete: {'; '.join(problems)}; re-export it")
