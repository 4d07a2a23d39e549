"""Small file helpers: hashing and all-or-nothing writes.

Nothing the toolkit writes may look complete when it is not: files are written to a temporary
name in the same folder and renamed, and artifact folders are built under a ``.partial`` name.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Return the hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        # mkstemp creates 0600; give the file the mode a plain open() would, so artifacts stay
        # readable by the CI user or web server that serves them.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def _umask() -> int:
    # The only portable way to read the umask is to set it and put it back.
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write UTF-8 text atomically (see :func:`atomic_write_bytes`)."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, data: Any) -> Path:
    """Write indented JSON atomically."""
    return atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


@contextlib.contextmanager
def staging_dir(final: str | Path) -> Iterator[Path]:
    """Build a folder under a hidden ``.partial`` name and move it to ``final`` only on success.

    An exception (or Ctrl-C) inside the block removes the partial folder, so an interrupted run never
    leaves a folder that looks complete. An existing ``final`` is replaced only after success.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    partial = final.parent / f".{final.name}.partial"
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir()
    try:
        yield partial
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    if final.exists():
        old = final.parent / f".{final.name}.old"
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
        os.replace(partial, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(partial, final)


@contextlib.contextmanager
def removing_new_empty_dirs(path: str | Path) -> Iterator[None]:
    """Remove, after the block, the folders down to ``path`` that it created and left empty.

    A run that fails (or is interrupted) before writing anything then leaves no empty output folder;
    a folder that existed before, or that holds anything, is never removed.
    """
    path = Path(path)
    created = []
    while not path.exists() and path != path.parent:
        created.append(path)
        path = path.parent
    try:
        yield
    finally:
        for folder in created:  # deepest first
            with contextlib.suppress(OSError):  # missing or not empty: leave it
                folder.rmdir()
