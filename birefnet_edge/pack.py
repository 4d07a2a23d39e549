"""Reproducible archives of artifacts: the same artifact always packs to the same bytes.

An archive holds the artifact folder under its own name: ``manifest.json``, the model card and every
file the manifest lists, and nothing else (no stray notes, samples or temporary files). Entries are
sorted, with fixed times, owners and modes, and the gzip header carries no time or file name, so two
packs of one artifact have one sha256, which a release page or a lock file can pin. The artifact is
verified against its manifest first: a corrupted artifact is never packed.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import tarfile
import tempfile
from pathlib import Path

from birefnet_edge._io import sha256_file
from birefnet_edge.card import CARD_NAME
from birefnet_edge.checks import check_output_file
from birefnet_edge.errors import ArtifactError, InputError
from birefnet_edge.manifest import MANIFEST_NAME, Manifest, file_problems, manifest_problems, read_manifest

_MTIME = 0  # 1970-01-01: any fixed value works; 0 is what other reproducible-build tools use too
_FILE_MODE = 0o644


def verify_artifact(folder: str | Path) -> list[str]:
    """Every problem of an artifact: unreadable manifest, a manifest changed after export (its digest), no
    model file listed, or files missing, resized or changed (sha256).

    What passing proves: every listed file and the manifest are byte for byte what the export wrote (or
    what someone who recomputed every hash and the digest wrote: it is a checksum, not a signature).
    It does not prove the model runs here or matches PyTorch (that is ``parity``).

    Returns:
        One line per problem; empty when the manifest and every listed file match.
    """
    try:
        manifest = read_manifest(folder)
    except ArtifactError as exc:
        return [str(exc)]
    return manifest_problems(manifest) + file_problems(folder, manifest, hashes=True)


def archive_members(folder: Path, manifest: Manifest) -> list[str]:
    """Relative POSIX paths of the files that ship, sorted: manifest, card and every listed file."""
    members = {MANIFEST_NAME}
    if (folder / CARD_NAME).is_file():
        members.add(CARD_NAME)
    for entry in manifest.files:
        target = folder / entry.path
        if target.is_dir():  # a .mlpackage is a folder: all of its files
            members.update(p.relative_to(folder).as_posix() for p in target.rglob("*") if p.is_file())
        else:
            members.add(Path(entry.path).as_posix())
    return sorted(members)


def _add(tar: tarfile.TarFile, source: Path, arcname: str) -> None:
    info = tarfile.TarInfo(arcname)
    info.size = source.stat().st_size
    info.mtime, info.mode = _MTIME, _FILE_MODE
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    with open(source, "rb") as fh:
        tar.addfile(info, fh)


def write_archive(folder: Path, manifest: Manifest, fh: io.BufferedIOBase) -> None:
    """Write the gzip-compressed tar of ``folder`` into the open binary file ``fh``."""
    with (
        gzip.GzipFile(filename="", mode="wb", fileobj=fh, compresslevel=9, mtime=_MTIME) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for rel in archive_members(folder, manifest):
            _add(tar, folder / rel, f"{folder.name}/{rel}")


def pack_artifact(folder: str | Path, out: str | Path, overwrite: bool = False) -> tuple[Path, str]:
    """Verify an artifact and write its reproducible ``.tar.gz``, atomically.

    Args:
        folder: The artifact folder.
        out: The archive to write.
        overwrite: Replace ``out`` when it exists (refused otherwise).

    Returns:
        The archive's path and its sha256.

    Raises:
        ArtifactError: The artifact does not match its manifest (each problem is named).
        InputError: ``out`` exists without ``overwrite``, is a folder, or lies inside the artifact.
    """
    folder, out = Path(folder), Path(out)
    problems = verify_artifact(folder)
    if problems:
        raise ArtifactError(f"not packing {folder}: {'; '.join(problems)}; re-export or re-download it")
    if out.is_dir():
        raise InputError(f"--out {out} is a folder; give the archive's file name, e.g. {out / folder.name}.tar.gz")
    check_output_file(out, "--out")
    if out.exists() and not overwrite:
        raise InputError(f"--out {out} already exists; pass --overwrite to replace it, or choose another name")
    if out.resolve().is_relative_to(folder.resolve()):
        raise InputError(f"--out {out} is inside the artifact {folder}; write the archive elsewhere")
    manifest = read_manifest(folder)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write_archive(folder, manifest, fh)
        os.chmod(tmp, _FILE_MODE)
        digest = sha256_file(tmp)
        os.replace(tmp, out)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return out, digest
