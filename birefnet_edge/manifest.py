"""The artifact manifest: what an exported folder holds and how to feed it.

Exporters write ``manifest.json`` next to the model files; runners and the parity gate read it
back. It is the only coupling between ``export/`` and ``runtime/``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from birefnet_edge._io import atomic_write_json, sha256_file
from birefnet_edge.errors import ArtifactError, ProfileError
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
    digest: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-ready dict."""
        return asdict(self)

    def computed_digest(self) -> str:
        """The digest of this manifest's content (see :func:`manifest_digest`)."""
        return manifest_digest(self.to_dict())

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
        """Write ``manifest.json`` into ``folder`` atomically, sealed with the digest of its content."""
        data = self.to_dict()
        data["digest"] = manifest_digest(data)
        return atomic_write_json(Path(folder) / MANIFEST_NAME, data)

    @classmethod
    def from_dict(cls, data: Any) -> Manifest:
        """Rebuild from a parsed manifest, checking the schema version, the field types and every path.

        Raises:
            ArtifactError: Not a JSON object, wrong schema, a field of the wrong type, or a file path
                that leaves the artifact folder.
        """
        if not isinstance(data, dict):
            raise ArtifactError(f"a manifest must be a JSON object; got {type(data).__name__}")
        if data.get("schema") != SCHEMA_VERSION:
            raise ArtifactError(f"manifest schema {data.get('schema')!r} is not supported (expected {SCHEMA_VERSION})")
        _check_field_types(data)
        data = dict(data)
        data["files"] = [FileEntry(**f) for f in data.get("files", [])]
        for entry in data["files"]:
            check_member_path(entry.path)
        return cls(**data)


# The type each manifest field must have; a wrong one would fail far from here with a traceback.
_FIELD_TYPES: dict[str, type] = {
    "name": str,
    "variant": str,
    "weights": dict,
    "profile": dict,
    "contract": dict,
    "files": list,
    "model_overrides": dict,
    "tools": dict,
    "export": dict,
    "digest": str,
}


_REQUIRED = ("name", "variant", "weights", "profile", "contract")


def _check_field_types(data: dict[str, Any]) -> None:
    missing = [key for key in _REQUIRED if key not in data]
    if missing:
        raise ArtifactError(f"manifest lacks the field(s) {', '.join(missing)}")
    wrong = [
        f"'{key}' is {type(data[key]).__name__}, expected {kind.__name__}"
        for key, kind in _FIELD_TYPES.items()
        if key in data and not isinstance(data[key], kind)
    ]
    wrong += [
        f"files[{i}] is {type(f).__name__}, expected object"
        for i, f in enumerate(data.get("files", []))
        if not isinstance(f, dict)
    ]
    if wrong:
        raise ArtifactError(f"manifest fields have the wrong type: {'; '.join(wrong)}")


def manifest_digest(data: dict[str, Any]) -> str:
    """``sha256:<hex>`` of a manifest's canonical JSON (sorted keys, no spaces), its ``digest`` key left out.

    The digest seals the manifest's content the way each file's sha256 seals the file: a manifest edited
    by hand (a contract mean, a tolerance, the file list) no longer matches it. It is a checksum, not a
    signature: whoever edits the manifest can recompute it, so it proves integrity, not origin (compare a
    pack's sha256 with the one published by its maker for that).
    """
    content = {k: v for k, v in data.items() if k != "digest"}
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def manifest_problems(manifest: Manifest) -> list[str]:
    """What is wrong with the manifest itself: no digest, a digest its content does not match, no model file.

    ``verify``, ``pack`` and ``export --reuse`` call it beside :func:`file_problems`.

    Returns:
        One line per problem; empty when the manifest is sealed, unchanged and lists a model file (or the files
        its model is built from on the target machine: a TensorRT export without an engine).
    """
    problems = []
    if not manifest.digest:
        problems.append(
            f"{MANIFEST_NAME} has no digest (written by hand or by an older birefnet-edge); re-export to seal it"
        )
    elif manifest.digest != manifest.computed_digest():
        problems.append(
            f"{MANIFEST_NAME} was changed after export: its content does not match its digest {manifest.digest[:19]}"
        )
    if not any(entry.role == "model" for entry in manifest.files) and not _built_later(manifest):
        listed = f"{len(manifest.files)} file(s), none with role 'model'" if manifest.files else "no files"
        problems.append(f"{MANIFEST_NAME} lists {listed}: there is no model to run")
    return problems


