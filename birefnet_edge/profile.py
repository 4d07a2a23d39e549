"""Target profiles: the declarative description of one export target.

A profile is a TOML file in ``targets/`` (or a user's own file) loaded into the frozen
:class:`Profile` dataclass and validated on load. Everything a target needs — format, precision,
input size, the min/opt/max batch range, graph choices, runtime options and parity tolerances —
lives here, so exporters, runners and the parity gate read the same numbers. The formats and
their ``[options]`` come from the registry in :mod:`birefnet_edge.formats`, not from a list here.
This module reads and type-checks the TOML; the records themselves are in :mod:`birefnet_edge._profile_record`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# The records live in their own module; re-exported here because every caller imports them from this one.
from birefnet_edge._profile_record import (
    DEFORM_FORMS,
    PRECISIONS,
    SIMPLIFIERS,
    BatchRange,
    Profile,
    Tolerance,
    _is_int,
)
from birefnet_edge.errors import ProfileError
from birefnet_edge.formats import FORMAT_OPTIONS

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = [
    "DEFORM_FORMS",
    "PRECISIONS",
    "SIMPLIFIERS",
    "BatchRange",
    "Profile",
    "Tolerance",
    "check_types",
    "list_profiles",
    "load_profile",
    "profile_from_toml",
    "targets_dir",
]

_TOP_KEYS = {
    "name",
    "format",
    "precision",
    "description",
    "input",
    "batch",
    "graph",
    "tolerance",
    "options",
    "quantization",
}


def targets_dir() -> Path:
    """Return the folder holding the shipped ``*.toml`` profiles (wheel or source checkout)."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "targets", here.parent / "targets"):
        if candidate.is_dir():
            return candidate
    raise ProfileError(f"no shipped targets folder found next to {here}; reinstall birefnet-edge")


def list_profiles() -> list[str]:
    """Return the names of the shipped profiles, sorted."""
    return sorted(p.stem for p in targets_dir().glob("*.toml"))


def load_profile(name_or_path: str | Path) -> Profile:
    """Load and validate a profile by shipped name (``onnx-fp16``) or by path to a TOML file.

    Args:
        name_or_path: A shipped profile name or a path to a ``.toml`` file.

    Returns:
        The validated profile.

    Raises:
        ProfileError: Unknown name, unreadable file, bad TOML, unknown keys or invalid values.
    """
    path = Path(name_or_path)
    if path.suffix != ".toml" and not path.exists():
        path = targets_dir() / f"{name_or_path}.toml"
        if not path.exists():
            raise ProfileError(
                f"unknown target profile '{name_or_path}'; shipped profiles: {', '.join(list_profiles())} "
                "(or pass a path to your own .toml file)"
            )
    if not path.is_file():
        raise ProfileError(f"profile file not found: {path}")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ProfileError(f"profile {path} is not valid TOML: {exc}") from exc
    shipped = path.resolve().parent == targets_dir().resolve()
    return profile_from_toml(
        data,
        default_name=path.stem,
        source="shipped" if shipped else path.name,
        sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
        where=str(path),
    )


