"""Checks every command runs on its inputs before any slow work: output paths and bounded numbers.

One place decides what a usable output path is and what range a number may take, so ``export``,
``predict``, ``parity``, ``pack``, ``distill`` and the rest refuse the same bad values with the same
words, in a second, before a model loads. See docs/errors.md for which command checks what, and when.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import tempfile
from pathlib import Path

from birefnet_edge.errors import InputError, UsageError

# Largest side a run may ask for: BiRefNet's memory grows with the pixel count (about 16x the
# 1024 px figure at 4096), and a mistyped size must fail in a second, not after a 447 GiB allocation.
MAX_SIDE = 4096

# "s3://bucket/x" reaches us as the Path "s3:/bucket/x" (pathlib folds the double slash); a one-letter
# scheme would be a Windows drive, so two letters at least.
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:/")


def check_output_dir(path: str | Path, option: str) -> None:
    """Raise unless ``path`` is (or can be created as) a folder this process can write; creates nothing.

    Args:
        path: The output folder.
        option: The command-line option that named it (for the message).

    Raises:
        InputError: ``path`` is a URI, too long, a file, below a file, or the nearest existing folder
            cannot be written (read-only, another user's, or a pseudo file system such as /proc).
    """
    path = _check_path(path, option)
    if path.exists() and not path.is_dir():
        raise InputError(f"{option} {path} is a file, not a folder; pass a folder path (it is created when missing)")
    _check_writable_parent(path, option, "folder")


def check_output_file(path: str | Path, option: str) -> None:
    """Raise unless ``path`` can be written as a file (it may exist and is then replaced); creates nothing.

    Raises:
        InputError: ``path`` is a URI, too long, a folder, below a file, or its folder cannot be written.
    """
    path = _check_path(path, option)
    if path.is_dir():
        raise InputError(f"{option} {path} is a folder; pass a file name, e.g. {path / 'results.xml'}")
    _check_writable_parent(path.parent if path.name else path, option, "file", shown=path)


def _check_path(path: str | Path, option: str) -> Path:
    text = str(path)
    if _URI.match(text):
        raise InputError(
            f"{option} {text}: URIs are not supported; write to a local or mounted folder and copy the "
            "result with your storage tool"
        )
    path = Path(path)
    absolute = Path(os.path.abspath(path))
    limit = _pathconf(absolute, "PC_PATH_MAX", 4096)
    if len(os.fsencode(absolute)) >= limit:
        raise InputError(
            f"{option} {text[:40]}... is {len(os.fsencode(absolute))} bytes long as an absolute path; this file "
            f"system allows fewer than {limit}; choose a shorter path"
        )
    name_max = _pathconf(absolute, "PC_NAME_MAX", 255)
    long_parts = [p for p in absolute.parts if len(os.fsencode(p)) > name_max]
    if long_parts:
        raise InputError(
            f"{option}: the path part {long_parts[0][:40]}... has {len(os.fsencode(long_parts[0]))} bytes; this file "
            f"system allows {name_max} per name; choose a shorter name"
        )
    return path


def _pathconf(path: Path, name: str, default: int) -> int:
    existing = _nearest_existing(path)
    try:
        return int(os.pathconf(existing, name))
    except (OSError, ValueError, AttributeError):  # no pathconf (Windows) or no such limit
        return default


def _nearest_existing(path: Path) -> Path:
    existing = Path(os.path.abspath(path))
    while not _exists(existing) and existing != existing.parent:
        existing = existing.parent
    return existing


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:  # a name too long for the file system: not there
        return False


def _check_writable_parent(path: Path, option: str, kind: str, shown: Path | None = None) -> None:
    shown = shown or path
    existing = _nearest_existing(path)
    if not existing.is_dir():
        raise InputError(f"{option} {shown} cannot be created: {existing} is a file; pass a {kind} path")
    if not _can_create_in(existing):
        raise InputError(
            f"{option} {shown}: cannot write in {existing} (read-only, another user's, or not a real folder); "
            f"pass a {kind} path you can write to"
        )


def _can_create_in(folder: Path) -> bool:
    """Try it: permission bits say nothing for root, read-only mounts or /proc, a real file does."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".birefnet-edge-probe-", dir=folder)
    except OSError:
        return False
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(probe)
    return True


def bounded(
    value: float,
    option: str,
    low: float | None = None,
    high: float | None = None,
    *,
    why: str = "",
) -> float:
    """Return ``value`` when it is a finite number in ``[low, high]``; raise a usage error otherwise.

    Args:
        value: The number given.
        option: The option or field that named it, e.g. ``--steps`` or ``--augment flip``.
        low: Smallest allowed value (None: no lower bound).
        high: Largest allowed value (None: no upper bound).
        why: Why the bound is there, appended to the message.

    Raises:
        UsageError: Not a number, not finite, or out of range (the message names the value and the range).
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UsageError(f"{option} {value!r} is not a number")
    if not math.isfinite(value) or (low is not None and value < low) or (high is not None and value > high):
        if low is not None and high is not None:
            rule = f"{_num(low)}..{_num(high)}"
        elif low is not None:
            rule = f"{_num(low)} or more"
        else:
            rule = f"{_num(high)} or less"
        raise UsageError(f"{option} {_num(value)} is out of range: it must be {rule}{f' ({why})' if why else ''}")
    return value


def _num(value: float) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() and abs(value) < 1e15 else str(value)