def _built_later(manifest: Manifest) -> bool:
    """True for an artifact whose model file is built on the machine that runs it, holding what it is built from."""
    try:
        return bool(manifest.files) and bool(manifest.get_profile().options.built_later_by)
    except ProfileError:
        return False


def check_member_path(relpath: str) -> PurePosixPath:
    """Return ``relpath`` as a path inside the artifact folder, or raise.

    A manifest is data a user may have downloaded: a listed path must never reach outside its folder.

    Raises:
        ArtifactError: ``relpath`` is empty, absolute (POSIX or Windows) or contains ``..``.
    """
    posix = PurePosixPath(str(relpath).replace("\\", "/"))
    if not str(relpath) or posix.is_absolute() or PureWindowsPath(str(relpath)).drive or ".." in posix.parts:
        raise ArtifactError(
            f"manifest lists the file path {relpath!r}, which is outside the artifact folder; "
            "paths must be relative and without '..' (re-export the artifact or fix manifest.json)"
        )
    return posix


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
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{path} is not a valid manifest (not JSON: {exc}); re-export the artifact") from exc
    try:
        manifest = Manifest.from_dict(data)
        manifest.get_profile()
    except (ArtifactError, ProfileError, TypeError, KeyError, ValueError) as exc:
        raise ArtifactError(f"{path} is not a valid manifest: {exc}; re-export the artifact") from exc
    return manifest


def file_problems(folder: str | Path, manifest: Manifest, hashes: bool = True) -> list[str]:
    """List what is wrong with the files of an artifact: missing, resized, changed or outside the folder.

    This is the one place artifact integrity is checked; runners, the parity gate, the benchmark and
    ``verify`` all call it (or :func:`verify_files`).

    Args:
        folder: The artifact folder.
        manifest: Its manifest.
        hashes: Also recompute each file's SHA-256 (reads every byte); False checks presence and size only.

    Returns:
        One line per problem; empty when the files match the manifest.
    """
    folder = Path(folder)
    root = folder.resolve()
    problems = []
    for entry in manifest.files:
        try:
            check_member_path(entry.path)
        except ArtifactError:
            problems.append(f"{entry.path} is outside the artifact folder")
            continue
        target = folder / entry.path
        if not target.exists():
            problems.append(f"missing {entry.path}")
        elif not target.resolve().is_relative_to(root):
            problems.append(f"{entry.path} links outside the artifact folder")
        elif target.is_file() and target.stat().st_size != entry.bytes:
            problems.append(f"{entry.path} has {target.stat().st_size} bytes, manifest says {entry.bytes}")
        elif hashes and FileEntry.of(folder, entry.path, entry.role).sha256 != entry.sha256:
            problems.append(f"{entry.path} does not match its sha256 in the manifest (changed or corrupted)")
    return problems


def verify_files(folder: str | Path, manifest: Manifest, hashes: bool = True) -> None:
    """Raise unless the artifact's files match its manifest (see :func:`file_problems`).

    Args:
        folder: The artifact folder.
        manifest: Its manifest.
        hashes: Recompute SHA-256s (False: presence and size only, for very large files).

    Raises:
        ArtifactError: Lists every problem found.
    """
    problems = file_problems(folder, manifest, hashes)
    if problems:
        # --no-verify skips only the sha256 check: offer it only when nothing else (a missing or resized file) is wrong.
        only_hashes = hashes and not file_problems(folder, manifest, hashes=False)
        escape = " (or pass --no-verify to skip the sha256 check at your own risk)" if only_hashes else ""
        raise ArtifactError(
            f"artifact {folder} is incomplete or corrupted: {'; '.join(problems)}; re-export or re-download it{escape}"
        )