def profile_from_toml(
    data: Mapping[str, Any], default_name: str, source: str = "", sha256: str = "", where: str = ""
) -> Profile:
    """Build a :class:`Profile` from parsed TOML tables, rejecting unknown keys.

    Args:
        data: The parsed TOML.
        default_name: The profile name when the file sets none (its stem).
        source: Recorded as :attr:`Profile.source`.
        sha256: Recorded as :attr:`Profile.sha256`.
        where: Names the file in error messages (defaults to ``default_name``).

    Raises:
        ProfileError: Unknown keys, missing ``format`` or invalid values (options included).
    """
    where = where or default_name
    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise ProfileError(
            f"unknown key(s) in profile {where}: {', '.join(sorted(unknown))}; allowed: {', '.join(sorted(_TOP_KEYS))}"
        )
    if "format" not in data:
        raise ProfileError(f"profile {where} has no 'format'; choose one of: {', '.join(FORMAT_OPTIONS.names())}")
    check_types(data, where)
    graph = _table(data, "graph", {"deform", "deform_band", "opset", "simplify", "simplifier"})
    inp = _table(data, "input", {"size"})
    size = inp.get("size", (1024, 1024))
    try:
        return Profile(
            name=str(data.get("name", default_name)),
            format=data["format"],
            precision=data.get("precision", "fp32"),
            input_size=(size, size) if isinstance(size, int) else tuple(size),  # type: ignore[arg-type]
            batch=BatchRange(**_table(data, "batch", {"min", "opt", "max"})),
            deform=graph.get("deform", "portable"),
            deform_band=graph.get("deform_band"),
            opset=graph.get("opset", 18),
            simplify=graph.get("simplify", True),
            simplifier=graph.get("simplifier", "onnxslim"),
            options=dict(data.get("options", {})),
            quantization=dict(data["quantization"]) if "quantization" in data else None,
            tolerance=Tolerance(**_table(data, "tolerance", {f.name for f in dataclasses.fields(Tolerance)})),
            description=data.get("description", ""),
            source=source,
            sha256=sha256,
        )
    except ProfileError as exc:  # raised by a table's own check (batch range, size): name the file too
        if str(exc).startswith("profile "):
            raise
        raise ProfileError(f"profile {where}: {exc}") from exc
    except (TypeError, ValueError) as exc:
        raise ProfileError(f"profile {where}: {exc}") from exc


# The type of every key a profile TOML may hold outside [options] and [quantization] (their own dataclasses
# type those): checked before anything is built, so a wrong type is named with the field, not as a
# Python error from deep inside. "size" is one integer (a square) or a list of two, [H, W].
_SCHEMA: dict[str, tuple[type | str, str]] = {
    "name": (str, "a string"),
    "format": (str, "a string"),
    "precision": (str, "a string"),
    "description": (str, "a string"),
    "input": (dict, "a table"),
    "input.size": ("size", "an integer or a list of two integers [H, W]"),
    "batch": (dict, "a table"),
    "batch.min": (int, "an integer"),
    "batch.opt": (int, "an integer"),
    "batch.max": (int, "an integer"),
    "graph": (dict, "a table"),
    "graph.deform": (str, "a string"),
    "graph.deform_band": (int, "an integer"),
    "graph.opset": (int, "an integer"),
    "graph.simplify": (bool, "true or false"),
    "graph.simplifier": (str, "a string"),
    "tolerance": (dict, "a table"),
    **{f"tolerance.{f.name}": (float, "a number") for f in dataclasses.fields(Tolerance)},
    "options": (dict, "a table"),
    "quantization": (dict, "a table"),
}


def _type_ok(value: Any, kind: type | str) -> bool:
    if kind == "size":
        return _is_int(value) or (isinstance(value, list) and len(value) == 2 and all(_is_int(v) for v in value))
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int:
        return _is_int(value)
    return isinstance(value, kind)  # type: ignore[arg-type]


def check_types(data: Mapping[str, Any], where: str) -> None:
    """Raise naming every field of a parsed profile whose value has the wrong type (unknown keys are left to
    the key checks, which list the allowed ones).

    Raises:
        ProfileError: One message listing each wrong field, its value and the type expected.
    """
    wrong = []
    for key, value in data.items():
        items = [(key, value)]
        if isinstance(value, Mapping) and key not in ("options", "quantization"):
            items += [(f"{key}.{sub}", v) for sub, v in value.items()]
        for dotted, item in items:
            expected = _SCHEMA.get(dotted)
            if expected is not None and not _type_ok(item, expected[0]):
                wrong.append(f"{dotted} = {item!r} must be {expected[1]}, not {_toml_type(item)}")
    if wrong:
        raise ProfileError(f"profile {where}: {'; '.join(wrong)}")


def _toml_type(value: Any) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list", dict: "a table"}
    return next((name for kind, name in names.items() if isinstance(value, kind)), type(value).__name__)


def _table(data: Mapping[str, Any], key: str, allowed: set[str]) -> dict[str, Any]:
    table = dict(data.get(key, {}))
    unknown = set(table) - allowed
    if unknown:
        raise ProfileError(
            f"unknown key(s) in [{key}]: {', '.join(sorted(unknown))}; allowed: {', '.join(sorted(allowed))}"
        )
    return table
